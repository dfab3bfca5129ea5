//! Criterion benchmarks of the evaluator on the `exprs/` workloads (scaled
//! down so a run stays short). `compare.sh` compares full-size runs with
//! `nix-instantiate --eval --strict`.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ndeploy_eval::io::MemIO;
use ndeploy_eval::{EvalConfig, Evaluator};

const CASES: &[(&str, &str)] = &[
    ("fib20", "let fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2); in fib 20"),
    (
        "foldl_attrset_2k",
        "builtins.length (builtins.attrNames (builtins.foldl' (acc: i: acc // { \"k${toString i}\" = i; }) { } (builtins.genList (x: x) 2000)))",
    ),
    ("concat_strings_20k", "builtins.stringLength (builtins.concatStringsSep \",\" (builtins.genList (i: toString i) 20000))"),
    ("genlist_100k", "builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x * 2) 100000)"),
];

fn bench(c: &mut Criterion) {
    for (name, expr) in CASES {
        c.bench_function(name, |b| {
            b.iter(|| {
                let ev = Evaluator::new(EvalConfig::default(), Arc::new(MemIO::new()));
                let v = ev.eval_str(expr).unwrap();
                ev.force_deep(&v).unwrap()
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
