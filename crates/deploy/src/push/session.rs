//! One target's steps, each a plain async function over an owned
//! [`TargetSession`] so the coordinator can run them as concurrent tasks:
//! [`connect`] (SSH + `nix-daemon --stdio`), [`query_valid`] (the single
//! QueryValidPaths round trip), [`upload`] (the single AddMultipleToStore
//! stream fed by a [`TargetFeed`]) and [`close`].

use std::collections::BTreeSet;

use ndeploy_store::daemon::AddToStoreFlags;
use ndeploy_store::store_path::StorePath;

use super::fanout::TargetFeed;
use crate::ssh::{ConnectOptions, RemoteStore, SshSession, SshTarget, open_remote_store};

/// A connected target: the SSH session and the daemon session on it.
pub struct TargetSession {
    pub ssh: SshSession,
    pub store: RemoteStore,
}

impl TargetSession {
    /// Whether the daemon says we are a trusted user (`None`: the daemon is
    /// too old to say; protocol < 1.35).
    pub fn trusted(&self) -> Option<bool> {
        self.store.conn.info().trusted
    }
}

/// SSH to `target` and start its daemon.
pub async fn connect(target: SshTarget, opts: ConnectOptions) -> Result<TargetSession, String> {
    let ssh = SshSession::connect(&target, &opts).await.map_err(|e| e.to_string())?;
    let store = open_remote_store(&ssh, target.remote_store.as_deref()).await.map_err(|e| e.to_string())?;
    Ok(TargetSession { ssh, store })
}

/// Which of `paths` the target has.
pub async fn query_valid(t: &mut TargetSession, paths: &[StorePath]) -> Result<BTreeSet<StorePath>, String> {
    let host = t.ssh.host().to_owned();
    t.store.conn.query_valid_paths(paths, false).await.map_err(|e| format!("Nix daemon on {host}: {e}"))
}

/// Send `count` paths from `feed` in one AddMultipleToStore stream.
///
/// Signature checks are waived for trusted users (like `nix copy
/// --no-check-sigs`; the daemon ignores the waiver for others, who need
/// `--sign-key`).
pub async fn upload(t: &mut TargetSession, count: u64, feed: TargetFeed) -> Result<(), String> {
    let host = t.ssh.host().to_owned();
    let flags = AddToStoreFlags { repair: false, dont_check_sigs: true };
    t.store.conn.add_multiple_to_store(count, feed, flags).await.map_err(|e| format!("Nix daemon on {host}: {e}"))
}

/// End the daemon session and the SSH connection.
pub async fn close(t: TargetSession) -> Result<(), String> {
    let TargetSession { ssh, store } = t;
    let host = ssh.host().to_owned();
    let status = store.close().await.map_err(|e| e.to_string())?;
    let _ = ssh.disconnect().await;
    if status.success() { Ok(()) } else { Err(format!("nix-daemon on {host} exited with {status}")) }
}
