//! List builtins.

use super::{L, PrimOp, S};
use crate::error::{EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{AttrsBuilder, List, Thunk, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("length", &[S], |_, a, _| Ok(Value::Int(list_arg(&a[0])?.len() as i64))),
    PrimOp::new("head", &[S], head),
    PrimOp::new("tail", &[S], tail),
    PrimOp::new("elemAt", &[S, S], elem_at),
    PrimOp::new("elem", &[L, S], elem),
    PrimOp::new("map", &[L, S], map),
    PrimOp::new("filter", &[S, S], filter),
    PrimOp::new("foldl'", &[S, L, S], foldl),
    PrimOp::new("concatLists", &[S], concat_lists),
    PrimOp::new("concatMap", &[S, S], concat_map),
    PrimOp::new("genList", &[L, S], gen_list),
    PrimOp::new("sort", &[S, S], sort),
    PrimOp::new("partition", &[S, S], partition),
    PrimOp::new("groupBy", &[S, S], group_by),
    PrimOp::new("any", &[S, S], |ev, a, p| any_all(ev, a, p, true)),
    PrimOp::new("all", &[S, S], |ev, a, p| any_all(ev, a, p, false)),
];

pub(super) fn list_arg(v: &Value) -> EvalResult<&List> {
    match v {
        Value::List(l) => Ok(l),
        v => Err(EvalError::type_error(v.type_desc(), "a list")),
    }
}

fn head(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    match list_arg(&a[0])?.first() {
        Some(v) => ev.force(v),
        None => Err(EvalError::other("list index 0 is out of bounds")),
    }
}

fn tail(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let l = list_arg(&a[0])?;
    match l.get(1..) {
        Some(rest) if !l.is_empty() => Ok(Value::list(rest.to_vec())),
        _ => Err(EvalError::other("'tail' called on an empty list")),
    }
}

fn elem_at(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let l = list_arg(&a[0])?;
    let i = ev.force_int(&a[1])?;
    match usize::try_from(i).ok().and_then(|i| l.get(i)) {
        Some(v) => ev.force(v),
        None => Err(EvalError::other(format!("list index {i} is out of bounds"))),
    }
}

fn elem(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    for x in list_arg(&a[1])?.iter() {
        if ev.equal(&a[0], x)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn map(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let l = list_arg(&a[1])?;
    Ok(Value::list(l.iter().map(|x| Thunk::apply(a[0].clone(), x.clone())).collect()))
}

fn filter(ev: &Evaluator, a: &[Value], pos: Pos) -> EvalResult<Value> {
    let f = ev.force_function(&a[0])?;
    let l = list_arg(&a[1])?;
    let mut out = Vec::new();
    for x in l.iter() {
        if ev.force_bool(&ev.call(&f, x.clone(), pos)?)? {
            out.push(x.clone());
        }
    }
    if out.len() == l.len() {
        return Ok(a[1].clone());
    }
    Ok(Value::list(out))
}

fn foldl(ev: &Evaluator, a: &[Value], pos: Pos) -> EvalResult<Value> {
    let f = ev.force_function(&a[0])?;
    let mut acc = a[1].clone();
    for x in list_arg(&a[2])?.iter() {
        acc = ev.call2(&f, acc, x.clone(), pos)?;
    }
    ev.force(&acc)
}

fn concat_lists(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let mut out = Vec::new();
    for x in list_arg(&a[0])?.iter() {
        out.extend(ev.force_list(x)?.iter().cloned());
    }
    Ok(Value::list(out))
}

fn concat_map(ev: &Evaluator, a: &[Value], pos: Pos) -> EvalResult<Value> {
    let f = ev.force_function(&a[0])?;
    let mut out = Vec::new();
    for x in list_arg(&a[1])?.iter() {
        let r = ev.call(&f, x.clone(), pos)?;
        out.extend(ev.force_list(&r)?.iter().cloned());
    }
    Ok(Value::list(out))
}

fn gen_list(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let n = ev.force_int(&a[1])?;
    if n < 0 {
        return Err(EvalError::other(format!("cannot create list of size {n}")));
    }
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        out.push(Thunk::apply(a[0].clone(), Value::Int(i)));
    }
    Ok(Value::list(out))
}

fn sort(ev: &Evaluator, a: &[Value], pos: Pos) -> EvalResult<Value> {
    let f = ev.force_function(&a[0])?;
    let items: Vec<Value> = list_arg(&a[1])?.iter().cloned().collect();
    let mut lt = |p: &Value, q: &Value| -> EvalResult<bool> {
        ev.force_bool(&ev.call2(&f, p.clone(), q.clone(), pos)?)
    };
    Ok(Value::list(merge_sort(items, &mut lt)?))
}

/// A stable merge sort with a fallible "less than" that need not be a
/// consistent order (no panics, unlike `slice::sort_by` on bad orders).
fn merge_sort(
    v: Vec<Value>,
    lt: &mut dyn FnMut(&Value, &Value) -> EvalResult<bool>,
) -> EvalResult<Vec<Value>> {
    let n = v.len();
    if n <= 1 {
        return Ok(v);
    }
    let mut src = v;
    let mut width = 1;
    while width < n {
        let mut dst = Vec::with_capacity(n);
        let mut start = 0;
        while start < n {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (mut i, mut j) = (start, mid);
            while i < mid && j < end {
                // Take from the right only if strictly less (stability).
                if lt(&src[j], &src[i])? {
                    dst.push(src[j].clone());
                    j += 1;
                } else {
                    dst.push(src[i].clone());
                    i += 1;
                }
            }
            dst.extend_from_slice(&src[i..mid]);
            dst.extend_from_slice(&src[j..end]);
            start = end;
        }
        src = dst;
        width *= 2;
    }
    Ok(src)
}

fn partition(ev: &Evaluator, a: &[Value], pos: Pos) -> EvalResult<Value> {
    let f = ev.force_function(&a[0])?;
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    for x in list_arg(&a[1])?.iter() {
        if ev.force_bool(&ev.call(&f, x.clone(), pos)?)? {
            right.push(x.clone());
        } else {
            wrong.push(x.clone());
        }
    }
    let mut b = AttrsBuilder::with_capacity(2);
    b.insert(Symbol::new("right"), Value::list(right));
    b.insert(Symbol::new("wrong"), Value::list(wrong));
    Ok(Value::Attrs(b.finish()))
}

fn group_by(ev: &Evaluator, a: &[Value], pos: Pos) -> EvalResult<Value> {
    let f = ev.force_function(&a[0])?;
    let mut groups: std::collections::BTreeMap<Symbol, Vec<Value>> = Default::default();
    for x in list_arg(&a[1])?.iter() {
        let k = ev.call(&f, x.clone(), pos)?;
        let k = Symbol::new(ev.force_string(&k)?.as_str());
        groups.entry(k).or_default().push(x.clone());
    }
    let mut b = AttrsBuilder::with_capacity(groups.len());
    for (k, v) in groups {
        b.insert(k, Value::list(v));
    }
    Ok(Value::Attrs(b.finish()))
}

fn any_all(ev: &Evaluator, a: &[Value], pos: Pos, any: bool) -> EvalResult<Value> {
    let f = ev.force_function(&a[0])?;
    for x in list_arg(&a[1])?.iter() {
        if ev.force_bool(&ev.call(&f, x.clone(), pos)?)? == any {
            return Ok(Value::Bool(any));
        }
    }
    Ok(Value::Bool(!any))
}
