//! The evaluator's stack check, inline on the common path.
//!
//! Design: deep evaluation must grow the stack (with `stacker`) instead of
//! overflowing it. `stacker::maybe_grow` asks how much stack is left on
//! every call (an out-of-line call, an assembly call for the stack pointer
//! and a lazily initialised thread-local): several percent of a
//! call-heavy evaluation. [`guard`] (and [`room`], its test alone) first
//! compares the stack pointer (`rsp` read inline on x86-64, the address of a
//! local elsewhere) with a per-thread window: the part of the thread's own
//! stack (from `pthread_getattr_np`) that has at least
//! [`RED_ZONE`] plus a margin below it. Inside the window `f` just runs.
//! Outside it (deep in the thread's stack, on a segment `stacker` added, or
//! when the bounds are unknown) it falls back to `stacker::maybe_grow`,
//! which checks exactly and grows.
//!
//! Invariant (why the fast path is sound): the window lies inside the
//! thread's own stack mapping, whose bounds do not change while the thread
//! lives, and `stacker`'s segments are separate mappings, so a stack pointer
//! inside the window is on the thread's own stack with at least the red zone
//! (and the margin, which covers the distance between the local's address
//! and the real stack pointer) left below it.

use std::cell::Cell;

/// What must be left below the stack pointer before evaluating further.
pub(super) const RED_ZONE: usize = 128 * 1024;
/// The size of each segment `stacker` adds.
pub(super) const STACK_CHUNK: usize = 4 * 1024 * 1024;
/// Slack between the local's address and the callee's stack pointer.
const MARGIN: usize = 16 * 1024;

/// Not computed yet (only a stack pointer of 0 would pass).
const UNKNOWN: (usize, usize) = (0, 0);
/// The thread's bounds are unknown: always the exact check (only a stack
/// pointer of `usize::MAX` would pass).
const NONE: (usize, usize) = (usize::MAX, 0);

thread_local! {
    /// `(lowest, span)`: the fast path applies to a stack pointer `sp` with
    /// `lo <= sp <= lo + span` (`sp - lo <= span`, wrapping).
    static WINDOW: Cell<(usize, usize)> = const { Cell::new(UNKNOWN) };
}

/// Run `f` with at least [`RED_ZONE`] of stack.
#[inline(always)]
pub(super) fn guard<R>(f: impl FnOnce() -> R) -> R {
    if room() { f() } else { grow(f) }
}

/// The fast path of [`guard`]: the stack pointer is inside the window.
/// One thread-local load pair and one compare (`sp - lo <= span`).
#[inline(always)]
pub(super) fn room() -> bool {
    let (lo, span) = WINDOW.with(Cell::get);
    stack_pointer().wrapping_sub(lo) <= span
}

/// The slow path of [`guard`] (out of line: callers' fast paths stay small).
#[cold]
#[inline(never)]
pub(super) fn grow<R>(f: impl FnOnce() -> R) -> R {
    let sp = stack_pointer();
    if WINDOW.with(Cell::get) == UNKNOWN {
        let w = thread_stack().map_or(NONE, |(lo, hi)| {
            let lo = lo.saturating_add(RED_ZONE + MARGIN);
            (lo, hi.saturating_sub(lo))
        });
        WINDOW.with(|c| c.set(w));
        if sp.wrapping_sub(w.0) <= w.1 {
            return f();
        }
    }
    stacker::maybe_grow(RED_ZONE, STACK_CHUNK, f)
}

/// The stack pointer (approximately: the margin covers the difference).
#[inline(always)]
fn stack_pointer() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let sp: usize;
        // SAFETY: reads the stack pointer register; no memory, stack or
        // flags are touched.
        unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
        sp
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let marker = 0u8;
        std::hint::black_box(std::ptr::addr_of!(marker)) as usize
    }
}

/// The bounds of the current thread's own stack.
#[cfg(target_os = "linux")]
fn thread_stack() -> Option<(usize, usize)> {
    // SAFETY: plain libc calls on a zeroed attribute object that
    // `pthread_getattr_np` initialises and we destroy; the out-pointers are
    // valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let r = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if r != 0 || addr.is_null() || size == 0 {
            return None;
        }
        let lo = addr as usize;
        Some((lo, lo.checked_add(size)?))
    }
}

#[cfg(not(target_os = "linux"))]
fn thread_stack() -> Option<(usize, usize)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deep recursion through the guard moves onto `stacker`'s segments
    /// and back, on the main test thread and on a small thread stack.
    #[test]
    fn deep_recursion_through_the_guard_does_not_overflow() {
        fn down(n: u32) -> u32 {
            guard(|| {
                let pad = [n as u8; 512];
                if n == 0 { 0 } else { down(n - 1).wrapping_add(u32::from(std::hint::black_box(pad)[7])) }
            })
        }
        assert_eq!(down(200_000), (1..=200_000u32).fold(0u32, |a, n| a.wrapping_add(u32::from(n as u8))));
        let t = std::thread::Builder::new().stack_size(256 * 1024).spawn(|| down(50_000)).unwrap();
        assert_eq!(t.join().unwrap(), (1..=50_000u32).fold(0u32, |a, n| a.wrapping_add(u32::from(n as u8))));
        let w = WINDOW.with(Cell::get);
        assert!(w == NONE || (w.0 > 0 && w.1 > 0), "window {w:?}");
        assert!(room() || w == NONE);
    }
}
