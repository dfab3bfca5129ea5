//! `derivationStrict` and the `derivation` wrapper, as in Nix 2.8.
//!
//! Design: `derivationStrict` turns an attribute set into a
//! [`Derivation`]: every attribute (in name order) becomes an environment
//! variable (coerced to a string, paths copied to the store), or with
//! `__structuredAttrs` part of the `__json` variable; the union of all string
//! contexts becomes the inputs (`/p` a source, `!o!d.drv` output `o` of a
//! derivation, `=d.drv` the whole closure of `d.drv` with all outputs). The
//! computing store ([`crate::store::ComputingStore`]) then fills in the
//! output paths, the `.drv` path and the memoised modulo hash. The result is
//! `{ drvPath; <output> = path; }` with the contexts Nix gives them.
//!
//! `derivation` is Nix's own `derivation.nix` wrapper done natively (see
//! [`derivation`]): it shares one lazy `derivationStrict` call between all
//! outputs, exactly as Nix does, without evaluating Nix code.
//!
//! Errors are worded as Nix 2.8 words them and carry the position of the
//! `name` attribute (Nix's `posDrvName`).

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use ndeploy_store::derivation::{Derivation, DerivationError, DerivationOutput};
use ndeploy_store::hash::{Hash, HashAlgo, HashError};
use ndeploy_store::store_path::{FileIngestionMethod, StorePathError};

use super::{Arg, PrimOp};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::{CoerceOpts, Evaluator};
use crate::source::Pos;
use crate::store::StoreError;
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, AttrsBuilder, Context, Env, NixString, Thunk, Value};

pub(super) const PRIMOPS: &[PrimOp] =
    &[PrimOp::new("derivationStrict", &[Arg::Any], derivation_strict), PrimOp::new("derivation", &[Arg::Any], derivation)];

/// `derivation`: Nix 2.8's `derivation.nix` wrapper, natively:
///
/// ```nix
/// drvAttrs @ { outputs ? [ "out" ], ... }:
/// let
///   strict = derivationStrict drvAttrs;
///   commonAttrs = drvAttrs // (builtins.listToAttrs outputsList)
///     // { all = map (x: x.value) outputsList; inherit drvAttrs; };
///   outputToAttrListElement = outputName: { name = outputName; value = commonAttrs
///     // { outPath = builtins.getAttr outputName strict; drvPath = strict.drvPath;
///           type = "derivation"; inherit outputName; }; };
///   outputsList = map outputToAttrListElement outputs;
/// in (builtins.head outputsList).value
/// ```
///
/// One lazy `derivationStrict` call is shared by all outputs; output `i`'s
/// set is slot `i` of a recursive frame (each set contains all of them),
/// which the evaluator clears on drop like any `let` frame. The result is
/// the first output's set itself, so `d` and `d.out` are the same set.
fn derivation(ev: &Evaluator, a: &[Value], pos: Pos) -> EvalResult<Value> {
    let drv_attrs = ev.force_attrs(&a[0])?;
    let names: Vec<String> = match drv_attrs.get_str("outputs") {
        Some(v) => ev.force_list(v)?.iter().map(|o| force_string_no_ctx(ev, o)).collect::<EvalResult<_>>()?,
        None => vec!["out".to_owned()],
    };
    if names.is_empty() {
        // Where Nix's wrapper takes `builtins.head outputsList`.
        return Err(EvalError::other("list index 0 is out of bounds"));
    }
    let strict = {
        let arg = Value::Attrs(drv_attrs.clone());
        Thunk::native(move |ev: &Evaluator| derivation_strict(ev, std::slice::from_ref(&arg), pos))
    };
    let symbols = names.iter().map(|n| output_symbol(n)).collect();
    let shared = Arc::new(OutputsShared { drv_attrs, names, symbols, strict });
    let frame = ev.new_rec_env(ev.root_env(), shared.names.len());
    let slots: Vec<Value> = (0..shared.names.len())
        .map(|i| {
            let (shared, frame) = (shared.clone(), frame.clone());
            Thunk::native(move |_: &Evaluator| Ok(output_attrs(&shared, &frame, i)))
        })
        .collect();
    let first = slots.first().cloned().unwrap_or(Value::Null);
    frame.fill(slots);
    ev.force(&first)
}

/// What every output's set of one `derivation` call is built from.
struct OutputsShared {
    drv_attrs: Attrs,
    names: Vec<String>,
    symbols: Vec<Symbol>,
    strict: Value,
}

/// Attribute names every derivation uses, interned once (interning locks).
struct Names {
    out_path: Symbol,
    drv_path: Symbol,
    type_: Symbol,
    output_name: Symbol,
    all: Symbol,
    drv_attrs: Symbol,
    name: Symbol,
    to_string: Symbol,
    out: Symbol,
    /// `type = "derivation"`, shared by every derivation.
    derivation: Value,
}

/// The attribute name of output `o` ("out" without interning).
fn output_symbol(o: &str) -> Symbol {
    if o == "out" { names().out } else { Symbol::new(o) }
}

fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| Names {
        out_path: Symbol::new("outPath"),
        drv_path: Symbol::new("drvPath"),
        type_: Symbol::new("type"),
        output_name: Symbol::new("outputName"),
        all: Symbol::new("all"),
        drv_attrs: Symbol::new("drvAttrs"),
        name: Symbol::new("name"),
        to_string: Symbol::new("__toString"),
        out: Symbol::new("out"),
        derivation: Value::string("derivation"),
    })
}

/// `commonAttrs // { outPath; drvPath; type; outputName; }` for output `i`.
fn output_attrs(shared: &OutputsShared, frame: &Env, i: usize) -> Value {
    let name = shared.names.get(i).cloned().unwrap_or_default();
    let slots: Vec<Value> = (0..shared.names.len()).map(|j| frame.lookup(0, j as u32).unwrap_or(Value::Null)).collect();
    let mut b = AttrsBuilder::with_capacity(slots.len() + 6);
    // The builder keeps the first definition of a name: highest priority first.
    let syms = names();
    let strict = shared.strict.clone();
    let out = name.clone();
    b.insert(
        syms.out_path,
        Thunk::native(move |ev: &Evaluator| {
            let s = ev.force_attrs(&strict)?;
            s.get_str(&out).cloned().ok_or_else(|| EvalError::new(ErrorKind::MissingAttr(out.clone())))
        }),
    );
    let strict = shared.strict.clone();
    b.insert(
        syms.drv_path,
        Thunk::native(move |ev: &Evaluator| {
            let s = ev.force_attrs(&strict)?;
            s.get_str("drvPath").cloned().ok_or_else(|| EvalError::new(ErrorKind::MissingAttr("drvPath".into())))
        }),
    );
    b.insert(syms.type_, syms.derivation.clone());
    b.insert(syms.output_name, Value::string(name));
    b.insert(syms.all, Value::list(slots.clone()));
    b.insert(syms.drv_attrs, Value::Attrs(shared.drv_attrs.clone()));
    for (n, v) in shared.symbols.iter().zip(slots) {
        b.insert(*n, v);
    }
    // `drvAttrs // extra`: a merge of two sorted sets, no re-sort of drvAttrs.
    Value::Attrs(shared.drv_attrs.update(&b.finish()))
}

fn err_at(msg: impl Into<String>, pos: Pos) -> EvalError {
    EvalError::at(ErrorKind::Other(msg.into()), pos)
}

/// Nix's `forceStringNoCtx`.
pub(crate) fn force_string_no_ctx(ev: &Evaluator, v: &Value) -> EvalResult<String> {
    let s = ev.force_string(v)?;
    super::no_context(&s)?;
    Ok(s.as_str().to_owned())
}

/// What the attributes say about the outputs.
#[derive(Default)]
struct OutputSpec {
    outputs: Vec<String>,
    hash: Option<String>,
    hash_algo: String,
    mode: Option<FileIngestionMethod>,
}

impl OutputSpec {
    fn set_mode(&mut self, s: &str, pos: Pos) -> EvalResult<()> {
        self.mode = Some(match s {
            "recursive" => FileIngestionMethod::Recursive,
            "flat" => FileIngestionMethod::Flat,
            _ => return Err(err_at(format!("invalid value '{s}' for 'outputHashMode' attribute"), pos)),
        });
        Ok(())
    }

    fn set_outputs(&mut self, names: Vec<String>, pos: Pos) -> EvalResult<()> {
        let mut seen = BTreeSet::new();
        for n in &names {
            if !seen.insert(n.as_str()) {
                return Err(err_at(format!("duplicate derivation output '{n}'"), pos));
            }
            // `drvPath` would clash with the result's own `drvPath` (current
            // Nix rejects it; Nix 2.8 returned a set with two `drvPath`s).
            if n == "drv" || n == "drvPath" {
                return Err(err_at(format!("invalid derivation output name '{n}'"), pos));
            }
        }
        if names.is_empty() {
            return Err(err_at("derivation cannot have an empty set of outputs", pos));
        }
        self.outputs = names;
        Ok(())
    }
}

fn derivation_strict(ev: &Evaluator, a: &[Value], pos: Pos) -> EvalResult<Value> {
    let attrs = ev.force_attrs(&a[0])?;
    let Some(name_attr) = attrs.get_attr(names().name) else {
        return Err(err_at("attribute 'name' missing for call to 'derivationStrict'", pos));
    };
    let pos_name = if name_attr.pos.is_none() { pos } else { name_attr.pos };
    let name = force_string_no_ctx(ev, &name_attr.value)
        .map_err(|e| e.with_pos(pos_name).add_frame(pos_name, "while evaluating the derivation attribute 'name'"))?;
    let structured = match attrs.get_str("__structuredAttrs") {
        Some(v) => ev.force_bool(v).map_err(|e| e.with_pos(pos))?,
        None => false,
    };
    let ignore_nulls = match attrs.get_str("__ignoreNulls") {
        Some(v) => ev.force_bool(v).map_err(|e| e.with_pos(pos))?,
        None => false,
    };

    let store = computing(ev)?;
    let mut drv = Derivation { name: name.clone(), ..Default::default() };
    let mut ctx = Inputs { dir: store.store_dir(), whole: Vec::new() };
    let mut spec = OutputSpec { outputs: vec!["out".into()], ..Default::default() };
    let mut json = structured.then(|| String::from("{"));
    let mut flags = (false, false); // (__contentAddressed, __impure)

    for attr in attrs.iter() {
        let key = attr.name.as_str();
        if key == "__ignoreNulls" {
            continue;
        }
        process_attr(ev, attr, pos_name, ignore_nulls, &mut drv, &mut ctx, &mut spec, &mut json, &mut flags).map_err(
            |e| {
                e.with_pos(pos_name)
                    .add_frame(pos_name, format!("while evaluating the attribute '{key}' of the derivation '{name}'"))
            },
        )?;
    }
    if let Some(mut j) = json {
        j.push('}');
        drv.env.insert("__json".into(), j);
    }

    ctx.add_closures(store, &mut drv)?;

    if drv.builder.is_empty() {
        return Err(err_at("required attribute 'builder' missing", pos_name));
    }
    if drv.system.is_empty() {
        return Err(err_at("required attribute 'system' missing", pos_name));
    }
    if name.ends_with(".drv") {
        return Err(err_at("derivation names are not allowed to end in '.drv'", pos_name));
    }

    if let Some(h) = &spec.hash {
        if spec.outputs.len() != 1 || spec.outputs.first().map(String::as_str) != Some("out") {
            return Err(err_at("multiple outputs are not supported in fixed-output derivations", pos_name));
        }
        let hash = parse_output_hash(h, &spec.hash_algo).map_err(|e| err_at(e, pos_name))?;
        let method = spec.mode.unwrap_or(FileIngestionMethod::Flat);
        drv.outputs.insert("out".into(), DerivationOutput::CAFixed { method, hash });
    } else if flags.0 || flags.1 {
        if flags.0 && flags.1 {
            return Err(err_at("derivation cannot be both content-addressed and impure", pos_name));
        }
        let feature = if flags.0 { "ca-derivations" } else { "impure-derivations" };
        return Err(err_at(
            format!(
                "experimental Nix feature '{feature}' is disabled; use '--extra-experimental-features {feature}' to override"
            ),
            pos_name,
        ));
    } else {
        for o in &spec.outputs {
            drv.env.insert(o.clone(), String::new());
            drv.outputs.insert(o.clone(), DerivationOutput::Deferred);
        }
    }

    let dir = store.store_dir();
    let done = store.add_derivation(drv).map_err(|e| err_at(nix_store_error(e, dir), pos_name))?;
    let drv_path = dir.display(&done.drv_path);
    let mut b = AttrsBuilder::with_capacity(1 + done.drv.outputs.len());
    let mut c = Context::new();
    c.insert(["=", &drv_path].concat());
    b.insert(names().drv_path, Value::string_ctx(drv_path.clone(), c));
    let mut drv = done.drv;
    for o in drv.outputs.keys() {
        // The output's env var holds its printed path (empty when not known).
        let path = drv.env.remove(o).unwrap_or_default();
        let mut c = Context::new();
        c.insert(["!", o, "!", &drv_path].concat());
        b.insert(output_symbol(o), Value::string_ctx(path, c));
    }
    Ok(Value::Attrs(b.finish()))
}

/// The evaluator's computing store, or Nix-like failure without one.
pub(super) fn computing(ev: &Evaluator) -> EvalResult<&crate::store::ComputingStore> {
    ev.store
        .as_deref()
        .and_then(|s| s.computing())
        .ok_or_else(|| EvalError::other("this evaluator has no store access (derivations and store paths need one)"))
}

/// Nix's `newHashAllowEmpty(outputHash, parseHashTypeOpt(outputHashAlgo))`.
fn parse_output_hash(h: &str, algo: &str) -> Result<Hash, String> {
    let algo: Option<HashAlgo> = algo.parse().ok();
    if h.is_empty() {
        return match algo {
            Some(a) => Hash::from_digest(a, &vec![0u8; a.size()]).ok_or_else(|| "invalid empty hash".to_owned()),
            None => Err("empty hash requires explicit hash type".into()),
        };
    }
    Hash::parse(h, algo).map_err(|e| nix_hash_error(h, e))
}

/// A hash parse error as Nix 2.8 words it (`Hash::parseAny`).
pub(super) fn nix_hash_error(h: &str, e: HashError) -> String {
    // Nix names the digest without its `algo:` prefix.
    let digest = h.split_once(':').map_or(h, |(_, d)| d);
    match e {
        HashError::MissingAlgo(_) => {
            format!("hash '{h}' does not include a type, nor is the type otherwise known from context")
        }
        HashError::WrongLength { algo, .. } => format!("hash '{digest}' has wrong length for hash type '{algo}'"),
        HashError::AlgoMismatch { expected, .. } => format!("hash '{h}' should have type '{expected}'"),
        other => other.to_string(),
    }
}

/// A store error as Nix words it (a bad name is reported for the store
/// path's base name, as Nix's `checkName` does).
pub(super) fn nix_store_error(e: StoreError, dir: &ndeploy_store::store_path::StoreDir) -> String {
    match e {
        StoreError::Derivation(DerivationError::StorePath(StorePathError::IllegalChar { path, c }))
        | StoreError::Path(StorePathError::IllegalChar { path, c }) => {
            let base = path.strip_prefix(dir.as_str()).and_then(|p| p.strip_prefix('/')).unwrap_or(&path);
            format!("store path '{base}' contains illegal character '{c}'")
        }
        other => other.to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
fn process_attr(
    ev: &Evaluator,
    attr: &Attr,
    pos_name: Pos,
    ignore_nulls: bool,
    drv: &mut Derivation,
    ctx: &mut Inputs<'_>,
    spec: &mut OutputSpec,
    json: &mut Option<String>,
    flags: &mut (bool, bool),
) -> EvalResult<()> {
    let key = attr.name.as_str();
    if ignore_nulls && matches!(ev.force(&attr.value)?, Value::Null) {
        return Ok(());
    }
    let coerce = CoerceOpts { coerce_more: true, copy_to_store: true };
    match key {
        "__contentAddressed" => flags.0 = ev.force_bool(&attr.value)?,
        "__impure" => flags.1 = ev.force_bool(&attr.value)?,
        "args" => {
            for x in ev.force_list(&attr.value)?.iter() {
                let s = ev.coerce_to_shared_string(x, coerce)?;
                ctx.add(s.context(), drv)?;
                drv.args.push(s.as_str().to_owned());
            }
        }
        _ => {
            if let Some(j) = json {
                if key == "__structuredAttrs" {
                    return Ok(());
                }
                if j.len() > 1 {
                    j.push(',');
                }
                crate::support::json::write_json_string(j, key);
                j.push(':');
                let mut c = Context::new();
                super::json::write_value(ev, &attr.value, j, &mut c)?;
                ctx.add(&c, drv)?;
                match key {
                    "builder" => {
                        let s = ev.force_string(&attr.value)?;
                        ctx.add(s.context(), drv)?;
                        drv.builder = s.as_str().to_owned();
                    }
                    "system" => drv.system = force_string_no_ctx(ev, &attr.value)?,
                    "outputHash" => spec.hash = Some(force_string_no_ctx(ev, &attr.value)?),
                    "outputHashAlgo" => spec.hash_algo = force_string_no_ctx(ev, &attr.value)?,
                    "outputHashMode" => spec.set_mode(&force_string_no_ctx(ev, &attr.value)?, pos_name)?,
                    "outputs" => {
                        let l = ev.force_list(&attr.value)?;
                        let names = l.iter().map(|x| force_string_no_ctx(ev, x)).collect::<EvalResult<Vec<_>>>()?;
                        spec.set_outputs(names, pos_name)?;
                    }
                    _ => {}
                }
            } else {
                let v = ev.force(&attr.value).map_err(|e| e.with_pos(attr.pos))?;
                let text = coerce_attr(ev, &v, ctx, drv).map_err(|e| e.with_pos(attr.pos))?;
                let s = text.as_str();
                match key {
                    "builder" => drv.builder = s.to_owned(),
                    "system" => drv.system = s.to_owned(),
                    "outputHash" => spec.hash = Some(s.to_owned()),
                    "outputHashAlgo" => spec.hash_algo = s.to_owned(),
                    "outputHashMode" => spec.set_mode(s, pos_name)?,
                    "outputs" => {
                        let names = s.split([' ', '\t', '\n', '\r']).filter(|t| !t.is_empty()).map(str::to_owned);
                        spec.set_outputs(names.collect(), pos_name)?;
                    }
                    _ => {}
                }
                if !drv.env.contains_key(key) {
                    drv.env.insert(key.to_owned(), text.into_string());
                }
            }
        }
    }
    Ok(())
}

/// An attribute's value as an environment variable, its context added to
/// the inputs.
enum AttrText {
    Shared(crate::value::Brc<NixString>),
    Owned(String),
}

impl AttrText {
    fn as_str(&self) -> &str {
        match self {
            AttrText::Shared(s) => s.as_str(),
            AttrText::Owned(s) => s,
        }
    }

    fn into_string(self) -> String {
        match self {
            AttrText::Shared(s) => s.as_str().to_owned(),
            AttrText::Owned(s) => s,
        }
    }
}

/// Nix's `coerceToString(v, coerceMore, copyToStore)` of a (forced)
/// derivation attribute, without copying strings with their contexts: a
/// string is used as it is; a list (`deps = [ a b.dev ]`) is joined here,
/// its elements' contexts going straight into `ctx`, derivations through
/// their `outPath`. Anything else, and any element that is neither a string
/// nor a set with `outPath` (and no `__toString`), is the evaluator's
/// coercion, so results and errors are exactly its.
fn coerce_attr(ev: &Evaluator, v: &Value, ctx: &mut Inputs<'_>, drv: &mut Derivation) -> EvalResult<AttrText> {
    let opts = CoerceOpts { coerce_more: true, copy_to_store: true };
    let Value::List(l) = v else {
        let s = ev.coerce_to_shared_string(v, opts)?;
        ctx.add(s.context(), drv)?;
        return Ok(AttrText::Shared(s));
    };
    let mut out = String::new();
    for (i, x) in l.iter().enumerate() {
        let x = ev.force(x)?;
        let s = match &x {
            Value::Attrs(a) if a.get_attr(names().to_string).is_none() => match a.get_attr(names().out_path) {
                Some(o) => ev.coerce_to_shared_string(&o.value, opts)?,
                None => ev.coerce_to_shared_string(&x, opts)?,
            },
            _ => ev.coerce_to_shared_string(&x, opts)?,
        };
        out.push_str(s.as_str());
        ctx.add(s.context(), drv)?;
        let empty_list = matches!(&x, Value::List(l) if l.is_empty());
        if i + 1 < l.len() && !empty_list {
            out.push(' ');
        }
    }
    Ok(AttrText::Owned(out))
}

/// The inputs named by string contexts, added to the derivation as each
/// attribute is processed (Nix collects the whole context first; the result
/// is the same sets). `=d.drv` elements are closed over at the end.
struct Inputs<'a> {
    dir: &'a ndeploy_store::store_path::StoreDir,
    whole: Vec<ndeploy_store::store_path::StorePath>,
}

impl Inputs<'_> {
    fn parse(&self, p: &str) -> EvalResult<ndeploy_store::store_path::StorePath> {
        self.dir.parse(p).map_err(|e| EvalError::other(e.to_string()))
    }

    /// `!o!d.drv` → output `o` of `d.drv`; `/p` → a source; `=d.drv` → later.
    fn add(&mut self, ctx: &Context, drv: &mut Derivation) -> EvalResult<()> {
        for elem in ctx.iter() {
            if let Some(d) = elem.strip_prefix('=') {
                let p = self.parse(d)?;
                self.whole.push(p);
            } else if let Some(rest) = elem.strip_prefix('!') {
                let (o, d) = rest
                    .split_once('!')
                    .ok_or_else(|| EvalError::other(format!("invalid string context element '{elem}'")))?;
                let outputs = drv.input_drvs.entry(self.parse(d)?).or_default();
                if !outputs.contains(o) {
                    outputs.insert(o.to_owned());
                }
            } else {
                drv.input_srcs.insert(self.parse(elem)?);
            }
        }
        Ok(())
    }

    /// Every path in the closure of each `=d.drv` becomes an input source,
    /// and each derivation in it an input with all its outputs.
    fn add_closures(&mut self, store: &crate::store::ComputingStore, drv: &mut Derivation) -> EvalResult<()> {
        for d in std::mem::take(&mut self.whole) {
            let closure = store.registry().closure_with_outputs(&d).map_err(|e| EvalError::other(e.to_string()))?;
            for (p, outputs) in closure {
                if let Some(outs) = outputs {
                    drv.input_drvs.insert(p.clone(), outs);
                }
                drv.input_srcs.insert(p);
            }
        }
        Ok(())
    }
}
