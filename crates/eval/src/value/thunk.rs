//! Thunks: lazily evaluated, shared, thread-safe.
//!
//! Design: one 32-bit atomic state word (and a 32-bit word that only the
//! cycle collector uses) and one 24-byte cell that holds first the pending
//! work ([`Pending`]) and then the result (a union): a thunk is 48 bytes
//! with its reference counts, a smaller allocator size class than 64 (thunks
//! are the most numerous allocation of an evaluation). A result that
//! arrives while the cell is still borrowed (a race between threads, rare)
//! is boxed in a process-wide side table keyed by the thunk's address
//! ([`boxed`]). The state word holds flag bits (`DONE`,
//! a short `LOCK`, `BOXED`, `PENDING`) and the id of the thread that owns
//! the evaluation (0: none). Reading a forced thunk is one `Acquire` load
//! and a clone; claiming an unclaimed thunk is one compare-and-swap; the
//! owner evaluates its pending work in place (borrowed, not cloned) and
//! publishes the result under the lock bit. The lock bit only guards the
//! cells for a few instructions (writing the result, taking or cloning the
//! pending work); nobody waits on it while evaluating.
//!
//! Invariants (what makes the `unsafe` blocks sound):
//! - `PENDING` set: the cell holds the pending work. `DONE` set without
//!   `BOXED`: the cell holds the result. `DONE | BOXED`: the side table's
//!   box for this thunk holds the result (the cell may still hold the
//!   pending work, see below). `BOXED` without `DONE`: the collector moved
//!   the boxed result out (the box stays allocated, its bits stale, until
//!   the thunk is dropped). Without `BOXED` the table has no entry for the
//!   thunk. Neither `DONE` nor `PENDING`: the cell is empty. Flags change
//!   only while holding the lock.
//! - A result is written once, while holding the lock, before `DONE` is
//!   published with `Release`; it is never moved or written again (only the
//!   collector's `clear` takes it, with exclusive access). So once `DONE` is
//!   seen with `Acquire`, a shared reference to it is valid for as long as
//!   the thunk is borrowed.
//! - The pending work is only read or taken by (a) the owner, which reads it
//!   in place while it evaluates and takes it in [`Thunk::end`]; (b) other
//!   threads while holding the lock, which clone it, or take it only if no
//!   owner is registered. Only the owner clears its owner id. So while a
//!   thread owns the thunk, nobody else takes the pending work out from
//!   under its borrow: a foreign thread that finishes first publishes its
//!   result in the box and leaves the cell to the owner.
//!
//! Concurrency contract: a thread that starts forcing claims the thunk with
//! its thread id. If it meets its own claim again, that is infinite
//! recursion. Another thread that finds the thunk claimed does not wait (no
//! deadlock is possible): it evaluates a clone of the pending work itself,
//! tracking it in a thread-local list to detect its own recursion;
//! evaluation is pure, so whichever result is stored first wins and both
//! return that one. A failed evaluation releases the claim and keeps the
//! pending work, so forcing again re-raises the error (as C++ Nix does).

use std::cell::{Cell, RefCell, UnsafeCell};
use std::mem::ManuallyDrop;
use std::sync::Arc;

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::EvalError;
use crate::eval::Evaluator;
use crate::ir::Expr;
use crate::value::brc::{Brc, WeakBrc};
use crate::value::{Env, Value};

pub type NativeThunk = dyn Fn(&Evaluator) -> Result<Value, EvalError> + Send + Sync;

/// The work a thunk does when forced.
#[derive(Clone)]
pub enum Pending {
    Expr(Brc<Expr>, Env),
    /// A function and the arguments to apply it to, in order (at least
    /// one): boxed, so that the pending work (and the thunk) stays small;
    /// `Expr` is the common kind.
    Apply(Box<[Value]>),
    Native(Arc<NativeThunk>),
}

const _: () = assert!(std::mem::size_of::<Pending>() == 24);

const DONE: u32 = 1 << 31;
const LOCK: u32 = 1 << 30;
const BOXED: u32 = 1 << 29;
const PENDING: u32 = 1 << 28;
const OWNER: u32 = PENDING - 1;

/// The pending work, the result or nothing, as the state word says.
union Content {
    pending: ManuallyDrop<Pending>,
    value: ManuallyDrop<Value>,
}

pub struct ThunkInner {
    state: AtomicU32,
    /// The cycle collector's word (`value/collect.rs`): outside a
    /// collection only the epoch bit (`collect/epoch.rs`, set when made,
    /// read when forced).
    gc: AtomicU32,
    cell: UnsafeCell<Content>,
}

// SAFETY: the cells are only accessed following the protocol in the module
// documentation (results: written once before `DONE` is published, then
// read-only; pending work: owner borrow or lock bit), and their contents
// (`Value`, `Pending`) are `Send + Sync`.
unsafe impl Sync for ThunkInner {}

impl Drop for ThunkInner {
    fn drop(&mut self) {
        let s = *self.state.get_mut();
        if s & BOXED != 0 {
            return self.drop_boxed(s);
        }
        // Without `BOXED` the table has no entry for the thunk but maybe a
        // stale one (see `publish_in_cell`).
        boxed::remove_stale(self.key());
        let cell = self.cell.get_mut();
        if s & PENDING != 0 {
            match super::drop::shallow() {
                // SAFETY: `PENDING`: the cell holds the pending work, dropped
                // once, here (the thunk is being dropped).
                Some(_nesting) => unsafe { ManuallyDrop::drop(&mut cell.pending) },
                // SAFETY: as above; moved out instead.
                None => super::drop::drop_thunk_parts(None, Some(unsafe { ManuallyDrop::take(&mut cell.pending) })),
            }
        } else if s & DONE != 0 {
            // SAFETY: `DONE` without `BOXED`: the cell holds the result.
            let v = unsafe { &mut cell.value };
            if super::drop::is_scalar(v) {
                // Holds no other value: dropped in place whatever the depth.
                // SAFETY: the result is dropped once, here.
                unsafe { ManuallyDrop::drop(v) };
                return;
            }
            match super::drop::shallow() {
                // SAFETY: as above.
                Some(_nesting) => unsafe { ManuallyDrop::drop(v) },
                // SAFETY: as above; moved out instead.
                None => super::drop::drop_thunk_parts(Some(unsafe { ManuallyDrop::take(v) }), None),
            }
        }
    }
}

impl ThunkInner {
    /// The drop of a thunk whose result box is in the side table (`BOXED`,
    /// state `s`): the box holds the result only with `DONE` too (a
    /// collector's `clear` moved it out otherwise); the cell may still hold
    /// the pending work.
    #[cold]
    #[inline(never)]
    fn drop_boxed(&mut self, s: u32) {
        let cell = self.cell.get_mut();
        // SAFETY: exclusive access; `PENDING` says the cell holds the
        // pending work, read out once.
        let pending = if s & PENDING != 0 { Some(unsafe { ManuallyDrop::take(&mut cell.pending) }) } else { None };
        let boxed = boxed::remove(self.key());
        let boxed = boxed.and_then(|b| if s & DONE != 0 { Some(ManuallyDrop::into_inner(*b)) } else { None });
        super::drop::drop_thunk_parts(boxed, pending);
    }
}

#[derive(Clone)]
pub struct Thunk(Brc<ThunkInner>);

/// How the current thread stands towards a thunk it is forcing.
pub enum Claim {
    /// This thread owns the evaluation.
    Owned,
    /// Another thread is evaluating it; we evaluate too.
    Foreign,
}

/// The pending work handed to the forcing thread.
pub enum Work<'a> {
    /// The owner evaluates the thunk's own pending work in place.
    Borrowed(&'a Pending),
    /// Another thread evaluates a copy.
    Cloned(Pending),
}

impl std::ops::Deref for Work<'_> {
    type Target = Pending;
    fn deref(&self) -> &Pending {
        match self {
            Work::Borrowed(p) => p,
            Work::Cloned(p) => p,
        }
    }
}

/// What forcing should do next.
pub enum Start<'a> {
    /// Already forced (by another thread meanwhile).
    Done(&'a Value),
    /// This thread is already forcing it: infinite recursion.
    Recursion,
    /// Evaluate this, then call [`Thunk::end`].
    Eval(Work<'a>, Claim),
}

/// This thread's owner id: 1..=OWNER (ids are reused after 2^28 threads).
pub(crate) fn thread_id() -> u32 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    thread_local! { static ID: Cell<u32> = const { Cell::new(0) }; }
    ID.with(|id| {
        let v = id.get();
        if v != 0 {
            return v;
        }
        let v = (NEXT.fetch_add(1, Ordering::Relaxed) % u64::from(OWNER)) as u32 + 1;
        id.set(v);
        v
    })
}

thread_local! {
    static FOREIGN: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

impl ThunkInner {
    /// Set the lock bit; returns the state before (without the lock bit).
    fn lock(&self) -> u32 {
        let mut spins = 0u32;
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & LOCK == 0
                && self.state.compare_exchange_weak(s, s | LOCK, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return s;
            }
            spins += 1;
            if spins > 64 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Clear the lock bit, publishing `new` (which must not have it).
    fn unlock(&self, new: u32) {
        self.state.store(new, Ordering::Release);
    }

    /// Take the pending work out of the cell (if there), given the state
    /// `s` read under the lock; returns it and `s` without `PENDING`.
    /// Caller holds the lock and no borrow of the pending work is alive
    /// (it owns the thunk, or no owner is registered).
    fn take_pending(&self, s: u32) -> (Option<Pending>, u32) {
        if s & PENDING == 0 {
            return (None, s);
        }
        // SAFETY: `PENDING` says the cell holds the pending work; per the
        // caller contract nobody else reads it now. Clearing the flag makes
        // the cell empty.
        let p = unsafe { ManuallyDrop::take(&mut (*self.cell.get()).pending) };
        (Some(p), s & !PENDING)
    }

    /// Clone the pending work; caller holds the lock.
    fn clone_pending(&self, s: u32) -> Option<Pending> {
        if s & PENDING == 0 {
            return None;
        }
        // SAFETY: `PENDING` says the cell holds the pending work, and under
        // the lock nobody takes it while we clone it.
        Some(unsafe { (*(*self.cell.get()).pending).clone() })
    }

    /// Publish `v` as the result, in the cell (whose pending work the
    /// caller has taken, state `s` without `PENDING`). Caller holds the lock;
    /// unlocks. `BOXED` here can only be a stale box (an owner finishing a
    /// thunk the collector cleared meanwhile): it is left in the table
    /// (references into it may outlive the clearing), counted as stale so
    /// that the thunk's drop frees it, and the flag cleared, since the
    /// result is in the cell.
    fn publish_in_cell(&self, s: u32, v: Value) {
        if s & BOXED != 0 {
            boxed::mark_stale();
        }
        // SAFETY: the cell is empty (the pending work was taken) and no
        // result was published, so nobody reads the cell.
        unsafe { (*self.cell.get()).value = ManuallyDrop::new(v) };
        self.unlock((s & !(OWNER | BOXED)) | DONE);
    }

    /// The published result given the state `s` (with `DONE`) read with
    /// `Acquire`.
    #[inline]
    fn result(&self, s: u32) -> &Value {
        if s & BOXED != 0 {
            return self.boxed_result();
        }
        // SAFETY: `DONE` was observed with Acquire: the result was written
        // before it was published, in the cell as `BOXED` says, and is never
        // moved or written again while the thunk is borrowed.
        unsafe { &(*self.cell.get()).value }
    }

    /// The result in the side table (`DONE | BOXED` was observed).
    #[cold]
    #[inline(never)]
    fn boxed_result(&self) -> &Value {
        match boxed::get(self.key()) {
            // SAFETY: the box was inserted before `DONE | BOXED` was
            // published, and is removed only by the thunk's drop (not while
            // it is borrowed) or moved out of by `clear` (whose caller keeps
            // the moved bits alive while references may exist).
            Some(p) => unsafe { &*p },
            None => &NULL,
        }
    }

    /// This thunk's key in the [`boxed`] table: its address (as
    /// [`Thunk::id`]).
    fn key(&self) -> usize {
        self as *const ThunkInner as usize
    }

    #[inline]
    fn value_ref(&self) -> Option<&Value> {
        let s = self.state.load(Ordering::Acquire);
        if s & DONE != 0 { Some(self.result(s)) } else { None }
    }
}

static NULL: Value = Value::Null;

impl Thunk {
    pub fn new(p: Pending) -> Thunk {
        Thunk::new_with(|| p)
    }

    /// A thunk whose pending work `make` builds in place, once the memory
    /// is allocated (see [`Brc::new_with`]).
    #[inline(always)]
    fn new_with(make: impl FnOnce() -> Pending) -> Thunk {
        let gc = crate::value::collect::epoch::word_init();
        Thunk(Brc::new_with(move || ThunkInner {
            state: AtomicU32::new(PENDING),
            gc: AtomicU32::new(gc),
            cell: UnsafeCell::new(Content { pending: ManuallyDrop::new(make()) }),
        }))
    }

    #[inline]
    pub fn expr(e: Brc<Expr>, env: Env) -> Value {
        Value::Thunk(Thunk::new_with(|| Pending::Expr(e, env)))
    }

    /// `f arg`, delayed.
    pub fn apply(f: Value, arg: Value) -> Value {
        let app: Box<[Value]> = Box::new([f, arg]);
        Value::Thunk(Thunk::new_with(|| Pending::Apply(app)))
    }

    /// `f a b`, delayed (one thunk instead of one for `f a` and one for
    /// its application to `b`).
    pub fn apply2(f: Value, a: Value, b: Value) -> Value {
        let app: Box<[Value]> = Box::new([f, a, b]);
        Value::Thunk(Thunk::new_with(|| Pending::Apply(app)))
    }

    pub fn native(f: impl Fn(&Evaluator) -> Result<Value, EvalError> + Send + Sync + 'static) -> Value {
        let f: Arc<NativeThunk> = Arc::new(f);
        Value::Thunk(Thunk::new_with(|| Pending::Native(f)))
    }

    /// The value, if forced.
    #[inline(always)]
    pub fn get(&self) -> Option<Value> {
        self.get_ref().cloned()
    }

    /// The value, if forced, without cloning it.
    #[inline(always)]
    pub fn get_ref(&self) -> Option<&Value> {
        let r = self.0.value_ref();
        if r.is_some() && self.foreign() {
            return self.get_ref_foreign();
        }
        r
    }

    /// Whether reads are checked and this is a fleet host's thunk that
    /// another thread made (`collect/epoch.rs`'s `is_foreign`: such a read
    /// is counted, and its host's garbage is then not freed at once). The
    /// collector word is beside the state, on the line just read.
    #[inline(always)]
    fn foreign(&self) -> bool {
        crate::value::collect::epoch::checking()
            && crate::value::collect::epoch::is_foreign(self.0.gc.load(Ordering::Relaxed), || Brc::is_mine(&self.0))
    }

    /// [`Thunk::get_ref`] of a foreign host thunk: counted (with its
    /// fence), then the state read again (the clearing may have come
    /// between).
    #[cold]
    #[inline(never)]
    fn get_ref_foreign(&self) -> Option<&Value> {
        crate::value::collect::epoch::foreign_read();
        self.0.value_ref()
    }

    pub fn ptr_eq(&self, other: &Thunk) -> bool {
        Brc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn id(&self) -> usize {
        Brc::as_ptr(&self.0) as usize
    }

    /// Begin forcing: claim the thunk and get its pending work. The common
    /// case (unclaimed, claimed at once) is inline, so the caller gets the
    /// [`Start`] in registers (returned through memory, it was reloaded in
    /// other widths than written: a store-forwarding stall per force).
    #[inline]
    pub fn start(&self) -> Start<'_> {
        if self.foreign() {
            // Counted before the claim (which borrows the pending work).
            crate::value::collect::epoch::foreign_read();
        }
        let me = thread_id();
        if self.0.state.compare_exchange(PENDING, PENDING | me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return self.owned_start();
        }
        self.start_contended(me)
    }

    /// [`Thunk::start`] when the thunk is not simply unclaimed.
    #[inline(never)]
    fn start_contended(&self, me: u32) -> Start<'_> {
        let inner = &*self.0;
        let s = inner.lock();
        if s & DONE != 0 {
            inner.unlock(s);
            // The result is never moved once published (module invariants).
            return Start::Done(inner.result(s));
        }
        let owner = s & OWNER;
        if owner == me {
            inner.unlock(s);
            return Start::Recursion;
        }
        if owner == 0 {
            if s & PENDING == 0 {
                // Emptied by the collector: nothing to evaluate.
                inner.unlock(s);
                return Start::Recursion;
            }
            // Unclaimed (released by a failed owner meanwhile): claim it.
            inner.unlock(s | me);
            return self.owned_start();
        }
        let p = inner.clone_pending(s);
        inner.unlock(s);
        let Some(p) = p else { return Start::Recursion };
        let id = self.id();
        FOREIGN.with(|f| {
            let mut f = f.borrow_mut();
            if f.contains(&id) {
                Start::Recursion
            } else {
                f.push(id);
                Start::Eval(Work::Cloned(p), Claim::Foreign)
            }
        })
    }

    /// The owner's view of the pending work (this thread just claimed a
    /// thunk whose cell holds it).
    #[inline]
    fn owned_start(&self) -> Start<'_> {
        // SAFETY: this thread owns the thunk and `PENDING` was set when it
        // claimed it: by the module invariants nobody takes the pending work
        // until we clear our claim in `end`, and the borrow cannot outlive
        // `&self`.
        let p = unsafe { &*(*self.0.cell.get()).pending };
        Start::Eval(Work::Borrowed(p), Claim::Owned)
    }

    /// Force: claim the thunk, evaluate its pending work with `eval` and
    /// store the result (see [`Thunk::start`] and [`Thunk::end`]). The
    /// common case (unclaimed, this thread evaluates the work in place, no
    /// other thread finished meanwhile) is inline and specialised: the
    /// claim and the work are not built as values, and the pending work is
    /// dropped inline when it is an expression with its frame.
    #[inline]
    pub fn force_with(&self, eval: impl FnOnce(&Pending) -> Result<Value, EvalError>) -> Result<&Value, EvalError> {
        match self.start() {
            Start::Eval(Work::Borrowed(p), Claim::Owned) => {
                let r = eval(p);
                self.end_owned(r)
            }
            Start::Done(v) => Ok(v),
            Start::Recursion => Err(self.recursion_error()),
            Start::Eval(w, c) => {
                let r = eval(&w);
                drop(w);
                self.end(c, r)
            }
        }
    }

    /// The error of forcing a thunk this thread is forcing already (or one
    /// the collector emptied).
    #[cold]
    #[inline(never)]
    fn recursion_error(&self) -> EvalError {
        if crate::value::collect::epoch::is_cleared(self.0.gc.load(Ordering::Relaxed)) {
            return EvalError::other("internal error: thunk released by the cycle collector");
        }
        EvalError::new(crate::error::ErrorKind::InfiniteRecursion)
    }

    /// [`Thunk::end`] for the owner: publishing in the cell when nobody
    /// else published (no `DONE`, no `BOXED`) is inline, for host thunks
    /// too (listed first, as `end` does).
    #[inline]
    fn end_owned(&self, r: Result<Value, EvalError>) -> Result<&Value, EvalError> {
        let inner = &*self.0;
        let Ok(v) = r else { return self.end(Claim::Owned, r) };
        if inner.gc.load(Ordering::Relaxed) & crate::value::collect::epoch::HOST != 0 && !super::drop::is_scalar(&v) {
            // As in `end`: listed for clearing when the host's epoch ends.
            crate::value::collect::epoch::made_host_thunk(Brc::downgrade(&self.0));
        }
        let s = inner.lock();
        if s & (DONE | BOXED) != 0 {
            return self.end_locked(true, s, Ok(v));
        }
        let (old, s) = inner.take_pending(s);
        // SAFETY: no `BOXED` and no `DONE` (checked under the lock): the
        // pending work was taken, so the cell is empty and unread.
        unsafe { (*inner.cell.get()).value = ManuallyDrop::new(v) };
        inner.unlock((s & !OWNER) | DONE);
        if let Some(p) = old {
            drop_pending(p);
        }
        // SAFETY: the result was published in the cell just above and is
        // never moved while the thunk is borrowed (module invariants).
        Ok(unsafe { &(*inner.cell.get()).value })
    }

    /// Finish forcing: store a result (first one wins, the pending work and
    /// its captured frame are dropped) or release the claim on error. The
    /// borrowed [`Work`] of this force must not be used any more. The stored
    /// result is returned borrowed (it is never moved once published): a
    /// caller that only looks at it clones nothing.
    pub fn end(&self, claim: Claim, r: Result<Value, EvalError>) -> Result<&Value, EvalError> {
        let owned = matches!(claim, Claim::Owned);
        if !owned {
            let id = self.id();
            FOREIGN.with(|f| {
                let mut f = f.borrow_mut();
                if let Some(i) = f.iter().rposition(|x| *x == id) {
                    f.remove(i);
                }
            });
        }
        let inner = &*self.0;
        if let Ok(v) = &r
            && inner.gc.load(Ordering::Relaxed) & crate::value::collect::epoch::HOST != 0
            && !super::drop::is_scalar(v)
        {
            // A host epoch's thunk gets a result that may close a cycle:
            // listed for clearing when the epoch ends.
            crate::value::collect::epoch::made_host_thunk(Brc::downgrade(&self.0));
        }
        let s = inner.lock();
        self.end_locked(owned, s, r)
    }

    /// [`Thunk::end`] once the lock is held (state `s`); unlocks.
    #[inline(never)]
    fn end_locked(&self, owned: bool, s: u32, r: Result<Value, EvalError>) -> Result<&Value, EvalError> {
        let inner = &*self.0;
        match r {
            Ok(v) => {
                if s & DONE != 0 {
                    // Another thread won; if we owned the thunk, it left the
                    // pending work to us.
                    let (old, s) = if owned { inner.take_pending(s) } else { (None, s) };
                    inner.unlock(if owned { s & !OWNER } else { s });
                    drop(old);
                    drop(v);
                    return Ok(inner.result(s));
                }
                if !owned && s & OWNER != 0 {
                    // The owner may be reading the pending work in place:
                    // publish in the box and leave the cell to it.
                    // Nobody reads the table's entry before `DONE | BOXED`
                    // is published (no result was published; a stale box of
                    // this thunk is replaced, see `boxed::insert`).
                    boxed::insert(self.id(), v);
                    inner.unlock(s | DONE | BOXED);
                    return Ok(inner.result(s | DONE | BOXED));
                }
                let (old, s) = inner.take_pending(s);
                inner.publish_in_cell(s, v);
                drop(old);
                Ok(inner.result(DONE))
            }
            Err(e) => {
                if owned {
                    // A foreign winner may have left the pending work to us.
                    let (old, s) = if s & DONE != 0 { inner.take_pending(s) } else { (None, s) };
                    inner.unlock(s & !OWNER);
                    drop(old);
                } else {
                    inner.unlock(s);
                }
                Err(e)
            }
        }
    }
}

/// Drop a forced thunk's pending work: an expression and its frame inline
/// (the common kind), the others out of line.
#[inline(always)]
fn drop_pending(p: Pending) {
    match p {
        Pending::Expr(e, env) => {
            drop(e);
            drop(env);
        }
        p => drop_pending_slow(p),
    }
}

#[inline(never)]
fn drop_pending_slow(p: Pending) {
    drop(p)
}

// Access for the cycle collector (`value/collect.rs`).
impl Thunk {
    pub(crate) fn strong_count(&self) -> usize {
        Brc::strong_count(&self.0)
    }

    pub(crate) fn upgrade(w: &WeakBrc<ThunkInner>) -> Option<Thunk> {
        w.upgrade().map(Thunk)
    }

    /// The collector's word (only the epoch bit outside a collection).
    #[inline]
    pub(crate) fn gc_word(&self) -> &AtomicU32 {
        &self.0.gc
    }

    /// Call `f` with the result (if forced) and the pending work (if any),
    /// holding the lock bit so that nobody takes the pending work meanwhile.
    /// `f` must not force or clear this thunk.
    pub(crate) fn with_contents<R>(&self, f: impl FnOnce(Option<&Value>, Option<&Pending>) -> R) -> R {
        let inner = &*self.0;
        let s = inner.lock();
        let value = if s & DONE != 0 { Some(inner.result(s)) } else { None };
        // SAFETY: `PENDING` says the cell holds the pending work; we hold the
        // lock, so it is not taken while we read it (an owner evaluating it
        // in place only reads it too).
        let pending = if s & PENDING != 0 { Some(unsafe { &*(*inner.cell.get()).pending }) } else { None };
        let r = f(value, pending);
        inner.unlock(s);
        r
    }

    /// Take the result and the pending work out (breaking the reference
    /// cycles through this thunk). Afterwards the thunk is unclaimed with
    /// nothing to evaluate: forcing it reports infinite recursion. The
    /// contents are moved out bitwise and the cells are not written, so a
    /// reference into them that another thread still holds stays valid
    /// for as long as the returned contents are not dropped.
    ///
    /// # Safety
    /// The returned contents may only be dropped once no other thread can
    /// hold a reference into this thunk's cells (from [`Thunk::get_ref`],
    /// [`Thunk::start`] or an owner's in-place evaluation): the collector
    /// clears thunks it proved unreachable while nothing evaluates, and
    /// fleet hosts' epochs defer the drop until every other thread has
    /// left the host it was in (`collect/epoch.rs`).
    pub(crate) unsafe fn clear(&self) -> (Option<Value>, Option<Pending>) {
        let inner = &*self.0;
        let s = inner.lock();
        let cell = inner.cell.get();
        // SAFETY: under the lock the flags say what the cells hold; each
        // content is read out once and the new state (0) says the cells are
        // empty, so they are never read (or dropped) again; an owner that
        // still evaluates the pending work in place reads bits we leave in
        // place (the caller keeps them alive).
        let pending = if s & PENDING != 0 { Some(unsafe { std::ptr::read(&raw const (*cell).pending) }) } else { None };
        // SAFETY: as above.
        let value = if s & (DONE | BOXED | PENDING) == DONE { Some(unsafe { std::ptr::read(&raw const (*cell).value) }) } else { None };
        // The boxed result is moved out bitwise too; its box stays in the
        // table (stale, `BOXED` without `DONE`) until the thunk is dropped.
        let boxed = if s & (DONE | BOXED) == DONE | BOXED { boxed::get(self.id()) } else { None };
        // SAFETY: the box holds the published result; the new state says it
        // was moved out, so it is never read or dropped from there again.
        let boxed = boxed.map(|p| unsafe { std::ptr::read(p) });
        inner.unlock(s & BOXED);
        (value.map(ManuallyDrop::into_inner).or(boxed), pending.map(ManuallyDrop::into_inner))
    }
}

/// The side table of results that a foreign thread published while the
/// owner still evaluated the pending work in place (`BOXED`). Only such a
/// race adds an entry, so the table is small and its lock cold; an entry
/// lives as long as its thunk, so a published result is never moved.
mod boxed {
    use std::collections::HashMap;
    use std::hash::BuildHasherDefault;
    use std::mem::ManuallyDrop;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::symbol::FxHasher;
    use crate::value::Value;

    type Table = HashMap<usize, Box<ManuallyDrop<Value>>, BuildHasherDefault<FxHasher>>;

    static TABLE: Mutex<Table> = Mutex::new(HashMap::with_hasher(BuildHasherDefault::new()));

    fn table() -> std::sync::MutexGuard<'static, Table> {
        TABLE.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Entries whose thunk no longer says `BOXED` (see `publish_in_cell`):
    /// such a thunk's drop looks its address up, so none outlives its thunk.
    /// Zero in nearly every process, so a drop pays one load (while one
    /// exists, every thunk drop takes the table's lock: rare races only).
    static STALE: AtomicUsize = AtomicUsize::new(0);

    /// Box `v` as the result of the thunk at `key`. An entry already there
    /// is this thunk's stale box (cleared, finished in the cell, then raced
    /// again): its bits were moved out, so it is freed without dropping them.
    pub(super) fn insert(key: usize, v: Value) {
        if table().insert(key, Box::new(ManuallyDrop::new(v))).is_some() {
            STALE.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The thunk's entry stays in the table without `BOXED`.
    pub(super) fn mark_stale() {
        STALE.fetch_add(1, Ordering::Relaxed);
    }

    /// A thunk without `BOXED` is dropped: free a stale box left at its
    /// address (its bits were moved out by `clear`: not dropped again).
    #[inline]
    pub(super) fn remove_stale(key: usize) {
        if STALE.load(Ordering::Relaxed) != 0 {
            remove_stale_slow(key);
        }
    }

    #[cold]
    #[inline(never)]
    fn remove_stale_slow(key: usize) {
        if table().remove(&key).is_some() {
            STALE.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The boxed result of the thunk at `key`; the box stays where it is
    /// until [`remove`].
    pub(super) fn get(key: usize) -> Option<*const Value> {
        table().get(&key).map(|b| &***b as *const Value)
    }

    /// Take the thunk's box out of the table (when the thunk is dropped).
    pub(super) fn remove(key: usize) -> Option<Box<ManuallyDrop<Value>>> {
        table().remove(&key)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Condvar, Mutex};

    use super::*;
    use crate::eval::EvalConfig;
    use crate::io::MemIO;

    #[test]
    fn thunk_is_48_bytes_with_its_counts() {
        assert_eq!(std::mem::size_of::<ThunkInner>(), 32);
    }

    /// A second thread finishes while the owner still evaluates in place:
    /// its result is published (boxed), the owner returns that one too, and
    /// the pending work is dropped once the owner is done.
    #[test]
    fn foreign_result_wins_while_owner_evaluates() {
        let ev = Arc::new(Evaluator::new(EvalConfig::default(), Arc::new(MemIO::new())));
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (c, g) = (calls.clone(), gate.clone());
        let t = Thunk::native(move |_| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                let mut open = g.0.lock().unwrap();
                while !*open {
                    open = g.1.wait(open).unwrap();
                }
            }
            Ok(Value::list(vec![Value::Int(n as i64)]))
        });
        let owner = {
            let (ev, t) = (ev.clone(), t.clone());
            std::thread::spawn(move || ev.force(&t).unwrap())
        };
        while calls.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let mine = ev.force(&t).unwrap();
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        let theirs = owner.join().unwrap();
        let (Value::List(a), Value::List(b), Some(Value::List(c))) = (&mine, &theirs, t.shallow().into()) else {
            panic!("not lists")
        };
        assert!(Brc::ptr_eq(a, b) && Brc::ptr_eq(a, &c));
        assert!(matches!(a.first(), Some(Value::Int(1))));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let Value::Thunk(th) = &t else { panic!() };
        th.with_contents(|v, p| assert!(v.is_some() && p.is_none()));
    }

    #[test]
    fn failed_owner_releases_and_error_repeats() {
        let ev = Evaluator::new(EvalConfig::default(), Arc::new(MemIO::new()));
        let t = ev.eval_str("let x = { a = throw \"boom\"; }; in x").unwrap();
        let Value::Attrs(a) = ev.force(&t).unwrap() else { panic!() };
        let v = a.get_str("a").unwrap().clone();
        for _ in 0..2 {
            assert!(ev.force(&v).unwrap_err().to_string().contains("boom"));
        }
    }
}
