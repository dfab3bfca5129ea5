//! ndeploy-eval: a lazy, thread-safe Nix evaluator.
//!
//! Pipeline: source text → rnix syntax tree → [`compile`] → [`ir::Expr`]
//! (variables resolved to frame slots) → [`eval::Evaluator`] (lazy,
//! `Send + Sync` values, thunks forced once across threads) → [`print`] /
//! [`builtins`] serialisers. I/O is injected through [`io::EvalIO`].

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
