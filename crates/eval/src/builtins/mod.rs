//! Builtins: one declaration per primop, grouped by area.
//!
//! Design: a [`PrimOp`] is a static declaration `PrimOp::new("name",
//! &[Arg::Str, Arg::Attrs], func)`: the argument list gives the arity and,
//! per argument, what the call path does before `func` runs: nothing
//! ([`Arg::Lazy`]: `func` forces it, or not, itself), force it to weak head
//! normal form ([`Arg::Any`]), or force it and check its type (`Arg::Int`,
//! `Arg::Str`, ...: Nix's `forceInt`, `forceString`, ... with their
//! messages) or more ([`Arg::Check`]: a hash type's or a regex's validity).
//! Arguments are forced and checked one at a time, in Nix's order: the
//! first, its check, the second, its check, ... — so with two bad arguments
//! the error is Nix's. A builtin whose Nix order is different says so: the
//! second argument forced first ([`PrimOp::second_first`], `elemAt`), or an
//! argument left lazy and forced by `func` where Nix forces it (after a
//! check between arguments, as `replaceStrings`' lengths, or only under a
//! condition, as `seq`'s, `tryEval`'s, `addErrorContext`'s).
//! Each area module (`attrs.rs`, `lists.rs`, ...) exports
//! `PRIMOPS: &[PrimOp]`; adding a builtin is adding one line there plus its
//! function. Constant builtins (`currentSystem`, `nixVersion`, ...) are built
//! from the configuration in [`base_scope`].
//!
//! Invariant: a primop receives exactly `arity` arguments; forced ones are
//! never thunks and have passed their check (the body may rely on it for
//! its messages, but still matches the value: no panics). Errors carry no
//! position: the call site adds it.

/// A name known when compiling ndeploy, interned once per process (no
/// string hash per use).
macro_rules! sym {
    ($s:literal) => {{
        static S: std::sync::OnceLock<crate::symbol::Symbol> = std::sync::OnceLock::new();
        *S.get_or_init(|| crate::symbol::Symbol::new($s))
    }};
}

mod attrs;
mod context;
mod control;
mod flake;
pub(crate) mod derivation;
pub(crate) mod fetch;
mod io;
mod json;
mod lists;
mod math;
mod store;
mod strings;
mod types;
mod xml;

use std::collections::HashMap;

pub(crate) use attrs::string_symbol;

use crate::error::{EvalError, EvalResult};
use crate::eval::{EvalConfig, Evaluator};
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{Attrs, AttrsBuilder, NixString, Value};

pub type PrimOpFn = fn(&Evaluator, &[Value], Pos) -> EvalResult<Value>;

pub struct PrimOp {
    pub name: &'static str,
    args: &'static [Arg],
    /// Bit `i`: argument `i` is forced (not [`Arg::Lazy`]).
    forced: u32,
    /// Bit `i`: argument `i` is checked (forced, not [`Arg::Any`]). The two
    /// masks make an argument that is only forced cost the call path what
    /// it did before declarations had types (one bit test).
    typed: u32,
    /// Nix forces the second argument before the first.
    second_first: bool,
    pub func: PrimOpFn,
}

/// What the call path does with one argument of a builtin before the
/// builtin runs (see the module documentation).
#[derive(Clone, Copy)]
pub enum Arg {
    /// Not forced: the builtin forces it (or not) itself.
    Lazy,
    /// Forced, of any type.
    Any,
    /// Forced, an integer.
    Int,
    /// Forced, a number (Nix's `forceFloat`: an integer or a float).
    Float,
    /// Forced, a string (context allowed; no coercion).
    Str,
    /// Forced, a string without context (Nix's `forceStringNoCtx`).
    StrNoCtx,
    /// Forced, a set.
    Attrs,
    /// Forced, a list.
    List,
    /// Forced, a function or a set with `__functor`.
    Function,
    /// Forced, then checked by the function (before any later argument is
    /// forced, as Nix checks a hash type or a regex).
    Check(fn(&Evaluator, &Value) -> EvalResult<()>),
}

impl Arg {
    /// Whether the forced value `v` passes at once (the common case: a
    /// compare of two tags, inline in the call path); otherwise
    /// [`Arg::check`] decides.
    #[inline(always)]
    pub fn accepts(self, v: &Value) -> bool {
        match (self, v) {
            (Arg::Lazy | Arg::Any, _)
            | (Arg::Int, Value::Int(_))
            | (Arg::Float, Value::Int(_) | Value::Float(_))
            | (Arg::Str, Value::String(_))
            | (Arg::Attrs, Value::Attrs(_))
            | (Arg::List, Value::List(_))
            | (Arg::Function, Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_)) => true,
            (Arg::StrNoCtx, Value::String(s)) => s.context().is_empty(),
            _ => false,
        }
    }

    /// The check of a forced value [`Arg::accepts`] did not pass: a
    /// [`Arg::Check`]'s function, a set with `__functor` for a function,
    /// or Nix's error.
    #[inline(never)]
    pub fn check(self, ev: &Evaluator, v: &Value) -> EvalResult<()> {
        match (self, v) {
            (Arg::StrNoCtx, Value::String(s)) => no_context(s),
            (Arg::Check(f), v) => f(ev, v),
            (Arg::Function, Value::Attrs(a)) if a.get(Symbol::functor()).is_some() => Ok(()),
            (a, v) if a.accepts(v) => Ok(()),
            (a, v) => Err(a.mismatch(v)),
        }
    }

    #[cold]
    fn mismatch(self, v: &Value) -> EvalError {
        let expected = match self {
            Arg::Int => "an integer",
            Arg::Float => "a float",
            Arg::Str | Arg::StrNoCtx => "a string",
            Arg::Attrs => "a set",
            Arg::List => "a list",
            Arg::Function => "a function",
            Arg::Lazy | Arg::Any | Arg::Check(_) => "another value",
        };
        EvalError::type_error(v.type_desc(), expected)
    }
}

/// Nix's `forceStringNoCtx` check: the string refers to no store path.
#[inline]
pub(crate) fn no_context(s: &NixString) -> EvalResult<()> {
    match s.context().iter().next() {
        None => Ok(()),
        Some(c) => Err(context_error(s.as_str(), c)),
    }
}

#[cold]
fn context_error(s: &str, elem: &str) -> EvalError {
    EvalError::other(format!("the string '{s}' is not allowed to refer to a store path (such as '{elem}')"))
}

impl PrimOp {
    pub const fn new(name: &'static str, args: &'static [Arg], func: PrimOpFn) -> PrimOp {
        assert!(args.len() <= 32, "a builtin of at most 32 arguments");
        let (mut forced, mut typed, mut i) = (0u32, 0u32, 0);
        while i < args.len() {
            match args[i] {
                Arg::Lazy => {}
                Arg::Any => forced |= 1 << i,
                _ => {
                    forced |= 1 << i;
                    typed |= 1 << i;
                }
            }
            i += 1;
        }
        PrimOp { name, args, forced, typed, second_first: false, func }
    }
    /// The declaration of a two-argument builtin that forces its second
    /// argument (and checks it) before its first, as Nix's `elemAt` and
    /// `scopedImport` do. (Declarations are constants: another arity fails
    /// the build.)
    pub const fn second_first(self) -> PrimOp {
        assert!(self.args.len() == 2, "second_first: a builtin of two arguments");
        PrimOp { second_first: true, ..self }
    }
    /// Whether the second argument is forced before the first.
    #[inline]
    pub fn is_second_first(&self) -> bool {
        self.second_first
    }
    pub fn arity(&self) -> usize {
        self.args.len()
    }
    #[inline(always)]
    pub fn is_strict(&self, i: usize) -> bool {
        i < 32 && self.forced >> i & 1 != 0
    }
    /// Whether argument `i` is checked after it is forced.
    #[inline(always)]
    pub fn is_typed(&self, i: usize) -> bool {
        i < 32 && self.typed >> i & 1 != 0
    }
    /// The declaration of argument `i` (lazy past the arity).
    #[inline(always)]
    pub fn arg(&self, i: usize) -> Arg {
        self.args.get(i).copied().unwrap_or(Arg::Lazy)
    }
    /// Check argument `i`, forced already, against its declaration (before
    /// the next argument is forced): inline, a bit test and a tag compare
    /// for the common case; [`Arg::check`] out of line for the rest.
    #[inline(always)]
    pub fn check(&self, ev: &Evaluator, i: usize, v: &Value) -> EvalResult<()> {
        if self.is_typed(i) && !self.arg(i).accepts(v) { self.arg(i).check(ev, v) } else { Ok(()) }
    }
    /// The position of the `k`th argument to force (`k`, except for the
    /// first two of a [`PrimOp::second_first`] builtin).
    #[inline]
    pub fn forced(&self, k: usize) -> usize {
        if self.second_first && k < 2 { k ^ 1 } else { k }
    }
}

fn all_primops() -> impl Iterator<Item = &'static PrimOp> {
    [
        attrs::PRIMOPS,
        context::PRIMOPS,
        control::PRIMOPS,
        flake::PRIMOPS,
        derivation::PRIMOPS,
        fetch::PRIMOPS,
        io::PRIMOPS,
        json::PRIMOPS,
        lists::PRIMOPS,
        math::PRIMOPS,
        store::PRIMOPS,
        strings::PRIMOPS,
        types::PRIMOPS,
        xml::PRIMOPS,
    ]
    .into_iter()
    .flatten()
}

/// Builtins also visible without the `__` prefix at top level.
const GLOBAL: &[&str] = &[
    "abort",
    "baseNameOf",
    "break",
    "derivation",
    "dirOf",
    "fetchGit",
    "fetchMercurial",
    "fetchTarball",
    "fetchTree",
    "fromTOML",
    "import",
    "isNull",
    "map",
    "placeholder",
    "removeAttrs",
    "scopedImport",
    "throw",
    "toString",
];

/// The top-level scope and the `builtins` set for a configuration.
pub(crate) fn base_scope(config: &EvalConfig, io: &dyn crate::io::EvalIO) -> (HashMap<Symbol, Value>, Attrs) {
    let mut b = AttrsBuilder::new();
    for op in all_primops() {
        b.insert(Symbol::new(op.name), Value::PrimOp(op));
    }
    let nix_path: Vec<Value> = config
        .nix_path
        .iter()
        .map(|(prefix, path)| {
            let mut e = AttrsBuilder::new();
            e.insert(Symbol::new("prefix"), Value::string(prefix.clone()));
            e.insert(Symbol::new("path"), Value::string(path.clone()));
            Value::Attrs(e.finish())
        })
        .collect();
    let consts: Vec<(&str, Value)> = vec![
        ("true", Value::Bool(true)),
        ("false", Value::Bool(false)),
        ("null", Value::Null),
        ("currentSystem", Value::string(config.current_system.clone())),
        ("nixVersion", Value::string("2.8.0")),
        ("langVersion", Value::Int(6)),
        ("currentTime", Value::Int(io.current_time())),
        ("storeDir", Value::string(config.store_dir.clone())),
        ("nixPath", Value::list(nix_path)),
    ];
    for (n, v) in &consts {
        b.insert(Symbol::new(n), v.clone());
    }
    // `builtins.builtins`: one level deep (a copy without itself), so the
    // set does not contain itself (no reference cycle).
    let inner = b.finish();
    let mut outer = AttrsBuilder::new();
    outer.insert(Symbol::new("builtins"), Value::Attrs(inner.clone()));
    let builtins = inner.update(&outer.finish());
    let mut base = HashMap::new();
    for a in builtins.iter() {
        let n = a.name.as_str();
        if matches!(n, "true" | "false" | "null") || GLOBAL.contains(&n) {
            base.insert(a.name, a.value.clone());
        }
        base.insert(Symbol::new(&format!("__{n}")), a.value.clone());
    }
    base.insert(Symbol::new("builtins"), Value::Attrs(builtins.clone()));
    (base, builtins)
}

/// `builtins.toJSON` as a plain string (for `--json` output).
pub fn to_json_string(ev: &Evaluator, v: &Value) -> EvalResult<String> {
    let mut out = String::new();
    let mut ctx = crate::value::Context::new();
    json::write_value(ev, v, &mut out, &mut ctx)?;
    Ok(out)
}

/// The XML document for `v` (for `--xml` output).
pub fn to_xml_string(ev: &Evaluator, v: &Value, strict: bool, location: bool) -> EvalResult<String> {
    let mut ctx = crate::value::Context::new();
    xml::print_xml(ev, v, strict, location, &mut ctx)
}

/// The formals of a lambda with a pattern: (name, has default).
pub fn lambda_formals(v: &Value) -> Option<Vec<(Symbol, bool)>> {
    match v {
        Value::Lambda(c) => match &c.lambda.param {
            crate::ir::Param::Pattern(p) => Some(p.formals.iter().map(|f| (f.name, f.default.is_some())).collect()),
            crate::ir::Param::Ident(_) => None,
        },
        _ => None,
    }
}
