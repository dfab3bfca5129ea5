//! Thunks: lazily evaluated, shared, thread-safe.
//!
//! Design: one atomic state word plus two cells, the pending work
//! ([`Pending`]) and the result. The state word holds a `DONE` bit, a short
//! `LOCK` bit and the id of the thread that owns the evaluation (0: none).
//! Reading a forced thunk is one `Acquire` load and a clone; claiming an
//! unclaimed thunk is one compare-and-swap; the owner evaluates its pending
//! work in place (borrowed, not cloned) and publishes the result under the
//! lock bit. The lock bit only guards the two cells for a few instructions
//! (writing the result, taking or cloning the pending work); nobody waits
//! on it while evaluating.
//!
//! Invariants (what makes the `unsafe` blocks sound):
//! - The result cell is written once, while holding the lock, before `DONE`
//!   is published with `Release`; it is never written again and is dropped
//!   only with the thunk. So once `DONE` is seen with `Acquire`, a shared
//!   reference to it is valid for the thunk's lifetime.
//! - The pending cell is `Some` until it is taken; it is only read or taken
//!   by (a) the owner, which reads it in place while it evaluates and takes
//!   it in [`Thunk::end`]; (b) other threads while holding the lock, which
//!   clone it, or take it only if no owner is registered. Only the owner
//!   clears its owner id. So while a thread owns the thunk, nobody else
//!   takes the pending work out from under its borrow.
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
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::EvalError;
use crate::eval::Evaluator;
use crate::ir::Expr;
use crate::value::{Env, Value};

pub type NativeThunk = dyn Fn(&Evaluator) -> Result<Value, EvalError> + Send + Sync;

/// The work a thunk does when forced.
#[derive(Clone)]
pub enum Pending {
    Expr(Arc<Expr>, Env),
    Apply(Value, Value),
    Native(Arc<NativeThunk>),
}

const DONE: u64 = 1 << 63;
const LOCK: u64 = 1 << 62;
const OWNER: u64 = LOCK - 1;

pub struct ThunkInner {
    state: AtomicU64,
    value: UnsafeCell<MaybeUninit<Value>>,
    pending: UnsafeCell<Option<Pending>>,
}

// SAFETY: the cells are only accessed following the protocol in the module
// documentation (result: written once before `DONE` is published, then
// read-only; pending work: owner borrow or lock bit), and their contents
// (`Value`, `Pending`) are `Send + Sync`.
unsafe impl Sync for ThunkInner {}

impl Drop for ThunkInner {
    fn drop(&mut self) {
        let value = if *self.state.get_mut() & DONE != 0 {
            // SAFETY: `DONE` is set only after the result was written; we
            // have exclusive access and read it out exactly once.
            Some(unsafe { self.value.get_mut().assume_init_read() })
        } else {
            None
        };
        let pending = self.pending.get_mut().take();
        super::drop::drop_thunk_parts(value, pending);
    }
}

#[derive(Clone)]
pub struct Thunk(Arc<ThunkInner>);

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
    Done(Value),
    /// This thread is already forcing it: infinite recursion.
    Recursion,
    /// Evaluate this, then call [`Thunk::end`].
    Eval(Work<'a>, Claim),
}

fn thread_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    thread_local! { static ID: Cell<u64> = const { Cell::new(0) }; }
    ID.with(|id| {
        let v = id.get();
        if v != 0 {
            return v;
        }
        let v = NEXT.fetch_add(1, Ordering::Relaxed) & OWNER;
        id.set(v);
        v
    })
}

thread_local! {
    static FOREIGN: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

impl ThunkInner {
    /// Set the lock bit; returns the state before (without the lock bit).
    fn lock(&self) -> u64 {
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
    fn unlock(&self, new: u64) {
        self.state.store(new, Ordering::Release);
    }

    /// Take the pending work. Caller holds the lock or owns the thunk with
    /// no one else able to take it (see the module invariants).
    fn take_pending(&self) -> Option<Pending> {
        // SAFETY: per the caller contract, no other thread accesses the cell
        // now, and this thread holds no borrow of it.
        unsafe { (*self.pending.get()).take() }
    }

    #[inline]
    fn value_ref(&self) -> Option<&Value> {
        if self.state.load(Ordering::Acquire) & DONE != 0 {
            // SAFETY: `DONE` observed with Acquire: the result was written
            // before it was published and is immutable from then on.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }
}

impl Thunk {
    pub fn new(p: Pending) -> Thunk {
        Thunk(Arc::new(ThunkInner {
            state: AtomicU64::new(0),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            pending: UnsafeCell::new(Some(p)),
        }))
    }

    pub fn expr(e: Arc<Expr>, env: Env) -> Value {
        Value::Thunk(Thunk::new(Pending::Expr(e, env)))
    }

    pub fn apply(f: Value, arg: Value) -> Value {
        Value::Thunk(Thunk::new(Pending::Apply(f, arg)))
    }

    pub fn native(f: impl Fn(&Evaluator) -> Result<Value, EvalError> + Send + Sync + 'static) -> Value {
        Value::Thunk(Thunk::new(Pending::Native(Arc::new(f))))
    }

    /// The value, if forced.
    #[inline]
    pub fn get(&self) -> Option<Value> {
        self.0.value_ref().cloned()
    }

    /// The value, if forced, without cloning it.
    #[inline]
    pub fn get_ref(&self) -> Option<&Value> {
        self.0.value_ref()
    }

    pub fn ptr_eq(&self, other: &Thunk) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// Begin forcing: claim the thunk and get its pending work.
    pub fn start(&self) -> Start<'_> {
        let me = thread_id();
        let inner = &*self.0;
        if inner.state.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return self.owned_start();
        }
        let s = inner.lock();
        if s & DONE != 0 {
            inner.unlock(s);
            return match inner.value_ref() {
                Some(v) => Start::Done(v.clone()),
                None => Start::Recursion,
            };
        }
        let owner = s & OWNER;
        if owner == 0 {
            // Released by a failed owner meanwhile: claim it.
            inner.unlock(me);
            return self.owned_start();
        }
        if owner == me {
            inner.unlock(s);
            return Start::Recursion;
        }
        // SAFETY: we hold the lock, so nobody takes the pending work while
        // we clone it.
        let p = unsafe { (*inner.pending.get()).clone() };
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

    /// The owner's view of the pending work (this thread just claimed it).
    fn owned_start(&self) -> Start<'_> {
        // SAFETY: this thread owns the thunk: by the module invariants no
        // other thread takes the pending work until we clear our claim in
        // `end`, and the borrow cannot outlive `&self`.
        match unsafe { (*self.0.pending.get()).as_ref() } {
            Some(p) => Start::Eval(Work::Borrowed(p), Claim::Owned),
            None => {
                // Not `DONE` yet without pending work cannot happen; be safe.
                let s = self.0.lock();
                self.0.unlock(s & DONE);
                Start::Recursion
            }
        }
    }

    /// Finish forcing: store a result (first one wins, the pending work and
    /// its captured frame are dropped) or release the claim on error. The
    /// borrowed [`Work`] of this force must not be used any more.
    pub fn end(&self, claim: Claim, r: Result<Value, EvalError>) -> Result<Value, EvalError> {
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
        match r {
            Ok(v) => {
                let s = inner.lock();
                if s & DONE != 0 {
                    // Another thread won; if we owned it, the pending work
                    // was left to us.
                    let old = if owned { inner.take_pending() } else { None };
                    inner.unlock(if owned { DONE } else { s });
                    drop(old);
                    drop(v);
                    return Ok(inner.value_ref().cloned().unwrap_or(Value::Null));
                }
                // SAFETY: we hold the lock and `DONE` is not set: nobody has
                // written or read the result cell.
                unsafe { (*inner.value.get()).write(v.clone()) };
                let owner = s & OWNER;
                // A foreign winner leaves the pending work to a registered
                // owner, which may be evaluating it in place.
                let old = if owned || owner == 0 { inner.take_pending() } else { None };
                inner.unlock(if owned { DONE } else { DONE | owner });
                drop(old);
                Ok(v)
            }
            Err(e) => {
                if owned {
                    let s = inner.lock();
                    let old = if s & DONE != 0 { inner.take_pending() } else { None };
                    inner.unlock(s & DONE);
                    drop(old);
                }
                Err(e)
            }
        }
    }
}

// Access for the cycle collector (`value/collect.rs`).
impl Thunk {
    pub(crate) fn strong_count(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    /// Call `f` with the result (if forced) and the pending work (if any),
    /// holding the lock bit so that nobody takes the pending work meanwhile.
    /// `f` must not force or clear this thunk.
    pub(crate) fn with_contents<R>(&self, f: impl FnOnce(Option<&Value>, Option<&Pending>) -> R) -> R {
        let inner = &*self.0;
        let s = inner.lock();
        // SAFETY: with `DONE` set the result is written and immutable; we
        // hold the lock, so the pending work is not taken while we read it
        // (an owner evaluating it in place only reads it too).
        let r = unsafe {
            let value = if s & DONE != 0 { Some((*inner.value.get()).assume_init_ref()) } else { None };
            f(value, (*inner.pending.get()).as_ref())
        };
        inner.unlock(s);
        r
    }

    /// Take the result and the pending work out (breaking the reference
    /// cycles through this thunk). Afterwards the thunk is unclaimed with
    /// nothing to evaluate: forcing it reports infinite recursion.
    ///
    /// # Safety
    /// No other thread may use this thunk during the call, and no reference
    /// from [`Thunk::get_ref`] to its result may be alive (the collector
    /// only clears thunks it proved unreachable, while nothing evaluates).
    pub(crate) unsafe fn clear(&self) -> (Option<Value>, Option<Pending>) {
        let inner = &*self.0;
        let s = inner.lock();
        // SAFETY: `DONE` says the result was written; the caller guarantees
        // nobody else reads it, and clearing `DONE` below means it is never
        // read (or dropped) again.
        let value = if s & DONE != 0 { Some(unsafe { (*inner.value.get()).assume_init_read() }) } else { None };
        let pending = inner.take_pending();
        inner.unlock(0);
        (value, pending)
    }
}
