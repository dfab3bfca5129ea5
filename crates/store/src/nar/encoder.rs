//! A streaming NAR encoder for any source of file system objects.
//!
//! [`NarEncoder`] writes a NAR into any [`Write`] through one fixed-size
//! buffer: tokens are appended to it, and file contents are `read` straight
//! into its free space, so each byte is copied once (from the reader into the
//! buffer) before the sink sees it in large chunks.
//!
//! The caller describes the tree top-down: one node at the root, and inside a
//! directory any number of `entry(name)` each followed by exactly one node.
//! The encoder tracks that nesting and checks every name (valid, strictly
//! increasing within its directory, within the parser's length caps), so a
//! sequence of calls it accepts always yields a canonical NAR that
//! [`super::parse`] accepts; misuse is an [`EncodeError`], never a panic. After an
//! error the encoder's output is unusable.

use std::io::{self, Read, Write};

use thiserror::Error;

use super::{BUF_SIZE, MAGIC, MAX_NAME_LEN, MAX_TARGET_LEN, is_valid_name, padding, show_bytes};

#[derive(Debug, Error)]
pub enum EncodeError {
    /// Kept out of `source()` so that printing the chain does not repeat it.
    #[error("writing NAR: {0}")]
    Io(io::Error),
    #[error("reading contents of {what}: {error}")]
    Read { what: String, error: io::Error },
    #[error("contents of {what} ended after {read} of {expected} bytes")]
    ShortContents { what: String, read: u64, expected: u64 },
    #[error("invalid NAR entry name '{0}' (empty, '.', '..', longer than {MAX_NAME_LEN} bytes, or contains '/' or NUL)")]
    InvalidName(String),
    #[error("NAR entry '{name}' is not after '{prev}' (entries must be unique and sorted bytewise)")]
    NotSorted { prev: String, name: String },
    #[error("symlink target is empty, longer than {MAX_TARGET_LEN} bytes, or contains NUL")]
    InvalidTarget,
    #[error("NAR encoder misuse: {0}")]
    Misuse(&'static str),
}

impl From<io::Error> for EncodeError {
    fn from(e: io::Error) -> Self {
        EncodeError::Io(e)
    }
}

/// Where the encoder is in the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A node must come next (at the root, or after `entry`).
    Node,
    /// Inside a directory: `entry` or `end_directory` must come next.
    Directory,
    /// The root node is complete.
    Done,
}

struct DirFrame {
    prev_name: Option<Vec<u8>>,
    /// Whether this directory is itself an entry of a parent (needs a closing `)`).
    in_entry: bool,
}

pub struct NarEncoder<W: Write> {
    out: W,
    buf: Box<[u8]>,
    len: usize,
    written: u64,
    state: State,
    dirs: Vec<DirFrame>,
    /// Whether the node being started is the child of an `entry`.
    pending_entry: bool,
}

impl<W: Write> NarEncoder<W> {
    /// Start a NAR (writes the magic) into `out`.
    pub fn new(out: W) -> NarEncoder<W> {
        let mut e = NarEncoder {
            out,
            buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
            len: 0,
            written: 0,
            state: State::Node,
            dirs: Vec::new(),
            pending_entry: false,
        };
        // The magic fits in the empty buffer, so this cannot fail.
        let _ = e.push_str(MAGIC);
        e
    }

    /// Bytes of NAR produced so far (flushed or not).
    pub fn nar_size(&self) -> u64 {
        self.written + self.len as u64
    }

    /// A regular file with `size` bytes of contents read from `contents`.
    /// Reads exactly `size` bytes; a reader that ends early is an error.
    pub fn regular(&mut self, executable: bool, size: u64, contents: &mut dyn Read) -> Result<(), EncodeError> {
        self.regular_named(executable, size, contents, &|| "file".to_owned())
    }

    /// A regular file whose contents are in memory.
    pub fn regular_bytes(&mut self, executable: bool, contents: &[u8]) -> Result<(), EncodeError> {
        self.regular(executable, contents.len() as u64, &mut &contents[..])
    }

    /// A symbolic link to `target` (any bytes but NUL, not empty).
    pub fn symlink(&mut self, target: &[u8]) -> Result<(), EncodeError> {
        if target.is_empty() || target.len() > MAX_TARGET_LEN || target.contains(&0) {
            return Err(EncodeError::InvalidTarget);
        }
        self.begin_node()?;
        self.push_strs(&[b"type", b"symlink", b"target", target])?;
        self.end_node()
    }

    /// Start a directory node; follow with `entry`+node pairs and `end_directory`.
    pub fn begin_directory(&mut self) -> Result<(), EncodeError> {
        self.begin_node()?;
        self.push_strs(&[b"type", b"directory"])?;
        self.dirs.push(DirFrame { prev_name: None, in_entry: self.pending_entry });
        self.pending_entry = false;
        self.state = State::Directory;
        Ok(())
    }

    /// Start an entry of the current directory; the next call must describe its node.
    pub fn entry(&mut self, name: &[u8]) -> Result<(), EncodeError> {
        if self.state != State::Directory {
            return Err(EncodeError::Misuse("entry outside a directory or before the previous entry's node"));
        }
        if !is_valid_name(name) || name.len() > MAX_NAME_LEN {
            return Err(EncodeError::InvalidName(show_bytes(name)));
        }
        let frame = self.dirs.last_mut().ok_or(EncodeError::Misuse("entry outside a directory"))?;
        if let Some(prev) = &frame.prev_name
            && name <= prev.as_slice()
        {
            return Err(EncodeError::NotSorted { prev: show_bytes(prev), name: show_bytes(name) });
        }
        frame.prev_name = Some(name.to_vec());
        self.push_strs(&[b"entry", b"(", b"name", name, b"node"])?;
        self.pending_entry = true;
        self.state = State::Node;
        Ok(())
    }

    /// Close the current directory.
    pub fn end_directory(&mut self) -> Result<(), EncodeError> {
        if self.state != State::Directory {
            return Err(EncodeError::Misuse("end_directory outside a directory or right after entry"));
        }
        let frame = self.dirs.pop().ok_or(EncodeError::Misuse("end_directory outside a directory"))?;
        self.pending_entry = frame.in_entry;
        self.end_node()
    }

    /// Finish the NAR: the root node must be complete. Flushes and returns the sink.
    pub fn finish(mut self) -> Result<W, EncodeError> {
        if self.state != State::Done {
            return Err(EncodeError::Misuse("finish before the root node is complete"));
        }
        self.flush_buf()?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Like `regular`, but names the source in errors (used by `dump`).
    pub(crate) fn regular_named(
        &mut self,
        executable: bool,
        size: u64,
        contents: &mut dyn Read,
        what: &dyn Fn() -> String,
    ) -> Result<(), EncodeError> {
        self.begin_node()?;
        self.push_strs(&[b"type", b"regular"])?;
        if executable {
            self.push_strs(&[b"executable", b""])?;
        }
        self.push_str(b"contents")?;
        self.push_raw(&size.to_le_bytes())?;
        self.copy_contents(size, contents, what)?;
        self.push_raw(&[0u8; 8][..padding(size)])?;
        self.end_node()
    }

    fn begin_node(&mut self) -> Result<(), EncodeError> {
        if self.state != State::Node {
            return Err(EncodeError::Misuse(match self.state {
                State::Done => "node after the root node is complete",
                _ => "node inside a directory without entry",
            }));
        }
        self.push_str(b"(")
    }

    /// Close a node (and the entry containing it, if any).
    fn end_node(&mut self) -> Result<(), EncodeError> {
        self.push_str(b")")?;
        if self.pending_entry {
            self.push_str(b")")?;
            self.pending_entry = false;
        }
        self.state = if self.dirs.is_empty() { State::Done } else { State::Directory };
        Ok(())
    }

    fn copy_contents(&mut self, size: u64, r: &mut dyn Read, what: impl Fn() -> String) -> Result<(), EncodeError> {
        let mut left = size;
        while left > 0 {
            if self.len == self.buf.len() {
                self.flush_buf()?;
            }
            let room = (self.buf.len() - self.len).min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match r.read(&mut self.buf[self.len..self.len + room]) {
                Ok(0) => return Err(EncodeError::ShortContents { what: what(), read: size - left, expected: size }),
                Ok(n) => n.min(room),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(EncodeError::Read { what: what(), error }),
            };
            self.len += n;
            left -= n as u64;
        }
        Ok(())
    }

    fn push_strs(&mut self, strs: &[&[u8]]) -> Result<(), EncodeError> {
        strs.iter().try_for_each(|s| self.push_str(s))
    }

    fn push_str(&mut self, s: &[u8]) -> Result<(), EncodeError> {
        self.push_raw(&(s.len() as u64).to_le_bytes())?;
        self.push_raw(s)?;
        self.push_raw(&[0u8; 8][..padding(s.len() as u64)])
    }

    fn push_raw(&mut self, data: &[u8]) -> Result<(), EncodeError> {
        if data.len() > self.buf.len() - self.len {
            self.flush_buf()?;
            if data.len() >= self.buf.len() {
                self.out.write_all(data)?;
                self.written += data.len() as u64;
                return Ok(());
            }
        }
        self.buf[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), EncodeError> {
        if self.len > 0 {
            self.out.write_all(&self.buf[..self.len])?;
            self.written += self.len as u64;
            self.len = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nar::test_util::{nar_dir, nar_regular, nar_symlink};

    #[test]
    fn single_nodes() {
        let mut e = NarEncoder::new(Vec::new());
        e.regular_bytes(true, b"hello").unwrap();
        assert_eq!(e.finish().unwrap(), nar_regular(true, b"hello"));

        let mut e = NarEncoder::new(Vec::new());
        e.symlink(b"../x").unwrap();
        assert_eq!(e.finish().unwrap(), nar_symlink(b"../x"));
    }

    #[test]
    fn nested_directories() {
        let mut e = NarEncoder::new(Vec::new());
        e.begin_directory().unwrap();
        e.entry(b"a").unwrap();
        e.begin_directory().unwrap();
        e.entry(b"f").unwrap();
        e.regular_bytes(false, b"").unwrap();
        e.end_directory().unwrap();
        e.entry(b"b").unwrap();
        e.symlink(b"a/f").unwrap();
        e.end_directory().unwrap();
        let size = e.nar_size();
        let nar = e.finish().unwrap();
        assert_eq!(nar.len() as u64, size);
        let inner = nar_dir(&[(b"f", nar_regular(false, b""))]);
        assert_eq!(nar, nar_dir(&[(b"a", inner), (b"b", nar_symlink(b"a/f"))]));
    }

    #[test]
    fn large_contents_stream_through() {
        let data: Vec<u8> = (0..BUF_SIZE * 3 + 5).map(|i| (i * 7 % 251) as u8).collect();
        let mut e = NarEncoder::new(Vec::new());
        e.regular(false, data.len() as u64, &mut &data[..]).unwrap();
        assert_eq!(e.finish().unwrap(), nar_regular(false, &data));
    }

    #[test]
    fn rejects_misuse() {
        let mut e = NarEncoder::new(Vec::new());
        e.begin_directory().unwrap();
        assert!(matches!(e.regular_bytes(false, b""), Err(EncodeError::Misuse(_))));
        assert!(matches!(e.entry(b"a/b"), Err(EncodeError::InvalidName(_))));
        assert!(matches!(e.entry(b".."), Err(EncodeError::InvalidName(_))));
        assert!(matches!(e.entry(&[b'n'; MAX_NAME_LEN + 1]), Err(EncodeError::InvalidName(_))));
        e.entry(b"b").unwrap();
        assert!(matches!(e.entry(b"c"), Err(EncodeError::Misuse(_))));
        assert!(matches!(e.end_directory(), Err(EncodeError::Misuse(_))));
        e.symlink(b"x").unwrap();
        assert!(matches!(e.entry(b"b"), Err(EncodeError::NotSorted { .. })));
        assert!(matches!(e.entry(b"a"), Err(EncodeError::NotSorted { .. })));
        e.entry(b"c").unwrap();
        assert!(matches!(e.symlink(b""), Err(EncodeError::InvalidTarget)));
        assert!(matches!(e.symlink(b"a\0b"), Err(EncodeError::InvalidTarget)));
        assert!(matches!(e.symlink(&[b'x'; MAX_TARGET_LEN + 1]), Err(EncodeError::InvalidTarget)));
        e.symlink(b"x").unwrap();
        let e2 = NarEncoder::new(Vec::new());
        assert!(matches!(e2.finish(), Err(EncodeError::Misuse(_))));
        e.end_directory().unwrap();
        assert!(matches!(e.symlink(b"x"), Err(EncodeError::Misuse(_))));
        e.finish().unwrap();
    }

    #[test]
    fn short_contents() {
        let mut e = NarEncoder::new(Vec::new());
        let err = e.regular(false, 10, &mut &b"abc"[..]).unwrap_err();
        assert!(matches!(err, EncodeError::ShortContents { read: 3, expected: 10, .. }), "{err}");
    }
}
