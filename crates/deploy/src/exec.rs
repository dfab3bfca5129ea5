//! `ndeploy exec`: one command on many hosts in parallel, output prefixed.
//!
//! Every host gets its own SSH session (at most `jobs` at once); each
//! complete output line goes to the caller as `(host, stream, line)` as it
//! arrives, so lines of different hosts interleave but never mix. The
//! command runs as the login user (`sudo` is the caller's business, as with
//! ssh). The result per host is its exit status or connection error.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::ssh::{ConnectOptions, OutputKind, SshSession, SshTarget};

/// A line of output: host, stream, text.
pub type LineSink = Arc<dyn Fn(&str, OutputKind, &str) + Send + Sync>;

/// How the command ended on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    pub host: String,
    /// `Ok(exit code)` (`None`: killed by a signal / unknown), or the error.
    pub status: Result<Option<u32>, String>,
}

impl ExecResult {
    pub fn success(&self) -> bool {
        self.status == Ok(Some(0))
    }
}

/// Run `cmd` on every `(name, target)`; results in input order.
pub async fn exec_all(
    hosts: Vec<(String, SshTarget)>,
    cmd: &str,
    connect: &ConnectOptions,
    jobs: usize,
    sink: LineSink,
) -> Vec<ExecResult> {
    let sem = Arc::new(Semaphore::new(jobs.clamp(1, Semaphore::MAX_PERMITS)));
    let tasks: Vec<_> = hosts
        .into_iter()
        .map(|(name, target)| {
            let (sem, sink, connect, cmd) = (Arc::clone(&sem), Arc::clone(&sink), connect.clone(), cmd.to_owned());
            let host = name.clone();
            (name, tokio::spawn(async move {
                let _permit = sem.acquire_owned().await;
                let session = SshSession::connect(&target, &connect).await.map_err(|e| e.to_string())?;
                let status = session
                    .exec_lines(&cmd, |kind, line| sink(&host, kind, line))
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = session.disconnect().await;
                Ok(status.code())
            }))
        })
        .collect();
    let mut out = Vec::new();
    for (host, t) in tasks {
        let status = t.await.unwrap_or_else(|e| Err(format!("task failed: {e}")));
        out.push(ExecResult { host, status });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any `-j` is taken (tokio's semaphore panics above its maximum).
    #[tokio::test]
    async fn any_job_count_is_accepted() {
        let sink: LineSink = Arc::new(|_, _, _| {});
        assert!(exec_all(Vec::new(), "true", &ConnectOptions::default(), usize::MAX, sink).await.is_empty());
    }
}
