//! What the deployer remembers about targets and store paths, on disk under
//! the cache root (`$XDG_CACHE_HOME/ndeploy`):
//!
//! - `targets/<key>/held`: base names of store paths the target is known to
//!   hold (what we pushed there, and what it reported valid), one per line.
//!   It is a hint only: before use it is checked against the target's
//!   QueryValidPaths (the truth), and paths gone from the target (garbage
//!   collected) are dropped when it is written back.
//! - `manifests/<base name>.json`: the [`NarManifest`] of a store path.
//!   Store paths are immutable, so a manifest, once computed (locally from
//!   the deployer's store or by a target's agent), is valid forever and is
//!   shared by all targets. A damaged cache file is ignored and recomputed.
//!
//! Writes go to a temporary file renamed into place, so concurrent pushes
//! never read a half-written file. Failing to write the cache is not an
//! error for the push (it only costs a recomputation next time).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use ndeploy_agent::manifest::NarManifest;
use ndeploy_store::store_path::StorePath;

/// The cache directory for one target and the shared manifest cache.
#[derive(Debug, Clone)]
pub struct Records {
    root: PathBuf,
}

/// A target's cache key: its user, host and port as given (`[user@]host[:port]`),
/// with anything but `[A-Za-z0-9._@:-]` replaced by `_`.
pub fn target_key(user: Option<&str>, host: &str, port: Option<u16>) -> String {
    let mut key = String::new();
    if let Some(u) = user {
        key.push_str(u);
        key.push('@');
    }
    key.push_str(host);
    if let Some(p) = port {
        key.push_str(&format!(":{p}"));
    }
    let key: String =
        key.chars().map(|c| if c.is_ascii_alphanumeric() || "._@:-".contains(c) { c } else { '_' }).collect();
    // Never `.` or `..` as a directory name.
    if key.chars().all(|c| c == '.') { format!("_{key}") } else { key }
}

impl Records {
    pub fn new(root: PathBuf) -> Records {
        Records { root }
    }

    /// Under the user's cache root.
    pub fn default_location() -> Records {
        Records::new(crate::fleet::library::cache_root(|k| std::env::var(k).ok()))
    }

    fn held_file(&self, key: &str) -> PathBuf {
        self.root.join("targets").join(key).join("held")
    }

    fn manifest_file(&self, path: &StorePath) -> PathBuf {
        self.root.join("manifests").join(format!("{path}.json"))
    }

    /// The paths the target `key` was last known to hold.
    pub fn held(&self, key: &str) -> BTreeSet<StorePath> {
        let text = std::fs::read_to_string(self.held_file(key)).unwrap_or_default();
        text.lines().filter_map(|l| StorePath::from_base_name(l.trim()).ok()).collect()
    }

    /// Replace the record of what target `key` holds.
    pub fn set_held(&self, key: &str, held: &BTreeSet<StorePath>) {
        let mut text = String::with_capacity(held.len() * 60);
        for p in held {
            text.push_str(&p.to_string());
            text.push('\n');
        }
        write_atomic(&self.held_file(key), text.as_bytes());
    }

    /// The cached manifest of `path`, if any (and readable).
    pub fn manifest(&self, path: &StorePath) -> Option<NarManifest> {
        let bytes = std::fs::read(self.manifest_file(path)).ok()?;
        let m: NarManifest = serde_json::from_slice(&bytes).ok()?;
        m.check().ok()?;
        Some(m)
    }

    pub fn save_manifest(&self, path: &StorePath, m: &NarManifest) {
        if let Ok(json) = serde_json::to_vec(m) {
            write_atomic(&self.manifest_file(path), &json);
        }
    }
}

fn write_atomic(file: &Path, data: &[u8]) {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Some(dir) = file.parent() else { return };
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp-{}-{seq}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        std::fs::rename(&tmp, file)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!("cannot write the cache file {}: {e}", file.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_safe_directory_names() {
        assert_eq!(target_key(Some("root"), "web-1", Some(22)), "root@web-1:22");
        assert_eq!(target_key(Some("a b"), "h", None), "a_b@h");
        assert_eq!(target_key(None, "..", None), "_..");
        assert!(!target_key(None, "a/../../b", None).contains('/'));
    }

    #[test]
    fn held_paths_round_trip_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::new(dir.path().to_path_buf());
        assert!(r.held("t").is_empty());
        let a = StorePath::from_base_name("7rjj86a15146cq1d3qy068lml7n8ykzm-hello-2.12").unwrap();
        let b = StorePath::from_base_name("0rjj86a15146cq1d3qy068lml7n8ykzm-glibc-2.35").unwrap();
        r.set_held("t", &BTreeSet::from([a.clone(), b.clone()]));
        assert_eq!(r.held("t"), BTreeSet::from([a.clone(), b]));
        std::fs::write(dir.path().join("targets/t/held"), format!("garbage\n{a}\n../x\n")).unwrap();
        assert_eq!(r.held("t"), BTreeSet::from([a]));
    }

    #[test]
    fn manifests_are_cached_and_damage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("bin")).unwrap();
        std::fs::write(tree.path().join("bin/x"), b"hello").unwrap();
        let m = NarManifest::from_disk(tree.path()).unwrap();
        let r = Records::new(dir.path().to_path_buf());
        let p = StorePath::from_base_name("7rjj86a15146cq1d3qy068lml7n8ykzm-hello-2.12").unwrap();
        assert!(r.manifest(&p).is_none());
        r.save_manifest(&p, &m);
        assert_eq!(r.manifest(&p), Some(m));
        std::fs::write(dir.path().join(format!("manifests/{p}.json")), b"{\"entries\": [").unwrap();
        assert!(r.manifest(&p).is_none());
    }
}
