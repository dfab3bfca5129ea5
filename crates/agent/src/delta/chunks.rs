//! Content-defined chunking (FastCDC) for files too large to delta with zstd.
//!
//! The new file and its base are cut at content-defined boundaries, so an
//! insertion shifts only the chunks around it; every chunk of the new file
//! whose BLAKE3 matches a chunk of the base becomes a [`Part::Have`] (offset
//! and size in the base file, which the target reads and verifies), runs of
//! other chunks become one [`Part::New`] each (zstd, at most
//! [`MAX_NEW_PART`] bytes). A file without a base is cut the same way and
//! its chunks looked up store-wide ([`encode_parts_by`] with the knowledge's
//! chunk index: any large file the target holds may lend chunks). Decoding
//! is [`PartsReader`]: a reader that produces the file part by part, holding
//! at most one part in memory.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};

use fastcdc::v2020::FastCDC;
use ndeploy_store::store_path::StorePath;

use super::Part;
use super::codec;
use super::decode::{DecodeError, FileSource, Payload, ReadSeek, parse_path};
use crate::manifest::{FileHash, RelPath};

pub const MIN_CHUNK: u32 = 16 << 10;
pub const AVG_CHUNK: u32 = 64 << 10;
pub const MAX_CHUNK: u32 = 256 << 10;
/// Files at least this large may be chunked.
pub const MIN_CHUNKED_FILE: u64 = 1 << 20;
/// Largest run of new bytes compressed as one part.
pub const MAX_NEW_PART: u64 = 16 << 20;

/// One content-defined chunk of a file: offset, size, BLAKE3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    pub size: u64,
    pub b3: FileHash,
}

/// The content-defined chunks of `data`, in order (they cover it exactly).
pub fn chunk_list(data: &[u8]) -> Vec<Chunk> {
    FastCDC::new(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
        .filter_map(|c| {
            let bytes = data.get(c.offset..c.offset + c.length)?;
            Some(Chunk { offset: c.offset as u64, size: c.length as u64, b3: FileHash::of(bytes) })
        })
        .collect()
}

/// Parts for `data` against `base` (file `base_rel` of `base_path`); the
/// compressed new runs are appended to `payload`.
pub fn encode_parts(
    base_path: &StorePath,
    base_rel: &RelPath,
    base: &[u8],
    data: &[u8],
    level: i32,
    payload: &mut Vec<u8>,
) -> io::Result<Vec<Part>> {
    let mut have: HashMap<FileHash, (u64, u64)> = HashMap::new();
    for c in chunk_list(base) {
        have.entry(c.b3).or_insert((c.offset, c.size));
    }
    let from = base_path.to_string();
    let have = |b3: &FileHash| {
        have.get(b3).map(|&(offset, size)| Part::Have { from: from.clone(), rel: base_rel.clone(), offset, size, b3: *b3 })
    };
    encode_parts_by(data, &chunk_list(data), &have, level, payload)
}

/// Parts for `data`, cut into `chunks` ([`chunk_list`]): a chunk `have`
/// finds on the target (a [`Part::Have`] of the same BLAKE3) is reused, runs
/// of the others are compressed and appended to `payload`.
pub fn encode_parts_by(
    data: &[u8],
    chunks: &[Chunk],
    have: &dyn Fn(&FileHash) -> Option<Part>,
    level: i32,
    payload: &mut Vec<u8>,
) -> io::Result<Vec<Part>> {
    let mut parts = Vec::new();
    let mut run: Option<(usize, usize)> = None;
    let flush = |run: &mut Option<(usize, usize)>, parts: &mut Vec<Part>, payload: &mut Vec<u8>| -> io::Result<()> {
        if let Some((start, end)) = run.take() {
            let frame = codec::compress(data.get(start..end).unwrap_or_default(), level)?;
            parts.push(Part::New { size: (end - start) as u64, len: frame.len() as u64 });
            payload.extend_from_slice(&frame);
        }
        Ok(())
    };
    for c in chunks {
        let (start, end) = (usize::try_from(c.offset).unwrap_or(usize::MAX), usize::try_from(c.offset + c.size).unwrap_or(usize::MAX));
        if let Some(part) = have(&c.b3).filter(|p| matches!(p, Part::Have { size, .. } if *size == c.size)) {
            flush(&mut run, &mut parts, payload)?;
            parts.push(part);
        } else {
            run = match run {
                Some((s, _)) if (end - s) as u64 <= MAX_NEW_PART => Some((s, end)),
                Some(r) => {
                    let mut r = Some(r);
                    flush(&mut r, &mut parts, payload)?;
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
    }
    flush(&mut run, &mut parts, payload)?;
    Ok(parts)
}

/// Produces a chunked file's bytes part by part (see the module doc). The
/// first error is kept in `error` (the NAR encoder only sees an `io::Error`).
pub struct PartsReader<'a, 'p> {
    parts: std::slice::Iter<'a, Part>,
    source: &'a dyn FileSource,
    payload: &'a mut Payload<'p>,
    rel: &'a RelPath,
    buf: Vec<u8>,
    pos: usize,
    /// The file the last `Have` part came from (consecutive parts usually share it).
    open: Option<(&'a str, &'a RelPath, Box<dyn ReadSeek + 'a>)>,
    pub error: Option<DecodeError>,
}

impl<'a, 'p> PartsReader<'a, 'p> {
    pub fn new(parts: &'a [Part], source: &'a dyn FileSource, payload: &'a mut Payload<'p>, rel: &'a RelPath) -> Self {
        PartsReader { parts: parts.iter(), source, payload, rel, buf: Vec::new(), pos: 0, open: None, error: None }
    }

    fn load(&mut self, part: &'a Part) -> Result<Vec<u8>, DecodeError> {
        match part {
            Part::New { size, len } => {
                if *size > MAX_NEW_PART {
                    return Err(DecodeError::BadPlan(format!("'{}': new part of {size} bytes is over the limit", self.rel)));
                }
                let frame = self.payload.take(*len, self.rel)?;
                codec::decompress_exact(frame, *size).map_err(|e| DecodeError::Payload { rel: self.rel.to_string(), problem: e.to_string() })
            }
            Part::Have { from, rel, offset, size, b3 } => {
                if *size > u64::from(MAX_CHUNK) {
                    return Err(DecodeError::BadPlan(format!("'{}': chunk of {size} bytes is over the limit", self.rel)));
                }
                let reused = |problem: String| DecodeError::Reused { path: from.clone(), rel: rel.to_string(), problem };
                let file = match &mut self.open {
                    Some((f, r, file)) if *f == from.as_str() && *r == rel => file,
                    _ => {
                        let path = parse_path(from)?;
                        let (file, _) = self.source.open(&path, rel).map_err(|e| reused(e.to_string()))?;
                        &mut self.open.insert((from.as_str(), rel, file)).2
                    }
                };
                file.seek(SeekFrom::Start(*offset)).map_err(|e| reused(e.to_string()))?;
                let mut bytes = Vec::with_capacity(*size as usize);
                file.take(*size).read_to_end(&mut bytes).map_err(|e| reused(e.to_string()))?;
                if bytes.len() as u64 != *size || FileHash::of(&bytes) != *b3 {
                    return Err(reused(format!("chunk at offset {offset} does not have the expected contents")));
                }
                Ok(bytes)
            }
        }
    }
}

impl Read for PartsReader<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            let Some(part) = self.parts.next() else { return Ok(0) };
            match self.load(part) {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(e) => {
                    let msg = e.to_string();
                    self.error = Some(e);
                    return Err(io::Error::other(msg));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
