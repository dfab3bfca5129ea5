//! Builtins touching the outside world through `EvalIO`: `import`,
//! `scopedImport`, `readFile`, `readDir`, `pathExists`, `readFileType`,
//! `getEnv`, `findFile`, `toPath`, and the pure `placeholder`. `<nix/...>`
//! falls back to Nix's built-in files, of which `fetchurl.nix` exists.


use super::{Arg, PrimOp};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::{Evaluator, io_msg};
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{AttrsBuilder, Env, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("import", &[Arg::Any], import),
    // Nix coerces the path before it forces the scope.
    PrimOp::new("scopedImport", &[Arg::Attrs, Arg::Check(path_arg)], scoped_import).second_first(),
    PrimOp::new("readFile", &[Arg::Any], read_file),
    PrimOp::new("readDir", &[Arg::Any], read_dir),
    PrimOp::new("pathExists", &[Arg::Any], path_exists),
    PrimOp::new("readFileType", &[Arg::Any], read_file_type),
    PrimOp::new("getEnv", &[Arg::StrNoCtx], |ev, a, _| {
        let n = ev.force_string(&a[0])?;
        Ok(Value::string(ev.io.get_env(n.as_str()).unwrap_or_default()))
    }),
    // Nix reads every search path entry before it forces the name.
    PrimOp::new("findFile", &[Arg::List, Arg::Lazy], find_file),
    PrimOp::new("toPath", &[Arg::Any], |ev, a, _| Ok(Value::string(ev.coerce_to_path(&a[0])?))),
    PrimOp::new("placeholder", &[Arg::StrNoCtx], placeholder),
];

/// Where `<nix/...>` resolves when no search path entry has the file (Nix's
/// built-in "corepkgs").
const COREPKGS: &str = "/__corepkgs__/";

/// `<nix/fetchurl.nix>`: the fixed-output derivation built by Nix's built-in
/// fetcher (`builtin:fetchurl`), with exactly the attributes Nix 2.8 gives it
/// (hash from `hash` (SRI) or the legacy `sha512`/`sha1`/`md5`/`sha256`),
/// so that its `.drv` path is Nix's.
const FETCHURL_NIX: &str = r#"
{ url, name ? baseNameOf (toString url), executable ? false, unpack ? false, system ? ""
, hash ? "", sha256 ? "", sha512 ? "", sha1 ? "", md5 ? ""
, outputHash ? (if hash != "" then hash else if sha512 != "" then sha512 else if sha1 != "" then sha1
                else if md5 != "" then md5 else sha256)
, outputHashAlgo ? (if hash != "" then "" else if sha512 != "" then "sha512" else if sha1 != "" then "sha1"
                    else if md5 != "" then "md5" else "sha256")
}:
derivation {
  inherit name url executable unpack outputHash outputHashAlgo;
  system = "builtin";
  builder = "builtin:fetchurl";
  outputHashMode = if executable || unpack then "recursive" else "flat";
  urls = [ url ];
  preferLocalBuild = true;
  impureEnvVars = [ "http_proxy" "https_proxy" "ftp_proxy" "all_proxy" "no_proxy" ];
}
"#;

fn import(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let p = ev.coerce_to_path(&a[0])?;
    if let Some(file) = p.strip_prefix(COREPKGS) {
        return match file {
            "fetchurl.nix" => ev.eval_str(FETCHURL_NIX),
            _ => Err(EvalError::new(ErrorKind::Io(format!("opening file '{p}': No such file or directory")))),
        };
    }
    let v = ev.import_value(&p)?;
    ev.force(&v)
}

/// A value that coerces to an absolute path.
fn path_arg(ev: &Evaluator, v: &Value) -> EvalResult<()> {
    ev.coerce_to_path(v).map(drop)
}

fn scoped_import(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let scope = super::attrs::attrs_arg(&a[0])?;
    let p = ev.coerce_to_path(&a[1])?;
    let p = match ev.io.file_type(&p) {
        Ok(crate::io::FileType::Directory) => format!("{p}/default.nix"),
        _ => p,
    };
    let names: Vec<Symbol> = scope.iter().map(|a| a.name).collect();
    let values: Vec<Value> = scope.iter().map(|a| a.value.clone()).collect();
    // Compiled once per (file, scope names); the values are this call's.
    let e = ev.compile_file_scoped(&p, names)?;
    let env = Env::new(ev.root_env(), values);
    ev.eval(&e, &env)
}

/// `readFile`: the file's contents; for a file in the store, the string's
/// context is the references of its store path (Nix's `queryPathInfo`).
fn read_file(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let p = ev.coerce_to_path(&a[0])?;
    let bytes = ev.io.read_file(&p).map_err(|e| {
        // A directory opens but cannot be read; Nix then names no file.
        EvalError::new(ErrorKind::Io(if e.kind() == std::io::ErrorKind::IsADirectory {
            format!("reading from file: {}", io_msg(&e))
        } else {
            format!("opening file '{p}': {}", io_msg(&e))
        }))
    })?;
    if bytes.contains(&0) {
        return Err(EvalError::other(format!("the contents of the file '{p}' cannot be represented as a Nix string")));
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut ctx = crate::value::Context::new();
    if let Some(store) = ev.store.as_deref().and_then(|s| s.computing())
        && let Ok((sp, _)) = store.store_dir().parse_inner(&p)
    {
        let refs = store.references_of(&sp).map_err(|e| EvalError::other(e.to_string()))?;
        for r in refs {
            ctx.insert(store.store_dir().display(&r));
        }
    }
    Ok(Value::string_ctx(text, ctx))
}

fn read_dir(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let p = ev.coerce_to_path(&a[0])?;
    let entries = ev
        .io
        .read_dir(&p)
        .map_err(|e| EvalError::new(ErrorKind::Io(format!("opening directory '{p}': {}", io_msg(&e)))))?;
    let mut b = AttrsBuilder::with_capacity(entries.len());
    for (name, ft) in entries {
        b.insert(Symbol::new(&name), Value::string(ft.nix_name()));
    }
    Ok(Value::Attrs(b.finish()))
}

fn path_exists(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let p = ev.coerce_to_path(&a[0])?;
    // A trailing `/` or `/.` requires a directory; otherwise the path itself
    // (even a dangling symlink) counts.
    let must_be_dir = p.ends_with('/') || p.ends_with("/.");
    let Ok(canon) = crate::support::path::canon_path(&p) else { return Ok(Value::Bool(false)) };
    Ok(Value::Bool(if must_be_dir {
        canon == "/"
            || matches!(ev.io.file_type(&canon), Ok(crate::io::FileType::Directory))
            || ev.io.path_exists(&format!("{canon}/"))
    } else {
        ev.io.file_type(&canon).is_ok()
    }))
}

fn read_file_type(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let p = ev.coerce_to_path(&a[0])?;
    let ft = ev
        .io
        .file_type(&p)
        .map_err(|e| EvalError::new(ErrorKind::Io(format!("getting status of '{p}': {}", io_msg(&e)))))?;
    Ok(Value::string(ft.nix_name()))
}

fn find_file(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    // Every entry first (a set with `path`, an optional `prefix`), then the
    // name, as Nix.
    let mut search = Vec::new();
    for entry in super::lists::list_arg(&a[0])?.iter() {
        let entry = ev.force_attrs(entry)?;
        let prefix = match entry.get_str("prefix") {
            Some(p) => super::derivation::force_string_no_ctx(ev, p)?,
            None => String::new(),
        };
        let Some(path) = entry.get_str("path") else {
            return Err(EvalError::other("attribute 'path' missing for call to 'findFile'"));
        };
        let path = ev.coerce_to_string(path, crate::eval::CoerceOpts::path_interp())?;
        search.push((prefix, path));
    }
    let name = super::derivation::force_string_no_ctx(ev, &a[1])?;
    let name = name.as_str();
    for (prefix, path) in &search {
        let rest = if prefix.is_empty() {
            Some(name.to_string())
        } else if name == prefix {
            Some(String::new())
        } else {
            name.strip_prefix(&format!("{prefix}/")).map(str::to_string)
        };
        let Some(rest) = rest else { continue };
        let base = path.as_str();
        let base = if base.starts_with('/') { base.to_string() } else { format!("{}/{base}", ev.config.cwd) };
        let cand = if rest.is_empty() { base } else { format!("{base}/{rest}") };
        let Ok(cand) = crate::support::path::canon_path(&cand) else { continue };
        if ev.io.path_exists(&cand) {
            return Ok(Value::path(cand));
        }
    }
    if let Some(rest) = name.strip_prefix("nix/") {
        return Ok(Value::path(format!("{COREPKGS}{rest}")));
    }
    Err(EvalError::new(ErrorKind::Throw(format!(
        "file '{name}' was not found in the Nix search path (add it using $NIX_PATH or -I)"
    ))))
}

fn placeholder(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    use ndeploy_store::hash::{Hash, HashAlgo};
    let out = ev.force_string(&a[0])?;
    let h = Hash::digest(HashAlgo::Sha256, format!("nix-output:{}", out.as_str()));
    Ok(Value::string(format!("/{}", h.to_nix32())))
}
