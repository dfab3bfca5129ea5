//! String builtins. Every result carries the union of the contexts of the
//! strings it was built from.
//!
//! Arguments are read in place: a string argument is used through its shared
//! value ([`Evaluator::coerce_to_shared_string`]), never copied before it is
//! looked at (`stringLength`, `substring`, `match` of a long string copied
//! the whole string and its context first).

use std::cell::RefCell;
use std::sync::Arc;

use super::{Arg, PrimOp, no_context};
use crate::error::{EvalError, EvalResult};
use crate::eval::{CoerceOpts, Evaluator};
use crate::source::Pos;
use crate::support::{path as spath, regex, versions};
use crate::symbol::Symbol;
use crate::value::{AttrsBuilder, Brc, Context, NixString, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("stringLength", &[Arg::Any], string_length),
    PrimOp::new("substring", &[Arg::Int, Arg::Int, Arg::Any], substring),
    PrimOp::new("concatStringsSep", &[Arg::Str, Arg::List], concat_strings_sep),
    // Nix compares the lists' lengths and forces their strings before the
    // subject: it is forced by the body.
    PrimOp::new("replaceStrings", &[Arg::List, Arg::List, Arg::Lazy], replace_strings),
    PrimOp::new("toString", &[Arg::Any], |ev, a, _| {
        // A string is returned as the shared value itself (no copy).
        Ok(Value::String(ev.coerce_to_shared_string(&a[0], CoerceOpts::to_string())?))
    }),
    PrimOp::new("match", &[Arg::Check(regex_arg), Arg::Str], match_),
    PrimOp::new("split", &[Arg::Check(regex_arg), Arg::Str], split),
    PrimOp::new("splitVersion", &[Arg::StrNoCtx], split_version),
    PrimOp::new("compareVersions", &[Arg::StrNoCtx, Arg::StrNoCtx], compare_versions),
    PrimOp::new("parseDrvName", &[Arg::StrNoCtx], parse_drv_name),
    PrimOp::new("baseNameOf", &[Arg::Any], base_name_of),
    PrimOp::new("dirOf", &[Arg::Any], dir_of),
    PrimOp::new("hashString", &[Arg::Check(hash_type_arg), Arg::Str], hash_string),
    PrimOp::new("convertHash", &[Arg::Attrs], convert_hash),
    PrimOp::new("hashFile", &[Arg::Check(hash_type_arg), Arg::Any], hash_file),
];

fn string_length(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = ev.coerce_to_shared_string(&a[0], CoerceOpts::interpolation())?;
    Ok(Value::Int(s.as_str().len() as i64))
}

/// Bytes `[start, start+len)` of `s` (clamped), as Nix's `substring`.
fn byte_slice(s: &str, start: usize, len: usize) -> String {
    let b = s.as_bytes();
    let start = start.min(b.len());
    let end = start.saturating_add(len).min(b.len());
    match s.get(start..end) {
        Some(t) => t.to_string(),
        None => String::from_utf8_lossy(&b[start..end]).into_owned(),
    }
}

fn substring(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let start = ev.force_int(&a[0])?;
    let len = ev.force_int(&a[1])?;
    // Coerced before the start is checked, as Nix does.
    let s = ev.coerce_to_shared_string(&a[2], CoerceOpts::interpolation())?;
    if start < 0 {
        return Err(EvalError::other("negative start position in 'substring'"));
    }
    let len = if len < 0 { usize::MAX } else { len as usize };
    let out = byte_slice(s.as_str(), start as usize, len);
    Ok(Value::string_ctx(out, s.context().clone()))
}

fn concat_strings_sep(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let sep = ev.force_string(&a[0])?;
    let l = super::lists::list_arg(&a[1])?;
    let mut out = String::new();
    let mut ctx = sep.context().clone();
    for (i, x) in l.iter().enumerate() {
        if i > 0 {
            out.push_str(sep.as_str());
        }
        // Strings (most elements) are read in place, not cloned.
        let v = ev.force_ref(x)?;
        if let Value::String(s) = &*v {
            out.push_str(s.as_str());
            ctx.extend(s.context());
        } else {
            let s = ev.coerce_to_shared_string(&v, CoerceOpts::interpolation())?;
            out.push_str(s.as_str());
            ctx.extend(s.context());
        }
    }
    Ok(Value::string_ctx(out, ctx))
}

fn replace_strings(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let from = super::lists::list_arg(&a[0])?;
    let to = super::lists::list_arg(&a[1])?;
    if from.len() != to.len() {
        return Err(EvalError::other("'from' and 'to' arguments to 'replaceStrings' have different lengths"));
    }
    // The patterns forced (strings, no coercion) before the subject, as
    // Nix; a replacement only when it is used (as Nix after 2.8, whose
    // language tests say so: 2.8 forces them all before the subject).
    let mut froms = Vec::with_capacity(from.len());
    for f in from.iter() {
        froms.push(ev.force_string(f)?);
    }
    let mut tos: Vec<Option<Brc<NixString>>> = vec![None; to.len()];
    let s = ev.force_string(&a[2])?;
    let s_str = s.as_str();
    let mut ctx = s.context().clone();
    let mut out = String::with_capacity(s_str.len());
    let mut i = 0;
    let bytes = s_str.as_bytes();
    while i <= bytes.len() {
        let mut matched = false;
        for (k, f) in froms.iter().enumerate() {
            let f = f.as_str().as_bytes();
            if bytes[i..].starts_with(f) {
                let t = match tos.get(k) {
                    Some(Some(t)) => t.clone(),
                    _ => {
                        let t = ev.force_string(to.get(k).unwrap_or(&Value::Null))?;
                        if let Some(slot) = tos.get_mut(k) {
                            *slot = Some(t.clone());
                        }
                        t
                    }
                };
                out.push_str(t.as_str());
                ctx.extend(t.context());
                matched = true;
                if f.is_empty() {
                    if let Some(c) = s_str.get(i..).and_then(|r| r.chars().next()) {
                        out.push(c);
                        i += c.len_utf8();
                    } else {
                        i += 1;
                    }
                } else {
                    i += f.len();
                }
                break;
            }
        }
        if !matched {
            match s_str.get(i..).and_then(|r| r.chars().next()) {
                Some(c) => {
                    out.push(c);
                    i += c.len_utf8();
                }
                None => i += 1,
            }
        }
    }
    Ok(Value::string_ctx(out, ctx))
}

fn regex_err(e: regex::RegexError) -> EvalError {
    EvalError::other(e.to_string())
}

/// A string argument (forced and checked by the call path already).
fn str_arg(v: &Value) -> EvalResult<&Brc<NixString>> {
    match v {
        Value::String(s) => Ok(s),
        v => Err(EvalError::type_error(v.type_desc(), "a string")),
    }
}

thread_local! {
    /// The last pattern compiled on this thread, by string node (held, so
    /// its address is not reused while it is here): a `match`'s check and
    /// its body, and a loop's calls with one pattern literal, compile (look
    /// up in the process-wide cache, under its lock) once.
    static LAST_REGEX: RefCell<Option<(Brc<NixString>, Arc<regex::Regex>)>> = const { RefCell::new(None) };
}

/// The compiled pattern `s` (Nix's regex cache).
fn compiled(s: &Brc<NixString>) -> EvalResult<Arc<regex::Regex>> {
    let hit = LAST_REGEX.try_with(|c| match &*c.try_borrow().ok()? {
        Some((node, re)) if Brc::ptr_eq(node, s) => Some(Arc::clone(re)),
        _ => None,
    });
    if let Ok(Some(re)) = hit {
        return Ok(re);
    }
    let re = regex::compile(s.as_str()).map_err(regex_err)?;
    let _ = LAST_REGEX.try_with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else { return };
        let old = c.replace((s.clone(), Arc::clone(&re)));
        drop(c);
        drop(old);
    });
    Ok(re)
}

/// `match`'s and `split`'s pattern: a string without context that
/// compiles, checked before the subject is forced (as Nix).
fn regex_arg(_: &Evaluator, v: &Value) -> EvalResult<()> {
    let s = str_arg(v)?;
    no_context(s)?;
    compiled(s).map(drop)
}

/// The bytes `range` of `hay` as a string (`null` for a group that did
/// not take part in the match).
fn group_value(hay: &[u8], range: Option<std::ops::Range<usize>>) -> Value {
    match range {
        Some(r) => Value::string(String::from_utf8_lossy(hay.get(r).unwrap_or_default()).into_owned()),
        None => Value::Null,
    }
}

fn match_(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let re = compiled(str_arg(&a[0])?)?;
    let hay = str_arg(&a[1])?.as_str().as_bytes();
    Ok(match re.match_whole(hay) {
        None => Value::Null,
        Some(groups) => Value::list(groups.into_iter().map(|g| group_value(hay, g)).collect()),
    })
}

fn split(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let re = compiled(str_arg(&a[0])?)?;
    let hay = str_arg(&a[1])?.as_str().as_bytes();
    let parts = re.split(hay);
    if let [regex::SplitPart::Text(_)] = parts.as_slice() {
        // No match: Nix returns the subject itself (with its context).
        return Ok(Value::list(vec![a[1].clone()]));
    }
    Ok(Value::list(
        parts
            .into_iter()
            .map(|p| match p {
                regex::SplitPart::Text(r) => group_value(hay, Some(r)),
                regex::SplitPart::Match(g) => Value::list(g.into_iter().map(|g| group_value(hay, g)).collect()),
            })
            .collect(),
    ))
}

fn split_version(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = str_arg(&a[0])?;
    Ok(Value::list(versions::split_version(s.as_str()).into_iter().map(Value::string).collect()))
}

fn compare_versions(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let (x, y) = (str_arg(&a[0])?, str_arg(&a[1])?);
    Ok(Value::Int(versions::compare_versions_int(x.as_str(), y.as_str())))
}

fn parse_drv_name(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = str_arg(&a[0])?;
    let d = versions::parse_drv_name(s.as_str());
    let mut b = AttrsBuilder::with_capacity(2);
    b.insert(Symbol::new("name"), Value::string(d.name));
    b.insert(Symbol::new("version"), Value::string(d.version));
    Ok(Value::Attrs(b.finish()))
}

fn base_name_of(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = ev.coerce_to_shared_string(&a[0], CoerceOpts::path_interp())?;
    Ok(Value::string_ctx(spath::base_name_of(s.as_str()), s.context().clone()))
}

fn dir_of(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    match &a[0] {
        Value::Path(p) => Ok(Value::path(spath::dir_of(p))),
        v => {
            let s = ev.coerce_to_shared_string(v, CoerceOpts::path_interp())?;
            Ok(Value::string_ctx(spath::dir_of(s.as_str()), s.context().clone()))
        }
    }
}

fn hash_algo(name: &str) -> EvalResult<ndeploy_store::hash::HashAlgo> {
    name.parse().map_err(|_| EvalError::other(format!("unknown hash algorithm '{name}'")))
}

/// `hashString`'s and `hashFile`'s hash type: a string without context
/// naming a hash, checked before the data is forced (as Nix).
fn hash_type_arg(_: &Evaluator, v: &Value) -> EvalResult<()> {
    let s = str_arg(v)?;
    no_context(s)?;
    hash_algo(s.as_str()).map(drop)
}

fn hash_string(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let algo = hash_algo(str_arg(&a[0])?.as_str())?;
    let s = str_arg(&a[1])?;
    let h = ndeploy_store::hash::Hash::digest(algo, s.as_str().as_bytes());
    Ok(Value::string(h.to_base16()))
}

fn convert_hash(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    use ndeploy_store::hash::{Hash, HashEncoding};
    let args = super::attrs::attrs_arg(&a[0])?;
    let get = |n: &str| -> EvalResult<Option<String>> {
        match args.get_str(n) {
            Some(v) => Ok(Some(ev.force_str_plain(v)?)),
            None => Ok(None),
        }
    };
    let hash = get("hash")?.ok_or_else(|| EvalError::other("attribute 'hash' missing"))?;
    let algo = match get("hashAlgo")? {
        Some(a) => Some(hash_algo(&a)?),
        None => None,
    };
    let fmt = get("toHashFormat")?.ok_or_else(|| EvalError::other("attribute 'toHashFormat' missing"))?;
    let h = Hash::parse(&hash, algo).map_err(|e| EvalError::other(e.to_string()))?;
    let enc = match fmt.as_str() {
        "base16" => HashEncoding::Base16,
        "nix32" | "base32" => HashEncoding::Nix32,
        "base64" => HashEncoding::Base64,
        "sri" => HashEncoding::Sri,
        f => return Err(EvalError::other(format!("unknown hash format '{f}'"))),
    };
    let _ = Context::new();
    Ok(Value::string(h.encode(enc, false)))
}

fn hash_file(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let algo = hash_algo(str_arg(&a[0])?.as_str())?;
    let p = ev.coerce_to_path(&a[1])?;
    let bytes = ev
        .io
        .read_file(&p)
        .map_err(|e| EvalError::other(format!("opening file '{p}': {}", crate::eval::io_msg(&e))))?;
    Ok(Value::string(ndeploy_store::hash::Hash::digest(algo, &bytes).to_base16()))
}
