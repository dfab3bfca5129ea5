//! Safe tarball unpacking (`fetchTarball`, `tarball` inputs, `git archive`).
//!
//! Design: the compression is recognised by its magic bytes (gzip, xz,
//! bzip2, zstd, or none), never by the URL. Entries are created one by one
//! by this module rather than by the `tar` crate's `unpack`, so every path
//! is checked first: absolute paths, `..` components and paths that would
//! go through a symlink created earlier in the same archive are rejected,
//! like libarchive's secure extraction flags Nix uses. Hard links are copied
//! from their (checked) target. Only what NAR keeps survives: regular files
//! (with the executable bit, other permission bits normalised to 0644/0755),
//! directories (0755) and symlinks; mtimes are not restored. Device nodes
//! and FIFOs are skipped; a PAX/GNU long name is handled by `tar`. Zip
//! archives (recognised by their magic) go through the same checks
//! ([`super::zip`]).

use std::collections::HashSet;
use std::io::{BufRead, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::{FetchError, FetchResult, io_err};

/// The compression of a stream, from its first bytes.
fn decompress<'a, R: BufRead + 'a>(mut r: R) -> std::io::Result<Box<dyn Read + 'a>> {
    let head = r.fill_buf()?.to_vec();
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r))
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::bufread::MultiBzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// The entry's path as safe relative components, or `None` when it is
/// absolute or contains `..`. `.` components are dropped; an empty result
/// is the archive root.
fn safe_relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Unpack the (possibly compressed) tar stream `r` into `dest` (created).
/// A zip archive (by its magic) is unpacked too. `url` names the archive
/// in errors.
pub fn unpack_tarball<R: BufRead>(mut r: R, dest: &Path, url: &str) -> FetchResult<()> {
    std::fs::create_dir_all(dest).map_err(io_err("creating directory", dest))?;
    let unpack_err = |e: std::io::Error| FetchError::Unpack { url: url.to_string(), msg: e.to_string() };
    if r.fill_buf().map_err(unpack_err)?.starts_with(b"PK\x03\x04") {
        let mut data = Vec::new();
        r.read_to_end(&mut data).map_err(unpack_err)?;
        return super::zip::unpack_zip(&data, &mut SafeTree::new(dest, url));
    }
    let stream = decompress(r).map_err(unpack_err)?;
    let mut archive = tar::Archive::new(stream);
    let mut tree = SafeTree::new(dest, url);
    for entry in archive.entries().map_err(unpack_err)? {
        let mut entry = entry.map_err(unpack_err)?;
        let raw = entry.path().map_err(unpack_err)?.into_owned();
        let kind = entry.header().entry_type();
        let Some((rel, target)) = tree.prepare(&raw, kind.is_dir())? else { continue };
        if kind.is_dir() {
            tree.dir(&target)?;
        } else if kind.is_symlink() {
            let link = entry.link_name().map_err(unpack_err)?.ok_or_else(|| tree.unsafe_entry(&raw))?;
            tree.symlink(rel, &target, &link)?;
        } else if kind.is_hard_link() {
            let link = entry.link_name().map_err(unpack_err)?.ok_or_else(|| tree.unsafe_entry(&raw))?;
            let link_rel = safe_relative(&link).ok_or_else(|| tree.unsafe_entry(&raw))?;
            if link_rel.ancestors().any(|a| tree.symlinks.contains(a)) {
                return Err(tree.unsafe_entry(&raw));
            }
            let src = dest.join(&link_rel);
            std::fs::copy(&src, &target).map_err(io_err("copying hard link target", &src))?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous || kind == tar::EntryType::GNUSparse {
            let exec = entry.header().mode().map_err(unpack_err)? & 0o100 != 0;
            tree.file(&target, exec, &mut entry)?;
        }
        // Character/block devices, FIFOs: not representable in a NAR; skipped.
    }
    Ok(())
}

/// The destination of an unpacking: checks every entry's path and creates
/// entries without ever writing through a symlink the archive made.
pub(super) struct SafeTree<'a> {
    dest: &'a Path,
    url: &'a str,
    symlinks: HashSet<PathBuf>,
}

impl<'a> SafeTree<'a> {
    pub(super) fn new(dest: &'a Path, url: &'a str) -> SafeTree<'a> {
        SafeTree { dest, url, symlinks: HashSet::new() }
    }

    pub(super) fn unsafe_entry(&self, raw: &Path) -> FetchError {
        FetchError::UnsafeEntry { url: self.url.to_string(), entry: raw.display().to_string() }
    }

    /// The archive's URL (for errors).
    pub(super) fn url(&self) -> &'a str {
        self.url
    }

    pub(super) fn error(&self, msg: impl Into<String>) -> FetchError {
        FetchError::Unpack { url: self.url.to_string(), msg: msg.into() }
    }

    /// Check `raw` and make room for it: its relative path and the path to
    /// create, or `None` for the archive root. A later entry replaces an
    /// earlier one of the same name.
    pub(super) fn prepare(&mut self, raw: &Path, is_dir: bool) -> FetchResult<Option<(PathBuf, PathBuf)>> {
        let rel = safe_relative(raw).ok_or_else(|| self.unsafe_entry(raw))?;
        if rel.as_os_str().is_empty() {
            return Ok(None);
        }
        // No component of the parent may be a symlink from this archive.
        if rel.ancestors().skip(1).any(|a| self.symlinks.contains(a)) {
            return Err(self.unsafe_entry(raw));
        }
        let target = self.dest.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating directory", parent))?;
        }
        if let Ok(md) = std::fs::symlink_metadata(&target) {
            if md.is_dir() && !is_dir {
                std::fs::remove_dir_all(&target).map_err(io_err("removing", &target))?;
            } else if !md.is_dir() {
                std::fs::remove_file(&target).map_err(io_err("removing", &target))?;
            }
        }
        self.symlinks.remove(&rel);
        Ok(Some((rel, target)))
    }

    pub(super) fn dir(&self, target: &Path) -> FetchResult<()> {
        std::fs::create_dir_all(target).map_err(io_err("creating directory", target))?;
        set_mode(target, 0o755)
    }

    pub(super) fn symlink(&mut self, rel: PathBuf, target: &Path, link: &Path) -> FetchResult<()> {
        std::os::unix::fs::symlink(link, target).map_err(io_err("creating symlink", target))?;
        self.symlinks.insert(rel);
        Ok(())
    }

    pub(super) fn file(&self, target: &Path, exec: bool, contents: &mut dyn Read) -> FetchResult<()> {
        let mut f = std::fs::File::create(target).map_err(io_err("creating file", target))?;
        std::io::copy(contents, &mut f).map_err(|e| self.error(e.to_string()))?;
        drop(f);
        set_mode(target, if exec { 0o755 } else { 0o644 })
    }
}

fn set_mode(p: &Path, mode: u32) -> FetchResult<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io_err("setting permissions of", p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // `append_data` refuses `..`; write the name raw, as a hostile archive would.
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A plain tar of regular files with the given modes.
    fn tar_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn rejects_parent_and_absolute_entries() {
        for bad in ["top/../../evil", "/etc/evil", "../evil"] {
            let d = tempfile::tempdir().unwrap();
            let t = tar_with(&[("top/ok", b"1"), (bad, b"2")]);
            let e = unpack_tarball(&t[..], &d.path().join("u"), "http://x/t.tar").unwrap_err();
            assert!(matches!(e, FetchError::UnsafeEntry { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("unsafe entry"), "{e}");
        }
    }

    #[test]
    fn rejects_writing_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "top/l", "/tmp").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "top/l/x", &b"1"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let e = unpack_tarball(&t[..], &d.path().join("u"), "u").unwrap_err();
        assert!(matches!(e, FetchError::UnsafeEntry { .. }), "{e}");
    }

    #[test]
    fn recognises_every_compression_by_its_magic() {
        use std::io::Write;
        let plain = tar_of(&[("top/f", b"hi", 0o644)]);
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(&plain).unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&plain).unwrap();
        let zst = zstd::stream::encode_all(&plain[..], 3).unwrap();
        for (what, data) in [("plain", plain.clone()), ("bzip2", bz.finish().unwrap()), ("xz", xz.finish().unwrap()), ("zstd", zst)] {
            let d = tempfile::tempdir().unwrap();
            unpack_tarball(&data[..], d.path(), what).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(std::fs::read(d.path().join("top/f")).unwrap(), b"hi", "{what}");
        }
        let d = tempfile::tempdir().unwrap();
        let e = unpack_tarball(&b"\x1f\x8bnot gzip"[..], d.path(), "bad").unwrap_err();
        assert!(e.to_string().starts_with("unpacking 'bad':"), "{e}");
    }

    #[test]
    fn unpacks_gzip_and_keeps_executable_bits() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[("top/bin/run", b"#!", 0o700), ("top/data", b"x", 0o600)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&t).unwrap();
        let gz = gz.finish().unwrap();
        let dest = d.path().join("u");
        unpack_tarball(&gz[..], &dest, "u").unwrap();
        let m = std::fs::metadata(dest.join("top/bin/run")).unwrap().permissions().mode();
        assert_eq!(m & 0o777, 0o755);
        let m = std::fs::metadata(dest.join("top/data")).unwrap().permissions().mode();
        assert_eq!(m & 0o777, 0o644);
    }
}
