//! `toJSON`, `fromJSON`, `fromTOML`.

use super::{PrimOp, S};
use crate::error::{EvalError, EvalResult};
use crate::eval::{CoerceOpts, Evaluator};
use crate::source::Pos;
use crate::support::{Data, json as sjson, toml as stoml};
use crate::symbol::Symbol;
use crate::value::{AttrsBuilder, Context, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("toJSON", &[S], to_json),
    PrimOp::new("fromJSON", &[S], from_json),
    PrimOp::new("fromTOML", &[S], from_toml),
];

fn to_json(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let mut out = String::new();
    let mut ctx = Context::new();
    write_value(ev, &a[0], &mut out, &mut ctx)?;
    Ok(Value::string_ctx(out, ctx))
}

/// Serialise `v` (forcing it deeply) as `builtins.toJSON` does.
pub(crate) fn write_value(ev: &Evaluator, v: &Value, out: &mut String, ctx: &mut Context) -> EvalResult<()> {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
        let v = ev.force(v)?;
        match &v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => sjson::write_json_float(out, *f),
            Value::String(s) => {
                sjson::write_json_string(out, s.as_str());
                ctx.extend(s.context());
            }
            Value::Path(_) => {
                let s = ev.coerce_to_string(&v, CoerceOpts::interpolation())?;
                sjson::write_json_string(out, s.as_str());
                ctx.extend(s.context());
            }
            Value::List(l) => {
                out.push('[');
                for (i, x) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_value(ev, x, out, ctx)?;
                }
                out.push(']');
            }
            Value::Attrs(attrs) => {
                if attrs.get_str("__toString").is_some() || attrs.get_str("outPath").is_some() {
                    let s = ev.coerce_to_string(&v, CoerceOpts::interpolation())?;
                    sjson::write_json_string(out, s.as_str());
                    ctx.extend(s.context());
                    return Ok(());
                }
                out.push('{');
                for (i, at) in attrs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    sjson::write_json_string(out, at.name.as_str());
                    out.push(':');
                    write_value(ev, &at.value, out, ctx)?;
                }
                out.push('}');
            }
            v => return Err(EvalError::other(format!("cannot convert {} to JSON", v.type_desc()))),
        }
        Ok(())
    })
}

pub(crate) fn data_to_value(d: Data) -> Value {
    match d {
        Data::Null => Value::Null,
        Data::Bool(b) => Value::Bool(b),
        Data::Int(i) => Value::Int(i),
        Data::Float(f) => Value::Float(f),
        Data::String(s) => Value::string(s),
        Data::List(l) => Value::list(l.into_iter().map(data_to_value).collect()),
        Data::Attrs(m) => {
            let mut b = AttrsBuilder::with_capacity(m.len());
            for (k, v) in m {
                b.insert(Symbol::new(&k), data_to_value(v));
            }
            Value::Attrs(b.finish())
        }
    }
}

fn from_json(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = ev.force_string(&a[0])?;
    let d = sjson::parse_json(s.as_str()).map_err(|e| EvalError::other(e.to_string()))?;
    Ok(data_to_value(d))
}

fn from_toml(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = ev.force_string(&a[0])?;
    let d = stoml::parse_toml(s.as_str()).map_err(|e| EvalError::other(e.to_string()))?;
    Ok(data_to_value(d))
}
