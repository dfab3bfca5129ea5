//! Biased reference counting: a shared pointer whose count is updated with
//! plain loads and stores by the thread that made the node, and atomically
//! only by other threads.
//!
//! Design (after Choi, Shull and Torrellas, "Biased Reference Counting",
//! PACT 2018): a [`Brc`] node's header is 16 bytes (as `Arc`'s): the id of
//! its *owner* (the thread that made it), a *biased* count that only the
//! owner touches (a `Relaxed` load and store: no locked instruction), a
//! *shared* count that every other thread updates with atomic
//! read-modify-writes, and a weak count. Nearly every clone and drop in an
//! evaluation happens on the thread that made the node (a CLI evaluation
//! has one thread; a fleet host's nodes are used by its own thread), so
//! they cost what `Rc`'s do, while values stay `Send + Sync`.
//!
//! Invariants (what makes the `unsafe` sound):
//! - The number of strong references is `biased + shared` while the node is
//!   not *merged*, and `shared` once it is. Only the owner writes `biased`
//!   and the owner id (and only while it is the owner); other threads never
//!   rely on reading `biased` except when the owner is known dead (its
//!   exit was published under the registry's lock).
//! - A strong reference counted in `biased` may be dropped by another
//!   thread: it decrements `shared`, which may go below zero. The first
//!   thread to see it negative marks the node `QUEUED` and hands it to the
//!   owner's inbox; the owner *merges* it (adds `biased` into `shared`, sets
//!   `MERGED`, stops being the owner) when it drains its inbox, or the
//!   enqueuing thread merges it at once if the owner has exited. While a
//!   reference counted in `biased` has been dropped elsewhere, `biased`
//!   stays >= 1 until that merge, so the owner cannot free the node first.
//! - When the owner's `biased` reaches zero with `shared` zero and no weak
//!   reference, nobody else can reach the node (both need a reference), so
//!   the owner frees it without an atomic read-modify-write (the common
//!   case). Otherwise it merges implicitly (sets `MERGED` atomically,
//!   reading `shared`): a zero total frees the node. Apart from that fast
//!   path only merged nodes are freed, by whoever brings the merged count
//!   to zero; the contents are dropped once, then the memory is released
//!   when no weak reference remains.
//! - A queued node is freed only by its merge, which clears `QUEUED`: a
//!   reference another thread counted (in `shared`) may be dropped by the
//!   owner (in `biased`), so the owner can bring `biased` to zero and merge
//!   a node that still waits in its inbox; freeing it then would leave the
//!   inbox entry dangling (`tests/threads.rs` crashed so, one run in three).
//! - A weak upgrade on another thread may revive a node that is only
//!   waiting in its owner's inbox (its contents are still there: nothing
//!   but a merge frees an unmerged node), never a freed one.
//! - Thread ids (1..`u32::MAX`) are never reused; a thread past them, or one
//!   that is exiting, has none (`NO_ID`): its nodes are made merged (owner
//!   0, no thread's id) and all its counting is atomic.
//!
//! A thread drains its inbox when it exits and at [`drain`] (called at
//! points where evaluations batch work, e.g. registering recursive frames):
//! a node dropped for the last time on another thread is freed then.

use std::cell::Cell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};
use std::sync::{Arc, Mutex};

/// `shared`'s flags (low bits); the count is the rest, signed.
const MERGED: u32 = 1;
const QUEUED: u32 = 2;
const ONE: u32 = 4;
/// Beyond this many shared references (or weak ones) the process aborts,
/// as `Arc` does on overflow (they would take gigabytes of references).
const MAX_SHARED: i32 = 1 << 28;
/// The owner counts in `biased` up to this, then in `shared`.
const MAX_BIASED: u32 = 1 << 31;
/// A thread without an id (exiting, or ids exhausted): never an owner.
const NO_ID: u32 = u32::MAX;

#[repr(C)]
struct Header {
    owner: AtomicU32,
    biased: AtomicU32,
    shared: AtomicU32,
    weak: AtomicU32,
}

impl Header {
    /// The header of a node this thread makes (owned by it unless it has
    /// no id: then made merged).
    #[inline(always)]
    fn fresh() -> Header {
        let id = my_id_assigning();
        let (owner, biased, shared) = if id == NO_ID { (0, 0, ONE | MERGED) } else { (id, 1, 0) };
        Header {
            owner: AtomicU32::new(owner),
            biased: AtomicU32::new(biased),
            shared: AtomicU32::new(shared),
            weak: AtomicU32::new(1),
        }
    }
}

#[repr(C)]
struct BrcBox<T: ?Sized> {
    hdr: Header,
    data: T,
}

/// A biased-reference-counted shared pointer (see the module docs).
pub struct Brc<T: ?Sized> {
    ptr: NonNull<BrcBox<T>>,
    _own: PhantomData<BrcBox<T>>,
}

/// A weak reference to a [`Brc`] node.
pub struct WeakBrc<T: ?Sized> {
    ptr: NonNull<BrcBox<T>>,
}

// SAFETY: every count is an atomic, updated as the module invariants say;
// the contents are shared like `Arc`'s, so the same bounds apply.
unsafe impl<T: ?Sized + Send + Sync> Send for Brc<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for Brc<T> {}
// SAFETY: a weak reference only touches the header's atomics, and upgrades
// to a `Brc` under the same bounds.
unsafe impl<T: ?Sized + Send + Sync> Send for WeakBrc<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for WeakBrc<T> {}

thread_local! {
    /// This thread's owner id; `NO_ID` until assigned (and once exiting).
    static ID: Cell<u32> = const { Cell::new(NO_ID) };
    static INBOX: InboxGuard = InboxGuard::register();
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// A node handed to its owner for merging: its address and how to merge it.
struct Queued {
    addr: RawNode,
    merge: unsafe fn(RawNode),
}

/// A node's pointer (one word, two for unsized contents) kept whole (bytes
/// and provenance) while the node waits in an inbox.
type RawNode = [std::mem::MaybeUninit<usize>; 2];

fn pack<T: ?Sized>(p: NonNull<BrcBox<T>>) -> RawNode {
    const { assert!(std::mem::size_of::<NonNull<BrcBox<T>>>() <= std::mem::size_of::<RawNode>()) };
    let mut r = [std::mem::MaybeUninit::uninit(); 2];
    // SAFETY: the pointer fits (asserted above), and `r` is word-aligned.
    unsafe { r.as_mut_ptr().cast::<NonNull<BrcBox<T>>>().write(p) };
    r
}

/// # Safety
/// `r` came from [`pack`] of the same `T`.
unsafe fn unpack<T: ?Sized>(r: RawNode) -> NonNull<BrcBox<T>> {
    // SAFETY: `pack` wrote a `NonNull<BrcBox<T>>` there.
    unsafe { r.as_ptr().cast::<NonNull<BrcBox<T>>>().read() }
}

#[derive(Default)]
struct Inbox {
    items: Mutex<Vec<Queued>>,
    nonempty: AtomicBool,
}

/// The live threads' inboxes by id (a thread absent here has exited).
fn registry() -> &'static Mutex<HashMap<u32, Arc<Inbox>>> {
    static R: std::sync::OnceLock<Mutex<HashMap<u32, Arc<Inbox>>>> = std::sync::OnceLock::new();
    R.get_or_init(Default::default)
}

/// Registers the thread's inbox; on thread exit drains it and retires the
/// thread's id (its remaining nodes are merged by whoever drops them).
struct InboxGuard {
    id: u32,
    inbox: Arc<Inbox>,
}

impl InboxGuard {
    fn register() -> InboxGuard {
        let id = NEXT_ID.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < NO_ID).then_some(n + 1));
        let inbox = Arc::new(Inbox::default());
        let id = match id {
            Ok(id) => {
                registry().lock().unwrap_or_else(|e| e.into_inner()).insert(id, inbox.clone());
                id
            }
            Err(_) => NO_ID,
        };
        InboxGuard { id, inbox }
    }
}

impl Drop for InboxGuard {
    fn drop(&mut self) {
        if self.id == NO_ID {
            return;
        }
        // From now on this thread counts atomically, like any other.
        ID.with(|c| c.set(NO_ID));
        registry().lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
        drain_inbox(&self.inbox);
    }
}

/// This thread's id, assigned on first use.
#[inline]
fn my_id_assigning() -> u32 {
    let id = ID.with(Cell::get);
    if id != NO_ID {
        return id;
    }
    assign_id()
}

#[cold]
fn assign_id() -> u32 {
    let id = INBOX.try_with(|g| g.id).unwrap_or(NO_ID);
    ID.with(|c| c.set(id));
    id
}

/// This thread's id for counting (`NO_ID`: owns nothing). Merged nodes
/// have owner 0, which is no thread's id.
#[inline]
fn my_id() -> u32 {
    ID.with(Cell::get)
}

/// Merge the nodes other threads handed to this thread (frees those whose
/// last reference was dropped elsewhere). Cheap when there are none.
#[inline]
pub fn drain() {
    if my_id() == NO_ID {
        return;
    }
    let _ = INBOX.try_with(|g| {
        if g.inbox.nonempty.load(Ordering::Acquire) {
            drain_inbox(&g.inbox);
        }
    });
}

/// Merge every thread's queued nodes, on this thread.
///
/// # Safety
/// No other thread uses any node meanwhile, of any evaluator of the
/// process: the inboxes are process-wide (the collector's stop-the-world
/// point, whose synchronisation orders the owners' counting before this):
/// then merging another thread's node here is as exclusive as its owner's.
pub(crate) unsafe fn drain_all() {
    loop {
        let inboxes: Vec<Arc<Inbox>> = registry().lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let mut any = false;
        for inbox in inboxes {
            if inbox.nonempty.load(Ordering::Acquire) {
                any = true;
                drain_inbox(&inbox);
            }
        }
        if !any {
            return;
        }
    }
}

fn drain_inbox(inbox: &Inbox) {
    loop {
        let items = {
            let mut q = inbox.items.lock().unwrap_or_else(|e| e.into_inner());
            inbox.nonempty.store(false, Ordering::Relaxed);
            std::mem::take(&mut *q)
        };
        if items.is_empty() {
            return;
        }
        for q in items {
            // SAFETY: queued nodes are only merged by their owner (this
            // thread, or after it exited) once: see `enqueue`.
            unsafe { (q.merge)(q.addr) };
        }
    }
}

/// Hand a node whose shared count went negative to its owner.
fn enqueue(owner: u32, q: Queued) {
    let reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(inbox) = reg.get(&owner) {
        inbox.items.lock().unwrap_or_else(|e| e.into_inner()).push(q);
        inbox.nonempty.store(true, Ordering::Release);
        return;
    }
    drop(reg);
    // The owner has exited (published under the registry's lock, which we
    // took after it): its `biased` is final, and merging here is exclusive.
    // SAFETY: as above.
    unsafe { (q.merge)(q.addr) };
}

#[inline]
fn count(s: u32) -> i32 {
    (s as i32) >> 2
}

#[cold]
fn overflow() -> ! {
    std::process::abort()
}

impl<T> Brc<T> {
    /// A node owned by this thread.
    #[inline]
    pub fn new(data: T) -> Brc<T> {
        Brc::new_with(|| data)
    }

    /// A node owned by this thread, its contents made by `make` once the
    /// memory is allocated and written there in place: a `T` composed
    /// before the allocator call is spilled to the stack in pieces and
    /// reloaded in other widths, which stalls store forwarding (that was
    /// a tenth of a `genList`/`foldl'` run, in making frames).
    #[inline(always)]
    pub fn new_with(make: impl FnOnce() -> T) -> Brc<T> {
        let hdr = Header::fresh();
        let layout = std::alloc::Layout::new::<BrcBox<T>>();
        // SAFETY: the layout has a non-zero size (the header).
        let p = unsafe { std::alloc::alloc(layout) } as *mut BrcBox<T>;
        let Some(ptr) = NonNull::new(p) else { std::alloc::handle_alloc_error(layout) };
        // SAFETY: `p` is a fresh allocation for a `BrcBox<T>`; both fields
        // are written before the pointer is used.
        unsafe {
            (&raw mut (*p).hdr).write(hdr);
            (&raw mut (*p).data).write(make());
        }
        Brc { ptr, _own: PhantomData }
    }
}

impl<T: ?Sized> Brc<T> {
    #[inline]
    fn hdr(&self) -> &Header {
        // SAFETY: a strong reference keeps the node (and its header) alive.
        unsafe { &self.ptr.as_ref().hdr }
    }

    #[inline]
    pub fn as_ptr(this: &Self) -> *const T {
        // SAFETY: the node is alive; only the field's address is taken.
        unsafe { &raw const (*this.ptr.as_ptr()).data }
    }

    #[inline]
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        std::ptr::addr_eq(a.ptr.as_ptr(), b.ptr.as_ptr())
    }

    /// Whether this thread made the node and still owns it (not merged):
    /// a plain load of the owner id, which only the owner changes (to 0).
    #[inline(always)]
    pub fn is_mine(this: &Self) -> bool {
        this.hdr().owner.load(Ordering::Relaxed) == my_id()
    }

    /// The number of strong references: exact only where no other thread
    /// counts (the collector's stop-the-world point).
    pub fn strong_count(this: &Self) -> usize {
        total(this.hdr()).max(0) as usize
    }

    pub fn downgrade(this: &Self) -> WeakBrc<T> {
        if this.hdr().weak.fetch_add(1, Ordering::Relaxed) > MAX_SHARED as u32 {
            overflow();
        }
        WeakBrc { ptr: this.ptr }
    }

    /// Merge the node at `addr` (queued: see [`enqueue`]) and free it if
    /// no reference remains.
    ///
    /// # Safety
    /// `addr` is a queued `BrcBox<T>`, merged once, by its owner or after
    /// the owner exited.
    unsafe fn merge_queued(addr: RawNode) {
        // SAFETY: as the caller says.
        let addr = unsafe { unpack::<T>(addr) };
        // SAFETY: queued nodes are alive until merged (module invariants).
        let hdr = unsafe { &(*addr.as_ptr()).hdr };
        let b = hdr.biased.load(Ordering::Relaxed);
        hdr.biased.store(0, Ordering::Relaxed);
        hdr.owner.store(0, Ordering::Relaxed);
        let mut s = hdr.shared.load(Ordering::Relaxed);
        loop {
            let c = i64::from(count(s)) + i64::from(b);
            if c > i64::from(MAX_SHARED) {
                overflow();
            }
            // Merged, and no longer queued: from now on whoever brings
            // the count to zero frees the node.
            let new = ((c as i32) << 2) as u32 | MERGED;
            match hdr.shared.compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) if c == 0 => {
                    // SAFETY: merged with no reference left: ours to free.
                    unsafe { Self::free(addr) };
                    return;
                }
                Ok(_) => return,
                Err(x) => s = x,
            }
        }
    }

    /// Drop the contents and release the memory unless weak references
    /// remain. Caller: the node is merged and its count reached zero.
    #[inline(never)]
    unsafe fn free(ptr: NonNull<BrcBox<T>>) {
        // SAFETY: the node is alive (unsized contents: its size is the
        // pointer's metadata's).
        let layout = std::alloc::Layout::for_value(unsafe { ptr.as_ref() });
        // SAFETY: no strong reference remains: the contents are dropped
        // exactly once, here.
        unsafe { std::ptr::drop_in_place(&raw mut (*ptr.as_ptr()).data) };
        // SAFETY: the header is alive until the weak count says otherwise.
        let weak = unsafe { &(*ptr.as_ptr()).hdr.weak };
        // Without weak references none can appear (that needs a strong
        // one), so the last strong reference releases the memory at once.
        if weak.load(Ordering::Acquire) == 1 || weak.fetch_sub(1, Ordering::Release) == 1 {
            fence(Ordering::Acquire);
            // SAFETY: no strong or weak reference remains; the contents
            // were dropped above, so only the memory is released (allocated
            // in `new` with this layout).
            unsafe { std::alloc::dealloc(ptr.as_ptr() as *mut u8, layout) };
        }
    }

    #[inline(never)]
    fn drop_owner_last(&self) {
        let hdr = self.hdr();
        // No shared reference and no weak one: nobody else can reach the
        // node (both need a reference to exist), so no atomic merge.
        if hdr.shared.load(Ordering::Acquire) == 0 && hdr.weak.load(Ordering::Acquire) == 1 {
            // SAFETY: the last reference; the node is ours alone.
            unsafe { Self::free(self.ptr) };
            return;
        }
        hdr.biased.store(0, Ordering::Relaxed);
        hdr.owner.store(0, Ordering::Relaxed);
        let old = hdr.shared.fetch_or(MERGED, Ordering::AcqRel);
        // A queued node is freed by its merge only (its inbox entry still
        // points at it).
        if count(old) == 0 && old & QUEUED == 0 {
            // SAFETY: merged with no reference left.
            unsafe { Self::free(self.ptr) };
        }
    }

    #[inline(never)]
    fn drop_shared(&self) {
        let hdr = self.hdr();
        let old = hdr.shared.fetch_sub(ONE, Ordering::Release);
        let new = old.wrapping_sub(ONE);
        if new & MERGED != 0 {
            // Queued: the merge frees it (see `drop_owner_last`).
            if count(new) == 0 && new & QUEUED == 0 {
                fence(Ordering::Acquire);
                // SAFETY: merged and the last reference.
                unsafe { Self::free(self.ptr) };
            }
        } else if count(new) < 0 && new & QUEUED == 0 {
            let prev = hdr.shared.fetch_or(QUEUED, Ordering::AcqRel);
            if prev & (QUEUED | MERGED) == 0 {
                let owner = hdr.owner.load(Ordering::Relaxed);
                enqueue(owner, Queued { addr: pack(self.ptr), merge: Self::merge_queued });
            }
        }
    }
}

/// `biased + shared` (or `shared` once merged).
fn total(hdr: &Header) -> i64 {
    let s = hdr.shared.load(Ordering::Acquire);
    let c = i64::from(count(s));
    if s & MERGED != 0 { c } else { c + i64::from(hdr.biased.load(Ordering::Relaxed)) }
}

impl<T: ?Sized> Clone for Brc<T> {
    #[inline(always)]
    fn clone(&self) -> Brc<T> {
        let hdr = self.hdr();
        if hdr.owner.load(Ordering::Relaxed) == my_id() {
            let b = hdr.biased.load(Ordering::Relaxed);
            if b < MAX_BIASED {
                hdr.biased.store(b + 1, Ordering::Relaxed);
                return Brc { ptr: self.ptr, _own: PhantomData };
            }
        }
        self.clone_shared()
    }
}

impl<T: ?Sized> Brc<T> {
    /// A reference counted in `shared` (another thread's node).
    #[inline(never)]
    fn clone_shared(&self) -> Brc<T> {
        if count(self.hdr().shared.fetch_add(ONE, Ordering::Relaxed)) > MAX_SHARED {
            overflow();
        }
        Brc { ptr: self.ptr, _own: PhantomData }
    }
}

impl<T: ?Sized> Drop for Brc<T> {
    #[inline]
    fn drop(&mut self) {
        let hdr = self.hdr();
        // Owner 0 (merged) is no thread's id.
        if hdr.owner.load(Ordering::Relaxed) == my_id() {
            let b = hdr.biased.load(Ordering::Relaxed);
            if b > 1 {
                hdr.biased.store(b - 1, Ordering::Relaxed);
                return;
            }
            self.drop_owner_last();
            return;
        }
        self.drop_shared();
    }
}

impl<T: ?Sized> std::ops::Deref for Brc<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: a strong reference keeps the contents alive.
        unsafe { &self.ptr.as_ref().data }
    }
}

impl<T: ?Sized> WeakBrc<T> {
    fn hdr(&self) -> &Header {
        // SAFETY: a weak reference keeps the header alive.
        unsafe { &self.ptr.as_ref().hdr }
    }

    /// A strong reference, if the node is alive.
    pub fn upgrade(&self) -> Option<Brc<T>> {
        let hdr = self.hdr();
        if hdr.owner.load(Ordering::Relaxed) == my_id() {
            // The owner: nobody else frees an unmerged node.
            let b = hdr.biased.load(Ordering::Relaxed);
            if total(hdr) <= 0 || b >= MAX_BIASED {
                return None;
            }
            hdr.biased.store(b + 1, Ordering::Relaxed);
            return Some(Brc { ptr: self.ptr, _own: PhantomData });
        }
        let mut s = hdr.shared.load(Ordering::Relaxed);
        loop {
            // Merged: alive while the count is positive. Not merged: only
            // its owner frees it, after merging, which this increment
            // (ordered before or after the merge by the compare-exchange)
            // either keeps alive or sees.
            if s & MERGED != 0 && count(s) <= 0 {
                return None;
            }
            if count(s) >= MAX_SHARED {
                overflow();
            }
            match hdr.shared.compare_exchange_weak(s, s.wrapping_add(ONE), Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Some(Brc { ptr: self.ptr, _own: PhantomData }),
                Err(x) => s = x,
            }
        }
    }

    /// The address of the contents (which may be dropped already).
    pub fn as_ptr(&self) -> *const T {
        // SAFETY: only the field's address is computed; the memory is
        // alive while the weak reference is.
        unsafe { &raw const (*self.ptr.as_ptr()).data }
    }

    /// The number of strong references: exact only where no other thread
    /// counts (the collector's stop-the-world point), an estimate
    /// elsewhere (as `std::sync::Weak::strong_count`). A node whose last
    /// reference was dropped but that waits in its owner's inbox counts 0.
    pub fn strong_count(&self) -> usize {
        total(self.hdr()).max(0) as usize
    }

    /// The node is freed (its contents dropped): certain, on any thread.
    pub fn is_dead(&self) -> bool {
        let s = self.hdr().shared.load(Ordering::Acquire);
        s & MERGED != 0 && s & QUEUED == 0 && count(s) <= 0
    }
}

impl<T: ?Sized> Clone for WeakBrc<T> {
    fn clone(&self) -> WeakBrc<T> {
        if self.hdr().weak.fetch_add(1, Ordering::Relaxed) > MAX_SHARED as u32 {
            overflow();
        }
        WeakBrc { ptr: self.ptr }
    }
}

impl<T: ?Sized> Drop for WeakBrc<T> {
    fn drop(&mut self) {
        if self.hdr().weak.fetch_sub(1, Ordering::Release) == 1 {
            fence(Ordering::Acquire);
            // SAFETY: the last reference of any kind: the strong side has
            // dropped the contents already. The layout is the one the node
            // was allocated with (for unsized contents the size comes from
            // the pointer's metadata: the dropped contents are not read).
            let layout = std::alloc::Layout::for_value(unsafe { self.ptr.as_ref() });
            // SAFETY: as above.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr() as *mut u8, layout) };
        }
    }
}

// Unsized contents (`env.rs`'s frames: a head and the slots in one node)
// and raw handles (a thin handle keeps the contents' address and rebuilds
// the pointer's metadata from the contents).
impl<T: ?Sized> Brc<T> {
    /// A node owned by this thread whose contents, of `layout`, `init`
    /// writes in place; `fat` gives the contents' pointer (with its
    /// metadata) for an address.
    ///
    /// # Safety
    /// `Layout::for_value` of the contents at `fat(p)` is `layout`, and
    /// `init` initialises all of them.
    #[inline(always)]
    pub(crate) unsafe fn new_unsized(layout: std::alloc::Layout, fat: impl FnOnce(*mut u8) -> *mut T, init: impl FnOnce(*mut T)) -> Brc<T> {
        let hdr = Header::fresh();
        let Ok((whole, _)) = std::alloc::Layout::new::<Header>().extend(layout) else { overflow() };
        let whole = whole.pad_to_align();
        // SAFETY: the layout has a non-zero size (the header).
        let p = unsafe { std::alloc::alloc(whole) };
        if p.is_null() {
            std::alloc::handle_alloc_error(whole)
        }
        let p = fat(p) as *mut BrcBox<T>;
        // SAFETY: `p` is a fresh allocation of the node's layout (the
        // caller's contract); both fields are written before use.
        unsafe {
            (&raw mut (*p).hdr).write(hdr);
            init(&raw mut (*p).data);
            debug_assert_eq!(std::alloc::Layout::for_value(&*p), whole);
            Brc { ptr: NonNull::new_unchecked(p), _own: PhantomData }
        }
    }

    /// The contents' pointer, handing over this reference (no count
    /// change): [`Brc::from_raw`] takes it back.
    #[inline(always)]
    pub(crate) fn into_raw(this: Self) -> *const T {
        let p = Self::as_ptr(&this);
        std::mem::forget(this);
        p
    }

    /// # Safety
    /// `p` came from [`Brc::into_raw`] (with the same metadata), and the
    /// reference it handed over is taken back.
    #[inline(always)]
    pub(crate) unsafe fn from_raw(p: *const T) -> Self {
        // SAFETY: the contents are alive (a reference is held).
        let align = std::mem::align_of_val(unsafe { &*p });
        let off = std::mem::size_of::<Header>().next_multiple_of(align);
        // SAFETY: the contents sit `off` bytes into the node.
        let b = unsafe { p.byte_sub(off) } as *mut BrcBox<T>;
        // SAFETY: derived from a live node's pointer.
        Brc { ptr: unsafe { NonNull::new_unchecked(b) }, _own: PhantomData }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn owner_counts_and_frees() {
        let d = Arc::new(AtomicUsize::new(0));
        let a = Brc::new(Counted(d.clone()));
        let b = a.clone();
        assert_eq!(Brc::strong_count(&a), 2);
        drop(a);
        assert_eq!(d.load(Ordering::SeqCst), 0);
        let w = Brc::downgrade(&b);
        assert!(w.upgrade().is_some());
        drop(b);
        assert_eq!(d.load(Ordering::SeqCst), 1);
        assert!(w.upgrade().is_none());
    }

    /// References made by the owner and dropped by other threads (shared
    /// count below zero, queued to the owner) are freed when the owner
    /// drains, or at once when the owner has exited.
    #[test]
    fn handed_over_references_are_merged() {
        let d = Arc::new(AtomicUsize::new(0));
        let a = Brc::new(Counted(d.clone()));
        let (b, c) = (a.clone(), a.clone());
        std::thread::spawn(move || drop(b)).join().unwrap();
        drop(a);
        std::thread::spawn(move || {
            let c2 = c.clone();
            drop(c);
            drop(c2)
        })
        .join()
        .unwrap();
        assert_eq!(d.load(Ordering::SeqCst), 0, "queued to the owner, not freed by another thread");
        drain();
        assert_eq!(d.load(Ordering::SeqCst), 1);

        // The owner exits first: the last drop elsewhere merges and frees.
        let (tx, rx) = std::sync::mpsc::channel();
        let d2 = d.clone();
        std::thread::spawn(move || {
            let x = Brc::new(Counted(d2));
            tx.send((x.clone(), x)).unwrap();
        })
        .join()
        .unwrap();
        let (x, y) = rx.recv().unwrap();
        drop(x);
        assert_eq!(d.load(Ordering::SeqCst), 1);
        drop(y);
        assert_eq!(d.load(Ordering::SeqCst), 2);
    }

    /// Eight threads clone and drop one node's references at once (the
    /// owner among them): the contents are dropped exactly once, after all.
    #[test]
    fn concurrent_counting_is_exact() {
        let d = Arc::new(AtomicUsize::new(0));
        let root = Brc::new(Counted(d.clone()));
        let mut hs = Vec::new();
        for _ in 0..8 {
            let mine: Vec<Brc<Counted>> = (0..100).map(|_| root.clone()).collect();
            hs.push(std::thread::spawn(move || {
                for _ in 0..1000 {
                    let v: Vec<_> = mine.iter().map(Brc::clone).collect();
                    drop(v);
                }
                drop(mine);
            }));
        }
        for _ in 0..1000 {
            let v: Vec<_> = (0..50).map(|_| root.clone()).collect();
            drop(v);
        }
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(d.load(Ordering::SeqCst), 0);
        drop(root);
        drain();
        assert_eq!(d.load(Ordering::SeqCst), 1);
    }
}
