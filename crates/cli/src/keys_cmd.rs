//! `ndeploy keys upload [SELECTORS…]`: upload `deployment.keys` to the
//! selected hosts (see `ndeploy_deploy::keys`), one SSH session per host.
//! Prints `HOST: N keys` per host; key contents are never printed.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use ndeploy_deploy::keys;
use ndeploy_deploy::ssh::SshSession;

use crate::apply_cmd::{FleetArgs, evaluate, runtime, ssh_target};

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Upload every key of the selected hosts now.
    Upload(UploadArgs),
}

#[derive(Args, Debug)]
pub struct UploadArgs {
    /// Selectors (host globs, @TAG); none: every host.
    selectors: Vec<String>,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Prefix of the key directories on the targets (for tests and containers).
    #[arg(long, value_name = "DIR")]
    target_root: Option<String>,
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let KeysCommand::Upload(args) = cmd;
    let mut hosts = Vec::new();
    for e in evaluate(&args.fleet, &args.selectors, false, None)? {
        if let Some(err) = &e.result.error {
            bail!("host {}: {err}", e.result.host);
        }
        let k = keys::parse(&e.deployment).map_err(|m| anyhow::anyhow!("host {}: {m}", e.result.host))?;
        hosts.push((e.result.host.clone(), ssh_target(&e.result, &e.deployment)?, k));
    }
    let connect = args.fleet.connect_options();
    let root = crate::apply_cmd::target_root(&args.target_root);
    let results = runtime()?.block_on(async move {
        let tasks: Vec<_> = hosts
            .into_iter()
            .map(|(name, target, k)| {
                let (connect, root) = (connect.clone(), root.clone());
                (name, tokio::spawn(async move {
                    let s = SshSession::connect(&target, &connect).await.map_err(|e| e.to_string())?;
                    let n = keys::upload(&s, &k, &root, None).await.map_err(|e| e.to_string());
                    let _ = s.disconnect().await;
                    n
                }))
            })
            .collect();
        let mut out = Vec::new();
        for (name, t) in tasks {
            out.push((name, t.await.unwrap_or_else(|e| Err(e.to_string()))));
        }
        out
    });
    let mut failed = false;
    for (host, r) in results {
        match r {
            Ok(n) => println!("{host}: {n} keys"),
            Err(e) => {
                failed = true;
                eprintln!("{host}: FAILED: {e}");
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
