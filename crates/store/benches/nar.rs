//! NAR throughput over a generated tree that mixes many small files with a few
//! large ones: `dump_path` into a sink, `hash_path` (dump + sha256, the
//! `ndeploy push` hot path), and `validate` of the NAR held in memory (the
//! receiving side's check).
//!
//! Size: `NDEPLOY_BENCH_NAR_MB` (default 500 under `cargo bench`, 4 when the
//! bench binary runs as a test, e.g. `cargo test --benches`). The tree is
//! written once into a temporary directory; after the first iteration it is
//! in the page cache, so this measures CPU cost, not the disk.
//! `NDEPLOY_BENCH_NAR_TREE=DIR` benchmarks an existing tree instead (for
//! example a store path with many small files).

use std::fs;
use std::io;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndeploy_store::hash::{HashAlgo, Hasher};
use ndeploy_store::nar::{dump_path, hash_path, validate};

fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// About `total` bytes: a quarter in small files (1..64 KiB, 100 per
/// directory), the rest in large files of up to 64 MiB.
fn make_tree(root: &Path, total: usize) {
    let small_total = total / 4;
    let (mut written, mut i) = (0usize, 0u64);
    while written < small_total {
        let dir = root.join(format!("small/{:03}", i / 100));
        fs::create_dir_all(&dir).unwrap();
        let len = 1024 + (i as usize * 7919) % (63 * 1024);
        fs::write(dir.join(format!("f{i}")), noise(len, i + 1)).unwrap();
        written += len;
        i += 1;
    }
    fs::create_dir_all(root.join("large")).unwrap();
    let mut n = 0;
    while written < total {
        let len = (total - written).min(64 << 20);
        fs::write(root.join(format!("large/blob{n}")), noise(len, 1000 + n)).unwrap();
        written += len;
        n += 1;
    }
}

fn bench(c: &mut Criterion) {
    let real_run = std::env::args().any(|a| a == "--bench");
    let mb: usize = std::env::var("NDEPLOY_BENCH_NAR_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if real_run { 500 } else { 4 });
    let dir = tempfile::tempdir().unwrap();
    let (tree, label) = match std::env::var_os("NDEPLOY_BENCH_NAR_TREE") {
        Some(t) => (std::path::PathBuf::from(t), "given-tree".to_owned()),
        None => {
            let tree = dir.path().join("tree");
            make_tree(&tree, mb << 20);
            (tree, format!("nar-{mb}MB"))
        }
    };
    let mut nar = Vec::new();
    let nar_size = dump_path(&tree, &mut nar).unwrap();

    let mut g = c.benchmark_group(label);
    g.throughput(Throughput::Bytes(nar_size));
    g.sample_size(10);
    g.bench_function("dump", |b| b.iter(|| dump_path(&tree, io::sink()).unwrap()));
    g.bench_function("dump+sha256", |b| b.iter(|| hash_path(HashAlgo::Sha256, &tree).unwrap()));
    g.bench_function("dump+sha256-one-thread", |b| {
        b.iter(|| {
            let mut h = Hasher::new(HashAlgo::Sha256);
            dump_path(&tree, &mut h).unwrap();
            h.finish()
        })
    });
    g.bench_function("validate", |b| b.iter(|| validate(nar.as_slice()).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
