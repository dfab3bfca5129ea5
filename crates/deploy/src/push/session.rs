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

    /// The connection stages (SSH, then the daemon session) with their seconds.
    pub fn stages(&self) -> Vec<(String, f64)> {
        self.ssh.stages().iter().chain(&self.store.stages).map(|(n, d)| ((*n).to_owned(), d.as_secs_f64())).collect()
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

/// Send `count` paths from `feed` in one AddMultipleToStore stream;
/// `signed`: whether the feed signs the path infos.
///
/// Signature checks are waived for trusted users (like `nix copy
/// --no-check-sigs`; the daemon ignores the waiver for others, who need
/// `--sign-key`). A refusal for want of a trusted signature says what to do.
pub async fn upload(t: &mut TargetSession, count: u64, feed: TargetFeed, signed: bool) -> Result<(), String> {
    let host = t.ssh.host().to_owned();
    let flags = AddToStoreFlags { repair: false, dont_check_sigs: true };
    let res = t.store.conn.add_multiple_to_store(count, feed, flags).await;
    res.map_err(|e| {
        let mut msg = format!("Nix daemon on {host}: {e}");
        // Nix 2.8: "lacks a valid signature"; later: "lacks a signature by a trusted key".
        if msg.contains("lacks a valid signature") || msg.contains("lacks a signature by a trusted key") {
            let user = t.ssh.user();
            msg.push_str(&if signed {
                format!("\n(the key given with --sign-key is not in the trusted-public-keys of {host}, and {user} is not a trusted user there)")
            } else {
                format!(
                    "\n({user} is not a trusted user of the Nix daemon on {host}: pass --sign-key FILE with a secret key whose \
                     public half is in its trusted-public-keys, or make {user} trusted or give it passwordless sudo)"
                )
            });
        }
        msg
    })
}

/// End the daemon session and the SSH connection.
pub async fn close(t: TargetSession) -> Result<(), String> {
    let TargetSession { ssh, store } = t;
    let host = ssh.host().to_owned();
    let status = store.close().await.map_err(|e| e.to_string())?;
    let _ = ssh.disconnect().await;
    if status.success() { Ok(()) } else { Err(format!("nix-daemon on {host} exited with {status}")) }
}
