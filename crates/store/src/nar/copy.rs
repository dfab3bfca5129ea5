//! Copy one NAR off a stream, validating it on the way.
//!
//! A NAR sent bare on a connection (the daemon's `NarFromPath`, a NAR inside
//! a larger message) has no length prefix: only its grammar says where it
//! ends. [`copy_nar`] and [`copy_nar_async`] run the [`NarDecoder`] over the
//! reader's buffer and forward exactly the bytes it consumed, so the reader is
//! left at the first byte after the NAR, the sink receives a canonical NAR or
//! the copy fails, and memory stays at the reader's buffer whatever the size.

use std::io::{self, BufRead, Write};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use super::decoder::NarDecoder;
use super::parser::{NarReadError, NarStats, NarVisitor, drive};

struct Nothing;
impl NarVisitor for Nothing {}

fn sink_err(error: io::Error) -> NarReadError {
    NarReadError::Sink { op: "writing NAR to", path: "the output stream".into(), error }
}

/// Copy the NAR at the front of `r` to `w`; `r` is left right after it.
pub fn copy_nar(r: &mut impl BufRead, w: &mut impl Write) -> Result<NarStats, NarReadError> {
    drive(r, &mut Nothing, |consumed| w.write_all(consumed).map_err(sink_err))
}

/// [`copy_nar`] for async streams.
pub async fn copy_nar_async<R, W>(r: &mut R, w: &mut W) -> Result<NarStats, NarReadError>
where
    R: AsyncBufRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut decoder = NarDecoder::new();
    while !decoder.is_done() {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            break;
        }
        let n = decoder.feed(buf, &mut Nothing)?;
        w.write_all(buf.get(..n).unwrap_or_default()).await.map_err(sink_err)?;
        r.consume(n);
    }
    decoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nar::test_util::{nar_dir, nar_regular, nar_symlink};

    fn sample() -> Vec<u8> {
        nar_dir(&[(b"a", nar_regular(true, &[5u8; 100_000])), (b"b", nar_symlink(b"a"))])
    }

    #[test]
    fn copies_exactly_one_nar() {
        let nar = sample();
        let mut stream = nar.clone();
        stream.extend_from_slice(b"after");
        // A small buffer, so the NAR spans many refills.
        let mut r = io::BufReader::with_capacity(100, stream.as_slice());
        let mut out = Vec::new();
        assert_eq!(copy_nar(&mut r, &mut out).unwrap().nar_size, nar.len() as u64);
        assert_eq!(out, nar);
        let mut rest = Vec::new();
        io::Read::read_to_end(&mut r, &mut rest).unwrap();
        assert_eq!(rest, b"after");
    }

    #[test]
    fn rejects_bad_and_short_input() {
        let nar = sample();
        let mut out = Vec::new();
        let short = &nar[..nar.len() - 3];
        assert!(matches!(copy_nar(&mut &short[..], &mut out), Err(NarReadError::Truncated { .. })));
        let unsorted = nar_dir(&[(b"b", nar_symlink(b"a")), (b"a", nar_regular(false, b""))]);
        assert!(matches!(copy_nar(&mut &unsorted[..], &mut Vec::new()), Err(NarReadError::NotSorted { .. })));
    }

    #[tokio::test]
    async fn async_copy_matches() {
        let nar = sample();
        let mut stream = nar.clone();
        stream.extend_from_slice(b"after");
        let mut r = tokio::io::BufReader::with_capacity(64, stream.as_slice());
        let mut out = Vec::new();
        assert_eq!(copy_nar_async(&mut r, &mut out).await.unwrap().nar_size, nar.len() as u64);
        assert_eq!(out, nar);
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut rest).await.unwrap();
        assert_eq!(rest, b"after");
        let short = &nar[..10];
        assert!(copy_nar_async(&mut &short[..], &mut Vec::new()).await.is_err());
    }
}
