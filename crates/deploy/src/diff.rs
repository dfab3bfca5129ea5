//! `ndeploy diff`: what applying would change on a host, before applying.
//!
//! The host's current system is what its system profile points to; its
//! closure comes from the target's daemon, the new toplevel's closure from
//! the local daemon (the toplevel must be built), and one QueryValidPaths
//! says what the target lacks. [`compute`] is pure: paths added and removed
//! between the closures, package version changes (names split as Nix's
//! `parseDrvName`: the version starts at the first `-` followed by a
//! non-letter), and the NAR bytes to transfer.

use std::collections::{BTreeMap, BTreeSet};

use ndeploy_store::daemon::DaemonError;
use ndeploy_store::drv_name::parse_drv_name;
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::{StoreDir, StorePath};

use crate::ssh::{ConnectOptions, SshError, SshSession, SshTarget, open_remote_store, shell_quote};

/// Why a host's diff could not be made: reaching it, or its store.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionChange {
    pub pname: String,
    pub old: Vec<String>,
    pub new: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    /// The current system (None: nothing deployed yet).
    pub current: Option<String>,
    pub new: String,
    /// Store paths in the new closure and not in the current one.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Packages present on both sides with other versions.
    pub version_changes: Vec<VersionChange>,
    /// What the target lacks of the new closure.
    pub transfer_paths: usize,
    pub transfer_bytes: u64,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Compare closures; `valid` says which new paths the target already has.
pub fn compute(dir: &StoreDir, current: Option<&StorePath>, old: &[PathInfo], new_top: &StorePath, new: &[PathInfo], valid: &BTreeSet<StorePath>) -> Diff {
    let old_set: BTreeSet<&StorePath> = old.iter().map(|p| &p.path).collect();
    let new_set: BTreeSet<&StorePath> = new.iter().map(|p| &p.path).collect();
    let added: Vec<&StorePath> = new_set.difference(&old_set).copied().collect();
    let removed: Vec<&StorePath> = old_set.difference(&new_set).copied().collect();
    let versions = |paths: &[&StorePath]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for p in paths {
            let n = parse_drv_name(p.name());
            m.entry(n.name.to_owned()).or_default().insert(n.version.to_owned());
        }
        m
    };
    let (va, vr) = (versions(&added), versions(&removed));
    let version_changes = va
        .iter()
        .filter_map(|(pname, newv)| {
            let oldv = vr.get(pname)?;
            (oldv != newv && !newv.iter().all(String::is_empty)).then(|| VersionChange {
                pname: pname.clone(),
                old: oldv.iter().cloned().collect(),
                new: newv.iter().cloned().collect(),
            })
        })
        .collect();
    let missing: Vec<&PathInfo> = new.iter().filter(|p| !valid.contains(&p.path)).collect();
    Diff {
        current: current.map(|c| dir.display(c)),
        new: dir.display(new_top),
        added: added.iter().map(|p| dir.display(p)).collect(),
        removed: removed.iter().map(|p| dir.display(p)).collect(),
        version_changes,
        transfer_paths: missing.len(),
        transfer_bytes: missing.iter().map(|p| p.nar_size).sum(),
    }
}

/// The human-readable form.
pub fn render(host: &str, d: &Diff) -> String {
    let mut out = format!("{host}: {} -> {}\n", d.current.as_deref().unwrap_or("(nothing deployed)"), d.new);
    out.push_str(&format!(
        "  {} paths added, {} removed; to transfer: {} paths, {}\n",
        d.added.len(),
        d.removed.len(),
        d.transfer_paths,
        crate::push::report::human_bytes(d.transfer_bytes)
    ));
    for v in &d.version_changes {
        out.push_str(&format!("  {}: {} -> {}\n", v.pname, v.old.join(", "), v.new.join(", ")));
    }
    for p in &d.added {
        out.push_str(&format!("  + {p}\n"));
    }
    for p in &d.removed {
        out.push_str(&format!("  - {p}\n"));
    }
    out
}

/// The diff for one host: `new` (built locally, closure `new_closure`)
/// against what `profile` points to on `target`.
pub async fn diff_host(
    target: &SshTarget,
    connect: &ConnectOptions,
    profile: &str,
    new_top: &StorePath,
    new_closure: &[PathInfo],
) -> Result<Diff, DiffError> {
    let session = SshSession::connect(target, connect).await?;
    let out = session.exec(&format!("readlink -f {} || true", shell_quote(profile))).await?;
    let mut store = open_remote_store(&session, target.remote_store.as_deref()).await?;
    let dir = store.conn.store_dir().clone();
    let current = dir.parse(out.stdout_str().trim()).ok();
    let old = match &current {
        Some(c) => store.conn.query_closure(std::slice::from_ref(c)).await?,
        None => Vec::new(),
    };
    let paths: Vec<StorePath> = new_closure.iter().map(|p| p.path.clone()).collect();
    let valid = store.conn.query_valid_paths(&paths, false).await?;
    let _ = store.close().await;
    let _ = session.disconnect().await;
    Ok(compute(&dir, current.as_ref(), &old, new_top, new_closure, &valid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndeploy_store::hash::{Hash, HashAlgo};

    #[test]
    fn closures_compared() {
        let dir = StoreDir::default();
        let p = |n: &str, size: u64| {
            let h = Hash::digest(HashAlgo::Sha256, n);
            let sp = dir.make_store_path("source", &h, n).unwrap();
            PathInfo::new(sp, h, size)
        };
        let (top1, top2) = (p("system-a", 1), p("system-b", 2));
        let (hello1, hello2, shared, gone) = (p("hello-2.12", 10), p("hello-2.13", 20), p("glibc-2.37", 5), p("old-tool-1.0", 7));
        let old = vec![top1.clone(), hello1, shared.clone(), gone.clone()];
        let new = vec![top2.clone(), hello2.clone(), shared.clone()];
        let valid: BTreeSet<StorePath> = [shared.path.clone(), top2.path.clone()].into();
        let d = compute(&dir, Some(&top1.path), &old, &top2.path, &new, &valid);
        assert_eq!(d.added.len(), 2);
        assert_eq!(d.removed.len(), 3);
        assert!(d.removed.contains(&dir.display(&gone.path)));
        assert_eq!(d.version_changes, vec![VersionChange { pname: "hello".into(), old: vec!["2.12".into()], new: vec!["2.13".into()] }]);
        assert_eq!((d.transfer_paths, d.transfer_bytes), (1, 20));
        let text = render("h", &d);
        assert!(text.contains("hello: 2.12 -> 2.13") && text.contains("to transfer: 1 paths"), "{text}");
    }
}
