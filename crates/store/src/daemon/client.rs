//! [`DaemonConnection`]: one worker-protocol session and its operations.
//!
//! Each operation is `opcode, arguments` → stderr stream → reply. Requests are
//! encoded into a [`WireBuf`] and written through a buffered writer in one go;
//! replies are read through a buffered reader. Bulk uploads (AddToStoreNar,
//! AddMultipleToStore) send a framed stream and, at the same time, read the
//! daemon's stderr stream, so log output during a long upload can never fill
//! the pipe and deadlock both sides; NAR data is streamed frame by frame and
//! never held whole.
//!
//! State: `broken` is set when an operation starts and cleared when its reply
//! has been read completely or the daemon reported an error (after which it
//! waits for the next opcode). If anything else interrupts an operation
//! (I/O error, protocol violation, dropped future), the flag stays set and the
//! connection refuses further use with [`DaemonError::Broken`].
//!
//! Adding operations: encode the request with [`WireBuf`], call
//! [`DaemonConnection::call`], read the reply with the [`super::wire`]
//! readers on [`DaemonConnection::reader`], then [`DaemonConnection::finish`]
//! (see [`super::build`] for two operations added that way).

use std::collections::BTreeSet;
use std::pin::pin;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

use super::framed::FramedWriter;
use super::handshake::{HandshakeInfo, client_handshake};
use super::nar_copy::copy_nar;
use super::opcodes::Op;
use super::path_info::{read_unkeyed, write_keyed};
use super::stderr::{LogMessage, log_to_tracing, process_stderr};
use super::wire::{WireBuf, read_bool, read_paths, read_u64};
use super::{DaemonError, ProtocolVersion, Result};
use crate::path_info::PathInfo;
use crate::store_path::{StoreDir, StorePath};

const BUF_SIZE: usize = 64 << 10;

/// Flags of the upload operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddToStoreFlags {
    /// Replace the path even if it is valid (Nix's `--repair`).
    pub repair: bool,
    /// Ask the daemon to skip signature checks (honoured only for trusted clients).
    pub dont_check_sigs: bool,
}

/// The settings SetOptions sends (Nix's `ClientSettings`); defaults match a
/// plain `nix` client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub keep_failed: bool,
    pub keep_going: bool,
    pub try_fallback: bool,
    /// Nix verbosity: 0 error .. 7 vomit.
    pub verbosity: u64,
    pub max_build_jobs: u64,
    pub max_silent_time: u64,
    pub verbose_build: bool,
    pub build_cores: u64,
    pub use_substitutes: bool,
    /// Further `name = value` settings (only trusted clients may set most).
    pub overrides: Vec<(String, String)>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            keep_failed: false,
            keep_going: false,
            try_fallback: false,
            verbosity: 0,
            max_build_jobs: 1,
            max_silent_time: 0,
            verbose_build: true,
            build_cores: 0,
            use_substitutes: true,
            overrides: Vec::new(),
        }
    }
}

/// A source of `(path info, NAR stream)` entries for
/// [`DaemonConnection::add_multiple_to_store`]; NARs are opened one at a time.
pub trait PathSource: Send {
    type Nar: AsyncRead + Unpin + Send;
    /// The next entry, or `None` when there are no more.
    fn next_path(&mut self) -> impl Future<Output = std::io::Result<Option<(PathInfo, Self::Nar)>>> + Send;
}

/// Entries from a channel (a producer task opens NARs as they are needed).
impl<N: AsyncRead + Unpin + Send> PathSource for tokio::sync::mpsc::Receiver<(PathInfo, N)> {
    type Nar = N;
    async fn next_path(&mut self) -> std::io::Result<Option<(PathInfo, N)>> {
        Ok(self.recv().await)
    }
}

/// Entries from an iterator.
pub struct FromIter<I>(pub I);

impl<I, N> PathSource for FromIter<I>
where
    I: Iterator<Item = (PathInfo, N)> + Send,
    N: AsyncRead + Unpin + Send,
{
    type Nar = N;
    async fn next_path(&mut self) -> std::io::Result<Option<(PathInfo, N)>> {
        Ok(self.0.next())
    }
}

/// A session with a Nix daemon over a reader and a writer.
pub struct DaemonConnection<R, W> {
    reader: BufReader<R>,
    writer: BufWriter<W>,
    store_dir: StoreDir,
    info: HandshakeInfo,
    log: Box<dyn FnMut(LogMessage) + Send>,
    broken: bool,
}

impl<R, W> std::fmt::Debug for DaemonConnection<R, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonConnection").field("info", &self.info).field("broken", &self.broken).finish()
    }
}

/// The halves of a connection, borrowed separately for concurrent use.
pub(crate) struct Parts<'a, R, W> {
    pub reader: &'a mut BufReader<R>,
    pub writer: &'a mut BufWriter<W>,
    pub log: &'a mut (dyn FnMut(LogMessage) + Send),
    pub dir: &'a StoreDir,
}

/// What went wrong while a framed upload was being sent.
enum SendFailure {
    /// The local data was bad or unreadable: the stream was ended early and
    /// the daemon will report the operation failed.
    Local(DaemonError),
    /// Writing to the daemon failed: the connection is gone.
    Connection(DaemonError),
}

impl<R, W> DaemonConnection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Open a session: handshake, then the daemon's startup messages (logged to `tracing`).
    pub async fn handshake(reader: R, writer: W, store_dir: StoreDir) -> Result<Self> {
        let mut reader = BufReader::with_capacity(BUF_SIZE, reader);
        let mut writer = BufWriter::with_capacity(BUF_SIZE, writer);
        let mut log: Box<dyn FnMut(LogMessage) + Send> = Box::new(log_to_tracing);
        let info = client_handshake(&mut reader, &mut writer, &mut *log).await?;
        Ok(DaemonConnection { reader, writer, store_dir, info, log, broken: false })
    }

    /// Send daemon log messages to `log` instead of `tracing`.
    pub fn set_logger(&mut self, log: impl FnMut(LogMessage) + Send + 'static) {
        self.log = Box::new(log);
    }

    pub fn info(&self) -> &HandshakeInfo {
        &self.info
    }

    pub fn version(&self) -> ProtocolVersion {
        self.info.version
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    /// Whether an interrupted operation has made the connection unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Give back the underlying streams (unusable if broken; check first).
    pub fn into_inner(self) -> (R, W) {
        (self.reader.into_inner(), self.writer.into_inner())
    }

    async fn send(&mut self, req: &WireBuf) -> Result<()> {
        if self.broken {
            return Err(DaemonError::Broken);
        }
        self.broken = true;
        self.writer.write_all(req.as_bytes()).await?;
        self.writer.flush().await?;
        Ok(())
    }

    async fn stderr(&mut self) -> Result<()> {
        let res = process_stderr(&mut self.reader, &mut *self.log).await;
        if let Err(DaemonError::Remote { .. }) = res {
            self.broken = false;
        }
        res
    }

    /// Send a request and process the stderr stream; the reply is next. Call
    /// [`Self::finish`] once it is read.
    pub async fn call(&mut self, req: &WireBuf) -> Result<()> {
        self.send(req).await?;
        self.stderr().await
    }

    /// Mark the current operation complete.
    pub fn finish<T>(&mut self, value: T) -> T {
        self.broken = false;
        value
    }

    /// Start an operation that writes and reads concurrently; hands out the
    /// parts it needs. Call [`Self::finish`] when it is complete.
    pub(crate) fn begin_pipelined(&mut self) -> Result<Parts<'_, R, W>> {
        if self.broken {
            return Err(DaemonError::Broken);
        }
        self.broken = true;
        Ok(Parts { reader: &mut self.reader, writer: &mut self.writer, log: &mut *self.log, dir: &self.store_dir })
    }

    /// The reply stream, for reading an operation's reply after [`Self::call`].
    pub fn reader(&mut self) -> &mut BufReader<R> {
        &mut self.reader
    }

    fn request(&self, op: Op) -> WireBuf {
        let mut w = WireBuf::new();
        w.u64(op.code());
        w
    }

    /// SetOptions: the client-side settings for this session.
    pub async fn set_options(&mut self, s: &ClientSettings) -> Result<()> {
        let mut w = self.request(Op::SetOptions);
        w.bool(s.keep_failed)
            .bool(s.keep_going)
            .bool(s.try_fallback)
            .u64(s.verbosity)
            .u64(s.max_build_jobs)
            .u64(s.max_silent_time)
            .u64(1) // obsolete useBuildHook
            .u64(if s.verbose_build { 0 } else { 7 }) // lvlError / lvlVomit
            .u64(0) // obsolete logType
            .u64(0) // obsolete printBuildTrace
            .u64(s.build_cores)
            .bool(s.use_substitutes)
            .u64(s.overrides.len() as u64);
        for (k, v) in &s.overrides {
            w.str(k).str(v);
        }
        self.call(&w).await?;
        self.finish(Ok(()))
    }

    pub async fn is_valid_path(&mut self, path: &StorePath) -> Result<bool> {
        let mut w = self.request(Op::IsValidPath);
        w.path(&self.store_dir, path);
        self.call(&w).await?;
        let valid = read_bool(&mut self.reader).await?;
        Ok(self.finish(valid))
    }

    /// QueryValidPaths: which of `paths` are valid, in one round trip.
    /// With `substitute`, the daemon first tries to substitute missing ones.
    pub async fn query_valid_paths<'a>(
        &mut self,
        paths: impl IntoIterator<Item = &'a StorePath>,
        substitute: bool,
    ) -> Result<BTreeSet<StorePath>> {
        let paths: BTreeSet<&StorePath> = paths.into_iter().collect();
        let mut w = self.request(Op::QueryValidPaths);
        w.paths(&self.store_dir, paths.iter().copied()).bool(substitute);
        self.call(&w).await?;
        let valid = read_paths(&mut self.reader, &self.store_dir).await?;
        if let Some(extra) = valid.iter().find(|p| !paths.contains(p)) {
            return Err(DaemonError::protocol(format!(
                "QueryValidPaths answered with '{}', which was not asked for",
                self.store_dir.display(extra)
            )));
        }
        Ok(self.finish(valid))
    }

    /// QueryPathInfo: the path's metadata, or `None` if it is not valid.
    pub async fn query_path_info(&mut self, path: &StorePath) -> Result<Option<PathInfo>> {
        let mut w = self.request(Op::QueryPathInfo);
        w.path(&self.store_dir, path);
        self.call(&w).await?;
        let info = if read_bool(&mut self.reader).await? {
            Some(read_unkeyed(&mut self.reader, &self.store_dir, path.clone()).await?)
        } else {
            None
        };
        Ok(self.finish(info))
    }

    /// AddTempRoot: protect `path` from garbage collection for this session.
    pub async fn add_temp_root(&mut self, path: &StorePath) -> Result<()> {
        let mut w = self.request(Op::AddTempRoot);
        w.path(&self.store_dir, path);
        self.call(&w).await?;
        read_u64(&mut self.reader).await?;
        self.finish(Ok(()))
    }

    /// NarFromPath: stream the NAR of `path` into `sink`; returns its size.
    /// The daemon sends the bare NAR, so it is parsed as it passes to find
    /// where it ends.
    pub async fn nar_from_path<S>(&mut self, path: &StorePath, sink: &mut S) -> Result<u64>
    where
        S: AsyncWrite + Unpin + Send + ?Sized,
    {
        let mut w = self.request(Op::NarFromPath);
        w.path(&self.store_dir, path);
        self.call(&w).await?;
        let n = copy_nar(&mut self.reader, sink).await?;
        Ok(self.finish(n))
    }

    /// AddToStoreNar: add one path from its NAR, streamed from `nar`.
    pub async fn add_to_store_nar<N>(&mut self, info: &PathInfo, nar: &mut N, flags: AddToStoreFlags) -> Result<()>
    where
        N: AsyncRead + Unpin + Send + ?Sized,
    {
        require_nar_size(&self.store_dir, info)?;
        let mut w = self.request(Op::AddToStoreNar);
        write_keyed(&mut w, &self.store_dir, info);
        w.bool(flags.repair).bool(flags.dont_check_sigs);
        let dir = self.store_dir.clone();
        self.framed_op(&w, async move |fw| send_nar(fw, &dir, info, nar).await).await
    }

    /// AddMultipleToStore: add `count` paths from `source` in one framed
    /// stream, each NAR read from its own stream as it is sent.
    ///
    /// Send only paths that are not valid yet (see [`Self::query_valid_paths`]):
    /// Nix 2.8's daemon does not consume the NAR of an already-valid path and
    /// would lose its place in the stream. References must precede their
    /// referrers (or be valid already). If the source fails or yields fewer
    /// than `count` entries, the stream is ended early: the daemon keeps the
    /// paths completed so far, discards the partial one, and the connection
    /// stays usable; the local error is returned.
    pub async fn add_multiple_to_store<S: PathSource>(&mut self, count: u64, mut source: S, flags: AddToStoreFlags) -> Result<()> {
        let mut w = self.request(Op::AddMultipleToStore);
        w.bool(flags.repair).bool(flags.dont_check_sigs);
        let dir = self.store_dir.clone();
        self.framed_op(&w, async move |fw| {
            fw.write(&count.to_le_bytes()).await?;
            fw.mark();
            for i in 0..count {
                let next = fw.or_flush(source.next_path()).await?.map_err(|e| DaemonError::Source { what: format!("path {} of {count}", i + 1), source: e })?;
                let Some((info, mut nar)) = next else {
                    return Err(DaemonError::BadInput { message: format!("the path source ended after {i} of {count} paths") });
                };
                require_nar_size(&dir, &info)?;
                let mut entry = WireBuf::new();
                write_keyed(&mut entry, &dir, &info);
                fw.write(entry.as_bytes()).await?;
                send_nar(fw, &dir, &info, &mut nar).await?;
                fw.mark();
            }
            Ok(())
        })
        .await
    }

    /// Send `header`, then the framed stream `body` writes, while reading the
    /// daemon's stderr stream until it ends.
    async fn framed_op<F>(&mut self, header: &WireBuf, body: F) -> Result<()>
    where
        F: for<'a> AsyncFnOnce(&mut FramedWriter<'a, BufWriter<W>>) -> Result<()>,
    {
        self.send(header).await?;
        let (send_res, recv_res) = {
            let DaemonConnection { reader, writer, log, .. } = self;
            let send = async move {
                let mut fw = FramedWriter::new(writer);
                match body(&mut fw).await {
                    Ok(()) => fw.finish().await.map(drop).map_err(SendFailure::Connection),
                    Err(e @ (DaemonError::Source { .. } | DaemonError::BadInput { .. })) => {
                        fw.abort().await.map_err(SendFailure::Connection)?;
                        Err(SendFailure::Local(e))
                    }
                    Err(e) => Err(SendFailure::Connection(e)),
                }
            };
            let recv = process_stderr(reader, &mut **log);
            let (mut send, mut recv) = (pin!(send), pin!(recv));
            tokio::select! {
                s = &mut send => match s {
                    Err(SendFailure::Connection(e)) => return Err(e),
                    s => (s, recv.await),
                },
                r = &mut recv => {
                    // The daemon finished before the stream did: it will read
                    // the rest of our frames as requests, so this connection is done.
                    return Err(match r {
                        Ok(()) => DaemonError::protocol("the daemon ended the operation before the upload was complete"),
                        Err(e) => e,
                    });
                }
            }
        };
        match (send_res, recv_res) {
            (Ok(()), Ok(())) => self.finish(Ok(())),
            (Ok(()), Err(e @ DaemonError::Remote { .. })) => Err(self.finish(e)),
            (Err(SendFailure::Local(local)), Ok(())) => Err(self.finish(local)),
            (Err(SendFailure::Local(local)), Err(DaemonError::Remote { message, .. })) => {
                tracing::debug!("daemon after the aborted upload: {message}");
                Err(self.finish(local))
            }
            (_, Err(e)) => Err(e),
            (Err(SendFailure::Connection(e)), _) => Err(e),
        }
    }
}

/// Uploads need the NAR size: daemons check it, and newer ones read exactly
/// that many bytes per AddMultipleToStore entry.
fn require_nar_size(dir: &StoreDir, info: &PathInfo) -> Result<()> {
    if info.nar_size == 0 {
        return Err(DaemonError::BadInput {
            message: format!("the path info of '{}' has no NAR size, which the daemon needs", dir.display(&info.path)),
        });
    }
    Ok(())
}

/// Stream one NAR into the frame writer and check its size against the path info.
async fn send_nar<W, N>(fw: &mut FramedWriter<'_, W>, dir: &StoreDir, info: &PathInfo, nar: &mut N) -> Result<()>
where
    W: AsyncWrite + Unpin + ?Sized,
    N: AsyncRead + Unpin + Send + ?Sized,
{
    let what = format!("the NAR of '{}'", dir.display(&info.path));
    let n = fw.copy_from(nar, &what).await?;
    if n != info.nar_size {
        return Err(DaemonError::BadInput {
            message: format!("{what} has {n} bytes, but its path info says {}", info.nar_size),
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
