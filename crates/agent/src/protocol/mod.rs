//! The agent protocol: framed messages over any byte stream (an SSH channel,
//! a child's pipes, an in-memory duplex in tests).
//!
//! Frame: `u32 LE length | u8 kind | payload` where `length` counts the
//! payload only. Kinds: [`FrameKind::Control`] carries one [`Message`] as
//! JSON, [`FrameKind::ControlZstd`] one message compressed in the session's
//! control stream (see [`frames`]); [`FrameKind::Data`] carries raw bulk
//! bytes; [`FrameKind::End`] (empty) ends a run of data frames.
//! [`FrameReader`]/[`FrameWriter`] read and write them.
//!
//! Conversation (the deployer is the client, the agent the server):
//! 1. `Hello { version, store_dir }` both ways; a different version or store
//!    dir ends the session with `Error`.
//! 2. Any number of `Index { paths }` → `Manifests` (one entry per path, in
//!    the same order; `manifest: None` when the target does not have it).
//! 3. Any number of `Push { info, plan }`, each followed by its payload as
//!    data frames and an `End` frame; the agent answers each, in order, with
//!    `Imported { path }` or `Resend { path, reason }`. The client may send
//!    several pushes before reading the answers (pipelining).
//! 4. `Bye` → `Bye`, then both sides close.
//!
//! Invariants: nothing read from the peer is trusted. Frame lengths are
//! checked against [`MAX_CONTROL_FRAME`] / [`MAX_DATA_FRAME`] before anything
//! is allocated; store paths are parsed and validated when a message is
//! decoded ([`WirePathInfo::to_path_info`]); relative paths are validated on
//! deserialisation (see [`crate::manifest`]). A truncated stream is
//! [`ProtocolError::Disconnected`] or [`ProtocolError::Truncated`], never a panic.

use std::collections::BTreeSet;
use std::io;

use ndeploy_store::content_address::ContentAddress;
use ndeploy_store::hash::{Hash, HashAlgo};
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::{StoreDir, StorePath};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::delta::NarPlan;
use crate::manifest::NarManifest;

pub mod frames;

pub use frames::{COMPRESS_OVER, Frame, FrameReader, FrameWriter};

/// Version of this protocol; both sides must speak the same one (the agent
/// is a content-addressed store path, so skew means a different agent path).
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest control (JSON) frame accepted.
pub const MAX_CONTROL_FRAME: u32 = 64 << 20;
/// Largest data frame accepted.
pub const MAX_DATA_FRAME: u32 = 4 << 20;
/// Size of the data frames we send.
pub const DATA_FRAME_SIZE: usize = 256 << 10;

#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("agent connection: {0}")]
    Io(#[from] io::Error),
    #[error("the agent connection closed")]
    Disconnected,
    #[error("the agent connection closed in the middle of a frame")]
    Truncated,
    #[error("agent frame of {len} bytes is larger than the limit of {max} for {kind:?} frames")]
    FrameTooLarge { kind: FrameKind, len: u32, max: u32 },
    #[error("unknown agent frame kind {0}")]
    UnknownKind(u8),
    #[error("bad agent message: {0}")]
    BadMessage(String),
    #[error("unexpected agent frame: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    #[error("the agent reported an error: {0}")]
    Remote(String),
    #[error("agent protocol version {theirs} is not ours ({ours})")]
    Version { theirs: u32, ours: u32 },
    #[error("agent store dir '{theirs}' differs from ours ('{ours}')")]
    StoreDir { theirs: String, ours: String },
    #[error("payload of {got} bytes exceeds the declared {declared}")]
    PayloadTooLong { got: u64, declared: u64 },
}

pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Control = 1,
    Data = 2,
    End = 3,
    ControlZstd = 4,
}

impl FrameKind {
    pub(crate) fn from_u8(b: u8) -> Result<FrameKind> {
        match b {
            1 => Ok(FrameKind::Control),
            2 => Ok(FrameKind::Data),
            3 => Ok(FrameKind::End),
            4 => Ok(FrameKind::ControlZstd),
            k => Err(ProtocolError::UnknownKind(k)),
        }
    }
}

/// Path info as it travels (see `daemon::PathInfo`); parsed back with
/// [`WirePathInfo::to_path_info`], which validates every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePathInfo {
    /// Base name `<hash>-<name>`.
    pub path: String,
    /// `sha256:<nix32>`.
    pub nar_hash: String,
    pub nar_size: u64,
    /// Base names.
    pub references: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deriver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sigs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

impl WirePathInfo {
    pub fn from_path_info(info: &PathInfo) -> WirePathInfo {
        WirePathInfo {
            path: info.path.to_string(),
            nar_hash: info.nar_hash.encode(ndeploy_store::hash::HashEncoding::Nix32, true),
            nar_size: info.nar_size,
            references: info.references.iter().map(|r| r.to_string()).collect(),
            deriver: info.deriver.as_ref().map(|d| d.to_string()),
            sigs: info.sigs.iter().cloned().collect(),
            ca: info.ca.as_ref().map(|c| c.to_string()),
        }
    }

    pub fn to_path_info(&self) -> Result<PathInfo> {
        let bad = |what: &str, e: &dyn std::fmt::Display| ProtocolError::BadMessage(format!("path info of '{}': {what}: {e}", self.path));
        let path = StorePath::from_base_name(&self.path).map_err(|e| bad("path", &e))?;
        let nar_hash = Hash::parse(&self.nar_hash, Some(HashAlgo::Sha256)).map_err(|e| bad("narHash", &e))?;
        let mut info = PathInfo::new(path, nar_hash, self.nar_size);
        for r in &self.references {
            info.references.insert(StorePath::from_base_name(r).map_err(|e| bad("reference", &e))?);
        }
        if let Some(d) = &self.deriver {
            info.deriver = Some(StorePath::from_base_name(d).map_err(|e| bad("deriver", &e))?);
        }
        info.sigs = self.sigs.iter().cloned().collect::<BTreeSet<_>>();
        if let Some(ca) = &self.ca {
            info.ca = ContentAddress::parse_opt(ca).map_err(|e| bad("ca", &e))?;
        }
        Ok(info)
    }
}

/// Per path of an `Index`: its manifest, if the target holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathManifest {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<NarManifest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum Message {
    Hello {
        version: u32,
        store_dir: String,
    },
    Index {
        paths: Vec<String>,
    },
    Manifests {
        manifests: Vec<PathManifest>,
    },
    /// Followed by data frames with `plan.payload_len` bytes, then `End`.
    Push {
        info: WirePathInfo,
        plan: NarPlan,
        /// Ask the target's daemon to check signatures (for untrusted deploy users).
        #[serde(default)]
        check_sigs: bool,
    },
    Imported {
        path: String,
    },
    Resend {
        path: String,
        reason: String,
    },
    Error {
        message: String,
    },
    Bye,
}

impl Message {
    /// A short name for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Index { .. } => "Index",
            Message::Manifests { .. } => "Manifests",
            Message::Push { .. } => "Push",
            Message::Imported { .. } => "Imported",
            Message::Resend { .. } => "Resend",
            Message::Error { .. } => "Error",
            Message::Bye => "Bye",
        }
    }

    pub fn hello(store_dir: &StoreDir) -> Message {
        Message::Hello { version: PROTOCOL_VERSION, store_dir: store_dir.as_str().to_owned() }
    }

    /// Check a peer's `Hello` against ours.
    pub fn check_hello(&self, store_dir: &StoreDir) -> Result<()> {
        match self {
            Message::Hello { version, .. } if *version != PROTOCOL_VERSION => {
                Err(ProtocolError::Version { theirs: *version, ours: PROTOCOL_VERSION })
            }
            Message::Hello { store_dir: theirs, .. } if theirs != store_dir.as_str() => {
                Err(ProtocolError::StoreDir { theirs: theirs.clone(), ours: store_dir.as_str().to_owned() })
            }
            Message::Hello { .. } => Ok(()),
            Message::Error { message } => Err(ProtocolError::Remote(message.clone())),
            other => Err(ProtocolError::Unexpected { expected: "Hello", got: other.name().to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn reader(buf: &[u8]) -> FrameReader<&[u8]> {
        FrameReader::new(buf)
    }

    #[tokio::test]
    async fn messages_and_payloads_round_trip() {
        let mut w = FrameWriter::new(Vec::new());
        let hello = Message::hello(&StoreDir::default());
        w.message(&hello).await.unwrap();
        let data: Vec<u8> = (0..DATA_FRAME_SIZE * 2 + 17).map(|i| i as u8).collect();
        w.payload(&data).await.unwrap();
        w.message(&Message::Bye).await.unwrap();
        // Compressed in one stream: a message like an earlier one costs little.
        let big = |i: usize| Message::Index { paths: (0..100).map(|j| format!("{:032}-package-{j}-{i}", j * 7919)).collect() };
        let first = w.message(&big(1)).await.unwrap();
        let second = w.message(&big(2)).await.unwrap();
        assert!(first < 1_500 && second < first / 3, "{first} then {second}");
        let buf = w.into_inner();
        let mut r = reader(&buf).await;
        let m = r.message().await.unwrap();
        assert_eq!(m, hello);
        m.check_hello(&StoreDir::default()).unwrap();
        assert!(m.check_hello(&StoreDir::new("/other/store")).is_err());
        assert_eq!(r.payload(data.len() as u64).await.unwrap(), data);
        assert_eq!(r.message().await.unwrap(), Message::Bye);
        assert_eq!(r.message().await.unwrap(), big(1));
        assert_eq!(r.message().await.unwrap(), big(2));
        assert!(matches!(r.frame().await, Err(ProtocolError::Disconnected)));

        // Over the declared size: refused.
        let mut r = reader(&buf).await;
        r.message().await.unwrap();
        assert!(matches!(r.payload(100).await, Err(ProtocolError::PayloadTooLong { .. })));
        // A compressed message without the ones before it cannot be read.
        let skip = buf.len() - second as usize;
        assert!(reader(&buf[skip..]).await.message().await.is_err());
    }

    #[tokio::test]
    async fn hostile_frames_are_clean_errors() {
        // Truncated at every byte: a clean error, never a panic.
        let mut w = FrameWriter::new(Vec::new());
        w.message(&Message::Index { paths: vec!["x".repeat(200)] }).await.unwrap();
        let buf = w.into_inner();
        for cut in 1..buf.len() {
            let e = reader(&buf[..cut]).await.frame().await.unwrap_err();
            assert!(matches!(e, ProtocolError::Truncated), "{cut}: {e}");
        }
        // Huge length: refused before allocating.
        let mut huge = (u32::MAX).to_le_bytes().to_vec();
        huge.push(1);
        assert!(matches!(reader(&huge).await.frame().await, Err(ProtocolError::FrameTooLarge { .. })));
        let mut bad_kind = 0u32.to_le_bytes().to_vec();
        bad_kind.push(9);
        assert!(matches!(reader(&bad_kind).await.frame().await, Err(ProtocolError::UnknownKind(9))));
        let mut garbage = 3u32.to_le_bytes().to_vec();
        garbage.extend([1, b'{', b'x', b'}']);
        assert!(matches!(reader(&garbage).await.frame().await, Err(ProtocolError::BadMessage(_))));
        // A compressed frame that inflates past the limit, or is not zstd: refused.
        for z in [zstd::bulk::compress(&vec![b' '; (MAX_CONTROL_FRAME + 1) as usize], 1).unwrap(), b"not zstd".to_vec()] {
            let mut bomb = (z.len() as u32).to_le_bytes().to_vec();
            bomb.push(4);
            bomb.extend(&z);
            assert!(matches!(reader(&bomb).await.frame().await, Err(ProtocolError::BadMessage(_))));
        }
    }

    #[test]
    fn path_info_round_trip_and_validation() {
        let path = StorePath::from_base_name("7rjj86a15146cq1d3qy068lml7n8ykzm-hello-2.12").unwrap();
        let dep = StorePath::from_base_name("0rjj86a15146cq1d3qy068lml7n8ykzm-glibc-2.35").unwrap();
        let mut info = PathInfo::new(path, Hash::digest(HashAlgo::Sha256, b"nar"), 1234);
        info.references.insert(dep);
        info.sigs.insert("cache:abc".into());
        let wire = WirePathInfo::from_path_info(&info);
        assert_eq!(wire.to_path_info().unwrap(), info);
        for (field, value) in [("path", "../etc"), ("nar_hash", "md5:xyz"), ("references", "not-a-path")] {
            let mut w = wire.clone();
            match field {
                "path" => w.path = value.into(),
                "nar_hash" => w.nar_hash = value.into(),
                _ => w.references = vec![value.into()],
            }
            assert!(w.to_path_info().is_err(), "{field}");
        }
    }
}
