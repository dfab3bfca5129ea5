//! `ndeploy apply` / `ndeploy build`: build → push → keys → activate →
//! health checks → confirm, pipelined per host.
//!
//! Each host runs its own task (at most `jobs` at once): its toplevel is
//! built by the local daemon (or its `.drv` closure is pushed and built by
//! the target's daemon for `buildOnTarget`), pushed as soon as it is built,
//! and activated as soon as its own push is done — hosts never wait for each
//! other. Activation goes through the magic-rollback agent
//! ([`crate::activate`]); confirmation is sent over a NEW SSH connection, so
//! a configuration that breaks SSH is rolled back by the target itself. A
//! failing host is reported and never stops the others. Nothing here prints:
//! output lines go to [`ApplyOptions::output`] as `(host, line)`.

pub mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ndeploy_store::store_path::StorePath;
use serde_json::Value as Json;
use tokio::sync::Semaphore;

use crate::activate::{self, ActivateOptions, Goal, Outcome};
use crate::build;
use crate::push::{NoProgress, PushOptions, PushTarget, push};
use crate::ssh::{ConnectOptions, SshSession, SshTarget, open_remote_store};
use crate::{health, keys};
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

/// A line of output: host, text.
pub type Output = Arc<dyn Fn(&str, &str) + Send + Sync>;

#[derive(Clone)]
pub struct ApplyOptions {
    /// `None`: build only.
    pub goal: Option<Goal>,
    pub jobs: usize,
    pub magic_rollback: bool,
    pub confirm_timeout: Duration,
    pub target_root: String,
    pub connect: ConnectOptions,
    /// Show build logs (activation output is always shown).
    pub verbose: bool,
    pub upload_keys: bool,
    /// Names this run's directory on targets.
    pub run_id: String,
    pub output: Output,
}

impl ApplyOptions {
    pub fn new(goal: Option<Goal>, connect: ConnectOptions, output: Output) -> ApplyOptions {
        let run_id = format!(
            "{}-{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()),
            std::process::id()
        );
        ApplyOptions {
            goal,
            jobs: 16,
            magic_rollback: goal.is_some_and(Goal::rollback_by_default),
            confirm_timeout: Duration::from_secs(30),
            target_root: String::new(),
            connect,
            verbose: false,
            upload_keys: true,
            run_id,
            output,
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
    let sem = Arc::new(Semaphore::new(opts.jobs.max(1)));
    let tasks: Vec<_> = hosts
        .into_iter()
        .map(|h| {
            let (sem, opts) = (Arc::clone(&sem), opts.clone());
            let name = h.name.clone();
            (name, tokio::spawn(async move {
                let _permit = sem.acquire_owned().await;
                run_host(h, &opts).await
            }))
        })
        .collect();
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

async fn run_host(h: HostSpec, opts: &ApplyOptions) -> HostReport {
    let started = Instant::now();
    let mut r = HostReport { host: h.name.clone(), eval_secs: h.eval_secs, ..Default::default() };
    let dir = ndeploy_store::store_path::StoreDir::from_env();
    r.toplevel = dir.display(&h.toplevel);
    if let Err(e) = pipeline(&h, opts, &mut r).await {
        r.verdict = Verdict::Failed(e);
    }
    r.total_secs = started.elapsed().as_secs_f64();
    if r.verdict != Verdict::Built {
        say(opts, &r.host, &r.result_text());
    }
    r
}

fn say(opts: &ApplyOptions, host: &str, line: &str) {
    (opts.output)(host, line);
}

async fn pipeline(h: &HostSpec, opts: &ApplyOptions, r: &mut HostReport) -> Result<(), String> {
    let (mut local, _child) = build::open_local().await.map_err(|e| format!("local Nix store: {e}"))?;
    let remote_build = h.build_on_target() && opts.goal.is_some();
    // Build (locally unless the target builds).
    let t = Instant::now();
    if !remote_build {
        let (out, name, verbose) = (Arc::clone(&opts.output), h.name.clone(), opts.verbose);
        build::build(&mut local, &h.drv, move |l| {
            if verbose {
                out(&name, l);
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        r.build_secs = Some(t.elapsed().as_secs_f64());
        say(opts, &h.name, &format!("built {} ({:.2}s)", r.toplevel, t.elapsed().as_secs_f64()));
    }
    let Some(goal) = opts.goal else {
        r.verdict = Verdict::Built;
        return Ok(());
    };
    // Push the toplevel (or, for buildOnTarget, the derivation) closure.
    let t = Instant::now();
    let root = if remote_build { h.drv.clone() } else { h.toplevel.clone() };
    let mut popts = PushOptions::new(opts.connect.clone(), Arc::new(NoProgress));
    popts.jobs = 1;
    let target = PushTarget { name: h.name.clone(), ssh: h.ssh.clone(), roots: vec![root] };
    let report = push(&mut local, vec![target], &popts).await.map_err(|e| e.to_string())?;
    drop(local);
    let tr = report.targets.into_iter().next().ok_or("push returned no report")?;
    if let Some(e) = tr.error {
        return Err(format!("push: {e}"));
    }
    r.pushed_paths = tr.sent_paths;
    r.pushed_bytes = tr.sent_bytes;
    r.push_secs = Some(t.elapsed().as_secs_f64());
    say(opts, &h.name, &format!("pushed {} paths, {} ({:.2}s)", r.pushed_paths, crate::push::report::human_bytes(r.pushed_bytes), t.elapsed().as_secs_f64()));

    let session = SshSession::connect(&h.ssh, &opts.connect).await.map_err(|e| e.to_string())?;
    if remote_build {
        let t = Instant::now();
        let mut store = open_remote_store(&session, h.ssh.remote_store.as_deref()).await.map_err(|e| e.to_string())?;
        let (out, name, verbose) = (Arc::clone(&opts.output), h.name.clone(), opts.verbose);
        let built = build::build(&mut store.conn, &h.drv, move |l| {
            if verbose {
                out(&name, l);
            }
        })
        .await;
        let _ = store.close().await;
        built.map_err(|e| format!("on the target: {e}"))?;
        r.build_secs = Some(t.elapsed().as_secs_f64());
        say(opts, &h.name, &format!("built {} ({:.2}s)", r.toplevel, t.elapsed().as_secs_f64()));
    }
    let keys = keys::parse(&h.deployment)?;
    let (pre, post): (Vec<_>, Vec<_>) = keys.into_iter().partition(|k| k.upload_at != "post-activation");
    if opts.upload_keys && goal != Goal::DryActivate && !pre.is_empty() {
        // Recorded in the run directory: the agent restores them when it rolls back.
        let run_dir = opts.activate_options(goal).run_dir();
        match keys::upload(&session, &pre, &opts.target_root, Some(&run_dir)).await {
            Ok(n) => r.keys += n,
            Err(e) => {
                let restored = match keys::restore(&session, &run_dir).await {
                    Ok(()) => "the previous keys are restored".to_owned(),
                    Err(why) => why,
                };
                return Err(format!("{e} ({restored})"));
            }
        }
    }
    let result = activate_host(h, opts, goal, &session, r).await;
    if result.is_ok() && opts.upload_keys && r.verdict == Verdict::Deployed {
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
) -> Result<(), String> {
    let aopts = opts.activate_options(goal);
    let top = &r.toplevel.clone();
    let printer = |line: &str| say(opts, &h.name, line);
    let t = Instant::now();
    if goal == Goal::DryActivate {
        let ok = activate::dry_activate(session, &aopts, top, printer).await.map_err(|e| e.to_string())?;
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
                .map_err(|e2| format!("lost the connection during activation ({e}) and cannot reconnect ({e2}); the target rolls back by itself"))?;
            let s = activate::wait_status(&reconnected, &run_dir, wait_secs).await.map_err(|e| e.to_string())?;
            (&reconnected, s)
        }
    };
    r.activate_secs = Some(t.elapsed().as_secs_f64());
    let t = Instant::now();
    if !started.succeeded() {
        let outcome = activate::wait_result(session, &run_dir, wait_secs).await.map_err(|e| e.to_string())?;
        r.verdict = verdict(outcome, &format!("activation failed (status {})", started.status));
        r.confirm_secs = Some(t.elapsed().as_secs_f64());
        return Ok(());
    }
    let checks = health::parse(&h.deployment)?;
    if !aopts.magic_rollback {
        let outcome = activate::wait_result(session, &run_dir, wait_secs).await.map_err(|e| e.to_string())?;
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
    if let Err(why) = health::run_checks(session, &checks, &aopts.env_prefix()).await {
        say(opts, &h.name, &why);
        let outcome = activate::abort(session, &run_dir, "health-check-failed", wait_secs).await.map_err(|e| e.to_string())?;
        r.verdict = verdict(outcome, &why);
        r.confirm_secs = Some(t.elapsed().as_secs_f64());
        return Ok(());
    }
    // Confirm over a NEW connection: proves the new configuration still lets us in.
    let confirmed = match SshSession::connect(&h.ssh, &opts.connect).await {
        Ok(fresh) => {
            let o = activate::confirm(&fresh, &run_dir).await.map_err(|e| e.to_string());
            let _ = fresh.disconnect().await;
            o
        }
        Err(e) => Err(format!("cannot reconnect to confirm: {e}")),
    };
    r.verdict = match confirmed {
        Ok(outcome) => verdict(outcome, "confirmation"),
        Err(why) => {
            say(opts, &h.name, &format!("{why}; waiting for the target to roll back"));
            // The old connection may still work: watch the agent decide.
            let secs = opts.confirm_timeout.as_secs() + 15;
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
