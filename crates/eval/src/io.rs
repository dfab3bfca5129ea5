//! The evaluator's access to the outside world, injected.
//!
//! Design: every impure operation of the language (reading files and
//! directories, file types, environment variables, the clock) goes through
//! the [`EvalIO`] trait, so the evaluator is testable with [`MemIO`], an
//! in-memory file system. [`RealIO`] is the real one. Store operations
//! (copying paths to the store, derivations) go through [`StoreIO`], which a
//! later layer implements; without one, they fail with a clear error.

use std::collections::BTreeMap;
use std::io;

/// The type of a directory entry, as `builtins.readDir` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    Unknown,
}

impl FileType {
    pub fn nix_name(self) -> &'static str {
        match self {
            FileType::Regular => "regular",
            FileType::Directory => "directory",
            FileType::Symlink => "symlink",
            FileType::Unknown => "unknown",
        }
    }
}

pub trait EvalIO: Send + Sync {
    fn read_file(&self, path: &str) -> io::Result<Vec<u8>>;
    /// Entries sorted by name.
    fn read_dir(&self, path: &str) -> io::Result<Vec<(String, FileType)>>;
    /// The type of `path` itself (symlinks not followed).
    fn file_type(&self, path: &str) -> io::Result<FileType>;
    /// Whether `path` exists (following symlinks).
    fn path_exists(&self, path: &str) -> bool;
    fn get_env(&self, name: &str) -> Option<String>;
    /// Seconds since the epoch.
    fn current_time(&self) -> i64;
    /// The fetcher of locked inputs (`fetchurl`, `fetchTarball`, `fetchGit`,
    /// `fetchTree`, flakes) when this I/O layer has one
    /// ([`crate::fetch::FetchIO`]); without one those builtins fail.
    fn fetcher(&self) -> Option<&crate::fetch::Fetcher> {
        None
    }
}

/// The real file system and environment.
pub struct RealIO;

impl EvalIO for RealIO {
    fn read_file(&self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn read_dir(&self, path: &str) -> io::Result<Vec<(String, FileType)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path)? {
            let e = e?;
            let ft = e.file_type()?;
            out.push((e.file_name().to_string_lossy().into_owned(), convert(ft)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
    fn file_type(&self, path: &str) -> io::Result<FileType> {
        Ok(convert(std::fs::symlink_metadata(path)?.file_type()))
    }
    fn path_exists(&self, path: &str) -> bool {
        std::fs::metadata(path).is_ok()
    }
    fn get_env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn current_time(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

fn convert(ft: std::fs::FileType) -> FileType {
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

/// An in-memory file system for tests: files by absolute path; directories
/// are implied by the files under them.
#[derive(Default)]
pub struct MemIO {
    pub files: BTreeMap<String, Vec<u8>>,
    pub env: BTreeMap<String, String>,
    pub time: i64,
}

impl MemIO {
    pub fn new() -> MemIO {
        MemIO::default()
    }
    pub fn with_file(mut self, path: &str, contents: &str) -> MemIO {
        self.files.insert(path.to_string(), contents.as_bytes().to_vec());
        self
    }
    fn is_dir(&self, path: &str) -> bool {
        let prefix = if path.ends_with('/') { path.to_string() } else { format!("{path}/") };
        self.files.keys().any(|k| k.starts_with(&prefix))
    }
}

fn not_found(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{path}: No such file or directory"))
}

impl EvalIO for MemIO {
    fn read_file(&self, path: &str) -> io::Result<Vec<u8>> {
        self.files.get(path).cloned().ok_or_else(|| not_found(path))
    }
    fn read_dir(&self, path: &str) -> io::Result<Vec<(String, FileType)>> {
        if !self.is_dir(path) {
            return Err(not_found(path));
        }
        let prefix = if path.ends_with('/') { path.to_string() } else { format!("{path}/") };
        let mut out: BTreeMap<String, FileType> = BTreeMap::new();
        for k in self.files.keys() {
            if let Some(rest) = k.strip_prefix(&prefix) {
                match rest.split_once('/') {
                    Some((d, _)) => out.insert(d.to_string(), FileType::Directory),
                    None => out.insert(rest.to_string(), FileType::Regular),
                };
            }
        }
        Ok(out.into_iter().collect())
    }
    fn file_type(&self, path: &str) -> io::Result<FileType> {
        if self.files.contains_key(path) {
            Ok(FileType::Regular)
        } else if self.is_dir(path) {
            Ok(FileType::Directory)
        } else {
            Err(not_found(path))
        }
    }
    fn path_exists(&self, path: &str) -> bool {
        self.files.contains_key(path) || self.is_dir(path)
    }
    fn get_env(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
    fn current_time(&self) -> i64 {
        self.time
    }
}

/// Store operations the language needs (implemented by the store layer).
pub trait StoreIO: Send + Sync {
    /// Copy a source path into the store (for `"${./p}"`), returning the
    /// store path.
    fn copy_path_to_store(&self, path: &str) -> Result<String, String>;
    /// The computing store behind `derivationStrict` and the store-path
    /// builtins (`builtins.path`, `toFile`, ...); without one they fail.
    fn computing(&self) -> Option<&crate::store::ComputingStore> {
        None
    }
}

/// Nix's read-only mode (`nix-instantiate --readonly-mode`): every path is
/// computed in-process (NAR hashes of sources, `.drv` paths) and nothing is
/// written; see [`crate::store`].
pub use crate::store::ComputingStore as ReadOnlyStore;
