//! Sweeping a finished host's listed nodes: clearing them and freeing
//! what they held in small batches, each node touched once while it is in
//! the cache.
//!
//! Design: the lists are consumed in order (the weak references by value).
//! For each node: upgrade its weak reference (a node that died by counting
//! fails, and dropping the weak then releases its memory at once), drop the
//! weak before the strong handle (so the handle's drop frees the node
//! without an atomic merge), take its contents out, and prefetch the nodes
//! those contents refer to. Every [`BATCH`] nodes the batch's contents are
//! dropped (their lines were prefetched meanwhile), then the handles (the
//! cleared nodes, still in cache, freed if nothing else holds them),
//! breadth-first (`value/drop.rs`'s `breadth_first`: what dies is queued
//! with its children's lines prefetched, so the misses of the cascade
//! overlap; depth-first, each level's miss waited for the one above:
//! clearing 20 hosts took 17-20% more CPU). Before
//! (a few hundred nanoseconds' worth of node visits later) the lists were
//! walked three times: the weak references' drops, the contents' drops and
//! the handles' drops, each a cache miss per node.
//!
//! Invariant (what makes freeing batch by batch sound; see `quiescence.rs`
//! for the whole argument): a batch's contents are dropped only after a
//! `SeqCst` fence that follows their clearing and a read of the count of
//! foreign reads ([`Sweep::check`]) that shows no such read since the last
//! rebase. A reader that counted its read before that fence is seen by the
//! read; one that counted after it sees the batch's nodes cleared. Once a
//! read is seen, nothing more is dropped here: the rest of the sweep
//! (this batch included) is handed back as [`Garbage`] to be deferred.
//! With one evaluation thread nothing is checked (nothing else evaluates
//! while a host is cleared).

use std::sync::atomic::{Ordering, fence};

use super::super::{Garbage, Node, prefetch, prefetch_value, take_thunk_contents};
use super::CLEARED;
use crate::value::brc::WeakBrc as Weak;
use crate::value::env::EnvInner;
use crate::value::thunk::{Pending, ThunkInner};
use crate::value::{Env, Thunk, Value};

/// Nodes cleared between two drops of their contents: large enough that
/// the contents' lines (prefetched when taken out) have arrived, small
/// enough that the cleared nodes are still in the first-level cache.
const BATCH: usize = 32;

/// How many list entries ahead a node's line is prefetched.
const AHEAD: usize = 12;

/// A sweep in progress (see the module documentation).
pub(super) struct Sweep<'a> {
    /// Whether freeing at once is still allowed (no foreign read since the
    /// last rebase), called after a `SeqCst` fence; `None`: unchecked (one
    /// evaluation thread).
    check: Option<&'a dyn Fn() -> bool>,
    values: Vec<Value>,
    envs: Vec<Env>,
    thunks: Vec<Thunk>,
    in_batch: usize,
    /// A foreign read was seen: nothing more is freed here.
    deferring: bool,
    pub(super) frames: usize,
    pub(super) thunks_cleared: usize,
}

impl<'a> Sweep<'a> {
    pub(super) fn new(check: Option<&'a dyn Fn() -> bool>) -> Sweep<'a> {
        Sweep {
            check,
            values: Vec::with_capacity(4 * BATCH),
            envs: Vec::with_capacity(2 * BATCH),
            thunks: Vec::with_capacity(BATCH),
            in_batch: 0,
            deferring: false,
            frames: 0,
            thunks_cleared: 0,
        }
    }

    /// Clear the recursive frames of `list` still alive.
    ///
    /// # Safety
    /// As `Quiescence::clear_host`: the frames come from a host epoch that
    /// ended on this thread, whose nodes no other thread reaches (or whose
    /// readers counted their reads: [`Sweep::check`]).
    pub(super) unsafe fn frames(&mut self, list: Vec<Weak<EnvInner>>) {
        each_ahead(list, |w| w.as_ptr().cast::<u8>() as usize, |w| {
            let Some(env) = Env::upgrade(&w) else { return };
            drop(w);
            let slots = env.take_rec_slots();
            self.frames += usize::from(env.is_rec());
            for v in slots.iter() {
                prefetch_value(v);
            }
            self.values.extend(slots.into_vec());
            self.envs.push(env);
            self.node_done();
        });
    }

    /// Clear the thunks of `list` still alive.
    ///
    /// # Safety
    /// As [`Sweep::frames`].
    pub(super) unsafe fn thunks(&mut self, list: Vec<Weak<ThunkInner>>) {
        each_ahead(list, |w| w.as_ptr() as usize, |w| {
            let Some(t) = Thunk::upgrade(&w) else { return };
            drop(w);
            self.thunks_cleared += 1;
            let gc = t.gc_word();
            // A plain load and store, not a locked read-modify-write: the
            // word changes only in a collection (stop-the-world, not now)
            // and here, where every writer sets the same bit over the same
            // others (a host's thunk is listed by the threads that ended
            // it, and cleared by them only).
            gc.store(gc.load(Ordering::Relaxed) | CLEARED, Ordering::Relaxed);
            // SAFETY: forwarded from the caller; the contents are dropped
            // only as the module documentation says.
            unsafe { take_thunk_contents(&t, &mut self.values, &mut self.envs) };
            self.thunks.push(t);
            self.node_done();
        });
    }

    #[inline]
    fn node_done(&mut self) {
        self.in_batch += 1;
        if self.in_batch >= BATCH && !self.deferring {
            self.free_batch();
        }
    }

    /// Drop the batch's contents and handles, unless a foreign read was
    /// seen (then the sweep defers from here on).
    fn free_batch(&mut self) {
        if let Some(check) = self.check {
            // Pairs with the fence of a foreign read (`super::foreign_read`):
            // either `check` sees its count, or that reader sees this
            // batch's nodes cleared.
            fence(Ordering::SeqCst);
            if !check() {
                self.deferring = true;
                return;
            }
        }
        // Breadth-first: what dies with the batch is queued with its
        // children's lines prefetched, so the cascade's misses overlap.
        crate::value::drop::breadth_first(|| {
            crate::value::drop::clear_values(&mut self.values);
            self.envs.clear();
            self.thunks.clear();
        });
        self.in_batch = 0;
    }

    /// End the sweep: the last batch freed, or everything cleared since a
    /// foreign read was seen handed back (to be deferred).
    pub(super) fn finish(mut self) -> Option<Garbage> {
        if !self.deferring {
            self.free_batch();
        }
        if !self.deferring {
            return None;
        }
        let values = std::mem::take(&mut self.values);
        let envs = std::mem::take(&mut self.envs);
        let nodes = std::mem::take(&mut self.thunks).into_iter().map(Node::Thunk).collect();
        Some(Garbage { values: vec![values], envs: vec![envs], nodes: vec![nodes] })
    }
}

/// Calls `f` with each element of `v` in order, by value, prefetching the
/// node at `addr` of the element [`AHEAD`] places further.
fn each_ahead<T>(v: Vec<T>, addr: impl Fn(&T) -> usize, mut f: impl FnMut(T)) {
    for x in v.iter().take(AHEAD) {
        prefetch(addr(x));
    }
    let mut it = v.into_iter();
    while let Some(x) = it.next() {
        if let Some(a) = it.as_slice().get(AHEAD) {
            prefetch(addr(a));
        }
        f(x);
    }
}

/// Prefetch the nodes a queued container's children refer to (called by
/// `value/drop.rs` when it queues them in [`crate::value::drop::breadth_first`]).
pub(crate) fn prefetch_garbage(g: &crate::value::drop::Garbage) {
    use crate::value::drop::Garbage as G;
    match g {
        G::Values(v) => v.0.iter().for_each(prefetch_value),
        G::Attrs(a) => a.iter().for_each(|x| prefetch_value(&x.value)),
        G::Thunk(v, p) => {
            v.iter().for_each(prefetch_value);
            match p {
                Some(Pending::Expr(_, env)) => prefetch(env.addr()),
                Some(Pending::Apply(a)) => a.iter().for_each(prefetch_value),
                Some(Pending::Native(_)) | None => {}
            }
        }
        G::Env(p, vals) => {
            p.iter().for_each(|e| prefetch(e.addr()));
            vals.iter().for_each(prefetch_value);
        }
        G::EnvOne(p, v) => {
            p.iter().for_each(|e| prefetch(e.addr()));
            prefetch_value(v);
        }
    }
}
