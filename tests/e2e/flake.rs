//! Fetchers and flakes against Nix 2.8: `fetchTarball`/`fetchurl` from a
//! loopback HTTP server give Nix's store paths (downloaded by ndeploy into
//! its own cache first, so the download, unpack and verification run), wrong
//! hashes and unreachable URLs are clear errors, hostile tarballs are
//! rejected; a flake fixture with a `path` input (following the root's
//! `tarball` input) evaluates to the same values and drvPath as `nix eval`,
//! with the lock file written by Nix 2.8 during setup; `examples/fleet`
//! (a flake inside this git checkout) instantiates to Nix's drvPath.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::{descendants, ndeploy, nix, run, run_ok, run_str, write_file};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// A C++ Nix tool with flakes, no substituters, no registry downloads.
fn nix_flakes(tool: &str) -> Command {
    let mut c = nix(tool);
    c.env(
        "NIX_CONFIG",
        "sandbox = false\nsubstituters =\nexperimental-features = nix-command flakes\nwarn-dirty = false\nflake-registry =\ntarball-ttl = 0",
    );
    c
}

/// `ndeploy` with its cache in `cache`.
fn nd(cache: &Path) -> Command {
    let mut c = ndeploy();
    c.env("XDG_CACHE_HOME", cache);
    c
}

/// A loopback HTTP/1.0 server for a fixed set of files. It serves at most
/// 200 requests and stops after 5 minutes or when dropped.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(files: BTreeMap<String, Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut served = 0;
            while !stop2.load(Ordering::Relaxed) && served < 200 && started.elapsed() < Duration::from_secs(300) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        served += 1;
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                        let mut reader = BufReader::new(conn.try_clone().unwrap());
                        let mut line = String::new();
                        let _ = reader.read_line(&mut line);
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
                                break;
                            }
                        }
                        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                        let _ = match files.get(&path) {
                            Some(body) => conn
                                .write_all(
                                    format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                                        .as_bytes(),
                                )
                                .and_then(|()| conn.write_all(body)),
                            None => conn.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                        };
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => break,
                }
            }
        });
        Server { port, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Something unique to this run, so fetched store paths are new.
fn nonce() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{}-{}-{}", std::process::id(), t.as_secs(), t.subsec_nanos())
}

/// `tar` of `dir`'s entry `top`, compressed with `flag` (`-z`, `-J`).
fn make_tarball(dir: &Path, top: &str, flag: &str) -> Vec<u8> {
    let out = run_ok(Command::new("tar").arg("-c").arg(flag).arg("-f").arg("-").arg("-C").arg(dir).arg(top));
    assert!(!out.is_empty());
    out
}

/// `nix-hash --type sha256 --base32 path` (the NAR hash).
fn nar_hash(path: &Path) -> String {
    run_str(nix("nix-hash").args(["--type", "sha256", "--base32"]).arg(path))
}

/// A data tree with a unique file, in `tmp/name/top`.
fn data_tree(tmp: &Path, name: &str) -> PathBuf {
    let root = tmp.join(name);
    let top = root.join("top");
    copy_dir(&repo().join("tests/fixtures/flake-data/top"), &top);
    write_file(&top.join("nonce.txt"), nonce());
    root
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn eval_ours(cache: &Path, expr: &str) -> std::process::Output {
    run(nd(cache).args(["instantiate", "--eval", "--strict", "--json", "-E", expr]))
}

/// `nix-instantiate --eval` with a cache of its own: Nix's fetcher cache is
/// keyed by URL, and a test server's URL (a free port) may be one an earlier
/// run served other contents at, which Nix would take from its cache.
fn eval_nix(expr: &str) -> String {
    let cache = tempfile::tempdir().unwrap();
    let mut c = nix_flakes("nix-instantiate");
    c.env("XDG_CACHE_HOME", cache.path()).args(["--eval", "--strict", "--json", "-E", expr]);
    String::from_utf8(run_ok(&mut c)).unwrap()
}

#[test]
fn fetch_tarball_and_fetchurl_match_nix_and_read_through_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = data_tree(tmp.path(), "data");
    let hash = nar_hash(&data.join("top"));
    let gz = make_tarball(&data, "top", "-z");
    let xz = make_tarball(&data, "top", "-J");
    let zip = {
        run_ok(Command::new("zip").current_dir(&data).args(["-qry", "../data.zip", "top"]));
        std::fs::read(tmp.path().join("data.zip")).unwrap()
    };
    let file = format!("a flat file {}\n", nonce());
    let file_hash = {
        write_file(&tmp.path().join("flat.txt"), &file);
        run_str(nix("nix-hash").args(["--type", "sha256", "--flat", "--base32"]).arg(tmp.path().join("flat.txt")))
    };
    let mut files = BTreeMap::new();
    files.insert("/data.tar.gz".to_string(), gz);
    files.insert("/data.tar.xz".to_string(), xz);
    files.insert("/data.zip".to_string(), zip);
    files.insert("/flat.txt".to_string(), file.into_bytes());
    let server = Server::start(files);
    let expr = format!(
        r#"let
          gz = builtins.fetchTarball {{ url = "{gz}"; sha256 = "{hash}"; }};
          xz = builtins.fetchTarball {{ url = "{xz}"; sha256 = "{hash}"; name = "xz-source"; }};
          flat = builtins.fetchurl {{ url = "{flat}"; sha256 = "{file_hash}"; }};
          zip = builtins.fetchTarball {{ url = "{zip}"; sha256 = "{hash}"; name = "zip-source"; }};
        in {{
          inherit gz xz flat zip;
          imported = import "${{gz}}/default.nix";
          hello = builtins.readFile "${{xz}}/hello.txt";
          dir = builtins.readDir gz;
          flatText = builtins.readFile flat;
          ctx = builtins.attrNames (builtins.getContext gz);
        }}"#,
        gz = server.url("/data.tar.gz"),
        xz = server.url("/data.tar.xz"),
        flat = server.url("/flat.txt"),
        zip = server.url("/data.zip"),
    );
    // Ours first: the paths are new, so ndeploy downloads into its cache.
    let ours = eval_ours(&cache, &expr);
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    let stderr = String::from_utf8_lossy(&ours.stderr);
    assert!(stderr.contains("data.tar.gz"), "no download progress on stderr: {stderr}");
    let cached: Vec<String> = std::fs::read_dir(cache.join("ndeploy/sources"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 4, "{cached:?}");
    // The executable bit survives unpacking.
    let gz_entry = cached.iter().find(|n| n.ends_with("-source")).unwrap();
    let mode = std::fs::metadata(cache.join("ndeploy/sources").join(gz_entry).join("bin/run")).unwrap();
    assert!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o100 != 0);

    let theirs = eval_nix(&expr);
    let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(&theirs).unwrap();
    assert_eq!(ours, theirs);

    // Now in the store and the cache: offline works without the server.
    drop(server);
    let again = run(nd(&cache).env("NDEPLOY_OFFLINE", "1").args(["instantiate", "--eval", "--strict", "--json", "-E", &expr]));
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&again.stdout).unwrap(), ours);
}

#[test]
fn wrong_hash_unreachable_url_and_offline_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = data_tree(tmp.path(), "data");
    let good = nar_hash(&data.join("top"));
    let mut files = BTreeMap::new();
    files.insert("/data.tar.gz".to_string(), make_tarball(&data, "top", "-z"));
    let server = Server::start(files);
    let url = server.url("/data.tar.gz");
    let wrong = "0000000000000000000000000000000000000000000000000000";
    let out = eval_ours(&cache, &format!(r#"builtins.fetchTarball {{ url = "{url}"; sha256 = "{wrong}"; }}"#));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("hash mismatch in file downloaded from '{url}'")), "{err}");
    assert!(err.contains(&format!("specified: sha256:{wrong}")), "{err}");
    assert!(err.contains(&format!("got:       sha256:{good}")), "{err}");

    let dead = "http://127.0.0.1:1/nothing.tar.gz";
    let out = eval_ours(&cache, &format!(r#"builtins.fetchTarball {{ url = "{dead}"; sha256 = "{wrong}"; }}"#));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("unable to download '{dead}'")), "{err}");

    let out = eval_ours(&cache, &format!(r#"builtins.fetchurl "{}""#, server.url("/missing")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP error 404"), "{err}");

    let out = run(nd(&cache).env("NDEPLOY_OFFLINE", "1").args([
        "instantiate",
        "--eval",
        "-E",
        &format!(r#"builtins.fetchTarball {{ url = "{dead}"; sha256 = "{wrong}"; }}"#),
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("cannot fetch '{dead}'")) && err.contains("offline"), "{err}");
}

/// A ustar header block for `name` (written raw: no `..` sanitising).
fn raw_tar_entry(name: &str, body: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", body.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(body);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

#[test]
fn tarballs_with_parent_or_absolute_entries_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let mut files = BTreeMap::new();
    for (path, evil) in [("/dotdot.tar", "top/../../escaped.txt"), ("/abs.tar", "/tmp/ndeploy-escaped.txt")] {
        let mut t = raw_tar_entry("top/ok.txt", b"ok\n");
        t.extend(raw_tar_entry(evil, b"evil\n"));
        t.extend([0u8; 1024]);
        files.insert(path.to_string(), t);
    }
    let server = Server::start(files);
    for path in ["/dotdot.tar", "/abs.tar"] {
        let url = server.url(path);
        let out = eval_ours(&cache, &format!(r#"builtins.fetchTarball "{url}""#));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("tarball '{url}' contains an unsafe entry")), "{err}");
    }
    assert!(!cache.join("escaped.txt").exists() && !tmp.path().join("escaped.txt").exists());
    assert!(!Path::new("/tmp/ndeploy-escaped.txt").exists());
}

/// The fixture flakes copied to `tmp` with their placeholders filled in,
/// locked by Nix 2.8. Returns the main flake's directory.
fn locked_fixture(tmp: &Path, data_url: &str) -> PathBuf {
    let fixtures = repo().join("tests/fixtures");
    let main = tmp.join("main");
    let dep = tmp.join("dep");
    copy_dir(&fixtures.join("flake-main"), &main);
    copy_dir(&fixtures.join("flake-dep"), &dep);
    let text = std::fs::read_to_string(main.join("flake.nix")).unwrap();
    let text = text.replace("@DEP@", dep.to_str().unwrap()).replace("@DATA_URL@", data_url);
    write_file(&main.join("flake.nix"), text);
    run_ok(nix_flakes("nix").arg("flake").arg("lock").arg(format!("path:{}", main.display())));
    assert!(main.join("flake.lock").exists());
    main
}

/// Remove a store path Nix just added (nothing refers to it), so ndeploy
/// has to fetch it itself.
fn forget_store_path(p: &str) {
    let _ = run(nix("nix-store").args(["--delete", p]));
}

#[test]
fn flake_with_path_and_tarball_inputs_matches_nix_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = data_tree(tmp.path(), "data");
    let mut files = BTreeMap::new();
    files.insert("/data.tar.gz".to_string(), make_tarball(&data, "top", "-z"));
    let server = Server::start(files);
    let main = locked_fixture(tmp.path(), &server.url("/data.tar.gz"));
    let lock: serde_json::Value = serde_json::from_slice(&std::fs::read(main.join("flake.lock")).unwrap()).unwrap();
    assert_eq!(lock["version"], 7);
    assert_eq!(lock["nodes"]["dep"]["inputs"]["data"], serde_json::json!(["data"]));
    // The tarball input leaves the store: ndeploy downloads and checks it.
    let data_path = run_str(nix_flakes("nix").args(["eval", "--raw"]).arg(format!("path:{}#info.data.path", main.display())));
    forget_store_path(&data_path);

    let flake = format!("path:{}", main.display());
    let ours = run(nd(&cache).args(["instantiate", "--eval", "--strict", "--json"]).arg(format!("{flake}#info")));
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    assert!(!String::from_utf8_lossy(&ours.stderr).contains("flake.lock was made for"));
    assert!(!Path::new(&data_path).exists(), "nix-store --delete left {data_path}");
    let base = data_path.rsplit('/').next().unwrap();
    assert!(cache.join("ndeploy/sources").join(base).join("hello.txt").exists(), "ndeploy did not fetch {data_path}");
    let drv_dir = tmp.path().join("drvs");
    let ours_drv = run_str(nd(&cache).arg("instantiate").arg("--drv-dir").arg(&drv_dir).arg(format!("{flake}#hello")));
    // Fetched inputs outside the store are recorded with where they really are.
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(drv_dir.join("manifest.json")).unwrap()).unwrap();
    let origin = manifest["sources"][&data_path]["origin"].as_str().unwrap_or_default().to_string();
    assert!(origin.starts_with(cache.to_str().unwrap()), "{manifest}");

    let ours_drv_eval = run_str(nd(&cache).args(["instantiate", "--eval"]).arg(format!("{flake}#hello.drvPath")));

    let theirs = run_ok(nix_flakes("nix").args(["eval", "--json"]).arg(format!("{flake}#info")));
    let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    let theirs: serde_json::Value = serde_json::from_slice(&theirs).unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(ours["data"]["imported"]["answer"], 42);
    let their_drv = run_str(nix_flakes("nix").args(["eval", "--raw"]).arg(format!("{flake}#hello.drvPath")));
    assert_eq!(ours_drv, their_drv);
    assert_eq!(ours_drv_eval, format!("\"{their_drv}\""));

    // builtins.getFlake gives the same flake.
    let expr = format!(r#"(builtins.getFlake "{flake}").outputs.info"#);
    let ours_get = eval_ours(&cache, &expr);
    assert!(ours_get.status.success(), "{}", String::from_utf8_lossy(&ours_get.stderr));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&ours_get.stdout).unwrap(), theirs);
    let theirs_get: serde_json::Value = serde_json::from_str(&eval_nix(&expr)).unwrap();
    assert_eq!(theirs_get, theirs);

    // Without an attribute: the default package, as `nix eval FLAKE` picks it.
    let default = run_str(nd(&cache).arg("instantiate").arg(&flake));
    assert_eq!(default, their_drv);

    // A relative path flake reference (`.`) names the same flake.
    let dot = run_str(nd(&cache).current_dir(&main).args(["instantiate", "--eval"]).arg(".#hello.drvPath"));
    assert_eq!(dot, format!("\"{their_drv}\""));

    // A missing attribute names the candidates as Nix does.
    let out = run(nd(&cache).args(["instantiate", "--eval"]).arg(format!("{flake}#nope")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not provide attribute 'packages.x86_64-linux.nope', 'legacyPackages.x86_64-linux.nope' or 'nope'"), "{err}");

    // A changed input no longer matches its locked narHash.
    write_file(&tmp.path().join("dep/value.txt"), "changed\n");
    let out = run(nd(&cache).args(["instantiate", "--eval", "--strict", "--json"]).arg(format!("{flake}#info.dep.value")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("NAR hash mismatch in input"), "{err}");

    // flake.nix changed after locking: a warning names the input.
    let text = std::fs::read_to_string(main.join("flake.nix")).unwrap();
    write_file(&main.join("flake.nix"), text.replace("inputs.sub.url = \"path:./sub\"", "inputs.sub.url = \"path:./moved\""));
    let out = run(nd(&cache).args(["instantiate", "--eval"]).arg(format!("{flake}#info.sub.value")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: input 'sub' of flake") && err.contains("flake.lock was made for another reference"), "{err}");

    // An input missing from the lock file is an error (ndeploy never locks).
    std::fs::remove_file(main.join("flake.lock")).unwrap();
    let out = run(nd(&cache).args(["instantiate", "--eval"]).arg(format!("{flake}#hello.drvPath")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no flake.lock entry for its input 'data'"), "{err}");
}

#[test]
fn git_flake_clean_and_dirty_match_nix_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let repo_dir = tmp.path().join("repo");
    let sub = repo_dir.join("sub");
    write_file(
        &sub.join("flake.nix"),
        r#"{ outputs = { self }: { info = { path = self.outPath; inherit (self) narHash; attrs = builtins.attrNames self; rev = self.rev or null; shortRev = self.shortRev or null; revCount = self.revCount or null; lastModified = self.lastModified; date = self.lastModifiedDate; text = builtins.readFile ../top.txt; hasUntracked = builtins.pathExists ../untracked.txt; whole = builtins.path { path = ../.; name = "whole"; }; filtered = builtins.filterSource (p: t: baseNameOf p != "top.txt") ../.; sub = "${./.}"; }; }; }"#,
    );
    write_file(&repo_dir.join("top.txt"), "top\n");
    let git = |args: &[&str]| {
        run_ok(
            Command::new("git")
                .arg("-C")
                .arg(&repo_dir)
                .args(args)
                .env("GIT_AUTHOR_DATE", "2023-11-14T22:13:20Z")
                .env("GIT_COMMITTER_DATE", "2023-11-14T22:13:20Z"),
        )
    };
    git(&["init", "-q"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@e", "add", "."]);
    git(&["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "one"]);
    write_file(&repo_dir.join("untracked.txt"), "not in git\n");
    let compare = |what: &str| {
        for r in [format!("git+file://{}?dir=sub", repo_dir.display()), "./sub".to_string()] {
            let ours = run(nd(&cache).current_dir(&repo_dir).args(["instantiate", "--eval", "--strict", "--json"]).arg(format!("{r}#info")));
            assert!(ours.status.success(), "{what} {r}: {}", String::from_utf8_lossy(&ours.stderr));
            let theirs = run_ok(nix_flakes("nix").current_dir(&repo_dir).args(["eval", "--json"]).arg(format!("{r}#info")));
            let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
            let theirs: serde_json::Value = serde_json::from_slice(&theirs).unwrap();
            assert_eq!(ours, theirs, "{what} {r}");
        }
    };
    compare("clean");
    // A shallow clone: no revCount, as Nix.
    let shallow = tmp.path().join("shallow");
    run_ok(Command::new("git").args(["clone", "-q", "--depth", "1"]).arg(format!("file://{}", repo_dir.display())).arg(&shallow));
    let r = "./sub#info";
    let ours = run(nd(&cache).current_dir(&shallow).args(["instantiate", "--eval", "--strict", "--json", r]));
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    let theirs = run_ok(nix_flakes("nix").current_dir(&shallow).args(["eval", "--json", r]));
    let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    assert_eq!(ours, serde_json::from_slice::<serde_json::Value>(&theirs).unwrap());
    assert_eq!(ours["revCount"], serde_json::Value::Null);
    write_file(&repo_dir.join("top.txt"), "top, modified\n");
    compare("dirty");
}

#[test]
fn example_fleet_flake_instantiates_to_nix_drv_path() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let attr = "./examples/fleet#nixosConfigurations.web-1.config.system.build.toplevel";
    let ours = run(nd(&cache).current_dir(repo()).args(["instantiate", attr]));
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    let theirs = run_str(nix_flakes("nix").current_dir(repo()).args(["eval", "--raw"]).arg(format!("{attr}.drvPath")));
    assert_eq!(String::from_utf8_lossy(&ours.stdout).trim(), theirs);
    let eval = run_str(nd(&cache).current_dir(repo()).args(["instantiate", "--eval"]).arg(format!("{attr}.drvPath")));
    assert_eq!(eval, format!("\"{theirs}\""));
}

#[test]
fn fetch_git_local_repository_matches_nix() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let repo_dir = tmp.path().join("repo");
    let git = |args: &[&str], date: &str| {
        run_str(
            Command::new("git")
                .arg("-C")
                .arg(&repo_dir)
                .args(["-c", "user.name=t", "-c", "user.email=t@e"])
                .args(args)
                .env("GIT_AUTHOR_DATE", date)
                .env("GIT_COMMITTER_DATE", date),
        )
    };
    write_file(&repo_dir.join("a.txt"), format!("first {}\n", nonce()));
    write_file(&repo_dir.join("bin/tool"), "#!/bin/sh\n");
    run_ok(Command::new("chmod").arg("+x").arg(repo_dir.join("bin/tool")));
    std::os::unix::fs::symlink("a.txt", repo_dir.join("link")).unwrap();
    git(&["init", "-q"], "2023-01-01T00:00:00Z");
    git(&["add", "."], "2023-01-01T00:00:00Z");
    git(&["commit", "-q", "-m", "one"], "2023-01-01T00:00:00Z");
    let first = git(&["rev-parse", "HEAD"], "2023-01-01T00:00:00Z");
    write_file(&repo_dir.join("b.txt"), "second\n");
    git(&["add", "."], "2023-02-01T00:00:00Z");
    git(&["commit", "-q", "-m", "two"], "2023-02-01T00:00:00Z");
    write_file(&repo_dir.join("a.txt"), "dirty now\n");
    let r = repo_dir.display();
    let expr = format!(
        r#"let
          one = builtins.fetchGit {{ url = "{r}"; rev = "{first}"; }};
          head = builtins.fetchGit {{ url = "file://{r}"; ref = "HEAD"; name = "named"; }};
          tree = builtins.fetchTree {{ type = "git"; url = "file://{r}"; rev = "{first}"; }};
          dirty = builtins.fetchGit {r};
          # toJSON would print only outPath of these sets.
          plain = x: builtins.removeAttrs x [ "outPath" ] // {{ path = x.outPath; }};
        in {{
          one = plain one;
          head = plain head;
          tree = plain tree;
          dirty = plain dirty;
          text = builtins.readFile "${{one}}/a.txt";
          files = builtins.attrNames (builtins.readDir head);
        }}"#
    );
    let ours = eval_ours(&cache, &expr);
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    let theirs = eval_nix(&expr);
    let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(&theirs).unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(ours["one"]["revCount"], 1);
    // The exported commit is indexed; a second run reuses it (same answer).
    assert!(cache.join(format!("ndeploy/git-revs/{first}-source")).exists());
    let again = eval_ours(&cache, &expr);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&again.stdout).unwrap(), ours);
    assert_eq!(ours["dirty"]["rev"], "0".repeat(40));
}

#[test]
fn nested_git_input_with_dir_matches_nix_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (main, dep, repo_dir) = (tmp.path().join("main"), tmp.path().join("dep"), tmp.path().join("repo"));
    write_file(
        &repo_dir.join("sub/flake.nix"),
        format!(r#"{{ outputs = {{ self }}: {{ v = "inner " + self.shortRev + " {}"; }}; }}"#, nonce()),
    );
    run_ok(Command::new("git").arg("-C").arg(&repo_dir).args(["init", "-q"]));
    run_ok(Command::new("git").arg("-C").arg(&repo_dir).args(["add", "."]));
    run_ok(Command::new("git").arg("-C").arg(&repo_dir).args(["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "x"]));
    write_file(
        &dep.join("flake.nix"),
        format!(
            r#"{{ inputs.inner.url = "git+file://{}?dir=sub"; outputs = {{ self, inner }}: {{ v = "dep+" + inner.v; }}; }}"#,
            repo_dir.display()
        ),
    );
    write_file(
        &main.join("flake.nix"),
        format!(
            r#"{{ inputs.dep.url = "path:{}"; outputs = {{ self, dep }}: {{ r = {{ inherit (dep) v; inner = builtins.removeAttrs dep.inputs.inner.sourceInfo [ "outPath" ] // {{ path = dep.inputs.inner.outPath; }}; }}; }}; }}"#,
            dep.display()
        ),
    );
    run_ok(nix_flakes("nix").args(["flake", "lock"]).arg(format!("path:{}", dep.display())));
    run_ok(nix_flakes("nix").args(["flake", "lock"]).arg(format!("path:{}", main.display())));
    let flake = format!("path:{}#r", main.display());
    // The git input leaves the store: ndeploy exports the locked commit.
    let inner = run_str(nix_flakes("nix").args(["eval", "--raw"]).arg(format!("{flake}.inner.path")));
    forget_store_path(&inner);
    assert!(!Path::new(&inner).exists(), "nix-store --delete left {inner}");
    let ours = run(nd(&cache).args(["instantiate", "--eval", "--strict", "--json"]).arg(&flake));
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    assert!(cache.join("ndeploy/git-revs").exists(), "ndeploy did not export the commit");
    let theirs = run_ok(nix_flakes("nix").args(["eval", "--json"]).arg(&flake));
    let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    let theirs: serde_json::Value = serde_json::from_slice(&theirs).unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(ours["inner"]["revCount"], 1);
}

/// `git daemon` serving `base` on a free loopback port; killed on drop,
/// with its children (`git daemon` runs `git-daemon` as a child process,
/// which outlived a kill of the parent alone).
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("git")
            .arg("daemon")
            .arg(format!("--base-path={}", base.display()))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(base)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        GitDaemon { child, port }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let children: Vec<String> = descendants(self.child.id()).into_iter().map(|(pid, _)| pid.to_string()).collect();
        let _ = self.child.kill();
        let _ = Command::new("kill").arg("-KILL").args(&children).status();
        let _ = self.child.wait();
    }
}

#[test]
fn remote_git_input_matches_nix() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let work = tmp.path().join("work");
    write_file(&work.join("a.txt"), format!("remote {}\n", nonce()));
    let git = |dir: &Path, args: &[&str]| {
        run_str(Command::new("git").arg("-C").arg(dir).args(["-c", "user.name=t", "-c", "user.email=t@e"]).args(args))
    };
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "one"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    write_file(&work.join("b.txt"), "two\n");
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "two"]);
    let srv = tmp.path().join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    run_ok(Command::new("git").args(["clone", "-q", "--bare"]).arg(&work).arg(srv.join("r.git")));
    let daemon = GitDaemon::start(&srv);
    let url = format!("git://127.0.0.1:{}/r.git", daemon.port);
    let expr = format!(
        r#"let
          plain = x: builtins.removeAttrs x [ "outPath" ] // {{ path = x.outPath; }};
        in {{
          one = plain (builtins.fetchGit {{ url = "{url}"; rev = "{first}"; ref = "main"; }});
          main = plain (builtins.fetchGit {{ url = "{url}"; ref = "main"; }});
        }}"#
    );
    let ours = eval_ours(&cache, &expr);
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    let theirs = eval_nix(&expr);
    let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    assert_eq!(ours, serde_json::from_str::<serde_json::Value>(&theirs).unwrap());
    assert_eq!((ours["one"]["revCount"].as_i64(), ours["main"]["revCount"].as_i64()), (Some(1), Some(2)));

    // The same repository as a flake input, locked by Nix 2.8. The source
    // leaves the store and ndeploy starts from an empty cache: it fetches
    // from the server itself.
    let main = tmp.path().join("main");
    write_file(
        &main.join("flake.nix"),
        format!(
            r#"{{ inputs.r = {{ url = "git://127.0.0.1:{}/r.git?ref=main"; flake = false; }};
                outputs = {{ self, r }}: {{ info = builtins.removeAttrs r [ "outPath" ] // {{ files = builtins.attrNames (builtins.readDir r); }}; }}; }}"#,
            daemon.port
        ),
    );
    run_ok(nix_flakes("nix").args(["flake", "lock"]).arg(format!("path:{}", main.display())));
    let flake = format!("path:{}#info", main.display());
    forget_store_path(ours["main"]["path"].as_str().unwrap());
    let flake_cache = tmp.path().join("flake-cache");
    let ours_flake = run(nd(&flake_cache).args(["instantiate", "--eval", "--strict", "--json"]).arg(&flake));
    assert!(ours_flake.status.success(), "{}", String::from_utf8_lossy(&ours_flake.stderr));
    let theirs_flake = run_ok(nix_flakes("nix").args(["eval", "--json"]).arg(&flake));
    let ours_flake: serde_json::Value = serde_json::from_slice(&ours_flake.stdout).unwrap();
    assert_eq!(ours_flake, serde_json::from_slice::<serde_json::Value>(&theirs_flake).unwrap());
    assert_eq!((ours_flake["revCount"].as_i64(), &ours_flake["files"]), (Some(2), &serde_json::json!(["a.txt", "b.txt"])));

    // The locked commit is in ndeploy's cache repository: offline works.
    drop(daemon);
    let one = format!(r#"(builtins.fetchGit {{ url = "{url}"; rev = "{first}"; ref = "main"; }}).narHash"#);
    let again = run(nd(&cache).env("NDEPLOY_OFFLINE", "1").args(["instantiate", "--eval", "-E", &one]));
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), format!("{}", ours["one"]["narHash"]));
}
