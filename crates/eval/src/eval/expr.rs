//! Evaluation of each IR node to weak head normal form.


use crate::value::Brc;

use super::Evaluator;
use super::borrow::VRef;
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::ir::{AttrName, AttrsExpr, BinOp, Expr, LetExpr};
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, AttrsBuilder, Env, Thunk, Value};

impl Evaluator {
    /// One node: a jump to the node's function. Every arm is a tail call
    /// with this function's own arguments or fewer (no frame here: the
    /// saves and restores of a frame big enough for every arm were paid on
    /// every node), and `if` and `assert` tail-call their branch in turn.
    pub(super) fn eval_inner(&self, e: &Expr, env: &Env) -> EvalResult<Value> {
        match e {
            Expr::Const(v) => const_value(v),
            Expr::Local { depth, idx } => self.eval_local(env, *depth, *idx),
            Expr::WithVar { .. } => self.eval_with_var(e, env),
            Expr::Interp { parts, pos } => self.interpolate(parts, *pos, env),
            Expr::PathInterp { parts, pos } => self.path_interp(parts, *pos, env),
            Expr::List(items) => self.eval_list(items, env),
            Expr::Attrs(a) => self.eval_attrs(a, env),
            Expr::Let(l) => self.eval_let(l, env),
            Expr::Lambda(l) => lambda_value(l, env),
            Expr::Apply { .. } => self.eval_apply(e, env),
            Expr::Select { .. } => self.eval_select(e, env),
            Expr::HasAttr { expr, path } => self.eval_has_attr(expr, path, env),
            Expr::If { .. } => self.eval_if(e, env),
            Expr::Assert { .. } => self.eval_assert(e, env),
            Expr::With { attrs, body } => self.eval_with(attrs, body, env),
            Expr::BinOp { .. } => self.eval_binop_node(e, env),
            Expr::Not(..) | Expr::Neg(..) => self.eval_unary(e, env),
        }
    }

    #[inline(never)]
    fn eval_with_var(&self, e: &Expr, env: &Env) -> EvalResult<Value> {
        self.eval_ref(e, env).map(VRef::into_owned)
    }

    #[inline(never)]
    fn eval_apply(&self, e: &Expr, env: &Env) -> EvalResult<Value> {
        let Expr::Apply { func, args, pos } = e else { return Err(not_node()) };
        let f = self.eval_ref(func, env)?;
        self.apply_exprs(f, args, *pos, env)
    }

    #[inline(never)]
    fn eval_select(&self, e: &Expr, env: &Env) -> EvalResult<Value> {
        let Expr::Select { expr, path, default, pos } = e else { return Err(not_node()) };
        self.select_ref(expr, path, default.as_deref(), *pos, env).map(VRef::into_owned)
    }

    #[inline(never)]
    fn eval_if(&self, e: &Expr, env: &Env) -> EvalResult<Value> {
        let Expr::If { cond, then, else_, pos } = e else { return Err(not_node()) };
        let branch = if self.eval_bool(cond, env, *pos)? { then } else { else_ };
        self.eval(branch, env)
    }

    #[inline(never)]
    fn eval_assert(&self, e: &Expr, env: &Env) -> EvalResult<Value> {
        let Expr::Assert { cond, body, text, pos } = e else { return Err(not_node()) };
        if !self.eval_bool(cond, env, *pos)? {
            return Err(EvalError::at(ErrorKind::Assert(text.to_string()), *pos));
        }
        self.eval(body, env)
    }

    #[inline(never)]
    fn eval_with(&self, attrs: &Brc<Expr>, body: &Expr, env: &Env) -> EvalResult<Value> {
        let scope = self.delay(attrs, env)?;
        let env = Env::new_one(env, scope);
        self.eval(body, &env)
    }

    #[inline(never)]
    fn eval_binop_node(&self, e: &Expr, env: &Env) -> EvalResult<Value> {
        let Expr::BinOp { op, lhs, rhs, pos } = e else { return Err(not_node()) };
        self.eval_binop(*op, lhs, rhs, *pos, env)
    }

    #[inline(never)]
    fn eval_unary(&self, e: &Expr, env: &Env) -> EvalResult<Value> {
        match e {
            Expr::Not(e, pos) => self.eval_bool(e, env, *pos).map(|b| Value::Bool(!b)),
            Expr::Neg(e, pos) => {
                let v = self.eval(e, env)?;
                self.arith(BinOp::Sub, Value::Int(0), v).map_err(|e| e.with_pos(*pos))
            }
            _ => Err(not_node()),
        }
    }

    /// `e` evaluated to a Boolean (conditions, `!`, `&&`...); a type error
    /// at `pos` otherwise.
    #[inline(always)]
    pub(super) fn eval_bool(&self, e: &Expr, env: &Env, pos: crate::source::Pos) -> EvalResult<bool> {
        super::ops::bool_of(self.eval(e, env)?, pos)
    }

    #[inline(never)]
    fn eval_list(&self, items: &[Brc<Expr>], env: &Env) -> EvalResult<Value> {
        let mut v = Vec::with_capacity(items.len());
        for i in items.iter() {
            v.push(self.delay(i, env)?);
        }
        Ok(Value::list(v))
    }

    #[inline(never)]
    fn eval_has_attr(&self, expr: &Expr, path: &[AttrName], env: &Env) -> EvalResult<Value> {
        let mut v = self.eval_ref(expr, env)?;
        for (i, name) in path.iter().enumerate() {
            let name = self.attr_name(name, env)?;
            let found = match &v {
                VRef::Ref(Value::Attrs(a)) => a.get(name).map(VRef::Ref),
                VRef::Own(Value::Attrs(a)) => a.get(name).map(|x| VRef::Own(x.clone())),
                _ => return Ok(Value::Bool(false)),
            };
            match found {
                // Only the attributes on the way are forced.
                Some(VRef::Ref(x)) if i + 1 < path.len() => v = self.force_ref(x)?,
                Some(VRef::Own(x)) if i + 1 < path.len() => v = VRef::Own(self.force(&x)?),
                Some(_) => return Ok(Value::Bool(true)),
                None => return Ok(Value::Bool(false)),
            }
        }
        Ok(Value::Bool(true))
    }

    /// The name of a selection or has-attr step: static names inline (the
    /// common case, on every `a.b`), dynamic ones evaluated out of line.
    #[inline]
    pub(crate) fn attr_name(&self, n: &AttrName, env: &Env) -> EvalResult<Symbol> {
        match n {
            AttrName::Static(s) => Ok(*s),
            AttrName::Dynamic(e) => self.dynamic_attr_name(e, env),
        }
    }

    #[inline(never)]
    fn dynamic_attr_name(&self, e: &Expr, env: &Env) -> EvalResult<Symbol> {
        let v = self.eval(e, env)?;
        let s = self.coerce_to_shared_string(&v, super::CoerceOpts::interpolation())?;
        Ok(crate::builtins::string_symbol(&s))
    }

    /// A value for a binding of a recursive frame: variables of the frame
    /// itself must be delayed (the frame is not filled yet).
    fn delay_rec(&self, e: &Brc<Expr>, env: &Env) -> EvalResult<Value> {
        match &**e {
            Expr::Local { depth: 0, .. } => Ok(Thunk::expr(e.clone(), env.clone())),
            _ => self.delay(e, env),
        }
    }

    #[inline(never)]
    fn eval_attrs(&self, a: &AttrsExpr, env: &Env) -> EvalResult<Value> {
        // The frame of the dynamic names and values: the recursive one, or
        // `env` borrowed (not cloned: most sets are not recursive).
        let renv;
        let (attrs, env) = if a.rec {
            renv = self.new_rec_env(env, a.attrs.len());
            let mut attrs: Vec<Attr> = Vec::with_capacity(a.attrs.len());
            if let Some(mut f) = renv.filler() {
                for (i, d) in a.attrs.iter().enumerate() {
                    let value = self.delay_rec(&d.value, &renv)?;
                    f.set(i, value.clone());
                    attrs.push(Attr { name: d.name, value, pos: d.pos });
                }
                f.finish();
            }
            let overrides = Symbol::overrides();
            if let Ok(i) = attrs.binary_search_by(|x| x.name.cmp(&overrides)) {
                attrs = self.apply_overrides(attrs, i, &renv)?;
            }
            (attrs, &renv)
        } else {
            let mut attrs: Vec<Attr> = Vec::with_capacity(a.attrs.len());
            for (i, d) in a.attrs.iter().enumerate() {
                let value = self.delay(&d.value, env)?;
                // Written in place: `push`'s grow path made the compiler
                // assemble the `Attr` on the stack in 8-byte stores and copy
                // it in 16-byte loads (a store-forwarding stall per
                // attribute of every set literal).
                // SAFETY: `i < a.attrs.len()`, the capacity; elements
                // `0..i` are initialised (the length follows each write).
                unsafe {
                    attrs.as_mut_ptr().add(i).write(Attr { name: d.name, value, pos: d.pos });
                    attrs.set_len(i + 1);
                }
            }
            (attrs, env)
        };
        if a.dynamic.is_empty() {
            return Ok(Value::Attrs(Attrs::from_sorted(attrs)));
        }
        let mut b = AttrsBuilder::with_capacity(attrs.len() + a.dynamic.len());
        // Duplicates found by a scan of the few names (most such sets are
        // `{ ${n} = v; }`), by a hash set only for bigger ones.
        let small = attrs.len() + a.dynamic.len() <= 16;
        let mut seen: std::collections::HashSet<Symbol> =
            if small { Default::default() } else { attrs.iter().map(|a| a.name).collect() };
        for at in attrs {
            b.insert_pos(at.name, at.value, at.pos);
        }
        for d in &a.dynamic {
            let n = self.eval(&d.name, env)?;
            if matches!(n, Value::Null) {
                continue;
            }
            let s = self.coerce_to_shared_string(&n, super::CoerceOpts::interpolation()).map_err(|e| e.with_pos(d.pos))?;
            let sym = crate::builtins::string_symbol(&s);
            let dup = if small { b.contains(sym) } else { !seen.insert(sym) };
            if dup {
                return Err(EvalError::at(ErrorKind::Other(format!("dynamic attribute '{sym}' already defined")), d.pos));
            }
            b.insert_pos(sym, self.delay(&d.value, env)?, d.pos);
        }
        Ok(Value::Attrs(b.finish()))
    }

    /// The deprecated `__overrides` of a `rec` set: its attributes replace
    /// (in the set and in the recursive frame) or extend the set's own.
    fn apply_overrides(&self, attrs: Vec<Attr>, i: usize, renv: &Env) -> EvalResult<Vec<Attr>> {
        let ov = self.force_attrs(&attrs[i].value)?;
        let mut b = AttrsBuilder::with_capacity(attrs.len() + ov.len());
        let mut slots: Vec<Value> = attrs.iter().map(|a| a.value.clone()).collect();
        for o in ov.iter() {
            if let Ok(j) = attrs.binary_search_by(|x| x.name.cmp(&o.name)) {
                slots[j] = o.value.clone();
            }
        }
        for o in ov.iter() {
            b.insert_pos(o.name, o.value.clone(), o.pos);
        }
        for a in &attrs {
            b.insert_pos(a.name, a.value.clone(), a.pos);
        }
        // SAFETY: this thread made `renv` in `eval_attrs` and has not
        // returned it; forcing `__overrides` is over, so no reference into
        // its slots is alive, and nothing evaluated here can hand the frame
        // to another thread (a thunk is only shared once it is reachable
        // from a value another thread holds, and no such value was given
        // the frame's thunks).
        unsafe { renv.refill(slots) };
        Ok(b.finish().entries().to_vec())
    }

    #[inline(never)]
    fn eval_let(&self, l: &LetExpr, env: &Env) -> EvalResult<Value> {
        // The slots are written into the frame's node as they are made (no
        // vector in between).
        if !l.rec {
            let mut frame = Env::build(env, l.binds.len());
            for (i, d) in l.binds.iter().enumerate() {
                frame.set(i, self.delay(&d.value, env)?);
            }
            return self.eval(&l.body, &frame.finish());
        }
        let renv = self.new_rec_env(env, l.binds.len());
        if let Some(mut f) = renv.filler() {
            for (i, d) in l.binds.iter().enumerate() {
                f.set(i, self.delay_rec(&d.value, &renv)?);
            }
            f.finish();
        }
        self.eval(&l.body, &renv)
    }

    #[inline(never)]
    fn interpolate(&self, parts: &[Expr], pos: crate::source::Pos, env: &Env) -> EvalResult<Value> {
        self.interpolate_parts(parts, env).map_err(|e| e.with_pos(pos))
    }

    #[inline(always)]
    fn interpolate_parts(&self, parts: &[Expr], env: &Env) -> EvalResult<Value> {
        let mut out = String::new();
        let mut ctx = crate::value::Context::new();
        for p in parts {
            let v = self.eval(p, env)?;
            match &v {
                Value::String(s) => {
                    out.push_str(s.as_str());
                    ctx.extend(s.context());
                }
                _ => {
                    let s = self.coerce_to_shared_string(&v, super::CoerceOpts::interpolation())?;
                    out.push_str(s.as_str());
                    ctx.extend(s.context());
                }
            }
        }
        Ok(Value::string_ctx(out, ctx))
    }

    #[inline(never)]
    fn path_interp(&self, parts: &[Expr], pos: crate::source::Pos, env: &Env) -> EvalResult<Value> {
        self.path_interp_parts(parts, env).map_err(|e| e.with_pos(pos))
    }

    #[inline(always)]
    fn path_interp_parts(&self, parts: &[Expr], env: &Env) -> EvalResult<Value> {
        let mut out = String::new();
        for p in parts {
            let v = self.eval(p, env)?;
            let s = self.coerce_to_string(&v, super::CoerceOpts::path_interp())?;
            if !s.context().is_empty() {
                return Err(EvalError::other(format!(
                    "the string '{}' is not allowed to refer to a store path",
                    s.as_str()
                )));
            }
            out.push_str(s.as_str());
        }
        let canon = crate::support::path::canon_path(&out).map_err(|e| EvalError::other(e.to_string()))?;
        Ok(Value::path(canon))
    }

    /// Attribute-set accessor with Nix's type error.
    pub fn force_attrs(&self, v: &Value) -> EvalResult<Attrs> {
        match self.force(v)? {
            Value::Attrs(a) => Ok(a),
            v => Err(EvalError::type_error(v.type_desc(), "a set")),
        }
    }
}

/// A constant node's value (out of line: the clone's code stays out of
/// `eval_inner`).
#[inline(never)]
fn const_value(v: &Value) -> EvalResult<Value> {
    Ok(v.clone())
}

/// A lambda node's value: its closure.
#[inline(never)]
fn lambda_value(l: &Brc<crate::ir::Lambda>, env: &Env) -> EvalResult<Value> {
    Ok(super::closure(l, env))
}

/// A node function called with another kind of node (cannot happen:
/// `eval_inner` dispatches on the kind).
#[cold]
fn not_node() -> EvalError {
    EvalError::other("internal error: node evaluated by the wrong function")
}
