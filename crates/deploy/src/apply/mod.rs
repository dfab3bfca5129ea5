//! `ndeploy apply` / `ndeploy build`: build → push → keys → activate →
//! health checks → confirm, pipelined per host.
//!
//! Hosts arrive on a channel as soon as their evaluation is done and their
//! derivations are registered ([`apply_stream`]; [`apply`] for a ready
//! list). Each host runs its own task (at most `jobs` at once, see
//! [`host`]): its toplevel is built by the local daemon (or its `.drv`
//! closure is pushed and built by the target's daemon for `buildOnTarget`),
//! pushed as soon as it is built, and activated as soon as its own push is
//! done. Pushes go through [`push_batch`]: hosts whose builds finish while
//! the push slots are busy share one fan-out (each path serialised once),
//! a lone host starts at once; the pushes go through the ndeploy agent
//! under `push`'s rules ([`ApplyOptions::agent`]). Activation goes through the magic-rollback
//! agent ([`crate::activate`]); confirmation is sent over a NEW SSH
//! connection, so a configuration that breaks SSH is rolled back by the
//! target itself. A failing host is reported and never stops the others.
//! Nothing here prints: everything goes to [`ApplyOptions::progress`].

pub mod error;
pub mod feed;
mod host;
pub mod progress;
pub mod push_batch;
pub mod report;

use std::sync::Arc;
use std::time::Duration;

use ndeploy_store::store_path::StorePath;
use serde_json::Value as Json;
use tokio::sync::{Semaphore, mpsc};

use crate::activate::{ActivateOptions, Goal};
use crate::push::agent::AgentMode;
use crate::ssh::{ConnectOptions, SshTarget};
pub use error::{BatchError, FeedError, HostError};
pub use feed::{Evaluation, FeedReport, Snapshot, register_and_feed};
pub use progress::{ApplyProgress, Lines, Phase, Silent};
pub use push_batch::PushBatcher;
pub use report::{HostReport, Verdict};

/// One evaluated host. Its Debug form leaves out `deployment` (key texts).
#[derive(Clone)]
pub struct HostSpec {
    pub name: String,
    pub ssh: SshTarget,
    pub drv: StorePath,
    pub toplevel: StorePath,
    /// The `deployment` settings as JSON (keys, healthChecks, buildOnTarget).
    pub deployment: Json,
    pub eval_secs: f64,
}

impl std::fmt::Debug for HostSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSpec")
            .field("name", &self.name)
            .field("ssh", &self.ssh)
            .field("drv", &self.drv)
            .field("toplevel", &self.toplevel)
            .finish_non_exhaustive()
    }
}

impl HostSpec {
    fn build_on_target(&self) -> bool {
        self.deployment.get("buildOnTarget").and_then(Json::as_bool).unwrap_or(false)
    }
}

#[derive(Clone)]
pub struct ApplyOptions {
    /// `None`: build only.
    pub goal: Option<Goal>,
    pub jobs: usize,
    /// Pushes running at once (hosts ready meanwhile share the next one).
    pub push_slots: usize,
    pub magic_rollback: bool,
    pub confirm_timeout: Duration,
    pub target_root: String,
    pub connect: ConnectOptions,
    /// Show build logs (activation output is always shown).
    pub verbose: bool,
    pub upload_keys: bool,
    /// Names this run's directory on targets.
    pub run_id: String,
    /// Pushes go through the ndeploy agent as `ndeploy push`'s do (default:
    /// `Auto`, where the agent binary is found; a target holding none of the
    /// closure yet gets whole NARs and the agent for its next push).
    pub agent: AgentMode,
    pub progress: Arc<dyn ApplyProgress>,
}

impl ApplyOptions {
    pub fn new(goal: Option<Goal>, connect: ConnectOptions, progress: Arc<dyn ApplyProgress>) -> ApplyOptions {
        let run_id = format!(
            "{}-{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()),
            std::process::id()
        );
        ApplyOptions {
            goal,
            jobs: 16,
            push_slots: 4,
            magic_rollback: goal.is_some_and(Goal::rollback_by_default),
            confirm_timeout: Duration::from_secs(30),
            target_root: String::new(),
            connect,
            verbose: false,
            upload_keys: true,
            run_id,
            agent: AgentMode::Auto,
            progress,
        }
    }

    fn activate_options(&self, goal: Goal) -> ActivateOptions {
        let mut o = ActivateOptions::new(goal, &self.run_id);
        o.magic_rollback = self.magic_rollback && goal != Goal::DryActivate;
        o.confirm_timeout = self.confirm_timeout;
        o.target_root = self.target_root.clone();
        o
    }
}

/// Run every host; reports come back in the order of `hosts`.
pub async fn apply(hosts: Vec<HostSpec>, opts: &ApplyOptions) -> Vec<HostReport> {
    let (tx, rx) = mpsc::unbounded_channel();
    for h in hosts {
        let _ = tx.send(h);
    }
    drop(tx);
    apply_stream(rx, opts).await
}

/// Run each host as soon as it arrives on `hosts`; reports come back in
/// arrival order once the channel is closed and every host is done.
pub async fn apply_stream(mut hosts: mpsc::UnboundedReceiver<HostSpec>, opts: &ApplyOptions) -> Vec<HostReport> {
    let shared = Arc::new(host::Shared {
        slots: Semaphore::new(opts.jobs.clamp(1, Semaphore::MAX_PERMITS)),
        pusher: PushBatcher::start(opts.connect.clone(), opts.push_slots, opts.agent, Arc::clone(&opts.progress)),
    });
    let mut tasks = Vec::new();
    while let Some(h) = hosts.recv().await {
        let (shared, opts) = (Arc::clone(&shared), opts.clone());
        let name = h.name.clone();
        tasks.push((name, tokio::spawn(async move { host::run_host(h, &opts, &shared).await })));
    }
    let mut out = Vec::new();
    for (name, t) in tasks {
        out.push(t.await.unwrap_or_else(|e| HostReport {
            host: name,
            verdict: Verdict::Failed(format!("host task failed: {e}")),
            ..Default::default()
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any `-j` is taken (tokio's semaphore panics above its maximum).
    #[tokio::test]
    async fn any_job_count_is_accepted() {
        let mut opts = ApplyOptions::new(None, ConnectOptions::default(), Arc::new(Silent));
        (opts.jobs, opts.push_slots) = (usize::MAX, usize::MAX);
        assert!(apply(Vec::new(), &opts).await.is_empty());
    }
}
