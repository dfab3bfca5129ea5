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
//!   The plain push records them as it serialises NARs
//!   ([`Records::dump_recording`]), so a target's first push through the
//!   agent finds the manifests of what it already holds.
//!
//! Writes go to a temporary file renamed into place, so concurrent pushes
//! never read a half-written file. Failing to write the cache is not an
//! error for the push (it only costs a recomputation next time).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use ndeploy_agent::manifest::{ManifestWriter, NarManifest};
use ndeploy_store::path_info::PathInfo;
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

    /// Whether a manifest of `path` is cached (not whether it is readable).
    pub fn has_manifest(&self, path: &StorePath) -> bool {
        self.manifest_file(path).is_file()
    }

    /// Serialise `info` into `w` with `dump` and, unless its manifest is
    /// cached already, cache the manifest computed from the same NAR bytes
    /// on their way to `w` (no second read of the files: the plain push
    /// records what the next agent push needs). Recording is best effort: a
    /// failed dump caches nothing, and nothing about the manifest fails the dump.
    pub fn dump_recording(
        &self,
        info: &PathInfo,
        w: &mut dyn Write,
        dump: impl FnOnce(&PathInfo, &mut dyn Write) -> Result<u64, String>,
    ) -> Result<u64, String> {
        if self.has_manifest(&info.path) {
            return dump(info, w);
        }
        let mut tee = Tee { out: w, manifest: Some(ManifestWriter::new()) };
        let n = dump(info, &mut tee)?;
        match tee.manifest.map(ManifestWriter::finish) {
            Some(Ok(m)) => self.save_manifest(&info.path, &m),
            Some(Err(e)) => tracing::debug!("no manifest of {}: {e}", info.path),
            None => tracing::debug!("no manifest of {}: its NAR did not parse", info.path),
        }
        Ok(n)
    }
}

/// Writes to `out` and hands what `out` took to the manifest builder.
struct Tee<'a> {
    out: &'a mut dyn Write,
    /// `None` once the bytes failed to parse as a NAR.
    manifest: Option<ManifestWriter>,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        if let Some(m) = &mut self.manifest
            && m.write_all(buf.get(..n).unwrap_or(buf)).is_err()
        {
            self.manifest = None;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
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

    /// The manifest recorded while dumping equals the one computed from the
    /// files; the NAR bytes pass through unchanged; a failed dump records nothing.
    #[test]
    fn dumps_record_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("bin")).unwrap();
        std::fs::write(tree.path().join("bin/x"), vec![3u8; 300_000]).unwrap();
        std::os::unix::fs::symlink("x", tree.path().join("bin/y")).unwrap();
        let r = Records::new(dir.path().to_path_buf());
        let p = StorePath::from_base_name("7rjj86a15146cq1d3qy068lml7n8ykzm-hello-2.12").unwrap();
        let info = PathInfo::new(p.clone(), ndeploy_store::hash::Hash::digest(ndeploy_store::hash::HashAlgo::Sha256, b""), 0);
        let dump = |_: &PathInfo, w: &mut dyn Write| ndeploy_store::nar::dump_path(tree.path(), w).map_err(|e| e.to_string());
        let mut nar = Vec::new();
        let n = r.dump_recording(&info, &mut nar, dump).unwrap();
        assert_eq!(n, nar.len() as u64);
        let mut direct = Vec::new();
        ndeploy_store::nar::dump_path(tree.path(), &mut direct).unwrap();
        assert_eq!(nar, direct);
        assert_eq!(r.manifest(&p), Some(NarManifest::from_disk(tree.path()).unwrap()));
        let q = StorePath::from_base_name("0rjj86a15146cq1d3qy068lml7n8ykzm-hello-2.13").unwrap();
        let failing = |_: &PathInfo, w: &mut dyn Write| {
            w.write_all(&direct[..100]).map_err(|e| e.to_string())?;
            Err("disk error".to_owned())
        };
        let info_q = PathInfo::new(q.clone(), ndeploy_store::hash::Hash::digest(ndeploy_store::hash::HashAlgo::Sha256, b""), 0);
        assert!(r.dump_recording(&info_q, &mut Vec::new(), failing).is_err());
        assert!(!r.has_manifest(&q));
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
