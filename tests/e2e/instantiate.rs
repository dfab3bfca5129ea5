//! `ndeploy instantiate` (without `--eval`) against `nix-instantiate` on this
//! machine: the same `.drv` paths (and `!output` suffixes) for a generated
//! 3000-derivation DAG, for derivations using every `derivationStrict`
//! feature, for store-path builtins and for the example fleet's toplevels;
//! the same `.drv` bytes in `--drv-dir` as Nix writes into /nix/store; the
//! same JSON as `nix show-derivation`; and Nix's error messages for bad input.

use std::path::{Path, PathBuf};

use crate::support::{ndeploy, nix, run, run_ok, run_str, write_file};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `nix-instantiate --readonly-mode ARGS` stdout.
fn nix_paths(args: &[&str], dir: &Path) -> String {
    run_str(nix("nix-instantiate").arg("--readonly-mode").args(args).current_dir(dir))
}

fn our_paths(args: &[&str], dir: &Path) -> String {
    run_str(ndeploy().arg("instantiate").args(args).current_dir(dir))
}

/// Both tools on the same arguments print the same derivations.
fn assert_same(args: &[&str], dir: &Path) -> String {
    let want = nix_paths(args, dir);
    assert!(!want.is_empty(), "nix-instantiate printed nothing for {args:?}");
    assert_eq!(our_paths(args, dir), want, "for {args:?}");
    want
}

/// The 3000-node DAG of benches/gen-drv-dag.sh in a fresh directory.
fn dag(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(std::process::Command::new(repo().join("benches/gen-drv-dag.sh")).arg(n.to_string()));
    let file = dir.path().join("dag.nix");
    write_file(&file, out);
    (dir, file)
}

#[test]
fn generated_dag_matches_nix_instantiate() {
    let (dir, file) = dag(3000);
    let f = file.to_str().unwrap();
    let out = assert_same(&[f], dir.path());
    assert_eq!(out.lines().count(), 3000);
    // Selected outputs of multi-output derivations are printed with `!dev`.
    assert_same(
        &["-E", &format!("let l = import {f}; in [ (builtins.elemAt l 7).dev (builtins.elemAt l 14).lib ]")],
        dir.path(),
    );
}

#[test]
fn drv_dir_holds_the_bytes_nix_writes() {
    let (dir, file) = dag(400);
    let drv_dir = dir.path().join("drvs");
    let ours = run_str(ndeploy().arg("instantiate").arg(&file).arg("--drv-dir").arg(&drv_dir));
    // Without --readonly-mode Nix writes the .drv files (and toFile texts) into the store.
    let theirs = run_str(nix("nix-instantiate").arg(&file));
    assert_eq!(ours, theirs);
    let mut compared = 0;
    for entry in std::fs::read_dir(&drv_dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name == "manifest.json" {
            continue;
        }
        let nix_bytes = std::fs::read(Path::new("/nix/store").join(&name)).unwrap();
        assert_eq!(std::fs::read(entry.path()).unwrap(), nix_bytes, "{name} differs from /nix/store/{name}");
        compared += 1;
    }
    // 400 derivations and the toFile texts (every 30th derivation).
    assert_eq!(compared, 400 + 14);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(drv_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["derivations"].as_array().unwrap().len(), 400);
    assert_eq!(manifest["texts"].as_array().unwrap().len(), 14);
}

const FEATURES_NIX: &str = r#"
let
  mk = name: attrs: derivation ({ inherit name; system = "x86_64-linux"; builder = "/bin/sh"; } // attrs);
  multi = mk "multi" { outputs = [ "bin" "out" "dev" ]; args = [ "-c" "echo $bin $out $dev" ]; };
  fixedFlat = mk "fixed-flat" { outputHashAlgo = "sha256"; outputHash = builtins.hashString "sha256" "hi"; };
  fixedRec = mk "fixed-rec" { outputHashMode = "recursive"; outputHash = "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"; };
  fixedSri = mk "fixed-sri" { outputHash = "sha512-pKvURIxJVi2CgRXROh/M6pJ/UrTVRZKX+LQ+QtqJI4vBNibkPcs43bCCSIkn7JBPtCBXRDmD6IWFF51QVRr+Yg=="; };
  fixedSha1 = mk "fixed-sha1" { outputHashAlgo = "sha1"; outputHash = "0000000000000000000000000000000000000000"; outputHashMode = "flat"; };
  structured = mk "structured" {
    __structuredAttrs = true;
    outputs = [ "out" "doc" ];
    list = [ 1 2.5 "s" true null multi.dev ./src ];
    set = { a.b = [ { } ]; "weird key" = "\n\t\"\\"; };
    exportReferencesGraph.graph = [ multi ];
  };
  passFile = mk "pass-file" { passAsFile = [ "text" ]; text = "a\nb"; allowedReferences = [ ]; allowedRequisites = [ multi.dev ]; };
  ignoreNulls = mk "ignore-nulls" { __ignoreNulls = true; gone = null; kept = 1; };
  env = mk "env-coercion" { i = 42; f = 1.5; b = true; n = null; l = [ "a" 1 [ "b" ] ]; p = ./src/a; ph = builtins.placeholder "out"; };
  filtered = builtins.path { path = ./src; name = "filtered"; filter = p: t: t != "symlink" && baseNameOf p != "skip"; };
  flat = builtins.path { path = ./src/a; recursive = false; };
  pinned = builtins.path { path = ./src/a; sha256 = "1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h"; };
  filterSrc = builtins.filterSource (p: t: t == "directory" || baseNameOf p == "a") ./src;
  text = builtins.toFile "with-refs" "${filtered} ${./src/a} ${builtins.toFile "inner" "x"}";
  users = mk "users" {
    deps = [ multi.dev multi.bin fixedFlat fixedRec fixedSri fixedSha1 structured.doc passFile ignoreNulls env ];
    srcs = [ filtered flat pinned filterSrc text ];
    whole = builtins.unsafeDiscardOutputDependency structured.drvPath;
    ctx = builtins.appendContext "" { ${builtins.unsafeDiscardStringContext multi.drvPath} = { outputs = [ "dev" ]; }; };
  };
in {
  inherit multi fixedFlat fixedRec fixedSri fixedSha1 structured passFile ignoreNulls env users;
  multiDev = multi.dev;
  all = multi.all;
  nested = { recurseForDerivations = true; inner = users; };
  skipped = { x = multi; };
}
"#;

fn features_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("default.nix"), FEATURES_NIX);
    write_file(&dir.path().join("src/a"), "hi\n");
    write_file(&dir.path().join("src/skip/b"), "b");
    write_file(&dir.path().join("src/sub/c"), "c");
    std::os::unix::fs::symlink("a", dir.path().join("src/link")).unwrap();
    dir
}

#[test]
fn derivation_features_match_nix_instantiate() {
    let dir = features_dir();
    let out = assert_same(&["default.nix"], dir.path());
    assert!(out.contains("-multi.drv!bin\n"), "{out}");
    for attr in ["users", "structured", "multiDev", "all"] {
        assert_same(&["-A", attr], dir.path());
    }
    // Paths and strings from store builtins, compared as values.
    let expr = "with import ./default.nix; [ users.outPath structured.doc.outPath multi.dev.outPath fixedRec.outPath ]";
    let want = run_str(
        nix("nix-instantiate").args(["--readonly-mode", "--eval", "--strict", "-E", expr]).current_dir(dir.path()),
    );
    let got = run_str(ndeploy().args(["instantiate", "--eval", "--strict", "-E", expr]).current_dir(dir.path()));
    assert_eq!(got, want);
}

#[test]
fn show_derivation_and_json_match_nix() {
    let dir = features_dir();
    for attr in ["users", "structured", "passFile", "fixedRec"] {
        // Nix writes the .drv (and its inputs) so that `nix show-derivation` can read it.
        let drv = run_str(nix("nix-instantiate").args(["-A", attr]).current_dir(dir.path()));
        let want = String::from_utf8(run_ok(nix("nix").args([
            "--extra-experimental-features",
            "nix-command",
            "show-derivation",
            &drv,
        ])))
        .unwrap();
        let got = String::from_utf8(run_ok(
            ndeploy().args(["instantiate", "--show-derivation", "-A", attr]).current_dir(dir.path()),
        ))
        .unwrap();
        assert_eq!(got, want, "show-derivation of {attr}");
    }
    let json = run_str(ndeploy().args(["instantiate", "--json", "-A", "multi"]).current_dir(dir.path()));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let drv = nix_paths(&["-A", "multi"], dir.path());
    assert_eq!(v[0]["drvPath"], drv.split('!').next().unwrap());
    let outs = run_str(
        nix("nix-instantiate")
            .args(["--readonly-mode", "--eval", "--strict", "--json", "-E"])
            .arg("with import ./default.nix; { bin = multi.bin.outPath; out = multi.out.outPath; dev = multi.dev.outPath; }")
            .current_dir(dir.path()),
    );
    assert_eq!(v[0]["outputs"], serde_json::from_str::<serde_json::Value>(&outs).unwrap());
}

#[test]
fn fleet_toplevels_match_nix_instantiate() {
    let root = repo();
    let expr = format!(
        "(import {0}/nix/fleet.nix).toplevels (import {0}/examples/fleet/fleet.nix)",
        root.canonicalize().unwrap().display()
    );
    let out = assert_same(&["-E", &expr], &root);
    assert_eq!(out.lines().count(), 4, "{out}");
}

/// The error `ndeploy instantiate -E expr` prints (it must fail).
fn error_of(expr: &str) -> String {
    let dir = features_dir();
    let out = run(ndeploy().args(["instantiate", "-E", expr]).current_dir(dir.path()));
    assert!(!out.status.success(), "{expr} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const MK: &str = r#"let mk = a: derivation ({ name = "x"; system = "s"; builder = "/bin/sh"; } // a); in "#;

#[test]
fn bad_input_is_reported_as_nix_reports_it() {
    let cases: &[(&str, &str)] = &[
        (
            "mk { outputHash = \"abc\"; }",
            "hash 'abc' does not include a type, nor is the type otherwise known from context",
        ),
        ("mk { outputHash = \"sha256:abc\"; }", "hash 'abc' has wrong length for hash type 'sha256'"),
        (
            "mk { outputHashAlgo = \"sha1\"; outputHash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"; }",
            "should have type 'sha1'",
        ),
        (
            "mk { outputHash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"; outputs = [ \"out\" \"dev\" ]; }",
            "multiple outputs are not supported in fixed-output derivations",
        ),
        (
            "builtins.path { path = ./src; sha256 = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"; }",
            "store path mismatch in (possibly filtered) path added from '",
        ),
        ("mk { name = \"${mk {}}\"; }", "is not allowed to refer to a store path (such as '!out!/nix/store/"),
        ("derivation { name = \"x\"; builder = \"b\"; }", "required attribute 'system' missing"),
        ("derivation { name = \"x\"; system = \"b\"; }", "required attribute 'builder' missing"),
        ("mk { outputs = [ \"out\" \"out\" ]; }", "duplicate derivation output 'out'"),
        ("mk { outputHashMode = \"foo\"; }", "invalid value 'foo' for 'outputHashMode' attribute"),
        ("mk { name = \"a.drv\"; }", "derivation names are not allowed to end in '.drv'"),
        ("mk { name = \"a b\"; }", "contains illegal character ' '"),
        (
            "builtins.toFile \"x\" \"${mk {}}\"",
            "in 'toFile': the file named 'x' must not contain a reference to a derivation",
        ),
        (
            "mk { x = builtins.appendContext \"\" { ${builtins.unsafeDiscardStringContext (mk {}).drvPath} = { outputs = [ \"bogus\" ]; }; }; }",
            "no hash for output 'bogus' of derivation 'x'",
        ),
        ("builtins.path { path = ./src; filter = p: t: throw \"no ${baseNameOf p}\"; }", "no a"),
        ("(mk {}).bogus", "attribute 'bogus' missing"),
        ("mk { outputs = [ ]; }", "list index 0 is out of bounds"),
        ("builtins.toFile \"a/b\" \"x\"", "-a/b' contains illegal character '/'"),
        ("mk { outputs = [ \"drv\" ]; }", "invalid derivation output name 'drv'"),
        ("builtins.filterSource 1 ./src", "first argument in call to 'filterSource' is not a function but an integer"),
        ("builtins.path { path = ./src; foo = 1; }", "unsupported argument 'foo' to 'addPath'"),
    ];
    for (expr, want) in cases {
        let err = error_of(&format!("{MK}{expr}"));
        assert!(err.contains(want), "{expr}:\n{err}\ndoes not contain: {want}");
    }
    // Errors in derivation attributes point at the `name` attribute, as Nix's do.
    let err = error_of("derivation { name = \"x\"; builder = \"b\"; }");
    assert!(err.contains("at «string»:1:14:"), "{err}");
}

/// `-` reads the expression from stdin, as `nix-instantiate -` does: the
/// same value, and positions name the text as Nix 2.8's do.
#[test]
fn expression_from_stdin_matches_nix() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    fn piped(mut cmd: Command, text: &str) -> String {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{cmd:?} failed");
        String::from_utf8(out.stdout).unwrap()
    }
    for text in ["{ a = 1 + 2; b = [ \"x\" ]; }\n", "__curPos\n", "builtins.unsafeGetAttrPos \"a\" { a = 1; }\n"] {
        let mut theirs = nix("nix-instantiate");
        theirs.args(["--eval", "--strict", "-"]);
        let mut ours = ndeploy();
        ours.args(["instantiate", "--eval", "--strict", "-"]);
        let want = piped(theirs, text);
        assert!(!want.is_empty());
        assert_eq!(piped(ours, text), want, "for {text:?}");
    }
}
