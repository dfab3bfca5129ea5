//! The coordinator of `ndeploy push`.
//!
//! Targets are handled in waves of at most `jobs`. For each wave: every
//! target connects in its own task while (first wave only) the local
//! session opens ([`push_opening`]) and the local daemon walks the union
//! closure of all roots; then every target answers one
//! QueryValidPaths for its wanted closure; the [`Plan`] says what each lacks;
//! then one producer thread serialises every needed path once and fans it out
//! ([`fanout`]) while every target streams its share in one
//! AddMultipleToStore. A target that fails at any step is reported and
//! dropped; the others go on. `dry_run` stops after the plan.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use ndeploy_store::daemon::DaemonConnection;
use ndeploy_store::nar::dump_path;
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::signature::SecretKey;
use ndeploy_store::store_path::{StoreDir, StorePath};
use tokio::io::{AsyncRead, AsyncWrite};

use super::agent::{self, AgentMode, Prepared};
use super::fanout::{FeedConfig, FeedMsg, ProduceStats, Signer, TargetFeed, feed_channel, produce};
use super::plan::{Plan, TargetPlan};
use super::progress::{Counted, PushProgress, TargetProgress};
use super::report::{PushReport, TargetReport};
use super::session::{self, TargetSession};
use super::PushError;
use crate::ssh::{ConnectOptions, SshTarget};

/// One destination and the roots it should have.
#[derive(Debug, Clone)]
pub struct PushTarget {
    /// How the user named it (for reports).
    pub name: String,
    pub ssh: SshTarget,
    pub roots: Vec<StorePath>,
}

/// Serialises one local path as a NAR (injectable for tests).
pub type Dumper = Arc<dyn Fn(&PathInfo, &mut dyn Write) -> Result<u64, String> + Send + Sync>;

pub struct PushOptions {
    /// Targets handled at once.
    pub jobs: usize,
    pub dry_run: bool,
    /// Signs path infos for targets that do not say they trust us. Nix
    /// daemons before protocol 1.35 (Nix 2.8 included) never say, so with a
    /// key every path to them is signed; a trusted user's daemon ignores
    /// the signatures' absence anyway, an untrusted one's checks them.
    pub sign_key: Option<SecretKey>,
    pub connect: ConnectOptions,
    /// NAR bytes buffered per target.
    pub queue_bytes: usize,
    pub progress: Arc<dyn PushProgress>,
    /// `None`: dump from the local store's files.
    pub dumper: Option<Dumper>,
    /// Send through the ndeploy agent where it can run (default: off).
    pub agent: AgentMode,
}

impl PushOptions {
    pub fn new(connect: ConnectOptions, progress: Arc<dyn PushProgress>) -> PushOptions {
        PushOptions { jobs: 16, dry_run: false, sign_key: None, connect, queue_bytes: 32 << 20, progress, dumper: None, agent: AgentMode::Off }
    }
}

/// The NARs of the local store's files.
pub fn store_dumper(dir: StoreDir) -> Dumper {
    Arc::new(move |info: &PathInfo, w: &mut dyn Write| {
        dump_path(std::path::Path::new(&dir.display(&info.path)), w).map_err(|e| e.to_string())
    })
}

/// A target in the current wave.
struct Slot {
    report: TargetReport,
    progress: Arc<Counted>,
    session: Option<TargetSession>,
    wanted: Vec<usize>,
    plan: Option<TargetPlan>,
    /// The target's agent cache key, or why the agent cannot serve it.
    agent_key: Result<String, String>,
}

impl Slot {
    fn fail(&mut self, e: String, started: Instant) {
        self.progress.finish(Some(&e));
        (self.report.sent_paths, self.report.sent_bytes) = self.progress.sent();
        self.report.error = Some(e);
        self.report.seconds = started.elapsed().as_secs_f64();
        self.session = None;
        self.plan = None;
    }
}

/// Push every target's roots; `local` is a session with the local daemon
/// (path infos come from it). Errors only for local failures; target
/// failures are in the report.
pub async fn push<R, W>(local: &mut DaemonConnection<R, W>, targets: Vec<PushTarget>, opts: &PushOptions) -> Result<PushReport, PushError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    push_opening(async { Ok(local) }, targets, opts).await
}

/// A wave's targets, each connecting in its own task.
type Connecting = Vec<(Arc<Counted>, tokio::task::JoinHandle<Result<(TargetSession, Instant), String>>)>;

fn start_connects(wave: &[PushTarget], opts: &PushOptions) -> Connecting {
    wave.iter()
        .map(|t| {
            let progress = Arc::new(Counted::new(opts.progress.target(&t.name)));
            progress.stage("connecting");
            let (ssh, connect) = (t.ssh.clone(), opts.connect.clone());
            (progress, tokio::spawn(async move { session::connect(ssh, connect).await.map(|s| (s, Instant::now())) }))
        })
        .collect()
}

/// [`push`], with the local session opened by `open_local` while the first
/// wave of targets connects (starting a local `nix-daemon --stdio` takes as
/// long as an SSH handshake).
pub async fn push_opening<'l, R, W, F>(open_local: F, targets: Vec<PushTarget>, opts: &PushOptions) -> Result<PushReport, PushError>
where
    R: AsyncRead + Unpin + Send + 'l,
    W: AsyncWrite + Unpin + Send + 'l,
    F: Future<Output = Result<&'l mut DaemonConnection<R, W>, PushError>>,
{
    if targets.is_empty() {
        return Err(PushError::NoTargets);
    }
    let started = Instant::now();
    let jobs = opts.jobs.max(1);
    let mut first_wave = Some(start_connects(targets.get(..jobs).unwrap_or(&targets), opts));
    let local = match open_local.await {
        Ok(l) => l,
        Err(e) => {
            for (_, handle) in first_wave.into_iter().flatten() {
                handle.abort();
            }
            return Err(e);
        }
    };
    let dumper = opts.dumper.clone().unwrap_or_else(|| store_dumper(local.store_dir().clone()));
    let mut roots: Vec<StorePath> = targets.iter().flat_map(|t| t.roots.iter().cloned()).collect();
    roots.sort();
    roots.dedup();
    let mut report = PushReport { dry_run: opts.dry_run, ..Default::default() };
    // Prepared once some target lacks something (a no-op push never reads the agent binary).
    let mut agent: Option<Prepared> = None;
    let mut plan: Option<Arc<Plan>> = None;
    for wave in targets.chunks(jobs) {
        let connecting = first_wave.take().unwrap_or_else(|| start_connects(wave, opts));
        let plan = match &plan {
            Some(p) => Arc::clone(p),
            None => {
                let closure = local.query_closure(&roots).await.map_err(PushError::Local)?;
                report.closure_seconds = started.elapsed().as_secs_f64();
                let p = Arc::new(Plan::new(closure));
                plan = Some(Arc::clone(&p));
                p
            }
        };
        report.closure_paths = plan.order().len();
        let mut slots = Vec::with_capacity(wave.len());
        for (t, (progress, handle)) in wave.iter().zip(connecting) {
            let wanted = plan.wanted(&t.roots)?;
            let report = TargetReport { name: t.name.clone(), closure_paths: wanted.len(), ..Default::default() };
            let agent_key = agent::target_key_of(&t.ssh);
            let mut slot = Slot { report, progress, session: None, wanted, plan: None, agent_key };
            match handle.await {
                Ok(Ok((s, at))) => {
                    slot.report.stages = s.stages();
                    slot.session = Some(s);
                    slot.report.connect_seconds = at.duration_since(started).as_secs_f64();
                }
                Ok(Err(e)) => slot.fail(e, started),
                Err(e) => slot.fail(format!("connection task failed: {e}"), started),
            }
            slots.push(slot);
        }
        query_all(&mut slots, &plan, local.store_dir(), started).await;
        if !opts.dry_run {
            if agent.is_none() && slots.iter().any(|s| s.plan.as_ref().is_some_and(|p| !p.missing.is_empty())) {
                agent = Some(agent::prepare(local, opts.agent).await?);
            }
            let agent = agent.as_ref().unwrap_or(&Prepared::Off);
            send_all(&mut slots, &plan, opts, &dumper, agent, started, &mut report).await?;
        }
        for mut slot in slots {
            if let Some(s) = slot.session.take() {
                slot.report.wire_bytes = s.ssh.wire_bytes();
                if let Err(e) = session::close(s).await {
                    tracing::warn!("{}: {e}", slot.report.name);
                }
                slot.report.seconds = started.elapsed().as_secs_f64();
                slot.progress.finish(None);
            }
            report.targets.push(slot.report);
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// One QueryValidPaths per target, all at once.
async fn query_all(slots: &mut [Slot], plan: &Arc<Plan>, dir: &StoreDir, started: Instant) {
    let mut tasks = Vec::new();
    for (n, slot) in slots.iter_mut().enumerate() {
        let Some(mut s) = slot.session.take() else { continue };
        slot.progress.stage("querying");
        let paths: Vec<StorePath> = slot.wanted.iter().filter_map(|&i| plan.get(i)).map(|p| p.path.clone()).collect();
        tasks.push((n, tokio::spawn(async move {
            let t0 = Instant::now();
            let r = session::query_valid(&mut s, &paths).await;
            (s, r.map(|v| (v, t0.elapsed().as_secs_f64())))
        })));
    }
    for (n, task) in tasks {
        let Some(slot) = slots.get_mut(n) else { continue };
        match task.await {
            Ok((s, Ok((valid, took)))) => {
                slot.report.query_seconds = started.elapsed().as_secs_f64();
                slot.report.stages.push(("query".to_owned(), took));
                let tp = plan.target(&slot.wanted, &valid);
                slot.report.already_valid = tp.already_valid;
                slot.report.missing_paths = tp.missing.len();
                slot.report.missing_bytes = tp.nar_bytes;
                slot.report.missing = tp.missing.iter().filter_map(|&i| plan.get(i)).map(|p| dir.display(&p.path)).collect();
                slot.progress.planned(tp.missing.len(), tp.nar_bytes);
                slot.session = Some(s);
                slot.plan = Some(tp);
            }
            Ok((_, Err(e))) => slot.fail(e, started),
            Err(e) => slot.fail(format!("query task failed: {e}"), started),
        }
    }
}

/// The producer and one upload per target that lacks something.
async fn send_all(
    slots: &mut [Slot],
    plan: &Arc<Plan>,
    opts: &PushOptions,
    dumper: &Dumper,
    agent: &Prepared,
    started: Instant,
    report: &mut PushReport,
) -> Result<(), PushError> {
    let mut senders: Vec<Option<tokio::sync::mpsc::Sender<FeedMsg>>> = Vec::with_capacity(slots.len());
    let mut uploads = Vec::new();
    let mut agent_uploads = Vec::new();
    for (n, slot) in slots.iter_mut().enumerate() {
        let count = slot.plan.as_ref().map_or(0, |p| p.missing.len());
        // Targets with nothing to send keep their session (closed later).
        let Some(mut s) = slot.session.take_if(|_| count > 0) else {
            senders.push(None);
            continue;
        };
        if let Some(job) = agent::job_for(agent, &slot.agent_key, &mut slot.report, plan, &slot.wanted, slot.plan.as_ref(), opts, dumper, &slot.progress) {
            senders.push(None);
            slot.progress.stage("sending");
            agent_uploads.push((n, tokio::spawn(async move {
                let (stats, r) = agent::upload(&mut s, job).await;
                (s, stats, r)
            })));
            continue;
        }
        let (tx, rx) = feed_channel(opts.queue_bytes);
        senders.push(Some(tx));
        let signer = match (&opts.sign_key, s.trusted()) {
            (Some(key), None | Some(false)) => Some(Signer { key: key.clone(), dir: s.store.conn.store_dir().clone() }),
            _ => None,
        };
        let signed = signer.is_some();
        let feed = TargetFeed::new(rx, signer, Arc::clone(&slot.progress) as Arc<dyn TargetProgress>);
        slot.progress.stage("sending");
        uploads.push((n, tokio::spawn(async move {
            let r = session::upload(&mut s, count as u64, feed, signed).await;
            (s, r)
        })));
    }
    let plans: Vec<Option<&TargetPlan>> =
        slots.iter().zip(&senders).map(|(s, tx)| s.plan.as_ref().filter(|_| s.report.error.is_none() && tx.is_some())).collect();
    let feed = plan.feed(&plans);
    let order = Arc::clone(plan);
    let dump = Arc::clone(dumper);
    // With the agent at hand, the manifests of what the plain push sends are
    // recorded from the same NAR bytes: the target's next push goes through
    // the agent and starts from them.
    let records = matches!(agent, Prepared::Ready { .. }).then(agent::Records::default_location);
    let producer = tokio::task::spawn_blocking(move || {
        produce(order.order(), &feed, senders, &FeedConfig::default(), &|info: &PathInfo, w: &mut dyn Write| match &records {
            Some(r) => r.dump_recording(info, w, |i, w| dump(i, w)),
            None => dump(info, w),
        })
    });
    for (n, task) in uploads {
        let Some(slot) = slots.get_mut(n) else { continue };
        match task.await {
            Ok((s, Ok(()))) => {
                slot.report.sent_paths = slot.report.missing_paths;
                slot.report.sent_bytes = slot.report.missing_bytes;
                slot.session = Some(s);
            }
            Ok((_, Err(e))) => slot.fail(e, started),
            Err(e) => slot.fail(format!("upload task failed: {e}"), started),
        }
    }
    for (n, task) in agent_uploads {
        let Some(slot) = slots.get_mut(n) else { continue };
        match task.await {
            Ok((s, stats, r)) => {
                slot.report.transfer = stats;
                match r {
                    Ok(()) => {
                        slot.report.sent_paths = slot.report.missing_paths;
                        slot.report.sent_bytes = slot.report.missing_bytes;
                        slot.session = Some(s);
                    }
                    Err(e) => slot.fail(e, started),
                }
            }
            Err(e) => slot.fail(format!("agent upload task failed: {e}"), started),
        }
    }
    for slot in slots.iter_mut().filter(|s| s.report.transfer.via == agent::Via::Plain) {
        slot.report.transfer.wire_bytes = slot.report.sent_bytes;
    }
    agent::install_deferred(agent, slots.iter_mut().map(|s| (&mut s.report.transfer, &mut s.session))).await;
    let stats: ProduceStats = producer.await.map_err(|e| PushError::Producer(e.to_string()))?;
    report.produced_bytes += stats.bytes + stats.solo_bytes;
    report.detached_targets += stats.detached;
    Ok(())
}
