//! Derivation throughput over a generated DAG of 3000 derivations shaped like
//! nixpkgs ones (3 outputs, up to 8 inputs on random outputs of earlier ones,
//! ~25 env vars, a 2 KiB build script):
//!
//! - `instantiate`: what the evaluator does per derivation, in creation order
//!   (`ModuloHashCache::instantiate`): output paths from the masked modulo
//!   hash, the ATerm and `.drv` path, and memoising the unmasked modulo hash;
//! - `parse`: parsing all 3000 ATerms;
//! - `walk`: a fresh memoised `hashDerivationModulo` walk from the top, with
//!   derivations read from memory (as `show-derivation --check` does from disk).

use std::collections::{BTreeSet, HashMap};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndeploy_store::derivation::{Derivation, DerivationOutput, ModuloHashCache};
use ndeploy_store::store_path::{StoreDir, StorePath};

const N: usize = 3000;
const OUTPUTS: [&str; 3] = ["out", "dev", "lib"];

/// Inputs of a template: (index of an earlier derivation, output name).
type Inputs = Vec<(usize, &'static str)>;

/// Derivations in creation order, outputs and inputs not yet filled in.
fn generate() -> Vec<(Derivation, Inputs)> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let script: String = (0..40).map(|i| format!("echo step {i} && make -j$NIX_BUILD_CORES target{i}\n")).collect();
    (0..N)
        .map(|i| {
            let mut d = Derivation {
                name: format!("pkg-{i}-1.0"),
                system: "x86_64-linux".into(),
                builder: "/nix/store/0000000000000000000000000000000b-bash/bin/bash".into(),
                args: vec!["-e".into(), "builder.sh".into()],
                ..Default::default()
            };
            for o in OUTPUTS {
                d.outputs.insert(o.into(), DerivationOutput::Deferred);
                d.env.insert(o.into(), String::new());
            }
            for k in 0..20 {
                d.env.insert(format!("var{k}"), format!("value {k} of {i}"));
            }
            d.env.insert("buildPhase".into(), script.clone());
            d.env.insert("name".into(), d.name.clone());
            let inputs = (0..next(8).min(i as u64)).map(|_| (next(i as u64) as usize, OUTPUTS[next(3) as usize])).collect();
            (d, inputs)
        })
        .collect()
}

/// Evaluator-style instantiation; returns (drv path, derivation) pairs.
fn instantiate(dir: &StoreDir, templates: &[(Derivation, Inputs)]) -> Vec<(StorePath, Derivation)> {
    let mut cache = ModuloHashCache::new();
    let mut done: Vec<(StorePath, Derivation)> = Vec::with_capacity(templates.len());
    for (t, inputs) in templates {
        let mut d = t.clone();
        for (i, o) in inputs {
            d.input_drvs.entry(done[*i].0.clone()).or_insert_with(BTreeSet::new).insert((*o).into());
        }
        let path = cache.instantiate(dir, &mut d).unwrap().drv_path;
        done.push((path, d));
    }
    done
}

fn bench(c: &mut Criterion) {
    let dir = StoreDir::default();
    let template = generate();
    let drvs = instantiate(&dir, &template);
    let aterms: Vec<(StorePath, Vec<u8>)> = drvs.iter().map(|(p, d)| (p.clone(), d.to_aterm(&dir).unwrap())).collect();
    let bytes: usize = aterms.iter().map(|(_, a)| a.len()).sum();
    let by_path: HashMap<StorePath, Derivation> = drvs.iter().cloned().collect();
    // The last derivation does not reach everything; a root depending on all does.
    let mut root = template[0].0.clone();
    for (p, _) in &drvs {
        root.input_drvs.insert(p.clone(), BTreeSet::from(["out".to_owned()]));
    }

    let mut g = c.benchmark_group("derivation");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("instantiate_3000", |b| b.iter(|| instantiate(&dir, &template)));
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("parse_3000", |b| {
        b.iter(|| {
            for (p, a) in &aterms {
                Derivation::parse_drv_file(&dir, p, a).unwrap();
            }
        })
    });
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("walk_3000", |b| {
        b.iter(|| {
            let mut cache = ModuloHashCache::new();
            let read = |p: &StorePath| {
                by_path.get(p).cloned().ok_or(ndeploy_store::derivation::DerivationError::UnknownInput(p.to_string()))
            };
            cache.hash_modulo(&dir, &root, true, read).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
