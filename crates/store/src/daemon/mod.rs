//! A client for the Nix worker protocol (the `nix-daemon` protocol), async
//! over any byte stream.
//!
//! Design:
//! - [`wire`] holds the primitive encoding (little-endian `u64`s, byte strings
//!   padded to 8 bytes, lists); every length read from the peer is bounded
//!   before anything is allocated for it, so a hostile or broken daemon cannot
//!   make us allocate more than it actually sends.
//! - [`stderr`] decodes the log/error stream the daemon interleaves with each
//!   reply; daemon-side failures become [`DaemonError::Remote`].
//! - [`framed`] is the chunked framing used to send NARs (protocol ≥ 1.23).
//! - [`handshake`] negotiates the protocol version: we offer
//!   [`PROTOCOL_VERSION`] (1.38) and accept daemons down to
//!   [`MINIMUM_PROTOCOL_VERSION`] (1.34, Nix 2.8).
//! - [`build`] realises derived paths (BuildPaths) and plans (QueryMissing).
//! - [`closure`] pipelines QueryPathInfo requests and walks closures.
//! - [`copy`] copies the paths a daemon lacks in one batch (`ndeploy push`).
//! - [`client::DaemonConnection`] runs the operations. It is generic over a
//!   reader and a writer half ([`tokio::io::AsyncRead`]/[`tokio::io::AsyncWrite`]),
//!   buffered on both sides, so it works over a Unix socket, a child's pipes
//!   ([`transport`]) or an SSH channel.
//!
//! Invariant: a connection is either idle between two operations (the
//! daemon waits for an opcode) or marked broken. An operation that fails in a
//! way that leaves the stream mid-message (I/O error, protocol violation,
//! cancelled future) marks the connection broken and every later call fails
//! with [`DaemonError::Broken`]; a [`DaemonError::Remote`] error leaves it
//! idle and usable.

pub mod build;
pub mod client;
pub mod closure;
pub mod copy;
pub mod framed;
#[cfg(test)]
mod fuzz_tests;
pub mod handshake;
mod nar_copy;
pub mod opcodes;
pub mod path_info;
pub mod stderr;
pub mod transport;
pub mod wire;

use std::fmt;

use thiserror::Error;

use crate::store_path::StorePathError;

pub use build::{BuildMode, DerivedPath, Missing, OutputsSpec};
pub use client::{AddToStoreFlags, ClientSettings, DaemonConnection, FromIter, PathSource};
pub use copy::{CopyReport, sort_references_first};
pub use handshake::HandshakeInfo;
pub use stderr::{LogField, LogMessage};
pub use transport::{LocalStore, SpawnedDaemon, connect_local, connect_unix, open_local_store, spawn_stdio};

/// `magic` the client sends first ("cxin").
pub const WORKER_MAGIC_1: u64 = 0x6e69_7863;
/// `magic` the daemon answers with ("oixd").
pub const WORKER_MAGIC_2: u64 = 0x6478_696f;

/// The highest protocol version we speak.
pub const PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion::new(1, 38);
/// The oldest daemon protocol we accept (Nix 2.8).
pub const MINIMUM_PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion::new(1, 34);

/// The default daemon socket of a multi-user Nix installation.
pub const DEFAULT_SOCKET_PATH: &str = "/nix/var/nix/daemon-socket/socket";

/// A worker protocol version, `major.minor`; on the wire `major << 8 | minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion {
    pub major: u8,
    pub minor: u8,
}

impl ProtocolVersion {
    pub const fn new(major: u8, minor: u8) -> ProtocolVersion {
        ProtocolVersion { major, minor }
    }

    /// Decode the wire form; `None` if it has bits above the 16 version bits.
    pub fn from_wire(v: u64) -> Option<ProtocolVersion> {
        let v = u16::try_from(v).ok()?;
        let [major, minor] = v.to_be_bytes();
        Some(ProtocolVersion { major, minor })
    }

    pub const fn to_wire(self) -> u64 {
        ((self.major as u64) << 8) | self.minor as u64
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Everything that can go wrong talking to a daemon.
#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("I/O error talking to the Nix daemon: {0}")]
    Io(std::io::Error),
    #[error("the Nix daemon closed the connection unexpectedly (maybe it crashed?)")]
    Disconnected,
    #[error("Nix daemon protocol error: {message}")]
    Protocol { message: String },
    /// The daemon reported a failure of the operation; the connection is still usable.
    #[error("Nix daemon error: {message}")]
    Remote {
        message: String,
        /// Nix verbosity level of the error (0 = error).
        level: u64,
        /// Trace lines ("while ...") the daemon attached, innermost last.
        traces: Vec<String>,
    },
    #[error("the Nix daemon speaks protocol {daemon}, but ndeploy needs at least {minimum}")]
    UnsupportedVersion { daemon: String, minimum: ProtocolVersion },
    #[error("the Nix daemon sent an invalid store path: {0}")]
    StorePath(#[from] StorePathError),
    #[error("the daemon connection is unusable after an earlier operation was interrupted")]
    Broken,
    /// The local data handed to an upload was inconsistent (the upload was
    /// ended early; the connection stays usable).
    #[error("{message}")]
    BadInput { message: String },
    #[error("reading {what}: {source}")]
    Source { what: String, source: std::io::Error },
    #[error("could not connect to the Nix daemon at '{path}': {source}")]
    Connect { path: String, source: std::io::Error },
    #[error("could not start the Nix daemon '{command}': {source}")]
    Spawn { command: String, source: std::io::Error },
}

impl From<std::io::Error> for DaemonError {
    fn from(e: std::io::Error) -> DaemonError {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset => DaemonError::Disconnected,
            _ => DaemonError::Io(e),
        }
    }
}

impl DaemonError {
    pub(crate) fn protocol(message: impl Into<String>) -> DaemonError {
        DaemonError::Protocol { message: message.into() }
    }

    /// Whether the daemon reported this failure and the connection stays usable.
    pub fn is_remote(&self) -> bool {
        matches!(self, DaemonError::Remote { .. })
    }
}

pub type Result<T, E = DaemonError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_wire_form() {
        assert_eq!(PROTOCOL_VERSION.to_wire(), 0x126);
        assert_eq!(ProtocolVersion::from_wire(0x122), Some(ProtocolVersion::new(1, 34)));
        assert_eq!(ProtocolVersion::from_wire(1 << 16), None);
        assert!(ProtocolVersion::new(1, 34) < ProtocolVersion::new(1, 38));
        assert!(ProtocolVersion::new(1, 255) < ProtocolVersion::new(2, 0));
        assert_eq!(PROTOCOL_VERSION.to_string(), "1.38");
    }
}
