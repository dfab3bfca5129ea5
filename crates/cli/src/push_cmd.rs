//! `ndeploy push`: copy closures to targets over SSH (see `ndeploy_deploy::push`).
//!
//! Targets come from `--to ssh://USER@HOST[:PORT][?remote-store=STORE]`
//! (every PATH goes to every `--to`), or from the fleet with `--on
//! SELECTORS` / `--all` (each host gets its toplevel's outPath, which must
//! be built already; PATHs are added to it). Path infos come from the local
//! daemon's socket, or from a `nix-daemon --stdio` we start when no daemon
//! listens (root). Output: indicatif bars per target on stderr (when it is
//! a terminal), then a summary table, or `--json`; `--dry-run` prints what
//! each target lacks. Exit status 1 if any target failed. The ndeploy agent
//! is used where it can run unless `--no-agent`; `--stats` prints the bytes
//! each target cost by method.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndeploy_deploy::push::agent::{AgentMode, stats_table};
use ndeploy_deploy::push::report::human_bytes;
use ndeploy_deploy::push::{NoProgress, PushError, PushOptions, PushProgress, PushReport, PushTarget, TargetProgress, push_opening};
use ndeploy_deploy::ssh::SshTarget;
use ndeploy_store::daemon::{LocalStore, open_local_store};
use ndeploy_store::signature::SecretKey;
use ndeploy_store::store_path::{StoreDir, StorePath};

use crate::apply_cmd::{self, FleetArgs};

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Store paths (or links to them, like ./result) to copy with their closures.
    paths: Vec<String>,
    /// Destination `ssh://USER@HOST[:PORT][?remote-store=STORE]` (repeatable).
    #[arg(long, value_name = "URL")]
    to: Vec<String>,
    /// Every fleet host.
    #[arg(long)]
    all: bool,
    /// The fleet (`--flake`/`--file`), host selectors (`--on`), host keys.
    #[command(flatten)]
    fleet: FleetArgs,
    /// Targets handled at once.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 16)]
    jobs: usize,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Only print what each target lacks (paths and NAR bytes).
    #[arg(long)]
    dry_run: bool,
    /// Nix secret key file: sign path infos for targets that do not trust us
    /// (Nix 2.8 daemons do not say whether they do, so everything sent to
    /// them is signed). Needed where the SSH user is neither root, nor
    /// allowed passwordless sudo, nor in the target's trusted-users.
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
    /// Also print where each target's time went (SSH stages, daemon handshake, query) on stderr.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// NAR bytes buffered per target (MiB).
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    queue_mib: usize,
    #[command(flatten)]
    agent: AgentArgs,
}

/// How pushes use the ndeploy agent (`push` and `apply`).
#[derive(Args, Debug, Clone, Default)]
pub struct AgentArgs {
    /// Send through the ndeploy agent: only the bytes each target lacks (the
    /// default when the agent binary is found; with --agent, a missing binary is an error).
    #[arg(long, conflicts_with = "no_agent")]
    agent: bool,
    /// Send whole NARs through the Nix worker protocol only.
    #[arg(long)]
    no_agent: bool,
    /// Print per target: NAR bytes missing, bytes sent by method, time.
    #[arg(long)]
    pub stats: bool,
}

impl AgentArgs {
    pub fn mode(&self) -> AgentMode {
        match (self.agent, self.no_agent) {
            (_, true) => AgentMode::Off,
            (true, _) => AgentMode::Required,
            _ => AgentMode::Auto,
        }
    }
}

pub fn run(args: PushArgs) -> anyhow::Result<ExitCode> {
    let store_dir = StoreDir::from_env();
    let roots = args.paths.iter().map(|p| resolve_path(&store_dir, p)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut targets = Vec::new();
    for url in &args.to {
        let ssh = SshTarget::parse(url)?;
        if roots.is_empty() {
            bail!("--to needs at least one PATH to push");
        }
        targets.push(PushTarget { name: url.clone(), ssh, roots: roots.clone() });
    }
    if args.all || !args.fleet.on.is_empty() {
        targets.extend(fleet_targets(&args, &store_dir, &roots)?);
    }
    if targets.is_empty() {
        bail!("nowhere to push: give --to URL, --on SELECTORS or --all");
    }
    let sign_key = match &args.sign_key {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read the key file {}", f.display()))?;
            Some(SecretKey::parse(text.trim()).with_context(|| format!("bad secret key in {}", f.display()))?)
        }
        None => None,
    };
    let show_bars = !args.json && !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress: Arc<dyn PushProgress> = if show_bars { Arc::new(Bars::new()) } else { Arc::new(NoProgress) };
    let mut opts = PushOptions::new(args.fleet.connect_options(), progress);
    opts.jobs = args.jobs.max(1);
    opts.dry_run = args.dry_run;
    opts.sign_key = sign_key;
    opts.queue_bytes = args.queue_mib.max(1) << 20;
    opts.agent = args.agent.mode();

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let report = rt.block_on(async {
        // The local store opens while the targets connect.
        let mut local: Option<LocalStore> = None;
        let slot = &mut local;
        let open = async move {
            let store = open_local_store().await.map_err(PushError::Local)?;
            Ok(&mut slot.insert(store).conn)
        };
        let r = push_opening(open, targets, &opts).await;
        if let Some(l) = local {
            l.close().await;
        }
        r.context("cannot push")
    })?;
    if args.verbose {
        eprint!("{}", report.timings());
    }
    if args.json {
        println!("{}", report.to_json());
    } else {
        if args.dry_run {
            print_dry_run(&report);
        }
        print!("{}", report.table());
        if args.agent.stats {
            print!("{}", stats_table(&report));
        }
    }
    Ok(if report.failed() > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// A store path, or a symlink (chain) to one.
fn resolve_path(dir: &StoreDir, p: &str) -> anyhow::Result<StorePath> {
    if let Ok((path, _)) = dir.parse_inner(p) {
        return Ok(path);
    }
    let real = std::fs::canonicalize(p).with_context(|| format!("'{p}' is not a store path and cannot be resolved"))?;
    let real = real.to_string_lossy();
    dir.parse_inner(&real).map(|(path, _)| path).with_context(|| format!("'{p}' resolves to '{real}', which is not in the store"))
}

fn print_dry_run(report: &PushReport) {
    for t in &report.targets {
        match &t.error {
            Some(e) => println!("{}: FAILED: {e}", t.name),
            None => {
                println!("{}: would send {} of {} paths, {} NAR", t.name, t.missing_paths, t.closure_paths, human_bytes(t.missing_bytes));
                for p in &t.missing {
                    println!("  {p}");
                }
            }
        }
    }
}

/// Hosts selected from the fleet, each with its toplevel (plus `extra`).
fn fleet_targets(args: &PushArgs, dir: &StoreDir, extra: &[StorePath]) -> anyhow::Result<Vec<PushTarget>> {
    let mut targets = Vec::new();
    for e in apply_cmd::evaluate(&args.fleet, &[], true, None)? {
        let r = &e.result;
        if let Some(err) = &r.error {
            bail!("cannot evaluate host {}: {err}", r.host);
        }
        let out = r.out_path.as_deref().context("no toplevel outPath")?;
        let top = dir.parse(out).with_context(|| format!("host {}: bad outPath '{out}'", r.host))?;
        let mut roots = vec![top];
        roots.extend(extra.iter().cloned());
        targets.push(PushTarget { name: r.host.clone(), ssh: apply_cmd::ssh_target(r, &e.deployment)?, roots });
    }
    Ok(targets)
}

/// indicatif bars, one per target: NAR bytes, and paths in the message.
struct Bars {
    multi: MultiProgress,
}

impl Bars {
    fn new() -> Bars {
        Bars { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()) }
    }
}

impl PushProgress for Bars {
    fn target(&self, name: &str) -> Arc<dyn TargetProgress> {
        let bar = self.multi.add(ProgressBar::new(0));
        let style = ProgressStyle::with_template("{prefix:24!} {bar:30} {bytes:>10}/{total_bytes:<10} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(name.to_owned());
        Arc::new(Bar { bar, done: AtomicUsize::new(0), total: AtomicUsize::new(0) })
    }
}

struct Bar {
    bar: ProgressBar,
    done: AtomicUsize,
    total: AtomicUsize,
}

impl TargetProgress for Bar {
    fn stage(&self, stage: &str) {
        self.bar.set_message(stage.to_owned());
    }
    fn planned(&self, paths: usize, bytes: u64) {
        self.total.store(paths, Ordering::Relaxed);
        self.bar.set_length(bytes);
        self.bar.set_message(format!("0/{paths} paths"));
    }
    fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }
    fn path_done(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar.set_message(format!("{done}/{} paths", self.total.load(Ordering::Relaxed)));
    }
    fn finish(&self, error: Option<&str>) {
        match error {
            Some(e) => self.bar.abandon_with_message(format!("FAILED: {}", e.lines().next().unwrap_or_default())),
            None => self.bar.finish(),
        }
    }
}
