//! Control flow and errors: `throw`, `abort`, `tryEval`, `seq`, `deepSeq`,
//! `addErrorContext`, `trace`, `warn`, `functionArgs`, `genericClosure`.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::{Arg, PrimOp};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::{CoerceOpts, Evaluator};
use crate::ir::Param;
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{AttrsBuilder, NixString, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("throw", &[Arg::Any], throw),
    PrimOp::new("abort", &[Arg::Any], abort),
    PrimOp::new("tryEval", &[Arg::Lazy], try_eval),
    PrimOp::new("seq", &[Arg::Any, Arg::Lazy], |ev, a, _| ev.force(&a[1])),
    PrimOp::new("deepSeq", &[Arg::Lazy, Arg::Lazy], |ev, a, _| {
        ev.force_deep(&a[0])?;
        ev.force(&a[1])
    }),
    // The message is forced only when the value fails.
    PrimOp::new("addErrorContext", &[Arg::Lazy, Arg::Lazy], add_error_context),
    PrimOp::new("trace", &[Arg::Any, Arg::Lazy], trace),
    PrimOp::new("warn", &[Arg::Str, Arg::Lazy], warn),
    PrimOp::new("break", &[Arg::Lazy], |ev, a, _| ev.force(&a[0])),
    PrimOp::new("functionArgs", &[Arg::Any], function_args),
    PrimOp::new("genericClosure", &[Arg::Attrs], generic_closure),
];

/// A message (Nix's `coerceToString`: strings, paths, sets with
/// `__toString` or `outPath`; not numbers, Booleans, null or lists).
fn msg_of(ev: &Evaluator, v: &Value) -> EvalResult<String> {
    Ok(ev.coerce_to_string(v, CoerceOpts::interpolation())?.as_str().to_string())
}

fn throw(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    Err(EvalError::new(ErrorKind::Throw(msg_of(ev, &a[0])?)))
}

fn abort(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    Err(EvalError::new(ErrorKind::Abort(msg_of(ev, &a[0])?)))
}

fn try_eval(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let mut b = AttrsBuilder::with_capacity(2);
    match ev.force(&a[0]) {
        Ok(v) => {
            b.insert(Symbol::new("success"), Value::Bool(true));
            b.insert(Symbol::new("value"), v);
        }
        Err(e) if e.is_catchable() => {
            b.insert(Symbol::new("success"), Value::Bool(false));
            b.insert(Symbol::new("value"), Value::Bool(false));
        }
        Err(e) => return Err(e),
    }
    Ok(Value::Attrs(b.finish()))
}

fn add_error_context(ev: &Evaluator, a: &[Value], pos: Pos) -> EvalResult<Value> {
    match ev.force(&a[1]) {
        Ok(v) => Ok(v),
        // An error coercing the message replaces the value's (as in Nix).
        Err(e) => Err(e.add_frame(pos, msg_of(ev, &a[0])?)),
    }
}

fn trace_text(ev: &Evaluator, v: &Value) -> String {
    match v {
        Value::String(s) => s.as_str().to_string(),
        v => crate::print::print_value(ev, v, false).unwrap_or_default(),
    }
}

fn trace(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    eprintln!("trace: {}", trace_text(ev, &a[0]));
    ev.force(&a[1])
}

fn warn(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let msg = ev.force_string(&a[0])?;
    eprintln!("evaluation warning: {}", msg.as_str());
    ev.force(&a[1])
}

fn function_args(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let mut b = AttrsBuilder::new();
    match &a[0] {
        Value::Lambda(c) => {
            if let Param::Pattern(p) = &c.lambda.param {
                for f in &p.formals {
                    b.insert_pos(f.name, Value::Bool(f.default.is_some()), f.pos);
                }
            }
        }
        Value::PrimOp(_) | Value::PrimOpApp(_) => {}
        _ => return Err(EvalError::other("'functionArgs' requires a function")),
    }
    Ok(Value::Attrs(b.finish()))
}

/// A hashable stand-in for simple keys (the key's own string, shared, not
/// copied); other keys fall back to `==`.
enum Key {
    Int(i64),
    Str(crate::value::Brc<NixString>),
    Path(Arc<String>),
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        match (self, other) {
            (Key::Int(a), Key::Int(b)) => a == b,
            (Key::Str(a), Key::Str(b)) => a.as_str() == b.as_str(),
            (Key::Path(a), Key::Path(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match self {
            Key::Int(i) => (0u8, i).hash(h),
            Key::Str(s) => (1u8, s.as_str()).hash(h),
            Key::Path(p) => (2u8, p.as_str()).hash(h),
        }
    }
}

/// Nix's message for a missing argument attribute of `genericClosure`.
fn closure_arg(name: &str) -> EvalError {
    EvalError::other(format!("attribute '{name}' missing for call to 'genericClosure'"))
}

/// In Nix's order: `startSet` forced (a list), then `operator`; each item
/// forced (a set with `key`) when its turn comes, and the items an
/// operator call returns forced as they are queued.
fn generic_closure(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let args = &a[0];
    let Value::Attrs(args) = args else { return Err(EvalError::type_error(args.type_desc(), "a set")) };
    let start = args.get(sym!("startSet")).ok_or_else(|| closure_arg("startSet"))?;
    let mut work: std::collections::VecDeque<Value> = ev.force_list(start)?.iter().cloned().collect();
    let op = args.get(sym!("operator")).ok_or_else(|| closure_arg("operator"))?;
    let op = ev.force(op)?;
    let mut seen: HashSet<Key, crate::symbol::FxBuildHasher> = HashSet::default();
    let mut other_keys: Vec<Value> = Vec::new();
    let mut out = Vec::new();
    let mut key_kind: Option<(&str, &str)> = None;
    while let Some(item) = work.pop_front() {
        let attrs = ev.force_attrs(&item)?;
        let key = attrs.get(sym!("key")).ok_or_else(|| EvalError::other("attribute 'key' required"))?;
        let key = ev.force(key)?;
        let kind = match &key {
            Value::Int(_) | Value::Float(_) => "number",
            Value::String(_) => "string",
            Value::Path(_) => "path",
            Value::List(_) => "list",
            other => {
                return Err(EvalError::other(format!("cannot compare {} with {}", other.type_desc(), other.type_desc())));
            }
        };
        match key_kind {
            None => key_kind = Some((kind, key.type_desc())),
            Some((k, desc)) if k != kind => {
                return Err(EvalError::other(format!("cannot compare {} with {desc}", key.type_desc())));
            }
            _ => {}
        }
        let fresh = match &key {
            Value::Int(i) => seen.insert(Key::Int(*i)),
            Value::String(s) => seen.insert(Key::Str(s.clone())),
            Value::Path(p) => seen.insert(Key::Path(p.clone())),
            _ => {
                let mut found = false;
                for k in &other_keys {
                    if ev.equal(k, &key)? {
                        found = true;
                        break;
                    }
                }
                if !found {
                    other_keys.push(key.clone());
                }
                !found
            }
        };
        if !fresh {
            continue;
        }
        let next = ev.call(&op, Value::Attrs(attrs), Pos::NONE)?;
        for x in ev.force_list(&next)?.iter() {
            work.push_back(ev.force(x)?);
        }
        out.push(item);
    }
    Ok(Value::list(out))
}
