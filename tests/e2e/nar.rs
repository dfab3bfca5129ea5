//! NAR dump, restore and path hashing against `nix-store --dump/--restore`,
//! `nix-hash` and `nix hash`, on a generated tree with every kind of entry.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ndeploy_store::hash::{Hash, HashAlgo};

use crate::support::{ndeploy, nix, run, run_ok, run_str, write_file};

/// Deterministic random-looking bytes: sha256 in counter mode.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 32);
    let mut counter = 0u64;
    while v.len() < len {
        let block = [seed.to_le_bytes(), counter.to_le_bytes()].concat();
        v.extend_from_slice(Hash::digest(HashAlgo::Sha256, block).as_bytes());
        counter += 1;
    }
    v.truncate(len);
    v
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with every entry kind and the awkward cases around them.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    write_file(&root.join("empty-file"), b"");
    write_file(&root.join("exec.sh"), b"#!/bin/sh\necho hi\n");
    chmod(&root.join("exec.sh"), 0o755);
    write_file(&root.join("user-exec-only"), b"x");
    chmod(&root.join("user-exec-only"), 0o700);
    write_file(&root.join("group-exec-only"), b"not executable for Nix");
    chmod(&root.join("group-exec-only"), 0o654);
    write_file(&root.join("read-only"), b"ro");
    chmod(&root.join("read-only"), 0o444);
    write_file(&root.join("ünïcödé-名前 ✓"), "unicode".as_bytes());
    write_file(&root.join(OsStr::from_bytes(b"bytes-\xff\xfe")), b"not utf-8 name");
    // Names that sort differently by byte than by locale or case.
    for name in ["a", "A", "a.b", "a-b", "ab", "B", "_", "~", "1", "10", "9"] {
        write_file(&root.join("order").join(name), name);
    }
    // Sizes across the 8-byte padding boundary.
    for n in 0..40 {
        write_file(&root.join("sizes").join(format!("f{n:02}")), noise(n, n as u64 + 1));
    }
    let mut deep = root.join("deep");
    for i in 0..100 {
        deep.push(if i % 2 == 0 { "d" } else { "level" });
    }
    write_file(&deep.join("leaf"), b"bottom");
    write_file(&root.join("large.bin"), noise(3 << 20, 42));
    symlink("does/not/exist", root.join("dangling")).unwrap();
    symlink("/nix/store/absolute-target", root.join("absolute")).unwrap();
    symlink("exec.sh", root.join("relative")).unwrap();
    symlink("../deep/d", root.join("order").join("up-and-over")).unwrap();
    symlink("deep", root.join("dir-link")).unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    tree: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_owned();
    let tree = base.join("tree");
    make_tree(&tree);
    Fixture { _dir: dir, base, tree }
}

fn nix_dump(p: &Path) -> Vec<u8> {
    run_ok(nix("nix-store").arg("--dump").arg(p))
}

fn our_dump(p: &Path) -> Vec<u8> {
    run_ok(ndeploy().args(["store", "dump"]).arg(p))
}

/// Run `cmd` with `input` on stdin; returns its output.
fn run_with_stdin(cmd: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A reader that fails early closes the pipe: ignore the write error then.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn dump_equals_nix_store_dump() {
    let f = fixture();
    let ours = our_dump(&f.tree);
    let theirs = nix_dump(&f.tree);
    assert!(theirs.len() > 3 << 20);
    assert!(ours == theirs, "dump differs from nix-store --dump ({} vs {} bytes)", ours.len(), theirs.len());
    // Non-directory roots: a file, an executable, a symlink (not followed).
    for p in ["exec.sh", "empty-file", "relative", "dangling", "empty-dir", "order"] {
        assert!(our_dump(&f.tree.join(p)) == nix_dump(&f.tree.join(p)), "{p}");
    }
}

#[test]
fn hash_path_equals_nix_hash() {
    let f = fixture();
    let flat_small = f.tree.join("exec.sh");
    let flat_large = f.tree.join("large.bin");
    let flat_via_link = f.tree.join("relative"); // --flat follows symlinks
    for algo in ["md5", "sha1", "sha256", "sha512"] {
        for enc in [None, Some("--base32")] {
            let ours = |extra: &[&str], p: &Path| {
                let mut c = ndeploy();
                c.args(["store", "hash-path", "--type", algo]).args(enc).args(extra).arg(p);
                run_str(&mut c)
            };
            let theirs = |extra: &[&str], p: &Path| {
                let mut c = nix("nix-hash");
                c.args(["--type", algo]).args(enc).args(extra).arg(p);
                run_str(&mut c)
            };
            assert_eq!(ours(&[], &f.tree), theirs(&[], &f.tree), "{algo} {enc:?}");
            assert_eq!(ours(&["--truncate"], &f.tree), theirs(&["--truncate"], &f.tree), "{algo} {enc:?} truncated");
            for p in [&flat_small, &flat_large, &flat_via_link] {
                assert_eq!(ours(&["--flat"], p), theirs(&["--flat"], p), "{algo} {enc:?} --flat {}", p.display());
            }
        }
        // SRI and base64 against the new CLI, which has them.
        for enc in ["--sri", "--base64", "--base16"] {
            let ours = run_str(ndeploy().args(["store", "hash-path", "--type", algo, enc]).arg(&f.tree));
            let theirs = run_str(
                nix("nix")
                    .args(["--extra-experimental-features", "nix-command", "hash", "path", "--type", algo, enc])
                    .arg(&f.tree),
            );
            assert_eq!(ours, theirs, "{algo} {enc}");
        }
    }
    // nix-hash's defaults: md5, base16; and several paths at once.
    let ours = run_str(ndeploy().args(["store", "hash-path"]).arg(&f.tree).arg(&flat_small));
    let theirs = run_str(nix("nix-hash").arg(&f.tree).arg(&flat_small));
    assert_eq!(ours, theirs);
    assert_eq!(ours.lines().count(), 2);
}

#[test]
fn hash_path_rejects_bad_arguments() {
    let f = fixture();
    for args in [&["--type", "sha3"][..], &["--base32", "--sri"], &["--sri", "--truncate"]] {
        let out = run(ndeploy().args(["store", "hash-path"]).args(args).arg(&f.tree));
        assert!(!out.status.success(), "{args:?} was accepted");
    }
    let out = run(ndeploy().args(["store", "hash-path", "--flat"]).arg(&f.tree));
    assert!(!out.status.success(), "--flat of a directory must fail, as with nix-hash");
    let out = run(ndeploy().args(["store", "hash-path"]).arg(f.base.join("missing")));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
}

/// (relative path, mode) of everything under `root`, sorted.
fn modes(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(p) = todo.pop() {
        let meta = fs::symlink_metadata(&p).unwrap();
        out.push((p.strip_prefix(root).unwrap().to_owned(), meta.permissions().mode()));
        if meta.is_dir() {
            todo.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

#[test]
fn restore_round_trips_with_nix() {
    let f = fixture();
    let original = nix_dump(&f.tree);

    // Ours restores Nix's dump to a tree that Nix dumps identically.
    let ours_dir = f.base.join("ours");
    let out = run_with_stdin(ndeploy().args(["store", "restore"]).arg(&ours_dir), &original);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(nix_dump(&ours_dir) == original, "restored tree dumps differently");

    // Nix restores our dump identically, and both restores set the same modes.
    let nix_dir = f.base.join("nix");
    let out = run_with_stdin(nix("nix-store").arg("--restore").arg(&nix_dir), &our_dump(&f.tree));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(nix_dump(&nix_dir) == original);
    assert_eq!(modes(&ours_dir), modes(&nix_dir));

    // The target must not exist yet.
    let out = run_with_stdin(ndeploy().args(["store", "restore"]).arg(&ours_dir), &original);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn restore_rejects_corrupt_input() {
    let f = fixture();
    let good = nix_dump(&f.tree.join("order"));
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"garbage!");
    let mut flipped = good.clone();
    flipped[30] ^= 0x20; // inside the first tag: "(" becomes something else
    let cases: [(&str, &[u8]); 4] = [
        ("truncated", &good[..good.len() - 8]),
        ("trailing", &trailing),
        ("flipped", &flipped),
        ("not a NAR", b"hello world, not a nar at all"),
    ];
    for (i, (what, nar)) in cases.iter().enumerate() {
        let dir = f.base.join(format!("bad{i}"));
        let out = run_with_stdin(ndeploy().args(["store", "restore"]).arg(&dir), nar);
        assert!(!out.status.success(), "{what} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("NAR"), "{what}: {err}");
    }
}
