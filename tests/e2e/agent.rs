//! `ndeploy push` through the ndeploy agent, against real sshd targets with
//! their own Nix stores (see `sshd.rs`), checked with C++ Nix on the target.
//!
//! Closures are built by the local Nix from a small expression whose file
//! contents depend on package *names* (not store hashes), like real
//! rebuilds: a new generation changes one leaf's version (one file edited in
//! the middle), and every package embeds its dependencies' store paths in a
//! `lib/libmain.so` and its own path in `bin/run`. So the agent's references
//! and deltas both have work to do. The agent binary is built with cargo
//! into the same target directory as `ndeploy` (where push finds it); it
//! is static, and the test of its first install runs the copy pushed to the
//! target in a root holding nothing else.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::push::{SigningKey, TargetDaemon, valid_on};
use crate::sshd::{ClientHome, SshTarget, SshdOptions, TargetUser};
use crate::support::{ChildGuard, InputCut, LocalPaths, local_closure, ndeploy, nix, run, run_ok, run_str, write_file};

/// `target/<profile>/ndeploy-agent`, built once per test run.
pub(crate) fn agent_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_ndeploy")).parent().unwrap().to_path_buf();
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let mut c = Command::new(cargo);
        // The same command as scripts/test runs before the tests (so this is a
        // no-op there): `-p ndeploy-agent` alone would resolve dependency
        // features differently and rebuild them into a second copy.
        c.args(["build", "-q", "--workspace", "--bins", "--locked"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            c.arg("--release");
        }
        c.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
        run_ok(&mut c);
        let bin = dir.join("ndeploy-agent");
        assert!(bin.is_file(), "cargo built no {}", bin.display());
        bin
    })
}

/// Leaves `0..leaves`, leaf `i` at `versions(i)`, a shared lib at
/// `versions(usize::MAX)`, and a top.
fn build_closure(built: &mut LocalPaths, tag: &str, leaves: usize, size: usize, versions: impl Fn(usize) -> String) -> String {
    let dir = tempfile::tempdir().unwrap();
    let list: Vec<String> = (0..leaves).map(|i| format!("\"{}\"", versions(i))).collect();
    let expr = format!(
        r#"
let
  mk = name: deps: version: derivation {{
    inherit name deps version;
    system = builtins.currentSystem;
    PATH = "/usr/bin:/bin";
    builder = "/bin/sh";
    args = [ "-c" ''
      set -e
      rnd() {{ openssl enc -aes-128-ctr -nosalt -pbkdf2 -iter 1 -pass "pass:$1" < /dev/zero 2>/dev/null | head -c "$2"; }}
      mkdir -p $out/share $out/lib $out/bin
      {{ rnd "$name-a" {half}; rnd "$name-$version" 3000; rnd "$name-b" {half}; }} > $out/share/data
      rnd "$name-c" {size} > $out/share/other
      echo "$version" > $out/version
      {{ rnd "$name-so" 20000; for d in $deps; do printf '%s\0' "$d/lib"; done; rnd "$name-so2" 20000; }} > $out/lib/libmain.so
      printf '#!/bin/sh\nexec %s/bin/main "$@"\n' $out > $out/bin/run
      chmod +x $out/bin/run
      for d in $deps; do ln -sfn $d $out/share/dep-$(basename $d | cut -c34-); done
    '' ];
  }};
  lib = mk "agent-test-{tag}-lib" [] "{lib}";
  versions = [ {list} ];
  leaves = builtins.genList (i: mk "agent-test-{tag}-leaf-${{toString i}}" [ lib ] (builtins.elemAt versions i)) {leaves};
in mk "agent-test-{tag}-top" leaves "1"
"#,
        half = size / 2,
        lib = versions(usize::MAX),
        list = list.join(" ")
    );
    write_file(&dir.path().join("closure.nix"), expr);
    built.build(&dir.path().join("closure.nix"), None)
}

/// Nix on the target: the closure of `top` equals ours and each path's contents match its NAR hash.
fn assert_complete(t: &SshTarget, top: &str) {
    let remote: BTreeSet<String> = run_str(t.nix_store().args(["-qR", top])).lines().map(String::from).collect();
    assert_eq!(remote, local_closure(top), "closure of {top} on {}", t.alias);
    let out = run(t.nix_store().arg("--verify-path").args(&remote));
    assert!(out.status.success(), "verify-path on {}: {}", t.alias, String::from_utf8_lossy(&out.stderr));
}

/// The whole target store verifies.
fn assert_store_intact(t: &SshTarget) {
    let out = run(t.nix_store().args(["--verify", "--check-contents"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("error") && !err.contains("modified"), "verify on {}: {err}", t.alias);
}

fn push_cmd(client: &ClientHome, t: &SshTarget, path: &str, extra: &[&str]) -> Command {
    let mut c = ndeploy();
    c.env("HOME", client.path())
        .env("XDG_CACHE_HOME", client.path().join("cache"))
        .env("NDEPLOY_AGENT", agent_binary())
        .env_remove("SSH_AUTH_SOCK")
        .args(["push", "--json", "--to", &t.url()])
        .args(extra)
        .arg(path);
    c
}

fn push(client: &ClientHome, t: &SshTarget, path: &str, extra: &[&str]) -> (bool, serde_json::Value) {
    let out = run(&mut push_cmd(client, t, path, extra));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("push printed no JSON ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.success(), json)
}

fn transfer(r: &serde_json::Value) -> &serde_json::Value {
    &r["targets"][0]["transfer"]
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The agent's store path, as C++ Nix computes it for the same directory:
/// `nix-store --add-fixed --recursive sha256` of `ndeploy-agent-<version>/bin/ndeploy-agent`.
fn nix_agent_path() -> String {
    let dir = tempfile::tempdir().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let pkg = dir.path().join(format!("ndeploy-agent-{version}"));
    std::fs::create_dir_all(pkg.join("bin")).unwrap();
    std::fs::copy(agent_binary(), pkg.join("bin/ndeploy-agent")).unwrap();
    run_str(nix("nix-store").args(["--add-fixed", "--recursive", "sha256"]).arg(&pkg))
}

/// The agent as pushed to `t` runs in a root that holds nothing but its own
/// store path (no program interpreter, no libc, no Nix), as on a NixOS
/// target, whose `/lib64` has no glibc loader: it is statically linked.
/// `--version` prints, and a `--stdio` session reports the agent path's own
/// manifest (read from the store) with the binary's size.
fn assert_runs_alone(t: &SshTarget, agent_path: &str) {
    let jail = tempfile::tempdir().unwrap();
    let rel = format!("{}/bin/ndeploy-agent", agent_path.trim_start_matches('/'));
    let (pushed, alone) = (t.store_root.as_ref().unwrap().join(&rel), jail.path().join(&rel));
    std::fs::create_dir_all(alone.parent().unwrap()).unwrap();
    if std::fs::hard_link(&pushed, &alone).is_err() {
        std::fs::copy(&pushed, &alone).unwrap();
    }
    let bin = format!("{agent_path}/bin/ndeploy-agent");
    let out = run(Command::new("chroot").arg(jail.path()).args([&bin, "--version"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("ndeploy-agent "),
        "{bin} does not run alone ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut child = tokio::process::Command::new("chroot")
            .arg(jail.path())
            .args([&bin, "--stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
        let dir = ndeploy_store::store_path::StoreDir::default();
        let mut client = ndeploy_agent::AgentClient::handshake(stdout, stdin, dir.clone()).await.unwrap();
        let manifests = client.manifests(&[dir.parse(agent_path).unwrap()]).await.unwrap();
        let manifest = manifests.into_iter().next().flatten().expect("the agent's manifest of its own path");
        let files: Vec<(String, bool, u64)> =
            manifest.files().map(|(p, exec, size, _)| (String::from_utf8_lossy(p.as_bytes()).into_owned(), exec, size)).collect();
        let size = std::fs::metadata(&alone).unwrap().len();
        assert_eq!(files, [("bin/ndeploy-agent".to_owned(), true, size)]);
        client.bye().await.unwrap();
        assert!(child.wait().await.unwrap().success());
    });
}

#[test]
fn agent_installs_itself_then_sends_references_and_deltas() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let t = SshTarget::start(SshdOptions { user: TargetUser::Sudo, ..SshdOptions::default().client(&client) });
    let tag = format!("a{}", std::process::id());
    let gen1 = build_closure(&mut built, &tag, 12, 60_000, |_| "1".into());
    let total = local_closure(&gen1).len() as u64;

    // First contact: the agent is installed (content-addressed, the path Nix computes) and used.
    let (ok, r) = push(&client, &t, &gen1, &["--agent"]);
    assert!(ok, "{r}");
    let x = transfer(&r);
    assert_eq!(x["via"], "agent", "{r}");
    assert_eq!(x["agentInstalled"], true, "{r}");
    assert_eq!(u(&r["targets"][0]["sentPaths"]), total, "{r}");
    assert_complete(&t, &gen1);
    let agent_path = nix_agent_path();
    assert!(run(t.nix_store().args(["--check-validity", &agent_path])).status.success(), "{agent_path} not on the target");
    assert_store_intact(&t);
    assert_runs_alone(&t, &agent_path);

    // One leaf of 12 gets a new version: its unchanged files are references,
    // its edited file and the files embedding store paths are deltas.
    let gen2 = build_closure(&mut built, &tag, 12, 60_000, |i| if i == 5 { "2".into() } else { "1".into() });
    let (ok, r) = push(&client, &t, &gen2, &["--stats"]);
    assert!(ok, "{r}");
    let x = transfer(&r);
    assert_eq!(x["via"], "agent", "{r}");
    assert_eq!(x["agentInstalled"], false, "{r}");
    assert_eq!(u(&r["targets"][0]["missingPaths"]), 2, "{r}");
    assert!(u(&x["reference"]["files"]) >= 2, "{r}");
    assert!(u(&x["delta"]["files"]) >= 2, "{r}");
    assert_eq!(u(&x["resentPaths"]), 0, "{r}");
    let missing = u(&r["targets"][0]["missingNarBytes"]);
    assert!(u(&x["wireBytes"]) * 10 < missing, "sent {} of {missing} NAR bytes: {r}", x["wireBytes"]);
    assert_complete(&t, &gen2);
    assert_store_intact(&t);

    // Nothing left to send.
    let (ok, r) = push(&client, &t, &gen2, &[]);
    assert!(ok, "{r}");
    assert_eq!(u(&r["targets"][0]["sentPaths"]), 0, "{r}");

    // The --stats table (without --json): bytes by method.
    let gen3 = build_closure(&mut built, &tag, 12, 60_000, |i| if i == 5 || i == 6 { "2".into() } else { "1".into() });
    let mut c = ndeploy();
    c.env("HOME", client.path()).env("XDG_CACHE_HOME", client.path().join("cache")).env("NDEPLOY_AGENT", agent_binary());
    c.env_remove("SSH_AUTH_SOCK").args(["push", "--no-progress", "--stats", "--to", &t.url(), &gen3]);
    let text = String::from_utf8(run_ok(&mut c)).unwrap();
    assert!(text.contains("via agent") && text.contains("  reference ") && text.contains("  delta "), "{text}");
    assert_complete(&t, &gen3);

    // A new core library: every path is new, none valid, but the target holds
    // the previous generation: the agent, with deltas for the embedded paths.
    let gen4 = build_closure(&mut built, &tag, 12, 60_000, |i| if i == usize::MAX { "2".into() } else { "1".into() });
    let (ok, r) = push(&client, &t, &gen4, &[]);
    assert!(ok, "{r}");
    assert_eq!(u(&r["targets"][0]["alreadyValid"]), 0, "{r}");
    let x = transfer(&r);
    assert_eq!(x["via"], "agent", "{r}");
    let missing = u(&r["targets"][0]["missingNarBytes"]);
    assert!(u(&x["wireBytes"]) * 10 < missing, "sent {} of {missing} NAR bytes: {r}", x["wireBytes"]);
    assert_complete(&t, &gen4);
    assert_store_intact(&t);
}

#[test]
fn corrupted_reused_file_on_the_target_is_detected_and_the_path_sent_whole() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let t = SshTarget::start(SshdOptions::default().client(&client));
    let tag = format!("b{}", std::process::id());
    let gen1 = build_closure(&mut built, &tag, 4, 30_000, |_| "1".into());
    // A fresh target gets whole NARs (nothing to reuse), unless the agent is required.
    let (ok, r) = push(&client, &t, &gen1, &[]);
    assert!(ok, "{r}");
    assert_eq!(transfer(&r)["via"], "plain", "{r}");
    assert!(transfer(&r)["fallback"].as_str().unwrap_or_default().contains("holds none of the closure"), "{r}");
    // ... and the agent, for the next push.
    assert_eq!(transfer(&r)["agentInstalled"], true, "{r}");

    // Flip a byte of leaf 2's libmain.so on the target: gen2's leaf 2 reuses it.
    let old_leaf = local_closure(&gen1).into_iter().find(|p| p.ends_with(&format!("-{tag}-leaf-2"))).unwrap();
    let file = t.store_root.as_ref().unwrap().join(old_leaf.trim_start_matches('/')).join("lib/libmain.so");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[1000] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();

    let gen2 = build_closure(&mut built, &tag, 4, 30_000, |i| if i == 2 { "2".into() } else { "1".into() });
    let (ok, r) = push(&client, &t, &gen2, &[]);
    assert!(ok, "{r}");
    let x = transfer(&r);
    assert_eq!(x["via"], "agent", "{r}");
    assert_eq!(x["agentInstalled"], false, "{r}");
    assert!(u(&x["resentPaths"]) >= 1, "the corruption went unnoticed: {r}");
    assert!(x["fallback"].as_str().unwrap_or_default().contains("sent whole"), "{r}");
    // Every path of gen2 is intact on the target (the old, corrupted one is not ours to fix).
    assert_complete(&t, &gen2);
}

/// The agent's input is cut at half the NAR bytes (raw data: the stream is
/// about as long as the NARs), then the agent is killed: the push fails,
/// what was imported is intact, and the rerun sends exactly the rest.
#[test]
fn agent_killed_mid_stream_then_rerun_completes() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let t = SshTarget::start(SshdOptions::default().client(&client));
    let tag = format!("c{}", std::process::id());
    // Install the agent first (a tiny push), so the cut hits the delta stream.
    let small = build_closure(&mut built, &format!("{tag}s"), 1, 1000, |_| "1".into());
    let (ok, r) = push(&client, &t, &small, &["--agent"]);
    assert!(ok, "{r}");
    let top = build_closure(&mut built, &tag, 12, 100_000, |_| "1".into());
    let closure = local_closure(&top);
    let total = closure.len() as u64;
    let nar_bytes: u64 =
        run_str(nix("nix-store").args(["--query", "--size"]).args(&closure)).lines().map(|l| l.parse::<u64>().unwrap()).sum();

    // Random contents without a base: raw bytes, so half the NAR bytes is
    // about half the stream; the shared lib and some leaves are imported.
    let cut = InputCut::arm(&t, "*/bin/ndeploy-agent --stdio", nar_bytes / 2);
    let mut child = ChildGuard::spawn(push_cmd(&client, &t, &top, &["--agent"]).stdout(Stdio::piped()).stderr(Stdio::piped()));
    cut.wait(&mut child, || valid_on(&t, &closure) > 0);
    // The agent waits for input that never comes: kill it (and the stalled input).
    cut.kill("ndeploy-agent");
    let out = child.wait_with_output();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!out.status.success(), "the cut push succeeded: {r}");
    assert!(r["targets"][0]["error"].as_str().unwrap_or_default().contains("agent"), "{r}");

    // What is registered is intact; the rerun sends exactly the rest.
    assert_store_intact(&t);
    let (ok, r) = push(&client, &t, &top, &["--dry-run"]);
    assert!(ok, "{r}");
    let valid = u(&r["targets"][0]["alreadyValid"]);
    assert!(valid > 0 && valid < total, "valid after the cut: {valid} of {total}");
    assert_eq!(valid, valid_on(&t, &closure) as u64);
    let (ok, r) = push(&client, &t, &top, &[]);
    assert!(ok, "{r}");
    assert_eq!(u(&r["targets"][0]["sentPaths"]), total - valid, "{r}");
    assert_eq!(transfer(&r)["via"], "agent", "{r}");
    assert_complete(&t, &top);
    assert_store_intact(&t);
}

#[test]
fn target_where_the_agent_cannot_run_gets_the_plain_push() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let t = SshTarget::start(SshdOptions::default().client(&client));
    let tag = format!("d{}", std::process::id());
    let top = build_closure(&mut built, &tag, 3, 5000, |_| "1".into());
    // An "agent" that cannot run there (as a binary for another system would not).
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("ndeploy-agent");
    write_file(&fake, format!("#!/bin/sh\necho 'cannot execute binary file {tag}' >&2\nexit 126\n"));
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = run(push_cmd(&client, &t, &top, &["--agent"]).env("NDEPLOY_AGENT", &fake));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{r}\n{}", String::from_utf8_lossy(&out.stderr));
    let x = transfer(&r);
    assert_eq!(x["via"], "plain", "{r}");
    let why = x["fallback"].as_str().unwrap_or_default();
    assert!(why.contains(&format!("cannot execute binary file {tag}")), "the reason is reported: {r}");
    assert_complete(&t, &top);
    assert_store_intact(&t);

    // --no-agent: the plain push, no agent involved.
    let top2 = build_closure(&mut built, &tag, 5, 5000, |_| "1".into());
    let (ok, r) = push(&client, &t, &top2, &["--no-agent"]);
    assert!(ok, "{r}");
    assert_eq!(transfer(&r)["via"], "plain", "{r}");
    assert!(transfer(&r)["fallback"].is_null(), "{r}");
    assert_complete(&t, &top2);
}

/// A fresh target gets whole NARs through the fan-out, which records the
/// manifests of what it sends (from the same NAR bytes); the next push goes
/// through the agent and finds every manifest it needs cached: none is
/// computed from the local store again, none asked from the agent.
#[test]
fn plain_push_records_the_manifests_the_next_agent_push_uses() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let t = SshTarget::start(SshdOptions::default().client(&client));
    let tag = format!("e{}", std::process::id());
    let gen1 = build_closure(&mut built, &tag, 6, 30_000, |_| "1".into());
    let (ok, r) = push(&client, &t, &gen1, &[]);
    assert!(ok, "{r}");
    let x = transfer(&r);
    assert_eq!(x["via"], "plain", "{r}");
    assert_eq!(x["agentInstalled"], true, "{r}");
    let cache = client.path().join("cache/ndeploy/manifests");
    for p in local_closure(&gen1) {
        let base = p.trim_start_matches("/nix/store/");
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(cache.join(format!("{base}.json"))).unwrap()).unwrap();
        let entries = m["entries"].as_array().unwrap();
        // The recorded manifest is the path's own: its files and sizes as on disk.
        for e in entries.iter().filter(|e| e["t"] == "regular") {
            let rel = e["path"].as_str().unwrap();
            assert_eq!(std::fs::metadata(Path::new(&p).join(rel)).unwrap().len(), u(&e["size"]), "{p}/{rel}");
        }
        assert!(!entries.is_empty(), "{p}");
    }
    assert_complete(&t, &gen1);

    let gen2 = build_closure(&mut built, &tag, 6, 30_000, |i| if i == 2 { "2".into() } else { "1".into() });
    let (ok, r) = push(&client, &t, &gen2, &[]);
    assert!(ok, "{r}");
    let x = transfer(&r);
    assert_eq!(x["via"], "agent", "{r}");
    assert_eq!((u(&x["manifests"]["local"]), u(&x["manifests"]["remote"])), (0, 0), "{r}");
    assert!(u(&x["manifests"]["cached"]) > local_closure(&gen1).len() as u64 / 2, "{r}");
    assert!(u(&x["delta"]["files"]) >= 1, "{r}");
    assert_complete(&t, &gen2);
    assert_store_intact(&t);
}

/// Issue 8's third method across packages: a large file without a previous
/// version (a package of a new name) travels as the content-defined chunks
/// of another package's file the target holds, plus the rest; Nix on the
/// target verifies the result.
#[test]
fn a_large_file_without_a_previous_version_reuses_chunks_of_another_package() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let t = SshTarget::start(SshdOptions::default().client(&client));
    let tag = format!("f{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    // `image` shares the first 1.2 MB of `disk`'s 1.5 MB file.
    let expr = format!(
        r#"
let
  rnd = "rnd() {{ openssl enc -aes-128-ctr -nosalt -pbkdf2 -iter 1 -pass \"pass:$1\" < /dev/zero 2>/dev/null | head -c \"$2\"; }}";
  mk = name: script: derivation {{
    inherit name;
    system = builtins.currentSystem;
    PATH = "/usr/bin:/bin";
    builder = "/bin/sh";
    args = [ "-c" "set -e; ${{rnd}}; mkdir -p $out/share; ${{script}}" ];
  }};
in {{
  disk = mk "agent-test-{tag}-disk" "rnd {tag}-disk 1500000 > $out/share/disk.img";
  image = mk "agent-test-{tag}-image" "{{ rnd {tag}-disk 1200000; rnd {tag}-image 400000; }} > $out/share/image.raw";
}}
"#
    );
    write_file(&dir.path().join("files.nix"), expr);
    let disk = built.build(&dir.path().join("files.nix"), Some("disk"));
    let image = built.build(&dir.path().join("files.nix"), Some("image"));
    // The target holds `disk` (a fresh target: a plain push, manifests recorded).
    let (ok, r) = push(&client, &t, &disk, &[]);
    assert!(ok, "{r}");
    assert_eq!(transfer(&r)["via"], "plain", "{r}");

    let (ok, r) = push(&client, &t, &image, &[]);
    assert!(ok, "{r}");
    let x = transfer(&r);
    assert_eq!(x["via"], "agent", "{r}");
    assert_eq!(u(&x["chunks"]["files"]), 1, "{r}");
    assert_eq!(u(&x["resentPaths"]), 0, "{r}");
    // The new 400 KB travel (random bytes), the shared 1.2 MB mostly not.
    let sent = u(&x["chunks"]["sentBytes"]);
    assert!(sent > 0 && sent < 800_000, "chunks sent {sent} bytes of 1.6 MB: {r}");
    assert!(u(&x["wireBytes"]) < 900_000, "{r}");
    assert_complete(&t, &image);
    assert_store_intact(&t);
}

/// A non-root user without sudo, not trusted by the target's daemon, which
/// requires signatures by our key: the agent runs as that user and imports
/// through the daemon's socket, which checks the signatures; with
/// `--sign-key` every path, sent as deltas and references too, is signed,
/// accepted and verified by Nix.
#[test]
fn untrusted_user_pushes_signed_paths_through_the_agent() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let t = SshTarget::start(SshdOptions { user: TargetUser::NoSudo, ..SshdOptions::default().client(&client) });
    let key = SigningKey::generate("agent-untrusted-1");
    let _daemon = TargetDaemon::requiring_signatures(&t, &key);
    let tag = format!("g{}", std::process::id());
    let sign = key.flag();
    let gen1 = build_closure(&mut built, &tag, 4, 30_000, |_| "1".into());
    let (ok, r) = push(&client, &t, &gen1, &[&sign[..], &["--agent"]].concat());
    assert!(ok, "{r}");
    assert_eq!(transfer(&r)["via"], "agent", "{r}");
    assert_eq!(u(&transfer(&r)["resentPaths"]), 0, "{r}");

    let gen2 = build_closure(&mut built, &tag, 4, 30_000, |i| if i == 1 { "2".into() } else { "1".into() });
    let (ok, r) = push(&client, &t, &gen2, &sign);
    assert!(ok, "{r}");
    let x = transfer(&r);
    assert_eq!(x["via"], "agent", "{r}");
    assert!(u(&x["delta"]["files"]) >= 1 && u(&x["reference"]["files"]) >= 1, "{r}");
    assert_eq!(u(&x["resentPaths"]), 0, "{r}");
    assert_complete(&t, &gen2);
    key.assert_signed(&t, &gen2);
}

/// Two targets in one push: the first generation goes to both as whole NARs
/// (fresh targets), the second to both through their own agents at once,
/// each planned against what that target holds (one of them also got a
/// third leaf version in between, so their plans differ).
#[test]
fn two_targets_at_once_each_through_its_agent() {
    let mut built = LocalPaths::new();
    let client = ClientHome::new();
    let (a, b) = (SshTarget::start(SshdOptions::default().client(&client)), SshTarget::start(SshdOptions::default().client(&client)));
    let tag = format!("h{}", std::process::id());
    let push_both = |path: &str| {
        let mut c = ndeploy();
        c.env("HOME", client.path()).env("XDG_CACHE_HOME", client.path().join("cache")).env("NDEPLOY_AGENT", agent_binary());
        c.env_remove("SSH_AUTH_SOCK").args(["push", "--json", "--to", &a.url(), "--to", &b.url(), path]);
        let out = run(&mut c);
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(out.status.success(), "{r}\n{}", String::from_utf8_lossy(&out.stderr));
        r
    };
    let gen1 = build_closure(&mut built, &tag, 6, 30_000, |_| "1".into());
    let r = push_both(&gen1);
    for n in 0..2 {
        assert_eq!(r["targets"][n]["transfer"]["via"], "plain", "{r}");
    }
    // Only `b` gets leaf 0's version 2 first.
    let mid = build_closure(&mut built, &tag, 6, 30_000, |i| if i == 0 { "2".into() } else { "1".into() });
    let (ok, r) = push(&client, &b, &mid, &[]);
    assert!(ok, "{r}");
    let gen2 = build_closure(&mut built, &tag, 6, 30_000, |i| if i <= 1 { "2".into() } else { "1".into() });
    let r = push_both(&gen2);
    let missing: Vec<u64> = (0..2).map(|n| u(&r["targets"][n]["missingPaths"])).collect();
    assert_eq!(missing, [3, 2], "a lacks both new leaves and the top, b one leaf and the top: {r}");
    for (n, t) in [(0, &a), (1, &b)] {
        let x = &r["targets"][n]["transfer"];
        assert_eq!(x["via"], "agent", "{r}");
        assert_eq!(u(&x["resentPaths"]), 0, "{r}");
        assert!(u(&x["delta"]["files"]) >= 1, "{r}");
        assert!(u(&x["wireBytes"]) * 10 < u(&r["targets"][n]["missingNarBytes"]), "{r}");
        assert_complete(t, &gen2);
        assert_store_intact(t);
    }
}
