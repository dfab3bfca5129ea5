//! Evaluating a fleet: one shared evaluator, hosts in parallel.
//!
//! Design: a [`Fleet`] holds, on one [`Evaluator`] (one heap), the values of
//! `nix/fleet.nix`'s `nodes` and `configurations` applied to the fleet's
//! source. Every host is one attribute of `nodes`; evaluating a host forces
//! only its own attribute path (`nodes.<host>.deployment`, `.toplevel`'s
//! `drvPath`/`outPath`, or `configurations.<host>.<--attr path>`), so what
//! hosts share — imported files, the module library, the package set — is a
//! thunk forced once for all of them (the evaluator's thunks are
//! thread-safe: a second thread meeting a thunk under evaluation evaluates
//! it too and the first result wins, so no thread ever waits for another).
//!
//! [`Fleet::evaluate`] runs the hosts on a rayon pool of `jobs` threads (one
//! task per host, large stacks) and hands each [`HostResult`] to a callback
//! on the calling thread as soon as it is complete, so callers can stream.
//! A host's evaluation error becomes that host's result; the others go on.
//! Result contents do not depend on `jobs` or on completion order.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use ndeploy_eval::value::collect::epoch::{HostThunks, Quiescence};
use ndeploy_eval::value::{Env, Thunk};
use ndeploy_eval::{ErrorKind, EvalError, EvalResult, Evaluator, Value};
use rayon::prelude::*;

use super::report::HostResult;
use super::{FleetError, FleetSource};

/// Stack size of evaluation threads (the evaluator grows it further on
/// demand with `stacker`; this is address space, not memory).
pub const STACK_SIZE: usize = 64 * 1024 * 1024;

/// Loads a flake's outputs (with `inputs`, `outPath`, … as Nix's
/// call-flake does) for a flake reference.
pub type FlakeLoader<'a> = &'a (dyn Fn(&Evaluator, &str) -> EvalResult<Value> + Sync);

/// What to evaluate for every host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `config.system.build.toplevel`'s `drvPath` and `outPath`.
    Toplevel,
    /// An attribute path under the host's evaluated configuration
    /// (`config.networking.hostName`), printed as JSON.
    Attr(Vec<String>),
}

/// A host's deployment settings (`deployment` of `nix/fleet.nix`'s nodes).
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub target_host: Option<String>,
    pub tags: Vec<String>,
    /// Every field, as plain JSON.
    pub json: serde_json::Value,
}

/// A fleet on one evaluator: the host names and, lazily, the function
/// giving one host's values.
pub struct Fleet<'e> {
    ev: &'e Evaluator,
    parts: FleetParts,
}

/// A fleet's values without the evaluator borrow ([`Fleet::detach`]), so
/// that the evaluator can be borrowed mutably (to collect cycles) while
/// the fleet's shared values stay alive; [`Fleet::attach`] goes back.
pub struct FleetParts {
    /// `fleet.nix`'s `host source`: name → `{ node; configuration; }`,
    /// evaluated afresh for every host (nothing of a finished host stays
    /// reachable from the fleet, so the collector can free it); what hosts
    /// share (package set, host names) is computed once, in its closure.
    host_fn: Value,
    expr_args: Value,
    hosts: Vec<String>,
}

/// `--arg NAME EXPR` / `--argstr NAME STRING` for fleet files that are
/// functions (as `nix-instantiate` passes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetArg {
    Expr(String),
    Str(String),
}

/// A flake's `colmenaHive` output (colmena's `makeHive`: evaluated
/// configurations in `nodes`) counts as `nixosConfigurations` entries;
/// `nixosConfigurations` of the same name win.
const COLMENA_HIVE: &str = "if builtins.isAttrs source0 && source0 ? colmenaHive && source0.colmenaHive ? nodes \
    then source0 // { nixosConfigurations = source0.colmenaHive.nodes // (source0.nixosConfigurations or { }); } \
    else source0";

/// Quote `s` as a Nix string literal.
pub fn nix_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Force `v` and select attribute `name` (an error names the attribute).
pub fn select(ev: &Evaluator, v: &Value, name: &str) -> EvalResult<Value> {
    match ev.force(v)? {
        Value::Attrs(a) => match a.get_str(name) {
            Some(x) => Ok(x.clone()),
            None => Err(EvalError::new(ErrorKind::MissingAttr(name.to_string()))),
        },
        other => Err(EvalError::type_error(other.type_desc(), "a set")),
    }
}

/// Force `v` to a string (ignoring its context).
pub fn force_string(ev: &Evaluator, v: &Value) -> EvalResult<String> {
    match ev.force(v)? {
        Value::String(s) => Ok(s.as_str().to_string()),
        Value::Path(p) => Ok(p.to_string()),
        other => Err(EvalError::type_error(other.type_desc(), "a string")),
    }
}

/// Deep-force `v` and convert it to JSON as `builtins.toJSON` does.
pub fn to_json(ev: &Evaluator, v: &Value) -> EvalResult<serde_json::Value> {
    let v = ev.force_deep(v)?;
    let text = ndeploy_eval::builtins::to_json_string(ev, &v)?;
    serde_json::from_str(&text).map_err(|e| EvalError::other(format!("internal error: invalid JSON from toJSON: {e}")))
}

/// The value of a fleet source: a flake's outputs (through `flake`), or a
/// file's value, called with `{ }` if it is a function.
pub fn load_source(ev: &Evaluator, source: &FleetSource, flake: Option<FlakeLoader<'_>>) -> Result<Value, FleetError> {
    load_source_with(ev, source, flake, &[])
}

/// [`load_source`], calling a file that is a function with `args` (only
/// those it names, as `nix-instantiate` does, unless it takes any).
pub fn load_source_with(
    ev: &Evaluator,
    source: &FleetSource,
    flake: Option<FlakeLoader<'_>>,
    args: &[(String, FleetArg)],
) -> Result<Value, FleetError> {
    let err = |e| FleetError::eval(source, e);
    match source {
        FleetSource::Flake(r) => match flake {
            Some(load) => load(ev, r).map_err(err),
            None => Err(FleetError::NoFlakeSupport(r.clone())),
        },
        FleetSource::File(p) => {
            let path = p.display().to_string();
            let v = ev.eval_file(&path).map_err(err)?;
            if !v.is_function() {
                return Ok(v);
            }
            let mut b = ndeploy_eval::value::AttrsBuilder::new();
            for (name, arg) in args {
                let value = match arg {
                    FleetArg::Expr(e) => ev.eval_str(e).map_err(err)?,
                    FleetArg::Str(s) => Value::string(s.as_str()),
                };
                b.insert(ndeploy_eval::symbol::Symbol::new(name), value);
            }
            let call = ev
                .eval_str("f: args: let fa = builtins.functionArgs f; in f (if fa == { } then args else builtins.intersectAttrs fa args)")
                .map_err(err)?;
            ev.force(&Thunk::apply(Thunk::apply(call, v), Value::Attrs(b.finish()))).map_err(err)
        }
    }
}

impl<'e> Fleet<'e> {
    /// Apply `library/fleet.nix` to `source` and list the hosts (sorted).
    /// Lists hosts without evaluating any of them.
    pub fn open(ev: &'e Evaluator, library: &Path, source: Value) -> EvalResult<Fleet<'e>> {
        let lib_dir = library.display().to_string();
        let glue = format!(
            "source0: let ndeploy = import {}; source = {COLMENA_HIVE}; in {{ names = builtins.attrNames (ndeploy.fleet.nodes source); host = ndeploy.fleet.host source; exprArgs = {{ nodes = ndeploy.fleet.configurations source; inherit (ndeploy) lib; pkgs = ndeploy.pkgsFor builtins.currentSystem; }}; }}",
            nix_string(&lib_dir),
        );
        let f = ev.eval_str(&glue)?;
        let fleet = Thunk::apply(f, source);
        let hosts = match ev.force(&select(ev, &fleet, "names")?)? {
            Value::List(l) => l.iter().map(|n| force_string(ev, n)).collect::<EvalResult<Vec<_>>>()?,
            other => return Err(EvalError::type_error(other.type_desc(), "a list")),
        };
        let host_fn = ev.force(&select(ev, &fleet, "host")?)?;
        let parts = FleetParts { host_fn, expr_args: select(ev, &fleet, "exprArgs")?, hosts };
        Ok(Fleet { ev, parts })
    }

    /// The fleet's values, releasing the evaluator borrow.
    pub fn detach(self) -> FleetParts {
        self.parts
    }

    /// The fleet of `parts` (from [`Fleet::detach`] on the same evaluator).
    pub fn attach(ev: &'e Evaluator, parts: FleetParts) -> Fleet<'e> {
        Fleet { ev, parts }
    }

    pub fn evaluator(&self) -> &'e Evaluator {
        self.ev
    }

    /// Host names, sorted.
    pub fn hosts(&self) -> &[String] {
        &self.parts.hosts
    }

    /// A fresh `{ node; configuration; }` of `host`.
    fn view(&self, host: &str) -> EvalResult<Value> {
        if self.parts.hosts.binary_search_by(|h| h.as_str().cmp(host)).is_err() {
            return Err(EvalError::new(ErrorKind::MissingAttr(host.to_string())));
        }
        Ok(Thunk::apply(self.parts.host_fn.clone(), Value::string(host)))
    }

    fn node(&self, host: &str) -> EvalResult<Value> {
        select(self.ev, &self.view(host)?, "node")
    }

    /// The host's deployment settings.
    pub fn deployment(&self, host: &str) -> EvalResult<Deployment> {
        self.deployment_of(&self.node(host)?)
    }

    fn deployment_of(&self, node: &Value) -> EvalResult<Deployment> {
        let json = to_json(self.ev, &select(self.ev, node, "deployment")?)?;
        let target_host = json.get("targetHost").and_then(|t| t.as_str()).map(String::from);
        let tags = json
            .get("tags")
            .and_then(|t| t.as_array())
            .map(|ts| ts.iter().filter_map(|t| t.as_str().map(String::from)).collect())
            .unwrap_or_default();
        Ok(Deployment { target_host, tags, json })
    }

    /// The host's toplevel `(drvPath, outPath)`.
    pub fn toplevel(&self, host: &str) -> EvalResult<(String, String)> {
        self.toplevel_of(&self.node(host)?)
    }

    fn toplevel_of(&self, node: &Value) -> EvalResult<(String, String)> {
        let toplevel = select(self.ev, node, "toplevel")?;
        let drv = force_string(self.ev, &select(self.ev, &toplevel, "drvPath")?)?;
        let out = force_string(self.ev, &select(self.ev, &toplevel, "outPath")?)?;
        Ok((drv, out))
    }

    /// An attribute path under the host's evaluated configuration, as JSON.
    pub fn attr(&self, host: &str, path: &[String]) -> EvalResult<serde_json::Value> {
        self.attr_of(host, &self.view(host)?, path)
    }

    fn attr_of(&self, host: &str, view: &Value, path: &[String]) -> EvalResult<serde_json::Value> {
        let mut v = match self.ev.force(&select(self.ev, view, "configuration")?)? {
            Value::Null => {
                return Err(EvalError::other(format!(
                    "host '{host}' has no evaluated configuration (a deploy-rs node without a nixosConfigurations entry)"
                )));
            }
            c => c,
        };
        for (i, name) in path.iter().enumerate() {
            v = select(self.ev, &v, name).map_err(|e| match e.kind() {
                ErrorKind::MissingAttr(_) => {
                    EvalError::other(format!("attribute '{}' missing in host '{host}'", path[..=i].join(".")))
                }
                _ => e,
            })?;
        }
        to_json(self.ev, &v)
    }

    /// Evaluate `-E`'s function `{ nodes, lib, pkgs, ... }: …` over the
    /// fleet (as colmena's `eval -E`): `nodes` are the evaluated
    /// configurations, `lib` the module library, `pkgs` ndeploy's package
    /// set for the current system.
    pub fn apply_expr(&self, expr: &str) -> EvalResult<serde_json::Value> {
        let f = self.ev.eval_str(expr)?;
        to_json(self.ev, &Thunk::apply(f, self.parts.expr_args.clone()))
    }

    /// Everything about one host; never fails (errors go into the result).
    pub fn evaluate_host(&self, host: &str, target: &Target, show_trace: bool) -> HostResult {
        let start = Instant::now();
        let mut r = HostResult::new(host);
        let outcome = (|| -> EvalResult<()> {
            let view = self.view(host)?;
            let node = select(self.ev, &view, "node")?;
            let d = self.deployment_of(&node)?;
            r.target_host = d.target_host;
            r.tags = d.tags;
            match target {
                Target::Toplevel => {
                    let (drv, out) = self.toplevel_of(&node)?;
                    r.drv_path = Some(drv);
                    r.out_path = Some(out);
                }
                Target::Attr(path) => r.value = Some(self.attr_of(host, &view, path)?),
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            r.error = Some(e.render(show_trace));
        }
        r.eval_ms = start.elapsed().as_millis() as u64;
        r
    }

    /// Deployment settings of `hosts`, evaluated on `pool` (for selection
    /// by tag), in the order of `hosts`.
    pub fn deployments(&self, pool: &rayon::ThreadPool, hosts: &[String]) -> Vec<EvalResult<Deployment>> {
        pool.install(|| hosts.par_iter().with_max_len(1).map(|h| self.deployment(h)).collect())
    }

    /// Evaluate `hosts` on `pool`, calling `on_result` on this thread with
    /// each result as soon as it is complete (completion order).
    pub fn evaluate(
        &self,
        pool: &rayon::ThreadPool,
        hosts: &[String],
        target: &Target,
        show_trace: bool,
        on_result: impl FnMut(HostResult),
    ) {
        stream_results(
            |tx| {
                pool.install(|| {
                    hosts.par_iter().with_max_len(1).for_each_with(tx, |tx, h| {
                        let _ = tx.send(self.evaluate_host(h, target, show_trace));
                    })
                })
            },
            on_result,
        );
    }
}

/// One round of hosts between two collections ([`Fleet::evaluate_round`]):
/// threads take hosts in order from `next` until `end`, and start no host
/// once the hosts finished in the round made `young_limit` recursive frames
/// (the young heap the next collection walks).
pub struct Round<'a> {
    /// Index of the next host to start (shared across rounds).
    pub next: &'a AtomicUsize,
    /// No host at or after this index starts in this round.
    pub end: usize,
    /// Recursive frames made by the hosts finished in this round.
    pub young: &'a AtomicUsize,
    /// No host starts once `young` reached this (the first always does).
    pub young_limit: usize,
    /// With `Some`, each host is evaluated in a host epoch, and the
    /// thunks it made are pushed here with the index of the pool thread
    /// that made them (for collection by epochs).
    pub epochs: Option<&'a std::sync::Mutex<Vec<(usize, HostThunks)>>>,
    /// With `Some`, each host is evaluated in a host epoch whose nodes its
    /// thread clears as soon as it ends (no collection at the round's
    /// end); `epochs` is then unused.
    pub per_host: Option<&'a HostClearing<'a>>,
}

/// Clearing each host's epoch on its own thread when it ends
/// ([`Quiescence::clear_host`]), and what it cleared.
pub struct HostClearing<'a> {
    pub quiescence: &'a Quiescence,
    /// No host starts once this says so (a breach of the epoch argument,
    /// or cycles in the shared epoch worth a trial deletion).
    pub stop: &'a (dyn Fn() -> bool + Sync),
    pub frames: AtomicUsize,
    pub thunks: AtomicUsize,
    /// Thunks listed (cleared or dead by then) and frames listed.
    pub listed: AtomicUsize,
    /// Hosts whose garbage was deferred (not freed at once: a host node
    /// was read by another thread than its maker).
    pub deferred: AtomicUsize,
    /// Nanoseconds spent clearing and freeing, summed over threads.
    pub nanos: AtomicU64,
    /// Thread CPU time evaluating hosts and clearing them (nanoseconds,
    /// summed over threads; whatever the machine's load).
    pub eval_cpu_ns: AtomicU64,
    pub clear_cpu_ns: AtomicU64,
}

/// This thread's CPU time in nanoseconds (0 if unavailable).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write; the clock id is a
    // constant the kernel knows.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

impl<'a> HostClearing<'a> {
    pub fn new(quiescence: &'a Quiescence, stop: &'a (dyn Fn() -> bool + Sync)) -> HostClearing<'a> {
        HostClearing {
            quiescence,
            stop,
            frames: AtomicUsize::new(0),
            thunks: AtomicUsize::new(0),
            listed: AtomicUsize::new(0),
            deferred: AtomicUsize::new(0),
            nanos: AtomicU64::new(0),
            eval_cpu_ns: AtomicU64::new(0),
            clear_cpu_ns: AtomicU64::new(0),
        }
    }
}

impl Round<'_> {
    /// Claim the next host index, if the round goes on.
    fn claim(&self) -> Option<usize> {
        let mut i = self.next.load(Ordering::Relaxed);
        loop {
            if i >= self.end || self.young.load(Ordering::Relaxed) >= self.young_limit.max(1) {
                return None;
            }
            if let Some(c) = self.per_host
                && (c.stop)()
            {
                return None;
            }
            match self.next.compare_exchange_weak(i, i + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(i),
                Err(now) => i = now,
            }
        }
    }
}

impl Fleet<'_> {
    /// Evaluate the hosts of a [`Round`] on every thread of `pool` (each
    /// takes the next host as soon as it is done with one, so no thread
    /// waits for another before the round ends), each in a host epoch if
    /// the round collects them, calling `on_result` on this thread with each result as soon as it is
    /// complete. Returns when every host started in the round has finished.
    pub fn evaluate_round(
        &self,
        pool: &rayon::ThreadPool,
        hosts: &[String],
        round: &Round<'_>,
        target: &Target,
        show_trace: bool,
        on_result: impl FnMut(HostResult),
    ) {
        stream_results(
            |tx| {
                pool.broadcast(|ctx| {
                    let tx = tx.clone();
                    while let Some(i) = round.claim() {
                        let Some(h) = hosts.get(i) else { break };
                        let before = Env::rec_frames_made();
                        // What the host makes is its own (see chunks.rs):
                        // garbage once it is done.
                        let me = ctx.index();
                        if let Some(c) = round.per_host {
                            let cpu0 = thread_cpu_ns();
                            c.quiescence.enter(me);
                            let epoch = ndeploy_eval::value::collect::epoch::enter_host_listed();
                            let r = self.evaluate_host(h, target, show_trace);
                            let made = epoch.finish_nodes();
                            c.quiescence.leave(me);
                            let cpu1 = thread_cpu_ns();
                            round.young.fetch_add(Env::rec_frames_made().wrapping_sub(before), Ordering::Relaxed);
                            let _ = tx.send(r);
                            // SAFETY: the host's epoch ended on this thread,
                            // after `leave`; every pool thread evaluates
                            // hosts between `enter` and `leave`, and the
                            // driver evaluates nothing during the round.
                            let stats = unsafe { c.quiescence.clear_host(me, made) };
                            c.frames.fetch_add(stats.cleared_frames, Ordering::Relaxed);
                            c.thunks.fetch_add(stats.cleared_thunks, Ordering::Relaxed);
                            c.listed.fetch_add(stats.thunks + stats.frames, Ordering::Relaxed);
                            c.deferred.fetch_add(stats.deferred, Ordering::Relaxed);
                            c.nanos.fetch_add(stats.time.as_nanos() as u64, Ordering::Relaxed);
                            c.eval_cpu_ns.fetch_add(cpu1.saturating_sub(cpu0), Ordering::Relaxed);
                            c.clear_cpu_ns.fetch_add(thread_cpu_ns().saturating_sub(cpu1), Ordering::Relaxed);
                            continue;
                        }
                        let r = match round.epochs {
                            Some(epochs) => {
                                let epoch = ndeploy_eval::value::collect::epoch::enter_host();
                                let r = self.evaluate_host(h, target, show_trace);
                                let made = epoch.finish();
                                epochs.lock().unwrap_or_else(|e| e.into_inner()).push((me, made));
                                r
                            }
                            None => self.evaluate_host(h, target, show_trace),
                        };
                        round.young.fetch_add(Env::rec_frames_made().wrapping_sub(before), Ordering::Relaxed);
                        let _ = tx.send(r);
                    }
                });
            },
            on_result,
        );
    }
}

/// Run `produce` on a helper thread, handing each result it sends to
/// `on_result` on this thread as it arrives; returns when `produce` has
/// returned and every result was handed over.
fn stream_results(produce: impl FnOnce(mpsc::Sender<HostResult>) + Send, mut on_result: impl FnMut(HostResult)) {
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(move || produce(tx));
        for r in rx {
            on_result(r);
        }
    });
}

/// A rayon pool for evaluation: `jobs` threads (0 = one per CPU) with
/// [`STACK_SIZE`] stacks.
pub fn thread_pool(jobs: usize) -> Result<rayon::ThreadPool, FleetError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .stack_size(STACK_SIZE)
        .thread_name(|i| format!("ndeploy-eval-{i}"))
        .build()
        .map_err(|e| FleetError::ThreadPool(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_strings_are_quoted() {
        assert_eq!(nix_string("/a b/\"c\"/${x}/$y\\"), r#""/a b/\"c\"/\${x}/$y\\""#);
        let ev = Evaluator::real();
        let s = "/tmp/x ${y} \"q\" \\ $ \n";
        let v = ev.eval_str(&nix_string(s)).unwrap();
        assert_eq!(force_string(&ev, &v).unwrap(), s);
    }
}
