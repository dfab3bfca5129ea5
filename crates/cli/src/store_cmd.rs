//! `ndeploy store ...`: debugging entry points for the store formats.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Write the NAR serialisation of PATH to stdout (like `nix-store --dump`).
    Dump { path: PathBuf },
}

pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Dump { path } => anyhow::bail!("not implemented yet: dump {}", path.display()),
    }
}
