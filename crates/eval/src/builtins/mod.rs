//! Builtins: one declaration per primop, grouped by area.
//!
//! Design: a [`PrimOp`] is a static declaration `PrimOp::new("name",
//! &[S, L], func)`: the strictness list gives the arity and which arguments
//! the caller forces to weak head normal form before `func` runs (`S`
//! strict, `L` lazy). Each area module (`attrs.rs`, `lists.rs`, ...) exports
//! `PRIMOPS: &[PrimOp]`; adding a builtin is adding one line there plus its
//! function. Constant builtins (`currentSystem`, `nixVersion`, ...) are built
//! from the configuration in [`base_scope`].
//!
//! Invariant: a primop receives exactly `arity` arguments; strict ones are
//! never thunks. Errors carry no position: the call site adds it.

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

use crate::error::EvalResult;
use crate::eval::{EvalConfig, Evaluator};
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{Attrs, AttrsBuilder, Value};

pub type PrimOpFn = fn(&Evaluator, &[Value], Pos) -> EvalResult<Value>;

pub struct PrimOp {
    pub name: &'static str,
    strict: &'static [bool],
    pub func: PrimOpFn,
}

/// A strict argument.
pub const S: bool = true;
/// A lazy argument.
pub const L: bool = false;

impl PrimOp {
    pub const fn new(name: &'static str, strict: &'static [bool], func: PrimOpFn) -> PrimOp {
        PrimOp { name, strict, func }
    }
    pub fn arity(&self) -> usize {
        self.strict.len()
    }
    pub fn is_strict(&self, i: usize) -> bool {
        self.strict.get(i).copied().unwrap_or(false)
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
