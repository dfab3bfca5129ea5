//! The global allocator for programs that evaluate: mimalloc, called the
//! way the evaluator's allocations need.
//!
//! Design: evaluation allocates and frees millions of small objects (thunks,
//! frames, closures, sets) from several threads; mimalloc is much faster at
//! that than the system allocator. The `mimalloc` crate's `GlobalAlloc`
//! passes every request to `mi_malloc_aligned`, whose alignment handling
//! costs more than the allocation itself for the evaluator's objects (none
//! needs more than word alignment, which every `mi_malloc` block has: its
//! size classes are whole words). So [`EvalAlloc`] calls `mi_malloc`/`mi_realloc` for alignments up to
//! [`MALLOC_ALIGN`] and the aligned functions only above it. Built as
//! mimalloc v2 (`libmimalloc-sys` feature `v2`): fewer instructions per
//! allocation on the evaluator's workloads than v3.
//!
//! Invariant: a block is freed by `mi_free` whichever function allocated it
//! (mimalloc's contract), so the split by alignment cannot mismatch.
//!
//! Use: `#[global_allocator] static GLOBAL: EvalAlloc = EvalAlloc;` in the
//! binary (the library itself never installs an allocator).
//!
//! In front of mimalloc, a per-thread cache of freed small blocks (up to
//! [`MAX_CACHED`] bytes, one LIFO list per whole-word size class, at most
//! [`CACHE_CAP`] blocks each). Evaluation frees and allocates thunks,
//! frames and closures of a few sizes at a high rate; a block taken from
//! the cache is the one freed last, still in the CPU's cache, where
//! mimalloc's free lists hand out blocks in page order (the profile's
//! top line was `mi_malloc`'s miss on the free block's link word).
//!
//! Prefetching: both free lists are read a block ahead. A pop from the
//! cache prefetches the block that becomes the list's head (the next pop
//! reads its link word, its caller writes it). A block from `mi_malloc`
//! holds, in its first word, the next block of its page's free list, the
//! one the next `mi_malloc` of the size returns and whose link word it
//! loads ([`mimalloc_next`]); that block is prefetched. This matters most
//! in a fleet, where a host's whole heap is freed at once, mostly to
//! mimalloc, and the next host allocates it again from its cold free
//! lists. A prefetch is only a hint: a null or stale address costs
//! nothing but the instruction.
//!
//! Not kept (session 8, measured): the cache as an array stack of block
//! pointers (a pop reads no block, prefetches a few pops ahead) was
//! slower than the list on evalModules (the array is more memory in the
//! CPU's caches, and the block's line is needed by the caller anyway);
//! letting it grow with the thread's demand, so that a host's bulk free
//! lands in it, was slower still: blocks then come back in the order the
//! host's heap was freed, scattered over the whole heap, where mimalloc
//! hands them out a page at a time (locality for everything allocated
//! together). See `benches/README.md`, "Session 8 — allocation".
//!
//! Invariants of the cache:
//! - A cached block is a mimalloc block of at least its class's size:
//!   mimalloc's small blocks are whole words, and no block is smaller than
//!   the size it is freed with; blocks allocated for a class on a miss
//!   get the class's whole size.
//! - Blocks leave the cache only to be handed out again or to `mi_free`,
//!   which accepts any thread's blocks: a block freed on another thread
//!   than its allocator's is cached and reused there.
//! - No block is kept past its thread: the first push registers a
//!   thread-exit hook ([`Flush`]) that frees the lists and closes the
//!   cache (later frees go to `mi_free`). The cache itself has no
//!   destructor, so it is readable during the thread's teardown.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ffi::c_void;

/// The alignment every `mi_malloc` block has whatever its size (one word:
/// 16 only holds for sizes that are multiples of 16).
pub const MALLOC_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc without the aligned entry points for ordinary alignments.
pub struct EvalAlloc;

/// The largest block the per-thread cache keeps (eight words).
pub const MAX_CACHED: usize = 64;
/// Size classes of the cache: 1..=8 words.
const CLASSES: usize = MAX_CACHED / MALLOC_ALIGN;
/// The most blocks a thread keeps per size class.
pub const CACHE_CAP: u32 = 4096;

/// A thread's cached blocks: per size class a list linked through the
/// blocks' first word, and its length; `cap` is 0 until the thread-exit
/// hook is registered and again once it ran (`closed`).
struct Cache {
    head: [*mut u8; CLASSES],
    len: [u32; CLASSES],
    cap: u32,
    closed: bool,
}

thread_local! {
    static CACHE: UnsafeCell<Cache> = const {
        UnsafeCell::new(Cache { head: [std::ptr::null_mut(); CLASSES], len: [0; CLASSES], cap: 0, closed: false })
    };
    static FLUSH: Flush = const { Flush };
}

/// The thread-exit hook of the cache: frees the cached blocks and closes
/// the cache.
struct Flush;

impl Drop for Flush {
    fn drop(&mut self) {
        let _ = CACHE.try_with(|cache| {
            // SAFETY: this thread's cache; no other access to it is alive.
            let cache = unsafe { &mut *cache.get() };
            cache.closed = true;
            cache.cap = 0;
            for (head, len) in cache.head.iter_mut().zip(cache.len.iter_mut()) {
                let mut p = std::mem::replace(head, std::ptr::null_mut());
                *len = 0;
                while !p.is_null() {
                    // SAFETY: a cached block holds the next one's address in
                    // its first word, and is a mimalloc block.
                    unsafe {
                        let next = p.cast::<*mut u8>().read();
                        libmimalloc_sys::mi_free(p.cast::<c_void>());
                        p = next;
                    }
                }
            }
        });
    }
}

/// The cache's size class of a request (`None`: not cached).
#[inline(always)]
fn class(layout: Layout) -> Option<usize> {
    let size = layout.size();
    if size.wrapping_sub(1) < MAX_CACHED && layout.align() <= MALLOC_ALIGN { Some((size - 1) / MALLOC_ALIGN) } else { None }
}

/// A block of class `c` from this thread's cache, or null.
#[inline(always)]
fn pop(c: usize) -> *mut u8 {
    CACHE.with(|cache| {
        // SAFETY: this thread's cache, and no other access to it is alive
        // (the allocator does not reenter itself here).
        let cache = unsafe { &mut *cache.get() };
        let (Some(head), Some(len)) = (cache.head.get_mut(c), cache.len.get_mut(c)) else { return std::ptr::null_mut() };
        let p = *head;
        if !p.is_null() {
            // SAFETY: a cached block's first word holds the next block.
            let next = unsafe { p.cast::<*mut u8>().read() };
            *head = next;
            *len = len.wrapping_sub(1);
            // The next pop's block: its link word is read then, and the
            // caller writes it (a miss when it went cold, now under way
            // meanwhile).
            prefetch_write(next);
        }
        p
    })
}

/// Keep the freed block `p` of class `c` in this thread's cache; false
/// when the class's list is full or the cache closed.
#[inline(always)]
fn push(c: usize, p: *mut u8) -> bool {
    CACHE.with(|cache| {
        // SAFETY: as in `pop`.
        let cache = unsafe { &mut *cache.get() };
        let cap = cache.cap;
        let (Some(head), Some(len)) = (cache.head.get_mut(c), cache.len.get_mut(c)) else { return false };
        if *len >= cap {
            return push_slow(c, p);
        }
        // SAFETY: the block is freed (ours now), at least a word long and
        // word-aligned: its first word links the list.
        unsafe { p.cast::<*mut u8>().write(*head) };
        *head = p;
        *len = len.wrapping_add(1);
        true
    })
}

/// [`push`] to a full list, or before the thread-exit hook is registered
/// (then registers it, unless the thread is exiting, and pushes).
#[cold]
#[inline(never)]
fn push_slow(c: usize, p: *mut u8) -> bool {
    let open = CACHE.with(|cache| {
        // SAFETY: as in `pop`.
        let cache = unsafe { &*cache.get() };
        cache.cap == 0 && !cache.closed
    });
    if !open {
        return false;
    }
    // Registers `Flush` (fails once the thread's destructors run).
    let registered = FLUSH.try_with(|_| ()).is_ok();
    CACHE.with(|cache| {
        // SAFETY: as in `pop`.
        let cache = unsafe { &mut *cache.get() };
        if registered {
            cache.cap = CACHE_CAP;
        } else {
            cache.closed = true;
        }
    });
    registered && push(c, p)
}

// SAFETY: mimalloc returns blocks of at least `size` bytes aligned to
// `MALLOC_ALIGN` (a word) from `mi_malloc`/`mi_zalloc`/`mi_realloc`, and to the
// requested alignment from the `_aligned` variants (or null on failure);
// `mi_free` frees blocks from any of them.
unsafe impl GlobalAlloc for EvalAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(c) = class(layout) {
            let p = pop(c);
            if !p.is_null() {
                return p;
            }
            // The class's whole size (mimalloc's block for the request is
            // that size anyway), so that the block can serve the class.
            return alloc_missed(c);
        }
        // SAFETY: plain mimalloc calls (see the impl's comment).
        unsafe { by_align(layout, libmimalloc_sys::mi_malloc, libmimalloc_sys::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { by_align(layout, libmimalloc_sys::mi_zalloc, libmimalloc_sys::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // A block freed with a size of class `c` has at least the class's
        // size (see the module's invariants).
        if let Some(c) = class(layout)
            && push(c, ptr)
        {
            return;
        }
        // SAFETY: `ptr` came from this allocator (GlobalAlloc contract).
        unsafe { libmimalloc_sys::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc
        // contract); the new block keeps the alignment.
        unsafe {
            if layout.align() <= MALLOC_ALIGN {
                libmimalloc_sys::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                libmimalloc_sys::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

/// A block of class `c` from mimalloc: the class's whole size
/// (mimalloc's block for the request is that size anyway), so that the
/// block can serve the class.
/// The block mimalloc hands out next for the size is prefetched (see
/// [`mimalloc_next`]): `mi_malloc`'s load of a cold block's link word was
/// its miss.
#[inline(always)]
fn alloc_missed(c: usize) -> *mut u8 {
    // SAFETY: a plain mimalloc call.
    let p: *mut u8 = unsafe { libmimalloc_sys::mi_malloc((c + 1) * MALLOC_ALIGN) }.cast();
    if !p.is_null() {
        prefetch_write(mimalloc_next(p));
    }
    p
}

/// The word at the start of `p`, a block `mi_malloc` just returned: the
/// next block of its page's free list, which the next `mi_malloc` of the
/// size hands out (a plain pointer in mimalloc's release builds; anything
/// else is only a useless prefetch).
#[inline(always)]
fn mimalloc_next(p: *mut u8) -> *const u8 {
    #[cfg(target_arch = "x86_64")]
    {
        let next: *const u8;
        // SAFETY: `p` is a block of at least a word that this thread owns;
        // the load is opaque to the compiler, so the block's uninitialised
        // contents are read as the plain bits mimalloc left there.
        unsafe {
            std::arch::asm!("mov {next}, qword ptr [{p}]", p = in(reg) p, next = lateout(reg) next, options(nostack, readonly, preserves_flags));
        }
        next
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = p;
        std::ptr::null()
    }
}

/// Prefetch the line at `p` to be written soon (a hint: `prefetchw` where
/// the build targets it, else `prefetcht0`; nothing off x86_64).
#[inline(always)]
fn prefetch_write(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address, and changes
    // nothing the program can observe; SSE is part of x86_64.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_ET0 }>(p.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// `plain(size)` for alignments every block has, else `aligned(size, align)`.
#[inline(always)]
unsafe fn by_align(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: the caller passes mimalloc's allocation functions.
    unsafe {
        if layout.align() <= MALLOC_ALIGN { plain(layout.size()) } else { aligned(layout.size(), layout.align()) }.cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(c: usize) -> u32 {
        CACHE.with(|cache| unsafe { (*cache.get()).len[c] })
    }

    /// A freed small block is the next one handed out for its class (any
    /// size of the class), up to `CACHE_CAP` per class; a thread's blocks
    /// go back to mimalloc when it exits, and blocks freed on another
    /// thread are cached and reused there.
    #[test]
    fn freed_small_blocks_are_reused_per_thread() {
        let a = EvalAlloc;
        std::thread::spawn(|| unsafe {
            let a = EvalAlloc;
            let l48 = Layout::from_size_align(48, 8).unwrap();
            let l41 = Layout::from_size_align(41, 1).unwrap();
            let p = a.alloc(l48);
            p.write_bytes(1, 48);
            a.dealloc(p, l48);
            assert_eq!(cached(5), 1);
            let q = a.alloc(l41);
            assert_eq!(p, q, "the block freed last comes back, for any size of its class");
            q.write_bytes(2, 48);
            assert_eq!(cached(5), 0);
            // Other classes and alignments are not mixed in.
            a.dealloc(q, l41);
            let r = a.alloc(Layout::from_size_align(40, 8).unwrap());
            assert_ne!(r, q);
            let big = a.alloc(Layout::from_size_align(48, 16).unwrap());
            assert_ne!(big, q);
            a.dealloc(big, Layout::from_size_align(48, 16).unwrap());
            a.dealloc(r, Layout::from_size_align(40, 8).unwrap());
            assert_eq!((cached(4), cached(5)), (1, 1));
            // The cap: the rest goes to mimalloc.
            let many: Vec<*mut u8> = (0..CACHE_CAP + 10).map(|_| a.alloc(l48)).collect();
            for p in &many {
                a.dealloc(*p, l48);
            }
            assert_eq!(cached(5), CACHE_CAP);
        })
        .join()
        .unwrap();

        // Blocks made on one thread, freed and reused on another.
        let l = Layout::from_size_align(32, 8).unwrap();
        let made: Vec<usize> = (0..1000).map(|i| unsafe {
            let p = a.alloc(l);
            p.write_bytes(i as u8, 32);
            p as usize
        }).collect();
        let back = std::thread::spawn(move || unsafe {
            let a = EvalAlloc;
            for p in &made {
                a.dealloc(*p as *mut u8, l);
            }
            assert_eq!(cached(3), 1000);
            let again: Vec<usize> = (0..1000).map(|_| a.alloc(l) as usize).collect();
            let (mut x, mut y) = (made.clone(), again.clone());
            x.sort();
            y.sort();
            assert_eq!(x, y, "reused on the freeing thread");
            for p in &again {
                (*p as *mut u8).write_bytes(7, 32);
            }
            again
        })
        .join()
        .unwrap();
        for p in back {
            unsafe { a.dealloc(p as *mut u8, l) };
        }
    }

    /// The prefetch on `mi_malloc`'s path aims at the right block: a new
    /// block's first word is the block the next `mi_malloc` of its size
    /// returns (mimalloc's free lists are plain in its release builds),
    /// except where a page's list ends.
    #[test]
    fn mimalloc_next_is_the_next_block() {
        std::thread::spawn(|| unsafe {
            let blocks: Vec<*mut u8> = (0..1000).map(|_| libmimalloc_sys::mi_malloc(48).cast::<u8>()).collect();
            let hits = blocks.windows(2).filter(|w| mimalloc_next(w[0]) == w[1].cast_const()).count();
            for p in &blocks {
                libmimalloc_sys::mi_free(p.cast::<c_void>());
            }
            // Freed blocks come back the same way (a page's local free list).
            let again: Vec<*mut u8> = (0..1000).map(|_| libmimalloc_sys::mi_malloc(48).cast::<u8>()).collect();
            let hits_again = again.windows(2).filter(|w| mimalloc_next(w[0]) == w[1].cast_const()).count();
            for p in &again {
                libmimalloc_sys::mi_free(p.cast::<c_void>());
            }
            assert!(hits > 900 && hits_again > 900, "{hits} {hits_again} of 999");
        })
        .join()
        .unwrap();
    }

    /// Blocks have the requested alignment below and above `mi_malloc`'s,
    /// keep their contents through `realloc`, and come back zeroed.
    #[test]
    fn blocks_are_aligned_and_reallocated() {
        let a = EvalAlloc;
        for align in [1usize, 8, 16, 32, 64, 4096] {
            for size in [1usize, 8, 24, 40, 48, 64, 1000, 100_000] {
                let l = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let p = a.alloc(l);
                    assert!(!p.is_null() && (p as usize).is_multiple_of(align), "size {size} align {align}");
                    p.write_bytes(0xab, size);
                    let q = a.realloc(p, l, size * 3);
                    assert!(!q.is_null() && (q as usize).is_multiple_of(align));
                    assert!(std::slice::from_raw_parts(q, size).iter().all(|&b| b == 0xab));
                    a.dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
                    let z = a.alloc_zeroed(l);
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, l);
                }
            }
        }
    }
}
