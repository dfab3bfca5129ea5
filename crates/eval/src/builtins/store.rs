//! Builtins that put paths into the store (or name paths in it):
//! `builtins.path`, `filterSource`, `toFile`, `storePath`.
//!
//! Design: all of them go through the evaluator's computing store
//! ([`crate::store::ComputingStore`]), which computes the store path Nix
//! would create without writing anything (Nix's read-only mode). Results are
//! strings whose context is the store path itself, as Nix's
//! `allowAndSetStorePathString`. A path filter is a Nix function called with
//! each entry's full path and type; an error it raises propagates unchanged
//! (the store sees only that the filter failed).

use ndeploy_store::hash::{Hash, HashAlgo};
use ndeploy_store::store_path::{FileIngestionMethod, StorePath};

use super::derivation::{computing, force_string_no_ctx, nix_hash_error, nix_store_error};
use super::{Arg, PrimOp};
use crate::error::{EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::store::StoreError;
use crate::value::{Context, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("path", &[Arg::Attrs], path),
    PrimOp::new("filterSource", &[Arg::Lazy, Arg::Any], filter_source),
    PrimOp::new("toFile", &[Arg::StrNoCtx, Arg::Str], to_file),
    PrimOp::new("storePath", &[Arg::Any], store_path),
];

/// A store path as a string whose context is the path itself.
fn store_path_string(ev: &Evaluator, sp: &StorePath) -> EvalResult<Value> {
    let s = computing(ev)?.store_dir().display(sp);
    let mut c = Context::new();
    c.insert(s.clone());
    Ok(Value::string_ctx(s, c))
}

/// Nix's `addPath`: add `path` under `name`, filtered by the Nix function `filter`.
fn add_path(
    ev: &Evaluator,
    pos: Pos,
    name: &str,
    path: &str,
    filter: Option<&Value>,
    method: FileIngestionMethod,
    expected: Option<&Hash>,
) -> EvalResult<Value> {
    let store = computing(ev)?;
    let mut failure: Option<EvalError> = None;
    // A fetched input outside the store (crate::fetch) is read where it is;
    // the filter sees store paths, and a checkout's untracked files stay out.
    let mapped = ev.io.fetcher().and_then(|f| f.sources().resolve(path));
    let real = mapped.as_ref().map(|m| m.real.to_string_lossy().into_owned());
    let mut call_filter = |p: &str, ft: crate::io::FileType| -> Result<bool, StoreError> {
        let logical;
        let p = match &mapped {
            Some(m) => {
                let (l, visible) = m.logical(path, p);
                if !visible {
                    return Ok(false);
                }
                logical = l;
                logical.as_str()
            }
            None => p,
        };
        let Some(f) = filter else { return Ok(true) };
        let r = ev.call_n(f, &[Value::string(p), Value::string(ft.nix_name())], pos).and_then(|r| ev.force_bool(&r));
        r.map_err(|e| {
            failure = Some(e);
            StoreError::FilterFailed
        })
    };
    let filtered = filter.is_some() || mapped.as_ref().is_some_and(|m| m.tracked.is_some());
    let filter_fn: Option<&mut crate::store::Filter<'_>> = if filtered { Some(&mut call_filter) } else { None };
    let r = store.add_source(real.as_deref().unwrap_or(path), name, method, filter_fn, expected);
    match r {
        Ok(sp) => store_path_string(ev, &sp),
        Err(e) => {
            let e = failure.unwrap_or_else(|| EvalError::other(nix_store_error(e, store.store_dir())));
            Err(e.add_frame(pos, format!("while adding path '{path}'")))
        }
    }
}

fn path(ev: &Evaluator, a: &[Value], pos: Pos) -> EvalResult<Value> {
    let attrs = ev.force_attrs(&a[0])?;
    let mut path = String::new();
    let mut name = String::new();
    let mut filter = None;
    let mut method = FileIngestionMethod::Recursive;
    let mut expected = None;
    for attr in attrs.iter() {
        let at = |e: EvalError| e.with_pos(attr.pos);
        match attr.name.as_str() {
            "path" => path = ev.coerce_to_path(&attr.value).map_err(at)?,
            "name" => name = force_string_no_ctx(ev, &attr.value).map_err(at)?,
            "filter" => filter = Some(ev.force(&attr.value)?),
            "recursive" => {
                method = if ev.force_bool(&attr.value).map_err(at)? {
                    FileIngestionMethod::Recursive
                } else {
                    FileIngestionMethod::Flat
                }
            }
            "sha256" => {
                let s = force_string_no_ctx(ev, &attr.value).map_err(at)?;
                let h = if s.is_empty() {
                    Hash::from_digest(HashAlgo::Sha256, &[0u8; 32])
                        .ok_or_else(|| EvalError::other("invalid empty hash"))?
                } else {
                    Hash::parse(&s, Some(HashAlgo::Sha256)).map_err(|e| at(EvalError::other(nix_hash_error(&s, e))))?
                };
                expected = Some(h);
            }
            other => {
                return Err(EvalError::other(format!("unsupported argument '{other}' to 'addPath'")).with_pos(attr.pos));
            }
        }
    }
    if path.is_empty() {
        return Err(EvalError::other("'path' required"));
    }
    if name.is_empty() {
        name = crate::support::path::base_name_of(&path).to_owned();
    }
    add_path(ev, pos, &name, &path, filter.as_ref(), method, expected.as_ref())
}

fn filter_source(ev: &Evaluator, a: &[Value], pos: Pos) -> EvalResult<Value> {
    let path = ev.coerce_to_path(&a[1])?;
    let f = ev.force(&a[0])?;
    if !f.is_function() {
        return Err(EvalError::other(format!(
            "first argument in call to 'filterSource' is not a function but {}",
            f.type_desc()
        )));
    }
    let name = crate::support::path::base_name_of(&path).to_owned();
    add_path(ev, pos, &name, &path, Some(&f), FileIngestionMethod::Recursive, None)
}

fn to_file(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let name = force_string_no_ctx(ev, &a[0])?;
    let contents = ev.force_string(&a[1])?;
    let store = computing(ev)?;
    let mut refs = Vec::new();
    for c in contents.context().iter() {
        if !c.starts_with('/') {
            return Err(EvalError::other(format!(
                "in 'toFile': the file named '{name}' must not contain a reference to a derivation but contains ({c})"
            )));
        }
        refs.push(store.store_dir().parse(c).map_err(|e| EvalError::other(e.to_string()))?);
    }
    let sp = store
        .add_text(&name, contents.as_str(), refs)
        .map_err(|e| EvalError::other(nix_store_error(e, store.store_dir())))?;
    store_path_string(ev, &sp)
}

fn store_path(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let mut path = ev.coerce_to_path(&a[0])?;
    let store = computing(ev)?;
    let dir = store.store_dir();
    // Resolve symlinks unless the path itself is directly in the store.
    if dir.parse(&path).is_err() {
        path = match std::fs::canonicalize(&path) {
            Ok(real) => real.to_string_lossy().into_owned(),
            Err(e) => {
                // Nix names the first component that does not exist.
                let missing = std::path::Path::new(&path)
                    .ancestors()
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .find(|p| p.symlink_metadata().is_err())
                    .map_or(path.clone(), |p| p.to_string_lossy().into_owned());
                return Err(EvalError::other(format!("getting status of '{missing}': {}", crate::eval::io_msg(&e))));
            }
        };
    }
    let (sp, _) =
        dir.parse_inner(&path).map_err(|_| EvalError::other(format!("path '{path}' is not in the Nix store")))?;
    let mut c = Context::new();
    c.insert(dir.display(&sp));
    Ok(Value::string_ctx(path, c))
}
