//! Flake references as data: `parseFlakeRef` and `flakeRefToString`.
//!
//! Supported: the `github:`, `gitlab:` and `sourcehut:` shorthands
//! (`type:owner/repo[/ref-or-rev][?key=value&...]`) and indirect references
//! (`flake:id[/ref]` or a bare `id`). Other schemes fail with a clear error
//! rather than guessing.

use super::{Arg, PrimOp};
use crate::error::{EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{AttrsBuilder, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("parseFlakeRef", &[Arg::Any], parse_flake_ref),
    PrimOp::new("flakeRefToString", &[Arg::Any], flake_ref_to_string),
];

const HOSTED: &[&str] = &["github", "gitlab", "sourcehut"];

fn is_rev(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn parse_flake_ref(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = ev.force_str_plain(&a[0])?;
    let bad = || EvalError::other(format!("'{s}' is not a supported flake reference"));
    let (body, query) = match s.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (s.as_str(), None),
    };
    let mut b = AttrsBuilder::new();
    let (scheme, rest) = match body.split_once(':') {
        Some((sc, r)) => (sc, r),
        None => ("flake", body),
    };
    let parts: Vec<&str> = rest.split('/').collect();
    if HOSTED.contains(&scheme) {
        let (Some(owner), Some(repo)) = (parts.first(), parts.get(1)) else { return Err(bad()) };
        if owner.is_empty() || repo.is_empty() || parts.len() > 3 {
            return Err(bad());
        }
        b.insert(Symbol::new("type"), Value::string(scheme));
        b.insert(Symbol::new("owner"), Value::string(*owner));
        b.insert(Symbol::new("repo"), Value::string(*repo));
        if let Some(r) = parts.get(2) {
            b.insert(Symbol::new(if is_rev(r) { "rev" } else { "ref" }), Value::string(*r));
        }
    } else if scheme == "flake" {
        let Some(id) = parts.first().filter(|i| !i.is_empty()) else { return Err(bad()) };
        if parts.len() > 3 {
            return Err(bad());
        }
        b.insert(Symbol::new("type"), Value::string("indirect"));
        b.insert(Symbol::new("id"), Value::string(*id));
        for r in parts.iter().skip(1) {
            b.insert(Symbol::new(if is_rev(r) { "rev" } else { "ref" }), Value::string(*r));
        }
    } else {
        return Err(bad());
    }
    for kv in query.into_iter().flat_map(|q| q.split('&')).filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(bad)?;
        b.insert(Symbol::new(k), Value::string(v));
    }
    Ok(Value::Attrs(b.finish()))
}

fn flake_ref_to_string(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let attrs = super::attrs::attrs_arg(&a[0])?;
    let mut fields: Vec<(String, String)> = Vec::new();
    for at in attrs.iter() {
        let v = match ev.force(&at.value)? {
            Value::String(s) => s.as_str().to_string(),
            Value::Int(i) if i >= 0 => i.to_string(),
            Value::Int(i) => {
                return Err(EvalError::other(format!(
                    "negative value given for flake ref attr {}: {i}",
                    at.name
                )));
            }
            Value::Bool(b) => if b { "1".into() } else { "0".into() },
            v => return Err(EvalError::type_error(v.type_desc(), "a string, integer or Boolean")),
        };
        fields.push((at.name.as_str().to_string(), v));
    }
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let ty = get("type").ok_or_else(|| EvalError::other("flake reference attribute set has no 'type'"))?;
    let (mut out, used): (String, &[&str]) = if HOSTED.contains(&ty.as_str()) {
        let owner = get("owner").ok_or_else(|| EvalError::other("missing 'owner' attribute"))?;
        let repo = get("repo").ok_or_else(|| EvalError::other("missing 'repo' attribute"))?;
        let mut s = format!("{ty}:{owner}/{repo}");
        if let Some(r) = get("rev").or_else(|| get("ref")) {
            s.push('/');
            s.push_str(&r);
        }
        (s, &["type", "owner", "repo", "rev", "ref"])
    } else if ty == "indirect" {
        let id = get("id").ok_or_else(|| EvalError::other("missing 'id' attribute"))?;
        let mut s = format!("flake:{id}");
        for k in ["ref", "rev"] {
            if let Some(r) = get(k) {
                s.push('/');
                s.push_str(&r);
            }
        }
        (s, &["type", "id", "rev", "ref"])
    } else {
        return Err(EvalError::other(format!("flake reference type '{ty}' is not supported")));
    };
    let query: Vec<String> =
        fields.iter().filter(|(k, _)| !used.contains(&k.as_str())).map(|(k, v)| format!("{k}={v}")).collect();
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query.join("&"));
    }
    Ok(Value::string(out))
}
