//! Coercions to strings (Nix's `coerceToString`) and typed accessors.
//!
//! Rules: strings as they are (with context); paths as their text, or copied
//! to the store (through [`crate::io::StoreIO`]) when interpolated into a
//! string; sets via `__toString` or `outPath`; and, for `toString`
//! ("coerce more"), null/bools/numbers/lists too.

use super::Evaluator;
use crate::error::{EvalError, EvalResult};
use crate::value::{Context, NixString, Value};

#[derive(Clone, Copy, Debug)]
pub struct CoerceOpts {
    /// `toString` semantics: also null, bools, numbers and lists.
    pub coerce_more: bool,
    /// Copy paths to the store (string interpolation).
    pub copy_to_store: bool,
}

impl CoerceOpts {
    pub fn interpolation() -> CoerceOpts {
        CoerceOpts { coerce_more: false, copy_to_store: true }
    }
    pub fn to_string() -> CoerceOpts {
        CoerceOpts { coerce_more: true, copy_to_store: false }
    }
    pub fn path_interp() -> CoerceOpts {
        CoerceOpts { coerce_more: false, copy_to_store: false }
    }
}

impl Evaluator {
    pub fn coerce_to_string(&self, v: &Value, opts: CoerceOpts) -> EvalResult<NixString> {
        super::stack::guard(|| self.coerce_inner(v, opts))
    }

    /// Like [`Evaluator::coerce_to_string`], but a string is returned as
    /// the shared value itself (no copy of its text).
    pub fn coerce_to_shared_string(&self, v: &Value, opts: CoerceOpts) -> EvalResult<crate::value::Brc<NixString>> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Thunk(t) => match t.get_ref() {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => match self.force(v)? {
                    Value::String(s) => Ok(s),
                    v => Ok(crate::value::Brc::new(self.coerce_to_string(&v, opts)?)),
                },
            },
            _ => Ok(crate::value::Brc::new(self.coerce_to_string(v, opts)?)),
        }
    }

    fn coerce_inner(&self, v: &Value, opts: CoerceOpts) -> EvalResult<NixString> {
        let v = self.force(v)?;
        Ok(match &v {
            Value::String(s) => (**s).clone(),
            Value::Path(p) => {
                if opts.copy_to_store {
                    let sp = self.copy_path_to_store(p)?;
                    let mut ctx = Context::new();
                    ctx.insert(sp.clone());
                    NixString::new(sp, ctx)
                } else {
                    NixString::plain(p.to_string())
                }
            }
            Value::Attrs(a) => {
                if let Some(f) = a.get_str("__toString") {
                    let f = self.force(f)?;
                    let r = self.call(&f, v.clone(), crate::source::Pos::NONE)?;
                    return self.coerce_to_string(&r, opts);
                }
                if let Some(o) = a.get_str("outPath") {
                    return self.coerce_to_string(o, opts);
                }
                return Err(EvalError::other("cannot coerce a set to a string"));
            }
            Value::Null if opts.coerce_more => NixString::plain(String::new()),
            Value::Bool(b) if opts.coerce_more => NixString::plain(if *b { "1".into() } else { String::new() }),
            Value::Int(i) if opts.coerce_more => NixString::plain(i.to_string()),
            Value::Float(f) if opts.coerce_more => {
                NixString::plain(crate::support::float::format_float_to_string(*f))
            }
            Value::List(l) if opts.coerce_more => {
                let mut out = String::new();
                let mut ctx = Context::new();
                for (i, x) in l.iter().enumerate() {
                    let x = self.force(x)?;
                    let s = self.coerce_to_string(&x, opts)?;
                    out.push_str(s.as_str());
                    ctx.extend(s.context());
                    let empty_list = matches!(&x, Value::List(l) if l.is_empty());
                    if i + 1 < l.len() && !empty_list {
                        out.push(' ');
                    }
                }
                NixString::new(out, ctx)
            }
            other => return Err(EvalError::other(format!("cannot coerce {} to a string", other.type_desc()))),
        })
    }

    /// Copy a path to the store via the injected [`crate::io::StoreIO`].
    pub fn copy_path_to_store(&self, path: &str) -> EvalResult<String> {
        match &self.store {
            Some(s) => s.copy_path_to_store(path).map_err(EvalError::other),
            None => Err(EvalError::other(format!(
                "cannot copy '{path}' to the store: this evaluator has no store access"
            ))),
        }
    }

    pub fn force_int(&self, v: &Value) -> EvalResult<i64> {
        match self.force(v)? {
            Value::Int(i) => Ok(i),
            v => Err(EvalError::type_error(v.type_desc(), "an integer")),
        }
    }

    pub fn force_bool(&self, v: &Value) -> EvalResult<bool> {
        match self.force(v)? {
            Value::Bool(b) => Ok(b),
            v => Err(EvalError::type_error(v.type_desc(), "a Boolean")),
        }
    }

    pub fn force_list(&self, v: &Value) -> EvalResult<crate::value::List> {
        match self.force(v)? {
            Value::List(l) => Ok(l),
            v => Err(EvalError::type_error(v.type_desc(), "a list")),
        }
    }

    pub fn force_function(&self, v: &Value) -> EvalResult<Value> {
        let v = self.force(v)?;
        if v.is_function() || matches!(&v, Value::Attrs(a) if a.get_str("__functor").is_some()) {
            Ok(v)
        } else {
            Err(EvalError::type_error(v.type_desc(), "a function"))
        }
    }

    /// A string value (no coercion), with its context.
    pub fn force_string(&self, v: &Value) -> EvalResult<crate::value::Brc<NixString>> {
        match self.force(v)? {
            Value::String(s) => Ok(s),
            v => Err(EvalError::type_error(v.type_desc(), "a string")),
        }
    }

    /// A string, ignoring context (for names, regexes, ...).
    pub fn force_str_plain(&self, v: &Value) -> EvalResult<String> {
        Ok(self.force_string(v)?.as_str().to_string())
    }

    /// A path value or a string coerced to an absolute path.
    pub fn coerce_to_path(&self, v: &Value) -> EvalResult<String> {
        let s = self.coerce_to_string(v, CoerceOpts::path_interp())?;
        let p = s.as_str();
        if !p.starts_with('/') {
            return Err(EvalError::other(format!("string '{p}' doesn't represent an absolute path")));
        }
        Ok(p.to_string())
    }
}
