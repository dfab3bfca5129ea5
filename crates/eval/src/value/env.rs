//! Environments: the runtime frames that compiled variable slots index into.
//!
//! Design: an [`Env`] is an `Arc`'d frame of values plus its parent; the
//! compiler resolves every variable to `(depth, index)`, so lookup is `depth`
//! pointer hops and one slice index. Frames of lambdas without default
//! arguments, `with` frames and the like are immutable (`Fixed`).
//!
//! Recursive frames (`let`, `rec { }`, lambdas whose defaults refer to the
//! frame) hold thunks that capture the frame itself: an `Arc` cycle. Such a
//! frame is `Rec`: its slots are written once right after creation (before
//! any other thread can reach the frame), read without locking (one
//! `Acquire` load of its state, a plain load on x86), and can be cleared.
//! The evaluator registers every `Rec` frame (weakly) and clears the
//! survivors when it is dropped, which breaks every cycle (all cycles go
//! through a `Rec` frame: nothing else is mutable after construction).
//! Reading a frame that was never filled or was cleared gives
//! [`EnvCleared`].
//!
//! Invariants of `Rec` slots (what makes their `unsafe` sound):
//! - They are written only by [`Env::fill`] (once: unfilled -> filled, by the
//!   thread that created the frame, before it hands the frame to anyone),
//!   by [`Env::refill`] (`__overrides`: the creating thread, while no
//!   reference into the slots is alive) and by the clearing functions.
//! - Clearing ([`Env::clear_weak`], [`Env::take_rec_slots`]) moves the
//!   slots out bitwise and never writes the cell (the drop forgets its
//!   stale bits), and happens where nothing evaluates on the heap (the
//!   evaluator's drop, the collector's stop-the-world point) or where no
//!   other thread can reach the frame and the slots are dropped only once
//!   every other thread left the fleet host it was in (`collect/epoch.rs`).
//!   So a reference into the slots, taken while filled, stays valid for as
//!   long as the frame is borrowed by an evaluation.

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use crate::value::brc::{Brc, WeakBrc as Weak};

use crate::value::Value;

#[derive(Clone)]
pub struct Env(Brc<EnvInner>);

pub struct EnvInner {
    parent: Option<Env>,
    slots: Slots,
}

enum Slots {
    /// One slot inline (lambda arguments, `with`): one allocation per frame.
    One(Value),
    Fixed(Box<[Value]>),
    Rec(RecSlots),
}

/// The slots of a recursive frame: filled once, read without a lock (see
/// the module invariants).
struct RecSlots {
    state: AtomicU8,
    /// The cycle collector's word (`value/collect.rs`): outside a
    /// collection only the epoch bit (`collect/epoch.rs`, set when made).
    /// (In the padding after `state`: no size cost.)
    gc: AtomicU32,
    cell: UnsafeCell<Box<[Value]>>,
}

const UNFILLED: u8 = 0;
const FILLING: u8 = 1;
const FILLED: u8 = 2;
const CLEARED: u8 = 3;

// SAFETY: the cell is written only as the module invariants say (before the
// frame is shared, or where nothing reads it), and read only after `FILLED`
// was observed with `Acquire`; `Value` is `Send + Sync`.
unsafe impl Sync for RecSlots {}

impl RecSlots {
    /// The slots, if filled (and not cleared).
    #[inline]
    fn get(&self) -> Option<&[Value]> {
        if self.state.load(Ordering::Acquire) == FILLED {
            // SAFETY: filled: the cell is not written again while the frame
            // is borrowed by an evaluation (module invariants).
            Some(unsafe { &*self.cell.get() })
        } else {
            None
        }
    }

    /// Move the slots out (clearing the frame), bitwise: the cell is not
    /// written, so a reference into the slots taken before stays valid for
    /// as long as the returned slots are not dropped. Caller: nothing
    /// writes the slots concurrently (module invariants), and the slots are
    /// dropped only once no reference into them can be alive.
    fn take(&self) -> Box<[Value]> {
        let s = self.state.swap(CLEARED, Ordering::AcqRel);
        if s != FILLED {
            return Box::new([]);
        }
        // SAFETY: filled: the cell holds the slots and is not written again;
        // the state no longer says `FILLED`, so nobody takes a new
        // reference, and the drop forgets the cell's (moved) bits.
        unsafe { std::ptr::read(self.cell.get()) }
    }
}

impl Drop for EnvInner {
    fn drop(&mut self) {
        use super::drop::{Garbage, nested};
        let parent = self.parent.take();
        match &mut self.slots {
            Slots::One(v) => nested(Garbage::EnvOne(parent, std::mem::replace(v, Value::Null))),
            Slots::Fixed(s) => nested(Garbage::Env(parent, std::mem::take(s).into_vec())),
            Slots::Rec(r) => {
                let slots = std::mem::take(r.cell.get_mut());
                if *r.state.get_mut() == CLEARED {
                    // Moved out by `take`: the cell kept stale bits.
                    std::mem::forget(slots);
                    nested(Garbage::Env(parent, Vec::new()))
                } else {
                    nested(Garbage::Env(parent, slots.into_vec()))
                }
            }
        }
    }
}

thread_local! {
    /// Recursive frames this thread made ([`Env::rec_frames_made`]).
    static REC_MADE: Cell<usize> = const { Cell::new(0) };
}

/// A recursive frame was read after its evaluator released it.
#[derive(Debug, Clone, Copy)]
pub struct EnvCleared;

impl Env {
    pub fn root() -> Env {
        Env(Brc::new(EnvInner { parent: None, slots: Slots::Fixed(Box::new([])) }))
    }

    pub fn new(parent: &Env, slots: Vec<Value>) -> Env {
        let slots = slots.into_boxed_slice();
        Env(Brc::new_with(|| EnvInner { parent: Some(parent.clone()), slots: Slots::Fixed(slots) }))
    }

    pub fn new_one(parent: &Env, v: Value) -> Env {
        Env(Brc::new_with(|| EnvInner { parent: Some(parent.clone()), slots: Slots::One(v) }))
    }

    /// A recursive frame of `n` slots (unreadable until [`Env::fill`]).
    pub fn new_rec(parent: &Env, _n: usize) -> Env {
        REC_MADE.with(|c| c.set(c.get().wrapping_add(1)));
        let gc = crate::value::collect::epoch::word_init();
        Env(Brc::new_with(|| EnvInner {
            parent: Some(parent.clone()),
            slots: Slots::Rec(RecSlots { state: AtomicU8::new(UNFILLED), gc: AtomicU32::new(gc), cell: UnsafeCell::new(Box::new([])) }),
        }))
    }

    /// Set the slots of a recursive frame. Only the first call has an
    /// effect: call it right after creating the frame, before the frame can
    /// be reached from another thread.
    pub fn fill(&self, values: Vec<Value>) {
        if let Slots::Rec(r) = &self.0.slots
            && r.state.compare_exchange(UNFILLED, FILLING, Ordering::Acquire, Ordering::Relaxed).is_ok()
        {
            // SAFETY: we moved the state from unfilled to filling: nobody
            // reads the cell (readers wait for `FILLED`) or writes it.
            unsafe { *r.cell.get() = values.into_boxed_slice() };
            r.state.store(FILLED, Ordering::Release);
        }
    }

    /// Replace the slots of a filled recursive frame (`__overrides`).
    ///
    /// # Safety
    /// Only the thread that created the frame, before the frame (or any
    /// thunk or closure that captures it) is reachable from another thread,
    /// and while no reference into the slots (from an evaluation in this
    /// frame) is alive.
    pub(crate) unsafe fn refill(&self, values: Vec<Value>) {
        if let Slots::Rec(r) = &self.0.slots
            && r.state.load(Ordering::Acquire) == FILLED
        {
            // SAFETY: per the contract nobody else reads or writes the cell.
            let old = std::mem::replace(unsafe { &mut *r.cell.get() }, values.into_boxed_slice());
            drop(old);
        }
    }

    pub fn is_rec(&self) -> bool {
        matches!(self.0.slots, Slots::Rec(_))
    }

    pub fn lookup(&self, depth: u32, idx: u32) -> Result<Value, EnvCleared> {
        self.slot(depth, idx).cloned()
    }

    /// Like [`Env::lookup`], but looks through a forced thunk without
    /// cloning the thunk itself (the hot path of variable access).
    #[inline]
    pub fn lookup_shallow(&self, depth: u32, idx: u32) -> Result<Value, EnvCleared> {
        self.slot(depth, idx).map(|v| match v {
            Value::Thunk(t) => t.get().unwrap_or_else(|| v.clone()),
            v => v.clone(),
        })
    }

    /// A reference to a slot (valid while the frame is borrowed: see the
    /// module invariants).
    #[inline]
    pub(crate) fn slot(&self, depth: u32, idx: u32) -> Result<&Value, EnvCleared> {
        let mut e = &self.0;
        for _ in 0..depth {
            e = &e.parent.as_ref().ok_or(EnvCleared)?.0;
        }
        match &e.slots {
            Slots::One(v) if idx == 0 => Ok(v),
            Slots::One(_) => Err(EnvCleared),
            Slots::Fixed(s) => s.get(idx as usize).ok_or(EnvCleared),
            Slots::Rec(r) => r.get().and_then(|s| s.get(idx as usize)).ok_or(EnvCleared),
        }
    }

    pub fn downgrade(&self) -> Weak<EnvInner> {
        Brc::downgrade(&self.0)
    }

    /// Drop the slots of a recursive frame (breaking reference cycles).
    /// Only where nothing evaluates on the heap (the evaluator's drop).
    pub(crate) fn clear_weak(w: &Weak<EnvInner>) {
        if let Some(e) = w.upgrade()
            && let Slots::Rec(r) = &e.slots
        {
            drop(r.take());
        }
    }
}

// Access for the cycle collector (`value/collect.rs`).
impl Env {
    /// How many recursive frames the calling thread has made (wrapping):
    /// the growth of the collector's young heap, read around units of work
    /// to schedule collections.
    pub fn rec_frames_made() -> usize {
        REC_MADE.with(Cell::get)
    }

    pub(crate) fn addr(&self) -> usize {
        Brc::as_ptr(&self.0) as usize
    }

    pub(crate) fn strong_count(&self) -> usize {
        Brc::strong_count(&self.0)
    }

    /// A recursive frame's collector word (only the epoch bit outside a
    /// collection).
    #[inline]
    pub(crate) fn gc_word(&self) -> Option<&AtomicU32> {
        match &self.0.slots {
            Slots::Rec(r) => Some(&r.gc),
            _ => None,
        }
    }

    pub(crate) fn upgrade(w: &Weak<EnvInner>) -> Option<Env> {
        w.upgrade().map(Env)
    }

    pub(crate) fn parent_env(&self) -> Option<&Env> {
        self.0.parent.as_ref()
    }

    /// Call `f` with every slot.
    pub(crate) fn for_each_slot(&self, f: impl FnMut(&Value)) {
        match &self.0.slots {
            Slots::One(v) => std::iter::once(v).for_each(f),
            Slots::Fixed(s) => s.iter().for_each(f),
            Slots::Rec(r) => r.get().unwrap_or(&[]).iter().for_each(f),
        }
    }

    /// Take the slots of a recursive frame out (empty for other frames).
    /// Only at the collector's stop-the-world point (module invariants).
    pub(crate) fn take_rec_slots(&self) -> Box<[Value]> {
        match &self.0.slots {
            Slots::Rec(r) => r.take(),
            _ => Box::new([]),
        }
    }
}
