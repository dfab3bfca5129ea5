//! `ndeploy store ...`: debugging entry points for the store formats.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ndeploy_store::hash::{HashAlgo, HashEncoding, compress_hash};
use ndeploy_store::nar;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Write the NAR serialisation of PATH to stdout (like `nix-store --dump`).
    Dump { path: PathBuf },
    /// Print the hash of each PATH's NAR serialisation, or with --flat of its
    /// contents (like `nix-hash`, whose defaults it shares: md5, base16).
    HashPath(HashPathArgs),
    /// Recreate a file system tree at DIR (which must not exist) from a NAR on
    /// stdin (like `nix-store --restore`).
    Restore { dir: PathBuf },
    /// Print a .drv file as JSON (like `nix show-derivation`); with --check,
    /// also recompute its store path and output paths and fail on a mismatch.
    ShowDerivation {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Recompute the .drv path and every output path (reading input
        /// derivations from the store) and exit non-zero on any mismatch.
        #[arg(long)]
        check: bool,
        /// Include every derivation the given ones depend on (from the store).
        #[arg(long, short)]
        recursive: bool,
    },
}

pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Dump { path } => dump(path),
        StoreCommand::HashPath(args) => hash_path(args),
        StoreCommand::Restore { dir } => restore(dir),
        StoreCommand::ShowDerivation { files, check, recursive } => show_derivation(&files, check, recursive),
    }
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("encoding").multiple(false))]
pub struct HashPathArgs {
    /// Hash algorithm.
    #[arg(long = "type", default_value = "md5", value_parser = parse_algo)]
    algo: HashAlgo,
    /// Print the digest in hexadecimal (the default).
    #[arg(long, group = "encoding")]
    base16: bool,
    /// Print the digest in Nix's base-32.
    #[arg(long, group = "encoding")]
    base32: bool,
    /// Print the digest in base-64.
    #[arg(long, group = "encoding", conflicts_with = "truncate")]
    base64: bool,
    /// Print an SRI hash (`sha256-...`).
    #[arg(long, group = "encoding", conflicts_with = "truncate")]
    sri: bool,
    /// Hash the file's contents instead of its NAR serialisation.
    #[arg(long)]
    flat: bool,
    /// XOR-fold digests longer than 160 bits to 160 bits (base16 or base32 only).
    #[arg(long)]
    truncate: bool,
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

fn parse_algo(s: &str) -> Result<HashAlgo, String> {
    s.parse().map_err(|e: ndeploy_store::hash::HashError| e.to_string())
}

/// Stdout as an unbuffered `File` (a duplicate of fd 1), so large NAR chunks
/// are written in one system call each rather than split at newlines.
fn stdout_file() -> anyhow::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned().context("duplicating stdout")?))
}

fn dump(path: PathBuf) -> anyhow::Result<ExitCode> {
    nar::dump_path(&path, stdout_file()?)?;
    Ok(ExitCode::SUCCESS)
}

fn hash_path(args: HashPathArgs) -> anyhow::Result<ExitCode> {
    let encoding = match (args.base32, args.base64, args.sri) {
        (true, _, _) => HashEncoding::Nix32,
        (_, true, _) => HashEncoding::Base64,
        (_, _, true) => HashEncoding::Sri,
        _ => HashEncoding::Base16,
    };
    let mut out = io::stdout().lock();
    for path in &args.paths {
        let (hash, _) = if args.flat {
            nar::hash_file(args.algo, path)?
        } else {
            nar::hash_path(args.algo, path)?
        };
        let line = if args.truncate && hash.as_bytes().len() > 20 {
            let folded = compress_hash(hash.as_bytes(), 20);
            match encoding {
                HashEncoding::Nix32 => ndeploy_store::nixbase32::encode(&folded),
                _ => folded.iter().map(|b| format!("{b:02x}")).collect(),
            }
        } else {
            hash.encode(encoding, false)
        };
        writeln!(out, "{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn restore(dir: PathBuf) -> anyhow::Result<ExitCode> {
    let stdin = File::from(io::stdin().as_fd().try_clone_to_owned().context("duplicating stdin")?);
    nar::restore(stdin, &dir)?;
    Ok(ExitCode::SUCCESS)
}

/// `store show-derivation`: the JSON of `nix show-derivation` for FILES (and
/// with -r their input derivations); with --check, verify each one.
fn show_derivation(files: &[PathBuf], check: bool, recursive: bool) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use ndeploy_store::derivation::{Derivation, ModuloHashCache, json, name_from_drv_path, verify};
    use ndeploy_store::store_path::StorePath;
    let store_dir = ndeploy_store::store_path::StoreDir::from_env();
    // Key (drv path) -> (file, its store path if in the store, bytes, derivation).
    let mut drvs = std::collections::BTreeMap::new();
    let mut load = |file: PathBuf, in_store: Option<StorePath>| -> anyhow::Result<Vec<StorePath>> {
        let aterm = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        // The name is not in the ATerm: take it from a `<hash>-<name>.drv`
        // file name wherever the file lies, else from the `name` env var.
        let named = file.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<StorePath>().ok());
        let drv = Derivation::parse(&store_dir, &aterm, named.as_ref().and_then(name_from_drv_path))
            .with_context(|| format!("parsing {}", file.display()))?;
        let key = match &in_store {
            Some(p) => p.clone(),
            None => drv.drv_path_of_aterm(&store_dir, &aterm)?,
        };
        let inputs = drv.input_drvs.keys().cloned().collect();
        drvs.insert(key, (file, in_store, aterm, drv));
        Ok(inputs)
    };
    let mut pending = Vec::new();
    for file in files {
        let absolute = std::path::absolute(file)?;
        let in_store = absolute.to_str().and_then(|s| store_dir.parse(s).ok()).filter(|p| p.is_derivation());
        pending.extend(load(file.clone(), in_store)?);
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(p) = pending.pop().filter(|_| recursive) {
        if seen.insert(p.clone()) {
            pending.extend(load(PathBuf::from(store_dir.display(&p)), Some(p))?);
        }
    }
    let all: Vec<(StorePath, &Derivation)> = drvs.iter().map(|(k, (_, _, _, d))| (k.clone(), d)).collect();
    print!("{}", json::show_derivations(&store_dir, &all)?);
    if !check {
        return Ok(ExitCode::SUCCESS);
    }
    let mut read = |p: &StorePath| -> anyhow::Result<Derivation> {
        let path = store_dir.display(p);
        let bytes = std::fs::read(&path).with_context(|| format!("reading input derivation {path}"))?;
        Derivation::parse_drv_file(&store_dir, p, &bytes).with_context(|| format!("parsing {path}"))
    };
    let (mut cache, mut ok) = (ModuloHashCache::new(), true);
    for (file, in_store, aterm, drv) in drvs.values() {
        let report = verify::verify(&store_dir, drv, aterm, in_store.as_ref(), &mut cache, &mut read)?;
        for m in &report.mismatches {
            eprintln!("error: {}: {m}", file.display());
        }
        ok &= report.mismatches.is_empty();
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
