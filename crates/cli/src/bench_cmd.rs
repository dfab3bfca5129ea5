//! `ndeploy bench`: reproducible evaluation benchmarks.
//!
//! `bench gen-fleet --hosts N --modules M --packages P DIR` writes a
//! synthetic fleet (generator: `benches/fleet/generate.rs`; P packages in
//! a package set shared by all hosts, 0 for none). `bench eval` generates one,
//! evaluates every host's toplevel with `ndeploy eval` (as a child process,
//! with `-j T` and with `-j 1`), and, when `nix-instantiate` is on PATH,
//! with C++ Nix both ways users run it today: all hosts in one process
//! (`fleet.nix`'s `hostsJSON`) and one process per host (T at a time). Each
//! run is measured by `/usr/bin/time` (wall, user+system CPU, peak RSS; for
//! per-host runs: the batch's wall, the CPU sum, the largest RSS). It checks
//! that ndeploy's and Nix's drvPaths agree and prints the ratios.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ndeploy_deploy::fleet;
use ndeploy_deploy::fleet::evaluate::nix_string;

#[path = "../../../benches/fleet/generate.rs"]
mod generate;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Evaluate a generated fleet; compare with C++ Nix when it is installed.
    Eval(BenchEvalArgs),
    /// Write a generated fleet (N hosts sharing M modules) into DIR.
    GenFleet(GenFleetArgs),
}

#[derive(Args, Debug)]
pub struct GenFleetArgs {
    #[arg(long, default_value_t = 10)]
    hosts: usize,
    #[arg(long, default_value_t = 200)]
    modules: usize,
    /// Packages in the fleet's shared package set (2 derivations each: the
    /// package and its source); 0: no package set (ndeploy's own handful).
    #[arg(long, default_value_t = generate::packages::DEFAULT_PACKAGES)]
    packages: usize,
    /// Output directory.
    dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct BenchEvalArgs {
    #[arg(long, default_value_t = 100)]
    hosts: usize,
    #[arg(long, default_value_t = 200)]
    modules: usize,
    /// Packages in the fleet's shared package set (2 derivations each: the
    /// package and its source); 0: no package set (ndeploy's own handful).
    #[arg(long, default_value_t = generate::packages::DEFAULT_PACKAGES)]
    packages: usize,
    /// Evaluation threads (and concurrent per-host Nix processes); default: CPUs.
    #[arg(long)]
    threads: Option<usize>,
    /// Keep the generated fleet in DIR (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Skip the C++ Nix runs.
    #[arg(long)]
    no_nix: bool,
    /// Skip the one-process-per-host Nix run.
    #[arg(long)]
    no_per_host: bool,
    /// Skip ndeploy's single-thread run.
    #[arg(long)]
    no_single_thread: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::GenFleet(a) => {
            generate::write(&a.dir, a.hosts, a.modules, a.packages)
                .with_context(|| format!("cannot write the fleet into '{}'", a.dir.display()))?;
            println!("{}", a.dir.join("fleet.nix").display());
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Eval(a) => bench_eval(a),
    }
}

/// One measured run.
#[derive(Debug, Clone, Default)]
struct Measured {
    wall: f64,
    cpu: Option<f64>,
    rss_kb: Option<u64>,
}

/// Run `cmd` under `/usr/bin/time` (when present); returns its stdout.
fn measure(cmd: Command) -> anyhow::Result<(Measured, Vec<u8>)> {
    let time = Path::new("/usr/bin/time");
    let stats = tempfile::NamedTempFile::new()?;
    let mut wrapped = if time.exists() {
        let mut w = Command::new(time);
        w.arg("-f").arg("%e %U %S %M").arg("-o").arg(stats.path()).arg(cmd.get_program()).args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => w.env(k, v),
                None => w.env_remove(k),
            };
        }
        w
    } else {
        cmd
    };
    let start = Instant::now();
    let out = wrapped.stderr(Stdio::piped()).stdout(Stdio::piped()).output().context("cannot run the benchmark command")?;
    let wall = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("benchmark command failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let mut m = Measured { wall, cpu: None, rss_kb: None };
    if let Ok(text) = std::fs::read_to_string(stats.path()) {
        let f: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if let [w, u, s, rss] = f[..] {
            m = Measured { wall: w.max(0.0), cpu: Some(u + s), rss_kb: Some(rss as u64) };
        }
    }
    Ok((m, out.stdout))
}

fn fmt_row(name: &str, m: &Measured) -> String {
    let cpu = m.cpu.map_or("n/a".to_string(), |c| format!("{c:.2} s"));
    let rss = m.rss_kb.map_or("n/a".to_string(), |r| format!("{:.0} MB", r as f64 / 1024.0));
    format!("{name:<44} {:>9.2} s {cpu:>10} {rss:>10}", m.wall)
}

/// drvPaths by host from `ndeploy eval --json` lines.
fn ndeploy_drvs(stdout: &[u8]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).context("invalid JSON line from ndeploy eval")?;
        if let Some(e) = v["error"].as_str() {
            bail!("host {} failed: {e}", v["host"]);
        }
        out.push((v["host"].as_str().unwrap_or_default().to_string(), v["drvPath"].as_str().unwrap_or_default().to_string()));
    }
    out.sort();
    Ok(out)
}

fn bench_eval(a: BenchEvalArgs) -> anyhow::Result<ExitCode> {
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    generate::write(&dir, a.hosts, a.modules, a.packages).with_context(|| format!("cannot write the fleet into '{}'", dir.display()))?;
    let dir = dir.canonicalize()?;
    let fleet_file = dir.join("fleet.nix");
    let library = fleet::library::locate()?;
    let exe = std::env::current_exe()?;
    println!("fleet: {} hosts x {} shared modules in {} ({} threads)", a.hosts, a.modules, dir.display(), threads);
    if a.packages > 0 {
        let (set, [web, db, worker]) = generate::packages::closures(a.packages);
        println!(
            "package set: {} packages, {set} derivations with sources; host closures (web / db / worker): {web} / {db} / {worker} derivations",
            set / 2
        );
    }
    println!("{:<44} {:>11} {:>10} {:>10}", "run", "wall", "cpu", "peak RSS");

    let ours = |jobs: usize| {
        let mut c = Command::new(&exe);
        c.args(["eval", "--json", "--no-progress", "-j", &jobs.to_string(), "--file"]).arg(&fleet_file);
        c.env("NDEPLOY_NIX_DIR", &library);
        c
    };
    let (par, out) = measure(ours(threads))?;
    let our_drvs = ndeploy_drvs(&out)?;
    println!("{}", fmt_row(&format!("ndeploy eval -j {threads}"), &par));
    let single = if a.no_single_thread || threads == 1 {
        None
    } else {
        let (m, _) = measure(ours(1))?;
        println!("{}", fmt_row("ndeploy eval -j 1", &m));
        Some(m)
    };

    let have_nix = !a.no_nix && Command::new("nix-instantiate").arg("--version").output().is_ok_and(|o| o.status.success());
    let (mut all_in_one, mut per_host) = (None, None);
    if have_nix {
        let lib_fleet = nix_string(&library.join("fleet.nix").display().to_string());
        let src = nix_string(&fleet_file.display().to_string());
        let mut c = Command::new("nix-instantiate");
        c.args(["--eval", "--strict", "--json", "-E"])
            .arg(format!("(import {lib_fleet}).hostsJSON (import {src})"));
        let (m, out) = measure(c)?;
        println!("{}", fmt_row("nix-instantiate, all in one", &m));
        let text: String = serde_json::from_slice(&out).context("nix-instantiate printed no JSON string")?;
        let hosts: serde_json::Value = serde_json::from_str(&text)?;
        let mut nix_drvs: Vec<(String, String)> = hosts
            .as_object()
            .map(|o| o.iter().map(|(h, v)| (h.clone(), v["drvPath"].as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        nix_drvs.sort();
        if nix_drvs != our_drvs {
            bail!("drvPaths differ between ndeploy and nix-instantiate");
        }
        all_in_one = Some(m);
        if !a.no_per_host {
            let m = per_host_runs(&generate::host_names(a.hosts), threads, &lib_fleet, &src)?;
            println!("{}", fmt_row(&format!("nix-instantiate, per host ({threads} at a time)"), &m));
            per_host = Some(m);
        }
        println!("drvPaths: identical for all {} hosts", our_drvs.len());
    }

    // Ratios > 1 mean ndeploy is faster / smaller. CPU time is the figure
    // to trust on a loaded machine; wall time is what users wait for.
    let ratio = |x: f64, y: f64| if y > 0.0 { format!("{:.2}x", x / y) } else { "n/a".into() };
    let cpu_ratio = |x: &Measured, y: &Measured| match (x.cpu, y.cpu) {
        (Some(a), Some(b)) => ratio(a, b),
        _ => "n/a".into(),
    };
    if let Some(s) = &single {
        println!("speed-up 1 -> {threads} threads: {} wall", ratio(s.wall, par.wall));
    }
    for (name, m) in [("all-in-one", &all_in_one), ("per-host", &per_host)] {
        if let Some(m) = m {
            let rss = match (m.rss_kb, par.rss_kb) {
                (Some(n), Some(o)) => format!("{:.2}x", o as f64 / n as f64),
                _ => "n/a".into(),
            };
            println!(
                "Nix {name} / ndeploy: {} wall, {} CPU; peak RSS ndeploy / Nix: {rss}",
                ratio(m.wall, par.wall),
                cpu_ratio(m, &par)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One `nix-instantiate` per host, `threads` at a time.
fn per_host_runs(hosts: &[String], threads: usize, lib_fleet: &str, src: &str) -> anyhow::Result<Measured> {
    let next = Mutex::new(0usize);
    let acc = Mutex::new((0.0f64, 0u64, None::<anyhow::Error>));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        *n += 1;
                        *n - 1
                    };
                    let Some(host) = hosts.get(i) else { break };
                    let mut c = Command::new("nix-instantiate");
                    c.args(["--eval", "--strict", "--json", "-E"]).arg(format!(
                        "let n = ((import {lib_fleet}).nodes (import {src})).{}; in [ n.toplevel.drvPath n.toplevel.outPath n.deployment ]",
                        nix_string(host)
                    ));
                    let r = measure(c);
                    let mut acc = acc.lock().unwrap_or_else(|e| e.into_inner());
                    match r {
                        Ok((m, _)) => {
                            acc.0 += m.cpu.unwrap_or(0.0);
                            acc.1 = acc.1.max(m.rss_kb.unwrap_or(0));
                        }
                        Err(e) => acc.2 = Some(e),
                    }
                }
            });
        }
    });
    let (cpu, rss, err) = acc.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = err {
        return Err(e);
    }
    Ok(Measured { wall: start.elapsed().as_secs_f64(), cpu: Some(cpu), rss_kb: Some(rss) })
}
