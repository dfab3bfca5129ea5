//! Tests of clearing a host's epoch on its own thread
//! ([`super::Quiescence`]): the host's cycles are broken at once, their
//! memory is freed only once every other thread has left the host it was
//! in, and a cleared node reached later is an internal error.

use super::{Quiescence, enter_host_listed};
use crate::value::collect::tests::{attr, list_weak};
use crate::Evaluator;
use crate::value::{Thunk, Value};

fn thunk(v: Value) -> Thunk {
    match v {
        Value::Thunk(t) => t,
        other => panic!("not a thunk: {other:?}"),
    }
}

/// Tests that depend on the process-wide count of foreign reads (the
/// breach tests move it) run one at a time.
static FOREIGN_COUNT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    FOREIGN_COUNT.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn host_nodes_are_cleared_and_freed_at_once_while_other_threads_are_in_hosts() {
    let _serial = serial();
    let ev = Evaluator::real();
    let q = Quiescence::new(2);
    // Thread 1 is in a host, but reads no node of this one.
    q.enter(1);
    q.enter(0);
    let host = enter_host_listed();
    let v = ev
        .eval_str("let w = { a = [ (builtins.head [ w ]) ]; }; f = x: if x == 0 then 0 else f (x - 1); in { self = w.a; n = f 3; }")
        .unwrap();
    // A cycle through two thunks' results (no frame), and frames whose
    // slots hold closures capturing them.
    let self_list = list_weak(&ev, &attr(&ev, &v, "self"));
    assert!(matches!(ev.force(&attr(&ev, &v, "n")).unwrap(), Value::Int(0)));
    let t = thunk(attr(&ev, &v, "self"));
    let nodes = host.finish_nodes();
    q.leave(0);
    drop(v);
    assert!(self_list.upgrade().is_some(), "held by the host's cycle");
    // SAFETY: the host ended on "thread 0" after its phase; "thread 1"
    // evaluates nothing.
    let stats = unsafe { q.clear_host(0, nodes) };
    assert!(stats.cleared_frames >= 1 && stats.cleared_thunks >= 2, "{stats:?}");
    assert_eq!((stats.deferred, q.deferred()), (0, 0), "no foreign read: freed at once");
    assert!(self_list.upgrade().is_none(), "the host's cycle was not freed");
    q.leave(1);
    let err = ev.force(&Value::Thunk(t)).unwrap_err().to_string();
    assert!(err.contains("thunk released by the cycle collector"), "{err}");
}

/// A breach of the epoch argument, made on purpose: another thread gets a
/// host's value (as if a shared node referred to it) and reads it while
/// the host ends. Read before the clearing, its borrow must stay valid
/// (the garbage is deferred until it left its host); read after, it gets
/// an internal error. Never a crash (run under valgrind too).
#[test]
fn a_host_node_read_by_another_thread_defers_the_free_or_fails_cleanly() {
    let _serial = serial();
    let ev = Evaluator::real();
    let q = Quiescence::new(2);
    let (to_reader, from_host) = std::sync::mpsc::channel::<Value>();
    let (to_host, from_reader) = std::sync::mpsc::channel::<()>();
    let (to_reader2, from_host2) = std::sync::mpsc::channel::<()>();
    let reads_before = super::foreign_reads();
    std::thread::scope(|s| {
        let (ev, q) = (&ev, &q);
        s.spawn(move || {
            // The reader, in a host of its own.
            q.enter(1);
            let v = from_host.recv().unwrap();
            let a = thunk(attr(ev, &v, "a"));
            // Borrowed, uncounted: a reference into the host's thunk.
            let list = a.get_ref().expect("forced by its host");
            to_host.send(()).unwrap();
            from_host2.recv().unwrap();
            // The host has ended and cleared its nodes; the borrow is
            // still valid (deferred garbage).
            match list {
                Value::List(l) => assert_eq!(l.len(), 2),
                other => panic!("not a list: {other:?}"),
            }
            let err = ev.force(&Value::Thunk(a.clone())).unwrap_err().to_string();
            assert!(err.contains("thunk released by the cycle collector"), "{err}");
            drop(v);
            q.leave(1);
            to_host.send(()).unwrap();
        });
        s.spawn(move || {
            q.enter(0);
            let host = enter_host_listed();
            let v = ev.eval_str("let w = { a = [ w (builtins.genList (x: x) 3) ]; f = _: w.a; }; in w").unwrap();
            let weak = list_weak(ev, &attr(ev, &v, "a"));
            to_reader.send(v.clone()).unwrap();
            from_reader.recv().unwrap();
            let nodes = host.finish_nodes();
            q.leave(0);
            drop(v);
            // SAFETY: the host ended on thread 0 after `leave`; thread 1
            // evaluates between `enter` and `leave`.
            let stats = unsafe { q.clear_host(0, nodes) };
            assert_eq!(stats.deferred, 1, "a foreign read defers: {stats:?}");
            assert!(weak.upgrade().is_some(), "deferred, not freed");
            to_reader2.send(()).unwrap();
            from_reader.recv().unwrap();
            q.free_deferred(0);
            assert_eq!(q.deferred(), 0);
            assert!(weak.upgrade().is_none(), "freed once the reader left its host");
        });
    });
    assert!(super::foreign_reads() > reads_before);

    // Read only after the host ended and freed its garbage: cleared
    // nodes, internal errors (a thunk, and a recursive frame's slot read
    // through a closure that captures it).
    let q = Quiescence::new(2);
    let (to_reader, from_host) = std::sync::mpsc::channel::<Value>();
    std::thread::scope(|s| {
        let (ev, q) = (&ev, &q);
        s.spawn(move || {
            q.enter(0);
            let host = enter_host_listed();
            let v = ev.eval_str("let w = { a = [ w ]; f = _: w.a; }; in w").unwrap();
            let _ = ev.force(&attr(ev, &v, "a")).unwrap();
            let nodes = host.finish_nodes();
            q.leave(0);
            // SAFETY: as above.
            let stats = unsafe { q.clear_host(0, nodes) };
            assert_eq!(stats.deferred, 0, "{stats:?}");
            to_reader.send(v).unwrap();
        });
        s.spawn(move || {
            q.enter(1);
            let v = from_host.recv().unwrap();
            let err = ev.force(&attr(ev, &v, "a")).unwrap_err().to_string();
            assert!(err.contains("thunk released by the cycle collector"), "{err}");
            let f = attr(ev, &v, "f");
            let call = ev.eval_str("f: f null").unwrap();
            let err = ev.force(&crate::value::Thunk::apply(call, f)).unwrap_err().to_string();
            assert!(err.contains("released"), "{err}");
            drop(v);
            q.leave(1);
        });
    });
}

/// Garbage is not deferred for threads that are between hosts.
#[test]
fn garbage_is_freed_at_once_when_no_other_thread_is_in_a_host() {
    let ev = Evaluator::real();
    let q = Quiescence::new(2);
    q.enter(0);
    let host = enter_host_listed();
    let v = ev.eval_str("let w = { a = [ w ]; }; in w.a").unwrap();
    let l = list_weak(&ev, &v);
    let nodes = host.finish_nodes();
    q.leave(0);
    drop(v);
    // SAFETY: as above.
    let stats = unsafe { q.clear_host(0, nodes) };
    assert!(stats.cleared_thunks >= 1, "{stats:?}");
    assert_eq!(q.deferred(), 0);
    assert!(l.upgrade().is_none());
}

/// Listed host thunks that die by counting before their host ends are
/// dropped from the list as it grows (their memory reused at once), not
/// held until the host's end.
#[test]
fn listed_thunks_that_die_early_are_forgotten() {
    let ev = Evaluator::real();
    let host = enter_host_listed();
    let n = 5000;
    // Each `y` is a host thunk forced to a list (listed), dead once its
    // step of the fold is done.
    let v = ev
        .eval_str(&format!(
            "builtins.foldl' (a: i: a + (let y = builtins.genList (x: x) (i - i + 2); in builtins.length y)) 0 (builtins.genList (x: x) {n})"
        ))
        .unwrap();
    assert!(matches!(ev.force(&v).unwrap(), Value::Int(x) if x == 2 * n));
    drop(v);
    let nodes = host.finish_nodes();
    assert!(nodes.thunks.len() < 2 * super::YOUNG, "{} thunks still listed", nodes.thunks.len());
    let q = Quiescence::new(1);
    // SAFETY: the host ended on this thread; no other evaluates.
    let stats = unsafe { q.clear_host(0, nodes) };
    assert_eq!(stats.deferred, 0);
}
