//! Dropping deep values without deep recursion.
//!
//! A million-deep nested list or attribute set, or a long chain of frames,
//! would overflow the stack if dropped recursively (the compiler-generated
//! drop glue recurses once per level). Every container's `Drop` ([`ListVec`],
//! the attribute vector, thunks, frames, partial applications) moves its
//! children out and hands them to [`nested`]: while the thread's drop nesting
//! is shallow (below [`MAX_NESTING`] containers) they are dropped right
//! there, which is the common, cheap case; deeper, they are queued in a
//! thread-local list that the outermost deferring call drains in a loop.
//! So the stack depth of any drop is bounded, whatever the shape of the
//! value, and ordinary drops pay one thread-local counter update.
//! Inside [`breadth_first`] every container defers (the nesting starts at
//! the limit), and the queue is drained first in, first out, each entry's
//! children prefetched when queued.

use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut};

use crate::value::thunk::Pending;
use crate::value::{Attr, Env, Value};

/// The children of a container, moved out of it (held only to be dropped).
#[allow(dead_code)]
pub(crate) enum Garbage {
    Values(Values),
    Attrs(Vec<Attr>),
    Thunk(Option<Value>, Option<Pending>),
    Env(Option<Env>, Vec<Value>),
    EnvOne(Option<Env>, Value),
}

/// Containers dropped in place inside each other before deferring.
const MAX_NESTING: u32 = 64;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static QUEUE: RefCell<std::collections::VecDeque<Garbage>> = const { RefCell::new(std::collections::VecDeque::new()) };
    static BREADTH: Cell<bool> = const { Cell::new(false) };
    static DRAINING: Cell<bool> = const { Cell::new(false) };
}

/// Drop a container's children with a bounded stack depth.
#[inline]
pub(crate) fn nested(g: Garbage) {
    let Ok(d) = DEPTH.try_with(|d| d.get()) else {
        // Thread-local storage is gone (thread exit): leak rather than risk
        // the stack.
        std::mem::forget(g);
        return;
    };
    if d < MAX_NESTING {
        DEPTH.with(|c| c.set(d + 1));
        drop(g);
        DEPTH.with(|c| c.set(d));
    } else {
        defer(g);
    }
}

/// The nesting counted for a container that drops its children in place
/// (see [`shallow`]); restored when dropped.
pub(crate) struct Nesting(u32);

impl Drop for Nesting {
    #[inline]
    fn drop(&mut self) {
        DEPTH.with(|c| c.set(self.0));
    }
}

/// For a container that drops its children in place (no move into a
/// [`Garbage`]): `Some` while the drop nesting is shallow (counted until the
/// guard is dropped), `None` when the children must go to [`nested`] instead.
#[inline]
pub(crate) fn shallow() -> Option<Nesting> {
    let d = DEPTH.try_with(|d| d.get()).ok()?;
    if d >= MAX_NESTING {
        return None;
    }
    DEPTH.with(|c| c.set(d + 1));
    Some(Nesting(d))
}

#[cold]
fn defer(g: Garbage) {
    if BREADTH.with(Cell::get) {
        crate::value::collect::epoch::prefetch_garbage(&g);
    }
    let queued = QUEUE.try_with(|q| match q.try_borrow_mut() {
        Ok(mut q) => {
            q.push_back(g);
            true
        }
        Err(_) => false,
    });
    if queued != Ok(true) {
        return;
    }
    if DRAINING.with(|d| d.replace(true)) {
        return;
    }
    loop {
        let next = QUEUE.with(|q| q.try_borrow_mut().ok().and_then(|mut q| q.pop_back()));
        match next {
            Some(g) => drop(g),
            None => break,
        }
    }
    DRAINING.with(|d| d.set(false));
}

/// Run `f` and drop what its drops free breadth-first: every dying
/// container's children are queued (their lines prefetched) and dropped in
/// order once `f` returns, so that the misses of a cascade overlap
/// instead of following each other down the graph (a fleet host's
/// garbage: `collect/epoch/sweep.rs`).
pub(crate) fn breadth_first(f: impl FnOnce()) {
    if BREADTH.with(|b| b.replace(true)) {
        return f();
    }
    // At the nesting limit every container defers; draining, `defer`
    // only queues.
    let depth = DEPTH.with(|d| d.replace(MAX_NESTING));
    let draining = DRAINING.with(|d| d.replace(true));
    f();
    while let Some(g) = QUEUE.with(|q| q.try_borrow_mut().ok().and_then(|mut q| q.pop_front())) {
        drop(g);
    }
    QUEUE.with(|q| q.borrow_mut().shrink_to(1024));
    DRAINING.with(|d| d.set(draining));
    DEPTH.with(|d| d.set(depth));
    BREADTH.with(|b| b.set(false));
}

/// A thunk's result and pending work.
#[inline]
pub(crate) fn drop_thunk_parts(value: Option<Value>, pending: Option<Pending>) {
    if pending.is_none() && value.as_ref().is_none_or(is_scalar) {
        return;
    }
    nested(Garbage::Thunk(value, pending));
}

/// Dropping `v` does nothing: it holds no node (the drop glue, an
/// out-of-line call, is skipped for it where many values are dropped).
#[inline(always)]
pub(crate) fn is_plain(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::PrimOp(_))
}

/// Drop `v`; one that holds no node ([`is_plain`]) is forgotten inline
/// instead of going through `Value`'s drop glue (an out-of-line call).
#[inline(always)]
pub(crate) fn drop_value(v: Value) {
    if is_plain(&v) { std::mem::forget(v) } else { drop(v) }
}

/// Drop the values of `v` (leaving it empty, its buffer kept), calling
/// the drop glue only for those with a node.
#[inline]
pub(crate) fn clear_values(v: &mut Vec<Value>) {
    let len = v.len();
    let p = v.as_mut_ptr();
    // SAFETY: the length is set to 0 first, so each of the `len`
    // initialised values is dropped exactly once, here (a panicking drop
    // leaks the rest instead of dropping them twice).
    unsafe {
        v.set_len(0);
        for i in 0..len {
            let x = p.add(i);
            if !is_plain(&*x) {
                std::ptr::drop_in_place(x);
            }
        }
    }
}

/// Values held only to be dropped ([`Garbage::Values`]): dropped with
/// [`clear_values`].
pub(crate) struct Values(pub Vec<Value>);

impl Drop for Values {
    fn drop(&mut self) {
        clear_values(&mut self.0);
    }
}

/// Dropping `v` cannot drop other values (it holds no other node: the
/// cycle collector treats it as a leaf too).
#[inline]
pub(crate) fn is_scalar(v: &Value) -> bool {
    matches!(
        v,
        Value::Null
            | Value::Bool(_)
            | Value::Int(_)
            | Value::Float(_)
            | Value::String(_)
            | Value::Path(_)
            | Value::PrimOp(_)
    )
}

pub(crate) fn defer_values(v: Vec<Value>) {
    if v.is_empty() {
        return;
    }
    nested(Garbage::Values(Values(v)));
}

/// The elements of a list; dropped iteratively.
#[derive(Default)]
pub struct ListVec(pub Vec<Value>);

impl Deref for ListVec {
    type Target = Vec<Value>;
    fn deref(&self) -> &Vec<Value> {
        &self.0
    }
}

impl DerefMut for ListVec {
    fn deref_mut(&mut self) -> &mut Vec<Value> {
        &mut self.0
    }
}

impl Drop for ListVec {
    fn drop(&mut self) {
        match shallow() {
            Some(_nesting) => clear_values(&mut self.0),
            None => defer_values(std::mem::take(&mut self.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Attrs, AttrsBuilder};
    use crate::symbol::Symbol;

    #[test]
    fn deep_values_drop_without_overflow() {
        let mut v = Value::list(vec![]);
        for _ in 0..1_000_000 {
            v = Value::list(vec![v]);
        }
        drop(v);
        let mut a = Value::Attrs(Attrs::empty());
        for _ in 0..1_000_000 {
            let mut b = AttrsBuilder::new();
            b.insert(Symbol::new("next"), a);
            a = Value::Attrs(b.finish());
        }
        drop(a);
        let mut e = Env::root();
        for i in 0..1_000_000 {
            e = Env::new_one(&e, Value::Int(i));
        }
        drop(e);
    }
}
