//! `ndeploy-agent`: the target side of `ndeploy push` (see the library docs).
//!
//! Usage: `ndeploy-agent --stdio [--store-root DIR] [--daemon-socket PATH]`
//! speaks the agent protocol on stdin/stdout and imports through the local
//! daemon's socket, or a `nix-daemon --stdio` child when none listens (on
//! the chroot store `local?root=DIR` with `--store-root`, whose files it
//! then reads under DIR); `--daemon-socket` names the socket explicitly. `--version` prints the protocol version. Kept free of
//! SSH, evaluation and argument-parsing crates so the binary stays small.

use std::path::PathBuf;
use std::process::ExitCode;

use ndeploy_agent::protocol::PROTOCOL_VERSION;
use ndeploy_agent::server::{DaemonImporter, DaemonTarget, ServerConfig, serve};
use ndeploy_store::store_path::StoreDir;

const USAGE: &str = "usage: ndeploy-agent --stdio [--store-root DIR] [--daemon-socket PATH] | --version";

fn main() -> ExitCode {
    let mut stdio = false;
    let mut store_root = None;
    let mut socket = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--stdio") => stdio = true,
            Some("--store-root") => match args.next() {
                Some(dir) => store_root = Some(PathBuf::from(dir)),
                None => return usage(),
            },
            Some("--daemon-socket") => match args.next() {
                Some(path) => socket = Some(PathBuf::from(path)),
                None => return usage(),
            },
            Some("--version") => {
                println!("ndeploy-agent {} (protocol {PROTOCOL_VERSION})", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    if !stdio {
        return usage();
    }
    let config = ServerConfig { store_dir: StoreDir::from_env(), store_root };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ndeploy-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    let target = socket.map_or_else(|| DaemonTarget::detect(&config), DaemonTarget::Socket);
    let mut importer = DaemonImporter::new(target, config.store_dir.clone());
    match rt.block_on(serve(tokio::io::stdin(), tokio::io::stdout(), &config, &mut importer)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ndeploy-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}
