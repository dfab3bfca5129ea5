//! Attribute-set builtins.

use std::collections::BTreeMap;

use super::{L, PrimOp, S};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::source::{Origin, Pos};
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, AttrsBuilder, Thunk, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("attrNames", &[S], attr_names),
    PrimOp::new("attrValues", &[S], attr_values),
    PrimOp::new("getAttr", &[S, S], get_attr),
    PrimOp::new("hasAttr", &[S, S], has_attr),
    PrimOp::new("removeAttrs", &[S, S], remove_attrs),
    PrimOp::new("listToAttrs", &[S], list_to_attrs),
    PrimOp::new("intersectAttrs", &[S, S], intersect_attrs),
    PrimOp::new("catAttrs", &[S, S], cat_attrs),
    PrimOp::new("mapAttrs", &[L, S], map_attrs),
    PrimOp::new("zipAttrsWith", &[L, S], zip_attrs_with),
    PrimOp::new("unsafeGetAttrPos", &[S, S], unsafe_get_attr_pos),
];

pub(super) fn attrs_arg(v: &Value) -> EvalResult<&Attrs> {
    match v {
        Value::Attrs(a) => Ok(a),
        v => Err(EvalError::type_error(v.type_desc(), "a set")),
    }
}

fn name_arg(ev: &Evaluator, v: &Value) -> EvalResult<Symbol> {
    Ok(Symbol::new(ev.force_string(v)?.as_str()))
}

fn attr_names(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = attrs_arg(&a[0])?;
    Ok(Value::list(s.iter().map(|a| Value::string(a.name.as_str())).collect()))
}

fn attr_values(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = attrs_arg(&a[0])?;
    Ok(Value::list(s.iter().map(|a| a.value.clone()).collect()))
}

fn get_attr(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let n = name_arg(ev, &a[0])?;
    match attrs_arg(&a[1])?.get(n) {
        Some(v) => ev.force(v),
        None => Err(EvalError::new(ErrorKind::MissingAttr(n.to_string()))),
    }
}

fn has_attr(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let n = name_arg(ev, &a[0])?;
    Ok(Value::Bool(attrs_arg(&a[1])?.get(n).is_some()))
}

fn remove_attrs(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = attrs_arg(&a[0])?;
    let names = ev.force_list(&a[1])?;
    let mut remove = Vec::with_capacity(names.len());
    for n in names.iter() {
        remove.push(name_arg(ev, n)?);
    }
    let kept: Vec<Attr> = s.iter().filter(|a| !remove.contains(&a.name)).cloned().collect();
    Ok(Value::Attrs(Attrs::from_sorted(kept)))
}

fn list_to_attrs(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let l = ev.force_list(&a[0])?;
    let mut b = AttrsBuilder::with_capacity(l.len());
    for item in l.iter() {
        let item = ev.force_attrs(item)?;
        let n = item.get_str("name").ok_or_else(|| EvalError::new(ErrorKind::MissingAttr("name".into())))?;
        let n = name_arg(ev, n)?;
        let v = item.get_str("value").ok_or_else(|| EvalError::new(ErrorKind::MissingAttr("value".into())))?;
        b.insert(n, v.clone());
    }
    Ok(Value::Attrs(b.finish()))
}

fn intersect_attrs(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let x = attrs_arg(&a[0])?;
    let y = attrs_arg(&a[1])?;
    let kept: Vec<Attr> = y.iter().filter(|a| x.get(a.name).is_some()).cloned().collect();
    Ok(Value::Attrs(Attrs::from_sorted(kept)))
}

fn cat_attrs(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let n = name_arg(ev, &a[0])?;
    let l = ev.force_list(&a[1])?;
    let mut out = Vec::new();
    for item in l.iter() {
        if let Some(v) = ev.force_attrs(item)?.get(n) {
            out.push(v.clone());
        }
    }
    Ok(Value::list(out))
}

fn map_attrs(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = attrs_arg(&a[1])?;
    let f = a[0].clone();
    let out: Vec<Attr> = s
        .iter()
        .map(|at| {
            let g = Thunk::apply(f.clone(), Value::string(at.name.as_str()));
            Attr { name: at.name, value: Thunk::apply(g, at.value.clone()), pos: at.pos }
        })
        .collect();
    Ok(Value::Attrs(Attrs::from_sorted(out)))
}

fn zip_attrs_with(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let l = ev.force_list(&a[1])?;
    let mut groups: BTreeMap<Symbol, Vec<Value>> = BTreeMap::new();
    for item in l.iter() {
        for at in ev.force_attrs(item)?.iter() {
            groups.entry(at.name).or_default().push(at.value.clone());
        }
    }
    let f = a[0].clone();
    let out: Vec<Attr> = groups
        .into_iter()
        .map(|(name, vals)| {
            let g = Thunk::apply(f.clone(), Value::string(name.as_str()));
            Attr { name, value: Thunk::apply(g, Value::list(vals)), pos: Pos::NONE }
        })
        .collect();
    Ok(Value::Attrs(Attrs::from_sorted(out)))
}

/// `{ file, line, column }` for a position, or null.
pub(crate) fn pos_value(pos: Pos) -> Value {
    let Some((src, line, col)) = pos.resolve() else { return Value::Null };
    let file = match &src.origin {
        Origin::File(p) => p.clone(),
        _ => "«string»".to_string(),
    };
    let mut b = AttrsBuilder::with_capacity(3);
    b.insert(Symbol::new("file"), Value::string(file));
    b.insert(Symbol::new("line"), Value::Int(line as i64));
    b.insert(Symbol::new("column"), Value::Int(col as i64));
    Value::Attrs(b.finish())
}

fn unsafe_get_attr_pos(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let n = name_arg(ev, &a[0])?;
    Ok(match attrs_arg(&a[1])?.get_attr(n) {
        Some(at) => pos_value(at.pos),
        None => Value::Null,
    })
}
