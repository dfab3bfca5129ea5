//! NAR hash of a local tree through a path filter (Nix's `addToStore` with a
//! `PathFilter`), plus the newest mtime seen (`path` inputs'
//! `lastModified`).
//!
//! Design: the tree is serialised with the store crate's `NarEncoder` into a
//! SHA-256 `Hasher`; nothing is written. The filter sees paths relative to
//! the root (`a/b.nix`, the root is `""`); a rejected directory is skipped
//! whole. Symlinks are never followed; a regular file is executable when its
//! owner-execute bit is set (what NAR records). Depth is bounded, so a
//! pathological tree is an error, not a stack overflow.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use ndeploy_store::hash::{Hash, HashAlgo, Hasher};
use ndeploy_store::nar::encoder::NarEncoder;

use super::{FetchError, FetchResult, io_err};

const MAX_DEPTH: usize = 2048;

/// The SHA-256 NAR hash of `root` restricted to `filter`, and the newest
/// mtime (seconds) of the entries included.
pub fn hash_tree(root: &Path, filter: &dyn Fn(&str) -> bool) -> FetchResult<(Hash, i64)> {
    let mut enc = NarEncoder::new(Hasher::new(HashAlgo::Sha256));
    let mut mtime = 0i64;
    dump(&mut enc, root, "", filter, &mut mtime, 0)?;
    let hasher = enc.finish().map_err(|e| FetchError::Input(format!("hashing '{}': {e}", root.display())))?;
    Ok((hasher.finish(), mtime))
}

fn enc_err(path: &Path) -> impl FnOnce(ndeploy_store::nar::encoder::EncodeError) -> FetchError + '_ {
    move |e| FetchError::Input(format!("hashing '{}': {e}", path.display()))
}

fn dump(
    enc: &mut NarEncoder<Hasher>,
    path: &Path,
    rel: &str,
    filter: &dyn Fn(&str) -> bool,
    mtime: &mut i64,
    depth: usize,
) -> FetchResult<()> {
    if depth > MAX_DEPTH {
        return Err(FetchError::Input(format!("'{}' is nested too deeply", path.display())));
    }
    let md = std::fs::symlink_metadata(path).map_err(io_err("getting status of", path))?;
    *mtime = (*mtime).max(md.mtime());
    let ft = md.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(path).map_err(io_err("reading symlink", path))?;
        enc.symlink(target.as_os_str().as_bytes()).map_err(enc_err(path))?;
    } else if ft.is_file() {
        let exec = md.permissions().mode() & 0o100 != 0;
        let mut f = File::open(path).map_err(io_err("opening file", path))?;
        enc.regular(exec, md.len(), &mut f).map_err(enc_err(path))?;
    } else if ft.is_dir() {
        let mut names = Vec::new();
        for e in std::fs::read_dir(path).map_err(io_err("reading directory", path))? {
            let e = e.map_err(io_err("reading directory", path))?;
            names.push(e.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        enc.begin_directory().map_err(enc_err(path))?;
        for name in names {
            let Some(n) = name.to_str() else {
                return Err(FetchError::Input(format!("'{}' contains a file name that is not UTF-8", path.display())));
            };
            let child_rel = if rel.is_empty() { n.to_string() } else { format!("{rel}/{n}") };
            if !filter(&child_rel) {
                continue;
            }
            enc.entry(name.as_bytes()).map_err(enc_err(path))?;
            dump(enc, &path.join(&name), &child_rel, filter, mtime, depth + 1)?;
        }
        enc.end_directory().map_err(enc_err(path))?;
    } else {
        return Err(FetchError::Input(format!("file '{}' has an unsupported type", path.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfiltered_hash_equals_the_store_crates_nar_hash() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/f"), "x").unwrap();
        std::fs::write(d.path().join("g"), "y").unwrap();
        std::os::unix::fs::symlink("g", d.path().join("l")).unwrap();
        let (h, _) = hash_tree(d.path(), &|_| true).unwrap();
        let (h2, _) = ndeploy_store::nar::hash_path(HashAlgo::Sha256, d.path()).unwrap();
        assert_eq!(h, h2);
        let (h3, _) = hash_tree(d.path(), &|r| r != "g").unwrap();
        assert_ne!(h, h3);
    }
}
