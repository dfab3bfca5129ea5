//! `ndeploy build [SELECTORS…]`: evaluate, register the derivations in the
//! local store and build the toplevels through the local daemon, each host
//! as soon as it is evaluated (the pipeline of `apply`, stopping after the
//! build); prints each host's out path (`HOST PATH`). Nothing is sent to any
//! target.

use std::process::ExitCode;

use clap::Args;
use ndeploy_deploy::apply::ApplyOptions;

use crate::apply_cmd::{FleetArgs, Pipelined, finish, run_pipeline};
use crate::apply_progress::progress;

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
    /// No progress bars (prefixed output lines instead).
    #[arg(long)]
    no_progress: bool,
}

pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let mut opts = ApplyOptions::new(None, args.fleet.connect_options(), progress(args.json || args.no_progress));
    opts.jobs = args.jobs.max(1);
    opts.verbose = args.verbose;
    let Pipelined { reports, phases } = run_pipeline(&args.fleet, &args.selectors, &opts)?;
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
