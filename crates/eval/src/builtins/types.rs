//! Type predicates: `typeOf`, `isInt`, ...

use super::{PrimOp, S};
use crate::error::EvalResult;
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::value::Value;

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("typeOf", &[S], type_of),
    PrimOp::new("isNull", &[S], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::Null)))),
    PrimOp::new("isInt", &[S], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::Int(_))))),
    PrimOp::new("isFloat", &[S], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::Float(_))))),
    PrimOp::new("isBool", &[S], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::Bool(_))))),
    PrimOp::new("isString", &[S], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::String(_))))),
    PrimOp::new("isPath", &[S], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::Path(_))))),
    PrimOp::new("isAttrs", &[S], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::Attrs(_))))),
    PrimOp::new("isList", &[S], |_, a, _| Ok(Value::Bool(matches!(a[0], Value::List(_))))),
    PrimOp::new("isFunction", &[S], |_, a, _| Ok(Value::Bool(a[0].is_function()))),
];

fn type_of(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    Ok(Value::string(a[0].type_name()))
}
