//! Reference cycles through recursive bindings are broken when the
//! evaluator is dropped, and acyclic garbage is freed at once.

use std::sync::Arc;

use ndeploy_eval::io::MemIO;
use ndeploy_eval::{EvalConfig, Evaluator, Value};

fn evaluator() -> Evaluator {
    Evaluator::new(EvalConfig::default(), Arc::new(MemIO::new()))
}

#[test]
fn recursive_binding_cycle_is_broken_on_drop() {
    let ev = evaluator();
    // `f` lives in a `let` frame whose slot (a thunk) holds the closure,
    // and the closure holds the frame: a cycle.
    let v = ev.eval_str("let f = x: f x; in f").unwrap();
    let Value::Lambda(closure) = v else { panic!("not a lambda") };
    assert_eq!(ndeploy_eval::value::Brc::strong_count(&closure), 2, "ours + the let slot's");
    drop(ev);
    assert_eq!(ndeploy_eval::value::Brc::strong_count(&closure), 1, "the evaluator's drop released the frame");
}

#[test]
fn foldl_builds_a_large_set() {
    // (Peak RSS of the 10k version is measured by benches/compare.sh: the
    // intermediates are freed as soon as the next set exists.)
    let ev = evaluator();
    let v = ev
        .eval_str("builtins.foldl' (acc: i: acc // { \"k${toString i}\" = i; }) { } (builtins.genList (x: x) 2000)")
        .unwrap();
    let v = ev.force_deep(&v).unwrap();
    let Value::Attrs(a) = v else { panic!("not a set") };
    assert_eq!(a.len(), 2000);
}

#[test]
fn values_outlive_the_evaluator_safely() {
    let ev = evaluator();
    let v = ev.eval_str("let xs = builtins.genList (x: x * x) 10; in { inherit xs; n = 3; }").unwrap();
    let forced = ev.force_deep(&v).unwrap();
    drop(ev);
    let ev2 = evaluator();
    let s = ndeploy_eval::print::print_value(&ev2, &forced, true).unwrap();
    assert_eq!(s, "{ n = 3; xs = [ 0 1 4 9 16 25 36 49 64 81 ]; }");
}
