//! The Nix side shipped with ndeploy (`nix/`) and the example fleet
//! (`examples/fleet`), checked with C++ Nix: both fleet forms evaluate to the
//! same derivations, a toplevel builds and its `switch-to-configuration`
//! records activations under `NDEPLOY_TARGET_ROOT`, and the module system's
//! semantics and error messages match what `nix/tests/*.nix` expect.

use crate::support::{nix, run, run_ok, run_str};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// A C++ Nix tool without substituters (no network) and with flakes enabled.
fn nix_offline(tool: &str) -> Command {
    let mut c = nix(tool);
    c.env(
        "NIX_CONFIG",
        "sandbox = false\nsubstituters =\nexperimental-features = nix-command flakes\nwarn-dirty = false",
    );
    c
}

/// `nix-instantiate --eval --strict --json -E expr`, parsed.
fn eval_json(expr: &str) -> Value {
    let out = run_ok(nix_offline("nix-instantiate").args(["--eval", "--strict", "--json", "-E", expr]));
    serde_json::from_slice(&out).unwrap()
}

/// An expression yielding `nix/fleet.nix` applied to the plain example fleet.
fn plain_fleet(function: &str) -> String {
    let r = repo();
    format!("(import {}/nix/fleet.nix).{function} (import {}/examples/fleet/fleet.nix)", r.display(), r.display())
}

/// `hostsJSON` output (a JSON string holding JSON) decoded.
fn decode_hosts_json(v: Value) -> Value {
    serde_json::from_str(v.as_str().expect("hostsJSON yields a string")).unwrap()
}

fn drv_paths(hosts: &Value) -> Value {
    let map = hosts.as_object().unwrap();
    Value::Object(map.iter().map(|(k, v)| (k.clone(), v["drvPath"].clone())).collect())
}

#[test]
fn fleet_plain_and_flake_forms_agree() {
    let r = repo();
    let plain = decode_hosts_json(eval_json(&plain_fleet("hostsJSON")));

    let mut names: Vec<&String> = plain.as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names, ["db-1", "monitor-1", "web-1", "web-2"]);
    for (name, host) in plain.as_object().unwrap() {
        let drv = host["drvPath"].as_str().unwrap();
        assert!(drv.starts_with("/nix/store/") && drv.ends_with(&format!("-ndeploy-system-{name}.drv")), "{drv}");
        let out = host["outPath"].as_str().unwrap();
        assert!(out.ends_with(&format!("-ndeploy-system-{name}")), "{out}");
    }

    // The flake form, evaluated by `nix eval` from the git checkout (pure mode).
    let flake_ref = format!("{}/examples/fleet#nixosConfigurations", r.display());
    let flake_drvs: Value = serde_json::from_slice(&run_ok(nix_offline("nix").args([
        "eval",
        "--json",
        &flake_ref,
        "--apply",
        "cs: builtins.mapAttrs (n: c: c.config.system.build.toplevel.drvPath) cs",
    ])))
    .unwrap();
    assert_eq!(flake_drvs, drv_paths(&plain));

    // The same flake through nix/fleet.nix: identical hosts and deployment data.
    // (A `path:` reference would copy only examples/fleet, without ../../nix.)
    let via_fleet = decode_hosts_json(
        serde_json::from_slice(&run_ok(nix_offline("nix").args([
            "eval",
            "--impure",
            "--json",
            "--expr",
            &format!(
                "(import {}/nix/fleet.nix).hostsJSON (builtins.getFlake \"git+file://{}?dir=examples/fleet\")",
                r.display(),
                r.display()
            ),
        ])))
        .unwrap(),
    );
    assert_eq!(via_fleet, plain);

    // Each drvPath is what nix-instantiate makes of the toplevel itself.
    let direct = run_str(nix_offline("nix-instantiate").args(["-E", &format!("({}).web-2", plain_fleet("toplevels"))]));
    assert_eq!(direct, plain["web-2"]["drvPath"].as_str().unwrap());
}

#[test]
fn fleet_deployment_settings() {
    let hosts = decode_hosts_json(eval_json(&plain_fleet("hostsJSON")));
    let web1 = &hosts["web-1"]["deployment"];
    assert_eq!(web1["targetHost"], "web-1.example.internal");
    assert_eq!(web1["targetPort"], Value::Null);
    assert_eq!(web1["targetUser"], "root");
    assert_eq!(web1["tags"], json!(["web"]));
    assert_eq!(web1["buildOnTarget"], false);
    assert_eq!(
        web1["keys"]["api-token"],
        json!({
            "name": "api-token", "text": "example-token-not-a-secret", "keyFile": null,
            "destDir": "/run/keys", "path": "/run/keys/api-token", "user": "nginx", "group": "nginx",
            "permissions": "0640", "uploadAt": "pre-activation"
        })
    );
    assert_eq!(web1["keys"]["tls.key"]["keyFile"], "/etc/ndeploy-secrets/tls.key");
    assert_eq!(web1["keys"]["tls.key"]["text"], Value::Null);
    assert_eq!(web1["keys"]["tls.key"]["permissions"], "0600");
    // common.nix's check first, then web.nix's mkAfter one.
    assert_eq!(
        web1["healthChecks"],
        json!([
            {"cmd": "test -e /run/current-system", "http": null, "timeout": 10, "retries": 3},
            {"cmd": null, "http": "http://web-1.example.internal/", "timeout": 5, "retries": 5}
        ])
    );
    assert_eq!(hosts["web-2"]["deployment"]["targetHost"], "10.0.1.12");
    let db = &hosts["db-1"]["deployment"];
    assert_eq!(db["tags"], json!(["primary", "db"]));
    assert_eq!(db["keys"]["pg-password"]["path"], "/var/lib/postgresql/keys/pg-password");
    let mon = &hosts["monitor-1"]["deployment"];
    assert_eq!(mon["targetPort"], 2222);
    assert_eq!(mon["targetUser"], "deploy");
    assert_eq!(mon["buildOnTarget"], true);
    assert_eq!(mon["sshOptions"], json!(["-o", "StrictHostKeyChecking=accept-new"]));

    let r = repo().display().to_string();
    let selected = eval_json(&format!(
        "(import {r}/nix/fleet.nix).select [ \"@web\" \"monitor-1\" ] (import {r}/examples/fleet/fleet.nix)"
    ));
    assert_eq!(selected, json!(["monitor-1", "web-1", "web-2"]));
}

#[test]
fn fleet_sources_nixos_configurations_deploy_rs_and_colmena() {
    let file = repo().join("nix/tests/fleet-sources.nix");
    let got: Value = serde_json::from_slice(&run_ok(
        nix_offline("nix-instantiate").args(["--eval", "--strict", "--json"]).arg(&file),
    ))
    .unwrap();
    let deployment = |host: &str, user: &str, port: Value, tags: Value, ssh: Value, build: bool| {
        json!({
            "targetHost": host, "targetPort": port, "targetUser": user, "tags": tags,
            "buildOnTarget": build, "sshOptions": ssh, "keys": {}, "healthChecks": []
        })
    };
    let expected = json!({
        // nixosConfigurations.notASystem has no toplevel and is skipped.
        "names": ["a", "b", "c", "plain", "unnamed"],
        "deployments": {
            "a": deployment("a", "root", Value::Null, json!(["x"]), json!([]), false),
            "b": deployment("b.example", "root", Value::Null, json!([]), json!([]), true),
            "c": deployment("c", "root", json!(2022), json!(["hive"]), json!([]), false),
            "plain": deployment("plain.example", "deployer", Value::Null, json!([]), json!(["-p", "2200"]), false),
            "unnamed": deployment("unnamed", "root", Value::Null, json!([]), json!([]), false)
        },
        "deployRsToplevel": true,
        "hiveHostName": "c",
        "hiveEtc": "c",
        "select": ["c", "plain"],
        "lazyListing": { "names": ["a", "b", "broken", "c", "plain", "unnamed"], "select": ["a", "b"] }
    });
    assert_eq!(got, expected);
}

/// Build a toplevel with nix-build; returns its output path.
fn build(expr: &str) -> PathBuf {
    PathBuf::from(run_str(nix_offline("nix-build").args(["--no-out-link", "-E", expr])))
}

fn switch(toplevel: &Path, goal: &str, root: &Path) -> std::process::Output {
    run(Command::new(toplevel.join("bin/switch-to-configuration")).arg(goal).env("NDEPLOY_TARGET_ROOT", root))
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

#[test]
fn toplevel_builds_and_switch_records_activations() {
    let out = build(&format!("({}).monitor-1", plain_fleet("toplevels")));
    let hosts = decode_hosts_json(eval_json(&plain_fleet("hostsJSON")));
    assert_eq!(out.to_str().unwrap(), hosts["monitor-1"]["outPath"].as_str().unwrap());

    // Configuration files and packages.
    assert_eq!(read(out.join("etc/hostname")), "monitor-1\n");
    assert_eq!(read(out.join("etc/motd")), "Welcome to monitor-1.example.internal, deployed by ndeploy.");
    assert_eq!(read(out.join("etc/ndeploy/firewall")), "9100\n");
    let unit = read(out.join("etc/systemd/system/node-exporter.service"));
    assert!(unit.contains("ExecStart=/bin/sh /etc/ndeploy/services/node-exporter/start\n"), "{unit}");
    assert!(unit.contains("WantedBy=multi-user.target"), "{unit}");
    let passwd = read(out.join("etc/ndeploy/passwd"));
    assert!(passwd.contains("ops:x:1000:users::/home/ops:/bin/sh\n"), "{passwd}");
    let hello = run_str(&mut Command::new(out.join("sw/bin/hello")));
    assert_eq!(hello, "Hello, world!");
    let hello_version = run_str(Command::new(out.join("sw/bin/hello")).arg("--version"));
    assert_eq!(hello_version, "hello 2.12");
    // hello sources the shared core library: a runtime dependency of the system.
    let closure = run_str(nix_offline("nix-store").arg("-qR").arg(&out));
    assert!(closure.lines().any(|p| p.ends_with("-ndcore-1.0.0")), "{closure}");
    assert!(closure.lines().any(|p| p.ends_with("-hello-2.12")), "{closure}");

    let root = tempfile::tempdir().unwrap();
    let activations = root.path().join("var/lib/ndeploy/activations");

    // dry-activate changes nothing.
    let dry = switch(&out, "dry-activate", root.path());
    assert!(dry.status.success());
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);

    let sw = switch(&out, "switch", root.path());
    assert!(sw.status.success(), "{}", String::from_utf8_lossy(&sw.stderr));
    assert_eq!(read(&activations), format!("switch {}\n", out.display()));
    assert_eq!(std::fs::read_link(root.path().join("run/current-system")).unwrap(), out);
    assert_eq!(std::fs::read_link(root.path().join("var/lib/ndeploy/boot-system")).unwrap(), out);
    // The host's activation script ran with $root and $systemConfig.
    assert_eq!(read(root.path().join("var/lib/monitoring/last-system")), format!("{}\n", out.display()));

    assert!(switch(&out, "test", root.path()).status.success());
    assert!(switch(&out, "boot", root.path()).status.success());
    assert_eq!(read(&activations), format!("switch {0}\ntest {0}\nboot {0}\n", out.display()));

    let bad = switch(&out, "reboot", root.path());
    assert_eq!(bad.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("usage: switch-to-configuration"));
}

#[test]
fn failing_activation_exits_nonzero_and_is_recorded() {
    let configs = plain_fleet("configurations");
    let good = build(&format!("({configs}).web-1.config.system.build.toplevel"));
    let failing = build(&format!(
        "(({configs}).web-1.extendModules {{ modules = [ {{ system.activationShouldFail = true; }} ]; }}).config.system.build.toplevel"
    ));
    assert_ne!(good, failing);

    let root = tempfile::tempdir().unwrap();
    assert!(switch(&good, "switch", root.path()).status.success());
    let res = switch(&failing, "switch", root.path());
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr).contains("system.activationShouldFail"));
    // The failed activation left the running system alone...
    assert_eq!(std::fs::read_link(root.path().join("run/current-system")).unwrap(), good);
    // ...and a rollback is one more switch to the previous toplevel.
    assert!(switch(&good, "switch", root.path()).status.success());
    assert_eq!(
        read(root.path().join("var/lib/ndeploy/activations")),
        format!("switch {0}\nswitch {1}\nswitch {0}\n", good.display(), failing.display())
    );
    // dry-activate of the failing system still changes nothing and succeeds.
    let dry_root = tempfile::tempdir().unwrap();
    assert!(switch(&failing, "dry-activate", dry_root.path()).status.success());
    assert_eq!(std::fs::read_dir(dry_root.path()).unwrap().count(), 0);
}

#[test]
fn module_semantics() {
    let file = repo().join("nix/tests/semantics.nix");
    let out = run_ok(nix_offline("nix-instantiate").args(["--eval", "--strict", "--json"]).arg(&file));
    let got: Value = serde_json::from_slice(&out).unwrap();
    let expected = json!({
        "priorities": {
            "default": "default",
            "mkDefault": "soft",
            "plainOverMkDefault": "plain",
            "mkForceOverPlain": "forced",
            "mkOverrideLowest": 2,
            "listDefaultReplaced": ["mine"],
            "listMkDefaultDropped": ["hard"],
            "equalDefinitionsAgree": "same"
        },
        "conditions": {
            "mkIfTrue": "yes",
            "mkIfFalseKeepsDefault": "default",
            "selfReferential": "enabled",
            "pushedDown": ["big", 5],
            "pushedDownFalse": 1,
            "mkMergeOfConditions": ["a", "c"],
            "mkIfInsideAttrsOf": { "kept": 1 }
        },
        "ordering": {
            "listBeforeAfter": ["first", "middle", "last"],
            "linesOrder": "a\nb\nc",
            "moduleOrder": ["one", "two", "three"]
        },
        "submodules": {
            "attrsOfSubmodule": {
                "alice": { "name": "alice", "uid": 1000, "home": "/home/alice", "groups": ["wheel", "users"] },
                "bob": { "name": "bob", "uid": null, "home": "/home/bob", "groups": [] }
            },
            "nameOverridesHome": "/home/caroline",
            "submoduleAsFunction": 4,
            "listOfSubmodule": [
                { "cmd": "true", "retries": 3 },
                { "cmd": "false", "retries": 0 }
            ],
            "mkIfInsideSubmodule": { "name": "erin", "uid": null, "home": "/home/erin", "groups": ["g"] },
            "declarationsMerge": { "name": "frank", "uid": 7, "home": "/home/frank", "groups": [], "shell": "/bin/sh" }
        },
        "imports": {
            "dedup": ["imported-once"],
            "moduleArgs": "hi",
            "specialArgs": "from-special-args",
            "explicitConfigAndOptions": [1, 4]
        },
        "types": {
            "nullOrSet": "set",
            "nullOrUnset": null,
            "eitherInt": 3,
            "eitherStr": "three",
            "enumValue": "fast",
            "portValue": 65535,
            "anythingMerges": { "a": 1, "b": { "c": true }, "l": [1, 2] },
            "pathString": "/srv/data",
            "pathIsPath": true,
            "packageName": "hello-2.12",
            "anythingProperties": { "a": { "c": 2 }, "d": { "e": 3 } },
            "apply": "ABc",
            "readOnlyDefault": "fixed"
        },
        "options": {
            "nameIsDefined": true,
            "nameHighestPrio": 100,
            "nameValue": "alpha",
            "nameFiles": ["conflict-a.nix"],
            "countIsDefined": false,
            "nestedLoc": ["nested", "deep", "value"]
        },
        "extendModules": [1, 2]
    });
    // Case by case first, for a readable failure.
    for (group, cases) in expected.as_object().unwrap() {
        match cases.as_object() {
            Some(cases) => {
                for (case, want) in cases {
                    assert_eq!(&got[group][case], want, "case {group}.{case}");
                }
            }
            None => assert_eq!(&got[group], cases, "case {group}"),
        }
    }
    assert_eq!(got, expected);
}

#[test]
fn module_errors_name_option_value_and_file() {
    let r = repo();
    let file = r.join("nix/tests/errors.nix");
    let modules = r.join("nix/tests/modules");
    let m = |f: &str| format!("In '{}/{f}'", modules.display());
    let here = format!("In '{}'", file.display());
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "undefinedOption",
            vec!["The option 'nested.deep.valeu' does not exist".into(), format!("{}: 2", m("typo.nix"))],
        ),
        (
            "typeMismatch",
            vec![
                "A definition for option 'count' is not of type 'signed integer'".into(),
                format!("{}: \"three\"", m("bad-type.nix")),
            ],
        ),
        (
            "conflictingDefinitions",
            vec![
                "The option 'name' has conflicting definition values".into(),
                format!("{}: \"alpha\"", m("conflict-a.nix")),
                format!("{}: \"beta\"", m("conflict-b.nix")),
                "mkForce".into(),
            ],
        ),
        (
            "uniqueDefinedTwice",
            vec!["The option 'raw' is defined multiple times while it's expected to be unique".into()],
        ),
        ("usedButNotDefined", vec!["The option 'count' was accessed but has no value defined".into()]),
        (
            "listElementType",
            vec![
                "A definition for option 'list.\"[definition 1-entry 2]\"' is not of type 'string'".into(),
                format!("{here}: 42"),
            ],
        ),
        (
            "relativePath",
            vec!["A definition for option 'file' is not of type 'path'".into(), format!("{here}: \"relative/path\"")],
        ),
        ("notAPackage", vec!["A definition for option 'package' is not of type 'null or package'".into()]),
        (
            "portOutOfRange",
            vec!["not of type '16 bit unsigned integer; between 0 and 65535".into(), format!("{here}: 70000")],
        ),
        ("enumValue", vec!["not of type 'one of \"fast\", \"safe\"'".into(), format!("{here}: \"reckless\"")]),
        ("nullOrConflict", vec!["The option 'maybe' is defined both null and not null".into()]),
        (
            "mkIfNotBool",
            vec![format!("{here}: the condition of mkIf for option 'name' must be a Boolean, but it is: \"yes\"")],
        ),
        ("readOnlySetTwice", vec!["The option 'fixed' is read-only, but it is set multiple times".into()]),
        (
            "submoduleUndefinedOption",
            vec!["The option 'users.alice.shel' does not exist".into(), format!("{here}: \"/bin/sh\"")],
        ),
        ("namespaceNotAttrs", vec!["the definition of 'nested' must be an attribute set".into()]),
        ("declaredTwice", vec!["The option 'count' is declared more than once".into(), "options.nix".into()]),
        (
            "moduleNotAttrs",
            vec!["is not a module (a path, a function or an attribute set) but has type int: 42".into()],
        ),
        ("configWithStrayAttribute", vec!["has an unsupported attribute 'count'".into()]),
        ("missingModuleArgument", vec!["takes the argument 'nonexistent'".into()]),
        (
            "keyWithoutSource",
            vec![
                "Failed assertions:".into(),
                "deployment.keys.secret: exactly one of text and keyFile must be set.".into(),
            ],
        ),
        (
            "badHostName",
            vec!["A definition for option 'networking.hostName' is not of type".into(), "\"not a hostname\"".into()],
        ),
    ];
    let listed = eval_json(&format!("builtins.attrNames (import {})", file.display()));
    assert_eq!(listed.as_array().unwrap().len(), cases.len(), "every case in errors.nix is checked");
    for (case, needles) in cases {
        let out = run(nix_offline("nix-instantiate").args(["--eval", "--strict"]).arg(&file).args(["-A", case]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{case} evaluated: {}", String::from_utf8_lossy(&out.stdout));
        // Nix indents continuation lines of the message.
        let message: String = stderr.lines().map(str::trim_start).collect::<Vec<_>>().join("\n");
        for needle in needles {
            assert!(message.contains(&needle), "{case}: expected {needle:?} in:\n{stderr}");
        }
    }
}

#[test]
fn synthetic_benchmark_fleet_evaluates() {
    let r = repo().display().to_string();
    let hosts = decode_hosts_json(eval_json(&format!(
        "(import {r}/nix/fleet.nix).hostsJSON (import {r}/nix/tests/synthetic-fleet.nix {{ hosts = 3; modules = 30; }})"
    )));
    let map = hosts.as_object().unwrap();
    assert_eq!(map.keys().collect::<Vec<_>>(), ["host-0", "host-1", "host-2"]);
    assert_eq!(hosts["host-0"]["deployment"]["tags"], json!(["even"]));
    assert_eq!(hosts["host-1"]["deployment"]["tags"], json!(["odd"]));
    let mut drvs: Vec<&str> = map.values().map(|h| h["drvPath"].as_str().unwrap()).collect();
    drvs.sort_unstable();
    drvs.dedup();
    assert_eq!(drvs.len(), 3);
    // Module 1 is enabled on host-0 only (h mod 5 == 0): its config file exists there.
    let etc = eval_json(&format!(
        "builtins.mapAttrs (_: c: c.config.environment.etc ? \"bench/m1.conf\") ((import {r}/nix/fleet.nix).configurations (import {r}/nix/tests/synthetic-fleet.nix {{ hosts = 2; modules = 30; }}))"
    ));
    assert_eq!(etc, json!({ "host-0": true, "host-1": false }));
}

#[test]
fn library_helpers() {
    let file = repo().join("nix/tests/lib.nix");
    let got: Value = serde_json::from_slice(&run_ok(
        nix_offline("nix-instantiate").args(["--eval", "--strict", "--json"]).arg(&file),
    ))
    .unwrap();
    let expected = json!({
        "lists": {
            "imap0": ["0a", "1b"], "imap1": [10, 40], "optional": [[1], []], "last": 3, "init": [1, 2],
            "take": [1, 2], "reverseList": [3, 2, 1], "flatten": [1, 2, 3], "unique": [3, 1, 2],
            "range": [2, 3, 4, 5], "count": 2,
            "sortOn": [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}, {"k": 2, "v": "c"}],
            "toList": [[1], [1]]
        },
        "attrsets": {
            "filterAttrs": {"b": 2, "c": 3}, "mapAttrsToList": ["a1", "b2"], "mapAttrs'": {"x-a": 2},
            "concatMapAttrs": {"a": 1, "a2": 1, "b": 2, "b2": 2}, "genAttrs": {"a": "aa", "b": "bb"},
            "attrByPath": [1, 0, 0], "hasAttrByPath": true, "setAttrByPath": {"a": {"b": 1}},
            "recursiveUpdate": {"a": {"b": 3, "c": 2}, "d": {"e": 4}},
            "mapAttrsRecursive": {"a": {"b": "a.b=1"}, "c": "c=2"}
        },
        "strings": {
            "hasPrefix": [true, false], "hasSuffix": [true, false], "removePrefix": "web",
            "splitString": ["a", "b", "", "c"], "escapeShellArg": "'it'\\''s'", "escapeShellArgs": "'a b' 'c'",
            "concatLines": "a\nb\n", "fixedWidthString": "0007", "showOption": "users.users.\"a.b\".uid",
            "showValue": ["\"s\"", "1", "true", "null", "[ 1 [ … ] { … } ]", "{ a = …; }", "mkIf …", "«lambda»"]
        },
        "trivial": { "mod": [1, 0], "minMax": [1, 2], "boolToString": "true" }
    });
    assert_eq!(got, expected);
}
