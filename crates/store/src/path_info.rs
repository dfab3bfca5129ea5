//! Path info: what the store knows about one valid store path (Nix's
//! `ValidPathInfo`), and the signature checks built on it.
//!
//! Signatures cover the path's *fingerprint*:
//!
//! ```text
//! 1;<store dir>/<hash>-<name>;<narHash as algo:nix32>;<narSize>;<abs ref>,<abs ref>,...
//! ```
//!
//! with references in sorted order (the order of their base names, which is
//! the order of their absolute paths under one store dir). A content-addressed
//! path needs no signature: if recomputing its path from its [`ContentAddress`],
//! name and references gives the path back, it is trusted as is
//! ([`PathInfo::is_content_addressed`]).
//!
//! Invariants: references and signatures are sets, so printing is
//! deterministic; a fingerprint is only produced when the NAR size is known
//! (non-zero), as in Nix.

use std::collections::BTreeSet;

use thiserror::Error;

use crate::content_address::ContentAddress;
use crate::hash::Hash;
use crate::signature::{PublicKeys, SecretKey, SignatureError};
use crate::store_path::{StoreDir, StorePath};

#[derive(Debug, Error)]
pub enum PathInfoError {
    #[error("cannot calculate fingerprint of path '{0}' because its size is not known")]
    UnknownNarSize(String),
    #[error("bad signature on path '{path}': {source}")]
    Signature { path: String, source: SignatureError },
}

/// Everything the store records about a valid path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    pub path: StorePath,
    /// The derivation that built it, if known.
    pub deriver: Option<StorePath>,
    /// Hash of the path's NAR serialisation (sha256 in practice).
    pub nar_hash: Hash,
    /// Paths this one refers to; may include itself.
    pub references: BTreeSet<StorePath>,
    /// Seconds since the epoch when the path was registered; 0 if unknown.
    pub registration_time: u64,
    /// Size of the NAR serialisation in bytes; 0 if unknown.
    pub nar_size: u64,
    /// Whether the path is ultimately trusted (built locally).
    pub ultimate: bool,
    /// Signatures `key-name:base64`, not necessarily verified.
    pub sigs: BTreeSet<String>,
    /// The content address the path claims, if any.
    pub ca: Option<ContentAddress>,
}

impl PathInfo {
    /// Path info with the given path, NAR hash and size and everything else empty.
    pub fn new(path: StorePath, nar_hash: Hash, nar_size: u64) -> PathInfo {
        PathInfo {
            path,
            deriver: None,
            nar_hash,
            references: BTreeSet::new(),
            registration_time: 0,
            nar_size,
            ultimate: false,
            sigs: BTreeSet::new(),
            ca: None,
        }
    }

    /// The string that binary cache signatures sign.
    pub fn fingerprint(&self, store_dir: &StoreDir) -> Result<String, PathInfoError> {
        if self.nar_size == 0 {
            return Err(PathInfoError::UnknownNarSize(store_dir.display(&self.path)));
        }
        let refs: Vec<String> = self.references.iter().map(|r| store_dir.display(r)).collect();
        Ok(format!("1;{};{};{};{}", store_dir.display(&self.path), self.nar_hash, self.nar_size, refs.join(",")))
    }

    /// Add `key`'s signature of the fingerprint to `sigs`.
    pub fn sign(&mut self, store_dir: &StoreDir, key: &SecretKey) -> Result<(), PathInfoError> {
        let sig = key.sign(self.fingerprint(store_dir)?.as_bytes());
        self.sigs.insert(sig.to_string());
        Ok(())
    }

    /// The path the content address gives, if the info claims one. A
    /// reference to the path itself counts as a self-reference.
    pub fn content_address_path(&self, store_dir: &StoreDir) -> Option<StorePath> {
        let ca = self.ca.as_ref()?;
        let mut refs = self.references.clone();
        let self_ref = refs.remove(&self.path);
        let refs = if matches!(ca, ContentAddress::Text(_)) { &self.references } else { &refs };
        ca.store_path(store_dir, self.path.name(), refs, self_ref).ok()
    }

    /// Whether the path is verifiably content-addressed: it claims a content
    /// address and that address (with the name and references) gives this path.
    pub fn is_content_addressed(&self, store_dir: &StoreDir) -> bool {
        let Some(ca_path) = self.content_address_path(store_dir) else { return false };
        let ok = ca_path == self.path;
        if !ok {
            tracing::warn!("path '{}' claims to be content-addressed but isn't", store_dir.display(&self.path));
        }
        ok
    }

    /// How many signatures were made by one of `keys` and verify;
    /// `usize::MAX` if the path is content-addressed (no signature needed).
    /// Malformed signatures, and any signature when the NAR size is unknown,
    /// count as not verifying.
    pub fn check_signatures(&self, store_dir: &StoreDir, keys: &PublicKeys) -> usize {
        if self.is_content_addressed(store_dir) {
            return usize::MAX;
        }
        self.sigs.iter().filter(|s| self.check_signature(store_dir, keys, s).unwrap_or(false)).count()
    }

    /// Whether `sig` is a valid signature of this path by one of `keys` (Nix's
    /// `checkSignature`). A well-formed signature by an unknown key is `Ok(false)`.
    pub fn check_signature(&self, store_dir: &StoreDir, keys: &PublicKeys, sig: &str) -> Result<bool, PathInfoError> {
        let fp = self.fingerprint(store_dir)?;
        keys.verify(fp.as_bytes(), sig)
            .map_err(|source| PathInfoError::Signature { path: store_dir.display(&self.path), source })
    }

    /// References as base names, sorted (Nix's `shortRefs`).
    pub fn short_refs(&self) -> Vec<String> {
        self.references.iter().map(|r| r.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashAlgo;
    use crate::store_path::FileIngestionMethod;

    fn sp(s: &str) -> StorePath {
        StoreDir::default().parse(s).unwrap()
    }

    #[test]
    fn fingerprint_form() {
        let dir = StoreDir::default();
        let mut info = PathInfo::new(
            sp("/nix/store/a0ra7rrwjqyqbw8w1r0n4gkb3yd3c6cw-hello"),
            Hash::parse("sha256:1xcgqx1k1ghh6d1i5gmc3cx6s1mfv6nbbb5bc67jqhryxsfafff8", None).unwrap(),
            120,
        );
        assert_eq!(
            info.fingerprint(&dir).unwrap(),
            "1;/nix/store/a0ra7rrwjqyqbw8w1r0n4gkb3yd3c6cw-hello;\
             sha256:1xcgqx1k1ghh6d1i5gmc3cx6s1mfv6nbbb5bc67jqhryxsfafff8;120;"
        );
        info.references.insert(sp("/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-z"));
        info.references.insert(sp("/nix/store/00000000000000000000000000000000-b"));
        assert!(info.fingerprint(&dir).unwrap().ends_with(
            ";120;/nix/store/00000000000000000000000000000000-b,/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-z"
        ));
        info.nar_size = 0;
        assert!(matches!(info.fingerprint(&dir), Err(PathInfoError::UnknownNarSize(_))));
    }

    #[test]
    fn sign_and_check() {
        let dir = StoreDir::default();
        let key = SecretKey::from_seed("test-1", &[42; 32]).unwrap();
        let keys: PublicKeys = [key.to_public_key()].into_iter().collect();
        let mut info = PathInfo::new(
            sp("/nix/store/a0ra7rrwjqyqbw8w1r0n4gkb3yd3c6cw-hello"),
            Hash::digest(HashAlgo::Sha256, b"nar"),
            3,
        );
        assert_eq!(info.check_signatures(&dir, &keys), 0);
        info.sign(&dir, &key).unwrap();
        info.sigs.insert("junk".to_owned());
        assert_eq!(info.check_signatures(&dir, &keys), 1);
        assert!(info.check_signature(&dir, &keys, "junk").is_err());
        info.nar_size = 4;
        assert_eq!(info.check_signatures(&dir, &keys), 0);
        assert_eq!(info.check_signatures(&StoreDir::new("/other/store"), &keys), 0);
    }

    #[test]
    fn content_addressed_paths_need_no_signature() {
        let dir = StoreDir::default();
        let nar_hash = Hash::digest(HashAlgo::Sha256, b"some nar");
        let path = dir.make_fixed_output_path(FileIngestionMethod::Recursive, &nar_hash, "src", [], false).unwrap();
        let mut info = PathInfo::new(path.clone(), nar_hash, 8);
        assert!(!info.is_content_addressed(&dir));
        info.ca = Some(ContentAddress::Fixed { method: FileIngestionMethod::Recursive, hash: nar_hash });
        assert!(info.is_content_addressed(&dir));
        assert_eq!(info.check_signatures(&dir, &PublicKeys::new()), usize::MAX);
        // A reference that is not part of the address breaks the claim.
        info.references.insert(sp("/nix/store/00000000000000000000000000000000-b"));
        assert!(!info.is_content_addressed(&dir));
        assert_eq!(info.check_signatures(&dir, &PublicKeys::new()), 0);

        // Flat and non-sha256 fixed paths cannot have references at all (even if
        // the path computed without them matches).
        let flat_hash = Hash::digest(HashAlgo::Sha1, b"flat");
        let flat = dir.make_fixed_output_path(FileIngestionMethod::Flat, &flat_hash, "f", [], false).unwrap();
        let mut info = PathInfo::new(flat, nar_hash, 8);
        info.ca = Some(ContentAddress::Fixed { method: FileIngestionMethod::Flat, hash: flat_hash });
        assert!(info.is_content_addressed(&dir));
        info.references.insert(sp("/nix/store/00000000000000000000000000000000-b"));
        assert!(!info.is_content_addressed(&dir));
        info.references = BTreeSet::from([info.path.clone()]);
        assert!(!info.is_content_addressed(&dir));

        // Self-references count as such for fixed:r:sha256.
        let self_path = dir.make_fixed_output_path(FileIngestionMethod::Recursive, &nar_hash, "src", [], true).unwrap();
        let mut info = PathInfo::new(self_path.clone(), nar_hash, 8);
        info.ca = Some(ContentAddress::Fixed { method: FileIngestionMethod::Recursive, hash: nar_hash });
        info.references.insert(self_path);
        assert!(info.is_content_addressed(&dir));

        // Text paths keep all references.
        let text_hash = Hash::digest(HashAlgo::Sha256, b"text");
        let r = sp("/nix/store/00000000000000000000000000000000-b");
        let tp = dir.make_text_path("t", &text_hash, [&r]).unwrap();
        let mut info = PathInfo::new(tp, nar_hash, 8);
        info.references.insert(r);
        info.ca = Some(ContentAddress::Text(text_hash));
        assert!(info.is_content_addressed(&dir));
    }
}
