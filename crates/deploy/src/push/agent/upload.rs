//! One target's push through the agent (see [`super`] for the steps).
//!
//! [`upload`] owns the decisions: the knowledge it builds (held paths and
//! their manifests), the agent's start (or the fallback to [`super::plain`]
//! when it cannot start), the encoding pipeline (a blocking thread encodes
//! the missing paths in reference order into a bounded queue that
//! [`AgentClient::push_from`] drains while the agent's answers come back),
//! and the resends. Each path encoded is added to the knowledge at once, so
//! later paths of the same push can reference its files (the agent imports in
//! order, and refuses a plan whose references it cannot verify).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ndeploy_agent::client::{AgentClient, PushItem, PushOutcome};
use ndeploy_agent::delta::{EncodeOptions, KnowledgeIndex, PlanStats, encode};
use ndeploy_agent::manifest::NarManifest;
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::signature::SecretKey;
use ndeploy_store::store_path::{StoreDir, StorePath};

use super::super::progress::TargetProgress;
use super::super::run::Dumper;
use super::super::session::TargetSession;
use super::install::AgentPackage;
use super::record::Records;
use super::stats::{TransferStats, Via};
use super::{AgentError, plain};
use crate::ssh::{ChannelReader, ChannelWriter, ExitWatch};

/// Encoded paths queued ahead of the connection.
const QUEUE: usize = 8;

/// Everything one target's agent push needs besides its session.
pub struct AgentJob {
    /// Cache key of the target ([`super::target_key`]).
    pub key: String,
    pub package: Arc<AgentPackage>,
    /// The paths to send, references first.
    pub missing: Vec<PathInfo>,
    /// Paths of the wanted closure the target already has.
    pub valid: Vec<StorePath>,
    /// The local store.
    pub store_dir: StoreDir,
    pub records: Records,
    /// For paths sent whole.
    pub dumper: Dumper,
    /// Sign path infos with this key (targets that do not trust us).
    pub sign_key: Option<SecretKey>,
    pub progress: Arc<dyn TargetProgress>,
}

/// A running agent on the target.
struct Running {
    client: AgentClient<ChannelReader, ChannelWriter>,
    exit: ExitWatch,
}

/// Push `job.missing` to the target of `t` through the agent, falling back
/// to the plain push when the agent cannot be installed or started there.
/// Returns the transfer figures and the outcome (an error fails the target).
pub async fn upload(t: &mut TargetSession, job: AgentJob) -> (TransferStats, Result<(), String>) {
    let started = Instant::now();
    let mut stats = TransferStats::default();
    let result = run(t, &job, &mut stats).await;
    stats.seconds = started.elapsed().as_secs_f64();
    (stats, result)
}

async fn run(t: &mut TargetSession, job: &AgentJob, stats: &mut TransferStats) -> Result<(), String> {
    let host = t.ssh.host().to_owned();
    let signer = job.sign_key.clone().filter(|_| t.trusted() != Some(true)).map(|k| (k, job.store_dir.clone()));
    let sign = || signer.clone();
    // The cached manifests of what the target most likely holds load while
    // the target is asked what it holds and the agent starts.
    let preload = {
        let records = job.records.clone();
        let mut likely: BTreeSet<StorePath> = job.valid.iter().cloned().collect();
        likely.extend(job.records.held(&job.key));
        tokio::task::spawn_blocking(move || cached_manifests(&records, likely.into_iter().collect()))
    };
    let held = held_paths(t, job).await;
    let mut running = match start(t, job, stats).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!("{host}: the agent cannot run ({e}); sending whole NARs");
            stats.fallback = Some(e.to_string());
            let nar = plain::upload(t, job.missing.clone(), Arc::clone(&job.dumper), job.records.clone(), sign(), Arc::clone(&job.progress)).await?;
            stats.wire_bytes += nar;
            remember(job, held, job.missing.iter().map(|i| i.path.clone()));
            return Ok(());
        }
    };
    stats.via = Via::Agent;
    job.progress.stage("indexing");
    let preloaded = preload.await.unwrap_or_default();
    let knowledge = knowledge(&mut running.client, job, &held, preloaded, stats).await.map_err(|e| format!("agent on {host}: {e}"))?;
    job.progress.stage("sending");
    let check_sigs = t.trusted() == Some(false);
    let sign_key = sign();
    let (tx, rx) = tokio::sync::mpsc::channel::<PushItem>(QUEUE);
    let (missing, dir, progress) = (job.missing.clone(), job.store_dir.clone(), Arc::clone(&job.progress));
    let records = job.records.clone();
    let producer =
        tokio::task::spawn_blocking(move || encode_all(missing, dir, knowledge, &records, sign_key, check_sigs, tx, progress));
    let pushed = running.client.push_from(rx).await;
    // A dead connection stops the producer (its queue is closed).
    let produced = producer.await.map_err(|e| format!("encoder failed: {e}"))?;
    let report = match (pushed, produced) {
        (_, Err(e)) => {
            let _ = finish(running).await;
            return Err(e);
        }
        (Err(e), Ok(())) => {
            let tail = finish(running).await;
            return Err(format!("agent on {host}: {e}{tail}"));
        }
        (Ok(r), Ok(())) => r,
    };
    stats.wire_bytes += report.wire_bytes;
    add_methods(stats, &report.stats);
    let imported: Vec<StorePath> =
        report.outcomes.iter().filter(|(_, o)| *o == PushOutcome::Imported).map(|(p, _)| p.clone()).collect();
    let tail = finish(running).await;
    if !tail.is_empty() {
        tracing::debug!("{host}: agent exit{tail}");
    }
    // Whatever the agent could not rebuild and verify travels whole.
    let resend: Vec<PathInfo> = job
        .missing
        .iter()
        .filter(|i| report.outcomes.iter().any(|(p, o)| *p == i.path && *o != PushOutcome::Imported))
        .cloned()
        .collect();
    for (p, why) in report.resends() {
        tracing::info!("{host}: {p} is sent whole: {why}");
    }
    let answered = report.outcomes.len();
    remember(job, held.clone(), imported.iter().cloned());
    if answered != job.missing.len() {
        return Err(format!("agent on {host} answered {answered} of {} paths", job.missing.len()));
    }
    if !resend.is_empty() {
        stats.resent_paths = resend.len() as u64;
        stats.resent_nar_bytes = resend.iter().map(|i| i.nar_size).sum();
        stats.fallback = Some(format!("{} path(s) the agent could not rebuild were sent whole", resend.len()));
        let paths: Vec<StorePath> = resend.iter().map(|i| i.path.clone()).collect();
        let nar = plain::upload(t, resend, Arc::clone(&job.dumper), job.records.clone(), sign(), Arc::clone(&job.progress)).await?;
        stats.wire_bytes += nar;
        remember(job, held, imported.into_iter().chain(paths));
    }
    Ok(())
}

/// The paths the target holds that we know of: the valid part of the wanted
/// closure, what the record says (checked with QueryValidPaths), and the
/// closure of the system it runs (`/run/current-system`, when there is one:
/// a target deployed by other means has its previous versions there).
async fn held_paths(t: &mut TargetSession, job: &AgentJob) -> BTreeSet<StorePath> {
    let host = t.ssh.host().to_owned();
    let mut held: BTreeSet<StorePath> = job.valid.iter().cloned().collect();
    let recorded: Vec<StorePath> = job.records.held(&job.key).into_iter().filter(|p| !held.contains(p)).collect();
    if !recorded.is_empty() {
        match t.store.conn.query_valid_paths(&recorded, false).await {
            Ok(valid) => held.extend(valid),
            Err(e) => tracing::debug!("{host}: cannot check the recorded paths: {e}"),
        }
    }
    let current = match t.ssh.exec("readlink -f /run/current-system").await {
        Ok(out) if out.status.success() => job.store_dir.parse(String::from_utf8_lossy(&out.stdout).trim()).ok(),
        _ => None,
    };
    if let Some(system) = current.filter(|p| !held.contains(p)) {
        match t.store.conn.query_closure(&[system]).await {
            Ok(infos) => held.extend(infos.into_iter().map(|i| i.path)),
            Err(e) => tracing::debug!("{host}: cannot read the current system's closure: {e}"),
        }
    }
    held
}

/// Record that the target holds `held` and `more`.
fn remember(job: &AgentJob, mut held: BTreeSet<StorePath>, more: impl IntoIterator<Item = StorePath>) {
    held.extend(more);
    held.insert(job.package.path().clone());
    job.records.set_held(&job.key, &held);
}

/// Install the agent (tier 0) if the target lacks it, and start it (as the
/// store session runs: as root, or as a user without sudo).
async fn start(t: &mut TargetSession, job: &AgentJob, stats: &mut TransferStats) -> Result<Running, AgentError> {
    if t.store.conn.store_dir() != &job.store_dir {
        return Err(AgentError::Start(format!("the target's store is {}, ours {}", t.store.conn.store_dir().as_str(), job.store_dir.as_str())));
    }
    job.progress.stage("installing agent");
    stats.agent_installed = job.package.add_to(&mut t.store.conn).await?;
    if stats.agent_installed {
        stats.wire_bytes += job.package.info.nar_size;
    }
    let host = t.ssh.host().to_owned();
    // As root (through `sudo -n` for other users), or, when the store session
    // runs as the user itself (no sudo), as that user too: the agent then
    // imports through the daemon's socket, which checks signatures.
    let agent = job.package.command(&job.store_dir);
    let cmd = if t.store.as_user { agent } else { t.ssh.root_command(&agent) };
    let stream = t
        .ssh
        .exec_stream(&cmd, move |data| {
            for line in String::from_utf8_lossy(data).lines().filter(|l| !l.trim().is_empty()) {
                tracing::info!("{host}> {line}");
            }
        })
        .await
        .map_err(|e| AgentError::Start(e.to_string()))?;
    let (reader, writer, mut exit) = stream.into_split();
    match AgentClient::handshake(reader, writer, job.store_dir.clone()).await {
        Ok(client) => Ok(Running { client, exit }),
        Err(e) => {
            let status = exit.wait().await;
            let tail = exit.stderr_tail();
            let tail = tail.trim();
            Err(AgentError::Start(if tail.is_empty() {
                format!("{e} (agent exited: {status})")
            } else {
                format!("{e} (agent exited: {status}: {tail})")
            }))
        }
    }
}

/// End the agent session; the agent's last words when it failed.
async fn finish(r: Running) -> String {
    let Running { client, mut exit } = r;
    let bye = client.bye().await;
    let status = exit.wait().await;
    match bye {
        Ok(()) if status.success() => String::new(),
        _ => {
            let tail = exit.stderr_tail();
            let tail = tail.trim();
            if tail.is_empty() { format!(" (agent: {status})") } else { format!(" (agent: {status}: {tail})") }
        }
    }
}

/// The knowledge index of `held`: manifests from the cache (`preloaded`
/// holds some already), from the local store, or from the agent; base files
/// are read from the local store. Paths join the index in `held`'s order.
async fn knowledge(
    client: &mut AgentClient<ChannelReader, ChannelWriter>,
    job: &AgentJob,
    held: &BTreeSet<StorePath>,
    mut preloaded: HashMap<StorePath, NarManifest>,
    stats: &mut TransferStats,
) -> Result<KnowledgeIndex, ndeploy_agent::ProtocolError> {
    let (records, dir) = (job.records.clone(), PathBuf::from(job.store_dir.as_str()));
    let rest: Vec<StorePath> = held.iter().filter(|p| !preloaded.contains_key(*p)).cloned().collect();
    let mut local: HashMap<StorePath, Found> = tokio::task::spawn_blocking(move || local_manifests(&records, &dir, rest))
        .await
        .map_err(|e| ndeploy_agent::ProtocolError::Io(std::io::Error::other(e.to_string())))?
        .into_iter()
        .collect();
    let mut index = KnowledgeIndex::reading_from(job.store_dir.as_str());
    let mut ask = Vec::new();
    for path in held {
        let found = match preloaded.remove(path) {
            Some(m) => Found::Cached(m),
            None => local.remove(path).unwrap_or(Found::Missing),
        };
        let path = path.clone();
        match found {
            Found::Cached(m) => {
                stats.manifests_cached += 1;
                index.add(path, m);
            }
            Found::Local(m) => {
                stats.manifests_local += 1;
                index.add(path, m);
            }
            Found::Missing => ask.push(path),
        }
    }
    if !ask.is_empty() {
        let before = client.bytes_sent();
        let answers = client.manifests(&ask).await?;
        stats.wire_bytes += client.bytes_sent() - before;
        for (path, m) in ask.into_iter().zip(answers) {
            if let Some(m) = m {
                stats.manifests_remote += 1;
                job.records.save_manifest(&path, &m);
                index.add(path, m);
            }
        }
    }
    Ok(index)
}

enum Found {
    Cached(NarManifest),
    Local(NarManifest),
    Missing,
}

/// The manifests the cache holds for `paths` (read in parallel).
fn cached_manifests(records: &Records, paths: Vec<StorePath>) -> HashMap<StorePath, NarManifest> {
    use rayon::prelude::*;
    paths.into_par_iter().filter_map(|p| records.manifest(&p).map(|m| (p, m))).collect()
}

/// Manifests from the cache, else computed from the local store (in
/// parallel) and cached; `Missing` for paths the deployer does not have.
fn local_manifests(records: &Records, dir: &Path, paths: Vec<StorePath>) -> Vec<(StorePath, Found)> {
    use rayon::prelude::*;
    paths
        .into_par_iter()
        .map(|p| {
            if let Some(m) = records.manifest(&p) {
                return (p, Found::Cached(m));
            }
            let on_disk = dir.join(p.to_string());
            match std::fs::symlink_metadata(&on_disk).ok().and_then(|_| NarManifest::from_disk(&on_disk).ok()) {
                Some(m) => {
                    records.save_manifest(&p, &m);
                    (p, Found::Local(m))
                }
                None => (p, Found::Missing),
            }
        })
        .collect()
}

/// Paths whose manifests are computed at once (in parallel) ahead of the
/// encoder; the first batches are smaller (1, 2, 4, ...) so that the first
/// path goes out as soon as its own manifest is known.
const MANIFEST_BATCH: usize = 16;

/// The producer: encode each path against the knowledge, in order, into
/// `tx`; each path's manifest is cached (the next push knows it). The
/// manifests (every file's BLAKE3: most of the work when the files are
/// references) come from the cache or are computed by a thread of their own,
/// a batch at a time on all cores, while the encoder works on the paths
/// before; the encoding itself stays in order, since each path encoded joins
/// the knowledge that later paths are planned against.
#[allow(clippy::too_many_arguments)]
fn encode_all(
    missing: Vec<PathInfo>,
    dir: StoreDir,
    mut knowledge: KnowledgeIndex,
    records: &Records,
    sign: Option<(SecretKey, StoreDir)>,
    check_sigs: bool,
    tx: tokio::sync::mpsc::Sender<PushItem>,
    progress: Arc<dyn TargetProgress>,
) -> Result<(), String> {
    use rayon::prelude::*;
    let opts = EncodeOptions::default();
    let (manifest_tx, manifest_rx) = std::sync::mpsc::sync_channel(MANIFEST_BATCH);
    // New manifests are written to the cache by a thread of their own (a
    // file each: creating hundreds of files costs the encoder time otherwise).
    let (save_tx, save_rx) = std::sync::mpsc::channel::<(StorePath, NarManifest)>();
    std::thread::scope(|s| {
        s.spawn(move || {
            for (path, m) in save_rx {
                records.save_manifest(&path, &m);
            }
        });
        s.spawn(|| {
            let (mut at, mut size) = (0, 1);
            while let Some(batch) = missing.get(at..(at + size).min(missing.len())).filter(|b| !b.is_empty()) {
                let manifests: Vec<_> = batch
                    .par_iter()
                    .map(|info| match records.manifest(&info.path) {
                        Some(m) => Ok((m, true)),
                        None => NarManifest::from_disk(Path::new(&dir.display(&info.path))).map(|m| (m, false)),
                    })
                    .collect();
                for m in manifests {
                    // The encoder stopped (its receiver is gone).
                    if manifest_tx.send(m).is_err() {
                        return;
                    }
                }
                at += size;
                size = (size * 2).min(MANIFEST_BATCH);
            }
        });
        // Owns the receiver: when the encoder stops early, the manifest thread's next send fails.
        let manifests = manifest_rx;
        // Owned here, so the saver's queue closes when the encoder is done.
        let save_tx = save_tx;
        for info in &missing {
            let mut info = info.clone();
            let manifest = manifests.recv().map_err(|_| format!("cannot encode {}: its manifest was not computed", info.path))?;
            let (manifest, cached) = manifest.map_err(|e| format!("cannot encode {}: {e}", info.path))?;
            let on_disk = PathBuf::from(dir.display(&info.path));
            let encode_with = |m: &NarManifest| encode(&info.path, m, &mut |rel| std::fs::read(rel.under(&on_disk)), &knowledge, &opts);
            // A cached manifest that no longer fits the files (a damaged cache): computed again.
            let (manifest, encoded, save) = match encode_with(&manifest) {
                Ok(e) => (manifest, e, !cached),
                Err(_) if cached => {
                    let m = NarManifest::from_disk(&on_disk).map_err(|e| format!("cannot encode {}: {e}", info.path))?;
                    let e = encode_with(&m).map_err(|e| format!("cannot encode {}: {e}", info.path))?;
                    (m, e, true)
                }
                Err(e) => return Err(format!("cannot encode {}: {e}", info.path)),
            };
            if let Some((key, dir)) = &sign {
                info.sign(dir, key).map_err(|e| e.to_string())?;
            }
            if save {
                // The saver ends with the scope (when this sender is dropped).
                let _ = save_tx.send((info.path.clone(), manifest.clone()));
            }
            knowledge.add(info.path.clone(), manifest);
            let nar_size = info.nar_size;
            if tx.blocking_send(PushItem { info, encoded, check_sigs }).is_err() {
                // The connection is gone; its error is reported by the sender side.
                return Ok(());
            }
            progress.bytes(nar_size);
            progress.path_done();
        }
        Ok(())
    })
}

fn add_methods(stats: &mut TransferStats, p: &PlanStats) {
    for (mine, theirs) in
        [(&mut stats.reference, &p.reference), (&mut stats.delta, &p.delta), (&mut stats.chunks, &p.chunks), (&mut stats.raw, &p.raw)]
    {
        mine.files += theirs.files;
        mine.nar_bytes += theirs.file_bytes;
        mine.sent_bytes += theirs.payload_bytes;
    }
}
