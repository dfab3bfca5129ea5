//! `ndeploy eval`: evaluate a fleet's hosts in parallel in one process.
//!
//! Finds the fleet (`--flake`, `--file`, or `flake.nix` / `hive.nix` /
//! `fleet.nix` here), selects hosts (`--all`, `HOST…`, `--on GLOB|@TAG,…`;
//! nothing given means all), and evaluates each host's toplevel `drvPath`
//! and `outPath` (or `--attr PATH` under its configuration) on `-j N`
//! threads over one evaluator (one heap: what hosts share is evaluated
//! once), in rounds of hosts with a cycle collection between rounds
//! (`--collect-frames`, `--collect-every`), which bounds memory (see `fleet::chunks`). Results
//! stream: JSON lines on stdout with
//! `--json` as hosts complete, else a progress bar on stderr and a table
//! sorted by host at the end. `-E '{ nodes, lib, pkgs, ... }: EXPR'` evaluates an
//! expression over the fleet instead. Exit status 1 when any host failed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ndeploy_deploy::fleet::{self, Fleet, FleetArg, FleetError, FleetSource, HostResult, Selection, Selector, Target};
use ndeploy_eval::eval::{EvalConfig, parse_nix_path};
use ndeploy_eval::fetch::{FetchIO, FetchStore, Fetcher};
use ndeploy_eval::io::RealIO;
use ndeploy_eval::store::ComputingStore;
use ndeploy_eval::{EvalResult, Evaluator, Value};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Evaluate every host (the default when no host is selected).
    #[arg(long)]
    all: bool,
    /// Hosts to evaluate (names or globs).
    hosts: Vec<String>,
    /// Comma-separated selectors: host globs and @TAG.
    #[arg(long, value_name = "SELECTORS")]
    on: Vec<String>,
    /// The fleet is this flake (path, `.`, `git+file:…`).
    #[arg(long, value_name = "REF", conflicts_with = "file")]
    flake: Option<String>,
    /// The fleet is this Nix file (hive / plain fleet).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Print one JSON object per host as it completes.
    #[arg(long)]
    json: bool,
    /// Evaluation threads (default: one per CPU).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    jobs: Option<usize>,
    /// Evaluate this attribute path under each host's configuration
    /// (e.g. `config.networking.hostName`) instead of the toplevel.
    #[arg(long, value_name = "PATH")]
    attr: Option<String>,
    /// Evaluate `{ nodes, lib, pkgs, ... }: EXPR` over the fleet and print it as JSON.
    #[arg(short = 'E', long = "expr", value_name = "EXPR", conflicts_with_all = ["attr", "hosts", "on", "all"])]
    expr: Option<String>,
    /// Show full error traces.
    #[arg(long)]
    show_trace: bool,
    /// Collect the heap's reference cycles after every N hosts (0: never).
    /// Bounds memory on large fleets; see `fleet::chunks`.
    #[arg(long, value_name = "N", conflicts_with = "collect_frames")]
    collect_every: Option<usize>,
    /// Collect the heap's reference cycles once the hosts finished since
    /// the last collection made N recursive frames (the default schedule:
    /// 50000 per thread, for at least 2 threads).
    #[arg(long, value_name = "N")]
    collect_frames: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Pass NAME = EXPR to a fleet file that is a function.
    #[arg(long = "arg", num_args = 2, value_names = ["NAME", "EXPR"], action = clap::ArgAction::Append)]
    arg: Vec<String>,
    /// Pass NAME = "STR" to a fleet file that is a function.
    #[arg(long = "argstr", num_args = 2, value_names = ["NAME", "STR"], action = clap::ArgAction::Append)]
    argstr: Vec<String>,
    /// Add a search path entry (PATH or NAME=PATH).
    #[arg(short = 'I', long = "include")]
    include: Vec<String>,
}

/// Settings for an evaluator over the real file system, with a computing
/// store (paths are computed, nothing is written).
pub fn evaluator(include: &[String]) -> Evaluator {
    let mut nix_path = Vec::new();
    for i in include {
        nix_path.extend(parse_nix_path(i));
    }
    if let Ok(np) = std::env::var("NIX_PATH") {
        nix_path.extend(parse_nix_path(&np));
    }
    let config = EvalConfig {
        nix_path,
        store_dir: std::env::var("NIX_STORE_DIR").unwrap_or_else(|_| "/nix/store".into()),
        ..EvalConfig::default()
    };
    let store_dir = config.store_dir.clone();
    // Fetched inputs and flake sources are read through the fetcher's source map.
    let fetcher = Arc::new(Fetcher::from_env(&store_dir));
    let io = FetchIO::new(Arc::new(RealIO), fetcher.clone());
    let mut ev = Evaluator::new(config, Arc::new(io));
    ev.store = Some(Arc::new(FetchStore::new(Arc::new(ComputingStore::new(&store_dir)), fetcher)));
    ev
}

/// Loads flakes for the fleet layer.
pub fn flake_loader() -> Option<fleet::FlakeLoader<'static>> {
    Some(&ndeploy_eval::flake::load)
}

/// Open the fleet selected by `flake` / `file` / the current directory;
/// also returns where it came from and the library directory.
pub fn open_fleet<'e>(
    ev: &'e Evaluator,
    flake: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<(FleetSource, PathBuf, Fleet<'e>)> {
    open_fleet_with(ev, flake, file, &[])
}

/// [`open_fleet`] with `--arg`/`--argstr` values for a fleet file that is
/// a function.
pub fn open_fleet_with<'e>(
    ev: &'e Evaluator,
    flake: Option<&str>,
    file: Option<&std::path::Path>,
    fleet_args: &[(String, FleetArg)],
) -> anyhow::Result<(FleetSource, PathBuf, Fleet<'e>)> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let source = fleet::discover(&cwd, flake, file, |p| p.is_file())?;
    let library = fleet::library::locate()?;
    let value: Value = fleet::evaluate::load_source_with(ev, &source, flake_loader(), fleet_args)?;
    let fleet = Fleet::open(ev, &library, value).map_err(|e| FleetError::eval(&source, e))?;
    Ok((source, library, fleet))
}

/// `--arg NAME EXPR` and `--argstr NAME STR` pairs, in order.
fn fleet_args(args: &EvalArgs) -> Vec<(String, FleetArg)> {
    let mut out = Vec::new();
    for p in args.arg.chunks_exact(2) {
        if let [name, expr] = p {
            out.push((name.clone(), FleetArg::Expr(expr.clone())));
        }
    }
    for p in args.argstr.chunks_exact(2) {
        if let [name, s] = p {
            out.push((name.clone(), FleetArg::Str(s.clone())));
        }
    }
    out
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    // Everything runs on a large-stack thread (the pool's threads have
    // large stacks too).
    let handle = std::thread::Builder::new()
        .stack_size(fleet::evaluate::STACK_SIZE)
        .name("ndeploy-eval-main".into())
        .spawn(move || run_inner(args))
        .context("cannot start the evaluation thread")?;
    handle.join().map_err(|_| anyhow::anyhow!("evaluation thread panicked"))?
}

fn selection(args: &EvalArgs) -> Result<Selection, FleetError> {
    let mut sels = Vec::new();
    for h in &args.hosts {
        sels.push(Selector::Name(h.clone()));
    }
    for on in &args.on {
        sels.extend(Selector::parse_list(on)?);
    }
    if args.all || sels.is_empty() { Ok(Selection::All) } else { Ok(Selection::Any(sels)) }
}

fn run_inner(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let mut ev = evaluator(&args.include);
    ev.enable_collection();
    let pool = fleet::thread_pool(args.jobs.unwrap_or(0))?;
    let fargs = fleet_args(&args);
    let (_, _, fleet) = pool.install(|| open_fleet_with(&ev, args.flake.as_deref(), args.file.as_deref(), &fargs))?;

    if let Some(expr) = &args.expr {
        let result = pool.install(|| fleet.apply_expr(expr));
        std::mem::forget(fleet);
        std::mem::forget(ev);
        return match result {
            Ok(v) => {
                println!("{v}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{}", e.render(args.show_trace));
                Ok(ExitCode::FAILURE)
            }
        };
    }

    let sel = selection(&args)?;
    let all = fleet.hosts().to_vec();
    let hosts = if sel.needs_tags() {
        let deployments = fleet.deployments(&pool, &all);
        let by_host: std::collections::HashMap<&str, &EvalResult<fleet::Deployment>> =
            all.iter().map(String::as_str).zip(deployments.iter()).collect();
        sel.apply(&all, |h| match by_host.get(h) {
            Some(Ok(d)) => Ok(d.tags.clone()),
            _ => Err(()),
        })?
    } else {
        sel.apply(&all, |_| Ok::<_, ()>(Vec::new()))?
    };

    let target = match &args.attr {
        Some(p) => Target::Attr(p.split('.').filter(|s| !s.is_empty()).map(String::from).collect()),
        None => Target::Toplevel,
    };
    let attr_mode = args.attr.is_some();
    let progress = (!args.json && !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(|| progress_bar(hosts.len() as u64));
    let mut results: Vec<HostResult> = Vec::with_capacity(hosts.len());
    let stdout = std::io::stdout();
    let mut on_result = |r: HostResult| {
        if args.json {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{}", r.to_json_line(attr_mode));
            let _ = out.flush();
        }
        if let Some(p) = &progress {
            p.set_message(r.host.clone());
            p.inc(1);
        }
        results.push(r);
    };
    // The fleet lets go of the evaluator (its values stay alive), so that
    // the cycle collector can run between rounds of hosts.
    let parts = fleet.detach();
    use fleet::chunks::Schedule;
    let schedule = match (args.collect_every, args.collect_frames) {
        (Some(0), _) => Schedule::Never,
        (Some(n), _) => Schedule::Hosts(n),
        (None, Some(n)) => Schedule::YoungFrames(n),
        (None, None) => fleet::chunks::default_schedule(pool.current_num_threads()),
    };
    let collector = fleet::chunks::Collector::from_env();
    let (parts, rounds) = fleet::chunks::evaluate_in_rounds(
        &mut ev,
        parts,
        &pool,
        &hosts,
        &target,
        args.show_trace,
        schedule,
        collector,
        &mut on_result,
    );
    std::mem::forget(parts);
    if collector == fleet::chunks::Collector::Checked {
        eprintln!(
            "epoch check: {} host nodes alive after round ends, {} violations ({} collections)",
            rounds.host_frames_live, rounds.violations, rounds.trial_collections
        );
    }
    // The process exits next: freeing the heap value by value would only
    // cost time.
    std::mem::forget(ev);
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    if !args.json {
        print!("{}", fleet::report::table(&results, attr_mode));
        eprintln!("{}", fleet::report::summary(&results));
    }
    Ok(if results.iter().any(HostResult::failed) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn progress_bar(n: u64) -> indicatif::ProgressBar {
    let p = indicatif::ProgressBar::new(n);
    let style = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    p.set_style(style);
    p.enable_steady_tick(std::time::Duration::from_millis(100));
    p
}
