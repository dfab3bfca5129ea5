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

/// Counts what was sent (for the report, also of targets that fail midway)
/// and forwards every event.
pub struct Counted {
    inner: Arc<dyn TargetProgress>,
    paths: std::sync::atomic::AtomicUsize,
    bytes: std::sync::atomic::AtomicU64,
}

impl Counted {
    pub fn new(inner: Arc<dyn TargetProgress>) -> Counted {
        Counted { inner, paths: Default::default(), bytes: Default::default() }
    }

    /// Paths and NAR bytes handed to the connection so far.
    pub fn sent(&self) -> (usize, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.paths.load(Relaxed), self.bytes.load(Relaxed))
    }
}

impl TargetProgress for Counted {
    fn stage(&self, stage: &str) {
        self.inner.stage(stage);
    }
    fn planned(&self, paths: usize, bytes: u64) {
        self.inner.planned(paths, bytes);
    }
    fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        self.inner.bytes(n);
    }
    fn path_done(&self) {
        self.paths.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.path_done();
    }
    fn finish(&self, error: Option<&str>) {
        self.inner.finish(error);
    }
}
