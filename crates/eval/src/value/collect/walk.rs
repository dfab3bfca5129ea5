//! The counting walk of the collector (step 1), on several threads.
//!
//! A node with more than one reference (or a candidate) is *recorded*: it
//! gets a count of the references to it found inside the walked graph.
//! Thunks and recursive frames keep that count in their own collector word
//! (see [`word`]): the
//! first walker to reach one stamps it with a compare-and-swap and lists it
//! in its own [`Recorded`] list, later ones add one — a few instructions on
//! a cache line the walk reads anyway. Other recorded nodes (other frames,
//! sets, lists, closures) live in a [`Table`] sharded by address: each shard is a
//! map address → local index plus the nodes and their [`Counts`], behind
//! its own lock.
//!
//! A node is walked by exactly one thread: a recorded node by the thread
//! that recorded it (first sight, under the shard lock or by winning the
//! stamp), an unrecorded one (a single reference) by the thread that walks
//! its only referrer. So every edge inside the walked graph is counted
//! exactly once, whatever the interleaving.
//!
//! Strong counts are read before the walk holds a node, and nothing else
//! changes counts meanwhile (the collector's contract), so the recorded
//! count is the node's references from the heap: from inside the walked
//! graph (counted) and from outside (the difference).

use std::collections::{HashMap, VecDeque};
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Child, Kind, Node, clamp};

/// The collector word of a node that has one: besides the bits kept
/// across collections ([`super::epoch::KEPT`]: the epoch bit, set when
/// the node is made, and the cleared mark), 0 when not recorded;
/// recorded: `1 + internal references`, with [`word::LIVE`] once found
/// live. Every stamped word is reset (to its kept bits) before the
/// collection ends (all of them are listed). The count cannot reach the
/// kept bits: that would take 2^29 references to one node (8 GB of
/// values).
pub(super) mod word {
    use super::super::epoch::KEPT;

    /// Set on a recorded node found live (step 2).
    pub(crate) const LIVE: u32 = 1 << 31;

    /// The word without the epoch bit: 0 when not recorded.
    #[inline]
    pub(crate) fn bits(w: u32) -> u32 {
        w & !KEPT
    }

    /// The internal references counted in a recorded word.
    pub(crate) fn internal(w: u32) -> u32 {
        (w & !(LIVE | KEPT)).saturating_sub(1)
    }
}

/// A recorded node's strong count before the walk, the references to it
/// found inside the walked graph, and whether it is live.
pub(super) struct Counts {
    pub(super) strong: u32,
    pub(super) internal: u32,
    pub(super) live: bool,
}

/// A recorded node, as an id: in a walker's [`Recorded`] list (top bit
/// set: `1 << 63 | walker << 32 | index`) or in the table (`shard << 32 |
/// index`).
pub(super) type Id = u64;

const LISTED: u64 = 1 << 63;

/// Work of a walk: a recorded node with its id, or an unrecorded one with
/// the id of its nearest recorded ancestor (its *anchor*: an unrecorded
/// node has one referrer, so it is live exactly when its anchor is).
pub(super) enum Item {
    Recorded(Node, Id),
    Unrecorded(Node, Id),
}

/// Nodes recorded through their own word by one walker, with their strong
/// counts before the walk.
pub(super) type Recorded = Vec<(Node, u32)>;

/// What one walker found.
#[derive(Default)]
pub(super) struct Found {
    pub(super) visited: usize,
    /// Recorded through their word, by this walker.
    pub(super) recorded: Recorded,
    /// Unrecorded thunks and recursive frames with their anchors.
    pub(super) unrecorded_mutable: Vec<(Node, Id)>,
}

/// A hasher for addresses (SipHash would dominate the walk).
#[derive(Default)]
pub(super) struct AddrHasher(u64);

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

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// One shard of recorded nodes.
#[derive(Default)]
pub(super) struct Shard {
    index: Index,
    pub(super) nodes: Vec<Node>,
    pub(super) counts: Vec<Counts>,
}

/// Recorded nodes without a word, by address, sharded.
pub(super) struct Table {
    shards: Vec<Mutex<Shard>>,
}

/// How many nodes the last collection recorded in the table (to size the
/// next one).
static RECORDED_HINT: AtomicUsize = AtomicUsize::new(0);

fn shard_of(addr: usize) -> usize {
    ((addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARD_BITS)) as usize
}

/// The id of local index `i` in shard `s`.
pub(super) fn id(s: usize, i: usize) -> Id {
    ((s as u64) << 32) | (i as u64 & 0xffff_ffff)
}

/// The id of entry `i` of walker `w`'s list.
pub(super) fn listed_id(w: usize, i: usize) -> Id {
    LISTED | id(w, i)
}

fn split(id: Id) -> (usize, usize) {
    (((id & !LISTED) >> 32) as usize, (id & 0xffff_ffff) as usize)
}

impl Table {
    pub(super) fn new() -> Table {
        let per_shard = RECORDED_HINT.load(Ordering::Relaxed) / SHARDS;
        let shards = (0..SHARDS)
            .map(|_| {
                let mut s = Shard::default();
                s.index.reserve(per_shard);
                Mutex::new(s)
            })
            .collect();
        Table { shards }
    }

    /// Record a candidate without a word (before the walk starts).
    pub(super) fn insert_candidate(&mut self, node: &Node, strong: usize) -> Id {
        let addr = node.addr();
        let si = shard_of(addr);
        let Some(shard) = self.shards.get_mut(si) else { return u64::MAX };
        let shard = shard.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(&i) = shard.index.get(&addr) {
            return id(si, i as usize);
        }
        let i = shard.nodes.len();
        shard.index.insert(addr, i as u32);
        shard.nodes.push(node.clone());
        shard.counts.push(Counts { strong: clamp(strong), internal: 0, live: false });
        id(si, i)
    }

    pub(super) fn into_shards(self) -> Vec<Shard> {
        let shards: Vec<Shard> = self.shards.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).collect();
        RECORDED_HINT.store(shards.iter().map(|s| s.nodes.len()).sum(), Ordering::Relaxed);
        shards
    }
}

/// A recorded node's counts, node handle and id, by address (table only).
pub(super) fn lookup(shards: &mut [Shard], addr: usize) -> Option<(&mut Counts, Node, Id)> {
    let si = shard_of(addr);
    let shard = shards.get_mut(si)?;
    let i = *shard.index.get(&addr)? as usize;
    let node = shard.nodes.get(i)?.clone();
    Some((shard.counts.get_mut(i)?, node, id(si, i)))
}

/// Whether the recorded node `id` was found live.
pub(super) fn is_live(shards: &[Shard], lists: &[Recorded], id: Id) -> bool {
    let (s, i) = split(id);
    if id & LISTED != 0 {
        let w = lists.get(s).and_then(|l| l.get(i)).and_then(|(n, _)| n.word());
        w.is_some_and(|w| w.load(Ordering::Relaxed) & word::LIVE != 0)
    } else {
        shards.get(s).and_then(|s| s.counts.get(i)).is_some_and(|k| k.live)
    }
}

/// Step 1 from `roots` on one walker per list of `lists` (walker `w`
/// starts from the roots with index `w` modulo the walkers, and appends
/// what it records to `lists[w]`), on threads if `parallel`: counts the
/// references inside the walked graph into the words and `table`.
pub(super) fn count(table: &Table, roots: Vec<Item>, lists: Vec<Recorded>, parallel: bool) -> Vec<Found> {
    let mut parts: Vec<(Vec<Item>, Found)> =
        lists.into_iter().map(|recorded| (Vec::new(), Found { recorded, ..Found::default() })).collect();
    let n = parts.len().max(1);
    for (k, item) in roots.into_iter().enumerate() {
        if let Some(p) = parts.get_mut(k % n) {
            p.0.push(item);
        }
    }
    if !parallel || parts.len() <= 1 {
        return parts.into_iter().enumerate().map(|(w, (stack, found))| walker(table, w, stack, found)).collect();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .enumerate()
            .map(|(w, (stack, found))| s.spawn(move || walker(table, w, stack, found)))
            .collect();
        // A walker does not panic (no indexing, no unwrap); if one did, the
        // words it stamped could not be reset, so the panic goes on.
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// Edges between reading a node's references and looking at the nodes
/// they lead to: each target's cache line is prefetched when the edge is
/// found, and looked at (strong count, word) this many edges later, so
/// that the misses of the walk overlap instead of following one another.
const EDGES_IN_FLIGHT: usize = 16;

/// Nodes between being taken off the stack (their storage prefetched) and
/// being walked.
const NODES_IN_FLIGHT: usize = 8;

fn walker(table: &Table, w: usize, mut stack: Vec<Item>, mut found: Found) -> Found {
    let mut edges: VecDeque<(Child<'static>, Id)> = VecDeque::with_capacity(EDGES_IN_FLIGHT + 1);
    let mut staged: VecDeque<Item> = VecDeque::with_capacity(NODES_IN_FLIGHT + 1);
    loop {
        loop {
            if staged.len() < NODES_IN_FLIGHT
                && let Some(item) = stack.pop()
            {
                let (Item::Recorded(n, _) | Item::Unrecorded(n, _)) = &item;
                n.prefetch_storage();
                staged.push_back(item);
                continue;
            }
            let Some(item) = staged.pop_front() else { break };
            found.visited += 1;
            let (node, anchor, recorded) = match item {
                Item::Recorded(n, id) => (n, id, true),
                Item::Unrecorded(n, a) => (n, a, false),
            };
            node.children(&mut |c| {
                // SAFETY: `c` borrows from the storage of a node of the
                // heap (a frame's slots, a set's or list's elements, a
                // thunk's cell). By the collector's contract nothing
                // changes the heap during the walk, and nothing is freed
                // (the walk's own handles only add to counts, every node
                // stays held by its referrers), so that storage stays in
                // place and valid until the walk is over, which is as long
                // as `edges` lives.
                let c = unsafe { std::mem::transmute::<Child<'_>, Child<'static>>(c) };
                if edges.len() >= EDGES_IN_FLIGHT
                    && let Some((c0, a0)) = edges.pop_front()
                {
                    visit(table, w, &mut stack, &mut found.recorded, a0, c0);
                }
                edges.push_back((c, anchor));
            });
            if !recorded && node.is_mutable() {
                found.unrecorded_mutable.push((node, anchor));
            }
        }
        match edges.pop_front() {
            Some((c, a)) => visit(table, w, &mut stack, &mut found.recorded, a, c),
            None => break,
        }
    }
    found
}

/// Count one edge to `c`, from a node whose anchor is `anchor`.
#[inline]
fn visit(table: &Table, w: usize, stack: &mut Vec<Item>, recorded: &mut Recorded, anchor: Id, c: Child<'_>) {
    let (addr, strong, always) = match c.kind() {
        Kind::Leaf => return,
        Kind::Word(word, strong) => {
            // Recorded already (by any walker): one more internal reference.
            let x = word.load(Ordering::Relaxed);
            if word::bits(x) != 0 {
                word.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // One reference (this one): not recorded.
            if strong == 1 {
                stack.extend(c.node().map(|n| Item::Unrecorded(n, anchor)));
                return;
            }
            // Stamp it: `1 + this reference`. Only the winner lists it.
            if word.compare_exchange(x, x + 2, Ordering::Relaxed, Ordering::Relaxed).is_err() {
                word.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if let Some(n) = c.node() {
                let id = listed_id(w, recorded.len());
                recorded.push((n.clone(), clamp(strong)));
                stack.push(Item::Recorded(n, id));
            }
            return;
        }
        Kind::Keyed(addr, strong, always) => (addr, strong, always),
    };
    // One reference (this one): not recorded, no lookup needed
    // (recorded candidates reached here have at least two).
    if strong == 1 && !always {
        stack.extend(c.node().map(|n| Item::Unrecorded(n, anchor)));
        return;
    }
    let si = shard_of(addr);
    let Some(shard) = table.shards.get(si) else { return };
    let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
    let shard = &mut *shard;
    match shard.index.entry(addr) {
        Entry::Occupied(e) => {
            if let Some(k) = shard.counts.get_mut(*e.get() as usize) {
                k.internal = k.internal.saturating_add(1);
            }
        }
        Entry::Vacant(v) => {
            let Some(n) = c.node() else { return };
            let i = shard.nodes.len();
            v.insert(i as u32);
            shard.nodes.push(n.clone());
            shard.counts.push(Counts { strong: clamp(strong), internal: 1, live: false });
            stack.push(Item::Recorded(n, id(si, i)));
        }
    }
}
