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
//! the registered recursive frames that are still alive (the candidates).
//! 1. Walk everything reachable from the candidates (frame parents and
//!    slots, thunks' results and pending work, closures' frames, sets,
//!    lists, partial applications) and count, for every node, the
//!    references to it from inside the walked graph. Only nodes that more
//!    than one reference points to (plus the candidates) are recorded: a
//!    node with one reference has exactly one referrer and goes with it.
//! 2. A recorded node whose `Arc` strong count (seen before the walk held
//!    it) exceeds its inside count is referenced from outside the graph:
//!    from the evaluator (file cache, builtins), a caller's value, another
//!    thread's root, compiled code's constants, or a native thunk's closure
//!    (those are opaque and not walked, so what they hold looks externally
//!    referenced: conservative). It and everything reachable from it are
//!    live.
//! 3. The rest is garbage: its frames' slots and its thunks' results and
//!    pending work are taken out, which breaks every cycle in it; dropping
//!    those and the collector's own handles frees it all.
//!
//! Invariant (why it is sound): counts and edges are only meaningful if the
//! graph does not change while the collector looks at it. Hence
//! [`Evaluator::collect`] takes `&mut self` (no evaluation through this
//! evaluator can run) and is `unsafe`: its caller promises that no other
//! thread uses (forces, clones, drops) values of this heap meanwhile.
//! Holding values is fine: a held value counts as an outside reference and
//! keeps what it reaches alive. The fleet driver calls it between chunks of
//! hosts, after its worker threads finished the chunk.
//!
//! Cost: time and transient memory are proportional to what is reachable
//! from the candidates (about the whole heap, since frames reach the shared
//! library through their parents); collect between batches of work, not
//! after every evaluation.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Weak};

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
}

impl Evaluator {
    /// Turn the collector on: from now on every recursive frame is held
    /// until a collection proves it garbage. (Without this, a frame that
    /// dies by reference counting can leave behind a cycle of thunks that
    /// no frame leads to any more, which no collection would find.) Call
    /// before evaluating anything.
    pub fn enable_collection(&mut self) {
        let (_, held) = self.rec_frames_mut();
        held.get_or_insert_with(Vec::new);
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
    pub unsafe fn collect(&mut self) -> CollectStats {
        let (weak, held) = self.rec_frames_mut();
        // SAFETY: forwarded from the caller.
        unsafe { collect_frames(weak, held) }
    }

    /// How many registered recursive frames are alive.
    pub fn live_frames(&mut self) -> usize {
        self.rec_frames_mut().0.iter().filter(|w| w.strong_count() > 0).count()
    }
}

/// A reference-counted node of the heap.
#[derive(Clone)]
enum Node {
    Env(Env),
    Thunk(Thunk),
    Attrs(Attrs),
    List(List),
    Closure(Arc<Closure>),
    App(Arc<PrimOpApp>),
}

/// A reference from one node to another.
#[derive(Clone, Copy)]
enum Child<'a> {
    Env(&'a Env),
    Value(&'a Value),
}

impl Child<'_> {
    /// The referenced node's address and strong count, and whether it is
    /// always recorded (recursive frames); `None` for leaves.
    fn key(self) -> Option<(usize, usize, bool)> {
        Some(match self {
            Child::Env(e) => (e.addr(), e.strong_count(), e.is_rec()),
            Child::Value(v) => match v {
                Value::Thunk(t) => (t.id(), t.strong_count(), false),
                Value::Attrs(a) => (a.ptr_id(), a.strong_count(), false),
                Value::List(l) => (Arc::as_ptr(l) as usize, Arc::strong_count(l), false),
                Value::Lambda(c) => (Arc::as_ptr(c) as usize, Arc::strong_count(c), false),
                Value::PrimOpApp(p) => (Arc::as_ptr(p) as usize, Arc::strong_count(p), false),
                Value::Null
                | Value::Bool(_)
                | Value::Int(_)
                | Value::Float(_)
                | Value::String(_)
                | Value::Path(_)
                | Value::PrimOp(_) => return None,
            },
        })
    }

    /// A handle to the referenced node (call only when `key` is `Some`).
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
    /// Call `f` with every reference this node holds.
    fn children(&self, f: &mut dyn FnMut(Child<'_>)) {
        match self {
            Node::Env(e) => {
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
                    Some(Pending::Apply(g, x)) => {
                        f(Child::Value(g));
                        f(Child::Value(x));
                    }
                    // Opaque: what the closure holds looks externally
                    // referenced, so it stays alive.
                    Some(Pending::Native(_)) | None => {}
                }
            }),
            Node::Attrs(a) => a.iter().for_each(|attr| f(Child::Value(&attr.value))),
            Node::List(l) => l.iter().for_each(|v| f(Child::Value(v))),
            Node::Closure(c) => f(Child::Env(&c.env)),
            Node::App(p) => p.args.iter().for_each(|v| f(Child::Value(v))),
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

/// A recorded node: its strong count before the walk, the references to it
/// found inside the walked graph, and whether it is live.
struct Entry {
    node: Node,
    strong: u32,
    internal: u32,
    live: bool,
}

/// A hasher for addresses (SipHash would dominate the walk).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, x: usize) {
        let p = u128::from(x as u64) * 0x9E37_79B9_7F4A_7C15;
        self.0 = (p as u64) ^ ((p >> 64) as u64);
    }
}

type Index = HashMap<usize, u32, BuildHasherDefault<AddrHasher>>;

/// Trial deletion from the live frames in `weak` and `held` (see the
/// module documentation); prunes dead entries from `weak` and keeps only
/// the live frames in `held`.
///
/// # Safety
/// As [`Evaluator::collect`]: nothing else uses the heap meanwhile.
pub(crate) unsafe fn collect_frames(weak: &mut Vec<Weak<EnvInner>>, held: &mut Option<Vec<Env>>) -> CollectStats {
    let mut stats = CollectStats::default();
    let mut index = Index::default();
    let mut entries: Vec<Entry> = Vec::new();
    let mut stack: Vec<Node> = Vec::new();

    // The candidates, recorded before the walk so that references to them
    // found during it are counted. Counts exclude our own handle (the held
    // one, or the one upgraded from the weak registration).
    let held_frames = held.as_mut().map(std::mem::take).unwrap_or_default();
    let mut seen: Index = held_frames.iter().map(|e| (e.addr(), 0)).collect();
    let upgraded: Vec<Env> = weak
        .iter()
        .filter(|w| seen.insert(Weak::as_ptr(w) as usize, 0).is_none())
        .filter_map(Env::upgrade)
        .collect();
    for env in held_frames.into_iter().chain(upgraded) {
        let strong = env.strong_count().saturating_sub(1);
        stats.frames += 1;
        index.insert(env.addr(), entries.len() as u32);
        stack.push(Node::Env(env.clone()));
        entries.push(Entry { node: Node::Env(env), strong: clamp(strong), internal: 0, live: false });
    }
    drop(seen);
    if entries.is_empty() {
        weak.clear();
        return stats;
    }

    // 1. Count the references from inside the walked graph.
    while let Some(n) = stack.pop() {
        stats.visited += 1;
        n.children(&mut |c| {
            let Some((addr, strong, always)) = c.key() else { return };
            if let Some(&i) = index.get(&addr) {
                if let Some(e) = entries.get_mut(i as usize) {
                    e.internal = e.internal.saturating_add(1);
                }
                return;
            }
            let Some(node) = c.node() else { return };
            if strong > 1 || always {
                index.insert(addr, entries.len() as u32);
                entries.push(Entry { node: node.clone(), strong: clamp(strong), internal: 1, live: false });
            }
            stack.push(node);
        });
    }
    stats.recorded = entries.len();

    // 2. Referenced from outside: live, with everything it reaches.
    for e in entries.iter_mut() {
        if e.strong > e.internal {
            e.live = true;
            stack.push(e.node.clone());
        }
    }
    while let Some(n) = stack.pop() {
        n.children(&mut |c| {
            let Some((addr, _, _)) = c.key() else { return };
            match index.get(&addr).and_then(|&i| entries.get_mut(i as usize)) {
                Some(e) if e.live => {}
                Some(e) => {
                    e.live = true;
                    stack.push(e.node.clone());
                }
                // Unrecorded: its only referrer is `n`.
                None => stack.extend(c.node()),
            }
        });
    }

    // 3. The rest is garbage: find its mutable nodes (unrecorded ones too:
    // a cycle may pass through a thunk only one reference points to) and
    // take their contents out.
    let mut mutable = Vec::new();
    stack.extend(entries.iter().filter(|e| !e.live).map(|e| e.node.clone()));
    while let Some(n) = stack.pop() {
        n.children(&mut |c| {
            if let Some((addr, _, _)) = c.key()
                && !index.contains_key(&addr)
            {
                stack.extend(c.node());
            }
        });
        if n.is_mutable() {
            mutable.push(n);
        }
    }
    let mut garbage: Vec<Value> = Vec::new();
    let mut envs: Vec<Env> = Vec::new();
    for n in &mutable {
        match n {
            Node::Env(e) => {
                stats.freed_frames += 1;
                garbage.extend(e.take_rec_slots());
            }
            Node::Thunk(t) => {
                stats.freed_thunks += 1;
                // SAFETY: `t` is unreachable from outside the garbage, and
                // by the caller's promise no other thread uses the heap.
                let (value, pending) = unsafe { t.clear() };
                garbage.extend(value);
                match pending {
                    Some(Pending::Expr(_, env)) => envs.push(env),
                    Some(Pending::Apply(g, x)) => garbage.extend([g, x]),
                    Some(Pending::Native(_)) | None => {}
                }
            }
            _ => {}
        }
    }
    drop(garbage);
    drop(envs);
    drop(mutable);
    if let Some(held) = held {
        held.extend(entries.iter().filter(|e| e.live).filter_map(|e| match &e.node {
            Node::Env(env) if env.is_rec() => Some(env.clone()),
            _ => None,
        }));
    }
    drop(entries);
    weak.retain(|w| w.strong_count() > 0);
    stats
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
