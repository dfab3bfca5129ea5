//! String-context builtins. Context elements are encoded as in Nix:
//! `/nix/store/x` (plain path), `=/nix/store/x.drv` (derivation with all
//! outputs), `!out!/nix/store/x.drv` (one output).

use std::collections::BTreeMap;

use super::{Arg, PrimOp};
use crate::error::{EvalError, EvalResult};
use crate::eval::{CoerceOpts, Evaluator};
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{AttrsBuilder, Context, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("getContext", &[Arg::Str], get_context),
    PrimOp::new("hasContext", &[Arg::Str], |ev, a, _| Ok(Value::Bool(!ev.force_string(&a[0])?.context().is_empty()))),
    PrimOp::new("unsafeDiscardStringContext", &[Arg::Any], |ev, a, _| {
        Ok(Value::string(ev.coerce_to_shared_string(&a[0], CoerceOpts::interpolation())?.as_str()))
    }),
    PrimOp::new("unsafeDiscardOutputDependency", &[Arg::Any], discard_output_dependency),
    PrimOp::new("appendContext", &[Arg::Str, Arg::Attrs], append_context),
    PrimOp::new("addDrvOutputDependencies", &[Arg::Str], add_drv_output_dependencies),
];

#[derive(Default)]
struct Info {
    path: bool,
    all_outputs: bool,
    outputs: Vec<String>,
}

fn get_context(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = ev.force_string(&a[0])?;
    let mut m: BTreeMap<String, Info> = BTreeMap::new();
    for e in s.context().iter() {
        if let Some(drv) = e.strip_prefix('=') {
            m.entry(drv.to_string()).or_default().all_outputs = true;
        } else if let Some(rest) = e.strip_prefix('!') {
            if let Some((out, drv)) = rest.split_once('!') {
                m.entry(drv.to_string()).or_default().outputs.push(out.to_string());
            }
        } else {
            m.entry(e.clone()).or_default().path = true;
        }
    }
    let mut b = AttrsBuilder::with_capacity(m.len());
    for (path, info) in m {
        let mut e = AttrsBuilder::new();
        if info.path {
            e.insert(Symbol::new("path"), Value::Bool(true));
        }
        if info.all_outputs {
            e.insert(Symbol::new("allOutputs"), Value::Bool(true));
        }
        if !info.outputs.is_empty() {
            e.insert(Symbol::new("outputs"), Value::list(info.outputs.into_iter().map(Value::string).collect()));
        }
        b.insert(Symbol::new(&path), Value::Attrs(e.finish()));
    }
    Ok(Value::Attrs(b.finish()))
}

fn discard_output_dependency(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = ev.coerce_to_shared_string(&a[0], CoerceOpts::interpolation())?;
    let mut ctx = Context::new();
    for e in s.context().iter() {
        match e.strip_prefix('=') {
            Some(drv) => ctx.insert(drv.to_string()),
            None => ctx.insert(e.clone()),
        }
    }
    Ok(Value::string_ctx(s.as_str(), ctx))
}

fn append_context(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = ev.force_string(&a[0])?;
    let extra = super::attrs::attrs_arg(&a[1])?;
    let mut ctx = s.context().clone();
    let store = ndeploy_store::store_path::StoreDir::new(&ev.config.store_dir);
    for at in extra.iter() {
        let path = at.name.as_str();
        // Nix 2.8 prints the key as a quoted symbol in these messages.
        if store.parse(path).is_err() {
            return Err(EvalError::other(format!("Context key '\"{path}\"' is not a store path")).with_pos(at.pos));
        }
        let info = ev.force_attrs(&at.value)?;
        if let Some(p) = info.get_str("path")
            && ev.force_bool(p)?
        {
            ctx.insert(path.to_string());
        }
        if let Some(p) = info.get_str("allOutputs")
            && ev.force_bool(p)?
        {
            if !path.ends_with(".drv") {
                return Err(EvalError::other(format!(
                    "Tried to add all-outputs context of \"{path}\", which is not a derivation, to a string"
                ))
                .with_pos(at.pos));
            }
            ctx.insert(format!("={path}"));
        }
        if let Some(outs) = info.get_str("outputs") {
            let outs = ev.force_list(outs)?;
            if !outs.is_empty() && !path.ends_with(".drv") {
                return Err(EvalError::other(format!(
                    "Tried to add derivation output context of \"{path}\", which is not a derivation, to a string"
                ))
                .with_pos(at.pos));
            }
            for o in outs.iter() {
                ctx.insert(format!("!{}!{path}", ev.force_str_plain(o)?));
            }
        }
    }
    Ok(Value::string_ctx(s.as_str(), ctx))
}


fn add_drv_output_dependencies(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = ev.force_string(&a[0])?;
    let n = s.context().len();
    let Some(elem) = s.context().iter().next().filter(|_| n == 1) else {
        return Err(EvalError::other(format!(
            "context of string '{}' must have exactly one element, but has {n}",
            s.as_str()
        )));
    };
    let new = if elem.starts_with('=') {
        elem.clone()
    } else if let Some(rest) = elem.strip_prefix('!') {
        let out = rest.split_once('!').map_or(rest, |(o, _)| o);
        return Err(EvalError::other(format!(
            "`addDrvOutputDependencies` can only act on derivations, not on a derivation output such as '{out}'"
        )));
    } else if elem.ends_with(".drv") {
        format!("={elem}")
    } else {
        return Err(EvalError::other(format!("path '{elem}' is not a derivation")));
    };
    let mut ctx = Context::new();
    ctx.insert(new);
    Ok(Value::string_ctx(s.as_str(), ctx))
}
