//! Cryptographic hashes as Nix spells them.
//!
//! A [`Hash`] is an algorithm plus its digest. Nix prints and parses digests in
//! four spellings: base16 (lowercase hex), nix32 (see [`crate::nixbase32`]),
//! base64 (standard alphabet, padded) and SRI (`sha256-<base64>`). Where the
//! algorithm is not part of the string (`sha256:<digest>` or SRI), it must be
//! supplied by the caller; the digest's encoding is then recognised by its
//! length, exactly as Nix does.
//!
//! Invariant: a `Hash` always holds a digest of exactly `algo.size()` bytes;
//! parsing rejects anything else rather than truncating or padding.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::Digest;
use thiserror::Error;

use crate::nixbase32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl HashAlgo {
    pub const ALL: [HashAlgo; 4] = [HashAlgo::Md5, HashAlgo::Sha1, HashAlgo::Sha256, HashAlgo::Sha512];

    /// Digest size in bytes.
    pub const fn size(self) -> usize {
        match self {
            HashAlgo::Md5 => 16,
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha512 => 64,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            HashAlgo::Md5 => "md5",
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha512 => "sha512",
        }
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgo {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, HashError> {
        HashAlgo::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| HashError::UnknownAlgo(s.to_owned()))
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HashError {
    #[error("unknown hash algorithm '{0}' (expected md5, sha1, sha256 or sha512)")]
    UnknownAlgo(String),
    #[error("hash '{0}' does not name its algorithm and none was given")]
    MissingAlgo(String),
    #[error("hash '{hash}' has wrong length for hash type '{algo}'")]
    WrongLength { hash: String, algo: HashAlgo },
    #[error("invalid {encoding} digest in hash '{hash}'")]
    InvalidDigest { hash: String, encoding: &'static str },
    #[error("hash '{hash}' is for algorithm '{found}', expected '{expected}'")]
    AlgoMismatch { hash: String, found: HashAlgo, expected: HashAlgo },
}

/// How to print a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashEncoding {
    Base16,
    Nix32,
    Base64,
    Sri,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash {
    algo: HashAlgo,
    bytes: [u8; 64],
}

impl Hash {
    /// A hash from a digest; `None` if the length does not fit the algorithm.
    pub fn from_digest(algo: HashAlgo, digest: &[u8]) -> Option<Hash> {
        if digest.len() != algo.size() {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..digest.len()].copy_from_slice(digest);
        Some(Hash { algo, bytes })
    }

    /// Hash `data` in one go.
    pub fn digest(algo: HashAlgo, data: impl AsRef<[u8]>) -> Hash {
        let mut h = Hasher::new(algo);
        h.update(data.as_ref());
        h.finish()
    }

    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algo.size()]
    }

    pub fn to_base16(&self) -> String {
        self.base16().as_str().to_owned()
    }

    /// The base16 digits on the stack (hashes of store paths and
    /// derivations are printed in base16 inside other hashed strings).
    pub fn base16(&self) -> Base16 {
        // By hand: `hex::encode` collects chars one by one.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [0u8; 128];
        for (pair, &b) in digits.chunks_exact_mut(2).zip(self.as_bytes()) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
        Base16 { digits, len: 2 * self.as_bytes().len() }
    }

    pub fn to_nix32(&self) -> String {
        nixbase32::encode(self.as_bytes())
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(self.as_bytes())
    }

    pub fn to_sri(&self) -> String {
        format!("{}-{}", self.algo, self.to_base64())
    }

    /// The digest in `enc`, with `algo:` in front when `with_algo` (SRI always names it).
    pub fn encode(&self, enc: HashEncoding, with_algo: bool) -> String {
        let digest = match enc {
            HashEncoding::Base16 => self.to_base16(),
            HashEncoding::Nix32 => self.to_nix32(),
            HashEncoding::Base64 => self.to_base64(),
            HashEncoding::Sri => return self.to_sri(),
        };
        if with_algo { format!("{}:{digest}", self.algo) } else { digest }
    }

    /// Parse any of Nix's spellings: `algo:digest`, `algo-base64` (SRI), or a
    /// bare digest when `algo` is given. If both the string and `algo` name an
    /// algorithm they must agree.
    pub fn parse(s: &str, algo: Option<HashAlgo>) -> Result<Hash, HashError> {
        let (named, digest, sri) = if let Some((a, d)) = s.split_once(':') {
            (Some(a.parse::<HashAlgo>()?), d, false)
        } else if let Some((a, d)) = s.split_once('-').filter(|(a, _)| a.parse::<HashAlgo>().is_ok()) {
            (Some(a.parse::<HashAlgo>()?), d, true)
        } else {
            (None, s, false)
        };
        let algo = match (named, algo) {
            (Some(found), Some(expected)) if found != expected => {
                return Err(HashError::AlgoMismatch { hash: s.to_owned(), found, expected });
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => return Err(HashError::MissingAlgo(s.to_owned())),
        };
        if sri {
            return Self::decode_base64(s, algo, digest);
        }
        Self::decode_digest(s, algo, digest)
    }

    /// Parse an SRI hash (`sha256-...`) only.
    pub fn parse_sri(s: &str) -> Result<Hash, HashError> {
        let (a, d) = s.split_once('-').ok_or_else(|| HashError::MissingAlgo(s.to_owned()))?;
        Self::decode_base64(s, a.parse()?, d)
    }

    fn decode_base64(whole: &str, algo: HashAlgo, digest: &str) -> Result<Hash, HashError> {
        let bytes = BASE64
            .decode(digest)
            .map_err(|_| HashError::InvalidDigest { hash: whole.to_owned(), encoding: "base64" })?;
        Hash::from_digest(algo, &bytes).ok_or(HashError::WrongLength { hash: whole.to_owned(), algo })
    }

    fn decode_digest(whole: &str, algo: HashAlgo, digest: &str) -> Result<Hash, HashError> {
        let size = algo.size();
        let invalid = |encoding| HashError::InvalidDigest { hash: whole.to_owned(), encoding };
        let bytes = if digest.len() == size * 2 {
            if !digest.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid("base16"));
            }
            hex::decode(digest).map_err(|_| invalid("base16"))?
        } else if digest.len() == nixbase32::encoded_len(size) {
            nixbase32::decode(digest).map_err(|_| invalid("nix32"))?
        } else if digest.len() == size.div_ceil(3) * 4 {
            return Self::decode_base64(whole, algo, digest);
        } else {
            return Err(HashError::WrongLength { hash: whole.to_owned(), algo });
        };
        Hash::from_digest(algo, &bytes).ok_or(HashError::WrongLength { hash: whole.to_owned(), algo })
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo, self.to_nix32())
    }
}

/// `algo:nix32`, Nix's default printing (as in narinfo `NarHash:`).
impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo, self.to_nix32())
    }
}

/// A hash in base16 ([`Hash::base16`]).
#[derive(Clone, Copy)]
pub struct Base16 {
    digits: [u8; 128],
    len: usize,
}

impl Base16 {
    pub fn as_bytes(&self) -> &[u8] {
        self.digits.get(..self.len).unwrap_or_default()
    }

    pub fn as_str(&self) -> &str {
        // Hex digits are ASCII.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// An incremental hasher for any [`HashAlgo`].
#[derive(Clone)]
pub enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algo: HashAlgo) -> Hasher {
        match algo {
            HashAlgo::Md5 => Hasher::Md5(md5::Md5::new()),
            HashAlgo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlgo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlgo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Hash {
        // Each digest is exactly its algorithm's size (at most 64 bytes).
        let mut bytes = [0u8; 64];
        let mut put = |d: &[u8], algo: HashAlgo| {
            bytes.iter_mut().zip(d).for_each(|(b, d)| *b = *d);
            algo
        };
        let algo = match self {
            Hasher::Md5(h) => put(&h.finalize(), HashAlgo::Md5),
            Hasher::Sha1(h) => put(&h.finalize(), HashAlgo::Sha1),
            Hasher::Sha256(h) => put(&h.finalize(), HashAlgo::Sha256),
            Hasher::Sha512(h) => put(&h.finalize(), HashAlgo::Sha512),
        };
        Hash { algo, bytes }
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// XOR-fold a digest into `size` bytes (Nix's `compressHash`), used for the
/// 160-bit hash part of store paths.
pub fn compress_hash(digest: &[u8], size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    for (i, b) in digest.iter().enumerate() {
        out[i % size] ^= b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn spellings_of_one_hash() {
        let h = Hash::digest(HashAlgo::Sha256, b"abc");
        assert_eq!(h.to_base16(), ABC_SHA256);
        // `nix-hash --type sha256 --to-base32 ba78...`
        assert_eq!(h.to_nix32(), "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s");
        assert_eq!(h.to_sri(), "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
        for s in [
            format!("sha256:{ABC_SHA256}"),
            "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s".to_owned(),
            "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=".to_owned(),
            "sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=".to_owned(),
        ] {
            assert_eq!(Hash::parse(&s, None).unwrap(), h, "{s}");
        }
        assert_eq!(Hash::parse(ABC_SHA256, Some(HashAlgo::Sha256)).unwrap(), h);
    }

    #[test]
    fn all_algorithms() {
        for algo in HashAlgo::ALL {
            let h = Hash::digest(algo, b"hello");
            assert_eq!(h.as_bytes().len(), algo.size());
            for enc in [HashEncoding::Base16, HashEncoding::Nix32, HashEncoding::Base64, HashEncoding::Sri] {
                assert_eq!(Hash::parse(&h.encode(enc, true), None).unwrap(), h);
            }
        }
        assert_eq!(Hash::digest(HashAlgo::Md5, b"").to_base16(), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(Hash::digest(HashAlgo::Sha1, b"").to_base16(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn rejects_malformed() {
        assert!(matches!(Hash::parse("sha256:abc", None), Err(HashError::WrongLength { .. })));
        assert!(matches!(Hash::parse("sha257:abc", None), Err(HashError::UnknownAlgo(_))));
        assert!(matches!(Hash::parse(ABC_SHA256, None), Err(HashError::MissingAlgo(_))));
        let bad_hex = format!("sha256:{}", ABC_SHA256.replace('a', "g"));
        assert!(matches!(Hash::parse(&bad_hex, None), Err(HashError::InvalidDigest { .. })));
        assert!(matches!(Hash::parse("sha256-!!!!", None), Err(HashError::InvalidDigest { .. })));
        assert!(matches!(Hash::parse("sha1-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=", None), Err(HashError::WrongLength { .. })));
        assert!(matches!(
            Hash::parse(&format!("sha1:{ABC_SHA256}"), Some(HashAlgo::Sha256)),
            Err(HashError::AlgoMismatch { .. })
        ));
    }
}
