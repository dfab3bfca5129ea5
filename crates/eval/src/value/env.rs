//! Environments: the runtime frames that compiled variable slots index into.
//!
//! Design: an [`Env`] is an `Arc`'d frame of values plus its parent; the
//! compiler resolves every variable to `(depth, index)`, so lookup is `depth`
//! pointer hops and one slice index. Frames of lambdas without default
//! arguments, `with` frames and the like are immutable (`Fixed`).
//!
//! Recursive frames (`let`, `rec { }`, lambdas whose defaults refer to the
//! frame) hold thunks that capture the frame itself: an `Arc` cycle. Such a
//! frame is `Rec`: its slots sit behind a mutex, are written once right after
//! creation, and can be cleared. The evaluator registers every `Rec` frame
//! (weakly) and clears the survivors when it is dropped, which breaks every
//! cycle (all cycles go through a `Rec` frame: nothing else is mutable after
//! construction). Reading a cleared frame gives [`EnvCleared`], never UB.

use std::sync::{Arc, Mutex, Weak};

use crate::value::Value;

#[derive(Clone)]
pub struct Env(Arc<EnvInner>);

pub struct EnvInner {
    parent: Option<Env>,
    slots: Slots,
}

enum Slots {
    /// One slot inline (lambda arguments, `with`): one allocation per frame.
    One(Value),
    Fixed(Box<[Value]>),
    Rec(Mutex<Box<[Value]>>),
}

impl Drop for EnvInner {
    fn drop(&mut self) {
        use super::drop::{Garbage, nested};
        let parent = self.parent.take();
        match &mut self.slots {
            Slots::One(v) => nested(Garbage::EnvOne(parent, std::mem::replace(v, Value::Null))),
            Slots::Fixed(s) => nested(Garbage::Env(parent, std::mem::take(s).into_vec())),
            Slots::Rec(m) => {
                nested(Garbage::Env(parent, std::mem::take(m.get_mut().unwrap_or_else(|e| e.into_inner())).into_vec()))
            }
        }
    }
}

/// A recursive frame was read after its evaluator released it.
#[derive(Debug, Clone, Copy)]
pub struct EnvCleared;

impl Env {
    pub fn root() -> Env {
        Env(Arc::new(EnvInner { parent: None, slots: Slots::Fixed(Box::new([])) }))
    }

    pub fn new(parent: &Env, slots: Vec<Value>) -> Env {
        Env(Arc::new(EnvInner { parent: Some(parent.clone()), slots: Slots::Fixed(slots.into_boxed_slice()) }))
    }

    pub fn new_one(parent: &Env, v: Value) -> Env {
        Env(Arc::new(EnvInner { parent: Some(parent.clone()), slots: Slots::One(v) }))
    }

    /// A recursive frame of `n` slots (all `null` until [`Env::fill`]).
    pub fn new_rec(parent: &Env, n: usize) -> Env {
        let slots = vec![Value::Null; n].into_boxed_slice();
        Env(Arc::new(EnvInner { parent: Some(parent.clone()), slots: Slots::Rec(Mutex::new(slots)) }))
    }

    /// Set the slots of a recursive frame.
    pub fn fill(&self, values: Vec<Value>) {
        if let Slots::Rec(m) = &self.0.slots {
            *m.lock().unwrap_or_else(|e| e.into_inner()) = values.into_boxed_slice();
        }
    }

    pub fn is_rec(&self) -> bool {
        matches!(self.0.slots, Slots::Rec(_))
    }

    pub fn lookup(&self, depth: u32, idx: u32) -> Result<Value, EnvCleared> {
        let mut e = &self.0;
        for _ in 0..depth {
            e = &e.parent.as_ref().ok_or(EnvCleared)?.0;
        }
        match &e.slots {
            Slots::One(v) if idx == 0 => Ok(v.clone()),
            Slots::One(_) => Err(EnvCleared),
            Slots::Fixed(s) => s.get(idx as usize).cloned().ok_or(EnvCleared),
            Slots::Rec(m) => m.lock().unwrap_or_else(|e| e.into_inner()).get(idx as usize).cloned().ok_or(EnvCleared),
        }
    }

    /// Like [`Env::lookup`], but looks through a forced thunk without
    /// cloning the thunk itself (the hot path of variable access).
    #[inline]
    pub fn lookup_shallow(&self, depth: u32, idx: u32) -> Result<Value, EnvCleared> {
        let mut e = &self.0;
        for _ in 0..depth {
            e = &e.parent.as_ref().ok_or(EnvCleared)?.0;
        }
        let shallow = |v: &Value| match v {
            Value::Thunk(t) => t.get().unwrap_or_else(|| v.clone()),
            v => v.clone(),
        };
        match &e.slots {
            Slots::One(v) if idx == 0 => Ok(shallow(v)),
            Slots::One(_) => Err(EnvCleared),
            Slots::Fixed(s) => s.get(idx as usize).map(shallow).ok_or(EnvCleared),
            Slots::Rec(m) => m.lock().unwrap_or_else(|e| e.into_inner()).get(idx as usize).map(shallow).ok_or(EnvCleared),
        }
    }

    /// Force-free access to a slot: a reference into an immutable frame,
    /// a copy out of a recursive one (its lock is never held while the
    /// caller evaluates).
    #[inline]
    pub(crate) fn with_slot<R>(&self, depth: u32, idx: u32, f: impl FnOnce(&Value) -> R) -> Result<R, EnvCleared> {
        let mut e = &self.0;
        for _ in 0..depth {
            e = &e.parent.as_ref().ok_or(EnvCleared)?.0;
        }
        match &e.slots {
            Slots::One(v) if idx == 0 => Ok(f(v)),
            Slots::One(_) => Err(EnvCleared),
            Slots::Fixed(s) => s.get(idx as usize).map(f).ok_or(EnvCleared),
            Slots::Rec(m) => {
                let v = m.lock().unwrap_or_else(|e| e.into_inner()).get(idx as usize).cloned().ok_or(EnvCleared)?;
                Ok(f(&v))
            }
        }
    }

    pub fn downgrade(&self) -> Weak<EnvInner> {
        Arc::downgrade(&self.0)
    }

    /// Drop the slots of a recursive frame (breaking reference cycles).
    pub fn clear_weak(w: &Weak<EnvInner>) {
        if let Some(e) = w.upgrade()
            && let Slots::Rec(m) = &e.slots
        {
            let old = std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()));
            drop(old);
        }
    }
}

// Access for the cycle collector (`value/collect.rs`).
impl Env {
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    pub(crate) fn strong_count(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    pub(crate) fn upgrade(w: &Weak<EnvInner>) -> Option<Env> {
        w.upgrade().map(Env)
    }

    pub(crate) fn parent_env(&self) -> Option<&Env> {
        self.0.parent.as_ref()
    }

    /// Call `f` with every slot (under the frame's lock if recursive).
    pub(crate) fn for_each_slot(&self, f: impl FnMut(&Value)) {
        match &self.0.slots {
            Slots::One(v) => std::iter::once(v).for_each(f),
            Slots::Fixed(s) => s.iter().for_each(f),
            Slots::Rec(m) => m.lock().unwrap_or_else(|e| e.into_inner()).iter().for_each(f),
        }
    }

    /// Take the slots of a recursive frame out (empty for other frames).
    pub(crate) fn take_rec_slots(&self) -> Box<[Value]> {
        match &self.0.slots {
            Slots::Rec(m) => std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner())),
            _ => Box::new([]),
        }
    }
}
