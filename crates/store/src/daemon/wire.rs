//! Primitive encoding of the worker protocol.
//!
//! Every value is a sequence of 8-byte little-endian words: integers and
//! booleans are one `u64`; a byte string is its length as `u64`, the bytes,
//! then zero bytes up to the next multiple of 8; a list is its count followed
//! by the elements. Store paths travel as absolute path strings.
//!
//! Writing goes into a [`WireBuf`] (requests are small; NAR data is streamed
//! separately through [`super::framed`]). Reading is async and defensive:
//! every length is checked against a caller-supplied bound before any memory
//! is reserved, buffers grow only as the peer actually delivers bytes, and
//! padding must be zero (Nix checks it too), so a corrupt stream is detected
//! as early as possible.

use std::collections::BTreeSet;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{DaemonError, Result};
use crate::store_path::{StoreDir, StorePath};

/// Bound for free-form strings (log lines, error messages, settings).
pub const MAX_STRING_LEN: u64 = 16 << 20;
/// Bound for a store path string (store dir + 32 + 1 + 211 with generous room).
pub const MAX_PATH_LEN: u64 = 4096;
/// Bound for the element count of any list.
pub const MAX_LIST_LEN: u64 = 1 << 24;
/// Largest initial allocation made on the strength of a length the peer sent.
const MAX_PREALLOC: usize = 64 << 10;

/// Number of zero bytes that follow a string of length `len`.
pub fn padding(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}

/// An encoder for a request (or any part of one).
#[derive(Debug, Default, Clone)]
pub struct WireBuf {
    buf: Vec<u8>,
}

impl WireBuf {
    pub fn new() -> WireBuf {
        WireBuf::default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u64(u64::from(v))
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u64(b.len() as u64);
        self.buf.extend_from_slice(b);
        self.buf.resize(self.buf.len() + padding(b.len() as u64), 0);
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// A list of strings (Nix's `Strings`/`StringSet`).
    pub fn strings<I>(&mut self, items: I) -> &mut Self
    where
        I: IntoIterator,
        I::IntoIter: ExactSizeIterator,
        I::Item: AsRef<str>,
    {
        let items = items.into_iter();
        self.u64(items.len() as u64);
        for s in items {
            self.str(s.as_ref());
        }
        self
    }

    /// An absolute store path.
    pub fn path(&mut self, dir: &StoreDir, p: &StorePath) -> &mut Self {
        self.str(&dir.display(p))
    }

    /// An optional store path: the empty string for `None`.
    pub fn opt_path(&mut self, dir: &StoreDir, p: Option<&StorePath>) -> &mut Self {
        match p {
            Some(p) => self.path(dir, p),
            None => self.str(""),
        }
    }

    /// A set of store paths, sorted and deduplicated by the caller's container.
    pub fn paths<'a, I>(&mut self, dir: &StoreDir, paths: I) -> &mut Self
    where
        I: IntoIterator<Item = &'a StorePath>,
        I::IntoIter: ExactSizeIterator,
    {
        let paths = paths.into_iter();
        self.u64(paths.len() as u64);
        for p in paths {
            self.path(dir, p);
        }
        self
    }
}

pub async fn read_u64<R: AsyncRead + Unpin + ?Sized>(r: &mut R) -> Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).await?;
    Ok(u64::from_le_bytes(b))
}

/// A boolean; Nix writes 0 or 1 but reads any non-zero value as true.
pub async fn read_bool<R: AsyncRead + Unpin + ?Sized>(r: &mut R) -> Result<bool> {
    Ok(read_u64(r).await? != 0)
}

/// A length or count, checked against `max`; `what` names it in the error.
pub async fn read_len<R: AsyncRead + Unpin + ?Sized>(r: &mut R, max: u64, what: &str) -> Result<u64> {
    let len = read_u64(r).await?;
    if len > max {
        return Err(DaemonError::protocol(format!("{what} has length {len}, more than the limit of {max}")));
    }
    Ok(len)
}

/// Read and check the zero padding after `len` bytes of string data.
pub async fn read_padding<R: AsyncRead + Unpin + ?Sized>(r: &mut R, len: u64) -> Result<()> {
    let mut pad = [0u8; 8];
    let n = padding(len);
    let pad = &mut pad[..n];
    r.read_exact(pad).await?;
    if pad.iter().any(|&b| b != 0) {
        return Err(DaemonError::protocol("non-zero padding after a string"));
    }
    Ok(())
}

/// A byte string of at most `max` bytes.
pub async fn read_bytes<R: AsyncRead + Unpin + ?Sized>(r: &mut R, max: u64, what: &str) -> Result<Vec<u8>> {
    let len = read_len(r, max, what).await?;
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(MAX_PREALLOC).min(MAX_PREALLOC));
    let got = (&mut *r).take(len).read_to_end(&mut buf).await?;
    if got as u64 != len {
        return Err(DaemonError::Disconnected);
    }
    read_padding(r, len).await?;
    Ok(buf)
}

/// A UTF-8 string of at most `max` bytes.
pub async fn read_string<R: AsyncRead + Unpin + ?Sized>(r: &mut R, max: u64, what: &str) -> Result<String> {
    let bytes = read_bytes(r, max, what).await?;
    String::from_utf8(bytes).map_err(|_| DaemonError::protocol(format!("{what} is not valid UTF-8")))
}

/// A list of strings, each at most `max` bytes.
pub async fn read_strings<R: AsyncRead + Unpin + ?Sized>(r: &mut R, max: u64, what: &str) -> Result<Vec<String>> {
    let n = read_len(r, MAX_LIST_LEN, what).await?;
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(1024));
    for _ in 0..n {
        out.push(read_string(r, max, what).await?);
    }
    Ok(out)
}

/// An absolute store path under `dir`.
pub async fn read_path<R: AsyncRead + Unpin + ?Sized>(r: &mut R, dir: &StoreDir) -> Result<StorePath> {
    let s = read_string(r, MAX_PATH_LEN, "store path").await?;
    Ok(dir.parse(&s)?)
}

/// An optional store path (empty string = none).
pub async fn read_opt_path<R: AsyncRead + Unpin + ?Sized>(r: &mut R, dir: &StoreDir) -> Result<Option<StorePath>> {
    let s = read_string(r, MAX_PATH_LEN, "store path").await?;
    if s.is_empty() { Ok(None) } else { Ok(Some(dir.parse(&s)?)) }
}

/// A set of store paths.
pub async fn read_paths<R: AsyncRead + Unpin + ?Sized>(r: &mut R, dir: &StoreDir) -> Result<BTreeSet<StorePath>> {
    let n = read_len(r, MAX_LIST_LEN, "store path set").await?;
    let mut out = BTreeSet::new();
    for _ in 0..n {
        out.insert(read_path(r, dir).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn encodes_like_nix() {
        // Nix's test vector for strings (libstore-tests data/worker-protocol/string.bin):
        // "" -> 8 zero bytes; "hi" -> len 2, 'h' 'i', 6 zero bytes.
        let mut w = WireBuf::new();
        w.str("").str("hi").u64(0x0102).bool(true);
        let mut want = vec![0u8; 8];
        want.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, b'h', b'i', 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[2, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(w.as_bytes(), &want[..]);
        let eight = WireBuf::new().str("12345678").as_bytes().to_vec();
        assert_eq!(eight.len(), 16, "a multiple of 8 gets no padding");
    }

    #[test]
    fn round_trips() {
        let dir = StoreDir::default();
        let p = dir.parse("/nix/store/7h7qgvs4kgzsn8a6rb274saxyqh4jxlz-hello-2.12.1").unwrap();
        let mut w = WireBuf::new();
        w.strings(["a", "bcdefghij", ""]).path(&dir, &p).opt_path(&dir, None).paths(&dir, [&p]);
        run(async {
            let mut r = w.as_bytes();
            assert_eq!(read_strings(&mut r, 100, "x").await.unwrap(), ["a", "bcdefghij", ""]);
            assert_eq!(read_path(&mut r, &dir).await.unwrap(), p);
            assert_eq!(read_opt_path(&mut r, &dir).await.unwrap(), None);
            assert_eq!(read_paths(&mut r, &dir).await.unwrap().into_iter().collect::<Vec<_>>(), [p]);
            assert!(r.is_empty());
        });
    }

    #[test]
    fn rejects_bad_input() {
        run(async {
            // Length beyond the bound: refused before reading (or allocating) anything.
            let huge = WireBuf::new().u64(u64::MAX).as_bytes().to_vec();
            let e = read_bytes(&mut &huge[..], MAX_STRING_LEN, "log line").await.unwrap_err();
            assert!(e.to_string().contains("log line has length 18446744073709551615"), "{e}");
            // Claims 1000 bytes, delivers 3: a clean disconnect error.
            let mut short = WireBuf::new().u64(1000).as_bytes().to_vec();
            short.extend_from_slice(b"abc");
            assert!(matches!(read_bytes(&mut &short[..], 4096, "x").await, Err(DaemonError::Disconnected)));
            // Non-zero padding.
            let mut bad = WireBuf::new().str("a").as_bytes().to_vec();
            bad[12] = 1;
            assert!(matches!(read_bytes(&mut &bad[..], 10, "x").await, Err(DaemonError::Protocol { .. })));
            // Not UTF-8.
            let latin = WireBuf::new().bytes(&[0xff]).as_bytes().to_vec();
            assert!(read_string(&mut &latin[..], 10, "x").await.is_err());
            // Truncated integer.
            assert!(matches!(read_u64(&mut &[1u8, 2][..]).await, Err(DaemonError::Disconnected)));
            // Not a store path.
            let dir = StoreDir::default();
            let tmp = WireBuf::new().str("/tmp/x").as_bytes().to_vec();
            assert!(matches!(read_path(&mut &tmp[..], &dir).await, Err(DaemonError::StorePath(_))));
            // List count beyond the bound.
            let many = WireBuf::new().u64(MAX_LIST_LEN + 1).as_bytes().to_vec();
            assert!(matches!(read_strings(&mut &many[..], 10, "x").await, Err(DaemonError::Protocol { .. })));
        });
    }
}
