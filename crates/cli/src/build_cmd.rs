//! `ndeploy build [SELECTORS…]`: evaluate, register the derivations in the
//! local store and build the toplevels through the local daemon; prints each
//! host's out path (`HOST PATH`). Nothing is sent to any target.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use ndeploy_deploy::apply::{self, ApplyOptions};

use crate::apply_cmd::{FleetArgs, evaluate_and_register, finish, printer, runtime};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Selectors (host globs, @TAG); none: every host.
    selectors: Vec<String>,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Builds started at once.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 16)]
    jobs: usize,
    /// Show build logs.
    #[arg(short, long)]
    verbose: bool,
    /// Print the report as JSON on stdout (instead of `HOST PATH` lines).
    #[arg(long)]
    json: bool,
}

pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let prepared = evaluate_and_register(&args.fleet, &args.selectors)?;
    let mut opts = ApplyOptions::new(None, args.fleet.connect_options(), printer());
    opts.jobs = args.jobs.max(1);
    opts.verbose = args.verbose;
    let t = Instant::now();
    let reports = prepared.merge(runtime()?.block_on(apply::apply(prepared.hosts.clone(), &opts)));
    let phases: [(&str, Duration); 4] = [
        ("evaluate", prepared.eval_time),
        ("register", prepared.register_time),
        ("build", t.elapsed()),
        ("total", started.elapsed()),
    ];
    if args.json {
        return Ok(finish(&reports, true, &phases));
    }
    for r in &reports {
        match r.ok() {
            true => println!("{} {}", r.host, r.toplevel),
            false => eprintln!("{}: {}", r.host, r.result_text()),
        }
    }
    Ok(if reports.iter().all(|r| r.ok()) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
