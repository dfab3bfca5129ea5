//! Type predicates: `typeOf`, `isInt`, ...

use super::{Arg, PrimOp};
use crate::error::EvalResult;
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::Value;

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("typeOf", &[Arg::Any], type_of),
    PrimOp::new("isNull", &[Arg::Any], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::Null)))),
    PrimOp::new("isInt", &[Arg::Any], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::Int(_))))),
    PrimOp::new("isFloat", &[Arg::Any], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::Float(_))))),
    PrimOp::new("isBool", &[Arg::Any], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::Bool(_))))),
    PrimOp::new("isString", &[Arg::Any], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::String(_))))),
    PrimOp::new("isPath", &[Arg::Any], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::Path(_))))),
    PrimOp::new("isAttrs", &[Arg::Any], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::Attrs(_))))),
    PrimOp::new("isList", &[Arg::Any], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::List(_))))),
    PrimOp::new("isFunction", &[Arg::Any], |_, a, _| Ok(Value::Bool(a[0].is_function()))),
];

fn type_of(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    // The names as shared strings (no allocation per call).
    let name = match &a[0] {
        Value::Null => sym!("null"),
        Value::Bool(_) => sym!("bool"),
        Value::Int(_) => sym!("int"),
        Value::Float(_) => sym!("float"),
        Value::String(_) => sym!("string"),
        Value::Path(_) => sym!("path"),
        Value::Attrs(_) => sym!("set"),
        Value::List(_) => sym!("list"),
        Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_) => sym!("lambda"),
        v => Symbol::new(v.type_name()),
    };
    Ok(super::attrs::name_value(name))
}
