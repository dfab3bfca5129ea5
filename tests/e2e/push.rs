//! `ndeploy push` against real sshd targets, each with its own Nix store
//! (see `sshd.rs`). Closures are built by the local Nix (sandbox off) from a
//! small generated expression: one shared library, `leaves` paths that
//! reference it, and a top path referencing every leaf; a leaf's `seed`
//! changes its output (and so the top's) for "new generation" tests. Each
//! check compares with C++ Nix: `nix-store -qR` of the top on the target
//! equals the local one, and `nix-store --verify --check-contents` passes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sshd::{ClientHome, SshTarget, SshdOptions, TargetUser};
use crate::support::{ChildGuard, InputCut, LocalPaths, local_closure, ndeploy, nix, run, run_ok, run_str, write_file};

/// Build a closure: `lib`, `leaves` leaves of `size` random bytes each
/// (leaf `i` has seed `seeds(i)`), and a top. Returns the top's path; the
/// closure (and its derivations) leave the local store when `built` drops.
fn build_closure(built: &mut LocalPaths, tag: &str, leaves: usize, size: usize, seeds: impl Fn(usize) -> String) -> String {
    let dir = tempfile::tempdir().unwrap();
    let seed_list: Vec<String> = (0..leaves).map(|i| format!("\"{}\"", seeds(i))).collect();
    let expr = format!(
        r#"
let
  mk = name: deps: seed: derivation {{
    inherit name deps seed;
    system = builtins.currentSystem;
    PATH = "/usr/bin:/bin";
    builder = "/bin/sh";
    args = [ "-c" "mkdir $out; head -c {size} /dev/urandom > $out/data; echo $seed > $out/seed; for d in $deps; do echo $d >> $out/deps; done" ];
  }};
  lib = mk "push-test-{tag}-lib" [] "lib";
  seeds = [ {seeds} ];
  leaves = builtins.genList (i: mk "push-test-{tag}-leaf-${{toString i}}" [ lib ] (builtins.elemAt seeds i)) {leaves};
in mk "push-test-{tag}-top" leaves "top"
"#,
        seeds = seed_list.join(" ")
    );
    write_file(&dir.path().join("closure.nix"), expr);
    built.build(&dir.path().join("closure.nix"), None)
}

/// The target has the whole closure of `top`, and its store verifies.
fn assert_complete(t: &SshTarget, top: &str) {
    let remote: BTreeSet<String> = run_str(t.nix_store().args(["-qR", top])).lines().map(String::from).collect();
    assert_eq!(remote, local_closure(top), "closure of {top} on {}", t.alias);
    let out = run(t.nix_store().args(["--verify", "--check-contents"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("error") && !err.contains("modified"), "verify on {}: {err}", t.alias);
}

fn push_cmd(client: &ClientHome, targets: &[&SshTarget], paths: &[&str], extra: &[&str]) -> Command {
    let mut c = ndeploy();
    // The plain worker-protocol push (agent.rs tests the agent).
    c.env("HOME", client.path()).env_remove("SSH_AUTH_SOCK").arg("push").arg("--json").arg("--no-agent");
    for t in targets {
        c.args(["--to", &t.url()]);
    }
    c.args(extra).args(paths);
    c
}

/// Run a push; returns (success, JSON report).
fn push(client: &ClientHome, targets: &[&SshTarget], paths: &[&str], extra: &[&str]) -> (bool, serde_json::Value) {
    let out = run(&mut push_cmd(client, targets, paths, extra));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("push printed no JSON ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.success(), json)
}

fn sent(report: &serde_json::Value, n: usize) -> (u64, u64) {
    let t = &report["targets"][n];
    (t["sentPaths"].as_u64().unwrap(), t["alreadyValid"].as_u64().unwrap())
}

fn target(client: &ClientHome) -> SshTarget {
    SshTarget::start(SshdOptions::default().client(client))
}

#[test]
fn push_full_noop_update_and_dry_run() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let t = target(&client);
    let tag = format!("a{}", std::process::id());
    let gen1 = build_closure(&mut built, &tag, 20, 50_000, |i| format!("g1-{i}"));
    let total = local_closure(&gen1).len() as u64;

    let (ok, r) = push(&client, &[&t], &[&gen1], &[]);
    assert!(ok, "{r}");
    assert_eq!(sent(&r, 0), (total, 0), "{r}");
    assert_complete(&t, &gen1);
    // The TCP connection carried the NARs plus framing (SSH, frames, path infos): a few % more.
    let (nar, wire) = (r["targets"][0]["sentNarBytes"].as_u64().unwrap(), r["targets"][0]["wireBytesSent"].as_u64().unwrap());
    assert!(wire > nar && wire < nar + nar / 10 + 100_000, "NAR {nar}, wire {wire}");

    // Again: one query, nothing to send.
    let (ok, r) = push(&client, &[&t], &[&gen1], &[]);
    assert!(ok, "{r}");
    assert_eq!(sent(&r, 0), (0, total), "{r}");
    assert!(r["targets"][0]["wireBytesSent"].as_u64().unwrap() < 50_000, "{r}");

    // A new generation with one leaf of 20 changed (5%): only it and the top are new.
    let gen2 = build_closure(&mut built, &tag, 20, 50_000, |i| if i == 7 { "g2-7".into() } else { format!("g1-{i}") });
    let new: BTreeSet<String> = local_closure(&gen2).difference(&local_closure(&gen1)).cloned().collect();
    assert_eq!(new.len(), 2);
    let (ok, r) = push(&client, &[&t], &[&gen2], &["--dry-run"]);
    assert!(ok, "{r}");
    let listed: BTreeSet<String> =
        r["targets"][0]["missing"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect();
    assert_eq!(listed, new, "{r}");
    assert_eq!(sent(&r, 0).0, 0);
    assert!(!run(t.nix_store().args(["--check-validity", &gen2])).status.success(), "dry run sent something");
    let (ok, r) = push(&client, &[&t], &[&gen2], &[]);
    assert!(ok, "{r}");
    assert_eq!(sent(&r, 0), (2, total - 2), "{r}");
    assert_complete(&t, &gen2);

    // The summary table (without --json).
    let out = run_ok(ndeploy().env("HOME", client.path()).args(["push", "--to", &t.url(), &gen2]));
    let table = String::from_utf8_lossy(&out);
    assert!(table.contains("1 target(s), 0 failed"), "{table}");
}

#[test]
fn push_to_four_targets_at_once() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let targets: Vec<SshTarget> = (0..4).map(|_| target(&client)).collect();
    let top = build_closure(&mut built, &format!("b{}", std::process::id()), 10, 100_000, |i| format!("s{i}"));
    let total = local_closure(&top).len() as u64;
    // One target has part of it already.
    let lib = local_closure(&top).into_iter().find(|p| p.ends_with("-lib")).unwrap();
    let (ok, r) = push(&client, &[&targets[2]], &[&lib], &[]);
    assert!(ok, "{r}");
    let refs: Vec<&SshTarget> = targets.iter().collect();
    let (ok, r) = push(&client, &refs, &[&top], &[]);
    assert!(ok, "{r}");
    for (n, t) in targets.iter().enumerate() {
        let expected = if n == 2 { (total - 1, 1) } else { (total, 0) };
        assert_eq!(sent(&r, n), expected, "{r}");
        assert_complete(t, &top);
    }
    // Each path was serialised once for all four targets.
    let nar_total: u64 = r["targets"][0]["sentNarBytes"].as_u64().unwrap();
    assert_eq!(r["producedNarBytes"].as_u64().unwrap(), nar_total, "{r}");
}

pub(crate) fn store_entries(t: &SshTarget) -> usize {
    let store = t.store_root.as_ref().unwrap().join("nix/store");
    std::fs::read_dir(store).map(|d| d.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count()).unwrap_or(0)
}

/// The store paths of `paths` that are valid on the target.
pub(crate) fn valid_on(t: &SshTarget, paths: &BTreeSet<String>) -> usize {
    let out = run(t.nix_store().args(["--check-validity", "--print-invalid"]).args(paths));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    paths.len() - String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn daemon_killed_mid_transfer_then_rerun_sends_the_rest() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let t = target(&client);
    let top = build_closure(&mut built, &format!("c{}", std::process::id()), 12, 100_000, |i| format!("k{i}"));
    let closure = local_closure(&top);
    let total = closure.len() as u64;
    let nar_bytes: u64 = run_str(nix("nix-store").args(["--query", "--size"]).args(&closure))
        .lines()
        .map(|l| l.parse::<u64>().unwrap())
        .sum();

    // The daemon gets half the NAR bytes: the shared lib and some leaves whole
    // (paths go references first), never the top.
    let cut = InputCut::arm(&t, "nix-daemon --stdio", nar_bytes / 2);
    let mut child = ChildGuard::spawn(push_cmd(&client, &[&t], &[&top], &[]).stdout(Stdio::piped()).stderr(Stdio::piped()));
    cut.wait(&mut child, || valid_on(&t, &closure) > 0);
    // The daemon waits for input that never comes: kill it (and the stalled input).
    cut.kill("nix-daemon");
    let out = child.wait_with_output();
    assert!(!out.status.success(), "the cut push succeeded");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["targets"][0]["error"].is_string(), "{r}");

    // Whatever is registered is complete and intact.
    let out = run(t.nix_store().args(["--verify", "--check-contents"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, r) = push(&client, &[&t], &[&top], &["--dry-run"]);
    assert!(ok, "{r}");
    let (_, valid) = sent(&r, 0);
    assert!(valid > 0 && valid < total, "valid after the cut: {valid} of {total}");
    assert_eq!(valid, valid_on(&t, &closure) as u64);

    // The rerun sends exactly the rest.
    let (ok, r) = push(&client, &[&t], &[&top], &[]);
    assert!(ok, "{r}");
    assert_eq!(sent(&r, 0), (total - valid, valid), "{r}");
    assert_complete(&t, &top);
}

#[test]
fn unknown_host_key_is_refused_and_other_targets_go_on() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let unknown = SshTarget::start(SshdOptions { register_host_key: false, ..SshdOptions::default().client(&client) });
    let good = target(&client);
    let top = build_closure(&mut built, &format!("d{}", std::process::id()), 2, 1000, |i| format!("u{i}"));
    let (ok, r) = push(&client, &[&unknown, &good], &[&top], &[]);
    assert!(!ok, "{r}");
    let e = r["targets"][0]["error"].as_str().unwrap();
    assert!(e.contains("is not known"), "{e}");
    assert_eq!(store_entries(&unknown), 0);
    assert_complete(&good, &top);
}

#[test]
fn non_root_user_with_signing_key() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let t = SshTarget::start(SshdOptions { user: TargetUser::Sudo, ..SshdOptions::default().client(&client) });
    let key = SigningKey::generate("push-test-1");
    let top = build_closure(&mut built, &format!("e{}", std::process::id()), 3, 1000, |i| format!("n{i}"));
    let (ok, r) = push(&client, &[&t], &[&top], &key.flag());
    assert!(ok, "{r}");
    assert_complete(&t, &top);
    // Every path carries a signature by our key that Nix accepts.
    key.assert_signed(&t, &top);
    let sigs = run_str(nix("nix").args(["--extra-experimental-features", "nix-command", "path-info", "--sigs", "--store", &t.store_uri(), &top]));
    assert!(sigs.contains("push-test-1:"), "{sigs}");
    assert!(key.secret.exists());
}

/// A `nix-daemon` serving a target's own store, inside the mount namespace
/// of its sshd (so on the target's `/nix/var/nix/daemon-socket/socket`),
/// with its own nix.conf. Stopped on drop.
pub(crate) struct TargetDaemon {
    child: std::process::Child,
    _conf: tempfile::TempDir,
}

impl TargetDaemon {
    /// The target's own daemon trusting root only and requiring signatures
    /// by `key` for paths from everyone else.
    pub(crate) fn requiring_signatures(t: &SshTarget, key: &SigningKey) -> TargetDaemon {
        let conf = format!(
            "trusted-users = root\nallowed-users = *\nrequire-sigs = true\ntrusted-public-keys = {}\nsandbox = false\n",
            key.public
        );
        TargetDaemon::start(t, &conf)
    }

    pub(crate) fn start(t: &SshTarget, nix_conf: &str) -> TargetDaemon {
        let conf = tempfile::tempdir().unwrap();
        write_file(&conf.path().join("nix.conf"), nix_conf);
        let sshd_pid = std::fs::read_to_string(t.dir.path().join("sshd.pid")).unwrap();
        let child = Command::new("nsenter")
            .args(["-t", sshd_pid.trim(), "-m", "--", "nix-daemon"])
            .env("NIX_CONF_DIR", conf.path())
            .env_remove("NIX_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nsenter (util-linux) and nix-daemon");
        let socket = t.store_root.as_ref().unwrap().join("nix/var/nix/daemon-socket/socket");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the target's nix-daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TargetDaemon { child, _conf: conf }
    }
}

impl Drop for TargetDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A binary-cache signing key pair (`nix-store --generate-binary-cache-key`).
pub(crate) struct SigningKey {
    _dir: tempfile::TempDir,
    /// The secret key file, for `--sign-key`.
    pub(crate) secret: std::path::PathBuf,
    /// The public key, as `trusted-public-keys` lists it.
    pub(crate) public: String,
}

impl SigningKey {
    pub(crate) fn generate(name: &str) -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = (dir.path().join("sk"), dir.path().join("pk"));
        run_ok(nix("nix-store").arg("--generate-binary-cache-key").arg(name).arg(&secret).arg(&public));
        let public = std::fs::read_to_string(&public).unwrap().trim().to_owned();
        SigningKey { _dir: dir, secret, public }
    }

    /// `--sign-key` with this key.
    pub(crate) fn flag(&self) -> [&str; 2] {
        ["--sign-key", self.secret.to_str().unwrap()]
    }

    /// Nix on the target accepts every path of `top`'s closure as signed by this key.
    pub(crate) fn assert_signed(&self, t: &SshTarget, top: &str) {
        let out = run(nix("nix")
            .args(["--extra-experimental-features", "nix-command", "--option", "trusted-public-keys", &self.public])
            .args(["store", "verify", "--store", &t.store_uri(), "-r", top]));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A non-root user without sudo, not in the target's trusted-users, whose
/// daemon trusts our signing key: `nix-daemon --stdio` runs as that user and
/// forwards to the target's daemon, which checks signatures. Unsigned paths
/// are refused with a message saying what to do; signed ones are accepted.
#[test]
fn untrusted_user_needs_a_trusted_signing_key() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let t = SshTarget::start(SshdOptions { user: TargetUser::NoSudo, ..SshdOptions::default().client(&client) });
    let key = SigningKey::generate("push-untrusted-1");
    let _daemon = TargetDaemon::requiring_signatures(&t, &key);
    let top = build_closure(&mut built, &format!("f{}", std::process::id()), 3, 1000, |i| format!("t{i}"));
    let total = local_closure(&top).len() as u64;

    // Unsigned: refused, nothing registered, and the error says what to do.
    let (ok, r) = push(&client, &[&t], &[&top], &[]);
    assert!(!ok, "{r}");
    let e = r["targets"][0]["error"].as_str().unwrap();
    assert!(e.contains("lacks a valid signature") || e.contains("lacks a signature by a trusted key"), "{e}");
    assert!(e.contains("ndeploy-nosudo is not a trusted user") && e.contains("--sign-key"), "{e}");
    let lib = local_closure(&top).into_iter().find(|p| p.ends_with("-lib")).unwrap();
    assert!(!run(t.nix_store().args(["--check-validity", &lib])).status.success(), "an unsigned path was registered");

    // Signed by a key the daemon does not trust: refused too.
    let other = SigningKey::generate("push-untrusted-2");
    let (ok, r) = push(&client, &[&t], &[&top], &other.flag());
    assert!(!ok, "{r}");
    let e = r["targets"][0]["error"].as_str().unwrap();
    assert!(e.contains("the key given with --sign-key is not in the trusted-public-keys"), "{e}");

    // Signed by the trusted key: the whole closure arrives, each path signed.
    let (ok, r) = push(&client, &[&t], &[&top], &key.flag());
    assert!(ok, "{r}");
    assert_eq!(sent(&r, 0), (total, 0), "{r}");
    assert_complete(&t, &top);
    key.assert_signed(&t, &top);

    // Again: nothing to send, and an untrusted user may ask.
    let (ok, r) = push(&client, &[&t], &[&top], &[]);
    assert!(ok, "{r}");
    assert_eq!(sent(&r, 0), (0, total), "{r}");
}

/// `--file FLEET --on HOST` / `--all`: each host gets its own toplevel
/// (built first with `ndeploy build`), at its `deployment.targetHost`.
#[test]
fn push_fleet_hosts_their_toplevels() {
    let client = ClientHome::new();
    let targets: Vec<SshTarget> = (0..2).map(|_| target(&client)).collect();
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.nix");
    let nonce = std::process::id();
    let mut s = String::from("{\n");
    for (n, t) in targets.iter().enumerate() {
        s.push_str(&format!(
            "  host{n} = {{ deployment.targetHost = \"{}\"; environment.etc.\"push-test\".text = \"{nonce}-{n}\"; }};\n",
            t.alias
        ));
    }
    s.push_str("}\n");
    write_file(&fleet, s);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let nd = |args: &[&str]| {
        let mut c = ndeploy();
        c.arg(args[0]).arg("--file").arg(&fleet).args(&args[1..]);
        c.env("HOME", client.path()).env_remove("SSH_AUTH_SOCK").env("NIX_CONFIG", "sandbox = false").current_dir(&repo);
        c
    };
    let built = String::from_utf8(run_ok(&mut nd(&["build"]))).unwrap();
    let tops: Vec<String> = (0..2)
        .map(|n| {
            let line = built.lines().find(|l| l.starts_with(&format!("host{n} "))).unwrap_or_else(|| panic!("{built}"));
            line.split_whitespace().nth(1).unwrap().to_owned()
        })
        .collect();
    assert_ne!(tops[0], tops[1]);

    // Only host1.
    let out = run(&mut nd(&["push", "--json", "--on", "host1"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["targets"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["targets"][0]["target"], "host1");
    assert_complete(&targets[1], &tops[1]);
    assert!(!run(targets[0].nix_store().args(["--check-validity", &tops[0]])).status.success());

    // Every host: host1 has everything already.
    let out = run(&mut nd(&["push", "--json", "--all"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |name: &str| r["targets"].as_array().unwrap().iter().find(|t| t["target"] == name).unwrap().clone();
    assert_eq!(by_name("host1")["sentPaths"], 0, "{r}");
    assert!(by_name("host0")["sentPaths"].as_u64().unwrap() > 0, "{r}");
    for (t, top) in targets.iter().zip(&tops) {
        assert_complete(t, top);
    }
}
