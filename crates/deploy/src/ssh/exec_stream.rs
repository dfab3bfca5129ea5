//! A remote command's channel as a byte stream: [`ExecStream`].
//!
//! A pump task owns the channel's read half. It forwards stdout data through a
//! bounded queue to [`ChannelReader`] (so a slow reader applies backpressure
//! all the way to the SSH window), hands stderr to a callback (and keeps its
//! last few KiB for error messages), and records the exit status.
//! [`ChannelWriter`] writes the command's stdin; shutting it down sends EOF.
//! Once the channel is closed (the command exited, the connection dropped)
//! writing fails with `BrokenPipe` instead of waiting forever for window
//! space that will never come.
//!
//! EOF: the reader returns end-of-file when the remote side sends EOF or
//! closes the channel; the exit status is available once the channel closes.
//! Dropping the reader does not stall the pump: later data is discarded.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use russh::ChannelMsg;
use russh::ChannelReadHalf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};

use super::session::ExitStatus;

/// How much of the command's stderr is kept for error messages.
const STDERR_TAIL: usize = 4096;

/// The command's stdout.
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    buf: Bytes,
}

/// The command's stdin; `shutdown` sends EOF.
pub struct ChannelWriter {
    inner: Pin<Box<dyn AsyncWrite + Send>>,
    /// Completes when the channel has closed; `None` once it has.
    closed: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// The end of the command: exit status and stderr tail.
pub struct ExitWatch {
    rx: Option<oneshot::Receiver<ExitStatus>>,
    done: Option<ExitStatus>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
}

/// A running remote command's stdin/stdout as one `AsyncRead + AsyncWrite`.
pub struct ExecStream {
    pub reader: ChannelReader,
    pub writer: ChannelWriter,
    pub exit: ExitWatch,
}

impl ExecStream {
    pub(crate) fn start(
        mut read: ChannelReadHalf,
        writer: impl AsyncWrite + Send + 'static,
        mut on_stderr: impl FnMut(&[u8]) + Send + 'static,
    ) -> ExecStream {
        let (data_tx, data_rx) = mpsc::channel::<Bytes>(32);
        let (exit_tx, exit_rx) = oneshot::channel();
        let (closed_tx, mut closed_rx) = watch::channel(false);
        let tail = Arc::new(Mutex::new(Vec::new()));
        let tail2 = Arc::clone(&tail);
        tokio::spawn(async move {
            let mut data_tx = Some(data_tx);
            let mut status = ExitStatus::Unknown;
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        if let Some(tx) = &data_tx
                            && tx.send(data).await.is_err()
                        {
                            data_tx = None;
                        }
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        if let Ok(mut t) = tail2.lock() {
                            t.extend_from_slice(&data);
                            let excess = t.len().saturating_sub(STDERR_TAIL);
                            t.drain(..excess);
                        }
                        on_stderr(&data);
                    }
                    ChannelMsg::Eof => data_tx = None,
                    ChannelMsg::ExitStatus { exit_status } => status = ExitStatus::Code(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        status = ExitStatus::Signal(format!("{signal_name:?}"))
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            drop(data_tx);
            let _ = exit_tx.send(status);
            let _ = closed_tx.send(true);
        });
        ExecStream {
            reader: ChannelReader { rx: data_rx, buf: Bytes::new() },
            writer: ChannelWriter {
                inner: Box::pin(writer),
                closed: Some(Box::pin(async move {
                    // An error means the pump is gone: closed as well.
                    let _ = closed_rx.wait_for(|c| *c).await;
                })),
            },
            exit: ExitWatch { rx: Some(exit_rx), done: None, stderr_tail: tail },
        }
    }

    /// Split into the halves a [`ndeploy_store::daemon::DaemonConnection`] takes.
    pub fn into_split(self) -> (ChannelReader, ChannelWriter, ExitWatch) {
        (self.reader, self.writer, self.exit)
    }
}

impl ExitWatch {
    /// Wait for the channel to close; the command's exit status.
    pub async fn wait(&mut self) -> ExitStatus {
        if let Some(s) = &self.done {
            return s.clone();
        }
        let status = match self.rx.take() {
            Some(rx) => rx.await.unwrap_or(ExitStatus::Unknown),
            None => ExitStatus::Unknown,
        };
        self.done = Some(status.clone());
        status
    }

    /// The last few KiB the command wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let t = self.stderr_tail.lock().map(|t| t.clone()).unwrap_or_default();
        String::from_utf8_lossy(&t).into_owned()
    }
}

impl AsyncRead for ChannelReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        while self.buf.is_empty() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(b) => self.buf = b,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.buf.len().min(out.remaining());
        out.put_slice(&self.buf.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl ChannelWriter {
    fn check_open(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(fut) = &mut self.closed
            && fut.as_mut().poll(cx).is_ready()
        {
            self.closed = None;
        }
        match self.closed {
            None => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the SSH channel is closed")),
            Some(_) => Ok(()),
        }
    }
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.check_open(cx)?;
        self.inner.as_mut().poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_open(cx)?;
        self.inner.as_mut().poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Shutting down a closed channel is done already.
        if self.check_open(cx).is_err() {
            return Poll::Ready(Ok(()));
        }
        self.inner.as_mut().poll_shutdown(cx)
    }
}

impl AsyncRead for ExecStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, out)
    }
}

impl AsyncWrite for ExecStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}
