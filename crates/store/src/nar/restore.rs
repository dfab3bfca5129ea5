//! Recreate a file system tree from a NAR (`nix-store --restore DIR`).
//!
//! The NAR is parsed and written in one streaming pass. Like Nix, the target
//! must not exist yet (its parent must); directories are created with mode
//! 0777 and files with 0666, both minus the umask, and an executable file gets
//! its mode OR 0111, so with umask 022 the result is 0755/0644/0755 as with
//! `nix-store --restore`. Timestamps and ownership are left as created.
//!
//! Nothing is ever written outside the target: the parser only lets through
//! names without `/`, `.`, `..` or NUL, every object is created fresh
//! (`mkdir`, `O_CREAT|O_EXCL`, `symlink` all fail on an existing name, even a
//! dangling symlink, and never follow one), and each directory in a path is
//! one this restore just created, because entries are strictly sorted and so
//! unique within their directory. On error the partial tree is left in place
//! for the caller to remove.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::parser::{NarReadError, NarStats, NarVisitor, parse};

/// Restore the NAR read from `r` at `dir`, which must not exist.
pub fn restore(r: impl Read, dir: &Path) -> Result<NarStats, NarReadError> {
    let mut sink = RestoreSink { root: dir.to_owned(), file: None };
    parse(r, &mut sink)
}

struct OpenFile {
    file: File,
    path: PathBuf,
}

struct RestoreSink {
    root: PathBuf,
    file: Option<OpenFile>,
}

impl RestoreSink {
    fn full(&self, path: &[u8]) -> PathBuf {
        if path.is_empty() { self.root.clone() } else { self.root.join(OsStr::from_bytes(path)) }
    }
}

fn sink_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> NarReadError + 'a {
    move |error| NarReadError::Sink { op, path: path.to_owned(), error }
}

impl NarVisitor for RestoreSink {
    fn directory(&mut self, path: &[u8]) -> Result<(), NarReadError> {
        let p = self.full(path);
        fs::create_dir(&p).map_err(sink_err("creating directory", &p))
    }

    fn regular(&mut self, path: &[u8], executable: bool, _size: u64) -> Result<(), NarReadError> {
        let p = self.full(path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&p)
            .map_err(sink_err("creating file", &p))?;
        if executable {
            let mode = file.metadata().map_err(sink_err("getting status of", &p))?.permissions().mode();
            file.set_permissions(fs::Permissions::from_mode(mode | 0o111))
                .map_err(sink_err("making executable", &p))?;
        }
        self.file = Some(OpenFile { file, path: p });
        Ok(())
    }

    fn contents(&mut self, chunk: &[u8]) -> Result<(), NarReadError> {
        match &mut self.file {
            Some(f) => f.file.write_all(chunk).map_err(sink_err("writing to file", &f.path)),
            None => Ok(()),
        }
    }

    fn regular_end(&mut self) -> Result<(), NarReadError> {
        self.file = None;
        Ok(())
    }

    fn symlink(&mut self, path: &[u8], target: &[u8]) -> Result<(), NarReadError> {
        let p = self.full(path);
        symlink(OsStr::from_bytes(target), &p).map_err(sink_err("creating symlink", &p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nar::dump_path;
    use crate::nar::test_util::{nar_dir, nar_regular, nar_symlink};

    #[test]
    fn round_trip_with_modes() {
        let t = tempfile::tempdir().unwrap();
        let nar = nar_dir(&[
            (b"bin", nar_dir(&[(b"run", nar_regular(true, b"#!/bin/sh\n"))])),
            (b"empty", nar_dir(&[])),
            (b"f", nar_regular(false, &vec![7u8; 300_000])),
            (b"link", nar_symlink(b"/nonexistent/dangling")),
            (b"\xc3\xbc\xff", nar_regular(false, b"")),
        ]);
        let out = t.path().join("out");
        let stats = restore(&nar[..], &out).unwrap();
        assert_eq!((stats.nar_size, stats.regular_files, stats.directories, stats.symlinks), (nar.len() as u64, 3, 3, 1));
        let mode = |p: &str| fs::symlink_metadata(out.join(p)).unwrap().permissions().mode() & 0o7777;
        let umask_exec = mode("f") | 0o111;
        assert_eq!(mode("bin/run"), umask_exec);
        assert_eq!(mode("f") & 0o111, 0);
        assert_eq!(fs::read_link(out.join("link")).unwrap(), Path::new("/nonexistent/dangling"));
        let mut again = Vec::new();
        dump_path(&out, &mut again).unwrap();
        assert_eq!(again, nar);
    }

    #[test]
    fn target_must_not_exist() {
        let t = tempfile::tempdir().unwrap();
        let err = restore(&nar_regular(false, b"x")[..], t.path()).unwrap_err();
        assert!(matches!(err, NarReadError::Sink { .. }), "{err}");
        assert!(err.to_string().contains("creating file"), "{err}");
        // A dangling symlink at the target is not followed either.
        let link = t.path().join("link");
        symlink(t.path().join("elsewhere"), &link).unwrap();
        assert!(restore(&nar_regular(false, b"x")[..], &link).is_err());
        assert!(restore(&nar_dir(&[])[..], &link).is_err());
        assert!(!t.path().join("elsewhere").exists());
    }
}
