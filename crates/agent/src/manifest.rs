//! [`NarManifest`]: what a store path contains, file by file, without the bytes.
//!
//! A manifest lists the NAR's objects in NAR order (a directory before its
//! entries, entries sorted bytewise): directories, symlinks with their target,
//! and regular files with their executable bit, size and BLAKE3 hash. It is
//! what the agent reports for paths the target holds (the deployer's index of
//! "which file contents does this target have where") and what a
//! [`crate::delta::NarPlan`] is laid over. Store paths are immutable, so a
//! manifest is valid forever for its path and can be cached by it.
//!
//! Invariants:
//! - every [`RelPath`] is valid (components are valid NAR names), checked when
//!   built and when deserialised, so a manifest from the network can never
//!   name `..`, an absolute path or an empty component;
//! - [`NarManifest::check`] verifies the entries form exactly one canonical
//!   tree (root first, each entry's parent an open directory, names strictly
//!   increasing within a directory), which is what lets a NAR be rebuilt from
//!   it byte for byte; [`walk`] is that check, driving a caller's tree builder.
//!
//! Manifests are computed from a NAR stream ([`NarManifest::from_nar`], or
//! [`ManifestWriter`] for NAR bytes written by a serialiser) or from a path
//! on disk ([`NarManifest::from_disk`], which reuses the store's NAR dump
//! walk through a [`ManifestWriter`], so all agree by construction).

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use ndeploy_store::nar::{self, DumpError, NarDecoder, NarReadError, NarVisitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("invalid relative path '{0}' (components must be non-empty, not '.' or '..', without NUL)")]
    InvalidRelPath(String),
    #[error("invalid symlink target at '{0}' (empty, too long, or contains NUL)")]
    InvalidTarget(String),
    #[error("manifest is empty")]
    Empty,
    #[error("manifest entry {index} ('{path}'): {problem}")]
    BadTree { index: usize, path: String, problem: &'static str },
    #[error("manifest has {0} entries, more than the limit")]
    TooManyEntries(usize),
    #[error(transparent)]
    Nar(#[from] NarReadError),
    #[error(transparent)]
    Dump(#[from] DumpError),
}

/// Most entries accepted in one manifest or plan from the network.
pub const MAX_ENTRIES: usize = 1 << 20;

/// A file's BLAKE3 hash; serialised as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileHash(pub [u8; 32]);

impl FileHash {
    pub fn of(data: &[u8]) -> FileHash {
        FileHash(*blake3::hash(data).as_bytes())
    }
}

impl fmt::Display for FileHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for FileHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b3:{}", &hex::encode(self.0)[..16])
    }
}

impl Serialize for FileHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for FileHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.as_bytes(), &mut out).map_err(serde::de::Error::custom)?;
        Ok(FileHash(out))
    }
}

/// Raw bytes (NAR names need not be UTF-8): a JSON string when they are
/// UTF-8, else `{"hex": "..."}`.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BytesRepr<'a> {
    Str(std::borrow::Cow<'a, str>),
    Hex { hex: String },
}

fn ser_bytes<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    match std::str::from_utf8(b) {
        Ok(t) => BytesRepr::Str(t.into()).serialize(s),
        Err(_) => BytesRepr::Hex { hex: hex::encode(b) }.serialize(s),
    }
}

fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    match BytesRepr::deserialize(d)? {
        BytesRepr::Str(s) => Ok(s.into_owned().into_bytes()),
        BytesRepr::Hex { hex } => hex::decode(hex).map_err(serde::de::Error::custom),
    }
}

/// A path relative to a store path's root: NAR names joined by `/`; empty
/// for the root itself. Always valid (see the module invariants).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RelPath(Vec<u8>);

impl RelPath {
    /// The root of a store path.
    pub fn root() -> RelPath {
        RelPath(Vec::new())
    }

    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<RelPath, ManifestError> {
        let bytes = bytes.into();
        if bytes.is_empty() || bytes.split(|&b| b == b'/').all(|c| nar::is_valid_name(c) && c.len() <= nar::MAX_NAME_LEN) {
            Ok(RelPath(bytes))
        } else {
            Err(ManifestError::InvalidRelPath(String::from_utf8_lossy(&bytes).into_owned()))
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `(parent, name)`; `None` for the root.
    pub fn split_last(&self) -> Option<(&[u8], &[u8])> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => (&self.0[..i], &self.0[i + 1..]),
            None => (&[][..], &self.0[..]),
        })
    }

    /// The components (none for the root).
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// This path under `root` on the local file system.
    pub fn under(&self, root: &Path) -> std::path::PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let mut p = root.to_path_buf();
        for c in self.components() {
            p.push(std::ffi::OsStr::from_bytes(c));
        }
        p
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl Serialize for RelPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ser_bytes(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RelPath::new(de_bytes(d)?).map_err(serde::de::Error::custom)
    }
}

/// A symlink target: non-empty bytes without NUL, at most `MAX_TARGET_LEN`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LinkTarget(Vec<u8>);

impl LinkTarget {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<LinkTarget> {
        let b = bytes.into();
        (!b.is_empty() && b.len() <= nar::MAX_TARGET_LEN && !b.contains(&0)).then_some(LinkTarget(b))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for LinkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl Serialize for LinkTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ser_bytes(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for LinkTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        LinkTarget::new(de_bytes(d)?).ok_or_else(|| serde::de::Error::custom("invalid symlink target"))
    }
}

/// One object of a NAR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Node {
    Directory,
    Symlink { target: LinkTarget },
    Regular {
        #[serde(default, skip_serializing_if = "std::ops::Not::not", rename = "x")]
        executable: bool,
        size: u64,
        b3: FileHash,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: RelPath,
    #[serde(flatten)]
    pub node: Node,
}

/// The objects of one NAR in NAR order (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NarManifest {
    pub entries: Vec<Entry>,
}

/// Something laid out like a manifest entry (manifests and plans share [`walk`]).
pub trait TreeEntry {
    fn rel(&self) -> &RelPath;
    fn is_directory(&self) -> bool;
}

impl TreeEntry for Entry {
    fn rel(&self) -> &RelPath {
        &self.path
    }
    fn is_directory(&self) -> bool {
        matches!(self.node, Node::Directory)
    }
}

/// A step of rebuilding a tree from entries in NAR order.
pub enum Step<'a, E> {
    /// An entry named `name` of the innermost open directory starts (its node follows).
    Entry(&'a [u8]),
    /// The node of `E` (a directory node stays open until its `EndDirectory`).
    Node(&'a E),
    EndDirectory,
}

/// Check that `entries` form one canonical tree and report it as steps (in
/// the order of [`ndeploy_store::nar::NarEncoder`] calls). Stops at the first
/// error from the check or from `f`.
pub fn walk<'a, E: TreeEntry, Err: From<ManifestError>>(
    entries: &'a [E],
    mut f: impl FnMut(Step<'a, E>) -> Result<(), Err>,
) -> Result<(), Err> {
    let bad = |index: usize, e: &E, problem: &'static str| ManifestError::BadTree { index, path: e.rel().to_string(), problem };
    let Some(first) = entries.first() else { return Err(ManifestError::Empty.into()) };
    if entries.len() > MAX_ENTRIES {
        return Err(ManifestError::TooManyEntries(entries.len()).into());
    }
    if !first.rel().is_root() {
        return Err(bad(0, first, "the first entry must be the root").into());
    }
    f(Step::Node(first))?;
    // Open directories: (path, last entry name seen in it).
    let mut open: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
    if first.is_directory() {
        open.push((first.rel().as_bytes(), None));
    }
    for (index, e) in entries.iter().enumerate().skip(1) {
        let Some((parent, name)) = e.rel().split_last() else {
            return Err(bad(index, e, "the root appears twice").into());
        };
        loop {
            match open.last() {
                None => return Err(bad(index, e, "its parent is not an open directory").into()),
                Some((p, _)) if *p == parent => break,
                Some(_) => {
                    open.pop();
                    f(Step::EndDirectory)?;
                }
            }
        }
        if let Some((_, last)) = open.last_mut() {
            if last.is_some_and(|l| name <= l) {
                return Err(bad(index, e, "entries are not sorted bytewise (or repeat)").into());
            }
            *last = Some(name);
        }
        f(Step::Entry(name))?;
        f(Step::Node(e))?;
        if e.is_directory() {
            open.push((e.rel().as_bytes(), None));
        }
    }
    for _ in open.drain(..) {
        f(Step::EndDirectory)?;
    }
    Ok(())
}

impl NarManifest {
    /// Check the tree structure (see [`walk`]).
    pub fn check(&self) -> Result<(), ManifestError> {
        walk(&self.entries, |_| Ok::<(), ManifestError>(()))
    }

    /// The regular files: `(rel, executable, size, blake3)`.
    pub fn files(&self) -> impl Iterator<Item = (&RelPath, bool, u64, FileHash)> {
        self.entries.iter().filter_map(|e| match e.node {
            Node::Regular { executable, size, b3 } => Some((&e.path, executable, size, b3)),
            _ => None,
        })
    }

    /// Total size of regular file contents.
    pub fn contents_size(&self) -> u64 {
        self.files().map(|f| f.2).sum()
    }

    /// The manifest of a NAR read from `r` (which must hold exactly one NAR).
    pub fn from_nar(r: impl Read) -> Result<NarManifest, ManifestError> {
        Self::from_nar_with(r, &mut |_, _| {})
    }

    /// Like [`Self::from_nar`], also handing each regular file's contents
    /// (entry index, bytes) to `file` (for the encoder, which needs them).
    pub fn from_nar_with(r: impl Read, file: &mut dyn FnMut(usize, Vec<u8>)) -> Result<NarManifest, ManifestError> {
        let mut v = ManifestVisitor::new(Some(file));
        nar::parse(r, &mut v)?;
        Ok(v.finish())
    }

    /// The manifest of the file system object at `path` (as its NAR would have it).
    pub fn from_disk(path: &Path) -> Result<NarManifest, ManifestError> {
        let mut sink = ManifestWriter::new();
        match nar::dump_path(path, &mut sink) {
            Ok(_) => sink.finish(),
            Err(e) => Err(sink.0.error.take().map(ManifestError::Nar).unwrap_or(ManifestError::Dump(e))),
        }
    }
}

/// A [`Write`] that computes the manifest of the one NAR written into it,
/// for code that serialises NARs anyway (push's fan-out): the manifest comes
/// from the same bytes, without reading the files again. Write errors mean
/// the bytes are not a NAR (the writer is then unusable).
pub struct ManifestWriter(DecodingSink<'static>);

impl Default for ManifestWriter {
    fn default() -> Self {
        ManifestWriter::new()
    }
}

impl ManifestWriter {
    pub fn new() -> ManifestWriter {
        ManifestWriter(DecodingSink { decoder: NarDecoder::new(), visitor: ManifestVisitor::new(None), error: None })
    }

    /// The manifest, if exactly one complete NAR was written.
    pub fn finish(mut self) -> Result<NarManifest, ManifestError> {
        if let Some(e) = self.0.error.take() {
            return Err(e.into());
        }
        self.0.decoder.finish()?;
        Ok(self.0.visitor.finish())
    }
}

impl Write for ManifestWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Builds a manifest from parser events.
struct ManifestVisitor<'f> {
    entries: Vec<Entry>,
    hasher: blake3::Hasher,
    contents: Option<Vec<u8>>,
    file: Option<&'f mut dyn FnMut(usize, Vec<u8>)>,
}

impl<'f> ManifestVisitor<'f> {
    fn new(file: Option<&'f mut dyn FnMut(usize, Vec<u8>)>) -> Self {
        ManifestVisitor { entries: Vec::new(), hasher: blake3::Hasher::new(), contents: None, file }
    }

    fn finish(self) -> NarManifest {
        NarManifest { entries: self.entries }
    }

    fn push(&mut self, path: &[u8], node: Node) -> Result<(), NarReadError> {
        // The parser only hands out valid names, so this cannot fail; map it anyway.
        let path = RelPath::new(path).map_err(|e| NarReadError::Io(io::Error::other(e.to_string())))?;
        self.entries.push(Entry { path, node });
        Ok(())
    }
}

impl NarVisitor for ManifestVisitor<'_> {
    fn directory(&mut self, path: &[u8]) -> Result<(), NarReadError> {
        self.push(path, Node::Directory)
    }
    fn regular(&mut self, path: &[u8], executable: bool, size: u64) -> Result<(), NarReadError> {
        self.hasher.reset();
        if self.file.is_some() {
            self.contents = Some(Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 26)));
        }
        self.push(path, Node::Regular { executable, size, b3: FileHash([0; 32]) })
    }
    fn contents(&mut self, chunk: &[u8]) -> Result<(), NarReadError> {
        self.hasher.update(chunk);
        if let Some(c) = &mut self.contents {
            c.extend_from_slice(chunk);
        }
        Ok(())
    }
    fn regular_end(&mut self) -> Result<(), NarReadError> {
        let index = self.entries.len().saturating_sub(1);
        if let Some(Entry { node: Node::Regular { b3, .. }, .. }) = self.entries.last_mut() {
            *b3 = FileHash(*self.hasher.finalize().as_bytes());
        }
        if let (Some(f), Some(c)) = (self.file.as_mut(), self.contents.take()) {
            f(index, c);
        }
        Ok(())
    }
    fn symlink(&mut self, path: &[u8], target: &[u8]) -> Result<(), NarReadError> {
        let Some(target) = LinkTarget::new(target) else {
            return Err(NarReadError::InvalidTarget { path: String::from_utf8_lossy(path).into_owned() });
        };
        self.push(path, Node::Symlink { target })
    }
}

/// A `Write` that parses the NAR written into it.
struct DecodingSink<'f> {
    decoder: NarDecoder,
    visitor: ManifestVisitor<'f>,
    error: Option<NarReadError>,
}

impl Write for DecodingSink<'_> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            match self.decoder.feed(buf, &mut self.visitor) {
                Ok(0) => return Err(io::Error::other("NAR decoder made no progress")),
                Ok(used) => buf = buf.get(used..).unwrap_or_default(),
                Err(e) => {
                    let msg = e.to_string();
                    self.error = Some(e);
                    return Err(io::Error::other(msg));
                }
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_nar::{dir, exe, file, link, nar_of};

    #[test]
    fn from_nar_and_from_disk_agree() {
        let tree = dir(vec![
            ("bin", dir(vec![("hello", exe(b"#!/bin/sh\necho hi\n")), ("hi", link("hello"))])),
            ("empty", dir(vec![])),
            ("share", dir(vec![("doc.txt", file(b"docs"))])),
        ]);
        let nar = nar_of(&tree);
        let m = NarManifest::from_nar(&nar[..]).unwrap();
        m.check().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("out");
        ndeploy_store::nar::restore(&nar[..], &root).unwrap();
        assert_eq!(NarManifest::from_disk(&root).unwrap(), m);
        let paths: Vec<String> = m.entries.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(paths, ["", "bin", "bin/hello", "bin/hi", "empty", "share", "share/doc.txt"]);
        assert_eq!(m.contents_size(), 22);
        assert!(matches!(m.entries[2].node, Node::Regular { executable: true, size: 18, b3 } if b3 == FileHash::of(b"#!/bin/sh\necho hi\n")));
        // JSON round trip.
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<NarManifest>(&json).unwrap(), m);
    }

    /// NAR bytes written in pieces of any size give the stream's manifest;
    /// a truncated or damaged NAR is an error, never a manifest.
    #[test]
    fn manifest_writer_agrees_with_from_nar() {
        let tree = dir(vec![("bin", dir(vec![("a", exe(&[7u8; 5000])), ("l", link("a"))])), ("z", file(b"zz"))]);
        let nar = nar_of(&tree);
        let want = NarManifest::from_nar(&nar[..]).unwrap();
        for piece in [1, 7, 64, 4096, nar.len()] {
            let mut w = ManifestWriter::new();
            for c in nar.chunks(piece) {
                w.write_all(c).unwrap();
            }
            assert_eq!(w.finish().unwrap(), want, "pieces of {piece}");
        }
        let mut w = ManifestWriter::new();
        w.write_all(&nar[..nar.len() - 8]).unwrap();
        assert!(w.finish().is_err());
        let mut bad = nar.clone();
        bad[20] ^= 0xff;
        let mut w = ManifestWriter::new();
        let _ = w.write_all(&bad);
        assert!(w.finish().is_err());
    }

    #[test]
    fn non_utf8_names_round_trip() {
        let nar = nar_of(&dir(vec![("caf\u{e9}", file(b"x"))]));
        let m = NarManifest::from_nar(&nar[..]).unwrap();
        let mut m2 = m.clone();
        m2.entries[1].path = RelPath::new(b"\xff\xfe".to_vec()).unwrap();
        let json = serde_json::to_string(&m2).unwrap();
        assert!(json.contains("\"hex\":\"fffe\""), "{json}");
        assert_eq!(serde_json::from_str::<NarManifest>(&json).unwrap(), m2);
    }

    #[test]
    fn bad_paths_and_trees_are_rejected() {
        for bad in ["..", "a/../b", "/etc", "a//b", "a/", ".", "a/./b"] {
            assert!(RelPath::new(bad).is_err(), "{bad}");
            let json = format!(r#"{{"entries":[{{"path":"","t":"directory"}},{{"path":"{bad}","t":"directory"}}]}}"#);
            assert!(serde_json::from_str::<NarManifest>(&json).is_err(), "{bad}");
        }
        let parse = |j: &str| serde_json::from_str::<NarManifest>(j).unwrap();
        let d = r#"{"path":"","t":"directory"}"#;
        let cases = [
            format!(r#"{{"entries":[{d},{{"path":"b","t":"directory"}},{{"path":"a","t":"directory"}}]}}"#),
            format!(r#"{{"entries":[{d},{{"path":"a","t":"directory"}},{{"path":"a","t":"directory"}}]}}"#),
            format!(r#"{{"entries":[{d},{{"path":"a/b","t":"directory"}}]}}"#),
            r#"{"entries":[{"path":"a","t":"directory"}]}"#.to_owned(),
            r#"{"entries":[{"path":"","t":"symlink","target":"x"},{"path":"a","t":"directory"}]}"#.to_owned(),
            format!(r#"{{"entries":[{d},{d}]}}"#),
            r#"{"entries":[]}"#.to_owned(),
        ];
        for c in cases {
            assert!(parse(&c).check().is_err(), "{c}");
        }
        assert!(serde_json::from_str::<NarManifest>(r#"{"entries":[{"path":"","t":"symlink","target":""}]}"#).is_err());
    }
}
