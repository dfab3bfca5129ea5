//! A streaming NAR parser that accepts only canonical NARs.
//!
//! [`parse`] reads a NAR from any [`Read`] and reports what it finds to a
//! [`NarVisitor`] in document order (a directory before its entries, entries in
//! sorted order, file contents as a series of chunks). The grammar lives in the
//! sans-I/O [`NarDecoder`]: an explicit state machine with a stack of open
//! directories, not a recursive descent, so depth costs heap proportional to
//! the input, never call stack. This module drives it from blocking readers.
//!
//! Everything that would make a NAR ambiguous or dangerous is rejected with a
//! [`NarReadError`] before the visitor sees it: bad magic, unknown or misplaced
//! tags, entry names that are empty, `.`, `..`, or contain `/` or NUL, entries
//! that are not strictly increasing (duplicates included), empty or NUL-bearing
//! symlink targets, non-zero padding, truncation, and (for [`parse`]) trailing
//! bytes. Strings read from the input are capped before any allocation: tags at
//! [`MAX_TAG_LEN`], names at [`MAX_NAME_LEN`](super::MAX_NAME_LEN), targets at
//! [`MAX_TARGET_LEN`](super::MAX_TARGET_LEN);
//! file contents are never buffered whole.
//!
//! Paths given to the visitor are relative to the root: names joined by `/`,
//! empty for the root itself. They are raw bytes (names need not be UTF-8).

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use thiserror::Error;

use super::BUF_SIZE;
pub use super::decoder::{MAX_TAG_LEN, NarDecoder};

#[derive(Debug, Error)]
pub enum NarReadError {
    /// Kept out of `source()` so that printing the chain does not repeat it.
    #[error("reading NAR: {0}")]
    Io(io::Error),
    #[error("input is not a NAR (it does not start with 'nix-archive-1')")]
    BadMagic,
    #[error("NAR is truncated: input ended at byte {offset}")]
    Truncated { offset: u64 },
    #[error("bad NAR at byte {offset}: expected {expected}, found {found}")]
    UnexpectedTag { offset: u64, expected: &'static str, found: String },
    #[error("bad NAR at byte {offset}: unknown file type '{found}'")]
    UnknownType { offset: u64, found: String },
    #[error("bad NAR at byte {offset}: string of {len} bytes is longer than the limit of {max} for {what}")]
    StringTooLong { offset: u64, len: u64, max: usize, what: &'static str },
    #[error("bad NAR at byte {offset}: non-zero padding")]
    NonZeroPadding { offset: u64 },
    #[error("bad NAR: invalid entry name '{name}' in directory '{dir}' (empty, '.', '..', or contains '/' or NUL)")]
    InvalidName { dir: String, name: String },
    #[error("bad NAR: duplicate entry '{name}' in directory '{dir}'")]
    DuplicateName { dir: String, name: String },
    #[error("bad NAR: entry '{name}' in directory '{dir}' comes after '{prev}' (entries must be sorted)")]
    NotSorted { dir: String, prev: String, name: String },
    #[error("bad NAR: symlink '{path}' has an empty target or one containing NUL")]
    InvalidTarget { path: String },
    #[error("trailing data after the end of the NAR at byte {offset}")]
    TrailingData { offset: u64 },
    #[error("{op} '{}': {error}", path.display())]
    Sink { op: &'static str, path: PathBuf, error: io::Error },
}

impl From<io::Error> for NarReadError {
    fn from(e: io::Error) -> Self {
        NarReadError::Io(e)
    }
}

/// Receives the objects of a NAR in document order. Returning an error stops
/// the parse and is passed through.
pub trait NarVisitor {
    /// A directory starts; its entries follow, then `directory_end`.
    fn directory(&mut self, _path: &[u8]) -> Result<(), NarReadError> {
        Ok(())
    }
    fn directory_end(&mut self, _path: &[u8]) -> Result<(), NarReadError> {
        Ok(())
    }
    /// A regular file starts; its `size` bytes follow as `contents` chunks, then `regular_end`.
    fn regular(&mut self, _path: &[u8], _executable: bool, _size: u64) -> Result<(), NarReadError> {
        Ok(())
    }
    fn contents(&mut self, _chunk: &[u8]) -> Result<(), NarReadError> {
        Ok(())
    }
    fn regular_end(&mut self) -> Result<(), NarReadError> {
        Ok(())
    }
    fn symlink(&mut self, _path: &[u8], _target: &[u8]) -> Result<(), NarReadError> {
        Ok(())
    }
}

/// What a parsed NAR contained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NarStats {
    /// Size of the NAR itself in bytes.
    pub nar_size: u64,
    pub regular_files: u64,
    pub directories: u64,
    pub symlinks: u64,
    /// Total size of regular file contents.
    pub contents_size: u64,
}

/// Check that `r` holds exactly one canonical NAR and nothing else.
pub fn validate(r: impl Read) -> Result<NarStats, NarReadError> {
    struct Nothing;
    impl NarVisitor for Nothing {}
    parse(r, &mut Nothing)
}

/// Parse exactly one NAR from `r`, which must end right after it.
pub fn parse(r: impl Read, v: &mut impl NarVisitor) -> Result<NarStats, NarReadError> {
    let mut r = BufReader::with_capacity(BUF_SIZE, r);
    let stats = parse_prefix(&mut r, v)?;
    if !r.fill_buf()?.is_empty() {
        return Err(NarReadError::TrailingData { offset: stats.nar_size });
    }
    Ok(stats)
}

/// Parse one NAR from the front of `r`, consuming exactly its bytes, so a
/// stream that carries more data after the NAR can be read on.
pub fn parse_prefix(r: &mut impl BufRead, v: &mut impl NarVisitor) -> Result<NarStats, NarReadError> {
    drive(r, v, |_| Ok(()))
}

/// Run a [`NarDecoder`] over `r`'s buffer, passing each consumed slice to
/// `forward` before consuming it from `r`.
pub(crate) fn drive(
    r: &mut impl BufRead,
    v: &mut impl NarVisitor,
    mut forward: impl FnMut(&[u8]) -> Result<(), NarReadError>,
) -> Result<NarStats, NarReadError> {
    let mut decoder = NarDecoder::new();
    while !decoder.is_done() {
        let buf = match r.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if buf.is_empty() {
            break; // `finish` reports the truncation
        }
        let n = decoder.feed(buf, v)?;
        forward(buf.get(..n).unwrap_or_default())?;
        r.consume(n);
    }
    decoder.finish()
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
