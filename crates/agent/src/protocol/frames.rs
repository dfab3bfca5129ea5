//! Frame I/O: [`FrameReader`] and [`FrameWriter`] over any async byte stream.
//!
//! Control messages other than `Hello` that are longer than
//! [`COMPRESS_OVER`] bytes travel as [`FrameKind::ControlZstd`]: each such
//! frame is the next flushed chunk of *one zstd stream per direction and
//! session*, so a message is compressed with everything sent before it as
//! context (the store path names, field names and hashes that plans repeat
//! from path to path cost almost nothing the second time: measured on a
//! 576-path update, 541 KB of individually compressed plans became 250 KB).
//! A frame carries exactly one message, decodable as soon as it arrives.
//!
//! Invariants: a frame's length is checked against its kind's limit before
//! anything is allocated; decompression stops with an error as soon as one
//! message's JSON would exceed [`MAX_CONTROL_FRAME`], so a compressed frame
//! cannot inflate memory; a stream that ends mid-frame is
//! [`ProtocolError::Truncated`], one that ends between frames
//! [`ProtocolError::Disconnected`].

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zstd::zstd_safe::{CCtx, CParameter, DCtx, DParameter, InBuffer, OutBuffer, zstd_sys::ZSTD_EndDirective};

use super::{DATA_FRAME_SIZE, FrameKind, MAX_CONTROL_FRAME, MAX_DATA_FRAME, Message, ProtocolError, Result};

/// Control messages longer than this are compressed.
pub const COMPRESS_OVER: usize = 64;
/// zstd level of the control stream.
const CONTROL_LEVEL: i32 = 3;

/// One frame read from the peer.
#[derive(Debug)]
pub enum Frame {
    Control(Message),
    Data(Vec<u8>),
    End,
}

impl Frame {
    fn describe(&self) -> String {
        match self {
            Frame::Control(m) => m.name().to_owned(),
            Frame::Data(d) => format!("{} bytes of data", d.len()),
            Frame::End => "End".to_owned(),
        }
    }
}

fn zerr(what: &str, code: usize) -> ProtocolError {
    ProtocolError::BadMessage(format!("{what}: {}", zstd::zstd_safe::get_error_name(code)))
}

fn parse_json(json: &[u8]) -> Result<Message> {
    serde_json::from_slice(json).map_err(|e| ProtocolError::BadMessage(e.to_string()))
}

/// Reads frames (see the module doc).
pub struct FrameReader<R> {
    inner: R,
    dctx: Option<DCtx<'static>>,
    scratch: Vec<u8>,
}

impl<R> std::fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader").finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader { inner, dctx: None, scratch: Vec::new() }
    }

    /// Read one frame.
    pub async fn frame(&mut self) -> Result<Frame> {
        let mut header = [0u8; 5];
        let mut got = 0;
        while got < header.len() {
            let n = self.inner.read(&mut header[got..]).await?;
            if n == 0 {
                return Err(if got == 0 { ProtocolError::Disconnected } else { ProtocolError::Truncated });
            }
            got += n;
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let kind = FrameKind::from_u8(header[4])?;
        let max = match kind {
            FrameKind::Control | FrameKind::ControlZstd => MAX_CONTROL_FRAME,
            FrameKind::Data => MAX_DATA_FRAME,
            FrameKind::End => 0,
        };
        if len > max {
            return Err(ProtocolError::FrameTooLarge { kind, len, max });
        }
        let mut payload = vec![0u8; len as usize];
        self.inner.read_exact(&mut payload).await.map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ProtocolError::Truncated,
            _ => ProtocolError::Io(e),
        })?;
        Ok(match kind {
            FrameKind::Control => Frame::Control(parse_json(&payload)?),
            FrameKind::ControlZstd => {
                let json = self.decompress(&payload)?;
                Frame::Control(parse_json(&json)?)
            }
            FrameKind::Data => Frame::Data(payload),
            FrameKind::End => Frame::End,
        })
    }

    /// The next chunk of the control stream, as one message's JSON.
    fn decompress(&mut self, chunk: &[u8]) -> Result<Vec<u8>> {
        let dctx = match &mut self.dctx {
            Some(d) => d,
            None => {
                let mut d = DCtx::try_create().ok_or_else(|| ProtocolError::BadMessage("cannot create a zstd context".into()))?;
                d.set_parameter(DParameter::WindowLogMax(27)).map_err(|c| zerr("zstd window", c))?;
                self.dctx.insert(d)
            }
        };
        self.scratch.resize(64 << 10, 0);
        let mut input = InBuffer::around(chunk);
        let mut out = Vec::new();
        loop {
            let mut o = OutBuffer::around(&mut self.scratch[..]);
            dctx.decompress_stream(&mut o, &mut input).map_err(|c| zerr("compressed control frame", c))?;
            let n = o.pos();
            if out.len() + n > MAX_CONTROL_FRAME as usize {
                return Err(ProtocolError::BadMessage("compressed control frame: message too large".into()));
            }
            out.extend_from_slice(self.scratch.get(..n).unwrap_or_default());
            if input.pos() == chunk.len() && n < self.scratch.len() {
                return Ok(out);
            }
        }
    }

    /// Read a frame that must be a control message.
    pub async fn message(&mut self) -> Result<Message> {
        match self.frame().await? {
            Frame::Control(m) => Ok(m),
            other => Err(ProtocolError::Unexpected { expected: "a control message", got: other.describe() }),
        }
    }

    /// Read data frames up to the `End` frame; fails if they carry more than
    /// `max` bytes (checked before growing the buffer).
    pub async fn payload(&mut self, max: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.frame().await? {
                Frame::Data(d) => {
                    let got = out.len() as u64 + d.len() as u64;
                    if got > max {
                        return Err(ProtocolError::PayloadTooLong { got, declared: max });
                    }
                    out.extend_from_slice(&d);
                }
                Frame::End => return Ok(out),
                other => return Err(ProtocolError::Unexpected { expected: "data or End", got: other.describe() }),
            }
        }
    }

    /// Skip data frames up to the `End` frame.
    pub async fn skip_payload(&mut self) -> Result<()> {
        loop {
            match self.frame().await? {
                Frame::Data(_) => {}
                Frame::End => return Ok(()),
                other => return Err(ProtocolError::Unexpected { expected: "data or End", got: other.describe() }),
            }
        }
    }
}

/// Writes frames (see the module doc). Nothing is flushed unless asked.
pub struct FrameWriter<W> {
    inner: W,
    cctx: Option<CCtx<'static>>,
    scratch: Vec<u8>,
}

impl<W> std::fmt::Debug for FrameWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter").finish_non_exhaustive()
    }
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W) -> FrameWriter<W> {
        FrameWriter { inner, cctx: None, scratch: Vec::new() }
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    async fn frame(&mut self, kind: FrameKind, payload: &[u8]) -> Result<u64> {
        let len = u32::try_from(payload.len()).map_err(|_| ProtocolError::BadMessage("frame too large to send".into()))?;
        let mut header = [0u8; 5];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4] = kind as u8;
        self.inner.write_all(&header).await?;
        self.inner.write_all(payload).await?;
        Ok(5 + payload.len() as u64)
    }

    /// Write a control message; returns the bytes written.
    pub async fn message(&mut self, m: &Message) -> Result<u64> {
        let json = serde_json::to_vec(m).map_err(|e| ProtocolError::BadMessage(e.to_string()))?;
        if json.len() > MAX_CONTROL_FRAME as usize {
            return Err(ProtocolError::FrameTooLarge { kind: FrameKind::Control, len: u32::MAX, max: MAX_CONTROL_FRAME });
        }
        if json.len() <= COMPRESS_OVER || matches!(m, Message::Hello { .. }) {
            return self.frame(FrameKind::Control, &json).await;
        }
        let chunk = self.compress(&json)?;
        self.frame(FrameKind::ControlZstd, &chunk).await
    }

    /// `json` as the next flushed chunk of the control stream.
    fn compress(&mut self, json: &[u8]) -> Result<Vec<u8>> {
        let cctx = match &mut self.cctx {
            Some(c) => c,
            None => {
                let mut c = CCtx::try_create().ok_or_else(|| ProtocolError::BadMessage("cannot create a zstd context".into()))?;
                c.set_parameter(CParameter::CompressionLevel(CONTROL_LEVEL)).map_err(|e| zerr("zstd level", e))?;
                self.cctx.insert(c)
            }
        };
        self.scratch.resize(64 << 10, 0);
        let mut input = InBuffer::around(json);
        let mut out = Vec::new();
        loop {
            let mut o = OutBuffer::around(&mut self.scratch[..]);
            let left = cctx.compress_stream2(&mut o, &mut input, ZSTD_EndDirective::ZSTD_e_flush).map_err(|c| zerr("compressing", c))?;
            let n = o.pos();
            out.extend_from_slice(self.scratch.get(..n).unwrap_or_default());
            if left == 0 && input.pos() == json.len() {
                return Ok(out);
            }
        }
    }

    /// Write `data` as data frames followed by `End`; returns the bytes written.
    pub async fn payload(&mut self, data: &[u8]) -> Result<u64> {
        let mut n = 0;
        for chunk in data.chunks(DATA_FRAME_SIZE) {
            n += self.frame(FrameKind::Data, chunk).await?;
        }
        n += self.frame(FrameKind::End, &[]).await?;
        Ok(n)
    }

    pub async fn flush(&mut self) -> Result<()> {
        self.inner.flush().await?;
        Ok(())
    }

    /// The underlying writer (to shut it down).
    pub fn into_inner(self) -> W {
        self.inner
    }
}
