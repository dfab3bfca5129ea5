//! Opening a worker-protocol session.
//!
//! ```text
//! client → WORKER_MAGIC_1, client version
//! daemon → WORKER_MAGIC_2, daemon version
//! negotiated = min(client, daemon)
//! ≥ 1.38: client → feature list; daemon → feature list (we use the intersection)
//! client → cpu affinity (0 = none, ≥ 1.14), reserveSpace (false, ≥ 1.11)
//! ≥ 1.33: daemon → Nix version string
//! ≥ 1.35: daemon → trusted flag (0 unknown, 1 trusted, 2 not trusted)
//! daemon → stderr stream (startup messages or an error), ending in STDERR_LAST
//! ```
//!
//! Daemons older than [`MINIMUM_PROTOCOL_VERSION`] are refused right after the
//! version exchange, with both versions in the error, before anything else is
//! sent that they would misinterpret.

use std::collections::BTreeSet;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::stderr::{LogMessage, process_stderr};
use super::wire::{MAX_STRING_LEN, WireBuf, read_string, read_strings, read_u64};
use super::{DaemonError, MINIMUM_PROTOCOL_VERSION, PROTOCOL_VERSION, ProtocolVersion, Result, WORKER_MAGIC_1, WORKER_MAGIC_2};

/// Protocol features we ask for at ≥ 1.38 (none yet: every operation we use
/// is in the base protocol).
pub const CLIENT_FEATURES: &[&str] = &[];

/// What the handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeInfo {
    /// The negotiated version: the lower of ours and the daemon's.
    pub version: ProtocolVersion,
    /// The version the daemon offered.
    pub daemon_protocol: ProtocolVersion,
    /// The daemon's Nix version (e.g. "2.8.0"), protocol ≥ 1.33.
    pub daemon_nix_version: Option<String>,
    /// Whether the daemon trusts us; `None` if it did not say (protocol < 1.35).
    pub trusted: Option<bool>,
    /// Features both sides support (protocol ≥ 1.38).
    pub features: BTreeSet<String>,
}

/// Run the client side of the handshake, including the initial stderr stream.
pub async fn client_handshake<R, W>(r: &mut R, w: &mut W, log: &mut (dyn FnMut(LogMessage) + Send)) -> Result<HandshakeInfo>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    w.write_all(WireBuf::new().u64(WORKER_MAGIC_1).u64(PROTOCOL_VERSION.to_wire()).as_bytes()).await?;
    w.flush().await?;

    let magic = read_u64(r).await?;
    if magic != WORKER_MAGIC_2 {
        return Err(DaemonError::protocol(format!(
            "the peer is not a Nix daemon (expected magic {WORKER_MAGIC_2:#x}, got {magic:#x})"
        )));
    }
    let wire_version = read_u64(r).await?;
    let daemon_protocol = ProtocolVersion::from_wire(wire_version).ok_or_else(|| DaemonError::UnsupportedVersion {
        daemon: format!("{wire_version:#x}"),
        minimum: MINIMUM_PROTOCOL_VERSION,
    })?;
    let version = daemon_protocol.min(PROTOCOL_VERSION);
    if daemon_protocol.major != PROTOCOL_VERSION.major || version < MINIMUM_PROTOCOL_VERSION {
        return Err(DaemonError::UnsupportedVersion { daemon: daemon_protocol.to_string(), minimum: MINIMUM_PROTOCOL_VERSION });
    }

    let mut features = BTreeSet::new();
    if version >= ProtocolVersion::new(1, 38) {
        w.write_all(WireBuf::new().strings(CLIENT_FEATURES.iter()).as_bytes()).await?;
        w.flush().await?;
        let theirs = read_strings(r, MAX_STRING_LEN, "feature name").await?;
        features = theirs.into_iter().filter(|f| CLIENT_FEATURES.contains(&f.as_str())).collect();
    }

    // Obsolete CPU affinity (none) and reserveSpace (false); both versions ≥ 1.14.
    w.write_all(WireBuf::new().u64(0).bool(false).as_bytes()).await?;
    w.flush().await?;

    let daemon_nix_version = Some(read_string(r, MAX_STRING_LEN, "daemon version").await?);
    let trusted = if version >= ProtocolVersion::new(1, 35) {
        match read_u64(r).await? {
            0 => None,
            1 => Some(true),
            2 => Some(false),
            t => return Err(DaemonError::protocol(format!("invalid trusted flag {t} from the daemon"))),
        }
    } else {
        None
    };

    process_stderr(r, log).await?;
    Ok(HandshakeInfo { version, daemon_protocol, daemon_nix_version, trusted, features })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::daemon::stderr::{STDERR_LAST, STDERR_NEXT};
    use crate::daemon::wire::read_strings;

    /// Daemon's side of the handshake as bytes, for a daemon offering `v`.
    pub(crate) fn daemon_bytes(v: ProtocolVersion, trusted: u64) -> Vec<u8> {
        let mut w = WireBuf::new();
        w.u64(WORKER_MAGIC_2).u64(v.to_wire());
        if v >= ProtocolVersion::new(1, 38) {
            w.strings(["some-future-feature"]);
        }
        w.str("2.99.0");
        if v >= ProtocolVersion::new(1, 35) {
            w.u64(trusted);
        }
        w.u64(STDERR_NEXT).str("hello\n").u64(STDERR_LAST);
        w.into_bytes()
    }

    async fn shake(daemon: Vec<u8>) -> (Result<HandshakeInfo>, Vec<u8>, Vec<LogMessage>) {
        let mut sent = Vec::new();
        let mut log = Vec::new();
        let res = client_handshake(&mut &daemon[..], &mut sent, &mut |m| log.push(m)).await;
        (res, sent, log)
    }

    #[tokio::test]
    async fn negotiates_per_version() {
        for (minor, trusted, want) in [(34, 1, None), (35, 1, Some(true)), (37, 2, Some(false)), (38, 0, None), (40, 1, Some(true))] {
            let (res, sent, log) = shake(daemon_bytes(ProtocolVersion::new(1, minor), trusted)).await;
            let info = res.unwrap();
            assert_eq!(info.version, ProtocolVersion::new(1, minor.min(38)));
            assert_eq!(info.daemon_nix_version.as_deref(), Some("2.99.0"));
            assert_eq!(info.trusted, want);
            assert!(info.features.is_empty(), "unknown features are not negotiated");
            assert_eq!(log, [LogMessage::Next("hello".into())]);
            // What we sent: magic, 1.38, [features at ≥ 1.38], affinity 0, reserveSpace 0.
            let mut r = &sent[..];
            assert_eq!(read_u64(&mut r).await.unwrap(), WORKER_MAGIC_1);
            assert_eq!(read_u64(&mut r).await.unwrap(), 0x126);
            if minor >= 38 {
                assert!(read_strings(&mut r, 100, "f").await.unwrap().is_empty());
            }
            assert_eq!((read_u64(&mut r).await.unwrap(), read_u64(&mut r).await.unwrap()), (0, 0));
            assert!(r.is_empty());
        }
    }

    #[tokio::test]
    async fn refuses_old_or_foreign_daemons() {
        let (res, _, _) = shake(daemon_bytes(ProtocolVersion::new(1, 33), 0)).await;
        let e = res.unwrap_err();
        assert!(matches!(e, DaemonError::UnsupportedVersion { .. }));
        assert_eq!(e.to_string(), "the Nix daemon speaks protocol 1.33, but ndeploy needs at least 1.34");
        let (res, _, _) = shake(daemon_bytes(ProtocolVersion::new(2, 0), 0)).await;
        assert!(matches!(res, Err(DaemonError::UnsupportedVersion { .. })));
        let (res, _, _) = shake(b"SSH-2.0-OpenSSH_9.2\r\n\0\0\0\0\0\0\0\0\0\0\0".to_vec()).await;
        assert!(res.unwrap_err().to_string().contains("not a Nix daemon"));
        let (res, _, _) = shake(Vec::new()).await;
        assert!(matches!(res, Err(DaemonError::Disconnected)));
        let mut bad_trust = daemon_bytes(ProtocolVersion::new(1, 35), 0);
        bad_trust[8 * 2 + 16] = 7; // the trusted flag, after magic, version, "2.99.0"
        let (res, _, _) = shake(bad_trust).await;
        assert!(matches!(res, Err(DaemonError::Protocol { .. })), "{res:?}");
    }
}
