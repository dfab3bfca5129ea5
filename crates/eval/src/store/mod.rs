//! The store as evaluation sees it: a "computing" store that knows the path
//! of everything the language adds to the store without writing anything.
//!
//! Design: [`ComputingStore`] is what `nix-instantiate --readonly-mode`
//! does in-process:
//! - source paths (`"${./dir}"`, `builtins.path`, `filterSource`) are
//!   NAR-hashed from the real file system ([`source`]), unfiltered hashes
//!   shared across threads by [`source::SourceCache`];
//! - text files (`builtins.toFile`) and derivations (`derivationStrict`) get
//!   their paths from their contents; derivations are recorded with their
//!   memoised modulo hashes in a [`registry::Registry`];
//! - `.drv` files this evaluation did not create are read from the store
//!   directory on disk (only when a context names one);
//! - the references of a store path (`readFile`'s context) are those of a
//!   text file or derivation of this evaluation, of a `.drv` file on disk,
//!   or else what an injected [`ReferencesReader`] (the store's database)
//!   says; without one such a path has none.
//!
//! With a drv dir ([`ComputingStore::with_drv_dir`]) every `.drv` file and
//! every `toFile` text is also written there under its store base name, and
//! [`ComputingStore::write_manifest`] records what a later registration step
//! needs (`manifest.json`: each path's kind, references, and for sources the
//! origin and the entries a filter rejected). Nothing is ever written to the
//! store directory itself.

pub mod drv_info;
pub mod local_db;
pub mod registry;
pub mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndeploy_store::derivation::{Derivation, DerivationError};
use ndeploy_store::hash::{Hash, HashAlgo};
use ndeploy_store::store_path::{FileIngestionMethod, StoreDir, StorePath, StorePathError};
use thiserror::Error;

use crate::io::StoreIO;
use registry::{Registered, Registry};
use source::{Exclusions, SourceCache, SourceError, hash_filtered_source};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Derivation(#[from] DerivationError),
    #[error(transparent)]
    Path(#[from] StorePathError),
    #[error("no hash for output '{output}' of derivation '{drv}'")]
    NoSuchOutput { output: String, drv: String },
    #[error("store path mismatch in (possibly filtered) path added from '{0}'")]
    PathMismatch(String),
    #[error("the path filter failed")]
    FilterFailed,
    #[error("{0}")]
    Other(String),
}

/// A filter over the entries of a source tree (full path, type).
pub type Filter<'a> = source::EntryFilter<'a, StoreError>;

/// A source path added to the store, for the manifest.
#[derive(Debug, Clone, serde::Serialize)]
struct SourceEntry {
    origin: String,
    recursive: bool,
    filtered: bool,
    /// What the filter rejected, so registration can re-create the tree.
    #[serde(skip_serializing_if = "Exclusions::is_empty")]
    excluded: Exclusions,
}

/// The references the real store records for a valid path (`None`: not
/// valid, or unknown).
pub type ReferencesReader = dyn Fn(&StoreDir, &StorePath) -> Option<Vec<StorePath>> + Send + Sync;

pub struct ComputingStore {
    dir: StoreDir,
    sources: SourceCache,
    registry: Registry,
    drv_dir: Option<PathBuf>,
    added: Mutex<BTreeMap<String, SourceEntry>>,
    references: Option<Box<ReferencesReader>>,
}

/// Read a `.drv` file from the store directory on disk.
fn read_drv_from_disk(dir: &StoreDir, p: &StorePath) -> Result<Derivation, StoreError> {
    let file = dir.display(p);
    let bytes = std::fs::read(&file).map_err(|e| StoreError::Other(format!("reading derivation '{file}': {e}")))?;
    Derivation::parse_drv_file(dir, p, &bytes)
        .map_err(|e| StoreError::Other(format!("parsing derivation '{file}': {e}")))
}

impl ComputingStore {
    pub fn new(store_dir: &str) -> ComputingStore {
        let dir = StoreDir::new(store_dir);
        ComputingStore {
            registry: Registry::new(dir.clone(), Box::new(read_drv_from_disk)),
            dir,
            sources: SourceCache::new(),
            drv_dir: None,
            added: Mutex::new(BTreeMap::new()),
            references: None,
        }
    }

    /// Ask `read` for the references of store paths this evaluation knows
    /// nothing about (see [`ComputingStore::references_of`]).
    pub fn with_references_reader(mut self, read: Box<ReferencesReader>) -> ComputingStore {
        self.references = Some(read);
        self
    }

    /// The references of store path `p`, as Nix's `queryPathInfo` would
    /// give them: for text files and derivations from what they are made
    /// of, else from the [`ReferencesReader`]; none when nothing is known.
    pub fn references_of(&self, p: &StorePath) -> Result<Vec<StorePath>, StoreError> {
        let known = match self.registry.known_references(p) {
            Ok(k) => k,
            // A `.drv` path that is neither ours nor on disk: not valid.
            Err(_) if p.is_derivation() && !self.exists(p) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        if let Some(r) = known {
            return Ok(r);
        }
        Ok(self.references.as_ref().and_then(|read| read(&self.dir, p)).unwrap_or_default())
    }

    /// Also write `.drv` files and `toFile` texts into `dir` (created if needed).
    pub fn with_drv_dir(mut self, dir: PathBuf) -> ComputingStore {
        self.drv_dir = Some(dir);
        self
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.dir
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether `p` exists in the store directory on disk (Nix's `isValidPath`
    /// as far as read-only evaluation can tell).
    pub fn exists(&self, p: &StorePath) -> bool {
        Path::new(&self.dir.display(p)).symlink_metadata().is_ok()
    }

    /// Nix's `addPath` in read-only mode: the path `path` would get when added
    /// under `name` by `method`, filtered by `filter`. With `expected` (a
    /// sha256), the expected path is returned as is when it already exists,
    /// else the computed one must equal it.
    pub fn add_source(
        &self,
        path: &str,
        name: &str,
        method: FileIngestionMethod,
        filter: Option<&mut Filter<'_>>,
        expected: Option<&Hash>,
    ) -> Result<StorePath, StoreError> {
        let expected_path = match expected {
            Some(h) => Some(self.dir.make_fixed_output_path(method, h, name, [], false)?),
            None => None,
        };
        if let Some(p) = &expected_path
            && self.exists(p)
        {
            return Ok(p.clone());
        }
        let filtered = filter.is_some();
        let (hash, excluded) = match filter {
            None => (self.sources.hash(path, method).map_err(StoreError::Other)?, Exclusions::default()),
            Some(f) => match hash_filtered_source(Path::new(path), method, f) {
                Ok(h) => h,
                Err(SourceError::Dump(e)) => return Err(StoreError::Other(e.to_string())),
                Err(SourceError::Filter(e)) => return Err(e),
            },
        };
        let sp = self.dir.make_fixed_output_path(method, &hash, name, [], false)?;
        if expected_path.as_ref().is_some_and(|e| *e != sp) {
            return Err(StoreError::PathMismatch(path.to_owned()));
        }
        if self.drv_dir.is_some() {
            let recursive = method == FileIngestionMethod::Recursive;
            let entry = SourceEntry { origin: path.to_owned(), recursive, filtered, excluded };
            self.added.lock().unwrap_or_else(|e| e.into_inner()).insert(self.dir.display(&sp), entry);
        }
        Ok(sp)
    }

    /// `builtins.toFile`: a text file referencing `refs`.
    pub fn add_text(&self, name: &str, contents: &str, refs: Vec<StorePath>) -> Result<StorePath, StoreError> {
        let hash = Hash::digest(HashAlgo::Sha256, contents.as_bytes());
        let sp = self.dir.make_text_path(name, &hash, &refs)?;
        self.registry.add_text(sp.clone(), refs);
        self.write_out(&sp, contents.as_bytes())?;
        Ok(sp)
    }

    /// Instantiate a derivation (see [`Registry::instantiate`]); with a drv
    /// dir its `.drv` file is written there.
    pub fn add_derivation(&self, drv: Derivation) -> Result<Registered, StoreError> {
        let r = self.registry.instantiate(drv)?;
        self.write_out(&r.drv_path, &r.aterm)?;
        Ok(r)
    }

    fn write_out(&self, sp: &StorePath, bytes: &[u8]) -> Result<(), StoreError> {
        let Some(dir) = &self.drv_dir else { return Ok(()) };
        let file = dir.join(sp.to_string());
        if file.exists() {
            return Ok(());
        }
        let err = |e: std::io::Error| StoreError::Other(format!("writing '{}': {e}", file.display()));
        std::fs::create_dir_all(dir).map_err(err)?;
        // Write then rename, so a reader never sees a partial file. Threads
        // writing the same file at once each use their own temporary.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{sp}.{}.{n}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, &file).map_err(err)
    }

    /// Write `manifest.json` into the drv dir: every derivation (in creation
    /// order) and text with its references, every source with its origin.
    pub fn write_manifest(&self) -> Result<(), StoreError> {
        let Some(dir) = &self.drv_dir else { return Ok(()) };
        #[derive(serde::Serialize)]
        struct Manifest {
            derivations: Vec<(String, Vec<String>)>,
            texts: Vec<(String, Vec<String>)>,
            sources: BTreeMap<String, SourceEntry>,
        }
        let show = |v: &mut dyn Iterator<Item = &StorePath>| v.map(|p| self.dir.display(p)).collect::<Vec<_>>();
        let derivations = self
            .registry
            .derivations()?
            .iter()
            .map(|(p, d)| (self.dir.display(p), show(&mut d.references())))
            .collect();
        let texts = self.registry.texts().iter().map(|(p, r)| (self.dir.display(p), show(&mut r.iter()))).collect();
        let sources = self.added.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let json = serde_json::to_vec_pretty(&Manifest { derivations, texts, sources })
            .map_err(|e| StoreError::Other(e.to_string()))?;
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Other(format!("creating '{}': {e}", dir.display())))?;
        let file = dir.join("manifest.json");
        std::fs::write(&file, json).map_err(|e| StoreError::Other(format!("writing '{}': {e}", file.display())))
    }
}

impl StoreIO for ComputingStore {
    fn copy_path_to_store(&self, path: &str) -> Result<String, String> {
        let name = crate::support::path::base_name_of(path);
        self.add_source(path, name, FileIngestionMethod::Recursive, None, None)
            .map(|sp| self.dir.display(&sp))
            .map_err(|e| format!("while copying '{path}' to the store: {e}"))
    }

    fn computing(&self) -> Option<&ComputingStore> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::{EvalConfig, Evaluator};

    /// A DAG of derivations, each depending on two earlier ones.
    const DAG: &str = r#"
      let
        mk = i: deps: derivation { name = "d${toString i}"; system = "x86_64-linux"; builder = "/bin/sh"; inherit deps; };
        ds = builtins.genList (i: mk i (if i == 0 then [ ] else [ (builtins.elemAt ds (i / 2)) (builtins.elemAt ds (i - 1)).out ])) 200;
      in ds
    "#;

    fn evaluator() -> (Evaluator, Arc<super::ComputingStore>) {
        let store = Arc::new(super::ComputingStore::new("/nix/store"));
        let mut ev = Evaluator::new(EvalConfig::default(), Arc::new(crate::io::MemIO::new()));
        ev.store = Some(store.clone());
        (ev, store)
    }

    fn drv_paths(ev: &Evaluator, list: &crate::Value, reverse: bool) -> Vec<String> {
        let l = ev.force_list(list).unwrap();
        let mut idx: Vec<usize> = (0..l.len()).collect();
        if reverse {
            idx.reverse();
        }
        let mut out = vec![String::new(); l.len()];
        for i in idx {
            let d = ev.force_attrs(&l[i]).unwrap();
            out[i] = ev.force_string(d.get_str("drvPath").unwrap()).unwrap().as_str().to_owned();
        }
        out
    }

    #[test]
    fn threads_instantiating_one_heap_agree_with_one_thread() {
        let (single, _) = evaluator();
        let v = single.eval_str(DAG).unwrap();
        let want = drv_paths(&single, &v, false);
        let (ev, store) = evaluator();
        let v = ev.eval_str(DAG).unwrap();
        let got: Vec<Vec<String>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..6)
                .map(|t| {
                    s.spawn({
                        let (ev, v) = (&ev, &v);
                        move || drv_paths(ev, v, t % 2 == 1)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for g in got {
            assert_eq!(g, want);
        }
        assert_eq!(store.registry().len(), 200);
    }
}
