//! `ndeploy instantiate --eval`: a drop-in for `nix-instantiate --eval`.
//!
//! Evaluates a file (or `-E` expression), auto-calls it with `--arg`/
//! `--argstr` values when given, selects `-A` attribute paths, optionally
//! deep-forces (`--strict`) and prints the value as Nix does (or as JSON /
//! XML). Errors go to stderr as `error: ...` with exit status 1.
//!
//! Without `--eval` it is `nix-instantiate --readonly-mode`: the `.drv` paths
//! of the derivations in the result (found as Nix's `getDerivations` finds
//! them, see `ndeploy_eval::store::drv_info`), or `--json`
//! (`[{"drvPath", "outputs"}]`) or `--show-derivation` (`nix
//! show-derivation`'s JSON); paths are computed in-process, and `--drv-dir`
//! also writes the `.drv` files, `toFile` texts and a `manifest.json` there.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use ndeploy_eval::compile::Lints;
use ndeploy_eval::eval::{EvalConfig, parse_nix_path};
use ndeploy_eval::io::{ReadOnlyStore, RealIO};
use ndeploy_eval::symbol::Symbol;
use ndeploy_eval::value::{AttrsBuilder, Thunk};
use ndeploy_eval::{EvalError, EvalResult, Evaluator, Value};

#[derive(Args, Debug)]
pub struct InstantiateArgs {
    /// Evaluate only; without it, print the `.drv` paths of the derivations
    /// in the result (as `nix-instantiate --readonly-mode`).
    #[arg(long)]
    eval: bool,
    /// Print the derivations as `nix show-derivation` JSON instead of paths.
    #[arg(long)]
    show_derivation: bool,
    /// Write the `.drv` files (and `toFile` texts, and a manifest.json) into DIR.
    #[arg(long, value_name = "DIR")]
    drv_dir: Option<std::path::PathBuf>,
    /// Deep-force the result before printing.
    #[arg(long)]
    strict: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Print the result as XML.
    #[arg(long)]
    xml: bool,
    /// Omit source positions in XML output.
    #[arg(long)]
    no_location: bool,
    /// Only parse the input.
    #[arg(long)]
    parse: bool,
    /// Treat the arguments as expressions (`-E`).
    #[arg(short = 'E', long = "expr")]
    expr: bool,
    /// Pass NAME = EXPR to a function result.
    #[arg(long = "arg", num_args = 2, value_names = ["NAME", "EXPR"], action = clap::ArgAction::Append)]
    arg: Vec<String>,
    /// Pass NAME = "STR" to a function result.
    #[arg(long = "argstr", num_args = 2, value_names = ["NAME", "STR"], action = clap::ArgAction::Append)]
    argstr: Vec<String>,
    /// Select an attribute path of the result.
    #[arg(short = 'A', long = "attr")]
    attr: Vec<String>,
    /// Add a search path entry (PATH or NAME=PATH).
    #[arg(short = 'I', long = "include")]
    include: Vec<String>,
    /// Accepted for compatibility (no store writes happen).
    #[arg(long)]
    read_write_mode: bool,
    /// Maximum depth of nested function calls.
    #[arg(long, default_value_t = 10000)]
    max_call_depth: usize,
    /// Show the full trace of an error.
    #[arg(long)]
    show_trace: bool,
    /// Accepted for compatibility.
    #[arg(long)]
    no_show_trace: bool,
    /// Accepted for compatibility.
    #[arg(long)]
    impure: bool,
    /// Experimental features (`parse-toml-timestamps` changes `fromTOML`;
    /// others are accepted for compatibility).
    #[arg(long)]
    extra_experimental_features: Vec<String>,
    /// Accepted for compatibility.
    #[arg(long)]
    lint_absolute_path_literals: Option<String>,
    /// Accepted for compatibility.
    #[arg(long)]
    lint_short_path_literals: Option<String>,
    /// Accepted for compatibility.
    #[arg(long)]
    lint_url_literals: Option<String>,
    /// Files (or expressions with -E), or flakes as `FLAKEREF#attr` (`.#x`,
    /// `path:/dir#x`, `git+file:///repo?dir=sub#x`); default `./default.nix`.
    files: Vec<String>,
}

pub fn run(args: InstantiateArgs) -> anyhow::Result<ExitCode> {
    let show_trace = args.show_trace;
    // Evaluate on a thread with a large stack; `stacker` grows it further.
    let handle = std::thread::Builder::new()
        .stack_size(64 * 1024 * 1024)
        .spawn(move || run_inner(args))
        .map_err(|e| anyhow::anyhow!("cannot start evaluation thread: {e}"))?;
    match handle.join() {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) => {
            eprintln!("{}", e.render(show_trace));
            Ok(ExitCode::FAILURE)
        }
        Err(_) => Err(anyhow::anyhow!("evaluation thread panicked")),
    }
}

fn run_inner(args: InstantiateArgs) -> EvalResult<()> {
    let cwd = std::env::current_dir().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| "/".into());
    let mut nix_path = Vec::new();
    for i in &args.include {
        nix_path.extend(parse_nix_path(i));
    }
    if let Ok(np) = std::env::var("NIX_PATH") {
        nix_path.extend(parse_nix_path(&np));
    }
    let config = EvalConfig {
        nix_path,
        max_call_depth: args.max_call_depth,
        cwd: cwd.clone(),
        store_dir: std::env::var("NIX_STORE_DIR").unwrap_or_else(|_| "/nix/store".into()),
        lints: Lints {
            absolute_path: args.lint_absolute_path_literals.as_deref() == Some("fatal"),
            short_path: args.lint_short_path_literals.as_deref() == Some("fatal"),
            url: args.lint_url_literals.as_deref() == Some("fatal"),
        },
        experimental_features: args
            .extra_experimental_features
            .iter()
            .flat_map(|f| f.split_whitespace().map(str::to_owned))
            .collect(),
        ..EvalConfig::default()
    };
    let store_dir = config.store_dir.clone();
    // Fetched inputs and flake sources are read through the fetcher's source map.
    let fetcher = Arc::new(ndeploy_eval::fetch::Fetcher::from_env(&store_dir));
    let io = ndeploy_eval::fetch::FetchIO::new(Arc::new(RealIO), fetcher.clone());
    let mut ev = Evaluator::new(config, Arc::new(io));
    // `readFile` of a store path: its references, from the local store's database.
    let db = ndeploy_eval::store::local_db::LocalStoreDb::from_env();
    let mut store = ReadOnlyStore::new(&store_dir).with_references_reader(db.into_reader());
    if let Some(d) = &args.drv_dir {
        store = store.with_drv_dir(d.clone());
    }
    let store = Arc::new(store);
    ev.store = Some(Arc::new(ndeploy_eval::fetch::FetchStore::new(store.clone(), fetcher)));
    // The process ends right after evaluating: freeing the evaluation heap
    // (every value, thunk and frame) would only cost time, and a never
    // dropped evaluator skips registering its recursive frames.
    let ev = ev.into_static();

    let inputs: Vec<String> = if args.files.is_empty() && !args.expr { vec!["./default.nix".into()] } else { args.files.clone() };

    if args.parse {
        for input in &inputs {
            if args.expr {
                ev.compile_str(input, &cwd)?;
            } else {
                let path = absolute(&cwd, input);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| EvalError::other(format!("opening file '{path}': {e}")))?;
                ev.compile_str_as_file(&text, &path)?;
            }
        }
        return Ok(());
    }

    let auto_args = auto_args(ev, &args, &cwd)?;
    let stdout = std::io::stdout();
    for input in &inputs {
        let root = if args.expr {
            ev.eval_str(input)?
        } else if input == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| EvalError::other(format!("reading the expression from stdin: {e}")))?;
            ev.eval_stdin_text(&text)?
        } else if ndeploy_eval::flake::looks_like_flake_ref(input) {
            flake_root(ev, input)?
        } else {
            ev.eval_file(&absolute(&cwd, input))?
        };
        let attr_paths = if args.attr.is_empty() { vec![String::new()] } else { args.attr.clone() };
        for ap in &attr_paths {
            let v = find_along_attr_path(ev, ap, auto_args.as_ref(), root.clone())?;
            if !args.eval {
                let out = print_derivations(ev, &store, &args, auto_args.as_ref(), v)?;
                let _ = write!(stdout.lock(), "{out}");
                continue;
            }
            let v = match &auto_args {
                Some(a) => auto_call(ev, a, v)?,
                None => v,
            };
            let v = if args.strict { ev.force_deep(&v)? } else { ev.force(&v)? };
            let out = if args.json {
                ndeploy_eval::builtins::to_json_string(ev, &v)?
            } else if args.xml {
                ndeploy_eval::builtins::to_xml_string(ev, &v, args.strict, !args.no_location)?
            } else {
                ndeploy_eval::print::print_value(ev, &v, args.strict)?
            };
            let mut lock = stdout.lock();
            // As nix-instantiate: no newline after JSON or XML documents.
            let _ = if args.xml || args.json { write!(lock, "{out}") } else { writeln!(lock, "{out}") };
            // Not dropped: see `leak_at_exit`.
            leak_at_exit(v);
        }
        leak_at_exit(root);
    }
    store.write_manifest().map_err(|e| EvalError::other(e.to_string()))?;
    Ok(())
}

/// Values printed and no longer needed are not freed: the process ends
/// right after (as C++ Nix, which never frees at exit). Dropping the result
/// of an evaluation frees everything only it holds, value by value: on a
/// `lib.evalModules` run over 3000 options that was 4.8% of all
/// instructions (2633M -> 2506M, callgrind). The library frees everything
/// when an `Evaluator` and its values drop; only this exiting command skips it.
fn leak_at_exit(v: Value) {
    std::mem::forget(v);
}

/// The derivations in `v` as `.drv` paths, `--json` or `--show-derivation`.
fn print_derivations(
    ev: &Evaluator,
    store: &ReadOnlyStore,
    args: &InstantiateArgs,
    auto_args: Option<&Value>,
    v: Value,
) -> EvalResult<String> {
    let auto = |ev: &Evaluator, v: Value| match auto_args {
        Some(a) => auto_call(ev, a, v),
        None => ev.force(&v),
    };
    let drvs = ndeploy_eval::store::drv_info::get_derivations(ev, v, &auto)?;
    let err = |e: ndeploy_eval::store::StoreError| EvalError::other(e.to_string());
    Ok(if args.show_derivation {
        store.show_derivations(&drvs).map_err(err)?
    } else if args.json {
        store.drvs_json(&drvs).map_err(err)? + "\n"
    } else {
        store.print_drv_paths(&drvs)
    })
}

/// `FLAKEREF#attr`: the flake's attribute as `nix eval` selects it (its
/// default package without `#attr`).
fn flake_root(ev: &Evaluator, input: &str) -> EvalResult<Value> {
    let (r, attr) = ndeploy_eval::flake::split_fragment(input);
    let flake = ndeploy_eval::flake::load(ev, r)?;
    Ok(ndeploy_eval::flake::select(ev, &flake, r, attr)?.0)
}

fn absolute(cwd: &str, p: &str) -> String {
    let joined = if p.starts_with('/') { p.to_string() } else { format!("{cwd}/{p}") };
    ndeploy_eval::support::path::canon_path(&joined).unwrap_or(joined)
}

fn auto_args(ev: &Evaluator, args: &InstantiateArgs, cwd: &str) -> EvalResult<Option<Value>> {
    if args.arg.is_empty() && args.argstr.is_empty() {
        return Ok(None);
    }
    let mut b = AttrsBuilder::new();
    for pair in args.arg.chunks(2) {
        if let [name, expr] = pair {
            let e = Arc::new(ev.compile_str(expr, cwd)?);
            let v = Thunk::native(move |ev: &Evaluator| ev.eval(&e, ev.root_env_pub()));
            b.insert(Symbol::new(name), v);
        }
    }
    for pair in args.argstr.chunks(2) {
        if let [name, s] = pair {
            b.insert(Symbol::new(name), Value::string(s.clone()));
        }
    }
    Ok(Some(Value::Attrs(b.finish())))
}

/// Nix's `autoCallFunction`: call a function with formals with the matching
/// auto arguments; anything else is returned as is.
fn auto_call(ev: &Evaluator, auto: &Value, v: Value) -> EvalResult<Value> {
    let v = ev.force(&v)?;
    let Value::Attrs(auto) = auto else { return Ok(v) };
    if let Value::Attrs(a) = &v
        && let Some(f) = a.get_str("__functor")
    {
        let f = ev.force(f)?;
        let inner = ev.call(&f, v.clone(), ndeploy_eval::source::Pos::NONE)?;
        return auto_call(ev, &Value::Attrs(auto.clone()), inner);
    }
    let formals = ndeploy_eval::builtins::lambda_formals(&v);
    let Some(formals) = formals else { return Ok(v) };
    let mut b = AttrsBuilder::new();
    for (name, has_default) in formals {
        match auto.get(name) {
            Some(x) => b.insert(name, x.clone()),
            None if has_default => {}
            None => {
                return Err(EvalError::other(format!(
                    "cannot evaluate a function that has an argument without a value ('{name}')"
                )));
            }
        }
    }
    ev.call(&v, Value::Attrs(b.finish()), ndeploy_eval::source::Pos::NONE)
}

fn find_along_attr_path(ev: &Evaluator, path: &str, auto: Option<&Value>, root: Value) -> EvalResult<Value> {
    let mut v = root;
    if path.is_empty() {
        return Ok(v);
    }
    for comp in path.split('.') {
        if let Some(a) = auto {
            v = auto_call(ev, a, v)?;
        }
        let cur = ev.force(&v)?;
        if let Ok(i) = comp.parse::<usize>() {
            let l = match &cur {
                Value::List(l) => l.clone(),
                other => {
                    return Err(EvalError::other(format!(
                        "the expression selected by the selection path '{path}' should be a list but is {}",
                        other.type_desc()
                    )));
                }
            };
            v = l.get(i).cloned().ok_or_else(|| EvalError::other(format!("list index {i} in selection path '{path}' is out of range")))?;
        } else {
            let a = match &cur {
                Value::Attrs(a) => a.clone(),
                other => {
                    return Err(EvalError::other(format!(
                        "the expression selected by the selection path '{path}' should be a set but is {}",
                        other.type_desc()
                    )));
                }
            };
            v = a
                .get(Symbol::new(comp))
                .cloned()
                .ok_or_else(|| EvalError::other(format!("attribute '{comp}' in selection path '{path}' not found")))?;
        }
    }
    Ok(v)
}
