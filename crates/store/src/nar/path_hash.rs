//! Hashing file system objects the way Nix does.
//!
//! * [`hash_path`]: the hash of a path's NAR serialisation ("recursive"
//!   hashing, `nix-hash PATH`, the `NarHash` of a store path), streamed from
//!   [`dump_path`] into a [`Hasher`] without holding the NAR in memory;
//! * [`hash_file`]: the hash of a regular file's bytes ("flat" hashing,
//!   `nix-hash --flat`), following symlinks as Nix does.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::BUF_SIZE;
use super::dump::{DumpError, dump_path};
use crate::hash::{Hash, HashAlgo, Hasher};

/// The hash of `path`'s NAR, and the NAR's size.
pub fn hash_path(algo: HashAlgo, path: &Path) -> Result<(Hash, u64), DumpError> {
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
}
