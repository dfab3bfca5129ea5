//! Build script: embeds the repository's `nix/` directory (ndeploy's module
//! library and fleet helpers, without `tests/`) into the crate, so the binary
//! can materialise it wherever it runs. Writes `$OUT_DIR/nix_files.rs`, a
//! sorted `&[(relative path, executable, contents)]` of `include_bytes!`s.

use std::path::{Path, PathBuf};

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf, bool)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(rel) = path.strip_prefix(root) else { continue };
        let rel = rel.to_string_lossy().into_owned();
        if rel == "tests" {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_dir() {
            walk(root, &path, out);
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            out.push((rel, path, meta.permissions().mode() & 0o111 != 0));
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.join("../../nix");
    let root = root.canonicalize().unwrap_or(root);
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files.sort();
    let mut code = String::from("&[\n");
    for (rel, path, exec) in &files {
        code.push_str(&format!("    ({rel:?}, {exec}, include_bytes!({:?}) as &[u8]),\n", path.display().to_string()));
    }
    code.push_str("]\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("nix_files.rs");
    if let Err(e) = std::fs::write(&out, code) {
        panic!("cannot write {}: {e}", out.display());
    }
}
