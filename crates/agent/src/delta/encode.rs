//! Planning a NAR against what the target holds (the deployer's side).
//!
//! For each regular file, in NAR order, the first method that applies wins
//! (see [`super`]): a reference to identical contents on the target; a
//! patch of a few runs (rewritten store hashes) or else a zstd
//! delta against the same relative path in the target's closest previous
//! version of the package (or, when that path is gone, the one file there
//! whose path differs only in version numbers, or that has the same name in
//! another directory), kept only if it beats plain compression; chunks
//! of such a base for files too large to delta; for a large file without a
//! base, the chunks any large file on the target has (the knowledge's
//! store-wide chunk index), if it has any; else raw zstd, as the next
//! chunk of the NAR's raw stream ([`RawStream`]: earlier raw files are the
//! context of later ones). A base file is
//! used only if the deployer's copy has the BLAKE3 the target reported, so a
//! plan never relies on bytes the target does not have.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use ndeploy_store::store_path::StorePath;
use thiserror::Error;

use super::chunks::{self, MIN_CHUNKED_FILE};
use super::codec::RawStream;
use super::knowledge::version_blind;
use super::{MAX_DELTA_FILE, Method, NarPlan, Part, PlanEntry, PlanNode, PlanStats, TargetKnowledge, codec, patch};
use crate::manifest::{FileHash, ManifestError, NarManifest, Node, RelPath};

#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("reading '{rel}' of '{path}': {error}")]
    Read { path: String, rel: String, error: io::Error },
    #[error("'{rel}' of '{path}' has {got} bytes, the manifest says {expected}")]
    SizeChanged { path: String, rel: String, got: u64, expected: u64 },
    #[error("compressing '{rel}': {error}")]
    Compress { rel: String, error: io::Error },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Knobs of [`encode`]; the default uses every method.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    pub raw_level: i32,
    pub delta_level: i32,
    pub refs: bool,
    pub deltas: bool,
    pub chunks: bool,
    /// How many previous versions to look for base files in.
    pub max_bases: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { raw_level: codec::RAW_LEVEL, delta_level: codec::DELTA_LEVEL, refs: true, deltas: true, chunks: true, max_bases: 2 }
    }
}

/// A planned NAR and its payload.
#[derive(Debug, Clone, Default)]
pub struct EncodedNar {
    pub plan: NarPlan,
    pub payload: Vec<u8>,
    pub stats: PlanStats,
}

/// Files smaller than this are never delta-coded (the plan entry would cost more).
const MIN_DELTA_FILE: u64 = 64;

/// A base candidate: a previous version and its files.
struct Base<'m> {
    path: StorePath,
    /// rel → (BLAKE3, size).
    files: HashMap<&'m RelPath, (FileHash, u64)>,
    /// Other keys (see [`base_keys`]) → rel; `None` when ambiguous.
    keys: HashMap<Vec<u8>, Option<&'m RelPath>>,
}

/// Keys under which a file may find its old self when its path changed, in
/// order of preference: the path with version numbers blanked
/// (`libfoo.so.1.2` → `libfoo.so.1.3`), the file name alone (moved to
/// another directory), and the file name with versions blanked. Each key is
/// tagged so they cannot collide.
fn base_keys(rel: &RelPath) -> [Vec<u8>; 3] {
    let name = rel.split_last().map_or(&[][..], |(_, n)| n);
    let tagged = |tag: u8, mut v: Vec<u8>| {
        v.insert(0, tag);
        v
    };
    [tagged(b'v', version_blind(rel.as_bytes())), tagged(b'n', name.to_vec()), tagged(b'b', version_blind(name))]
}

impl<'m> Base<'m> {
    fn new(path: StorePath, m: &'m NarManifest) -> Base<'m> {
        let mut files = HashMap::new();
        let mut keys: HashMap<Vec<u8>, Option<&RelPath>> = HashMap::new();
        for (rel, _, size, b3) in m.files() {
            files.insert(rel, (b3, size));
            for k in base_keys(rel) {
                keys.entry(k).and_modify(|v| *v = None).or_insert(Some(rel));
            }
        }
        Base { path, files, keys }
    }

    /// The base file for `rel`: the same path, else the only one that
    /// matches it under one of the [`base_keys`], in their order.
    fn file_for(&self, rel: &RelPath) -> Option<(&'m RelPath, FileHash, u64)> {
        if let Some((&r, &(b3, size))) = self.files.get_key_value(rel) {
            return Some((r, b3, size));
        }
        let r = base_keys(rel).iter().find_map(|k| self.keys.get(k).copied().flatten())?;
        self.files.get(r).map(|&(b3, size)| (r, b3, size))
    }
}


/// Plan the NAR of `path` (whose manifest is `manifest`) for a target
/// described by `knowledge`; `contents` reads a file of `path` by relative path.
pub fn encode(
    path: &StorePath,
    manifest: &NarManifest,
    contents: &mut dyn FnMut(&RelPath) -> io::Result<Vec<u8>>,
    knowledge: &dyn TargetKnowledge,
    opts: &EncodeOptions,
) -> Result<EncodedNar, EncodeError> {
    manifest.check()?;
    // Base candidates: the closest previous versions the target holds.
    let bases: Vec<Base<'_>> = if opts.deltas || opts.chunks {
        knowledge
            .previous_versions(path)
            .into_iter()
            .take(opts.max_bases)
            .filter_map(|p| {
                let m = knowledge.manifest(&p)?;
                Some(Base::new(p, m))
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut out = EncodedNar::default();
    let mut raw = None;
    let ctx = |rel: &RelPath| (path.to_string(), rel.to_string());
    for e in &manifest.entries {
        let node = match &e.node {
            Node::Directory => PlanNode::Directory,
            Node::Symlink { target } => PlanNode::Symlink { target: target.clone() },
            Node::Regular { executable, size, b3 } => {
                let how = plan_file(&e.path, *size, b3, contents, knowledge, &bases, opts, &mut out, &mut raw, &ctx)?;
                PlanNode::Regular { executable: *executable, size: *size, b3: *b3, how }
            }
        };
        out.plan.entries.push(PlanEntry { path: e.path.clone(), node });
    }
    out.plan.payload_len = out.payload.len() as u64;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn plan_file(
    rel: &RelPath,
    size: u64,
    b3: &FileHash,
    contents: &mut dyn FnMut(&RelPath) -> io::Result<Vec<u8>>,
    knowledge: &dyn TargetKnowledge,
    bases: &[Base<'_>],
    opts: &EncodeOptions,
    out: &mut EncodedNar,
    raw: &mut Option<RawStream>,
    ctx: &dyn Fn(&RelPath) -> (String, String),
) -> Result<Method, EncodeError> {
    if size == 0 {
        out.stats.raw.add(0, 0);
        return Ok(Method::Raw { len: 0 });
    }
    if opts.refs
        && let Some((from, frel)) = knowledge.locate(b3)
    {
        out.stats.reference.add(size, 0);
        return Ok(Method::Ref { from: from.to_string(), rel: (frel != *rel).then_some(frel) });
    }
    let data = contents(rel).map_err(|error| {
        let (path, rel) = ctx(rel);
        EncodeError::Read { path, rel, error }
    })?;
    if data.len() as u64 != size {
        let (path, rel) = ctx(rel);
        return Err(EncodeError::SizeChanged { path, rel, got: data.len() as u64, expected: size });
    }
    let compress_err = |error| EncodeError::Compress { rel: rel.to_string(), error };
    let start = out.payload.len();
    if size >= MIN_DELTA_FILE {
        for base in bases {
            let Some((base_rel, base_b3, base_size)) = base.file_for(rel) else { continue };
            let base_path = &base.path;
            let delta = opts.deltas && size <= MAX_DELTA_FILE && base_size <= MAX_DELTA_FILE;
            let chunked = opts.chunks && !delta && size >= MIN_CHUNKED_FILE;
            if !delta && !chunked {
                continue;
            }
            let Some(old) = knowledge.read_base(base_path, base_rel).filter(|old| FileHash::of(old) == base_b3) else { continue };
            let other_rel = (base_rel != rel).then(|| base_rel.clone());
            if delta && let Some(p) = patch::diff(&old, &data, patch_limit(size)) {
                let len = if p.is_empty() { 0 } else { raw_stream(raw, opts).and_then(|z| z.chunk(&p, &mut out.payload)).map_err(compress_err)? as u64 };
                out.stats.delta.add(size, len);
                return Ok(Method::Patch { base: base_path.to_string(), base_rel: other_rel, base_b3, len });
            }
            if delta {
                let d = codec::compress_delta(&old, &data, opts.delta_level).map_err(compress_err)?;
                // A poor delta (new contents): plain compression may do better.
                if d.len() as u64 > size / 4 && codec::compress(&data, opts.raw_level).map_err(compress_err)?.len() <= d.len() {
                    return raw_file(&data, raw, opts, out).map_err(compress_err);
                }
                out.payload.extend_from_slice(&d);
                out.stats.delta.add(size, d.len() as u64);
                return Ok(Method::Delta { base: base_path.to_string(), base_rel: other_rel, base_b3, len: d.len() as u64 });
            }
            let parts = chunks::encode_parts(base_path, base_rel, &old, &data, opts.raw_level, &mut out.payload).map_err(compress_err)?;
            out.stats.chunks.add(size, (out.payload.len() - start) as u64);
            return Ok(Method::Chunks { parts });
        }
    }
    // A large file without a usable base: chunks of any large file the target holds.
    if opts.chunks && size >= MIN_CHUNKED_FILE {
        let cut = chunks::chunk_list(&data);
        let have = |b3: &FileHash| {
            let (from, rel, offset, size) = knowledge.locate_chunk(b3)?;
            Some(Part::Have { from: from.to_string(), rel, offset, size, b3: *b3 })
        };
        if cut.iter().any(|c| have(&c.b3).is_some()) {
            let parts = chunks::encode_parts_by(&data, &cut, &have, opts.raw_level, &mut out.payload).map_err(compress_err)?;
            out.stats.chunks.add(size, (out.payload.len() - start) as u64);
            return Ok(Method::Chunks { parts });
        }
    }
    raw_file(&data, raw, opts, out).map_err(compress_err)
}

/// The largest patch taken for a file of `size` bytes (a larger change is
/// left to a zstd delta, which also finds moved and repeated runs).
fn patch_limit(size: u64) -> usize {
    usize::try_from((size / 2).min(4096 + size / 64)).unwrap_or(usize::MAX)
}

/// The NAR's raw stream, started on first use.
fn raw_stream<'r>(raw: &'r mut Option<RawStream>, opts: &EncodeOptions) -> io::Result<&'r mut RawStream> {
    Ok(match raw {
        Some(s) => s,
        None => raw.insert(RawStream::new(opts.raw_level)?),
    })
}

/// `data` as the next chunk of the NAR's raw stream.
fn raw_file(data: &[u8], raw: &mut Option<RawStream>, opts: &EncodeOptions, out: &mut EncodedNar) -> io::Result<Method> {
    let len = raw_stream(raw, opts)?.chunk(data, &mut out.payload)? as u64;
    out.stats.raw.add(data.len() as u64, len);
    Ok(Method::Raw { len })
}

/// A plan that uses nothing on the target (every file raw): what a `Resend` gets.
pub fn encode_whole(
    path: &StorePath,
    manifest: &NarManifest,
    contents: &mut dyn FnMut(&RelPath) -> io::Result<Vec<u8>>,
    opts: &EncodeOptions,
) -> Result<EncodedNar, EncodeError> {
    encode(path, manifest, contents, &(), opts)
}

/// [`encode`] for a store path on this machine's disk at `on_disk`; also
/// returns its manifest (to add to the target's knowledge once imported).
pub fn encode_from_disk(
    path: &StorePath,
    on_disk: &Path,
    knowledge: &dyn TargetKnowledge,
    opts: &EncodeOptions,
) -> Result<(NarManifest, EncodedNar), EncodeError> {
    let manifest = NarManifest::from_disk(on_disk)?;
    let encoded = encode(path, &manifest, &mut |rel| std::fs::read(rel.under(on_disk)), knowledge, opts)?;
    Ok((manifest, encoded))
}
