//! The delta codec: a NAR described as a [`NarPlan`] over what the target
//! already holds, plus a payload of the bytes it lacks.
//!
//! A plan lists the NAR's objects in NAR order (like a
//! [`NarManifest`](crate::manifest::NarManifest)); directories and symlinks
//! travel as structure, and every regular file carries its size, its BLAKE3
//! hash and a [`Method`] saying how the target gets its bytes, in order of
//! preference ([`encode`]):
//! 1. [`Method::Ref`]: a file with the same contents the target holds
//!    anywhere in its store (from the target's manifests);
//! 2. [`Method::Patch`]: a file of the same size as the file at the same
//!    relative path in the target's previous version of the package that
//!    differs from it in a few short runs (embedded store hashes rewritten:
//!    the common case when only a dependency changed) as those runs
//!    ([`patch`]: one comparison pass to compute, a copy to apply);
//!    else [`Method::Delta`]: zstd with that file as prefix ("patch-from");
//! 3. [`Method::Chunks`]: for large files, content-defined chunks (FastCDC)
//!    the target holds in such a base file, the rest compressed;
//! 4. [`Method::Raw`]: zstd-compressed bytes, as the next chunk of one zstd
//!    stream per NAR (the NAR's earlier raw files are its context).
//!
//! The payload is the concatenation of the methods' byte strings in plan
//! order; each method says how many payload bytes it consumes.
//!
//! [`decode`] rebuilds the NAR byte for byte through the store's
//! [`NarEncoder`](ndeploy_store::nar::NarEncoder), reading reused files from a
//! [`FileSource`]. Invariants (the plan is untrusted input): the tree is
//! checked with [`crate::manifest::walk`], store paths are parsed, relative
//! paths are valid by construction; every file's size and BLAKE3 are checked
//! as it is produced (so a corrupted or swapped file on the target is a
//! [`DecodeError`], never silently reused); every payload slice is bounds-checked
//! and the payload must be consumed exactly; decompression never produces more
//! than the declared size. The NAR's size and sha256 are then checked
//! against the path info before the path is registered (the size by the
//! agent, the hash by the target's daemon as it imports).
//!
//! [`TargetKnowledge`] is what the deployer knows about one target, injected
//! so the codec tests without a store; [`KnowledgeIndex`] is the standard
//! implementation built from manifests.

mod chunks;
mod codec;
mod decode;
mod encode;
mod knowledge;
pub mod patch;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::manifest::{FileHash, LinkTarget, RelPath, TreeEntry};

pub use codec::decompress_exact;
pub use decode::{DecodeError, FileSource, ReadSeek, StoreFiles, decode};
pub use encode::{EncodeError, EncodeOptions, EncodedNar, encode, encode_from_disk, encode_whole};
pub use knowledge::{KnowledgeIndex, TargetKnowledge};

/// Files at most this large are delta-encoded with zstd (base and result
/// are held in memory on both sides, 256 MiB at most); larger ones use chunks.
pub const MAX_DELTA_FILE: u64 = 128 << 20;
/// Largest base file the deployer reads (chunking reads larger files than deltas).
pub const MAX_BASE_FILE: u64 = 2 << 30;

/// How a regular file's bytes reach the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "m", rename_all = "snake_case")]
pub enum Method {
    /// The file `rel` (default: the same relative path) of store path `from` on the target.
    Ref {
        from: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rel: Option<RelPath>,
    },
    /// zstd (`len` payload bytes) with the file `base_rel` (default: the same
    /// relative path) of `base` on the target, whose BLAKE3 is `base_b3`, as prefix.
    Delta {
        base: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base_rel: Option<RelPath>,
        base_b3: FileHash,
        len: u64,
    },
    /// The file `base_rel` (default: the same relative path) of `base` on
    /// the target, whose BLAKE3 is `base_b3` and whose size is the file's,
    /// with the runs of a [`patch`] written over it; the patch is the next
    /// `len` payload bytes, a chunk of the NAR's raw stream (like
    /// [`Method::Raw`]).
    Patch {
        base: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base_rel: Option<RelPath>,
        base_b3: FileHash,
        len: u64,
    },
    /// The file as a sequence of parts.
    Chunks { parts: Vec<Part> },
    /// zstd-compressed contents: the next `len` payload bytes are the next
    /// flushed chunk of the NAR's raw stream (0 for an empty file).
    Raw { len: u64 },
}

/// A part of a [`Method::Chunks`] file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "p", rename_all = "snake_case")]
pub enum Part {
    /// `size` bytes at `offset` of file `rel` of store path `from` on the target, with BLAKE3 `b3`.
    Have {
        from: String,
        rel: RelPath,
        offset: u64,
        size: u64,
        b3: FileHash,
    },
    /// `size` bytes compressed into `len` payload bytes.
    New { size: u64, len: u64 },
}

/// One object of a planned NAR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum PlanNode {
    Directory,
    Symlink {
        target: LinkTarget,
    },
    Regular {
        #[serde(default, skip_serializing_if = "std::ops::Not::not", rename = "x")]
        executable: bool,
        size: u64,
        b3: FileHash,
        how: Method,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    pub path: RelPath,
    #[serde(flatten)]
    pub node: PlanNode,
}

impl TreeEntry for PlanEntry {
    fn rel(&self) -> &RelPath {
        &self.path
    }
    fn is_directory(&self) -> bool {
        matches!(self.node, PlanNode::Directory)
    }
}

/// How to rebuild one NAR on the target (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NarPlan {
    pub entries: Vec<PlanEntry>,
    /// Total payload bytes that follow the plan.
    pub payload_len: u64,
}

impl NarPlan {
    /// The store paths (base names) whose files the plan reuses on the target.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().flat_map(|e| {
            let (one, parts): (Option<&str>, &[Part]) = match &e.node {
                PlanNode::Regular { how: Method::Ref { from, .. }, .. } => (Some(from), &[]),
                PlanNode::Regular { how: Method::Delta { base, .. } | Method::Patch { base, .. }, .. } => (Some(base), &[]),
                PlanNode::Regular { how: Method::Chunks { parts }, .. } => (None, parts),
                _ => (None, &[]),
            };
            one.into_iter().chain(parts.iter().filter_map(|p| match p {
                Part::Have { from, .. } => Some(from.as_str()),
                Part::New { .. } => None,
            }))
        })
    }
}

/// Which method carried what, for `push --stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MethodStats {
    pub files: u64,
    /// File bytes (uncompressed) this method produced.
    pub file_bytes: u64,
    /// Payload bytes it cost.
    pub payload_bytes: u64,
}

impl MethodStats {
    fn add(&mut self, file_bytes: u64, payload_bytes: u64) {
        self.files += 1;
        self.file_bytes += file_bytes;
        self.payload_bytes += payload_bytes;
    }
}

/// Statistics of one encoded NAR (or a sum of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PlanStats {
    pub reference: MethodStats,
    /// Deltas: zstd and patches.
    pub delta: MethodStats,
    pub chunks: MethodStats,
    pub raw: MethodStats,
}

impl PlanStats {
    pub fn merge(&mut self, o: &PlanStats) {
        for (a, b) in [
            (&mut self.reference, &o.reference),
            (&mut self.delta, &o.delta),
            (&mut self.chunks, &o.chunks),
            (&mut self.raw, &o.raw),
        ] {
            a.files += b.files;
            a.file_bytes += b.file_bytes;
            a.payload_bytes += b.payload_bytes;
        }
    }

    pub fn payload_bytes(&self) -> u64 {
        self.reference.payload_bytes + self.delta.payload_bytes + self.chunks.payload_bytes + self.raw.payload_bytes
    }
}
