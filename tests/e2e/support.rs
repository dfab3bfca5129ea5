//! Shared helpers for the end-to-end tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The `ndeploy` binary built for this test run.
pub fn ndeploy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ndeploy"))
}

/// Run a command, panicking with its stderr if it fails; returns stdout.
pub fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("could not run {cmd:?}: {e} (run scripts/test, which installs it)"))
}

/// Stdout of a successful command as a trimmed string.
pub fn run_str(cmd: &mut Command) -> String {
    String::from_utf8(run_ok(cmd)).expect("utf-8 output").trim().to_owned()
}

/// A C++ Nix tool such as `nix-store`.
pub fn nix(tool: &str) -> Command {
    let mut c = Command::new(tool);
    c.env("NIX_CONFIG", "sandbox = false");
    c
}

pub fn write_file(path: &Path, contents: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, contents).unwrap();
}
