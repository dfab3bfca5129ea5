//! `toXML` (and the `--xml` output of `instantiate`), driving the support
//! module's writer over a value.

use super::{Arg, PrimOp};
use crate::error::EvalResult;
use crate::eval::{CoerceOpts, Evaluator};
use crate::ir::Param;
use crate::source::{Origin, Pos};
use crate::support::xml::{LambdaPattern, XmlPos, XmlWriter};
use crate::value::{Context, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[PrimOp::new("toXML", &[Arg::Any], to_xml)];

fn to_xml(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let mut ctx = Context::new();
    let s = print_xml(ev, &a[0], true, false, &mut ctx)?;
    Ok(Value::string_ctx(s, ctx))
}

/// The XML document for `v`; `strict` forces everything, `location`
/// writes source positions.
pub fn print_xml(ev: &Evaluator, v: &Value, strict: bool, location: bool, ctx: &mut Context) -> EvalResult<String> {
    let mut w = XmlWriter::new();
    write(ev, v, strict, location, &mut w, ctx)?;
    Ok(w.finish())
}

fn with_pos<R>(pos: Pos, location: bool, f: impl FnOnce(Option<XmlPos<'_>>) -> R) -> R {
    if !location {
        return f(None);
    }
    match pos.resolve() {
        Some((src, line, col)) => {
            let name = match &src.origin {
                Origin::File(p) => p.clone(),
                _ => "«string»".to_string(),
            };
            f(Some(XmlPos { path: &name, line: line as u32, column: col as u32 }))
        }
        None => f(None),
    }
}

fn write(ev: &Evaluator, v: &Value, strict: bool, loc: bool, w: &mut XmlWriter, ctx: &mut Context) -> EvalResult<()> {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
        let v = if strict { ev.force(v)? } else { v.shallow() };
        match &v {
            Value::Null => w.null(),
            Value::Bool(b) => w.bool(*b),
            Value::Int(i) => w.int(*i),
            Value::Float(f) => w.float(*f),
            Value::String(s) => {
                ctx.extend(s.context());
                w.string(s.as_str())
            }
            Value::Path(p) => w.path(p),
            Value::List(l) => {
                w.begin_list();
                for x in l.iter() {
                    write(ev, x, strict, loc, w, ctx)?;
                }
                w.end();
            }
            Value::Attrs(a) => {
                let is_drv = match a.get_str("type") {
                    Some(t) => matches!(ev.force(t)?, Value::String(s) if s.as_str() == "derivation"),
                    None => false,
                };
                let show = if is_drv {
                    let get = |n: &str| -> EvalResult<Option<String>> {
                        match a.get_str(n) {
                            Some(x) => Ok(Some(ev.coerce_to_string(x, CoerceOpts::interpolation())?.as_str().to_string())),
                            None => Ok(None),
                        }
                    };
                    let drv = get("drvPath")?;
                    let out = get("outPath")?;
                    w.begin_derivation(drv.as_deref(), out.as_deref())
                } else {
                    w.begin_attrs();
                    true
                };
                if show {
                    for at in a.iter() {
                        with_pos(at.pos, loc, |p| w.begin_attr(at.name.as_str(), p));
                        write(ev, &at.value, strict, loc, w, ctx)?;
                        w.end();
                    }
                }
                w.end();
            }
            Value::Lambda(c) => {
                let names: Vec<&str>;
                let pat = match &c.lambda.param {
                    Param::Ident(s) => LambdaPattern::Var(s.as_str()),
                    Param::Pattern(p) => {
                        names = p.formals.iter().map(|f| f.name.as_str()).collect();
                        LambdaPattern::Formals {
                            name: p.bind.map(|b| b.as_str()),
                            ellipsis: p.ellipsis,
                            formals: names.clone(),
                        }
                    }
                };
                with_pos(c.lambda.pos, loc, |p| w.function(p, &pat));
            }
            _ => w.unevaluated(),
        }
        Ok(())
    })
}
