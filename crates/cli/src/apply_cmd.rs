//! `ndeploy apply [switch|boot|test|dry-activate] [SELECTORS…]`: evaluate →
//! build → push → activate (see `ndeploy_deploy::apply`), plus the fleet
//! plumbing the other host commands (`build`, `exec`, `keys`, `diff`) share.
//!
//! Evaluation runs on its own thread and writes every `.drv`, text and the
//! source manifest into a temporary drv dir; each host's result streams into
//! the pipeline as soon as it is done: its derivations are registered in the
//! local store through the daemon (`apply::register_and_feed`) and it starts
//! building while other hosts still evaluate. Progress: bars per host on a
//! terminal, `host> line` lines otherwise (see `apply_progress`). The final
//! per-host report is a table (or `--json`). Exit status 1 when any host
//! failed or rolled back.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use ndeploy_deploy::activate::Goal;
use ndeploy_deploy::apply::{self, ApplyOptions, Evaluation, HostReport, HostSpec, Verdict};
use tokio::sync::mpsc;
use ndeploy_deploy::fleet::{self, HostResult, Selection, Selector, Target};
use ndeploy_deploy::ssh::{ConnectOptions, SshTarget};
use ndeploy_eval::eval::{EvalConfig, parse_nix_path};
use ndeploy_eval::fetch::{FetchIO, FetchStore, Fetcher};
use ndeploy_eval::io::RealIO;
use ndeploy_eval::store::ComputingStore;
use ndeploy_eval::{EvalResult, Evaluator};
use ndeploy_store::store_path::StoreDir;

use crate::eval_cmd::open_fleet;

/// Where the fleet is and which hosts; shared by the host commands.
#[derive(Args, Debug, Clone, Default)]
pub struct FleetArgs {
    /// The fleet is this flake.
    #[arg(long, value_name = "REF", conflicts_with = "file")]
    pub flake: Option<String>,
    /// The fleet is this Nix file.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Comma-separated selectors: host globs and @TAG (repeatable).
    #[arg(long, value_name = "SELECTORS")]
    pub on: Vec<String>,
    /// Accept and record host keys of hosts that are in no known_hosts file.
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

impl FleetArgs {
    pub fn connect_options(&self) -> ConnectOptions {
        let mut c = ConnectOptions::from_env();
        c.accept_new_host_keys = self.accept_new_host_keys;
        c
    }
}

/// One selected host after evaluation.
pub struct Evaluated {
    pub result: HostResult,
    pub deployment: serde_json::Value,
}

/// The SSH target of a host from its deployment settings.
pub fn ssh_target(r: &HostResult, deployment: &serde_json::Value) -> anyhow::Result<SshTarget> {
    let Some(host) = &r.target_host else {
        bail!("host {} is not deployable: its deployment.targetHost is null", r.host);
    };
    let mut ssh = SshTarget::parse(host)?;
    if let Some(u) = deployment.get("targetUser").and_then(|u| u.as_str()) {
        ssh.user = Some(u.to_owned());
    }
    if let Some(p) = deployment.get("targetPort").and_then(serde_json::Value::as_u64) {
        ssh.port = u16::try_from(p).ok();
    }
    Ok(ssh)
}

/// Evaluate the selected hosts (`toplevels`: their toplevels, else only the
/// deployment settings) on a large-stack thread, sorted by host. With
/// `drv_dir`, every derivation, text and the source manifest is written there.
pub fn evaluate(
    fa: &FleetArgs,
    extra_selectors: &[String],
    toplevels: bool,
    drv_dir: Option<PathBuf>,
) -> anyhow::Result<Vec<Evaluated>> {
    let store_dir = std::env::var("NIX_STORE_DIR").unwrap_or_else(|_| "/nix/store".into());
    let mut computing = ComputingStore::new(&store_dir);
    let with_manifest = drv_dir.is_some();
    if let Some(d) = drv_dir {
        computing = computing.with_drv_dir(d);
    }
    let computing = Arc::new(computing);
    let mut out = Vec::new();
    evaluate_each(fa, extra_selectors, toplevels, Arc::clone(&computing), |e| out.push(e))?;
    if with_manifest {
        computing.write_manifest().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    out.sort_by(|a, b| a.result.host.cmp(&b.result.host));
    Ok(out)
}

/// Evaluate the selected hosts with `computing` as the store, on a
/// large-stack thread, handing each to `on_result` as soon as it is done
/// (completion order). Blocks until every host is done.
pub fn evaluate_each(
    fa: &FleetArgs,
    extra_selectors: &[String],
    toplevels: bool,
    computing: Arc<ComputingStore>,
    mut on_result: impl FnMut(Evaluated) + Send,
) -> anyhow::Result<()> {
    let mut sels = Vec::new();
    for on in fa.on.iter().chain(extra_selectors) {
        sels.extend(Selector::parse_list(on)?);
    }
    let sel = if sels.is_empty() { Selection::All } else { Selection::Any(sels) };
    let (flake, file) = (fa.flake.clone(), fa.file.clone());
    let store_dir = computing.store_dir().as_str().to_owned();
    let work = move || -> anyhow::Result<()> {
        let ev = evaluator_over(&store_dir, computing);
        let pool = fleet::thread_pool(0)?;
        let (_, _, fleet) = pool.install(|| open_fleet(&ev, flake.as_deref(), file.as_deref()))?;
        let all = fleet.hosts().to_vec();
        let deployments = fleet.deployments(&pool, &all);
        let by_host: std::collections::HashMap<&str, &EvalResult<fleet::Deployment>> =
            all.iter().map(String::as_str).zip(deployments.iter()).collect();
        let hosts = sel.apply(&all, |h| match by_host.get(h) {
            Some(Ok(d)) => Ok(d.tags.clone()),
            _ => Err(()),
        })?;
        let deployment = |host: &str| match by_host.get(host) {
            Some(Ok(d)) => d.json.clone(),
            _ => serde_json::Value::Null,
        };
        if toplevels {
            fleet.evaluate(&pool, &hosts, &Target::Toplevel, false, |result| {
                let deployment = deployment(&result.host);
                on_result(Evaluated { result, deployment })
            });
        } else {
            for h in &hosts {
                let mut result = HostResult::new(h);
                match by_host.get(h.as_str()) {
                    Some(Ok(d)) => result.target_host = d.target_host.clone(),
                    Some(Err(e)) => result.error = Some(e.render(false)),
                    None => result.error = Some("no such host".into()),
                }
                on_result(Evaluated { result, deployment: deployment(h) });
            }
        }
        // The heap is not freed value by value: the process ends soon.
        std::mem::forget(fleet);
        std::mem::forget(ev);
        Ok(())
    };
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .stack_size(fleet::evaluate::STACK_SIZE)
            .spawn_scoped(scope, work)
            .context("cannot start the evaluation thread")?;
        handle.join().map_err(|_| anyhow::anyhow!("evaluation thread panicked"))?
    })
}

/// An evaluator over the real file system whose store is `computing`.
fn evaluator_over(store_dir: &str, computing: Arc<ComputingStore>) -> Evaluator {
    let mut nix_path = Vec::new();
    if let Ok(np) = std::env::var("NIX_PATH") {
        nix_path.extend(parse_nix_path(&np));
    }
    let config = EvalConfig { nix_path, store_dir: store_dir.to_owned(), ..EvalConfig::default() };
    let fetcher = Arc::new(Fetcher::from_env(store_dir));
    let io = FetchIO::new(Arc::new(RealIO), fetcher.clone());
    let mut ev = Evaluator::new(config, Arc::new(io));
    ev.store = Some(Arc::new(FetchStore::new(computing, fetcher)));
    ev
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// `[switch|boot|test|dry-activate] [SELECTORS…]` (default goal: switch; no selector: every host).
    #[arg(value_name = "GOAL_OR_SELECTOR")]
    words: Vec<String>,
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Seconds the target waits for confirmation before rolling back.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    confirm_timeout: u64,
    /// No magic rollback (no confirmation wait).
    #[arg(long)]
    no_magic_rollback: bool,
    /// Do not upload deployment.keys.
    #[arg(long)]
    no_keys: bool,
    /// Prefix of every path activation touches on the targets
    /// (`NDEPLOY_TARGET_ROOT`; for tests and containers).
    #[arg(long, value_name = "DIR")]
    target_root: Option<String>,
    /// Pushes through the ndeploy agent, as `ndeploy push` (`--stats`: per
    /// host, the bytes sent by method; always in `--json`'s `pushTransfer`).
    #[command(flatten)]
    agent: crate::push_cmd::AgentArgs,
}

/// The pipeline's own options, shared by `apply` and `build`.
#[derive(Args, Debug)]
pub struct PipelineArgs {
    /// Hosts handled at once.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 16)]
    jobs: usize,
    /// Show build logs.
    #[arg(short, long)]
    verbose: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bars (prefixed output lines instead).
    #[arg(long)]
    no_progress: bool,
}

impl PipelineArgs {
    /// Options for `goal` (`None`: build only) with these settings; the
    /// other fields keep `ApplyOptions::new`'s defaults.
    pub fn options(&self, goal: Option<Goal>, fleet: &FleetArgs) -> ApplyOptions {
        let progress = crate::apply_progress::progress(self.json || self.no_progress);
        let mut opts = ApplyOptions::new(goal, fleet.connect_options(), progress);
        opts.jobs = self.jobs.max(1);
        opts.verbose = self.verbose;
        opts
    }
}

/// Split `[GOAL] SELECTORS…`.
fn goal_and_selectors(words: &[String]) -> (Goal, Vec<String>) {
    match words.split_first() {
        Some((first, rest)) => match Goal::parse(first) {
            Ok(g) => (g, rest.to_vec()),
            Err(_) => (Goal::Switch, words.to_vec()),
        },
        None => (Goal::Switch, Vec::new()),
    }
}

/// Hosts ready to build, and those whose evaluation failed (as reports).
pub struct Prepared {
    pub hosts: Vec<HostSpec>,
    pub failed: Vec<HostReport>,
}

fn merge(mut reports: Vec<HostReport>, failed: impl IntoIterator<Item = HostReport>) -> Vec<HostReport> {
    reports.extend(failed);
    reports.sort_by(|a, b| a.host.cmp(&b.host));
    reports
}

/// An evaluated host ready for the pipeline, or why it is not.
fn host_spec(dir: &StoreDir, e: Evaluated) -> Evaluation {
    let Evaluated { result: r, deployment } = e;
    let spec = (|| -> anyhow::Result<HostSpec> {
        if let Some(e) = &r.error {
            bail!("evaluation failed: {e}");
        }
        let drv = dir.parse(r.drv_path.as_deref().context("no drvPath")?)?;
        let toplevel = dir.parse(r.out_path.as_deref().context("no outPath")?)?;
        let ssh = ssh_target(&r, &deployment)?;
        Ok(HostSpec { name: r.host.clone(), ssh, drv, toplevel, deployment, eval_secs: r.eval_ms as f64 / 1000.0 })
    })();
    match spec {
        Ok(h) => Evaluation::Ready(h),
        Err(e) => Evaluation::Failed(HostReport {
            host: r.host.clone(),
            eval_secs: r.eval_ms as f64 / 1000.0,
            verdict: Verdict::Failed(format!("{e:#}")),
            ..Default::default()
        }),
    }
}

/// Evaluate with a drv dir and register its paths in the local store. A
/// host that fails to evaluate is reported, not fatal.
pub fn evaluate_and_register(fa: &FleetArgs, selectors: &[String]) -> anyhow::Result<Prepared> {
    let drv_dir = tempfile::Builder::new().prefix("ndeploy-drvs-").tempdir().context("cannot create a temporary directory")?;
    let evaluated = evaluate(fa, selectors, true, Some(drv_dir.path().to_path_buf()))?;
    let dir = StoreDir::from_env();
    let (mut hosts, mut failed) = (Vec::new(), Vec::new());
    for e in evaluated {
        match host_spec(&dir, e) {
            Evaluation::Ready(h) => hosts.push(h),
            Evaluation::Failed(r) => failed.push(r),
        }
    }
    let rt = runtime()?;
    let added = rt.block_on(async {
        let mut local = ndeploy_store::daemon::open_local_store().await?;
        let added = ndeploy_deploy::build::register(&mut local.conn, drv_dir.path()).await;
        local.close().await;
        anyhow::Ok(added?)
    })?;
    tracing_note(&format!("registered {added} new store paths (derivations and sources)"));
    Ok(Prepared { hosts, failed })
}

/// What a pipelined run did: every host's report (sorted by host) and the
/// run's phase times.
pub struct Pipelined {
    pub reports: Vec<HostReport>,
    pub phases: Vec<(String, Duration)>,
}

/// Evaluate → register → `opts.goal` (build only when `None`), each host
/// entering the pipeline as soon as its evaluation is done (module doc).
pub fn run_pipeline(fa: &FleetArgs, selectors: &[String], opts: &ApplyOptions) -> anyhow::Result<Pipelined> {
    let started = Instant::now();
    let drv_dir = tempfile::Builder::new().prefix("ndeploy-drvs-").tempdir().context("cannot create a temporary directory")?;
    let store_dir = std::env::var("NIX_STORE_DIR").unwrap_or_else(|_| "/nix/store".into());
    let computing = Arc::new(ComputingStore::new(&store_dir).with_drv_dir(drv_dir.path().to_path_buf()));
    let snapshot: apply::Snapshot = {
        let c = Arc::clone(&computing);
        Arc::new(move || c.write_manifest().map_err(Into::into))
    };
    let rt = runtime()?;
    let (eval_tx, eval_rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = mpsc::unbounded_channel();
    let feed = rt.spawn(apply::register_and_feed(
        eval_rx,
        snapshot,
        drv_dir.path().to_path_buf(),
        ready_tx,
        Arc::clone(&opts.progress),
    ));
    let (fa, selectors) = (fa.clone(), selectors.to_vec());
    let eval = rt.spawn_blocking(move || {
        let dir = StoreDir::from_env();
        evaluate_each(&fa, &selectors, true, computing, |e| {
            let _ = eval_tx.send(host_spec(&dir, e));
        })
        .map(|()| started.elapsed())
    });
    let (reports, feed, eval) = rt.block_on(async {
        let reports = apply::apply_stream(ready_rx, opts).await;
        (reports, feed.await, eval.await)
    });
    let eval_time = eval.map_err(|e| anyhow::anyhow!("evaluation task failed: {e}"))??;
    let feed = feed.map_err(|e| anyhow::anyhow!("registration task failed: {e}"))?;
    tracing_note(&format!("registered {} new store paths in {} rounds", feed.registered, feed.rounds));
    let phases = vec![
        ("evaluate".to_owned(), eval_time),
        (format!("register ({} rounds)", feed.rounds), Duration::from_secs_f64(feed.register_secs)),
        ("total".to_owned(), started.elapsed()),
    ];
    Ok(Pipelined { reports: merge(reports, feed.failed), phases })
}

fn tracing_note(s: &str) {
    if std::env::var_os("NDEPLOY_DEBUG").is_some() {
        eprintln!("{s}");
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// Print the report and phase times; the exit code.
pub fn finish(reports: &[HostReport], json: bool, phases: &[(String, Duration)]) -> ExitCode {
    if json {
        let v: Vec<serde_json::Value> = reports.iter().map(HostReport::to_json).collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        print!("{}", apply::report::table(reports));
    }
    let phases: Vec<String> = phases.iter().map(|(n, d)| format!("{n} {:.2}s", d.as_secs_f64())).collect();
    eprintln!("phases: {}", phases.join(", "));
    eprint!("{}", apply::report::phase_summary(reports));
    if reports.iter().all(HostReport::ok) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

pub fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let (goal, selectors) = goal_and_selectors(&args.words);
    let mut opts = args.pipeline.options(Some(goal), &args.fleet);
    opts.magic_rollback = !args.no_magic_rollback && goal.rollback_by_default();
    opts.confirm_timeout = Duration::from_secs(args.confirm_timeout.max(1));
    opts.upload_keys = !args.no_keys;
    opts.target_root = target_root(&args.target_root);
    opts.agent = args.agent.mode();
    let run = run_pipeline(&args.fleet, &selectors, &opts)?;
    let code = finish(&run.reports, args.pipeline.json, &run.phases);
    if args.agent.stats && !args.pipeline.json {
        print!("{}", run.reports.iter().filter_map(HostReport::push_stats).collect::<String>());
    }
    Ok(code)
}

/// `--target-root`, else `$NDEPLOY_TARGET_ROOT`, else none.
pub fn target_root(arg: &Option<String>) -> String {
    arg.clone().or_else(|| std::env::var("NDEPLOY_TARGET_ROOT").ok()).unwrap_or_default()
}
