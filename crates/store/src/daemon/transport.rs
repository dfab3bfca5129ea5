//! Ways to reach a daemon: its Unix socket, or a `nix-daemon --stdio` child.
//!
//! Both split the byte stream into a reader and a writer half and hand them
//! to [`DaemonConnection::handshake`]. [`spawn_stdio`] with
//! `ssh HOST nix-daemon --stdio` as the command is Nix's `ssh-ng://` store;
//! an in-process SSH channel would be handed to `handshake` the same way.
//! A spawned child is returned with its [`Child`] handle so the caller decides
//! its lifetime; it is killed if the handle is dropped.

use std::path::Path;
use std::process::Stdio;

use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{DEFAULT_SOCKET_PATH, DaemonConnection, DaemonError, Result};
use crate::store_path::StoreDir;

/// A connection over a Unix socket.
pub type UnixConnection = DaemonConnection<OwnedReadHalf, OwnedWriteHalf>;

/// Connect to the daemon listening on the Unix socket at `path`.
pub async fn connect_unix(path: impl AsRef<Path>, store_dir: StoreDir) -> Result<UnixConnection> {
    let stream = UnixStream::connect(path.as_ref())
        .await
        .map_err(|source| DaemonError::Connect { path: path.as_ref().display().to_string(), source })?;
    let (r, w) = stream.into_split();
    DaemonConnection::handshake(r, w, store_dir).await
}

/// Connect to the local multi-user daemon: `$NIX_DAEMON_SOCKET_PATH` as Nix
/// honours it, else `/nix/var/nix/daemon-socket/socket`.
pub async fn connect_local() -> Result<UnixConnection> {
    let path = std::env::var_os("NIX_DAEMON_SOCKET_PATH").unwrap_or_else(|| DEFAULT_SOCKET_PATH.into());
    connect_unix(path, StoreDir::from_env()).await
}

/// A daemon running as our child, speaking over its stdin/stdout.
#[derive(Debug)]
pub struct SpawnedDaemon {
    pub conn: DaemonConnection<ChildStdout, ChildStdin>,
    pub child: Child,
}

/// Start `command` (e.g. `nix-daemon --stdio --store local?root=DIR`) with
/// piped stdin/stdout and open a session over them. Its stderr is inherited.
pub async fn spawn_stdio(mut command: Command, store_dir: StoreDir) -> Result<SpawnedDaemon> {
    let name = format!("{:?}", command.as_std());
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| DaemonError::Spawn { command: name.clone(), source })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(DaemonError::Spawn { command: name, source: std::io::Error::other("no stdio pipes") });
    };
    let conn = DaemonConnection::handshake(stdout, stdin, store_dir).await?;
    Ok(SpawnedDaemon { conn, child })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clear_errors_for_missing_daemons() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("no-socket");
        let e = connect_unix(&sock, StoreDir::default()).await.unwrap_err();
        assert!(e.to_string().starts_with(&format!("could not connect to the Nix daemon at '{}'", sock.display())), "{e}");

        let e = spawn_stdio(Command::new("/nonexistent/nix-daemon"), StoreDir::default()).await.unwrap_err();
        assert!(matches!(e, DaemonError::Spawn { .. }), "{e}");
        // A command that exits at once: the handshake sees the pipe close.
        let e = spawn_stdio(Command::new("true"), StoreDir::default()).await.unwrap_err();
        assert!(matches!(e, DaemonError::Disconnected), "{e}");
        // A command that answers with something else entirely.
        let mut echo = Command::new("echo");
        echo.arg("SSH-2.0-OpenSSH_9.2 and then some more text to fill sixteen bytes");
        let e = spawn_stdio(echo, StoreDir::default()).await.unwrap_err();
        assert!(e.to_string().contains("not a Nix daemon"), "{e}");
    }
}
