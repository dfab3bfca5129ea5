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

/// Serialises one path as a NAR into the writer; returns its size.
pub type DumpFn<'a> = dyn FnMut(&PathInfo, &mut dyn Write) -> Result<u64, String> + 'a;

/// Cuts a NAR into chunks and hands each to every live target.
struct ChunkWriter<'a> {
    buf: BytesMut,
    chunk: usize,
    live: Vec<usize>,
    senders: &'a mut [Option<mpsc::Sender<FeedMsg>>],
}

impl ChunkWriter<'_> {
    /// Send `msg()` to every live target, dropping those whose queue is closed.
    fn broadcast(&mut self, msg: impl Fn() -> FeedMsg) -> io::Result<()> {
        let senders = &mut *self.senders;
        self.live.retain(|&t| match senders.get(t).and_then(Option::as_ref) {
            Some(tx) if tx.blocking_send(msg()).is_ok() => true,
            _ => {
                if let Some(slot) = senders.get_mut(t) {
                    *slot = None;
                }
                false
            }
        });
        if self.live.is_empty() { Err(io::Error::new(io::ErrorKind::BrokenPipe, "no target wants this path any more")) } else { Ok(()) }
    }

    fn send_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = self.buf.split().freeze();
        self.buf.reserve(self.chunk);
        self.broadcast(|| FeedMsg::Data(data.clone()))
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.chunk - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= self.chunk {
            self.send_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the producer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProduceStats {
    /// Paths serialised (once each).
    pub paths: usize,
    /// NAR bytes serialised.
    pub bytes: u64,
}

/// Feed every target its paths: `feed` lists, in reference order, each
/// path's index in `order` and the targets (indexes into `senders`) lacking
/// it. Blocks; run it on a blocking thread. Dropping the senders at the end
/// tells every target that nothing more comes.
pub fn produce(
    order: &[PathInfo],
    feed: &[(usize, Vec<usize>)],
    mut senders: Vec<Option<mpsc::Sender<FeedMsg>>>,
    chunk: usize,
    dump: &mut DumpFn<'_>,
) -> ProduceStats {
    let mut stats = ProduceStats::default();
    let chunk = chunk.max(1);
    for (i, targets) in feed {
        let Some(info) = order.get(*i) else { continue };
        let live: Vec<usize> = targets.iter().copied().filter(|&t| senders.get(t).is_some_and(Option::is_some)).collect();
        if live.is_empty() {
            continue;
        }
        let info_arc = Arc::new(info.clone());
        let mut w = ChunkWriter { buf: BytesMut::with_capacity(chunk), chunk, live, senders: &mut senders };
        if w.broadcast(|| FeedMsg::Begin(Arc::clone(&info_arc))).is_err() {
            continue;
        }
        match dump(info, &mut w) {
            Ok(n) => {
                stats.paths += 1;
                stats.bytes += n;
                if w.send_chunk().is_ok() {
                    let _ = w.broadcast(|| FeedMsg::End);
                }
            }
            Err(e) => {
                // Every target that wanted this path gets the error and is done.
                let _ = w.broadcast(|| FeedMsg::Fail(e.clone()));
                for t in w.live.clone() {
                    if let Some(slot) = w.senders.get_mut(t) {
                        *slot = None;
                    }
                }
            }
        }
    }
    stats
}

#[cfg(test)]
#[path = "fanout_tests.rs"]
mod tests;
