//! Flakes: flake references, `flake.lock`, and calling `outputs` as Nix 2.8
//! does.
//!
//! Design:
//! - [`FlakeRef::parse`] understands `path:`, `git+file:` and local paths
//!   (`.`, `./x`, `/abs`). A local path inside a git work tree becomes
//!   `git+file://<top>?dir=<sub>`, as Nix 2.8 does, so the flake's source is
//!   the whole checkout's tracked files.
//! - The root source is fetched with [`crate::fetch::Fetcher::fetch_input`]
//!   (a dirty checkout is hashed in place, tracked files only; a clean one
//!   is its `HEAD` commit), giving `self.outPath` exactly Nix's store path.
//! - `flake.lock` is checked ([`lock`]); inputs declared in `flake.nix`
//!   (its `inputs` and the formals of `outputs`) must all be locked: ndeploy
//!   never writes lock files.
//! - `call-flake.nix` (evaluated in the same evaluator) builds the result:
//!   other nodes come from `builtins.fetchTree` on their locked attributes,
//!   `outputs` is called with `inputs // { self }`, and the result is
//!   `outputs // sourceInfo // { inputs; outputs; sourceInfo; }`.
//! - [`select`] finds `FLAKEREF#attr` the way `nix eval` does: first
//!   `packages.<system>.attr`, `legacyPackages.<system>.attr`, then `attr`.

pub mod lock;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::error::{EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::fetch::{AttrValue, FetchError, Input};
use crate::symbol::Symbol;
use crate::value::Value;
use lock::{EMPTY_LOCK, LockFile};

const CALL_FLAKE: &str = include_str!("call-flake.nix");

#[derive(Debug, Error)]
pub enum FlakeError {
    #[error("'{0}' is not a valid flake reference")]
    BadRef(String),
    #[error("path '{0}' is not a flake (because it doesn't contain a 'flake.nix' file)")]
    NotAFlake(String),
    #[error("error in lock file '{file}': {msg}")]
    Lock { file: String, msg: String },
    #[error(
        "input '{input}' is not locked in flake.lock; ndeploy does not write lock files (run 'nix flake lock')"
    )]
    Unlocked { input: String },
    #[error(
        "flake '{flake}' has no flake.lock entry for its input '{input}'; ndeploy does not write lock files (run 'nix flake lock')"
    )]
    MissingLockEntry { flake: String, input: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

impl From<FlakeError> for EvalError {
    fn from(e: FlakeError) -> EvalError {
        EvalError::other(e.to_string())
    }
}

/// A flake reference: the input holding the flake and its subdirectory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlakeRef {
    pub input: Input,
    pub dir: String,
}

impl std::fmt::Display for FlakeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.input)?;
        if !self.dir.is_empty() {
            let sep = if self.input.0.len() > 2 { '&' } else { '?' };
            write!(f, "{sep}dir={}", self.dir)?;
        }
        Ok(())
    }
}

/// Split `ref#attr` (the attribute part may be empty).
pub fn split_fragment(s: &str) -> (&str, &str) {
    match s.split_once('#') {
        Some((r, a)) => (r, a),
        None => (s, ""),
    }
}

/// Whether a command-line argument names a flake (`x#attr`, `path:`,
/// `git+file:`), as opposed to a Nix file.
pub fn looks_like_flake_ref(s: &str) -> bool {
    s.contains('#') || s.starts_with("path:") || s.starts_with("git+file:")
}

impl FlakeRef {
    /// Parse a flake reference (no fragment); relative paths resolve
    /// against `cwd`.
    pub fn parse(s: &str, cwd: &str) -> Result<FlakeRef, FlakeError> {
        if s.starts_with("path:") || s.starts_with("git+") {
            let mut input = crate::fetch::parse_url(s).map_err(|_| FlakeError::BadRef(s.to_string()))?;
            let dir = match input.0.remove("dir") {
                Some(AttrValue::Str(d)) => d.trim_matches('/').to_string(),
                Some(_) => return Err(FlakeError::BadRef(s.to_string())),
                None => String::new(),
            };
            if let Ok(Some(p)) = input.get_str("path")
                && !p.starts_with('/')
            {
                let abs = absolute(cwd, p);
                input.set("path", AttrValue::Str(abs));
            }
            return Ok(FlakeRef { input, dir });
        }
        if !(s.starts_with('.') || s.starts_with('/')) {
            return Err(FlakeError::BadRef(format!(
                "{s}' (ndeploy understands 'path:', 'git+file:' and paths starting with '.' or '/'; not registry names or remote refs"
            )));
        }
        let (path, query) = crate::fetch::split_query(s);
        let abs = absolute(cwd, path);
        if !Path::new(&abs).join("flake.nix").exists() {
            return Err(FlakeError::NotAFlake(abs));
        }
        let mut input = Input::default();
        let mut dir = String::new();
        match find_git_root(Path::new(&abs)) {
            Some((root, sub)) => {
                input.set("type", AttrValue::Str("git".into()));
                input.set("url", AttrValue::Str(format!("file://{}", root.display())));
                if root.join(".git/shallow").exists() {
                    input.set("shallow", AttrValue::Bool(true));
                }
                dir = sub;
            }
            None => {
                input.set("type", AttrValue::Str("path".into()));
                input.set("path", AttrValue::Str(abs));
            }
        }
        for (k, v) in query {
            if k == "dir" {
                dir = v.trim_matches('/').to_string();
            } else {
                input.set(&k, AttrValue::Str(v));
            }
        }
        Ok(FlakeRef { input, dir })
    }
}

fn absolute(cwd: &str, p: &str) -> String {
    let joined = if p.starts_with('/') { p.to_string() } else { format!("{cwd}/{p}") };
    crate::support::path::canon_path(&joined).unwrap_or(joined)
}

/// The nearest ancestor of `dir` (itself included) with a `.git`, and
/// `dir`'s path below it.
fn find_git_root(dir: &Path) -> Option<(PathBuf, String)> {
    let mut cur = dir.to_path_buf();
    let mut sub: Vec<String> = Vec::new();
    loop {
        if cur.join(".git").exists() {
            sub.reverse();
            return Some((cur, sub.join("/")));
        }
        let name = cur.file_name()?.to_string_lossy().into_owned();
        sub.push(name);
        if !cur.pop() {
            return None;
        }
    }
}

fn sym(s: &str) -> Symbol {
    Symbol::new(s)
}

/// The inputs a flake declares: `inputs` attribute names and the formals
/// of `outputs` other than `self`.
fn declared_inputs(ev: &Evaluator, flake_nix: &str) -> EvalResult<Vec<(String, Option<String>)>> {
    let v = ev.eval_file(flake_nix)?;
    let attrs = ev.force_attrs(&v)?;
    let mut names = Vec::new();
    if let Some(i) = attrs.get(sym("inputs")) {
        let i = ev.force_attrs(i)?;
        for a in i.iter() {
            let url = match ev.force(&a.value)? {
                Value::Attrs(spec) => match spec.get(sym("url")) {
                    Some(u) => Some(ev.force_str_plain(u)?),
                    None => None,
                },
                _ => None,
            };
            names.push((a.name.as_str().to_string(), url));
        }
    }
    if let Some(o) = attrs.get(sym("outputs")) {
        let o = ev.force(o)?;
        if let Some(formals) = crate::builtins::lambda_formals(&o) {
            for (n, _) in formals {
                if n.as_str() != "self" && !names.iter().any(|(m, _)| m == n.as_str()) {
                    names.push((n.as_str().to_string(), None));
                }
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Whether `url` (from `flake.nix`) names the same input as a lock entry's
/// `original` attributes; `None` when that cannot be told (registry names,
/// unparsable forms). URLs are compared without their query, whose
/// parameters are compared as attributes.
fn same_input(url: &str, original: &serde_json::Map<String, serde_json::Value>) -> Option<bool> {
    let parsed = crate::fetch::parse_url(url).ok()?;
    let get = |k: &str| -> Option<String> {
        parsed.0.get(k).map(|v| v.to_string())
    };
    let orig = |k: &str| -> Option<String> {
        original.get(k).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            other => other.to_string(),
        })
    };
    let no_query = |u: Option<String>| u.map(|u| u.split('?').next().unwrap_or_default().to_string());
    if get("type") != orig("type") || no_query(get("url")) != no_query(orig("url")) {
        return Some(false);
    }
    Some(["path", "owner", "repo", "ref", "rev", "dir", "host"].iter().all(|k| get(k) == orig(k)))
}

/// Evaluate the flake `r` (a reference without fragment): the value Nix's
/// `getFlake` gives, `outputs // sourceInfo // { inputs; outputs; sourceInfo; }`.
pub fn load(ev: &Evaluator, r: &str) -> EvalResult<Value> {
    let fr = FlakeRef::parse(r, &ev.config.cwd)?;
    load_ref(ev, &fr).map_err(|e| e.add_frame(crate::source::Pos::NONE, format!("while evaluating the flake '{fr}'")))
}

pub fn load_ref(ev: &Evaluator, fr: &FlakeRef) -> EvalResult<Value> {
    let fetcher = ev
        .io
        .fetcher()
        .ok_or_else(|| EvalError::other("flakes need a fetcher (this evaluator has none)"))?;
    let tree = fetcher.fetch_input(&fr.input).map_err(FlakeError::from)?;
    let recursive = ndeploy_store::store_path::FileIngestionMethod::Recursive;
    crate::builtins::fetch::record(ev, fetcher, &tree.fetched.store_path, recursive)?;
    let src = crate::builtins::fetch::tree_attrs(&tree, false, tree.dirty);
    let root = tree.fetched.store_path.clone();
    let flake_dir = if fr.dir.is_empty() { root.clone() } else { format!("{root}/{}", fr.dir) };
    let flake_nix = format!("{flake_dir}/flake.nix");
    if !ev.io.path_exists(&flake_nix) {
        return Err(FlakeError::NotAFlake(format!("{fr}")).into());
    }
    let lock_file = format!("{flake_dir}/flake.lock");
    let declared = declared_inputs(ev, &flake_nix)?;
    let lock_text = match ev.io.read_file(&lock_file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => EMPTY_LOCK.to_string(),
        Err(e) => return Err(EvalError::other(format!("reading '{lock_file}': {e}"))),
    };
    let lock = LockFile::parse(&lock_text, &lock_file)?;
    let locked = lock.root_inputs();
    if let Some((missing, _)) = declared.iter().find(|(d, _)| !locked.contains(d)) {
        return Err(FlakeError::MissingLockEntry { flake: fr.to_string(), input: missing.clone() }.into());
    }
    for (name, url) in &declared {
        if let (Some(url), Some(original)) = (url, lock.root_original(name))
            && same_input(url, original) == Some(false)
        {
            eprintln!(
                "warning: input '{name}' of flake '{fr}' is '{url}' in flake.nix but flake.lock was made for another \
                 reference; ndeploy uses the lock as it is (run 'nix flake lock' to update it)"
            );
        }
    }
    let caller = ev.compile_str_as_file(CALL_FLAKE, "/ndeploy/flake/call-flake.nix")?;
    let f = ev.eval(&caller, ev.root_env_pub())?;
    ev.call_n(&f, &[Value::string(lock_text), src, Value::string(fr.dir.clone())], crate::source::Pos::NONE)
}

/// Split an attribute path (`a."b.c".d`) into names.
pub fn parse_attr_path(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if !cur.is_empty() || !out.is_empty() {
        out.push(cur);
    }
    out
}

/// Select `attr` from a flake's `outputs` as `nix eval FLAKE#attr` does:
/// `packages.<system>.attr`, `legacyPackages.<system>.attr`, then `attr`
/// itself; an empty `attr` means the default package
/// (`packages.<system>.default`, then `defaultPackage.<system>`).
/// `flake_ref` names the flake in the error. Returns the value and the
/// attribute path that matched.
pub fn select(ev: &Evaluator, flake: &Value, flake_ref: &str, attr: &str) -> EvalResult<(Value, String)> {
    let outputs = match ev.force(flake)? {
        Value::Attrs(a) => a.get(sym("outputs")).cloned().ok_or_else(|| EvalError::other("flake has no outputs"))?,
        other => return Err(EvalError::type_error(other.type_desc(), "a set")),
    };
    let system = ev.config.current_system.clone();
    let attr_paths = if attr.is_empty() {
        vec![format!("packages.{system}.default"), format!("defaultPackage.{system}")]
    } else {
        vec![attr.to_string()]
    };
    let mut candidates = Vec::new();
    if !attr.is_empty() {
        candidates.push(format!("packages.{system}.{attr}"));
        candidates.push(format!("legacyPackages.{system}.{attr}"));
    }
    candidates.extend(attr_paths);
    for cand in &candidates {
        if let Some(v) = try_path(ev, &outputs, &parse_attr_path(cand))? {
            return Ok((v, cand.clone()));
        }
    }
    Err(EvalError::other(format!("flake '{flake_ref}' does not provide attribute {}", show_attr_paths(&candidates))))
}

/// `'a', 'b' or 'c'`.
fn show_attr_paths(paths: &[String]) -> String {
    let mut s = String::new();
    for (i, p) in paths.iter().enumerate() {
        if i > 0 {
            s.push_str(if i + 1 == paths.len() { " or " } else { ", " });
        }
        s.push('\'');
        s.push_str(p);
        s.push('\'');
    }
    s
}

fn try_path(ev: &Evaluator, root: &Value, path: &[String]) -> EvalResult<Option<Value>> {
    let mut v = root.clone();
    for name in path {
        let a = match ev.force(&v)? {
            Value::Attrs(a) => a,
            _ => return Ok(None),
        };
        match a.get(sym(name)) {
            Some(x) => v = x.clone(),
            None => return Ok(None),
        }
    }
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flake_refs() {
        let r = FlakeRef::parse("git+file:///repo?dir=examples/fleet", "/").unwrap();
        assert_eq!(r.dir, "examples/fleet");
        assert_eq!(r.input.get_str("url").unwrap(), Some("file:///repo"));
        let r = FlakeRef::parse("path:/a/b", "/").unwrap();
        assert_eq!(r.input.get_str("path").unwrap(), Some("/a/b"));
        assert!(FlakeRef::parse("nixpkgs", "/").is_err());
        assert!(matches!(FlakeRef::parse("/nonexistent-dir", "/"), Err(FlakeError::NotAFlake(_))));
        assert_eq!(split_fragment(".#a.b"), (".", "a.b"));
        assert_eq!(parse_attr_path(r#"a."b.c".d"#), ["a", "b.c", "d"]);
    }

    #[test]
    fn flake_nix_urls_against_lock_originals() {
        let orig = |j: &str| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(j).unwrap();
        // As Nix 2.8 writes them (git keeps `?dir=` in the URL).
        let git = orig(r#"{"dir":"sub","type":"git","url":"file:///r?dir=sub"}"#);
        assert_eq!(same_input("git+file:///r?dir=sub", &git), Some(true));
        assert_eq!(same_input("git+file:///r?dir=other", &git), Some(false));
        let path = orig(r#"{"path":"./sub","type":"path"}"#);
        assert_eq!(same_input("path:./sub", &path), Some(true));
        assert_eq!(same_input("path:./other", &path), Some(false));
        let gh = orig(r#"{"owner":"NixOS","ref":"nixos-22.05","repo":"nixpkgs","type":"github"}"#);
        assert_eq!(same_input("github:NixOS/nixpkgs/nixos-22.05", &gh), Some(true));
        assert_eq!(same_input("github:NixOS/nixpkgs/nixos-22.11", &gh), Some(false));
        let tb = orig(r#"{"type":"tarball","url":"http://h/a.tar.gz"}"#);
        assert_eq!(same_input("http://h/a.tar.gz", &tb), Some(true));
        assert_eq!(same_input("http://h/b.tar.gz", &tb), Some(false));
        assert_eq!(same_input("nixpkgs", &gh), None);
    }
}
