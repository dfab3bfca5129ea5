//! The `ndeploy` binary: argument parsing and output only; all logic lives in
//! the library crates.

mod apply_cmd;
mod apply_progress;
mod bench_cmd;
mod build_cmd;
mod diff_cmd;
mod eval_cmd;
mod exec_cmd;
mod instantiate;
mod keys_cmd;
mod push_cmd;
mod store_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The evaluator allocates many small, short-lived objects from several
// threads; mimalloc is much faster at that than the system allocator.
#[global_allocator]
static GLOBAL: ndeploy_eval::eval::alloc::EvalAlloc = ndeploy_eval::eval::alloc::EvalAlloc;

#[derive(Parser)]
#[command(name = "ndeploy", version, about = "NixOS fleet deployment: in-process evaluation, fast store transfer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Nix store formats: NAR dump/restore, path hashing, derivations.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Evaluate Nix expressions like `nix-instantiate --eval`.
    Instantiate(instantiate::InstantiateArgs),
    /// Evaluate a fleet's hosts (toplevels or an attribute) in parallel.
    Eval(eval_cmd::EvalArgs),
    /// Copy closures to targets over SSH (one query, one stream per target).
    Push(push_cmd::PushArgs),
    /// Evaluate, build, push and activate hosts (with magic rollback and health checks).
    Apply(apply_cmd::ApplyArgs),
    /// Evaluate and build hosts' toplevels locally; print their out paths.
    Build(build_cmd::BuildArgs),
    /// What applying would change on each host (paths, versions, bytes to transfer).
    Diff(diff_cmd::DiffArgs),
    /// Run a command on hosts in parallel (`ndeploy exec [SELECTORS] -- CMD`).
    Exec(exec_cmd::ExecArgs),
    /// Secret keys (`deployment.keys`).
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Benchmarks: generated fleets, ndeploy vs C++ Nix.
    #[command(subcommand)]
    Bench(bench_cmd::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Store(cmd) => store_cmd::run(cmd),
        Command::Instantiate(args) => instantiate::run(args),
        Command::Eval(args) => eval_cmd::run(args),
        Command::Push(args) => push_cmd::run(args),
        Command::Apply(args) => apply_cmd::run(args),
        Command::Build(args) => build_cmd::run(args),
        Command::Diff(args) => diff_cmd::run(args),
        Command::Exec(args) => exec_cmd::run(args),
        Command::Keys(cmd) => keys_cmd::run(cmd),
        Command::Bench(cmd) => bench_cmd::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
