//! Mutation tests for every decoder that reads daemon input: valid streams
//! with bytes flipped, truncated or random must give an error or a result,
//! never a panic, a hang or a huge allocation.

use super::handshake::client_handshake;
use super::handshake::tests::daemon_bytes;
use super::nar_copy::copy_nar;
use super::nar_copy::tests::sample as sample_nar;
use super::path_info::{read_unkeyed, write_unkeyed};
use super::stderr::process_stderr;
use super::stderr::tests::error_msg;
use super::stderr::{STDERR_NEXT, STDERR_RESULT, STDERR_START_ACTIVITY};
use super::wire::WireBuf;
use super::ProtocolVersion;
use crate::hash::{Hash, HashAlgo};
use crate::path_info::PathInfo;
use crate::store_path::StoreDir;
use crate::test_rng::Rng;

/// Variants of `valid`: bytes overwritten (often with length-like values),
/// truncations, and pure noise.
fn mutants(valid: &[u8], seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut m = valid.to_vec();
        match i % 4 {
            0 => {
                for _ in 0..=rng.below(4) {
                    let at = rng.below(m.len());
                    m[at] = rng.next() as u8;
                }
            }
            1 => {
                // A word replaced by a large or small number, at a word boundary.
                let at = rng.below(m.len() / 8) * 8;
                let v = [u64::MAX, 1 << 40, 0, 1, 7, 9, rng.next()][rng.below(7)];
                m[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            2 => m.truncate(rng.below(m.len())),
            _ => m = (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
        }
        out.push(m);
    }
    out
}

#[tokio::test]
async fn stderr_stream_mutants() {
    let mut w = WireBuf::new();
    w.u64(STDERR_NEXT).str("a log line\n");
    w.u64(STDERR_START_ACTIVITY).u64(1).u64(0).u64(105).str("copying").u64(2).u64(0).u64(5).u64(1).str("s").u64(0);
    w.u64(STDERR_RESULT).u64(1).u64(101).u64(1).u64(1).str("x");
    error_msg(&mut w, "boom", &["trace one", "trace two"]);
    for m in mutants(w.as_bytes(), 1, 4000) {
        let _ = process_stderr(&mut &m[..], &mut |_| ()).await;
    }
}

#[tokio::test]
async fn nar_mutants() {
    let nar = sample_nar();
    for m in mutants(&nar, 2, 4000) {
        let mut out = Vec::new();
        if let Ok(n) = copy_nar(&mut &m[..], &mut out).await {
            assert_eq!(n as usize, out.len());
            assert_eq!(&m[..out.len()], &out[..], "copied bytes are the input's prefix");
        }
    }
}

#[tokio::test]
async fn handshake_mutants() {
    for minor in [34, 35, 38] {
        let valid = daemon_bytes(ProtocolVersion::new(1, minor), 1);
        for m in mutants(&valid, 3 + u64::from(minor), 1500) {
            let _ = client_handshake(&mut &m[..], &mut tokio::io::sink(), &mut |_| ()).await;
        }
    }
}

#[tokio::test]
async fn path_info_mutants() {
    let dir = StoreDir::default();
    let path = dir.make_text_path("x", &Hash::digest(HashAlgo::Sha256, b"x"), []).unwrap();
    let mut info = PathInfo::new(path.clone(), Hash::digest(HashAlgo::Sha256, b"nar"), 120);
    info.references.insert(path.clone());
    info.sigs.insert("cache.example.org-1:c2ln".to_owned());
    let mut w = WireBuf::new();
    write_unkeyed(&mut w, &dir, &info);
    for m in mutants(w.as_bytes(), 4, 4000) {
        let _ = read_unkeyed(&mut &m[..], &dir, path.clone()).await;
    }
}
