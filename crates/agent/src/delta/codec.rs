//! zstd as the delta codec's compressor: plain frames for raw bytes, and
//! frames compressed with an old file as *prefix* (a single-use raw-content
//! dictionary, zstd's "patch-from") for deltas.
//!
//! Invariants: the window of a delta frame covers prefix + data, so every
//! match into the old file is reachable; it is capped at
//! [`MAX_WINDOW_LOG`] (files above [`super::MAX_DELTA_FILE`] are never
//! delta-coded), and decompression refuses larger windows and never produces
//! more than the caller's declared size.

use std::io::{self, Read};

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DParameter, InBuffer, OutBuffer, zstd_sys::ZSTD_EndDirective};

/// Largest window a delta frame may use (prefix + file ≤ 256 MiB).
pub const MAX_WINDOW_LOG: u32 = 28;

/// Level for raw bytes (fast; real payloads are mostly already dense).
pub const RAW_LEVEL: i32 = 3;
/// Level for deltas. With long-distance matching, a delta is mostly long
/// matches into the old file, which the fastest strategy finds as well as
/// the slow ones: on the agent-compare closures (1354 files whose embedded
/// store hashes changed, 41 MB) level 1 gives 198 KB in 0.32 s of encoding,
/// level 9 199 KB in 0.86 s (most of it indexing each old file into the
/// match tables). (Level 1 without long-distance matching loses matches in
/// old files of a few hundred KB.)
pub const DELTA_LEVEL: i32 = 1;
/// Level cap for deltas of larger files (with long-distance matching, higher
/// levels find the same matches, several times slower: measured on a 30 MB
/// file, level 6 takes 0.13 s and level 12 0.86 s for the same 5 KB).
pub const DELTA_LEVEL_LARGE: i32 = 6;
const LARGE: usize = 1 << 20;

fn zerr(what: &str, code: zstd_safe::ErrorCode) -> io::Error {
    io::Error::other(format!("{what}: {}", zstd_safe::get_error_name(code)))
}

fn window_log(total: usize) -> u32 {
    let bits = usize::BITS - total.max(1).leading_zeros();
    bits.clamp(10, MAX_WINDOW_LOG)
}

/// A plain zstd frame of `data`.
pub fn compress(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    zstd::bulk::compress(data, level)
}

/// A zstd frame of `data` that uses `base` as prefix, at `level`, or at
/// most [`DELTA_LEVEL_LARGE`] for large inputs.
pub fn compress_delta(base: &[u8], data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    let level = if data.len().max(base.len()) >= LARGE { level.min(DELTA_LEVEL_LARGE) } else { level };
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level)).map_err(|c| zerr("zstd level", c))?;
    cctx.set_parameter(CParameter::WindowLog(window_log(base.len() + data.len()))).map_err(|c| zerr("zstd window", c))?;
    cctx.set_parameter(CParameter::ContentSizeFlag(true)).map_err(|c| zerr("zstd content size", c))?;
    // Long-distance matching finds the old file's runs across the whole
    // window at any level (without it, levels below ~15 lose track of a
    // prefix of more than a few MB and the "delta" is the whole file).
    cctx.set_parameter(CParameter::EnableLongDistanceMatching(true)).map_err(|c| zerr("zstd long-distance matching", c))?;
    cctx.ref_prefix(base).map_err(|c| zerr("zstd prefix", c))?;
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    cctx.compress2(&mut out, data).map_err(|c| zerr("zstd delta compression", c))?;
    Ok(out)
}

/// Decompress a delta frame made by [`compress_delta`] with the same `base`;
/// fails unless it yields exactly `size` bytes.
pub fn decompress_delta(base: &[u8], frame: &[u8], size: u64) -> io::Result<Vec<u8>> {
    let size = usize::try_from(size).map_err(|_| io::Error::other("delta output too large"))?;
    let mut dctx = DCtx::create();
    dctx.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG)).map_err(|c| zerr("zstd window", c))?;
    dctx.ref_prefix(base).map_err(|c| zerr("zstd prefix", c))?;
    let mut out = Vec::with_capacity(size);
    let n = dctx.decompress(&mut out, frame).map_err(|c| zerr("zstd delta decompression", c))?;
    if n != size {
        return Err(io::Error::other(format!("delta produced {n} bytes, expected {size}")));
    }
    Ok(out)
}

/// Decompress a plain frame that must yield exactly `size` bytes.
pub fn decompress_exact(frame: &[u8], size: u64) -> io::Result<Vec<u8>> {
    let size = usize::try_from(size).map_err(|_| io::Error::other("output too large"))?;
    let mut dctx = DCtx::create();
    dctx.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG)).map_err(|c| zerr("zstd window", c))?;
    let mut out = Vec::with_capacity(size);
    let n = dctx.decompress(&mut out, frame).map_err(|c| zerr("zstd decompression", c))?;
    if n != size {
        return Err(io::Error::other(format!("zstd frame produced {n} bytes, expected {size}")));
    }
    Ok(out)
}

/// Window of a NAR's raw stream (context across its files; the target
/// holds this much per path being rebuilt).
const STREAM_WINDOW_LOG: u32 = 23;

/// The raw files of one NAR as flushed chunks of one zstd stream, so each
/// file is compressed with the files before it as context (many small
/// files of one package share a lot); each chunk decodes on its own once
/// the chunks before it have been decoded. The compression context is kept
/// per thread between NARs ([`SPARE`]): a new one allocates and clears its
/// match tables for every NAR (measurable over hundreds of small NARs), a
/// reset one starts a new frame without that.
pub struct RawStream {
    /// Always `Some` until dropped.
    cctx: Option<CCtx<'static>>,
    level: i32,
    scratch: Vec<u8>,
}

thread_local! {
    /// The context of this thread's last [`RawStream`], with its level.
    static SPARE: std::cell::RefCell<Option<(i32, CCtx<'static>)>> = const { std::cell::RefCell::new(None) };
}

impl RawStream {
    pub fn new(level: i32) -> io::Result<RawStream> {
        let spare = SPARE.with(|s| s.borrow_mut().take()).filter(|(l, _)| *l == level).map(|(_, c)| c);
        let cctx = match spare {
            Some(mut c) => {
                c.reset(zstd_safe::ResetDirective::SessionOnly).map_err(|c| zerr("zstd reset", c))?;
                c
            }
            None => {
                let mut cctx = CCtx::try_create().ok_or_else(|| io::Error::other("cannot create a zstd context"))?;
                cctx.set_parameter(CParameter::CompressionLevel(level)).map_err(|c| zerr("zstd level", c))?;
                cctx.set_parameter(CParameter::WindowLog(STREAM_WINDOW_LOG)).map_err(|c| zerr("zstd window", c))?;
                cctx
            }
        };
        Ok(RawStream { cctx: Some(cctx), level, scratch: vec![0; 128 << 10] })
    }

    /// `data` as the stream's next chunk, appended to `out`; returns its length.
    pub fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
        let cctx = self.cctx.as_mut().ok_or_else(|| io::Error::other("zstd context gone"))?;
        let start = out.len();
        let mut input = InBuffer::around(data);
        loop {
            let mut o = OutBuffer::around(&mut self.scratch[..]);
            let left = cctx.compress_stream2(&mut o, &mut input, ZSTD_EndDirective::ZSTD_e_flush).map_err(|c| zerr("zstd stream", c))?;
            let n = o.pos();
            out.extend_from_slice(self.scratch.get(..n).unwrap_or_default());
            if left == 0 && input.pos() == data.len() {
                return Ok(out.len() - start);
            }
        }
    }
}

impl Drop for RawStream {
    fn drop(&mut self) {
        if let Some(c) = self.cctx.take() {
            // A thread being torn down has no spare slot any more: the context is just dropped.
            let _ = SPARE.try_with(|s| *s.borrow_mut() = Some((self.level, c)));
        }
    }
}

/// The decoding side of [`RawStream`].
pub struct RawUnstream {
    dctx: DCtx<'static>,
    buf: Vec<u8>,
}

impl RawUnstream {
    pub fn new() -> io::Result<RawUnstream> {
        let mut dctx = DCtx::try_create().ok_or_else(|| io::Error::other("cannot create a zstd context"))?;
        dctx.set_parameter(DParameter::WindowLogMax(STREAM_WINDOW_LOG)).map_err(|c| zerr("zstd window", c))?;
        Ok(RawUnstream { dctx, buf: vec![0; 128 << 10] })
    }

    /// A reader of what `chunk` decodes to.
    pub fn reader<'a>(&'a mut self, chunk: &'a [u8]) -> ChunkReader<'a> {
        ChunkReader { stream: self, input: chunk, pos: 0, out: 0, end: 0, drained: false }
    }
}

/// Reads one chunk of a [`RawUnstream`]; [`ChunkReader::finished`] tells
/// whether the chunk was consumed exactly.
pub struct ChunkReader<'a> {
    stream: &'a mut RawUnstream,
    input: &'a [u8],
    pos: usize,
    /// Decoded bytes in `stream.buf[out..end]` not handed out yet.
    out: usize,
    end: usize,
    /// The last call consumed all input without filling the buffer: nothing more to come.
    drained: bool,
}

impl ChunkReader<'_> {
    fn fill(&mut self) -> io::Result<()> {
        let mut o = OutBuffer::around(&mut self.stream.buf[..]);
        let mut i = InBuffer::around(self.input.get(self.pos..).unwrap_or_default());
        self.stream.dctx.decompress_stream(&mut o, &mut i).map_err(|c| zerr("zstd stream", c))?;
        let (n, used) = (o.pos(), i.pos());
        self.pos += used;
        self.out = 0;
        self.end = n;
        self.drained = self.pos >= self.input.len() && n < self.stream.buf.len();
        Ok(())
    }

    /// Whether the chunk has been consumed and decoded completely.
    pub fn finished(&mut self) -> io::Result<bool> {
        if self.out < self.end {
            return Ok(false);
        }
        while !self.drained {
            self.fill()?;
            if self.end > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out >= self.end {
            if self.drained {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = buf.len().min(self.end - self.out);
        buf[..n].copy_from_slice(&self.stream.buf[self.out..self.out + n]);
        self.out += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_nar::noise;

    #[test]
    fn delta_of_a_file_with_changed_store_hashes_is_tiny() {
        let mut old = noise(1, 200_000);
        for i in 0..20 {
            old[i * 9000..i * 9000 + 45].copy_from_slice(b"/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x");
        }
        let mut new = old.clone();
        for i in 0..20 {
            new[i * 9000..i * 9000 + 45].copy_from_slice(b"/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-x");
        }
        let d = compress_delta(&old, &new, DELTA_LEVEL).unwrap();
        assert!(d.len() < 1500, "{}", d.len());
        assert_eq!(decompress_delta(&old, &d, new.len() as u64).unwrap(), new);
        // Wrong base or wrong size: an error or different bytes, never the file.
        let mut wrong = old.clone();
        wrong[100_000] ^= 1;
        assert!(decompress_delta(&wrong, &d, new.len() as u64).map_or(true, |out| out != new));
        assert!(decompress_delta(&old, &d, new.len() as u64 - 1).is_err());
        assert!(decompress_delta(&old, &d[..d.len() / 2], new.len() as u64).is_err());
    }

    #[test]
    fn a_large_file_with_an_insertion_deltas_to_the_insertion() {
        // Beyond the reach of plain level-6 matching: needs long-distance matching.
        let old = noise(3, 12 << 20);
        let mut new = old[..4 << 20].to_vec();
        new.extend(noise(4, 2000));
        new.extend(&old[4 << 20..(12 << 20) - 1000]);
        let d = compress_delta(&old, &new, DELTA_LEVEL).unwrap();
        assert!(d.len() < 4000, "{}", d.len());
        assert_eq!(decompress_delta(&old, &d, new.len() as u64).unwrap(), new);
    }

    #[test]
    fn a_raw_stream_decodes_chunk_by_chunk() {
        // Files that share most of their (incompressible) bytes with each other.
        let shared = noise(7, 4000);
        let files: Vec<Vec<u8>> = (0..20u64).map(|i| [&shared[..], &noise(i + 100, 50)[..]].concat()).collect();
        let mut z = RawStream::new(RAW_LEVEL).unwrap();
        let mut payload = Vec::new();
        let lens: Vec<usize> = files.iter().map(|f| z.chunk(f, &mut payload).unwrap()).collect();
        // Later files cost little: the earlier ones are their context.
        assert!(lens[19] * 4 < lens[0], "{lens:?}");
        let mut u = RawUnstream::new().unwrap();
        let mut at = 0;
        for (f, len) in files.iter().zip(&lens) {
            let mut r = u.reader(&payload[at..at + len]);
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            assert_eq!(&got, f);
            assert!(r.finished().unwrap());
            at += len;
        }
        // A second stream on this thread (reusing the first one's context) is a fresh stream.
        drop(z);
        let mut z2 = RawStream::new(RAW_LEVEL).unwrap();
        let mut again = Vec::new();
        assert_eq!(z2.chunk(&files[0], &mut again).unwrap(), lens[0]);
        assert_eq!(again, payload[..lens[0]]);
        // A chunk out of order does not decode to its file.
        let mut u = RawUnstream::new().unwrap();
        let mut got = Vec::new();
        let bad = u.reader(&payload[lens[0]..lens[0] + lens[1]]).read_to_end(&mut got);
        assert!(bad.is_err() || got != files[1]);
    }

    #[test]
    fn raw_frames_are_exact() {
        let data = noise(2, 10_000);
        let f = compress(&data, RAW_LEVEL).unwrap();
        assert_eq!(decompress_exact(&f, 10_000).unwrap(), data);
        assert!(decompress_exact(&f, 9_999).is_err());
        assert!(decompress_exact(&f, 10_001).is_err());
        assert!(decompress_exact(b"garbage", 10).is_err());
    }
}

