//! `ndeploy diff [SELECTORS…]`: evaluate and build the selected hosts, then
//! show per host what applying would change (see `ndeploy_deploy::diff`):
//! store paths added and removed against the system the target's profile
//! points to, package version changes, and what would be transferred.
//! `--json` prints one object per host. Nothing changes on the targets.

use std::process::ExitCode;

use clap::Args;
use ndeploy_deploy::activate::SYSTEM_PROFILE;
use ndeploy_deploy::apply::{self, ApplyOptions};
use ndeploy_deploy::diff::{diff_host, render};

use crate::apply_cmd::{FleetArgs, evaluate_and_register, runtime};

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Selectors (host globs, @TAG); none: every host.
    selectors: Vec<String>,
    #[command(flatten)]
    fleet: FleetArgs,
    /// JSON lines, one per host.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let prepared = evaluate_and_register(&args.fleet, &args.selectors)?;
    let hosts = &prepared.hosts;
    let opts = ApplyOptions::new(None, args.fleet.connect_options(), crate::apply_progress::progress(true));
    let rt = runtime()?;
    let built = rt.block_on(apply::apply(hosts.clone(), &opts));
    let mut failed = !prepared.failed.is_empty();
    for r in &prepared.failed {
        eprintln!("{}: {}", r.host, r.result_text());
    }
    for (h, b) in hosts.iter().zip(&built) {
        if !b.ok() {
            failed = true;
            eprintln!("{}: {}", h.name, b.result_text());
            continue;
        }
        let connect = args.fleet.connect_options();
        let r = rt.block_on(async {
            let mut local = ndeploy_store::daemon::open_local_store().await.map_err(|e| e.to_string())?;
            let closure = local.conn.query_closure(std::slice::from_ref(&h.toplevel)).await.map_err(|e| e.to_string());
            local.close().await;
            let closure = closure?;
            diff_host(&h.ssh, &connect, SYSTEM_PROFILE, &h.toplevel, &closure).await.map_err(|e| e.to_string())
        });
        match r {
            Ok(d) if args.json => println!(
                "{}",
                serde_json::json!({
                    "host": h.name, "current": d.current, "new": d.new, "added": d.added, "removed": d.removed,
                    "versionChanges": d.version_changes.iter().map(|v| serde_json::json!({"pname": v.pname, "old": v.old, "new": v.new})).collect::<Vec<_>>(),
                    "transferPaths": d.transfer_paths, "transferBytes": d.transfer_bytes,
                })
            ),
            Ok(d) => print!("{}", render(&h.name, &d)),
            Err(e) => {
                failed = true;
                eprintln!("{}: {e}", h.name);
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
