//! Signing keys, path signatures and narinfo files against C++ Nix: keys from
//! `nix-store --generate-binary-cache-key`, signatures from `nix store sign`,
//! `nix store verify` on a binary cache carrying our signatures, and narinfo
//! files written by `nix copy --to file://...`.

use std::path::Path;
use std::process::Command;

use ndeploy_store::hash::{Hash, HashAlgo};
use ndeploy_store::narinfo::{NarInfo, narinfo_file_name};
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::signature::{PublicKey, PublicKeys, SecretKey};
use ndeploy_store::store_path::StoreDir;

use crate::paths::{nix_path_info, unique};
use crate::support::{run, run_str, write_file};

/// A Nix command with no substituters (no network) and the `nix` command enabled.
fn nix_cmd(tool: &str) -> Command {
    let mut c = Command::new(tool);
    c.env("NIX_CONFIG", "sandbox = false\nsubstituters =\nexperimental-features = nix-command");
    c
}

fn store() -> StoreDir {
    StoreDir::default()
}

/// A key pair from `nix-store --generate-binary-cache-key NAME`: (secret file, public file).
fn nix_keys(dir: &Path, name: &str) -> (String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let (sk, pk) = (dir.join(format!("{name}.sk")), dir.join(format!("{name}.pk")));
    run_str(nix_cmd("nix-store").args(["--generate-binary-cache-key", name]).arg(&sk).arg(&pk));
    (std::fs::read_to_string(&sk).unwrap(), std::fs::read_to_string(&pk).unwrap())
}

fn key_name(tag: &str) -> String {
    unique(tag).replace(' ', "-")
}

/// An input-addressed (not content-addressed) path, so signatures matter for it.
fn build_unique(tag: &str) -> String {
    let expr = format!(
        "derivation {{ name = \"sigtest\"; system = builtins.currentSystem; builder = \"/bin/sh\"; \
         args = [\"-c\" \"echo '{}' > $out\"]; }}",
        unique(tag)
    );
    run_str(nix_cmd("nix-build").args(["--no-out-link", "-E", &expr]))
}

fn add_unique(dir: &Path, tag: &str) -> String {
    let file = dir.join(tag);
    write_file(&file, unique(tag));
    run_str(nix_cmd("nix-store").arg("--add").arg(&file))
}

fn nix_sign(key_file: &Path, path: &str) {
    run_str(nix_cmd("nix").args(["store", "sign", "-k"]).arg(key_file).arg(path));
}

/// The one signature on `info` made with key `name`.
fn sig_by(info: &PathInfo, name: &str) -> String {
    let sigs: Vec<&String> = info.sigs.iter().filter(|s| s.starts_with(&format!("{name}:"))).collect();
    assert_eq!(sigs.len(), 1, "signatures by {name}: {:?}", info.sigs);
    sigs[0].clone()
}

#[test]
fn nix_keys_and_signatures_match_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let name = key_name("nixkey");
    let (sk_text, pk_text) = nix_keys(tmp.path(), &name);
    let sk = SecretKey::parse(&sk_text).unwrap();
    let pk = PublicKey::parse(&pk_text).unwrap();
    assert_eq!(sk.to_key_file_string(), sk_text, "secret key prints back byte for byte");
    assert_eq!(pk.to_string(), pk_text);
    assert_eq!(sk.to_public_key(), pk);
    assert!(!format!("{sk:?}").contains(sk_text.split(':').nth(1).unwrap()));

    for path in [add_unique(tmp.path(), "signed-ca"), build_unique("signed-ia")] {
        nix_sign(&tmp.path().join(format!("{name}.sk")), &path);
        let info = nix_path_info(&path);
        let nix_sig = sig_by(&info, &name);
        // ed25519 is deterministic: our signature of our fingerprint is Nix's signature.
        assert_eq!(sk.sign(info.fingerprint(&store()).unwrap().as_bytes()).to_string(), nix_sig, "{path}");
        let keys: PublicKeys = [pk.clone()].into_iter().collect();
        assert!(info.check_signature(&store(), &keys, &nix_sig).unwrap());

        // Tampered fingerprints do not verify.
        let mut t = info.clone();
        t.nar_size += 1;
        assert!(!t.check_signature(&store(), &keys, &nix_sig).unwrap());
        let mut t = info.clone();
        t.nar_hash = Hash::digest(HashAlgo::Sha256, "other");
        assert!(!t.check_signature(&store(), &keys, &nix_sig).unwrap());
        let mut t = info.clone();
        t.references.insert(store().parse(&path).unwrap());
        assert!(!t.check_signature(&store(), &keys, &nix_sig).unwrap());
        assert!(!info.check_signature(&StoreDir::new("/other/store"), &keys, &nix_sig).unwrap());

        // Another key under the same name does not verify; an unknown name is not trusted.
        let (_, other_pk) = nix_keys(&tmp.path().join("other"), &name);
        let wrong: PublicKeys = [PublicKey::parse(&other_pk).unwrap()].into_iter().collect();
        assert!(!info.check_signature(&store(), &wrong, &nix_sig).unwrap());
        assert!(!info.check_signature(&store(), &PublicKeys::new(), &nix_sig).unwrap());

        // Signature counting: content-addressed paths need none.
        let expected_wrong = if info.ca.is_some() { usize::MAX } else { 0 };
        assert_eq!(info.check_signatures(&store(), &wrong), expected_wrong, "{path}");
        assert!(info.check_signatures(&store(), &keys) >= 1);
    }
}

#[test]
fn nix_signs_with_our_generated_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SecretKey::generate(&key_name("ourkey")).unwrap();
    let key_file = tmp.path().join("our.sk");
    write_file(&key_file, key.to_key_file_string());
    let path = build_unique("our-key");
    nix_sign(&key_file, &path);
    let info = nix_path_info(&path);
    let expected = key.sign(info.fingerprint(&store()).unwrap().as_bytes()).to_string();
    assert_eq!(sig_by(&info, key.name()), expected);
}

/// `nix store verify --store file://CACHE --trusted-public-keys KEYS PATH`.
fn nix_verify(cache: &Path, keys: &str, path: &str) -> std::process::Output {
    let store_url = format!("file://{}", cache.display());
    run(nix_cmd("nix").args(["store", "verify", "--store", &store_url, "--trusted-public-keys", keys, path]))
}

#[test]
fn nix_store_verify_accepts_our_signatures() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let path = build_unique("verify");
    run_str(nix_cmd("nix").args(["copy", "--to", &format!("file://{}", cache.display()), &path]));
    let narinfo_file = cache.join(narinfo_file_name(&store().parse(&path).unwrap()));
    let original = std::fs::read_to_string(&narinfo_file).unwrap();
    let ni = NarInfo::parse(&store(), &original).unwrap();
    assert!(ni.info.sigs.is_empty());

    let key = SecretKey::generate(&key_name("verify")).unwrap();
    let pk = key.to_public_key().to_string();
    let impostor = SecretKey::generate(key.name()).unwrap().to_public_key().to_string();

    // Unsigned: untrusted.
    assert!(!nix_verify(&cache, &pk, &path).status.success());

    let mut signed = ni.clone();
    signed.info.sign(&store(), &key).unwrap();
    std::fs::write(&narinfo_file, signed.to_text(&store())).unwrap();
    let ok = nix_verify(&cache, &pk, &path);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let wrong = nix_verify(&cache, &impostor, &path);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("untrusted"));

    // A signature of a tampered fingerprint is refused by Nix and by us.
    let mut tampered = ni.clone();
    let mut forged = ni.info.clone();
    forged.nar_size += 1;
    tampered.info.sigs.insert(key.sign(forged.fingerprint(&store()).unwrap().as_bytes()).to_string());
    std::fs::write(&narinfo_file, tampered.to_text(&store())).unwrap();
    assert!(!nix_verify(&cache, &pk, &path).status.success());
    let keys = PublicKeys::parse_list(&pk).unwrap();
    assert_eq!(tampered.info.check_signatures(&store(), &keys), 0);
    assert_eq!(signed.info.check_signatures(&store(), &keys), 1);
}

/// Every narinfo in `cache` round-trips byte for byte and agrees with the
/// local store's path info and with the NAR file it points to.
fn check_cache(cache: &Path, keys: &PublicKeys) -> usize {
    let mut seen = 0;
    for entry in std::fs::read_dir(cache).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_none_or(|e| e != "narinfo") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&file).unwrap();
        let ni = NarInfo::parse(&store(), &text).unwrap();
        assert_eq!(ni.to_text(&store()), text, "{}", file.display());
        assert_eq!(file.file_name().unwrap().to_str().unwrap(), narinfo_file_name(&ni.info.path));

        let local = nix_path_info(&store().display(&ni.info.path));
        assert_eq!(ni.info.nar_hash, local.nar_hash);
        assert_eq!(ni.info.nar_size, local.nar_size);
        assert_eq!(ni.info.references, local.references);
        assert_eq!(ni.info.deriver, local.deriver);
        assert_eq!(ni.info.ca, local.ca);
        assert_eq!(ni.info.sigs, local.sigs);
        for sig in &ni.info.sigs {
            if keys.get(sig.split(':').next().unwrap()).is_some() {
                assert!(ni.info.check_signature(&store(), keys, sig).unwrap(), "{sig}");
            }
        }
        if ni.info.ca.is_some() {
            assert!(ni.info.is_content_addressed(&store()));
        }

        let nar_file = std::fs::read(cache.join(&ni.url)).unwrap();
        assert_eq!(ni.file_size, Some(nar_file.len() as u64));
        assert_eq!(ni.file_hash, Some(Hash::digest(HashAlgo::Sha256, &nar_file)));
        if ni.compression() == "none" {
            assert_eq!(Hash::digest(HashAlgo::Sha256, &nar_file), ni.info.nar_hash);
        }
    }
    seen
}

#[test]
fn narinfos_from_nix_copy_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let name = key_name("cache");
    let (_, pk) = nix_keys(tmp.path(), &name);
    let keys = PublicKeys::parse_list(&pk).unwrap();

    let built = build_unique("narinfo");
    let added = add_unique(tmp.path(), "narinfo-added");
    let text = unique("narinfo-text");
    let expr = format!("builtins.toFile \"uses\" \"${{builtins.toFile \"used\" \"{text}\"}} {text}\"");
    let to_file = run_str(nix_cmd("nix-instantiate").args(["--read-write-mode", "--eval", "-E", &expr]));
    let to_file = to_file.trim_matches('"').to_owned();
    for p in [&built, &to_file] {
        nix_sign(&tmp.path().join(format!("{name}.sk")), p);
    }

    for compression in ["xz", "none", "bzip2"] {
        let cache = tmp.path().join(format!("cache-{compression}"));
        let url = format!("file://{}?compression={compression}", cache.display());
        run_str(nix_cmd("nix").args(["copy", "--to", &url, &built, &added, &to_file]));
        // The three paths plus the one `to_file` refers to.
        assert_eq!(check_cache(&cache, &keys), 4, "{compression}");
    }
}
