//! Runs every `cases/*.nix` strictly and compares with `*.exp` (printed
//! value, recorded from `nix-instantiate --eval --strict`) or `*.err.exp` (a
//! substring of the rendered error).

use std::path::Path;
use std::sync::Arc;

use ndeploy_eval::io::{ReadOnlyStore, RealIO};
use ndeploy_eval::{EvalConfig, Evaluator};

fn evaluator() -> Evaluator {
    let mut ev = Evaluator::new(EvalConfig::default(), Arc::new(RealIO));
    ev.store = Some(Arc::new(ReadOnlyStore::new("/nix/store")));
    ev
}

fn run(ev: &Evaluator, file: &Path) -> Result<String, String> {
    let v = ev.eval_file(file.to_str().unwrap()).map_err(|e| e.render(true))?;
    let v = ev.force_deep(&v).map_err(|e| e.render(true))?;
    ndeploy_eval::print::print_value(ev, &v, true).map_err(|e| e.render(true))
}

#[test]
fn cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nix"))
        .collect();
    files.sort();
    assert!(files.len() > 40, "cases missing");
    let mut failures = Vec::new();
    for f in &files {
        let ev = evaluator();
        let exp = f.with_extension("exp");
        let err_exp = f.with_extension("err.exp");
        let got = run(&ev, f);
        if exp.exists() {
            let want = std::fs::read_to_string(&exp).unwrap();
            match got {
                Ok(s) if s.trim_end() == want.trim_end() => {}
                Ok(s) => failures.push(format!("{}: got {s}\n  want {}", f.display(), want.trim_end())),
                Err(e) => failures.push(format!("{}: unexpected error {e}", f.display())),
            }
        } else if err_exp.exists() {
            let want = std::fs::read_to_string(&err_exp).unwrap();
            match got {
                // Nix prints strerror's text alone, never Rust's " (os error N)".
                Err(e) if e.contains("(os error") => failures.push(format!("{}: error {e}\n  has Rust's os error suffix", f.display())),
                Err(e) if e.contains(want.trim_end()) => {}
                Err(e) => failures.push(format!("{}: error {e}\n  does not contain {}", f.display(), want.trim_end())),
                Ok(s) => failures.push(format!("{}: expected an error, got {s}", f.display())),
            }
        } else {
            failures.push(format!("{}: no .exp or .err.exp", f.display()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), files.len(), failures.join("\n"));
}

#[test]
fn errors_show_position_and_source_line() {
    let ev = evaluator();
    let e = ev.eval_str("let\n  a = 1;\n  b = a.x;\nin\n  b").unwrap_err();
    let text = e.render(false);
    assert!(text.starts_with("error: value is an integer while a set was expected"), "{text}");
    assert!(text.contains("at «string»:3:7:"), "{text}");
    assert!(text.contains("            3|   b = a.x;\n             |       ^"), "{text}");
}

#[test]
fn in_memory_io() {
    let io = ndeploy_eval::io::MemIO::new()
        .with_file("/p/default.nix", "{ x = import ./lib.nix 2; y = builtins.readFile ./data.txt; d = builtins.readDir ./.; }")
        .with_file("/p/lib.nix", "n: n * 21")
        .with_file("/p/data.txt", "hello");
    let ev = Evaluator::new(EvalConfig::default(), Arc::new(io));
    let v = ev.eval_file("/p").unwrap();
    let v = ev.force_deep(&v).unwrap();
    let s = ndeploy_eval::print::print_value(&ev, &v, true).unwrap();
    assert_eq!(s, r#"{ d = { "data.txt" = "regular"; "default.nix" = "regular"; "lib.nix" = "regular"; }; x = 42; y = "hello"; }"#);
}

#[test]
fn deep_input_fails_cleanly_or_works() {
    let ev = evaluator();
    let chain = vec!["1"; 100_000].join(" + ");
    match ev.eval_str(&chain) {
        Ok(v) => assert!(matches!(v, ndeploy_eval::Value::Int(100_000))),
        Err(e) => assert!(e.to_string().contains("nested too deeply"), "{e}"),
    }
    let lists = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let e = ev.eval_str(&lists).unwrap_err();
    assert!(e.to_string().contains("nested too deeply"), "{e}");
    let ok = vec!["1"; 5_000].join(" + ");
    assert!(matches!(ev.eval_str(&ok).unwrap(), ndeploy_eval::Value::Int(5_000)));
}

/// Lazy printing (`nix-instantiate --eval` without `--strict`) shows a
/// delayed attribute as `<CODE>`: expressions that Nix delays must stay
/// delayed, however cheap (outputs recorded from Nix 2.8).
#[test]
fn lazy_printing_shows_code() {
    let cases = [
        ("let s = { a = 1; }; in builtins.seq s { x = s.a; y = [ s.a ]; }", "{ x = <CODE>; y = <CODE>; }"),
        ("{ a = [ 1 2 ]; b = { c = 1; }; d = 1; e = \"s\"; }", "{ a = <CODE>; b = <CODE>; d = 1; e = \"s\"; }"),
        ("let v = 2; in builtins.seq v { x = v; }", "{ x = 2; }"),
    ];
    for (expr, want) in cases {
        let ev = evaluator();
        let v = ev.eval_str(expr).unwrap();
        assert_eq!(ndeploy_eval::print::print_value(&ev, &v, false).unwrap(), want, "{expr}");
    }
}

/// Nix 2.8 names a position in an `-E` expression by the expression's text
/// (outputs from `nix-instantiate --eval --strict -E` 2.8).
#[test]
fn string_positions_name_the_source_text() {
    let ev = evaluator();
    let show = |src: &str| {
        let v = ev.eval_str(src).unwrap();
        let v = ev.force_deep(&v).unwrap();
        ndeploy_eval::print::print_value(&ev, &v, true).unwrap()
    };
    assert_eq!(
        show("let x = 1; in\n builtins.unsafeGetAttrPos \"a\" {a=1;}"),
        r#"{ column = 33; file = "let x = 1; in\n builtins.unsafeGetAttrPos \"a\" {a=1;}"; line = 2; }"#
    );
    assert_eq!(show("__curPos"), r#"{ column = 1; file = "__curPos"; line = 1; }"#);
}
