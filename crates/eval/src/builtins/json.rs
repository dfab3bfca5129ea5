//! `toJSON`, `fromJSON`, `fromTOML`.

use super::{Arg, PrimOp};
use crate::error::{EvalError, EvalResult};
use crate::eval::{CoerceOpts, Evaluator};
use crate::source::Pos;
use crate::support::{Data, json as sjson, toml as stoml};
use crate::symbol::Symbol;
use crate::value::{AttrsBuilder, Context, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("toJSON", &[Arg::Any], to_json),
    PrimOp::new("fromJSON", &[Arg::StrNoCtx], from_json),
    PrimOp::new("fromTOML", &[Arg::StrNoCtx], from_toml),
];

fn to_json(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let mut out = String::new();
    let mut ctx = Context::new();
    write_value(ev, &a[0], &mut out, &mut ctx)?;
    Ok(Value::string_ctx(out, ctx))
}

/// Serialise `v` (forcing it deeply) as `builtins.toJSON` does.
pub(crate) fn write_value(ev: &Evaluator, v: &Value, out: &mut String, ctx: &mut Context) -> EvalResult<()> {
    write_depth(ev, v, out, ctx, 0)
}

fn write_depth(ev: &Evaluator, v: &Value, out: &mut String, ctx: &mut Context, depth: usize) -> EvalResult<()> {
    if depth > ev.config.max_call_depth {
        return Err(EvalError::new(crate::error::ErrorKind::MaxCallDepth));
    }
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
                    write_depth(ev, x, out, ctx, depth + 1)?;
                }
                out.push(']');
            }
            Value::Attrs(attrs) => {
                if attrs.get_str("__toString").is_none()
                    && let Some(o) = attrs.get_str("outPath")
                {
                    return write_depth(ev, o, out, ctx, depth + 1);
                }
                if attrs.get_str("__toString").is_some() {
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
                    write_depth(ev, &at.value, out, ctx, depth + 1)?;
                }
                out.push('}');
            }
            v => return Err(EvalError::other(format!("cannot convert {} to JSON", v.type_desc()))),
        }
        Ok(())
    })
}

/// Convert parsed JSON/TOML data; Nix strings cannot hold NUL bytes.
pub(crate) fn data_to_value(d: Data) -> EvalResult<Value> {
    fn check(s: &str) -> EvalResult<()> {
        if s.contains('\0') {
            return Err(EvalError::other("input string contains a NUL byte"));
        }
        Ok(())
    }
    Ok(match d {
        Data::Null => Value::Null,
        Data::Bool(b) => Value::Bool(b),
        Data::Int(i) => Value::Int(i),
        Data::Float(f) => Value::Float(f),
        Data::String(s) => {
            check(&s)?;
            Value::string(s)
        }
        Data::List(l) => {
            let mut v = Vec::with_capacity(l.len());
            for x in l {
                v.push(data_to_value(x)?);
            }
            Value::list(v)
        }
        Data::Attrs(m) => {
            let mut b = AttrsBuilder::with_capacity(m.len());
            for (k, v) in m {
                check(&k)?;
                b.insert(Symbol::new(&k), data_to_value(v)?);
            }
            Value::Attrs(b.finish())
        }
    })
}

fn from_json(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = ev.force_string(&a[0])?;
    let d = sjson::parse_json(s.as_str()).map_err(|e| EvalError::other(e.to_string()))?;
    data_to_value(d)
}

fn from_toml(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = ev.force_string(&a[0])?;
    let timestamps = ev.config.experimental_features.iter().any(|f| f == "parse-toml-timestamps");
    let d = stoml::parse_toml_with(s.as_str(), timestamps).map_err(|e| EvalError::other(e.to_string()))?;
    data_to_value(d)
}
