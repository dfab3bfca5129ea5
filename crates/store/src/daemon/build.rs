//! Building and planning: BuildPaths and QueryMissing.
//!
//! Both take [`DerivedPath`]s, which travel (protocol ≥ 1.30) as strings:
//! an opaque store path as itself, a derivation's outputs as
//! `<drv path>!<out1>,<out2>` or `<drv path>!*` for all of them.

use std::collections::BTreeSet;
use std::fmt;

use tokio::io::{AsyncRead, AsyncWrite};

use super::client::DaemonConnection;
use super::opcodes::Op;
use super::wire::{WireBuf, read_paths, read_u64};
use super::Result;
use crate::store_path::{StoreDir, StorePath};

/// Which outputs of a derivation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputsSpec {
    All,
    Names(BTreeSet<String>),
}

/// Something to realise: a store path, or outputs of a derivation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DerivedPath {
    Opaque(StorePath),
    Built { drv: StorePath, outputs: OutputsSpec },
}

impl DerivedPath {
    /// The wire form (Nix's `to_string_legacy`).
    pub fn render(&self, dir: &StoreDir) -> String {
        match self {
            DerivedPath::Opaque(p) => dir.display(p),
            DerivedPath::Built { drv, outputs } => format!("{}!{}", dir.display(drv), outputs),
        }
    }
}

impl fmt::Display for OutputsSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputsSpec::All => f.write_str("*"),
            OutputsSpec::Names(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

/// How BuildPaths treats outputs that already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildMode {
    #[default]
    Normal = 0,
    /// Rebuild or re-substitute corrupt outputs (trusted clients only).
    Repair = 1,
    /// Build again and compare with the existing outputs.
    Check = 2,
}

/// QueryMissing's answer: what realising the paths would take.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Missing {
    pub will_build: BTreeSet<StorePath>,
    pub will_substitute: BTreeSet<StorePath>,
    pub unknown: BTreeSet<StorePath>,
    /// Bytes to download (compressed) for the substitutions.
    pub download_size: u64,
    /// Unpacked NAR bytes of the substitutions.
    pub nar_size: u64,
}

impl<R, W> DaemonConnection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    fn derived_paths(&self, op: Op, paths: &[DerivedPath]) -> WireBuf {
        let mut w = WireBuf::new();
        w.u64(op.code()).strings(paths.iter().map(|p| p.render(self.store_dir())));
        w
    }

    /// BuildPaths: realise `paths` (build or substitute); build logs go to the logger.
    pub async fn build_paths(&mut self, paths: &[DerivedPath], mode: BuildMode) -> Result<()> {
        let mut w = self.derived_paths(Op::BuildPaths, paths);
        w.u64(mode as u64);
        self.call(&w).await?;
        read_u64(self.reader()).await?;
        self.finish(Ok(()))
    }

    /// QueryMissing: what would have to be built or substituted for `paths`.
    pub async fn query_missing(&mut self, paths: &[DerivedPath]) -> Result<Missing> {
        let w = self.derived_paths(Op::QueryMissing, paths);
        self.call(&w).await?;
        let dir = self.store_dir().clone();
        let will_build = read_paths(self.reader(), &dir).await?;
        let will_substitute = read_paths(self.reader(), &dir).await?;
        let unknown = read_paths(self.reader(), &dir).await?;
        let download_size = read_u64(self.reader()).await?;
        let nar_size = read_u64(self.reader()).await?;
        Ok(self.finish(Missing { will_build, will_substitute, unknown, download_size, nar_size }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        let dir = StoreDir::default();
        let drv = dir.parse("/nix/store/hb09lmdvs22v5ianga0vgpi9k446q3kw-t.drv").unwrap();
        let out = dir.parse("/nix/store/2jmiqxxd2z4ypk8am71rc6kffqzgma57-t").unwrap();
        assert_eq!(DerivedPath::Opaque(out).render(&dir), "/nix/store/2jmiqxxd2z4ypk8am71rc6kffqzgma57-t");
        let all = DerivedPath::Built { drv: drv.clone(), outputs: OutputsSpec::All };
        assert_eq!(all.render(&dir), "/nix/store/hb09lmdvs22v5ianga0vgpi9k446q3kw-t.drv!*");
        let some = DerivedPath::Built {
            drv,
            outputs: OutputsSpec::Names(["out".to_owned(), "dev".to_owned()].into_iter().collect()),
        };
        assert_eq!(some.render(&dir), "/nix/store/hb09lmdvs22v5ianga0vgpi9k446q3kw-t.drv!dev,out");
    }
}
