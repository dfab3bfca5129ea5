//! Shared helpers for the end-to-end tests.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output};

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

/// Store paths a test added to the local `/nix/store`, removed with
/// `nix-store --delete` when the guard drops (also when the test panics),
/// so that test runs don't grow the store. Nix refuses to delete paths that
/// other valid paths refer to, but not paths another test is about to use:
/// add only closures whose every path is unique to the test (its name
/// carries a per-test tag), never shared packages.
pub struct LocalPaths(Vec<String>);

impl LocalPaths {
    pub fn new() -> LocalPaths {
        LocalPaths(Vec::new())
    }

    /// Add the closure of `top` and of the derivation that built it (if any).
    pub fn add_closure(&mut self, top: &str) {
        let mut roots = vec![top.to_owned()];
        let deriver = run_str(nix("nix-store").args(["--query", "--deriver", top]));
        if deriver.starts_with('/') && Path::new(&deriver).exists() {
            roots.push(deriver);
        }
        for root in roots {
            let listed = run_str(nix("nix-store").args(["--query", "--requisites", &root]));
            for p in listed.lines() {
                if !self.0.iter().any(|q| q == p) {
                    self.0.push(p.to_owned());
                }
            }
        }
    }
}

impl Default for LocalPaths {
    fn default() -> Self {
        LocalPaths::new()
    }
}

impl Drop for LocalPaths {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = nix("nix-store").arg("--delete").args(&self.0).output();
        }
    }
}

/// A spawned child that is killed (and reaped) when the guard drops, unless
/// it was waited for: a test that fails half-way leaves nothing running.
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        ChildGuard(Some(cmd.spawn().unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))))
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// The exit status if it has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// Wait for it and collect its piped output.
    pub fn wait_with_output(mut self) -> Output {
        self.0.take().expect("not waited for yet").wait_with_output().unwrap()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every live descendant of `pid` (not `pid` itself) with its command name
/// (`comm`), read from /proc. Processes that called setsid (sshd's sessions)
/// are descendants too, though outside the parent's process group.
pub fn descendants(pid: u32) -> Vec<(u32, String)> {
    let mut procs: Vec<(u32, u32, String)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let comm = head.split_once(" (").map(|x| x.1).unwrap_or_default().to_owned();
        let ppid = rest.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
        procs.push((p, ppid, comm));
    }
    let mut set = BTreeSet::from([pid]);
    loop {
        let before = set.len();
        for (p, pp, _) in &procs {
            if set.contains(pp) {
                set.insert(*p);
            }
        }
        if set.len() == before {
            break;
        }
    }
    procs.into_iter().filter(|(p, _, _)| *p != pid && set.contains(p)).map(|(p, _, c)| (p, c)).collect()
}

/// Keeps Nix from giving the chroot store at `root` (`local?root=ROOT`) its
/// `gc-reserved-space` file (`nix/var/nix/db/reserved`, 8 MiB of nothing
/// that every process opening the store re-creates at its configured size,
/// whoever it runs as): a directory stands in its place, which Nix cannot
/// open for writing and ignores. Call before the store is first opened.
pub fn without_gc_reserve(root: &Path) {
    std::fs::create_dir_all(root.join("nix/var/nix/db/reserved")).unwrap();
}
