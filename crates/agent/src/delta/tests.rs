//! Codec tests: NAR fixtures built with the store's encoder round-trip byte
//! for byte with every method, and every kind of tampering is caught.

use std::collections::HashMap;
use std::io::{self, Cursor};
use std::sync::{Arc, Mutex};

use ndeploy_store::store_path::StorePath;

use super::*;
use crate::manifest::NarManifest;
use crate::test_nar::{Tree, dir, exe, file, link, manifest_and_files, nar_of, noise};

type Files = Arc<Mutex<HashMap<(StorePath, RelPath), Vec<u8>>>>;

/// The target's store, in memory.
struct MemStore(Files);

impl FileSource for MemStore {
    fn open(&self, path: &StorePath, rel: &RelPath) -> io::Result<(Box<dyn decode::ReadSeek + '_>, u64)> {
        let files = self.0.lock().unwrap();
        let data = files.get(&(path.clone(), rel.clone())).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let len = data.len() as u64;
        Ok((Box::new(Cursor::new(data)), len))
    }
}

fn sp(s: &str) -> StorePath {
    StorePath::from_base_name(s).unwrap()
}

fn with_hash(data: &[u8], at: &[usize], hash: &[u8; 32]) -> Vec<u8> {
    let mut d = data.to_vec();
    for &i in at {
        d[i..i + 11].copy_from_slice(b"/nix/store/");
        d[i + 11..i + 43].copy_from_slice(hash);
    }
    d
}

/// Version `v` of a package: store hashes of its dependency are `dep`,
/// `big` has a 2 KB insertion when `v` > 1.
fn package(dep: &[u8; 32], v: u32) -> Tree {
    let lib = with_hash(&noise(1, 300_000), &[1000, 150_000, 299_000], dep);
    let mut big = noise(2, 3 << 20);
    if v > 1 {
        big.splice(1_500_000..1_500_000, noise(3, 2048));
    }
    let script = format!("#!/bin/sh\nexec /nix/store/{}-dep/bin/x \"$@\"\n", String::from_utf8_lossy(dep));
    dir(vec![
        ("bin", dir(vec![("run", exe(script.as_bytes())), ("alias", link("run"))])),
        ("lib", dir(vec![("libmain.so", file(&lib))])),
        ("share", dir(vec![("data", file(&noise(4, 100_000))), ("big", file(&big)), ("empty", file(b"")), ("none", dir(vec![]))])),
    ])
}

const OLD_DEP: &[u8; 32] = b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const NEW_DEP: &[u8; 32] = b"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

struct Setup {
    new_path: StorePath,
    new_nar: Vec<u8>,
    new_manifest: NarManifest,
    new_files: HashMap<RelPath, Vec<u8>>,
    knowledge: KnowledgeIndex,
    target: Files,
}

fn setup() -> Setup {
    let old_path = sp("00000000000000000000000000000000-pkg-1.0");
    let new_path = sp("11111111111111111111111111111111-pkg-1.0");
    let (old_manifest, old_files) = manifest_and_files(&nar_of(&package(OLD_DEP, 1)));
    let new_nar = nar_of(&package(NEW_DEP, 2));
    let (new_manifest, new_files) = manifest_and_files(&new_nar);
    let target: Files = Arc::default();
    for (rel, data) in &old_files {
        target.lock().unwrap().insert((old_path.clone(), rel.clone()), data.clone());
    }
    let deployer_copy = old_files.clone();
    let base = old_path.clone();
    let mut knowledge = KnowledgeIndex::new(move |p, rel| (*p == base).then(|| deployer_copy.get(rel).cloned()).flatten());
    knowledge.add(old_path, old_manifest);
    Setup { new_path, new_nar, new_manifest, new_files, knowledge, target }
}

fn encode_with(s: &Setup, opts: &EncodeOptions) -> EncodedNar {
    encode(&s.new_path, &s.new_manifest, &mut |rel| Ok(s.new_files[rel].clone()), &s.knowledge, opts).unwrap()
}

fn decode_into(s: &Setup, e: &EncodedNar) -> Result<Vec<u8>, DecodeError> {
    decode(&e.plan, &e.payload, &MemStore(s.target.clone()), Vec::new()).map(|(nar, _)| nar)
}

#[test]
fn every_method_round_trips_byte_identical() {
    let s = setup();
    let all = EncodeOptions::default();
    let cases = [
        ("all", all.clone()),
        ("no refs", EncodeOptions { refs: false, ..all.clone() }),
        ("chunks", EncodeOptions { deltas: false, ..all.clone() }),
        ("raw", EncodeOptions { refs: false, deltas: false, chunks: false, ..all.clone() }),
    ];
    for (name, opts) in cases {
        let e = encode_with(&s, &opts);
        // The plan survives JSON.
        let plan: NarPlan = serde_json::from_str(&serde_json::to_string(&e.plan).unwrap()).unwrap();
        assert_eq!(plan, e.plan);
        let nar = decode_into(&s, &e).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert!(nar == s.new_nar, "{name}: rebuilt NAR differs");
        let st = e.stats;
        let (nar_len, sent) = (s.new_nar.len() as f64, e.payload.len() as f64);
        eprintln!("{name}: payload {} of {} NAR bytes ({:.2}%): {st:?}", e.payload.len(), s.new_nar.len(), 100.0 * sent / nar_len);
        match name {
            "all" => {
                assert_eq!((st.reference.files, st.delta.files, st.chunks.files), (1, 3, 0), "{st:?}");
                // The library and the script differ in the dependency's hash only: patches;
                // the large file with an insertion: a zstd delta.
                let deltas: Vec<(String, &str)> = e
                    .plan
                    .entries
                    .iter()
                    .filter_map(|en| match &en.node {
                        PlanNode::Regular { how: Method::Patch { .. }, .. } => Some((en.path.to_string(), "patch")),
                        PlanNode::Regular { how: Method::Delta { .. }, .. } => Some((en.path.to_string(), "zstd")),
                        _ => None,
                    })
                    .collect();
                let want = [("bin/run", "patch"), ("lib/libmain.so", "patch"), ("share/big", "zstd")];
                assert_eq!(deltas, want.map(|(p, m)| (p.to_owned(), m)), "{deltas:?}");
                assert!(sent < nar_len * 0.01, "{name}: {sent}");
            }
            "no refs" => assert_eq!((st.reference.files, st.delta.files), (0, 4), "{st:?}"),
            "chunks" => {
                assert_eq!((st.reference.files, st.chunks.files), (1, 1), "{st:?}");
                // Only the chunks around the insertion travel.
                assert!(st.chunks.payload_bytes < 600_000, "{st:?}");
            }
            _ => assert_eq!(st.raw.files, 5, "{st:?}"),
        }
    }
}

#[test]
fn nothing_known_means_raw() {
    let s = setup();
    let e = encode_whole(&s.new_path, &s.new_manifest, &mut |rel| Ok(s.new_files[rel].clone()), &EncodeOptions::default()).unwrap();
    assert_eq!(e.stats.raw.files, 5);
    assert_eq!(decode(&e.plan, &e.payload, &MemStore(Arc::default()), Vec::new()).unwrap().0, s.new_nar);
}

#[test]
fn corrupted_files_on_the_target_are_caught() {
    for victim in ["share/data", "lib/libmain.so", "share/big"] {
        let s = setup();
        let opts = if victim == "share/big" { EncodeOptions { deltas: false, ..Default::default() } } else { EncodeOptions::default() };
        let e = encode_with(&s, &opts);
        let key = (sp("00000000000000000000000000000000-pkg-1.0"), RelPath::new(victim).unwrap());
        s.target.lock().unwrap().get_mut(&key).unwrap()[7] ^= 0x40;
        let err = decode_into(&s, &e).unwrap_err();
        assert!(matches!(err, DecodeError::Reused { .. }), "{victim}: {err}");
        // Missing altogether: also a clean error.
        s.target.lock().unwrap().remove(&key);
        assert!(matches!(decode_into(&s, &e).unwrap_err(), DecodeError::Reused { .. }), "{victim}");
    }
}

#[test]
fn tampered_plans_and_payloads_are_refused() {
    let s = setup();
    let e = encode_with(&s, &EncodeOptions { refs: false, ..Default::default() });
    // Truncated or padded payload.
    let mut short = e.clone();
    short.payload.pop();
    short.plan.payload_len -= 1;
    assert!(decode_into(&s, &short).is_err());
    let mut long = e.clone();
    long.payload.push(0);
    long.plan.payload_len += 1;
    assert!(matches!(decode_into(&s, &long), Err(DecodeError::TrailingPayload(1))));
    let mut lying = e.clone();
    lying.plan.payload_len += 1;
    assert!(matches!(decode_into(&s, &lying), Err(DecodeError::BadPlan(_))));
    // A file whose planned hash is wrong.
    let mut wrong = e.clone();
    for entry in &mut wrong.plan.entries {
        if let PlanNode::Regular { b3, size, .. } = &mut entry.node
            && *size > 0
        {
            b3.0[0] ^= 1;
            break;
        }
    }
    assert!(matches!(decode_into(&s, &wrong), Err(DecodeError::Mismatch { .. } | DecodeError::Reused { .. })));
    // Entries out of order, or a reference outside the store.
    let mut swapped = e.clone();
    swapped.plan.entries.swap(1, 4);
    assert!(decode_into(&s, &swapped).is_err());
    let mut escape = encode_with(&s, &EncodeOptions::default());
    for entry in &mut escape.plan.entries {
        if let PlanNode::Regular { how: Method::Ref { from, .. }, .. } = &mut entry.node {
            *from = "../../etc".into();
        }
    }
    assert!(matches!(decode_into(&s, &escape), Err(DecodeError::BadPlan(_))));
    // Path traversal cannot even be expressed: relative paths are checked when parsed.
    let json = serde_json::to_string(&e.plan).unwrap().replace("\"lib/libmain.so\"", "\"lib/../../libmain.so\"");
    assert!(serde_json::from_str::<NarPlan>(&json).is_err());
}


/// Random damage to plans and payloads: always a clean result, never a panic
/// (what comes out of a damaged but decodable plan is caught by the NAR hash).
#[test]
fn damaged_plans_never_panic() {
    let s = setup();
    let mut seeds = 0x1234_5678_u64;
    let mut next = move || {
        seeds ^= seeds << 13;
        seeds ^= seeds >> 7;
        seeds ^= seeds << 17;
        seeds
    };
    let (mut decoded, mut failed) = (0, 0);
    for opts in [EncodeOptions::default(), EncodeOptions { deltas: false, ..Default::default() }] {
        let e = encode_with(&s, &opts);
        let json = serde_json::to_vec(&e.plan).unwrap();
        for _ in 0..300 {
            let mut j = json.clone();
            let mut p = e.payload.clone();
            for _ in 0..1 + next() % 3 {
                let r = next() as usize;
                if r.is_multiple_of(2) && !j.is_empty() {
                    let i = (r >> 8) % j.len();
                    j[i] = b"0123456789\",:{}[]az-/."[(r >> 40) % 22];
                } else if !p.is_empty() {
                    let i = (r >> 8) % p.len();
                    p[i] ^= 1 << ((r >> 40) % 8);
                }
            }
            let Ok(plan) = serde_json::from_slice::<NarPlan>(&j) else { continue };
            match decode(&plan, &p, &MemStore(s.target.clone()), Vec::new()) {
                Ok(_) => decoded += 1,
                Err(_) => failed += 1,
            }
        }
    }
    // The damage must reach the decoder, and mostly be refused there.
    assert!(failed > 100 && decoded < failed, "{decoded} decoded, {failed} refused");
}

#[test]
fn renamed_and_moved_files_delta_against_their_old_path() {
    let old_path = sp("00000000000000000000000000000000-foo-1.0");
    let new_path = sp("11111111111111111111111111111111-foo-1.1");
    let lib = noise(5, 80_000);
    let readme = noise(9, 3000);
    let old_tree = dir(vec![
        ("lib", dir(vec![("libfoo.so.1.0", file(&with_hash(&lib, &[100], OLD_DEP))), ("x1", file(&noise(6, 5000))), ("x2", file(&noise(7, 5000)))])),
        ("share", dir(vec![("doc", dir(vec![("README", file(&with_hash(&readme, &[50], OLD_DEP)))]))])),
    ]);
    let new_tree = dir(vec![
        ("doc", dir(vec![("README", file(&with_hash(&readme, &[50], NEW_DEP)))])),
        ("lib", dir(vec![("libfoo.so.1.1", file(&with_hash(&lib, &[100], NEW_DEP))), ("x3", file(&noise(8, 5000)))])),
    ]);
    let (old_m, old_files) = manifest_and_files(&nar_of(&old_tree));
    let new_nar = nar_of(&new_tree);
    let (new_m, new_files) = manifest_and_files(&new_nar);
    let target: Files = Arc::default();
    for (rel, data) in &old_files {
        target.lock().unwrap().insert((old_path.clone(), rel.clone()), data.clone());
    }
    let copy = old_files.clone();
    let mut k = KnowledgeIndex::new(move |_, rel| copy.get(rel).cloned());
    k.add(old_path.clone(), old_m);
    let e = encode(&new_path, &new_m, &mut |rel| Ok(new_files[rel].clone()), &k, &EncodeOptions::default()).unwrap();
    let methods: Vec<(String, &Method)> = e
        .plan
        .entries
        .iter()
        .filter_map(|en| match &en.node {
            PlanNode::Regular { how, .. } => Some((en.path.to_string(), how)),
            _ => None,
        })
        .collect();
    // The moved README and the renamed library find their old selves; x3
    // matches both x1 and x2, so it has no base.
    // Both differ from it only in the embedded store hash: patches of the hash.
    assert!(matches!(methods[0].1, Method::Patch { base_rel: Some(r), len, .. } if r.to_string() == "share/doc/README" && *len < 60), "{methods:?}");
    assert!(matches!(methods[1].1, Method::Patch { base_rel: Some(r), len, .. } if r.to_string() == "lib/libfoo.so.1.0" && *len < 60), "{methods:?}");
    assert!(matches!(methods[2].1, Method::Raw { .. }), "{methods:?}");
    assert_eq!(decode(&e.plan, &e.payload, &MemStore(target), Vec::new()).unwrap().0, new_nar);
}

#[test]
fn raw_files_of_one_nar_compress_with_each_other_as_context() {
    // Twenty files sharing most of their bytes (like the modules of one package).
    let shared = noise(11, 6000);
    let files: Vec<(String, Vec<u8>)> = (0..20u64).map(|i| (format!("m{i:02}.py"), [&shared[..], &noise(i + 50, 100)[..]].concat())).collect();
    let nar = nar_of(&dir(files.iter().map(|(n, c)| (n.as_str(), file(c))).collect()));
    let (m, contents) = manifest_and_files(&nar);
    let e = encode_whole(&sp("00000000000000000000000000000000-mods"), &m, &mut |rel| Ok(contents[rel].clone()), &EncodeOptions::default()).unwrap();
    let alone: usize = files.iter().map(|(_, c)| codec::compress(c, codec::RAW_LEVEL).unwrap().len()).sum();
    assert!(e.payload.len() * 5 < alone, "{} bytes in one stream, {alone} compressed one by one", e.payload.len());
    assert_eq!(decode(&e.plan, &e.payload, &MemStore(Arc::default()), Vec::new()).unwrap().0, nar);
    // Out of step (one raw chunk dropped): refused, not mis-decoded.
    let mut skipped = e.clone();
    let first = match &skipped.plan.entries[1].node {
        PlanNode::Regular { how: Method::Raw { len }, .. } => *len as usize,
        other => panic!("{other:?}"),
    };
    skipped.payload.drain(..first);
    skipped.plan.payload_len -= first as u64;
    skipped.plan.entries.remove(1);
    assert!(decode(&skipped.plan, &skipped.payload, &MemStore(Arc::default()), Vec::new()).is_err());
}

#[test]
fn single_file_and_symlink_store_paths_round_trip() {
    // writeText-style paths: the NAR's root is a file (or a symlink).
    let old_path = sp("00000000000000000000000000000000-script");
    let new_path = sp("11111111111111111111111111111111-script");
    let body = noise(12, 20_000);
    let (old_m, old_files) = manifest_and_files(&nar_of(&file(&with_hash(&body, &[10], OLD_DEP))));
    let target: Files = Arc::default();
    target.lock().unwrap().insert((old_path.clone(), RelPath::root()), old_files[&RelPath::root()].clone());
    let copy = old_files.clone();
    let mut k = KnowledgeIndex::new(move |_, rel| copy.get(rel).cloned());
    k.add(old_path.clone(), old_m);
    for (tree, expect) in [(exe(&with_hash(&body, &[10], NEW_DEP)), "delta"), (file(&with_hash(&body, &[10], OLD_DEP)), "ref"), (link("/nix/store/x"), "none")] {
        let nar = nar_of(&tree);
        let (m, files) = manifest_and_files(&nar);
        let e = encode(&new_path, &m, &mut |rel| Ok(files[rel].clone()), &k, &EncodeOptions::default()).unwrap();
        let st = e.stats;
        assert_eq!((st.delta.files, st.reference.files), match expect { "delta" => (1, 0), "ref" => (0, 1), _ => (0, 0) }, "{expect}: {st:?}");
        assert_eq!(decode(&e.plan, &e.payload, &MemStore(target.clone()), Vec::new()).unwrap().0, nar, "{expect}");
    }
}

/// A large file of a package the target has no version of (no base) that
/// shares content with a large file of another package: its chunks come
/// from there (the store-wide chunk index); a changed byte in such a chunk
/// on the target is caught.
#[test]
fn chunks_of_any_large_file_on_the_target_are_reused() {
    let s = setup();
    let old_big = s.target.lock().unwrap().iter().find(|((_, rel), _)| rel.to_string() == "share/big").map(|(k, v)| (k.clone(), v.clone())).unwrap();
    let mut image = old_big.1[..1_500_000].to_vec();
    image.extend_from_slice(&noise(7, 300_000));
    image.extend_from_slice(&old_big.1[2_000_000..]);
    let path = sp("22222222222222222222222222222222-disk-image");
    let nar = nar_of(&dir(vec![("image.img", file(&image))]));
    let (manifest, files) = manifest_and_files(&nar);
    let e = encode(&path, &manifest, &mut |rel| Ok(files[rel].clone()), &s.knowledge, &EncodeOptions::default()).unwrap();
    assert_eq!((e.stats.chunks.files, e.stats.raw.files), (1, 0), "{:?}", e.stats);
    assert!(e.payload.len() < 600_000, "{} payload bytes for {} of file", e.payload.len(), image.len());
    let rebuilt = decode(&e.plan, &e.payload, &MemStore(s.target.clone()), Vec::new()).unwrap().0;
    assert!(rebuilt == nar, "rebuilt NAR differs");
    // Without chunks allowed, or with nothing large on the target: raw.
    let raw = encode(&path, &manifest, &mut |rel| Ok(files[rel].clone()), &s.knowledge, &EncodeOptions { chunks: false, ..EncodeOptions::default() }).unwrap();
    assert_eq!(raw.stats.raw.files, 1);
    let nothing = encode(&path, &manifest, &mut |rel| Ok(files[rel].clone()), &(), &EncodeOptions::default()).unwrap();
    assert_eq!(nothing.stats.raw.files, 1);
    // The reused chunk's bytes changed on the target: refused.
    let mut bad = old_big.1.clone();
    bad[700_000] ^= 1;
    s.target.lock().unwrap().insert(old_big.0, bad);
    let err = decode(&e.plan, &e.payload, &MemStore(s.target.clone()), Vec::new()).unwrap_err();
    assert!(err.to_string().contains("does not have the expected contents"), "{err}");
}
