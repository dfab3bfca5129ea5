//! Progress events of a push, per target. The library only emits events;
//! drawing (indicatif bars in the CLI) is the caller's business, so tests and
//! `--json` runs use [`NoProgress`]. Implementations must be cheap: `bytes`
//! is called for every chunk sent.

use std::sync::Arc;

/// Creates one [`TargetProgress`] per target.
pub trait PushProgress: Send + Sync {
    fn target(&self, name: &str) -> Arc<dyn TargetProgress>;
}

/// Events of one target, in order: `stage`* → `planned` → (`bytes` | `path_done`)* → `finish`.
pub trait TargetProgress: Send + Sync {
    /// A phase starts ("connecting", "querying", "sending").
    fn stage(&self, _stage: &str) {}
    /// The target lacks `paths` paths of `bytes` NAR bytes.
    fn planned(&self, _paths: usize, _bytes: u64) {}
    /// `n` more NAR bytes were handed to the connection.
    fn bytes(&self, _n: u64) {}
    /// One more path was sent completely.
    fn path_done(&self) {}
    /// The target is done; `error` if it failed.
    fn finish(&self, _error: Option<&str>) {}
}

/// Ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl TargetProgress for NoProgress {}

impl PushProgress for NoProgress {
    fn target(&self, _name: &str) -> Arc<dyn TargetProgress> {
        Arc::new(NoProgress)
    }
}
