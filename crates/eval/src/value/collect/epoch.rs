//! Epochs: what a fleet host's evaluation made, told apart from what hosts
//! share, so that a finished host's cycles are freed without a walk.
//!
//! Every evaluation thread is in one of two epochs: *shared* (the default,
//! and everything outside a fleet driver) or *host* (the fleet driver puts
//! a thread in it for the duration of one host: [`enter_host`]). Thunks and
//! recursive frames record the epoch they were made in, as the
//! [`HOST`] bit of their collector word (the collector's counts use the
//! other bits and preserve it). Forcing a shared thunk from a host epoch
//! runs it in the shared epoch ([`enter_thunk`]), so by induction nothing
//! shared ever refers to a host node:
//! - a shared node's children exist when it is made, except a thunk's
//!   result and a recursive frame's slots (filled at once by its maker, in
//!   its maker's epoch);
//! - a shared thunk is evaluated in the shared epoch, from its pending work
//!   (shared, by induction), so its result is built from shared nodes and
//!   nodes made in the shared epoch;
//! - the evaluator's caches that hold values are shared: the value of an
//!   imported file is a thunk made in the shared epoch ([`shared`]), and
//!   every other cache (store paths, fetches, derivation hashes, compiled
//!   code, regexes, symbols) holds no values.
//!
//! So once the hosts of a round are done (nothing runs: the collector's
//! stop-the-world point), every thunk and recursive frame made in a host
//! epoch is garbage, and taking their contents out (a frame's slots, a
//! thunk's result and pending work) breaks every cycle among host nodes
//! (every cycle goes through a mutable edge: a frame's slot or a thunk's
//! result; clearing the frames alone is not enough, as in `let w = { a = [
//! (id w) ]; }`, whose cycle runs through two attribute thunks' results).
//! Recursive frames are found among the evaluator's held frames by their
//! bit; thunks of a host epoch are listed (weakly) per thread when they
//! get a result that can close a cycle (not a scalar: a thunk's pending
//! work only refers to nodes older than the thunk, so every cycle closes
//! through a frame's slot or a thunk's result; the youngest entries of a
//! list are looked at every so often and those that died by counting are
//! dropped, so that their memory is reused while in cache) and handed over
//! when the host ends ([`HostEpoch::finish`]). That is
//! [`crate::Evaluator::clear_host_epochs`]: one pass over those lists, no
//! counting walk, no live marking; reference counting frees the rest.
//!
//! A breach of the induction is detected where it would start: a host
//! thunk forced in the shared epoch counts as a [`violations`]; the fleet
//! driver then collects that round with the trial-deletion collector
//! instead, which is always sound. (A cleared frame or thunk that were
//! reached anyway would give an internal error ("variable frame released",
//! "thunk released": [`CLEARED`]), never undefined behaviour: clearing
//! happens only while nothing evaluates.)
//! The argument also says that no host reaches another host's nodes (they
//! are built from shared nodes and the host's own), so a host's nodes can
//! be cleared by its thread as soon as it ends, while other threads go on
//! evaluating: [`enter_host_listed`] lists the host's recursive frames too
//! (not registered with the evaluator), and [`Quiescence::clear_host`]
//! clears them with its thunks and frees them at once, unless another
//! thread read a host node's contents ([`is_foreign`], on the evaluator's
//! reads of thunks and recursive frames), which defers the frees until no
//! other thread can hold a reference taken before (see its module: never
//! undefined behaviour, even after a breach).
//! Tests check the argument on real fleets: the trial-deletion collector,
//! run at a round's end, must find every host frame garbage
//! ([`crate::Evaluator::host_frames_live_after_collect`]).

use std::cell::{Cell, RefCell};
use crate::value::brc::WeakBrc as Weak;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::value::env::EnvInner;
use crate::value::thunk::ThunkInner;
use crate::value::{Env, Thunk};

/// The bit of a thunk's or recursive frame's collector word that says it
/// was made in a host epoch. Set when the node is made, never changed; the
/// collector's counts and live bit leave it alone.
pub(crate) const HOST: u32 = 1 << 30;

/// The bit of a thunk's collector word that says a collector took its
/// contents out: forcing it is an internal error.
pub(crate) const CLEARED: u32 = 1 << 29;

/// The bits of a collector word that collections keep.
pub(crate) const KEPT: u32 = HOST | CLEARED;

/// Whether a collector took the contents of the thunk with this word out.
#[inline]
pub(crate) fn is_cleared(word: u32) -> bool {
    word & CLEARED != 0
}

thread_local! {
    static IN_HOST: Cell<bool> = const { Cell::new(false) };
    /// Thunks made in this thread's current host epoch.
    static HOST_THUNKS: RefCell<Vec<Weak<ThunkInner>>> = const { RefCell::new(Vec::new()) };
    /// How many of `HOST_THUNKS`' first entries [`forget_dead`] looked at.
    static CHECKED: Cell<usize> = const { Cell::new(0) };
    /// Whether the current host epoch lists its recursive frames (to clear
    /// them when the host ends) instead of registering them.
    static LIST_FRAMES: Cell<bool> = const { Cell::new(false) };
    /// Recursive frames made in this thread's current (listing) host epoch.
    static HOST_FRAMES: RefCell<Vec<Weak<EnvInner>>> = const { RefCell::new(Vec::new()) };
}

/// A recursive frame was made (called by the evaluator before it
/// registers it): in a host epoch that lists its frames, it is listed and
/// not registered (returns true).
#[inline]
pub(crate) fn list_host_frame(env: &Env) -> bool {
    if !LIST_FRAMES.with(Cell::get) || !IN_HOST.with(Cell::get) {
        return false;
    }
    HOST_FRAMES.with(|l| l.borrow_mut().push(env.downgrade()));
    true
}

/// A thunk made in a host epoch gets a result that is not a scalar (called
/// by [`Thunk::end`]): only such thunks need clearing, since a cycle
/// closes through a mutable edge (a frame's slot or a thunk's result; a
/// thunk's pending work only refers to nodes older than the thunk).
#[inline]
pub(crate) fn made_host_thunk(w: Weak<ThunkInner>) {
    HOST_THUNKS.with(|l| {
        let mut l = l.borrow_mut();
        l.push(w);
        if l.len().saturating_sub(CHECKED.with(Cell::get)) >= YOUNG {
            forget_dead(&mut l);
        }
    });
}

/// How many thunks are listed between two looks at the youngest entries
/// ([`forget_dead`]).
const YOUNG: usize = 1024;

/// Drop the weak references of the youngest listed thunks that died by
/// counting meanwhile: their memory (held by the weak reference until the
/// host ends, else) is released while it is still in the cache, and
/// reused by the host's next allocations. Each entry is looked at once, a
/// few hundred nanoseconds' worth of evaluation after it was listed.
#[cold]
#[inline(never)]
fn forget_dead(l: &mut Vec<Weak<ThunkInner>>) {
    let mut i = CHECKED.with(Cell::get).min(l.len());
    while let Some(w) = l.get(i) {
        if w.is_dead() {
            drop(l.swap_remove(i));
        } else {
            i += 1;
        }
    }
    CHECKED.with(|c| c.set(l.len()));
}

mod quiescence;
mod sweep;
pub(crate) use sweep::prefetch_garbage;
pub use quiescence::Quiescence;
#[cfg(test)]
mod tests;

static VIOLATIONS: AtomicUsize = AtomicUsize::new(0);

/// Reads of a host node's contents by a thread that did not make it
/// ([`is_foreign`]); see `quiescence.rs`.
static FOREIGN_READS: AtomicUsize = AtomicUsize::new(0);

/// How many [`Quiescence`]s of more than one thread exist: reads are
/// checked ([`is_foreign`]) only while one does (with one thread, nothing
/// else evaluates on the heap while hosts are cleared, by `clear_host`'s
/// contract).
static CHECKING: AtomicUsize = AtomicUsize::new(0);

/// Whether reads are checked ([`is_foreign`]): the evaluator's inline
/// part of the check, a load of a process-wide word and a branch.
#[inline(always)]
pub(crate) fn checking() -> bool {
    CHECKING.load(Ordering::Relaxed) != 0
}

/// The read check, called (while [`checking`]) by the evaluator when it
/// reads the contents of a thunk (its result or pending work) or of a
/// recursive frame (its slots), with the node's collector word and whether
/// this thread made the node (`mine`, read only for host nodes): whether
/// it is a host node that another thread made. Such a read must be
/// counted with [`foreign_read`] before the state that allows it is read
/// (or read again after it): the count is published (`SeqCst`, then a
/// `SeqCst` fence), the other side of `Quiescence::clear_host`'s fence
/// (see `quiescence.rs`: a host's garbage is freed at once only if no
/// such read happened). Never true on a fleet whose epochs hold (a host's
/// nodes are only reached by its own thread).
#[inline(always)]
pub(crate) fn is_foreign(word: u32, mine: impl FnOnce() -> bool) -> bool {
    word & HOST != 0 && !mine()
}

/// Count a foreign read ([`is_foreign`]) and fence.
#[cold]
#[inline(never)]
pub(crate) fn foreign_read() {
    FOREIGN_READS.fetch_add(1, Ordering::SeqCst);
    std::sync::atomic::fence(Ordering::SeqCst);
}

/// How many times a thread read a host node's contents that another
/// thread made ([`is_foreign`]) since the process started.
pub fn foreign_reads() -> usize {
    FOREIGN_READS.load(Ordering::SeqCst)
}

/// The initial collector word of a thunk or recursive frame made now.
#[inline]
pub(crate) fn word_init() -> u32 {
    if IN_HOST.with(Cell::get) { HOST } else { 0 }
}

/// Whether this thread is in a host epoch.
pub fn in_host() -> bool {
    IN_HOST.with(Cell::get)
}

/// How many times a host node was forced in the shared epoch (a breach of
/// the induction in the module documentation) since the process started.
pub fn violations() -> usize {
    VIOLATIONS.load(Ordering::Relaxed)
}

/// Puts the thread back in the epoch it was in when dropped.
#[must_use]
pub struct EpochGuard {
    prev: bool,
}

impl Drop for EpochGuard {
    fn drop(&mut self) {
        IN_HOST.with(|c| c.set(self.prev));
    }
}

/// One host's epoch on this thread ([`enter_host`]).
#[must_use]
pub struct HostEpoch {
    _guard: EpochGuard,
}

/// The thunks a host epoch made (weakly), for
/// [`crate::Evaluator::clear_host_epochs`].
#[derive(Default)]
pub struct HostThunks(Vec<Weak<ThunkInner>>);

impl HostThunks {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl HostEpoch {
    /// End the epoch; the thunks it made.
    pub fn finish(self) -> HostThunks {
        CHECKED.with(|c| c.set(0));
        HostThunks(HOST_THUNKS.with(|l| std::mem::take(&mut *l.borrow_mut())))
    }
}

impl Drop for HostEpoch {
    fn drop(&mut self) {
        // Not finished (a panic): forget the lists (their cycles leak; never
        // clear what a caller did not hand over).
        let _ = HOST_THUNKS.try_with(|l| l.borrow_mut().clear());
        let _ = CHECKED.try_with(|c| c.set(0));
        let _ = HOST_FRAMES.try_with(|l| l.borrow_mut().clear());
        let _ = LIST_FRAMES.try_with(|c| c.set(false));
    }
}

/// Put this thread in a host epoch (the fleet driver, around one host's
/// evaluation) until [`HostEpoch::finish`], which hands over the thunks it
/// made (its recursive frames are registered with the evaluator, for a
/// collection at a stop-the-world point). Host epochs do not nest.
pub fn enter_host() -> HostEpoch {
    HOST_THUNKS.with(|l| l.borrow_mut().clear());
    CHECKED.with(|c| c.set(0));
    HostEpoch { _guard: EpochGuard { prev: IN_HOST.with(|c| c.replace(true)) } }
}

/// Put this thread in a host epoch that also lists the recursive frames it
/// makes (not registered with the evaluator) until
/// [`HostEpoch::finish_nodes`], for [`Quiescence::clear_host`] when the
/// host ends.
pub fn enter_host_listed() -> HostEpoch {
    HOST_FRAMES.with(|l| l.borrow_mut().clear());
    LIST_FRAMES.with(|c| c.set(true));
    enter_host()
}

/// The thunks and recursive frames a listing host epoch made (weakly).
#[derive(Default)]
pub struct HostNodes {
    thunks: Vec<Weak<ThunkInner>>,
    frames: Vec<Weak<EnvInner>>,
}

impl HostEpoch {
    /// End an epoch of [`enter_host_listed`]; the thunks and frames it made.
    pub fn finish_nodes(self) -> HostNodes {
        let frames = HOST_FRAMES.with(|l| std::mem::take(&mut *l.borrow_mut()));
        let thunks = self.finish().0;
        HostNodes { thunks, frames }
    }
}

/// The epoch hook of forcing a thunk whose collector word is `word`: a
/// shared thunk forced from a host epoch runs in the shared epoch (until
/// the guard is dropped); a host thunk forced in the shared epoch is
/// counted as a violation.
#[inline]
pub(crate) fn enter_thunk(word: u32) -> Option<EpochGuard> {
    let in_host = IN_HOST.with(Cell::get);
    let host_thunk = word & HOST != 0;
    if in_host == host_thunk {
        return None;
    }
    if host_thunk {
        VIOLATIONS.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    IN_HOST.with(|c| c.set(false));
    Some(EpochGuard { prev: true })
}

/// Run `f` in the shared epoch (what it makes is shared: caches).
pub(crate) fn shared<R>(f: impl FnOnce() -> R) -> R {
    let _guard = EpochGuard { prev: IN_HOST.with(|c| c.replace(false)) };
    f()
}

/// What [`crate::Evaluator::clear_host_epochs`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RegionStats {
    /// Recursive frames held before (host and shared).
    pub frames: usize,
    /// Host frames cleared (their slots taken out).
    pub cleared_frames: usize,
    /// Host thunks listed, and those still alive and cleared.
    pub thunks: usize,
    pub cleared_thunks: usize,
    /// Garbage deferred ([`Quiescence::clear_host`]: 1 when its freeing
    /// waits for other threads, 0 when freed at once).
    pub deferred: usize,
    /// Time of the pass.
    pub time: std::time::Duration,
}

fn is_host_frame(env: &crate::value::Env) -> bool {
    env.gc_word().is_some_and(|w| w.load(Ordering::Relaxed) & HOST != 0)
}

/// Calls `f` with each element of `v` in order, prefetching the node at
/// `addr` of the element a few places ahead (the passes are bound by
/// memory latency: one miss per node).
fn each_prefetched<T>(v: &[T], addr: impl Fn(&T) -> Option<usize>, mut f: impl FnMut(&T)) {
    const AHEAD: usize = 8;
    for (i, x) in v.iter().enumerate() {
        if let Some(a) = v.get(i + AHEAD).and_then(&addr) {
            super::prefetch(a);
        }
        f(x);
    }
}

/// Take the result and pending work out of every thunk of `list` still
/// alive (see [`crate::Evaluator::clear_host_epochs`]); returns how many,
/// and the garbage (freed when dropped: best on the thread that made the
/// thunks, whose memory allocator then frees locally).
///
/// # Safety
/// As [`crate::Evaluator::clear_host_epochs`] for the epoch `list` comes
/// from: nothing evaluates on its heap meanwhile, and the epoch finished.
/// (Other lists and the frames may be cleared at the same time on other
/// threads: clearing only takes a node's own contents out.)
pub unsafe fn clear_host_thunks(list: HostThunks) -> (usize, super::Garbage) {
    let mut cleared = super::Cleared::default();
    let mut handles = Vec::with_capacity(list.0.len());
    each_prefetched(&list.0, |w| Some(w.as_ptr() as usize), |w| {
        if let Some(t) = Thunk::upgrade(w) {
            cleared.clear(&super::Node::Thunk(t.clone()));
            handles.push(super::Node::Thunk(t));
        }
    });
    drop(list);
    let n = cleared.thunks;
    (n, super::Garbage { values: vec![cleared.values], envs: vec![cleared.envs], nodes: vec![handles] })
}

impl crate::Evaluator {
    /// Free every cycle made in the host epochs that `thunks` come from
    /// (see the module documentation): take the slots out of every held
    /// recursive frame of a host epoch ([`crate::Evaluator::clear_host_frames`])
    /// and the results and pending work out of every listed thunk still
    /// alive ([`clear_host_thunks`]), and hand them back, with the
    /// handles, as garbage (whose drop frees them, on any thread). Shared
    /// frames stay held for the trial-deletion collector
    /// ([`crate::Evaluator::collect_deferred`]). Needs
    /// [`crate::Evaluator::enable_collection`] (else no frame is held).
    ///
    /// # Safety
    /// As [`crate::Evaluator::collect`] (no other thread uses values of
    /// this heap meanwhile), and every host epoch of this evaluator has
    /// finished, its thunks in `thunks`.
    pub unsafe fn clear_host_epochs(&mut self, thunks: Vec<HostThunks>) -> (RegionStats, super::Garbage) {
        // SAFETY: forwarded from the caller.
        let (mut stats, mut garbage) = unsafe { self.clear_host_frames() };
        let start = std::time::Instant::now();
        for list in thunks {
            stats.thunks += list.len();
            // SAFETY: forwarded from the caller.
            let (n, g) = unsafe { clear_host_thunks(list) };
            stats.cleared_thunks += n;
            garbage.absorb(g);
        }
        stats.time += start.elapsed();
        (stats, garbage)
    }

    /// The frames part of [`crate::Evaluator::clear_host_epochs`]: take
    /// the slots out of every held recursive frame made in a host epoch.
    ///
    /// # Safety
    /// As [`crate::Evaluator::clear_host_epochs`].
    pub unsafe fn clear_host_frames(&mut self) -> (RegionStats, super::Garbage) {
        let start = std::time::Instant::now();
        let mut stats = RegionStats::default();
        let mut cleared = super::Cleared::default();
        let (_, held) = self.rec_frames_mut();
        if let Some(held) = held.as_mut() {
            let all = std::mem::take(held);
            stats.frames = all.len();
            each_prefetched(&all, |e| Some(e.addr()), |env| {
                if is_host_frame(env) {
                    cleared.clear(&super::Node::Env(env.clone()));
                    cleared.envs.push(env.clone());
                } else {
                    held.push(env.clone());
                }
            });
        }
        stats.cleared_frames = cleared.frames;
        stats.time = start.elapsed();
        (stats, super::Garbage { values: vec![cleared.values], envs: vec![cleared.envs], nodes: Vec::new() })
    }

    /// Test aid for the epoch argument: run the trial-deletion collector
    /// (on `threads` threads), free its garbage, and count what survived of
    /// the host epochs: host frames still held (found live) and thunks of
    /// `thunks` still alive. Both must be 0 once every host has finished.
    ///
    /// # Safety
    /// As [`crate::Evaluator::collect`].
    pub unsafe fn host_nodes_live_after_collect(&mut self, threads: usize, thunks: &[HostThunks]) -> (usize, super::CollectStats) {
        // SAFETY: forwarded from the caller.
        let (stats, garbage) = unsafe { self.collect_deferred(threads) };
        drop(garbage);
        // SAFETY: as above (what the drop handed to other threads' owners).
        unsafe { crate::value::brc::drain_all() };
        let (_, held) = self.rec_frames_mut();
        let frames = held.as_ref().map_or(0, |h| h.iter().filter(|e| is_host_frame(e)).count());
        let thunks = thunks.iter().flat_map(|l| &l.0).filter(|w| w.strong_count() > 0).count();
        (frames + thunks, stats)
    }
}
