//! Printing values as `nix-instantiate --eval` does (Nix 2.8).
//!
//! `{ a = 1; b = [ 2 3 ]; }`; strings quoted with Nix escapes; sets and lists
//! already printed once in this output become `«repeated»` (never empty ones); unevaluated
//! thunks print as `<CODE>`, functions as `<LAMBDA>`, `<PRIMOP>`,
//! `<PRIMOP-APP>`. Printing never forces anything (callers deep-force first
//! for `--strict`), so it cannot fail on a value; the `Result` is kept for
//! future derivation printing.

use std::collections::HashSet;

use crate::error::EvalResult;
use crate::eval::Evaluator;
use crate::support::{escape, float};
use crate::value::Value;

pub fn print_value(_ev: &Evaluator, v: &Value, _strict: bool) -> EvalResult<String> {
    let mut out = String::new();
    let mut seen = HashSet::new();
    write(v, &mut out, &mut seen);
    Ok(out)
}

fn write(v: &Value, out: &mut String, seen: &mut HashSet<usize>) {
    // Nix 2.8 keys lists of up to two elements by the value cell holding
    // them (they are stored inline), longer lists and sets by their storage.
    let cell = match v {
        Value::Thunk(t) => t.id(),
        v => v as *const Value as usize,
    };
    stacker::maybe_grow(64 * 1024, 1024 * 1024, || match v.shallow() {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => float::write_float(out, f),
        Value::String(s) => escape::write_escaped_string(out, s.as_str()),
        Value::Path(p) => out.push_str(&p),
        Value::Attrs(a) => {
            // Nix 2.8 never marks an empty set as repeated.
            if !a.is_empty() && !seen.insert(a.ptr_id()) {
                out.push_str("«repeated»");
                return;
            }
            out.push_str("{ ");
            for at in a.iter() {
                escape::write_attr_name(out, at.name.as_str());
                out.push_str(" = ");
                write(&at.value, out, seen);
                out.push_str("; ");
            }
            out.push('}');
        }
        Value::List(l) => {
            let id = if l.len() <= 2 { cell } else { crate::value::Brc::as_ptr(&l) as usize };
            if !l.is_empty() && !seen.insert(id) {
                out.push_str("«repeated»");
                return;
            }
            out.push_str("[ ");
            for x in l.iter() {
                write(x, out, seen);
                out.push(' ');
            }
            out.push(']');
        }
        Value::Lambda(_) => out.push_str("<LAMBDA>"),
        Value::PrimOp(_) => out.push_str("<PRIMOP>"),
        Value::PrimOpApp(_) => out.push_str("<PRIMOP-APP>"),
        Value::Thunk(_) => out.push_str("<CODE>"),
    })
}
