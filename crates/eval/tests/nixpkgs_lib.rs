//! nixpkgs' library tests, when a checkout of nixpkgs.lib is given in
//! `NIXPKGS_LIB` (never committed here): `lib/tests/misc.nix` must evaluate
//! to `[ ]`. Derivations belong to the store layer; this test supplies a
//! Nix-level stand-in through the `add_builtin` hook, so the few lib tests
//! that inspect real derivation paths are not what this checks.

use std::sync::Arc;

use ndeploy_eval::io::{ReadOnlyStore, RealIO};
use ndeploy_eval::{EvalConfig, Evaluator};

const DERIVATION_STAND_IN: &str = r#"
attrs: let
  name = attrs.name;
  outs = attrs.outputs or [ "out" ];
  base = attrs // { type = "derivation"; drvAttrs = attrs; drvPath = "/nix/store/00000000000000000000000000000000-${name}.drv"; };
  mk = o: base // { outPath = "/nix/store/00000000000000000000000000000000-${name}-${o}"; outputName = o; };
  all = builtins.listToAttrs (map (o: { name = o; value = mk o; }) outs);
in (mk (builtins.head outs)) // all // { all = builtins.attrValues all; }
"#;

#[test]
fn misc_nix_evaluates_to_empty_list() {
    let Ok(lib) = std::env::var("NIXPKGS_LIB") else {
        eprintln!("NIXPKGS_LIB not set; skipping");
        return;
    };
    let mut ev = Evaluator::new(EvalConfig::default(), Arc::new(RealIO));
    ev.store = Some(Arc::new(ReadOnlyStore::new("/nix/store")));
    let drv = ev.eval_str(DERIVATION_STAND_IN).unwrap();
    ev.add_builtin("derivation", drv, true);
    let path = format!("{lib}/lib/tests/misc.nix");
    let whole = ev.eval_file(&path).and_then(|v| ev.force_deep(&v));
    let out = whole.as_ref().map(|v| ndeploy_eval::print::print_value(&ev, v, true).unwrap());
    if out.as_deref().ok() == Some("[ ]") {
        return;
    }
    // Find the failing tests one by one (the whole run stops at the first error).
    let text = std::fs::read_to_string(&path).unwrap().replace("\nrunTests {", "\n(x: x) {");
    let e = ev.compile_str_as_file(&text, &path).unwrap();
    let tests = ev.eval(&e, ev.root_env_pub()).unwrap();
    let tests = ev.force_attrs(&tests).unwrap();
    let mut failed = Vec::new();
    for t in tests.iter() {
        let r = ev.force_attrs(&t.value).and_then(|a| {
            let x = ev.force_deep(a.get_str("expr").unwrap())?;
            let y = ev.force_deep(a.get_str("expected").unwrap())?;
            ev.equal(&x, &y)
        });
        match r {
            Ok(true) => {}
            Ok(false) => failed.push(format!("{}: not equal", t.name)),
            Err(e) => failed.push(format!("{}: {}", t.name, e.render(false).lines().next().unwrap_or(""))),
        }
    }
    panic!("misc.nix: {:?}\n{} failing tests:\n{}", out.map_err(|e| e.render(false)), failed.len(), failed.join("\n"));
}

/// `lib.evalModules` over a few hundred generated options gives the same JSON
/// as C++ Nix (when `nix-instantiate` can evaluate that lib).
#[test]
fn eval_modules_matches_nix() {
    let Ok(lib) = std::env::var("NIXPKGS_LIB") else {
        eprintln!("NIXPKGS_LIB not set; skipping");
        return;
    };
    let generator = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/gen-modules.sh");
    let out = std::process::Command::new(generator).args([lib.as_str(), "300"]).output().unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mods.nix");
    std::fs::write(&file, &out.stdout).unwrap();
    let ev = Evaluator::new(EvalConfig::default(), Arc::new(RealIO));
    let v = ev.eval_file(file.to_str().unwrap()).map_err(|e| e.render(true)).unwrap();
    let v = ev.force_deep(&v).map_err(|e| e.render(true)).unwrap();
    let ours = ndeploy_eval::builtins::to_json_string(&ev, &v).unwrap();
    assert!(ours.contains("\"o299\":true"), "{ours}");
    let nix = std::process::Command::new("nix-instantiate").args(["--eval", "--strict", "--json"]).arg(&file).output();
    match nix {
        Ok(o) if o.status.success() => assert_eq!(ours, String::from_utf8(o.stdout).unwrap().trim_end()),
        _ => eprintln!("nix-instantiate cannot evaluate this lib; compared nothing"),
    }
}
