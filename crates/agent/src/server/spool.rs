//! [`Spool`]: a rebuilt NAR waiting to be imported, in memory (up to
//! [`SPOOL_IN_MEMORY`]) or in a temporary file.
//!
//! Memory spools come from a pool of buffers that the importer hands back
//! once the daemon has read them ([`Spool::into_reader`]'s reader returns
//! its buffer when dropped): a fresh buffer costs a page fault per 4 KiB
//! written (about a quarter of the agent's CPU on a 300 MiB update before
//! the pool), a recycled one none. Invariant: the pool holds at most
//! [`POOL_BYTES`] of buffer capacity; a buffer taken from it is empty.

use std::io::{self, Seek, Write};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::SPOOL_IN_MEMORY;

/// Buffer capacity the pool keeps at most: what may wait for the importer.
pub const POOL_BYTES: usize = super::SPOOL_BUDGET as usize;

/// Buffers for memory spools.
struct Pool(Mutex<Vec<Vec<u8>>>);

/// The smallest buffer allocated.
const MIN_BUFFER: usize = 64 << 10;

static POOL: Pool = Pool(Mutex::new(Vec::new()));

impl Pool {
    /// An empty buffer of at least `size` bytes: the smallest pooled one
    /// that fits, else a new one of the next power of two (NARs vary in
    /// size: buffers in size classes fit the next NARs of their class).
    fn take(&self, size: usize) -> Vec<u8> {
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let best = pool.iter().enumerate().filter(|(_, b)| b.capacity() >= size).min_by_key(|(_, b)| b.capacity()).map(|(i, _)| i);
        match best {
            Some(i) => pool.swap_remove(i),
            None => Vec::with_capacity(size.checked_next_power_of_two().unwrap_or(size).max(MIN_BUFFER)),
        }
    }

    /// Keep a buffer for later (dropped if the pool is full).
    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = pool.iter().map(Vec::capacity).sum();
        if held + buf.capacity() <= POOL_BYTES {
            pool.push(buf);
        }
    }
}

/// A rebuilt NAR waiting to be imported.
pub enum Spool {
    Memory(Vec<u8>),
    File(std::fs::File),
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Spool::Memory(v) => Write::write(v, buf),
            Spool::File(f) => Write::write(f, buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Spool::Memory(_) => Ok(()),
            Spool::File(f) => f.flush(),
        }
    }
}

impl Spool {
    pub(super) fn new(size: u64) -> io::Result<Spool> {
        // The whole declared size at once (at most SPOOL_IN_MEMORY; the rebuild
        // never writes more): no copies as the NAR grows.
        Ok(if size <= SPOOL_IN_MEMORY { Spool::Memory(POOL.take(size as usize)) } else { Spool::File(tempfile::tempfile()?) })
    }

    /// The spooled bytes as an async reader from the start (a memory
    /// spool's buffer goes back to the pool when the reader is dropped).
    pub fn into_reader(self) -> io::Result<Box<dyn AsyncRead + Unpin + Send>> {
        Ok(match self {
            Spool::Memory(v) => Box::new(Recycled { buf: v, pos: 0 }),
            Spool::File(mut f) => {
                f.rewind()?;
                Box::new(tokio::fs::File::from_std(f))
            }
        })
    }
}

/// Reads a buffer, then hands it back to the pool.
struct Recycled {
    buf: Vec<u8>,
    pos: usize,
}

impl AsyncRead for Recycled {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let rest = me.buf.get(me.pos..).unwrap_or_default();
        let n = rest.len().min(out.remaining());
        out.put_slice(rest.get(..n).unwrap_or_default());
        me.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        POOL.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn memory_spools_read_back_whole() {
        let mut s = Spool::new(100_000).unwrap();
        s.write_all(&[7u8; 100_000]).unwrap();
        let mut r = s.into_reader().unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, vec![7u8; 100_000]);
    }

    #[test]
    fn the_pool_hands_out_the_smallest_fitting_buffer_empty_and_stays_bounded() {
        let pool = Pool(Mutex::new(Vec::new()));
        let mut a = pool.take(1000);
        a.extend_from_slice(&[1; 1000]);
        let (pa, ca) = (a.as_ptr(), a.capacity());
        pool.give(a);
        pool.give(Vec::with_capacity(1 << 20));
        let b = pool.take(900);
        assert!(b.is_empty() && b.as_ptr() == pa && b.capacity() == ca, "the smallest buffer, emptied");
        assert_eq!(pool.take(4000).capacity(), 1 << 20);
        assert!(pool.0.lock().unwrap().is_empty());
        // New buffers come in powers of two, so a slightly larger NAR fits a recycled one.
        let c = pool.take(300_000);
        assert_eq!(c.capacity(), 1 << 19);
        pool.give(c);
        assert_eq!(pool.take(500_000).capacity(), 1 << 19);
        // A fresh buffer when none fits; never more than POOL_BYTES kept.
        assert!(pool.take(10_000).capacity() >= 10_000);
        pool.give(Vec::with_capacity(POOL_BYTES - 10));
        pool.give(Vec::with_capacity(100));
        assert_eq!(pool.0.lock().unwrap().len(), 1);
    }
}
