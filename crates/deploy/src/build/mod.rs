//! Building: register what evaluation produced in the local store, then have
//! a daemon build the toplevels.
//!
//! Evaluation (with a drv dir, see `ndeploy_eval::store`) writes every
//! `.drv` and `toFile` text under its base name plus `manifest.json` (their
//! references, and each source path's origin; for a filtered source also
//! the entries its filter rejected, so the same tree is NAR-serialised here
//! without the Nix filter function). [`registration`] turns that
//! into [`Registration`]s — path info + NAR bytes, content addresses
//! verified against the path — and [`register`] adds the ones the daemon
//! lacks, references first, with AddToStoreNar: no `nix` subprocess.
//! [`build`] then asks a daemon (local, or the target's for
//! `buildOnTarget`) to realise the toplevel with BuildPaths, handing every
//! build log line to a callback. The local store is reached with
//! [`ndeploy_store::daemon::open_local_store`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ndeploy_store::content_address::ContentAddress;
use ndeploy_store::daemon::{
    AddToStoreFlags, BuildMode, DaemonConnection, DaemonError, DerivedPath, LogField, LogMessage, OutputsSpec,
    sort_references_first,
};
use ndeploy_store::hash::{Hash, HashAlgo};
use ndeploy_eval::store::source::{Exclusions, dump_source};
use ndeploy_store::nar::NarEncoder;
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::{FileIngestionMethod, StoreDir, StorePath};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("cannot read the evaluation's {what} '{}': {source}", path.display())]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("bad manifest '{}': {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Path { path: String, message: String },
    #[error("local Nix daemon: {0}")]
    Daemon(#[from] DaemonError),
    #[error("building {drv} failed: {source}{}", log_tail(tail))]
    Failed { drv: String, source: DaemonError, tail: Vec<String> },
}

fn log_tail(tail: &[String]) -> String {
    if tail.is_empty() { String::new() } else { format!("\nlast build log lines:\n  {}", tail.join("\n  ")) }
}

/// A path to add: its info (references, CA) and its NAR.
#[derive(Debug, Clone)]
pub struct Registration {
    pub info: PathInfo,
    pub nar: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct SourceEntry {
    origin: String,
    recursive: bool,
    /// Entries a `builtins.path`/`filterSource` filter rejected.
    #[serde(default)]
    excluded: Exclusions,
}

#[derive(serde::Deserialize)]
struct Manifest {
    derivations: Vec<(String, Vec<String>)>,
    texts: Vec<(String, Vec<String>)>,
    sources: BTreeMap<String, SourceEntry>,
}

fn nar_of_bytes(contents: &[u8]) -> Result<Vec<u8>, String> {
    let mut enc = NarEncoder::new(Vec::new());
    enc.regular_bytes(false, contents).map_err(|e| e.to_string())?;
    enc.finish().map_err(|e| e.to_string())
}

fn info_for(dir: &StoreDir, path: &str, nar: &[u8], refs: &[String], ca: ContentAddress) -> Result<PathInfo, BuildError> {
    let bad = |message: String| BuildError::Path { path: path.to_owned(), message };
    let sp = dir.parse(path).map_err(|e| bad(e.to_string()))?;
    let mut info = PathInfo::new(sp.clone(), Hash::digest(HashAlgo::Sha256, nar), nar.len() as u64);
    for r in refs {
        info.references.insert(dir.parse(r).map_err(|e| bad(format!("reference '{r}': {e}")))?);
    }
    info.ca = Some(ca);
    match info.content_address_path(dir) {
        Some(p) if p == sp => Ok(info),
        Some(p) => Err(bad(format!("contents hash to {}, not to this path", dir.display(&p)))),
        None => Err(bad("no content address".into())),
    }
}

/// Everything the evaluation in `drv_dir` added to the store, in reference
/// order (references first). `skip` says which paths need no registration
/// (already valid), so their files are not even read. With `partial` (a
/// manifest written while evaluation goes on), a derivation or text whose
/// file is not written yet is left out: nothing in the manifest refers to it
/// yet, since a file is written before its path is handed to anything else.
pub fn registration(
    dir: &StoreDir,
    drv_dir: &Path,
    skip: &dyn Fn(&str) -> bool,
    partial: bool,
) -> Result<Vec<Registration>, BuildError> {
    let mpath = drv_dir.join("manifest.json");
    let bytes = std::fs::read(&mpath).map_err(|source| BuildError::Read { what: "manifest", path: mpath.clone(), source })?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| BuildError::Manifest { path: mpath.clone(), message: e.to_string() })?;
    let mut out = Vec::new();
    for (path, refs) in manifest.derivations.iter().chain(&manifest.texts) {
        if skip(path) {
            continue;
        }
        let base = path.rsplit('/').next().unwrap_or(path);
        let file = drv_dir.join(base);
        let contents = match std::fs::read(&file) {
            Ok(c) => c,
            Err(e) if partial && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(BuildError::Read { what: "derivation/text", path: file, source }),
        };
        let nar = nar_of_bytes(&contents).map_err(|message| BuildError::Path { path: path.clone(), message })?;
        let ca = ContentAddress::Text(Hash::digest(HashAlgo::Sha256, &contents));
        out.push(Registration { info: info_for(dir, path, &nar, refs, ca)?, nar });
    }
    for (path, src) in &manifest.sources {
        if skip(path) {
            continue;
        }
        let mut nar = Vec::new();
        dump_source(Path::new(&src.origin), &src.excluded, &mut nar)
            .map_err(|e| BuildError::Path { path: path.clone(), message: format!("reading '{}': {e}", src.origin) })?;
        let ca = if src.recursive {
            ContentAddress::Fixed { method: FileIngestionMethod::Recursive, hash: Hash::digest(HashAlgo::Sha256, &nar) }
        } else {
            let contents = std::fs::read(&src.origin)
                .map_err(|source| BuildError::Read { what: "source", path: PathBuf::from(&src.origin), source })?;
            ContentAddress::Fixed { method: FileIngestionMethod::Flat, hash: Hash::digest(HashAlgo::Sha256, &contents) }
        };
        out.push(Registration { info: info_for(dir, path, &nar, &[], ca)?, nar });
    }
    let mut by_path: BTreeMap<StorePath, Vec<u8>> = out.iter().map(|r| (r.info.path.clone(), r.nar.clone())).collect();
    let infos = sort_references_first(out.into_iter().map(|r| r.info).collect())?;
    Ok(infos.into_iter().filter_map(|info| by_path.remove(&info.path).map(|nar| Registration { info, nar })).collect())
}

/// Every path named by the manifest in `drv_dir`.
pub fn manifest_paths(drv_dir: &Path) -> Result<Vec<String>, BuildError> {
    let mpath = drv_dir.join("manifest.json");
    let bytes = std::fs::read(&mpath).map_err(|source| BuildError::Read { what: "manifest", path: mpath.clone(), source })?;
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| BuildError::Manifest { path: mpath, message: e.to_string() })?;
    let mut v: Vec<String> = m.derivations.into_iter().chain(m.texts).map(|(p, _)| p).collect();
    v.extend(m.sources.into_keys());
    Ok(v)
}

/// Register the evaluation's paths the daemon lacks; returns how many were added.
pub async fn register<R, W>(local: &mut DaemonConnection<R, W>, drv_dir: &Path) -> Result<usize, BuildError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    Registrar::default().register(local, drv_dir, false).await
}

/// Registers successive manifests of one evaluation (written as it goes
/// on), remembering which paths are known valid so that each round asks the
/// daemon only about new ones.
#[derive(Debug, Default)]
pub struct Registrar {
    known: BTreeSet<String>,
}

impl Registrar {
    /// Register what the manifest in `drv_dir` names and the daemon lacks
    /// (`partial`: see [`registration`]); returns how many paths were added.
    pub async fn register<R, W>(
        &mut self,
        local: &mut DaemonConnection<R, W>,
        drv_dir: &Path,
        partial: bool,
    ) -> Result<usize, BuildError>
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        let dir = local.store_dir().clone();
        let unknown: Vec<StorePath> = manifest_paths(drv_dir)?
            .iter()
            .filter(|p| !self.known.contains(*p))
            .filter_map(|p| dir.parse(p).ok())
            .collect();
        if unknown.is_empty() {
            return Ok(0);
        }
        for p in local.query_valid_paths(&unknown, false).await? {
            self.known.insert(dir.display(&p));
        }
        let regs = registration(&dir, drv_dir, &|p| self.known.contains(p), partial)?;
        let flags = AddToStoreFlags { repair: false, dont_check_sigs: true };
        for r in &regs {
            local.add_to_store_nar(&r.info, &mut r.nar.as_slice(), flags).await?;
            self.known.insert(dir.display(&r.info.path));
        }
        Ok(regs.len())
    }
}

/// The text of a build log message, if it is one.
pub fn log_line(msg: &LogMessage) -> Option<String> {
    match msg {
        LogMessage::Next(line) => Some(line.clone()),
        // resBuildLogLine (101) carries one line of a builder's output.
        LogMessage::Result { result_type: 101, fields, .. } => match fields.first() {
            Some(LogField::String(s)) => Some(s.clone()),
            _ => None,
        },
        LogMessage::StartActivity { text, .. } if !text.is_empty() => Some(text.clone()),
        _ => None,
    }
}

/// Build all outputs of `drv` on `store`, handing log lines to `on_line`.
/// The last lines are kept for the error.
pub async fn build<R, W>(
    store: &mut DaemonConnection<R, W>,
    drv: &StorePath,
    on_line: impl Fn(&str) + Send + Sync + 'static,
) -> Result<(), BuildError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let tail = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    let t = std::sync::Arc::clone(&tail);
    store.set_logger(move |msg| {
        if let Some(line) = log_line(&msg) {
            on_line(&line);
            if let Ok(mut t) = t.lock() {
                if t.len() == 20 {
                    t.pop_front();
                }
                t.push_back(ndeploy_store::daemon::stderr::strip_ansi(&line));
            }
        }
    });
    let path = DerivedPath::Built { drv: drv.clone(), outputs: OutputsSpec::All };
    let r = store.build_paths(&[path], BuildMode::Normal).await;
    store.set_logger(|_| {});
    r.map_err(|source| BuildError::Failed {
        drv: store.store_dir().display(drv),
        source,
        tail: tail.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest with a text, a derivation referring to it and a source:
    /// registrations come references-first with verified content addresses.
    #[test]
    fn registrations_from_a_manifest() {
        let d = tempfile::tempdir().unwrap();
        let dir = StoreDir::default();
        let src = d.path().join("src.txt");
        std::fs::write(&src, "hello").unwrap();
        let mut nar = Vec::new();
        ndeploy_store::nar::dump_path(&src, &mut nar).unwrap();
        let src_path = dir
            .make_fixed_output_path(FileIngestionMethod::Recursive, &Hash::digest(HashAlgo::Sha256, &nar), "src.txt", std::iter::empty(), false)
            .unwrap();
        let text_path = dir.make_text_path("t", &Hash::digest(HashAlgo::Sha256, b"text"), [&src_path]).unwrap();
        std::fs::write(d.path().join(text_path.to_string()), "text").unwrap();
        let manifest = serde_json::json!({
            "derivations": [],
            "texts": [[dir.display(&text_path), [dir.display(&src_path)]]],
            "sources": { dir.display(&src_path): { "origin": src.display().to_string(), "recursive": true, "filtered": false } },
        });
        std::fs::write(d.path().join("manifest.json"), manifest.to_string()).unwrap();
        let regs = registration(&dir, d.path(), &|_| false, false).unwrap();
        let order: Vec<&StorePath> = regs.iter().map(|r| &r.info.path).collect();
        assert_eq!(order, [&src_path, &text_path]);
        assert_eq!(regs[0].info.nar_hash, Hash::digest(HashAlgo::Sha256, &nar));
        assert!(registration(&dir, d.path(), &|p| p == dir.display(&text_path), false).unwrap().len() == 1);
        // While evaluation goes on, a text not written yet is left out, else it is an error.
        std::fs::remove_file(d.path().join(text_path.to_string())).unwrap();
        assert_eq!(registration(&dir, d.path(), &|_| false, true).unwrap().len(), 1);
        assert!(registration(&dir, d.path(), &|_| false, false).is_err());
        // A changed source no longer matches its path.
        std::fs::write(&src, "changed").unwrap();
        assert!(registration(&dir, d.path(), &|_| false, false).is_err());
    }

    /// A filtered source is re-created from its exclusions: same NAR as the
    /// filter produced, so the path verifies; a file added since does not.
    #[test]
    fn filtered_source_from_its_exclusions() {
        let d = tempfile::tempdir().unwrap();
        let dir = StoreDir::default();
        let tree = d.path().join("tree");
        std::fs::create_dir_all(tree.join("skip")).unwrap();
        std::fs::write(tree.join("keep"), "k").unwrap();
        std::fs::write(tree.join("skip/x"), "x").unwrap();
        let kept_only = d.path().join("expected");
        std::fs::create_dir_all(&kept_only).unwrap();
        std::fs::write(kept_only.join("keep"), "k").unwrap();
        let mut nar = Vec::new();
        ndeploy_store::nar::dump_path(&kept_only, &mut nar).unwrap();
        let h = Hash::digest(HashAlgo::Sha256, &nar);
        let sp = dir.make_fixed_output_path(FileIngestionMethod::Recursive, &h, "src", std::iter::empty(), false).unwrap();
        let skip = tree.join("skip").display().to_string();
        let manifest = serde_json::json!({
            "derivations": [], "texts": [],
            "sources": { dir.display(&sp): { "origin": tree.display().to_string(), "recursive": true, "filtered": true, "excluded": [skip] } },
        });
        std::fs::write(d.path().join("manifest.json"), manifest.to_string()).unwrap();
        let regs = registration(&dir, d.path(), &|_| false, false).unwrap();
        assert_eq!(regs.len(), 1);
        assert_eq!(regs[0].nar, nar);
        std::fs::write(tree.join("new"), "n").unwrap();
        let e = registration(&dir, d.path(), &|_| false, false).unwrap_err().to_string();
        assert!(e.contains("not to this path"), "{e}");
    }
}
