//! `ndeploy exec [SELECTORS…] -- CMD…`: run a command on the selected hosts
//! in parallel; every output line is printed as `host> line` (stderr lines
//! to stderr). Exit status 1 when the command failed or could not run on
//! any host; a summary of failures goes to stderr.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use clap::Args;
use ndeploy_deploy::exec::exec_all;
use ndeploy_deploy::ssh::{OutputKind, shell_quote};

use crate::apply_cmd::{FleetArgs, evaluate, runtime, ssh_target};

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Selectors (host globs, @TAG), then `--` and the command.
    #[arg(trailing_var_arg = true)]
    words: Vec<String>,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Hosts at once.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 32)]
    jobs: usize,
}

pub fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    // clap drops the `--` when it comes first and keeps it after a selector.
    let words = &args.words;
    let (selectors, command): (Vec<String>, Vec<String>) = match words.iter().position(|w| w == "--") {
        Some(i) => (words.iter().take(i).cloned().collect(), words.iter().skip(i + 1).cloned().collect()),
        None if std::env::args().any(|a| a == "--") => (Vec::new(), words.clone()),
        None => bail!("separate the command with `--`: ndeploy exec [SELECTORS] -- CMD [ARGS]"),
    };
    if command.is_empty() {
        bail!("no command given: ndeploy exec [SELECTORS] -- CMD [ARGS]");
    }
    let cmd = if let [one] = command.as_slice() { one.clone() } else { command.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ") };
    let mut hosts = Vec::new();
    for e in evaluate(&args.fleet, &selectors, false, None)? {
        if let Some(err) = &e.result.error {
            bail!("host {}: {err}", e.result.host);
        }
        hosts.push((e.result.host.clone(), ssh_target(&e.result, &e.deployment)?));
    }
    let sink = Arc::new(|host: &str, kind: OutputKind, line: &str| match kind {
        OutputKind::Stdout => println!("{host}> {line}"),
        OutputKind::Stderr => eprintln!("{host}> {line}"),
    });
    let results = runtime()?.block_on(exec_all(hosts, &cmd, &args.fleet.connect_options(), args.jobs, sink));
    let mut failed = 0;
    for r in &results {
        match &r.status {
            Ok(Some(0)) => {}
            Ok(code) => {
                failed += 1;
                eprintln!("{}: exited with {}", r.host, code.map_or("a signal".into(), |c| c.to_string()));
            }
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e}", r.host);
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
