//! Content addresses: the `ca` field of path info and the narinfo `CA:` line.
//!
//! A content address asserts that a store path was computed from its contents,
//! so whoever holds the contents can check the path without trusting a
//! signature. Nix 2.8 spells them
//!
//! ```text
//! text:sha256:<nix32>              builtins.toFile, .drv files (always sha256)
//! fixed:<algo>:<nix32>             flat file hashed with <algo>
//! fixed:r:<algo>:<nix32>           NAR serialisation hashed with <algo>
//! ```
//!
//! and the method alone (`text:sha256`, `fixed:r:sha1`, ...) as
//! [`ContentAddressMethod`]. Parsing accepts the digest in base16, nix32 or
//! base64 (recognised by length, as Nix's `parseNonSRIUnprefixed`); printing
//! always uses nix32, so `parse(print(x)) == x`.
//!
//! Invariant: a [`ContentAddress::Text`] obtained by parsing always holds a
//! sha256 hash; path computations refuse any other (Nix asserts the same).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::hash::{Hash, HashAlgo, HashError};
use crate::store_path::{FileIngestionMethod, StoreDir, StorePath, StorePathError};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ContentAddressError {
    #[error("not a content address because it is not in the form '<prefix>:<rest>': '{0}'")]
    NoPrefix(String),
    #[error("content address prefix '{prefix}' is unrecognized (expected 'text' or 'fixed') in '{ca}'")]
    UnknownPrefix { ca: String, prefix: String },
    #[error("content address hash must be in form '<algo>:<hash>', but found '{0}'")]
    NoAlgo(String),
    #[error("text content address hash should use sha256, but '{ca}' uses {algo}")]
    TextNotSha256 { ca: String, algo: HashAlgo },
    #[error("bad hash in content address '{ca}': {source}")]
    Hash { ca: String, source: HashError },
    #[error("content address '{0}' cannot have references (only text and fixed:r:sha256 can)")]
    ReferencesNotAllowed(String),
    #[error("content address does not give a valid store path: {0}")]
    StorePath(#[from] StorePathError),
}

/// How a content-addressed path was hashed, without the hash itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentAddressMethod {
    /// `text:sha256`: the flat contents, hashed with sha256, may refer to other paths but not itself.
    Text,
    /// `fixed:[r:]<algo>`.
    Fixed { method: FileIngestionMethod, algo: HashAlgo },
}

/// A content address: method plus hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentAddress {
    /// `text:sha256:<nix32>`; the hash is the sha256 of the file's contents.
    Text(Hash),
    /// `fixed:[r:]<algo>:<nix32>`.
    Fixed { method: FileIngestionMethod, hash: Hash },
}

fn ingestion_prefix(method: FileIngestionMethod) -> &'static str {
    match method {
        FileIngestionMethod::Flat => "",
        FileIngestionMethod::Recursive => "r:",
    }
}

/// Parse `<prefix>:[r:]<algo>` off the front of `rest`, leaving what follows the
/// algorithm's colon in `rest` (or "" when `whole` ends with the algorithm).
fn parse_method_prefix<'a>(whole: &str, rest: &mut &'a str) -> Result<ContentAddressMethod, ContentAddressError> {
    let (prefix, after) = rest.split_once(':').ok_or_else(|| ContentAddressError::NoPrefix(whole.to_owned()))?;
    *rest = after;
    let parse_algo = |rest: &mut &'a str| -> Result<HashAlgo, ContentAddressError> {
        let (algo, after) = rest.split_once(':').ok_or_else(|| ContentAddressError::NoAlgo(whole.to_owned()))?;
        *rest = after;
        algo.parse::<HashAlgo>().map_err(|source| ContentAddressError::Hash { ca: whole.to_owned(), source })
    };
    match prefix {
        "text" => {
            let algo = parse_algo(rest)?;
            if algo != HashAlgo::Sha256 {
                return Err(ContentAddressError::TextNotSha256 { ca: whole.to_owned(), algo });
            }
            Ok(ContentAddressMethod::Text)
        }
        "fixed" => {
            let method = match rest.strip_prefix("r:") {
                Some(r) => {
                    *rest = r;
                    FileIngestionMethod::Recursive
                }
                None => FileIngestionMethod::Flat,
            };
            Ok(ContentAddressMethod::Fixed { method, algo: parse_algo(rest)? })
        }
        _ => Err(ContentAddressError::UnknownPrefix { ca: whole.to_owned(), prefix: prefix.to_owned() }),
    }
}

impl ContentAddressMethod {
    /// Parse `text:sha256`, `fixed:sha1`, `fixed:r:sha256`, ...
    pub fn parse(s: &str) -> Result<ContentAddressMethod, ContentAddressError> {
        let with_colon = format!("{s}:");
        let mut rest = with_colon.as_str();
        let m = parse_method_prefix(s, &mut rest)?;
        if !rest.is_empty() {
            return Err(ContentAddressError::NoAlgo(s.to_owned()));
        }
        Ok(m)
    }

    /// The hash algorithm the method uses.
    pub fn algo(&self) -> HashAlgo {
        match self {
            ContentAddressMethod::Text => HashAlgo::Sha256,
            ContentAddressMethod::Fixed { algo, .. } => *algo,
        }
    }
}

impl fmt::Display for ContentAddressMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentAddressMethod::Text => f.write_str("text:sha256"),
            ContentAddressMethod::Fixed { method, algo } => write!(f, "fixed:{}{algo}", ingestion_prefix(*method)),
        }
    }
}

impl FromStr for ContentAddressMethod {
    type Err = ContentAddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ContentAddressMethod::parse(s)
    }
}

impl ContentAddress {
    /// Parse a content address as Nix 2.8's `parseContentAddress` does.
    pub fn parse(s: &str) -> Result<ContentAddress, ContentAddressError> {
        let mut rest = s;
        let method = parse_method_prefix(s, &mut rest)?;
        let algo = method.algo();
        // The digest is bare (no algorithm, not SRI): a ':' or '-' in it is an error.
        let hash = if rest.contains([':', '-']) || rest.is_empty() {
            Err(HashError::WrongLength { hash: rest.to_owned(), algo })
        } else {
            Hash::parse(rest, Some(algo))
        }
        .map_err(|source| ContentAddressError::Hash { ca: s.to_owned(), source })?;
        Ok(match method {
            ContentAddressMethod::Text => ContentAddress::Text(hash),
            ContentAddressMethod::Fixed { method, .. } => ContentAddress::Fixed { method, hash },
        })
    }

    /// Nix's `parseContentAddressOpt`: the empty string means "no content address".
    pub fn parse_opt(s: &str) -> Result<Option<ContentAddress>, ContentAddressError> {
        if s.is_empty() { Ok(None) } else { ContentAddress::parse(s).map(Some) }
    }

    pub fn method(&self) -> ContentAddressMethod {
        match self {
            ContentAddress::Text(_) => ContentAddressMethod::Text,
            ContentAddress::Fixed { method, hash } => {
                ContentAddressMethod::Fixed { method: *method, algo: hash.algo() }
            }
        }
    }

    pub fn hash(&self) -> &Hash {
        match self {
            ContentAddress::Text(hash) | ContentAddress::Fixed { hash, .. } => hash,
        }
    }

    /// The store path this content address gives for `name` and `references`
    /// (other paths) and `self_ref` (whether it refers to itself). Only
    /// `fixed:r:sha256` may have either, `text` may refer to other paths; any
    /// other combination is an error.
    pub fn store_path(
        &self,
        store_dir: &StoreDir,
        name: &str,
        references: &BTreeSet<StorePath>,
        self_ref: bool,
    ) -> Result<StorePath, ContentAddressError> {
        match self {
            ContentAddress::Text(hash) => {
                if hash.algo() != HashAlgo::Sha256 {
                    return Err(ContentAddressError::TextNotSha256 { ca: self.to_string(), algo: hash.algo() });
                }
                Ok(store_dir.make_text_path(name, hash, references)?)
            }
            ContentAddress::Fixed { method, hash } => {
                let is_source = *method == FileIngestionMethod::Recursive && hash.algo() == HashAlgo::Sha256;
                if !is_source && (self_ref || !references.is_empty()) {
                    // Nix asserts this; a claim like that must not pass for content-addressed.
                    return Err(ContentAddressError::ReferencesNotAllowed(self.to_string()));
                }
                Ok(store_dir.make_fixed_output_path(*method, hash, name, references, self_ref)?)
            }
        }
    }
}

/// Nix's `renderContentAddress`: the hash always in nix32.
impl fmt::Display for ContentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentAddress::Text(hash) => write!(f, "text:{hash}"),
            ContentAddress::Fixed { method, hash } => write!(f, "fixed:{}{hash}", ingestion_prefix(*method)),
        }
    }
}

impl FromStr for ContentAddress {
    type Err = ContentAddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ContentAddress::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "text:sha256:1xcgqx1k1ghh6d1i5gmc3cx6s1mfv6nbbb5bc67jqhryxsfafff8";

    #[test]
    fn round_trips() {
        for s in [
            TEXT,
            "fixed:sha256:1xcgqx1k1ghh6d1i5gmc3cx6s1mfv6nbbb5bc67jqhryxsfafff8",
            "fixed:r:sha256:1xcgqx1k1ghh6d1i5gmc3cx6s1mfv6nbbb5bc67jqhryxsfafff8",
            "fixed:r:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs",
            "fixed:md5:3y8bwfr609h3lh9ch0izcqq7fl",
        ] {
            let ca = ContentAddress::parse(s).unwrap();
            assert_eq!(ca.to_string(), s);
        }
        let ca = ContentAddress::parse("fixed:r:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs").unwrap();
        assert_eq!(
            ca.method(),
            ContentAddressMethod::Fixed { method: FileIngestionMethod::Recursive, algo: HashAlgo::Sha1 }
        );
        assert_eq!(ca.method().to_string(), "fixed:r:sha1");
    }

    #[test]
    fn other_digest_encodings_print_as_nix32() {
        let h = Hash::digest(HashAlgo::Sha256, b"abc");
        let expected = format!("fixed:r:sha256:{}", h.to_nix32());
        for digest in [h.to_base16(), h.to_base64()] {
            let ca = ContentAddress::parse(&format!("fixed:r:sha256:{digest}")).unwrap();
            assert_eq!(ca.to_string(), expected);
        }
    }

    #[test]
    fn mutations_never_panic_and_reparse() {
        let base = "fixed:r:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs";
        for i in 0..base.len() {
            for c in ["", ":", "r:", "-", "é", "e", "0", "text:"] {
                let s = format!("{}{c}{}", &base[..i], &base[i + 1..]);
                if let Ok(ca) = ContentAddress::parse(&s) {
                    assert_eq!(ContentAddress::parse(&ca.to_string()).unwrap(), ca, "{s}");
                }
                let _ = ContentAddressMethod::parse(&s);
            }
        }
    }

    #[test]
    fn methods() {
        for s in ["text:sha256", "fixed:sha1", "fixed:r:sha256", "fixed:r:md5", "fixed:sha512"] {
            assert_eq!(ContentAddressMethod::parse(s).unwrap().to_string(), s);
        }
        assert!(ContentAddressMethod::parse("text:sha1").is_err());
        assert!(ContentAddressMethod::parse("fixed:r:sha256:x").is_err());
        assert!(ContentAddressMethod::parse("fixed").is_err());
        assert!(ContentAddressMethod::parse("nar:sha256").is_err());
    }

    #[test]
    fn rejects_malformed() {
        let nix32 = "1xcgqx1k1ghh6d1i5gmc3cx6s1mfv6nbbb5bc67jqhryxsfafff8";
        assert!(matches!(ContentAddress::parse("text"), Err(ContentAddressError::NoPrefix(_))));
        assert!(matches!(ContentAddress::parse("text:sha256"), Err(ContentAddressError::NoAlgo(_))));
        assert!(matches!(
            ContentAddress::parse(&format!("text:sha1:{nix32}")),
            Err(ContentAddressError::TextNotSha256 { .. })
        ));
        assert!(matches!(
            ContentAddress::parse(&format!("source:sha256:{nix32}")),
            Err(ContentAddressError::UnknownPrefix { .. })
        ));
        for bad in [
            "fixed:sha256:".to_owned(),
            "fixed:sha256:abc".to_owned(),
            format!("fixed:sha257:{nix32}"),
            format!("fixed:sha256:sha256:{nix32}"),
            format!("fixed:sha256:{}", Hash::digest(HashAlgo::Sha256, b"").to_sri()),
            format!("fixed:sha1:{nix32}"),
            format!("fixed:R:sha256:{nix32}"),
        ] {
            assert!(matches!(ContentAddress::parse(&bad), Err(ContentAddressError::Hash { .. })), "{bad}");
        }
        assert_eq!(ContentAddress::parse_opt("").unwrap(), None);
    }
}
