//! The NAR grammar as a sans-I/O state machine: [`NarDecoder`].
//!
//! The decoder is fed byte slices of any size (down to one byte at a time)
//! and reports the objects it recognises to a [`NarVisitor`]. It does no I/O
//! itself, so the same validation serves blocking readers ([`super::parse`])
//! and async streams alike: an async caller loops on `fill_buf().await`,
//! `feed`, and `consume(n)`, and can forward exactly the consumed bytes
//! elsewhere (a NAR sent bare on a connection ends where the decoder says).
//!
//! Two layers: a lexer that assembles each wire string (8-byte length, then
//! the bytes and their padding) in a small buffer, or streams file contents
//! straight from the input slice to the visitor without copying; and the
//! grammar, an `Expect` state plus a stack of open directories (no
//! recursion). Before a string's bytes are buffered its length is checked
//! against the cap for its position (keywords [`MAX_TAG_LEN`], names
//! [`MAX_NAME_LEN`], targets [`MAX_TARGET_LEN`]), so memory stays bounded
//! whatever the input claims.
//!
//! Invariants: `feed` never consumes a byte past the end of the NAR; once it
//! has returned an error the decoder's state is meaningless and it must be
//! dropped.

use super::parser::{NarReadError, NarStats, NarVisitor};
use super::{MAGIC, MAX_NAME_LEN, MAX_TARGET_LEN, is_valid_name, padding, show_bytes};

/// Longest string accepted where the grammar expects a keyword.
pub const MAX_TAG_LEN: usize = 16;

/// The next string the grammar allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Magic,
    /// `(` opening a node.
    Open,
    Type,
    Kind,
    /// `executable` or `contents`.
    RegularTag,
    ExecValue,
    ContentsTag,
    /// The 8-byte contents size (not a string).
    ContentsSize,
    RegularClose,
    TargetTag,
    TargetValue,
    SymlinkClose,
    /// `entry` or the `)` closing a directory.
    DirItem,
    EntryOpen,
    NameTag,
    NameValue,
    NodeTag,
    EntryClose,
    Done,
}

impl Expect {
    fn describe(self) -> &'static str {
        match self {
            Expect::Magic => "'nix-archive-1'",
            Expect::Open | Expect::EntryOpen => "'('",
            Expect::Type => "'type'",
            Expect::Kind => "a file type",
            Expect::RegularTag => "'executable' or 'contents'",
            Expect::ExecValue => "an empty executable marker",
            Expect::ContentsTag => "'contents'",
            Expect::ContentsSize => "a file size",
            Expect::RegularClose | Expect::SymlinkClose | Expect::EntryClose => "')'",
            Expect::TargetTag => "'target'",
            Expect::TargetValue => "a symlink target",
            Expect::DirItem => "'entry' or ')'",
            Expect::NameTag => "'name'",
            Expect::NameValue => "an entry name",
            Expect::NodeTag => "'node'",
            Expect::Done => "the end of the NAR",
        }
    }

    fn max_len(self) -> usize {
        match self {
            Expect::NameValue => MAX_NAME_LEN,
            Expect::TargetValue => MAX_TARGET_LEN,
            _ => MAX_TAG_LEN,
        }
    }
}

/// What the lexer is assembling.
#[derive(Debug, Clone, Copy)]
enum Lex {
    /// An 8-byte length (or the contents size).
    Len,
    /// A string's `len` bytes followed by its padding.
    Body { len: usize },
    /// File contents still to stream.
    Contents { left: u64 },
    /// The padding after file contents.
    ContentsPad,
}

/// An open directory: the length of its path, and the last entry name seen.
struct Dir {
    path_len: usize,
    prev: Option<Vec<u8>>,
}

pub struct NarDecoder {
    expect: Expect,
    lex: Lex,
    /// The bytes of the length or string being assembled.
    acc: Vec<u8>,
    /// Offset of the current token's first byte (for errors).
    token_start: u64,
    offset: u64,
    /// Path of the current node relative to the root (`a/b`; empty for the root).
    path: Vec<u8>,
    dirs: Vec<Dir>,
    executable: bool,
    size: u64,
    target: Vec<u8>,
    stats: NarStats,
}

impl Default for NarDecoder {
    fn default() -> Self {
        NarDecoder::new()
    }
}

impl NarDecoder {
    pub fn new() -> NarDecoder {
        NarDecoder {
            expect: Expect::Magic,
            lex: Lex::Len,
            acc: Vec::with_capacity(64),
            token_start: 0,
            offset: 0,
            path: Vec::new(),
            dirs: Vec::new(),
            executable: false,
            size: 0,
            target: Vec::new(),
            stats: NarStats::default(),
        }
    }

    /// Whether the whole NAR has been consumed.
    pub fn is_done(&self) -> bool {
        self.expect == Expect::Done
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The NAR's statistics if it is complete, else `Truncated` (call at end of input).
    pub fn finish(&self) -> Result<NarStats, NarReadError> {
        if !self.is_done() {
            return Err(NarReadError::Truncated { offset: self.offset });
        }
        Ok(NarStats { nar_size: self.offset, ..self.stats.clone() })
    }

    /// Consume a prefix of `input`, reporting objects to `v`. Returns the
    /// number of bytes consumed: all of `input` unless the NAR ended in it.
    pub fn feed(&mut self, input: &[u8], v: &mut impl NarVisitor) -> Result<usize, NarReadError> {
        let mut rest = input;
        while !rest.is_empty() && !self.is_done() {
            let taken = match self.lex {
                Lex::Contents { left } => {
                    let (chunk, _) = rest.split_at(rest.len().min(usize::try_from(left).unwrap_or(usize::MAX)));
                    self.offset += chunk.len() as u64;
                    v.contents(chunk)?;
                    let left = left - chunk.len() as u64;
                    if left == 0 {
                        self.contents_done(v)?;
                    } else {
                        self.lex = Lex::Contents { left };
                    }
                    chunk.len()
                }
                _ => {
                    let need = self.need();
                    let (part, _) = rest.split_at(need.saturating_sub(self.acc.len()).min(rest.len()));
                    self.acc.extend_from_slice(part);
                    self.offset += part.len() as u64;
                    if self.acc.len() >= need {
                        self.complete(v)?;
                    }
                    part.len()
                }
            };
            rest = rest.get(taken..).unwrap_or_default();
        }
        Ok(input.len() - rest.len())
    }

    /// Bytes the lexer needs in `acc` to complete its current item.
    fn need(&self) -> usize {
        match self.lex {
            Lex::Len => 8,
            Lex::Body { len } => len + padding(len as u64),
            Lex::ContentsPad => padding(self.size),
            Lex::Contents { .. } => 0,
        }
    }

    /// `acc` holds a complete length, string or padding.
    fn complete(&mut self, v: &mut impl NarVisitor) -> Result<(), NarReadError> {
        match self.lex {
            Lex::Len => {
                let mut len = [0u8; 8];
                len.copy_from_slice(self.acc.get(..8).unwrap_or(&[0; 8]));
                let len = u64::from_le_bytes(len);
                self.acc.clear();
                if self.expect == Expect::ContentsSize {
                    self.size = len;
                    v.regular(&self.path, self.executable, len)?;
                    self.lex = Lex::Contents { left: len };
                    return if len == 0 { self.contents_done(v) } else { Ok(()) };
                }
                let Some(len) = usize::try_from(len).ok().filter(|&l| l <= self.expect.max_len()) else {
                    return Err(self.too_long(len));
                };
                self.lex = Lex::Body { len };
                if len == 0 { self.complete(v) } else { Ok(()) }
            }
            Lex::Body { len } => {
                let mut tok = std::mem::take(&mut self.acc);
                if tok.get(len..).is_some_and(|pad| pad.iter().any(|&b| b != 0)) {
                    if self.expect == Expect::Magic {
                        return Err(NarReadError::BadMagic);
                    }
                    return Err(NarReadError::NonZeroPadding { offset: self.token_start + 8 + len as u64 });
                }
                tok.truncate(len);
                self.lex = Lex::Len;
                let res = self.token(&tok, v);
                tok.clear();
                self.acc = tok;
                self.token_start = self.offset;
                res
            }
            Lex::ContentsPad => {
                if self.acc.iter().any(|&b| b != 0) {
                    return Err(NarReadError::NonZeroPadding { offset: self.offset - self.acc.len() as u64 });
                }
                self.acc.clear();
                self.lex = Lex::Len;
                self.expect = Expect::RegularClose;
                self.token_start = self.offset;
                Ok(())
            }
            Lex::Contents { .. } => Ok(()),
        }
    }

    fn contents_done(&mut self, v: &mut impl NarVisitor) -> Result<(), NarReadError> {
        self.lex = Lex::ContentsPad;
        if padding(self.size) == 0 { self.complete(v) } else { Ok(()) }
    }

    fn too_long(&self, len: u64) -> NarReadError {
        let (offset, expected) = (self.token_start, self.expect.describe());
        match self.expect {
            Expect::Magic => NarReadError::BadMagic,
            Expect::NameValue | Expect::TargetValue => {
                NarReadError::StringTooLong { offset, len, max: self.expect.max_len(), what: expected }
            }
            _ => NarReadError::UnexpectedTag { offset, expected, found: format!("a string of {len} bytes") },
        }
    }

    /// The grammar: a complete string `t` arrived where `self.expect` is.
    fn token(&mut self, t: &[u8], v: &mut impl NarVisitor) -> Result<(), NarReadError> {
        let unexpected = |d: &NarDecoder| NarReadError::UnexpectedTag {
            offset: d.token_start,
            expected: d.expect.describe(),
            found: format!("'{}'", show_bytes(t)),
        };
        self.expect = match (self.expect, t) {
            (Expect::Magic, MAGIC) => Expect::Open,
            (Expect::Magic, _) => return Err(NarReadError::BadMagic),
            (Expect::Open, b"(") => Expect::Type,
            (Expect::Type, b"type") => Expect::Kind,
            (Expect::Kind, b"regular") => {
                self.executable = false;
                Expect::RegularTag
            }
            (Expect::Kind, b"symlink") => Expect::TargetTag,
            (Expect::Kind, b"directory") => {
                self.stats.directories += 1;
                v.directory(&self.path)?;
                self.dirs.push(Dir { path_len: self.path.len(), prev: None });
                Expect::DirItem
            }
            (Expect::Kind, _) => {
                return Err(NarReadError::UnknownType { offset: self.token_start, found: show_bytes(t) });
            }
            (Expect::RegularTag, b"executable") => {
                self.executable = true;
                Expect::ExecValue
            }
            (Expect::RegularTag | Expect::ContentsTag, b"contents") => Expect::ContentsSize,
            (Expect::ExecValue, b"") => Expect::ContentsTag,
            (Expect::RegularClose, b")") => {
                self.stats.regular_files += 1;
                self.stats.contents_size += self.size;
                v.regular_end()?;
                self.node_done()
            }
            (Expect::TargetTag, b"target") => Expect::TargetValue,
            (Expect::TargetValue, _) => {
                if t.is_empty() || t.contains(&0) {
                    return Err(NarReadError::InvalidTarget { path: show_bytes(&self.path) });
                }
                self.target.clear();
                self.target.extend_from_slice(t);
                Expect::SymlinkClose
            }
            (Expect::SymlinkClose, b")") => {
                self.stats.symlinks += 1;
                v.symlink(&self.path, &self.target)?;
                self.node_done()
            }
            (Expect::DirItem, b"entry") => Expect::EntryOpen,
            (Expect::DirItem, b")") => {
                self.dirs.pop();
                v.directory_end(&self.path)?;
                self.node_done()
            }
            (Expect::EntryOpen, b"(") => Expect::NameTag,
            (Expect::NameTag, b"name") => Expect::NameValue,
            (Expect::NameValue, _) => {
                let Some(dir) = self.dirs.last_mut() else { return Err(unexpected(self)) };
                check_name(&self.path, dir.prev.as_deref(), t)?;
                dir.prev = Some(t.to_vec());
                Expect::NodeTag
            }
            (Expect::NodeTag, b"node") => {
                let Some(name) = self.dirs.last().and_then(|d| d.prev.as_deref()) else {
                    return Err(unexpected(self));
                };
                if !self.path.is_empty() {
                    self.path.push(b'/');
                }
                self.path.extend_from_slice(name);
                Expect::Open
            }
            (Expect::EntryClose, b")") => {
                let Some(dir) = self.dirs.last() else { return Err(unexpected(self)) };
                self.path.truncate(dir.path_len);
                Expect::DirItem
            }
            _ => return Err(unexpected(self)),
        };
        Ok(())
    }

    /// A node is complete: close the entry holding it, or end the NAR.
    fn node_done(&self) -> Expect {
        if self.dirs.is_empty() { Expect::Done } else { Expect::EntryClose }
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
mod tests {
    use super::*;
    use crate::nar::test_util::{nar_dir, nar_regular, nar_symlink};

    /// Records every event, with contents concatenated, to compare chunkings.
    #[derive(Default, PartialEq, Debug)]
    struct Trace(Vec<(String, Vec<u8>)>);
    impl NarVisitor for Trace {
        fn directory(&mut self, p: &[u8]) -> Result<(), NarReadError> {
            self.0.push(("dir".into(), p.to_vec()));
            Ok(())
        }
        fn directory_end(&mut self, p: &[u8]) -> Result<(), NarReadError> {
            self.0.push(("end".into(), p.to_vec()));
            Ok(())
        }
        fn regular(&mut self, p: &[u8], x: bool, size: u64) -> Result<(), NarReadError> {
            self.0.push((format!("file {x} {size}"), p.to_vec()));
            self.0.push(("data".into(), Vec::new()));
            Ok(())
        }
        fn contents(&mut self, c: &[u8]) -> Result<(), NarReadError> {
            if let Some((_, d)) = self.0.last_mut() {
                d.extend_from_slice(c);
            }
            Ok(())
        }
        fn symlink(&mut self, p: &[u8], t: &[u8]) -> Result<(), NarReadError> {
            self.0.push((format!("link {}", show_bytes(t)), p.to_vec()));
            Ok(())
        }
    }

    fn sample() -> Vec<u8> {
        nar_dir(&[
            (b"a", nar_dir(&[(b"x", nar_regular(true, b"")), (b"y", nar_regular(false, &[9u8; 1000]))])),
            (b"b", nar_symlink(b"a/y")),
            (b"c", nar_regular(false, b"1234567")),
        ])
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let nar = sample();
        let mut whole = NarDecoder::new();
        let mut expected = Trace::default();
        assert_eq!(whole.feed(&nar, &mut expected).unwrap(), nar.len());
        let stats = whole.finish().unwrap();
        assert_eq!(stats.nar_size, nar.len() as u64);
        for chunk in [1, 2, 3, 7, 8, 9, 64, 1001] {
            let mut d = NarDecoder::new();
            let mut trace = Trace::default();
            for piece in nar.chunks(chunk) {
                assert_eq!(d.feed(piece, &mut trace).unwrap(), piece.len());
            }
            assert_eq!(trace, expected, "chunk size {chunk}");
            assert_eq!(d.finish().unwrap(), stats);
        }
    }

    #[test]
    fn stops_at_the_end_of_the_nar() {
        let mut data = sample();
        let len = data.len();
        data.extend_from_slice(b"next message");
        let mut d = NarDecoder::new();
        assert_eq!(d.feed(&data, &mut Trace::default()).unwrap(), len);
        assert!(d.is_done());
        assert_eq!(d.feed(b"more", &mut Trace::default()).unwrap(), 0);
        assert_eq!(d.offset(), len as u64);
    }

    #[test]
    fn incomplete_input_is_truncated() {
        let nar = sample();
        let mut d = NarDecoder::new();
        d.feed(&nar[..nar.len() - 1], &mut Trace::default()).unwrap();
        assert!(!d.is_done());
        assert!(matches!(d.finish(), Err(NarReadError::Truncated { offset }) if offset == nar.len() as u64 - 1));
    }
}
