//! `.narinfo` files: a binary cache's description of one store path.
//!
//! A narinfo is a list of `Key: value` lines, each ending in `\n`:
//!
//! ```text
//! StorePath: /nix/store/<hash>-<name>     required, absolute
//! URL: nar/<filehash>.nar.xz              required, relative to the cache
//! Compression: xz                         default bzip2 when absent
//! FileHash: sha256:<nix32>                hash of the compressed file
//! FileSize: <bytes>
//! NarHash: sha256:<nix32>                 required
//! NarSize: <bytes>                        required, non-zero
//! References: <base name> <base name>     space separated, may be empty
//! Deriver: <base name>                    optional
//! System: x86_64-linux                    optional
//! Sig: <key>:<base64>                     repeatable
//! CA: fixed:r:sha256:<nix32>              optional
//! ```
//!
//! [`NarInfo::to_text`] prints fields in exactly the order and spelling Nix 2.8
//! writes them, so a narinfo Nix wrote round-trips byte for byte.
//!
//! Parsing is stricter than Nix where Nix would accept nonsense: every line
//! needs `": "` and a final newline, fields other than `Sig` may appear once,
//! hashes must name their algorithm, sizes are plain decimal, and signatures
//! must be well formed. Each error names its (1-based) line. Like Nix, unknown
//! keys are ignored (newer caches add fields), and `Deriver: unknown-deriver`
//! means no deriver.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use thiserror::Error;

use crate::content_address::{ContentAddress, ContentAddressError};
use crate::hash::{Hash, HashError};
use crate::path_info::PathInfo;
use crate::signature::{Signature, SignatureError};
use crate::store_path::{StoreDir, StorePath, StorePathError};

/// Compression Nix assumes when a narinfo has no `Compression:` line.
pub const DEFAULT_COMPRESSION: &str = "bzip2";

#[derive(Debug, Error)]
pub enum NarInfoError {
    #[error("narinfo line {line}: {kind}")]
    Line { line: usize, kind: LineError },
    #[error("narinfo is missing the required field '{0}'")]
    MissingField(&'static str),
}

/// What is wrong with one narinfo line.
#[derive(Debug, Error)]
pub enum LineError {
    #[error("expected '<Key>: <value>'")]
    NoSeparator,
    #[error("the last line does not end with a newline")]
    Unterminated,
    #[error("field '{0}' appears more than once")]
    Duplicate(String),
    #[error("field '{0}' must not be empty")]
    Empty(&'static str),
    #[error("{field} '{value}' is not a decimal number")]
    BadNumber { field: &'static str, value: String },
    #[error("NarSize must not be 0")]
    ZeroNarSize,
    #[error(transparent)]
    StorePath(#[from] StorePathError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    ContentAddress(#[from] ContentAddressError),
}

/// A parsed narinfo. The path-level facts live in `info` (whose
/// `registration_time` and `ultimate` a narinfo does not carry: 0 and false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    pub info: PathInfo,
    /// Where the (compressed) NAR is, relative to the cache root.
    pub url: String,
    /// As written; `None` means Nix's default, [`DEFAULT_COMPRESSION`].
    pub compression: Option<String>,
    pub file_hash: Option<Hash>,
    pub file_size: Option<u64>,
    pub system: Option<String>,
}

/// The narinfo file name for a path: `<hash part>.narinfo`.
pub fn narinfo_file_name(path: &StorePath) -> String {
    format!("{}.narinfo", path.hash_part())
}

fn parse_u64(field: &'static str, value: &str) -> Result<u64, LineError> {
    let bad = || LineError::BadNumber { field, value: value.to_owned() };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    value.parse().map_err(|_| bad())
}

/// The fields as read, before the required ones are checked.
#[derive(Default)]
struct Fields {
    path: Option<StorePath>,
    url: Option<String>,
    compression: Option<String>,
    file_hash: Option<Hash>,
    file_size: Option<u64>,
    nar_hash: Option<Hash>,
    nar_size: Option<u64>,
    references: Option<BTreeSet<StorePath>>,
    deriver: Option<Option<StorePath>>,
    system: Option<String>,
    sigs: BTreeSet<String>,
    ca: Option<Option<ContentAddress>>,
}

/// Store `v` in `slot` unless the field was already seen.
fn set_once<T>(slot: &mut Option<T>, key: &str, v: T) -> Result<(), LineError> {
    if slot.is_some() {
        return Err(LineError::Duplicate(key.to_owned()));
    }
    *slot = Some(v);
    Ok(())
}

fn non_empty(field: &'static str, value: &str) -> Result<String, LineError> {
    if value.is_empty() { Err(LineError::Empty(field)) } else { Ok(value.to_owned()) }
}

impl Fields {
    fn read(&mut self, store_dir: &StoreDir, key: &str, value: &str) -> Result<(), LineError> {
        match key {
            "StorePath" => set_once(&mut self.path, key, store_dir.parse(value)?),
            "URL" => set_once(&mut self.url, key, non_empty("URL", value)?),
            "Compression" => set_once(&mut self.compression, key, non_empty("Compression", value)?),
            "FileHash" => set_once(&mut self.file_hash, key, Hash::parse(value, None)?),
            "FileSize" => set_once(&mut self.file_size, key, parse_u64("FileSize", value)?),
            "NarHash" => set_once(&mut self.nar_hash, key, Hash::parse(value, None)?),
            "NarSize" => match parse_u64("NarSize", value)? {
                0 => Err(LineError::ZeroNarSize),
                n => set_once(&mut self.nar_size, key, n),
            },
            "References" => {
                let refs = value.split(' ').filter(|r| !r.is_empty()).map(StorePath::from_base_name).collect::<Result<
                    BTreeSet<_>,
                    _,
                >>(
                )?;
                set_once(&mut self.references, key, refs)
            }
            "Deriver" => {
                let d = if value == "unknown-deriver" { None } else { Some(StorePath::from_base_name(value)?) };
                set_once(&mut self.deriver, key, d)
            }
            "System" => set_once(&mut self.system, key, non_empty("System", value)?),
            "Sig" => {
                Signature::parse(value)?;
                self.sigs.insert(value.to_owned());
                Ok(())
            }
            "CA" => set_once(&mut self.ca, key, ContentAddress::parse_opt(value)?),
            _ => Ok(()),
        }
    }
}

impl NarInfo {
    /// Parse a narinfo whose `StorePath` lies in `store_dir`.
    pub fn parse(store_dir: &StoreDir, text: &str) -> Result<NarInfo, NarInfoError> {
        let mut fields = Fields::default();
        let mut rest = text;
        let mut line = 0;
        while !rest.is_empty() {
            line += 1;
            let err = |kind| NarInfoError::Line { line, kind };
            let (this, next) = rest.split_once('\n').ok_or_else(|| err(LineError::Unterminated))?;
            rest = next;
            let (key, value) = this.split_once(": ").ok_or_else(|| err(LineError::NoSeparator))?;
            fields.read(store_dir, key, value).map_err(err)?;
        }
        let path = fields.path.ok_or(NarInfoError::MissingField("StorePath"))?;
        let url = fields.url.ok_or(NarInfoError::MissingField("URL"))?;
        let nar_hash = fields.nar_hash.ok_or(NarInfoError::MissingField("NarHash"))?;
        let nar_size = fields.nar_size.ok_or(NarInfoError::MissingField("NarSize"))?;
        let mut info = PathInfo::new(path, nar_hash, nar_size);
        info.references = fields.references.unwrap_or_default();
        info.deriver = fields.deriver.flatten();
        info.sigs = fields.sigs;
        info.ca = fields.ca.flatten();
        Ok(NarInfo {
            info,
            url,
            compression: fields.compression,
            file_hash: fields.file_hash,
            file_size: fields.file_size,
            system: fields.system,
        })
    }

    /// The compression of the file at `url` (`bzip2` if the narinfo did not say).
    pub fn compression(&self) -> &str {
        self.compression.as_deref().unwrap_or(DEFAULT_COMPRESSION)
    }

    /// The narinfo text, field order and spelling as Nix 2.8 writes it. Absent
    /// optional fields are left out (Nix itself always writes `Compression`,
    /// `FileHash` and `FileSize`).
    pub fn to_text(&self, store_dir: &StoreDir) -> String {
        let mut out = String::new();
        let mut field = |key: &str, value: &dyn fmt::Display| {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{key}: {value}");
        };
        field("StorePath", &store_dir.display(&self.info.path));
        field("URL", &self.url);
        if let Some(c) = &self.compression {
            field("Compression", c);
        }
        if let Some(h) = &self.file_hash {
            field("FileHash", h);
        }
        if let Some(s) = &self.file_size {
            field("FileSize", s);
        }
        field("NarHash", &self.info.nar_hash);
        field("NarSize", &self.info.nar_size);
        field("References", &self.info.short_refs().join(" "));
        if let Some(d) = &self.info.deriver {
            field("Deriver", d);
        }
        if let Some(s) = &self.system {
            field("System", s);
        }
        for sig in &self.info.sigs {
            field("Sig", sig);
        }
        if let Some(ca) = &self.info.ca {
            field("CA", ca);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::PublicKeys;

    // Written by `nix copy --to file://...` (Nix 2.8) on this machine, for a
    // `builtins.toFile` path referring to another, signed by key `test-1`.
    const TEXT_PATH: &str = "StorePath: /nix/store/04lvf6v3zl08nxdl1bs8j7df2y5y9d97-t
URL: nar/1skkq9b4dvl3a3sra5wfxhr5702bycc2kqf6awi9ds4hs27458dp.nar.xz
Compression: xz
FileHash: sha256:1skkq9b4dvl3a3sra5wfxhr5702bycc2kqf6awi9ds4hs27458dp
FileSize: 172
NarHash: sha256:0c3fak9f31nrizxsrk1wkyc9agsl3nyxqgkzn55vqanhlp1br49b
NarSize: 168
References: 12wigjpizrn8axaqxj288q1b751qmwya-a
Sig: test-1:6sRYHl7oDDk0s3jDDASTGy7SnHXYD5WJpQdCJ4VfwAk2Qa0KzAx8wuBh39cevX2aiO5qy/CevnCrRc/NcE1iBw==
CA: text:sha256:0z1kxv336pq6fag7l6wa9d0bkv9f13v88v1jn1c9jxw0037zlsvg
";
    const TEST_1_PUBLIC: &str = "test-1:fo16iuyXjW+dyllyIMrRLW331VHJ6IOQU+T087jqNOk=";

    // The same copy: a `nix-store --add`ed file, no references, unsigned.
    const ADDED_FILE: &str = "StorePath: /nix/store/xp0dpr9yz5h0fk5c5lpj7zzqjbdh3w8c-f
URL: nar/17gd6zzlkx90irc6qawagdkgh1d7qvlnq46yjf7xiqw9ycz7zq4a.nar.xz
Compression: xz
FileHash: sha256:17gd6zzlkx90irc6qawagdkgh1d7qvlnq46yjf7xiqw9ycz7zq4a
FileSize: 128
NarHash: sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw
NarSize: 120
References: 
CA: fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw
";

    #[test]
    fn parses_and_round_trips_nix_output() {
        let dir = StoreDir::default();
        for text in [TEXT_PATH, ADDED_FILE] {
            let ni = NarInfo::parse(&dir, text).unwrap();
            assert_eq!(ni.to_text(&dir), text);
            assert_eq!(ni.compression(), "xz");
            assert!(ni.info.is_content_addressed(&dir));
        }
        let ni = NarInfo::parse(&dir, TEXT_PATH).unwrap();
        assert_eq!(ni.info.path.name(), "t");
        assert_eq!(ni.info.nar_size, 168);
        assert_eq!(ni.file_size, Some(172));
        assert_eq!(ni.info.short_refs(), ["12wigjpizrn8axaqxj288q1b751qmwya-a"]);
        assert_eq!(narinfo_file_name(&ni.info.path), "04lvf6v3zl08nxdl1bs8j7df2y5y9d97.narinfo");
        // Nix's own signature verifies against our fingerprint.
        let keys = PublicKeys::parse_list(TEST_1_PUBLIC).unwrap();
        let sig = ni.info.sigs.first().unwrap();
        assert!(ni.info.check_signature(&dir, &keys, sig).unwrap());
    }

    #[test]
    fn optional_fields_and_defaults() {
        let dir = StoreDir::default();
        let minimal = "StorePath: /nix/store/xp0dpr9yz5h0fk5c5lpj7zzqjbdh3w8c-f\nURL: x\n\
                       NarHash: sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw\nNarSize: 1\n\
                       Deriver: unknown-deriver\nX-Unknown: whatever\nCA: \n";
        let ni = NarInfo::parse(&dir, minimal).unwrap();
        assert_eq!(ni.compression(), "bzip2");
        assert_eq!((ni.info.deriver.as_ref(), ni.info.ca, ni.file_hash), (None, None, None));
        let with_deriver = ADDED_FILE.replace(
            "References: \n",
            "References: \nDeriver: 12wigjpizrn8axaqxj288q1b751qmwya-a.drv\nSystem: x86_64-linux\n",
        );
        let ni = NarInfo::parse(&dir, &with_deriver).unwrap();
        assert_eq!(ni.info.deriver.as_ref().unwrap().name(), "a.drv");
        assert_eq!(ni.system.as_deref(), Some("x86_64-linux"));
        assert_eq!(ni.to_text(&dir), with_deriver);
    }

    fn line_error(text: &str) -> (usize, LineError) {
        match NarInfo::parse(&StoreDir::default(), text) {
            Err(NarInfoError::Line { line, kind }) => (line, kind),
            other => panic!("expected a line error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn rejects_malformed_lines() {
        let cases: &[(&str, &str, usize)] = &[
            ("NarSize: 120\n", "NarSize: 0\n", 7),
            ("NarSize: 120\n", "NarSize: -1\n", 7),
            ("NarSize: 120\n", "NarSize: 12 0\n", 7),
            ("FileSize: 128\n", "FileSize: 99999999999999999999999\n", 5),
            ("URL: nar/", "URL:nar/", 2),
            ("URL: nar/17gd6zzlkx90irc6qawagdkgh1d7qvlnq46yjf7xiqw9ycz7zq4a.nar.xz\n", "URL: \n", 2),
            ("Compression: xz\n", "Compression: xz\nCompression: xz\n", 4),
            ("NarHash: sha256:", "NarHash: ", 6),
            ("NarHash: sha256:", "NarHash: sha256:x", 6),
            ("FileHash: sha256:", "FileHash: sha1:", 4),
            ("References: \n", "References: 12wigjpizrn8axaqxj288q1b751qmwya-a/b\n", 8),
            ("References: \n", "References: \nReferences: \n", 9),
            ("References: \n", "References: \nDeriver: x\n", 9),
            ("References: \n", "References: \nSig: test-1:AAAA\n", 9),
            ("References: \n", "References: \nSig: nokey\n", 9),
            ("CA: fixed:r:", "CA: fixed:q:", 9),
            ("StorePath: /nix/store/", "StorePath: /tmp/", 1),
            ("-f\n", "-f g\n", 1),
            ("\nCA", "\n\nCA", 9),
        ];
        for (from, to, line) in cases {
            let text = ADDED_FILE.replacen(from, to, 1);
            assert_ne!(text, ADDED_FILE, "{from} not found");
            let (l, kind) = line_error(&text);
            assert_eq!(l, *line, "{to}: {kind}");
        }
        let (l, kind) = line_error(ADDED_FILE.trim_end());
        assert_eq!(l, 9);
        assert!(matches!(kind, LineError::Unterminated));
    }

    /// Mutations of a real narinfo never panic, and whatever parses prints to
    /// text that parses to the same value.
    #[test]
    fn mutations_never_panic_and_reparse() {
        let dir = StoreDir::default();
        let check = |text: &str| {
            if let Ok(ni) = NarInfo::parse(&dir, text) {
                assert_eq!(NarInfo::parse(&dir, &ni.to_text(&dir)).unwrap(), ni, "{text:?}");
            }
        };
        for i in 0..TEXT_PATH.len() {
            check(&TEXT_PATH[..i]);
            for c in [":", " ", "\n", "x", "\0", "é", ": ", "0"] {
                check(&format!("{}{c}{}", &TEXT_PATH[..i], &TEXT_PATH[i + 1..]));
                check(&format!("{}{c}{}", &TEXT_PATH[..i], &TEXT_PATH[i..]));
            }
        }
    }

    #[test]
    fn requires_fields() {
        let dir = StoreDir::default();
        for (key, line) in [("StorePath", 1), ("URL", 2), ("NarHash", 6), ("NarSize", 7)] {
            let text: String =
                ADDED_FILE.lines().enumerate().filter(|(i, _)| i + 1 != line).map(|(_, l)| format!("{l}\n")).collect();
            match NarInfo::parse(&dir, &text) {
                Err(NarInfoError::MissingField(k)) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
        assert!(matches!(NarInfo::parse(&dir, ""), Err(NarInfoError::MissingField("StorePath"))));
    }
}
