//! A Nix worker-protocol connection to a target's daemon over SSH.
//!
//! Runs `nix-daemon --stdio` (with `--store STORE` when the target says
//! `remote-store=STORE`) on an exec channel — as root, or through
//! `sudo -n --` for other users — and performs the protocol handshake with
//! [`ndeploy_store::daemon::DaemonConnection`] over the channel's byte
//! stream. The daemon's stderr is logged with the host as prefix and its tail
//! explains handshake failures (e.g. sudo asking for a password, a missing
//! `nix-daemon`). This is the transport `ndeploy push` uses.

use ndeploy_store::daemon::DaemonConnection;
use ndeploy_store::store_path::StoreDir;
use tokio::io::AsyncWriteExt;

use super::exec_stream::{ChannelReader, ChannelWriter, ExitWatch};
use super::session::{ExitStatus, SshSession};
use super::{Result, SshError, shell_quote};

/// A daemon session on a target, plus the remote command's exit watch.
pub struct RemoteStore {
    pub conn: DaemonConnection<ChannelReader, ChannelWriter>,
    pub exit: ExitWatch,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStore").field("conn", &self.conn).finish()
    }
}

impl RemoteStore {
    /// End the session: send EOF to the daemon and wait for it to exit.
    /// Fails if the connection was broken by an interrupted operation.
    pub async fn close(self) -> Result<ExitStatus> {
        let RemoteStore { conn, mut exit } = self;
        if !conn.is_broken() {
            let (_reader, mut writer) = conn.into_inner();
            // The daemon may already be gone; its exit status tells.
            let _ = writer.shutdown().await;
        }
        Ok(exit.wait().await)
    }
}

/// The remote command: `nix-daemon --stdio [--store STORE]`, via sudo for non-root.
pub fn daemon_command(session: &SshSession, remote_store: Option<&str>) -> String {
    let mut cmd = "nix-daemon --stdio".to_owned();
    if let Some(store) = remote_store {
        cmd.push_str(" --store ");
        cmd.push_str(&shell_quote(store));
    }
    session.root_command(&cmd)
}

/// Open a worker-protocol session with the target's daemon.
pub async fn open_remote_store(session: &SshSession, remote_store: Option<&str>) -> Result<RemoteStore> {
    let host = session.host().to_owned();
    let log_host = host.clone();
    let stream = session
        .exec_stream(&daemon_command(session, remote_store), move |data| {
            for line in String::from_utf8_lossy(data).lines().filter(|l| !l.trim().is_empty()) {
                tracing::info!("{log_host}> {line}");
            }
        })
        .await?;
    let (reader, writer, mut exit) = stream.into_split();
    match DaemonConnection::handshake(reader, writer, StoreDir::default()).await {
        Ok(conn) => Ok(RemoteStore { conn, exit }),
        Err(source) => {
            let status = exit.wait().await;
            let tail = exit.stderr_tail();
            session.check_sudo(&tail)?;
            if !tail.trim().is_empty() {
                return Err(SshError::Remote {
                    host,
                    message: format!("nix-daemon --stdio ended ({status}) during the handshake: {}", tail.trim()),
                });
            }
            Err(SshError::Daemon { host, source })
        }
    }
}
