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

#[test]
fn host_nodes_are_cleared_at_once_and_freed_once_other_threads_left_their_hosts() {
    let ev = Evaluator::real();
    let q = Quiescence::new(2);
    // Thread 1 is in a host: it could hold references taken before.
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
    // Deferred: thread 1 has not left its host.
    assert_eq!(q.deferred(), 1);
    assert!(self_list.upgrade().is_some());
    q.free_deferred(0);
    assert!(self_list.upgrade().is_some());
    q.leave(1);
    q.free_deferred(0);
    assert_eq!(q.deferred(), 0);
    assert!(self_list.upgrade().is_none(), "the host's cycle was not freed");
    let err = ev.force(&Value::Thunk(t)).unwrap_err().to_string();
    assert!(err.contains("thunk released by the cycle collector"), "{err}");
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
