//! Source paths "added" to the store: their content hashes, optionally
//! filtered, and a cache shared by all evaluation threads.
//!
//! Design: [`hash_source`] computes what Nix's `computeStorePathForPath`
//! hashes — the NAR of the tree (recursive) or the bytes of the file (flat) —
//! with an optional filter called for every entry below the root (never for
//! the root itself) with the entry's full path and type, exactly as Nix's
//! `dumpPath(path, sink, filter)`: a rejected directory drops its whole
//! subtree. The walk is the store crate's
//! [`ndeploy_store::nar::dump_path_filtered`] (iterative, so deep trees
//! cannot overflow the stack). [`hash_filtered_source`] also returns the
//! entries the filter rejected, so a later step can NAR-serialise the same
//! tree without the Nix filter function ([`Exclusions`]).
//!
//! [`SourceCache`] memoises unfiltered hashes per (path, method) together
//! with the root's metadata (device, inode, size, mtime, ctime): a path whose
//! root changed is hashed again. Within one process a tree below an unchanged
//! root is assumed unchanged (as Nix's own `srcToStore` cache assumes). Each
//! key has its own `OnceLock`, so threads asking for the same tree at the
//! same time hash it once: the others wait for that result.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use ndeploy_store::hash::{Hash, HashAlgo, Hasher};
use ndeploy_store::nar::{DumpError, FilteredDumpError, dump_path_filtered, hash_file, hash_path};
use ndeploy_store::store_path::FileIngestionMethod;

use crate::io::FileType;

/// Why a source could not be hashed: the file system, or the filter.
pub type SourceError<E> = FilteredDumpError<E>;

fn file_type_of(ft: fs::FileType) -> FileType {
    if ft.is_symlink() {
        FileType::Symlink
    } else if ft.is_dir() {
        FileType::Directory
    } else if ft.is_file() {
        FileType::Regular
    } else {
        FileType::Unknown
    }
}

/// A filter over the entries below a source root: (full path, type) → keep?
pub type EntryFilter<'a, E> = dyn FnMut(&str, FileType) -> Result<bool, E> + 'a;

/// The sha256 of `path` as `method` hashes it, with `filter` deciding which
/// entries below the root are included (recursive only; flat hashes the
/// file's bytes and ignores the filter, as Nix does).
pub fn hash_source<E>(
    path: &Path,
    method: FileIngestionMethod,
    filter: Option<&mut EntryFilter<'_, E>>,
) -> Result<Hash, SourceError<E>> {
    match (method, filter) {
        (FileIngestionMethod::Flat, _) => Ok(hash_file(HashAlgo::Sha256, path)?.0),
        (FileIngestionMethod::Recursive, None) => Ok(hash_path(HashAlgo::Sha256, path)?.0),
        (FileIngestionMethod::Recursive, Some(filter)) => {
            let mut hasher = Hasher::new(HashAlgo::Sha256);
            dump_path_filtered(path, &mut hasher, &mut |p: &Path, m: &fs::Metadata| {
                filter(&p.to_string_lossy(), file_type_of(m.file_type()))
            })?;
            Ok(hasher.finish())
        }
    }
}

/// The entries of a source tree its filter rejected (full paths as the
/// filter saw them). Replaying them ([`Exclusions::keeps`]) selects the same
/// tree as the filter did, as long as the tree has not changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Exclusions(BTreeSet<String>);

impl Exclusions {
    /// Whether the entry at `path` was kept.
    pub fn keeps(&self, path: &Path) -> bool {
        !self.0.contains(&*path.to_string_lossy())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// [`hash_source`] with a filter, also returning what it rejected.
pub fn hash_filtered_source<E>(
    path: &Path,
    method: FileIngestionMethod,
    filter: &mut EntryFilter<'_, E>,
) -> Result<(Hash, Exclusions), SourceError<E>> {
    let mut excluded = Exclusions::default();
    let mut recording = |p: &str, ft: FileType| -> Result<bool, E> {
        let keep = filter(p, ft)?;
        if !keep {
            excluded.0.insert(p.to_owned());
        }
        Ok(keep)
    };
    let hash = hash_source(path, method, Some(&mut recording))?;
    Ok((hash, excluded))
}

/// The NAR of the source tree at `path` without the `excluded` entries.
pub fn dump_source<W: io::Write>(path: &Path, excluded: &Exclusions, out: W) -> Result<u64, DumpError> {
    dump_path_filtered::<_, std::convert::Infallible>(path, out, &mut |p, _| Ok(excluded.keeps(p))).map_err(|e| match e {
        FilteredDumpError::Dump(e) => e,
        FilteredDumpError::Filter(never) => match never {},
    })
}

/// What identifies a source tree's root for the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    path: String,
    flat: bool,
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

type Slot = Arc<OnceLock<Result<Hash, String>>>;

/// Unfiltered source hashes, shared across threads (see the module doc).
#[derive(Default)]
pub struct SourceCache {
    slots: Mutex<HashMap<Key, Slot>>,
}

impl SourceCache {
    pub fn new() -> SourceCache {
        SourceCache::default()
    }

    /// The hash of `path` (unfiltered), computed at most once per unchanged root.
    pub fn hash(&self, path: &str, method: FileIngestionMethod) -> Result<Hash, String> {
        let p = Path::new(path);
        let meta = fs::symlink_metadata(p)
            .map_err(|e| DumpError::Io { op: "getting status of", path: p.into(), error: e }.to_string())?;
        let key = Key {
            path: path.to_owned(),
            flat: method == FileIngestionMethod::Flat,
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        };
        let slot = self.slots.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone();
        slot.get_or_init(|| match hash_source::<()>(p, method, None) {
            Ok(h) => Ok(h),
            Err(SourceError::Dump(e)) => Err(e.to_string()),
            Err(SourceError::Filter(())) => Err("internal error: filter without a filter".to_owned()),
        })
        .clone()
    }

    /// Number of distinct roots hashed (or being hashed).
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("d/skip")).unwrap();
        fs::write(t.path().join("d/a"), b"a").unwrap();
        fs::write(t.path().join("d/skip/b"), b"b").unwrap();
        fs::write(t.path().join("d/c"), b"c").unwrap();
        t
    }

    #[test]
    fn accept_all_filter_equals_plain_nar_hash() {
        let t = tree();
        let root = t.path().join("d");
        let mut seen = Vec::new();
        let mut all = |p: &str, ft: FileType| -> Result<bool, ()> {
            seen.push((p.to_owned(), ft));
            Ok(true)
        };
        let filtered = hash_source(&root, FileIngestionMethod::Recursive, Some(&mut all)).unwrap();
        assert_eq!(filtered, hash_path(HashAlgo::Sha256, &root).unwrap().0);
        let r = root.to_string_lossy();
        assert_eq!(
            seen,
            [
                (format!("{r}/a"), FileType::Regular),
                (format!("{r}/c"), FileType::Regular),
                (format!("{r}/skip"), FileType::Directory),
                (format!("{r}/skip/b"), FileType::Regular),
            ]
        );
    }

    #[test]
    fn rejected_directory_drops_its_subtree() {
        let t = tree();
        let root = t.path().join("d");
        let mut no_skip = |p: &str, _: FileType| -> Result<bool, ()> { Ok(!p.ends_with("/skip")) };
        let filtered = hash_source(&root, FileIngestionMethod::Recursive, Some(&mut no_skip)).unwrap();
        fs::remove_dir_all(root.join("skip")).unwrap();
        assert_eq!(filtered, hash_path(HashAlgo::Sha256, &root).unwrap().0);
    }

    #[test]
    fn filter_errors_propagate() {
        let t = tree();
        let mut fail = |_: &str, _: FileType| -> Result<bool, &'static str> { Err("boom") };
        let r = hash_source(&t.path().join("d"), FileIngestionMethod::Recursive, Some(&mut fail));
        assert!(matches!(r, Err(SourceError::Filter("boom"))));
    }

    #[test]
    fn cache_rehashes_a_changed_root() {
        let t = tree();
        let f = t.path().join("d/a");
        let cache = SourceCache::new();
        let p = f.to_str().unwrap();
        let h1 = cache.hash(p, FileIngestionMethod::Recursive).unwrap();
        assert_eq!(cache.hash(p, FileIngestionMethod::Recursive).unwrap(), h1);
        assert_eq!(cache.len(), 1);
        fs::write(&f, b"longer").unwrap();
        assert_ne!(cache.hash(p, FileIngestionMethod::Recursive).unwrap(), h1);
        assert!(cache.hash("/nonexistent/x", FileIngestionMethod::Flat).unwrap_err().contains("/nonexistent/x"));
    }

    #[test]
    fn exclusions_replay_the_filter() {
        let t = tree();
        let root = t.path().join("d");
        let mut no_skip = |p: &str, _: FileType| -> Result<bool, ()> { Ok(!p.ends_with("/skip") && !p.ends_with("/c")) };
        let (hash, excluded) = hash_filtered_source(&root, FileIngestionMethod::Recursive, &mut no_skip).unwrap();
        assert_eq!(excluded.0.len(), 2, "the rejected directory, not its contents: {excluded:?}");
        let mut nar = Vec::new();
        dump_source(&root, &excluded, &mut nar).unwrap();
        assert_eq!(Hash::digest(HashAlgo::Sha256, &nar), hash);
        assert_ne!(hash, hash_path(HashAlgo::Sha256, &root).unwrap().0);
    }
}
