//! `ndeploy push`: copy store closures to many targets at once.
//!
//! Pipeline, one concept per module:
//! - [`plan`]: the local closure in reference order (references before
//!   referrers), each target's wanted subset, and what each target lacks after
//!   its one QueryValidPaths round trip. Pure.
//! - [`fanout`]: a single producer reads and NAR-serialises every needed path
//!   once and fans the same [`bytes::Bytes`] chunks out to every target lacking
//!   it, through one bounded queue per target; each target consumes its queue
//!   as the source of one AddMultipleToStore stream.
//! - [`session`]: one target's life: SSH connect, `nix-daemon --stdio`,
//!   QueryValidPaths, the upload, close — driven by the coordinator in [`run`].
//! - [`run`]: the coordinator (local closure, plan, producer, targets in waves
//!   of `jobs`).
//! - [`progress`]: progress events per target (the CLI draws bars from them).
//! - [`report`]: the per-target outcome, summary table and JSON.
//! - [`agent`]: the alternative upload through the ndeploy agent (only the
//!   bytes a target lacks), with the plain push as its fallback.
//!
//! Invariants: every target receives its missing paths in reference order in
//! exactly one AddMultipleToStore stream; a failing target is dropped from the
//! fan-out and never stops the others; a stream cut mid-path leaves the
//! daemon with the fully received paths only (the daemon registers each path
//! after its NAR is complete), so a rerun sends just the rest.

pub mod agent;
pub mod fanout;
pub mod plan;
pub mod progress;
pub mod report;
pub mod run;
pub mod session;

use ndeploy_store::daemon::DaemonError;
use thiserror::Error;

pub use plan::{Plan, TargetPlan};
pub use progress::{NoProgress, PushProgress, TargetProgress};
pub use report::{PushReport, TargetReport};
pub use run::{PushOptions, PushTarget, push, push_opening};

/// Errors that stop a whole push (per-target failures go into the report).
#[derive(Debug, Error)]
pub enum PushError {
    #[error("local Nix store: {0}")]
    Local(#[source] DaemonError),
    #[error("'{path}' is not in the local closure being pushed")]
    NotInClosure { path: String },
    #[error("nothing to push: no target given")]
    NoTargets,
    #[error("could not start the NAR producer: {0}")]
    Producer(String),
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
}
