//! [`AgentClient`]: the deployer's end of the agent protocol, pure async over
//! any reader/writer pair (the SSH channel is the caller's business).
//!
//! `push` sends plans and reads the answers at the same time, so any number
//! of paths are in flight; answers come back in push order and each must
//! name the path it answers (anything else is a protocol error). Byte counts
//! are of frames actually written, so `push --stats` reports what crossed
//! the wire (before SSH's own framing).

use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::{StoreDir, StorePath};
use tokio::io::{AsyncRead, AsyncWrite, BufReader, BufWriter};
use tokio::sync::mpsc;

use crate::delta::{EncodedNar, PlanStats};
use crate::manifest::NarManifest;
use crate::protocol::{FrameReader, FrameWriter, Message, PathManifest, ProtocolError, Result, WirePathInfo};

/// Paths per `Index` request (keeps each `Manifests` answer well under the frame limit).
pub const INDEX_BATCH: usize = 64;

/// One path to push: its path info and its encoded NAR.
#[derive(Debug, Clone)]
pub struct PushItem {
    pub info: PathInfo,
    pub encoded: EncodedNar,
    /// Ask the target's daemon to check signatures.
    pub check_sigs: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Imported,
    /// The agent could not rebuild or verify the path; send it whole.
    Resend { reason: String },
}

/// What one `push` did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// Per path, in push order.
    pub outcomes: Vec<(StorePath, PushOutcome)>,
    /// Methods used, summed over the paths sent.
    pub stats: PlanStats,
    /// NAR bytes of the paths sent.
    pub nar_bytes: u64,
    /// Bytes written to the stream (plans, payloads, framing).
    pub wire_bytes: u64,
}

impl PushReport {
    pub fn resends(&self) -> impl Iterator<Item = (&StorePath, &str)> {
        self.outcomes.iter().filter_map(|(p, o)| match o {
            PushOutcome::Resend { reason } => Some((p, reason.as_str())),
            PushOutcome::Imported => None,
        })
    }
}

/// A session with an agent (see the module doc).
pub struct AgentClient<R, W> {
    reader: FrameReader<BufReader<R>>,
    writer: FrameWriter<BufWriter<W>>,
    store_dir: StoreDir,
    sent: u64,
}

impl<R, W> std::fmt::Debug for AgentClient<R, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").field("store_dir", &self.store_dir).field("sent", &self.sent).finish()
    }
}

impl<R: AsyncRead + Unpin + Send, W: AsyncWrite + Unpin + Send> AgentClient<R, W> {
    /// Exchange `Hello`s; fails on a different protocol version or store dir.
    pub async fn handshake(reader: R, writer: W, store_dir: StoreDir) -> Result<Self> {
        let mut c = AgentClient {
            reader: FrameReader::new(BufReader::with_capacity(64 << 10, reader)),
            writer: FrameWriter::new(BufWriter::with_capacity(256 << 10, writer)),
            store_dir,
            sent: 0,
        };
        c.sent += c.writer.message(&Message::hello(&c.store_dir)).await?;
        c.writer.flush().await?;
        c.reader.message().await?.check_hello(&c.store_dir)?;
        Ok(c)
    }

    /// Total bytes written to the stream so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    /// The manifests of `paths` on the target (`None` where it does not hold one).
    pub async fn manifests(&mut self, paths: &[StorePath]) -> Result<Vec<Option<NarManifest>>> {
        let mut out = Vec::with_capacity(paths.len());
        for batch in paths.chunks(INDEX_BATCH) {
            let names: Vec<String> = batch.iter().map(|p| p.to_string()).collect();
            self.sent += self.writer.message(&Message::Index { paths: names.clone() }).await?;
            self.writer.flush().await?;
            match self.reader.message().await? {
                Message::Manifests { manifests } if manifests.len() == names.len() => {
                    for (PathManifest { path, manifest }, want) in manifests.into_iter().zip(&names) {
                        if path != *want {
                            return Err(ProtocolError::BadMessage(format!("manifest for '{path}' where '{want}' was asked")));
                        }
                        if let Some(m) = &manifest {
                            m.check().map_err(|e| ProtocolError::BadMessage(format!("manifest of '{path}': {e}")))?;
                        }
                        out.push(manifest);
                    }
                }
                Message::Manifests { manifests } => {
                    return Err(ProtocolError::BadMessage(format!("{} manifests for {} paths", manifests.len(), names.len())));
                }
                Message::Error { message } => return Err(ProtocolError::Remote(message)),
                other => return Err(ProtocolError::Unexpected { expected: "Manifests", got: other.name().to_owned() }),
            }
        }
        Ok(out)
    }

    /// Push `items` (references before referrers) and collect the outcomes.
    pub async fn push(&mut self, items: Vec<PushItem>) -> Result<PushReport> {
        let (tx, rx) = mpsc::channel(items.len().max(1));
        for item in items {
            // Capacity covers every item, so this never waits or fails.
            let _ = tx.try_send(item);
        }
        drop(tx);
        self.push_from(rx).await
    }

    /// Push the items a producer sends on `items` until it closes the channel.
    pub async fn push_from(&mut self, mut items: mpsc::Receiver<PushItem>) -> Result<PushReport> {
        let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<(StorePath, u64, PlanStats)>();
        let AgentClient { reader, writer, .. } = self;
        let send = async move {
            let mut n = 0u64;
            while let Some(item) = items.recv().await {
                let msg = Message::Push { info: WirePathInfo::from_path_info(&item.info), plan: item.encoded.plan, check_sigs: item.check_sigs };
                n += writer.message(&msg).await?;
                n += writer.payload(&item.encoded.payload).await?;
                // Flush when the producer has nothing ready, so the agent is never starved.
                if items.is_empty() {
                    writer.flush().await?;
                }
                let _ = sent_tx.send((item.info.path, item.info.nar_size, item.encoded.stats));
            }
            writer.flush().await?;
            drop(sent_tx);
            Ok::<u64, ProtocolError>(n)
        };
        let recv = async move {
            let mut report = PushReport::default();
            while let Some((path, nar_size, stats)) = sent_rx.recv().await {
                let want = path.to_string();
                let outcome = match reader.message().await? {
                    Message::Imported { path: p } if p == want => PushOutcome::Imported,
                    Message::Resend { path: p, reason } if p == want => PushOutcome::Resend { reason },
                    Message::Error { message } => return Err(ProtocolError::Remote(message)),
                    other => return Err(ProtocolError::Unexpected { expected: "Imported or Resend for the next path", got: other.name().to_owned() }),
                };
                report.nar_bytes += nar_size;
                report.stats.merge(&stats);
                report.outcomes.push((path, outcome));
            }
            Ok::<PushReport, ProtocolError>(report)
        };
        // On the first error the other half is dropped (a dead agent must not leave us writing).
        let (sent, mut report) = tokio::try_join!(send, recv)?;
        self.sent += sent;
        report.wire_bytes = sent;
        Ok(report)
    }

    /// End the session politely.
    pub async fn bye(mut self) -> Result<()> {
        self.writer.message(&Message::Bye).await?;
        self.writer.flush().await?;
        match self.reader.message().await {
            Ok(Message::Bye) | Err(ProtocolError::Disconnected) => Ok(()),
            Ok(Message::Error { message }) => Err(ProtocolError::Remote(message)),
            Ok(other) => Err(ProtocolError::Unexpected { expected: "Bye", got: other.name().to_owned() }),
            Err(e) => Err(e),
        }
    }
}
