//! Store paths: `/nix/store/<hash>-<name>` and how Nix computes them.
//!
//! A [`StorePath`] is the store-dir-independent part: a 20-byte digest (printed
//! as 32 nix32 characters) and a name. [`StoreDir`] turns it into an absolute
//! path and back, and owns the path computations, because every computed path
//! depends on the store directory (it is part of the hashed fingerprint):
//!
//! ```text
//! fingerprint = "<type>:sha256:<base16 inner hash>:<store dir>:<name>"
//! digest      = compress_hash(sha256(fingerprint), 20)
//! ```
//!
//! `type` is `text[:ref...]` for `builtins.toFile`/.drv files, `source[:ref...][:self]`
//! for recursively sha256-hashed sources, `output:<id>` for derivation outputs and
//! fixed outputs. Invariant: a `StorePath` always has a valid name (Nix's
//! character set, 1..=211 bytes), so printing it never yields an invalid path.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::hash::{Hash, HashAlgo, Hasher};
use crate::nixbase32;

pub const HASH_LEN: usize = 20;
pub const HASH_CHARS: usize = 32;
pub const MAX_NAME_LEN: usize = 211;
pub const DEFAULT_STORE_DIR: &str = "/nix/store";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StorePathError {
    #[error("path '{0}' is not in the Nix store")]
    NotInStore(String),
    #[error("store path '{0}' has an invalid hash part")]
    BadHash(String),
    #[error("store path '{0}' has an empty name")]
    EmptyName(String),
    #[error("store path '{0}' has a name longer than {MAX_NAME_LEN} characters")]
    NameTooLong(String),
    #[error("store path '{path}' contains illegal character '{c}'")]
    IllegalChar { path: String, c: char },
}

/// Ordered as Nix orders printed store paths (`std::set<StorePath>`, i.e. by
/// the string `<hash>-<name>`): nix32 prints the digest most significant group
/// of the *last* byte first, with an alphabet in ASCII order, so comparing the
/// digest bytes from last to first equals comparing the printed hash parts.
#[derive(Clone, PartialEq, Eq)]
pub struct StorePath {
    digest: [u8; HASH_LEN],
    name: String,
}

/// Hashes the first 8 bytes of the digest only: a truncated sha256, spread
/// uniformly. Equal paths have equal digests, so this agrees with `Eq`
/// (paths that differ only in name merely share a bucket); hash map
/// lookups and rehashes never read the name.
impl std::hash::Hash for StorePath {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let [a, b, c, d, e, f, g, h, ..] = self.digest;
        state.write_u64(u64::from_le_bytes([a, b, c, d, e, f, g, h]));
    }
}

/// Check a store path name against Nix's rules; `path` is used in the error.
pub fn validate_name(name: &str, path: &str) -> Result<(), StorePathError> {
    if name.is_empty() {
        return Err(StorePathError::EmptyName(path.to_owned()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StorePathError::NameTooLong(path.to_owned()));
    }
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b'_' | b'?' | b'=');
    if name.bytes().all(valid) {
        return Ok(());
    }
    if let Some(c) = name.chars().find(|&c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(c))) {
        return Err(StorePathError::IllegalChar { path: path.to_owned(), c });
    }
    Ok(())
}

impl StorePath {
    pub fn new(digest: [u8; HASH_LEN], name: &str) -> Result<StorePath, StorePathError> {
        validate_name(name, name)?;
        Ok(StorePath { digest, name: name.to_owned() })
    }

    /// Parse the base name `<32 chars>-<name>` (no store dir).
    pub fn from_base_name(s: &str) -> Result<StorePath, StorePathError> {
        let bad = || StorePathError::BadHash(s.to_owned());
        if s.len() < HASH_CHARS + 1 || s.as_bytes()[HASH_CHARS] != b'-' || !s.is_char_boundary(HASH_CHARS) {
            return Err(if s.len() <= HASH_CHARS + 1 && s.len() >= HASH_CHARS { StorePathError::EmptyName(s.to_owned()) } else { bad() });
        }
        let digest = nixbase32::decode_20(&s.as_bytes()[..HASH_CHARS]).map_err(|_| bad())?;
        let name = &s[HASH_CHARS + 1..];
        validate_name(name, s)?;
        Ok(StorePath { digest, name: name.to_owned() })
    }

    pub fn digest(&self) -> &[u8; HASH_LEN] {
        &self.digest
    }

    /// The 32-character nix32 hash part.
    pub fn hash_part(&self) -> String {
        self.hash_part_str().as_str().to_owned()
    }

    /// The hash part without allocating: `p.hash_part_str().as_str()`.
    pub fn hash_part_str(&self) -> HashPart {
        HashPart(nixbase32::encode_20(&self.digest))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_derivation(&self) -> bool {
        self.name.ends_with(".drv")
    }
}

impl Ord for StorePath {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Bytes from last to first: the digest as a little-endian number.
        let key = |d: &[u8; HASH_LEN]| {
            let [l @ .., h0, h1, h2, h3] = *d;
            (u32::from_le_bytes([h0, h1, h2, h3]), u128::from_le_bytes(l))
        };
        key(&self.digest).cmp(&key(&other.digest)).then_with(|| self.name.cmp(&other.name))
    }
}

impl PartialOrd for StorePath {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A store path's 32-character hash part, on the stack.
#[derive(Clone, Copy)]
pub struct HashPart([u8; HASH_CHARS]);

impl HashPart {
    pub fn as_str(&self) -> &str {
        // The nix32 alphabet is ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// `<hash>-<name>`, without the store dir.
impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hash_part_str().as_str())?;
        f.write_str("-")?;
        f.write_str(&self.name)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({self})")
    }
}

impl FromStr for StorePath {
    type Err = StorePathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StorePath::from_base_name(s)
    }
}

/// How a fixed-output path's content was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileIngestionMethod {
    /// The hash of the file's bytes (`outputHashMode = "flat"`).
    Flat,
    /// The hash of the NAR serialisation (`outputHashMode = "recursive"`).
    Recursive,
}

/// A store directory such as `/nix/store`, and the path computations under it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreDir(String);

impl Default for StoreDir {
    fn default() -> Self {
        StoreDir(DEFAULT_STORE_DIR.to_owned())
    }
}

impl StoreDir {
    /// A store dir from an absolute path; a trailing slash is dropped.
    pub fn new(dir: &str) -> StoreDir {
        let d = dir.trim_end_matches('/');
        StoreDir(if d.is_empty() { "/".to_owned() } else { d.to_owned() })
    }

    /// `$NIX_STORE_DIR`, else `/nix/store`.
    pub fn from_env() -> StoreDir {
        std::env::var("NIX_STORE_DIR").map(|d| StoreDir::new(&d)).unwrap_or_default()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn display(&self, p: &StorePath) -> String {
        let mut s = String::with_capacity(self.0.len() + HASH_CHARS + 2 + p.name.len());
        self.push_display(&mut s, p);
        s
    }

    /// Append `p` as an absolute path to `out`.
    pub fn push_display(&self, out: &mut String, p: &StorePath) {
        out.push_str(&self.0);
        out.push('/');
        out.push_str(p.hash_part_str().as_str());
        out.push('-');
        out.push_str(&p.name);
    }

    /// Parse an absolute store path (exactly one component below the store dir).
    pub fn parse(&self, path: &str) -> Result<StorePath, StorePathError> {
        let rest = path
            .strip_prefix(self.0.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .filter(|r| !r.contains('/'))
            .ok_or_else(|| StorePathError::NotInStore(path.to_owned()))?;
        StorePath::from_base_name(rest).map_err(|e| match e {
            StorePathError::IllegalChar { c, .. } => StorePathError::IllegalChar { path: path.to_owned(), c },
            StorePathError::BadHash(_) => StorePathError::BadHash(path.to_owned()),
            StorePathError::EmptyName(_) => StorePathError::EmptyName(path.to_owned()),
            StorePathError::NameTooLong(_) => StorePathError::NameTooLong(path.to_owned()),
            other => other,
        })
    }

    /// Split a path inside the store into its store path and the rest
    /// (`/nix/store/abc-foo/bin/x` → (`abc-foo`, `/bin/x`)).
    pub fn parse_inner<'a>(&self, path: &'a str) -> Result<(StorePath, &'a str), StorePathError> {
        let rest = path
            .strip_prefix(self.0.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| StorePathError::NotInStore(path.to_owned()))?;
        let end = rest.find('/').unwrap_or(rest.len());
        let sp = self.parse(&path[..path.len() - rest.len() + end])?;
        Ok((sp, &rest[end..]))
    }

    pub fn is_in_store(&self, path: &str) -> bool {
        self.parse_inner(path).is_ok()
    }

    /// Nix's `makeStorePath`.
    pub fn make_store_path(&self, path_type: &str, inner: &Hash, name: &str) -> Result<StorePath, StorePathError> {
        self.finish_store_path(&[path_type], inner, name)
    }

    /// [`StoreDir::make_store_path`] for a path type given in pieces: the
    /// fingerprint is hashed as it is printed, never built as a string.
    fn finish_store_path(&self, path_type: &[&str], inner: &Hash, name: &str) -> Result<StorePath, StorePathError> {
        let hex = inner.base16();
        let hex = hex.as_bytes();
        let mut hasher = Hasher::new(HashAlgo::Sha256);
        for piece in path_type {
            hasher.update(piece.as_bytes());
        }
        for piece in [b":", inner.algo().name().as_bytes(), b":", hex, b":", self.0.as_bytes(), b":", name.as_bytes()] {
            hasher.update(piece);
        }
        let h = hasher.finish();
        // Nix's `compressHash(h, 20)`: XOR-fold the sha256 into 20 bytes.
        let mut digest = [0u8; HASH_LEN];
        for (i, b) in h.as_bytes().iter().enumerate() {
            digest[i % HASH_LEN] ^= b;
        }
        if validate_name(name, "").is_err() {
            let p = StorePath { digest, name: String::new() };
            validate_name(name, &format!("{}/{}-{name}", self.0, p.hash_part_str().as_str()))?;
        }
        Ok(StorePath { digest, name: name.to_owned() })
    }

    /// `<kind>[:<ref>...][:self]` (references sorted as printed, each once).
    fn make_type<'a>(&self, kind: &str, refs: impl IntoIterator<Item = &'a StorePath>, self_ref: bool) -> String {
        // `StorePath`'s order is the printed order under one store dir.
        let mut refs: Vec<&StorePath> = refs.into_iter().collect();
        refs.sort_unstable();
        // References are a set: a path in both inputSrcs and inputDrvs counts once.
        refs.dedup();
        let mut t = String::with_capacity(kind.len() + refs.len() * (self.0.len() + 80) + 200);
        t.push_str(kind);
        for r in refs {
            t.push(':');
            self.push_display(&mut t, r);
        }
        if self_ref {
            t.push_str(":self");
        }
        t
    }

    /// A text path (`builtins.toFile`, `.drv` files): `hash` is the sha256 of the contents.
    pub fn make_text_path<'a>(
        &self,
        name: &str,
        content_hash: &Hash,
        refs: impl IntoIterator<Item = &'a StorePath>,
    ) -> Result<StorePath, StorePathError> {
        self.finish_store_path(&[&self.make_type("text", refs, false)], content_hash, name)
    }

    /// The path of a store object added by content (`nix-store --add`,
    /// `--add-fixed`, `builtins.path`, fixed-output derivations).
    pub fn make_fixed_output_path<'a>(
        &self,
        method: FileIngestionMethod,
        hash: &Hash,
        name: &str,
        refs: impl IntoIterator<Item = &'a StorePath>,
        self_ref: bool,
    ) -> Result<StorePath, StorePathError> {
        if method == FileIngestionMethod::Recursive && hash.algo() == HashAlgo::Sha256 {
            return self.finish_store_path(&[&self.make_type("source", refs, self_ref)], hash, name);
        }
        let prefix = if method == FileIngestionMethod::Recursive { "r:" } else { "" };
        let inner = Hash::digest(HashAlgo::Sha256, format!("fixed:out:{prefix}{}:{}:", hash.algo(), hash.to_base16()));
        self.make_store_path("output:out", &inner, name)
    }

    /// The path of output `output` of a derivation whose modulo hash is `drv_hash`.
    pub fn make_output_path(&self, output: &str, drv_hash: &Hash, drv_name: &str) -> Result<StorePath, StorePathError> {
        let name = output_path_name(drv_name, output);
        self.finish_store_path(&["output:", output], drv_hash, &name)
    }
}

/// `name` for output `out`, else `name-<output>`.
pub fn output_path_name(drv_name: &str, output: &str) -> String {
    if output == "out" { drv_name.to_owned() } else { format!("{drv_name}-{output}") }
}

/// A hasher for maps keyed by [`StorePath`]: a store path's digest is a
/// truncated sha256, already uniformly spread and not choosable, so the std
/// SipHash's protection against chosen keys buys nothing and costs more than
/// the rest of a lookup. FxHash-style mixing of 8-byte words.
#[derive(Default, Clone, Copy)]
pub struct StorePathHasher(u64);

/// FxHash's multiplier.
const FX_K: u64 = 0x517c_c1b7_2722_0a95;

impl std::hash::Hasher for StorePathHasher {
    fn write_u64(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(FX_K);
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = FX_K;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` keyed by store paths, with [`StorePathHasher`].
pub type StorePathMap<V> = std::collections::HashMap<StorePath, V, std::hash::BuildHasherDefault<StorePathHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let dir = StoreDir::default();
        let s = "/nix/store/7h7qgvs4kgzsn8a6rb274saxyqh4jxlz-hello-2.12.1";
        let p = dir.parse(s).unwrap();
        assert_eq!(p.name(), "hello-2.12.1");
        assert_eq!(p.hash_part(), "7h7qgvs4kgzsn8a6rb274saxyqh4jxlz");
        assert_eq!(dir.display(&p), s);
        let full = format!("{s}/bin/hello");
        let (inner, rest) = dir.parse_inner(&full).unwrap();
        assert_eq!((inner, rest), (p, "/bin/hello"));
    }

    #[test]
    fn rejects_invalid() {
        let dir = StoreDir::default();
        assert!(matches!(dir.parse("/tmp/x"), Err(StorePathError::NotInStore(_))));
        assert!(matches!(dir.parse("/nix/store/7h7qgvs4kgzsn8a6rb274saxyqh4jxle-x"), Err(StorePathError::BadHash(_))));
        assert!(matches!(dir.parse("/nix/store/7h7qgvs4kgzsn8a6rb274saxyqh4jxlz-"), Err(StorePathError::EmptyName(_))));
        assert!(matches!(dir.parse("/nix/store/7h7qgvs4kgzsn8a6rb274saxyqh4jxlz-a b"), Err(StorePathError::IllegalChar { c: ' ', .. })));
        assert!(matches!(dir.parse("/nix/store/7h7qgvs4kgzsn8a6rb274saxyqh4jxlz"), Err(StorePathError::EmptyName(_) | StorePathError::BadHash(_))));
        let long = format!("/nix/store/7h7qgvs4kgzsn8a6rb274saxyqh4jxlz-{}", "a".repeat(212));
        assert!(matches!(dir.parse(&long), Err(StorePathError::NameTooLong(_))));
        assert!(dir.parse("/nix/store/7h7qgvs4kgzsn8a6rb274saxyqh4jxlz-a/b").is_err());
    }
}
