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

fn is_leaf(v: &Value) -> bool {
    matches!(
        v,
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::String(_) | Value::Path(_) | Value::PrimOp(_)
    )
}

/// Drop `items` with a bounded stack depth.
pub(crate) fn defer(items: impl IntoIterator<Item = Garbage>) {
    let queued = QUEUE.try_with(|q| {
        let Ok(mut q) = q.try_borrow_mut() else { return false };
        for g in items {
            match g {
                Garbage::Value(v) if is_leaf(&v) => drop(v),
                g => q.push(g),
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
