//! Clearing a fleet host's nodes on its own thread as soon as it ends,
//! while other threads go on evaluating other hosts, and freeing them at
//! once.
//!
//! Why clearing is sound: by the epoch induction (module `epoch`), no
//! shared node refers to a host node, and another host's nodes are built
//! from shared nodes and its own, so once host `h` has finished on thread
//! `t`, no other thread can reach `h`'s thunks and frames; `t` takes their
//! contents out (breaking every cycle among them) without a stop-the-world
//! point. Clearing moves a node's contents out bitwise under the thunk's
//! lock or the frame's state word and never writes the cells a reader may
//! be looking at (`Thunk::clear`, `Env::take_rec_slots`); a reader arriving
//! later sees a cleared node and gets an internal error ("thunk released",
//! "variable frame released"), never undefined behaviour.
//!
//! Why freeing at once is sound, *without* relying on the induction (which
//! a bug could breach: some shared node referring to `h`'s nodes, so that
//! another thread reads them). What must not happen is freeing memory that
//! another thread `u` still borrows (holds a `&Value` into, uncounted). Every
//! borrow `u` holds is rooted at a reference `u` counts (on its stack or in
//! its own nodes), through fields of nodes. A node is freed by dropping the
//! garbage only if every counted reference to it is in the garbage, i.e. in
//! the moved-out contents of `h`'s cleared thunks and frames (the garbage is
//! exactly those contents and `t`'s handles), or in nodes freed so. Every
//! other field of a node is immutable and counted, so it keeps what it
//! refers to alive. Hence a borrow of `u` into freed memory passes through
//! a cell of one of `h`'s cleared thunks or recursive frames, read by `u`:
//! a thunk's result or pending work ([`crate::value::Thunk::get_ref`],
//! `get`, `start`) or a frame's slot (`Env::slot`). Those reads are
//! checked (`epoch::is_foreign`): a host node (its `HOST` bit, set when
//! made) read by a thread that is not its maker (its `Brc` owner id: a
//! plain compare, no atomic read-modify-write; `u`'s own nodes and shared
//! nodes pass) increments a process-wide count of *foreign reads* and
//! issues a `SeqCst` fence (`epoch::foreign_read`) before the reader reads
//! the node's state, or before it reads it again and uses only what it
//! read the second time (thunk results, frame slots: the check comes
//! after the state load, on the line it brought in). `t` clears in
//! batches (`sweep.rs`): after clearing a batch it issues a `SeqCst` fence
//! and reads the count, and drops that batch's contents and handles only
//! if the count has not moved since no thread evaluated a host
//! ([`Quiescence::rebase`]). A node freed by dropping batch `k` had every
//! counted reference to it in batches up to `k` (or in nodes freed so), so
//! the cell `u` read belongs to a node cleared before batch `k`'s fence.
//! By the fences' total order, either `t`'s read after that fence sees
//! `u`'s increment (and drops nothing from then on), or `u`'s state read
//! comes after the clear and sees the node cleared (so `u` takes no
//! borrow into the old contents). So `t` frees the garbage at once, on
//! its own thread, while its memory is still in cache and before the next
//! host allocates (the point of this module: deferring one host made each
//! thread hold two hosts' garbage and the next host allocate cold memory,
//! about half of the second thread's extra CPU).
//! `t` itself holds no borrow at a host's end (references into the heap
//! never outlive a host's evaluation), and its reads of its own nodes in
//! later hosts see them cleared.
//!
//! Otherwise (a foreign read happened: never on a fleet whose epochs hold)
//! the garbage not yet dropped is *deferred*: each thread's phase counter is odd while it
//! evaluates a host and even between hosts, and garbage cleared when the
//! other threads' phases were `p` is freed once each of them is even or has
//! moved past `p` (quiescent-state-based reclamation), so every borrow taken
//! before the clearing has ended. Deferral goes on until the driver rebases
//! (the next round, when no thread is in a host and nothing is deferred).
//! Every thread that evaluates on the heap meanwhile must do so between
//! [`Quiescence::enter`] and [`Quiescence::leave`].
//!
//! With one thread, nothing else evaluates on the heap while it clears
//! (the contract of [`Quiescence::clear_host`]), so its garbage is freed
//! at once and reads are not checked: the checks run only while a
//! [`Quiescence`] of several threads exists (a process-wide count). Cost
//! of the check on the evaluation paths: a load of that count and a
//! branch (CLI evaluations, `-j 1`: about half of the +2.2% instructions
//! the full check cost on 10 hosts at `-j 1`); with several threads,
//! reading a thunk then tests a bit of the word beside its state (the
//! same line) and, for host nodes, the owner id in the header; reading a
//! frame's slot tests the `REC` bit of the word it loads anyway first, so
//! fixed frames pay nothing more.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

use super::super::Garbage;
use super::sweep::Sweep;
use super::{HostNodes, RegionStats};

/// Per pool thread: its phase and the garbage it cleared, waiting for the
/// other threads to leave the hosts they were in.
#[repr(align(128))]
#[derive(Default)]
struct Slot {
    phase: AtomicU64,
    limbo: Mutex<VecDeque<Deferred>>,
}

struct Deferred {
    /// The phases of all threads when the garbage was cleared.
    seen: Box<[u64]>,
    /// Held only to be dropped.
    _garbage: Garbage,
}

/// The phases of a pool's threads and their deferred garbage (see the
/// module documentation). Threads are numbered `0..threads` (rayon's
/// thread index).
pub struct Quiescence {
    slots: Box<[Slot]>,
    /// [`super::foreign_reads`] when no thread evaluated a host
    /// ([`Quiescence::new`], [`Quiescence::rebase`]): garbage is freed at
    /// once while the count has not moved.
    base: AtomicUsize,
}

impl Quiescence {
    /// Call while no thread evaluates a host (as [`Quiescence::rebase`]).
    /// With more than one thread, the evaluator checks reads
    /// (`super::foreign_read`) until it is dropped.
    pub fn new(threads: usize) -> Quiescence {
        let threads = threads.max(1);
        if threads > 1 {
            super::CHECKING.fetch_add(1, Ordering::SeqCst);
        }
        Quiescence { slots: (0..threads).map(|_| Slot::default()).collect(), base: AtomicUsize::new(super::foreign_reads()) }
    }

    /// Free at once again after foreign reads: call only while no thread
    /// evaluates a host and nothing is deferred (every borrow taken by a
    /// foreign read has ended with its host).
    pub fn rebase(&self) {
        if self.deferred() == 0 {
            self.base.store(super::foreign_reads(), Ordering::SeqCst);
        }
    }

    /// Thread `me` starts evaluating a host (from now on it may hold
    /// references into host nodes).
    pub fn enter(&self, me: usize) {
        if let Some(s) = self.slots.get(me) {
            s.phase.fetch_add(1, Ordering::SeqCst);
            // Pairs with the fence in `clear_host`: either the clearing
            // thread sees this phase, or this thread sees the cleared
            // nodes' states.
            fence(Ordering::SeqCst);
        }
    }

    /// Thread `me` ends a host (it holds no reference into the heap).
    pub fn leave(&self, me: usize) {
        if let Some(s) = self.slots.get(me) {
            s.phase.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Whether no thread but `me` can still hold a reference taken before
    /// the phases were `seen`.
    fn quiescent_since(&self, me: usize, seen: &[u64]) -> bool {
        self.slots
            .iter()
            .zip(seen)
            .enumerate()
            .all(|(i, (s, &p))| i == me || p % 2 == 0 || s.phase.load(Ordering::SeqCst) != p)
    }

    /// Take the contents out of the nodes of a host that finished on
    /// thread `me` (breaking their cycles), defer freeing them (see the
    /// module documentation), and free what `me` deferred before and no
    /// thread can reach any more. Returns what was cleared.
    ///
    /// # Safety
    /// `nodes` come from a host epoch that ended on this thread (thread
    /// `me` of this [`Quiescence`]) after [`Quiescence::leave`], and every
    /// thread that evaluates on the heap until the deferred garbage is
    /// freed does so between [`Quiescence::enter`] and
    /// [`Quiescence::leave`] on this [`Quiescence`].
    pub unsafe fn clear_host(&self, me: usize, nodes: HostNodes) -> RegionStats {
        let start = std::time::Instant::now();
        let Some(slot) = self.slots.get(me) else {
            // Not a thread of this pool: nothing is cleared (the host's
            // cycles leak; never clear without deferring).
            return RegionStats::default();
        };
        let mut stats = RegionStats { frames: nodes.frames.len(), thunks: nodes.thunks.len(), ..RegionStats::default() };
        // One thread: no other evaluates (the contract), reads unchecked.
        let base = self.base.load(Ordering::Relaxed);
        let unread = move || super::foreign_reads() == base;
        let check: Option<&dyn Fn() -> bool> = if self.slots.len() == 1 { None } else { Some(&unread) };
        let mut sweep = Sweep::new(check);
        let HostNodes { thunks, frames } = nodes;
        // SAFETY: forwarded from the caller (the host ended on this
        // thread); the sweep frees a batch only after its fence and check.
        unsafe {
            sweep.frames(frames);
            sweep.thunks(thunks);
        }
        stats.cleared_frames = sweep.frames;
        stats.cleared_thunks = sweep.thunks_cleared;
        let garbage = sweep.finish();
        // Pairs with the fence in `enter`: either the phases read below
        // show a thread's entry, or that thread sees the nodes cleared.
        fence(Ordering::SeqCst);
        let seen: Box<[u64]> = self.slots.iter().map(|s| s.phase.load(Ordering::SeqCst)).collect();
        let free = {
            let mut limbo = slot.limbo.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(garbage) = garbage {
                stats.deferred = 1;
                limbo.push_back(Deferred { seen, _garbage: garbage });
            }
            let mut free = Vec::new();
            while limbo.front().is_some_and(|d| self.quiescent_since(me, &d.seen)) {
                free.extend(limbo.pop_front());
            }
            free
        };
        drop(free);
        // And what other threads dropped of this thread's nodes (biased
        // reference counts: the owner frees them).
        crate::value::brc::drain();
        stats.time = start.elapsed();
        stats
    }

    /// Free the garbage thread `me` deferred that no other thread can
    /// reach any more: all of it once no thread evaluates a host. Call on
    /// thread `me` (its allocator then frees locally).
    pub fn free_deferred(&self, me: usize) {
        if let Some(slot) = self.slots.get(me) {
            let free = {
                let mut limbo = slot.limbo.lock().unwrap_or_else(|e| e.into_inner());
                let mut free = Vec::new();
                while limbo.front().is_some_and(|d| self.quiescent_since(me, &d.seen)) {
                    free.extend(limbo.pop_front());
                }
                free
            };
            drop(free);
        }
    }

    /// Garbage still deferred, over all threads (0 once every thread
    /// freed its part after the last host).
    pub fn deferred(&self) -> usize {
        self.slots.iter().map(|s| s.limbo.lock().unwrap_or_else(|e| e.into_inner()).len()).sum()
    }
}

impl Drop for Quiescence {
    fn drop(&mut self) {
        if self.slots.len() > 1 {
            super::CHECKING.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
