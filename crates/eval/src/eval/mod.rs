//! The evaluator: the shared heap handle and the core operations.
//!
//! Design: an [`Evaluator`] is `Sync` and used by `&self` from any number of
//! threads. It owns the configuration, the injected I/O, the builtins, the
//! cache of imported files (path → the file's value, a shared thunk, so each
//! file is parsed, compiled and evaluated once per evaluator) and the
//! registry of recursive frames that is cleared on drop (see
//! [`crate::value::Env`]), which frees every reference cycle. New frames
//! wait in per-thread shards and are registered in batches (no lock shared
//! between threads per frame); drop and the collector register the waiting
//! ones first.
//!
//! Evaluation is by recursive descent over the IR (`expr.rs`); `eval` and
//! `force` grow the stack on demand (`stack.rs`: an inline check, then
//! `stacker`), and lambda calls count
//! against `max_call_depth` (per thread), so deep recursion ends in an
//! error, never a crash. Arithmetic is checked (`ops.rs`).

pub mod alloc;
mod borrow;
mod call;
mod coerce;
mod expr;
mod ops;
mod stack;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::value::Brc;
use crate::value::brc::WeakBrc;

pub use coerce::CoerceOpts;
pub(crate) use call::int_binop;

use crate::compile::{CompileEnv, compile};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::io::{EvalIO, RealIO, StoreIO};
use crate::ir::Expr;
use crate::source::Origin;
use crate::symbol::Symbol;
use crate::value::{Attrs, Env, Pending, Thunk, Value};

/// Evaluation settings (what `nix-instantiate` options control).
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// `-I` entries and `NIX_PATH`, in order: (prefix, path).
    pub nix_path: Vec<(String, String)>,
    pub max_call_depth: usize,
    pub current_system: String,
    /// Directory for `-E` expressions' relative paths.
    pub cwd: String,
    pub store_dir: String,
    pub lints: crate::compile::Lints,
    /// Experimental features turned on (`--extra-experimental-features`),
    /// such as `parse-toml-timestamps`.
    pub experimental_features: Vec<String>,
}

impl Default for EvalConfig {
    fn default() -> EvalConfig {
        EvalConfig {
            nix_path: Vec::new(),
            max_call_depth: 10000,
            current_system: "x86_64-linux".into(),
            cwd: std::env::current_dir().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| "/".into()),
            store_dir: "/nix/store".into(),
            lints: Default::default(),
            experimental_features: Vec::new(),
        }
    }
}

/// Parse `NIX_PATH`-style entries (`a=/x:/y`) into (prefix, path) pairs.
pub fn parse_nix_path(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in s.split(':').filter(|e| !e.is_empty()) {
        match entry.split_once('=') {
            Some((p, v)) => out.push((p.to_string(), v.to_string())),
            None => out.push((String::new(), entry.to_string())),
        }
    }
    out
}

/// New recursive frames, per thread (by thread id), registered in batches
/// of [`REC_BATCH`]: the registry's lock is taken once per batch, and
/// threads creating frames at once do not share a lock (one cache line
/// each). A frame is held strongly while it waits, so none can die before
/// the registry decides (at registration) whether the collector holds it.
#[repr(align(128))]
#[derive(Default)]
struct RecShard(Mutex<Vec<Env>>);

const REC_SHARDS: usize = 8;
const REC_BATCH: usize = 32;
/// Every this many recursive frames a thread makes, it merges the nodes
/// other threads handed back to it (`value/brc.rs`).
const DRAIN_EVERY: usize = 64;

struct RecRegistry {
    envs: Vec<WeakBrc<crate::value::env::EnvInner>>,
    prune_at: usize,
    /// With the cycle collector on: every recursive frame, held until a
    /// collection proves it garbage (see `value/collect.rs`).
    held: Option<Vec<Env>>,
}

/// `scopedImport` compilations by (file, scope names).
type ScopedImports = Mutex<HashMap<(String, Vec<Symbol>), Brc<Expr>>>;

pub struct Evaluator {
    pub config: EvalConfig,
    pub io: Arc<dyn EvalIO>,
    pub store: Option<Arc<dyn StoreIO>>,
    base: HashMap<Symbol, Value>,
    builtins: Attrs,
    files: Mutex<HashMap<String, Value>>,
    /// `scopedImport`'s compiled files by path and scope names: the compiled
    /// form depends on the names of the scope (its frame layout), never on
    /// their values, so one compile serves every call with those names.
    scoped: ScopedImports,
    rec_envs: Mutex<RecRegistry>,
    rec_new: [RecShard; REC_SHARDS],
    /// Set by [`Evaluator::into_static`]: never dropped, so recursive
    /// frames are not registered (nothing would ever clear them).
    for_process: bool,
    root: Env,
}

thread_local! {
    static CALL_DEPTH: Cell<usize> = const { Cell::new(0) };
}


impl Evaluator {
    pub fn new(config: EvalConfig, io: Arc<dyn EvalIO>) -> Evaluator {
        let (base, builtins) = crate::builtins::base_scope(&config, &*io);
        Evaluator {
            config,
            io,
            store: None,
            base,
            builtins,
            files: Mutex::new(HashMap::new()),
            scoped: Mutex::new(HashMap::new()),
            rec_envs: Mutex::new(RecRegistry { envs: Vec::new(), prune_at: 1024, held: None }),
            rec_new: Default::default(),
            for_process: false,
            root: Env::root(),
        }
    }

    /// This evaluator for the rest of the process, never dropped (a command
    /// that evaluates and exits: the heap is left to the exit, as C++ Nix
    /// does). Registering a recursive frame (~270 instructions: a shard
    /// lock, a clone, a downgrade, the registry's batch, and the weak
    /// reference that keeps the frame's memory until it is pruned) only
    /// serves the drop, which clears the frames' cycles; so from here on
    /// frames are not registered. A leak by intent, bounded by the process:
    /// the evaluator cannot be dropped any more, and the cycle collector
    /// (which works on registered frames) has nothing to collect.
    pub fn into_static(mut self) -> &'static Evaluator {
        self.for_process = true;
        Box::leak(Box::new(self))
    }

    /// An evaluator on the real file system with default settings.
    pub fn real() -> Evaluator {
        Evaluator::new(EvalConfig::default(), Arc::new(RealIO))
    }

    /// Hook for layers above (the store layer's `derivation`, fetchers...):
    /// make `name` a builtin, visible as `builtins.name`, `__name` and (if
    /// `global`) `name`. Call before evaluating anything.
    pub fn add_builtin(&mut self, name: &str, value: Value, global: bool) {
        let sym = Symbol::new(name);
        let mut b = crate::value::AttrsBuilder::new();
        b.insert(sym, value.clone());
        self.builtins = self.builtins.update(&b.finish());
        if global {
            self.base.insert(sym, value.clone());
        }
        self.base.insert(Symbol::new(&format!("__{name}")), value);
        self.base.insert(Symbol::new("builtins"), Value::Attrs(self.builtins.clone()));
    }

    pub fn builtins(&self) -> &Attrs {
        &self.builtins
    }

    fn compile_env(&self, dir: String) -> CompileEnv<'_> {
        CompileEnv { base: &self.base, dir, home: self.io.get_env("HOME"), extra_scope: None, lints: self.config.lints }
    }

    /// Parse and compile an expression given as text (relative paths resolve
    /// against `dir`).
    pub fn compile_str(&self, text: &str, dir: &str) -> EvalResult<Expr> {
        compile(text.into(), Origin::String, &self.compile_env(dir.to_string()))
    }

    /// Evaluate an expression given as text to weak head normal form.
    pub fn eval_str(&self, text: &str) -> EvalResult<Value> {
        let e = self.compile_str(text, &self.config.cwd.clone())?;
        self.eval(&e, &self.root)
    }

    /// Evaluate an expression read from standard input (`nix-instantiate
    /// -`): as [`Evaluator::eval_str`], with positions in `«stdin»`.
    pub fn eval_stdin_text(&self, text: &str) -> EvalResult<Value> {
        let e = compile(text.into(), Origin::Stdin, &self.compile_env(self.config.cwd.clone()))?;
        self.eval(&e, &self.root)
    }

    /// Evaluate the expression in `path` (a file, or a directory's
    /// `default.nix`); cached per evaluator.
    pub fn eval_file(&self, path: &str) -> EvalResult<Value> {
        let v = self.import_value(path)?;
        self.force(&v)
    }

    fn resolve_import_path(&self, path: &str) -> String {
        match self.io.file_type(path) {
            Ok(crate::io::FileType::Directory) => format!("{}/default.nix", path.trim_end_matches('/')),
            _ => path.to_string(),
        }
    }

    /// The (lazy) value of an imported file.
    pub fn import_value(&self, path: &str) -> EvalResult<Value> {
        let path = self.resolve_import_path(path);
        if let Some(v) = self.files.lock().unwrap_or_else(|e| e.into_inner()).get(&path) {
            return Ok(v.clone());
        }
        let p2 = path.clone();
        // Cached for every later import: made in the shared epoch.
        let v = crate::value::collect::epoch::shared(|| {
            Thunk::native(move |ev: &Evaluator| {
                let e = ev.compile_file(&p2, None)?;
                ev.eval(&e, &ev.root)
            })
        });
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        Ok(files.entry(path).or_insert(v).clone())
    }

    /// Read and compile a file; `extra` adds an outermost frame (scopedImport).
    /// [`Evaluator::compile_file`] with the outermost frame `names`
    /// (`scopedImport`), compiled once per evaluator for each (path, names).
    pub(crate) fn compile_file_scoped(&self, path: &str, names: Vec<Symbol>) -> EvalResult<Brc<Expr>> {
        let key = (path.to_owned(), names);
        if let Some(e) = self.scoped.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(e.clone());
        }
        let e = Brc::new(self.compile_file(path, Some(key.1.clone()))?);
        Ok(self.scoped.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_insert(e).clone())
    }

    pub(crate) fn compile_file(&self, path: &str, extra: Option<Vec<Symbol>>) -> EvalResult<Expr> {
        let bytes = self.io.read_file(path).map_err(|e| {
            // Nix stats the file before opening it: a missing file fails
            // there ("getting status of"), an unreadable one when opening.
            let msg = match self.io.file_type(path) {
                Err(stat) => format!("getting status of '{path}': {}", io_msg(&stat)),
                Ok(_) => format!("opening file '{path}': {}", io_msg(&e)),
            };
            EvalError::new(ErrorKind::Io(msg))
        })?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let dir = crate::support::path::dir_of(path).to_string();
        let mut cenv = self.compile_env(dir);
        cenv.extra_scope = extra;
        compile(text.into(), Origin::File(path.to_string()), &cenv)
    }

    pub(crate) fn root_env(&self) -> &Env {
        &self.root
    }

    /// The empty top-level frame (for evaluating compiled expressions).
    pub fn root_env_pub(&self) -> &Env {
        &self.root
    }

    /// Parse and compile `text` as if read from the file `path`.
    pub fn compile_str_as_file(&self, text: &str, path: &str) -> EvalResult<Expr> {
        let dir = crate::support::path::dir_of(path).to_string();
        compile(text.into(), Origin::File(path.to_string()), &self.compile_env(dir))
    }

    /// A recursive frame, registered so that it is cleared on drop.
    pub(crate) fn new_rec_env(&self, parent: &Env, n: usize) -> Env {
        let env = Env::new_rec(parent, n);
        if Env::rec_frames_made().is_multiple_of(DRAIN_EVERY) {
            // Now and then: free what other threads dropped last (nodes
            // this thread made, handed to it by `value/brc.rs`).
            crate::value::brc::drain();
        }
        // A fleet host's frame cleared when the host ends, or any frame of
        // an evaluator that is never dropped: not registered.
        if crate::value::collect::epoch::list_host_frame(&env) || self.for_process {
            return env;
        }
        let shard = &self.rec_new[crate::value::thunk::thread_id() as usize % REC_SHARDS];
        let mut q = shard.0.lock().unwrap_or_else(|e| e.into_inner());
        q.push(env.clone());
        if q.len() >= REC_BATCH {
            let batch = std::mem::take(&mut *q);
            drop(q);
            self.register_rec(batch);
        }
        env
    }

    /// Register waiting frames: weakly, and strongly too when the collector
    /// holds frames. Frames nobody else holds are dropped after unlocking.
    fn register_rec(&self, batch: Vec<Env>) {
        let mut unheld = Vec::new();
        {
            let mut reg = self.rec_envs.lock().unwrap_or_else(|e| e.into_inner());
            for env in batch {
                reg.envs.push(env.downgrade());
                match &mut reg.held {
                    Some(held) => held.push(env),
                    None => unheld.push(env),
                }
            }
            if reg.envs.len() >= reg.prune_at {
                reg.envs.retain(|w| !w.is_dead());
                reg.prune_at = (reg.envs.len() * 2).max(1024);
            }
        }
        drop(unheld);
    }

    /// Register every waiting frame (exclusive access: drop, collector).
    fn flush_rec(&mut self) {
        let mut all = Vec::new();
        for shard in &mut self.rec_new {
            all.append(shard.0.get_mut().unwrap_or_else(|e| e.into_inner()));
        }
        if !all.is_empty() {
            self.register_rec(all);
        }
    }

    /// Force a value to weak head normal form.
    #[inline]
    pub fn force(&self, v: &Value) -> EvalResult<Value> {
        match v {
            Value::Thunk(t) => match t.get_ref() {
                Some(v) => Ok(v.clone()),
                None => self.force_thunk(t),
            },
            v => Ok(v.clone()),
        }
    }

    pub(crate) fn force_thunk(&self, t: &Thunk) -> EvalResult<Value> {
        self.force_thunk_ref(t).cloned()
    }

    /// Force `t`; its result borrowed (results are never moved once
    /// published, see `value/thunk.rs`).
    pub(crate) fn force_thunk_ref<'a>(&self, t: &'a Thunk) -> EvalResult<&'a Value> {
        t.force_with(|work| {
            // A shared thunk forced in a host epoch runs in the shared epoch.
            // Without an epoch change (nearly always) the work is a tail
            // call: no guard to drop after it, so no frame here.
            match crate::value::collect::epoch::enter_thunk(t.gc_word().load(std::sync::atomic::Ordering::Relaxed)) {
                None => self.run_pending(work),
                Some(guard) => self.run_pending_in(work, guard),
            }
        })
    }

    /// [`Evaluator::run_pending`] in the epoch `guard` set (out of line:
    /// the common path stays frameless).
    #[inline(never)]
    fn run_pending_in(&self, work: &Pending, guard: crate::value::collect::epoch::EpochGuard) -> EvalResult<Value> {
        let r = self.run_pending(work);
        drop(guard);
        r
    }

    /// A thunk's pending work, evaluated.
    #[inline(always)]
    fn run_pending(&self, work: &Pending) -> EvalResult<Value> {
        match work {
            // Checked even for leaves: chains of thunks recurse through here.
            Pending::Expr(e, env) => self.eval_checked(e, env),
            Pending::Apply(app) => self.apply_values(app),
            Pending::Native(f) => self.run_native(&**f),
        }
    }

    #[inline(never)]
    fn run_native(&self, f: &crate::value::thunk::NativeThunk) -> EvalResult<Value> {
        f(self).and_then(|v| self.force(&v))
    }

    /// A delayed application (`Pending::Apply`): the function, then its
    /// arguments in order.
    #[inline(never)]
    fn apply_values(&self, app: &[Value]) -> EvalResult<Value> {
        use crate::source::Pos;
        match app {
            // The function borrowed (forced in place): not cloned and dropped.
            [f, a] => self.call(&*self.force_ref(f)?, a.clone(), Pos::NONE),
            [f, a, args @ ..] => {
                let mut f = self.call(&*self.force_ref(f)?, a.clone(), Pos::NONE)?;
                for a in args {
                    f = self.call(&f, a.clone(), Pos::NONE)?;
                }
                Ok(f)
            }
            [f] => self.force(f),
            [] => Err(EvalError::other("internal error: an application without a function")),
        }
    }

    /// Evaluate `e` in `env` to weak head normal form.
    /// Variables are evaluated without the stack check: they do not
    /// recurse, except through forcing a thunk, which checks. Both paths
    /// are tail calls (no frame here); constants, rare here (thunks and
    /// arguments take them as they are), go through `eval_inner`.
    #[inline]
    pub fn eval(&self, e: &Expr, env: &Env) -> EvalResult<Value> {
        match e {
            Expr::Local { depth, idx } => self.eval_local(env, *depth, *idx),
            _ => self.eval_checked(e, env),
        }
    }

    /// [`Evaluator::eval_inner`] behind the stack check: inside the window
    /// a compare and a tail call, the growing path out of line.
    #[inline(always)]
    fn eval_checked(&self, e: &Expr, env: &Env) -> EvalResult<Value> {
        if stack::room() { self.eval_inner(e, env) } else { self.eval_grown(e, env) }
    }

    #[cold]
    #[inline(never)]
    fn eval_grown(&self, e: &Expr, env: &Env) -> EvalResult<Value> {
        stack::grow(|| self.eval_inner(e, env))
    }

    /// A variable's value, forced.
    #[inline]
    pub(crate) fn eval_local(&self, env: &Env, depth: u32, idx: u32) -> EvalResult<Value> {
        match env.slot(depth, idx) {
            Ok(Value::Thunk(t)) => match t.get_ref() {
                Some(v) => Ok(v.clone()),
                None => self.force_thunk(t),
            },
            Ok(v) => Ok(v.clone()),
            Err(_) => Err(released()),
        }
    }

    /// A value for `e` in `env` without evaluating it: constants and
    /// variables directly, lambdas as their closure (evaluating a lambda
    /// cannot fail or loop and allocates the closure either way: one
    /// allocation instead of a thunk now and the closure when forced; only
    /// lazy printing shows `<LAMBDA>` where Nix shows `<CODE>`), anything
    /// else as a thunk.
    /// Variables and constants here, the rest (an allocation) a tail
    /// call: the leaves need no frame. Inline at its few call sites (set
    /// and list literals, arguments, lets), which have frames anyway.
    #[inline(always)]
    pub(crate) fn delay(&self, e: &Brc<Expr>, env: &Env) -> EvalResult<Value> {
        match &**e {
            // A forced thunk's value, else the slot's value (the result
            // borrowed and cloned once: `Thunk::get` is an out-of-line call).
            Expr::Local { depth, idx } => match env.slot(*depth, *idx) {
                Ok(v @ Value::Thunk(t)) => Ok(t.get_ref().unwrap_or(v).clone()),
                Ok(v) => Ok(v.clone()),
                Err(_) => Err(released()),
            },
            Expr::Const(v) => Ok(v.clone()),
            _ => Ok(delay_node(e, env)),
        }
    }

    /// Force `v` and everything reachable from it (`--strict`, `deepSeq`).
    pub fn force_deep(&self, v: &Value) -> EvalResult<Value> {
        let mut seen = std::collections::HashSet::new();
        let v = self.force(v)?;
        self.force_deep_inner(&v, &mut seen)?;
        Ok(v)
    }

    fn force_deep_inner(&self, v: &Value, seen: &mut std::collections::HashSet<usize>) -> EvalResult<()> {
        stack::guard(|| match v {
            Value::Attrs(a) => {
                if !seen.insert(a.ptr_id()) {
                    return Ok(());
                }
                for attr in a.iter() {
                    let x = self.force(&attr.value).map_err(|e| {
                        e.add_frame(attr.pos, format!("while evaluating the attribute '{}'", attr.name))
                    })?;
                    self.force_deep_inner(&x, seen)?;
                }
                Ok(())
            }
            Value::List(l) => {
                if !seen.insert(crate::value::Brc::as_ptr(l) as usize) {
                    return Ok(());
                }
                for x in l.iter() {
                    let x = self.force(x)?;
                    self.force_deep_inner(&x, seen)?;
                }
                Ok(())
            }
            _ => Ok(()),
        })
    }

    /// Count a lambda call against `max_call_depth` (per thread).
    #[inline(always)]
    fn enter_call(&self) -> EvalResult<()> {
        let d = CALL_DEPTH.with(Cell::get);
        if d >= self.config.max_call_depth {
            return Err(EvalError::new(ErrorKind::MaxCallDepth));
        }
        CALL_DEPTH.with(|c| c.set(d + 1));
        Ok(())
    }

    #[inline(always)]
    fn leave_call(&self) {
        CALL_DEPTH.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

impl Drop for Evaluator {
    fn drop(&mut self) {
        self.flush_rec();
        let envs = std::mem::take(&mut self.rec_envs.get_mut().unwrap_or_else(|e| e.into_inner()).envs);
        for w in &envs {
            Env::clear_weak(w);
        }
        self.files.get_mut().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// [`Evaluator::delay`] of a node that is not a leaf: a lambda's closure,
/// anything else a thunk.
#[inline(never)]
fn delay_node(e: &Brc<Expr>, env: &Env) -> Value {
    match &**e {
        Expr::Lambda(l) => closure(l, env),
        _ => Thunk::expr(e.clone(), env.clone()),
    }
}

/// The closure of the lambda `l` in `env`.
#[inline]
pub(crate) fn closure(l: &Brc<crate::ir::Lambda>, env: &Env) -> Value {
    Value::Lambda(crate::value::Brc::new_with(|| crate::value::Closure { lambda: l.clone(), env: env.clone() }))
}

#[cold]
#[inline(never)]
pub(crate) fn released() -> EvalError {
    EvalError::other("internal error: variable frame released (evaluator dropped)")
}

pub(crate) fn io_msg(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "No such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "Permission denied".into(),
        _ => ndeploy_store::nar::io_error_text(e),
    }
}

// Access for the cycle collector (`value/collect.rs`).
impl Evaluator {
    /// How many recursive frames are registered or waiting to be (live or
    /// not yet pruned).
    #[cfg(test)]
    pub(crate) fn registered_frames(&self) -> usize {
        let waiting: usize = self.rec_new.iter().map(|s| s.0.lock().unwrap_or_else(|e| e.into_inner()).len()).sum();
        waiting + self.rec_envs.lock().unwrap_or_else(|e| e.into_inner()).envs.len()
    }

    /// How many recursive frames the collector holds (0 without it).
    pub fn held_frames(&self) -> usize {
        self.rec_envs.lock().unwrap_or_else(|e| e.into_inner()).held.as_ref().map_or(0, Vec::len)
    }

    /// The registered recursive frames (weak; dead ones are pruned lazily)
    /// and, when the collector holds them, the held ones.
    pub(crate) fn rec_frames_mut(&mut self) -> (&mut Vec<WeakBrc<crate::value::env::EnvInner>>, &mut Option<Vec<Env>>) {
        self.flush_rec();
        let reg = self.rec_envs.get_mut().unwrap_or_else(|e| e.into_inner());
        (&mut reg.envs, &mut reg.held)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{EvalConfig, Evaluator};
    use crate::io::MemIO;

    const RECURSIVE: &str = "builtins.foldl' (a: b: a + b) 0 (builtins.genList (i: let x = { a = y; }; y = i; in x.a) 50)";

    /// An evaluator made static for the rest of the process registers no
    /// recursive frame (nothing would ever clear them); a dropped one
    /// registers each, and both give the same value.
    #[test]
    fn static_evaluators_register_no_frames() {
        let ev = Evaluator::new(EvalConfig::default(), Arc::new(MemIO::new()));
        let v = ev.eval_str(RECURSIVE).and_then(|v| ev.force_deep(&v)).unwrap();
        assert_eq!(v.known_int(), Some(1225));
        assert!(ev.registered_frames() >= 50, "{}", ev.registered_frames());
        let ev = Evaluator::new(EvalConfig::default(), Arc::new(MemIO::new())).into_static();
        let v = ev.eval_str(RECURSIVE).and_then(|v| ev.force_deep(&v)).unwrap();
        assert_eq!(v.known_int(), Some(1225));
        assert_eq!(ev.registered_frames(), 0);
    }
}
