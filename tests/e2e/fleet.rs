//! `ndeploy eval` against C++ Nix: the example fleet (flake and plain
//! forms) and generated fleets give every host the drvPath and outPath
//! `nix-instantiate` computes for the same expression (`nix/fleet.nix`'s
//! `hostsJSON`); a failing host is reported with its message while the
//! others succeed; selectors pick the right hosts; `--json` is valid JSON
//! lines; results do not depend on `-j`, `--collect-every` or
//! `--collect-frames` (cycle collections between rounds of hosts on one
//! heap); 200 hosts on 8 threads, 5 times,
//! without a difference or a hang.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{nix, ndeploy, run, run_ok, write_file};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn example() -> PathBuf {
    repo().join("examples/fleet")
}

/// `ndeploy eval` using the repository's `nix/` (so Nix and we read the same files).
fn eval_cmd() -> Command {
    let mut c = ndeploy();
    c.arg("eval").arg("--no-progress").env("NDEPLOY_NIX_DIR", repo().join("nix"));
    c
}

/// Parse JSON lines, asserting each is one complete object with the fields.
fn json_lines(stdout: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(stdout.to_vec()).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid JSON line {l:?}: {e}"));
            for k in ["host", "targetHost", "tags", "error", "evalMs"] {
                assert!(v.get(k).is_some(), "field {k} missing in {l}");
            }
            v
        })
        .collect()
}

/// By host, without the timing field.
fn by_host(lines: Vec<Value>) -> BTreeMap<String, Value> {
    lines
        .into_iter()
        .map(|mut v| {
            v.as_object_mut().unwrap().remove("evalMs");
            (v["host"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// C++ Nix's `hostsJSON` for a fleet source expression.
fn nix_hosts(source: &str) -> BTreeMap<String, Value> {
    let expr = format!("(import {}/nix/fleet.nix).hostsJSON ({source})", repo().display());
    let out = run_ok(nix("nix-instantiate").args(["--eval", "--strict", "--json", "-E", &expr]));
    let s: String = serde_json::from_slice(&out).unwrap();
    serde_json::from_str(&s).unwrap()
}

/// Every host agrees with Nix on drvPath, outPath, targetHost and tags.
fn assert_same_as_nix(ours: &BTreeMap<String, Value>, theirs: &BTreeMap<String, Value>) {
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
    for (host, t) in theirs {
        let o = &ours[host];
        assert_eq!(o["error"], Value::Null, "{host}: {}", o["error"]);
        assert_eq!(o["drvPath"], t["drvPath"], "{host}");
        assert_eq!(o["outPath"], t["outPath"], "{host}");
        assert_eq!(o["targetHost"], t["deployment"]["targetHost"], "{host}");
        assert_eq!(o["tags"], t["deployment"]["tags"], "{host}");
    }
}

/// Run with a deadline: a hang is a failure, not a stuck test run.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut { stdout }, &mut buf).unwrap();
        buf
    });
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    Output { stdout: reader.join().unwrap(), ..out }
}

/// A generated fleet (benches/fleet/generate.rs); `packages` = 0: without
/// a package set of its own.
fn generated_fleet(hosts: usize, modules: usize, packages: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_ok(ndeploy().args(["bench", "gen-fleet", "--hosts", &hosts.to_string(), "--modules", &modules.to_string()]).args([
        "--packages",
        &packages.to_string(),
    ]).arg(dir.path()));
    dir
}

#[test]
fn example_fleet_plain_form_matches_nix() {
    let ours = by_host(json_lines(&run_ok(eval_cmd().args(["--json", "--file"]).arg(example().join("fleet.nix")))));
    let theirs = nix_hosts(&format!("import {}/fleet.nix", example().display()));
    assert_eq!(ours.len(), 4);
    assert_same_as_nix(&ours, &theirs);
}

#[test]
fn example_fleet_flake_form_from_its_directory() {
    // `ndeploy eval --all` in examples/fleet: discovers flake.nix.
    let ours = by_host(json_lines(&run_ok(eval_cmd().args(["--all", "--json"]).current_dir(example()))));
    let theirs = nix_hosts(&format!("import {}/fleet.nix", example().display()));
    assert_same_as_nix(&ours, &theirs);
    // The same through C++ Nix's flake evaluation.
    let flake = format!("git+file://{}?dir=examples/fleet", repo().display());
    let out = run_ok(nix("nix").args([
        "--extra-experimental-features",
        "nix-command flakes",
        "eval",
        "--json",
        &format!("{flake}#nixosConfigurations"),
        "--apply",
        "cs: builtins.mapAttrs (n: c: c.config.system.build.toplevel.drvPath) cs",
    ]));
    let nix_drvs: BTreeMap<String, String> = serde_json::from_slice(&out).unwrap();
    for (h, d) in &nix_drvs {
        assert_eq!(ours[h]["drvPath"], json!(d), "{h}");
    }
}

#[test]
fn fresh_machine_without_nix() {
    // No nix on PATH (only git, which reads the flake's checkout), an
    // empty cache: the embedded library is materialised.
    let cache = tempfile::tempdir().unwrap();
    let bin = cache.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let git = String::from_utf8(run_ok(Command::new("sh").args(["-c", "command -v git"]))).unwrap();
    std::os::unix::fs::symlink(git.trim(), bin.join("git")).unwrap();
    let out = run(ndeploy()
        .args(["eval", "--all", "--no-progress"])
        .current_dir(example())
        .env_clear()
        .env("PATH", &bin)
        .env("HOME", cache.path())
        .env("XDG_CACHE_HOME", cache.path()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    let theirs = nix_hosts(&format!("import {}/fleet.nix", example().display()));
    for (host, t) in &theirs {
        let row = table.lines().find(|l| l.starts_with(&format!("{host} "))).unwrap_or_else(|| panic!("{table}"));
        assert!(row.ends_with(t["drvPath"].as_str().unwrap()), "{row}");
    }
    let libs: Vec<_> = std::fs::read_dir(cache.path().join("ndeploy"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("nix-"))
        .collect();
    assert_eq!(libs.len(), 1);
    assert!(libs[0].path().join("fleet.nix").is_file());
}

#[test]
fn generated_50_host_fleet_matches_nix() {
    let dir = generated_fleet(50, 20, 0);
    let ours = by_host(json_lines(&run_ok(eval_cmd().args(["--json", "-j", "2", "--file"]).arg(dir.path().join("fleet.nix")))));
    let theirs = nix_hosts(&format!("import {}/fleet.nix", dir.path().display()));
    assert_eq!(ours.len(), 50);
    assert_same_as_nix(&ours, &theirs);
    let mut drvs: Vec<&Value> = ours.values().map(|v| &v["drvPath"]).collect();
    drvs.sort_by_key(|v| v.to_string());
    drvs.dedup();
    assert_eq!(drvs.len(), 50, "every host's toplevel differs");
}

/// A generated fleet with its own package set (hosts share it as `pkgs`,
/// each toplevel depends on a base and a role closure of it): the same
/// drvPaths as Nix, also with collections between rounds of two hosts
/// (the package set's values are shared and must survive them).
#[test]
fn generated_fleet_with_a_package_set_matches_nix() {
    let dir = generated_fleet(12, 6, 60);
    let file = dir.path().join("fleet.nix");
    let theirs = nix_hosts(&format!("import {}", file.display()));
    for args in [&["-j", "2"][..], &["-j", "2", "--collect-every", "2"][..]] {
        let ours = by_host(json_lines(&run_ok(eval_cmd().arg("--json").args(args).arg("--file").arg(&file))));
        assert_eq!(ours.len(), 12);
        assert_same_as_nix(&ours, &theirs);
    }
    // The package set really is in the toplevels' closures: host-0 (a
    // web host) depends on the web role's first package and on most of
    // the set (60 packages, 120 derivations with their sources).
    let text = std::fs::read_to_string(dir.path().join("roles/web.nix")).unwrap();
    let attr = text.lines().find_map(|l| l.trim().strip_prefix("pkgs.")).unwrap().to_string();
    let expr = format!("(import {}/pkgs {{ }}).{attr}.drvPath", dir.path().display());
    let web: String = serde_json::from_slice(&run_ok(nix("nix-instantiate").args(["--eval", "--json", "-E", &expr]))).unwrap();
    // (nix-instantiate writes the .drv files `--eval` only computes.)
    let expr = format!("((import {}/nix/fleet.nix).toplevels (import {})).host-0", repo().display(), file.display());
    let drv = String::from_utf8(run_ok(nix("nix-instantiate").args(["-E", &expr]))).unwrap();
    let drv = drv.trim();
    assert_eq!(drv, theirs["host-0"]["drvPath"]);
    let closure = String::from_utf8(run_ok(nix("nix-store").args(["--query", "--requisites", drv]))).unwrap();
    assert!(closure.lines().any(|l| l == web), "{web} not in host-0's closure");
    let from_set = closure.lines().filter(|l| l.ends_with(".tar.gz.drv")).count();
    assert!(from_set > 30, "{from_set} sources in host-0's closure");
}

const BROKEN_FLEET: &str = r#"{
  meta.system = "x86_64-linux";
  good-1 = { deployment.tags = [ "ok" ]; };
  good-2 = { lib, ... }: { networking.domain = "example.org"; };
  broken = { lib, ... }: {
    environment.etc."secret".text = throw "broken host: the secret is missing";
  };
}
"#;

#[test]
fn failing_host_is_reported_and_others_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.nix");
    write_file(&file, BROKEN_FLEET);
    let out = run(eval_cmd().args(["--json", "--file"]).arg(&file));
    assert_eq!(out.status.code(), Some(1), "any failure fails the command");
    let ours = by_host(json_lines(&out.stdout));
    let err = ours["broken"]["error"].as_str().unwrap();
    assert!(err.contains("broken host: the secret is missing"), "{err}");
    assert!(err.contains(&file.display().to_string()), "the error has its position: {err}");
    assert_eq!(ours["broken"]["drvPath"], Value::Null);
    let theirs = nix_hosts(&format!("removeAttrs (import {}) [ \"broken\" ]", file.display()));
    let good: BTreeMap<String, Value> = ours.into_iter().filter(|(h, _)| h != "broken").collect();
    assert_same_as_nix(&good, &theirs);

    // The table shows the failure in its row and the full message after.
    let out = run(eval_cmd().arg("--file").arg(&file));
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8(out.stdout).unwrap();
    let row = table.lines().find(|l| l.starts_with("broken ")).unwrap();
    assert!(row.contains("error: broken host: the secret is missing"), "{table}");
    assert!(table.contains("\nbroken: error: broken host: the secret is missing"), "{table}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 hosts evaluated, 1 failed (broken)"));
}

fn selected(args: &[&str]) -> Vec<String> {
    let out = run_ok(eval_cmd().args(["--json", "--file"]).arg(example().join("fleet.nix")).args(args));
    let mut hosts: Vec<String> = json_lines(&out).iter().map(|v| v["host"].as_str().unwrap().to_string()).collect();
    hosts.sort();
    hosts
}

#[test]
fn selectors_pick_hosts() {
    assert_eq!(selected(&["--on", "@web"]), ["web-1", "web-2"]);
    assert_eq!(selected(&["--on", "db-*,@monitoring"]), ["db-1", "monitor-1"]);
    assert_eq!(selected(&["--on", "@primary", "--on", "web-2"]), ["db-1", "web-2"]);
    assert_eq!(selected(&["web-1", "monitor-?"]), ["monitor-1", "web-1"]);
    assert_eq!(selected(&["--all"]), ["db-1", "monitor-1", "web-1", "web-2"]);
    let out = run(eval_cmd().args(["--file"]).arg(example().join("fleet.nix")).args(["--on", "@web,@nope"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no host matches @nope"), "{err}");
}

#[test]
fn attr_and_expr_over_the_fleet() {
    let out = run_ok(
        eval_cmd().args(["--json", "--attr", "config.networking.fqdn", "--file"]).arg(example().join("fleet.nix")),
    );
    let ours = by_host(json_lines(&out));
    let expr = format!(
        "builtins.mapAttrs (_: c: c.config.networking.fqdn) ((import {}/nix/fleet.nix).configurations (import {}/fleet.nix))",
        repo().display(),
        example().display()
    );
    let theirs: BTreeMap<String, Value> =
        serde_json::from_slice(&run_ok(nix("nix-instantiate").args(["--eval", "--strict", "--json", "-E", &expr]))).unwrap();
    assert_eq!(theirs.len(), 4);
    for (h, v) in &theirs {
        assert_eq!(&ours[h]["value"], v, "{h}");
    }
    let out = run(eval_cmd().args(["--json", "--attr", "config.no.such", "web-1", "--file"]).arg(example().join("fleet.nix")));
    assert_eq!(out.status.code(), Some(1));
    let err = json_lines(&out.stdout)[0]["error"].as_str().unwrap().to_string();
    assert!(err.contains("attribute 'config.no' missing in host 'web-1'"), "{err}");

    let out = run_ok(eval_cmd().args(["--file"]).arg(example().join("fleet.nix")).args([
        "-E",
        "{ nodes, lib, ... }: lib.mapAttrs (n: c: c.config.deployment.targetPort) nodes",
    ]));
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v, json!({ "db-1": null, "monitor-1": 2222, "web-1": null, "web-2": null }));
    let out = run_ok(eval_cmd().args(["--file"]).arg(example().join("fleet.nix")).args([
        "-E",
        "{ pkgs, nodes, ... }: [ pkgs.hello.name (builtins.length nodes.web-1.config.environment.systemPackages) ]",
    ]));
    let v: Value = serde_json::from_slice(&out).unwrap();
    let expr = format!(
        "let n = (import {r}/nix/fleet.nix).configurations (import {}/fleet.nix); pkgs = (import {r}/nix).pkgsFor builtins.currentSystem; in [ pkgs.hello.name (builtins.length n.web-1.config.environment.systemPackages) ]",
        example().display(),
        r = repo().display()
    );
    let theirs: Value = serde_json::from_slice(&run_ok(nix("nix-instantiate").args(["--eval", "--strict", "--json", "-E", &expr]))).unwrap();
    assert_eq!(v, theirs);
}

#[test]
fn results_do_not_depend_on_threads() {
    // A small package set: its derivations are shared thunks that
    // threads force at the same time.
    let dir = generated_fleet(40, 10, 30);
    let file = dir.path().join("fleet.nix");
    let one = by_host(json_lines(&run_ok(eval_cmd().args(["--json", "-j", "1", "--file"]).arg(&file))));
    let eight = by_host(json_lines(&run_ok(eval_cmd().args(["--json", "-j", "8", "--file"]).arg(&file))));
    assert_eq!(one.len(), 40);
    assert_eq!(one, eight);
    // Nor on cycle collections between rounds of hosts (none, or every
    // 3 hosts on 2 threads, so shared values survive many collections).
    let never = by_host(json_lines(&run_ok(eval_cmd().args(["--json", "--collect-every", "0", "--file"]).arg(&file))));
    let often =
        by_host(json_lines(&run_ok(eval_cmd().args(["--json", "-j", "2", "--collect-every", "3", "--file"]).arg(&file))));
    // Or by young heap: a collection whenever one host per thread is done.
    let young =
        by_host(json_lines(&run_ok(eval_cmd().args(["--json", "-j", "3", "--collect-frames", "1", "--file"]).arg(&file))));
    assert_eq!(one, never);
    assert_eq!(one, often);
    assert_eq!(one, young);
    // The table (sorted by host) is byte-identical too.
    let t1 = run_ok(eval_cmd().args(["-j", "1", "--file"]).arg(&file));
    let t8 = run_ok(eval_cmd().args(["-j", "8", "--file"]).arg(&file));
    assert_eq!(String::from_utf8(t1).unwrap(), String::from_utf8(t8).unwrap());
}

/// Collection by epochs is sound on a real fleet with a package set, on 8
/// threads with a collection every 2 hosts: at every round's end the
/// trial-deletion collector leaves no thunk or frame of a finished host
/// alive and no host node was forced in the shared epoch
/// (NDEPLOY_EPOCH_CHECK=1); and each host cleared by its thread when it
/// ends (the default: a cleared node reached by another host would be an
/// internal error in its result), host epochs cleared at round ends, trial
/// deletion and no collection give the same results.
#[test]
fn epoch_collection_is_checked_on_a_generated_fleet() {
    let dir = generated_fleet(30, 8, 40);
    let file = dir.path().join("fleet.nix");
    let args = ["--json", "-j", "8", "--collect-every", "2", "--file"];
    let out = run(eval_cmd().args(args).arg(&file).env("NDEPLOY_EPOCH_CHECK", "1"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("epoch check: 0 host nodes alive after round ends, 0 violations"), "{err}");
    assert!(!err.contains("(0 collections)"), "{err}");
    let checked = by_host(json_lines(&out.stdout));
    let epochs = by_host(json_lines(&run_ok(eval_cmd().args(args).arg(&file))));
    let trial = by_host(json_lines(&run_ok(eval_cmd().args(args).arg(&file).env("NDEPLOY_COLLECTOR", "trial"))));
    let rounds = by_host(json_lines(&run_ok(eval_cmd().args(args).arg(&file).env("NDEPLOY_COLLECTOR", "epoch-rounds"))));
    let never = by_host(json_lines(&run_ok(eval_cmd().args(["--json", "--collect-every", "0", "--file"]).arg(&file))));
    assert_eq!(checked.len(), 30);
    assert_eq!(checked, never);
    assert_eq!(epochs, never);
    assert_eq!(trial, never);
    assert_eq!(rounds, never);
}

#[test]
fn stress_200_hosts_8_threads_5_times() {
    let dir = generated_fleet(200, 4, 24);
    let file = dir.path().join("fleet.nix");
    let mut first: Option<BTreeMap<String, Value>> = None;
    for round in 0..5 {
        let out = run_with_timeout(eval_cmd().args(["--json", "-j", "8", "--file"]).arg(&file), Duration::from_secs(600));
        assert!(out.status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stderr));
        let got = by_host(json_lines(&out.stdout));
        assert_eq!(got.len(), 200);
        match &first {
            None => first = Some(got),
            Some(f) => assert!(f == &got, "round {round} differs"),
        }
    }
}

#[test]
fn colmena_hive_output_counts_as_configurations() {
    // A flake's `colmenaHive` (colmena's makeHive) holds evaluated
    // configurations in `nodes`; nixosConfigurations of the same name win.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("outputs.nix");
    let r = repo().display().to_string();
    write_file(
        &file,
        format!(
            r#"let
  ndeploy = import {r}/nix;
  host = name: tags: ndeploy.nixosSystem {{
    system = "x86_64-linux";
    modules = [ {{ networking.hostName = name; deployment.tags = tags; }} ];
  }};
in {{
  colmenaHive = {{ __schema = "v0"; nodes = {{ a = host "a" [ "hive" ]; b = host "b" [ "hive" ]; }}; }};
  nixosConfigurations.b = host "b" [ "flake" ];
}}
"#
        ),
    );
    let ours = by_host(json_lines(&run_ok(eval_cmd().args(["--json", "--file"]).arg(&file))));
    let theirs = nix_hosts(&format!(
        "let o = import {}; in {{ nixosConfigurations = o.colmenaHive.nodes // o.nixosConfigurations; }}",
        file.display()
    ));
    assert_same_as_nix(&ours, &theirs);
    assert_eq!(ours["b"]["tags"], json!(["flake"]));
}

/// colmena evaluates hive nodes with `meta.nixpkgs.path + "/nixos/lib/eval-config.nix"`;
/// so does ndeploy: with ndeploy's package set as `meta.nixpkgs` (its
/// `path` is the library, which provides that file), and with a foreign
/// package set (a stand-in for nixpkgs given as a path, imported and
/// called with `{ }` as colmena does), whose eval-config gets ndeploy's
/// deployment options added.
#[test]
fn hive_nodes_use_the_package_sets_eval_config() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo().display().to_string();
    let node = r#"a = { pkgs, ... }: { deployment.tags = [ "x" ]; environment.systemPackages = [ pkgs.hello ]; };"#;
    let own = dir.path().join("own.nix");
    write_file(&own, format!("{{ meta.nixpkgs = import {r}/nix/pkgs {{ system = \"x86_64-linux\"; }}; {node} }}\n"));
    let plain = dir.path().join("plain.nix");
    write_file(&plain, format!("{{ meta.system = \"x86_64-linux\"; {node} }}\n"));
    write_file(
        &dir.path().join("fakepkgs/nixos/lib/eval-config.nix"),
        format!(
            "# Stands in for NixOS: ndeploy's system without the deployment module, plus a marker.\n\
             args: import {r}/nix/system.nix (args // {{\n\
               baseModules = builtins.filter (m: baseNameOf (toString m) != \"deployment.nix\") (import {r}/nix/modules/module-list.nix);\n\
               modules = args.modules ++ [ {{ environment.etc.foreign.text = \"yes\"; }} ];\n\
             }})\n"
        ),
    );
    write_file(
        &dir.path().join("fakepkgs/default.nix"),
        format!("{{ ... }}: (import {r}/nix/pkgs {{ system = \"x86_64-linux\"; }}) // {{ path = ./.; }}\n"),
    );
    let foreign = dir.path().join("foreign.nix");
    write_file(&foreign, format!("{{ meta.nixpkgs = ./fakepkgs; {node} }}\n"));

    let eval = |f: &Path| by_host(json_lines(&run_ok(eval_cmd().args(["--json", "--file"]).arg(f))));
    let (o, p, f) = (eval(&own), eval(&plain), eval(&foreign));
    for (ours, file) in [(&o, &own), (&p, &plain), (&f, &foreign)] {
        assert_same_as_nix(ours, &nix_hosts(&format!("import {}", file.display())));
        assert_eq!(ours["a"]["tags"], json!(["x"]));
    }
    // ndeploy's own eval-config is its system.nix: the same system.
    assert_eq!(o["a"]["drvPath"], p["a"]["drvPath"]);
    assert_ne!(o["a"]["drvPath"], f["a"]["drvPath"]);
    let out = run_ok(eval_cmd().args(["--json", "--attr", "config.environment.etc.foreign.text", "--file"]).arg(&foreign));
    assert_eq!(by_host(json_lines(&out))["a"]["value"], json!("yes"));
}

/// A fleet file that is a function gets `--arg`/`--argstr` values (only
/// those it names, as `nix-instantiate` passes them).
#[test]
fn fleet_functions_take_arg_and_argstr() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.nix");
    write_file(
        &file,
        r#"{ prefix ? "h", count }:
builtins.listToAttrs (builtins.genList (i: {
  name = "${prefix}${toString i}";
  value = { deployment.tags = [ "of-${toString count}" ]; };
}) count)
"#,
    );
    let out = run_ok(eval_cmd().args(["--json", "--arg", "count", "1 + 1", "--argstr", "prefix", "web", "--arg", "unused", "true", "--file"]).arg(&file));
    let ours = by_host(json_lines(&out));
    assert_same_as_nix(&ours, &nix_hosts(&format!("import {} {{ count = 2; prefix = \"web\"; }}", file.display())));
    assert_eq!(ours["web1"]["tags"], json!(["of-2"]));
    let out = run(eval_cmd().arg("--file").arg(&file));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'count'"), "{}", String::from_utf8_lossy(&out.stderr));
}
