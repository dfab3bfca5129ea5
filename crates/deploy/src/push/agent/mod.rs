//! `ndeploy push` through the ndeploy agent: send only the bytes a target
//! lacks (issue 8; the codec and the target side are the `ndeploy_agent` crate).
//!
//! Per target that lacks something, after push's one QueryValidPaths:
//! 1. [`install`]: the `ndeploy-agent` binary is a content-addressed store
//!    path; it is added to the local store and, through the target's
//!    `nix-daemon --stdio` session push already holds, to the target (tier 0,
//!    the plain worker protocol) when the target lacks it.
//! 2. [`upload`]: `<agent path>/bin/ndeploy-agent --stdio` runs over SSH
//!    (through `sudo -n` for non-root users, or as the user itself when it
//!    has no sudo and reaches the daemon socket as itself, as push does);
//!    the deployer gathers what the
//!    target holds ([`record`]: what it pushed before, checked against the
//!    target's QueryValidPaths, plus the already-valid part of the wanted
//!    closure), with each held path's manifest from the cache, computed from
//!    the local store, or asked from the agent; then every missing path is
//!    encoded against that knowledge and streamed, in reference order; the
//!    agent rebuilds, verifies and imports each through the target's daemon.
//! 3. [`plain`]: paths the agent answers `Resend` for are sent whole through
//!    the worker protocol; a target where the agent cannot be installed or
//!    started gets the whole plain push instead, and the report says why.
//! 4. [`stats`]: bytes by method for `push --stats` and `--json`.
//!
//! Invariants: the agent never makes a push less safe than the plain one:
//! the target's daemon registers every path (the agent verifies blake3 of
//! each reused file and the NAR's sha256 and size first, and never imports
//! what does not match); the deployer's knowledge is only a hint. A failure
//! before the first byte of the delta stream falls back to the plain push; a
//! failure during it fails the target like a cut plain stream does (what was
//! imported stays, a rerun sends the rest).

pub mod install;
pub mod plain;
pub mod record;
pub mod stats;
pub mod upload;

use std::path::PathBuf;
use std::sync::Arc;

use ndeploy_store::store_path::{StorePath, StoreDir};

use thiserror::Error;

use ndeploy_store::path_info::PathInfo;

use super::plan::{Plan, TargetPlan};
use super::progress::{Counted, TargetProgress};
use super::report::TargetReport;
use super::run::{Dumper, PushOptions};

pub use install::AgentPackage;
pub use record::{Records, target_key};
pub use stats::{MethodBytes, TransferStats, Via, stats_table, target_stats};
pub use upload::{AgentJob, upload};

/// Whether push uses the agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AgentMode {
    /// Never (the plain worker-protocol push).
    #[default]
    Off,
    /// When the agent binary is found; targets where it cannot run get the plain push.
    Auto,
    /// Like `Auto`, but a missing agent binary is an error.
    Required,
}

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("the ndeploy-agent binary at {}: {reason}", path.display())]
    NoBinary { path: PathBuf, reason: String },
    #[error("cannot package the agent: {0}")]
    Package(String),
    #[error("cannot add the agent to the store: {0}")]
    Install(String),
    #[error("cannot start the agent: {0}")]
    Start(String),
}

/// The agent as prepared for one push.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// `--no-agent`, or a dry run.
    Off,
    /// The binary was not found (`Auto`): every target gets the plain push, for this reason.
    Unavailable(String),
    /// The agent, in the local store `store_dir`.
    Ready { package: Arc<AgentPackage>, store_dir: StoreDir },
}

/// Find and package the agent binary, and add it to the local store (so it
/// is an ordinary, content-addressed store path on the deployer too).
pub async fn prepare<R, W>(
    local: &mut ndeploy_store::daemon::DaemonConnection<R, W>,
    mode: AgentMode,
) -> Result<Prepared, AgentError>
where
    R: tokio::io::AsyncRead + Unpin + Send,
    W: tokio::io::AsyncWrite + Unpin + Send,
{
    if mode == AgentMode::Off {
        return Ok(Prepared::Off);
    }
    let dir = local.store_dir().clone();
    let loaded = match install::locate_binary() {
        Ok(bin) => tokio::task::spawn_blocking(move || AgentPackage::load(&dir, &bin))
            .await
            .map_err(|e| AgentError::Package(e.to_string()))?,
        Err(e) => Err(e),
    };
    let package = match (loaded, mode) {
        (Ok(p), _) => p,
        (Err(e), AgentMode::Required) => return Err(e),
        (Err(e), _) => return Ok(Prepared::Unavailable(e.to_string())),
    };
    package.add_to(local).await?;
    // Targets will hold it: its manifest joins the cache like those of pushed paths.
    let records = Records::default_location();
    if !records.has_manifest(package.path())
        && let Ok(m) = ndeploy_agent::NarManifest::from_nar(&package.nar[..])
    {
        records.save_manifest(package.path(), &m);
    }
    Ok(Prepared::Ready { package: Arc::new(package), store_dir: local.store_dir().clone() })
}

/// The cache key of a target, or why the agent cannot serve it.
pub fn target_key_of(t: &crate::ssh::SshTarget) -> Result<String, String> {
    if let Some(store) = &t.remote_store {
        return Err(format!("the agent does not serve remote-store={store} targets"));
    }
    Ok(target_key(t.user.as_deref(), &t.host, t.port))
}

/// The agent job of a target that lacks something, if it gets one; else
/// (agent off, unavailable, not for this target, or — unless the agent is
/// required — a fresh target: none of the closure valid and nothing recorded
/// as pushed there) `None`, with the reason recorded in the report's
/// transfer figures.
#[allow(clippy::too_many_arguments)]
pub(crate) fn job_for(
    agent: &Prepared,
    key: &Result<String, String>,
    report: &mut TargetReport,
    plan: &Plan,
    wanted: &[usize],
    target: Option<&TargetPlan>,
    opts: &PushOptions,
    dumper: &Dumper,
    progress: &Arc<Counted>,
) -> Option<AgentJob> {
    let (package, store_dir) = match agent {
        Prepared::Off => return None,
        Prepared::Unavailable(why) => {
            report.transfer.fallback = Some(why.clone());
            return None;
        }
        Prepared::Ready { package, store_dir } => (package, store_dir),
    };
    let key = match key {
        Ok(k) => k.clone(),
        Err(why) => {
            report.transfer.fallback = Some(why.clone());
            return None;
        }
    };
    let target = target?;
    let records = Records::default_location();
    let mut held = records.held(&key);
    if opts.agent == AgentMode::Auto && target.already_valid == 0 && held.is_empty() {
        // A fresh target (none of the closure, nothing pushed before): nothing
        // to reuse, so the agent could only compress, per target; the fan-out
        // serialises each path once for all of them.
        report.transfer.fallback = Some("the target holds none of the closure yet: whole NARs (the agent is installed for the next push)".to_owned());
        report.transfer.install_deferred = true;
        // What it will hold is the knowledge of the next push (a hint, checked then).
        held.extend(wanted.iter().filter_map(|&i| plan.get(i)).map(|i| i.path.clone()));
        held.insert(package.path().clone());
        records.set_held(&key, &held);
        return None;
    }
    let missing: Vec<PathInfo> = target.missing.iter().filter_map(|&i| plan.get(i)).cloned().collect();
    let lacking: std::collections::BTreeSet<&StorePath> = missing.iter().map(|i| &i.path).collect();
    let valid = wanted.iter().filter_map(|&i| plan.get(i)).map(|i| &i.path).filter(|p| !lacking.contains(p)).cloned().collect();
    Some(AgentJob {
        key,
        package: Arc::clone(package),
        missing,
        valid,
        store_dir: store_dir.clone(),
        records: Records::default_location(),
        dumper: Arc::clone(dumper),
        sign_key: opts.sign_key.clone(),
        progress: Arc::clone(progress) as Arc<dyn TargetProgress>,
    })
}

/// Install the agent on the targets that got whole NARs because they held
/// nothing yet (`install_deferred`), all at once, after their upload: their
/// next push finds it there. A failure only means the next push installs it.
pub(crate) async fn install_deferred<'a>(
    agent: &Prepared,
    targets: impl Iterator<Item = (&'a mut TransferStats, &'a mut Option<super::session::TargetSession>)>,
) {
    let Prepared::Ready { package, .. } = agent else { return };
    let mut tasks = Vec::new();
    for (stats, session) in targets {
        let Some(mut s) = session.take_if(|_| stats.install_deferred) else { continue };
        let package = Arc::clone(package);
        tasks.push((stats, session, tokio::spawn(async move {
            let r = package.add_to(&mut s.store.conn).await;
            (s, r)
        })));
    }
    for (stats, session, task) in tasks {
        match task.await {
            Ok((s, r)) => {
                match r {
                    Ok(installed) => {
                        stats.agent_installed = installed;
                        if installed {
                            stats.wire_bytes += package.info.nar_size;
                        }
                    }
                    Err(e) => tracing::debug!("{}: {e}", s.ssh.host()),
                }
                *session = Some(s);
            }
            Err(e) => tracing::debug!("installing the agent: {e}"),
        }
    }
}
