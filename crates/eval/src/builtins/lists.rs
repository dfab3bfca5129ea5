//! List builtins.
//!
//! `genList` and `foldl'` compute a call at once, without a thunk or a frame,
//! when the function is a lambda of plain identifier parameters whose body
//! is a constant, a parameter, integer arithmetic/comparisons on the
//! (integer) arguments, integer constants and forced integers of the
//! closure, or `toString` of such an integer (`i: i * 2`, `a: b: a + b`,
//! `i: toString i`; see [`direct_call`]). Such a body cannot fail (overflow
//! yields `None` and the ordinary call, which reports it), diverge or have
//! effects, so the only visible trace is that lazy printing shows
//! `genList`'s values where Nix shows `<CODE>` (as for integer call
//! arguments, `eval/call.rs`).

use super::{Arg, PrimOp};
use crate::error::{EvalError, EvalResult};
use crate::eval::{Evaluator, int_binop};
use crate::ir::{BinOp, Expr, Param};
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{AttrsBuilder, Env, List, Pending, Thunk, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("length", &[Arg::List], |_, a, _| Ok(Value::Int(list_arg(&a[0])?.len() as i64))),
    PrimOp::new("head", &[Arg::List], head),
    PrimOp::new("tail", &[Arg::List], tail),
    // Nix forces and checks the index first.
    PrimOp::new("elemAt", &[Arg::List, Arg::Int], elem_at).second_first(),
    PrimOp::new("elem", &[Arg::Lazy, Arg::List], elem),
    PrimOp::new("map", &[Arg::Lazy, Arg::List], map),
    PrimOp::new("filter", &[Arg::Function, Arg::List], filter),
    PrimOp::new("foldl'", &[Arg::Function, Arg::Lazy, Arg::List], foldl),
    PrimOp::new("concatLists", &[Arg::List], concat_lists),
    PrimOp::new("concatMap", &[Arg::Function, Arg::List], concat_map),
    PrimOp::new("genList", &[Arg::Lazy, Arg::Int], gen_list),
    PrimOp::new("sort", &[Arg::Function, Arg::List], sort),
    PrimOp::new("partition", &[Arg::Function, Arg::List], partition),
    PrimOp::new("groupBy", &[Arg::Function, Arg::List], group_by),
    PrimOp::new("any", &[Arg::Function, Arg::List], |ev, a, p| any_all(ev, a, p, true)),
    PrimOp::new("all", &[Arg::Function, Arg::List], |ev, a, p| any_all(ev, a, p, false)),
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
    let l = list_arg(&a[1])?;
    if l.is_empty() {
        // Nix compares nothing, so the element is not forced.
        return Ok(Value::Bool(false));
    }
    // Both sides read in place: strings and integers compared without a
    // reference-count round trip per element.
    let x = ev.force_ref(&a[0])?;
    for y in l.iter() {
        let y = ev.force_ref(y)?;
        let same = match (&*x, &*y) {
            (Value::String(p), Value::String(q)) => p.as_str() == q.as_str(),
            (Value::Int(p), Value::Int(q)) => p == q,
            (p, q) => ev.equal(p, q)?,
        };
        if same {
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
    let direct = curried_body(&f, 2);
    let mut acc = a[1].clone();
    for x in list_arg(&a[2])?.iter() {
        if let Some((body, cenv)) = direct
            && let (Some(p), Some(q)) = (acc.known_int(), x.known_int())
            && let Some(v) = direct_call(ev, body, &[p, q], cenv)
        {
            acc = v;
            continue;
        }
        acc = ev.call2(&f, acc, x.clone(), pos)?;
    }
    ev.force(&acc)
}

fn concat_lists(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let l = list_arg(&a[0])?;
    concat(ev, l.iter())
}

fn concat_map(ev: &Evaluator, a: &[Value], pos: Pos) -> EvalResult<Value> {
    let f = ev.force_function(&a[0])?;
    let l = list_arg(&a[1])?;
    let mut parts = Vec::with_capacity(l.len());
    for x in l.iter() {
        // Each result is checked right after its call, as Nix does.
        let r = ev.call(&f, x.clone(), pos)?;
        let v = ev.force_ref(&r)?;
        if !matches!(&*v, Value::List(_)) {
            return Err(EvalError::type_error(v.type_desc(), "a list"));
        }
        drop(v);
        parts.push(r);
    }
    concat(ev, parts.iter())
}

/// The concatenation of the lists `parts` (forced in order, as Nix does),
/// allocated once at its final size; a single non-empty part is returned
/// itself (lists have no identity Nix code can observe).
fn concat<'a>(ev: &Evaluator, parts: impl Iterator<Item = &'a Value> + Clone) -> EvalResult<Value> {
    let mut total = 0usize;
    let mut only: Option<&'a Value> = None;
    let mut non_empty = 0usize;
    for x in parts.clone() {
        let len = match &*ev.force_ref(x)? {
            Value::List(xs) => xs.len(),
            v => return Err(EvalError::type_error(v.type_desc(), "a list")),
        };
        if len > 0 {
            non_empty += 1;
            only = Some(x);
        }
        total = total.saturating_add(len);
    }
    if non_empty == 1
        && let Some(x) = only
    {
        return Ok(ev.force_ref(x)?.into_owned());
    }
    let mut out = Vec::with_capacity(total);
    for x in parts {
        if let Value::List(xs) = &*ev.force_ref(x)? {
            out.extend(xs.iter().cloned());
        }
    }
    Ok(Value::list(out))
}

fn gen_list(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let n = ev.force_int(&a[1])?;
    if n < 0 {
        return Err(EvalError::other(format!("cannot create list of size {n}")));
    }
    // The function stays lazy (as in Nix), except that a lambda written in
    // place is evaluated (that cannot fail) to look at its body.
    let f = match &a[0] {
        Value::Thunk(t) if n > 0 && t.get_ref().is_none() => {
            let literal = t.with_contents(|_, p| matches!(p, Some(Pending::Expr(e, _)) if matches!(**e, Expr::Lambda(_))));
            if literal { Some(ev.force(&a[0])?) } else { None }
        }
        v => Some(v.shallow()),
    };
    let mut direct = f.as_ref().and_then(|f| curried_body(f, 1));
    let mut out = Vec::new();
    usize::try_from(n)
        .ok()
        .and_then(|len| out.try_reserve_exact(len).ok())
        .ok_or_else(|| EvalError::other(format!("cannot create list of size {n}: out of memory")))?;
    for i in 0..n {
        if let Some((body, cenv)) = direct {
            match direct_call(ev, body, &[i], cenv) {
                Some(v) => {
                    out.push(v);
                    continue;
                }
                // Not that kind of body (or an overflow): stop trying.
                None => direct = None,
            }
        }
        out.push(Thunk::apply(a[0].clone(), Value::Int(i)));
    }
    Ok(Value::list(out))
}

/// The body of `f` if it is a lambda taking `n` arguments one plain
/// identifier at a time (`a: b: body` for 2), with the closure's frame.
fn curried_body(f: &Value, n: usize) -> Option<(&Expr, &Env)> {
    let Value::Lambda(c) = f else { return None };
    let mut l = &*c.lambda;
    for i in 1..=n {
        if !matches!(l.param, Param::Ident(_)) {
            return None;
        }
        if i < n {
            match &l.body {
                Expr::Lambda(inner) => l = inner,
                _ => return None,
            }
        }
    }
    Some((&l.body, &c.env))
}

/// Builtins that cannot fail, diverge or have effects on an integer.
const TOTAL_ON_INTS: &[&str] = &["toString"];

/// The value of `body` (a [`curried_body`]) applied to the integers `args`,
/// if the body is a constant, a parameter, integer arithmetic/comparisons
/// that succeed or a [`TOTAL_ON_INTS`] builtin applied to such an integer,
/// without evaluating anything else; `None` otherwise.
fn direct_call(ev: &Evaluator, body: &Expr, args: &[i64], cenv: &Env) -> Option<Value> {
    match body {
        Expr::Const(v) => Some(v.clone()),
        Expr::BinOp { op, lhs, rhs, .. } => {
            int_binop(*op, direct_int(lhs, args, cenv, 4)?, direct_int(rhs, args, cenv, 4)?)
        }
        Expr::Apply { func, args: a, pos } => match (&**func, &**a) {
            (Expr::Const(Value::PrimOp(op)), [arg]) if op.arity() == 1 && TOTAL_ON_INTS.contains(&op.name) => {
                (op.func)(ev, &[Value::Int(direct_int(arg, args, cenv, 4)?)], *pos).ok()
            }
            _ => None,
        },
        e => direct_int(e, args, cenv, 0).map(Value::Int),
    }
}

/// `e`'s integer value in a call of [`direct_call`]: the frames of `args`
/// (the last one innermost) above `cenv`. Nested `+ - *` up to `depth` levels.
fn direct_int(e: &Expr, args: &[i64], cenv: &Env, depth: u32) -> Option<i64> {
    match e {
        Expr::Const(Value::Int(i)) => Some(*i),
        Expr::Local { depth: d, idx } => {
            let d = *d as usize;
            match d.checked_sub(args.len()) {
                None if *idx == 0 => args.get(args.len() - 1 - d).copied(),
                None => None,
                Some(up) => cenv.slot(u32::try_from(up).ok()?, *idx).ok()?.known_int(),
            }
        }
        Expr::BinOp { op: op @ (BinOp::Add | BinOp::Sub | BinOp::Mul), lhs, rhs, .. } if depth > 0 => {
            let l = direct_int(lhs, args, cenv, depth - 1)?;
            match int_binop(*op, l, direct_int(rhs, args, cenv, depth - 1)?)? {
                Value::Int(i) => Some(i),
                _ => None,
            }
        }
        _ => None,
    }
}

fn sort(ev: &Evaluator, a: &[Value], pos: Pos) -> EvalResult<Value> {
    let f = ev.force_function(&a[0])?;
    // Every element is forced first, in order, as Nix does (even when no
    // comparison needs it: a one-element list with a failing element fails).
    let mut items = Vec::with_capacity(list_arg(&a[1])?.len());
    for x in list_arg(&a[1])?.iter() {
        items.push(ev.force(x)?);
    }
    // `lessThan` itself is not called but compared with directly (as Nix
    // does); other comparators are called. Sorted as references (no
    // reference-count traffic per move), cloned once into the result.
    let less_than = matches!(&f, Value::PrimOp(op) if op.name == "lessThan");
    let mut lt = |p: &Value, q: &Value| -> EvalResult<bool> {
        if less_than {
            // Integers and strings (nearly all sorted keys) compared here,
            // in place; the rest as `<` compares them.
            return Ok(match (p, q) {
                (Value::Int(x), Value::Int(y)) => x < y,
                (Value::String(x), Value::String(y)) => x.as_str() < y.as_str(),
                _ => ev.compare(p, q).map_err(|e| e.with_pos(pos))? == std::cmp::Ordering::Less,
            });
        }
        ev.force_bool(&ev.call2(&f, p.clone(), q.clone(), pos)?)
    };
    let sorted = merge_sort(items.iter().collect(), &mut lt)?;
    Ok(Value::list(sorted.into_iter().cloned().collect()))
}

/// A stable merge sort with a fallible "less than" that need not be a
/// consistent order (no panics, unlike `slice::sort_by` on bad orders).
fn merge_sort<'a>(
    v: Vec<&'a Value>,
    lt: &mut dyn FnMut(&Value, &Value) -> EvalResult<bool>,
) -> EvalResult<Vec<&'a Value>> {
    let n = v.len();
    if n <= 1 {
        return Ok(v);
    }
    let mut src = v;
    let mut dst = Vec::with_capacity(n);
    let mut width = 1;
    while width < n {
        dst.clear();
        let mut start = 0;
        while start < n {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (left, right) = (src.get(start..mid).unwrap_or_default(), src.get(mid..end).unwrap_or_default());
            let (mut i, mut j) = (0, 0);
            while let (Some(&p), Some(&q)) = (left.get(i), right.get(j)) {
                // Take from the right only if strictly less (stability).
                if lt(q, p)? {
                    dst.push(q);
                    j += 1;
                } else {
                    dst.push(p);
                    i += 1;
                }
            }
            dst.extend_from_slice(left.get(i..).unwrap_or_default());
            dst.extend_from_slice(right.get(j..).unwrap_or_default());
            start = end;
        }
        std::mem::swap(&mut src, &mut dst);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::eval::{EvalConfig, Evaluator};
    use crate::io::MemIO;

    fn eval(src: &str) -> Result<String, String> {
        let ev = Evaluator::new(EvalConfig::default(), Arc::new(MemIO::new()));
        let v = ev.eval_str(src).and_then(|v| ev.force_deep(&v)).map_err(|e| e.to_string())?;
        crate::print::print_value(&ev, &v, true).map_err(|e| e.to_string())
    }

    /// Where computing a call at once would overflow, the element is an
    /// ordinary thunk again: the error comes only when (and where) it is used.
    /// (The values and laziness against Nix: `tests/cases/builtins-lists-direct.nix`.)
    #[test]
    fn direct_calls_leave_overflow_to_the_ordinary_call() {
        let l = "let l = builtins.genList (x: x * 4611686018427387904) 3; in";
        assert_eq!(eval(&format!("{l} [ (builtins.length l) (builtins.elemAt l 1) ]")).unwrap(), "[ 3 4611686018427387904 ]");
        assert!(eval(&format!("{l} builtins.elemAt l 2")).unwrap_err().contains("overflow in multiplication"));
        let e = eval("builtins.foldl' (a: b: a + b) 9223372036854775806 [ 1 1 ]").unwrap_err();
        assert!(e.contains("overflow in addition"), "{e}");
        assert_eq!(eval("builtins.foldl' (a: b: a - b) 9223372036854775806 [ 1 1 ]").unwrap(), "9223372036854775804");
    }

    #[test]
    fn gen_list_of_an_impossible_size_is_an_error() {
        let e = eval("builtins.length (builtins.genList (x: x) 9223372036854775807)").unwrap_err();
        assert!(e.contains("cannot create list of size 9223372036854775807"), "{e}");
        assert!(eval("builtins.genList (x: x) (-1)").unwrap_err().contains("cannot create list of size -1"));
    }
}
