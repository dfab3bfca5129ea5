//! Framed streams: how bulk data (NARs) travels to the daemon since protocol
//! 1.23.
//!
//! The data is cut into frames, each a `u64` little-endian length followed by
//! that many raw bytes (no padding); a frame of length 0 ends the stream. The
//! framing lets the receiver skip to the end of the stream when it fails
//! halfway, so the connection stays in sync whatever the payload contains.
//!
//! [`FramedWriter`] collects writes into frames of at most [`FRAME_SIZE`]
//! bytes (one buffer, reused), so memory use is bounded regardless of how much
//! is streamed. [`read_frames`] is the receiving side, used by tests and any
//! future server code; it bounds each frame's size.

use std::pin::{Pin, pin};
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::wire::read_len;
use super::{DaemonError, Result};

/// Payload bytes per frame.
pub const FRAME_SIZE: usize = 64 << 10;

/// Writes framed data to `inner`; call [`FramedWriter::finish`] to send the
/// terminator. Dropping it without `finish` leaves the stream unterminated.
pub struct FramedWriter<'a, W: AsyncWrite + Unpin + ?Sized> {
    inner: &'a mut W,
    buf: Vec<u8>,
    /// Payload bytes accepted (sent or buffered).
    written: u64,
    /// Payload bytes already sent in frames.
    sent: u64,
    /// Payload position of the last [`FramedWriter::mark`].
    mark: u64,
}

impl<'a, W: AsyncWrite + Unpin + ?Sized> FramedWriter<'a, W> {
    pub fn new(inner: &'a mut W) -> Self {
        FramedWriter { inner, buf: Vec::with_capacity(FRAME_SIZE), written: 0, sent: 0, mark: 0 }
    }

    /// Payload bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    async fn flush_frame(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_all(&(self.buf.len() as u64).to_le_bytes()).await?;
            self.inner.write_all(&self.buf).await?;
            self.sent += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        self.written += data.len() as u64;
        while !data.is_empty() {
            let room = FRAME_SIZE - self.buf.len();
            let (now, rest) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(now);
            data = rest;
            if self.buf.len() == FRAME_SIZE {
                self.flush_frame().await?;
            }
        }
        Ok(())
    }

    /// Send what is buffered as a (short) frame and flush the connection, so
    /// the receiver can act on it.
    pub async fn flush_now(&mut self) -> Result<()> {
        self.flush_frame().await?;
        self.inner.flush().await?;
        Ok(())
    }

    /// Await `fut`; if it is not ready at once, first send what is buffered, so
    /// the receiver is never kept waiting on data we hold while we wait too.
    pub async fn or_flush<F: Future>(&mut self, fut: F) -> Result<F::Output> {
        let mut fut = pin!(fut);
        if let Some(v) = poll_once(fut.as_mut()).await {
            return Ok(v);
        }
        self.flush_now().await?;
        Ok(fut.await)
    }

    /// Stream everything `src` yields, reading straight into the frame
    /// buffer; read errors become [`DaemonError::Source`] naming `what`.
    /// Whenever `src` has nothing ready, the buffered data is sent first
    /// (see [`Self::or_flush`]). Returns the bytes copied.
    pub async fn copy_from<S: AsyncRead + Unpin + ?Sized>(&mut self, src: &mut S, what: &str) -> Result<u64> {
        let mut total = 0u64;
        loop {
            if self.buf.len() == FRAME_SIZE {
                self.flush_frame().await?;
            }
            let len = self.buf.len();
            self.buf.resize(FRAME_SIZE, 0);
            let mut start = len;
            let res = match poll_once(poll_read(&mut *src, &mut self.buf[len..])).await {
                Some(res) => res,
                None => {
                    self.buf.truncate(len);
                    self.flush_now().await?;
                    self.buf.resize(FRAME_SIZE, 0);
                    start = 0;
                    poll_read(&mut *src, &mut self.buf[..]).await
                }
            };
            let n = match res {
                Ok(n) => n,
                Err(source) => {
                    self.buf.truncate(start);
                    return Err(DaemonError::Source { what: what.to_owned(), source });
                }
            };
            self.buf.truncate(start + n);
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
            self.written += n as u64;
        }
    }

    /// Send the last partial frame and the terminator, and flush.
    pub async fn finish(mut self) -> Result<u64> {
        self.flush_frame().await?;
        self.inner.write_all(&0u64.to_le_bytes()).await?;
        self.inner.flush().await?;
        Ok(self.written)
    }

    /// Remember the current position as a clean boundary (e.g. the end of a
    /// complete entry) for [`Self::abort`].
    pub fn mark(&mut self) {
        self.mark = self.written;
    }

    /// End the stream early: send what is buffered up to the last
    /// [`Self::mark`], drop the rest, and terminate. The receiver sees the
    /// stream end at the mark if nothing after it was sent yet, otherwise
    /// where the last sent frame ended; either way it gives up on the
    /// incomplete part cleanly (used when the local source fails).
    pub async fn abort(mut self) -> Result<()> {
        let keep = self.mark.saturating_sub(self.sent);
        self.buf.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        self.finish().await.map(drop)
    }
}

/// Poll `fut` once: its output if ready, `None` if it would wait.
async fn poll_once<F: Future + Unpin>(mut fut: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut fut).poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}

/// One `read` into `buf` as a future.
fn poll_read<'a, S: AsyncRead + Unpin + ?Sized>(
    src: &'a mut S,
    buf: &'a mut [u8],
) -> impl Future<Output = std::io::Result<usize>> + Unpin + 'a {
    let mut buf = ReadBuf::new(buf);
    std::future::poll_fn(move |cx| match Pin::new(&mut *src).poll_read(cx, &mut buf) {
        Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    })
}

/// Read a framed stream to its terminator, passing each frame's bytes to
/// `sink`. Frames larger than `max_frame` are a protocol error.
pub async fn read_frames<R, F>(r: &mut R, max_frame: u64, mut sink: F) -> Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    F: FnMut(&[u8]),
{
    let mut total = 0u64;
    let mut buf = Vec::new();
    loop {
        let len = read_len(r, max_frame, "frame").await?;
        if len == 0 {
            return Ok(total);
        }
        buf.clear();
        let got = (&mut *r).take(len).read_to_end(&mut buf).await?;
        if got as u64 != len {
            return Err(DaemonError::Disconnected);
        }
        sink(&buf);
        total += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames_of(chunks: &[&[u8]], src: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = FramedWriter::new(&mut out);
        for c in chunks {
            w.write(c).await.unwrap();
        }
        w.copy_from(&mut &src[..], "test").await.unwrap();
        w.finish().await.unwrap();
        out
    }

    #[tokio::test]
    async fn layout() {
        let out = frames_of(&[b"ab", b"c"], b"").await;
        let mut want = 3u64.to_le_bytes().to_vec();
        want.extend_from_slice(b"abc");
        want.extend_from_slice(&0u64.to_le_bytes());
        assert_eq!(out, want, "one frame, no padding, then the terminator");
        assert_eq!(frames_of(&[], b"").await, 0u64.to_le_bytes());
    }

    #[tokio::test]
    async fn large_streams_split_and_round_trip() {
        let data: Vec<u8> = (0..(FRAME_SIZE * 3 + 17)).map(|i| (i % 251) as u8).collect();
        let out = frames_of(&[&data[..10]], &data[10..]).await;
        let mut back = Vec::new();
        let mut sizes = Vec::new();
        let n = read_frames(&mut &out[..], FRAME_SIZE as u64, |f| {
            sizes.push(f.len());
            back.extend_from_slice(f)
        })
        .await
        .unwrap();
        assert_eq!(n as usize, data.len());
        assert_eq!(back, data);
        assert_eq!(sizes, [FRAME_SIZE, FRAME_SIZE, FRAME_SIZE, 17]);
    }

    #[tokio::test]
    async fn stalled_source_sends_what_is_buffered() {
        let (mut feed, mut src) = tokio::io::duplex(1024);
        let (mut out_w, mut out_r) = tokio::io::duplex(1 << 20);
        feed.write_all(b"early").await.unwrap();
        let copier = async {
            let mut w = FramedWriter::new(&mut out_w);
            w.write(b"hdr").await.unwrap();
            w.copy_from(&mut src, "x").await.unwrap();
            w.finish().await.unwrap()
        };
        let checker = async {
            // The first frame arrives while the source is still open.
            let len = crate::daemon::wire::read_u64(&mut out_r).await.unwrap();
            let mut first = vec![0u8; len as usize];
            out_r.read_exact(&mut first).await.unwrap();
            assert_eq!(first, b"hdrearly");
            feed.write_all(b"late").await.unwrap();
            drop(feed);
            let mut rest = Vec::new();
            read_frames(&mut out_r, 100, |f| rest.extend_from_slice(f)).await.unwrap();
            rest
        };
        let (total, rest) = tokio::join!(copier, checker);
        assert_eq!((total, &rest[..]), (12, &b"late"[..]));
    }

    #[tokio::test]
    async fn source_errors_and_bounds() {
        struct Failing;
        impl AsyncRead for Failing {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Err(std::io::Error::other("disk on fire")))
            }
        }
        let mut out = Vec::new();
        let mut w = FramedWriter::new(&mut out);
        w.write(b"partial").await.unwrap();
        let e = w.copy_from(&mut Failing, "NAR of /nix/store/x").await.unwrap_err();
        assert!(e.to_string().contains("NAR of /nix/store/x: disk on fire"), "{e}");
        w.abort().await.unwrap();
        assert_eq!(out, 0u64.to_le_bytes(), "aborting drops the unsent partial frame");

        let mut out = Vec::new();
        let mut w = FramedWriter::new(&mut out);
        w.write(b"complete").await.unwrap();
        w.mark();
        w.write(b"partial").await.unwrap();
        w.abort().await.unwrap();
        let mut want = 8u64.to_le_bytes().to_vec();
        want.extend_from_slice(b"complete");
        want.extend_from_slice(&0u64.to_le_bytes());
        assert_eq!(out, want, "aborting keeps what precedes the mark");

        let big = (FRAME_SIZE as u64 + 1).to_le_bytes();
        assert!(matches!(read_frames(&mut &big[..], FRAME_SIZE as u64, |_| ()).await, Err(DaemonError::Protocol { .. })));
        let mut cut = 10u64.to_le_bytes().to_vec();
        cut.extend_from_slice(b"abc");
        assert!(matches!(read_frames(&mut &cut[..], 100, |_| ()).await, Err(DaemonError::Disconnected)));
    }

    /// A file read through tokio's blocking pool is "not ready" on every first
    /// poll; frames must still come out full-sized, not one per read.
    #[tokio::test]
    async fn file_sources_give_full_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let data: Vec<u8> = (0..(FRAME_SIZE * 8 + 5)).map(|i| (i % 249) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut file = tokio::fs::File::open(&path).await.unwrap();
        let mut out = Vec::new();
        let mut w = FramedWriter::new(&mut out);
        w.copy_from(&mut file, "file").await.unwrap();
        w.finish().await.unwrap();
        let (mut sizes, mut back) = (Vec::new(), Vec::new());
        read_frames(&mut &out[..], FRAME_SIZE as u64, |f| {
            sizes.push(f.len());
            back.extend_from_slice(f);
        })
        .await
        .unwrap();
        assert_eq!(back, data);
        assert!(sizes.len() <= 10, "{sizes:?}");
    }
}
