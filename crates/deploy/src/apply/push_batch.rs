//! Pushes of `apply`, batched into push's shared fan-out.
//!
//! Design: host tasks hand their push (target + roots) to one coordinator
//! task and await their own result. The coordinator runs at most `slots`
//! pushes at once. A request that finds a free slot starts at once (with
//! whatever else is queued at that instant); requests arriving while every
//! slot is busy queue up and all go together in the next push when a slot
//! frees — one [`crate::push::push`] call, so each path they need is read
//! and NAR-serialised once and the same bytes go to every target lacking it.
//! Hosts whose builds finish together thus share one fan-out, and a lone
//! host never waits for a timer. Each batch has its own local daemon
//! connection (opened while its targets connect); a batch that fails as a
//! whole fails each of its hosts. Targets go through the ndeploy agent
//! or the plain push by push's own rules (the batch's [`AgentMode`]).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc, oneshot};

use ndeploy_store::daemon::{LocalStore, open_local_store};

use super::error::BatchError;
use super::progress::ApplyProgress;
use crate::push::agent::AgentMode;
use crate::push::{PushError, PushOptions, PushProgress, PushTarget, TargetProgress, TargetReport, push_opening};
use crate::ssh::ConnectOptions;

struct Request {
    target: PushTarget,
    queued: Instant,
    reply: oneshot::Sender<Result<TargetReport, BatchError>>,
}

/// Hands pushes to the coordinator (cheap to clone).
#[derive(Clone)]
pub struct PushBatcher {
    tx: mpsc::UnboundedSender<Request>,
}

/// Push events of each target go to the host's progress.
struct HostsProgress(Arc<dyn ApplyProgress>);

impl PushProgress for HostsProgress {
    fn target(&self, name: &str) -> Arc<dyn TargetProgress> {
        self.0.push_progress(name)
    }
}

impl PushBatcher {
    /// Start the coordinator (on the current tokio runtime); it ends when
    /// every clone of the batcher is dropped.
    pub fn start(connect: ConnectOptions, slots: usize, agent: AgentMode, progress: Arc<dyn ApplyProgress>) -> PushBatcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(coordinate(rx, connect, slots.max(1), agent, progress));
        PushBatcher { tx }
    }

    /// Push `target`'s roots; the target's report (its stages start with
    /// `slot-wait`, the seconds spent queued), or why the push failed.
    pub async fn push(&self, target: PushTarget) -> Result<TargetReport, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Request { target, queued: Instant::now(), reply }).map_err(|_| BatchError::Stopped)?;
        answer.await.map_err(|_| BatchError::Dropped)?
    }
}

async fn coordinate(
    mut rx: mpsc::UnboundedReceiver<Request>,
    connect: ConnectOptions,
    slots: usize,
    agent: AgentMode,
    progress: Arc<dyn ApplyProgress>,
) {
    let slots = Arc::new(Semaphore::new(slots.clamp(1, Semaphore::MAX_PERMITS)));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
        // Everything that queued while we waited for the slot goes along.
        let mut batch = vec![first];
        while let Ok(r) = rx.try_recv() {
            batch.push(r);
        }
        let (connect, progress) = (connect.clone(), Arc::clone(&progress));
        tokio::spawn(async move {
            run_batch(batch, connect, agent, progress).await;
            drop(permit);
        });
    }
}

async fn run_batch(batch: Vec<Request>, connect: ConnectOptions, agent: AgentMode, progress: Arc<dyn ApplyProgress>) {
    let waited: Vec<f64> = batch.iter().map(|r| r.queued.elapsed().as_secs_f64()).collect();
    let (targets, replies): (Vec<PushTarget>, Vec<_>) = batch.into_iter().map(|r| (r.target, r.reply)).unzip();
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let mut opts = PushOptions::new(connect, Arc::new(HostsProgress(progress)));
    opts.jobs = targets.len();
    opts.agent = agent;
    // The local store opens while the targets connect.
    let mut local: Option<LocalStore> = None;
    let slot = &mut local;
    let open = async move {
        let store = open_local_store().await.map_err(PushError::Local)?;
        Ok(&mut slot.insert(store).conn)
    };
    let result = push_opening(open, targets, &opts).await.map_err(Arc::new);
    if let Some(l) = local {
        l.close().await;
    }
    match result {
        Ok(report) => {
            let mut by_name: std::collections::HashMap<String, TargetReport> =
                report.targets.into_iter().map(|t| (t.name.clone(), t)).collect();
            for ((name, reply), waited) in names.iter().zip(replies).zip(waited) {
                let report = by_name.remove(name).map(|mut t| {
                    t.stages.insert(0, ("slot-wait".to_owned(), waited));
                    t
                });
                let _ = reply.send(report.ok_or_else(|| BatchError::NoReport(name.clone())));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(BatchError::Push(Arc::clone(&e))));
            }
        }
    }
}
