//! zstd as the delta codec's compressor: plain frames for raw bytes, and
//! frames compressed with an old file as *prefix* (a single-use raw-content
//! dictionary, zstd's "patch-from") for deltas.
//!
//! Invariants: the window of a delta frame covers prefix + data, so every
//! match into the old file is reachable; it is capped at
//! [`MAX_WINDOW_LOG`] (files above [`super::MAX_DELTA_FILE`] are never
//! delta-coded), and decompression refuses larger windows and never produces
//! more than the caller's declared size.

use std::io;

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DParameter};

/// Largest window a delta frame may use (prefix + file ≤ 256 MiB).
pub const MAX_WINDOW_LOG: u32 = 28;

/// Level for raw bytes (fast; real payloads are mostly already dense).
pub const RAW_LEVEL: i32 = 3;
/// Level for deltas of files under 1 MiB (small outputs matter more than speed).
pub const DELTA_LEVEL: i32 = 9;
/// Level for deltas of larger files (with long-distance matching, higher
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
    fn raw_frames_are_exact() {
        let data = noise(2, 10_000);
        let f = compress(&data, RAW_LEVEL).unwrap();
        assert_eq!(decompress_exact(&f, 10_000).unwrap(), data);
        assert!(decompress_exact(&f, 9_999).is_err());
        assert!(decompress_exact(&f, 10_001).is_err());
        assert!(decompress_exact(b"garbage", 10).is_err());
    }
}

