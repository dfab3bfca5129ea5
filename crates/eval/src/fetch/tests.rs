//! The fetcher with an injected in-memory downloader: store paths, cache
//! reuse, hash mismatches, offline mode, and evaluation through `FetchIO`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ndeploy_store::hash::{Hash, HashAlgo};

use super::*;

/// Serves fixed bodies and counts requests.
#[derive(Default)]
struct MemDownloader {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    calls: Arc<AtomicUsize>,
}

impl Downloader for MemDownloader {
    fn download(&self, url: &str, out: &mut dyn Write) -> Result<u64, String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let files = self.files.lock().unwrap();
        let body = files.get(url).ok_or_else(|| "HTTP error 404 (Not Found)".to_string())?;
        out.write_all(body).map_err(|e| e.to_string())?;
        Ok(body.len() as u64)
    }
}

fn tarball() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, mode) in [("top/default.nix", &b"{ x = 1; }"[..], 0o644), ("top/bin/x", b"#!", 0o755)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        b.append_data(&mut h, name, data).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

fn fetcher(cache: &std::path::Path) -> (Arc<Fetcher>, Arc<AtomicUsize>) {
    let d = MemDownloader::default();
    d.files.lock().unwrap().insert("http://h/t.tar.gz".into(), tarball());
    d.files.lock().unwrap().insert("http://h/f.txt".into(), b"flat\n".to_vec());
    let calls = d.calls.clone();
    (Arc::new(Fetcher::new("/nix/store", cache.to_path_buf(), Box::new(d))), calls)
}

#[test]
fn tarball_is_cached_under_its_store_path_and_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let (f, calls) = fetcher(tmp.path());
    let first = f.fetch_tarball("http://h/t.tar.gz", None, "source").unwrap();
    assert!(first.store_path.starts_with("/nix/store/") && first.store_path.ends_with("-source"));
    let base = first.store_path.rsplit('/').next().unwrap();
    assert_eq!(first.real_path, tmp.path().join("sources").join(base));
    assert!(first.real_path.join("default.nix").exists());
    // With the hash known, the cache entry is used without downloading.
    let (f2, calls2) = fetcher(tmp.path());
    let again = f2.fetch_tarball("http://h/t.tar.gz", Some(&first.nar_hash), "source").unwrap();
    assert_eq!(again.store_path, first.store_path);
    assert_eq!((calls.load(Ordering::Relaxed), calls2.load(Ordering::Relaxed)), (1, 0));
    // Nothing is left in the temporary directory.
    assert_eq!(std::fs::read_dir(tmp.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn mismatches_and_offline_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (f, _) = fetcher(tmp.path());
    let wrong = Hash::digest(HashAlgo::Sha256, b"not it");
    let e = f.fetch_file("http://h/f.txt", Some(&wrong), "f.txt").unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("hash mismatch in file downloaded from 'http://h/f.txt':"), "{msg}");
    assert!(msg.contains(&wrong.encode(ndeploy_store::hash::HashEncoding::Nix32, true)), "{msg}");
    let e = f.fetch_tarball("http://h/missing.tar.gz", None, "source").unwrap_err();
    assert_eq!(e.to_string(), "unable to download 'http://h/missing.tar.gz': HTTP error 404 (Not Found)");
    let mut off = Fetcher::new("/nix/store", tmp.path().to_path_buf(), Box::new(MemDownloader::default()));
    off.set_offline(true);
    let e = off.fetch_tarball("http://h/t.tar.gz", Some(&wrong), "source").unwrap_err();
    assert!(matches!(e, FetchError::Offline { .. }), "{e}");
    // A locked input whose contents differ names both NAR hashes.
    let mut input = Input::default();
    input.set("type", AttrValue::Str("tarball".into()));
    input.set("url", AttrValue::Str("http://h/t.tar.gz".into()));
    input.set("narHash", AttrValue::Str(wrong.to_sri()));
    let e = f.fetch_input(&input).unwrap_err().to_string();
    assert!(e.starts_with("NAR hash mismatch in input 'http://h/t.tar.gz?narHash="), "{e}");
    assert!(e.contains(&format!("expected '{}'", wrong.to_sri())), "{e}");
}

#[test]
fn evaluation_reads_fetched_trees_through_fetch_io() {
    let tmp = tempfile::tempdir().unwrap();
    let (f, _) = fetcher(tmp.path());
    let io = FetchIO::new(Arc::new(crate::io::RealIO), f);
    let ev = crate::Evaluator::new(crate::EvalConfig::default(), Arc::new(io));
    let v = ev
        .eval_str(r#"let src = builtins.fetchTarball "http://h/t.tar.gz"; in (import "${src}/default.nix").x + (if builtins.pathExists "${src}/bin/x" then 1 else 0)"#)
        .unwrap();
    assert!(matches!(v, crate::Value::Int(2)), "{v:?}");
}

#[test]
fn git_archive_inputs_download_the_forge_tarball() {
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let tmp = tempfile::tempdir().unwrap();
    let d = MemDownloader::default();
    for url in [
        format!("https://api.github.com/repos/o/r/tarball/{rev}"),
        format!("https://gitlab.example.org/api/v4/projects/o%2Fr/repository/archive.tar.gz?sha={rev}"),
        format!("https://git.sr.ht/~o/r/archive/{rev}.tar.gz"),
    ] {
        d.files.lock().unwrap().insert(url, tarball());
    }
    let f = Fetcher::new("/nix/store", tmp.path().to_path_buf(), Box::new(d));
    let mut hashes = Vec::new();
    for url in [
        format!("github:o/r/{rev}?lastModified=7"),
        format!("gitlab:o/r/{rev}?host=gitlab.example.org"),
        format!("sourcehut:~o/r/{rev}"),
    ] {
        let input = parse_url(&url).unwrap();
        let t = f.fetch_input(&input).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(t.rev.as_deref(), Some(rev));
        hashes.push(t.fetched.nar_hash);
        if url.starts_with("github") {
            assert_eq!(t.last_modified, Some(7));
        }
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]));
    let mut unlocked = parse_url("github:o/r").unwrap();
    assert!(f.fetch_input(&unlocked).unwrap_err().to_string().contains("is not locked"));
    unlocked.set("rev", AttrValue::Str(rev.into()));
    unlocked.set("host", AttrValue::Str("evil/host".into()));
    assert!(f.fetch_input(&unlocked).unwrap_err().to_string().contains("invalid host"));
}

#[test]
fn unlocked_downloads_are_reused_for_the_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let (f1, calls1) = fetcher(tmp.path());
    let a = f1.fetch_tarball("http://h/t.tar.gz", None, "source").unwrap();
    let (f2, calls2) = fetcher(tmp.path());
    let b = f2.fetch_tarball("http://h/t.tar.gz", None, "source").unwrap();
    assert_eq!((a.store_path.as_str(), calls1.load(Ordering::Relaxed), calls2.load(Ordering::Relaxed)), (b.store_path.as_str(), 1, 0));
    // Expired: downloaded again.
    let d = MemDownloader::default();
    d.files.lock().unwrap().insert("http://h/t.tar.gz".into(), tarball());
    let calls3 = d.calls.clone();
    let mut f3 = Fetcher::new("/nix/store", tmp.path().to_path_buf(), Box::new(d));
    f3.set_tarball_ttl(0);
    f3.fetch_tarball("http://h/t.tar.gz", None, "source").unwrap();
    assert_eq!(calls3.load(Ordering::Relaxed), 1);
    // Offline: any age is fine; never downloaded is an error naming the URL.
    let mut f4 = Fetcher::new("/nix/store", tmp.path().to_path_buf(), Box::new(MemDownloader::default()));
    f4.set_offline(true);
    f4.set_tarball_ttl(0);
    assert_eq!(f4.fetch_tarball("http://h/t.tar.gz", None, "source").unwrap().store_path, a.store_path);
    let e = f4.fetch_file("http://h/other.txt", None, "other.txt").unwrap_err().to_string();
    assert!(e.starts_with("cannot fetch 'http://h/other.txt'") && e.contains("offline"), "{e}");
}
