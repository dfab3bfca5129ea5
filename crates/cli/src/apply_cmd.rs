//! `ndeploy apply [switch|boot|test|dry-activate] [SELECTORS…]`: evaluate →
//! build → push → activate (see `ndeploy_deploy::apply`), plus the fleet
//! plumbing the other host commands (`build`, `exec`, `keys`, `diff`) share.
//!
//! Evaluation writes every `.drv`, text and source manifest into a
//! temporary drv dir; those are registered in the local store through the
//! daemon before anything builds. Activation output is printed as
//! `host> line`; build logs too with `--verbose`. The final per-host report
//! is a table (or `--json`). Exit status 1 when any host failed or rolled back.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use ndeploy_deploy::activate::Goal;
use ndeploy_deploy::apply::{self, ApplyOptions, HostReport, HostSpec, Verdict};
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
/// deployment settings) on a large-stack thread. With `drv_dir`, every
/// derivation, text and source manifest is written there.
pub fn evaluate(
    fa: &FleetArgs,
    extra_selectors: &[String],
    toplevels: bool,
    drv_dir: Option<PathBuf>,
) -> anyhow::Result<Vec<Evaluated>> {
    let mut sels = Vec::new();
    for on in fa.on.iter().chain(extra_selectors) {
        sels.extend(Selector::parse_list(on)?);
    }
    let sel = if sels.is_empty() { Selection::All } else { Selection::Any(sels) };
    let (flake, file) = (fa.flake.clone(), fa.file.clone());
    let work = move || -> anyhow::Result<Vec<Evaluated>> {
        let store_dir = std::env::var("NIX_STORE_DIR").unwrap_or_else(|_| "/nix/store".into());
        let mut computing = ComputingStore::new(&store_dir);
        if let Some(d) = drv_dir {
            computing = computing.with_drv_dir(d);
        }
        let computing = Arc::new(computing);
        let ev = evaluator_over(&store_dir, Arc::clone(&computing));
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
        let mut results = Vec::new();
        if toplevels {
            fleet.evaluate(&pool, &hosts, &Target::Toplevel, false, |r| results.push(r));
        } else {
            results = hosts
                .iter()
                .map(|h| {
                    let mut r = HostResult::new(h);
                    match by_host.get(h.as_str()) {
                        Some(Ok(d)) => r.target_host = d.target_host.clone(),
                        Some(Err(e)) => r.error = Some(e.render(false)),
                        None => r.error = Some("no such host".into()),
                    }
                    r
                })
                .collect();
        }
        computing.write_manifest().map_err(|e| anyhow::anyhow!("{e}"))?;
        let out = results
            .into_iter()
            .map(|result| {
                let deployment = match by_host.get(result.host.as_str()) {
                    Some(Ok(d)) => d.json.clone(),
                    _ => serde_json::Value::Null,
                };
                Evaluated { result, deployment }
            })
            .collect();
        // The heap is not freed value by value: the process ends soon.
        std::mem::forget(fleet);
        std::mem::forget(ev);
        Ok(out)
    };
    let handle = std::thread::Builder::new()
        .stack_size(fleet::evaluate::STACK_SIZE)
        .spawn(work)
        .context("cannot start the evaluation thread")?;
    let mut out = handle.join().map_err(|_| anyhow::anyhow!("evaluation thread panicked"))??;
    out.sort_by(|a, b| a.result.host.cmp(&b.result.host));
    Ok(out)
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

/// Prints `host> line` lines without interleaving within a line.
pub fn printer() -> apply::Output {
    Arc::new(|host: &str, line: &str| eprintln!("{host}> {line}"))
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// `[switch|boot|test|dry-activate] [SELECTORS…]` (default goal: switch; no selector: every host).
    #[arg(value_name = "GOAL_OR_SELECTOR")]
    words: Vec<String>,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Hosts handled at once.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 16)]
    jobs: usize,
    /// Seconds the target waits for confirmation before rolling back.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    confirm_timeout: u64,
    /// No magic rollback (no confirmation wait).
    #[arg(long)]
    no_magic_rollback: bool,
    /// Do not upload deployment.keys.
    #[arg(long)]
    no_keys: bool,
    /// Show build logs.
    #[arg(short, long)]
    verbose: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Prefix of every path activation touches on the targets
    /// (`NDEPLOY_TARGET_ROOT`; for tests and containers).
    #[arg(long, value_name = "DIR")]
    target_root: Option<String>,
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
    pub eval_time: Duration,
    pub register_time: Duration,
}

impl Prepared {
    /// The failed hosts' reports merged with `reports`, sorted by host.
    pub fn merge(&self, mut reports: Vec<HostReport>) -> Vec<HostReport> {
        reports.extend(self.failed.iter().cloned());
        reports.sort_by(|a, b| a.host.cmp(&b.host));
        reports
    }
}

/// Evaluate with a drv dir and register its paths in the local store. A
/// host that fails to evaluate is reported, not fatal.
pub fn evaluate_and_register(fa: &FleetArgs, selectors: &[String]) -> anyhow::Result<Prepared> {
    let t = Instant::now();
    let drv_dir = tempfile::Builder::new().prefix("ndeploy-drvs-").tempdir().context("cannot create a temporary directory")?;
    let evaluated = evaluate(fa, selectors, true, Some(drv_dir.path().to_path_buf()))?;
    let eval_time = t.elapsed();
    let dir = StoreDir::from_env();
    let (mut hosts, mut failed) = (Vec::new(), Vec::new());
    for Evaluated { result: r, deployment } in evaluated {
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
            Ok(h) => hosts.push(h),
            Err(e) => failed.push(HostReport {
                host: r.host.clone(),
                eval_secs: r.eval_ms as f64 / 1000.0,
                verdict: Verdict::Failed(format!("{e:#}")),
                ..Default::default()
            }),
        }
    }
    let t = Instant::now();
    let rt = runtime()?;
    let added = rt.block_on(async {
        let (mut local, _child) = ndeploy_deploy::build::open_local().await?;
        anyhow::Ok(ndeploy_deploy::build::register(&mut local, drv_dir.path()).await?)
    })?;
    tracing_note(&format!("registered {added} new store paths (derivations and sources)"));
    Ok(Prepared { hosts, failed, eval_time, register_time: t.elapsed() })
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
pub fn finish(reports: &[HostReport], json: bool, phases: &[(&str, Duration)]) -> ExitCode {
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
    let started = Instant::now();
    let (goal, selectors) = goal_and_selectors(&args.words);
    let prepared = evaluate_and_register(&args.fleet, &selectors)?;
    let mut opts = ApplyOptions::new(Some(goal), args.fleet.connect_options(), printer());
    opts.jobs = args.jobs.max(1);
    opts.magic_rollback = !args.no_magic_rollback && goal.rollback_by_default();
    opts.confirm_timeout = Duration::from_secs(args.confirm_timeout.max(1));
    opts.verbose = args.verbose;
    opts.upload_keys = !args.no_keys;
    opts.target_root = target_root(&args.target_root);
    let t = Instant::now();
    let reports = prepared.merge(runtime()?.block_on(apply::apply(prepared.hosts.clone(), &opts)));
    let deploy_time = t.elapsed();
    Ok(finish(
        &reports,
        args.json,
        &[
            ("evaluate", prepared.eval_time),
            ("register", prepared.register_time),
            ("build+push+activate", deploy_time),
            ("total", started.elapsed()),
        ],
    ))
}

/// `--target-root`, else `$NDEPLOY_TARGET_ROOT`, else none.
pub fn target_root(arg: &Option<String>) -> String {
    arg.clone().or_else(|| std::env::var("NDEPLOY_TARGET_ROOT").ok()).unwrap_or_default()
}
