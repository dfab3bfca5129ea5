//! Borrowed evaluation: the value of a variable, an attribute selection or
//! a `with` variable, as a reference into the heap when it is already there.
//!
//! Design: evaluating `lib.types.str` or `f x` where `f` is a variable used
//! to clone every intermediate value (the frame slot's thunk, the forced
//! set, the attribute's thunk, its result): an atomic increment and
//! decrement each, on exactly the values every host shares (`lib`), so the
//! cache lines of their reference counts bounced between threads.
//! [`Evaluator::eval_ref`] instead returns a [`VRef`]: a reference into a
//! frame slot, a constant, a set's attribute or a forced thunk's result when
//! the value is already there, and an owned value only when something had
//! to be computed. Callers that only look at the value (function position,
//! selection bases, operands of comparisons) never clone it.
//!
//! Invariant (why the references are valid): everything referenced is
//! reachable from the borrowed frame `env` or expression for the whole
//! borrow: slots of frames are never written after the frame is shared
//! (recursive frames are only cleared where nothing evaluates, see
//! `value/env.rs`), sets are immutable, and a thunk's result is never moved
//! once published (`value/thunk.rs`). Only leaves (constants, variables,
//! `with` variables) are evaluated recursively here; anything else goes
//! through [`Evaluator::eval`] and its stack check.

use std::ops::Deref;

use super::{Evaluator, released};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::ir::{AttrName, Expr};
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{Env, Value};

/// A variable's frame was released (see [`released`]), as a borrowed
/// result (a tail call).
#[cold]
#[inline(never)]
fn released_ref<'a>() -> EvalResult<VRef<'a>> {
    Err(released())
}

/// A value borrowed from the heap, or computed (owned).
pub(crate) enum VRef<'a> {
    Ref(&'a Value),
    Own(Value),
}

impl Deref for VRef<'_> {
    type Target = Value;
    #[inline]
    fn deref(&self) -> &Value {
        match self {
            VRef::Ref(v) => v,
            VRef::Own(v) => v,
        }
    }
}

impl VRef<'_> {
    #[inline(always)]
    pub(crate) fn into_owned(self) -> Value {
        match self {
            VRef::Ref(v) => v.clone(),
            VRef::Own(v) => v,
        }
    }
}

impl Evaluator {
    /// `e` in `env` to weak head normal form, borrowed when possible.
    /// Small: a variable and a constant are answered here, other nodes are
    /// a tail call, so it is inlined into its callers (out of line, every
    /// call paid the saves and restores of a frame: 16 of its ~60
    /// instructions).
    #[inline]
    pub(crate) fn eval_ref<'a>(&self, e: &'a Expr, env: &'a Env) -> EvalResult<VRef<'a>> {
        match e {
            Expr::Local { depth, idx } => match env.slot(*depth, *idx) {
                Ok(v) => self.force_ref(v),
                Err(_) => released_ref(),
            },
            Expr::Const(v) => Ok(VRef::Ref(v)),
            _ => self.eval_ref_node(e, env),
        }
    }

    /// [`Evaluator::eval_ref`] of a node that is not a leaf.
    #[inline(never)]
    fn eval_ref_node<'a>(&self, e: &'a Expr, env: &'a Env) -> EvalResult<VRef<'a>> {
        match e {
            Expr::Select { expr, path, default, pos } => self.select_ref(expr, path, default.as_deref(), *pos, env),
            Expr::WithVar { name, withs, pos } => self.with_var_ref(*name, withs, *pos, env),
            _ => self.eval(e, env).map(VRef::Own),
        }
    }

    /// `v` forced, borrowed when it is not an unforced thunk. (Forcing
    /// through a tail-called wrapper cost a frame per forced thunk, +11
    /// instructions per element of `concatStringsSep` over `genList`.)
    #[inline]
    pub(crate) fn force_ref<'a>(&self, v: &'a Value) -> EvalResult<VRef<'a>> {
        match v {
            Value::Thunk(t) => match t.get_ref() {
                Some(v) => Ok(VRef::Ref(v)),
                None => self.force_thunk_ref(t).map(VRef::Ref),
            },
            v => Ok(VRef::Ref(v)),
        }
    }

    /// The base of a selection: leaves borrowed, anything else evaluated
    /// (with the stack check).
    #[inline]
    fn base_ref<'a>(&self, e: &'a Expr, env: &'a Env) -> EvalResult<VRef<'a>> {
        match e {
            Expr::Const(_) | Expr::Local { .. } | Expr::WithVar { .. } => self.eval_ref(e, env),
            _ => self.eval(e, env).map(VRef::Own),
        }
    }

    #[inline(never)]
    pub(super) fn select_ref<'a>(
        &self,
        expr: &'a Expr,
        path: &'a [AttrName],
        default: Option<&'a Expr>,
        pos: Pos,
        env: &'a Env,
    ) -> EvalResult<VRef<'a>> {
        let mut v = self.base_ref(expr, env)?;
        for name in path {
            let sym = self.attr_name(name, env)?;
            let frame = |apos: Pos| move |e: EvalError| e.add_frame(apos, format!("while evaluating the attribute '{sym}'"));
            v = match v {
                VRef::Ref(Value::Attrs(a)) => match a.get_attr(sym) {
                    Some(at) => self.force_ref(&at.value).map_err(frame(at.pos))?,
                    None => return self.select_missing(sym, default, pos, env),
                },
                VRef::Own(Value::Attrs(a)) => match a.get_attr(sym) {
                    Some(at) => VRef::Own(self.force(&at.value).map_err(frame(at.pos))?),
                    None => return self.select_missing(sym, default, pos, env),
                },
                other => {
                    if let Some(d) = default {
                        return self.eval(d, env).map(VRef::Own);
                    }
                    return Err(EvalError::at(ErrorKind::Type { got: other.type_desc(), expected: "a set" }, pos));
                }
            };
        }
        Ok(v)
    }

    #[cold]
    #[inline(never)]
    fn select_missing<'a>(&self, sym: Symbol, default: Option<&Expr>, pos: Pos, env: &Env) -> EvalResult<VRef<'a>> {
        match default {
            Some(d) => self.eval(d, env).map(VRef::Own),
            None => Err(EvalError::at(ErrorKind::MissingAttr(sym.to_string()), pos)),
        }
    }

    #[inline(never)]
    fn with_var_ref<'a>(&self, name: Symbol, withs: &[u32], pos: Pos, env: &'a Env) -> EvalResult<VRef<'a>> {
        for d in withs.iter() {
            let scope = env.slot(*d, 0).map_err(|_| released())?;
            match self.force_ref(scope).map_err(|e| e.with_pos(pos))? {
                VRef::Ref(Value::Attrs(a)) => {
                    if let Some(v) = a.get(name) {
                        return self.force_ref(v);
                    }
                }
                VRef::Own(Value::Attrs(a)) => {
                    if let Some(v) = a.get(name) {
                        return self.force(v).map(VRef::Own);
                    }
                }
                other => {
                    return Err(EvalError::type_error(other.type_desc(), "a set").with_pos(pos));
                }
            }
        }
        Err(EvalError::at(ErrorKind::UndefinedVar(name.to_string()), pos))
    }
}
