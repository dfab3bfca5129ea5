//! Arithmetic and comparison builtins (checked, like the operators).

use std::cmp::Ordering;

use super::{Arg, PrimOp};
use crate::error::{EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::ir::BinOp;
use crate::source::Pos;
use crate::value::Value;

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("add", &[Arg::Any, Arg::Any], |ev, a, _| ev.arith(BinOp::Add, a[0].clone(), a[1].clone())),
    PrimOp::new("sub", &[Arg::Any, Arg::Any], |ev, a, _| ev.arith(BinOp::Sub, a[0].clone(), a[1].clone())),
    PrimOp::new("mul", &[Arg::Any, Arg::Any], |ev, a, _| ev.arith(BinOp::Mul, a[0].clone(), a[1].clone())),
    PrimOp::new("div", &[Arg::Any, Arg::Any], div),
    PrimOp::new("lessThan", &[Arg::Any, Arg::Any], |ev, a, _| Ok(Value::Bool(ev.compare(&a[0], &a[1])? == Ordering::Less))),
    PrimOp::new("bitAnd", &[Arg::Int, Arg::Int], |ev, a, _| bits(ev, a, |x, y| x & y)),
    PrimOp::new("bitOr", &[Arg::Int, Arg::Int], |ev, a, _| bits(ev, a, |x, y| x | y)),
    PrimOp::new("bitXor", &[Arg::Int, Arg::Int], |ev, a, _| bits(ev, a, |x, y| x ^ y)),
    PrimOp::new("ceil", &[Arg::Float], |ev, a, p| round(ev, a, p, f64::ceil)),
    PrimOp::new("floor", &[Arg::Float], |ev, a, p| round(ev, a, p, f64::floor)),
];

/// Nix checks the divisor (a number, not zero) before the dividend.
fn div(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    match &a[1] {
        Value::Int(0) => return Err(EvalError::other("division by zero")),
        Value::Float(f) if *f == 0.0 => return Err(EvalError::other("division by zero")),
        Value::Int(_) | Value::Float(_) => {}
        v => return Err(EvalError::type_error(v.type_desc(), "a float")),
    }
    ev.arith(BinOp::Div, a[0].clone(), a[1].clone())
}

fn bits(ev: &Evaluator, a: &[Value], f: fn(i64, i64) -> i64) -> EvalResult<Value> {
    Ok(Value::Int(f(ev.force_int(&a[0])?, ev.force_int(&a[1])?)))
}

fn round(_: &Evaluator, a: &[Value], _: Pos, f: fn(f64) -> f64) -> EvalResult<Value> {
    match &a[0] {
        Value::Int(i) => Ok(Value::Int(*i)),
        Value::Float(x) => {
            let r = f(*x);
            if r.is_finite() && r >= i64::MIN as f64 && r < i64::MAX as f64 {
                Ok(Value::Int(r as i64))
            } else {
                Err(EvalError::other(format!("value {x} cannot be represented as an integer")))
            }
        }
        v => Err(EvalError::type_error(v.type_desc(), "a float")),
    }
}
