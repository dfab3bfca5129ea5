//! A streaming NAR parser that accepts only canonical NARs.
//!
//! [`parse`] reads a NAR from any [`Read`] and reports what it finds to a
//! [`NarVisitor`] in document order (a directory before its entries, entries in
//! sorted order, file contents as a series of chunks). It is an explicit state
//! machine with a stack of open directories, not a recursive descent, so depth
//! costs heap proportional to the input, never call stack.
//!
//! Everything that would make a NAR ambiguous or dangerous is rejected with a
//! [`NarReadError`] before the visitor sees it: bad magic, unknown or misplaced
//! tags, entry names that are empty, `.`, `..`, or contain `/` or NUL, entries
//! that are not strictly increasing (duplicates included), empty or NUL-bearing
//! symlink targets, non-zero padding, truncation, and (for [`parse`]) trailing
//! bytes. Strings read from the input are capped before any allocation: tags at
//! [`MAX_TAG_LEN`], names at [`MAX_NAME_LEN`], targets at [`MAX_TARGET_LEN`];
//! file contents are never buffered whole.
//!
//! Paths given to the visitor are relative to the root: names joined by `/`,
//! empty for the root itself. They are raw bytes (names need not be UTF-8).

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use thiserror::Error;

use super::{BUF_SIZE, MAGIC, MAX_NAME_LEN, MAX_TARGET_LEN, is_valid_name, padding, show_bytes};

/// Longest string accepted where the grammar expects a keyword.
pub const MAX_TAG_LEN: usize = 16;

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
    let mut p = Parser { input: Input { r, offset: 0 }, stats: NarStats::default() };
    p.run(v)?;
    p.stats.nar_size = p.input.offset;
    Ok(p.stats)
}

/// A keyword read from the input (at most [`MAX_TAG_LEN`] bytes, on the stack).
struct Tag {
    bytes: [u8; MAX_TAG_LEN],
    len: usize,
}

impl Tag {
    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// Buffered input that counts consumed bytes and turns EOF into `Truncated`.
struct Input<'a, R: BufRead> {
    r: &'a mut R,
    offset: u64,
}

impl<R: BufRead> Input<'_, R> {
    /// The next buffered bytes; never empty (EOF is an error).
    fn available(&mut self) -> Result<&[u8], NarReadError> {
        let offset = self.offset;
        loop {
            match self.r.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Returns what the successful call above buffered, without I/O.
        let buf = self.r.fill_buf()?;
        if buf.is_empty() { Err(NarReadError::Truncated { offset }) } else { Ok(buf) }
    }

    fn consume(&mut self, n: usize) {
        self.r.consume(n);
        self.offset += n as u64;
    }

    fn read_exact(&mut self, out: &mut [u8]) -> Result<(), NarReadError> {
        let mut done = 0;
        while done < out.len() {
            let buf = self.available()?;
            let n = buf.len().min(out.len() - done);
            out[done..done + n].copy_from_slice(&buf[..n]);
            self.consume(n);
            done += n;
        }
        Ok(())
    }

    fn read_u64(&mut self) -> Result<u64, NarReadError> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn read_padding(&mut self, len: u64) -> Result<(), NarReadError> {
        let offset = self.offset;
        let mut pad = [0u8; 8];
        let pad = &mut pad[..padding(len)];
        self.read_exact(pad)?;
        if pad.iter().any(|&b| b != 0) {
            return Err(NarReadError::NonZeroPadding { offset });
        }
        Ok(())
    }

    /// A string of at most `max` bytes.
    fn read_string(&mut self, max: usize, what: &'static str) -> Result<Vec<u8>, NarReadError> {
        let offset = self.offset;
        let len = self.read_u64()?;
        if len > max as u64 {
            return Err(NarReadError::StringTooLong { offset, len, max, what });
        }
        let mut s = vec![0u8; len as usize];
        self.read_exact(&mut s)?;
        self.read_padding(len)?;
        Ok(s)
    }

    fn read_tag(&mut self, expected: &'static str) -> Result<Tag, NarReadError> {
        let offset = self.offset;
        let len = self.read_u64()?;
        let Some(len) = usize::try_from(len).ok().filter(|&l| l <= MAX_TAG_LEN) else {
            return Err(NarReadError::UnexpectedTag { offset, expected, found: format!("a string of {len} bytes") });
        };
        let mut tag = Tag { bytes: [0; MAX_TAG_LEN], len };
        self.read_exact(&mut tag.bytes[..len])?;
        self.read_padding(len as u64)?;
        Ok(tag)
    }

    fn expect(&mut self, tag: &'static str) -> Result<(), NarReadError> {
        let offset = self.offset;
        let found = self.read_tag(tag)?;
        if found.as_bytes() != tag.as_bytes() {
            return Err(unexpected(offset, tag, &found));
        }
        Ok(())
    }
}

fn unexpected(offset: u64, expected: &'static str, found: &Tag) -> NarReadError {
    NarReadError::UnexpectedTag { offset, expected, found: format!("'{}'", show_bytes(found.as_bytes())) }
}

/// An open directory: the length of its path in `path`, and its last entry name.
struct Dir {
    path_len: usize,
    prev: Option<Vec<u8>>,
}

struct Parser<'a, R: BufRead> {
    input: Input<'a, R>,
    stats: NarStats,
}

impl<R: BufRead> Parser<'_, R> {
    fn run(&mut self, v: &mut impl NarVisitor) -> Result<(), NarReadError> {
        let magic = self.input.read_u64()?;
        if magic != MAGIC.len() as u64 {
            return Err(NarReadError::BadMagic);
        }
        let mut m = [0u8; 16];
        self.input.read_exact(&mut m)?;
        if &m[..MAGIC.len()] != MAGIC || m[MAGIC.len()..].iter().any(|&b| b != 0) {
            return Err(NarReadError::BadMagic);
        }

        let mut path: Vec<u8> = Vec::new();
        let mut dirs: Vec<Dir> = Vec::new();
        loop {
            // A node starts at `path`.
            let node_done = self.node(v, &path)?;
            if !node_done {
                dirs.push(Dir { path_len: path.len(), prev: None });
            }
            let mut node_done = node_done;
            // Find the next node to parse, closing entries and directories.
            loop {
                let Some(dir) = dirs.last_mut() else { return Ok(()) };
                if node_done {
                    self.input.expect(")")?;
                    path.truncate(dir.path_len);
                }
                let offset = self.input.offset;
                let tag = self.input.read_tag("'entry' or ')'")?;
                match tag.as_bytes() {
                    b"entry" => {
                        self.input.expect("(")?;
                        self.input.expect("name")?;
                        let name = self.input.read_string(MAX_NAME_LEN, "an entry name")?;
                        check_name(&path, dir.prev.as_deref(), &name)?;
                        self.input.expect("node")?;
                        if !path.is_empty() {
                            path.push(b'/');
                        }
                        path.extend_from_slice(&name);
                        dir.prev = Some(name);
                        break;
                    }
                    b")" => {
                        dirs.pop();
                        v.directory_end(&path)?;
                        node_done = true;
                    }
                    _ => return Err(unexpected(offset, "'entry' or ')'", &tag)),
                }
            }
        }
    }

    /// Parse a node's header, and all of it unless it is a directory.
    /// Returns whether the node is complete (false: a directory was opened).
    fn node(&mut self, v: &mut impl NarVisitor, path: &[u8]) -> Result<bool, NarReadError> {
        self.input.expect("(")?;
        self.input.expect("type")?;
        let offset = self.input.offset;
        let kind = self.input.read_tag("a file type")?;
        match kind.as_bytes() {
            b"regular" => self.regular(v, path)?,
            b"symlink" => {
                self.input.expect("target")?;
                let target = self.input.read_string(MAX_TARGET_LEN, "a symlink target")?;
                if target.is_empty() || target.contains(&0) {
                    return Err(NarReadError::InvalidTarget { path: show_bytes(path) });
                }
                self.input.expect(")")?;
                self.stats.symlinks += 1;
                v.symlink(path, &target)?;
            }
            b"directory" => {
                self.stats.directories += 1;
                v.directory(path)?;
                return Ok(false);
            }
            _ => return Err(NarReadError::UnknownType { offset, found: show_bytes(kind.as_bytes()) }),
        }
        Ok(true)
    }

    fn regular(&mut self, v: &mut impl NarVisitor, path: &[u8]) -> Result<(), NarReadError> {
        let mut offset = self.input.offset;
        let mut tag = self.input.read_tag("'executable' or 'contents'")?;
        let executable = tag.as_bytes() == b"executable";
        if executable {
            let marker = self.input.offset;
            let value = self.input.read_tag("an empty executable marker")?;
            if value.len != 0 {
                return Err(unexpected(marker, "an empty executable marker", &value));
            }
            offset = self.input.offset;
            tag = self.input.read_tag("'contents'")?;
        }
        if tag.as_bytes() != b"contents" {
            let expected = if executable { "'contents'" } else { "'executable' or 'contents'" };
            return Err(unexpected(offset, expected, &tag));
        }
        let size = self.input.read_u64()?;
        v.regular(path, executable, size)?;
        let mut left = size;
        while left > 0 {
            let chunk = self.input.available()?;
            let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            v.contents(&chunk[..n])?;
            self.input.consume(n);
            left -= n as u64;
        }
        self.input.read_padding(size)?;
        self.input.expect(")")?;
        self.stats.regular_files += 1;
        self.stats.contents_size += size;
        v.regular_end()
    }
}

fn check_name(dir: &[u8], prev: Option<&[u8]>, name: &[u8]) -> Result<(), NarReadError> {
    let show = |b: &[u8]| show_bytes(b);
    if !is_valid_name(name) {
        return Err(NarReadError::InvalidName { dir: show(dir), name: show(name) });
    }
    match prev {
        Some(prev) if prev == name => Err(NarReadError::DuplicateName { dir: show(dir), name: show(name) }),
        Some(prev) if prev > name => {
            Err(NarReadError::NotSorted { dir: show(dir), prev: show(prev), name: show(name) })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
