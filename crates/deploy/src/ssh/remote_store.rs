//! A Nix worker-protocol connection to a target's daemon over SSH.
//!
//! Runs `nix-daemon --stdio` (with `--store STORE` when the target says
//! `remote-store=STORE`) on an exec channel and performs the protocol
//! handshake with [`ndeploy_store::daemon::DaemonConnection`] over the
//! channel's byte stream. The handshake's first bytes go out right behind the
//! exec request, without waiting for the daemon to start.
//!
//! Who the daemon serves: root runs it directly (a root `nix-daemon --stdio`
//! serves the store itself, trusted). Other users run it through
//! passwordless `sudo -n` when they have it (so as root, trusted), and
//! otherwise as themselves: then `nix-daemon --stdio` forwards to the
//! target's daemon socket, as `nix copy --to ssh-ng://` does, and that
//! daemon decides whether the user is trusted. Untrusted users can only add
//! paths signed by a key in the target's `trusted-public-keys` (`ndeploy push
//! --sign-key`). Nix 2.8 (protocol 1.34) does not say in the handshake
//! whether it trusts us, so callers cannot tell the cases apart up front;
//! [`RemoteStore::as_user`] says which way the command went.
//!
//! The daemon's stderr is logged with the host as prefix and its tail
//! explains handshake failures (e.g. sudo asking for a password, no daemon
//! socket for a user without sudo, a missing `nix-daemon`). This is the
//! transport `ndeploy push` uses.

use ndeploy_store::daemon::DaemonConnection;
use ndeploy_store::store_path::StoreDir;
use tokio::io::AsyncWriteExt;

use super::exec_stream::{ChannelReader, ChannelWriter, ExitWatch};
use super::session::{ExitStatus, SshSession, Stages, describe_stages};
use super::{Result, SshError, shell_quote};

/// A daemon session on a target, plus the remote command's exit watch.
pub struct RemoteStore {
    pub conn: DaemonConnection<ChannelReader, ChannelWriter>,
    pub exit: ExitWatch,
    /// `exec` (channel open and command sent) and `handshake` (until the
    /// daemon's startup messages ended), with their durations.
    pub stages: Vec<(&'static str, std::time::Duration)>,
    /// The daemon serves us as the (non-root) login user, through the
    /// target's daemon socket; it may not trust us.
    pub as_user: bool,
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
        let RemoteStore { conn, mut exit, .. } = self;
        if !conn.is_broken() {
            let (_reader, mut writer) = conn.into_inner();
            // The daemon may already be gone; its exit status tells.
            let _ = writer.shutdown().await;
        }
        Ok(exit.wait().await)
    }
}

/// What the remote command says on stderr when it uses the daemon socket
/// as the login user (no passwordless sudo); followed by the user name.
pub const AS_USER_MARK: &str = "ndeploy: no passwordless sudo; using the Nix daemon socket as";

/// The remote command: `nix-daemon --stdio [--store STORE]`; for non-root
/// users through `sudo -n` if that works without a password, else as the
/// user with `--store daemon` (unless STORE is given), so that a target
/// without a daemon fails clearly instead of opening some other store
/// (see the module docs).
pub fn daemon_command(session: &SshSession, remote_store: Option<&str>) -> String {
    command_for(session.is_root(), remote_store)
}

fn command_for(is_root: bool, remote_store: Option<&str>) -> String {
    let with_store = |store: &str| format!("nix-daemon --stdio --store {}", shell_quote(store));
    let cmd = remote_store.map_or_else(|| "nix-daemon --stdio".to_owned(), with_store);
    if is_root {
        return cmd;
    }
    let as_user = remote_store.map_or_else(|| with_store("daemon"), with_store);
    // `sh -c`: the user's login shell may not be POSIX.
    let script = format!(
        "if sudo -n true 2>/dev/null; then exec sudo -n -- {cmd}; else echo \"{AS_USER_MARK} $(id -un)\" >&2; exec {as_user}; fi"
    );
    format!("sh -c {}", shell_quote(&script))
}

/// Open a worker-protocol session with the target's daemon.
pub async fn open_remote_store(session: &SshSession, remote_store: Option<&str>) -> Result<RemoteStore> {
    let host = session.host().to_owned();
    let log_host = host.clone();
    let mut clock = Stages::start();
    let stream = session
        .exec_stream(&daemon_command(session, remote_store), move |data| {
            for line in String::from_utf8_lossy(data).lines().filter(|l| !l.trim().is_empty()) {
                tracing::info!("{log_host}> {line}");
            }
        })
        .await?;
    clock.lap("exec");
    let (reader, writer, mut exit) = stream.into_split();
    match DaemonConnection::handshake(reader, writer, StoreDir::default()).await {
        Ok(conn) => {
            clock.lap("handshake");
            let stages = clock.into_stages();
            tracing::debug!("{host}: Nix daemon session: {}", describe_stages(&stages));
            let as_user = exit.stderr_tail().contains(AS_USER_MARK);
            Ok(RemoteStore { conn, exit, stages, as_user })
        }
        Err(source) => {
            let status = exit.wait().await;
            let tail = exit.stderr_tail();
            if let Some((_, after)) = tail.split_once(AS_USER_MARK) {
                let detail = after.split_once('\n').map_or("", |(_, rest)| rest).trim();
                let detail = if detail.is_empty() { status.to_string() } else { detail.to_owned() };
                return Err(SshError::DaemonAsUser { host, user: session.user().to_owned(), detail });
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The non-root command runs in `sh`: check what it does with a fake
    /// `sudo` and `nix-daemon` that print their arguments.
    #[test]
    fn commands() {
        assert_eq!(command_for(true, None), "nix-daemon --stdio");
        assert_eq!(command_for(true, Some("local?root=/x")), "nix-daemon --stdio --store 'local?root=/x'");
        let bin = tempfile::tempdir().unwrap();
        let fake = |name: &str, body: &str| {
            let p = bin.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        };
        fake("nix-daemon", "echo daemon \"$@\"");
        let run = |sudo_ok: bool, store: Option<&str>| {
            fake("sudo", if sudo_ok { "[ \"$2\" = true ] && exit 0; shift 2; exec \"$@\"" } else { "exit 1" });
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(command_for(false, store))
                .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()))
                .output()
                .unwrap();
            (String::from_utf8_lossy(&out.stdout).trim().to_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
        };
        assert_eq!(run(true, None), ("daemon --stdio".to_owned(), String::new()));
        let (out, err) = run(false, None);
        assert_eq!(out, "daemon --stdio --store daemon");
        assert!(err.starts_with(AS_USER_MARK), "{err}");
        assert_eq!(run(false, Some("local?root=/x")).0, "daemon --stdio --store local?root=/x");
        assert_eq!(run(true, Some("local?root=/x")).0, "daemon --stdio --store local?root=/x");
    }
}
