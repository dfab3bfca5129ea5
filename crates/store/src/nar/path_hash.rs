//! Hashing file system objects the way Nix does.
//!
//! * [`hash_path`]: the hash of a path's NAR serialisation ("recursive"
//!   hashing, `nix-hash PATH`, the `NarHash` of a store path), streamed from
//!   [`dump_path`] into a [`Hasher`] without holding the NAR in memory; with
//!   more than one CPU the hashing runs on its own thread
//!   ([`BackgroundHasher`]) while this one reads the tree;
//! * [`hash_file`]: the hash of a regular file's bytes ("flat" hashing,
//!   `nix-hash --flat`), following symlinks as Nix does;
//! * [`HashingWriter`]: a tee that hashes and counts what passes through it,
//!   to send a NAR somewhere and learn its hash and size in the same pass.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::thread;

use super::BUF_SIZE;
use super::background_hash::BackgroundHasher;
use super::dump::{DumpError, dump_path};
use super::encoder::EncodeError;
use crate::hash::{Hash, HashAlgo, Hasher};

/// The hash of `path`'s NAR, and the NAR's size.
pub fn hash_path(algo: HashAlgo, path: &Path) -> Result<(Hash, u64), DumpError> {
    if thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
        let mut hasher = BackgroundHasher::new(algo);
        dump_path(path, &mut hasher)?;
        return Ok(hasher.finish().map_err(EncodeError::Io)?);
    }
    let mut hasher = Hasher::new(algo);
    let size = dump_path(path, &mut hasher)?;
    Ok((hasher.finish(), size))
}

/// The hash of the contents of the file at `path`, and its size.
pub fn hash_file(algo: HashAlgo, path: &Path) -> Result<(Hash, u64), DumpError> {
    let err = |op: &'static str| move |error| DumpError::Io { op, path: PathBuf::from(path), error };
    let mut file = File::open(path).map_err(err("opening file"))?;
    let mut hasher = Hasher::new(algo);
    let mut buf = vec![0u8; BUF_SIZE];
    let mut size = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(buf.get(..n).unwrap_or_default());
                size += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(err("reading file")(e)),
        }
    }
    Ok((hasher.finish(), size))
}

/// Forwards writes to `inner` while hashing and counting the bytes written.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Hasher,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(algo: HashAlgo, inner: W) -> HashingWriter<W> {
        HashingWriter { inner, hasher: Hasher::new(algo), size: 0 }
    }

    /// The hash and size of everything written, and the inner writer.
    pub fn finish(self) -> (Hash, u64, W) {
        (self.hasher.finish(), self.size, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        // Only what the inner writer accepted counts.
        let written = buf.get(..n).unwrap_or(buf);
        self.hasher.update(written);
        self.size += written.len() as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nar::test_util::nar_regular;

    #[test]
    fn recursive_and_flat() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"hello\n").unwrap();
        let (h, n) = hash_path(HashAlgo::Sha256, &f).unwrap();
        let nar = nar_regular(false, b"hello\n");
        assert_eq!((h, n), (Hash::digest(HashAlgo::Sha256, &nar), nar.len() as u64));
        // `printf 'hello\n' | sha256sum`
        let (flat, size) = hash_file(HashAlgo::Sha256, &f).unwrap();
        assert_eq!(flat.to_base16(), "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
        assert_eq!(size, 6);
        assert!(hash_file(HashAlgo::Md5, t.path()).is_err(), "a directory has no flat hash");
    }

    #[test]
    fn tee_hashes_what_it_forwards() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), vec![1u8; 1 << 20]).unwrap();
        let mut tee = HashingWriter::new(HashAlgo::Sha1, Vec::new());
        crate::nar::dump_path(t.path(), &mut tee).unwrap();
        let (hash, size, nar) = tee.finish();
        assert_eq!(size, nar.len() as u64);
        assert_eq!((hash, size), hash_path(HashAlgo::Sha1, t.path()).unwrap());
        assert_eq!(hash, Hash::digest(HashAlgo::Sha1, &nar));
    }
}
