//! Progress of `apply` / `build`, per host and phase.
//!
//! The library never prints: it reports what each host is doing to an
//! [`ApplyProgress`] — the phase a host enters, output lines (activation
//! output, build logs when asked for, short notes such as "built … (2.1s)"),
//! the push's byte counts, and the final [`HostReport`]. The CLI draws
//! indicatif bars from these on a terminal, or prints `host> line` lines
//! ([`Lines`]). Implementations must be cheap and must not block: they are
//! called from the host tasks (and, for bytes, for every chunk pushed).

use std::sync::Arc;

use crate::push::{NoProgress, TargetProgress};

use super::report::HostReport;

/// What a host is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Evaluated; its derivations are being added to the local store.
    Registering,
    /// Waiting for one of the `jobs` slots.
    Queued,
    Building,
    Pushing,
    /// Uploading `deployment.keys`.
    Keys,
    Activating,
    /// Health checks and confirmation (magic rollback).
    Confirming,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Registering => "registering",
            Phase::Queued => "queued",
            Phase::Building => "building",
            Phase::Pushing => "pushing",
            Phase::Keys => "uploading keys",
            Phase::Activating => "activating",
            Phase::Confirming => "checking and confirming",
        }
    }
}

/// Receives the progress of every host (see the module doc).
pub trait ApplyProgress: Send + Sync {
    /// `host` enters `phase`.
    fn phase(&self, _host: &str, _phase: Phase) {}
    /// A line of output of `host`.
    fn line(&self, host: &str, line: &str);
    /// Byte-level events of `host`'s push.
    fn push_progress(&self, _host: &str) -> Arc<dyn TargetProgress> {
        Arc::new(NoProgress)
    }
    /// `host` is done (deployed, built, failed or rolled back).
    fn finished(&self, _report: &HostReport) {}
}

/// Output lines handed to a closure `(host, line)`; phases are not shown.
pub struct Lines<F>(pub F);

impl<F: Fn(&str, &str) + Send + Sync> ApplyProgress for Lines<F> {
    fn line(&self, host: &str, line: &str) {
        (self.0)(host, line)
    }
}

/// Shown nowhere (tests, library users that only want the reports).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl ApplyProgress for Silent {
    fn line(&self, _host: &str, _line: &str) {}
}
