//! Thunks: lazily evaluated, shared, thread-safe.
//!
//! Design: the result lives in a `OnceLock`, so reading a forced thunk is one
//! atomic load. The work to do ([`Pending`]) sits behind a mutex and is
//! dropped once the value is set (releasing the captured code and frame).
//!
//! Concurrency: a thread that starts forcing claims the thunk by storing its
//! thread id in `owner`. If it meets its own claim again, that is infinite
//! recursion. Another thread that finds the thunk claimed does not wait (no
//! deadlock is possible): it evaluates the same pending work itself, tracking
//! it in a thread-local list to detect its own recursion; evaluation is pure,
//! so whichever result is stored first wins and both return that one.
//! A failed evaluation releases the claim and keeps the pending work, so
//! forcing again re-raises the error (as C++ Nix does).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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

struct ThunkInner {
    value: OnceLock<Value>,
    owner: AtomicU64,
    pending: Mutex<Option<Pending>>,
}

#[derive(Clone)]
pub struct Thunk(Arc<ThunkInner>);

/// How the current thread stands towards a thunk it wants to force.
pub enum Claim {
    /// This thread owns the evaluation (release with [`Thunk::release`]).
    Owned,
    /// Another thread is evaluating it; we evaluate too (`release_foreign`).
    Foreign,
    /// This thread is already forcing it: infinite recursion.
    Recursion,
}

fn thread_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! { static ID: Cell<u64> = const { Cell::new(0) }; }
    ID.with(|id| {
        if id.get() == 0 {
            id.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        id.get()
    })
}

thread_local! {
    static FOREIGN: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

impl Thunk {
    pub fn new(p: Pending) -> Thunk {
        Thunk(Arc::new(ThunkInner { value: OnceLock::new(), owner: AtomicU64::new(0), pending: Mutex::new(Some(p)) }))
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
        self.0.value.get().cloned()
    }

    pub fn ptr_eq(&self, other: &Thunk) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    pub fn claim(&self) -> Claim {
        let me = thread_id();
        match self.0.owner.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Claim::Owned,
            Err(o) if o == me => Claim::Recursion,
            Err(_) => {
                let id = self.id();
                FOREIGN.with(|f| {
                    let mut f = f.borrow_mut();
                    if f.contains(&id) {
                        Claim::Recursion
                    } else {
                        f.push(id);
                        Claim::Foreign
                    }
                })
            }
        }
    }

    pub fn release(&self, claim: &Claim) {
        match claim {
            Claim::Owned => self.0.owner.store(0, Ordering::Release),
            Claim::Foreign => {
                let id = self.id();
                FOREIGN.with(|f| {
                    let mut f = f.borrow_mut();
                    if let Some(i) = f.iter().rposition(|x| *x == id) {
                        f.remove(i);
                    }
                })
            }
            Claim::Recursion => {}
        }
    }

    /// A copy of the pending work (`None` once forced by some thread).
    pub fn pending(&self) -> Option<Pending> {
        self.0.pending.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Store the result (first one wins) and drop the pending work.
    pub fn finish(&self, v: Value) -> Value {
        let stored = match self.0.value.set(v) {
            Ok(()) => self.0.value.get().cloned(),
            Err(_) => self.0.value.get().cloned(),
        };
        let old = self.0.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(old);
        stored.unwrap_or(Value::Null)
    }
}
