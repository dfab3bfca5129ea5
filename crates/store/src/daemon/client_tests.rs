//! [`DaemonConnection`] against a scripted in-memory daemon: the concurrency
//! of uploads and stderr, and the broken-connection bookkeeping.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf, duplex, split};

use super::*;
use crate::daemon::framed::read_frames;
use crate::daemon::stderr::tests::error_msg;
use crate::daemon::stderr::{STDERR_LAST, STDERR_NEXT};
use crate::daemon::wire::{read_path, read_strings};
use crate::daemon::{WORKER_MAGIC_1, WORKER_MAGIC_2};
use crate::hash::{Hash, HashAlgo};

type Conn = DaemonConnection<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>;

async fn send(s: &mut DuplexStream, w: &WireBuf) {
    s.write_all(w.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
}

/// The daemon's side of the handshake, as Nix 2.8 (protocol 1.34) does it.
async fn serve_handshake(s: &mut DuplexStream) {
    assert_eq!(read_u64(s).await.unwrap(), WORKER_MAGIC_1);
    read_u64(s).await.unwrap();
    send(s, WireBuf::new().u64(WORKER_MAGIC_2).u64(0x122)).await;
    read_u64(s).await.unwrap(); // cpu affinity
    read_u64(s).await.unwrap(); // reserveSpace
    send(s, WireBuf::new().str("2.8.0").u64(STDERR_LAST)).await;
}

/// A connected client and the daemon's end, with a small pipe buffer so that
/// neither side can get far ahead of the other.
async fn connect() -> (Conn, DuplexStream) {
    let (client, mut daemon) = duplex(4096);
    let (r, w) = split(client);
    let (conn, ()) = tokio::join!(DaemonConnection::handshake(r, w, StoreDir::default()), serve_handshake(&mut daemon));
    (conn.unwrap(), daemon)
}

fn sample_info(nar_size: u64) -> PathInfo {
    let dir = StoreDir::default();
    let path = dir.make_text_path("sample", &Hash::digest(HashAlgo::Sha256, b"x"), []).unwrap();
    PathInfo::new(path, Hash::digest(HashAlgo::Sha256, b"nar"), nar_size)
}

/// Read an AddToStoreNar request up to its framed data.
async fn read_add_to_store_nar_header(s: &mut DuplexStream) -> (PathInfo, (u64, u64)) {
    let dir = StoreDir::default();
    assert_eq!(read_u64(s).await.unwrap(), Op::AddToStoreNar.code());
    let path = read_path(s, &dir).await.unwrap();
    let info = read_unkeyed(s, &dir, path).await.unwrap();
    let flags = (read_u64(s).await.unwrap(), read_u64(s).await.unwrap());
    (info, flags)
}

#[tokio::test]
async fn upload_reads_logs_while_streaming() {
    let (mut conn, mut daemon) = connect().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    conn.set_logger(move |m| sink.lock().unwrap().push(m));
    let nar: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let info = sample_info(nar.len() as u64);

    let daemon_side = async {
        let (got, flags) = read_add_to_store_nar_header(&mut daemon).await;
        assert_eq!(flags, (0, 1), "repair, dontCheckSigs");
        // Far more log output than the pipe holds, before reading any data:
        // a client that only wrote would deadlock here.
        let mut w = WireBuf::new();
        for i in 0..2000 {
            w.u64(STDERR_NEXT).str(&format!("log line {i}\n"));
        }
        send(&mut daemon, &w).await;
        let mut data = Vec::new();
        read_frames(&mut daemon, 1 << 20, |f| data.extend_from_slice(f)).await.unwrap();
        send(&mut daemon, WireBuf::new().u64(STDERR_LAST)).await;
        (got, data, daemon)
    };
    let flags = AddToStoreFlags { repair: false, dont_check_sigs: true };
    let mut src = &nar[..];
    let (res, (got, data, _daemon)) = tokio::join!(conn.add_to_store_nar(&info, &mut src, flags), daemon_side);
    res.unwrap();
    assert_eq!(got, info);
    assert_eq!(data, nar);
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 2000);
    assert_eq!(log[1999], LogMessage::Next("log line 1999".into()));
    assert!(!conn.is_broken());
}

#[tokio::test]
async fn remote_error_after_upload_keeps_connection() {
    let (mut conn, mut daemon) = connect().await;
    let info = sample_info(3);
    let daemon_side = async {
        read_add_to_store_nar_header(&mut daemon).await;
        read_frames(&mut daemon, 1 << 20, |_| ()).await.unwrap();
        let mut w = WireBuf::new();
        error_msg(&mut w, "hash mismatch importing path", &[]);
        send(&mut daemon, &w).await;
        // The next request works.
        assert_eq!(read_u64(&mut daemon).await.unwrap(), Op::IsValidPath.code());
        read_path(&mut daemon, &StoreDir::default()).await.unwrap();
        send(&mut daemon, WireBuf::new().u64(STDERR_LAST).bool(true)).await;
        daemon
    };
    let client_side = async {
        let e = conn.add_to_store_nar(&info, &mut &b"abc"[..], AddToStoreFlags::default()).await.unwrap_err();
        assert!(matches!(&e, DaemonError::Remote { message, .. } if message == "hash mismatch importing path"));
        assert!(!conn.is_broken());
        assert!(conn.is_valid_path(&info.path).await.unwrap());
    };
    let ((), _daemon) = tokio::join!(client_side, daemon_side);
}

#[tokio::test]
async fn daemon_answering_mid_upload_breaks_connection() {
    let (mut conn, mut daemon) = connect().await;
    let nar = vec![1u8; 1 << 20];
    let info = sample_info(nar.len() as u64);
    let daemon_side = async {
        read_add_to_store_nar_header(&mut daemon).await;
        // Fails without reading the data (a daemon bug or a newer protocol):
        // the rest of our stream would be read as requests.
        let mut w = WireBuf::new();
        error_msg(&mut w, "unexpected", &[]);
        send(&mut daemon, &w).await;
        daemon
    };
    let mut src = &nar[..];
    let (res, _daemon) = tokio::join!(conn.add_to_store_nar(&info, &mut src, AddToStoreFlags::default()), daemon_side);
    assert!(matches!(res, Err(DaemonError::Remote { .. })));
    assert!(conn.is_broken());
    assert!(matches!(conn.is_valid_path(&info.path).await, Err(DaemonError::Broken)));
}

#[tokio::test]
async fn multiple_entries_and_local_failures() {
    let (mut conn, mut daemon) = connect().await;
    let dir = StoreDir::default();
    let a = sample_info(4);
    let mut b = sample_info(5);
    b.path = dir.make_text_path("other", &Hash::digest(HashAlgo::Sha256, b"y"), []).unwrap();
    b.references.insert(a.path.clone());
    let daemon_side = async {
        let mut streams = Vec::new();
        for _ in 0..2 {
            assert_eq!(read_u64(&mut daemon).await.unwrap(), Op::AddMultipleToStore.code());
            assert_eq!((read_u64(&mut daemon).await.unwrap(), read_u64(&mut daemon).await.unwrap()), (0, 0));
            let mut data = Vec::new();
            read_frames(&mut daemon, 1 << 20, |f| data.extend_from_slice(f)).await.unwrap();
            send(&mut daemon, WireBuf::new().u64(STDERR_LAST)).await;
            streams.push(data);
        }
        streams
    };
    let client_side = async {
        let entries = vec![(a.clone(), &b"aaaa"[..]), (b.clone(), &b"bbbbb"[..])];
        conn.add_multiple_to_store(2, FromIter(entries.into_iter()), AddToStoreFlags::default()).await.unwrap();
        // The second NAR is longer than its path info says: refused locally,
        // the stream ends after the complete first entry.
        let entries = vec![(a.clone(), &b"aaaa"[..]), (b.clone(), &b"bbbbbbb"[..])];
        let e = conn.add_multiple_to_store(2, FromIter(entries.into_iter()), AddToStoreFlags::default()).await.unwrap_err();
        assert!(matches!(&e, DaemonError::BadInput { message } if message.contains("has 7 bytes, but its path info says 5")), "{e}");
        assert!(!conn.is_broken());
        // Without a NAR size nothing is sent at all.
        let mut unsized_info = a.clone();
        unsized_info.nar_size = 0;
        let e = conn.add_to_store_nar(&unsized_info, &mut &b"aaaa"[..], AddToStoreFlags::default()).await.unwrap_err();
        assert!(e.to_string().contains("has no NAR size"), "{e}");
        assert!(!conn.is_broken());
    };
    let ((), streams) = tokio::join!(client_side, daemon_side);
    // count, then (keyed path info, NAR) per entry.
    let mut r = &streams[0][..];
    assert_eq!(read_u64(&mut r).await.unwrap(), 2);
    for (info, nar) in [(&a, &b"aaaa"[..]), (&b, &b"bbbbb"[..])] {
        let path = read_path(&mut r, &dir).await.unwrap();
        assert_eq!(&read_unkeyed(&mut r, &dir, path).await.unwrap(), info);
        let (got, rest) = r.split_at(nar.len());
        assert_eq!(got, nar);
        r = rest;
    }
    assert!(r.is_empty());
    // The aborted stream: the count and the complete first entry, nothing of the second.
    let mut want = WireBuf::new();
    want.u64(2);
    crate::daemon::path_info::write_keyed(&mut want, &dir, &a);
    let mut want = want.into_bytes();
    want.extend_from_slice(b"aaaa");
    assert_eq!(streams[1], want);
}

#[tokio::test]
async fn query_valid_paths_is_one_round_trip_and_checked() {
    let (mut conn, mut daemon) = connect().await;
    let dir = StoreDir::default();
    let paths: Vec<StorePath> = (0..100)
        .map(|i| dir.make_text_path(&format!("p{i}"), &Hash::digest(HashAlgo::Sha256, [i as u8]), []).unwrap())
        .collect();
    let stranger = dir.make_text_path("stranger", &Hash::digest(HashAlgo::Sha256, b"s"), []).unwrap();
    let daemon_side = async {
        assert_eq!(read_u64(&mut daemon).await.unwrap(), Op::QueryValidPaths.code());
        let asked = read_strings(&mut daemon, 4096, "p").await.unwrap();
        assert_eq!(asked.len(), 100);
        assert_eq!(read_u64(&mut daemon).await.unwrap(), 0, "no substitution");
        let mut w = WireBuf::new();
        w.u64(STDERR_LAST).strings(asked.iter().step_by(2));
        send(&mut daemon, &w).await;
        assert_eq!(read_u64(&mut daemon).await.unwrap(), Op::QueryValidPaths.code());
        read_strings(&mut daemon, 4096, "p").await.unwrap();
        read_u64(&mut daemon).await.unwrap();
        let mut w = WireBuf::new();
        w.u64(STDERR_LAST).strings([dir.display(&stranger)]);
        send(&mut daemon, &w).await;
        daemon
    };
    let client_side = async {
        let valid = conn.query_valid_paths(&paths, false).await.unwrap();
        assert_eq!(valid.len(), 50);
        let e = conn.query_valid_paths(&paths[..1], false).await.unwrap_err();
        assert!(e.to_string().contains("which was not asked for"), "{e}");
        assert!(conn.is_broken());
    };
    let ((), _daemon) = tokio::join!(client_side, daemon_side);
}

#[test]
fn operations_are_send() {
    fn assert_send<T: Send>(_: T) {}
    let _ = |conn: &mut super::super::transport::UnixConnection, info: &PathInfo| {
        assert_send(conn.add_to_store_nar(info, &mut tokio::io::empty(), AddToStoreFlags::default()));
        let (_tx, rx) = tokio::sync::mpsc::channel::<(PathInfo, tokio::fs::File)>(1);
        assert_send(conn.add_multiple_to_store(1, rx, AddToStoreFlags::default()));
        assert_send(conn.query_valid_paths([&info.path], false));
        assert_send(conn.nar_from_path(&info.path, Box::leak(Box::new(tokio::io::sink()))));
    };
}

#[tokio::test]
async fn pipelined_path_infos_and_closure() {
    let (mut conn, mut daemon) = connect().await;
    let dir = StoreDir::default();
    let paths: Vec<StorePath> = (0..300)
        .map(|i| dir.make_text_path(&format!("p{i}"), &Hash::digest(HashAlgo::Sha256, [i as u8, (i >> 8) as u8]), []).unwrap())
        .collect();
    let info_of = |i: usize| {
        let mut info = PathInfo::new(paths[i].clone(), Hash::digest(HashAlgo::Sha256, [i as u8]), 100 + i as u64);
        // A chain: p(i) refers to p(i+1), up to p3.
        if i < 3 {
            info.references.insert(paths[i + 1].clone());
        }
        info
    };
    let daemon_side = async {
        // A daemon answering strictly one request at a time, as Nix does; the
        // pipe holds far less than 300 requests.
        let serve = async |n: usize, d: &mut DuplexStream| {
            for _ in 0..n {
                assert_eq!(read_u64(d).await.unwrap(), Op::QueryPathInfo.code());
                let p = read_path(d, &dir).await.unwrap();
                let i = paths.iter().position(|q| *q == p).unwrap();
                let mut w = WireBuf::new();
                if i == 7 {
                    error_msg(&mut w, "path is weird", &[]);
                } else if i % 2 == 1 {
                    w.u64(STDERR_LAST).bool(false);
                } else {
                    w.u64(STDERR_LAST).bool(true);
                    crate::daemon::path_info::write_unkeyed(&mut w, &dir, &info_of(i));
                }
                send(d, &w).await;
            }
        };
        serve(300, &mut daemon).await;
        serve(300, &mut daemon).await;
        serve(2, &mut daemon).await; // the closure walk of p0: p0, then p1 (invalid)
        daemon
    };
    let client_side = async {
        let e = conn.query_path_infos(&paths).await.unwrap_err();
        assert!(matches!(&e, DaemonError::Remote { message, .. } if message == "path is weird"));
        assert!(!conn.is_broken());
        let mut without_7 = paths.clone();
        without_7[7] = paths[8].clone();
        let infos = conn.query_path_infos(&without_7).await.unwrap();
        assert_eq!(infos.len(), 300);
        assert_eq!(infos[0], Some(info_of(0)));
        assert_eq!(infos[1], None);
        assert_eq!(infos[298], Some(info_of(298)));
        assert_eq!(infos[7], Some(info_of(8)));
        // p1 and p3 are "invalid" in this daemon, so the closure walk fails on them.
        let e = conn.query_closure(&paths[..1]).await.unwrap_err();
        assert!(e.to_string().contains("is not valid on the daemon"), "{e}");
    };
    let ((), _daemon) = tokio::join!(client_side, daemon_side);
}
