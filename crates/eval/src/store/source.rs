//! Source paths "added" to the store: their content hashes, optionally
//! filtered, and a cache shared by all evaluation threads.
//!
//! Design: [`hash_source`] computes what Nix's `computeStorePathForPath`
//! hashes — the NAR of the tree (recursive) or the bytes of the file (flat) —
//! with an optional filter called for every entry below the root (never for
//! the root itself) with the entry's full path and type, exactly as Nix's
//! `dumpPath(path, sink, filter)`: a rejected directory drops its whole
//! subtree. The walk is iterative, so deep trees cannot overflow the stack.
//!
//! [`SourceCache`] memoises unfiltered hashes per (path, method) together
//! with the root's metadata (device, inode, size, mtime, ctime): a path whose
//! root changed is hashed again. Within one process a tree below an unchanged
//! root is assumed unchanged (as Nix's own `srcToStore` cache assumes). Each
//! key has its own `OnceLock`, so threads asking for the same tree at the
//! same time hash it once: the others wait for that result.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ndeploy_store::hash::{Hash, HashAlgo, Hasher};
use ndeploy_store::nar::{DumpError, EncodeError, NarEncoder, hash_file, hash_path};
use ndeploy_store::store_path::FileIngestionMethod;

use crate::io::FileType;

/// Why a source could not be hashed: the file system, or the filter.
#[derive(Debug)]
pub enum SourceError<E> {
    Dump(DumpError),
    Filter(E),
}

impl<E> From<DumpError> for SourceError<E> {
    fn from(e: DumpError) -> Self {
        SourceError::Dump(e)
    }
}

impl<E> From<EncodeError> for SourceError<E> {
    fn from(e: EncodeError) -> Self {
        SourceError::Dump(DumpError::Encode(e))
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DumpError + 'a {
    move |error| DumpError::Io { op, path: path.to_owned(), error }
}

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
            dump_filtered(path, &mut hasher, filter)?;
            Ok(hasher.finish())
        }
    }
}

/// A directory being walked: its remaining entry names.
struct Frame {
    names: std::vec::IntoIter<OsString>,
}

/// Write the NAR of `root` to `out`, keeping only entries `filter` accepts.
fn dump_filtered<W: io::Write, E>(root: &Path, out: W, filter: &mut EntryFilter<'_, E>) -> Result<(), SourceError<E>> {
    let mut enc = NarEncoder::new(out);
    let mut full: PathBuf = root.to_path_buf();
    let mut stack: Vec<Frame> = Vec::new();
    let meta = fs::symlink_metadata(&full).map_err(io_err("getting status of", &full))?;
    if let Some(f) = dump_node(&mut enc, &full, &meta)? {
        stack.push(f);
    }
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.next() else {
            stack.pop();
            enc.end_directory()?;
            if !stack.is_empty() {
                full.pop();
            }
            continue;
        };
        full.push(&name);
        let meta = fs::symlink_metadata(&full).map_err(io_err("getting status of", &full))?;
        let keep = filter(&full.to_string_lossy(), file_type_of(meta.file_type())).map_err(SourceError::Filter)?;
        if !keep {
            full.pop();
            continue;
        }
        enc.entry(name.as_bytes())?;
        match dump_node(&mut enc, &full, &meta)? {
            Some(f) => stack.push(f),
            None => {
                full.pop();
            }
        }
    }
    enc.finish()?;
    Ok(())
}

/// Dump one node; for a directory only its header, returning its listing.
fn dump_node<W: io::Write>(
    enc: &mut NarEncoder<W>,
    path: &Path,
    meta: &fs::Metadata,
) -> Result<Option<Frame>, DumpError> {
    let ft = meta.file_type();
    if ft.is_file() {
        let executable = meta.permissions().mode() & 0o100 != 0;
        let mut file = File::open(path).map_err(io_err("opening file", path))?;
        enc.regular(executable, meta.len(), &mut file)?;
        Ok(None)
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io_err("reading symbolic link", path))?;
        enc.symlink(target.as_os_str().as_bytes())?;
        Ok(None)
    } else if ft.is_dir() {
        let mut names = Vec::new();
        for entry in fs::read_dir(path).map_err(io_err("opening directory", path))? {
            names.push(entry.map_err(io_err("reading directory", path))?.file_name());
        }
        names.sort_unstable();
        enc.begin_directory()?;
        Ok(Some(Frame { names: names.into_iter() }))
    } else {
        Err(DumpError::UnsupportedType(path.to_owned()))
    }
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
}
