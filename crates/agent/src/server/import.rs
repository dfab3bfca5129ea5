//! Stage 3 of a session: import rebuilt paths through the daemon, in
//! batches, and answer every request in order.
//!
//! A batch is the run of rebuilt pushes waiting when the stage gets to them
//! (at most [`IMPORT_BATCH`], all with the same `check_sigs`): one
//! `QueryValidPaths` for its paths and for the references that failed
//! earlier in the session, then one `AddMultipleToStore` for the paths to
//! import, so the daemon streams through them without a round trip per path.
//! Per path, in order: a path whose info is unusable is resent; one already
//! valid is `Imported` at once (whatever its rebuild gave); one with a
//! reference that failed in this session (before it, also in this batch)
//! and is still invalid is resent, as is one whose rebuild failed; the rest
//! are imported. When the daemon fails the batch, it has registered the
//! paths before the failing one: validity is asked again, and every path of
//! the batch still invalid is resent with the daemon's error (so nothing is
//! answered `Imported` that is not valid).
//!
//! Invariant: the session's `failed` set holds the paths answered `Resend`
//! that were not seen valid since; `done` counts the items answered, in
//! order (the rebuild stage waits on it for files of paths of this session).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::StorePath;
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, watch};

use super::{IMPORT_BATCH, Importer, Ready, RebuiltPush, ResendReason, ServeStats, Spool};
use crate::delta::PlanStats;
use crate::protocol::{FrameWriter, Message, ProtocolError};

/// Import in batches and answer, in order.
pub(super) async fn import_stage<W, I>(
    w: &mut FrameWriter<W>,
    importer: &mut I,
    mut rx: mpsc::Receiver<Ready>,
    done: watch::Sender<u64>,
    stats: &mut ServeStats,
) -> Result<(), ProtocolError>
where
    W: AsyncWrite + Unpin + Send,
    I: Importer,
{
    // The daemon connects while the first paths are read and rebuilt.
    importer.prepare().await;
    let mut failed: HashSet<StorePath> = HashSet::new();
    // An item taken while gathering a batch that does not belong to it.
    let mut next: Option<Ready> = None;
    loop {
        let ready = match next.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => break,
            },
        };
        let replies = match ready {
            Ready::Bye => {
                w.message(&Message::Bye).await?;
                w.flush().await?;
                return Ok(());
            }
            Ready::Reply(m) => vec![m],
            Ready::Push(first) => {
                let sigs = first.check_sigs;
                let mut batch = vec![first];
                while batch.len() < IMPORT_BATCH {
                    match rx.try_recv() {
                        Ok(Ready::Push(p)) if p.check_sigs == sigs => batch.push(p),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                import_batch(importer, &mut failed, batch, stats).await
            }
        };
        for reply in replies {
            done.send_modify(|d| *d += 1);
            w.message(&reply).await?;
        }
        if next.is_none() && rx.is_empty() {
            w.flush().await?;
        }
    }
    w.flush().await?;
    Ok(())
}

/// What becomes of one path of a batch.
enum Fate {
    Answered(Result<(StorePath, PlanStats), ResendReason>),
    /// To import (its place in the import list).
    Import { path: StorePath, methods: PlanStats },
}

/// Import `batch` (see the module doc); the answers, in order.
pub(super) async fn import_batch<I: Importer>(importer: &mut I, failed: &mut HashSet<StorePath>, batch: Vec<RebuiltPush>, stats: &mut ServeStats) -> Vec<Message> {
    let check_sigs = batch.first().is_some_and(|p| p.check_sigs);
    // One question for the batch: its paths and the references that failed before.
    let mut ask: BTreeSet<StorePath> = BTreeSet::new();
    for p in &batch {
        if let Ok((info, _)) = &p.rebuilt {
            ask.insert(info.path.clone());
            ask.extend(info.references.iter().filter(|r| failed.contains(*r)).cloned());
        }
    }
    let ask: Vec<StorePath> = ask.into_iter().collect();
    let valid = if ask.is_empty() { Ok(BTreeSet::new()) } else { importer.valid_among(&ask).await.map_err(Arc::new) };
    for p in valid.iter().flatten() {
        failed.remove(p);
    }
    let mut names = Vec::with_capacity(batch.len());
    let mut fates = Vec::with_capacity(batch.len());
    let mut nars: Vec<(PathInfo, Spool)> = Vec::new();
    let mut importing: HashSet<StorePath> = HashSet::new();
    // The budget permits are held until the batch is answered.
    let mut permits = Vec::with_capacity(batch.len());
    for RebuiltPush { name, rebuilt, _spool: permit, .. } in batch {
        permits.push(permit);
        let fate = match (rebuilt, &valid) {
            (Err(reason), _) => Fate::Answered(Err(reason)),
            (Ok(_), Err(e)) => Fate::Answered(Err(ResendReason::Query(Arc::clone(e)))),
            (Ok((info, rebuilt)), Ok(valid)) => {
                let missing_ref = info.references.iter().find(|r| failed.contains(*r) && !importing.contains(*r)).cloned();
                if valid.contains(&info.path) || importing.contains(&info.path) {
                    Fate::Answered(Ok((info.path, PlanStats::default())))
                } else if let Some(r) = missing_ref {
                    Fate::Answered(Err(ResendReason::Reference(r)))
                } else {
                    match rebuilt {
                        Err(reason) => Fate::Answered(Err(reason)),
                        Ok((spool, methods)) => {
                            importing.insert(info.path.clone());
                            let path = info.path.clone();
                            nars.push((info, spool));
                            Fate::Import { path, methods }
                        }
                    }
                }
            }
        };
        // A path refused here is refused for the paths after it that refer to it.
        if let Fate::Answered(Err(_)) = &fate
            && let Ok(p) = StorePath::from_base_name(&name)
        {
            failed.insert(p);
        }
        names.push(name);
        fates.push(fate);
    }
    let imported = if nars.is_empty() { Ok(()) } else { importer.import(nars, check_sigs).await.map_err(Arc::new) };
    // After a failed batch: the paths the daemon registered before the failure.
    let registered = match &imported {
        Ok(()) => None,
        Err(_) => {
            let paths: Vec<StorePath> = importing.iter().cloned().collect();
            Some(importer.valid_among(&paths).await.unwrap_or_default())
        }
    };
    names
        .into_iter()
        .zip(fates)
        .map(|(name, fate)| {
            let outcome = match fate {
                Fate::Answered(outcome) => outcome,
                Fate::Import { path, methods } => match (&imported, &registered) {
                    (Ok(()), _) => Ok((path, methods)),
                    (Err(_), Some(valid)) if valid.contains(&path) => Ok((path, methods)),
                    (Err(e), _) => Err(ResendReason::Import(Arc::clone(e))),
                },
            };
            match outcome {
                Ok((path, methods)) => {
                    stats.imported += 1;
                    stats.methods.merge(&methods);
                    failed.remove(&path);
                    Message::Imported { path: path.to_string() }
                }
                Err(reason) => {
                    stats.resent += 1;
                    if let Ok(p) = StorePath::from_base_name(&name) {
                        failed.insert(p);
                    }
                    Message::Resend { path: name, reason: reason.to_string() }
                }
            }
        })
        .collect()
}
