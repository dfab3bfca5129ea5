//! The fetch builtins: `fetchurl`, `fetchTarball`, `fetchGit`, `fetchTree`
//! (Nix 2.8's `primops/fetchTree.cc` semantics), and `getFlake`; `fetchMercurial`
//! is not supported and says so, naming the repository.
//!
//! Design: arguments are checked and turned into [`crate::fetch`] calls on
//! the evaluator's fetcher (`EvalIO::fetcher`); results are store path
//! strings whose context is that store path, and for `fetchGit`/`fetchTree`
//! the attribute set Nix's `emitTreeAttrs` builds ([`tree_attrs`]).

use super::{Arg, PrimOp};
use crate::error::{EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::fetch::{AttrValue, Fetcher, Input, Tree, format_utc, parse_url};
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{AttrsBuilder, Context, Value};
use ndeploy_store::hash::{Hash, HashAlgo};
use ndeploy_store::store_path::FileIngestionMethod;

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("fetchurl", &[Arg::Any], |ev, a, _| fetch(ev, &a[0], "fetchurl", false, "")),
    PrimOp::new("fetchTarball", &[Arg::Any], |ev, a, _| fetch(ev, &a[0], "fetchTarball", true, "source")),
    PrimOp::new("fetchGit", &[Arg::Any], fetch_git),
    PrimOp::new("fetchTree", &[Arg::Any], fetch_tree),
    PrimOp::new("fetchMercurial", &[Arg::Any], fetch_mercurial),
    PrimOp::new("getFlake", &[Arg::Any], |ev, a, _| {
        let r = ev.force_str_plain(&a[0])?;
        crate::flake::load(ev, &r)
    }),
];

/// `fetchMercurial`: not supported (ndeploy has no Mercurial fetcher); the
/// error names the repository so the user knows which input to replace.
fn fetch_mercurial(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let url = match ev.force(&a[0])? {
        Value::Attrs(attrs) => match attrs.get_str("url") {
            Some(u) => ev.force_str_plain(u)?,
            None => return Err(EvalError::other("'url' argument required")),
        },
        v => ev.force_str_plain(&v)?,
    };
    Err(EvalError::other(format!(
        "fetchMercurial is not supported by ndeploy: cannot fetch Mercurial repository '{url}' \
         (use fetchTarball or fetchGit with a locked hash instead)"
    )))
}

fn fetcher(ev: &Evaluator) -> EvalResult<&Fetcher> {
    ev.io.fetcher().ok_or_else(|| EvalError::other("fetching is not available in this evaluator (no fetcher configured)"))
}

fn fetch_err(e: crate::fetch::FetchError) -> EvalError {
    EvalError::other(e.to_string())
}

/// A store path string carrying itself as context.
pub fn store_path_string(p: &str) -> Value {
    let mut ctx = Context::new();
    ctx.insert(p.to_string());
    Value::string_ctx(p, ctx)
}

fn fetch(ev: &Evaluator, arg: &Value, who: &str, unpack: bool, default_name: &str) -> EvalResult<Value> {
    let mut url = None;
    let mut expected = None;
    let mut name = default_name.to_string();
    match ev.force(arg)? {
        Value::Attrs(a) => {
            for attr in a.iter() {
                match attr.name.as_str() {
                    "url" => url = Some(ev.force_str_plain(&attr.value)?),
                    "sha256" => {
                        let s = ev.force_str_plain(&attr.value)?;
                        if !s.is_empty() {
                            expected = Some(Hash::parse(&s, Some(HashAlgo::Sha256)).map_err(|e| EvalError::other(e.to_string()))?);
                        }
                    }
                    "name" => name = ev.force_str_plain(&attr.value)?,
                    n => return Err(EvalError::other(format!("unsupported argument '{n}' to '{who}'"))),
                }
            }
        }
        v => url = Some(ev.force_str_plain(&v)?),
    }
    let url = url.ok_or_else(|| EvalError::other("'url' argument required"))?;
    if name.is_empty() {
        name = crate::support::path::base_name_of(&url).to_string();
    }
    let f = fetcher(ev)?;
    let fetched = if unpack {
        let r = f.fetch_tarball(&url, expected.as_ref(), &name).map_err(fetch_err)?;
        if let Some(h) = &expected
            && *h != r.nar_hash
        {
            return Err(fetch_err(crate::fetch::FetchError::HashMismatch {
                url,
                specified: h.encode(ndeploy_store::hash::HashEncoding::Nix32, true),
                got: r.nar_hash.encode(ndeploy_store::hash::HashEncoding::Nix32, true),
            }));
        }
        r
    } else {
        f.fetch_file(&url, expected.as_ref(), &name).map_err(fetch_err)?
    };
    let method = if unpack { FileIngestionMethod::Recursive } else { FileIngestionMethod::Flat };
    record(ev, f, &fetched.store_path, method)?;
    Ok(store_path_string(&fetched.store_path))
}

/// Tell the computing store about a fetched path that is not in the store.
pub(crate) fn record(ev: &Evaluator, f: &Fetcher, store_path: &str, method: FileIngestionMethod) -> EvalResult<()> {
    crate::fetch::record_fetched(ev.store.as_deref(), f, store_path, method).map_err(EvalError::other)
}

fn fetch_input(ev: &Evaluator, input: &Input) -> EvalResult<Tree> {
    let f = fetcher(ev)?;
    let tree = f.fetch_input(input).map_err(fetch_err)?;
    let method = if matches!(input.get_str("type"), Ok(Some("file"))) {
        FileIngestionMethod::Flat
    } else {
        FileIngestionMethod::Recursive
    };
    record(ev, f, &tree.fetched.store_path, method)?;
    Ok(tree)
}

/// An attribute set argument as input attributes (strings, integers and
/// Booleans only, as Nix requires).
fn input_from_attrs(ev: &Evaluator, a: &crate::value::Attrs, who: &str) -> EvalResult<Input> {
    let mut input = Input::default();
    for attr in a.iter() {
        let v = match ev.force(&attr.value)? {
            Value::String(_) | Value::Path(_) => {
                let s = ev.coerce_to_string(&attr.value, crate::eval::CoerceOpts::to_string())?;
                AttrValue::Str(s.as_str().to_string())
            }
            Value::Int(i) => AttrValue::Int(i),
            Value::Bool(b) => AttrValue::Bool(b),
            other => {
                return Err(EvalError::other(format!(
                    "{who} argument '{}' is {} while a string, Boolean or integer is expected",
                    attr.name,
                    other.type_desc()
                )));
            }
        };
        input.set(attr.name.as_str(), v);
    }
    Ok(input)
}

fn fetch_tree(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let input = match ev.force(&a[0])? {
        Value::Attrs(attrs) => {
            if attrs.get_str("type").is_none() {
                return Err(EvalError::other("attribute 'type' is missing in call to 'fetchTree'"));
            }
            input_from_attrs(ev, &attrs, "fetchTree")?
        }
        v => {
            let url = ev.coerce_to_string(&v, crate::eval::CoerceOpts::to_string())?;
            parse_url(url.as_str()).map_err(fetch_err)?
        }
    };
    let tree = fetch_input(ev, &input)?;
    Ok(tree_attrs(&tree, false, false))
}

fn fetch_git(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let mut input = match ev.force(&a[0])? {
        Value::Attrs(attrs) => {
            if attrs.get_str("type").is_some() {
                return Err(EvalError::other("unexpected attribute 'type'"));
            }
            input_from_attrs(ev, &attrs, "fetchGit")?
        }
        v => {
            let url = ev.coerce_to_string(&v, crate::eval::CoerceOpts::to_string())?;
            let mut i = Input::default();
            i.set("url", AttrValue::Str(url.as_str().to_string()));
            i
        }
    };
    input.set("type", AttrValue::Str("git".into()));
    // Local paths are `file://` URLs, as Nix's fixURI makes them.
    if let Ok(Some(u)) = input.get_str("url")
        && u.starts_with('/')
    {
        let u = format!("file://{u}");
        input.set("url", AttrValue::Str(u));
    }
    let tree = fetch_input(ev, &input)?;
    Ok(tree_attrs(&tree, true, false))
}

/// Nix's `emitTreeAttrs`: `outPath` (with context), `narHash` (SRI),
/// `submodules` for git, `rev`/`shortRev`/`revCount` unless `force_dirty`
/// (`empty_rev_fallback`: zeros for a dirty tree, as `fetchGit` reports),
/// and `lastModified`/`lastModifiedDate` when known.
pub fn tree_attrs(tree: &Tree, empty_rev_fallback: bool, force_dirty: bool) -> Value {
    let mut b = AttrsBuilder::new();
    let ins = |b: &mut AttrsBuilder, k: &str, v: Value| b.insert(Symbol::new(k), v);
    ins(&mut b, "outPath", store_path_string(&tree.fetched.store_path));
    ins(&mut b, "narHash", Value::string(tree.fetched.nar_hash.to_sri()));
    if let Some(s) = tree.submodules {
        ins(&mut b, "submodules", Value::Bool(s));
    }
    if !force_dirty {
        match &tree.rev {
            Some(rev) => {
                ins(&mut b, "rev", Value::string(rev.clone()));
                ins(&mut b, "shortRev", Value::string(rev.get(..7).unwrap_or(rev).to_string()));
            }
            None if empty_rev_fallback => {
                let zero = "0".repeat(40);
                ins(&mut b, "shortRev", Value::string("0000000"));
                ins(&mut b, "rev", Value::string(zero));
            }
            None => {}
        }
        match tree.rev_count {
            Some(n) => ins(&mut b, "revCount", Value::Int(n)),
            None if empty_rev_fallback => ins(&mut b, "revCount", Value::Int(0)),
            None => {}
        }
    }
    if let Some(t) = tree.last_modified {
        ins(&mut b, "lastModified", Value::Int(t));
        ins(&mut b, "lastModifiedDate", Value::string(format_utc(t)));
    }
    Value::Attrs(b.finish())
}
