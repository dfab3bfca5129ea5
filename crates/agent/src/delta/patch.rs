//! The hash-rewrite patch: a file of the same size as its base that differs
//! in a few short runs (typically the 32-character store hashes of its
//! dependencies, rewritten when only a dependency changed) travels as those
//! runs: "the old file, with these bytes at these offsets".
//!
//! Format of a patch (before the NAR's raw stream compresses it, which
//! folds the repeats of one new hash): records of `gap` (varint: bytes
//! kept since the previous run's end), `len` (varint, > 0) and `len` new
//! bytes. Runs closer than [`MERGE_GAP`] are merged, so a hash that changed
//! in most of its characters is one run.
//!
//! Computing it is one comparison pass (no match search, unlike a zstd
//! delta, which must index the whole base file); applying it is a copy of
//! the runs into the base. Invariants: [`diff`] returns a patch only for
//! files of equal size, no larger than the caller's limit, and
//! `apply(old, diff(old, new)) == new`; [`apply`] bounds-checks every
//! record (a hostile patch is an error, never a panic or a write outside
//! the file) and never changes the file's size.

use thiserror::Error;

/// Unchanged bytes between two differing runs up to which they become one run.
pub const MERGE_GAP: usize = 8;
/// Bytes compared at once before looking at single bytes.
const BLOCK: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("truncated patch record")]
    Truncated,
    #[error("patch run at offset {at} of {len} bytes is outside the {size}-byte file")]
    OutOfBounds { at: u64, len: u64, size: u64 },
    #[error("empty patch run")]
    EmptyRun,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(input: &mut &[u8]) -> Result<u64, PatchError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first().ok_or(PatchError::Truncated)?;
        *input = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(PatchError::Truncated)
}

/// The patch turning `old` into `new`, if they have the same size and it
/// takes at most `limit` bytes (else `None`: the comparison stops as soon
/// as the patch outgrows the limit).
pub fn diff(old: &[u8], new: &[u8], limit: usize) -> Option<Vec<u8>> {
    if old.len() != new.len() {
        return None;
    }
    let mut out = Vec::new();
    let mut kept_to = 0usize;
    // The current run [start, end).
    let mut run: Option<(usize, usize)> = None;
    let mut emit = |out: &mut Vec<u8>, (start, end): (usize, usize)| {
        put_varint(out, (start - kept_to) as u64);
        put_varint(out, (end - start) as u64);
        out.extend_from_slice(new.get(start..end).unwrap_or_default());
        kept_to = end;
    };
    for (block, (a, b)) in old.chunks(BLOCK).zip(new.chunks(BLOCK)).enumerate() {
        if a == b {
            continue;
        }
        for (i, _) in a.iter().zip(b).enumerate().filter(|(_, (x, y))| x != y) {
            let at = block * BLOCK + i;
            run = match run {
                Some((start, end)) if at <= end + MERGE_GAP => Some((start, at + 1)),
                Some(done) => {
                    emit(&mut out, done);
                    Some((at, at + 1))
                }
                None => Some((at, at + 1)),
            };
        }
        if out.len() > limit {
            return None;
        }
    }
    if let Some(last) = run {
        emit(&mut out, last);
    }
    (out.len() <= limit).then_some(out)
}

/// Apply `patch` (made by [`diff`]) to `file` in place.
pub fn apply(file: &mut [u8], mut patch: &[u8]) -> Result<(), PatchError> {
    let size = file.len() as u64;
    let mut at = 0u64;
    while !patch.is_empty() {
        let gap = get_varint(&mut patch)?;
        let len = get_varint(&mut patch)?;
        if len == 0 {
            return Err(PatchError::EmptyRun);
        }
        let start = at.checked_add(gap).filter(|s| s.checked_add(len).is_some_and(|e| e <= size));
        let Some(start) = start else { return Err(PatchError::OutOfBounds { at: at.saturating_add(gap), len, size }) };
        // Within the file's size (checked above), so these fit in usize.
        let (s, n) = (start as usize, len as usize);
        let bytes = patch.get(..n).ok_or(PatchError::Truncated)?;
        let target = file.get_mut(s..s + n).ok_or(PatchError::OutOfBounds { at: start, len, size })?;
        target.copy_from_slice(bytes);
        patch = patch.get(n..).unwrap_or_default();
        at = start + len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_nar::noise;

    #[test]
    fn rewritten_store_hashes_patch_to_the_hashes() {
        let mut old = noise(1, 100_000);
        let at = [0, 63, 64, 5000, 99_968];
        for &i in &at {
            old[i..i + 32].copy_from_slice(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        }
        let mut new = old.clone();
        for &i in &at {
            new[i..i + 32].copy_from_slice(b"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
        }
        let p = diff(&old, &new, 1000).unwrap();
        // Runs 0 and 63..96 are 31 bytes apart: separate, as are the others.
        assert!(p.len() <= at.len() * (32 + 4) + 64, "{}", p.len());
        let mut got = old.clone();
        apply(&mut got, &p).unwrap();
        assert_eq!(got, new);
        // Identical files: an empty patch.
        assert_eq!(diff(&old, &old, 0).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn nearby_changes_merge_and_limits_hold() {
        let old = noise(2, 10_000);
        let mut new = old.clone();
        new[100] ^= 1;
        new[105] ^= 1;
        let p = diff(&old, &new, 100).unwrap();
        assert_eq!(p.len(), 2 + 6, "one run of 6 bytes: {p:?}");
        // Different sizes, or more change than the limit allows: no patch.
        assert!(diff(&old, &new[..9_999], 100).is_none());
        assert!(diff(&old, &noise(3, 10_000), 1000).is_none());
    }

    #[test]
    fn hostile_patches_are_errors() {
        let mut f = vec![0u8; 100];
        assert_eq!(apply(&mut f, &[0x80]), Err(PatchError::Truncated));
        assert_eq!(apply(&mut f, &[0, 0]), Err(PatchError::EmptyRun));
        assert!(matches!(apply(&mut f, &[99, 2, 1, 1]), Err(PatchError::OutOfBounds { .. })));
        assert_eq!(apply(&mut f, &[0, 5, 1]), Err(PatchError::Truncated));
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 0];
        assert!(matches!(apply(&mut f, &huge), Err(PatchError::OutOfBounds { .. })));
        assert_eq!(apply(&mut f, &[0xff; 11]), Err(PatchError::Truncated));
        assert_eq!(f, vec![0u8; 100], "nothing written by a refused record");
    }
}
