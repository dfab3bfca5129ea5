//! The real `ndeploy-agent --stdio` binary against a chroot Nix store
//! (`local?root=DIR`, imported through the `nix-daemon --stdio` it spawns),
//! checked with C++ Nix: `nix-store --verify --check-contents`, the path's
//! NAR hash as Nix reports it, and validity after a refused push.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ndeploy_agent::client::{AgentClient, PushItem, PushOutcome};
use ndeploy_agent::delta::{EncodeOptions, KnowledgeIndex, encode_from_disk};
use ndeploy_store::hash::{Hash, HashAlgo, HashEncoding};
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::{StoreDir, StorePath};
use tokio::process::{Child, ChildStdin, ChildStdout};

fn nix_store(root: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("nix-store")
        .arg("--store")
        .arg(format!("local?root={}", root.display()))
        .args(args)
        .env("NIX_CONFIG", "sandbox = false")
        .output()
        .expect("nix-store (C++ Nix) must be installed: scripts/test installs it");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[path = "../src/test_nar/noise.rs"]
mod noise;
use noise::noise;

/// A package directory whose files embed `dep` (a store hash) like RPATHs do.
fn write_package(dir: &Path, dep: &str, extra: &[u8]) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    let mut lib = noise(1, 400_000);
    for at in [1_000, 200_000, 390_000] {
        let s = format!("/nix/store/{dep}-core-1.0/lib");
        lib[at..at + s.len()].copy_from_slice(s.as_bytes());
    }
    lib.extend_from_slice(extra);
    std::fs::write(dir.join("lib/libmain.so"), lib).unwrap();
    std::fs::write(dir.join("lib/data"), noise(2, 250_000)).unwrap();
    let run = dir.join("bin/run");
    std::fs::write(&run, format!("#!/bin/sh\nexec /nix/store/{dep}-core-1.0/bin/core \"$@\"\n")).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("run", dir.join("bin/alias")).unwrap();
}

/// The agent binary on stdio for the chroot store at `target` (importing
/// through the daemon on `socket`, else through its own `nix-daemon
/// --stdio`), and a client that has done the handshake.
async fn start_agent(target: &Path, socket: Option<&Path>) -> (Child, AgentClient<ChildStdout, ChildStdin>) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ndeploy-agent"));
    cmd.arg("--stdio").arg("--store-root").arg(target);
    if let Some(socket) = socket {
        cmd.arg("--daemon-socket").arg(socket);
    }
    let mut child =
        cmd.env("NIX_CONFIG", "sandbox = false").stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
    let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let client = AgentClient::handshake(stdout, stdin, StoreDir::default()).await.unwrap();
    (child, client)
}

/// Add `dir` to the chroot store at `root` (as `nix-store --add`); returns the store path.
fn add(root: &Path, dir: &Path) -> StorePath {
    let (ok, out) = nix_store(root, &["--add", dir.to_str().unwrap()]);
    assert!(ok, "{out}");
    StoreDir::default().parse(out.trim()).unwrap()
}

fn info_of(root: &Path, path: &StorePath) -> (PathInfo, PathBuf) {
    let on_disk = root.join("nix/store").join(path.to_string());
    let mut nar = Vec::new();
    ndeploy_store::nar::dump_path(&on_disk, &mut nar).unwrap();
    (PathInfo::new(path.clone(), Hash::digest(HashAlgo::Sha256, &nar), nar.len() as u64), on_disk)
}

#[tokio::test]
async fn the_agent_binary_imports_verified_paths_into_a_real_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (target, deployer, src) = (tmp.path().join("target"), tmp.path().join("deployer"), tmp.path().join("src"));
    // The target holds version 1 (built against core "aaa…"); the deployer has
    // version 2 (core "bbb…") and a third path that reuses version 1's data.
    let v1 = src.join("v1/pkg");
    write_package(&v1, &"a".repeat(32), b"");
    let v2 = src.join("v2/pkg");
    write_package(&v2, &"b".repeat(32), b"new version");
    let v3 = src.join("v3/pkg");
    write_package(&v3, &"c".repeat(32), b"third");
    let old = add(&target, &v1);
    let new = add(&deployer, &v2);
    let third = add(&deployer, &v3);
    assert_ne!(old, new);

    let (mut child, mut client) = start_agent(&target, None).await;

    let manifests = client.manifests(&[old.clone(), new.clone()]).await.unwrap();
    assert!(manifests[1].is_none(), "the target does not have the new path yet");
    // The deployer reads base files from its own copy of what it pushed (here: the target's files).
    let mut knowledge = KnowledgeIndex::reading_from(target.join("nix/store"));
    knowledge.add(old.clone(), manifests[0].clone().expect("manifest of the old path"));

    let (info, on_disk) = info_of(&deployer, &new);
    let (_, encoded) = encode_from_disk(&new, &on_disk, &knowledge, &EncodeOptions::default()).unwrap();
    let stats = encoded.stats;
    assert_eq!((stats.reference.files, stats.delta.files), (1, 2), "{stats:?}");
    let report = client.push(vec![PushItem { info: info.clone(), encoded, check_sigs: false }]).await.unwrap();
    assert_eq!(report.outcomes, [(new.clone(), PushOutcome::Imported)]);
    // Bytes on the wire (plan, payload, framing) against the NAR.
    let share = report.wire_bytes as f64 / info.nar_size as f64;
    eprintln!("pushed {} NAR bytes with {} bytes on the wire ({:.3}%)", info.nar_size, report.wire_bytes, 100.0 * share);
    assert!(share < 0.01, "{share}");

    // C++ Nix agrees: the path is valid, its contents match its hash, and the hash is ours.
    let (ok, out) = nix_store(&target, &["--verify", "--check-contents"]);
    assert!(ok && !out.contains("error") && !out.contains("modified"), "{out}");
    let (ok, out) = nix_store(&target, &["-q", "--hash", &format!("/nix/store/{new}")]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), info.nar_hash.encode(HashEncoding::Nix32, true));

    // A reused file corrupted on the target: the path is refused, and not registered.
    let victim = target.join("nix/store").join(old.to_string()).join("lib/data");
    let mut perms = std::fs::metadata(&victim).unwrap().permissions();
    perms.set_mode(0o644);
    std::fs::set_permissions(&victim, perms).unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0x20;
    std::fs::write(&victim, bytes).unwrap();
    let (info3, on_disk3) = info_of(&deployer, &third);
    let (_, encoded3) = encode_from_disk(&third, &on_disk3, &knowledge, &EncodeOptions::default()).unwrap();
    let report = client.push(vec![PushItem { info: info3.clone(), encoded: encoded3, check_sigs: false }]).await.unwrap();
    assert!(matches!(&report.outcomes[0].1, PushOutcome::Resend { reason } if reason.contains("lib/data")), "{:?}", report.outcomes);
    let (valid, _) = nix_store(&target, &["--check-validity", &format!("/nix/store/{third}")]);
    assert!(!valid, "a path rebuilt from a corrupted file must not be registered");
    // Resent whole, it goes in.
    let (manifest3, whole) = encode_from_disk(&third, &on_disk3, &(), &EncodeOptions::default()).unwrap();
    assert_eq!(whole.stats.raw.files, manifest3.files().count() as u64);
    let report = client.push(vec![PushItem { info: info3, encoded: whole, check_sigs: false }]).await.unwrap();
    assert_eq!(report.outcomes[0].1, PushOutcome::Imported);
    let (valid, out) = nix_store(&target, &["--check-validity", &format!("/nix/store/{third}")]);
    assert!(valid, "{out}");

    client.bye().await.unwrap();
    assert!(child.wait().await.unwrap().success());

    // The same through a daemon listening on a socket (how real targets run).
    let socket = tmp.path().join("daemon.sock");
    let mut daemon = tokio::process::Command::new("nix-daemon")
        .arg("--store")
        .arg(format!("local?root={}", target.display()))
        .env("NIX_DAEMON_SOCKET_PATH", &socket)
        .env("NIX_CONFIG", "sandbox = false")
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (mut child, mut client) = start_agent(&target, Some(&socket)).await;
    let v4 = src.join("v4/pkg");
    write_package(&v4, &"d".repeat(32), b"fourth");
    let fourth = add(&deployer, &v4);
    let (info4, on_disk4) = info_of(&deployer, &fourth);
    // The old path's files are damaged: the deployer forgets it, the new path holds the same data.
    knowledge.remove(&old);
    knowledge.add(new.clone(), ndeploy_agent::manifest::NarManifest::from_disk(&target.join("nix/store").join(new.to_string())).unwrap());
    let (_, encoded4) = encode_from_disk(&fourth, &on_disk4, &knowledge, &EncodeOptions::default()).unwrap();
    assert!(encoded4.stats.delta.files > 0, "{:?}", encoded4.stats);
    let report = client.push(vec![PushItem { info: info4.clone(), encoded: encoded4, check_sigs: false }]).await.unwrap();
    assert_eq!(report.outcomes[0].1, PushOutcome::Imported);
    client.bye().await.unwrap();
    assert!(child.wait().await.unwrap().success());
    daemon.kill().await.unwrap();
    let (ok, out) = nix_store(&target, &["-q", "--hash", &format!("/nix/store/{fourth}")]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), info4.nar_hash.encode(HashEncoding::Nix32, true));
}
