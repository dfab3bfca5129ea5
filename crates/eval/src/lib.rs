//! ndeploy-eval: a lazy, thread-safe Nix evaluator.
//!
//! Pipeline: source text → rnix syntax tree → [`compile`] → [`ir::Expr`]
//! (variables resolved to frame slots) → [`eval::Evaluator`] (lazy,
//! `Send + Sync` values, thunks forced once across threads) → [`print`] /
//! [`builtins`] serialisers. I/O is injected through [`io::EvalIO`].
//!
//! Design in brief:
//! - Compile once: each file is parsed with rnix and compiled to an IR in
//!   which every lexical variable is a `(depth, index)` frame slot; only
//!   names under `with` are looked up dynamically; builtins are constants.
//!   Imports are cached per evaluator by path (the file's value is one
//!   shared thunk).
//! - Values are 16-byte enums over `Arc`s, so one heap is shared by threads.
//!   Thunks keep their result in a `OnceLock` (forced read: one atomic
//!   load); a thread forcing a thunk another thread is evaluating evaluates
//!   it too (first result wins, no waiting, no deadlock); infinite recursion
//!   is detected per thread (claims record the owning thread).
//! - Memory: reference counting frees acyclic garbage at once; cycles only
//!   arise through recursive frames (`let`, `rec`, defaults), which the
//!   evaluator registers and clears on drop. Deep values are dropped
//!   iteratively (`value::drop`).
//! - Safety: checked integer arithmetic, `stacker`-grown stacks at the
//!   recursive entry points, a per-thread call-depth limit, bounded nesting
//!   of source: bad input gives an [`EvalError`], never a crash.

pub mod builtins;
pub mod compile;
pub mod error;
pub mod eval;
pub mod fetch;
pub mod flake;
pub mod io;
pub mod ir;
pub mod print;
pub mod source;
pub mod store;
pub mod support;
pub mod symbol;
pub mod value;

pub use error::{ErrorKind, EvalError, EvalResult};
pub use eval::{EvalConfig, Evaluator};
pub use value::Value;
