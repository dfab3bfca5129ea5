//! The counting walk of the collector (step 1), on several threads.
//!
//! Recorded nodes live in a [`Table`] sharded by address: each shard is a
//! map address → local index plus the nodes and their [`Counts`], behind
//! its own lock, so walkers rarely meet. A node is walked by exactly one
//! thread: a recorded node by the thread that recorded it (first sight,
//! under the shard lock), an unrecorded one (a single reference) by the
//! thread that walks its only referrer. So every edge inside the walked
//! graph is counted exactly once, whatever the interleaving.
//!
//! Strong counts are read before the walk holds a node, and nothing else
//! changes counts meanwhile (the collector's contract), so the recorded
//! count is the node's references from the heap: from inside the walked
//! graph (counted) and from outside (the difference).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Node, clamp};

/// A recorded node's strong count before the walk, the references to it
/// found inside the walked graph, and whether it is live.
pub(super) struct Counts {
    pub(super) strong: u32,
    pub(super) internal: u32,
    pub(super) live: bool,
}

/// Work of a walk: a recorded node with its id, or an unrecorded one with
/// the id of its nearest recorded ancestor (its *anchor*: an unrecorded
/// node has one referrer, so it is live exactly when its anchor is).
pub(super) enum Item {
    Recorded(Node, u64),
    Unrecorded(Node, u64),
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

/// Recorded nodes by address, sharded.
pub(super) struct Table {
    shards: Vec<Mutex<Shard>>,
}

/// How many nodes the last collection recorded (to size the next table).
static RECORDED_HINT: AtomicUsize = AtomicUsize::new(0);

fn shard_of(addr: usize) -> usize {
    ((addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARD_BITS)) as usize
}

/// The id of local index `i` in shard `s`.
pub(super) fn id(s: usize, i: usize) -> u64 {
    ((s as u64) << 32) | (i as u64 & 0xffff_ffff)
}

fn split(id: u64) -> (usize, usize) {
    ((id >> 32) as usize, (id & 0xffff_ffff) as usize)
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

    /// Record a candidate (before the walk starts).
    pub(super) fn insert_candidate(&mut self, node: &Node, strong: usize) -> u64 {
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

/// A recorded node's counts, node handle and id, by address.
pub(super) fn lookup(shards: &mut [Shard], addr: usize) -> Option<(&mut Counts, Node, u64)> {
    let si = shard_of(addr);
    let shard = shards.get_mut(si)?;
    let i = *shard.index.get(&addr)? as usize;
    let node = shard.nodes.get(i)?.clone();
    Some((shard.counts.get_mut(i)?, node, id(si, i)))
}

/// A recorded node's counts, by id.
pub(super) fn counts(shards: &[Shard], id: u64) -> Option<&Counts> {
    let (s, i) = split(id);
    shards.get(s)?.counts.get(i)
}

/// Step 1 from `roots` on `threads` threads: counts the references inside
/// the walked graph into `table`; returns how many nodes were visited and
/// the unrecorded thunks and recursive frames with their anchors.
pub(super) fn count(table: &Table, roots: Vec<Item>, threads: usize) -> (usize, Vec<(Node, u64)>) {
    let threads = threads.clamp(1, 16);
    if threads == 1 {
        return walker(table, roots);
    }
    let mut parts: Vec<Vec<Item>> = (0..threads).map(|_| Vec::new()).collect();
    for (k, item) in roots.into_iter().enumerate() {
        if let Some(p) = parts.get_mut(k % threads) {
            p.push(item);
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = parts.into_iter().map(|p| s.spawn(move || walker(table, p))).collect();
        let mut visited = 0;
        let mut mutable = Vec::new();
        for h in handles {
            // A walker does not panic (no indexing, no unwrap); if one
            // did, its part of the graph would stay uncounted, which only
            // makes more nodes look externally referenced (live).
            if let Ok((v, m)) = h.join() {
                visited += v;
                mutable.extend(m);
            }
        }
        (visited, mutable)
    })
}

fn walker(table: &Table, mut stack: Vec<Item>) -> (usize, Vec<(Node, u64)>) {
    let mut visited = 0;
    let mut unrecorded_mutable = Vec::new();
    while let Some(item) = stack.pop() {
        visited += 1;
        let (node, anchor, recorded) = match item {
            Item::Recorded(n, id) => (n, id, true),
            Item::Unrecorded(n, a) => (n, a, false),
        };
        node.children(&mut |c| {
            let Some((addr, strong, always)) = c.key() else { return };
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
        });
        if !recorded && node.is_mutable() {
            unrecorded_mutable.push((node, anchor));
        }
    }
    (visited, unrecorded_mutable)
}
