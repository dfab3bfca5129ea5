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

    /// Build `attr` of the Nix file `file` (its top level with `None`;
    /// no sandbox, no substituters) and add the result's closure.
    pub fn build(&mut self, file: &Path, attr: Option<&str>) -> String {
        let mut cmd = nix("nix-build");
        cmd.args(["--no-out-link", "--option", "sandbox", "false", "--option", "substituters", ""]);
        if let Some(attr) = attr {
            cmd.args(["-A", attr]);
        }
        let out = run_str(cmd.arg(file));
        self.add_closure(&out);
        out
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

/// The closure of `top` in the local store (`nix-store -qR`).
pub fn local_closure(top: &str) -> std::collections::BTreeSet<String> {
    run_str(nix("nix-store").args(["-qR", top])).lines().map(String::from).collect()
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

/// Makes the target's next SSH session whose command matches `pattern` (a
/// shell `case` pattern whose spaces match spaces, e.g. `nix-daemon --stdio`
/// or `*/bin/ndeploy-agent --stdio`) receive only the first
/// `bytes` bytes of its input: then its stdin stays open but silent, so the
/// command waits mid-stream however loaded the machine is (a cut found by
/// polling raced the transfer: on a starved machine the push could end, or
/// every path arrive, before the test thread looked). Done with a
/// `command="..."` wrapper in the target's authorized_keys; later sessions run
/// their commands unchanged. `reached` appears once the bytes have passed.
pub struct InputCut {
    reached: std::path::PathBuf,
    /// Every session's command, a line each.
    log: std::path::PathBuf,
    /// The target's sshd pid file.
    sshd: std::path::PathBuf,
}

impl InputCut {
    pub fn arm(t: &crate::sshd::SshTarget, pattern: &str, bytes: u64) -> InputCut {
        let d = t.dir.path();
        let (armed, reached, script, log) = (d.join("cut-armed"), d.join("cut-reached"), d.join("cut.sh"), d.join("commands"));
        write_file(&armed, "");
        let script_text = format!(
            r#"#!/bin/sh
printf '%s\n' "$SSH_ORIGINAL_COMMAND" >> '{log}'
case "$SSH_ORIGINAL_COMMAND" in
  {pattern})
    if rm '{armed}' 2>/dev/null; then
      {{ dd bs=64K count={bytes} iflag=count_bytes status=none; : > '{reached}'; exec sleep 3600; }} | /bin/sh -c "$SSH_ORIGINAL_COMMAND"
      exit
    fi;;
esac
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"#,
            armed = armed.display(),
            reached = reached.display(),
            log = log.display(),
            pattern = pattern.replace(' ', "\\ ")
        );
        write_file(&script, script_text);
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        write_file(&d.join("authorized_keys"), format!("command=\"{}\" {}\n", script.display(), t.client.public_key()));
        InputCut { reached, log, sshd: t.dir.path().join("sshd.pid") }
    }

    /// Wait until the cut is reached and `arrived()` (e.g. some path is
    /// valid on the target); fails if `push` ends first, or after two minutes.
    pub fn wait(&self, push: &mut ChildGuard, arrived: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !self.reached.exists() || !arrived() {
            if let Some(status) = push.try_wait() {
                let out = push.0.take().map(|c| c.wait_with_output().unwrap()).expect("not waited for yet");
                panic!("the push ended ({status}) before the cut: {}", String::from_utf8_lossy(&out.stderr));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing arrived before the cut (cut reached: {}; session commands: {:?})",
                self.reached.exists(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kill the stalled command (the processes named `name` under the
    /// target's sshd) and its silent input.
    pub fn kill(&self, name: &str) {
        let sshd: u32 = std::fs::read_to_string(&self.sshd).unwrap().trim().parse().unwrap();
        let found = descendants(sshd);
        assert!(found.iter().any(|(_, comm)| comm == name), "no {name} under sshd {sshd}: {found:?}");
        for (p, _) in found.iter().filter(|(_, comm)| comm == name || comm == "sleep") {
            // One may be gone already (the input's `sleep` when its reader died).
            let _ = Command::new("kill").args(["-KILL", &p.to_string()]).stderr(std::process::Stdio::null()).status();
        }
    }
}
