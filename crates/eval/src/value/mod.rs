//! Runtime values.
//!
//! Design: a [`Value`] is 16 bytes: scalars inline, everything else behind one
//! `Arc` (so values are `Send + Sync` and cloning is one atomic increment).
//! Values are immutable once built; the only interior mutability is in
//! [`Thunk`] (forced once, first result wins) and in recursive [`Env`]s
//! (filled once, cleared when the owning evaluator is dropped).
//!
//! Invariants:
//! - [`Attrs`] entries are sorted by name and unique, so lookup is a binary
//!   search and iteration is in Nix's (byte) order.
//! - A string's [`Context`] is carried along by every string operation.
//! - Only [`Value::Thunk`] may be unevaluated; `Evaluator::force` never
//!   returns a thunk.

mod attrs;
pub(crate) mod brc;
pub mod collect;
pub(crate) mod drop;
pub(crate) mod env;
mod string;
pub(crate) mod thunk;

use std::sync::Arc;

pub use brc::Brc;
pub use attrs::{Attr, Attrs, AttrsBuilder};
pub use env::{Env, EnvCleared};
pub use string::{Context, NixString};
pub use thunk::{Pending, Thunk};

use crate::builtins::PrimOp;
use crate::ir::Lambda;

/// A list: shared, immutable.
pub type List = Brc<ListVec>;

pub use drop::ListVec;

/// A lambda together with the environment it closes over.
pub struct Closure {
    pub lambda: Brc<Lambda>,
    pub env: Env,
}

/// A partially applied primop.
pub struct PrimOpApp {
    pub op: &'static PrimOp,
    pub args: Vec<Value>,
}

impl Drop for PrimOpApp {
    fn drop(&mut self) {
        drop::defer_values(std::mem::take(&mut self.args));
    }
}

/// `repr(C, u64)`: a word of tag and a word of payload, no padding, so a
/// value is copied as two whole words (with the default layout a `Bool`
/// sits at offset 1 and copies are split into odd-sized moves that stall
/// store forwarding). The tag's unused values still serve as niches
/// (`Option<Value>` and `EvalResult<Value>` are 16 bytes).
#[repr(C, u64)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(Brc<NixString>),
    /// An absolute, canonical path.
    Path(Arc<String>),
    Attrs(Attrs),
    List(List),
    Lambda(Brc<Closure>),
    PrimOp(&'static PrimOp),
    PrimOpApp(Arc<PrimOpApp>),
    Thunk(Thunk),
}

impl Value {
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(Brc::new(NixString::plain(s.into())))
    }

    pub fn string_ctx(s: impl Into<String>, ctx: Context) -> Value {
        Value::String(Brc::new(NixString::new(s.into(), ctx)))
    }

    pub fn path(s: impl Into<String>) -> Value {
        Value::Path(Arc::new(s.into()))
    }

    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Brc::new(ListVec(v)))
    }

    /// Nix's type name as used in error messages ("an integer", ...).
    pub fn type_desc(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a Boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::String(_) => "a string",
            Value::Path(_) => "a path",
            Value::Attrs(_) => "a set",
            Value::List(_) => "a list",
            Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_) => "a function",
            Value::Thunk(_) => "a thunk",
        }
    }

    /// `builtins.typeOf` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Path(_) => "path",
            Value::Attrs(_) => "set",
            Value::List(_) => "list",
            Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_) => "lambda",
            Value::Thunk(_) => "thunk",
        }
    }

    pub fn is_function(&self) -> bool {
        matches!(self, Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_))
    }

    /// The integer this is already (itself or a forced thunk's value),
    /// without evaluating anything.
    #[inline]
    pub fn known_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Thunk(t) => match t.get_ref()? {
                Value::Int(i) => Some(*i),
                _ => None,
            },
            _ => None,
        }
    }

    /// The already-known value, looking through forced thunks.
    pub fn shallow(&self) -> Value {
        match self {
            Value::Thunk(t) => t.get().unwrap_or_else(|| self.clone()),
            v => v.clone(),
        }
    }
}

/// Cloning is inlined everywhere: one count update and a two-word copy.
/// (The derived clone was an out-of-line call returning the value through
/// memory, so callers that put it in a bigger record, such as an attribute,
/// reloaded it in other widths: a store-forwarding stall per copied
/// attribute in `//`.)
impl Clone for Value {
    #[inline(always)]
    fn clone(&self) -> Value {
        match self {
            Value::String(b) => std::mem::forget(b.clone()),
            Value::Path(b) => std::mem::forget(b.clone()),
            Value::Attrs(a) => std::mem::forget(a.clone()),
            Value::List(b) => std::mem::forget(b.clone()),
            Value::Lambda(b) => std::mem::forget(b.clone()),
            Value::PrimOpApp(b) => std::mem::forget(b.clone()),
            Value::Thunk(t) => std::mem::forget(t.clone()),
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::PrimOp(_) => {}
        }
        // SAFETY: the handle `self` holds (if any) was counted once more
        // above, and that count is owned by this bitwise copy.
        unsafe { std::ptr::read(self) }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}
impl From<Attrs> for Value {
    fn from(a: Attrs) -> Value {
        Value::Attrs(a)
    }
}


impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{:?}", s.as_str()),
            Value::Path(p) => f.write_str(p),
            Value::Attrs(a) => write!(f, "<set of {}>", a.len()),
            Value::List(l) => write!(f, "<list of {}>", l.len()),
            Value::Lambda(_) => f.write_str("<LAMBDA>"),
            Value::PrimOp(op) => write!(f, "<PRIMOP {}>", op.name),
            Value::PrimOpApp(_) => f.write_str("<PRIMOP-APP>"),
            Value::Thunk(_) => f.write_str("<CODE>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_small_and_shareable() {
        assert_eq!(std::mem::size_of::<Value>(), 16);
        assert_eq!(std::mem::size_of::<Option<Value>>(), 16);
        assert_eq!(std::mem::size_of::<crate::error::EvalResult<Value>>(), 16);
        fn is_send_sync<T: Send + Sync>() {}
        is_send_sync::<Value>();
    }
}
