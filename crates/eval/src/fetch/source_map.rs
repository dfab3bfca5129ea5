//! The source map: store paths whose contents live elsewhere.
//!
//! Design: fetched inputs that are not in the Nix store (cache entries,
//! local `path:` inputs, a flake's git checkout) are registered here as
//! store path → real directory (or file). [`SourceMap::resolve`] turns a
//! logical path under such a store path into the real one. A git checkout
//! carries its [`TrackedFiles`], so untracked files stay invisible, as in
//! the copy Nix would make.
//!
//! Invariant: keys are store path base names (`<hash>-<name>`); a path that
//! is not under a registered store path resolves to itself.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// The tracked files of a git checkout, relative to its root (`a/b.nix`).
#[derive(Debug, Default, Clone)]
pub struct TrackedFiles {
    files: BTreeSet<String>,
}

impl TrackedFiles {
    pub fn new(files: impl IntoIterator<Item = String>) -> TrackedFiles {
        TrackedFiles { files: files.into_iter().collect() }
    }

    /// Whether `rel` (relative, `/`-separated, no leading `/`) is a tracked
    /// file or a directory containing one. The empty path is the root.
    pub fn contains(&self, rel: &str) -> bool {
        if rel.is_empty() || self.files.contains(rel) {
            return true;
        }
        let prefix = format!("{rel}/");
        self.files.range(prefix.clone()..).next().is_some_and(|f| f.starts_with(&prefix))
    }

    /// The files under the directory `rel` (relative to that directory).
    pub fn under(&self, rel: &str) -> TrackedFiles {
        if rel.is_empty() {
            return self.clone();
        }
        let prefix = format!("{rel}/");
        TrackedFiles {
            files: self
                .files
                .range(prefix.clone()..)
                .take_while(|f| f.starts_with(&prefix))
                .filter_map(|f| f.strip_prefix(&prefix).map(str::to_string))
                .collect(),
        }
    }
}

#[derive(Clone)]
struct Entry {
    real: PathBuf,
    tracked: Option<Arc<TrackedFiles>>,
}

/// A logical path resolved to where its contents are.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub real: PathBuf,
    /// The path relative to the mapped store path (empty at its root).
    pub rel: String,
    /// The checkout's tracked files, when limited to them.
    pub tracked: Option<Arc<TrackedFiles>>,
}

impl Resolved {
    /// Whether the path is visible (tracked, or no limit).
    pub fn visible(&self) -> bool {
        self.tracked.as_ref().is_none_or(|t| t.contains(&self.rel))
    }

    /// For `real_child`, a path under [`Resolved::real`] as a directory
    /// walk of it produces: the same path under `logical_root` (the logical
    /// path this was resolved from) and whether it is visible.
    pub fn logical(&self, logical_root: &str, real_child: &str) -> (String, bool) {
        let real = self.real.to_string_lossy();
        let suffix = real_child.strip_prefix(real.as_ref()).unwrap_or("");
        let child = suffix.trim_start_matches('/');
        let rel = match (self.rel.is_empty(), child.is_empty()) {
            (true, _) => child.to_string(),
            (false, true) => self.rel.clone(),
            (false, false) => format!("{}/{child}", self.rel),
        };
        let visible = self.tracked.as_ref().is_none_or(|t| t.contains(&rel));
        (format!("{logical_root}{suffix}"), visible)
    }

    /// Whether the child `name` of this (directory) path is visible.
    pub fn child_visible(&self, name: &str) -> bool {
        let rel = if self.rel.is_empty() { name.to_string() } else { format!("{}/{name}", self.rel) };
        self.tracked.as_ref().is_none_or(|t| t.contains(&rel))
    }
}

pub struct SourceMap {
    store_prefix: String,
    entries: RwLock<HashMap<String, Entry>>,
}

impl SourceMap {
    pub fn new(store_dir: &str) -> SourceMap {
        SourceMap { store_prefix: format!("{}/", store_dir.trim_end_matches('/')), entries: RwLock::new(HashMap::new()) }
    }

    /// Register `store_path` (full path) as living at `real`.
    pub fn insert(&self, store_path: &str, real: PathBuf, tracked: Option<Arc<TrackedFiles>>) {
        let base = store_path.strip_prefix(&self.store_prefix).unwrap_or(store_path).to_string();
        self.entries.write().unwrap_or_else(|e| e.into_inner()).insert(base, Entry { real, tracked });
    }

    /// Whether anything is registered (fast path for the common case).
    pub fn is_empty(&self) -> bool {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Resolve `path` if it is under a registered store path.
    pub fn resolve(&self, path: &str) -> Option<Resolved> {
        let rest = path.strip_prefix(&self.store_prefix)?;
        let (base, rel) = match rest.split_once('/') {
            Some((b, r)) => (b, r.trim_matches('/')),
            None => (rest, ""),
        };
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let e = entries.get(base)?;
        let real = if rel.is_empty() { e.real.clone() } else { e.real.join(rel) };
        Some(Resolved { real, rel: rel.to_string(), tracked: e.tracked.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_files_include_parent_directories() {
        let t = TrackedFiles::new(["a/b/c.nix".to_string(), "d".to_string(), "ab".to_string()]);
        assert!(t.contains(""));
        assert!(t.contains("a"));
        assert!(t.contains("a/b"));
        assert!(t.contains("a/b/c.nix"));
        assert!(t.contains("ab"));
        assert!(!t.contains("a/c"));
        assert!(!t.contains("a/b/c"));
        assert!(!t.contains("e"));
        let u = t.under("a");
        assert!(u.contains("b/c.nix"));
        assert!(!u.contains("d"));
    }

    #[test]
    fn resolve_maps_only_registered_store_paths() {
        let m = SourceMap::new("/nix/store");
        m.insert("/nix/store/abc-source", PathBuf::from("/real/dir"), None);
        let r = m.resolve("/nix/store/abc-source/x/y.nix").unwrap();
        assert_eq!(r.real, PathBuf::from("/real/dir/x/y.nix"));
        assert_eq!(r.rel, "x/y.nix");
        assert_eq!(m.resolve("/nix/store/abc-source").unwrap().real, PathBuf::from("/real/dir"));
        assert!(m.resolve("/nix/store/abd-source/x").is_none());
        assert!(m.resolve("/elsewhere/abc-source").is_none());
        let t = Arc::new(TrackedFiles::new(["x/y.nix".to_string()]));
        m.insert("/nix/store/def-source", PathBuf::from("/co"), Some(t));
        let r = m.resolve("/nix/store/def-source/x").unwrap();
        assert_eq!(r.logical("/nix/store/def-source/x", "/co/x/y.nix"), ("/nix/store/def-source/x/y.nix".into(), true));
        assert_eq!(r.logical("/nix/store/def-source/x", "/co/x/z"), ("/nix/store/def-source/x/z".into(), false));
    }
}
