//! Binary cache signing keys and signatures (Nix's `crypto.cc`).
//!
//! Everything is `<name>:<base64>`:
//!
//! - a [`SecretKey`] holds the 64-byte ed25519 secret key as libsodium stores
//!   it (32-byte seed followed by the 32-byte public key), as written by
//!   `nix-store --generate-binary-cache-key`;
//! - a [`PublicKey`] holds the 32-byte ed25519 public key;
//! - a [`Signature`] is `<key name>:<base64 of 64 signature bytes>`, the detached
//!   ed25519 signature of a message (for store paths: a
//!   [`PathInfo`](crate::path_info::PathInfo) fingerprint).
//!
//! The name before the first `:` selects which trusted key checks a signature.
//! ed25519 signing is deterministic, so our signatures are byte-identical to
//! libsodium's for the same key and message.
//!
//! Invariants: a parsed key is well formed (the public half of a secret key
//! matches its seed; a public key is a valid curve point); names are non-empty
//! and contain no `:`. Secret key material is never shown by `Debug`; it is
//! printed only by the explicit [`SecretKey::to_key_file_string`].

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{SecretKey as Seed, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

pub const SECRET_KEY_BYTES: usize = 64;
pub const PUBLIC_KEY_BYTES: usize = 32;
pub const SIGNATURE_BYTES: usize = 64;

#[derive(Debug, Error)]
pub enum SignatureError {
    #[error("{what} is corrupt: expected '<name>:<base64>'")]
    Corrupt { what: &'static str },
    #[error("{what} name '{name}' is invalid: it must be non-empty and contain no ':'")]
    BadName { what: &'static str, name: String },
    #[error("{what} '{name}' is not valid base64")]
    BadBase64 { what: &'static str, name: String },
    #[error("{what} '{name}' has {found} bytes, expected {expected}")]
    WrongLength { what: &'static str, name: String, found: usize, expected: usize },
    #[error("secret key '{0}' is not valid: its public half does not match its seed")]
    MismatchedSecretKey(String),
    #[error("public key '{0}' is not a valid ed25519 point")]
    InvalidPublicKey(String),
    #[error("could not read randomness for key generation: {0}")]
    Random(#[from] std::io::Error),
}

/// Split `name:base64`, decode, and check the length. Surrounding whitespace
/// (a key file's trailing newline) is ignored.
fn split_decode<const N: usize>(s: &str, what: &'static str) -> Result<(String, [u8; N]), SignatureError> {
    let s = s.trim();
    let (name, data) = s.split_once(':').ok_or(SignatureError::Corrupt { what })?;
    if name.is_empty() || data.is_empty() {
        return Err(SignatureError::Corrupt { what });
    }
    let name = name.to_owned();
    let Ok(bytes) = BASE64.decode(data) else { return Err(SignatureError::BadBase64 { what, name }) };
    match <[u8; N]>::try_from(bytes) {
        Ok(array) => Ok((name, array)),
        Err(bytes) => Err(SignatureError::WrongLength { what, name, found: bytes.len(), expected: N }),
    }
}

fn check_name(name: &str, what: &'static str) -> Result<(), SignatureError> {
    if name.is_empty() || name.contains(':') || name.trim() != name {
        return Err(SignatureError::BadName { what, name: name.to_owned() });
    }
    Ok(())
}

/// A named ed25519 signing key.
#[derive(Clone)]
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl SecretKey {
    /// Parse the contents of a Nix secret key file (`name:base64(64 bytes)`).
    pub fn parse(s: &str) -> Result<SecretKey, SignatureError> {
        let (name, pair) = split_decode::<SECRET_KEY_BYTES>(s, "secret key")?;
        match SigningKey::from_keypair_bytes(&pair) {
            Ok(key) => Ok(SecretKey { name, key }),
            Err(_) => Err(SignatureError::MismatchedSecretKey(name)),
        }
    }

    /// A key from a 32-byte seed (deterministic; for tests and injected randomness).
    pub fn from_seed(name: &str, seed: &Seed) -> Result<SecretKey, SignatureError> {
        check_name(name, "secret key")?;
        Ok(SecretKey { name: name.to_owned(), key: SigningKey::from_bytes(seed) })
    }

    /// A fresh key from the operating system's randomness (`/dev/urandom`).
    pub fn generate(name: &str) -> Result<SecretKey, SignatureError> {
        let mut seed = Seed::default();
        std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
        SecretKey::from_seed(name, &seed)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn to_public_key(&self) -> PublicKey {
        PublicKey { name: self.name.clone(), key: self.key.verifying_key() }
    }

    /// Sign `data` (libsodium's `crypto_sign_detached`).
    pub fn sign(&self, data: &[u8]) -> Signature {
        Signature { key_name: self.name.clone(), bytes: self.key.sign(data).to_bytes() }
    }

    /// The secret key file contents `name:base64(seed ‖ public key)`, without newline.
    /// This prints secret material: write it only to a protected file.
    pub fn to_key_file_string(&self) -> String {
        format!("{}:{}", self.name, BASE64.encode(self.key.to_keypair_bytes()))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("name", &self.name)
            .field("public", &self.to_public_key().to_string())
            .finish_non_exhaustive()
    }
}

impl FromStr for SecretKey {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecretKey::parse(s)
    }
}

/// A named ed25519 public key, as in `trusted-public-keys`.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    key: VerifyingKey,
}

impl PublicKey {
    /// Parse `name:base64(32 bytes)`.
    pub fn parse(s: &str) -> Result<PublicKey, SignatureError> {
        let (name, raw) = split_decode::<PUBLIC_KEY_BYTES>(s, "public key")?;
        match VerifyingKey::from_bytes(&raw) {
            Ok(key) => Ok(PublicKey { name, key }),
            Err(_) => Err(SignatureError::InvalidPublicKey(name)),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_BYTES] {
        self.key.as_bytes()
    }

    /// Whether `sig` is this key's valid signature of `data`. The signature's key
    /// name is not consulted here; [`PublicKeys::verify`] selects keys by name.
    pub fn verify(&self, data: &[u8], sig: &Signature) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(&sig.bytes);
        self.key.verify_strict(data, &sig).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(self.key.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::parse(s)
    }
}

/// A detached signature `key-name:base64(64 bytes)`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signature {
    key_name: String,
    bytes: [u8; SIGNATURE_BYTES],
}

impl Signature {
    pub fn parse(s: &str) -> Result<Signature, SignatureError> {
        let (key_name, bytes) = split_decode::<SIGNATURE_BYTES>(s, "signature")?;
        Ok(Signature { key_name, bytes })
    }

    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    pub fn as_bytes(&self) -> &[u8; SIGNATURE_BYTES] {
        &self.bytes
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.key_name, BASE64.encode(self.bytes))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Signature::parse(s)
    }
}

/// Trusted public keys by name (Nix's `PublicKeys`); a later key with the same
/// name replaces an earlier one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicKeys(BTreeMap<String, PublicKey>);

impl PublicKeys {
    pub fn new() -> PublicKeys {
        PublicKeys::default()
    }

    /// Parse a whitespace-separated list such as the `trusted-public-keys` setting.
    pub fn parse_list(s: &str) -> Result<PublicKeys, SignatureError> {
        let mut keys = PublicKeys::new();
        for k in s.split_whitespace() {
            keys.insert(PublicKey::parse(k)?);
        }
        Ok(keys)
    }

    pub fn insert(&mut self, key: PublicKey) {
        self.0.insert(key.name.clone(), key);
    }

    pub fn get(&self, name: &str) -> Option<&PublicKey> {
        self.0.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Nix's `verifyDetached`: `Ok(false)` if no trusted key has the signature's
    /// name or the signature does not verify; an error if `sig` is malformed.
    pub fn verify(&self, data: &[u8], sig: &str) -> Result<bool, SignatureError> {
        let sig = Signature::parse(sig)?;
        Ok(self.get(&sig.key_name).is_some_and(|k| k.verify(data, &sig)))
    }
}

impl FromIterator<PublicKey> for PublicKeys {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(iter: I) -> Self {
        let mut keys = PublicKeys::new();
        for k in iter {
            keys.insert(k);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let sk = SecretKey::from_seed("cache.example.org-1", &[7; 32]).unwrap();
        let pk = sk.to_public_key();
        let sig = sk.sign(b"hello");
        assert_eq!(sig.key_name(), "cache.example.org-1");
        assert!(pk.verify(b"hello", &sig));
        assert!(!pk.verify(b"hellO", &sig));
        let keys: PublicKeys = [pk.clone()].into_iter().collect();
        assert!(keys.verify(b"hello", &sig.to_string()).unwrap());
        assert!(!keys.verify(b"hello!", &sig.to_string()).unwrap());
        // Unknown key name: not an error, just not trusted.
        let other = SecretKey::from_seed("other", &[7; 32]).unwrap().sign(b"hello");
        assert!(!keys.verify(b"hello", &other.to_string()).unwrap());
        // A different key under the same name.
        let impostor = SecretKey::from_seed("cache.example.org-1", &[8; 32]).unwrap().sign(b"hello");
        assert!(!keys.verify(b"hello", &impostor.to_string()).unwrap());
    }

    #[test]
    fn key_strings_round_trip() {
        let sk = SecretKey::generate("k").unwrap();
        let s = sk.to_key_file_string();
        let sk2 = SecretKey::parse(&format!("{s}\n")).unwrap();
        assert_eq!(sk2.to_key_file_string(), s);
        assert_eq!(sk2.to_public_key(), sk.to_public_key());
        let pk = sk.to_public_key().to_string();
        assert_eq!(PublicKey::parse(&pk).unwrap().to_string(), pk);
        let sig = sk.sign(b"x").to_string();
        assert_eq!(Signature::parse(&sig).unwrap().to_string(), sig);
    }

    #[test]
    fn debug_hides_secret() {
        let sk = SecretKey::from_seed("k", &[9; 32]).unwrap();
        let secret_b64 = sk.to_key_file_string();
        let secret_b64 = secret_b64.trim_start_matches("k:");
        let dbg = format!("{sk:?}");
        assert!(!dbg.contains(&secret_b64[..20]), "{dbg}");
        assert!(dbg.contains(&sk.to_public_key().to_string()));
    }

    #[test]
    fn rejects_malformed() {
        let sk = SecretKey::from_seed("k", &[1; 32]).unwrap();
        let good = sk.to_key_file_string();
        let b64 = good.trim_start_matches("k:");
        assert!(matches!(SecretKey::parse(b64), Err(SignatureError::Corrupt { .. })));
        assert!(matches!(SecretKey::parse(&format!(":{b64}")), Err(SignatureError::Corrupt { .. })));
        assert!(matches!(SecretKey::parse("k:"), Err(SignatureError::Corrupt { .. })));
        assert!(matches!(SecretKey::parse("k:!!!!"), Err(SignatureError::BadBase64 { .. })));
        let pk = sk.to_public_key().to_string();
        assert!(matches!(SecretKey::parse(&pk), Err(SignatureError::WrongLength { found: 32, .. })));
        assert!(matches!(PublicKey::parse(&good), Err(SignatureError::WrongLength { found: 64, .. })));
        // Seed of one key with the public half of another.
        let mut pair = sk.key.to_keypair_bytes();
        pair[32..].copy_from_slice(SecretKey::from_seed("k", &[2; 32]).unwrap().to_public_key().as_bytes());
        assert!(matches!(
            SecretKey::parse(&format!("k:{}", BASE64.encode(pair))),
            Err(SignatureError::MismatchedSecretKey(_))
        ));
        assert!(matches!(Signature::parse(&pk), Err(SignatureError::WrongLength { found: 32, .. })));
        let keys: PublicKeys = [sk.to_public_key()].into_iter().collect();
        assert!(keys.verify(b"x", "k:AAAA").is_err());
        assert!(SecretKey::from_seed("a:b", &[1; 32]).is_err());
        assert!(SecretKey::from_seed("", &[1; 32]).is_err());
    }
}
