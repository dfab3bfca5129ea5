//! Copying a set of paths to a daemon: the building block of `ndeploy push`.
//!
//! [`DaemonConnection::copy_missing`] asks which paths the daemon already has
//! (one QueryValidPaths round trip), orders the missing ones so that every
//! path follows the paths it references ([`sort_references_first`], Kahn's
//! algorithm, iterative), and sends them in one AddMultipleToStore stream,
//! opening each NAR only when its turn comes. Only path infos are held in
//! memory; NAR data flows through one frame buffer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use tokio::io::{AsyncRead, AsyncWrite};

use super::client::{AddToStoreFlags, DaemonConnection, PathSource};
use super::{DaemonError, Result};
use crate::path_info::PathInfo;
use crate::store_path::StorePath;

/// What [`DaemonConnection::copy_missing`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyReport {
    /// Paths the daemon already had.
    pub already_valid: BTreeSet<StorePath>,
    /// Paths sent, in the order sent.
    pub added: Vec<StorePath>,
    /// Sum of the NAR sizes sent, from the path infos.
    pub nar_bytes: u64,
}

/// Order `infos` so that each path comes after the paths it references
/// (references outside the set are ignored; self-references are fine).
/// Duplicates are dropped. Among independent paths the input order is kept.
/// A reference cycle is a [`DaemonError::BadInput`].
pub fn sort_references_first(infos: Vec<PathInfo>) -> Result<Vec<PathInfo>> {
    let mut seen = BTreeSet::new();
    let infos: Vec<PathInfo> = infos.into_iter().filter(|i| seen.insert(i.path.clone())).collect();
    let index: BTreeMap<&StorePath, usize> = infos.iter().enumerate().map(|(n, i)| (&i.path, n)).collect();
    let mut pending = vec![0usize; infos.len()];
    let mut referrers: Vec<Vec<usize>> = vec![Vec::new(); infos.len()];
    for (n, info) in infos.iter().enumerate() {
        for r in info.references.iter().filter(|r| **r != info.path) {
            if let Some(&m) = index.get(r) {
                pending[n] += 1;
                referrers[m].push(n);
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..infos.len()).filter(|&n| pending[n] == 0).collect();
    let mut order = Vec::with_capacity(infos.len());
    while let Some(n) = ready.pop_front() {
        order.push(n);
        for &m in &referrers[n] {
            pending[m] -= 1;
            if pending[m] == 0 {
                ready.push_back(m);
            }
        }
    }
    if order.len() != infos.len() {
        let stuck = infos.iter().enumerate().find(|(n, _)| pending[*n] > 0).map(|(_, i)| i.path.to_string());
        return Err(DaemonError::BadInput {
            message: format!("the paths to copy have a reference cycle (involving '{}')", stuck.unwrap_or_default()),
        });
    }
    let mut slots: Vec<Option<PathInfo>> = infos.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|n| slots.get_mut(n).and_then(Option::take)).collect())
}

/// Opens NARs lazily, in order.
struct LazySource<F> {
    infos: std::vec::IntoIter<PathInfo>,
    open: F,
}

impl<F, Fut, N> PathSource for LazySource<F>
where
    F: FnMut(&PathInfo) -> Fut + Send,
    Fut: Future<Output = std::io::Result<N>> + Send,
    N: AsyncRead + Unpin + Send,
{
    type Nar = N;
    async fn next_path(&mut self) -> std::io::Result<Option<(PathInfo, N)>> {
        match self.infos.next() {
            Some(info) => {
                let nar = (self.open)(&info).await?;
                Ok(Some((info, nar)))
            }
            None => Ok(None),
        }
    }
}

impl<R, W> DaemonConnection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Copy those of `infos` the daemon lacks: one QueryValidPaths, then one
    /// AddMultipleToStore with references first; `open` yields each NAR's
    /// byte stream when it is needed. References outside `infos` must be
    /// valid on the daemon already.
    pub async fn copy_missing<F, Fut, N>(&mut self, infos: Vec<PathInfo>, open: F, flags: AddToStoreFlags) -> Result<CopyReport>
    where
        F: FnMut(&PathInfo) -> Fut + Send,
        Fut: Future<Output = std::io::Result<N>> + Send,
        N: AsyncRead + Unpin + Send,
    {
        let already_valid = self.query_valid_paths(infos.iter().map(|i| &i.path), false).await?;
        let missing = sort_references_first(infos.into_iter().filter(|i| !already_valid.contains(&i.path)).collect())?;
        let report = CopyReport {
            already_valid,
            added: missing.iter().map(|i| i.path.clone()).collect(),
            nar_bytes: missing.iter().map(|i| i.nar_size).sum(),
        };
        if !missing.is_empty() {
            let count = missing.len() as u64;
            self.add_multiple_to_store(count, LazySource { infos: missing.into_iter(), open }, flags).await?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{Hash, HashAlgo};
    use crate::store_path::StoreDir;

    fn info(name: &str, refs: &[&PathInfo]) -> PathInfo {
        let dir = StoreDir::default();
        let path = dir.make_text_path(name, &Hash::digest(HashAlgo::Sha256, name), []).unwrap();
        let mut i = PathInfo::new(path.clone(), Hash::digest(HashAlgo::Sha256, b""), 1);
        i.references = refs.iter().map(|r| r.path.clone()).collect();
        i.references.insert(path);
        i
    }

    fn names(v: &[PathInfo]) -> Vec<&str> {
        v.iter().map(|i| i.path.name()).collect()
    }

    #[test]
    fn references_come_first() {
        let a = info("a", &[]);
        let b = info("b", &[&a]);
        let c = info("c", &[&a, &b]);
        let d = info("d", &[]);
        let outside = info("outside", &[]);
        let e = info("e", &[&outside, &c]);
        let sorted = sort_references_first(vec![e.clone(), c.clone(), d.clone(), b.clone(), a.clone(), c.clone()]).unwrap();
        assert_eq!(names(&sorted), ["d", "a", "b", "c", "e"]);
        assert!(sort_references_first(Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn cycles_are_refused() {
        let mut a = info("a", &[]);
        let b = info("b", &[&a]);
        a.references.insert(b.path.clone());
        let e = sort_references_first(vec![a, b]).unwrap_err();
        assert!(e.to_string().contains("reference cycle"), "{e}");
    }

    #[test]
    fn long_chains_do_not_recurse() {
        let mut chain = vec![info("p0", &[])];
        for n in 1..20_000 {
            let prev = chain.last().unwrap().clone();
            chain.push(info(&format!("p{n}"), &[&prev]));
        }
        chain.reverse();
        let sorted = sort_references_first(chain).unwrap();
        assert_eq!(sorted.first().unwrap().path.name(), "p0");
        assert_eq!(sorted.last().unwrap().path.name(), "p19999");
    }
}
