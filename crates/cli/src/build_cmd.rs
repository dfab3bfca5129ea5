//! `ndeploy build [SELECTORS…]`: evaluate, register the derivations in the
//! local store and build the toplevels through the local daemon, each host
//! as soon as it is evaluated (the pipeline of `apply`, stopping after the
//! build); prints each host's out path (`HOST PATH`). Nothing is sent to any
//! target.

use std::process::ExitCode;

use clap::Args;

use crate::apply_cmd::{FleetArgs, PipelineArgs, Pipelined, finish, run_pipeline};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Selectors (host globs, @TAG); none: every host.
    selectors: Vec<String>,
    #[command(flatten)]
    fleet: FleetArgs,
    // With `--json` the report is printed as JSON instead of `HOST PATH` lines.
    #[command(flatten)]
    pipeline: PipelineArgs,
}

pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let opts = args.pipeline.options(None, &args.fleet);
    let Pipelined { reports, phases } = run_pipeline(&args.fleet, &args.selectors, &opts)?;
    if args.pipeline.json {
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
