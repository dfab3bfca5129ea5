//! Fuzz-style tests: many corruptions of valid NARs, each of which must give
//! a clean `Err` (or, when the change happens to keep the NAR canonical, `Ok`),
//! never a panic, and must never create anything outside the restore target.

use std::fs;
use std::path::Path;

use super::test_util::{nar, nar_dir, nar_regular, nar_symlink, node_dir, node_regular, node_symlink, s, strs};
use super::{NarDecoder, NarReadError, NarStats, NarVisitor, restore, validate};
use crate::test_rng::Rng;

/// A NAR with every kind of object, including symlinks pointing outside.
fn sample() -> Vec<u8> {
    nar_dir(&[
        (b"a", nar_dir(&[(b"bin", nar_regular(true, b"#!/bin/sh\necho hi\n")), (b"empty", nar_dir(&[]))])),
        (b"esc", nar_symlink(b"../outside")),
        (b"f", nar_regular(false, b"0123456789abcdef+")),
        (b"z", nar_symlink(b"/")),
        (b"\xc3\xa9t\xc3\xa9", nar_regular(false, b"")),
    ])
}

/// A scratch area: `outside/` (a canary that must stay empty) next to the target `out`.
struct Arena {
    dir: tempfile::TempDir,
}

impl Arena {
    fn new() -> Arena {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        Arena { dir }
    }

    fn out(&self) -> std::path::PathBuf {
        self.dir.path().join("out")
    }

    /// Restore `nar`, check nothing escaped, clean up; returns the result.
    fn restore(&self, nar: &[u8]) -> Result<(), NarReadError> {
        let res = restore(nar, &self.out()).map(|_| ());
        let mut names: Vec<_> = fs::read_dir(self.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        names.retain(|n| n != "out");
        assert_eq!(names, ["outside"], "restore created something next to its target");
        assert_eq!(fs::read_dir(self.dir.path().join("outside")).unwrap().count(), 0, "restore wrote outside");
        remove(&self.out());
        res
    }
}

fn remove(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).unwrap(),
        Ok(_) => fs::remove_file(p).unwrap(),
        Err(_) => {}
    }
}

/// Feed `nar` to a decoder one byte at a time, as a slow stream would.
fn validate_bytewise(nar: &[u8]) -> Result<NarStats, NarReadError> {
    struct Nothing;
    impl NarVisitor for Nothing {}
    let mut d = NarDecoder::new();
    for (i, b) in nar.iter().enumerate() {
        if d.feed(std::slice::from_ref(b), &mut Nothing)? == 0 {
            return Err(NarReadError::TrailingData { offset: i as u64 });
        }
    }
    d.finish()
}

/// Validation (whole and byte by byte) and restore must agree on whether a
/// NAR is acceptable, and the two validations on the error.
fn check(arena: &Arena, nar: &[u8]) -> bool {
    let valid = validate(nar);
    let bytewise = validate_bytewise(nar);
    assert_eq!(format!("{valid:?}"), format!("{bytewise:?}"));
    let restored = arena.restore(nar);
    assert_eq!(valid.is_ok(), restored.is_ok(), "validate: {valid:?}, restore: {restored:?}");
    valid.is_ok()
}

#[test]
fn every_truncation_is_an_error() {
    let arena = Arena::new();
    let full = sample();
    assert!(check(&arena, &full));
    for cut in 0..full.len() {
        let err = validate(&full[..cut]).unwrap_err();
        assert!(matches!(err, NarReadError::Truncated { .. } | NarReadError::BadMagic), "cut {cut}: {err}");
        assert!(!check(&arena, &full[..cut]), "cut {cut}");
    }
}

#[test]
fn every_byte_flip_is_handled() {
    let arena = Arena::new();
    let full = sample();
    let mut accepted = 0;
    for i in 0..full.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut m = full.clone();
            m[i] ^= mask;
            if check(&arena, &m) {
                accepted += 1;
            }
        }
    }
    // Only flips inside file contents and harmless name/target bytes survive.
    assert!(accepted > 0 && accepted < full.len(), "{accepted}");
}

#[test]
fn random_splices_are_handled() {
    let arena = Arena::new();
    let full = sample();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let mut m = full.clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(m.len());
            match rng.below(4) {
                0 => {
                    // Duplicate an aligned 8..64-byte chunk (repeats tokens/entries).
                    let at = at & !7;
                    let len = 8 * (1 + rng.below(8));
                    let chunk: Vec<u8> = m[at..(at + len).min(m.len())].to_vec();
                    m.splice(at..at, chunk);
                }
                1 => {
                    let at = at & !7;
                    let end = (at + 8 * (1 + rng.below(8))).min(m.len());
                    m.drain(at..end);
                }
                2 => m[at] = rng.next() as u8,
                _ => {
                    // Overwrite a length field with something large.
                    let at = at & !7;
                    if at + 8 <= m.len() {
                        let big = [300u64, 4096, 1 << 40, u64::MAX][rng.below(4)];
                        m[at..at + 8].copy_from_slice(&big.to_le_bytes());
                    }
                }
            }
        }
        check(&arena, &m);
    }
}

#[test]
fn reordered_and_duplicated_entries() {
    let arena = Arena::new();
    let f = |c: &[u8]| node_regular(false, c);
    let entries: Vec<(&[u8], Vec<u8>)> = vec![(b"a", f(b"1")), (b"b", node_dir(&[])), (b"c", node_symlink(b"a"))];
    assert!(check(&arena, &nar(node_dir(&entries))));
    // Every permutation other than the sorted one, and every duplication.
    let perms = [[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    for p in perms {
        let shuffled: Vec<_> = p.iter().map(|&i| entries[i].clone()).collect();
        assert!(!check(&arena, &nar(node_dir(&shuffled))), "{p:?}");
    }
    for i in 0..entries.len() {
        let mut dup = entries.clone();
        dup.insert(i, entries[i].clone());
        let err = validate(&nar(node_dir(&dup))[..]).unwrap_err();
        assert!(matches!(err, NarReadError::DuplicateName { .. }), "{err}");
        assert!(!check(&arena, &nar(node_dir(&dup))));
    }
}

#[test]
fn escape_attempts_are_rejected() {
    let arena = Arena::new();
    let file = |c: &[u8]| node_regular(false, c);
    let attacks: Vec<Vec<u8>> = vec![
        nar(node_dir(&[(b"..", node_dir(&[(b"outside", node_dir(&[(b"pwned", file(b"x"))]))]))])),
        nar(node_dir(&[(b"../outside/pwned", file(b"x"))])),
        nar(node_dir(&[(b"sub/../../outside/pwned", file(b"x"))])),
        nar(node_dir(&[(b"/tmp/pwned", file(b"x"))])),
        nar(node_dir(&[(b".", file(b"x"))])),
        nar(node_dir(&[(b"x\0/../../outside/pwned", file(b"x"))])),
        // A symlink to the canary, then the same name as a directory with a file in it.
        nar(node_dir(&[(b"l", node_symlink(b"../outside")), (b"l", node_dir(&[(b"pwned", file(b"x"))]))])),
        // ...or as a regular file (O_CREAT would follow the link without O_EXCL).
        nar(node_dir(&[(b"l", node_symlink(b"../outside/pwned")), (b"l", file(b"x"))])),
        // Symlink then a path through it.
        nar(node_dir(&[(b"l", node_symlink(b"../outside")), (b"l/pwned", file(b"x"))])),
        // The same trick one level down, and a case-only difference that sorts first.
        nar(node_dir(&[(b"d", node_dir(&[(b"l", node_symlink(b"../../outside")), (b"l", file(b"x"))]))])),
        nar(node_dir(&[(b"l", node_symlink(b"../outside")), (b"L", file(b"x"))])),
    ];
    for (i, nar) in attacks.iter().enumerate() {
        assert!(!check(&arena, nar), "attack {i} was accepted");
    }
    // Symlinks pointing anywhere are fine as long as nothing is written through them.
    assert!(check(&arena, &nar(node_dir(&[(b"l", node_symlink(b"../outside")), (b"m", file(b"x"))]))));
}

#[test]
fn tokens_where_strings_belong() {
    let arena = Arena::new();
    // Oversized strings in each position, and a NAR of nothing but magic.
    let cases = vec![
        s(b"nix-archive-1"),
        nar(strs(&[b"(", b"type", b"symlink", b"target", &[b'x'; 5000], b")"])),
        nar(strs(&[b"(", b"type", b"directory", b"entry", b"(", b"name", &[b'n'; 256], b"node"])),
        nar(strs(&[b"(", b"type", &[b't'; 17], b")"])),
    ];
    for nar in cases {
        assert!(!check(&arena, &nar));
    }
}

/// A random tree, described straight to the encoder.
fn encode_random(e: &mut super::NarEncoder<&mut Vec<u8>>, rng: &mut Rng, depth: u32) {
    match rng.below(if depth == 0 { 2 } else { 3 }) {
        0 => {
            let len = [0, 1, 7, 8, 9, 100, 5000][rng.below(7)];
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            e.regular_bytes(rng.below(2) == 0, &data).unwrap();
        }
        1 => {
            let target: Vec<u8> = (0..1 + rng.below(20)).map(|_| 1 + rng.below(255) as u8).collect();
            e.symlink(&target).unwrap();
        }
        _ => {
            let mut names: Vec<Vec<u8>> = (0..rng.below(5))
                .map(|_| (0..1 + rng.below(6)).map(|_| [b'a', b'B', b'.', 0xc3, 0xff, b'-'][rng.below(6)]).collect())
                .filter(|n: &Vec<u8>| super::is_valid_name(n))
                .collect();
            names.sort();
            names.dedup();
            e.begin_directory().unwrap();
            for name in names {
                e.entry(&name).unwrap();
                encode_random(e, rng, depth - 1);
            }
            e.end_directory().unwrap();
        }
    }
}

#[test]
fn random_trees_round_trip_through_restore_and_dump() {
    let arena = Arena::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..200 {
        let mut nar = Vec::new();
        let mut e = super::NarEncoder::new(&mut nar);
        encode_random(&mut e, &mut rng, 4);
        e.finish().unwrap();
        assert!(validate_bytewise(&nar).is_ok());
        restore(nar.as_slice(), &arena.out()).unwrap();
        let mut again = Vec::new();
        super::dump_path(&arena.out(), &mut again).unwrap();
        assert!(again == nar, "restore + dump changed the NAR");
        assert!(arena.restore(&nar).is_err(), "restoring over an existing target must fail");
    }
}
