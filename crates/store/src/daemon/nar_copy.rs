//! Copy one NAR off the daemon connection (NarFromPath).
//!
//! The daemon sends the NAR bare, without a length or framing, so the only way
//! to know where it ends is to follow its grammar (see [`crate::nar`]). This
//! module tracks just enough of it — token sequence and directory nesting,
//! with an explicit depth counter instead of recursion — to find the end, and
//! copies every byte through unchanged; file contents are streamed in chunks.
//! Checking names, ordering and the like is left to whoever consumes the NAR.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::wire::{WireBuf, padding, read_len, read_padding};
use super::{DaemonError, Result};

/// Bound on a token (names ≤ 255 bytes, symlink targets ≤ PATH_MAX).
const MAX_TOKEN: u64 = 4096;
const MAX_DEPTH: u64 = 1 << 16;

struct Copier<'a, R: ?Sized, S: ?Sized> {
    r: &'a mut R,
    sink: &'a mut S,
    total: u64,
}

impl<R, S> Copier<'_, R, S>
where
    R: AsyncRead + Unpin + ?Sized,
    S: AsyncWrite + Unpin + ?Sized,
{
    async fn token(&mut self) -> Result<Vec<u8>> {
        let len = read_len(self.r, MAX_TOKEN, "NAR token").await?;
        let mut buf = vec![0u8; len as usize];
        self.r.read_exact(&mut buf).await?;
        read_padding(self.r, len).await?;
        let mut w = WireBuf::new();
        w.bytes(&buf);
        self.sink.write_all(w.as_bytes()).await?;
        self.total += w.as_bytes().len() as u64;
        Ok(buf)
    }

    async fn expect(&mut self, want: &[u8]) -> Result<()> {
        let got = self.token().await?;
        if got != want {
            return Err(DaemonError::protocol(format!(
                "bad NAR from the daemon: expected '{}', got '{}'",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            )));
        }
        Ok(())
    }

    /// File contents: length, data streamed through, padding.
    async fn contents(&mut self) -> Result<()> {
        let len = super::wire::read_u64(self.r).await?;
        self.sink.write_all(&len.to_le_bytes()).await?;
        let copied = tokio::io::copy(&mut (&mut *self.r).take(len), &mut *self.sink).await?;
        if copied != len {
            return Err(DaemonError::Disconnected);
        }
        read_padding(self.r, len).await?;
        let pad = padding(len);
        self.sink.write_all(&[0u8; 8][..pad]).await?;
        self.total += 8 + len + pad as u64;
        Ok(())
    }

    /// After `"(" "type"`: the body of one node. Returns whether a directory
    /// was opened (its entries follow).
    async fn node_body(&mut self) -> Result<bool> {
        match &self.token().await?[..] {
            b"regular" => {
                let mut t = self.token().await?;
                if t == b"executable" {
                    self.expect(b"").await?;
                    t = self.token().await?;
                }
                if t != b"contents" {
                    return Err(DaemonError::protocol("bad NAR from the daemon: regular file without contents"));
                }
                self.contents().await?;
                self.expect(b")").await?;
                Ok(false)
            }
            b"symlink" => {
                self.expect(b"target").await?;
                self.token().await?;
                self.expect(b")").await?;
                Ok(false)
            }
            b"directory" => Ok(true),
            other => Err(DaemonError::protocol(format!(
                "bad NAR from the daemon: unknown node type '{}'",
                String::from_utf8_lossy(other)
            ))),
        }
    }
}

/// Copy exactly one NAR from `r` to `sink`; returns its size in bytes.
pub async fn copy_nar<R, S>(r: &mut R, sink: &mut S) -> Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    S: AsyncWrite + Unpin + ?Sized,
{
    let mut c = Copier { r, sink, total: 0 };
    c.expect(b"nix-archive-1").await?;
    // Open directories whose entries we are inside.
    let mut depth: u64 = 0;
    let mut start_node = true;
    loop {
        if start_node {
            c.expect(b"(").await?;
            c.expect(b"type").await?;
            if c.node_body().await? {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(DaemonError::protocol("bad NAR from the daemon: directories nested too deeply"));
                }
            } else if depth == 0 {
                break;
            } else {
                c.expect(b")").await?; // closes the entry
            }
        }
        // Inside a directory: another entry, or its end.
        match &c.token().await?[..] {
            b"entry" => {
                c.expect(b"(").await?;
                c.expect(b"name").await?;
                c.token().await?;
                c.expect(b"node").await?;
                start_node = true;
            }
            b")" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
                c.expect(b")").await?; // closes the entry holding this directory
                start_node = false;
            }
            other => {
                return Err(DaemonError::protocol(format!(
                    "bad NAR from the daemon: unexpected '{}' in a directory",
                    String::from_utf8_lossy(other)
                )));
            }
        }
    }
    c.sink.flush().await?;
    Ok(c.total)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn s(w: &mut WireBuf, items: &[&[u8]]) {
        for i in items {
            w.bytes(i);
        }
    }

    /// A NAR of `{ a: "hello" (executable), d: { l -> "a", e: {} }, z: "" }`, built by hand.
    pub(crate) fn sample() -> Vec<u8> {
        let mut w = WireBuf::new();
        s(&mut w, &[b"nix-archive-1", b"(", b"type", b"directory"]);
        s(&mut w, &[b"entry", b"(", b"name", b"a", b"node", b"(", b"type", b"regular", b"executable", b"", b"contents", b"hello", b")", b")"]);
        s(&mut w, &[b"entry", b"(", b"name", b"d", b"node", b"(", b"type", b"directory"]);
        s(&mut w, &[b"entry", b"(", b"name", b"e", b"node", b"(", b"type", b"directory", b")", b")"]);
        s(&mut w, &[b"entry", b"(", b"name", b"l", b"node", b"(", b"type", b"symlink", b"target", b"a", b")", b")"]);
        s(&mut w, &[b")", b")"]);
        s(&mut w, &[b"entry", b"(", b"name", b"z", b"node", b"(", b"type", b"regular", b"contents", b"", b")", b")"]);
        s(&mut w, &[b")"]);
        w.into_bytes()
    }

    #[tokio::test]
    async fn copies_exactly_one_nar() {
        for nar in [sample(), {
            let mut w = WireBuf::new();
            s(&mut w, &[b"nix-archive-1", b"(", b"type", b"regular", b"contents", &[7u8; 100_000], b")"]);
            w.into_bytes()
        }] {
            let mut stream = nar.clone();
            stream.extend_from_slice(b"next reply");
            let mut r = &stream[..];
            let mut out = Vec::new();
            let n = copy_nar(&mut r, &mut out).await.unwrap();
            assert_eq!(n as usize, nar.len());
            assert_eq!(out, nar);
            assert_eq!(r, b"next reply");
        }
    }

    #[tokio::test]
    async fn rejects_garbage_and_truncation() {
        let nar = sample();
        for cut in [0, 8, 100, nar.len() - 8] {
            let e = copy_nar(&mut &nar[..cut], &mut Vec::new()).await.unwrap_err();
            assert!(matches!(e, DaemonError::Disconnected), "cut at {cut}: {e}");
        }
        let mut w = WireBuf::new();
        s(&mut w, &[b"nix-archive-1", b"(", b"type", b"fifo"]);
        assert!(matches!(copy_nar(&mut w.as_bytes(), &mut Vec::new()).await, Err(DaemonError::Protocol { .. })));
        let mut deep = WireBuf::new();
        s(&mut deep, &[b"nix-archive-1"]);
        for _ in 0..(MAX_DEPTH + 2) {
            s(&mut deep, &[b"(", b"type", b"directory", b"entry", b"(", b"name", b"x", b"node"]);
        }
        assert!(matches!(copy_nar(&mut deep.as_bytes(), &mut Vec::new()).await, Err(DaemonError::Protocol { .. })));
    }
}
