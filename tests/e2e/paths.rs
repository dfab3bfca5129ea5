//! Store path computations and content addresses against C++ Nix: paths that
//! `nix-store --add`, `--add-fixed`, `--print-fixed-path` and `builtins.toFile`
//! produce must equal the ones `ndeploy_store` computes, and the `ca` field Nix
//! records must parse, print back identically and give the path again.

use std::collections::BTreeSet;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use ndeploy_store::content_address::ContentAddress;
use ndeploy_store::hash::{Hash, HashAlgo};
use ndeploy_store::nar::hash_path;
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::{FileIngestionMethod, StoreDir, StorePath};

use crate::support::{nix, run, run_str, write_file};

/// Every character Nix allows in a store path name.
const LEGAL_CHARS: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+-._?=";

fn store() -> StoreDir {
    StoreDir::default()
}

/// Content that no earlier test run has put in the store.
pub(crate) fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{tag} {nanos} {}", std::process::id())
}

/// `nix path-info --json --sigs PATH` as a [`PathInfo`].
pub(crate) fn nix_path_info(path: &str) -> PathInfo {
    let out = run_str(nix("nix").args([
        "--extra-experimental-features",
        "nix-command",
        "path-info",
        "--json",
        "--sigs",
        path,
    ]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let j = &json[0];
    assert_eq!(j["path"], path);
    let dir = store();
    let mut info = PathInfo::new(
        dir.parse(path).unwrap(),
        Hash::parse(j["narHash"].as_str().unwrap(), Some(HashAlgo::Sha256)).unwrap(),
        j["narSize"].as_u64().unwrap(),
    );
    let strs = |key: &str| -> Vec<String> {
        j[key].as_array().map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
    };
    info.references = strs("references").iter().map(|r| dir.parse(r).unwrap()).collect();
    info.sigs = strs("signatures").into_iter().collect();
    info.deriver = j["deriver"].as_str().map(|d| dir.parse(d).unwrap());
    info.registration_time = j["registrationTime"].as_u64().unwrap_or(0);
    info.ultimate = j["ultimate"].as_bool().unwrap_or(false);
    if let Some(ca) = j["ca"].as_str() {
        let parsed = ContentAddress::parse(ca).unwrap();
        assert_eq!(parsed.to_string(), ca, "content address prints back as Nix wrote it");
        info.ca = Some(parsed);
    }
    info
}

/// The hash of PATH's NAR serialisation by our `nar` module, checked against
/// `nix-hash --type ALGO --base32 PATH`.
fn nar_hash(algo: HashAlgo, path: &Path) -> Hash {
    let (ours, _size) = hash_path(algo, path).unwrap();
    let out = run_str(nix("nix-hash").args(["--type", algo.name(), "--base32"]).arg(path));
    assert_eq!(ours, Hash::parse(&out, Some(algo)).unwrap(), "NAR hash of {}", path.display());
    ours
}

fn add(args: &[&str], path: &Path) -> String {
    run_str(nix("nix-store").args(args).arg(path))
}

fn file_name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

/// Check that the path Nix recorded is content-addressed by its `ca` as we compute it.
fn assert_ca_round_trip(path: &str) {
    let info = nix_path_info(path);
    assert!(info.ca.is_some(), "{path} has a content address");
    assert!(info.is_content_addressed(&store()), "{path}: {:?}", info.ca);
}

/// A variety of file system objects: files (empty, executable), symlinks, nested directories.
fn make_objects(root: &Path) -> Vec<std::path::PathBuf> {
    let tag = unique("obj");
    let file = root.join("plain.txt");
    write_file(&file, format!("hello {tag}\n"));
    let empty = root.join("empty");
    write_file(&empty, "");
    let exe = root.join("run.sh");
    write_file(&exe, format!("#!/bin/sh\necho {tag}\n"));
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = root.join("link");
    symlink(format!("target-{}", tag.replace(' ', "_")), &link).unwrap();
    let dir = root.join("tree");
    write_file(&dir.join("a/b/c.txt"), &tag);
    write_file(&dir.join("a/z"), "z");
    write_file(&dir.join("B"), "upper case sorts first");
    let tool = dir.join("bin/tool");
    write_file(&tool, "#!/bin/sh\n");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(dir.join("empty-dir")).unwrap();
    symlink("../a/b/c.txt", dir.join("bin/link")).unwrap();
    vec![file, empty, exe, link, dir]
}

#[test]
fn nix_store_add_matches_recursive_sha256_paths() {
    let tmp = tempfile::tempdir().unwrap();
    for obj in make_objects(tmp.path()) {
        let nix_path = add(&["--add"], &obj);
        let ours = store()
            .make_fixed_output_path(
                FileIngestionMethod::Recursive,
                &nar_hash(HashAlgo::Sha256, &obj),
                file_name(&obj),
                [],
                false,
            )
            .unwrap();
        assert_eq!(store().display(&ours), nix_path, "{}", obj.display());
        assert_ca_round_trip(&nix_path);
        let (_, nar_size) = hash_path(HashAlgo::Sha256, &obj).unwrap();
        assert_eq!(nix_path_info(&nix_path).nar_size, nar_size);
    }
}

#[test]
fn add_fixed_flat_matches_for_every_algorithm() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("fixed-flat");
    let contents = unique("flat");
    write_file(&file, &contents);
    for algo in HashAlgo::ALL {
        let nix_path = add(&["--add-fixed", algo.name()], &file);
        let hash = Hash::digest(algo, &contents);
        let ours = store().make_fixed_output_path(FileIngestionMethod::Flat, &hash, "fixed-flat", [], false).unwrap();
        assert_eq!(store().display(&ours), nix_path, "{algo}");
        // `--print-fixed-path` computes without adding; it must agree too.
        let printed =
            run_str(nix("nix-store").args(["--print-fixed-path", algo.name(), &hash.to_nix32(), "fixed-flat"]));
        assert_eq!(printed, nix_path, "{algo}");
        assert_ca_round_trip(&nix_path);
        let info = nix_path_info(&nix_path);
        assert_eq!(info.ca, Some(ContentAddress::Fixed { method: FileIngestionMethod::Flat, hash }));
    }
}

#[test]
fn add_fixed_recursive_matches_for_sha256_and_sha1() {
    let tmp = tempfile::tempdir().unwrap();
    for obj in make_objects(tmp.path()) {
        for algo in [HashAlgo::Sha256, HashAlgo::Sha1] {
            let nix_path = add(&["--add-fixed", "--recursive", algo.name()], &obj);
            let hash = nar_hash(algo, &obj);
            let ours = store()
                .make_fixed_output_path(FileIngestionMethod::Recursive, &hash, file_name(&obj), [], false)
                .unwrap();
            assert_eq!(store().display(&ours), nix_path, "{algo} {}", obj.display());
            assert_ca_round_trip(&nix_path);
        }
    }
}

#[test]
fn fixed_output_derivation_outputs_match() {
    let tmp = tempfile::tempdir().unwrap();
    let contents = unique("fod");
    let file = tmp.path().join("contents");
    write_file(&file, &contents);
    let cases = [
        (FileIngestionMethod::Flat, HashAlgo::Md5),
        (FileIngestionMethod::Flat, HashAlgo::Sha256),
        (FileIngestionMethod::Flat, HashAlgo::Sha512),
        (FileIngestionMethod::Recursive, HashAlgo::Sha1),
        (FileIngestionMethod::Recursive, HashAlgo::Sha256),
    ];
    for (method, algo) in cases {
        let (hash, mode) = match method {
            FileIngestionMethod::Flat => (Hash::digest(algo, &contents), "flat"),
            FileIngestionMethod::Recursive => (hash_path(algo, &file).unwrap().0, "recursive"),
        };
        let expr = format!(
            "derivation {{ name = \"fod\"; system = builtins.currentSystem; builder = \"/bin/sh\"; \
             args = [\"-c\" \"printf %s '{}' > $out\"]; outputHashMode = \"{mode}\"; \
             outputHashAlgo = \"{algo}\"; outputHash = \"{}\"; }}",
            contents,
            hash.to_base16()
        );
        let out = run_str(nix("nix-build").args(["--no-out-link", "--option", "substituters", "", "-E", &expr]));
        let ours = store().make_fixed_output_path(method, &hash, "fod", [], false).unwrap();
        assert_eq!(store().display(&ours), out, "{mode} {algo}");
        let info = nix_path_info(&out);
        assert_eq!(info.ca, Some(ContentAddress::Fixed { method, hash }), "{mode} {algo}");
        assert!(info.is_content_addressed(&store()));
    }
}

/// `builtins.toFile NAME TEXT` evaluated by Nix (without writing to the store).
fn nix_to_file(expr: &str) -> String {
    let out = run_str(nix("nix-instantiate").args(["--eval", "-E", expr]));
    out.trim_matches('"').to_owned()
}

/// A Nix string literal for `s` (which must not need escapes beyond these).
fn nix_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$"))
}

#[test]
fn to_file_matches_text_paths() {
    let dir = store();
    let text = unique("text");
    let nix_a = nix_to_file(&format!("builtins.toFile \"a\" {}", nix_str(&text)));
    let a = dir.make_text_path("a", &Hash::digest(HashAlgo::Sha256, &text), []).unwrap();
    assert_eq!(dir.display(&a), nix_a);

    // A reference to another toFile path: the text contains its absolute path.
    let b_text = format!("{text} b");
    let nix_c = nix_to_file(&format!(
        "builtins.toFile \"c\" \"see ${{builtins.toFile \"b\" {}}} and ${{builtins.toFile \"a\" {}}}\"",
        nix_str(&b_text),
        nix_str(&text)
    ));
    let b = dir.make_text_path("b", &Hash::digest(HashAlgo::Sha256, &b_text), []).unwrap();
    let c_text = format!("see {} and {}", dir.display(&b), dir.display(&a));
    let c = dir.make_text_path("c", &Hash::digest(HashAlgo::Sha256, &c_text), [&a, &b]).unwrap();
    assert_eq!(dir.display(&c), nix_c);
    // Reference order does not matter.
    assert_eq!(dir.make_text_path("c", &Hash::digest(HashAlgo::Sha256, &c_text), [&b, &a]).unwrap(), c);
}

#[test]
fn to_file_written_paths_carry_text_content_addresses() {
    let text = unique("written");
    let expr = format!("builtins.toFile \"w\" \"${{builtins.toFile \"v\" {}}}\"", nix_str(&text));
    let out = run_str(nix("nix-instantiate").args(["--read-write-mode", "--eval", "-E", &expr]));
    let path = out.trim_matches('"');
    let info = nix_path_info(path);
    assert!(matches!(info.ca, Some(ContentAddress::Text(_))), "{:?}", info.ca);
    assert_eq!(info.references.len(), 1);
    assert!(info.is_content_addressed(&store()));
    // Dropping the reference breaks the claim, as it would for Nix.
    let mut forged = info.clone();
    forged.references = BTreeSet::new();
    assert!(!forged.is_content_addressed(&store()));
}

/// Names Nix 2.8 accepts: every legal character, the 211-character limit, and
/// names starting with '.' (even `.` and `..`; later Nix versions reject those).
fn legal_names() -> Vec<String> {
    let all: String = LEGAL_CHARS.chars().cycle().take(211).collect();
    let mut names = vec![all, "x".repeat(211), "a".into(), ".hidden".into(), ".".into(), "..".into(), "-".into()];
    names.extend(LEGAL_CHARS.chars().map(|c| format!("n{c}")));
    names
}

fn illegal_names() -> Vec<String> {
    let mut names = vec!["x".repeat(212), "a b".into(), "é".into(), "a/b".into(), "tab\t".into()];
    names.extend("!\"#%&'()*,:;<>@[]^`{|}~".chars().map(|c| format!("n{c}")));
    names
}

#[test]
fn names_at_the_limits_agree_with_nix() {
    let dir = store();
    let hash = Hash::digest(HashAlgo::Sha256, "limits");
    let text_hash = Hash::digest(HashAlgo::Sha256, "x");
    for name in legal_names() {
        let ours = dir.make_text_path(&name, &text_hash, []).unwrap();
        let to_file = nix_to_file(&format!("builtins.toFile {} \"x\"", nix_str(&name)));
        assert_eq!(dir.display(&ours), to_file, "{name}");
        // Parsing the path Nix printed gives the same name back.
        assert_eq!(dir.parse(&to_file).unwrap().name(), name);
        // nix-store takes an argument starting with '-' for a flag (it has no `--`).
        if !name.starts_with('-') {
            let ours = dir.make_fixed_output_path(FileIngestionMethod::Flat, &hash, &name, [], false).unwrap();
            let printed = run_str(nix("nix-store").args(["--print-fixed-path", "sha256", &hash.to_nix32(), &name]));
            assert_eq!(dir.display(&ours), printed, "{name}");
        }
    }
    for name in illegal_names() {
        assert!(dir.make_text_path(&name, &text_hash, []).is_err(), "{name:?} accepted by us");
        let out =
            run(nix("nix-instantiate").args(["--eval", "-E", &format!("builtins.toFile {} \"x\"", nix_str(&name))]));
        assert!(!out.status.success(), "{name:?} accepted by Nix");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("illegal character") || err.contains("longer than 211"), "{name:?}: {err}");
    }
    // The empty name: Nix refuses to print such a path, and so do we.
    assert!(dir.make_text_path("", &text_hash, []).is_err());
    assert!(!run(nix("nix-store").args(["--print-fixed-path", "sha256", &hash.to_nix32(), ""])).status.success());
}

#[test]
fn nix_store_add_with_limit_names() {
    let tmp = tempfile::tempdir().unwrap();
    let contents = unique("named");
    let all: String = LEGAL_CHARS.chars().cycle().take(211).collect();
    for name in [all.as_str(), ".hidden", "with?and=and+"] {
        let file = tmp.path().join(name);
        write_file(&file, &contents);
        let nix_path = add(&["--add"], &file);
        let ours = store()
            .make_fixed_output_path(FileIngestionMethod::Recursive, &nar_hash(HashAlgo::Sha256, &file), name, [], false)
            .unwrap();
        assert_eq!(store().display(&ours), nix_path);
    }
    for name in ["x".repeat(212), "a b".to_owned(), "n@".to_owned()] {
        let file = tmp.path().join(&name);
        write_file(&file, &contents);
        let out = run(nix("nix-store").arg("--add").arg(&file));
        assert!(!out.status.success(), "{name} accepted by nix-store --add");
        let hash = nar_hash(HashAlgo::Sha256, &file);
        assert!(store().make_fixed_output_path(FileIngestionMethod::Recursive, &hash, &name, [], false).is_err());
    }
}

/// StorePath is used by the other tests; keep its parse of what Nix printed honest.
#[test]
fn parses_paths_nix_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("p");
    write_file(&file, unique("parse"));
    let nix_path = add(&["--add"], &file);
    let parsed: StorePath = store().parse(&nix_path).unwrap();
    assert_eq!(store().display(&parsed), nix_path);
    assert_eq!(
        run_str(nix("nix-store").args(["--query", "--hash"]).arg(&nix_path)),
        nix_path_info(&nix_path).nar_hash.to_string()
    );
}
