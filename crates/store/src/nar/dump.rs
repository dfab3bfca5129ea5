//! Serialise a path of the local file system as a NAR (`nix-store --dump`).
//!
//! The walk is iterative (an explicit stack of directory listings), so tree
//! depth cannot overflow the stack. Symlinks are never followed: they are
//! dumped as symlinks (`lstat`), including at the root. A regular file is
//! "executable" when its owner-execute bit is set, and exactly the size reported
//! by `lstat` is read, as Nix does. Names are handled as raw bytes (`OsStr`)
//! and sorted bytewise. Other file types (sockets, devices, FIFOs) are errors.

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
    #[error("{op} '{}': {error}", path.display())]
    Io { op: &'static str, path: PathBuf, error: io::Error },
    #[error("file '{}' has an unsupported type", .0.display())]
    UnsupportedType(PathBuf),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

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
    let mut enc = NarEncoder::new(out);
    let mut full = path.to_path_buf();
    let mut stack: Vec<Frame> = Vec::new();
    if let Some(frame) = dump_node(&mut enc, &full)? {
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
        enc.entry(name.as_bytes())?;
        full.push(&name);
        match dump_node(&mut enc, &full)? {
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
fn dump_node<W: Write>(enc: &mut NarEncoder<W>, path: &Path) -> Result<Option<Frame>, DumpError> {
    let meta = fs::symlink_metadata(path).map_err(io_err("getting status of", path))?;
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
}
