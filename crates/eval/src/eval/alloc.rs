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

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment every `mi_malloc` block has whatever its size (one word:
/// 16 only holds for sizes that are multiples of 16).
pub const MALLOC_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc without the aligned entry points for ordinary alignments.
pub struct EvalAlloc;

// SAFETY: mimalloc returns blocks of at least `size` bytes aligned to
// `MALLOC_ALIGN` (a word) from `mi_malloc`/`mi_zalloc`/`mi_realloc`, and to the
// requested alignment from the `_aligned` variants (or null on failure);
// `mi_free` frees blocks from any of them.
unsafe impl GlobalAlloc for EvalAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain mimalloc calls (see the impl's comment).
        unsafe { by_align(layout, libmimalloc_sys::mi_malloc, libmimalloc_sys::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { by_align(layout, libmimalloc_sys::mi_zalloc, libmimalloc_sys::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
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
