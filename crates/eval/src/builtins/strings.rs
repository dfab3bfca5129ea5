//! String builtins. Every result carries the union of the contexts of the
//! strings it was built from.
//!
//! Arguments are read in place: a string argument is used through its shared
//! value ([`Evaluator::coerce_to_shared_string`]), never copied before it is
//! looked at (`stringLength`, `substring`, `match` of a long string copied
//! the whole string and its context first).

use super::{PrimOp, S};
use crate::error::{EvalError, EvalResult};
use crate::eval::{CoerceOpts, Evaluator};
use crate::source::Pos;
use crate::support::{path as spath, regex, versions};
use crate::symbol::Symbol;
use crate::value::{AttrsBuilder, Context, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("stringLength", &[S], string_length),
    PrimOp::new("substring", &[S, S, S], substring),
    PrimOp::new("concatStringsSep", &[S, S], concat_strings_sep),
    PrimOp::new("replaceStrings", &[S, S, S], replace_strings),
    PrimOp::new("toString", &[S], |ev, a, _| {
        // A string is returned as the shared value itself (no copy).
        Ok(Value::String(ev.coerce_to_shared_string(&a[0], CoerceOpts::to_string())?))
    }),
    PrimOp::new("match", &[S, S], match_),
    PrimOp::new("split", &[S, S], split),
    PrimOp::new("splitVersion", &[S], split_version),
    PrimOp::new("compareVersions", &[S, S], compare_versions),
    PrimOp::new("parseDrvName", &[S], parse_drv_name),
    PrimOp::new("baseNameOf", &[S], base_name_of),
    PrimOp::new("dirOf", &[S], dir_of),
    PrimOp::new("hashString", &[S, S], hash_string),
    PrimOp::new("convertHash", &[S], convert_hash),
    PrimOp::new("hashFile", &[S, S], hash_file),
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
    if start < 0 {
        return Err(EvalError::other("negative start position in 'substring'"));
    }
    let s = ev.coerce_to_shared_string(&a[2], CoerceOpts::interpolation())?;
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
        return Err(EvalError::other(
            "'from' and 'to' arguments passed to builtins.replaceStrings have different lengths",
        ));
    }
    let mut froms = Vec::with_capacity(from.len());
    for f in from.iter() {
        froms.push(ev.force_string(f)?);
    }
    // Replacements are forced only when used.
    let mut tos: Vec<Option<crate::value::Brc<crate::value::NixString>>> = vec![None; to.len()];
    let s = ev.coerce_to_shared_string(&a[2], CoerceOpts::interpolation())?;
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
                let t = match &tos[k] {
                    Some(t) => t.clone(),
                    None => {
                        let t = ev.coerce_to_shared_string(&to[k], CoerceOpts::interpolation())?;
                        tos[k] = Some(t.clone());
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

fn opt_str(s: Option<String>) -> Value {
    match s {
        Some(s) => Value::string(s),
        None => Value::Null,
    }
}

fn match_(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let re = ev.force_string(&a[0])?;
    let s = ev.coerce_to_shared_string(&a[1], CoerceOpts::interpolation())?;
    match regex::match_str(re.as_str(), s.as_str()).map_err(regex_err)? {
        None => Ok(Value::Null),
        Some(groups) => Ok(Value::list(groups.into_iter().map(opt_str).collect())),
    }
}

fn split(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let re = ev.force_string(&a[0])?;
    let s = ev.coerce_to_shared_string(&a[1], CoerceOpts::interpolation())?;
    let parts = regex::split_str(re.as_str(), s.as_str()).map_err(regex_err)?;
    Ok(Value::list(
        parts
            .into_iter()
            .map(|p| match p {
                regex::SplitPiece::Text(t) => Value::string(t),
                regex::SplitPiece::Match(g) => Value::list(g.into_iter().map(opt_str).collect()),
            })
            .collect(),
    ))
}

fn split_version(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = ev.coerce_to_shared_string(&a[0], CoerceOpts::interpolation())?;
    Ok(Value::list(versions::split_version(s.as_str()).into_iter().map(Value::string).collect()))
}

fn compare_versions(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let x = ev.coerce_to_shared_string(&a[0], CoerceOpts::interpolation())?;
    let y = ev.coerce_to_shared_string(&a[1], CoerceOpts::interpolation())?;
    Ok(Value::Int(versions::compare_versions_int(x.as_str(), y.as_str())))
}

fn parse_drv_name(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = ev.coerce_to_shared_string(&a[0], CoerceOpts::interpolation())?;
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

fn hash_string(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let algo = hash_algo(ev.force_string(&a[0])?.as_str())?;
    let s = ev.coerce_to_shared_string(&a[1], CoerceOpts::interpolation())?;
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
    let algo = hash_algo(ev.force_string(&a[0])?.as_str())?;
    let p = ev.coerce_to_path(&a[1])?;
    let bytes = ev
        .io
        .read_file(&p)
        .map_err(|e| EvalError::other(format!("opening file '{p}': {}", crate::eval::io_msg(&e))))?;
    Ok(Value::string(ndeploy_store::hash::Hash::digest(algo, &bytes).to_base16()))
}
