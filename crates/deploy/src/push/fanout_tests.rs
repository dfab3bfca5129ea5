//! Fan-out without a store: a fake dumper, in-process consumers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ndeploy_store::daemon::PathSource;
use tokio::io::AsyncReadExt;

use super::*;
use crate::push::plan::tests::info;
use crate::push::progress::NoProgress;

/// Deterministic NAR stand-in of `size` bytes for a path.
fn fake_nar(info: &PathInfo) -> Vec<u8> {
    let seed = info.path.name().bytes().fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    (0..info.nar_size).map(|i| seed.wrapping_add((i % 251) as u8)).collect()
}

/// What a consumer read: (path name, NAR bytes) in order, or its error.
type Drained = Result<Vec<(String, Vec<u8>)>, String>;

/// Read everything a feed delivers.
async fn drain(mut feed: TargetFeed, stop_after: Option<usize>) -> Drained {
    let mut out = Vec::new();
    while let Some((info, mut nar)) = feed.next_path().await.map_err(|e| e.to_string())? {
        let mut bytes = Vec::new();
        nar.read_to_end(&mut bytes).await.map_err(|e| e.to_string())?;
        out.push((info.path.name().to_owned(), bytes));
        if stop_after == Some(out.len()) {
            return Ok(out);
        }
    }
    Ok(out)
}

fn run(
    order: Vec<PathInfo>,
    feed: Vec<(usize, Vec<usize>)>,
    consumers: usize,
    stop_after: &[Option<usize>],
    fail_on: Option<&str>,
    cfg: FeedConfig,
    stall_first: Duration,
) -> (ProduceStats, Vec<Drained>, usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dumps = AtomicUsize::new(0);
    rt.block_on(async {
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for n in 0..consumers {
            let (tx, rx) = mpsc::channel(2);
            senders.push(Some(tx));
            let stop = stop_after.get(n).copied().flatten();
            let stall = if n == 0 { stall_first } else { Duration::ZERO };
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(stall).await;
                drain(TargetFeed::new(rx, None, Arc::new(NoProgress)), stop).await
            }));
        }
        let dumps = &dumps;
        let stats = tokio::task::block_in_place(|| {
            produce(&order, &feed, senders, &cfg, &|info: &PathInfo, w: &mut dyn Write| {
                dumps.fetch_add(1, Ordering::Relaxed);
                if Some(info.path.name()) == fail_on {
                    w.write_all(&[1, 2, 3]).map_err(|e| e.to_string())?;
                    return Err("disk on fire".to_owned());
                }
                let nar = fake_nar(info);
                w.write_all(&nar).map_err(|e| e.to_string())?;
                Ok(nar.len() as u64)
            })
        });
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        (stats, results, dumps.load(Ordering::Relaxed))
    })
}

/// 100-byte chunks; a full queue waits forever.
fn small() -> FeedConfig {
    FeedConfig { chunk: 100, grace: None }
}

fn paths() -> Vec<PathInfo> {
    let lib = info("lib", &[], 1000);
    let a = info("a", &[&lib], 250);
    let b = info("b", &[&lib], 3);
    let c = info("c", &[&a, &b], 100);
    vec![lib, a, b, c]
}

#[test]
fn each_path_is_dumped_once_and_every_target_gets_the_same_bytes() {
    let order = paths();
    let feed = vec![(0, vec![0, 1, 2]), (1, vec![0, 2]), (2, vec![1]), (3, vec![0, 1, 2])];
    let (stats, results, dumps) = run(order.clone(), feed, 3, &[], None, small(), Duration::ZERO);
    assert_eq!(dumps, 4);
    assert_eq!(stats, ProduceStats { paths: 4, bytes: 1353, detached: 0, solo_bytes: 0 });
    let names = |r: &Vec<(String, Vec<u8>)>| r.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let r: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(names(&r[0]), ["lib", "a", "c"]);
    assert_eq!(names(&r[1]), ["lib", "b", "c"]);
    assert_eq!(names(&r[2]), ["lib", "a", "c"]);
    for got in &r {
        for (name, bytes) in got {
            let info = order.iter().find(|i| i.path.name() == name).unwrap();
            assert_eq!(bytes, &fake_nar(info), "{name}");
        }
    }
}

#[test]
fn a_target_that_stops_does_not_stop_the_others() {
    let order = paths();
    let feed = vec![(0, vec![0, 1]), (1, vec![0, 1]), (2, vec![0, 1]), (3, vec![0, 1])];
    // Target 0 stops reading after its first path (drops its queue mid-stream).
    let (stats, results, _) = run(order, feed, 2, &[Some(1), None], None, small(), Duration::ZERO);
    assert_eq!(stats.paths, 4);
    assert_eq!(results[0].as_ref().unwrap().len(), 1);
    assert_eq!(results[1].as_ref().unwrap().len(), 4);
}

#[test]
fn an_unreadable_path_fails_only_the_targets_that_want_it() {
    let order = paths();
    let feed = vec![(0, vec![0, 1]), (1, vec![0]), (2, vec![1]), (3, vec![1])];
    let (_, results, dumps) = run(order, feed, 2, &[], Some("a"), small(), Duration::ZERO);
    let e = results[0].as_ref().unwrap_err();
    assert!(e.contains("disk on fire"), "{e}");
    let ok = results[1].as_ref().unwrap();
    assert_eq!(ok.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["lib", "b", "c"]);
    assert_eq!(dumps, 4);
}

#[test]
fn a_stalled_target_is_detached_and_still_gets_every_byte() {
    let order = paths();
    let feed = vec![(0, vec![0, 1]), (1, vec![0, 1]), (2, vec![0, 1]), (3, vec![0, 1])];
    let cfg = FeedConfig { chunk: 100, grace: Some(Duration::from_millis(50)) };
    // Target 0 sleeps before reading: its 2-message queue fills in the first
    // path, so it is detached mid-NAR and served by a solo producer.
    let (stats, results, dumps) = run(order.clone(), feed, 2, &[], None, cfg, Duration::from_millis(400));
    assert_eq!(stats.detached, 1, "{stats:?}");
    assert_eq!(stats.paths, 4);
    assert!(stats.solo_bytes > 0 && stats.solo_bytes < 1353, "{stats:?}");
    assert!(dumps > 4);
    for r in results {
        let got = r.unwrap();
        assert_eq!(got.len(), 4);
        for (name, bytes) in &got {
            let info = order.iter().find(|i| i.path.name() == name).unwrap();
            assert_eq!(bytes, &fake_nar(info), "{name}");
        }
    }
}
