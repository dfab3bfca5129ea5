//! Dropping deep values without deep recursion.
//!
//! A million-deep nested list or attribute set, or a long chain of frames,
//! would overflow the stack if dropped recursively (the compiler-generated
//! drop glue recurses once per level). Instead, the `Drop` of every
//! container ([`ListVec`], the attribute vector, thunks, frames, partial
//! applications) hands its children to [`defer`], which queues them in a
//! thread-local list drained by the outermost `defer` call: the stack depth
//! of any drop is bounded, whatever the shape of the value.
//!
//! Children that cannot own further values (scalars, strings, paths,
//! primops) are dropped in place, so the queue only sees containers.

use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut};

use crate::value::{Env, Value};

pub(crate) enum Garbage {
    Value(Value),
    Env(Env),
}

thread_local! {
    static QUEUE: RefCell<Vec<Garbage>> = const { RefCell::new(Vec::new()) };
    static DRAINING: Cell<bool> = const { Cell::new(false) };
}

/// Dropping `v` here cannot recurse: no children, or not the last reference
/// (then dropping is a decrement; if another thread races us to make it the
/// last one, its container `Drop` defers again, so depth stays bounded).
pub(crate) fn is_leaf(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::String(_) | Value::Path(_) | Value::PrimOp(_) => true,
        Value::Thunk(t) => t.is_shared() || t.holds_scalar(),
        Value::List(l) => std::sync::Arc::strong_count(l) > 1,
        Value::Attrs(a) => a.is_shared(),
        Value::Lambda(c) => std::sync::Arc::strong_count(c) > 1,
        Value::PrimOpApp(p) => std::sync::Arc::strong_count(p) > 1,
    }
}

impl Garbage {
    fn is_leaf(&self) -> bool {
        match self {
            Garbage::Value(v) => is_leaf(v),
            Garbage::Env(e) => e.is_shared(),
        }
    }
}

/// Drop `items` with a bounded stack depth.
pub(crate) fn defer(items: impl IntoIterator<Item = Garbage>) {
    let mut it = items.into_iter();
    // Leaves are dropped in place; the thread-local queue is only touched
    // when a container that we own the last reference to turns up.
    let first = loop {
        match it.next() {
            None => return,
            Some(g) if g.is_leaf() => drop(g),
            Some(g) => break g,
        }
    };
    let queued = QUEUE.try_with(|q| {
        let Ok(mut q) = q.try_borrow_mut() else { return false };
        q.push(first);
        for g in it {
            if g.is_leaf() {
                drop(g);
            } else {
                q.push(g);
            }
        }
        true
    });
    if queued != Ok(true) {
        // Thread-local storage is gone (thread exit): nothing better to do.
        return;
    }
    if DRAINING.with(|d| d.replace(true)) {
        return;
    }
    loop {
        let next = QUEUE.with(|q| q.try_borrow_mut().ok().and_then(|mut q| q.pop()));
        match next {
            Some(g) => drop(g),
            None => break,
        }
    }
    DRAINING.with(|d| d.set(false));
}

pub(crate) fn defer_values(v: Vec<Value>) {
    if v.iter().all(is_leaf) {
        return;
    }
    defer(v.into_iter().map(Garbage::Value));
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
        defer_values(std::mem::take(&mut self.0));
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
