//! `ndeploy apply` / `build` / `keys upload` / `exec` against real sshd
//! targets, each with its own Nix store (see `sshd.rs`), deploying toplevels
//! of ndeploy's `nix/` library. Each target records its activations under
//! `/nix/var/ndeploy-root` as it sees it (`--target-root`), which is the
//! target's private `ROOT/nix/var/ndeploy-root` from outside.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::sshd::{ClientHome, SshTarget, SshdOptions};
use crate::support::{ndeploy, run, write_file};

/// Confirmation timeout for applies where no host should time out: generous,
/// because on a loaded 2-core machine a healthy host's health checks and new
/// SSH connection took over 8 s (a shorter timeout rolled healthy hosts back).
/// Hosts whose confirmation is blocked on purpose wait this long.
const CONFIRM_TIMEOUT: &str = "20";

const TARGET_ROOT: &str = "/nix/var/ndeploy-root";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn start(client: &ClientHome) -> SshTarget {
    SshTarget::start(SshdOptions::default().client(client))
}

/// `ndeploy SUBCOMMAND --file FLEET …` as the client's user.
fn nd(client: &ClientHome, fleet: &Path, args: &[&str]) -> Command {
    let mut c = ndeploy();
    // `--file` right after the subcommand (`exec` takes every word after its
    // first positional as part of the command).
    let split = if args.first() == Some(&"keys") { 2 } else { 1 };
    c.args(&args[..split]).arg("--file").arg(fleet).args(&args[split..]);
    c.env("HOME", client.path()).env_remove("SSH_AUTH_SOCK").env("NIX_CONFIG", "sandbox = false");
    // Plain pushes: installing the agent (megabytes) on every target of every
    // test proves nothing here; apply_updates_through_the_agent names the real one.
    c.env("NDEPLOY_AGENT", "/nonexistent/ndeploy-agent");
    c.current_dir(repo());
    c
}

fn outside(t: &SshTarget, inner: &str) -> PathBuf {
    t.store_root.as_ref().expect("own store").join(inner.trim_start_matches('/'))
}

/// The store path the target's system profile points to, if any.
fn profile(t: &SshTarget) -> Option<String> {
    let p = outside(t, "/nix/var/nix/profiles/system");
    let generation = std::fs::read_link(&p).ok()?;
    let link = std::fs::read_link(p.parent()?.join(generation)).ok()?;
    Some(link.display().to_string())
}

fn generations(t: &SshTarget) -> usize {
    std::fs::read_dir(outside(t, "/nix/var/nix/profiles"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with("-link")).count())
        .unwrap_or(0)
}

fn activations(t: &SshTarget) -> String {
    std::fs::read_to_string(outside(t, &format!("{TARGET_ROOT}/var/lib/ndeploy/activations"))).unwrap_or_default()
}

fn report(out: &Output) -> Vec<Value> {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("bad JSON report ({e}):\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

fn host<'a>(r: &'a [Value], name: &str) -> &'a Value {
    r.iter().find(|h| h["host"] == name).unwrap_or_else(|| panic!("{name} not in report {r:?}"))
}

/// A value that makes a configuration new (so its toplevel is not built yet).
fn nonce() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Five hosts get v1; then v2 where one fails its health check, one breaks
/// SSH (its activation removes our authorized key, so confirmation over a
/// new connection is impossible), one fails activation, and a sixth host is
/// unreachable. The healthy two end on v2, the others back on v1.
#[test]
fn apply_switch_rollbacks_and_unreachable() {
    let client = ClientHome::new();
    let targets: Vec<SshTarget> = (0..6).map(|_| start(&client)).collect();
    let names = ["ok-1", "ok-2", "unhealthy", "breaks-ssh", "fails", "drops-session"];
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.nix");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let write_fleet = |version: u32| {
        let mut s = String::from("{\n");
        for (n, t) in names.iter().zip(&targets) {
            let extra = match (version, *n) {
                (2, "unhealthy") => r#"deployment.healthChecks = [ { cmd = "test -e /nonexistent"; retries = 1; timeout = 2; } ];"#.to_owned(),
                (2, "breaks-ssh") => format!(
                    "system.activationScripts.breakssh = \"rm -f {}\";",
                    t.dir.path().join("authorized_keys").display()
                ),
                (2, "fails") => "system.activationShouldFail = true;".to_owned(),
                // Kills the sshd process of the connection it runs under (as
                // an sshd restart would): ndeploy reconnects, then confirms.
                (2, "drops-session") => concat!(
                    r#"system.activationScripts.dropssh = "p=$$; while [ $p -gt 1 ]; do "#,
                    r#"case $(cat /proc/$p/comm) in sshd*) kill $p; break;; esac; "#,
                    r#"p=$(cut -d' ' -f4 /proc/$p/stat); done";"#
                )
                .to_owned(),
                _ => format!(
                    "deployment.healthChecks = [ {{ cmd = \"test -e $NDEPLOY_TARGET_ROOT/run/current-system\"; }} ]; \
                     system.activationScripts.hello = \"echo hello from {n}\";"
                ),
            };
            s.push_str(&format!(
                "  {n} = {{ deployment.targetHost = \"{}\"; environment.etc.\"version\".text = \"{version}\"; {extra} }};\n",
                t.alias
            ));
        }
        if version == 2 {
            s.push_str(&format!("  gone = {{ deployment.targetHost = \"127.0.0.1\"; deployment.targetPort = {closed}; }};\n"));
            s.push_str("  undeployable = { deployment.targetHost = null; };\n");
            s.push_str("  broken = { deployment.targetHost = \"nowhere\"; assertions = [ { assertion = false; message = \"broken on purpose\"; } ]; };\n");
        }
        s.push_str("}\n");
        write_file(&fleet, s);
    };
    let apply = || run(&mut nd(&client, &fleet, &["apply", "switch", "--json", "--confirm-timeout", CONFIRM_TIMEOUT, "--target-root", TARGET_ROOT]));

    write_fleet(1);
    let out = apply();
    assert!(out.status.success(), "{}", text(&out));
    let r1 = report(&out);
    let mut v1 = Vec::new();
    for (n, t) in names.iter().zip(&targets) {
        let h = host(&r1, n);
        assert_eq!(h["result"], "deployed", "{h}");
        let top = h["toplevel"].as_str().unwrap().to_owned();
        assert_eq!(profile(t).as_deref(), Some(top.as_str()), "{n}: profile");
        assert_eq!(activations(t), format!("switch {top}\n"), "{n}: state file");
        assert!(h["pushedBytes"].as_u64().unwrap() > 0);
        v1.push(top);
    }
    // Activation output is streamed with the host as prefix.
    assert!(text(&out).contains("ok-1> hello from ok-1\n"), "{}", text(&out));

    write_fleet(2);
    let out = apply();
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let r2 = report(&out);
    for (i, (n, t)) in names.iter().zip(&targets).enumerate() {
        let h = host(&r2, n);
        let top = h["toplevel"].as_str().unwrap().to_owned();
        assert_ne!(top, v1[i]);
        let log = activations(t);
        match *n {
            "ok-1" | "ok-2" | "drops-session" => {
                assert_eq!(h["result"], "deployed", "{h}\n{all}");
                assert_eq!(profile(t).as_deref(), Some(top.as_str()));
                assert_eq!(log, format!("switch {}\nswitch {top}\n", v1[i]));
                assert_eq!(generations(t), 2);
            }
            _ => {
                assert_eq!(h["result"], "rolled-back", "{n}: {h}\n{all}");
                assert_eq!(profile(t).as_deref(), Some(v1[i].as_str()), "{n} back on v1");
                assert_eq!(generations(t), 1, "{n}: the new generation is removed");
                // v1, then v2, then v1 again by the rollback.
                assert_eq!(log, format!("switch {0}\nswitch {top}\nswitch {0}\n", v1[i]), "{n}");
                let current = std::fs::read_link(outside(t, &format!("{TARGET_ROOT}/run/current-system"))).unwrap();
                assert_eq!(current.display().to_string(), v1[i], "{n}: running v1");
            }
        }
        let reason = h["reason"].as_str().unwrap_or_default();
        match *n {
            "unhealthy" => assert!(reason.contains("health check") && reason.contains("/nonexistent"), "{reason}"),
            "breaks-ssh" => assert!(reason.contains("confirm") && reason.contains("confirmation-timeout"), "{reason}"),
            "fails" => assert!(reason.contains("activation failed"), "{reason}"),
            "drops-session" => assert!(all.contains("drops-session> lost the activation's connection"), "{all}"),
            _ => {}
        }
    }
    let gone = host(&r2, "gone");
    assert_eq!(gone["result"], "failed");
    assert!(gone["reason"].as_str().unwrap().contains("connect"), "{gone}");
    let undeployable = host(&r2, "undeployable");
    assert!(undeployable["reason"].as_str().unwrap().contains("not deployable"), "{undeployable}");
    let broken = host(&r2, "broken");
    assert_eq!(broken["result"], "failed");
    assert!(broken["reason"].as_str().unwrap().contains("broken on purpose"), "{broken}");
    // The table names the rolled-back hosts too.
    let out = run(&mut nd(&client, &fleet, &["apply", "--on", "fails", "--confirm-timeout", "3", "--target-root", TARGET_ROOT]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ROLLED BACK: activation failed"), "{}", text(&out));
}

/// Keys land with their owner and mode, through SSH only: the secret is in no
/// store path of the toplevel's build closure and in no output.
#[test]
fn keys_upload_modes_and_secrecy() {
    let client = ClientHome::new();
    let t = start(&client);
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("s3cret-{}", std::process::id());
    let file_secret = format!("file-secret-{}", std::process::id());
    write_file(&dir.path().join("key.txt"), &file_secret);
    let fleet = dir.path().join("fleet.nix");
    write_file(
        &fleet,
        format!(
            "{{ k = {{ deployment.targetHost = \"{}\";\n\
               deployment.keys.api = {{ text = \"{secret}\"; permissions = \"0640\"; group = \"daemon\"; }};\n\
               deployment.keys.file = {{ keyFile = ./key.txt; destDir = \"/etc/secrets\"; uploadAt = \"post-activation\"; }}; }}; }}\n",
            t.alias
        ),
    );
    let out = run(&mut nd(&client, &fleet, &["apply", "--json", "--confirm-timeout", CONFIRM_TIMEOUT, "--target-root", TARGET_ROOT]));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert_eq!(host(&report(&out), "k")["keys"], 2);
    use std::os::unix::fs::MetadataExt;
    let api = outside(&t, &format!("{TARGET_ROOT}/run/keys/api"));
    assert_eq!(std::fs::read_to_string(&api).unwrap(), secret);
    let m = std::fs::metadata(&api).unwrap();
    assert_eq!(m.mode() & 0o777, 0o640);
    assert_eq!(m.gid(), 1, "group daemon");
    let f = outside(&t, &format!("{TARGET_ROOT}/etc/secrets/file"));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), file_secret);
    assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
    assert!(!all.contains(&secret) && !all.contains(&file_secret), "a secret was printed");
    // Not in the target's store, nor in what was built and registered locally.
    let r = report(&out);
    let top = host(&r, "k")["toplevel"].as_str().unwrap().to_owned();
    let grep = |root: &Path, what: &str| Command::new("grep").args(["-rqF", what]).arg(root).status().unwrap().success();
    assert!(!grep(&outside(&t, "/nix/store"), &secret) && !grep(&outside(&t, "/nix/store"), &file_secret));
    assert!(!grep(Path::new(&top), &secret));
    // `keys upload` alone re-uploads them.
    std::fs::remove_file(&api).unwrap();
    let out = run(&mut nd(&client, &fleet, &["keys", "upload", "--target-root", TARGET_ROOT]));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "k: 2 keys");
    assert_eq!(std::fs::read_to_string(&api).unwrap(), secret);
}

/// Keys uploaded before an activation that is rolled back are put back: a
/// replaced key gets its previous contents and mode, a new key is removed.
/// After a confirmed activation no backup of a key is left on the target.
#[test]
fn keys_restored_when_activation_rolls_back() {
    use std::os::unix::fs::MetadataExt;
    let client = ClientHome::new();
    let t = start(&client);
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.nix");
    let write = |keys: &str, extra: &str| {
        write_file(&fleet, format!("{{ k = {{ deployment.targetHost = \"{}\"; {keys} {extra} }}; }}\n", t.alias))
    };
    let apply = || run(&mut nd(&client, &fleet, &["apply", "--json", "--confirm-timeout", CONFIRM_TIMEOUT, "--target-root", TARGET_ROOT]));
    write(r#"deployment.keys.api = { text = "v1"; permissions = "0640"; };"#, "");
    let out = apply();
    assert!(out.status.success(), "{}", text(&out));
    let backups = || {
        let agent = outside(&t, &format!("{TARGET_ROOT}/var/lib/ndeploy/agent"));
        let runs = std::fs::read_dir(agent).unwrap().filter_map(Result::ok).filter(|e| e.path().is_dir());
        runs.filter(|r| r.path().join("keys-undo").exists() || r.path().join("keys-undo.sh").exists()).count()
    };
    assert_eq!(backups(), 0, "confirmed: backups deleted");
    write(
        r#"deployment.keys.api = { text = "v2"; permissions = "0600"; }; deployment.keys.extra.text = "x";"#,
        "system.activationShouldFail = true;",
    );
    let out = apply();
    assert!(!out.status.success());
    assert_eq!(host(&report(&out), "k")["result"], "rolled-back", "{}", text(&out));
    let api = outside(&t, &format!("{TARGET_ROOT}/run/keys/api"));
    assert_eq!(std::fs::read_to_string(&api).unwrap(), "v1");
    assert_eq!(std::fs::metadata(&api).unwrap().mode() & 0o777, 0o640);
    assert!(!outside(&t, &format!("{TARGET_ROOT}/run/keys/extra")).exists(), "a new key is removed");
    assert_eq!(backups(), 0, "rolled back: backups deleted");
}

/// `build` builds locally and prints out paths; `dry-activate` runs the
/// toplevel's dry activation; neither changes the target's system. Then the
/// `test` and `boot` goals, and `exec`.
#[test]
fn build_dry_activate_test_boot_and_exec() {
    let client = ClientHome::new();
    let t = start(&client);
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.nix");
    let nonce = nonce();
    write_file(&fleet, format!("{{ d = {{ deployment.targetHost = \"{}\"; environment.etc.n.text = \"{nonce}\"; }}; }}\n", t.alias));
    let out = run(&mut nd(&client, &fleet, &["build", "--verbose"]));
    assert!(out.status.success(), "{}", text(&out));
    // Build logs are shown with --verbose, prefixed with the host.
    assert!(String::from_utf8_lossy(&out.stderr).lines().any(|l| l.starts_with("d> ")), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (name, top) = line.split_once(' ').unwrap();
    assert_eq!(name, "d");
    assert!(Path::new(top).join("bin/switch-to-configuration").exists(), "built locally: {top}");

    let out = run(&mut nd(&client, &fleet, &["apply", "dry-activate", "--target-root", TARGET_ROOT]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("d> would activate {top}")), "{}", text(&out));
    assert_eq!(profile(&t), None);
    assert_eq!(generations(&t), 0);
    assert_eq!(activations(&t), "");
    assert!(!outside(&t, &format!("{TARGET_ROOT}/run/current-system")).exists());

    // `test` activates without a profile generation; `boot` only sets the profile.
    let out = run(&mut nd(&client, &fleet, &["apply", "test", "--confirm-timeout", CONFIRM_TIMEOUT, "--target-root", TARGET_ROOT]));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(activations(&t), format!("test {top}\n"));
    assert_eq!(profile(&t), None);
    let current = outside(&t, &format!("{TARGET_ROOT}/run/current-system"));
    assert_eq!(std::fs::read_link(&current).unwrap().display().to_string(), top);
    std::fs::remove_file(&current).unwrap();
    let out = run(&mut nd(&client, &fleet, &["apply", "boot", "--target-root", TARGET_ROOT]));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(activations(&t), format!("test {top}\nboot {top}\n"));
    assert_eq!(profile(&t).as_deref(), Some(top));
    assert!(!current.exists(), "boot does not activate");
    // Without magic rollback a failing health check is reported and nothing is undone
    // (health checks are deployment settings: the toplevel stays the same).
    let with_check = std::fs::read_to_string(&fleet).unwrap().replace(
        "environment.etc.n.text",
        "deployment.healthChecks = [ { cmd = \"false\"; retries = 0; } ]; environment.etc.n.text",
    );
    write_file(&fleet, with_check);
    let out = run(&mut nd(&client, &fleet, &["apply", "switch", "--no-magic-rollback", "--target-root", TARGET_ROOT]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no magic rollback: the new configuration stays"), "{}", text(&out));
    // `boot` made this toplevel the system profile: nothing is pushed again.
    assert!(text(&out).contains("d> already the current system: nothing to push"), "{}", text(&out));
    assert_eq!(activations(&t), format!("test {top}\nboot {top}\nswitch {top}\n"));
    assert_eq!(std::fs::read_link(&current).unwrap().display().to_string(), top);

    // exec: prefixed output, exit status.
    let out = run(&mut nd(&client, &fleet, &["exec", "--", "echo", "hi there"]));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "d> hi there\n");
    let out = run(&mut nd(&client, &fleet, &["exec", "d", "--", "exit 3"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("d: exited with 3"), "{}", text(&out));
}

/// `diff` against the deployed system: the package version change, added
/// and removed paths, bytes to transfer; the target is left as it was.
#[test]
fn diff_before_applying() {
    let client = ClientHome::new();
    let t = start(&client);
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.nix");
    let write = |v: &str| {
        write_file(
            &fleet,
            format!(
                "{{ x = {{ deployment.targetHost = \"{}\"; environment.systemPackages = [ (derivation {{\n\
                   name = \"tool-{v}\"; system = builtins.currentSystem; builder = \"/bin/sh\"; PATH = \"/usr/bin:/bin\";\n\
                   args = [ \"-c\" \"mkdir -p $out/bin && echo {v} > $out/bin/tool\" ]; }}) ]; }}; }}\n",
                t.alias
            ),
        )
    };
    write("1.0");
    let out = run(&mut nd(&client, &fleet, &["apply", "--confirm-timeout", CONFIRM_TIMEOUT, "--target-root", TARGET_ROOT]));
    assert!(out.status.success(), "{}", text(&out));
    let before = profile(&t).unwrap();
    write("2.0");
    let out = run(&mut nd(&client, &fleet, &["diff", "--json"]));
    assert!(out.status.success(), "{}", text(&out));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["current"], before.as_str());
    assert_eq!(d["versionChanges"], serde_json::json!([{ "pname": "tool", "old": ["1.0"], "new": ["2.0"] }]));
    let has = |k: &str, suffix: &str| d[k].as_array().unwrap().iter().any(|p| p.as_str().unwrap().ends_with(suffix));
    assert!(has("added", "-tool-2.0") && has("removed", "-tool-1.0") && has("removed", "-ndeploy-system-x"), "{d}");
    // The new toplevel, the tool and whatever else changed (sw, etc) are missing on the target.
    assert!(d["transferPaths"].as_u64().unwrap() >= 2 && d["transferBytes"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(profile(&t).unwrap(), before, "diff changes nothing");
    let out = run(&mut nd(&client, &fleet, &["diff"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tool: 1.0 -> 2.0"), "{}", text(&out));
}

/// Timing, not an assertion: `apply switch` on 20 loopback targets, split by
/// phase. Run with `cargo test -p ndeploy --test e2e -- --ignored apply::timing --nocapture`.
#[test]
#[ignore]
fn timing_20_hosts() {
    let client = ClientHome::new();
    let targets: Vec<SshTarget> = (0..20).map(|_| start(&client)).collect();
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.nix");
    let nonce = nonce();
    let mut s = String::from("{\n  defaults = { pkgs, ... }: { environment.systemPackages = [ pkgs.hello ]; services.nginx.enable = true; };\n");
    for (i, t) in targets.iter().enumerate() {
        s.push_str(&format!(
            "  host-{i:02} = {{ deployment.targetHost = \"{}\"; environment.etc.\"nonce\".text = \"{nonce}\"; \
             deployment.healthChecks = [ {{ cmd = \"true\"; }} ]; }};\n",
            t.alias
        ));
    }
    s.push_str("}\n");
    write_file(&fleet, s);
    // First a new configuration everywhere, then the same again (nothing to build or push).
    for what in ["new configuration", "unchanged re-apply"] {
        let started = std::time::Instant::now();
        // Under /usr/bin/time when there is one: the CPU of ndeploy and its
        // local children (nix-daemon, builders), on stderr's last line.
        let mut cmd = nd(&client, &fleet, &["apply", "--json", "-j", "20", "--confirm-timeout", CONFIRM_TIMEOUT, "--target-root", TARGET_ROOT]);
        if Path::new("/usr/bin/time").exists() {
            let mut timed = Command::new("/usr/bin/time");
            timed.args(["-f", "cpu: user %U s, sys %S s"]).arg(cmd.get_program()).args(cmd.get_args());
            for (k, v) in cmd.get_envs() {
                match v {
                    Some(v) => timed.env(k, v),
                    None => timed.env_remove(k),
                };
            }
            timed.current_dir(repo());
            cmd = timed;
        }
        let out = run(&mut cmd);
        let wall = started.elapsed().as_secs_f64();
        assert!(out.status.success(), "{}", text(&out));
        let r = report(&out);
        let col = |k: &str| r.iter().filter_map(|h| h[k].as_f64()).collect::<Vec<f64>>();
        let stats = |k: &str| {
            let v = col(k);
            let max = v.iter().cloned().fold(0.0, f64::max);
            format!("{k}: mean {:.2}s max {:.2}s", v.iter().sum::<f64>() / v.len().max(1) as f64, max)
        };
        let phases = String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.starts_with("phases:")).collect::<Vec<_>>().join("");
        let bytes: u64 = r.iter().filter_map(|h| h["pushedBytes"].as_u64()).sum();
        let cpu = String::from_utf8_lossy(&out.stderr).lines().rfind(|l| l.starts_with("cpu: ")).unwrap_or_default().to_owned();
        eprintln!("apply on 20 hosts, {what}: wall {wall:.2}s, pushed {bytes} bytes; {phases}; {cpu}");
        for k in ["buildSecs", "pushSecs", "activateSecs", "confirmSecs", "healthSecs", "totalSecs"] {
            eprintln!("  {}", stats(k));
        }
        // Where the pushes' time went before sending, mean seconds per stage.
        let mut stages: Vec<(String, f64)> = Vec::new();
        for h in &r {
            for (k, v) in h["pushStages"].as_object().into_iter().flatten() {
                match stages.iter_mut().find(|(n, _)| n == k) {
                    Some((_, sum)) => *sum += v.as_f64().unwrap_or(0.0),
                    None => stages.push((k.clone(), v.as_f64().unwrap_or(0.0))),
                }
            }
        }
        let stages: Vec<String> = stages.iter().map(|(n, s)| format!("{n} {:.2}s", s / r.len().max(1) as f64)).collect();
        eprintln!("  push stages (mean): {}", stages.join(", "));
    }
}

/// A non-root user (passwordless sudo) and `buildOnTarget`: the derivation
/// closure is pushed and the target's daemon builds; the local store never
/// gets the toplevel.
#[test]
fn apply_with_sudo_and_build_on_target() {
    let client = ClientHome::new();
    let t = SshTarget::start(SshdOptions { user: crate::sshd::TargetUser::Sudo, ..SshdOptions::default() }.client(&client));
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.nix");
    let nonce = nonce();
    // An HTTP health check, fetched by the deployer: first a 503, then a 200 (one retry).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut requests = Vec::new();
        // Gives up after a while, so a failed apply fails the test instead of hanging it.
        listener.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        for status in ["503 Service Unavailable", "200 OK"] {
            let mut s = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(50)),
                    Err(_) => return requests,
                }
            };
            s.set_nonblocking(false).unwrap();
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap();
            requests.push(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned());
            write!(s, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        }
        requests
    });
    write_file(
        &fleet,
        format!(
            "{{ s = {{ deployment.targetHost = \"{}\"; deployment.targetUser = \"ndeploy-sudo\"; deployment.buildOnTarget = true;\n\
               deployment.healthChecks = [ {{ http = \"http://127.0.0.1:{port}/health\"; retries = 1; timeout = 5; }} ];\n\
               environment.etc.\"nonce\".text = \"{nonce}\"; deployment.keys.k.text = \"v\"; }}; }}\n",
            t.alias
        ),
    );
    let out = run(&mut nd(&client, &fleet, &["apply", "--json", "--confirm-timeout", CONFIRM_TIMEOUT, "--target-root", TARGET_ROOT]));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server.join().unwrap(), ["GET /health HTTP/1.1", "GET /health HTTP/1.1"]);
    let r = report(&out);
    let h = host(&r, "s");
    assert_eq!(h["result"], "deployed", "{h}");
    let top = h["toplevel"].as_str().unwrap();
    assert_eq!(profile(&t).as_deref(), Some(top));
    assert_eq!(activations(&t), format!("switch {top}\n"));
    assert!(outside(&t, top).join("bin/switch-to-configuration").exists(), "built on the target");
    assert!(!Path::new(top).exists(), "not built locally");
    assert!(h["buildSecs"].as_f64().is_some());
    assert_eq!(std::fs::read_to_string(outside(&t, &format!("{TARGET_ROOT}/run/keys/k"))).unwrap(), "v");
}

/// A toplevel depending on filtered sources (`builtins.path` with a filter,
/// `builtins.filterSource`) that are not in the local store: apply
/// NAR-serialises the filtered trees itself, registers them at the paths
/// `nix-instantiate --readonly-mode` computes, builds and deploys.
#[test]
fn apply_with_filtered_sources_not_in_the_store() {
    let client = ClientHome::new();
    let t = start(&client);
    let dir = tempfile::tempdir().unwrap();
    let nonce = nonce();
    write_file(&dir.path().join("src/keep"), format!("kept {nonce}\n"));
    write_file(&dir.path().join("src/skip/secret"), "never in a store path\n");
    write_file(&dir.path().join("src/drop.tmp"), "dropped\n");
    let exprs = [
        r#"builtins.path { path = ./src; name = "filtered-src"; filter = p: t: baseNameOf p != "skip"; }"#,
        r#"builtins.filterSource (p: t: builtins.match ".*\\.tmp" p == null) ./src"#,
    ];
    let expected: Vec<String> = exprs
        .iter()
        .map(|e| {
            let out = crate::support::run_str(
                crate::support::nix("nix-instantiate").current_dir(dir.path()).args(["--readonly-mode", "--eval", "-E"]).arg(format!("\"${{{e}}}\"")),
            );
            out.trim_matches('"').to_owned()
        })
        .collect();
    for p in &expected {
        assert!(!Path::new(p).exists(), "{p} is already in the store");
    }
    let fleet = dir.path().join("fleet.nix");
    write_file(
        &fleet,
        format!(
            "{{ f = {{ deployment.targetHost = \"{}\";\n system.activationScripts.a = \"cat ${{{}}}/keep\";\n system.activationScripts.b = \"ls ${{{}}}\"; }}; }}\n",
            t.alias, exprs[0], exprs[1]
        ),
    );
    let out = run(&mut nd(&client, &fleet, &["apply", "--json", "--confirm-timeout", CONFIRM_TIMEOUT, "--target-root", TARGET_ROOT]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("f> kept {nonce}")), "{}", text(&out));
    let (by_path, by_filter) = (Path::new(&expected[0]), Path::new(&expected[1]));
    assert!(by_path.join("keep").exists() && by_path.join("drop.tmp").exists() && !by_path.join("skip").exists());
    assert!(by_filter.join("keep").exists() && by_filter.join("skip/secret").exists() && !by_filter.join("drop.tmp").exists());
    for p in &expected {
        // Registered as Nix would (valid, content-addressed), and pushed.
        let info = crate::support::run_str(crate::support::nix("nix").args(["path-info", "--json", "--extra-experimental-features", "nix-command", p]));
        assert!(info.contains("\"ca\":\"fixed:r:sha256:"), "{info}");
        assert!(outside(&t, p).join("keep").exists(), "{p} on the target");
    }
}


/// `apply` pushes through the ndeploy agent as `push` does: the first
/// generation to an empty target travels as whole NARs (the agent is
/// installed for the next push), the second through the agent, which sends
/// the toplevel's big `/etc` file as a delta against the first generation's;
/// the report says how (`pushTransfer`, `--stats`), and Nix on the target
/// verifies every path's contents.
#[test]
fn apply_updates_through_the_agent() {
    let client = ClientHome::new();
    let t = start(&client);
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.nix");
    let nonce = nonce();
    let write = |v: u32| {
        // ~180 KB of /etc text, changed in its middle by each generation.
        let blob = format!(
            "builtins.concatStringsSep \"\\n\" (builtins.genList (i: \"line ${{toString i}} ${{toString (i * i * 7919)}}\" + (if i == 4000 then \" {nonce}-{v}\" else \"\")) 8000)"
        );
        write_file(&fleet, format!("{{ web = {{ deployment.targetHost = \"{}\"; environment.etc.blob.text = {blob}; }}; }}\n", t.alias));
    };
    let apply = |extra: &[&str]| {
        let mut args = vec!["apply", "switch", "--confirm-timeout", CONFIRM_TIMEOUT, "--target-root", TARGET_ROOT];
        args.extend_from_slice(extra);
        let mut c = nd(&client, &fleet, &args);
        c.env("NDEPLOY_AGENT", crate::agent::agent_binary());
        run(&mut c)
    };
    let verify = || {
        let out = run(t.nix_store().args(["--verify", "--check-contents"]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !err.contains("error") && !err.contains("modified"), "verify: {err}");
    };

    write(1);
    let out = apply(&["--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let h = host(&report(&out), "web").clone();
    assert_eq!(h["result"], "deployed", "{h}");
    assert_eq!(h["pushTransfer"]["via"], "plain", "{h}");
    assert!(h["pushTransfer"]["fallback"].as_str().unwrap().contains("holds none of the closure"), "{h}");
    assert_eq!(h["pushTransfer"]["agentInstalled"], true, "{h}");
    verify();

    write(2);
    let out = apply(&["--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let h = host(&report(&out), "web").clone();
    assert_eq!(h["result"], "deployed", "{h}");
    let top = h["toplevel"].as_str().unwrap();
    assert_eq!(profile(&t).as_deref(), Some(top));
    let transfer = &h["pushTransfer"];
    assert_eq!(transfer["via"], "agent", "{h}");
    assert!(transfer["fallback"].is_null(), "{h}");
    assert_eq!(transfer["resentPaths"], 0, "{h}");
    assert!(transfer["delta"]["files"].as_u64().unwrap() >= 1, "the /etc file is a delta: {h}");
    let (wire, nar) = (transfer["wireBytes"].as_u64().unwrap(), h["pushedBytes"].as_u64().unwrap());
    assert!(nar > 100_000 && wire * 4 < nar, "{wire} bytes on the wire for {nar} of NAR: {h}");
    verify();

    // The table and --stats say the same in text.
    write(3);
    let out = apply(&["--agent", "--stats"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("paths, agent "), "{}", text(&out));
    assert!(stdout.lines().any(|l| l.starts_with("web: ") && l.ends_with("via agent")), "{}", text(&out));
    assert!(stdout.contains("  delta "), "{}", text(&out));
    assert!(text(&out).contains("web> pushed ") && text(&out).contains("(via agent, "), "{}", text(&out));
    verify();
}
