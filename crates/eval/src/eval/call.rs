//! Function application: lambdas (with formals and defaults), primops
//! (partial application collects arguments until the arity is reached, then
//! forces the strict ones), and sets with `__functor`.

use std::sync::Arc;

use crate::value::Brc;

use super::Evaluator;
use super::borrow::VRef;
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::ir::{BinOp, Expr, Lambda, Param};
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{Env, PrimOpApp, Thunk, Value};

fn lambda_desc(l: &Lambda) -> String {
    let at = match l.pos.resolve() {
        Some((src, line, col)) => {
            let name = match &src.origin {
                crate::source::Origin::File(p) => p.clone(),
                _ => "(string)".into(),
            };
            format!(" at {name}:{line}:{col}")
        }
        None => String::new(),
    };
    match l.name {
        Some(n) => format!("'{n}'{at}"),
        None => format!("anonymous function{at}"),
    }
}

/// An error leaving the call of `l`: the trace line "while calling ..."
/// (at most 64 lines of them, as the traces of deep recursions would grow
/// without bound).
#[cold]
#[inline(never)]
fn call_frame(e: EvalError, l: &Lambda) -> EvalError {
    if e.trace().len() < 64 { e.add_frame(l.pos, format!("while calling {}", lambda_desc(l))) } else { e }
}

impl Evaluator {
    /// Apply `f` (already forced) to `arg`.
    ///
    /// No stack check here: every unbounded recursion also goes through
    /// evaluating a lambda's body or forcing a thunk, which check.
    #[inline]
    pub fn call(&self, f: &Value, arg: Value, pos: Pos) -> EvalResult<Value> {
        self.call_inner(f, arg, pos)
    }

    /// Apply `f` to several arguments.
    pub fn call_n(&self, f: &Value, args: &[Value], pos: Pos) -> EvalResult<Value> {
        let mut f = self.force(f)?;
        for a in args {
            f = self.call(&f, a.clone(), pos)?;
        }
        Ok(f)
    }

    /// Apply `f` (already forced) to two arguments. A curried lambda
    /// (`a: b: ...`) is entered directly, without building the closure of
    /// the inner lambda.
    pub fn call2(&self, f: &Value, a: Value, b: Value, pos: Pos) -> EvalResult<Value> {
        if let Value::Lambda(c) = f
            && let Expr::Lambda(inner) = &c.lambda.body
        {
            self.enter_call().map_err(|e| e.with_pos(pos))?;
            let r = self.frame_of(&c.lambda, &c.env, a, pos).and_then(|env| self.call_lambda_in(inner, &env, b, pos));
            self.leave_call();
            return r;
        }
        let g = self.call(f, a, pos)?;
        self.call(&g, b, pos)
    }

    /// `f a1 a2 ...` with the arguments as expressions in `env`: a primop
    /// given all its arguments is called at once, curried lambdas are
    /// entered two arguments at a time (see [`Evaluator::call2`]).
    /// The function is borrowed (see `borrow.rs`): calling a shared function
    /// does not touch its reference count. (Inline in its one caller,
    /// `eval_apply`.)
    #[inline(always)]
    pub(super) fn apply_exprs(&self, mut f: VRef<'_>, args: &[Brc<Expr>], pos: Pos, env: &Env) -> EvalResult<Value> {
        let mut rest = args;
        while let Some((first, tail)) = rest.split_first() {
            match &*f {
                Value::PrimOp(op) if op.arity() >= 1 && op.arity() <= rest.len() => {
                    let (now, later) = rest.split_at(op.arity());
                    // One to three arguments (most primops) on the stack:
                    // no vector allocated and freed per call.
                    let r = match now {
                        [a] => self.call_primop_args(op, [self.primop_arg(op, 0, a, env, pos)?], pos)?,
                        [a, b] => {
                            let v = if op.is_second_first() {
                                let y = self.primop_arg(op, 1, b, env, pos)?;
                                [self.primop_arg(op, 0, a, env, pos)?, y]
                            } else {
                                [self.primop_arg(op, 0, a, env, pos)?, self.primop_arg(op, 1, b, env, pos)?]
                            };
                            self.call_primop_args(op, v, pos)?
                        }
                        [a, b, c] => {
                            let v = [
                                self.primop_arg(op, 0, a, env, pos)?,
                                self.primop_arg(op, 1, b, env, pos)?,
                                self.primop_arg(op, 2, c, env, pos)?,
                            ];
                            self.call_primop_args(op, v, pos)?
                        }
                        _ => {
                            let mut v = Vec::with_capacity(now.len());
                            for (i, a) in now.iter().enumerate() {
                                v.push(self.primop_arg(op, i, a, env, pos)?);
                            }
                            self.call_primop_now(op, &mut v, pos)?
                        }
                    };
                    // The last call's result is returned as it is (through
                    // `f` it was stored in pieces and reloaded whole: a
                    // store-forwarding stall per call).
                    if later.is_empty() {
                        return Ok(r);
                    }
                    f = VRef::Own(r);
                    rest = later;
                }
                Value::Lambda(c) if matches!(c.lambda.body, Expr::Lambda(_)) && !tail.is_empty() => {
                    let a = self.delay_arg(first, env)?;
                    let (second, later) = tail.split_first().ok_or_else(|| EvalError::other("internal error"))?;
                    let b = self.delay_arg(second, env)?;
                    let r = self.call2(&f, a, b, pos)?;
                    if later.is_empty() {
                        return Ok(r);
                    }
                    f = VRef::Own(r);
                    rest = later;
                }
                Value::Lambda(c) => {
                    let a = self.delay_arg(first, env)?;
                    let r = self.call_lambda(c, a, pos)?;
                    if tail.is_empty() {
                        return Ok(r);
                    }
                    f = VRef::Own(r);
                    rest = tail;
                }
                _ => {
                    let a = self.delay_arg(first, env)?;
                    let r = self.call(&f, a, pos)?;
                    if tail.is_empty() {
                        return Ok(r);
                    }
                    f = VRef::Own(r);
                    rest = tail;
                }
            }
        }
        Ok(f.into_owned())
    }

    /// Argument `i` of a call of `op` given all its arguments: a strict one
    /// is evaluated at once, in `op`'s order, and checked against its
    /// declaration before the next one is evaluated, instead of delayed into
    /// a thunk that the call would force right away (the thunk is fresh and
    /// referenced by nothing else, so only its allocation is saved; lazy
    /// arguments have no effects when delayed, so the order of effects and
    /// errors is the one of forcing and checking the strict arguments in
    /// order, as Nix's builtins do).
    /// (The check is a tag compare inline, the rest out of line: so this
    /// stays small enough to be inlined into each call site.)
    #[inline(always)]
    fn primop_arg(&self, op: &crate::builtins::PrimOp, i: usize, e: &Brc<Expr>, env: &Env, pos: Pos) -> EvalResult<Value> {
        if op.is_strict(i) {
            // Checked in place: the result is returned as evaluated (no copy).
            let r = self.eval(e, env);
            if let Ok(v) = &r {
                op.check(self, i, v).map_err(|e| e.with_pos(pos))?;
            }
            r.map_err(|e| e.with_pos(pos))
        } else {
            self.delay_arg(e, env)
        }
    }

    /// [`Evaluator::call_primop_now`] with arguments on the stack, dropped
    /// after the call without the drop glue's call for the ones that hold
    /// no node (numbers, Booleans: most strict arguments).
    #[inline(always)]
    fn call_primop_args<const N: usize>(
        &self,
        op: &'static crate::builtins::PrimOp,
        mut args: [Value; N],
        pos: Pos,
    ) -> EvalResult<Value> {
        let r = self.call_primop_now(op, &mut args, pos);
        args.into_iter().for_each(crate::value::drop::drop_value);
        r
    }

    /// Call `op` with all its arguments, the strict ones forced already.
    #[inline]
    fn call_primop_now(&self, op: &'static crate::builtins::PrimOp, args: &mut [Value], pos: Pos) -> EvalResult<Value> {
        (op.func)(self, args, pos).map_err(|e| e.with_pos(pos))
    }

    /// An argument of a call: like [`Evaluator::delay`], except that
    /// integer arithmetic and comparisons whose operands are integers
    /// already (constants, forced variables) are computed at once (`n - 1`
    /// in `f (n - 1)`). Such an expression cannot fail (overflow falls back
    /// to a thunk), diverge or have effects, so computing it early only
    /// saves the thunk; the one visible trace is that lazy printing shows
    /// the number where Nix would show `<CODE>`.
    #[inline(always)]
    fn delay_arg(&self, e: &Brc<Expr>, env: &Env) -> EvalResult<Value> {
        if let Expr::BinOp { op, lhs, rhs, .. } = &**e
            && let Some(v) = eager_int(*op, lhs, rhs, env)
        {
            return Ok(v);
        }
        self.delay(e, env)
    }

    fn call_inner(&self, f: &Value, arg: Value, pos: Pos) -> EvalResult<Value> {
        match f {
            Value::Lambda(c) => self.call_lambda(c, arg, pos),
            Value::PrimOp(op) => {
                if op.arity() == 1 {
                    self.call_primop(op, &mut [arg], pos)
                } else {
                    Ok(Value::PrimOpApp(Arc::new(PrimOpApp { op, args: vec![arg] })))
                }
            }
            Value::PrimOpApp(app) => {
                let mut args = Vec::with_capacity(app.args.len() + 1);
                args.extend(app.args.iter().cloned());
                args.push(arg);
                if args.len() >= app.op.arity() {
                    self.call_primop(app.op, &mut args, pos)
                } else {
                    Ok(Value::PrimOpApp(Arc::new(PrimOpApp { op: app.op, args })))
                }
            }
            Value::Attrs(a) => {
                let Some(functor) = a.get(Symbol::functor()) else {
                    return Err(EvalError::at(
                        ErrorKind::Other("attempt to call something which is not a function but a set".into()),
                        pos,
                    ));
                };
                let functor = self.force(functor)?;
                let g = self.call(&functor, f.clone(), pos)?;
                self.call(&g, arg, pos)
            }
            Value::Thunk(_) => {
                let f = self.force(f)?;
                self.call(&f, arg, pos)
            }
            other => Err(EvalError::at(
                ErrorKind::Other(format!("attempt to call something which is not a function but {}", other.type_desc())),
                pos,
            )),
        }
    }

    /// `args` are all the arguments (no `Vec` for a single one).
    /// The strict ones are forced and checked one at a time, in `op`'s order.
    fn call_primop(&self, op: &'static crate::builtins::PrimOp, args: &mut [Value], pos: Pos) -> EvalResult<Value> {
        for k in 0..args.len() {
            let i = op.forced(k);
            if op.is_strict(i)
                && let Some(a) = args.get_mut(i)
            {
                *a = self.force(a).map_err(|e| e.with_pos(pos))?;
                op.check(self, i, a).map_err(|e| e.with_pos(pos))?;
            }
        }
        self.call_primop_now(op, args, pos)
    }

    /// Call the closure `c` with `arg`, counting the call.
    #[inline(always)]
    fn call_lambda(&self, c: &crate::value::Closure, arg: Value, pos: Pos) -> EvalResult<Value> {
        self.enter_call().map_err(|e| e.with_pos(pos))?;
        let r = self.call_lambda_in(&c.lambda, &c.env, arg, pos);
        self.leave_call();
        r
    }

    /// Call the lambda `l` closed over `cenv` (the caller counts the call).
    /// A plain parameter's frame is made inline; patterns out of line.
    #[inline(always)]
    fn call_lambda_in(&self, l: &Lambda, cenv: &Env, arg: Value, pos: Pos) -> EvalResult<Value> {
        let env = self.frame_of(l, cenv, arg, pos)?;
        match self.eval(&l.body, &env) {
            Ok(v) => Ok(v),
            Err(e) => Err(call_frame(e, l)),
        }
    }

    /// The frame of a call of `l` (closed over `cenv`) with `arg`: a plain
    /// parameter's inline, a pattern's out of line.
    #[inline(always)]
    fn frame_of(&self, l: &Lambda, cenv: &Env, arg: Value, pos: Pos) -> EvalResult<Env> {
        match &l.param {
            Param::Ident(_) => Ok(Env::new_one(cenv, arg)),
            Param::Pattern(_) => self.bind_args(l, cenv, arg, pos),
        }
    }

    /// The frame of a call of `l` (closed over `cenv`) with `arg`. The
    /// argument set is read borrowed (no reference-count round trip on it).
    fn bind_args(&self, l: &Lambda, cenv: &Env, arg: Value, pos: Pos) -> EvalResult<Env> {
        let p = match &l.param {
            Param::Ident(_) => return Ok(Env::new_one(cenv, arg)),
            Param::Pattern(p) => p,
        };
        let forced = self.force_ref(&arg).map_err(|e| e.with_pos(pos))?;
        let attrs = match &*forced {
            Value::Attrs(a) => a,
            v => return Err(EvalError::type_error(v.type_desc(), "a set").with_pos(pos)),
        };
        // The slots are written into the frame's node as they are found;
        // a default that is not a constant refers to the frame (compiled
        // in its scope): then the frame is recursive, made below instead.
        let mut frame = Env::build(cenv, p.slots());
        let mut need_rec = false;
        let mut used = 0usize;
        for (i, f) in p.formals.iter().enumerate() {
            match attrs.get(f.name) {
                Some(v) => {
                    used += 1;
                    frame.set(i, v.clone())
                }
                None => match f.default.as_deref() {
                    Some(crate::ir::Expr::Const(v)) => frame.set(i, v.clone()),
                    Some(_) => need_rec = true,
                    None => {
                        return Err(EvalError::at(
                            ErrorKind::Other(format!(
                                "{} called without required argument '{}'",
                                lambda_desc(l),
                                f.name
                            )),
                            pos,
                        ));
                    }
                },
            }
        }
        if !p.ellipsis && used < attrs.len() {
            for a in attrs.iter() {
                if p.formals.binary_search_by(|f| f.name.cmp(&a.name)).is_err() {
                    return Err(EvalError::at(
                        ErrorKind::Other(format!("{} called with unexpected argument '{}'", lambda_desc(l), a.name)),
                        pos,
                    ));
                }
            }
        }
        if !need_rec {
            drop(forced);
            if p.bind.is_some() {
                frame.set(p.formals.len(), arg);
            }
            return Ok(frame.finish());
        }
        drop(frame);
        let env = self.new_rec_env(cenv, p.slots());
        if let Some(mut fill) = env.filler() {
            for (i, f) in p.formals.iter().enumerate() {
                let v = match (attrs.get(f.name), &f.default) {
                    (Some(v), _) => v.clone(),
                    (None, Some(d)) => match &**d {
                        crate::ir::Expr::Const(v) => v.clone(),
                        _ => Thunk::expr(d.clone(), env.clone()),
                    },
                    (None, None) => Value::Null,
                };
                fill.set(i, v);
            }
            drop(forced);
            if p.bind.is_some() {
                fill.set(p.formals.len(), arg);
            }
            fill.finish();
        }
        Ok(env)
    }
}

/// `e`'s integer value if it is one already (no evaluation).
#[inline]
fn known_int(e: &Expr, env: &Env) -> Option<i64> {
    match e {
        Expr::Const(Value::Int(i)) => Some(*i),
        Expr::Local { depth, idx } => env.slot(*depth, *idx).ok()?.known_int(),
        _ => None,
    }
}

/// `lhs op rhs` on integers that are values already, when it cannot fail.
#[inline]
fn eager_int(op: BinOp, lhs: &Expr, rhs: &Expr, env: &Env) -> Option<Value> {
    if !matches!(
        op,
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Eq | BinOp::NotEq | BinOp::Less | BinOp::LessEq | BinOp::More | BinOp::MoreEq
    ) {
        return None;
    }
    int_binop(op, known_int(lhs, env)?, known_int(rhs, env)?)
}

/// `a op b` for integer arithmetic and comparisons, or `None` where it
/// would fail (overflow) or is not one of those operators.
#[inline]
pub(crate) fn int_binop(op: BinOp, a: i64, b: i64) -> Option<Value> {
    Some(match op {
        BinOp::Add => Value::Int(a.checked_add(b)?),
        BinOp::Sub => Value::Int(a.checked_sub(b)?),
        BinOp::Mul => Value::Int(a.checked_mul(b)?),
        BinOp::Eq => Value::Bool(a == b),
        BinOp::NotEq => Value::Bool(a != b),
        BinOp::Less => Value::Bool(a < b),
        BinOp::LessEq => Value::Bool(a <= b),
        BinOp::More => Value::Bool(a > b),
        BinOp::MoreEq => Value::Bool(a >= b),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::eval::{EvalConfig, Evaluator};
    use crate::io::MemIO;

    fn eval(src: &str) -> String {
        let ev = Evaluator::new(EvalConfig::default(), Arc::new(MemIO::new()));
        match ev.eval_str(src).and_then(|v| ev.force_deep(&v)) {
            Ok(v) => crate::print::print_value(&ev, &v, true).unwrap(),
            Err(e) => format!("error: {e}"),
        }
    }

    /// Strict arguments of a primop given all of them are evaluated at once
    /// (no thunk): the same values and the same first error as forcing them
    /// in order, lazy arguments still unevaluated (expected values from
    /// nix-instantiate 2.8).
    #[test]
    fn strict_primop_arguments_evaluated_at_once() {
        assert_eq!(eval("builtins.length (builtins.tail [ 1 2 3 ])"), "2");
        assert_eq!(eval("builtins.typeOf (builtins.seq 1 [ ])"), "\"list\"");
        assert_eq!(eval("builtins.isFunction (builtins.substring 0)"), "true");
        assert_eq!(eval("builtins.seq 1 2"), "2");
        assert_eq!(eval("builtins.length (let x = [ 1 2 ]; in x)"), "2");
        assert!(eval("builtins.substring (throw \"a\") (throw \"b\") (throw \"c\")").contains("error: a"));
        assert!(eval("builtins.length (builtins.seq (throw \"first\") 1)").contains("error: first"));
        assert!(eval("builtins.seq 1 (throw \"lazy\")").contains("error: lazy"));
        assert_eq!(eval("builtins.length [ (throw \"unforced\") ]"), "1");
        assert_eq!(eval("builtins.elemAt [ 1 (throw \"no\") ] (builtins.length [ ])"), "1");
    }

    /// Arguments computed at once behave as the lazy ones: same values,
    /// overflow still an error only when used, unused ones never fail.
    #[test]
    fn eager_integer_arguments_are_invisible() {
        assert_eq!(eval("let fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2); in fib 20"), "6765");
        assert_eq!(eval("let f = a: b: [ a b ]; n = 3; in f (n * 2) (n == 3)"), "[ 6 true ]");
        assert_eq!(eval("let n = 9223372036854775807; in (x: 1) (n + 1)"), "1");
        assert!(eval("let n = 9223372036854775807; in (x: x) (n + 1)").contains("overflow"));
        assert_eq!(eval("let s = \"a\"; in (x: 2) (s - 1)"), "2");
        assert_eq!(eval("builtins.elemAt [ 5 6 7 ] (let i = 1; in i + 1)"), "7");
    }
}
