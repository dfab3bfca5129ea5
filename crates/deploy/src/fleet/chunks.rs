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
//! for the hosts still in flight on the others.
//!
//! Invariant: between rounds no value of the heap is used by any thread:
//! the pool's work for the round has returned ([`Fleet::evaluate_round`]
//! returns only when every host it started has finished), the round's
//! [`Fleet`] is dropped, the previous garbage is freed, and results handed
//! to the caller are plain data ([`HostResult`]). That is what makes the
//! `unsafe` collection sound.

use std::sync::atomic::{AtomicUsize, Ordering};

use ndeploy_eval::Evaluator;

use super::evaluate::Round;
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

/// Default young-heap budget per evaluation thread, in recursive frames:
/// about two hosts of the 200-module benchmark fleet (see
/// `benches/fleet/README.md` for the memory and time it gives).
pub const YOUNG_FRAMES_PER_THREAD: usize = 50_000;

/// The default schedule for `jobs` threads.
pub fn default_schedule(jobs: usize) -> Schedule {
    Schedule::YoungFrames(YOUNG_FRAMES_PER_THREAD * jobs.max(2))
}

/// Evaluate `hosts` of the fleet `parts` (see [`Fleet::detach`]) on `ev`
/// in rounds as `schedule` says, collecting cycles after each round;
/// results go to `on_result` as they complete. Returns the parts (still
/// alive: they hold what hosts share).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_in_rounds(
    ev: &mut Evaluator,
    mut parts: FleetParts,
    pool: &rayon::ThreadPool,
    hosts: &[String],
    target: &Target,
    show_trace: bool,
    schedule: Schedule,
    mut on_result: impl FnMut(HostResult),
) -> FleetParts {
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
    loop {
        let start = next.load(Ordering::Relaxed);
        if start >= hosts.len() {
            break;
        }
        let (end, young_limit) = match schedule {
            Schedule::Never => (hosts.len(), usize::MAX),
            Schedule::Hosts(n) => (start.saturating_add(n.max(1)).min(hosts.len()), usize::MAX),
            Schedule::YoungFrames(n) => (hosts.len(), n),
        };
        let young = AtomicUsize::new(0);
        let round = Round { next: &next, end, young: &young, young_limit };
        let fleet = Fleet::attach(ev, parts);
        let round_start = std::time::Instant::now();
        fleet.evaluate_round(pool, hosts, &round, target, show_trace, |r| {
            hosts_ms += r.eval_ms;
            on_result(r)
        });
        rounds_wall += round_start.elapsed().as_secs_f64();
        parts = fleet.detach();
        done = next.load(Ordering::Relaxed).min(hosts.len());
        if schedule == Schedule::Never || done >= hosts.len() {
            continue;
        }
        if let Some(h) = freeing.take() {
            let _ = h.join();
        }
        let started = std::time::Instant::now();
        // SAFETY: see the module invariant: every pool task of the round
        // has finished, the previous garbage is freed, and no thread uses
        // the heap; `parts` and the caller merely hold values.
        let (stats, garbage) = unsafe { ev.collect_deferred(pool.current_num_threads()) };
        collect_wall += started.elapsed().as_secs_f64();
        if report {
            let frames = young.load(Ordering::Relaxed);
            eprintln!("collect after {done} hosts ({frames} young frames): {stats:?} in {:?}", started.elapsed());
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
    if let Some(h) = freeing {
        let _ = h.join();
    }
    if report {
        // A thread waits at a round's end for the hosts still in flight
        // on the others, and during collections (their walk and clearing
        // run on as many threads, but outside the pool).
        let waiting = threads as f64 * rounds_wall - hosts_ms as f64 / 1000.0;
        eprintln!(
            "rounds {rounds_wall:.2} s wall on {threads} threads, hosts {:.2} s, threads waiting at round ends {waiting:.2} s, collections {collect_wall:.2} s wall",
            hosts_ms as f64 / 1000.0
        );
    }
    parts
}

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
        evaluate_in_rounds(&mut ev, parts, &pool, &hosts, &Target::Toplevel, false, schedule, |r| out.push(r));
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
}
