//! Tests of the cycle collector: cycles through `let`, `rec { }`, lambda
//! defaults, `fix`-style thunk results and a real module-system evaluation
//! are freed once unreachable; what a caller, another value or another
//! thread still holds stays intact and evaluates as before.

use crate::value::brc::WeakBrc as Weak;

use crate::value::{ListVec, Value};
use crate::Evaluator;

/// `v.name` (also used by the epoch tests).
pub(crate) fn attr(ev: &Evaluator, v: &Value, name: &str) -> Value {
    match ev.force(v).unwrap() {
        Value::Attrs(a) => a.get_str(name).cloned().unwrap(),
        other => panic!("not a set: {other:?}"),
    }
}

/// A weak handle on the list `v` evaluates to (also used by the epoch tests).
pub(crate) fn list_weak(ev: &Evaluator, v: &Value) -> Weak<ListVec> {
    match ev.force(v).unwrap() {
        Value::List(l) => crate::value::Brc::downgrade(&l),
        other => panic!("not a list: {other:?}"),
    }
}

fn int(ev: &Evaluator, v: &Value) -> i64 {
    match ev.force_deep(v).unwrap() {
        Value::Int(i) => i,
        other => panic!("not an int: {other:?}"),
    }
}

fn collecting() -> Evaluator {
    let mut ev = Evaluator::real();
    ev.enable_collection();
    ev
}

fn collect(ev: &mut Evaluator) -> super::CollectStats {
    // SAFETY: no other thread uses the heap (they only hold values).
    unsafe { ev.collect() }
}

/// A value whose frames form cycles: `self` (a `let` frame) is referenced
/// by its own unforced thunk `x`, and `l = [ self ]` makes a cycle through
/// forced thunks' results once `l` is forced.
const CYCLIC: &str = "let f = n: let self = { x = self.y; y = n; l = [ self ]; r = rec { a = b; b = n; }; }; in self; in f 1";

#[test]
fn unreachable_let_and_thunk_cycles_are_freed() {
    let mut ev = collecting();
    let base = ev.live_frames();
    let v = ev.eval_str(CYCLIC).unwrap();
    let l = list_weak(&ev, &attr(&ev, &v, "l"));
    assert!(ev.live_frames() > base);
    drop(v);
    // Reference counting alone cannot free the cycles.
    assert!(l.upgrade().is_some());
    let stats = collect(&mut ev);
    assert!(stats.freed_frames >= 1, "{stats:?}");
    assert!(l.upgrade().is_none(), "the list in the thunk cycle was not freed");
    assert_eq!(ev.live_frames(), base);
}

#[test]
fn values_still_referenced_stay_intact() {
    let mut ev = collecting();
    let v = ev.eval_str(CYCLIC).unwrap();
    let l = list_weak(&ev, &attr(&ev, &v, "l"));
    // An unforced thunk whose pending work captures the frame, and the
    // `rec` set's attribute: referenced from here, not from the root.
    let x = attr(&ev, &v, "x");
    let r = attr(&ev, &v, "r");
    drop(v);
    let stats = collect(&mut ev);
    assert_eq!(stats.freed_frames, 0, "{stats:?}");
    assert!(l.upgrade().is_some());
    // The collector's words are reset once it is done.
    let Value::Thunk(t) = &x else { panic!("not a thunk: {x:?}") };
    assert_eq!(t.gc_word().load(std::sync::atomic::Ordering::Relaxed), 0);
    let held = ev.rec_frames_mut().1.as_ref().unwrap();
    assert!(!held.is_empty());
    assert!(held.iter().all(|e| e.gc_word().unwrap().load(std::sync::atomic::Ordering::Relaxed) == 0));
    assert_eq!(int(&ev, &x), 1);
    assert_eq!(int(&ev, &attr(&ev, &r, "a")), 1);
    drop((x, r));
    collect(&mut ev);
    assert!(l.upgrade().is_none());
}

#[test]
fn a_root_held_by_another_thread_stays_alive() {
    let mut ev = collecting();
    let v = ev.eval_str(CYCLIC).unwrap();
    let l = list_weak(&ev, &attr(&ev, &v, "l"));
    let (to_thread, rx) = std::sync::mpsc::channel::<()>();
    let held = std::thread::spawn(move || {
        // Hold the root (without using it) until told to hand it back.
        let mine = v;
        rx.recv().unwrap();
        mine
    });
    let stats = collect(&mut ev);
    assert_eq!(stats.freed_frames, 0, "{stats:?}");
    to_thread.send(()).unwrap();
    let v = held.join().unwrap();
    assert!(l.upgrade().is_some());
    assert_eq!(int(&ev, &attr(&ev, &v, "x")), 1);
    drop(v);
    collect(&mut ev);
    assert!(l.upgrade().is_none());
}

#[test]
fn lambda_defaults_and_fixpoints_are_freed() {
    let mut ev = collecting();
    let base = ev.live_frames();
    // A lambda whose defaults refer to each other (a recursive frame), and
    // a module-system-like fixpoint: modules see the final `config`.
    let v = ev
        .eval_str(
            r#"
            let
              fix = f: let x = f x; in x;
              withDefaults = { a ? b + 1, b ? 2, ... }@args: { inherit a args; me = [ args ]; };
              modules = [
                ({ config, ... }: { a = 1; b = config.a + 1; })
                ({ config, ... }: { c = config.b * 2; all = [ config ]; })
              ];
              eval = fix (self: {
                config = builtins.foldl' (acc: m: acc // m { inherit (self) config; }) { } modules;
              });
            in { d = withDefaults { }; inherit eval; }
            "#,
        )
        .unwrap();
    let d = attr(&ev, &v, "d");
    assert_eq!(int(&ev, &attr(&ev, &d, "a")), 3);
    let me = list_weak(&ev, &attr(&ev, &d, "me"));
    let config = attr(&ev, &attr(&ev, &v, "eval"), "config");
    assert_eq!(int(&ev, &attr(&ev, &config, "c")), 4);
    let all = list_weak(&ev, &attr(&ev, &config, "all"));
    drop((v, d, config));
    collect(&mut ev);
    assert!(me.upgrade().is_none());
    assert!(all.upgrade().is_none());
    assert_eq!(ev.live_frames(), base);
}

/// Repeated host-like evaluations with ndeploy's module library: after a
/// collection, nothing of the previous evaluations stays (the library, a
/// shared imported value, stays and is not evaluated again).
#[test]
fn module_system_evaluations_do_not_accumulate() {
    let nix = concat!(env!("CARGO_MANIFEST_DIR"), "/../../nix/system.nix");
    let mut ev = collecting();
    let host = |ev: &Evaluator, i: usize| {
        let expr = format!(
            r#"let c = (import {nix} {{ system = "x86_64-linux"; modules = [ {{ networking.hostName = "h{i}"; }} ]; }}).config;
               in c.networking.hostName"#
        );
        let v = ev.eval_str(&expr).unwrap();
        match ev.force(&v).unwrap() {
            Value::String(s) => assert_eq!(s.as_str(), format!("h{i}")),
            other => panic!("{other:?}"),
        }
    };
    host(&ev, 0);
    collect(&mut ev);
    let after_one = ev.live_frames();
    for i in 1..4 {
        host(&ev, i);
    }
    let before = ev.live_frames();
    let stats = collect(&mut ev);
    assert!(stats.freed_frames > 0, "{stats:?}");
    assert!(ev.live_frames() <= after_one, "{} frames live, {after_one} after one host", ev.live_frames());
    assert!(before > after_one);
    host(&ev, 9);
}

/// Threads evaluating one shared expression, then a collection, repeated:
/// shared values survive every collection and give the same results.
#[test]
fn shared_values_survive_collections_between_parallel_rounds() {
    let mut ev = collecting();
    let shared = ev
        .eval_str("let lib = rec { f = n: if n < 2 then n else f (n - 1) + f (n - 2); xs = builtins.genList f 15; }; in lib")
        .unwrap();
    for _ in 0..3 {
        std::thread::scope(|s| {
            let ev = &ev;
            for t in 0..4 {
                let shared = shared.clone();
                s.spawn(move || {
                    let f = attr(ev, &shared, "f");
                    let v = crate::value::Thunk::apply(f, Value::Int(10 + t));
                    let r = int(ev, &v);
                    assert!(r > 0);
                    let xs = attr(ev, &shared, "xs");
                    ev.force_deep(&xs).unwrap();
                });
            }
        });
        collect(&mut ev);
        let xs = attr(&ev, &shared, "xs");
        match ev.force_deep(&xs).unwrap() {
            Value::List(l) => assert_eq!(int(&ev, &l[14]), 377),
            other => panic!("{other:?}"),
        }
    }
}

/// The counting walk on several threads finds exactly what one thread
/// finds (every node visited once, every edge counted once), and frees
/// the same.
#[test]
fn parallel_walk_agrees_with_one_thread() {
    let nix = concat!(env!("CARGO_MANIFEST_DIR"), "/../../nix/system.nix");
    let run = |threads: usize| {
        let mut ev = collecting();
        let mut kept = Vec::new();
        for i in 0..3 {
            let expr = format!(
                r#"(import {nix} {{ system = "x86_64-linux"; modules = [ {{ networking.hostName = "h{i}"; }} ]; }}).config.networking"#
            );
            let v = ev.eval_str(&expr).unwrap();
            ev.force_deep(&v).unwrap();
            kept.push(v);
        }
        let cyclic = ev.eval_str(CYCLIC).unwrap();
        let l = list_weak(&ev, &attr(&ev, &cyclic, "l"));
        drop(cyclic);
        // SAFETY: no other thread uses the heap.
        let (stats, garbage) = unsafe { ev.collect_deferred(threads) };
        drop(garbage);
        assert!(l.upgrade().is_none());
        // What is kept still evaluates.
        for (i, v) in kept.iter().enumerate() {
            assert!(matches!(ev.force(&attr(&ev, v, "hostName")).unwrap(), Value::String(s) if s.as_str() == format!("h{i}")));
        }
        (stats.frames, stats.freed_frames, stats.freed_thunks, stats.visited, stats.recorded, stats.live)
    };
    let one = run(1);
    assert!(one.1 > 0 && one.3 > one.4, "{one:?}");
    assert_eq!(run(4), one);
}

/// The collector's words take no space: thunks are 48 bytes with their
/// counts, frames as before.
#[test]
fn collector_words_cost_no_space() {
    assert_eq!(std::mem::size_of::<crate::value::thunk::ThunkInner>(), 32);
}

/// Epochs (collect/epoch.rs): what a host epoch makes is marked and its
/// thunks listed; a shared thunk forced from it (here: an imported file,
/// and a value made before the epoch) runs in the shared epoch, so what
/// it makes stays usable after the host's nodes are cleared; clearing
/// frees the host's cycles (including one that only runs through thunks'
/// results); a cleared thunk is an internal error when forced.
#[test]
fn host_epochs_are_cleared_and_shared_values_survive() {
    use super::epoch;
    let mut ev = collecting();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shared.nix");
    std::fs::write(&file, "let lib = { twice = x: x * 2; names = [ \"a\" \"b\" ]; }; in lib").unwrap();
    let shared = ev.eval_str("let s = { v = builtins.genList (i: { n = i; }) 3; }; in s").unwrap();
    let f = ev.eval_str("s: file: h: let lib = import file; w = { a = [ (builtins.head [ w ]) ]; }; in { r = lib.twice h + builtins.length s.v; w = w; self = w.a; }").unwrap();
    let host = epoch::enter_host();
    let app = crate::value::Thunk::apply(
        crate::value::Thunk::apply(crate::value::Thunk::apply(f, shared.clone()), Value::Path(file.display().to_string().into())),
        Value::Int(5),
    );
    assert!(epoch::in_host());
    assert_eq!(int(&ev, &attr(&ev, &app, "r")), 13);
    let self_list = list_weak(&ev, &attr(&ev, &app, "self"));
    // Its element's result is `w`, which holds the list: a cycle through
    // two thunks' results.
    let Value::List(sl) = ev.force(&attr(&ev, &app, "self")).unwrap() else { panic!("not a list") };
    assert!(matches!(ev.force(&sl[0]).unwrap(), Value::Attrs(_)));
    drop(sl);
    let Value::Thunk(t) = attr(&ev, &app, "self") else { panic!("not a thunk") };
    let thunks = host.finish();
    assert!(!epoch::in_host());
    assert!(thunks.len() >= 3, "{}", thunks.len());
    drop(app);
    // The shared values were forced in the shared epoch: not listed.
    assert!(self_list.upgrade().is_some(), "held by the host's cycle");
    // SAFETY: no other thread uses the heap.
    let (stats, garbage) = unsafe { ev.clear_host_epochs(vec![thunks]) };
    assert!(stats.cleared_frames >= 1 && stats.cleared_thunks >= 1, "{stats:?}");
    drop(garbage);
    assert!(self_list.upgrade().is_none(), "the host's cycle was not freed");
    let err = ev.force(&Value::Thunk(t)).unwrap_err().to_string();
    assert!(err.contains("thunk released by the cycle collector"), "{err}");
    // Shared values and the imported file are intact.
    let again = ev.eval_str(&format!("(import {}).twice 4", file.display())).unwrap();
    assert_eq!(int(&ev, &again), 8);
    assert_eq!(int(&ev, &ev.eval_str("1").unwrap()), 1);
    let v = attr(&ev, &shared, "v");
    let Value::List(l) = ev.force(&v).unwrap() else { panic!("not a list") };
    assert_eq!(int(&ev, &attr(&ev, &l[2], "n")), 2);
    // A trial deletion afterwards finds nothing of the host alive.
    // SAFETY: as above.
    let (live, _) = unsafe { ev.host_nodes_live_after_collect(1, &[]) };
    assert_eq!(live, 0);
}

/// A host node forced in the shared epoch (a breach of the epoch
/// argument) is counted.
#[test]
fn host_node_forced_in_shared_epoch_is_a_violation() {
    use super::epoch;
    let ev = collecting();
    let host = epoch::enter_host();
    let v = ev.eval_str("let x = { a = 1 + 1; }; in x").unwrap();
    let a = attr(&ev, &v, "a");
    let thunks = host.finish();
    let before = epoch::violations();
    assert_eq!(int(&ev, &a), 2);
    assert!(epoch::violations() > before);
    drop(thunks);
}
