//! One host's way through `apply`: build → push → keys → activate →
//! health checks → confirm.
//!
//! Waits are overlapped where the steps do not depend on each other: the
//! SSH session used for keys and activation is opened while the host
//! builds, and the NEW connection that confirms is opened while the health
//! checks run. A host whose system profile already is the new toplevel
//! (a re-apply) is not pushed to: its closure is valid there. Every phase change and output line goes to the
//! options' [`super::ApplyProgress`]; the report records each phase's time.

use std::sync::Arc;
use std::time::Instant;

use ndeploy_store::daemon::open_local_store;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::error::HostError;
use super::push_batch::PushBatcher;
use super::{ApplyOptions, HostReport, HostSpec, Phase, Verdict};
use crate::activate::{self, Goal, Outcome};
use crate::push::PushTarget;
use crate::push::report::human_bytes;
use crate::ssh::{SshError, SshSession, open_remote_store};
use crate::{build, health, keys};

/// What the host tasks of one run share.
pub(super) struct Shared {
    /// At most `jobs` hosts at once.
    pub slots: Semaphore,
    pub pusher: PushBatcher,
}

/// An SSH connection being opened in the background.
type Connecting = JoinHandle<Result<SshSession, SshError>>;

fn connect_in_background(h: &HostSpec, opts: &ApplyOptions) -> Connecting {
    let (ssh, connect) = (h.ssh.clone(), opts.connect.clone());
    tokio::spawn(async move { SshSession::connect(&ssh, &connect).await })
}

async fn connected(c: Connecting) -> Result<SshSession, HostError> {
    match c.await {
        Ok(r) => Ok(r?),
        Err(e) => Err(HostError::ConnectTask(e)),
    }
}

/// The store path the target's system profile resolves to, if any.
async fn current_system(session: &SshSession) -> Option<String> {
    let out = session.exec(&format!("readlink -f {}", activate::SYSTEM_PROFILE)).await.ok()?;
    let path = out.stdout_str().trim().to_owned();
    (out.status.success() && !path.is_empty()).then_some(path)
}

pub(super) async fn run_host(h: HostSpec, opts: &ApplyOptions, shared: &Shared) -> HostReport {
    opts.progress.phase(&h.name, Phase::Queued);
    let _permit = shared.slots.acquire().await;
    let started = Instant::now();
    let mut r = HostReport { host: h.name.clone(), eval_secs: h.eval_secs, ..Default::default() };
    let dir = ndeploy_store::store_path::StoreDir::from_env();
    r.toplevel = dir.display(&h.toplevel);
    if let Err(e) = pipeline(&h, opts, shared, &mut r).await {
        r.verdict = Verdict::Failed(e.to_string());
    }
    r.total_secs = started.elapsed().as_secs_f64();
    if r.verdict != Verdict::Built {
        say(opts, &r.host, &r.result_text());
    }
    opts.progress.finished(&r);
    r
}

fn say(opts: &ApplyOptions, host: &str, line: &str) {
    opts.progress.line(host, line);
}

/// A build log sink for `host` (shown only with `verbose`).
fn build_log(h: &HostSpec, opts: &ApplyOptions) -> impl Fn(&str) + Send + Sync + 'static {
    let (progress, name, verbose) = (Arc::clone(&opts.progress), h.name.clone(), opts.verbose);
    move |l: &str| {
        if verbose {
            progress.line(&name, l);
        }
    }
}

async fn pipeline(h: &HostSpec, opts: &ApplyOptions, shared: &Shared, r: &mut HostReport) -> Result<(), HostError> {
    let remote_build = h.build_on_target() && opts.goal.is_some();
    // The session for keys and activation connects while we build and push.
    let connecting = opts.goal.map(|_| connect_in_background(h, opts));
    let t = Instant::now();
    if !remote_build {
        opts.progress.phase(&h.name, Phase::Building);
        let mut local = open_local_store().await.map_err(HostError::Local)?;
        let built = build::build(&mut local.conn, &h.drv, build_log(h, opts)).await;
        local.close().await;
        built.map_err(HostError::Build)?;
        r.build_secs = Some(t.elapsed().as_secs_f64());
        say(opts, &h.name, &format!("built {} ({:.2}s)", r.toplevel, t.elapsed().as_secs_f64()));
    }
    let (Some(goal), Some(connecting)) = (opts.goal, connecting) else {
        r.verdict = Verdict::Built;
        return Ok(());
    };
    // Push the toplevel (or, for buildOnTarget, the derivation) closure,
    // unless the target's system profile already is this toplevel (then its
    // closure is valid there: the profile is a GC root).
    opts.progress.phase(&h.name, Phase::Pushing);
    let t = Instant::now();
    let session = connected(connecting).await?;
    if !remote_build && h.ssh.remote_store.is_none() && current_system(&session).await.as_deref() == Some(&r.toplevel) {
        r.push_secs = Some(t.elapsed().as_secs_f64());
        say(opts, &h.name, "already the current system: nothing to push");
    } else {
        let root = if remote_build { h.drv.clone() } else { h.toplevel.clone() };
        let target = PushTarget { name: h.name.clone(), ssh: h.ssh.clone(), roots: vec![root] };
        let tr = shared.pusher.push(target).await?;
        if let Some(e) = tr.error {
            return Err(HostError::Push(e));
        }
        r.pushed_paths = tr.sent_paths;
        r.pushed_bytes = tr.sent_bytes;
        r.push_stages = tr.stages;
        r.push_secs = Some(t.elapsed().as_secs_f64());
        if tr.missing_paths > 0 {
            r.push_transfer = Some(tr.transfer);
        }
        let pushed = match r.push_via() {
            Some(via) => format!("pushed {} paths, {} ({via})", r.pushed_paths, human_bytes(r.pushed_bytes)),
            None => format!("pushed {} paths, {}", r.pushed_paths, human_bytes(r.pushed_bytes)),
        };
        say(opts, &h.name, &format!("{pushed} ({:.2}s)", t.elapsed().as_secs_f64()));
    }
    if remote_build {
        opts.progress.phase(&h.name, Phase::Building);
        let t = Instant::now();
        let mut store = open_remote_store(&session, h.ssh.remote_store.as_deref()).await?;
        let built = build::build(&mut store.conn, &h.drv, build_log(h, opts)).await;
        let _ = store.close().await;
        built.map_err(HostError::RemoteBuild)?;
        r.build_secs = Some(t.elapsed().as_secs_f64());
        say(opts, &h.name, &format!("built {} ({:.2}s)", r.toplevel, t.elapsed().as_secs_f64()));
    }
    let keys = keys::parse(&h.deployment)?;
    let (pre, post): (Vec<_>, Vec<_>) = keys.into_iter().partition(|k| k.upload_at != "post-activation");
    if opts.upload_keys && goal != Goal::DryActivate && !pre.is_empty() {
        opts.progress.phase(&h.name, Phase::Keys);
        // Recorded in the run directory: the agent restores them when it rolls back.
        let run_dir = opts.activate_options(goal).run_dir();
        match keys::upload(&session, &pre, &opts.target_root, Some(&run_dir)).await {
            Ok(n) => r.keys += n,
            Err(e) => {
                let restored = match keys::restore(&session, &run_dir).await {
                    Ok(()) => "the previous keys are restored".to_owned(),
                    Err(why) => why.to_string(),
                };
                return Err(HostError::KeysRestored { error: e, restored });
            }
        }
    }
    let result = activate_host(h, opts, goal, &session, r).await;
    if result.is_ok() && opts.upload_keys && r.verdict == Verdict::Deployed && !post.is_empty() {
        opts.progress.phase(&h.name, Phase::Keys);
        r.keys += keys::upload(&session, &post, &opts.target_root, None).await?;
    }
    let _ = session.disconnect().await;
    result
}

async fn activate_host(
    h: &HostSpec,
    opts: &ApplyOptions,
    goal: Goal,
    session: &SshSession,
    r: &mut HostReport,
) -> Result<(), HostError> {
    opts.progress.phase(&h.name, Phase::Activating);
    let aopts = opts.activate_options(goal);
    let top = &r.toplevel.clone();
    let printer = |line: &str| say(opts, &h.name, line);
    let t = Instant::now();
    if goal == Goal::DryActivate {
        let ok = activate::dry_activate(session, &aopts, top, printer).await?;
        r.activate_secs = Some(t.elapsed().as_secs_f64());
        r.verdict = if ok { Verdict::DryActivated } else { Verdict::Failed("dry-activate failed".into()) };
        return Ok(());
    }
    let run_dir = aopts.run_dir();
    let wait_secs = 60;
    let reconnected;
    let (session, started) = match activate::start(session, &aopts, top, printer).await {
        Ok(s) => (session, s),
        // The activation may have restarted sshd or the network: the agent
        // carries on regardless; follow it over a new connection.
        Err(e) => {
            say(opts, &h.name, &format!("lost the activation's connection ({e}); reconnecting"));
            reconnected = SshSession::connect(&h.ssh, &opts.connect)
                .await
                .map_err(|reconnect| HostError::LostActivation { lost: e, reconnect })?;
            let s = activate::wait_status(&reconnected, &run_dir, wait_secs).await?;
            (&reconnected, s)
        }
    };
    r.activate_secs = Some(t.elapsed().as_secs_f64());
    opts.progress.phase(&h.name, Phase::Confirming);
    let t = Instant::now();
    if !started.succeeded() {
        let outcome = activate::wait_result(session, &run_dir, wait_secs).await?;
        r.verdict = verdict(outcome, &format!("activation failed (status {})", started.status));
        r.confirm_secs = Some(t.elapsed().as_secs_f64());
        return Ok(());
    }
    let checks = health::parse(&h.deployment)?;
    if !aopts.magic_rollback {
        let outcome = activate::wait_result(session, &run_dir, wait_secs).await?;
        r.verdict = verdict(outcome, "");
        // Without magic rollback a failing check is reported, nothing is undone.
        if r.verdict == Verdict::Deployed
            && goal != Goal::Boot
            && let Err(why) = health::run_checks(session, &checks, &aopts.env_prefix()).await
        {
            r.verdict = Verdict::Failed(format!("{why} (no magic rollback: the new configuration stays)"));
        }
        r.confirm_secs = Some(t.elapsed().as_secs_f64());
        return Ok(());
    }
    // The confirming connection is opened while the checks run.
    let fresh = connect_in_background(h, opts);
    let checked = health::run_checks(session, &checks, &aopts.env_prefix()).await;
    r.health_secs = Some(t.elapsed().as_secs_f64());
    if let Err(why) = checked.map_err(|e| e.to_string()) {
        fresh.abort();
        say(opts, &h.name, &why);
        let outcome = activate::abort(session, &run_dir, "health-check-failed", wait_secs).await?;
        r.verdict = verdict(outcome, &why);
        r.confirm_secs = Some(t.elapsed().as_secs_f64());
        return Ok(());
    }
    // Confirm over a NEW connection: proves the new configuration still lets us in.
    let confirmed = match connected(fresh).await {
        Ok(fresh) => {
            let o = activate::confirm(&fresh, &run_dir).await.map_err(HostError::from);
            let _ = fresh.disconnect().await;
            o
        }
        Err(e) => Err(HostError::Reconnect(Box::new(e))),
    };
    r.verdict = match confirmed.map_err(|e| e.to_string()) {
        Ok(outcome) => verdict(outcome, "confirmation"),
        Err(why) => {
            say(opts, &h.name, &format!("{why}; waiting for the target to roll back"));
            // The old connection may still work: watch the agent decide.
            let secs = opts.confirm_timeout.as_secs().saturating_add(15);
            match activate::wait_result(session, &run_dir, secs).await {
                Ok(Outcome::RolledBack(reason)) => Verdict::RolledBack(format!("{why} ({reason})")),
                Ok(other) => verdict(other, &why),
                Err(_) => Verdict::Failed(format!("{why}; the target rolls back by itself after the confirmation timeout")),
            }
        }
    };
    r.confirm_secs = Some(t.elapsed().as_secs_f64());
    Ok(())
}

fn verdict(o: Outcome, why: &str) -> Verdict {
    let with = |reason: String| if why.is_empty() { reason } else { format!("{why}: {reason}") };
    match o {
        Outcome::Done => Verdict::Deployed,
        Outcome::RolledBack(reason) => Verdict::RolledBack(with(reason)),
        Outcome::Failed(reason) => Verdict::Failed(with(reason)),
        Outcome::Unknown(reason) => Verdict::Failed(with(reason)),
    }
}
