//! The TCP connection under an SSH session, tuned for short round trips.
//!
//! Two Linux TCP defaults cost an SSH session setup about 40 ms each time
//! one side sends two small messages in a row:
//! - Nagle's algorithm on our side holds back the second message until the
//!   first is acknowledged; we turn it off (`TCP_NODELAY`, as OpenSSH does).
//! - OpenSSH's sshd leaves Nagle on for non-interactive sessions, so when it
//!   answers with two messages (e.g. USERAUTH_SUCCESS plus its
//!   hostkeys-00 notice, then CHANNEL_OPEN_CONFIRMATION) the second waits
//!   for our ACK, which Linux delays by up to 40 ms while we have nothing to
//!   send. [`QuickAckStream`] re-arms `TCP_QUICKACK` after every read (the
//!   kernel drops back to delayed ACKs on its own), so we acknowledge at
//!   once. The cost is one `setsockopt` per read, and a bulk upload reads
//!   little (window adjustments).
//!
//! Both are best effort: a failure is logged at debug level and ignored.
//!
//! The stream also counts the bytes it carries ([`WireCounters`]): what the
//! connection really cost on the wire above TCP (SSH framing, padding, MACs
//! and all), next to the NAR bytes a push reports.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes written to and read from a connection so far (shared, live).
#[derive(Debug, Default)]
pub struct WireCounters {
    sent: AtomicU64,
    received: AtomicU64,
}

impl WireCounters {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// A TCP stream that acknowledges received data at once (see the module docs).
#[derive(Debug)]
pub struct QuickAckStream {
    inner: TcpStream,
    counters: Arc<WireCounters>,
}

impl QuickAckStream {
    /// Wrap `inner`, turning off Nagle's algorithm.
    pub fn new(inner: TcpStream) -> QuickAckStream {
        if let Err(e) = inner.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        let s = QuickAckStream { inner, counters: Arc::default() };
        s.quick_ack();
        s
    }

    /// The byte counters, to read while the stream is in use elsewhere.
    pub fn counters(&self) -> Arc<WireCounters> {
        Arc::clone(&self.counters)
    }

    #[cfg(target_os = "linux")]
    fn quick_ack(&self) {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: the descriptor is the open socket `inner` owns; the option
        // value is a live c_int whose size is passed along.
        let r = unsafe {
            libc::setsockopt(
                self.inner.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&raw const one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            tracing::debug!("TCP_QUICKACK: {}", io::Error::last_os_error());
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn quick_ack(&self) {}
}

impl AsyncRead for QuickAckStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = buf.filled().len().saturating_sub(before);
        if matches!(r, Poll::Ready(Ok(()))) && got > 0 {
            self.counters.received.fetch_add(got as u64, Ordering::Relaxed);
            self.quick_ack();
        }
        r
    }
}

impl AsyncWrite for QuickAckStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn passes_bytes_both_ways() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let mut c = QuickAckStream::new(TcpStream::connect(addr).await.unwrap());
        let counters = c.counters();
        assert!(c.inner.nodelay().unwrap());
        c.write_all(b"hello").await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"hello");
        assert_eq!((counters.sent(), counters.received()), (5, 5));
        server.await.unwrap();
    }
}
