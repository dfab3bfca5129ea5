//! Fan-out: one producer, many consumers, bounded queues.
//!
//! The producer ([`produce`], run on a blocking thread) walks the plan's feed
//! in reference order. For each path some target lacks it sends
//! [`FeedMsg::Begin`] to those targets, NAR-serialises the path once (the
//! injected `dump`, normally [`ndeploy_store::nar::dump_path`] on the store
//! file), cuts the output into [`bytes::Bytes`] chunks and hands clones of
//! each chunk to every such target ([`FeedMsg::Data`]), then
//! [`FeedMsg::End`]. Each target has its own bounded queue
//! ([`feed_channel`]), so a target that is briefly slower than the others
//! only fills its own queue; memory stays at `targets × queue` whatever the
//! closure size.
//!
//! The consumer side is a [`TargetFeed`]: a [`PathSource`] for
//! `add_multiple_to_store` whose NAR streams ([`NarStream`]) read the queue
//! until `End`. A target that fails drops its receiver; the producer notices
//! the closed queue and stops feeding it, and the others go on. If the
//! producer cannot read a path it sends [`FeedMsg::Fail`], which ends that
//! target's stream early (the daemon discards the partial path).
//!
//! Slow targets: a queue that stays full longer than
//! [`FeedConfig::grace`] detaches its target from the shared producer; a
//! solo producer thread then serves it (the rest of the current path,
//! skipping the bytes already queued, then its remaining paths), so one
//! slow target never holds the others back for more than the grace period.
//! Only detached targets cost a second read of their paths.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use ndeploy_store::daemon::PathSource;
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::signature::SecretKey;
use ndeploy_store::store_path::StoreDir;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

use super::progress::TargetProgress;

/// Size of the chunks a NAR is cut into.
pub const CHUNK_SIZE: usize = 256 << 10;

/// What flows through a target's queue.
#[derive(Debug)]
pub enum FeedMsg {
    Begin(Arc<PathInfo>),
    Data(Bytes),
    End,
    Fail(String),
}

/// A queue holding about `queue_bytes` of NAR data (at least 4 chunks).
pub fn feed_channel(queue_bytes: usize) -> (mpsc::Sender<FeedMsg>, mpsc::Receiver<FeedMsg>) {
    mpsc::channel((queue_bytes / CHUNK_SIZE).max(4))
}

/// Signs path infos for a target that needs signatures.
#[derive(Clone)]
pub struct Signer {
    pub key: SecretKey,
    pub dir: StoreDir,
}

/// A target's side of the fan-out: the source of its AddMultipleToStore.
pub struct TargetFeed {
    rx: Arc<Mutex<mpsc::Receiver<FeedMsg>>>,
    signer: Option<Signer>,
    progress: Arc<dyn TargetProgress>,
}

impl TargetFeed {
    pub fn new(rx: mpsc::Receiver<FeedMsg>, signer: Option<Signer>, progress: Arc<dyn TargetProgress>) -> TargetFeed {
        TargetFeed { rx: Arc::new(Mutex::new(rx)), signer, progress }
    }
}

fn poll_queue(rx: &Mutex<mpsc::Receiver<FeedMsg>>, cx: &mut Context<'_>) -> Poll<io::Result<Option<FeedMsg>>> {
    // Never contended: the feed and its current NAR stream are used in turn.
    let mut rx = rx.lock().map_err(|_| io::Error::other("the feed queue lock is poisoned"))?;
    rx.poll_recv(cx).map(Ok)
}

impl PathSource for TargetFeed {
    type Nar = NarStream;

    async fn next_path(&mut self) -> io::Result<Option<(PathInfo, NarStream)>> {
        let msg = std::future::poll_fn(|cx| poll_queue(&self.rx, cx)).await?;
        match msg {
            None => Ok(None),
            Some(FeedMsg::Begin(info)) => {
                let mut info = PathInfo::clone(&info);
                if let Some(s) = &self.signer {
                    info.sign(&s.dir, &s.key).map_err(io::Error::other)?;
                }
                let nar = NarStream { rx: Arc::clone(&self.rx), pending: Bytes::new(), done: false, progress: Arc::clone(&self.progress) };
                Ok(Some((info, nar)))
            }
            Some(FeedMsg::Fail(e)) => Err(io::Error::other(e)),
            Some(FeedMsg::Data(_) | FeedMsg::End) => Err(io::Error::other("NAR data arrived outside a path")),
        }
    }
}

/// One path's NAR, read from the target's queue until `End`.
pub struct NarStream {
    rx: Arc<Mutex<mpsc::Receiver<FeedMsg>>>,
    pending: Bytes,
    done: bool,
    progress: Arc<dyn TargetProgress>,
}

impl AsyncRead for NarStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                self.progress.bytes(n as u64);
                return Poll::Ready(Ok(()));
            }
            if self.done {
                return Poll::Ready(Ok(()));
            }
            match ready!(poll_queue(&self.rx, cx))? {
                Some(FeedMsg::Data(b)) => self.pending = b,
                Some(FeedMsg::End) => {
                    self.done = true;
                    self.progress.path_done();
                }
                Some(FeedMsg::Fail(e)) => return Poll::Ready(Err(io::Error::other(e))),
                Some(FeedMsg::Begin(_)) => return Poll::Ready(Err(io::Error::other("a new path began inside a NAR"))),
                None => return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "the NAR producer stopped"))),
            }
        }
    }
}

/// Serialises one path as a NAR into the writer; returns its size. Shared
/// by the main producer and the solo producers of detached targets.
pub type DumpFn<'a> = dyn Fn(&PathInfo, &mut dyn Write) -> Result<u64, String> + Sync + 'a;

/// How the producer treats a full queue.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    pub chunk: usize,
    /// How long the shared producer waits for room in one target's queue
    /// before detaching that target to a solo producer of its own (which
    /// re-reads its remaining paths). `None`: wait forever, never detach.
    pub grace: Option<std::time::Duration>,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig { chunk: CHUNK_SIZE, grace: Some(std::time::Duration::from_secs(2)) }
    }
}

/// A target that fell behind: the message it could not take, and where its
/// solo producer resumes (the current path and how many of its NAR bytes
/// were queued, `None` if the path is complete).
struct Detached {
    target: usize,
    first: FeedMsg,
    resume: Option<(usize, u64)>,
}

/// Cuts a NAR into chunks and hands each to every live target.
struct ChunkWriter<'a> {
    buf: BytesMut,
    chunk: usize,
    /// Leading NAR bytes not to send (a solo producer resuming a path).
    skip: u64,
    /// NAR bytes of the current path queued so far.
    queued: u64,
    /// The current path (index into the order).
    path: usize,
    live: Vec<usize>,
    senders: &'a mut [Option<mpsc::Sender<FeedMsg>>],
    grace: Option<(std::time::Duration, tokio::runtime::Handle)>,
    detached: Vec<Detached>,
}

enum Sent {
    Ok,
    Closed,
    Late(FeedMsg),
}

fn send(tx: &mpsc::Sender<FeedMsg>, msg: FeedMsg, grace: Option<&(std::time::Duration, tokio::runtime::Handle)>) -> Sent {
    let msg = match tx.try_send(msg) {
        Ok(()) => return Sent::Ok,
        Err(mpsc::error::TrySendError::Closed(_)) => return Sent::Closed,
        Err(mpsc::error::TrySendError::Full(m)) => m,
    };
    match grace {
        None => match tx.blocking_send(msg) {
            Ok(()) => Sent::Ok,
            Err(_) => Sent::Closed,
        },
        Some((grace, handle)) => match handle.block_on(tokio::time::timeout(*grace, tx.reserve())) {
            Ok(Ok(permit)) => {
                permit.send(msg);
                Sent::Ok
            }
            Ok(Err(_)) => Sent::Closed,
            Err(_) => Sent::Late(msg),
        },
    }
}

impl ChunkWriter<'_> {
    /// Send `msg()` to every live target, dropping those whose queue is
    /// closed and detaching those that stay full past the grace period.
    /// `data_len`: the NAR bytes `msg` carries.
    fn broadcast(&mut self, msg: impl Fn() -> FeedMsg, data_len: u64, is_end: bool) -> io::Result<()> {
        let Self { live, senders, grace, detached, path, queued, .. } = self;
        live.retain(|&t| {
            let sent = match senders.get(t).and_then(Option::as_ref) {
                Some(tx) => send(tx, msg(), grace.as_ref()),
                None => Sent::Closed,
            };
            match sent {
                Sent::Ok => return true,
                Sent::Late(first) => {
                    let resume = (!is_end).then_some((*path, *queued + data_len));
                    detached.push(Detached { target: t, first, resume });
                }
                Sent::Closed => {
                    if let Some(slot) = senders.get_mut(t) {
                        *slot = None;
                    }
                }
            }
            false
        });
        self.queued += data_len;
        if self.live.is_empty() { Err(io::Error::new(io::ErrorKind::BrokenPipe, "no target wants this path any more")) } else { Ok(()) }
    }

    fn send_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = self.buf.split().freeze();
        self.buf.reserve(self.chunk);
        let len = data.len() as u64;
        self.broadcast(|| FeedMsg::Data(data.clone()), len, false)
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let total = data.len();
        if self.skip > 0 {
            let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(data.len());
            self.skip -= n as u64;
            data = &data[n..];
            if data.is_empty() {
                return Ok(total);
            }
        }
        let n = data.len().min(self.chunk - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= self.chunk {
            self.send_chunk()?;
        }
        Ok(total - data.len() + n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the producers did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProduceStats {
    /// Paths serialised by the shared producer (once each).
    pub paths: usize,
    /// NAR bytes serialised by the shared producer.
    pub bytes: u64,
    /// Targets that fell behind and got a solo producer.
    pub detached: usize,
    /// NAR bytes the solo producers serialised again.
    pub solo_bytes: u64,
}

/// Dump one path to the writer's live targets: `Begin`, the NAR (minus
/// `skip` bytes), `End`, or `Fail` if it cannot be read (those targets
/// are then closed). Returns the NAR size if the dump worked.
fn feed_path(w: &mut ChunkWriter<'_>, info: &PathInfo, begin: bool, dump: &DumpFn<'_>) -> Option<u64> {
    if begin {
        let arc = Arc::new(info.clone());
        w.broadcast(|| FeedMsg::Begin(Arc::clone(&arc)), 0, false).ok()?;
    }
    match dump(info, w) {
        Ok(n) => {
            if w.send_chunk().is_ok() {
                let _ = w.broadcast(|| FeedMsg::End, 0, true);
            }
            Some(n)
        }
        Err(e) => {
            // Every target that wanted this path gets the error and is done.
            let _ = w.broadcast(|| FeedMsg::Fail(e.clone()), 0, true);
            for t in w.live.clone() {
                if let Some(slot) = w.senders.get_mut(t) {
                    *slot = None;
                }
            }
            None
        }
    }
}

/// A detached target's own producer: its pending message, the rest of its
/// current path, then its remaining paths. Returns the bytes it dumped.
fn solo(order: &[PathInfo], d: Detached, rest: Vec<usize>, tx: mpsc::Sender<FeedMsg>, chunk: usize, dump: &DumpFn<'_>) -> u64 {
    if tx.blocking_send(d.first).is_err() {
        return 0;
    }
    let mut senders = [Some(tx)];
    let mut bytes = 0;
    let resume = d.resume.map(|(i, skip)| (i, skip, false));
    for (i, skip, begin) in resume.into_iter().chain(rest.into_iter().map(|i| (i, 0, true))) {
        let Some(info) = order.get(i) else { continue };
        if senders[0].is_none() {
            break;
        }
        let mut w = ChunkWriter {
            buf: BytesMut::with_capacity(chunk),
            chunk,
            skip,
            queued: skip,
            path: i,
            live: vec![0],
            senders: &mut senders,
            grace: None,
            detached: Vec::new(),
        };
        match feed_path(&mut w, info, begin, dump) {
            Some(n) => bytes += n - skip.min(n),
            None => break,
        }
    }
    bytes
}

/// Feed every target its paths: `feed` lists, in reference order, each
/// path's index in `order` and the targets (indexes into `senders`) lacking
/// it. Blocks; run it on a blocking thread (in a Tokio runtime, so that
/// targets can be detached). Dropping the senders at the end tells every
/// target that nothing more comes.
pub fn produce(
    order: &[PathInfo],
    feed: &[(usize, Vec<usize>)],
    mut senders: Vec<Option<mpsc::Sender<FeedMsg>>>,
    cfg: &FeedConfig,
    dump: &DumpFn<'_>,
) -> ProduceStats {
    let mut stats = ProduceStats::default();
    let chunk = cfg.chunk.max(1);
    let grace = cfg.grace.zip(tokio::runtime::Handle::try_current().ok());
    std::thread::scope(|scope| {
        let mut solos = Vec::new();
        for (pos, (i, targets)) in feed.iter().enumerate() {
            let Some(info) = order.get(*i) else { continue };
            let live: Vec<usize> = targets.iter().copied().filter(|&t| senders.get(t).is_some_and(Option::is_some)).collect();
            if live.is_empty() {
                continue;
            }
            let mut w = ChunkWriter {
                buf: BytesMut::with_capacity(chunk),
                chunk,
                skip: 0,
                queued: 0,
                path: *i,
                live,
                senders: &mut senders,
                grace: grace.clone(),
                detached: Vec::new(),
            };
            if let Some(n) = feed_path(&mut w, info, true, dump) {
                stats.paths += 1;
                stats.bytes += n;
            }
            for d in std::mem::take(&mut w.detached) {
                let Some(tx) = senders.get_mut(d.target).and_then(Option::take) else { continue };
                let rest: Vec<usize> = feed.get(pos + 1..).unwrap_or_default().iter().filter(|(_, ts)| ts.contains(&d.target)).map(|(i, _)| *i).collect();
                tracing::debug!("target {} fell behind; it gets its own NAR producer", d.target);
                stats.detached += 1;
                solos.push(scope.spawn(move || solo(order, d, rest, tx, chunk, dump)));
            }
        }
        drop(senders);
        for s in solos {
            stats.solo_bytes += s.join().unwrap_or(0);
        }
    });
    stats
}

#[cfg(test)]
#[path = "fanout_tests.rs"]
mod tests;
