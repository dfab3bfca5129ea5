//! The worker-protocol client against real `nix-daemon`s: a `--stdio` child
//! serving a chroot store (`local?root=DIR`), and a socket daemon we start and
//! stop ourselves. Closures come from the main store (`nix-instantiate
//! --read-write-mode`, `builtins.path`), with path info from `nix path-info
//! --json` and NARs from `nix-store --dump`; results are checked with
//! `nix-store --store DIR --verify --check-contents`, `-qR` and
//! `--check-validity`.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ndeploy_store::content_address::ContentAddress;
use ndeploy_store::daemon::{
    AddToStoreFlags, BuildMode, ClientSettings, DaemonConnection, DaemonError, DerivedPath, FromIter, LogField, LogMessage,
    MINIMUM_PROTOCOL_VERSION, OutputsSpec, SpawnedDaemon, connect_unix, spawn_stdio, transport::UnixConnection,
};
use ndeploy_store::hash::{Hash, HashAlgo};
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::{StoreDir, StorePath};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::support::{nix, run, run_ok, run_str, without_gc_reserve, write_file};

fn nix_cmd(tool: &str) -> std::process::Command {
    let mut c = nix(tool);
    c.env("NIX_CONFIG", "sandbox = false\nexperimental-features = nix-command");
    c
}

fn dir() -> StoreDir {
    StoreDir::default()
}

/// A closure of three paths in the main store, references first: a text
/// file, a directory (files small and large, executable, symlink,
/// subdirectory) and a text file referring to both. `tag` makes it unique to the test.
fn make_closure(tag: &str) -> Vec<PathInfo> {
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("tree");
    write_file(&tree.join("f"), format!("file {tag}\n"));
    write_file(&tree.join("sub/x"), "#!/bin/sh\necho hi\n");
    // Large enough to span several 64 KiB frames.
    let big: Vec<u8> = (0..300_000u32).flat_map(|i| (i.wrapping_mul(2_654_435_761) ^ tag.len() as u32).to_le_bytes()).collect();
    write_file(&tree.join("big.bin"), big);
    std::fs::set_permissions(tree.join("sub/x"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("f", tree.join("l")).unwrap();
    let expr = format!(
        r#"let a = builtins.toFile "a-{tag}" "hello {tag}"; d = builtins.path {{ path = {}; name = "d-{tag}"; }}; in builtins.toFile "b-{tag}" "${{a}} ${{d}}""#,
        tree.display()
    );
    let top = run_str(nix_cmd("nix-instantiate").args(["--read-write-mode", "--eval", "-E", &expr]));
    let top = top.trim_matches('"');
    let json = run_ok(nix_cmd("nix").args(["path-info", "--json", "-r", top]));
    let infos: Vec<PathInfo> = serde_json::from_slice::<Vec<serde_json::Value>>(&json)
        .unwrap()
        .iter()
        .map(info_from_json)
        .collect();
    assert_eq!(infos.len(), 3, "{infos:?}");
    topo_sort(infos)
}

fn info_from_json(v: &serde_json::Value) -> PathInfo {
    let d = dir();
    let path = d.parse(v["path"].as_str().unwrap()).unwrap();
    let hash = Hash::parse(v["narHash"].as_str().unwrap(), Some(HashAlgo::Sha256)).unwrap();
    let mut info = PathInfo::new(path, hash, v["narSize"].as_u64().unwrap());
    info.references = v["references"].as_array().unwrap().iter().map(|r| d.parse(r.as_str().unwrap()).unwrap()).collect();
    info.ca = v["ca"].as_str().map(|ca| ContentAddress::parse(ca).unwrap());
    info.registration_time = v["registrationTime"].as_u64().unwrap_or(0);
    info
}

/// References before referrers.
fn topo_sort(mut infos: Vec<PathInfo>) -> Vec<PathInfo> {
    let mut out: Vec<PathInfo> = Vec::new();
    while !infos.is_empty() {
        let done: BTreeSet<StorePath> = out.iter().map(|i| i.path.clone()).collect();
        let i = infos
            .iter()
            .position(|i| i.references.iter().all(|r| r == &i.path || done.contains(r)))
            .expect("closure is acyclic");
        out.push(infos.remove(i));
    }
    out
}

/// A temp dir for a chroot store (see [`without_gc_reserve`]).
fn store_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    without_gc_reserve(root.path());
    root
}

fn nar_of(p: &StorePath) -> Vec<u8> {
    run_ok(nix_cmd("nix-store").args(["--dump", &dir().display(p)]))
}

/// A `nix-daemon --stdio` serving the chroot store at `root`.
async fn stdio_daemon(root: &Path) -> SpawnedDaemon {
    let mut cmd = tokio::process::Command::new("nix-daemon");
    cmd.args(["--stdio", "--store", &format!("local?root={}", root.display())])
        .env("NIX_CONFIG", "sandbox = false");
    spawn_stdio(cmd, dir()).await.unwrap()
}

fn store_arg(root: &Path) -> String {
    root.display().to_string()
}

fn is_valid_in(root: &Path, p: &StorePath) -> bool {
    run(nix_cmd("nix-store").args(["--store", &store_arg(root), "--check-validity", &dir().display(p)]))
        .status
        .success()
}

/// `nix-store --verify --check-contents` on the chroot store finds nothing wrong.
fn assert_store_consistent(root: &Path) {
    let out = run(nix_cmd("nix-store").args(["--store", &store_arg(root), "--verify", "--check-contents"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("error"), "verify failed: {err}");
}

/// The chroot store holds exactly `closure`, complete and intact.
fn assert_closure_copied(root: &Path, closure: &[PathInfo]) {
    assert_store_consistent(root);
    let top = closure.last().unwrap();
    let listed = run_str(nix_cmd("nix-store").args(["--store", &store_arg(root), "-qR", &dir().display(&top.path)]));
    let listed: BTreeSet<&str> = listed.lines().collect();
    let want: Vec<String> = closure.iter().map(|i| dir().display(&i.path)).collect();
    assert_eq!(listed, want.iter().map(String::as_str).collect::<BTreeSet<_>>());
}

/// QueryPathInfo and NarFromPath give back what was uploaded.
async fn assert_daemon_agrees<R, W>(conn: &mut DaemonConnection<R, W>, closure: &[PathInfo])
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    for want in closure {
        let got = conn.query_path_info(&want.path).await.unwrap().expect("path is valid");
        assert_eq!(got.nar_hash, want.nar_hash);
        assert_eq!(got.nar_size, want.nar_size);
        assert_eq!(got.references, want.references);
        assert_eq!(got.ca, want.ca);
        let mut nar = Vec::new();
        let n = conn.nar_from_path(&want.path, &mut nar).await.unwrap();
        assert_eq!(n, want.nar_size);
        assert_eq!(nar, nar_of(&want.path));
    }
}

fn absent_path(tag: &str) -> StorePath {
    dir().make_text_path(&format!("absent-{tag}"), &Hash::digest(HashAlgo::Sha256, tag), []).unwrap()
}

#[tokio::test]
async fn handshake_and_queries() {
    let root = store_root();
    // One path already in the chroot store, added by Nix itself.
    let file = root.path().join("present.txt");
    write_file(&file, "present\n");
    let present = run_str(nix_cmd("nix-store").args(["--store", &store_arg(root.path()), "--add", file.to_str().unwrap()]));
    let present = dir().parse(&present).unwrap();
    let absent = absent_path("handshake");

    let SpawnedDaemon { mut conn, mut child } = stdio_daemon(root.path()).await;
    let nix_version = run_str(nix_cmd("nix-store").arg("--version"));
    let info = conn.info().clone();
    assert!(info.version >= MINIMUM_PROTOCOL_VERSION);
    assert_eq!(info.version, info.daemon_protocol.min(ndeploy_store::daemon::PROTOCOL_VERSION));
    assert!(nix_version.ends_with(info.daemon_nix_version.as_deref().unwrap()), "{nix_version} vs {info:?}");
    if nix_version.ends_with(" 2.8.0") {
        assert_eq!(info.version.to_string(), "1.34");
        assert_eq!(info.trusted, None, "1.34 has no trusted flag");
    }

    conn.set_options(&ClientSettings { verbosity: 3, ..ClientSettings::default() }).await.unwrap();
    assert!(conn.is_valid_path(&present).await.unwrap());
    assert!(!conn.is_valid_path(&absent).await.unwrap());
    let valid = conn.query_valid_paths([&present, &absent, &present], false).await.unwrap();
    assert_eq!(valid.into_iter().collect::<Vec<_>>(), vec![present.clone()]);
    assert!(conn.query_valid_paths([], false).await.unwrap().is_empty());
    assert_eq!(conn.query_path_info(&absent).await.unwrap(), None);

    let pi = conn.query_path_info(&present).await.unwrap().unwrap();
    let want = info_from_json(
        &serde_json::from_slice::<serde_json::Value>(&run_ok(nix_cmd("nix").args([
            "path-info",
            "--store",
            &store_arg(root.path()),
            "--json",
            &dir().display(&present),
        ])))
        .unwrap()[0],
    );
    assert_eq!((pi.nar_hash, pi.nar_size, &pi.ca, pi.registration_time), (want.nar_hash, want.nar_size, &want.ca, want.registration_time));
    conn.add_temp_root(&present).await.unwrap();
    let mut nar = Vec::new();
    conn.nar_from_path(&present, &mut nar).await.unwrap();
    let real = format!("{}{}", root.path().display(), dir().display(&present));
    let dumped = run_ok(nix_cmd("nix-store").args(["--dump", &real]));
    assert_eq!(nar, dumped);

    drop(conn);
    child.wait().await.unwrap();
}

#[tokio::test]
async fn add_multiple_to_store_streams_a_closure() {
    let closure = make_closure("multi");
    let root = store_root();
    let SpawnedDaemon { mut conn, mut child } = stdio_daemon(root.path()).await;
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    conn.set_logger(move |m: LogMessage| sink.lock().unwrap().push(m));

    let missing: Vec<PathInfo> = {
        let valid = conn.query_valid_paths(closure.iter().map(|i| &i.path), false).await.unwrap();
        assert!(valid.is_empty());
        closure.iter().filter(|i| !valid.contains(&i.path)).cloned().collect()
    };

    // A producer task opens each NAR as a `nix-store --dump` pipe, one at a time.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let to_send = missing.clone();
    let producer = tokio::spawn(async move {
        for info in to_send {
            let mut child = tokio::process::Command::new("nix-store")
                .args(["--dump", &dir().display(&info.path)])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            tx.send((info, stdout)).await.unwrap();
            assert!(child.wait().await.unwrap().success());
        }
    });
    conn.add_multiple_to_store(missing.len() as u64, rx, AddToStoreFlags::default()).await.unwrap();
    producer.await.unwrap();

    assert_closure_copied(root.path(), &closure);
    assert_daemon_agrees(&mut conn, &closure).await;
    let valid = conn.query_valid_paths(closure.iter().map(|i| &i.path), false).await.unwrap();
    assert_eq!(valid.len(), 3);
    drop(conn);
    child.wait().await.unwrap();
}

#[tokio::test]
async fn add_to_store_nar_one_by_one() {
    let closure = make_closure("single");
    let root = store_root();
    let SpawnedDaemon { mut conn, mut child } = stdio_daemon(root.path()).await;
    for info in &closure {
        let nar = nar_of(&info.path);
        conn.add_to_store_nar(info, &mut Cursor::new(nar), AddToStoreFlags::default()).await.unwrap();
    }
    // Adding a valid path again is a no-op for AddToStoreNar.
    let first = &closure[0];
    conn.add_to_store_nar(first, &mut Cursor::new(nar_of(&first.path)), AddToStoreFlags::default()).await.unwrap();
    assert_closure_copied(root.path(), &closure);
    assert_daemon_agrees(&mut conn, &closure).await;
    drop(conn);
    child.wait().await.unwrap();
}

fn expect_remote(e: DaemonError, needle: &str) -> String {
    match e {
        DaemonError::Remote { message, .. } => {
            assert!(message.contains(needle), "{message}");
            message
        }
        other => panic!("expected a daemon error containing '{needle}', got {other:?}"),
    }
}

#[tokio::test]
async fn daemon_errors_leave_connection_and_store_clean() {
    let closure = make_closure("errors");
    let (a, d) = (&closure[0], &closure[1]);
    let root = store_root();
    let SpawnedDaemon { mut conn, mut child } = stdio_daemon(root.path()).await;

    // AddToStoreNar with a wrong NAR hash: Nix's own message, nothing registered.
    let mut bad = a.clone();
    bad.nar_hash = Hash::digest(HashAlgo::Sha256, b"not the nar");
    let e = conn.add_to_store_nar(&bad, &mut Cursor::new(nar_of(&a.path)), AddToStoreFlags::default()).await.unwrap_err();
    let msg = expect_remote(e, "hash mismatch importing path");
    assert!(msg.contains(&dir().display(&a.path)), "{msg}");
    assert!(!conn.is_broken());
    assert!(!conn.is_valid_path(&a.path).await.unwrap());
    assert!(!is_valid_in(root.path(), &a.path));

    // AddMultipleToStore: a good path, then one with a wrong hash.
    let mut bad_d = d.clone();
    bad_d.nar_hash = Hash::digest(HashAlgo::Sha256, b"wrong");
    let entries = vec![(a.clone(), Cursor::new(nar_of(&a.path))), (bad_d, Cursor::new(nar_of(&d.path)))];
    let e = conn.add_multiple_to_store(2, FromIter(entries.into_iter()), AddToStoreFlags::default()).await.unwrap_err();
    expect_remote(e, "hash mismatch importing path");
    let valid = conn.query_valid_paths([&a.path, &d.path], false).await.unwrap();
    assert_eq!(valid.into_iter().collect::<Vec<_>>(), vec![a.path.clone()]);

    // A source that ends early: the local error, the daemon discards the partial stream.
    let entries = vec![(d.clone(), Cursor::new(nar_of(&d.path)))];
    let e = conn.add_multiple_to_store(2, FromIter(entries.into_iter()), AddToStoreFlags::default()).await.unwrap_err();
    assert!(matches!(&e, DaemonError::BadInput { message } if message.contains("ended after 1 of 2")), "{e:?}");
    assert!(!conn.is_broken());
    // A NAR shorter than its path info says: refused locally, nothing registered.
    let b = &closure[2];
    let nar = nar_of(&b.path);
    let e = conn
        .add_to_store_nar(b, &mut Cursor::new(nar[..nar.len() - 8].to_vec()), AddToStoreFlags::default())
        .await
        .unwrap_err();
    assert!(matches!(&e, DaemonError::BadInput { message } if message.contains("path info says")), "{e:?}");
    assert!(!conn.is_valid_path(&b.path).await.unwrap());
    assert!(!is_valid_in(root.path(), &b.path));
    assert_store_consistent(root.path());
    drop(conn);
    child.wait().await.unwrap();
}

#[tokio::test]
async fn killed_daemon_mid_upload_keeps_completed_paths_only() {
    let closure = make_closure("killed");
    let (a, d) = (closure[0].clone(), closure[1].clone());
    let root = store_root();
    let SpawnedDaemon { mut conn, mut child } = stdio_daemon(root.path()).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<(PathInfo, Box<dyn AsyncRead + Unpin + Send>)>(1);
    let upload = conn.add_multiple_to_store(2, rx, AddToStoreFlags::default());
    let control = async {
        tx.send((a.clone(), Box::new(Cursor::new(nar_of(&a.path))))).await.unwrap();
        // The second NAR delivers half its bytes and then stalls.
        let nar = nar_of(&d.path);
        let (mut w, r) = tokio::io::duplex(1 << 16);
        tx.send((d.clone(), Box::new(r))).await.unwrap();
        w.write_all(&nar[..nar.len() / 2]).await.unwrap();
        let root = root.path().to_owned();
        let a_path = a.path.clone();
        let mut registered = false;
        for _ in 0..600 {
            let (root, p) = (root.clone(), a_path.clone());
            if tokio::task::spawn_blocking(move || is_valid_in(&root, &p)).await.unwrap() {
                registered = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(registered, "the first path never became valid");
        child.kill().await.unwrap();
        drop(w);
    };
    let (res, ()) = tokio::join!(upload, control);
    let e = res.unwrap_err();
    assert!(matches!(e, DaemonError::Disconnected | DaemonError::Io(_)), "{e:?}");
    assert!(conn.is_broken());
    assert!(matches!(conn.is_valid_path(&a.path).await, Err(DaemonError::Broken)));

    assert!(is_valid_in(root.path(), &a.path));
    assert!(!is_valid_in(root.path(), &d.path));
    assert_store_consistent(root.path());
    // A fresh daemon on the same store sees the same.
    let SpawnedDaemon { mut conn, mut child } = stdio_daemon(root.path()).await;
    let valid = conn.query_valid_paths([&a.path, &d.path], false).await.unwrap();
    assert_eq!(valid.into_iter().collect::<Vec<_>>(), vec![a.path.clone()]);
    drop(conn);
    child.wait().await.unwrap();
}

/// A socket daemon we start (on our own socket path) and stop by pid.
struct SocketDaemon {
    child: std::process::Child,
    socket: PathBuf,
}

impl SocketDaemon {
    /// Start a socket daemon for the chroot store at `root` with `config`
    /// as its `NIX_CONFIG`, and connect to it once it listens.
    async fn start(root: &Path, config: &str) -> (SocketDaemon, UnixConnection) {
        let socket = root.join("daemon-socket/socket");
        let child = std::process::Command::new("nix-daemon")
            .args(["--store", &format!("local?root={}", root.display())])
            .env("NIX_DAEMON_SOCKET_PATH", &socket)
            .env("NIX_CONFIG", config)
            .spawn()
            .unwrap();
        let daemon = SocketDaemon { child, socket };
        for _ in 0..600 {
            if daemon.socket.exists()
                && let Ok(conn) = connect_unix(&daemon.socket, dir()).await
            {
                return (daemon, conn);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the socket daemon did not come up");
    }
}

impl Drop for SocketDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn socket_daemon() {
    let closure = make_closure("socket");
    let root = store_root();
    let (daemon, mut conn) = SocketDaemon::start(root.path(), "sandbox = false").await;
    assert!(conn.info().version >= MINIMUM_PROTOCOL_VERSION);
    let entries: Vec<_> = closure.iter().map(|i| (i.clone(), Cursor::new(nar_of(&i.path)))).collect();
    conn.add_multiple_to_store(entries.len() as u64, FromIter(entries.into_iter()), AddToStoreFlags::default())
        .await
        .unwrap();
    assert_daemon_agrees(&mut conn, &closure).await;
    drop(conn);
    drop(daemon);
    assert_closure_copied(root.path(), &closure);
}

/// As an untrusted client (root not in trusted-users), unsigned paths are
/// refused with Nix's message, while content-addressed ones are accepted
/// because they verify themselves.
#[tokio::test]
async fn untrusted_client_needs_signatures_or_content_addresses() {
    let closure = make_closure("untrusted");
    let root = store_root();
    let (daemon, mut conn) = SocketDaemon::start(root.path(), "sandbox = false\ntrusted-users = nobody").await;
    assert_ne!(conn.info().trusted, Some(true));

    let mut unsigned = closure[0].clone();
    unsigned.ca = None;
    let flags = AddToStoreFlags { repair: false, dont_check_sigs: true };
    let e = conn.add_to_store_nar(&unsigned, &mut Cursor::new(nar_of(&unsigned.path)), flags).await.unwrap_err();
    expect_remote(e, "lacks a valid signature");
    assert!(!conn.is_valid_path(&unsigned.path).await.unwrap());

    let open = |info: &PathInfo| std::future::ready(Ok(Cursor::new(nar_of(&info.path))));
    let report = conn.copy_missing(closure.clone(), open, flags).await.unwrap();
    assert_eq!(report.added.len(), 3);
    assert_daemon_agrees(&mut conn, &closure).await;
    drop(conn);
    drop(daemon);
    assert_closure_copied(root.path(), &closure);
}

#[tokio::test]
async fn copy_missing_sends_only_what_is_missing() {
    let closure = make_closure("copy");
    let root = store_root();
    let SpawnedDaemon { mut conn, mut child } = stdio_daemon(root.path()).await;
    // The daemon already has the directory path.
    let d = &closure[1];
    conn.add_to_store_nar(d, &mut Cursor::new(nar_of(&d.path)), AddToStoreFlags::default()).await.unwrap();

    // Referrers first on input: copy_missing reorders; NARs come from `nix-store --dump` pipes.
    let mut infos = closure.clone();
    infos.reverse();
    let open = |info: &PathInfo| {
        let path = dir().display(&info.path);
        async move {
            let mut child = tokio::process::Command::new("nix-store").args(["--dump", &path]).stdout(Stdio::piped()).spawn()?;
            child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))
        }
    };
    let report = conn.copy_missing(infos.clone(), open, AddToStoreFlags::default()).await.unwrap();
    assert_eq!(report.already_valid.into_iter().collect::<Vec<_>>(), vec![d.path.clone()]);
    assert_eq!(report.added, [closure[0].path.clone(), closure[2].path.clone()]);
    assert_eq!(report.nar_bytes, closure[0].nar_size + closure[2].nar_size);
    assert_closure_copied(root.path(), &closure);

    // Nothing left to do the second time (and Nix 2.8 would choke on valid paths in the stream).
    let report = conn.copy_missing(infos, open, AddToStoreFlags::default()).await.unwrap();
    assert!(report.added.is_empty());
    assert_eq!(report.already_valid.len(), 3);
    drop(conn);
    child.wait().await.unwrap();
}

#[tokio::test]
async fn query_missing_and_build_paths() {
    let root = store_root();
    // Chroot-store builds run sandboxed: give the builder a shell from the host.
    let config = "sandbox = false\nextra-sandbox-paths = /bin /lib /lib64 /usr";
    let instantiate = |script: &str| {
        let expr = format!(
            r#"derivation {{ name = "built"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "{script}"]; }}"#
        );
        let drv = run_str(nix("nix-instantiate").env("NIX_CONFIG", config).args(["--store", &store_arg(root.path()), "-E", &expr]));
        dir().parse(drv.lines().last().unwrap()).unwrap()
    };
    let good = instantiate("echo built > $out");
    let bad = instantiate("echo failing on purpose; exit 1");
    let out = run_str(nix_cmd("nix-store").args(["--store", &store_arg(root.path()), "-q", "--outputs", &dir().display(&good)]));
    let out = dir().parse(&out).unwrap();

    let mut cmd = tokio::process::Command::new("nix-daemon");
    cmd.args(["--stdio", "--store", &format!("local?root={}", root.path().display())]).env("NIX_CONFIG", config);
    let SpawnedDaemon { mut conn, mut child } = spawn_stdio(cmd, dir()).await.unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    conn.set_logger(move |m: LogMessage| sink.lock().unwrap().push(m));

    let target = DerivedPath::Built { drv: good.clone(), outputs: OutputsSpec::All };
    let missing = conn.query_missing(std::slice::from_ref(&target)).await.unwrap();
    assert_eq!(missing.will_build.into_iter().collect::<Vec<_>>(), vec![good.clone()]);
    assert!(missing.will_substitute.is_empty() && missing.unknown.is_empty());

    conn.build_paths(std::slice::from_ref(&target), BuildMode::Normal).await.unwrap();
    assert!(conn.is_valid_path(&out).await.unwrap());
    let real = format!("{}{}", root.path().display(), dir().display(&out));
    assert_eq!(std::fs::read_to_string(real).unwrap(), "built\n");
    assert!(conn.query_missing(&[DerivedPath::Opaque(out.clone())]).await.unwrap().will_build.is_empty());

    let named = OutputsSpec::Names(["out".to_owned()].into_iter().collect());
    let e = conn.build_paths(&[DerivedPath::Built { drv: bad.clone(), outputs: named }], BuildMode::Normal).await.unwrap_err();
    expect_remote(e, &format!("builder for '{}' failed", dir().display(&bad)));
    // The build log came through the stderr stream.
    {
        let log = log.lock().unwrap();
        assert!(
            log.iter().any(|m| matches!(m, LogMessage::Result { fields, .. } if fields.iter().any(|f| matches!(f, LogField::String(s) if s.contains("failing on purpose"))))
                || matches!(m, LogMessage::Next(s) if s.contains("failing on purpose"))),
            "{log:?}"
        );
    }
    drop(conn);
    child.wait().await.unwrap();
}

#[tokio::test]
async fn query_closure_matches_nix() {
    let closure = make_closure("closure");
    let top = closure.last().unwrap();
    // A stdio daemon on the main store.
    let mut cmd = tokio::process::Command::new("nix-daemon");
    cmd.arg("--stdio").env("NIX_CONFIG", "sandbox = false");
    let SpawnedDaemon { mut conn, mut child } = spawn_stdio(cmd, dir()).await.unwrap();

    let got = conn.query_closure(std::slice::from_ref(&top.path)).await.unwrap();
    assert_eq!(got.len(), closure.len());
    assert_eq!(got.last().unwrap().path, top.path, "referrers last");
    for want in &closure {
        let info = got.iter().find(|i| i.path == want.path).expect("in the closure");
        assert_eq!((info.nar_hash, info.nar_size, &info.references, &info.ca), (want.nar_hash, want.nar_size, &want.references, &want.ca));
    }

    let absent = absent_path("closure");
    let infos = conn.query_path_infos(&[closure[0].path.clone(), absent.clone(), top.path.clone()]).await.unwrap();
    assert_eq!(infos.iter().map(Option::is_some).collect::<Vec<_>>(), [true, false, true]);
    let e = conn.query_closure(&[absent]).await.unwrap_err();
    assert!(e.to_string().contains("is not valid on the daemon"), "{e}");
    drop(conn);
    child.wait().await.unwrap();
}
