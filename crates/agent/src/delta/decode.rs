//! Rebuilding a NAR from a [`NarPlan`] and its payload (the target's side).
//!
//! Each regular file is streamed into the store's NAR encoder through a
//! reader that hashes it; after the file, its size and BLAKE3 must equal the
//! plan's (and, for reused files, the plan's claim about the file on the
//! target). The whole payload must be consumed. See the invariants in
//! [`super`].

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;

use ndeploy_store::nar::{EncodeError, NarEncoder};
use ndeploy_store::store_path::StorePath;
use thiserror::Error;

use super::chunks::PartsReader;
use super::codec::RawUnstream;
use super::{MAX_DELTA_FILE, Method, NarPlan, PlanEntry, PlanNode, PlanStats, codec, patch};
use crate::manifest::{FileHash, ManifestError, RelPath, Step, walk};

#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("bad plan: {0}")]
    Tree(#[from] ManifestError),
    #[error("bad plan: {0}")]
    BadPlan(String),
    #[error("bad payload for '{rel}': {problem}")]
    Payload { rel: String, problem: String },
    #[error("payload has {0} bytes more than the plan uses")]
    TrailingPayload(u64),
    #[error("reused file '{rel}' of '{path}' on the target: {problem}")]
    Reused { path: String, rel: String, problem: String },
    #[error("rebuilt file '{rel}' does not have the planned size and BLAKE3")]
    Mismatch { rel: String },
    #[error("rebuilding NAR: {0}")]
    Nar(#[from] EncodeError),
}

pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// Where the target's existing files are read from.
pub trait FileSource: Sync {
    /// Open regular file `rel` of store path `path`; returns it and its size.
    fn open(&self, path: &StorePath, rel: &RelPath) -> io::Result<(Box<dyn ReadSeek + '_>, u64)>;
}

/// Files of a store on the local file system: `<dir>/<hash>-<name>/<rel>`,
/// refusing to follow symlinks anywhere below the store directory.
#[derive(Debug, Clone)]
pub struct StoreFiles {
    pub dir: PathBuf,
}

impl FileSource for StoreFiles {
    fn open(&self, path: &StorePath, rel: &RelPath) -> io::Result<(Box<dyn ReadSeek + '_>, u64)> {
        let mut p = self.dir.join(path.to_string());
        for c in rel.components() {
            if std::fs::symlink_metadata(&p)?.file_type().is_symlink() {
                return Err(io::Error::other(format!("'{}' is a symlink", p.display())));
            }
            p.push(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(c));
        }
        let meta = std::fs::symlink_metadata(&p)?;
        if !meta.is_file() {
            return Err(io::Error::other(format!("'{}' is not a regular file", p.display())));
        }
        Ok((Box::new(File::open(&p)?), meta.len()))
    }
}

pub(crate) fn parse_path(s: &str) -> Result<StorePath, DecodeError> {
    StorePath::from_base_name(s).map_err(|e| DecodeError::BadPlan(format!("store path '{s}': {e}")))
}

/// The payload, consumed front to back.
pub struct Payload<'p> {
    rest: &'p [u8],
}

impl<'p> Payload<'p> {
    pub fn take(&mut self, len: u64, rel: &RelPath) -> Result<&'p [u8], DecodeError> {
        let n = usize::try_from(len).ok().filter(|&n| n <= self.rest.len()).ok_or_else(|| DecodeError::Payload {
            rel: rel.to_string(),
            problem: format!("needs {len} bytes, {} left", self.rest.len()),
        })?;
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
    n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// Rebuild the NAR `plan` describes into `out`, reading reused files from
/// `source`; returns `out` and what each method contributed.
pub fn decode<W: Write>(plan: &NarPlan, payload: &[u8], source: &dyn FileSource, out: W) -> Result<(W, PlanStats), DecodeError> {
    if plan.payload_len != payload.len() as u64 {
        return Err(DecodeError::BadPlan(format!("payload is {} bytes, the plan says {}", payload.len(), plan.payload_len)));
    }
    let mut enc = NarEncoder::new(out);
    let mut payload = Payload { rest: payload };
    let mut stats = PlanStats::default();
    let mut raw = None;
    walk(&plan.entries, |step| -> Result<(), DecodeError> {
        match step {
            Step::Entry(name) => enc.entry(name)?,
            Step::EndDirectory => enc.end_directory()?,
            Step::Node(PlanEntry { node: PlanNode::Directory, .. }) => enc.begin_directory()?,
            Step::Node(PlanEntry { node: PlanNode::Symlink { target }, .. }) => enc.symlink(target.as_bytes())?,
            Step::Node(PlanEntry { path, node: PlanNode::Regular { executable, size, b3, how } }) => {
                let mut ctx = FileCtx { payload: &mut payload, source, stats: &mut stats, raw: &mut raw };
                file(&mut enc, &mut ctx, path, *executable, *size, b3, how)?
            }
        }
        Ok(())
    })?;
    if !payload.rest.is_empty() {
        return Err(DecodeError::TrailingPayload(payload.rest.len() as u64));
    }
    Ok((enc.finish()?, stats))
}

/// What rebuilding a file needs besides the file's own entry.
struct FileCtx<'a, 'p> {
    payload: &'a mut Payload<'p>,
    source: &'a dyn FileSource,
    stats: &'a mut PlanStats,
    /// The NAR's raw stream, started at its first raw file.
    raw: &'a mut Option<RawUnstream>,
}

fn file<W: Write>(
    enc: &mut NarEncoder<W>,
    ctx: &mut FileCtx<'_, '_>,
    rel: &RelPath,
    executable: bool,
    size: u64,
    b3: &FileHash,
    how: &Method,
) -> Result<(), DecodeError> {
    let reused = |from: &str, rel: &RelPath, problem: String| DecodeError::Reused { path: from.to_owned(), rel: rel.to_string(), problem };
    let mismatch = || DecodeError::Mismatch { rel: rel.to_string() };
    let FileCtx { payload, source, stats, raw } = ctx;
    let source: &dyn FileSource = *source;
    let before = payload.rest.len() as u64;
    let mut parts_error = None;
    let hashed = match how {
        Method::Raw { len } => {
            let frame = payload.take(*len, rel)?;
            if size == 0 && frame.is_empty() {
                enc.regular(executable, 0, &mut io::empty())?;
                (FileHash::of(&[]), 0)
            } else {
                let bad = |problem: String| DecodeError::Payload { rel: rel.to_string(), problem };
                let stream = match raw {
                    Some(s) => s,
                    None => raw.insert(RawUnstream::new().map_err(|e| bad(e.to_string()))?),
                };
                let mut chunk = stream.reader(frame);
                let mut r = Hashing { inner: (&mut chunk).take(size), hasher: blake3::Hasher::new(), n: 0 };
                enc.regular(executable, size, &mut r).map_err(|e| match e {
                    EncodeError::Read { .. } | EncodeError::ShortContents { .. } => bad(format!("compressed contents: {}", error_text(&e))),
                    other => DecodeError::Nar(other),
                })?;
                let got = (FileHash(*r.hasher.finalize().as_bytes()), r.n);
                // The chunk must hold exactly this file (else the stream is out of step).
                if !chunk.finished().map_err(|e| bad(e.to_string()))? {
                    return Err(bad("compressed contents are longer than the file".to_owned()));
                }
                got
            }
        }
        Method::Ref { from, rel: other } => {
            let from_path = parse_path(from)?;
            let frel = other.as_ref().unwrap_or(rel);
            let (f, actual) = source.open(&from_path, frel).map_err(|e| reused(from, frel, e.to_string()))?;
            if actual != size {
                return Err(reused(from, frel, format!("its size is {actual}, expected {size}")));
            }
            let mut r = Hashing { inner: f.take(size), hasher: blake3::Hasher::new(), n: 0 };
            enc.regular(executable, size, &mut r).map_err(|e| reused(from, frel, error_text(&e)))?;
            let got = FileHash(*r.hasher.finalize().as_bytes());
            if got != *b3 {
                return Err(reused(from, frel, "its contents changed (BLAKE3 mismatch)".to_owned()));
            }
            (got, r.n)
        }
        Method::Delta { base, base_rel, base_b3, len } => {
            let old = read_base(source, base, base_rel.as_ref().unwrap_or(rel), base_b3, size, false)?;
            let frame = payload.take(*len, rel)?;
            let new = codec::decompress_delta(&old, frame, size)
                .map_err(|e| DecodeError::Payload { rel: rel.to_string(), problem: e.to_string() })?;
            enc.regular_bytes(executable, &new)?;
            (FileHash::of(&new), new.len() as u64)
        }
        Method::Patch { base, base_rel, base_b3, len } => {
            let mut file = read_base(source, base, base_rel.as_ref().unwrap_or(rel), base_b3, size, true)?;
            let frame = payload.take(*len, rel)?;
            let bad = |problem: String| DecodeError::Payload { rel: rel.to_string(), problem };
            if !frame.is_empty() {
                let stream = match raw {
                    Some(s) => s,
                    None => raw.insert(RawUnstream::new().map_err(|e| bad(e.to_string()))?),
                };
                // A patch is never larger than its file (plus record headers).
                let mut chunk = stream.reader(frame);
                let mut runs = Vec::new();
                (&mut chunk).take(size + 4096).read_to_end(&mut runs).map_err(|e| bad(format!("compressed patch: {e}")))?;
                if !chunk.finished().map_err(|e| bad(e.to_string()))? {
                    return Err(bad("the patch is longer than its file allows".to_owned()));
                }
                patch::apply(&mut file, &runs).map_err(|e| bad(e.to_string()))?;
            }
            enc.regular_bytes(executable, &file)?;
            (FileHash::of(&file), file.len() as u64)
        }
        Method::Chunks { parts } => {
            let mut reader = PartsReader::new(parts, source, payload, rel);
            let mut r = Hashing { inner: &mut reader, hasher: blake3::Hasher::new(), n: 0 };
            let res = enc.regular(executable, size, &mut r);
            let got = (FileHash(*r.hasher.finalize().as_bytes()), r.n);
            parts_error = reader.error.take();
            if let Err(e) = res {
                return Err(parts_error.take().unwrap_or(DecodeError::Nar(e)));
            }
            // Parts beyond the file's size would be left unread: refuse them.
            let mut extra = [0u8; 1];
            if reader.read(&mut extra).map_err(|_| reader.error.take().unwrap_or_else(mismatch))? != 0 {
                return Err(mismatch());
            }
            got
        }
    };
    if let Some(e) = parts_error {
        return Err(e);
    }
    if hashed != (*b3, size) {
        return Err(mismatch());
    }
    let used = before - payload.rest.len() as u64;
    let m = match how {
        Method::Ref { .. } => &mut stats.reference,
        Method::Delta { .. } | Method::Patch { .. } => &mut stats.delta,
        Method::Chunks { .. } => &mut stats.chunks,
        Method::Raw { .. } => &mut stats.raw,
    };
    m.add(size, used);
    Ok(())
}

/// The base file `brel` of `base` for a delta or patch of a `size`-byte
/// file, read whole and checked against its BLAKE3 (and, for a patch, the
/// file's size).
fn read_base(source: &dyn FileSource, base: &str, brel: &RelPath, base_b3: &FileHash, size: u64, same_size: bool) -> Result<Vec<u8>, DecodeError> {
    let reused = |problem: String| DecodeError::Reused { path: base.to_owned(), rel: brel.to_string(), problem };
    if size > MAX_DELTA_FILE {
        return Err(DecodeError::BadPlan(format!("delta of a {size}-byte file is over the limit")));
    }
    let base_path = parse_path(base)?;
    let (mut f, base_size) = source.open(&base_path, brel).map_err(|e| reused(e.to_string()))?;
    if base_size > MAX_DELTA_FILE {
        return Err(reused(format!("{base_size} bytes is too large for a delta base")));
    }
    if same_size && base_size != size {
        return Err(reused(format!("its size is {base_size}, the patched file's {size}")));
    }
    let mut old = Vec::with_capacity(base_size as usize);
    f.read_to_end(&mut old).map_err(|e| reused(e.to_string()))?;
    if FileHash::of(&old) != *base_b3 {
        return Err(reused("its contents changed (BLAKE3 mismatch)".to_owned()));
    }
    Ok(old)
}

fn error_text(e: &EncodeError) -> String {
    match e {
        EncodeError::Read { error, .. } => error.to_string(),
        EncodeError::ShortContents { read, expected, .. } => format!("it ended after {read} of {expected} bytes"),
        other => other.to_string(),
    }
}
