//! Zip archives for `fetchTarball` / `tarball` inputs (Nix unpacks them
//! with libarchive too).
//!
//! Design: the archive is in memory; the central directory (found through
//! the end-of-central-directory record) lists the entries; each entry's
//! data is located through its local header and is stored or deflated
//! (`flate2`), its CRC-32 checked. Unix modes (when the archive was made on
//! Unix) give symlinks and executable bits. Every entry goes through
//! [`SafeTree`], so the path checks are the tar ones. Zip64, encryption and
//! other compression methods are clear errors. All reads are bounds-checked.

use std::io::Read;
use std::path::Path;

use super::FetchResult;
use super::unpack::SafeTree;

const EOCD_SIG: u32 = 0x0605_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    d.get(at..at.checked_add(2)?)?.try_into().ok().map(u16::from_le_bytes)
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at.checked_add(4)?)?.try_into().ok().map(u32::from_le_bytes)
}

/// One central directory entry.
struct Entry<'a> {
    name: &'a [u8],
    method: u16,
    flags: u16,
    crc: u32,
    compressed: usize,
    size: usize,
    unix_mode: Option<u32>,
    local: usize,
}

pub(super) fn unpack_zip(d: &[u8], tree: &mut SafeTree<'_>) -> FetchResult<()> {
    let bad = |what: &str| tree.error(format!("invalid zip archive: {what}"));
    // The end record is in the last 22 + 65535 bytes.
    let min = d.len().saturating_sub(22 + 0xffff);
    let eocd = (min..=d.len().saturating_sub(22))
        .rev()
        .find(|&i| u32_at(d, i) == Some(EOCD_SIG))
        .ok_or_else(|| bad("no end of central directory"))?;
    let count = u16_at(d, eocd + 10).ok_or_else(|| bad("truncated end record"))?;
    let cd_off = u32_at(d, eocd + 16).ok_or_else(|| bad("truncated end record"))?;
    if count == 0xffff || cd_off == 0xffff_ffff {
        return Err(tree.error("zip64 archives are not supported"));
    }
    let mut at = cd_off as usize;
    let mut entries = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        if u32_at(d, at) != Some(CENTRAL_SIG) {
            return Err(bad("bad central directory entry"));
        }
        let field16 = |o: usize| u16_at(d, at + o).ok_or_else(|| bad("truncated central directory"));
        let field32 = |o: usize| u32_at(d, at + o).ok_or_else(|| bad("truncated central directory"));
        let made_by = field16(4)?;
        let (flags, method) = (field16(8)?, field16(10)?);
        let (crc, compressed, size) = (field32(16)?, field32(20)?, field32(24)?);
        let (name_len, extra_len, comment_len) =
            (usize::from(field16(28)?), usize::from(field16(30)?), usize::from(field16(32)?));
        let external = field32(38)?;
        let local = field32(42)?;
        if compressed == 0xffff_ffff || size == 0xffff_ffff || local == 0xffff_ffff {
            return Err(tree.error("zip64 archives are not supported"));
        }
        let name = d.get(at + 46..at + 46 + name_len).ok_or_else(|| bad("truncated file name"))?;
        entries.push(Entry {
            name,
            method,
            flags,
            crc,
            compressed: compressed as usize,
            size: size as usize,
            unix_mode: (made_by >> 8 == 3).then_some(external >> 16),
            local: local as usize,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    for e in entries {
        unpack_entry(d, &e, tree)?;
    }
    Ok(())
}

fn unpack_entry(d: &[u8], e: &Entry<'_>, tree: &mut SafeTree<'_>) -> FetchResult<()> {
    let name = String::from_utf8_lossy(e.name).into_owned();
    let url = tree.url();
    let bad = |what: &str| super::FetchError::Unpack {
        url: url.to_string(),
        msg: format!("invalid zip archive: {what} of '{name}'"),
    };
    if e.flags & 1 != 0 {
        return Err(tree.error(format!("'{name}' is encrypted")));
    }
    let mode = e.unix_mode.unwrap_or(0);
    let is_dir = name.ends_with('/') || mode & 0o170000 == 0o040000;
    let is_link = mode & 0o170000 == 0o120000;
    let Some((rel, target)) = tree.prepare(Path::new(&name), is_dir)? else { return Ok(()) };
    if is_dir {
        return tree.dir(&target);
    }
    if u32_at(d, e.local) != Some(LOCAL_SIG) {
        return Err(bad("bad local header"));
    }
    let name_len = usize::from(u16_at(d, e.local + 26).ok_or_else(|| bad("truncated local header"))?);
    let extra_len = usize::from(u16_at(d, e.local + 28).ok_or_else(|| bad("truncated local header"))?);
    let start = e.local + 30 + name_len + extra_len;
    let raw = d.get(start..start.saturating_add(e.compressed)).ok_or_else(|| bad("truncated data"))?;
    let data = match e.method {
        0 => raw.to_vec(),
        8 => {
            let mut out = Vec::with_capacity(e.size.min(1 << 26));
            flate2::read::DeflateDecoder::new(raw)
                .take(e.size as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|err| tree.error(format!("inflating '{name}': {err}")))?;
            out
        }
        m => return Err(tree.error(format!("'{name}' uses compression method {m}, which is not supported"))),
    };
    let mut crc = flate2::Crc::new();
    crc.update(&data);
    if data.len() != e.size || crc.sum() != e.crc {
        return Err(bad("size or CRC mismatch"));
    }
    if is_link {
        let link = String::from_utf8_lossy(&data).into_owned();
        return tree.symlink(rel, &target, Path::new(&link));
    }
    tree.file(&target, mode & 0o100 != 0, &mut &data[..])
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A zip archive of stored entries with Unix modes, written by hand.
    fn stored_zip(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data, mode) in entries {
            let mut crc = flate2::Crc::new();
            crc.update(data);
            let local = out.len() as u32;
            let mut h = Vec::new();
            h.extend(LOCAL_SIG.to_le_bytes());
            h.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            h.extend(crc.sum().to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes());
            h.extend(name.as_bytes());
            out.extend(h);
            out.extend(*data);
            central.extend(CENTRAL_SIG.to_le_bytes());
            central.extend([20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend(crc.sum().to_le_bytes());
            central.extend((data.len() as u32).to_le_bytes());
            central.extend((data.len() as u32).to_le_bytes());
            central.extend((name.len() as u16).to_le_bytes());
            central.extend([0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend((mode << 16).to_le_bytes());
            central.extend(local.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let cd_off = out.len() as u32;
        out.extend(&central);
        out.extend(EOCD_SIG.to_le_bytes());
        out.extend([0, 0, 0, 0]);
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(cd_off.to_le_bytes());
        out.extend([0, 0]);
        out
    }

    #[test]
    fn unpacks_files_directories_symlinks_and_modes() {
        let z = stored_zip(&[
            ("top/", b"", 0o040755),
            ("top/a.txt", b"hello", 0o100644),
            ("top/bin/run", b"#!/bin/sh", 0o100755),
            ("top/link", b"a.txt", 0o120777),
        ]);
        let d = tempfile::tempdir().unwrap();
        super::super::unpack_tarball(&z[..], d.path(), "z").unwrap();
        assert_eq!(std::fs::read(d.path().join("top/a.txt")).unwrap(), b"hello");
        assert_eq!(std::fs::read_link(d.path().join("top/link")).unwrap(), Path::new("a.txt"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(d.path().join("top/bin/run")).unwrap().permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn deflated_entries_from_the_zip_program() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("top")).unwrap();
        std::fs::File::create(src.join("top/f")).unwrap().write_all(&b"zip me ".repeat(1000)).unwrap();
        let Ok(st) = std::process::Command::new("zip").current_dir(&src).args(["-qr", "../a.zip", "top"]).status() else {
            return; // no `zip` program here; the stored case above still runs
        };
        assert!(st.success());
        let z = std::fs::read(d.path().join("a.zip")).unwrap();
        super::super::unpack_tarball(&z[..], &d.path().join("out"), "z").unwrap();
        assert_eq!(std::fs::read(d.path().join("out/top/f")).unwrap(), b"zip me ".repeat(1000));
    }

    #[test]
    fn rejects_unsafe_and_corrupt_archives() {
        let d = tempfile::tempdir().unwrap();
        let z = stored_zip(&[("top/../../evil", b"x", 0o100644)]);
        let e = super::super::unpack_tarball(&z[..], d.path(), "z").unwrap_err();
        assert!(e.to_string().contains("unsafe entry"), "{e}");
        let mut z = stored_zip(&[("top/a", b"hello", 0o100644)]);
        let i = z.windows(5).position(|w| w == b"hello").unwrap();
        z[i] = b'j';
        let e = super::super::unpack_tarball(&z[..], &d.path().join("c"), "z").unwrap_err();
        assert!(e.to_string().contains("CRC mismatch"), "{e}");
        let z = stored_zip(&[("top/a", b"hello", 0o100644)]);
        for cut in [4, 30, z.len() - 30, z.len() - 10] {
            let mut t = z[..cut].to_vec();
            t.resize(cut.max(4), 0);
            let _ = super::super::unpack_tarball(&t[..], &d.path().join(format!("t{cut}")), "z");
        }
    }
}
