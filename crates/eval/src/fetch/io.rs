//! The evaluator's I/O and store layers seen through the source map.
//!
//! Design: [`FetchIO`] wraps any [`EvalIO`]: a path under a store path the
//! [`super::SourceMap`] knows is read from its real location (hiding
//! untracked files of a git checkout); every other path goes to the inner
//! layer unchanged. It also owns the [`Fetcher`], which the fetch builtins
//! reach through [`EvalIO::fetcher`]. [`FetchStore`] wraps a [`StoreIO`]:
//! copying a mapped path to the store hashes its real contents (tracked
//! files only for a checkout) under the logical path's base name, as Nix
//! would copy the store path.

use std::io;
use std::path::Path;
use std::sync::Arc;

use ndeploy_store::hash::HashAlgo;
use ndeploy_store::store_path::FileIngestionMethod;

use super::Fetcher;
use super::source_map::Resolved;
use crate::io::{EvalIO, FileType, StoreIO};

pub struct FetchIO {
    inner: Arc<dyn EvalIO>,
    fetcher: Arc<Fetcher>,
}

impl FetchIO {
    pub fn new(inner: Arc<dyn EvalIO>, fetcher: Arc<Fetcher>) -> FetchIO {
        FetchIO { inner, fetcher }
    }

    pub fn fetcher_arc(&self) -> Arc<Fetcher> {
        self.fetcher.clone()
    }

    fn resolve(&self, path: &str) -> Option<Resolved> {
        if self.fetcher.sources().is_empty() {
            return None;
        }
        self.fetcher.sources().resolve(path)
    }
}

fn not_found(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{path}: No such file or directory"))
}

fn real_str(r: &Resolved) -> io::Result<&str> {
    r.real.to_str().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path is not valid UTF-8"))
}

impl EvalIO for FetchIO {
    fn read_file(&self, path: &str) -> io::Result<Vec<u8>> {
        match self.resolve(path) {
            Some(r) if !r.visible() => Err(not_found(path)),
            Some(r) => self.inner.read_file(real_str(&r)?),
            None => self.inner.read_file(path),
        }
    }
    fn read_dir(&self, path: &str) -> io::Result<Vec<(String, FileType)>> {
        match self.resolve(path) {
            Some(r) if !r.visible() => Err(not_found(path)),
            Some(r) => {
                let mut entries = self.inner.read_dir(real_str(&r)?)?;
                entries.retain(|(name, _)| r.child_visible(name));
                Ok(entries)
            }
            None => self.inner.read_dir(path),
        }
    }
    fn file_type(&self, path: &str) -> io::Result<FileType> {
        match self.resolve(path) {
            Some(r) if !r.visible() => Err(not_found(path)),
            Some(r) => self.inner.file_type(real_str(&r)?),
            None => self.inner.file_type(path),
        }
    }
    fn path_exists(&self, path: &str) -> bool {
        match self.resolve(path) {
            Some(r) => r.visible() && real_str(&r).is_ok_and(|p| self.inner.path_exists(p)),
            None => self.inner.path_exists(path),
        }
    }
    fn get_env(&self, name: &str) -> Option<String> {
        self.inner.get_env(name)
    }
    fn current_time(&self) -> i64 {
        self.inner.current_time()
    }
    fn fetcher(&self) -> Option<&Fetcher> {
        Some(&self.fetcher)
    }
}

pub struct FetchStore {
    inner: Arc<dyn StoreIO>,
    fetcher: Arc<Fetcher>,
}

impl FetchStore {
    pub fn new(inner: Arc<dyn StoreIO>, fetcher: Arc<Fetcher>) -> FetchStore {
        FetchStore { inner, fetcher }
    }
}

impl StoreIO for FetchStore {
    fn copy_path_to_store(&self, path: &str) -> Result<String, String> {
        let Some(r) = self.fetcher.sources().resolve(path) else {
            return self.inner.copy_path_to_store(path);
        };
        if !r.visible() {
            return Err(format!("while copying '{path}' to the store: {path}: No such file or directory"));
        }
        let name = crate::support::path::base_name_of(path);
        let sub = r.tracked.as_ref().map(|t| Arc::new(t.under(&r.rel)));
        let sp = match self.inner.computing() {
            // Through the computing store, so its manifest records the origin.
            Some(cs) => add_real(cs, &r.real, name, FileIngestionMethod::Recursive, sub.as_deref()),
            None => {
                let hash = match &sub {
                    Some(t) => super::hash_tree(&r.real, &|rel| t.contains(rel)).map(|(h, _)| h),
                    None => ndeploy_store::nar::hash_path(HashAlgo::Sha256, Path::new(&r.real))
                        .map(|(h, _)| h)
                        .map_err(|e| super::FetchError::Input(e.to_string())),
                };
                hash.and_then(|h| self.fetcher.store_path_for(FileIngestionMethod::Recursive, &h, name))
                    .map_err(|e| e.to_string())
            }
        }
        .map_err(|e| format!("while copying '{path}' to the store: {e}"))?;
        // The copy is readable too (`readFile "${./f}"`).
        if std::fs::symlink_metadata(&sp).is_err() {
            self.fetcher.sources().insert(&sp, r.real.clone(), sub);
        }
        Ok(sp)
    }

    fn computing(&self) -> Option<&crate::store::ComputingStore> {
        self.inner.computing()
    }
}

/// Add the real tree `real` (limited to `tracked`) under `name` to the
/// computing store; returns the printed store path.
fn add_real(
    cs: &crate::store::ComputingStore,
    real: &Path,
    name: &str,
    method: FileIngestionMethod,
    tracked: Option<&super::TrackedFiles>,
) -> Result<String, String> {
    let real_s = real.to_string_lossy().into_owned();
    let mut only_tracked = |p: &str, _: FileType| -> Result<bool, crate::store::StoreError> {
        let rel = p.strip_prefix(real_s.as_str()).unwrap_or(p).trim_start_matches('/');
        Ok(tracked.is_none_or(|t| t.contains(rel)))
    };
    let filter: Option<&mut crate::store::Filter<'_>> = if tracked.is_some() { Some(&mut only_tracked) } else { None };
    cs.add_source(&real_s, name, method, filter, None).map(|sp| cs.store_dir().display(&sp)).map_err(|e| e.to_string())
}

/// Record a fetched input that is not in the store with the evaluator's
/// computing store (as Nix adds every fetched tree to its store), so a later
/// step can add it from where it really is. A no-op when the path exists in
/// the store or there is no computing store.
pub fn record_fetched(store: Option<&dyn StoreIO>, fetcher: &Fetcher, store_path: &str, method: FileIngestionMethod) -> Result<(), String> {
    if std::fs::symlink_metadata(store_path).is_ok() {
        return Ok(());
    }
    let (Some(cs), Some(r)) = (store.and_then(|s| s.computing()), fetcher.sources().resolve(store_path)) else {
        return Ok(());
    };
    let base = store_path.rsplit('/').next().unwrap_or(store_path);
    let name = base.split_once('-').map_or(base, |(_, n)| n);
    let sp = add_real(cs, &r.real, name, method, r.tracked.as_deref())?;
    if sp != store_path {
        // A working tree edited meanwhile: the evaluation keeps the path it
        // computed first; the store's record is for what is there now.
        eprintln!("warning: '{}' changed while being evaluated (now '{sp}', was '{store_path}')", r.real.display());
    }
    Ok(())
}
