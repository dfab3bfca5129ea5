//! Derivations against C++ Nix: for `.drv` files written by `nix-instantiate`
//! (and every `.drv` in their closure), `ndeploy_store` must parse and print
//! them back byte for byte, compute the same `.drv` path, recompute the same
//! output paths from a copy with the outputs blanked (via
//! `hashDerivationModulo`), and print the same JSON as `nix show-derivation`;
//! `ndeploy store show-derivation --check` must accept them and reject
//! tampered copies.

use std::collections::BTreeSet;
use std::path::Path;

use ndeploy_store::derivation::{Derivation, DerivationOutput, ModuloHashCache, json};
use ndeploy_store::store_path::{StoreDir, StorePath};

use crate::support::{ndeploy, nix, run, run_ok, run_str, write_file};

fn store() -> StoreDir {
    StoreDir::default()
}

/// Experimental features for floating content-addressed and impure derivations.
const FEATURES: &str = "ca-derivations impure-derivations";

/// `mk name attrs`: a derivation with a `/bin/sh` builder that is never built.
const PRELUDE: &str = r#"
let mk = name: attrs: derivation ({ inherit name; system = "x86_64-linux"; builder = "/bin/sh"; } // attrs);
    abc = algo: builtins.hashString algo "abc";
in "#;

/// Instantiate `expr` (with `mk` in scope) in a fresh directory holding
/// `files`; returns the `.drv` paths `nix-instantiate` prints.
fn instantiate(expr: &str, files: &[(&str, &str)]) -> Vec<StorePath> {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        write_file(&dir.path().join(name), contents);
    }
    let file = dir.path().join("default.nix");
    write_file(&file, format!("{PRELUDE}{expr}"));
    let out = run_str(nix("nix-instantiate").args(["--extra-experimental-features", FEATURES]).arg(&file));
    out.lines().map(|l| store().parse(l.split('!').next().unwrap()).unwrap()).collect()
}

/// All `.drv` files in the closure of `drvs`.
fn drv_closure(drvs: &[StorePath]) -> BTreeSet<StorePath> {
    let mut cmd = nix("nix-store");
    cmd.arg("-qR").args(drvs.iter().map(|d| store().display(d)));
    run_str(&mut cmd).lines().map(|l| store().parse(l).unwrap()).filter(|p| p.is_derivation()).collect()
}

fn read_drv(p: &StorePath) -> Result<Derivation, anyhow::Error> {
    let bytes = std::fs::read(store().display(p))?;
    Ok(Derivation::parse_drv_file(&store(), p, &bytes)?)
}

/// `drv` with its outputs as `derivationStrict` starts them: paths unknown,
/// output env vars empty.
fn blanked(drv: &Derivation) -> Derivation {
    let mut b = drv.clone();
    for (name, out) in b.outputs.iter_mut() {
        if let DerivationOutput::InputAddressed { .. } = out {
            *out = DerivationOutput::Deferred;
        }
        b.env.insert(name.clone(), String::new());
    }
    b
}

/// Check one `.drv` file against Nix; inputs' hashes are memoised in `cache`.
fn check_drv(cache: &mut ModuloHashCache, path: &StorePath) {
    let dir = store();
    let shown = dir.display(path);
    let bytes = std::fs::read(&shown).unwrap();
    let drv = Derivation::parse_drv_file(&dir, path, &bytes).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&drv.to_aterm(&dir).unwrap()),
        String::from_utf8_lossy(&bytes),
        "{shown} prints back byte-identically"
    );
    assert_eq!(drv.drv_path(&dir).unwrap(), *path, "drv path of {shown}");
    for input in drv.input_drvs.keys() {
        cache.hash_path(&dir, input, read_drv).unwrap();
    }
    let mut recomputed = blanked(&drv);
    recomputed.compute_output_paths(&dir, |p| cache.lookup(p)).unwrap();
    assert_eq!(recomputed, drv, "output paths of {shown} recomputed from a blanked copy");
    assert_eq!(recomputed.drv_path(&dir).unwrap(), *path);
    cache.add(&dir, path.clone(), &drv).unwrap();
}

/// `nix show-derivation` output for `drvs` (recursively with `-r`).
fn nix_show(drvs: &[StorePath], recursive: bool) -> String {
    let mut cmd = nix("nix");
    cmd.args(["--extra-experimental-features", &format!("nix-command {FEATURES}"), "show-derivation"]);
    if recursive {
        cmd.arg("-r");
    }
    cmd.args(drvs.iter().map(|d| store().display(d)));
    String::from_utf8(run_ok(&mut cmd)).unwrap()
}

/// Run every check on the derivations `expr` instantiates and their closure;
/// returns the top-level `.drv` paths.
fn check_expr(expr: &str, files: &[(&str, &str)]) -> Vec<StorePath> {
    let top = instantiate(expr, files);
    assert!(!top.is_empty());
    let closure = drv_closure(&top);
    let mut cache = ModuloHashCache::new();
    for p in &closure {
        check_drv(&mut cache, p);
    }
    // JSON for the whole closure at once, byte for byte.
    let drvs: Vec<(StorePath, Derivation)> = closure.iter().map(|p| (p.clone(), read_drv(p).unwrap())).collect();
    let refs: Vec<(StorePath, &Derivation)> = drvs.iter().map(|(p, d)| (p.clone(), d)).collect();
    assert_eq!(json::show_derivations(&store(), &refs).unwrap(), nix_show(&top, true));
    // The CLI, on each top-level derivation, and on the whole closure.
    for p in &top {
        let out = run_ok(ndeploy().args(["store", "show-derivation", "--check"]).arg(store().display(p)));
        assert_eq!(String::from_utf8(out).unwrap(), nix_show(std::slice::from_ref(p), false));
    }
    let out = run_ok(ndeploy().args(["store", "show-derivation", "--check", "-r"]).args(top.iter().map(|p| store().display(p))));
    assert_eq!(String::from_utf8(out).unwrap(), nix_show(&top, true));
    top
}

/// `ndeploy store show-derivation --check` on a copy of `drv` (in a temp dir,
/// same file name) with `from` replaced by `to` must fail.
fn assert_tampered_copy_fails(drv: &StorePath, from: &str, to: &str) {
    let bytes = std::fs::read_to_string(store().display(drv)).unwrap();
    assert!(bytes.contains(from), "{from} in {bytes}");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(drv.to_string());
    write_file(&copy, bytes.replacen(from, to, 1));
    let out = run(ndeploy().args(["store", "show-derivation", "--check"]).arg(&copy));
    assert!(!out.status.success(), "tampered copy {from} -> {to} passed --check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("should be") || stderr.contains("canonical"), "{stderr}");
    // The untampered copy passes.
    write_file(&copy, &bytes);
    run_ok(ndeploy().args(["store", "show-derivation", "--check"]).arg(&copy));
}

#[test]
fn simple_derivation() {
    let top = check_expr(r#"mk "simple" { args = [ "-c" "true" ]; }"#, &[]);
    assert_tampered_copy_fails(&top[0], r#""-c""#, r#""-e""#);
}

#[test]
fn multiple_outputs() {
    let top = check_expr(r#"mk "multi" { outputs = [ "out" "dev" "bin" "lib" ]; }"#, &[]);
    let drv = read_drv(&top[0]).unwrap();
    assert_eq!(drv.outputs.keys().collect::<Vec<_>>(), ["bin", "dev", "lib", "out"]);
    let dev = drv.output_path(&store(), "dev").unwrap().unwrap();
    assert!(dev.name().ends_with("multi-dev"));
    assert_tampered_copy_fails(&top[0], &store().display(&dev), &store().display(&dev).replace("multi-dev", "multi-dex"));
}

#[test]
fn dag_with_non_default_outputs() {
    let expr = r#"
      let a = mk "a" { outputs = [ "out" "dev" "doc" ]; };
          b = mk "b" { dep = a.dev; };
          c = mk "c" { outputs = [ "lib" "out" ]; x = a.doc; y = b; };
          f = mk "f" { outputHash = abc "sha256"; outputHashAlgo = "sha256"; dep = a; };
      in mk "top" { deps = [ a.out a.dev b c.lib c.out f ]; }"#;
    let top = check_expr(expr, &[]);
    let drv = read_drv(&top[0]).unwrap();
    assert_eq!(drv.input_drvs.len(), 4);
    let outs: BTreeSet<&str> = drv.input_drvs.values().flatten().map(String::as_str).collect();
    assert_eq!(outs, BTreeSet::from(["dev", "lib", "out"]));
    assert_tampered_copy_fails(&top[0], r#"("name","top")"#, r#"("name","tip")"#);
}

#[test]
fn fixed_outputs() {
    let expr = r#"[
      (mk "flat-md5" { outputHashAlgo = "md5"; outputHash = abc "md5"; })
      (mk "flat-sha1" { outputHashAlgo = "sha1"; outputHash = abc "sha1"; })
      (mk "flat-sha256" { outputHashAlgo = "sha256"; outputHash = abc "sha256"; })
      (mk "flat-sha512" { outputHashAlgo = "sha512"; outputHash = abc "sha512"; })
      (mk "rec-sha256" { outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = abc "sha256"; })
      (mk "rec-sha1" { outputHashMode = "recursive"; outputHashAlgo = "sha1"; outputHash = abc "sha1"; })
      (mk "sri" { outputHash = "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="; })
      (mk "nix32" { outputHashAlgo = "sha256"; outputHash = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"; })
      (mk "uses-fixed" { a = mk "inner" { outputHashAlgo = "sha1"; outputHash = abc "sha1"; }; })
    ]"#;
    let top = check_expr(expr, &[]);
    assert_eq!(top.len(), 9);
    let kinds: Vec<String> = top[..8]
        .iter()
        .map(|p| read_drv(p).unwrap().outputs["out"].hash_algo_field())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(kinds, ["md5", "r:sha1", "r:sha256", "sha1", "sha256", "sha512"]);
    // Changing the hash in the output tuple only: the printed path no longer
    // matches the file, and `out` in the environment is stale.
    let sha1 = "a9993e364706816aba3e25717850c26c9cd0d89d";
    let flat_sha1 = top.iter().find(|p| p.name() == "flat-sha1.drv").unwrap();
    assert_tampered_copy_fails(flat_sha1, &format!(r#""sha1","{sha1}""#), &format!(r#""sha1","{}""#, sha1.replace('a', "b")));
}

#[test]
fn structured_attrs() {
    let expr = r#"mk "structured" { __structuredAttrs = true; outputs = [ "out" "lib" ]; list = [ 1 2 "x" ]; nested = { a = "\n\"q\""; }; }"#;
    let top = check_expr(expr, &[]);
    let drv = read_drv(&top[0]).unwrap();
    assert!(drv.env.contains_key("__json") && !drv.env.contains_key("name"));
    assert_tampered_copy_fails(&top[0], r#"[1,2,\"x\"]"#, r#"[1,3,\"x\"]"#);
}

#[test]
fn pass_as_file() {
    let top = check_expr(r#"mk "paf" { passAsFile = [ "big" "other" ]; big = "lots of text\n"; other = "x"; }"#, &[]);
    assert_eq!(read_drv(&top[0]).unwrap().env["passAsFile"], "big other");
}

#[test]
fn input_sources() {
    let expr = r#"mk "srcs" { src = ./file.txt; dir = ./sub; t = builtins.toFile "t.txt" "hi there"; }"#;
    let top = check_expr(expr, &[("file.txt", "hello\n"), ("sub/x", "x\n")]);
    let drv = read_drv(&top[0]).unwrap();
    let names: BTreeSet<&str> = drv.input_srcs.iter().map(StorePath::name).collect();
    assert_eq!(names, BTreeSet::from(["file.txt", "sub", "t.txt"]));
    let src = store().display(drv.input_srcs.iter().find(|p| p.name() == "file.txt").unwrap());
    assert!(Path::new(&src).exists());
}

#[test]
fn unicode_and_escapes() {
    let expr = r#"mk "esc" {
      e = "\n\t\"\\ üñí €😀 \r $ \${x}";
      "key with\nnewline" = "v";
      args = [ "\"" "\\" "\\n" "" ];
      ctl = builtins.fromJSON "\"\\u0001\\u0008\\u000c\\u001f\\u007f\"";
    }"#;
    let top = check_expr(expr, &[]);
    let drv = read_drv(&top[0]).unwrap();
    assert_eq!(drv.env["e"], "\n\t\"\\ üñí €😀 \r $ ${x}");
    assert_eq!(drv.args, ["\"", "\\", "\\n", ""]);
    assert_eq!(drv.env["ctl"], "\u{1}\u{8}\u{c}\u{1f}\u{7f}");
    assert_tampered_copy_fails(&top[0], "€", "¢");
}

/// Inputs with equal modulo hashes merge: fixed-output sources that differ
/// only in how they fetch give identical intermediates (same output paths),
/// so a parent taking `out` and `dev` from two different intermediates gets
/// the same output path as one taking both from a single intermediate.
#[test]
fn equal_modulo_hashes_merge() {
    let expr = r#"
      let src = builder: mk "source" { inherit builder; outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = abc "sha256"; };
          int = src: mk "intermediate" { outputs = [ "out" "dev" ]; inherit src; builder = "/bin/intermediate"; };
          first = int (src "/bin/first");
          second = int (src "/bin/second");
      in [ (mk "parent" { a = first.out; b = second.dev; }) (mk "parent" { a = first.out; b = first.dev; }) ]"#;
    let top = check_expr(expr, &[]);
    let (split, joined) = (read_drv(&top[0]).unwrap(), read_drv(&top[1]).unwrap());
    assert_ne!(top[0], top[1]);
    assert_eq!(split.input_drvs.len(), 2);
    assert_eq!(joined.input_drvs.len(), 1);
    assert_eq!(split.outputs, joined.outputs);
    let mut cache = ModuloHashCache::new();
    let (h_split, h_joined) = (
        cache.hash_modulo(&store(), &split, true, read_drv).unwrap(),
        cache.hash_modulo(&store(), &joined, true, read_drv).unwrap(),
    );
    assert_eq!(h_split, h_joined);
}

/// Floating content-addressed and impure derivations: outputs without paths,
/// and everything depending on them has deferred outputs.
#[test]
fn floating_and_impure_derivations() {
    let expr = r#"
      let ca = mk "ca" { __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputs = [ "out" "dev" ]; };
          imp = mk "imp" { __impure = true; };
          dep = mk "dep" { x = ca.dev; };
          plain = mk "plain" { };
      in [ (mk "top" { y = dep; z = plain; }) (mk "top2" { y = imp; }) ]"#;
    let top = check_expr(expr, &[]);
    for p in &top {
        let drv = read_drv(p).unwrap();
        assert_eq!(drv.outputs["out"], DerivationOutput::Deferred);
        assert_eq!(drv.env["out"], "");
    }
}

/// A deterministic pseudo-random DAG of 200 derivations: random outputs,
/// random dependencies on random outputs of earlier ones, some fixed-output.
#[test]
fn generated_dag() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let all_outputs = ["out", "dev", "lib", "bin", "doc"];
    let mut outputs_of: Vec<Vec<&str>> = Vec::new();
    let mut expr = String::from("let\n");
    for i in 0..200 {
        if i > 0 && next(10) == 0 {
            let algo = ["sha1", "sha256", "sha512", "md5"][next(4) as usize];
            let mode = if next(2) == 0 { "flat" } else { "recursive" };
            // Equal hashes across fixed drvs are intended: they share a modulo hash.
            let dep = next(i);
            expr += &format!(
                "  d{i} = mk \"d{i}\" {{ outputHashAlgo = \"{algo}\"; outputHashMode = \"{mode}\"; outputHash = abc \"{algo}\"; dep = d{dep}; v = \"{}\"; }};\n",
                next(3)
            );
            outputs_of.push(vec!["out"]);
            continue;
        }
        let mut outs = vec!["out"];
        for o in &all_outputs[1..] {
            if next(4) == 0 {
                outs.push(o);
            }
        }
        let mut deps = Vec::new();
        for _ in 0..next(5).min(i) {
            let d = next(i) as usize;
            let o = outputs_of[d][next(outputs_of[d].len() as u64) as usize];
            deps.push(format!("d{d}.{o}"));
        }
        let outs_nix: Vec<String> = outs.iter().map(|o| format!("\"{o}\"")).collect();
        expr += &format!(
            "  d{i} = mk \"d{i}\" {{ outputs = [ {} ]; deps = [ {} ]; n = \"{i}\"; }};\n",
            outs_nix.join(" "),
            deps.join(" ")
        );
        outputs_of.push(outs);
    }
    let every: Vec<String> = (0..200).map(|i| format!("d{i}")).collect();
    expr += &format!("in mk \"all\" {{ deps = [ {} ]; }}", every.join(" "));
    let top = check_expr(&expr, &[]);
    assert_eq!(drv_closure(&top).len(), 201);
    // A fresh memoised walk from the top reads each derivation once.
    let mut reads = 0;
    let mut cache = ModuloHashCache::new();
    cache
        .hash_path(&store(), &top[0], |p| {
            reads += 1;
            read_drv(p)
        })
        .unwrap();
    assert_eq!((reads, cache.len()), (201, 201));
}

/// C++ Nix and ndeploy agree under another store directory (`NIX_STORE_DIR`),
/// and `--check` rejects a `.drv` file whose name does not match its contents.
#[test]
fn custom_store_dir() {
    let root = tempfile::tempdir().unwrap();
    let store_dir = root.path().join("store");
    let env = |cmd: &mut std::process::Command| {
        cmd.env("NIX_STORE_DIR", &store_dir)
            .env("NIX_STATE_DIR", root.path().join("state"))
            .env("NIX_LOG_DIR", root.path().join("log"));
    };
    let file = root.path().join("default.nix");
    write_file(
        &file,
        format!(r#"{PRELUDE}let a = mk "a" {{ outputs = [ "out" "dev" ]; }}; in mk "b" {{ x = a.dev; y = builtins.toFile "y" "y"; }}"#),
    );
    let mut cmd = nix("nix-instantiate");
    env(&mut cmd);
    let drv_path = run_str(cmd.arg(&file));
    let dir = StoreDir::new(store_dir.to_str().unwrap());
    let p = dir.parse(&drv_path).unwrap();
    let drv = Derivation::parse_drv_file(&dir, &p, &std::fs::read(&drv_path).unwrap()).unwrap();
    assert_eq!(drv.drv_path(&dir).unwrap(), p);

    let mut show = nix("nix");
    env(&mut show);
    let expected = run_ok(show.args(["--extra-experimental-features", "nix-command", "show-derivation", &drv_path]));
    let mut ours = ndeploy();
    env(&mut ours);
    assert_eq!(run_ok(ours.args(["store", "show-derivation", "--check", &drv_path])), expected);

    // The same bytes under another name in the store: the name is wrong.
    let renamed = format!("{}/{}-b.drv", dir.as_str(), "0".repeat(32));
    std::fs::copy(&drv_path, &renamed).unwrap();
    let mut ours = ndeploy();
    env(&mut ours);
    let out = run(ours.args(["store", "show-derivation", "--check", &renamed]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("hash to drv path '{drv_path}'")), "{stderr}");
}

/// Malformed files fail with the byte offset, not a panic.
#[test]
fn malformed_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    for (contents, offset) in [("Derive([(\"out\",", 15), ("Derive([],[],[],\"x\",\"/b\",[],[]) trailing", 31), ("nonsense", 0)] {
        let file = dir.path().join("bad.drv");
        write_file(&file, contents);
        let out = run(ndeploy().args(["store", "show-derivation"]).arg(&file));
        assert_eq!(out.status.code(), Some(1), "{contents}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("malformed derivation at byte {offset}")), "{stderr}");
    }
}

/// `builtins.readFile` of a store path gives a string whose context is the
/// path's references, as Nix's `queryPathInfo` reports them: for a `.drv`
/// file Nix wrote, for a `toFile` text (written by an earlier Nix run, made
/// again by the expression, or only named: then the store's database is
/// asked), for a file inside a store path and for an added file without
/// references.
#[test]
fn read_file_of_store_paths_carries_references() {
    let nonce = std::process::id();
    let drv = instantiate(&format!(r#"mk "rf-top-{nonce}" {{ dep = mk "rf-dep" {{ }}; src = ./s; }}"#), &[("s", "x")]);
    let drv = store().display(&drv[0]);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(r#"builtins.toFile "rf-text-{nonce}" "uses ${{builtins.toFile "rf-dep" "d"}}""#);
    // Without --readonly-mode Nix writes the texts into the store.
    run_ok(nix("nix-instantiate").args(["--eval", "--read-write-mode", "-E", &text]));
    // A text this evaluation never makes: only the database knows its references.
    let other = format!(r#"builtins.toFile "rf-other-{nonce}" "uses ${{builtins.toFile "rf-dep" "d"}}""#);
    let written = run_str(nix("nix-instantiate").args(["--eval", "--read-write-mode", "-E", &other]));
    let written = written.trim_matches('"');
    write_file(&dir.path().join("plain"), "plain\n");
    let added = run_str(nix("nix-store").arg("--add").arg(dir.path().join("plain")));
    write_file(&dir.path().join("tree/f"), "in a tree\n");
    let tree = run_str(nix("nix-store").arg("--add").arg(dir.path().join("tree")));
    let expr = format!(
        r#"let ctx = s: builtins.getContext s; t = {text}; in
           [ (ctx (builtins.readFile {drv})) (builtins.readFile {drv} == builtins.unsafeDiscardStringContext (builtins.readFile {drv}))
             (ctx (builtins.readFile t)) (builtins.readFile t)
             (ctx (builtins.readFile {added})) (ctx (builtins.readFile {tree}/f))
             (ctx (builtins.readFile {written})) ]"#
    );
    let args = ["--eval", "--strict", "-E", expr.as_str()];
    let want = run_str(nix("nix-instantiate").arg("--readonly-mode").args(args));
    assert!(want.contains("-rf-dep.drv\" = { path = true; }"), "{want}");
    assert!(want.contains("-rf-dep\" = { path = true; }"), "{want}");
    assert!(want.ends_with("-rf-dep\" = { path = true; }; } ]"), "{want}");
    let got = run_str(ndeploy().arg("instantiate").args(args));
    assert_eq!(got, want);
    // A file holding a NUL cannot be a Nix string: the same error as Nix.
    write_file(&dir.path().join("nul"), b"a\0b");
    let expr = format!("builtins.readFile {}", dir.path().join("nul").display());
    let first_line = |out: std::process::Output| {
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or_default().to_owned()
    };
    let want = first_line(run(nix("nix-instantiate").args(["--eval", "-E", &expr])));
    assert!(want.contains("cannot be represented as a Nix string"), "{want}");
    assert_eq!(first_line(run(ndeploy().args(["instantiate", "--eval", "-E", &expr]))), want);
}

/// `<nix/fetchurl.nix>` (Nix's built-in file, not on any search path): the
/// same fixed-output derivations as Nix's for each way of giving the hash.
#[test]
fn builtin_fetchurl_nix_matches_nix() {
    let calls = [
        r#"{ url = "http://example.org/a/file.tar.gz"; sha256 = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"; }"#,
        r#"{ url = "http://example.org/x"; hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; unpack = true; name = "n"; }"#,
        r#"{ url = "http://example.org/y"; sha1 = "a9993e364706816aba3e25717850c26c9cd0d89d"; executable = true; }"#,
        r#"{ url = "http://example.org/z"; md5 = "900150983cd24fb0d6963f7d28e17f72"; }"#,
    ];
    let expr = format!("map (import <nix/fetchurl.nix>) [ {} ]", calls.join(" "));
    let want = run_str(nix("nix-instantiate").args(["--readonly-mode", "-E", &expr]));
    assert_eq!(want.lines().count(), 4, "{want}");
    assert_eq!(run_str(ndeploy().args(["instantiate", "-E", &expr])), want);
}
