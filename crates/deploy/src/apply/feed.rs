//! From evaluation to the pipeline: hosts are registered and handed on as
//! their evaluations complete.
//!
//! Design: evaluation sends each host's result as soon as it is done. One
//! task ([`register_and_feed`]) takes whatever results have arrived, has the
//! evaluation's manifest written (`snapshot`, injected: the evaluator's
//! `write_manifest`), registers the paths the local daemon lacks
//! ([`build::Registrar`], partial: other hosts may still be evaluating) and
//! then hands those hosts on to [`super::apply_stream`]. Results arriving
//! while a round runs go together in the next round, so the number of
//! manifest snapshots adapts to how fast registration is. A host is handed
//! on only after a snapshot taken after its evaluation completed, so its
//! whole derivation closure is registered before it builds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::error::FeedError;
use super::{ApplyProgress, HostReport, HostSpec, Phase, Verdict};
use ndeploy_store::daemon::{LocalStore, open_local_store};

use crate::build;

/// A host's evaluation: ready for the pipeline, or why not.
#[derive(Debug)]
pub enum Evaluation {
    Ready(HostSpec),
    Failed(HostReport),
}

/// Writes the evaluation's manifest as it is now.
pub type Snapshot = Arc<dyn Fn() -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send + Sync>;

/// What the feed did.
#[derive(Debug, Default)]
pub struct FeedReport {
    /// Hosts that failed to evaluate or register.
    pub failed: Vec<HostReport>,
    /// Store paths added.
    pub registered: usize,
    /// Time spent writing manifests and registering, in all rounds.
    pub register_secs: f64,
    pub rounds: usize,
}

/// Register and hand on every host arriving on `evaluated` (see the module
/// doc); hosts that failed to evaluate arrive as their failure report.
pub async fn register_and_feed(
    mut evaluated: mpsc::UnboundedReceiver<Evaluation>,
    snapshot: Snapshot,
    drv_dir: PathBuf,
    ready: mpsc::UnboundedSender<HostSpec>,
    progress: Arc<dyn ApplyProgress>,
) -> FeedReport {
    let mut report = FeedReport::default();
    let mut registrar = build::Registrar::default();
    let mut local: Option<LocalStore> = None;
    while let Some(first) = evaluated.recv().await {
        let mut hosts = Vec::new();
        let mut next = Some(first);
        while let Some(result) = next.take().or_else(|| evaluated.try_recv().ok()) {
            match result {
                Evaluation::Ready(h) => hosts.push(h),
                Evaluation::Failed(r) => {
                    progress.line(&r.host, &r.result_text());
                    progress.finished(&r);
                    report.failed.push(r);
                }
            }
        }
        if hosts.is_empty() {
            continue;
        }
        for h in &hosts {
            progress.phase(&h.name, Phase::Registering);
        }
        let t = Instant::now();
        let round = register_round(&mut registrar, &mut local, &snapshot, &drv_dir).await;
        report.register_secs += t.elapsed().as_secs_f64();
        report.rounds += 1;
        match round {
            Ok(n) => {
                report.registered += n;
                for h in hosts {
                    if let Err(mpsc::error::SendError(h)) = ready.send(h) {
                        let r = failed(&h, "the pipeline stopped before this host could start".into());
                        report.failed.push(r);
                    }
                }
            }
            Err(e) => {
                // The connection may be broken: the next round opens a new one.
                local = None;
                for h in hosts {
                    let r = failed(&h, format!("registering the evaluation's derivations: {e}"));
                    progress.line(&r.host, &r.result_text());
                    progress.finished(&r);
                    report.failed.push(r);
                }
            }
        }
    }
    if let Some(l) = local {
        l.close().await;
    }
    report
}

fn failed(h: &HostSpec, why: String) -> HostReport {
    HostReport { host: h.name.clone(), eval_secs: h.eval_secs, verdict: Verdict::Failed(why), ..Default::default() }
}

async fn register_round(
    registrar: &mut build::Registrar,
    local: &mut Option<LocalStore>,
    snapshot: &Snapshot,
    drv_dir: &std::path::Path,
) -> Result<usize, FeedError> {
    let snap = Arc::clone(snapshot);
    tokio::task::spawn_blocking(move || snap()).await.map_err(FeedError::Task)?.map_err(FeedError::Snapshot)?;
    let conn = match local {
        Some(store) => &mut store.conn,
        None => &mut local.insert(open_local_store().await.map_err(FeedError::Local)?).conn,
    };
    Ok(registrar.register(conn, drv_dir, true).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Silent;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn spec(name: &str) -> HostSpec {
        let dir = ndeploy_store::store_path::StoreDir::default();
        let p = dir.parse("/nix/store/00000000000000000000000000000000-x").unwrap();
        HostSpec {
            name: name.into(),
            ssh: crate::ssh::SshTarget::parse("root@localhost").unwrap(),
            drv: p.clone(),
            toplevel: p,
            deployment: serde_json::Value::Null,
            eval_secs: 0.0,
        }
    }

    /// Failed evaluations pass through untouched; a failing manifest
    /// snapshot fails the hosts of its round (and nothing reaches the daemon).
    #[tokio::test]
    async fn failures_are_reported_not_fed() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let evaluated_failed = HostReport { host: "a".into(), verdict: Verdict::Failed("bad".into()), ..Default::default() };
        tx.send(Evaluation::Failed(evaluated_failed)).unwrap();
        tx.send(Evaluation::Ready(spec("b"))).unwrap();
        drop(tx);
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let snapshot: Snapshot = Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
            Err("disk full".into())
        });
        let r = register_and_feed(rx, snapshot, PathBuf::from("/nonexistent"), ready_tx, Arc::new(Silent)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one round for both results");
        assert_eq!((r.rounds, r.registered), (1, 0));
        let failed: Vec<(&str, String)> = r.failed.iter().map(|h| (h.host.as_str(), h.result_text())).collect();
        assert_eq!(failed, [("a", "FAILED: bad".to_owned()), ("b", "FAILED: registering the evaluation's derivations: disk full".to_owned())]);
        assert!(ready_rx.recv().await.is_none(), "nothing fed");
    }
}
