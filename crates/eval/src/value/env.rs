//! Environments: the runtime frames that compiled variable slots index into.
//!
//! Design: an [`Env`] is a frame of values plus its parent; the compiler
//! resolves every variable to `(depth, index)`, so lookup is `depth`
//! pointer hops and one slot read. A frame is one `Brc` node: a 16-byte
//! head (the parent, a word with the slot count and the frame's state, the
//! collector's word) followed by its slots (`EnvInner`, an unsized node):
//! a one-slot frame (lambda argument, `with`) is 48 bytes, and a frame of
//! `n` slots one allocation, not a node and a slot array. `Env` is a thin
//! handle (one word: thunks and closures stay small); it rebuilds the
//! node's pointer metadata (the slot count) from the head when it needs it
//! (dropping, counting).
//!
//! Frames of lambdas without default arguments, `with` frames and the like
//! are immutable (*fixed*: readable from creation on).
//!
//! Recursive frames (`let`, `rec { }`, lambdas whose defaults refer to the
//! frame) hold thunks that capture the frame itself: a reference cycle.
//! Such a frame is *rec*: its slots are written once right after creation
//! (before any other thread can reach the frame), read without locking
//! (one `Acquire` load of the head's word, a plain load on x86, which also
//! gives the slot count), and can be cleared. The evaluator registers
//! every rec frame (weakly) and clears the survivors when it is dropped,
//! which breaks every cycle (all cycles go through a rec frame: nothing
//! else is mutable after construction). Reading a frame that was never
//! filled or was cleared gives [`EnvCleared`].
//!
//! Invariants of the slots (what makes their `unsafe` sound):
//! - A fixed frame's slots are written only while it is being made (before
//!   the node is handed out); they are read for as long as it lives.
//! - A rec frame's slots are written only by [`Env::fill`] (once: unfilled
//!   -> filled, by the thread that created the frame, before it hands the
//!   frame to anyone), by [`Env::refill`] (`__overrides`: the creating
//!   thread, while no reference into the slots is alive) and by the
//!   clearing functions.
//! - Clearing ([`Env::clear_weak`], [`Env::take_rec_slots`]) moves the
//!   slots out bitwise and never writes them (the frame's drop forgets
//!   their stale bits), and happens where nothing evaluates on the heap
//!   (the evaluator's drop, the collector's stop-the-world point) or where
//!   no other thread can reach the frame and the slots are dropped only
//!   once every other thread left the fleet host it was in
//!   (`collect/epoch.rs`). So a reference into the slots, taken while
//!   filled, stays valid for as long as the frame is borrowed by an
//!   evaluation.
//! - The slot count in the head is the node's (its pointer metadata): set
//!   when made, never changed (the state bits beside it change).

use std::cell::{Cell, UnsafeCell};
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::value::brc::{Brc, WeakBrc as Weak};
use crate::value::Value;

/// A frame (a thin handle on its node: see the module docs).
pub struct Env(NonNull<Head>);

// SAFETY: an `Env` is a `Brc<EnvInner>` kept as its contents' address, and
// `EnvInner` is `Send + Sync` (its slots are written only as the module
// invariants say).
unsafe impl Send for Env {}
// SAFETY: as above.
unsafe impl Sync for Env {}

/// A frame's node contents: the head, then the slots.
#[repr(C)]
pub struct EnvInner {
    head: Head,
    slots: [Slot],
}

#[repr(C)]
struct Head {
    parent: Option<Env>,
    /// `len << LEN_SHIFT | REC? | state`.
    word: AtomicU32,
    /// The cycle collector's word (`value/collect.rs`, rec frames only):
    /// outside a collection only the epoch bit (`collect/epoch.rs`, set
    /// when made).
    gc: AtomicU32,
}

/// A slot: written only as the module invariants say, dropped by the
/// frame's drop (not by drop glue: a cleared frame's bits are stale).
#[repr(transparent)]
struct Slot(UnsafeCell<ManuallyDrop<Value>>);

// SAFETY: written only before the frame is shared or where nothing reads
// it (module invariants); `Value` is `Send + Sync`.
unsafe impl Sync for Slot {}

impl Slot {
    #[inline(always)]
    fn new(v: Value) -> Slot {
        Slot(UnsafeCell::new(ManuallyDrop::new(v)))
    }
}

/// The state bits of the head's word: readable (fixed, or rec and filled),
/// or a rec frame unfilled, being filled, or cleared.
const STATE: u32 = 3;
const READY: u32 = 0;
const UNFILLED: u32 = 1;
const FILLING: u32 = 2;
const CLEARED: u32 = 3;
/// A rec frame (registered, collectable).
const REC: u32 = 4;
const LEN_SHIFT: u32 = 3;
/// More slots than a frame can count: a scope of half a billion bindings
/// (gigabytes of source) aborts, as a reference-count overflow does.
const MAX_SLOTS: usize = (u32::MAX >> LEN_SHIFT) as usize;

const _: () = assert!(std::mem::size_of::<Head>() == 16 && std::mem::size_of::<Head>().is_multiple_of(std::mem::align_of::<Slot>()));

thread_local! {
    /// Recursive frames this thread made ([`Env::rec_frames_made`]).
    static REC_MADE: Cell<usize> = const { Cell::new(0) };
}

/// A recursive frame was read after its evaluator released it.
#[derive(Debug, Clone, Copy)]
pub struct EnvCleared;

impl Drop for EnvInner {
    fn drop(&mut self) {
        use super::drop::{Garbage, nested, shallow};
        let parent = self.head.parent.take();
        if *self.head.word.get_mut() & STATE == CLEARED {
            // Moved out by `take`: the slots hold stale bits.
            return nested(Garbage::Env(parent, Vec::new()));
        }
        match shallow() {
            Some(_nesting) => {
                drop(parent);
                for s in &mut self.slots {
                    // SAFETY: each slot holds a value (not cleared), moved
                    // out once, here, and dropped (without the drop glue's
                    // call when it holds no node).
                    crate::value::drop::drop_value(unsafe { ManuallyDrop::take(s.0.get_mut()) });
                }
            }
            None => {
                // SAFETY: as above; the values are moved out instead.
                let mut vals = self.slots.iter_mut().map(|s| unsafe { ManuallyDrop::take(s.0.get_mut()) });
                match (vals.len(), vals.next()) {
                    (1, Some(v)) => nested(Garbage::EnvOne(parent, v)),
                    (_, first) => nested(Garbage::Env(parent, first.into_iter().chain(vals).collect())),
                }
            }
        }
    }
}

impl Clone for Env {
    #[inline]
    fn clone(&self) -> Env {
        // Counting touches only the node's header: the contents' length
        // does not matter (a prefix of the node is borrowed).
        let p = std::ptr::slice_from_raw_parts(self.0.as_ptr() as *const Slot, 0) as *const EnvInner;
        // SAFETY: `self` holds a reference; the copy made here is handed to
        // the new handle.
        let b = ManuallyDrop::new(unsafe { Brc::from_raw(p) });
        Env::from_brc(Brc::clone(&b))
    }
}

impl Drop for Env {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this handle's reference is given back (with the node's
        // real length, which freeing needs).
        drop(unsafe { Brc::from_raw(self.raw()) })
    }
}

impl Env {
    #[inline(always)]
    fn head(&self) -> &Head {
        // SAFETY: a handle keeps its node alive; the head is the contents'
        // first field.
        unsafe { self.0.as_ref() }
    }

    /// The contents' pointer with its metadata (the slot count).
    #[inline(always)]
    fn raw(&self) -> *const EnvInner {
        let len = self.head().word.load(Ordering::Relaxed) >> LEN_SHIFT;
        std::ptr::slice_from_raw_parts(self.0.as_ptr() as *const Slot, len as usize) as *const EnvInner
    }

    #[inline(always)]
    fn inner(&self) -> &EnvInner {
        // SAFETY: a handle keeps its node alive.
        unsafe { &*self.raw() }
    }

    #[inline(always)]
    fn from_brc(b: Brc<EnvInner>) -> Env {
        // SAFETY: a node's contents pointer is not null.
        Env(unsafe { NonNull::new_unchecked(Brc::into_raw(b) as *mut Head) })
    }

    /// The slot values (readable frames only: see [`Env::ready_slots`]).
    #[inline(always)]
    fn slot_ptr(&self) -> *const Value {
        // The slots follow the 16-byte head (`Slot` is a transparent
        // `Value`).
        // SAFETY: within the node.
        unsafe { (self.0.as_ptr() as *const u8).add(std::mem::size_of::<Head>()) as *const Value }
    }

    /// A frame: a node of `n` slots, the slot values from `slot`.
    #[inline(always)]
    fn make(parent: Option<Env>, n: usize, flags: u32, gc: u32, mut slot: impl FnMut() -> Value) -> Env {
        // SAFETY: every slot is written.
        unsafe {
            Env::make_with(parent, n, flags, gc, |s| {
                for i in 0..n {
                    s.add(i).write(Slot::new(slot()));
                }
            })
        }
    }

    /// A frame: a node of `n` slots, which `init_slots` writes.
    ///
    /// # Safety
    /// `init_slots` writes all `n` slots at the pointer it is given.
    #[inline(always)]
    unsafe fn make_with(parent: Option<Env>, n: usize, flags: u32, gc: u32, init_slots: impl FnOnce(*mut Slot)) -> Env {
        if n > MAX_SLOTS {
            std::process::abort();
        }
        let Ok(layout) = std::alloc::Layout::array::<Slot>(n).and_then(|a| std::alloc::Layout::new::<Head>().extend(a))
        else {
            std::process::abort()
        };
        let layout = layout.0.pad_to_align();
        // Both closures take their captures by value: captured by
        // reference, the compiler kept `n`, `flags` and `gc` in stack slots
        // and reloaded them (a dozen instructions on every frame).
        let fat = move |p: *mut u8| std::ptr::slice_from_raw_parts_mut(p as *mut Slot, n) as *mut EnvInner;
        let init = move |q: *mut EnvInner| {
            // SAFETY: `q` is the fresh node's contents, of `n` slots.
            unsafe {
                (&raw mut (*q).head).write(Head {
                    parent,
                    word: AtomicU32::new(((n as u32) << LEN_SHIFT) | flags),
                    gc: AtomicU32::new(gc),
                });
                init_slots((&raw mut (*q).slots) as *mut Slot);
            }
        };
        // SAFETY: `layout` is `EnvInner`'s with `n` slots (a repr(C) head
        // then the slots), `fat` gives `n` as the metadata, `init` writes
        // every field (`init_slots` every slot: the caller's contract).
        Env::from_brc(unsafe { Brc::new_unsized(layout, fat, init) })
    }

    pub fn root() -> Env {
        Env::make(None, 0, READY, 0, || Value::Null)
    }

    pub fn new(parent: &Env, slots: Vec<Value>) -> Env {
        let n = slots.len();
        let mut it = slots.into_iter();
        Env::make(Some(parent.clone()), n, READY, 0, || it.next().unwrap_or(Value::Null))
    }

    pub fn new_one(parent: &Env, v: Value) -> Env {
        // SAFETY: the one slot is written.
        unsafe { Env::make_with(Some(parent.clone()), 1, READY, 0, |s| s.write(Slot::new(v))) }
    }

    /// A recursive frame of `n` slots (unreadable until [`Env::fill`]).
    pub fn new_rec(parent: &Env, n: usize) -> Env {
        REC_MADE.with(|c| c.set(c.get().wrapping_add(1)));
        let gc = crate::value::collect::epoch::word_init();
        Env::make(Some(parent.clone()), n, REC | UNFILLED, gc, || Value::Null)
    }

    /// A fixed frame of `n` slots (`null` until set), made slot by slot:
    /// the builder holds the only handle until [`Frame::finish`].
    #[inline]
    pub fn build(parent: &Env, n: usize) -> Frame {
        Frame(Env::make(Some(parent.clone()), n, READY, 0, || Value::Null))
    }

    /// Start filling a recursive frame slot by slot (instead of
    /// [`Env::fill`]): `None` unless it is unfilled. The frame stays
    /// unreadable until [`Filler::finish`] (for ever if the filler is
    /// dropped first, as an unfilled one).
    #[inline]
    pub fn filler(&self) -> Option<Filler<'_>> {
        let w = self.head().word.load(Ordering::Relaxed);
        let unfilled = (w & !STATE) | UNFILLED;
        if w & REC == 0
            || self.head().word.compare_exchange(unfilled, (w & !STATE) | FILLING, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            return None;
        }
        Some(Filler(self))
    }

    /// Set the slots of a recursive frame (in order; missing values leave
    /// `null`, extra ones are dropped). Only the first call has an effect:
    /// call it right after creating the frame, before the frame can be
    /// reached from another thread.
    pub fn fill(&self, values: Vec<Value>) {
        if let Some(mut f) = self.filler() {
            for (i, v) in values.into_iter().enumerate() {
                f.set(i, v);
            }
            f.finish();
        }
    }

    /// Write slot `i` (if there is one) of a frame nobody reads yet (see
    /// [`Frame`] and [`Filler`]), dropping the value it held.
    #[inline(always)]
    fn write_unread(&self, i: usize, v: Value) {
        if let Some(s) = self.inner().slots.get(i) {
            // SAFETY: the caller is the frame's only writer and nobody reads
            // the slots (module invariants: a fixed frame not handed out
            // yet, or a rec frame being filled).
            let old = std::mem::replace(unsafe { &mut *s.0.get() }, ManuallyDrop::new(v));
            // Mostly the `null` a frame is made with: no drop glue call.
            crate::value::drop::drop_value(ManuallyDrop::into_inner(old));
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
        if self.head().word.load(Ordering::Acquire) & (REC | STATE) != REC | READY {
            return;
        }
        let mut old = Vec::with_capacity(values.len());
        for (s, v) in self.inner().slots.iter().zip(values) {
            // SAFETY: per the contract nobody else reads or writes the slot.
            old.push(ManuallyDrop::into_inner(std::mem::replace(unsafe { &mut *s.0.get() }, ManuallyDrop::new(v))));
        }
        drop(old);
    }

    pub fn is_rec(&self) -> bool {
        self.head().word.load(Ordering::Relaxed) & REC != 0
    }

    pub fn lookup(&self, depth: u32, idx: u32) -> Result<Value, EnvCleared> {
        self.slot(depth, idx).cloned()
    }

    /// A reference to a slot (valid while the frame is borrowed: see the
    /// module invariants).
    #[inline]
    pub(crate) fn slot(&self, depth: u32, idx: u32) -> Result<&Value, EnvCleared> {
        let mut e = self;
        for _ in 0..depth {
            e = e.head().parent.as_ref().ok_or(EnvCleared)?;
        }
        let w = e.head().word.load(Ordering::Acquire);
        if w & REC != 0 && crate::value::collect::epoch::checking() {
            // A tail call: no call returns here (callers stay frameless).
            return e.slot_checked(idx);
        }
        e.slot_in(w, idx)
    }

    /// Slot `idx` given the head's word `w` (read with `Acquire`).
    #[inline(always)]
    fn slot_in(&self, w: u32, idx: u32) -> Result<&Value, EnvCleared> {
        if w & STATE != READY || idx >= w >> LEN_SHIFT {
            return Err(EnvCleared);
        }
        // SAFETY: readable, and `idx` is below the slot count.
        Ok(unsafe { &*self.slot_ptr().add(idx as usize) })
    }

    /// [`Env::slot`] of a rec frame while reads are checked: a foreign
    /// read is counted, then the state read again (the clearing may have
    /// come between).
    #[inline(never)]
    fn slot_checked(&self, idx: u32) -> Result<&Value, EnvCleared> {
        if self.foreign() {
            crate::value::collect::epoch::foreign_read();
        }
        self.slot_in(self.head().word.load(Ordering::Acquire), idx)
    }

    /// Whether this rec frame is a fleet host's frame that another thread
    /// made (`collect/epoch.rs`'s `is_foreign`: its host's garbage is then
    /// not freed at once). Called only while reads are checked.
    #[inline(always)]
    fn foreign(&self) -> bool {
        crate::value::collect::epoch::is_foreign(self.head().gc.load(Ordering::Relaxed), || {
            // SAFETY: borrowed for the call; the reference stays with `self`.
            Brc::is_mine(&ManuallyDrop::new(unsafe { Brc::from_raw(self.raw()) }))
        })
    }

    /// The slots, if readable.
    #[inline]
    fn ready_slots(&self) -> &[Value] {
        let w = self.head().word.load(Ordering::Acquire);
        if w & STATE != READY {
            return &[];
        }
        // SAFETY: readable: `len` values follow the head.
        unsafe { std::slice::from_raw_parts(self.slot_ptr(), (w >> LEN_SHIFT) as usize) }
    }

    pub fn downgrade(&self) -> Weak<EnvInner> {
        // SAFETY: borrowed for the call; the reference stays with `self`.
        let b = ManuallyDrop::new(unsafe { Brc::from_raw(self.raw()) });
        Brc::downgrade(&b)
    }

    /// Drop the slots of a recursive frame (breaking reference cycles).
    /// Only where nothing evaluates on the heap (the evaluator's drop).
    pub(crate) fn clear_weak(w: &Weak<EnvInner>) {
        if let Some(e) = Env::upgrade(w) {
            drop(e.take_rec_slots());
        }
    }
}

/// A fixed frame being made ([`Env::build`]): the only handle on it.
pub struct Frame(Env);

impl Frame {
    /// Set slot `i` (ignored past the frame's slots).
    #[inline(always)]
    pub fn set(&mut self, i: usize, v: Value) {
        // The only handle: nobody reads the slots yet.
        self.0.write_unread(i, v)
    }

    #[inline(always)]
    pub fn finish(self) -> Env {
        self.0
    }
}

/// A recursive frame being filled ([`Env::filler`]): its only writer.
pub struct Filler<'a>(&'a Env);

impl Filler<'_> {
    /// Set slot `i` (ignored past the frame's slots).
    #[inline(always)]
    pub fn set(&mut self, i: usize, v: Value) {
        // Filling: readers wait for `READY`, and no other filler exists.
        self.0.write_unread(i, v)
    }

    /// Make the slots readable (unless the frame was cleared meanwhile: it
    /// stays cleared, and its values are leaked, not read).
    #[inline]
    pub fn finish(self) {
        let head = self.0.head();
        let w = head.word.load(Ordering::Relaxed);
        let _ = head.word.compare_exchange((w & !STATE) | FILLING, (w & !STATE) | READY, Ordering::Release, Ordering::Relaxed);
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
        self.0.as_ptr() as usize
    }

    pub(crate) fn strong_count(&self) -> usize {
        // SAFETY: borrowed for the call; the reference stays with `self`.
        Brc::strong_count(&ManuallyDrop::new(unsafe { Brc::from_raw(self.raw()) }))
    }

    /// A recursive frame's collector word (only the epoch bit outside a
    /// collection).
    #[inline]
    pub(crate) fn gc_word(&self) -> Option<&AtomicU32> {
        self.is_rec().then_some(&self.head().gc)
    }

    pub(crate) fn upgrade(w: &Weak<EnvInner>) -> Option<Env> {
        w.upgrade().map(Env::from_brc)
    }

    pub(crate) fn parent_env(&self) -> Option<&Env> {
        self.head().parent.as_ref()
    }

    /// Call `f` with every slot (none for an unfilled or cleared frame).
    pub(crate) fn for_each_slot(&self, f: impl FnMut(&Value)) {
        self.ready_slots().iter().for_each(f)
    }

    /// Take the slots of a recursive frame out (empty for other frames).
    /// Only at the collector's stop-the-world point (module invariants).
    pub(crate) fn take_rec_slots(&self) -> Box<[Value]> {
        let head = self.head();
        let w = head.word.load(Ordering::Relaxed);
        if w & REC == 0 || head.word.swap((w & !STATE) | CLEARED, Ordering::AcqRel) & STATE != READY {
            return Box::new([]);
        }
        // SAFETY: it was filled: the slots hold values and are not written
        // again; the state no longer says readable, so nobody takes a new
        // reference, and the frame's drop forgets the slots' (moved) bits.
        // A reference taken before stays valid while the returned values
        // live (the caller's contract).
        (0..(w >> LEN_SHIFT) as usize).map(|i| unsafe { std::ptr::read(self.slot_ptr().add(i)) }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame is one node: a 16-byte head and its slots.
    #[test]
    fn frames_are_one_node() {
        assert_eq!(std::mem::size_of::<Env>(), 8);
        assert_eq!(std::mem::size_of::<Option<Env>>(), 8);
        let root = Env::root();
        let e = Env::new(&root, vec![Value::Int(1), Value::Int(2), Value::Int(3)]);
        assert_eq!(std::alloc::Layout::for_value(e.inner()).size(), 16 + 3 * 16);
        let one = Env::new_one(&e, Value::Int(4));
        assert_eq!(std::alloc::Layout::for_value(one.inner()).size(), 32);
        assert_eq!(one.lookup(1, 2).unwrap().known_int(), Some(3));
        assert_eq!(one.lookup(0, 0).unwrap().known_int(), Some(4));
        assert!(one.lookup(0, 1).is_err() && one.lookup(2, 0).is_err() && one.lookup(3, 0).is_err());
        assert_eq!(e.strong_count(), 2);
        drop(one);
        assert_eq!(e.strong_count(), 1);
    }

    /// A rec frame is unreadable until filled, readable once, cleared by
    /// taking its slots (which keep their values), then unreadable again.
    #[test]
    fn rec_frames_fill_once_and_clear() {
        let root = Env::root();
        let r = Env::new_rec(&root, 2);
        assert!(r.is_rec() && r.gc_word().is_some() && root.gc_word().is_none());
        assert!(r.lookup(0, 0).is_err());
        r.fill(vec![Value::Int(7), Value::list(vec![Value::Int(8)])]);
        r.fill(vec![Value::Int(0), Value::Int(0)]);
        assert_eq!(r.lookup(0, 0).unwrap().known_int(), Some(7));
        let mut n = 0;
        r.for_each_slot(|_| n += 1);
        assert_eq!(n, 2);
        let w = r.downgrade();
        let taken = r.take_rec_slots();
        assert_eq!(taken.len(), 2);
        assert!(matches!(&taken[1], Value::List(l) if l.len() == 1));
        assert!(r.lookup(0, 0).is_err());
        assert!(r.take_rec_slots().is_empty());
        drop(r);
        assert!(Env::upgrade(&w).is_none());
        drop(w);
    }
}
