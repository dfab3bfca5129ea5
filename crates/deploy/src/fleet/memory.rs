//! The allocator's settings while a fleet evaluates.
//!
//! Design: a fleet host's garbage is freed in one burst when the host's
//! epoch is cleared as it ends (see
//! `ndeploy_eval::value::collect::epoch::Quiescence`), and the next host
//! allocates the same amount again over its ~60-100 ms. mimalloc returns
//! a free page range to the OS (`madvise`) 10 ms after it became free by
//! default (`purge_delay`), so most of every host's memory was handed back
//! and faulted in again, zeroed, by the next host: at `-j 2` on the
//! 100-host benchmark fleet 343 k page faults (55 k at `-j 1`, where the
//! memory is reused sooner), 0.5-1.5 s of system time. [`PurgeDelay`]
//! raises the delay to [`FLEET_PURGE_DELAY_MS`] for the evaluation (52 k
//! faults), and puts the previous value back when dropped, so a long-lived
//! process still returns memory once the fleet is done.
//!
//! Invariant: the setting only changes when freed memory goes back to the
//! OS, never what is allocated or freed; an explicit `MIMALLOC_PURGE_DELAY`
//! in the environment is left alone (the user's choice wins).

use std::ffi::{c_int, c_long};

/// mimalloc's `mi_option_purge_delay` (v2's `mi_option_e`, value 15).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// The purge delay during fleet evaluation, in milliseconds: several
/// hosts' time, so a host's freed memory is reused before it is returned.
pub const FLEET_PURGE_DELAY_MS: c_long = 1000;

unsafe extern "C" {
    // mimalloc's option API (linked through `libmimalloc-sys`, a
    // dependency of the evaluator): reading and setting a process-wide
    // option is thread-safe.
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// The raised purge delay, until dropped (see the module documentation).
#[must_use]
pub struct PurgeDelay {
    previous: Option<c_long>,
}

impl PurgeDelay {
    /// Raise mimalloc's purge delay to [`FLEET_PURGE_DELAY_MS`] unless
    /// `MIMALLOC_PURGE_DELAY` is set.
    pub fn raise() -> PurgeDelay {
        let env_set = std::env::var_os("MIMALLOC_PURGE_DELAY").is_some();
        // SAFETY: mimalloc's option calls take any option id of its enum
        // and any value; they only read and write the option's word.
        let previous = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
        let Some(delay) = raised(previous, env_set) else { return PurgeDelay { previous: None } };
        // SAFETY: as above.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, delay) };
        PurgeDelay { previous: Some(previous) }
    }

    /// The delay now in force, in milliseconds (-1: never purged).
    pub fn current() -> c_long {
        // SAFETY: as in `raise`.
        unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
    }
}

/// The delay to set instead of `previous` (`None`: leave it): never
/// shorter, never where the user set it, never where purging is off (-1).
fn raised(previous: c_long, env_set: bool) -> Option<c_long> {
    (!env_set && (0..FLEET_PURGE_DELAY_MS).contains(&previous)).then_some(FLEET_PURGE_DELAY_MS)
}

impl Drop for PurgeDelay {
    fn drop(&mut self) {
        if let Some(p) = self.previous {
            // SAFETY: as in `raise`.
            unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, p) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_is_only_ever_raised() {
        assert_eq!(raised(10, false), Some(FLEET_PURGE_DELAY_MS));
        assert_eq!(raised(0, false), Some(FLEET_PURGE_DELAY_MS));
        assert_eq!(raised(10, true), None, "MIMALLOC_PURGE_DELAY wins");
        assert_eq!(raised(-1, false), None, "never purged stays so");
        assert_eq!(raised(5000, false), None);
    }

    /// Option 15 is mimalloc's purge delay: its value is its default (10
    /// ms) or the fleet's (other tests of this binary raise it meanwhile).
    #[test]
    fn the_option_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        let now = PurgeDelay::current();
        assert!(now == 10 || now == FLEET_PURGE_DELAY_MS, "{now}");
    }
}
