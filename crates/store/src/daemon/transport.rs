//! Ways to reach a daemon: its Unix socket, or a `nix-daemon --stdio` child.
//!
//! Both split the byte stream into a reader and a writer half and hand them
//! to [`DaemonConnection::handshake`]. [`spawn_stdio`] with
//! `ssh HOST nix-daemon --stdio` as the command is Nix's `ssh-ng://` store;
//! an in-process SSH channel would be handed to `handshake` the same way.
//! A spawned child is returned with its [`Child`] handle so the caller decides
//! its lifetime; it is killed if the handle is dropped. [`open_local_store`]
//! picks between the two the way `nix` does for root: the daemon if one
//! listens, else a daemon of our own, behind one boxed connection type.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncWrite};
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

/// The local daemon's socket: `$NIX_DAEMON_SOCKET_PATH` as Nix honours it,
/// else `/nix/var/nix/daemon-socket/socket`.
fn local_socket() -> std::ffi::OsString {
    std::env::var_os("NIX_DAEMON_SOCKET_PATH").unwrap_or_else(|| DEFAULT_SOCKET_PATH.into())
}

/// Connect to the local multi-user daemon (see [`local_socket`]).
pub async fn connect_local() -> Result<UnixConnection> {
    connect_unix(local_socket(), StoreDir::from_env()).await
}

pub type BoxedReader = Box<dyn AsyncRead + Unpin + Send>;
pub type BoxedWriter = Box<dyn AsyncWrite + Unpin + Send>;

/// A session with the local store, however it was reached.
#[derive(Debug)]
pub struct LocalStore {
    pub conn: DaemonConnection<BoxedReader, BoxedWriter>,
    /// Our own `nix-daemon --stdio`, when no daemon listened.
    pub child: Option<Child>,
}

impl LocalStore {
    /// End the session and wait for our own daemon, if any, to exit.
    pub async fn close(self) {
        let LocalStore { conn, child } = self;
        drop(conn);
        if let Some(mut child) = child {
            let _ = child.wait().await;
        }
    }
}

/// The local daemon if one listens and answers (see [`connect_local`]),
/// else `nix-daemon --stdio` as our child (which needs write access to the
/// store, i.e. root).
pub async fn open_local_store() -> Result<LocalStore> {
    let store_dir = StoreDir::from_env();
    if let Ok(stream) = UnixStream::connect(local_socket()).await {
        let (r, w) = stream.into_split();
        match DaemonConnection::handshake(Box::new(r) as BoxedReader, Box::new(w) as BoxedWriter, store_dir.clone()).await {
            Ok(conn) => return Ok(LocalStore { conn, child: None }),
            Err(e) => tracing::debug!("the local daemon socket did not answer: {e}; starting nix-daemon --stdio"),
        }
    }
    let mut command = Command::new("nix-daemon");
    command.arg("--stdio");
    let (stdout, stdin, child) = spawn_pipes(command)?;
    let conn = DaemonConnection::handshake(Box::new(stdout) as BoxedReader, Box::new(stdin) as BoxedWriter, store_dir).await?;
    Ok(LocalStore { conn, child: Some(child) })
}

/// A daemon running as our child, speaking over its stdin/stdout.
#[derive(Debug)]
pub struct SpawnedDaemon {
    pub conn: DaemonConnection<ChildStdout, ChildStdin>,
    pub child: Child,
}

/// Start `command` (e.g. `nix-daemon --stdio --store local?root=DIR`) with
/// piped stdin/stdout and open a session over them. Its stderr is inherited.
pub async fn spawn_stdio(command: Command, store_dir: StoreDir) -> Result<SpawnedDaemon> {
    let (stdout, stdin, child) = spawn_pipes(command)?;
    let conn = DaemonConnection::handshake(stdout, stdin, store_dir).await?;
    Ok(SpawnedDaemon { conn, child })
}

/// Start `command` with piped stdin and stdout, killed when dropped.
fn spawn_pipes(mut command: Command) -> Result<(ChildStdout, ChildStdin, Child)> {
    let name = format!("{:?}", command.as_std());
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| DaemonError::Spawn { command: name.clone(), source })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(DaemonError::Spawn { command: name, source: std::io::Error::other("no stdio pipes") });
    };
    Ok((stdout, stdin, child))
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
        // A command that answers with something else entirely (and stays
        // alive: one that exited at once could close the pipe before our
        // greeting is written, which is the `true` case above).
        let mut echo = Command::new("sh");
        echo.args(["-c", "echo 'SSH-2.0-OpenSSH_9.2 and then some more text to fill sixteen bytes'; sleep 5"]);
        let e = spawn_stdio(echo, StoreDir::default()).await.unwrap_err();
        assert!(e.to_string().contains("not a Nix daemon"), "{e}");
    }
}
