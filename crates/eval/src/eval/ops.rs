//! Operators: arithmetic (checked: overflow and division by zero are
//! errors), `+` on strings and paths (contexts united), `++`, `//`,
//! comparison and Nix's deep equality.

use std::cmp::Ordering;

use super::{CoerceOpts, Evaluator};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::ir::{BinOp, Expr};
use crate::source::Pos;
use crate::value::{Env, Value};

/// `v` as a Boolean. A Boolean is forgotten, not dropped: it owns nothing,
/// and the drop glue of a `Value` is an out-of-line call (on every
/// condition of every `if`).
#[inline(always)]
pub(super) fn bool_of(v: Value, pos: Pos) -> EvalResult<bool> {
    match v {
        Value::Bool(b) => {
            std::mem::forget(v);
            Ok(b)
        }
        v => Err(not_bool(v, pos)),
    }
}

#[cold]
#[inline(never)]
fn not_bool(v: Value, pos: Pos) -> EvalError {
    EvalError::at(ErrorKind::Type { got: v.type_desc(), expected: "a Boolean" }, pos)
}

impl Evaluator {
    #[inline(always)]
    pub(super) fn eval_binop(&self, op: BinOp, lhs: &Expr, rhs: &Expr, pos: Pos, env: &Env) -> EvalResult<Value> {
        match op {
            BinOp::And => {
                if !self.eval_bool(lhs, env, pos)? {
                    return Ok(Value::Bool(false));
                }
                Ok(Value::Bool(self.eval_bool(rhs, env, pos)?))
            }
            BinOp::Or => {
                if self.eval_bool(lhs, env, pos)? {
                    return Ok(Value::Bool(true));
                }
                Ok(Value::Bool(self.eval_bool(rhs, env, pos)?))
            }
            BinOp::Impl => {
                if !self.eval_bool(lhs, env, pos)? {
                    return Ok(Value::Bool(true));
                }
                Ok(Value::Bool(self.eval_bool(rhs, env, pos)?))
            }
            BinOp::PipeRight | BinOp::PipeLeft => {
                let (f, x) = if op == BinOp::PipeRight { (rhs, lhs) } else { (lhs, rhs) };
                let f = self.eval(f, env)?;
                let x = self.eval(x, env)?;
                self.call(&f, x, pos)
            }
            _ => {
                // Operands borrowed (see `borrow.rs`): comparing or
                // selecting from shared values clones nothing.
                // Not dropped on the integer paths: integers (or
                // references) own nothing, and the drop glue of an owned
                // value is an out-of-line call.
                let l = self.eval_ref(lhs, env)?;
                let r = self.eval_ref(rhs, env)?;
                let (l, r) = (std::mem::ManuallyDrop::new(l), std::mem::ManuallyDrop::new(r));
                if let (Value::Int(a), Value::Int(b)) = (&**l, &**r) {
                    // Each case returns directly (no intermediate
                    // `Option<Value>` to copy out of).
                    let (a, b) = (*a, *b);
                    match op {
                        BinOp::Eq => return Ok(Value::Bool(a == b)),
                        BinOp::NotEq => return Ok(Value::Bool(a != b)),
                        BinOp::Less => return Ok(Value::Bool(a < b)),
                        BinOp::LessEq => return Ok(Value::Bool(a <= b)),
                        BinOp::More => return Ok(Value::Bool(a > b)),
                        BinOp::MoreEq => return Ok(Value::Bool(a >= b)),
                        BinOp::Add => {
                            if let Some(x) = a.checked_add(b) {
                                return Ok(Value::Int(x));
                            }
                        }
                        BinOp::Sub => {
                            if let Some(x) = a.checked_sub(b) {
                                return Ok(Value::Int(x));
                            }
                        }
                        BinOp::Mul => {
                            if let Some(x) = a.checked_mul(b) {
                                return Ok(Value::Int(x));
                            }
                        }
                        // Overflow, division, other operators: general path.
                        _ => {}
                    }
                }
                let (l, r) = (std::mem::ManuallyDrop::into_inner(l), std::mem::ManuallyDrop::into_inner(r));
                let r = match op {
                    BinOp::Eq => self.equal(&l, &r).map(Value::Bool),
                    BinOp::NotEq => self.equal(&l, &r).map(|b| Value::Bool(!b)),
                    _ => self.binop_values(op, l.into_owned(), r.into_owned()),
                };
                r.map_err(|e| e.with_pos(pos))
            }
        }
    }

    pub(crate) fn binop_values(&self, op: BinOp, l: Value, r: Value) -> EvalResult<Value> {
        match op {
            BinOp::Eq => Ok(Value::Bool(self.equal(&l, &r)?)),
            BinOp::NotEq => Ok(Value::Bool(!self.equal(&l, &r)?)),
            BinOp::Less => Ok(Value::Bool(self.compare(&l, &r)? == Ordering::Less)),
            BinOp::LessEq => Ok(Value::Bool(self.compare(&r, &l)? != Ordering::Less)),
            BinOp::More => Ok(Value::Bool(self.compare(&r, &l)? == Ordering::Less)),
            BinOp::MoreEq => Ok(Value::Bool(self.compare(&l, &r)? != Ordering::Less)),
            BinOp::Concat => match (l, r) {
                (Value::List(a), Value::List(b)) => {
                    if a.is_empty() {
                        return Ok(Value::List(b));
                    }
                    if b.is_empty() {
                        return Ok(Value::List(a));
                    }
                    let mut v = Vec::with_capacity(a.len() + b.len());
                    v.extend(a.iter().cloned());
                    v.extend(b.iter().cloned());
                    Ok(Value::list(v))
                }
                (Value::List(_), b) => Err(EvalError::type_error(b.type_desc(), "a list")),
                (a, _) => Err(EvalError::type_error(a.type_desc(), "a list")),
            },
            BinOp::Update => match (l, r) {
                (Value::Attrs(a), Value::Attrs(b)) => Ok(Value::Attrs(a.update(&b))),
                (Value::Attrs(_), b) => Err(EvalError::type_error(b.type_desc(), "a set")),
                (a, _) => Err(EvalError::type_error(a.type_desc(), "a set")),
            },
            BinOp::Add => match (&l, &r) {
                (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => self.arith(op, l, r),
                (Value::Path(p), _) => {
                    let s = self.coerce_to_string(&r, CoerceOpts::path_interp())?;
                    if !s.context().is_empty() {
                        return Err(EvalError::other(
                            "a string that refers to a store path cannot be appended to a path",
                        ));
                    }
                    let joined = format!("{}{}", p, s.as_str());
                    let canon =
                        crate::support::path::canon_path(&joined).map_err(|e| EvalError::other(e.to_string()))?;
                    Ok(Value::path(canon))
                }
                (Value::String(a), _) => {
                    let b = self.coerce_to_shared_string(&r, CoerceOpts::interpolation())?;
                    let mut s = String::with_capacity(a.as_str().len() + b.as_str().len());
                    s.push_str(a.as_str());
                    s.push_str(b.as_str());
                    let mut ctx = a.context().clone();
                    ctx.extend(b.context());
                    Ok(Value::string_ctx(s, ctx))
                }
                // As Nix: a number adds only numbers; any other left side
                // is coerced to a string (so `true + 1` cannot coerce a Boolean).
                (Value::Int(_) | Value::Float(_), _) => {
                    Err(EvalError::other(format!("cannot add {} to {}", r.type_desc(), l.type_desc())))
                }
                _ => {
                    let s = self.coerce_to_string(&l, CoerceOpts::interpolation())?;
                    let b = self.coerce_to_string(&r, CoerceOpts::interpolation())?;
                    let mut ctx = s.context().clone();
                    ctx.extend(b.context());
                    Ok(Value::string_ctx(format!("{}{}", s.as_str(), b.as_str()), ctx))
                }
            },
            BinOp::Sub | BinOp::Mul | BinOp::Div => self.arith(op, l, r),
            _ => Err(EvalError::other("internal error: not a strict binary operator")),
        }
    }

    /// Numeric operators with Nix's int/float promotion, checked.
    pub(crate) fn arith(&self, op: BinOp, l: Value, r: Value) -> EvalResult<Value> {
        let opname = match op {
            BinOp::Add => "addition",
            BinOp::Sub => "subtraction",
            BinOp::Mul => "multiplication",
            _ => "division",
        };
        match (&l, &r) {
            (Value::Int(a), Value::Int(b)) => {
                let (a, b) = (*a, *b);
                let v = match op {
                    BinOp::Add => a.checked_add(b),
                    BinOp::Sub => a.checked_sub(b),
                    BinOp::Mul => a.checked_mul(b),
                    _ => {
                        if b == 0 {
                            return Err(EvalError::new(ErrorKind::DivZero));
                        }
                        a.checked_div(b)
                    }
                };
                v.map(Value::Int).ok_or_else(|| EvalError::new(ErrorKind::Overflow(opname)))
            }
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                let a = as_f64(&l);
                let b = as_f64(&r);
                Ok(Value::Float(match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    _ => {
                        if b == 0.0 {
                            return Err(EvalError::new(ErrorKind::DivZero));
                        }
                        a / b
                    }
                }))
            }
            (Value::Int(_) | Value::Float(_), b) => Err(EvalError::type_error(b.type_desc(), "an integer")),
            (a, _) => Err(EvalError::type_error(a.type_desc(), "an integer")),
        }
    }

    /// Nix's `==`: deep on lists and sets, ints equal floats numerically,
    /// functions are never equal, derivations compare by `outPath`.
    pub fn equal(&self, a: &Value, b: &Value) -> EvalResult<bool> {
        // Borrowed (see `borrow.rs`): comparing clones and drops nothing.
        let a = self.force_ref(a)?;
        let b = self.force_ref(b)?;
        Ok(match (&*a, &*b) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::Int(x), Value::Int(y)) => x == y,
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => as_f64(&a) == as_f64(&b),
            (Value::String(x), Value::String(y)) => x.as_str() == y.as_str(),
            (Value::Path(x), Value::Path(y)) => x == y,
            (Value::List(x), Value::List(y)) => {
                if crate::value::Brc::ptr_eq(x, y) {
                    return Ok(true);
                }
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (p, q) in x.iter().zip(y.iter()) {
                    if same_ref(p, q) {
                        continue;
                    }
                    if !super::stack::guard(|| self.equal(p, q))? {
                        return Ok(false);
                    }
                }
                true
            }
            (Value::Attrs(x), Value::Attrs(y)) => {
                if x.ptr_eq(y) {
                    return Ok(true);
                }
                if is_derivation(self, x)?
                    && is_derivation(self, y)?
                    && let (Some(p), Some(q)) = (x.get_str("outPath"), y.get_str("outPath"))
                {
                    return self.equal(p, q);
                }
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (p, q) in x.iter().zip(y.iter()) {
                    if p.name != q.name {
                        return Ok(false);
                    }
                    if same_ref(&p.value, &q.value) {
                        continue;
                    }
                    if !super::stack::guard(|| self.equal(&p.value, &q.value))? {
                        return Ok(false);
                    }
                }
                true
            }
            _ => false,
        })
    }

    /// `<` ordering: numbers, strings, paths, lists (lexicographic).
    pub fn compare(&self, a: &Value, b: &Value) -> EvalResult<Ordering> {
        let a = self.force_ref(a)?;
        let b = self.force_ref(b)?;
        match (&*a, &*b) {
            (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                Ok(as_f64(&a).partial_cmp(&as_f64(&b)).unwrap_or(Ordering::Equal))
            }
            (Value::String(x), Value::String(y)) => Ok(x.as_str().cmp(y.as_str())),
            (Value::Path(x), Value::Path(y)) => Ok(x.cmp(y)),
            (Value::List(x), Value::List(y)) => {
                for (p, q) in x.iter().zip(y.iter()) {
                    if self.equal(p, q)? {
                        continue;
                    }
                    return self.compare(p, q);
                }
                Ok(x.len().cmp(&y.len()))
            }
            _ => Err(EvalError::other(format!("cannot compare {} with {}", a.type_desc(), b.type_desc()))),
        }
    }
}

/// The same heap cell: Nix treats a list element or attribute that is the
/// very same value as equal to itself (even a function).
fn same_ref(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Thunk(x), Value::Thunk(y)) => x.ptr_eq(y),
        (Value::Lambda(x), Value::Lambda(y)) => crate::value::Brc::ptr_eq(x, y),
        _ => false,
    }
}

pub(crate) fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        _ => 0.0,
    }
}

fn is_derivation(ev: &Evaluator, a: &crate::value::Attrs) -> EvalResult<bool> {
    match a.get_str("type") {
        Some(t) => Ok(matches!(ev.force(t)?, Value::String(s) if s.as_str() == "derivation")),
        None => Ok(false),
    }
}
