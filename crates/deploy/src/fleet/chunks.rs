//! Large fleets on one heap: hosts evaluated in rounds, with a cycle
//! collection between rounds.
//!
//! Why: everything acyclic a host leaves behind is freed by reference
//! counting as soon as the host is done, but its module-system evaluation
//! is full of reference cycles (recursive frames, fixpoints) that only the
//! evaluator's cycle collector frees ([`Evaluator::collect`]). The
//! collector needs a stop-the-world point, where no thread evaluates: the
//! end of a round. So [`evaluate_in_rounds`] lets the pool's threads take
//! hosts one after the other until the round's budget is spent, waits for
//! the hosts in flight, collects, and goes on; peak memory is the shared
//! part (imported files, the module library, the package set, all
//! evaluated once for the whole fleet) plus about two rounds of garbage
//! (one being made, the previous one being freed).
//!
//! The budget ([`Schedule`]) is by default the young heap: the recursive
//! frames made by the round's finished hosts (a collection's cost is about
//! the garbage it walks, so rounds of equal garbage make equal pauses, and
//! small hosts share a round). A thread only waits at the end of a round,
//! for the hosts still in flight on the others. (With the default
//! collector, per-host epochs, any schedule but [`Schedule::Never`] means
//! clearing each host when it ends; the budget is not used.)
//!
//! How a host's garbage is collected ([`Collector`]): by default with
//! epochs (`ndeploy_eval::value::collect::epoch`): each host is evaluated
//! in a host epoch, in which every thunk and recursive frame it makes is
//! marked and listed, while what hosts share (imported files, the package
//! set, the library) is evaluated in the shared epoch whichever host
//! forces it first; nothing shared refers to a host's node and no host
//! reaches another's, so once a host ends, its thread takes the contents
//! out of the host's frames and thunks, which frees every cycle the host
//! made, while the other threads go on with their hosts
//! ([`epoch::Quiescence::clear_host`]: no counting walk, no
//! stop-the-world point, no round end to wait at, and the memory is freed
//! by the thread that allocated it, at once). Should the epoch argument
//! ever be breached, clearing stays sound: the evaluator counts reads of
//! a host's nodes by other threads than its own, and after one, freeing
//! is deferred until every other thread has left the host it was in; a
//! cleared node reached anyway is an internal error. So with epochs the hosts run in one round, which
//! only stops for a trial deletion when the shared frames held grew
//! (cycles made in the shared epoch), and for good once a host node was
//! forced in the shared epoch (a breach, counted: trial deletion every
//! round from then on). [`Collector::EpochRounds`] (session 4) clears the
//! round's host epochs at its end instead, while nothing evaluates.
//! [`Collector::Trial`] is the trial-deletion collector every round;
//! [`Collector::Checked`] (tests, `NDEPLOY_EPOCH_CHECK=1`) runs it every
//! round and counts the host frames and thunks it leaves alive, which the
//! epoch argument says are none.
//!
//! Invariant: between rounds no value of the heap is used by any thread:
//! the pool's work for the round has returned ([`Fleet::evaluate_round`]
//! returns only when every host it started has finished), the round's
//! [`Fleet`] is dropped, the previous garbage is freed, and results handed
//! to the caller are plain data ([`HostResult`]). That is what makes the
//! `unsafe` collection sound.

use std::sync::atomic::{AtomicUsize, Ordering};

use ndeploy_eval::Evaluator;
use ndeploy_eval::value::collect::{Garbage, epoch};

use super::evaluate::{HostClearing, Round};
use super::report::HostResult;
use super::{Fleet, FleetParts, Target};

/// When to collect cycles between hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Never (one round: fastest, memory grows with the fleet).
    Never,
    /// After every N hosts.
    Hosts(usize),
    /// Once the hosts finished since the last collection made N recursive
    /// frames (hosts in flight then finish first).
    YoungFrames(usize),
}

/// How the garbage of a round is collected (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Collector {
    /// Each host's epoch cleared by its thread when it ends (trial
    /// deletion when needed).
    #[default]
    Epochs,
    /// The host epochs of a round cleared at its end, while nothing
    /// evaluates (session 4's collector; for comparison).
    EpochRounds,
    /// Trial deletion every round.
    Trial,
    /// Trial deletion every round, counting host frames found live.
    Checked,
}

impl Collector {
    /// The default, [`Collector::Checked`] when `NDEPLOY_EPOCH_CHECK` is
    /// set (test aid), or `NDEPLOY_COLLECTOR` = `epochs` / `trial` /
    /// `checked` / `epoch-rounds` (benchmarks).
    pub fn from_env() -> Collector {
        if std::env::var_os("NDEPLOY_EPOCH_CHECK").is_some_and(|v| !v.is_empty() && v != "0") {
            return Collector::Checked;
        }
        match std::env::var("NDEPLOY_COLLECTOR").as_deref() {
            Ok("trial") => Collector::Trial,
            Ok("checked") => Collector::Checked,
            Ok("epoch-rounds") => Collector::EpochRounds,
            _ => Collector::Epochs,
        }
    }
}

/// What the collections of [`evaluate_in_rounds`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundsReport {
    /// Collections by clearing host frames.
    pub region_clears: usize,
    /// Collections by trial deletion.
    pub trial_collections: usize,
    /// Host frames and thunks the trial-deletion collector left alive at
    /// a round's end ([`Collector::Checked`]; must be 0).
    pub host_frames_live: usize,
    /// Host nodes forced in the shared epoch during the rounds (must be 0).
    pub violations: usize,
}

/// Default young-heap budget per evaluation thread, in recursive frames:
/// about two hosts of the 200-module benchmark fleet (see
/// `benches/fleet/README.md` for the memory and time it gives).
pub const YOUNG_FRAMES_PER_THREAD: usize = 50_000;

/// The default schedule for `jobs` threads.
pub fn default_schedule(jobs: usize) -> Schedule {
    Schedule::YoungFrames(YOUNG_FRAMES_PER_THREAD * jobs.max(2))
}

/// Evaluate `hosts` of the fleet `parts` (see [`Fleet::detach`]) on `ev`
/// in rounds as `schedule` says, collecting cycles after each round as
/// `collector` says; results go to `on_result` as they complete. Returns
/// the parts (still alive: they hold what hosts share) and what the
/// collections did.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_in_rounds(
    ev: &mut Evaluator,
    mut parts: FleetParts,
    pool: &rayon::ThreadPool,
    hosts: &[String],
    target: &Target,
    show_trace: bool,
    schedule: Schedule,
    collector: Collector,
    mut on_result: impl FnMut(HostResult),
) -> (FleetParts, RoundsReport) {
    // A host's freed memory is reused by the next host, not returned to
    // the OS in between (see `memory.rs`).
    let _purge = super::memory::PurgeDelay::raise();
    let mut report_out = RoundsReport::default();
    let violations_at_start = epoch::violations();
    // Shared frames held after the last trial deletion: when clearing
    // leaves many more, the shared epoch made cycles worth collecting.
    let mut shared_after_trial = 0usize;
    let by_epochs = matches!(collector, Collector::Epochs | Collector::EpochRounds);
    let mut trial_next = !by_epochs;
    let next = AtomicUsize::new(0);
    // The previous round's garbage, being freed while the next round
    // evaluates; joined before the next collection, so that no thread
    // touches the heap while the collector looks at it.
    let mut freeing: Option<std::thread::JoinHandle<()>> = None;
    let mut done = 0;
    let report = std::env::var_os("NDEPLOY_COLLECT_STATS").is_some();
    // Where the time goes (reported with NDEPLOY_COLLECT_STATS): rounds'
    // wall time, hosts' wall time summed, collections' wall time.
    let (mut rounds_wall, mut hosts_ms, mut collect_wall) = (0.0f64, 0u64, 0.0f64);
    let threads = pool.current_num_threads();
    let quiescence = epoch::Quiescence::new(threads);
    let (mut host_frames, mut host_thunks, mut host_clear_ns, mut host_deferred) = (0usize, 0usize, 0u64, 0usize);
    let mut host_listed = 0usize;
    let (mut eval_cpu_ns, mut clear_cpu_ns) = (0u64, 0u64);
    loop {
        let start = next.load(Ordering::Relaxed);
        if start >= hosts.len() {
            break;
        }
        // Host epochs cost a list entry per thunk: only when a collection
        // uses them.
        let breached = epoch::violations() != violations_at_start;
        let per_host = schedule != Schedule::Never && collector == Collector::Epochs && !breached;
        let (end, young_limit) = match schedule {
            // Each host cleared when it ends: the round goes on unless
            // `stop` says so.
            _ if per_host => (hosts.len(), usize::MAX),
            Schedule::Never => (hosts.len(), usize::MAX),
            Schedule::Hosts(n) => (start.saturating_add(n.max(1)).min(hosts.len()), usize::MAX),
            Schedule::YoungFrames(n) => (hosts.len(), n),
        };
        let young = AtomicUsize::new(0);
        let epochs: std::sync::Mutex<Vec<(usize, epoch::HostThunks)>> = std::sync::Mutex::new(Vec::new());
        let use_epochs = schedule != Schedule::Never
            && (collector == Collector::Checked || (collector == Collector::EpochRounds && !breached));
        let evr: &Evaluator = ev;
        // Stop the per-host round (for a trial deletion) after a breach of
        // the epoch argument or when the shared epoch made many frames.
        let shared_limit = 2 * shared_after_trial + SHARED_FRAMES_SLACK;
        let stop = || epoch::violations() != violations_at_start || evr.held_frames() > shared_limit;
        let clearing = HostClearing::new(&quiescence, &stop);
        // No thread evaluates and nothing is deferred (freed at the last
        // round's end): foreign reads of earlier rounds no longer matter.
        quiescence.rebase();
        let round = Round {
            next: &next,
            end,
            young: &young,
            young_limit,
            epochs: use_epochs.then_some(&epochs),
            per_host: per_host.then_some(&clearing),
        };
        let fleet = Fleet::attach(evr, parts);
        let round_start = std::time::Instant::now();
        fleet.evaluate_round(pool, hosts, &round, target, show_trace, |r| {
            hosts_ms += r.eval_ms;
            on_result(r)
        });
        rounds_wall += round_start.elapsed().as_secs_f64();
        parts = fleet.detach();
        done = next.load(Ordering::Relaxed).min(hosts.len());
        if per_host {
            // No thread evaluates: each frees the garbage it deferred.
            pool.broadcast(|ctx| quiescence.free_deferred(ctx.index()));
            host_frames += clearing.frames.load(Ordering::Relaxed);
            host_thunks += clearing.thunks.load(Ordering::Relaxed);
            host_listed += clearing.listed.load(Ordering::Relaxed);
            host_deferred += clearing.deferred.load(Ordering::Relaxed);
            host_clear_ns += clearing.nanos.load(Ordering::Relaxed);
            eval_cpu_ns += clearing.eval_cpu_ns.load(Ordering::Relaxed);
            clear_cpu_ns += clearing.clear_cpu_ns.load(Ordering::Relaxed);
            if done < hosts.len() {
                // Stopped: collect by trial deletion, then go on.
                trial_next = true;
            }
        }
        if schedule == Schedule::Never || done >= hosts.len() {
            continue;
        }
        if let Some(h) = freeing.take() {
            let _ = h.join();
        }
        let started = std::time::Instant::now();
        // A breach of the epoch argument: clearing would be unsound from
        // now on (a host frame may be reachable from shared values).
        if epoch::violations() != violations_at_start {
            trial_next = true;
        }
        let frames = young.load(Ordering::Relaxed);
        let epochs = epochs.into_inner().unwrap_or_else(|e| e.into_inner());
        let garbage = if trial_next {
            // SAFETY: see the module invariant: every pool task of the
            // round has finished, the previous garbage is freed, and no
            // thread uses the heap; `parts` and the caller merely hold
            // values.
            let (stats, garbage) = unsafe { ev.collect_deferred(pool.current_num_threads()) };
            let (live, garbage) = if collector == Collector::Checked {
                // Freed at once, then whatever is left of the round's
                // host epochs counted (a second trial deletion).
                drop(garbage);
                // SAFETY: as above.
                let lists: Vec<epoch::HostThunks> = epochs.into_iter().map(|(_, l)| l).collect();
                let (live, _) = unsafe { ev.host_nodes_live_after_collect(pool.current_num_threads(), &lists) };
                (live, Garbage::default())
            } else {
                (0, garbage)
            };
            report_out.trial_collections += 1;
            report_out.host_frames_live += live;
            shared_after_trial = stats.frames.saturating_sub(stats.freed_frames);
            trial_next = !by_epochs || epoch::violations() != violations_at_start;
            if report {
                eprintln!("collect after {done} hosts ({frames} young frames): {stats:?}, host frames live {live}, in {:?}", started.elapsed());
            }
            garbage
        } else {
            // SAFETY: as above, and every host of the round has finished
            // (its epoch ended with its evaluation).
            let (mut stats, garbage) = unsafe { ev.clear_host_frames() };
            // Each pool thread clears and frees the thunks it made (its
            // allocator frees them locally, cheaper than from another
            // thread), while nothing evaluates.
            let threads = pool.current_num_threads();
            let mut per_thread: Vec<Vec<epoch::HostThunks>> = (0..threads).map(|_| Vec::new()).collect();
            for (i, list) in epochs {
                stats.thunks += list.len();
                if let Some(p) = per_thread.get_mut(i % threads.max(1)) {
                    p.push(list);
                }
            }
            // The frames' garbage is freed there too, a part per thread.
            let per_thread: Vec<std::sync::Mutex<(Vec<epoch::HostThunks>, Garbage)>> =
                per_thread.into_iter().zip(garbage.split(threads)).map(std::sync::Mutex::new).collect();
            let cleared: Vec<usize> = pool.broadcast(|ctx| {
                let (lists, frames_garbage) = per_thread
                    .get(ctx.index())
                    .map(|m| std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner())))
                    .unwrap_or_default();
                drop(frames_garbage);
                let mut n = 0;
                for list in lists {
                    // SAFETY: as above; clearing other lists and freeing
                    // their garbage at the same time only take out and drop
                    // garbage nodes' own contents.
                    let (k, g) = unsafe { epoch::clear_host_thunks(list) };
                    n += k;
                    drop(g);
                }
                n
            });
            stats.cleared_thunks = cleared.iter().sum();
            report_out.region_clears += 1;
            let shared = stats.frames - stats.cleared_frames;
            trial_next = shared > 2 * shared_after_trial + SHARED_FRAMES_SLACK;
            if report {
                eprintln!("clear after {done} hosts ({frames} young frames): {stats:?}");
            }
            Garbage::default()
        };
        collect_wall += started.elapsed().as_secs_f64();
        if garbage.is_empty() {
            continue;
        }
        // Nothing outside the garbage reaches it: it can be freed while
        // the next round evaluates.
        freeing = std::thread::Builder::new()
            .name("ndeploy-free".into())
            .stack_size(super::evaluate::STACK_SIZE)
            .spawn(move || drop(garbage))
            .ok();
    }
    debug_assert!(done >= hosts.len() || hosts.is_empty());
    report_out.violations = epoch::violations() - violations_at_start;
    if let Some(h) = freeing {
        let _ = h.join();
    }
    debug_assert_eq!(quiescence.deferred(), 0);
    if report {
        eprintln!(
            "hosts' epochs cleared by their threads: {host_frames} frames, {host_thunks} thunks (of {host_listed} nodes listed), {:.2} s summed ({:.2} s CPU), {host_deferred} hosts' garbage deferred (foreign reads {}); hosts evaluated in {:.2} s CPU",
            host_clear_ns as f64 / 1e9,
            clear_cpu_ns as f64 / 1e9,
            epoch::foreign_reads(),
            eval_cpu_ns as f64 / 1e9
        );
        // A thread waits at a round's end for the hosts still in flight
        // on the others, and during collections (their walk and clearing
        // run on as many threads, but outside the pool).
        let waiting = threads as f64 * rounds_wall - hosts_ms as f64 / 1000.0 - host_clear_ns as f64 / 1e9;
        eprintln!(
            "rounds {rounds_wall:.2} s wall on {threads} threads, hosts {:.2} s, threads waiting (idle in rounds) {waiting:.2} s, collections {collect_wall:.2} s wall",
            hosts_ms as f64 / 1000.0
        );
    }
    (parts, report_out)
}

/// Shared frames held beyond twice those after the last trial deletion
/// that make the next round's collection a trial deletion.
const SHARED_FRAMES_SLACK: usize = 20_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetSource;
    use std::path::Path;

    fn synthetic(dir: &Path, hosts: usize) -> FleetSource {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let file = dir.join(format!("fleet{hosts}.nix"));
        let text = format!("import {}/nix/tests/synthetic-fleet.nix {{ hosts = {hosts}; modules = 20; }}\n", repo.display());
        std::fs::write(&file, text).unwrap();
        FleetSource::File(file)
    }

    fn run(source: &FleetSource, schedule: Schedule, jobs: usize) -> (Vec<HostResult>, Evaluator) {
        run_with(source, schedule, Collector::Epochs, jobs)
    }

    fn run_with(source: &FleetSource, schedule: Schedule, collector: Collector, jobs: usize) -> (Vec<HostResult>, Evaluator) {
        let library = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nix");
        let mut ev = Evaluator::real();
        ev.store = Some(std::sync::Arc::new(ndeploy_eval::store::ComputingStore::new("/nix/store")));
        ev.enable_collection();
        let pool = crate::fleet::thread_pool(jobs).unwrap();
        let fleet = pool.install(|| {
            let v = crate::fleet::evaluate::load_source(&ev, source, None).unwrap();
            Fleet::open(&ev, &library, v).unwrap()
        });
        let hosts = fleet.hosts().to_vec();
        let parts = fleet.detach();
        let mut out = Vec::new();
        let (_, report) =
            evaluate_in_rounds(&mut ev, parts, &pool, &hosts, &Target::Toplevel, false, schedule, collector, |r| out.push(r));
        assert_eq!(report.host_frames_live, 0, "{report:?}");
        assert_eq!(report.violations, 0, "{report:?}");
        out.sort_by(|a, b| a.host.cmp(&b.host));
        (out, ev)
    }

    fn drvs(rs: &[HostResult]) -> Vec<(String, Option<String>, Option<String>)> {
        rs.iter().map(|r| (r.host.clone(), r.drv_path.clone(), r.error.clone())).collect()
    }

    /// Evaluation in rounds with collections (by host count or young heap)
    /// gives the results of one round, and what stays alive after a
    /// collection does not grow with hosts.
    #[test]
    fn chunks_agree_and_memory_does_not_accumulate() {
        let dir = tempfile::tempdir().unwrap();
        let few = synthetic(dir.path(), 3);
        let many = synthetic(dir.path(), 9);
        let (whole, _) = run(&many, Schedule::Never, 2);
        assert_eq!(whole.len(), 9);
        assert!(whole.iter().all(|r| r.error.is_none() && r.drv_path.is_some()), "{:?}", drvs(&whole));
        let (chunked, mut ev_many) = run(&many, Schedule::Hosts(2), 2);
        assert_eq!(drvs(&chunked), drvs(&whole));
        // The smallest young budget: a collection after every round of
        // one host per thread.
        let (young, _) = run(&many, Schedule::YoungFrames(1), 2);
        assert_eq!(drvs(&young), drvs(&whole));
        let (_, mut ev_few) = run(&few, Schedule::Hosts(2), 2);
        // SAFETY: no other thread uses these heaps.
        unsafe {
            ev_many.collect();
            ev_few.collect();
        }
        let (f, m) = (ev_few.live_frames(), ev_many.live_frames());
        assert!(m <= f + f / 10, "{m} frames live after 9 hosts, {f} after 3");
    }

    /// The epoch argument on a real fleet, on 4 threads: at every round's
    /// end the trial-deletion collector finds every frame made in a host
    /// epoch garbage (`run_with` asserts it, and that no host node was
    /// forced in the shared epoch); the results equal those of clearing
    /// host frames and of the trial-deletion collector alone.
    #[test]
    fn host_frames_are_garbage_at_round_ends() {
        let dir = tempfile::tempdir().unwrap();
        let many = synthetic(dir.path(), 9);
        let (checked, _) = run_with(&many, Schedule::Hosts(3), Collector::Checked, 4);
        let (trial, _) = run_with(&many, Schedule::Hosts(3), Collector::Trial, 4);
        let (epochs, mut ev) = run_with(&many, Schedule::Hosts(3), Collector::Epochs, 4);
        assert_eq!(drvs(&checked), drvs(&trial));
        assert_eq!(drvs(&epochs), drvs(&trial));
        // After clearing, a trial deletion finds no host frame left.
        // SAFETY: no other thread uses the heap.
        let (live, _) = unsafe { ev.host_nodes_live_after_collect(1, &[]) };
        assert_eq!(live, 0);
    }
}
