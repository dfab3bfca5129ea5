//! The agent's side of the protocol (`ndeploy-agent --stdio`): answers
//! `Index` from the store's files on disk, rebuilds each pushed NAR from its
//! plan, verifies it, and imports it through the target's own daemon.
//!
//! A session is a pipeline of three stages joined by bounded queues, so
//! reading the next payload, rebuilding NARs and importing the previous ones
//! overlap: the *reader* reads messages and payloads ahead (at most
//! [`READ_AHEAD`] payload bytes buffered; a payload over [`MAX_PAYLOAD`] is
//! skipped and answered `Resend`); the *rebuilder* rebuilds NARs on blocking
//! threads, up to one per core at once, each into a spool (memory, or a
//! temporary file above [`SPOOL_IN_MEMORY`]; at most [`SPOOL_BUDGET`] bytes
//! of spools in memory wait for the importer), and answers `Index` requests
//! from disk, handing everything on in request order; the *importer*
//! ([`import`]) connects to the daemon at the start and takes the rebuilt
//! paths waiting for it as one batch (up to [`IMPORT_BATCH`]) and answers in
//! order: `Imported` at once if the path is already valid, `Resend` if a
//! reference failed earlier in the session or the rebuild failed, else it
//! imports the batch's other paths with one `AddMultipleToStore` (the daemon
//! streams on without a round trip per path) and answers `Imported`.
//!
//! Verification: the rebuild checks every file's size and BLAKE3 as it is
//! produced (reused files, deltas, patches and raw bytes alike) and the
//! NAR's size; the NAR's sha256 is checked once, by the daemon, which
//! refuses to register a path whose NAR hash or size differ from its path
//! info (Nix's `LocalStore::addToStore`), so the agent does not hash the
//! NAR a second time. Every failure of a single path (bad base file, size
//! or hash mismatch, daemon refusal) is a `Resend` with the reason (a
//! [`ResendReason`]; a daemon refusal also resends the paths after it in
//! its batch), and the session goes on; the session's set of failed
//! paths only holds paths still invalid (a referenced one is asked about
//! again before a path is refused for it, and leaves the set once valid); only a broken stream or an undecodable message ends it
//! (after an `Error` message when possible).
//!
//! The daemon is reached through the [`Importer`] trait so the loop tests
//! without one; [`DaemonImporter`] is the real one: the local socket, or
//! `nix-daemon --stdio` (optionally on a chroot store) when there is none.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::{StoreDir, StorePath};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, BufWriter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::delta::{DecodeError, NarPlan, PlanStats, StoreFiles, decode};
use crate::manifest::NarManifest;
use crate::protocol::{FrameReader, FrameWriter, Message, PathManifest, ProtocolError};

mod daemon;
mod import;
mod spool;
#[cfg(test)]
mod tests;

pub use daemon::{DaemonImporter, DaemonTarget, ImportError, Importer};
pub use spool::Spool;

/// Why the agent answers `Resend` for a path (the deployer gets the text and
/// sends that path whole); the session goes on.
#[derive(Debug, Error)]
pub enum ResendReason {
    #[error("payload of {len} bytes is over the agent's limit of {MAX_PAYLOAD}")]
    PayloadTooLarge { len: u64 },
    #[error(transparent)]
    Info(ProtocolError),
    #[error("spooling the NAR: {0}")]
    Spool(#[source] io::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("rebuilt NAR has {got} bytes, the path info says {want}")]
    Size { got: u64, want: u64 },
    #[error("asking the daemon: {0}")]
    Query(#[source] Arc<ImportError>),
    #[error("its reference '{0}' was not imported")]
    Reference(StorePath),
    /// The import of its batch failed (at this path or one before it).
    #[error("importing: {0}")]
    Import(#[source] Arc<ImportError>),
}

/// Largest payload accepted for one path.
pub const MAX_PAYLOAD: u64 = 1 << 30;
/// Rebuilt NARs up to this size stay in memory; larger ones go to a temporary file.
pub const SPOOL_IN_MEMORY: u64 = 128 << 20;

/// Where the target's store is.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// The logical store dir (`/nix/store`).
    pub store_dir: StoreDir,
    /// For a chroot store (`local?root=DIR`): DIR. Files are then read under it.
    pub store_root: Option<PathBuf>,
}

impl ServerConfig {
    /// Where the store's files are on this machine.
    pub fn files_dir(&self) -> PathBuf {
        match &self.store_root {
            Some(root) => root.join(self.store_dir.as_str().trim_start_matches('/')),
            None => PathBuf::from(self.store_dir.as_str()),
        }
    }
}

/// Payload bytes the reader may hold ahead of the rebuilder.
pub const READ_AHEAD: u64 = 256 << 20;
/// Bytes of rebuilt NARs in memory that may wait for the importer: enough
/// to keep the daemon busy (the slowest stage on a fast link) for a good
/// while, small enough that the spools' buffers are recycled (a push of
/// 300 MiB through a budget of 256 MiB spent a quarter of the agent's CPU
/// on page faults of fresh buffers).
pub const SPOOL_BUDGET: u64 = 96 << 20;
/// Paths imported with one `AddMultipleToStore` at most.
pub const IMPORT_BATCH: usize = 64;

/// What a session did.
#[derive(Debug, Clone, Default)]
pub struct ServeStats {
    pub imported: u64,
    pub resent: u64,
    pub indexed: u64,
    pub methods: PlanStats,
}

/// Serve one session on `reader`/`writer` until `Bye` or the end of the stream.
pub async fn serve<R, W, I>(reader: R, writer: W, config: &ServerConfig, importer: &mut I) -> Result<ServeStats, ProtocolError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
    I: Importer,
{
    let mut r = FrameReader::new(BufReader::with_capacity(256 << 10, reader));
    let mut w = FrameWriter::new(BufWriter::new(writer));
    let mut stats = ServeStats::default();
    let res = session(&mut r, &mut w, config, importer, &mut stats).await;
    if let Err(e) = &res
        && !matches!(e, ProtocolError::Disconnected | ProtocolError::Truncated | ProtocolError::Io(_))
    {
        // Best effort: tell the client why before closing.
        let _ = w.message(&Message::Error { message: e.to_string() }).await;
        let _ = w.flush().await;
    }
    res.map(|()| stats)
}

/// A request as read (first stage). Variants are moved through queues, not
/// stored, so their size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Incoming {
    Index(Vec<String>),
    Push { info: Result<PathInfo, ProtocolError>, name: String, plan: NarPlan, payload: Result<Vec<u8>, ResendReason>, check_sigs: bool, permit: Option<OwnedSemaphorePermit> },
    Bye,
}

/// A request ready to answer (second stage). Variants are moved through a
/// queue, not stored, so their size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Ready {
    Reply(Message),
    Push(RebuiltPush),
    Bye,
}

/// A pushed path after the rebuild stage.
struct RebuiltPush {
    name: String,
    /// The path info (or why it is unusable) and, with it, the rebuilt NAR (or why it could not be rebuilt).
    rebuilt: Result<(PathInfo, Rebuilt), ResendReason>,
    check_sigs: bool,
    /// Its share of [`SPOOL_BUDGET`], returned once it is imported.
    _spool: Option<OwnedSemaphorePermit>,
}

fn join_error(e: tokio::task::JoinError) -> ProtocolError {
    ProtocolError::Io(io::Error::other(e.to_string()))
}

async fn session<R, W, I>(r: &mut FrameReader<R>, w: &mut FrameWriter<W>, config: &ServerConfig, importer: &mut I, stats: &mut ServeStats) -> Result<(), ProtocolError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
    I: Importer,
{
    let hello = r.message().await?;
    let checked = hello.check_hello(&config.store_dir);
    w.message(&Message::hello(&config.store_dir)).await?;
    w.flush().await?;
    checked?;
    let files = config.files_dir();
    let (in_tx, in_rx) = mpsc::channel::<Incoming>(16);
    let (ready_tx, ready_rx) = mpsc::channel::<Ready>(IMPORT_BATCH);
    // A read error ends the reader only: what was received before it is
    // still rebuilt and imported, then the error ends the session.
    let read = async { Ok::<_, ProtocolError>(read_stage(r, in_tx).await.err()) };
    let (done_tx, done_rx) = watch::channel(0u64);
    let (read_error, indexed, ()) = tokio::try_join!(
        read,
        rebuild_stage(&files, in_rx, ready_tx, done_rx),
        import::import_stage(w, importer, ready_rx, done_tx, stats)
    )?;
    stats.indexed = indexed;
    read_error.map_or(Ok(()), Err)
}

/// Stage 1: read requests and their payloads ahead, within [`READ_AHEAD`].
async fn read_stage<R: AsyncRead + Unpin + Send>(r: &mut FrameReader<R>, tx: mpsc::Sender<Incoming>) -> Result<(), ProtocolError> {
    let budget = Arc::new(Semaphore::new((READ_AHEAD >> 10) as usize));
    loop {
        let incoming = match r.message().await {
            Err(ProtocolError::Disconnected) => return Ok(()),
            Err(e) => return Err(e),
            Ok(Message::Index { paths }) => Incoming::Index(paths),
            Ok(Message::Push { info, plan, check_sigs }) => {
                let (payload, permit) = if plan.payload_len > MAX_PAYLOAD {
                    r.skip_payload().await?;
                    (Err(ResendReason::PayloadTooLarge { len: plan.payload_len }), None)
                } else {
                    let kib = u32::try_from((plan.payload_len >> 10).min(READ_AHEAD >> 10)).unwrap_or(u32::MAX);
                    let permit = Arc::clone(&budget).acquire_many_owned(kib).await.map_err(|e| ProtocolError::Io(io::Error::other(e.to_string())))?;
                    (Ok(r.payload(plan.payload_len).await?), Some(permit))
                };
                Incoming::Push { info: info.to_path_info(), name: info.path, plan, payload, check_sigs, permit }
            }
            Ok(Message::Bye) => {
                let _ = tx.send(Incoming::Bye).await;
                return Ok(());
            }
            Ok(other) => return Err(ProtocolError::Unexpected { expected: "Index, Push or Bye", got: other.name().to_owned() }),
        };
        if tx.send(incoming).await.is_err() {
            return Ok(());
        }
    }
}

/// Stage 2: rebuild NARs and read manifests, on blocking threads (up to
/// [`rebuilders`] NARs at once); returns the number of paths indexed. The
/// dispatcher starts each item's work in order and the forwarder hands the
/// results to stage 3 in the same order. A plan that reuses files of a path
/// pushed earlier in the session waits until stage 3 is done with that path
/// (its files are on disk only once imported); `done` counts the items
/// stage 3 has finished, and items are numbered in order.
async fn rebuild_stage(files: &Path, rx: mpsc::Receiver<Incoming>, tx: mpsc::Sender<Ready>, done: watch::Receiver<u64>) -> Result<u64, ProtocolError> {
    let (started_tx, mut started_rx) = mpsc::channel::<Started>(IMPORT_BATCH);
    let forward = async move {
        while let Some(started) = started_rx.recv().await {
            let ready = match started {
                Started::Ready(r) => r,
                Started::Index(task) => Ready::Reply(Message::Manifests { manifests: task.await.map_err(join_error)? }),
                Started::Push { name, rebuilt, check_sigs, spool } => {
                    let rebuilt = match rebuilt {
                        Ok((info, Rebuilding::Done(r))) => Ok((info, r)),
                        Ok((info, Rebuilding::Task(task))) => Ok((info, task.await.map_err(join_error)?)),
                        Err(e) => Err(e),
                    };
                    Ready::Push(RebuiltPush { name, rebuilt, check_sigs, _spool: spool })
                }
            };
            if tx.send(ready).await.is_err() {
                break;
            }
        }
        Ok::<(), ProtocolError>(())
    };
    let (indexed, ()) = tokio::try_join!(dispatch(files, rx, started_tx, done), forward)?;
    Ok(indexed)
}

/// NARs rebuilt at once: one per core (at most 4).
fn rebuilders() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4)
}

/// An item of stage 2 whose work has started, on its way to the forwarder.
enum Started {
    Ready(Ready),
    Index(tokio::task::JoinHandle<Vec<PathManifest>>),
    Push { name: String, rebuilt: Result<(PathInfo, Rebuilding), ResendReason>, check_sigs: bool, spool: Option<OwnedSemaphorePermit> },
}

enum Rebuilding {
    Done(Rebuilt),
    Task(tokio::task::JoinHandle<Rebuilt>),
}

fn closed(e: tokio::sync::AcquireError) -> ProtocolError {
    ProtocolError::Io(io::Error::other(e.to_string()))
}

/// Stage 2's dispatcher: start each item's work, in order (see [`rebuild_stage`]).
async fn dispatch(files: &Path, mut rx: mpsc::Receiver<Incoming>, tx: mpsc::Sender<Started>, mut done: watch::Receiver<u64>) -> Result<u64, ProtocolError> {
    let mut indexed = 0;
    let spools = Arc::new(Semaphore::new((SPOOL_BUDGET >> 10) as usize));
    let workers = Arc::new(Semaphore::new(rebuilders()));
    // Item number of each path pushed in this session.
    let mut pushed: HashMap<String, u64> = HashMap::new();
    let mut seq = 0u64;
    while let Some(incoming) = rx.recv().await {
        let item = seq;
        seq += 1;
        let started = match incoming {
            Incoming::Index(paths) => {
                indexed += paths.len() as u64;
                let dir = files.to_owned();
                Started::Index(tokio::task::spawn_blocking(move || index(&dir, paths)))
            }
            Incoming::Push { info, name, plan, payload, check_sigs, permit } => {
                if let Some(last) = plan.sources().filter_map(|p| pushed.get(p)).max() {
                    let last = *last;
                    // An error means stage 3 has ended; the session is over anyway.
                    let _ = done.wait_for(|d| *d > last).await;
                }
                pushed.insert(name.clone(), item);
                let mut spool = None;
                let rebuilt = match (info, payload) {
                    (Ok(i), Ok(payload)) => {
                        // Spools in memory wait within the budget (a spool file does not count).
                        if i.nar_size <= SPOOL_IN_MEMORY {
                            let kib = u32::try_from((i.nar_size >> 10).min(SPOOL_BUDGET >> 10)).unwrap_or(u32::MAX);
                            spool = Some(Arc::clone(&spools).acquire_many_owned(kib).await.map_err(closed)?);
                        }
                        let worker = Arc::clone(&workers).acquire_owned().await.map_err(closed)?;
                        let (source, size) = (StoreFiles { dir: files.to_owned() }, i.nar_size);
                        let task = tokio::task::spawn_blocking(move || {
                            let r = rebuild(&plan, &payload, &source, size);
                            // The payload's share of the read-ahead and the worker are free again.
                            drop((payload, permit, worker));
                            r
                        });
                        Ok((i, Rebuilding::Task(task)))
                    }
                    (Ok(i), Err(e)) => Ok((i, Rebuilding::Done(Err(e)))),
                    (Err(e), _) => Err(ResendReason::Info(e)),
                };
                Started::Push { name, rebuilt, check_sigs, spool }
            }
            Incoming::Bye => Started::Ready(Ready::Bye),
        };
        if tx.send(started).await.is_err() {
            break;
        }
    }
    Ok(indexed)
}

/// A rebuilt and verified NAR, or why there is none.
type Rebuilt = Result<(Spool, PlanStats), ResendReason>;

/// Manifests of the paths present under `dir` (`None` for absent or
/// unreadable ones), in request order, read by a few threads at once (a
/// first index of a big store is disk-bound).
fn index(dir: &Path, paths: Vec<String>) -> Vec<PathManifest> {
    let one = |path: &String| {
        StorePath::from_base_name(path)
            .ok()
            .map(|p| dir.join(p.to_string()))
            .filter(|full| std::fs::symlink_metadata(full).is_ok())
            .and_then(|full| NarManifest::from_disk(&full).ok())
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut found: Vec<Option<NarManifest>> = vec![None; paths.len()];
    let done: Vec<Vec<(usize, Option<NarManifest>)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.min(paths.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(path) = paths.get(i) else { return mine };
                        mine.push((i, one(path)));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_default()).collect()
    });
    for (i, m) in done.into_iter().flatten() {
        if let Some(slot) = found.get_mut(i) {
            *slot = m;
        }
    }
    paths.into_iter().zip(found).map(|(path, manifest)| PathManifest { path, manifest }).collect()
}

/// Rebuild one NAR (see the module doc): every file's size and BLAKE3 are
/// checked as it is produced ([`decode`]) and the NAR's size here; its
/// sha256 is left to the daemon, which checks it against the path info
/// before it registers the path.
fn rebuild(plan: &NarPlan, payload: &[u8], source: &StoreFiles, nar_size: u64) -> Rebuilt {
    let spool = Spool::new(nar_size).map_err(ResendReason::Spool)?;
    let (Bounded { inner: spool, left }, stats) = decode(plan, payload, source, Bounded { inner: spool, left: nar_size })?;
    if left != 0 {
        return Err(ResendReason::Size { got: nar_size - left, want: nar_size });
    }
    Ok((spool, stats))
}

/// A writer that refuses to grow past the declared NAR size (a plan must
/// not make the agent spool more than the path info announced).
struct Bounded<W> {
    inner: W,
    left: u64,
}

impl<W: std::io::Write> std::io::Write for Bounded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::other("the rebuilt NAR is larger than the path info's narSize"));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
