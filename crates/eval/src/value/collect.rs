//! The cycle collector: frees reference cycles of one evaluator's heap.
//!
//! Values are reference counted (`Arc`), which frees everything acyclic at
//! once. Cycles arise only through the two mutable kinds of node: recursive
//! frames (`let`, `rec { }`, lambdas with defaults: their slots hold thunks
//! that capture the frame) and thunks (a forced thunk's result may contain
//! the thunk itself, as `fix (self: { me = self; })` does). Every other node
//! is built from children that already exist, so it cannot close a cycle.
//!
//! Algorithm: synchronous trial deletion (Bacon and Rajan), started from
//! the recursive frames (the candidates). With [`Evaluator::enable_collection`]
//! every frame is held until a collection proves it garbage: a frame that
//! died by reference counting could leave behind a thunk cycle that no
//! remaining frame leads to.
//! 1. Walk everything reachable from the candidates (frame parents and
//!    slots, thunks' results and pending work, closures' frames, sets,
//!    lists, partial applications) and count, for every node, the
//!    references to it from inside the walked graph (on several threads,
//!    see `walk.rs`). Only nodes with more than one reference (plus the
//!    candidates) are recorded: a node with one reference has exactly one
//!    referrer and is live exactly when its nearest recorded ancestor (its
//!    anchor) is. Thunks forced to values without children are leaves.
//!    A recorded thunk or recursive frame keeps its count in its own
//!    collector word (no lookup: the walk reads that cache line anyway);
//!    other nodes are counted in a table by address. Words are reset
//!    before the collection ends.
//! 2. A recorded node whose `Arc` strong count (seen before the walk held
//!    it) exceeds its inside count is referenced from outside the graph:
//!    from the evaluator (file cache, builtins), a caller's value, another
//!    thread's root, compiled code's constants, or a native thunk's closure
//!    (those are opaque and not walked, so what they hold looks externally
//!    referenced: conservative). It and everything reachable from it are
//!    live.
//! 3. The rest is garbage: its frames' slots and its thunks' results and
//!    pending work are taken out, which breaks every cycle in it; dropping
//!    those and the collector's own handles ([`Garbage`]) frees it all, on
//!    any thread, even while evaluation goes on (nothing outside reaches it).
//!
//! Invariant (why it is sound): counts and edges are only meaningful if the
//! graph does not change while the collector looks at it. Hence
//! [`Evaluator::collect`] takes `&mut self` (no evaluation through this
//! evaluator can run) and is `unsafe`: its caller promises that no other
//! thread uses (forces, clones, drops) values of this heap meanwhile.
//! Holding values is fine: a held value counts as an outside reference and
//! keeps what it reaches alive. Every mistake the walk could make on
//! unexpected input (an opaque reference, a lingering pending work) errs
//! towards "live". The fleet driver calls it between rounds of hosts, after
//! its worker threads finished the round.
//!
//! Cost: time proportional to the nodes reachable from the candidates,
//! i.e. mostly the garbage (in a module-system evaluation nearly everything
//! a host leaves behind is cyclic); collect between batches of work, not
//! after every evaluation. The walk is bound by memory latency (one miss
//! per node, one more per out-of-line slot or element array), so it keeps
//! several edges and nodes in flight with their lines prefetched, and
//! freeing prefetches ahead too.
//!
//! No generations: on the fleet benchmark a collection walks
//! `S + h * hosts` nodes with `S` (the long-lived shared heap reached from
//! the young garbage: library, package set) below 1% of one host's `h`
//! (the shared heap holds almost no recursive frames, and the walk stops
//! at leaves), so starting only from young frames and not descending into
//! old nodes would save next to nothing; it would also miss young cycles
//! through old thunks until a full collection. The cost is the garbage.
//!
//! Known leak: a multi-output derivation's frame is held by its unforced
//! outputs' native thunks (opaque), so stays live.
//!
//! Fleets need no walk for most of their garbage: with epochs
//! (`epoch.rs`) what a finished host made is known to be garbage and is
//! cleared in one pass; trial deletion then only runs for what the shared
//! epoch made, or when the epoch argument was breached.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::value::brc::WeakBrc as Weak;

use crate::eval::Evaluator;
use crate::value::env::EnvInner;
use crate::value::{Attrs, Closure, Env, List, Pending, PrimOpApp, Thunk, Value};

/// What a collection found and freed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CollectStats {
    /// Recursive frames alive before the collection (the candidates).
    pub frames: usize,
    /// Recursive frames found unreachable and cleared.
    pub freed_frames: usize,
    /// Thunks found unreachable and cleared.
    pub freed_thunks: usize,
    /// Nodes the walk visited.
    pub visited: usize,
    /// Nodes recorded (shared nodes and candidates).
    pub recorded: usize,
    /// Recorded nodes found live.
    pub live: usize,
    /// Time of the counting walk, the live marking, and the clearing.
    pub phases: [std::time::Duration; 3],
}

impl Evaluator {
    /// Turn the collector on: from now on every recursive frame is held
    /// until a collection proves it garbage. (Without this, a frame that
    /// dies by reference counting can leave behind a cycle of thunks that
    /// no frame leads to any more, which no collection would find.) Call
    /// before evaluating anything.
    pub fn enable_collection(&mut self) {
        let (weak, held) = self.rec_frames_mut();
        if held.is_none() {
            *held = Some(weak.iter().filter_map(Env::upgrade).collect());
        }
    }

    /// Free the reference cycles of this evaluator's heap that nothing
    /// outside the heap reaches any more (see the module documentation).
    /// Without [`Evaluator::enable_collection`], cycles whose frames all
    /// died are not found.
    ///
    /// # Safety
    /// While this runs, no other thread may use values of this evaluator's
    /// heap (force, clone, drop or read them); merely holding them is fine.
    /// `&mut self` already rules out evaluation through this evaluator.
    /// Nor may another evaluator of the process evaluate meanwhile: the
    /// nodes other threads handed back to their owners are merged here, for
    /// every thread (`value/brc.rs`'s inboxes are process-wide).
    pub unsafe fn collect(&mut self) -> CollectStats {
        // SAFETY: forwarded from the caller.
        let (stats, garbage) = unsafe { self.collect_deferred(1) };
        drop(garbage);
        // SAFETY: as above.
        unsafe { crate::value::brc::drain_all() };
        self.rec_frames_mut().0.retain(|w| w.strong_count() > 0);
        stats
    }

    /// [`Evaluator::collect`] with the counting walk on `threads` threads,
    /// handing back the garbage (its cycles already broken) instead of
    /// freeing it: dropping [`Garbage`] frees it, and may happen on another
    /// thread while evaluation goes on (nothing outside the garbage
    /// reaches it).
    ///
    /// # Safety
    /// As [`Evaluator::collect`].
    pub unsafe fn collect_deferred(&mut self, threads: usize) -> (CollectStats, Garbage) {
        // Nodes whose last reference another thread dropped wait for their
        // owner (`value/brc.rs`) and still hold their children: free them
        // first, or the walk would count their references as outside ones.
        // SAFETY: forwarded from the caller (nothing uses the heap).
        unsafe { crate::value::brc::drain_all() };
        let (weak, held) = self.rec_frames_mut();
        // SAFETY: forwarded from the caller.
        unsafe { collect_frames(weak, held, threads) }
    }

    /// How many registered recursive frames are alive.
    pub fn live_frames(&mut self) -> usize {
        self.rec_frames_mut().0.iter().filter(|w| w.strong_count() > 0).count()
    }
}

/// Unreachable values whose cycles a collection broke; dropping this
/// frees them (on any thread).
#[derive(Default)]
pub struct Garbage {
    values: Vec<Vec<Value>>,
    envs: Vec<Vec<Env>>,
    nodes: Vec<Vec<Node>>,
}

impl Drop for Garbage {
    /// Frees the garbage: the values taken out of its frames and thunks
    /// first (the references between garbage nodes), then the handles (the
    /// last references). Freeing is bound by memory latency, so each
    /// value's node is prefetched a few values ahead.
    fn drop(&mut self) {
        const AHEAD: usize = 8;
        fn drain<T>(v: Vec<T>, addr: impl Fn(&T) -> Option<usize>) {
            let mut it = v.into_iter();
            for x in it.as_slice().iter().take(AHEAD) {
                if let Some(a) = addr(x) {
                    prefetch(a);
                }
            }
            while let Some(x) = it.next() {
                if let Some(a) = it.as_slice().get(AHEAD).and_then(&addr) {
                    prefetch(a);
                }
                drop(x);
            }
        }
        for v in std::mem::take(&mut self.values) {
            drain(v, |x| Child::Value(x).addr_only());
        }
        for v in std::mem::take(&mut self.envs) {
            drain(v, |e| Some(e.addr()));
        }
        for v in std::mem::take(&mut self.nodes) {
            drain(v, |n| Some(n.addr()));
        }
    }
}

impl Garbage {
    /// Add `other`'s values and handles to this garbage.
    pub fn absorb(&mut self, mut other: Garbage) {
        self.values.append(&mut other.values);
        self.envs.append(&mut other.envs);
        self.nodes.append(&mut other.nodes);
    }

    /// Split into `n` parts of about equal size (to be freed on `n`
    /// threads).
    pub fn split(mut self, n: usize) -> Vec<Garbage> {
        let n = n.max(1);
        let mut parts: Vec<Garbage> = (0..n).map(|_| Garbage::default()).collect();
        fn deal<T>(from: Vec<Vec<T>>, parts: &mut [Garbage], field: impl Fn(&mut Garbage) -> &mut Vec<Vec<T>>) {
            let n = parts.len().max(1);
            for v in from {
                let chunk = v.len().div_ceil(n).max(1);
                let mut it = v.into_iter();
                for p in parts.iter_mut() {
                    field(p).push(it.by_ref().take(chunk).collect());
                }
            }
        }
        deal(std::mem::take(&mut self.values), &mut parts, |g| &mut g.values);
        deal(std::mem::take(&mut self.envs), &mut parts, |g| &mut g.envs);
        deal(std::mem::take(&mut self.nodes), &mut parts, |g| &mut g.nodes);
        parts
    }

    /// Nothing to free.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(Vec::is_empty) && self.envs.iter().all(Vec::is_empty) && self.nodes.iter().all(Vec::is_empty)
    }
}

/// A reference-counted node of the heap.
#[derive(Clone)]
enum Node {
    Env(Env),
    Thunk(Thunk),
    Attrs(Attrs),
    List(List),
    Closure(crate::value::Brc<Closure>),
    App(Arc<PrimOpApp>),
}

/// A reference from one node to another.
#[derive(Clone, Copy)]
enum Child<'a> {
    Env(&'a Env),
    Value(&'a Value),
}

/// How the walk treats a referenced node.
enum Kind<'a> {
    /// No node, or one without children (no cycle goes through it).
    Leaf,
    /// A node with its own collector word, and its strong count.
    Word(&'a AtomicU32, usize),
    /// A node counted in the table: address, strong count, and whether
    /// it is always recorded (recursive frames).
    Keyed(usize, usize, bool),
}

impl<'a> Child<'a> {
    /// The referenced node's address, without touching it.
    fn addr_only(self) -> Option<usize> {
        Some(match self {
            Child::Env(e) => e.addr(),
            Child::Value(v) => match v {
                Value::Thunk(t) => t.id(),
                Value::Attrs(a) => a.ptr_id(),
                Value::List(l) => crate::value::Brc::as_ptr(l) as usize,
                Value::Lambda(c) => crate::value::Brc::as_ptr(c) as usize,
                Value::PrimOpApp(p) => Arc::as_ptr(p) as usize,
                _ => return None,
            },
        })
    }

    #[inline]
    fn kind(self) -> Kind<'a> {
        match self {
            Child::Env(e) => match e.gc_word() {
                Some(w) => Kind::Word(w, e.strong_count()),
                None => Kind::Keyed(e.addr(), e.strong_count(), e.is_rec()),
            },
            Child::Value(v) => match v {
                // Forced to a value without children: no cycle goes
                // through it and nothing needs clearing, so it is a leaf
                // (its memory is on the line the count is read from).
                Value::Thunk(t) if t.get_ref().is_some_and(super::drop::is_scalar) => Kind::Leaf,
                Value::Thunk(t) => Kind::Word(t.gc_word(), t.strong_count()),
                Value::Attrs(a) => Kind::Keyed(a.ptr_id(), a.strong_count(), false),
                Value::List(l) => Kind::Keyed(crate::value::Brc::as_ptr(l) as usize, crate::value::Brc::strong_count(l), false),
                Value::Lambda(c) => Kind::Keyed(crate::value::Brc::as_ptr(c) as usize, crate::value::Brc::strong_count(c), false),
                Value::PrimOpApp(p) => Kind::Keyed(Arc::as_ptr(p) as usize, Arc::strong_count(p), false),
                Value::Null
                | Value::Bool(_)
                | Value::Int(_)
                | Value::Float(_)
                | Value::String(_)
                | Value::Path(_)
                | Value::PrimOp(_) => Kind::Leaf,
            },
        }
    }

    /// A handle to the referenced node (`None` for leaves).
    fn node(self) -> Option<Node> {
        Some(match self {
            Child::Env(e) => Node::Env(e.clone()),
            Child::Value(v) => match v {
                Value::Thunk(t) => Node::Thunk(t.clone()),
                Value::Attrs(a) => Node::Attrs(a.clone()),
                Value::List(l) => Node::List(l.clone()),
                Value::Lambda(c) => Node::Closure(c.clone()),
                Value::PrimOpApp(p) => Node::App(p.clone()),
                _ => return None,
            },
        })
    }
}

impl Node {
    fn addr(&self) -> usize {
        match self {
            Node::Env(e) => e.addr(),
            Node::Thunk(t) => t.id(),
            Node::Attrs(a) => a.ptr_id(),
            Node::List(l) => crate::value::Brc::as_ptr(l) as usize,
            Node::Closure(c) => crate::value::Brc::as_ptr(c) as usize,
            Node::App(p) => Arc::as_ptr(p) as usize,
        }
    }

    /// Call `f` with every reference this node holds.
    fn children(&self, f: &mut dyn FnMut(Child<'_>)) {
        match self {
            Node::Env(e) => {
                if let Some(p) = e.parent_env() {
                    prefetch(p.addr());
                }
                e.for_each_slot(prefetch_value);
                if let Some(p) = e.parent_env() {
                    f(Child::Env(p));
                }
                e.for_each_slot(|v| f(Child::Value(v)));
            }
            Node::Thunk(t) => t.with_contents(|value, pending| {
                if let Some(v) = value {
                    f(Child::Value(v));
                }
                match pending {
                    Some(Pending::Expr(_, env)) => f(Child::Env(env)),
                    Some(Pending::Apply(app)) => app.iter().for_each(|v| f(Child::Value(v))),
                    // Opaque: what the closure holds looks externally
                    // referenced, so it stays alive.
                    Some(Pending::Native(_)) | None => {}
                }
            }),
            Node::Attrs(a) => {
                a.iter().for_each(|attr| prefetch_value(&attr.value));
                a.iter().for_each(|attr| f(Child::Value(&attr.value)));
            }
            Node::List(l) => {
                l.iter().for_each(prefetch_value);
                l.iter().for_each(|v| f(Child::Value(v)));
            }
            Node::Closure(c) => f(Child::Env(&c.env)),
            Node::App(p) => p.args.iter().for_each(|v| f(Child::Value(v))),
        }
    }

    /// Ask for the first cache line of the node's out-of-line storage (a
    /// frame's slots, a set's or list's elements), which [`Node::children`]
    /// reads next; the node's own line must be at hand (it only reads the
    /// storage's address from it).
    fn prefetch_storage(&self) {
        let first = match self {
            Node::Env(e) => {
                let mut first = None;
                e.for_each_slot(|v| {
                    first.get_or_insert(v as *const Value as usize);
                });
                first
            }
            Node::Attrs(a) => a.entries().first().map(|x| x as *const _ as usize),
            Node::List(l) => l.first().map(|x| x as *const Value as usize),
            Node::Closure(c) => Some(c.env.addr()),
            Node::App(p) => p.args.first().map(|x| x as *const Value as usize),
            Node::Thunk(_) => None,
        };
        if let Some(a) = first {
            prefetch(a);
        }
    }

    /// The node's collector word, if its kind has one.
    fn word(&self) -> Option<&AtomicU32> {
        match self {
            Node::Thunk(t) => Some(t.gc_word()),
            Node::Env(e) => e.gc_word(),
            _ => None,
        }
    }

    fn is_mutable(&self) -> bool {
        match self {
            Node::Env(e) => e.is_rec(),
            Node::Thunk(_) => true,
            _ => false,
        }
    }
}

/// Ask for the cache line at `addr` (a node about to be visited): the walk
/// is bound by memory latency, one miss per node, and the children of one
/// node can be fetched in parallel.
#[inline]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

#[inline]
fn prefetch_value(v: &Value) {
    if let Some(addr) = Child::Value(v).addr_only() {
        prefetch(addr);
    }
}

/// Trial deletion from the live frames in `weak` and `held` (see the
/// module documentation), counting on `threads` threads; keeps only the
/// live frames in `held`, and hands back the garbage, cycles broken.
///
/// # Safety
/// As [`Evaluator::collect`]: nothing else uses the heap meanwhile.
pub(crate) unsafe fn collect_frames(
    weak: &mut Vec<Weak<EnvInner>>,
    held: &mut Option<Vec<Env>>,
    threads: usize,
) -> (CollectStats, Garbage) {
    let mut stats = CollectStats::default();
    let mut table = walk::Table::new();
    let walkers = threads.clamp(1, 16);
    let mut lists: Vec<walk::Recorded> = (0..walkers).map(|_| Vec::new()).collect();

    // The candidates, recorded before the walk so that references to them
    // found during it are counted. Counts exclude our own handle (the held
    // one, or the one upgraded from the weak registration). When frames are
    // held, every live frame is (see `enable_collection`).
    let candidates: Vec<Env> = match held.as_mut() {
        Some(h) => std::mem::take(h),
        None => weak.iter().filter_map(Env::upgrade).collect(),
    };
    let mut roots = Vec::with_capacity(candidates.len());
    let mut extra = Vec::new();
    for env in candidates {
        let strong = env.strong_count().saturating_sub(1);
        stats.frames += 1;
        let node = Node::Env(env);
        match node.word() {
            // Listed in the list of the walker that starts from it.
            Some(w) => {
                if walk::word::bits(w.load(Ordering::Relaxed)) != 0 {
                    // Held twice: the second handle counts as outside
                    // (conservative); it goes back with the live frames.
                    extra.push(node);
                    continue;
                }
                w.fetch_add(1, Ordering::Relaxed);
                let k = roots.len() % walkers;
                let Some(list) = lists.get_mut(k) else { continue };
                let id = walk::listed_id(k, list.len());
                list.push((node.clone(), clamp(strong)));
                roots.push(Item::Recorded(node, id));
            }
            None => {
                let id = table.insert_candidate(&node, strong);
                roots.push(Item::Recorded(node, id));
            }
        }
    }
    if roots.is_empty() {
        weak.clear();
        return (stats, Garbage::default());
    }

    let t0 = std::time::Instant::now();
    // 1. Count the references from inside the walked graph (in parallel).
    let found = walk::count(&table, roots, lists, walkers > 1);
    let mut lists = Vec::with_capacity(found.len());
    let mut unrecorded_mutable = Vec::with_capacity(found.len());
    for f in found {
        stats.visited += f.visited;
        lists.push(f.recorded);
        unrecorded_mutable.push(f.unrecorded_mutable);
    }
    let mut shards = table.into_shards();
    stats.recorded = shards.iter().map(|s| s.nodes.len()).sum::<usize>() + lists.iter().map(Vec::len).sum::<usize>();

    let t1 = std::time::Instant::now();
    // 2. Referenced from outside: live, with everything it reaches.
    let mut stack: Vec<Node> = Vec::new();
    for (n, strong) in lists.iter().flatten() {
        if let Some(w) = n.word() {
            let x = w.load(Ordering::Relaxed);
            if *strong > walk::word::internal(x) {
                w.store(x | walk::word::LIVE, Ordering::Relaxed);
                stack.push(n.clone());
            }
        }
    }
    for shard in shards.iter_mut() {
        for (k, n) in shard.counts.iter_mut().zip(&shard.nodes) {
            if k.strong > k.internal {
                k.live = true;
                stack.push(n.clone());
            }
        }
    }
    while let Some(node) = stack.pop() {
        node.children(&mut |c| match c.kind() {
            Kind::Leaf => {}
            Kind::Word(w, _) => {
                let x = w.load(Ordering::Relaxed);
                // Unrecorded (0): its only referrer is `node`.
                let recorded = walk::word::bits(x) != 0;
                if !recorded || x & walk::word::LIVE == 0 {
                    if recorded {
                        w.store(x | walk::word::LIVE, Ordering::Relaxed);
                    }
                    stack.extend(c.node());
                }
            }
            Kind::Keyed(addr, strong, always) => {
                let found = if strong == 1 && !always { None } else { walk::lookup(&mut shards, addr) };
                match found {
                    Some((k, n, _)) => {
                        if !k.live {
                            k.live = true;
                            stack.push(n);
                        }
                    }
                    // Unrecorded: its only referrer is `node`.
                    None => stack.extend(c.node()),
                }
            }
        });
    }

    let t2 = std::time::Instant::now();
    let listed_live = |n: &Node| n.word().is_some_and(|w| w.load(Ordering::Relaxed) & walk::word::LIVE != 0);
    stats.live = shards.iter().flat_map(|s| &s.counts).filter(|k| k.live).count()
        + lists.iter().flatten().filter(|(n, _)| listed_live(n)).count();
    // 3. The rest is garbage: take the contents of its frames and thunks
    // out, which breaks every cycle in it; one part per walker, in
    // parallel. Anchors are read before any word is reset.
    let barrier = std::sync::Barrier::new(lists.len());
    let clear_part = |w: usize, unrecorded: &[(Node, walk::Id)]| {
        let mut part = Cleared::default();
        for (n, a) in unrecorded {
            if !walk::is_live(&shards, &lists, *a) {
                part.clear(n);
            }
        }
        barrier.wait();
        for (n, _) in lists.get(w).into_iter().flatten() {
            if !listed_live(n) {
                part.clear(n);
            } else if let Node::Env(env) = n
                && env.is_rec()
            {
                part.live_frames.push(env.clone());
            }
            if let Some(word) = n.word() {
                word.fetch_and(epoch::KEPT, Ordering::Relaxed);
            }
        }
        for (n, k) in shards.iter().skip(w).step_by(lists.len()).flat_map(|s| s.nodes.iter().zip(&s.counts)) {
            if !k.live {
                part.clear(n);
            }
        }
        part
    };
    let parts: Vec<Cleared> = if lists.len() <= 1 {
        unrecorded_mutable.iter().enumerate().map(|(w, u)| clear_part(w, u)).collect()
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = unrecorded_mutable
                .iter()
                .enumerate()
                .map(|(w, u)| {
                    let clear_part = &clear_part;
                    s.spawn(move || clear_part(w, u))
                })
                .collect();
            // Clearing does not panic; if it did, a word could stay stamped.
            handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        })
    };
    stats.phases = [t1 - t0, t2 - t1, t2.elapsed()];
    let mut garbage = Garbage::default();
    if let Some(held) = held.as_mut() {
        let live_table = shards.iter().flat_map(|s| s.nodes.iter().zip(&s.counts)).filter(|(_, k)| k.live).map(|(n, _)| n);
        held.extend(live_table.chain(&extra).filter_map(|n| match n {
            Node::Env(env) if env.is_rec() => Some(env.clone()),
            _ => None,
        }));
    }
    for mut part in parts {
        if let Some(held) = held.as_mut() {
            held.append(&mut part.live_frames);
        }
        stats.freed_frames += part.frames;
        stats.freed_thunks += part.thunks;
        garbage.values.push(part.values);
        garbage.envs.push(part.envs);
    }
    garbage.nodes.push(extra);
    for (u, list) in unrecorded_mutable.into_iter().zip(lists) {
        garbage.nodes.push(u.into_iter().map(|(n, _)| n).collect());
        garbage.nodes.push(list.into_iter().map(|(n, _)| n).collect());
    }
    for shard in shards {
        garbage.nodes.push(shard.nodes);
    }
    (stats, garbage)
}

/// What one part of step 3 took out of the garbage.
#[derive(Default)]
struct Cleared {
    /// Live recursive frames of the part (held again).
    live_frames: Vec<Env>,
    frames: usize,
    thunks: usize,
    values: Vec<Value>,
    envs: Vec<Env>,
}

impl Cleared {
    /// Take the contents of a garbage frame or thunk out.
    fn clear(&mut self, n: &Node) {
        match n {
            Node::Env(e) if e.is_rec() => {
                self.frames += 1;
                self.values.extend(e.take_rec_slots());
            }
            Node::Thunk(t) => {
                self.thunks += 1;
                t.gc_word().fetch_or(epoch::CLEARED, Ordering::Relaxed);
                // SAFETY: `t` is unreachable from outside the garbage, and
                // by the caller's promise no other thread uses the heap.
                unsafe { take_thunk_contents(t, &mut self.values, &mut self.envs) };
            }
            _ => {}
        }
    }
}

/// Take a garbage thunk's result and pending work out into `values` and
/// `envs` (the nodes they refer to prefetched: they are dropped soon).
///
/// # Safety
/// As [`Thunk::clear`]: nothing else reads `t`'s contents meanwhile.
pub(super) unsafe fn take_thunk_contents(t: &Thunk, values: &mut Vec<Value>, envs: &mut Vec<Env>) {
    // SAFETY: forwarded from the caller.
    let (value, pending) = unsafe { t.clear() };
    if let Some(v) = value {
        prefetch_value(&v);
        values.push(v);
    }
    match pending {
        Some(Pending::Expr(_, env)) => {
            prefetch(env.addr());
            envs.push(env);
        }
        Some(Pending::Apply(app)) => values.extend(app),
        Some(Pending::Native(_)) | None => {}
    }
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub mod epoch;
mod walk;

use walk::Item;

#[cfg(test)]
mod tests;
