//! Serialise a path of the local file system as a NAR (`nix-store --dump`).
//!
//! The walk is iterative (an explicit stack of directory listings), so tree
//! depth cannot overflow the stack. Symlinks are never followed: they are
//! dumped as symlinks (`lstat`), including at the root. A regular file is
//! "executable" when its owner-execute bit is set, and exactly the size reported
//! by `lstat` is read, as Nix does. Names are handled as raw bytes (`OsStr`)
//! and sorted bytewise. Other file types (sockets, devices, FIFOs) are errors.
//!
//! [`dump_path_filtered`] is Nix's `dumpPath(path, sink, filter)`: the filter
//! is asked about every entry below the root (never the root itself), with
//! the entry's full path and `lstat` metadata, before it is read; a rejected
//! directory drops its whole subtree. [`dump_path`] is the same walk with no
//! filter (the one walk serves both, and the evaluator's filtered sources).

use std::convert::Infallible;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::encoder::{EncodeError, NarEncoder};

#[derive(Debug, Error)]
pub enum DumpError {
    #[error("{op} '{}': {}", path.display(), io_error_text(error))]
    Io { op: &'static str, path: PathBuf, error: io::Error },
    #[error("file '{}' has an unsupported type", .0.display())]
    UnsupportedType(PathBuf),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// An I/O error as Nix prints it: the system's text (`strerror`) without
/// the " (os error N)" that Rust's `Display` appends.
pub fn io_error_text(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text.strip_suffix(&format!(" (os error {code})")).map_or(text.clone(), str::to_owned),
        None => text,
    }
}

/// Why a filtered dump failed: the file system / encoding, or the filter.
#[derive(Debug, Error)]
pub enum FilteredDumpError<E> {
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error("path filter failed")]
    Filter(E),
}

impl<E> From<EncodeError> for FilteredDumpError<E> {
    fn from(e: EncodeError) -> Self {
        FilteredDumpError::Dump(DumpError::Encode(e))
    }
}

/// A filter over the entries below a dump's root: (full path, `lstat`) → keep?
pub type DumpFilter<'a, E> = dyn FnMut(&Path, &fs::Metadata) -> Result<bool, E> + 'a;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DumpError + 'a {
    move |error| DumpError::Io { op, path: path.to_owned(), error }
}

/// A directory being walked: its entry names, sorted, and the next one to dump.
struct Frame {
    names: Vec<OsString>,
    next: usize,
}

/// Write the NAR of `path` to `out`; returns the NAR's size in bytes.
pub fn dump_path<W: Write>(path: &Path, out: W) -> Result<u64, DumpError> {
    dump_path_filtered::<W, Infallible>(path, out, &mut |_, _| Ok(true)).map_err(|e| match e {
        FilteredDumpError::Dump(e) => e,
        FilteredDumpError::Filter(never) => match never {},
    })
}

/// Write the NAR of `path` to `out`, keeping only the entries below it that
/// `filter` accepts (see the module doc); returns the NAR's size in bytes.
pub fn dump_path_filtered<W: Write, E>(
    path: &Path,
    out: W,
    filter: &mut DumpFilter<'_, E>,
) -> Result<u64, FilteredDumpError<E>> {
    let mut enc = NarEncoder::new(out);
    let mut full = path.to_path_buf();
    let mut stack: Vec<Frame> = Vec::new();
    let meta = fs::symlink_metadata(&full).map_err(io_err("getting status of", &full))?;
    if let Some(frame) = dump_node(&mut enc, &full, &meta)? {
        stack.push(frame);
    }
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.get_mut(frame.next).map(std::mem::take) else {
            stack.pop();
            enc.end_directory()?;
            if !stack.is_empty() {
                full.pop();
            }
            continue;
        };
        frame.next += 1;
        full.push(&name);
        let meta = fs::symlink_metadata(&full).map_err(io_err("getting status of", &full))?;
        if !filter(&full, &meta).map_err(FilteredDumpError::Filter)? {
            full.pop();
            continue;
        }
        enc.entry(name.as_bytes())?;
        match dump_node(&mut enc, &full, &meta)? {
            Some(frame) => stack.push(frame),
            None => {
                full.pop();
            }
        }
    }
    let size = enc.nar_size();
    enc.finish()?;
    Ok(size)
}

/// Dump one node; for a directory, only its header, returning its listing.
fn dump_node<W: Write>(enc: &mut NarEncoder<W>, path: &Path, meta: &fs::Metadata) -> Result<Option<Frame>, DumpError> {
    let ft = meta.file_type();
    if ft.is_file() {
        let executable = meta.permissions().mode() & 0o100 != 0;
        let mut file = File::open(path).map_err(io_err("opening file", path))?;
        enc.regular_named(executable, meta.len(), &mut file, &|| format!("'{}'", path.display()))?;
        Ok(None)
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io_err("reading symbolic link", path))?;
        enc.symlink(target.as_os_str().as_bytes())?;
        Ok(None)
    } else if ft.is_dir() {
        let mut names = Vec::new();
        for entry in fs::read_dir(path).map_err(io_err("opening directory", path))? {
            names.push(entry.map_err(io_err("reading directory", path))?.file_name());
        }
        // OsStr orders bytewise on Unix, which is the NAR order.
        names.sort_unstable();
        enc.begin_directory()?;
        Ok(Some(Frame { names, next: 0 }))
    } else {
        Err(DumpError::UnsupportedType(path.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nar::test_util::{nar_dir, nar_regular, nar_symlink};
    use std::os::unix::fs::symlink;

    fn dump(p: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        let n = dump_path(p, &mut out).unwrap();
        assert_eq!(n, out.len() as u64);
        out
    }

    #[test]
    fn dumps_every_kind() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("sub/empty")).unwrap();
        fs::write(root.join("sub/b"), b"bee").unwrap();
        fs::write(root.join("x"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("x"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("sub/b", root.join("A")).unwrap();
        let name = std::ffi::OsStr::from_bytes(b"\xff-not-utf8");
        fs::write(root.join(name), b"").unwrap();

        let sub = nar_dir(&[(b"b", nar_regular(false, b"bee")), (b"empty", nar_dir(&[]))]);
        let expected = nar_dir(&[
            (b"A", nar_symlink(b"sub/b")),
            (b"sub", sub),
            (b"x", nar_regular(true, b"#!/bin/sh\n")),
            (b"\xff-not-utf8", nar_regular(false, b"")),
        ]);
        assert_eq!(dump(&root), expected);
        assert_eq!(dump(&root.join("A")), nar_symlink(b"sub/b"));
        assert_eq!(dump(&root.join("x")), nar_regular(true, b"#!/bin/sh\n"));
    }

    #[test]
    fn errors_name_the_path() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("missing");
        let err = dump_path(&missing, io::sink()).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let sock = t.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(matches!(dump_path(&sock, io::sink()), Err(DumpError::UnsupportedType(_))));
    }

    #[test]
    fn filter_sees_entries_below_the_root_and_drops_subtrees() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("skip/deep")).unwrap();
        fs::write(root.join("skip/deep/f"), b"f").unwrap();
        fs::write(root.join("a"), b"a").unwrap();
        symlink("a", root.join("l")).unwrap();
        let mut seen = Vec::new();
        let mut f = |p: &Path, m: &fs::Metadata| -> Result<bool, ()> {
            seen.push((p.strip_prefix(&root).unwrap().to_owned(), m.file_type().is_symlink()));
            Ok(!p.ends_with("skip"))
        };
        let mut out = Vec::new();
        let n = dump_path_filtered(&root, &mut out, &mut f).unwrap();
        assert_eq!(n, out.len() as u64);
        let expected = nar_dir(&[(b"a", nar_regular(false, b"a")), (b"l", nar_symlink(b"a"))]);
        assert_eq!(out, expected);
        let names: Vec<(PathBuf, bool)> =
            vec![(PathBuf::from("a"), false), (PathBuf::from("l"), true), (PathBuf::from("skip"), false)];
        assert_eq!(seen, names, "asked once per entry, never for the root or inside a rejected directory");
        // Accept-all equals the plain dump; a filter error stops the dump.
        assert_eq!(dump_path_filtered::<_, ()>(&root, Vec::new(), &mut |_, _| Ok(true)).unwrap(), dump(&root).len() as u64);
        let r = dump_path_filtered(&root, io::sink(), &mut |_, _| Err("no"));
        assert!(matches!(r, Err(FilteredDumpError::Filter("no"))));
    }
}
