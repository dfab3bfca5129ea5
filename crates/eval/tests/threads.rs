//! One evaluation heap shared by 8 threads: shared thunks are forced once
//! (or concurrently, first result wins) and every thread sees the same value.

use std::sync::Arc;

use ndeploy_eval::{EvalConfig, Evaluator};

const EXPR: &str = r#"
let
  lib = rec {
    fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2);
    range = n: builtins.genList (x: x) n;
    table = builtins.listToAttrs (map (i: { name = "k${toString i}"; value = fib (i - i / 16 * 16); }) (range 300));
    total = builtins.foldl' (a: b: a + b) 0 (builtins.attrValues table);
  };
  hosts = builtins.genList (i: rec { name = "host${toString i}"; shared = lib.total; own = lib.fib 12 + i; self = name; }) 40;
in { inherit hosts; inherit (lib) total; deep = lib.table; }
"#;

#[test]
fn eight_threads_agree() {
    let ev = Arc::new(Evaluator::new(EvalConfig::default(), Arc::new(ndeploy_eval::io::MemIO::new())));
    let root = ev.eval_str(EXPR).unwrap();
    let reference = {
        let single = Evaluator::new(EvalConfig::default(), Arc::new(ndeploy_eval::io::MemIO::new()));
        let v = single.eval_str(EXPR).unwrap();
        let v = single.force_deep(&v).unwrap();
        ndeploy_eval::print::print_value(&single, &v, true).unwrap()
    };
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let ev = ev.clone();
            let root = root.clone();
            std::thread::spawn(move || {
                let v = ev.force_deep(&root).unwrap();
                ndeploy_eval::print::print_value(&ev, &v, true).unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), reference);
    }
    assert!(reference.contains("total = "), "{reference}");
}

#[test]
fn infinite_recursion_is_detected_per_thread() {
    let ev = Arc::new(Evaluator::new(EvalConfig::default(), Arc::new(ndeploy_eval::io::MemIO::new())));
    let root = ev.eval_str("let x = { a = x.a + 1; }; in x").unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let ev = ev.clone();
            let root = root.clone();
            std::thread::spawn(move || ev.force_deep(&root).map(|_| ()).unwrap_err().to_string())
        })
        .collect();
    for h in handles {
        let msg = h.join().unwrap();
        assert!(msg.contains("infinite recursion") || msg.contains("stack overflow"), "{msg}");
    }
}
