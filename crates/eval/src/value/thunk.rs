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
    state: Mutex<State>,
}

struct State {
    /// `None` once forced.
    pending: Option<Pending>,
    /// Thread id of the claiming thread, 0 if none.
    owner: u64,
}

impl Drop for ThunkInner {
    fn drop(&mut self) {
        use super::drop::{Garbage, defer};
        let value = self.value.take().map(Garbage::Value);
        let pending = self.state.get_mut().unwrap_or_else(|e| e.into_inner()).pending.take();
        let (a, b) = match pending {
            Some(Pending::Expr(_, env)) => (Some(Garbage::Env(env)), None),
            Some(Pending::Apply(f, x)) => (Some(Garbage::Value(f)), Some(Garbage::Value(x))),
            Some(Pending::Native(_)) | None => (None, None),
        };
        if value.is_none() && a.is_none() {
            return;
        }
        defer(value.into_iter().chain(a).chain(b));
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

/// What forcing should do next.
pub enum Start {
    /// Already forced (by another thread meanwhile).
    Done(Value),
    /// This thread is already forcing it: infinite recursion.
    Recursion,
    /// Evaluate this, then call [`Thunk::end`].
    Eval(Pending, Claim),
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
        Thunk(Arc::new(ThunkInner { value: OnceLock::new(), state: Mutex::new(State { pending: Some(p), owner: 0 }) }))
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

    /// Forced to a value without children (dropping it cannot recurse).
    pub(crate) fn holds_scalar(&self) -> bool {
        matches!(
            self.0.value.get(),
            Some(Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::String(_) | Value::Path(_))
        )
    }

    pub(crate) fn is_shared(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }

    pub fn ptr_eq(&self, other: &Thunk) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// Begin forcing: claim the thunk and get a copy of its pending work.
    pub fn start(&self) -> Start {
        let me = thread_id();
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = &st.pending else {
            drop(st);
            return match self.0.value.get() {
                Some(v) => Start::Done(v.clone()),
                None => Start::Recursion,
            };
        };
        let p = p.clone();
        if st.owner == 0 {
            st.owner = me;
            return Start::Eval(p, Claim::Owned);
        }
        if st.owner == me {
            return Start::Recursion;
        }
        drop(st);
        let id = self.id();
        FOREIGN.with(|f| {
            let mut f = f.borrow_mut();
            if f.contains(&id) {
                Start::Recursion
            } else {
                f.push(id);
                Start::Eval(p, Claim::Foreign)
            }
        })
    }

    /// Finish forcing: store a result (first one wins, the pending work and
    /// its captured frame are dropped) or release the claim on error.
    pub fn end(&self, claim: Claim, r: Result<Value, EvalError>) -> Result<Value, EvalError> {
        if let Claim::Foreign = claim {
            let id = self.id();
            FOREIGN.with(|f| {
                let mut f = f.borrow_mut();
                if let Some(i) = f.iter().rposition(|x| *x == id) {
                    f.remove(i);
                }
            });
        }
        match r {
            Ok(v) => {
                let _ = self.0.value.set(v);
                let old = {
                    let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
                    if let Claim::Owned = claim {
                        st.owner = 0;
                    }
                    st.pending.take()
                };
                drop(old);
                Ok(self.0.value.get().cloned().unwrap_or(Value::Null))
            }
            Err(e) => {
                if let Claim::Owned = claim {
                    self.0.state.lock().unwrap_or_else(|e| e.into_inner()).owner = 0;
                }
                Err(e)
            }
        }
    }
}
