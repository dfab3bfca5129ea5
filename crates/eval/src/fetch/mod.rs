//! Fetchers for locked inputs: `fetchurl`, `fetchTarball`, `fetchGit` and
//! `fetchTree` (types `file`, `tarball`, `path`, `git`, `github`, `gitlab`,
//! `sourcehut`), as Nix 2.8 resolves them, without a Nix daemon and without
//! writing to the store. Tarballs may be gzip, xz, bzip2, zstd or plain tar,
//! or zip archives.
//!
//! Design:
//! - Every fetched input has the store path Nix would give it: flat files
//!   `make_fixed_output_path(Flat, sha256(file), name)`, trees
//!   `make_fixed_output_path(Recursive, narHash, name)` (name `source` by
//!   default). When the expected hash is known and that path exists in the
//!   local store it is used as is and nothing is downloaded.
//! - Otherwise the bytes land in ndeploy's own cache,
//!   `$XDG_CACHE_HOME/ndeploy/sources/<store path base name>` (fallback
//!   `~/.cache/ndeploy`), written under a temporary name and renamed only
//!   after the hash is verified, so a cache entry is always complete and
//!   keyed by its content hash.
//! - The [`SourceMap`] records store path → real directory for inputs that
//!   are not in the store (cache entries, local `path:` inputs, a flake's
//!   git checkout with only its tracked files visible). [`FetchIO`] is the
//!   `EvalIO` that reads through it, so `import "${src}/default.nix"` works
//!   while values show store paths; [`FetchStore`] does the same for
//!   copying such paths to the store. [`record_fetched`] tells the
//!   evaluator's computing store about fetched paths that are not in the
//!   store, so its manifest says where their contents really are.
//! - Offline mode (`NDEPLOY_OFFLINE=1`): a missing input is an error naming
//!   it and its store path, instead of a download.
//! - Network access goes through the injected [`Downloader`]; git through
//!   the `git` program on local repositories only.
//!
//! Invariants: a hash mismatch is always an error naming both hashes; a
//! tarball entry that is absolute, contains `..` or would be written through
//! a symlink is rejected; no function here panics on input data.

mod git;
mod git_remote;
mod http;
mod input;
mod io;
mod source_map;
mod tree_hash;
mod unpack;
mod zip;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ndeploy_store::hash::{Hash, HashAlgo};
use ndeploy_store::store_path::{FileIngestionMethod, StoreDir};
use thiserror::Error;

pub use git::{GitInfo, GitInput, local_repo, tracked_files, work_tree_root};
pub use http::{Downloader, HttpDownloader};
pub use input::{AttrValue, Input, Tree, format_utc, parse_url, split_query};
pub use io::{FetchIO, FetchStore, record_fetched};
pub use source_map::{SourceMap, TrackedFiles};
pub use tree_hash::hash_tree;
pub use unpack::unpack_tarball;

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("unable to download '{url}': {msg}")]
    Download { url: String, msg: String },
    #[error("cannot fetch '{input}': not in the Nix store nor in ndeploy's cache ({path}), and offline mode is on")]
    Offline { input: String, path: String },
    #[error("hash mismatch in file downloaded from '{url}':\n  specified: {specified}\n  got:       {got}")]
    HashMismatch { url: String, specified: String, got: String },
    #[error("NAR hash mismatch in input '{input}' ({path}), expected '{expected}', got '{got}'")]
    NarHashMismatch { input: String, path: String, expected: String, got: String },
    #[error("unpacking '{url}': {msg}")]
    Unpack { url: String, msg: String },
    #[error("tarball '{url}' contains an unsafe entry '{entry}' (absolute, '..' or through a symlink)")]
    UnsafeEntry { url: String, entry: String },
    #[error("tarball '{url}' contains an unexpected number of top-level files")]
    TopLevel { url: String },
    #[error("git: {0}")]
    Git(String),
    #[error("{op} '{}': {err}", path.display())]
    Io { op: &'static str, path: PathBuf, err: std::io::Error },
    #[error("invalid store path for '{name}': {msg}")]
    StorePath { name: String, msg: String },
    #[error("{0}")]
    Input(String),
}

pub type FetchResult<T> = Result<T, FetchError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FetchError + 'a {
    move |err| FetchError::Io { op, path: path.to_path_buf(), err }
}

/// A fetched input: its store path, where its contents really are, and its
/// NAR hash (for flat files: the file's NAR hash too, as Nix records it).
#[derive(Clone, Debug)]
pub struct Fetched {
    pub store_path: String,
    pub real_path: PathBuf,
    pub nar_hash: Hash,
    /// For local trees: the newest mtime in the tree (`path` inputs'
    /// `lastModified`).
    pub mtime: i64,
}

/// The fetcher: cache location, store directory, source map, downloads.
pub struct Fetcher {
    store_dir: StoreDir,
    cache_dir: PathBuf,
    offline: bool,
    /// Seconds an unlocked download is reused across runs.
    tarball_ttl: u64,
    downloader: Box<dyn Downloader>,
    sources: SourceMap,
    /// Unlocked fetches already done in this evaluation (url → result), so
    /// one evaluation sees one version.
    memo: Mutex<HashMap<String, Fetched>>,
    tmp_counter: AtomicU64,
}

/// `$XDG_CACHE_HOME/ndeploy`, else `$HOME/.cache/ndeploy`, else a directory
/// under the system temporary directory.
pub fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("ndeploy");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(h).join(".cache").join("ndeploy");
    }
    std::env::temp_dir().join("ndeploy-cache")
}

impl Fetcher {
    pub fn new(store_dir: &str, cache_dir: PathBuf, downloader: Box<dyn Downloader>) -> Fetcher {
        Fetcher {
            store_dir: StoreDir::new(store_dir),
            cache_dir,
            offline: false,
            tarball_ttl: 3600,
            downloader,
            sources: SourceMap::new(store_dir),
            memo: Mutex::new(HashMap::new()),
            tmp_counter: AtomicU64::new(0),
        }
    }

    /// The default fetcher: real HTTP, the default cache directory, offline
    /// when `NDEPLOY_OFFLINE` is set to something other than `0`/empty,
    /// unlocked downloads reused for `NDEPLOY_TARBALL_TTL` seconds (3600).
    pub fn from_env(store_dir: &str) -> Fetcher {
        let mut f = Fetcher::new(store_dir, default_cache_dir(), Box::new(HttpDownloader::new()));
        f.offline = std::env::var("NDEPLOY_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
        if let Some(ttl) = std::env::var("NDEPLOY_TARBALL_TTL").ok().and_then(|v| v.parse().ok()) {
            f.tarball_ttl = ttl;
        }
        f
    }

    pub fn set_offline(&mut self, offline: bool) {
        self.offline = offline;
    }

    pub fn set_tarball_ttl(&mut self, seconds: u64) {
        self.tarball_ttl = seconds;
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    pub fn sources(&self) -> &SourceMap {
        &self.sources
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    fn sources_dir(&self) -> PathBuf {
        self.cache_dir.join("sources")
    }

    /// A fresh path in the cache's temporary directory (created parent).
    fn tmp_path(&self, what: &str) -> FetchResult<PathBuf> {
        let dir = self.cache_dir.join("tmp");
        std::fs::create_dir_all(&dir).map_err(io_err("creating directory", &dir))?;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        Ok(dir.join(format!("{what}-{}-{n}", std::process::id())))
    }

    /// The store path for content with `hash` ingested by `method` as `name`.
    pub fn store_path_for(&self, method: FileIngestionMethod, hash: &Hash, name: &str) -> FetchResult<String> {
        let sp = self
            .store_dir
            .make_fixed_output_path(method, hash, name, [], false)
            .map_err(|e| FetchError::StorePath { name: name.to_string(), msg: e.to_string() })?;
        Ok(self.store_dir.display(&sp))
    }

    /// Where the contents of `store_path` are: the store itself, or the
    /// cache entry (registered in the source map); `None` when neither.
    fn locate(&self, store_path: &str) -> Option<PathBuf> {
        if std::fs::symlink_metadata(store_path).is_ok() {
            return Some(PathBuf::from(store_path));
        }
        let base = store_path.rsplit('/').next().unwrap_or(store_path);
        let cached = self.sources_dir().join(base);
        if std::fs::symlink_metadata(&cached).is_ok() {
            self.sources.insert(store_path, cached.clone(), None);
            return Some(cached);
        }
        None
    }

    /// Move a verified `tmp` entry into the cache under `store_path`'s base
    /// name and register it; an entry already there wins.
    fn commit_to_cache(&self, tmp: &Path, store_path: &str) -> FetchResult<PathBuf> {
        let dir = self.sources_dir();
        std::fs::create_dir_all(&dir).map_err(io_err("creating directory", &dir))?;
        let base = store_path.rsplit('/').next().unwrap_or(store_path);
        let dest = dir.join(base);
        if std::fs::symlink_metadata(&dest).is_ok() {
            remove_any(tmp);
        } else if let Err(e) = std::fs::rename(tmp, &dest) {
            if std::fs::symlink_metadata(&dest).is_err() {
                remove_any(tmp);
                return Err(io_err("moving into the cache", &dest)(e));
            }
            remove_any(tmp);
        }
        self.sources.insert(store_path, dest.clone(), None);
        Ok(dest)
    }

    /// Download `url` into a temporary file, returning its path.
    fn download_to_tmp(&self, url: &str) -> FetchResult<PathBuf> {
        let tmp = self.tmp_path("download")?;
        let mut file = std::fs::File::create(&tmp).map_err(io_err("creating file", &tmp))?;
        let r = self.downloader.download(url, &mut file);
        drop(file);
        if let Err(msg) = r {
            remove_any(&tmp);
            return Err(FetchError::Download { url: url.to_string(), msg });
        }
        Ok(tmp)
    }

    /// `fetchurl`: a flat file. With `expected` (sha256 of the file), an
    /// existing store path or cache entry is used without downloading.
    pub fn fetch_file(&self, url: &str, expected: Option<&Hash>, name: &str) -> FetchResult<Fetched> {
        if let Some(h) = expected {
            let sp = self.store_path_for(FileIngestionMethod::Flat, h, name)?;
            if let Some(real) = self.locate(&sp) {
                let nar_hash = file_nar_hash(&real)?;
                return Ok(Fetched { store_path: sp, real_path: real, nar_hash, mtime: 0 });
            }
            if self.offline {
                return Err(FetchError::Offline { input: url.to_string(), path: sp });
            }
        } else if let Some(f) = self.unlocked_get(&format!("file:{name}:{url}"))? {
            return Ok(f);
        }
        let tmp = self.download_to_tmp(url)?;
        let (got, _) = ndeploy_store::nar::hash_file(HashAlgo::Sha256, &tmp).map_err(|e| {
            remove_any(&tmp);
            FetchError::Unpack { url: url.to_string(), msg: e.to_string() }
        })?;
        if let Some(h) = expected
            && *h != got
        {
            remove_any(&tmp);
            return Err(FetchError::HashMismatch {
                url: url.to_string(),
                specified: h.encode(ndeploy_store::hash::HashEncoding::Nix32, true),
                got: got.encode(ndeploy_store::hash::HashEncoding::Nix32, true),
            });
        }
        let sp = self.store_path_for(FileIngestionMethod::Flat, &got, name)?;
        let real = self.commit_to_cache(&tmp, &sp)?;
        let nar_hash = file_nar_hash(&real)?;
        let f = Fetched { store_path: sp, real_path: real, nar_hash, mtime: 0 };
        if expected.is_none() {
            self.unlocked_put(format!("file:{name}:{url}"), &f);
        }
        Ok(f)
    }

    /// `fetchTarball` / `fetchTree { type = "tarball"; }`: download, unpack,
    /// strip the single top-level directory. `expected` is the NAR hash of
    /// the unpacked tree; a mismatch is reported by the caller (the wording
    /// differs), so this returns what it got. With `expected`, an existing
    /// store path or cache entry is used without downloading.
    pub fn fetch_tarball(&self, url: &str, expected: Option<&Hash>, name: &str) -> FetchResult<Fetched> {
        if let Some(h) = expected {
            let sp = self.store_path_for(FileIngestionMethod::Recursive, h, name)?;
            if let Some(real) = self.locate(&sp) {
                return Ok(Fetched { store_path: sp, real_path: real, nar_hash: *h, mtime: 0 });
            }
            if self.offline {
                return Err(FetchError::Offline { input: url.to_string(), path: sp });
            }
        } else if let Some(f) = self.unlocked_get(&format!("tarball:{name}:{url}"))? {
            return Ok(f);
        }
        let tmp = self.download_to_tmp(url)?;
        let dir = self.tmp_path("unpack")?;
        let unpacked = std::fs::File::open(&tmp)
            .map_err(io_err("opening file", &tmp))
            .and_then(|f| unpack_tarball(std::io::BufReader::new(f), &dir, url));
        remove_any(&tmp);
        let top = match unpacked.and_then(|()| single_top_level(&dir, url)) {
            Ok(t) => t,
            Err(e) => {
                remove_any(&dir);
                return Err(e);
            }
        };
        let (got, _) = match hash_tree(&top, &|_| true) {
            Ok(h) => h,
            Err(e) => {
                remove_any(&dir);
                return Err(e);
            }
        };
        let sp = self.store_path_for(FileIngestionMethod::Recursive, &got, name)?;
        let real = self.commit_to_cache(&top, &sp);
        remove_any(&dir);
        let f = Fetched { store_path: sp, real_path: real?, nar_hash: got, mtime: 0 };
        if expected.is_none() {
            self.unlocked_put(format!("tarball:{name}:{url}"), &f);
        }
        Ok(f)
    }

    /// A local directory (`path` inputs, a flake's own directory): its NAR
    /// hash gives the store path; the directory itself is mapped, nothing is
    /// copied. `tracked` limits it to a git checkout's tracked files.
    pub fn fetch_local(&self, dir: &Path, name: &str, tracked: Option<TrackedFiles>) -> FetchResult<Fetched> {
        let tracked = tracked.map(std::sync::Arc::new);
        let (h, mtime) = match &tracked {
            Some(t) => hash_tree(dir, &|rel| t.contains(rel))?,
            None => hash_tree(dir, &|_| true)?,
        };
        let sp = self.store_path_for(FileIngestionMethod::Recursive, &h, name)?;
        if std::fs::symlink_metadata(&sp).is_err() {
            self.sources.insert(&sp, dir.to_path_buf(), tracked);
        }
        Ok(Fetched { store_path: sp.clone(), real_path: dir.to_path_buf(), nar_hash: h, mtime })
    }

    /// A tree whose NAR hash is known (a locked `path`/`git` input): the
    /// store path or cache entry if present, else `None`.
    pub fn lookup_tree(&self, nar_hash: &Hash, name: &str) -> FetchResult<Option<Fetched>> {
        let sp = self.store_path_for(FileIngestionMethod::Recursive, nar_hash, name)?;
        Ok(self
            .locate(&sp)
            .map(|real| Fetched { store_path: sp, real_path: real, nar_hash: *nar_hash, mtime: 0 }))
    }

    /// Put an exported tree (a temporary directory) into the cache under
    /// its NAR hash.
    fn add_tree(&self, tmp: &Path, name: &str) -> FetchResult<Fetched> {
        let (h, _) = hash_tree(tmp, &|_| true)?;
        let sp = self.store_path_for(FileIngestionMethod::Recursive, &h, name)?;
        if let Some(real) = self.locate(&sp) {
            remove_any(tmp);
            return Ok(Fetched { store_path: sp, real_path: real, nar_hash: h, mtime: 0 });
        }
        let real = self.commit_to_cache(tmp, &sp)?;
        Ok(Fetched { store_path: sp, real_path: real, nar_hash: h, mtime: 0 })
    }

    /// An unlocked fetch (no hash) done before: in this evaluation, or by
    /// an earlier run less than the TTL ago (Nix's `tarball-ttl`; any age
    /// when offline), through its index file `urls/<sha256 of key>`.
    fn unlocked_get(&self, key: &str) -> FetchResult<Option<Fetched>> {
        if let Some(f) = self.memo_get(key) {
            return Ok(Some(f));
        }
        let index = self.url_index(key);
        let Ok(text) = std::fs::read_to_string(&index) else {
            if self.offline {
                let input = key.splitn(3, ':').nth(2).unwrap_or(key).to_string();
                return Err(FetchError::Offline { input, path: "never downloaded".into() });
            }
            return Ok(None);
        };
        let mut lines = text.lines();
        let (Some(time), Some(hash), Some(sp)) = (lines.next(), lines.next(), lines.next()) else { return Ok(None) };
        let age = now().saturating_sub(time.parse().unwrap_or(0));
        if age >= self.tarball_ttl && !self.offline {
            return Ok(None);
        }
        let (Ok(nar_hash), Some(real)) = (Hash::parse(hash, Some(HashAlgo::Sha256)), self.locate(sp)) else {
            return Ok(None);
        };
        let f = Fetched { store_path: sp.to_string(), real_path: real, nar_hash, mtime: 0 };
        self.memo_put(key.to_string(), f.clone());
        Ok(Some(f))
    }

    fn unlocked_put(&self, key: String, f: &Fetched) {
        let index = self.url_index(&key);
        if let Some(dir) = index.parent()
            && std::fs::create_dir_all(dir).is_ok()
        {
            // Best effort: without it the next run downloads again.
            let _ = std::fs::write(&index, format!("{}\n{}\n{}\n", now(), f.nar_hash.to_sri(), f.store_path));
        }
        self.memo_put(key, f.clone());
    }

    fn url_index(&self, key: &str) -> PathBuf {
        self.cache_dir.join("urls").join(Hash::digest(HashAlgo::Sha256, key.as_bytes()).to_nix32())
    }

    fn memo_get(&self, key: &str) -> Option<Fetched> {
        self.memo.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    fn memo_put(&self, key: String, f: Fetched) {
        self.memo.lock().unwrap_or_else(|e| e.into_inner()).insert(key, f);
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The NAR hash of a regular file (what Nix records as a flat path's
/// `narHash`).
fn file_nar_hash(path: &Path) -> FetchResult<Hash> {
    let (h, _) = ndeploy_store::nar::hash_path(HashAlgo::Sha256, path)
        .map_err(|e| FetchError::Input(format!("hashing '{}': {e}", path.display())))?;
    Ok(h)
}

/// The single entry of an unpacked tarball's directory.
fn single_top_level(dir: &Path, url: &str) -> FetchResult<PathBuf> {
    let mut entries = std::fs::read_dir(dir).map_err(io_err("reading directory", dir))?;
    let first = entries.next();
    match (first, entries.next()) {
        (Some(Ok(e)), None) => Ok(e.path()),
        _ => Err(FetchError::TopLevel { url: url.to_string() }),
    }
}

/// Remove a file or directory tree, ignoring errors (temporary data).
fn remove_any(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            make_writable(p);
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// Unpacked trees may contain read-only directories; make them removable.
fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755));
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
