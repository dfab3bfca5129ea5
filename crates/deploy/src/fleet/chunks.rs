//! Large fleets on one heap: hosts evaluated in chunks, with a cycle
//! collection between chunks.
//!
//! Why: everything acyclic a host leaves behind is freed by reference
//! counting as soon as the host is done, but its module-system evaluation
//! is full of reference cycles (recursive frames, fixpoints) that only the
//! evaluator's cycle collector frees ([`Evaluator::collect`]). The
//! collector needs a stop-the-world point, where no thread evaluates: the
//! end of a chunk. So [`evaluate_in_chunks`] evaluates `chunk` hosts in
//! parallel, waits for them, collects, and goes on; peak memory is the
//! shared part (imported files, the module library, the package set, all
//! evaluated once for the whole fleet) plus about one chunk of hosts.
//!
//! Invariant: between chunks no value of the heap is used by any thread:
//! the pool's work for the chunk has returned (`Fleet::evaluate` returns
//! only when every host's task has finished), the chunk's [`Fleet`] is
//! dropped, and results handed to the caller are plain data
//! ([`HostResult`]). That is what makes the `unsafe` collection sound.

use ndeploy_eval::Evaluator;

use super::report::HostResult;
use super::{Fleet, FleetParts, Target};

/// Default hosts per chunk for `jobs` threads. A collection costs about
/// the garbage it frees (plus a little for what stays alive), so the chunk
/// size hardly changes the total time, only the memory: peak memory is the
/// shared part plus about two chunks of hosts (one evaluating, the previous
/// one being freed). Two hosts per thread keep the threads busy.
pub fn default_chunk(jobs: usize) -> usize {
    (jobs.max(1) * 2).max(4)
}

/// Evaluate `hosts` of the fleet `parts` (see [`Fleet::detach`]) on `ev`
/// in chunks of `chunk` (0: one chunk, never collect), collecting cycles
/// after each chunk; results go to `on_result` as they complete. Returns
/// the parts (still alive: they hold what hosts share).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_in_chunks(
    ev: &mut Evaluator,
    mut parts: FleetParts,
    pool: &rayon::ThreadPool,
    hosts: &[String],
    target: &Target,
    show_trace: bool,
    chunk: usize,
    mut on_result: impl FnMut(HostResult),
) -> FleetParts {
    let chunks: Vec<&[String]> = if chunk == 0 { vec![hosts] } else { hosts.chunks(chunk).collect() };
    let last = chunks.len().saturating_sub(1);
    // The previous chunk's garbage, being freed while the next chunk
    // evaluates; joined before the next collection, so that no thread
    // touches the heap while the collector looks at it.
    let mut freeing: Option<std::thread::JoinHandle<()>> = None;
    for (i, part) in chunks.into_iter().enumerate() {
        let fleet = Fleet::attach(ev, parts);
        fleet.evaluate(pool, part, target, show_trace, &mut on_result);
        parts = fleet.detach();
        if chunk != 0 && i < last {
            if let Some(h) = freeing.take() {
                let _ = h.join();
            }
            let start = std::time::Instant::now();
            // SAFETY: see the module invariant: every pool task of the
            // chunk has finished, the previous garbage is freed, and no
            // thread uses the heap; `parts` and the caller merely hold
            // values.
            let (stats, garbage) = unsafe { ev.collect_deferred(pool.current_num_threads()) };
            if std::env::var_os("NDEPLOY_COLLECT_STATS").is_some() {
                eprintln!("collect after {} hosts: {stats:?} in {:?}", (i + 1) * chunk, start.elapsed());
            }
            // Nothing outside the garbage reaches it: it can be freed
            // while the next chunk evaluates (in place if no thread).
            freeing = std::thread::Builder::new()
                .name("ndeploy-free".into())
                .stack_size(super::evaluate::STACK_SIZE)
                .spawn(move || drop(garbage))
                .ok();
        }
    }
    if let Some(h) = freeing {
        let _ = h.join();
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

    fn run(source: &FleetSource, chunk: usize, jobs: usize) -> (Vec<HostResult>, Evaluator) {
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
        evaluate_in_chunks(&mut ev, parts, &pool, &hosts, &Target::Toplevel, false, chunk, |r| out.push(r));
        out.sort_by(|a, b| a.host.cmp(&b.host));
        (out, ev)
    }

    fn drvs(rs: &[HostResult]) -> Vec<(String, Option<String>, Option<String>)> {
        rs.iter().map(|r| (r.host.clone(), r.drv_path.clone(), r.error.clone())).collect()
    }

    /// Chunked evaluation with collections gives the results of one chunk,
    /// and what stays alive after a collection does not grow with hosts.
    #[test]
    fn chunks_agree_and_memory_does_not_accumulate() {
        let dir = tempfile::tempdir().unwrap();
        let few = synthetic(dir.path(), 3);
        let many = synthetic(dir.path(), 9);
        let (whole, _) = run(&many, 0, 2);
        assert_eq!(whole.len(), 9);
        assert!(whole.iter().all(|r| r.error.is_none() && r.drv_path.is_some()), "{:?}", drvs(&whole));
        let (chunked, mut ev_many) = run(&many, 2, 2);
        assert_eq!(drvs(&chunked), drvs(&whole));
        let (_, mut ev_few) = run(&few, 2, 2);
        // SAFETY: no other thread uses these heaps.
        unsafe {
            ev_many.collect();
            ev_few.collect();
        }
        let (f, m) = (ev_few.live_frames(), ev_many.live_frames());
        assert!(m <= f + f / 10, "{m} frames live after 9 hosts, {f} after 3");
    }
}
