//! `ndeploy store ...`: debugging entry points for the store formats.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Write the NAR serialisation of PATH to stdout (like `nix-store --dump`).
    Dump { path: PathBuf },
    /// Print a .drv file as JSON (like `nix show-derivation`); with --check,
    /// also recompute its store path and output paths and fail on a mismatch.
    ShowDerivation {
        file: PathBuf,
        /// Recompute the .drv path and every output path (reading input
        /// derivations from the store) and exit non-zero on any mismatch.
        #[arg(long)]
        check: bool,
    },
}

pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Dump { path } => anyhow::bail!("not implemented yet: dump {}", path.display()),
        StoreCommand::ShowDerivation { file, check } => show_derivation(file, check),
    }
}

fn show_derivation(file: PathBuf, check: bool) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use ndeploy_store::derivation::{Derivation, ModuloHashCache, json, verify};
    let store_dir = ndeploy_store::store_path::StoreDir::from_env();
    let aterm = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let absolute = std::path::absolute(&file)?;
    let in_store = absolute.to_str().and_then(|s| store_dir.parse(s).ok()).filter(|p| p.is_derivation());
    let drv = match &in_store {
        Some(p) => Derivation::parse_drv_file(&store_dir, p, &aterm),
        None => Derivation::parse(&store_dir, &aterm, None),
    }
    .with_context(|| format!("parsing {}", file.display()))?;
    let key = match &in_store {
        Some(p) => p.clone(),
        None => drv.drv_path_of_aterm(&store_dir, &aterm)?,
    };
    print!("{}", json::show_derivations(&store_dir, &[(key, &drv)])?);
    if !check {
        return Ok(ExitCode::SUCCESS);
    }
    let read = |p: &ndeploy_store::store_path::StorePath| -> anyhow::Result<Derivation> {
        let path = store_dir.display(p);
        let bytes = std::fs::read(&path).with_context(|| format!("reading input derivation {path}"))?;
        Derivation::parse_drv_file(&store_dir, p, &bytes).with_context(|| format!("parsing {path}"))
    };
    let report = verify::verify(&store_dir, &drv, &aterm, in_store.as_ref(), &mut ModuloHashCache::new(), read)?;
    for m in &report.mismatches {
        eprintln!("error: {}: {m}", file.display());
    }
    Ok(if report.mismatches.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
