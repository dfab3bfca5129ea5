//! The ATerm form of a derivation, exactly as C++ Nix 2.8 prints and reads it:
//!
//! ```text
//! Derive([("out","/nix/store/..-x","r:sha256","<base16>"),...],
//!        [("/nix/store/..-dep.drv",["out"]),...],["/nix/store/..-src",...],
//!        "system","builder",["arg",...],[("key","value"),...])
//! ```
//!
//! Printing: builder, args and env keys/values are escaped (`\"`, `\\`, `\n`,
//! `\r`, `\t`); output names, paths, hash fields, input output names and the
//! system are written raw, as Nix does. Maps are in key order, store path sets
//! in printed order. The printer writes into any [`Sink`], so hashing an ATerm
//! (for drv paths and modulo hashes) needs no intermediate buffer.
//!
//! Parsing is strict where Nix is lax (commas between list elements are
//! required, duplicate keys and trailing data are errors) and identical where
//! Nix defines behaviour (`\x` for any other `x` reads as `x`). It is a flat
//! loop over a fixed grammar: no recursion, every error carries its byte
//! offset, nothing panics on any input.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::{Derivation, DerivationError, DerivationOutput, method_prefix};
use crate::hash::{Hash, HashAlgo, HashError, Hasher};
use crate::store_path::{FileIngestionMethod, StoreDir, StorePath, StorePathError};

/// Where printed ATerm bytes go.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Hasher {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// A [`Hasher`] fed through a buffer: an ATerm is written in many small
/// pieces, and one `update` per piece costs more than copying them. (The
/// buffer is a `Vec` with capacity, not an array, so it is not zeroed.)
pub struct BufferedHasher {
    hasher: Hasher,
    buf: Vec<u8>,
}

const BUFFER: usize = 4096;

impl BufferedHasher {
    pub fn new(algo: HashAlgo) -> BufferedHasher {
        BufferedHasher { hasher: Hasher::new(algo), buf: Vec::with_capacity(BUFFER) }
    }

    fn flush(&mut self) {
        self.hasher.update(&self.buf);
        self.buf.clear();
    }

    pub fn finish(mut self) -> Hash {
        self.flush();
        self.hasher.finish()
    }
}

impl Sink for BufferedHasher {
    fn put(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > BUFFER {
            self.flush();
        }
        if bytes.len() > BUFFER {
            self.hasher.update(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }
}

/// Input derivations replaced by their modulo hashes (base16) for
/// `hashDerivationModulo`; inputs with equal hashes share one entry.
pub type ReplacedInputs<'a> = BTreeMap<String, BTreeSet<&'a str>>;

fn put_raw(out: &mut impl Sink, s: &str) {
    out.put(b"\"");
    out.put(s.as_bytes());
    out.put(b"\"");
}

/// The escape sequence of each byte that needs one (Nix's `printString`).
const fn escape_of(c: u8) -> Option<&'static [u8]> {
    match c {
        b'"' => Some(b"\\\""),
        b'\\' => Some(b"\\\\"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        b'\t' => Some(b"\\t"),
        _ => None,
    }
}

/// Which bytes need escaping, as a table so the scan is one load per byte.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = escape_of(i as u8).is_some();
        i += 1;
    }
    t
};

fn put_escaped(out: &mut impl Sink, s: &str) {
    out.put(b"\"");
    let mut rest = s.as_bytes();
    while let Some(i) = rest.iter().position(|&c| NEEDS_ESCAPE[c as usize]) {
        let Some((plain, tail)) = rest.split_at_checked(i) else { break };
        let Some((&c, tail)) = tail.split_first() else { break };
        out.put(plain);
        out.put(escape_of(c).unwrap_or(&[c]));
        rest = tail;
    }
    out.put(rest);
    out.put(b"\"");
}

fn put_path(out: &mut impl Sink, store_dir: &StoreDir, p: &StorePath) {
    out.put(b"\"");
    out.put(store_dir.as_str().as_bytes());
    out.put(b"/");
    out.put(p.hash_part_str().as_str().as_bytes());
    out.put(b"-");
    out.put(p.name().as_bytes());
    out.put(b"\"");
}

fn put_list<S: Sink, T>(out: &mut S, items: impl IntoIterator<Item = T>, mut each: impl FnMut(&mut S, T)) {
    out.put(b"[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.put(b",");
        }
        each(out, item);
    }
    out.put(b"]");
}

/// Print `drv` as ATerm. With `mask`, output paths and the environment
/// variables named after outputs are printed empty; with `replaced`, the input
/// derivations are replaced by those modulo hashes (both as in
/// `hashDerivationModulo`).
pub fn write(
    drv: &Derivation,
    store_dir: &StoreDir,
    mask: bool,
    replaced: Option<&ReplacedInputs<'_>>,
    out: &mut impl Sink,
) -> Result<(), DerivationError> {
    write_outputs(drv, store_dir, mask, out)?;
    match replaced {
        Some(map) => write_replaced_inputs(map, out),
        None => write_input_drvs(drv, store_dir, out),
    }
    write_rest(drv, store_dir, mask, out);
    Ok(())
}

/// [`write`] with the input derivations list already printed (`inputs`).
pub(crate) fn write_with_printed_inputs(
    drv: &Derivation,
    store_dir: &StoreDir,
    mask: bool,
    inputs: &[u8],
    out: &mut impl Sink,
) -> Result<(), DerivationError> {
    write_outputs(drv, store_dir, mask, out)?;
    out.put(inputs);
    write_rest(drv, store_dir, mask, out);
    Ok(())
}

/// The unmasked ATerm into `out`, returning where its input derivations
/// list starts and ends, so that the modulo ATerm (the same bytes with that
/// list replaced, see [`write_replaced_inputs`]) can be hashed without
/// printing everything again.
pub(crate) fn write_with_inputs_span(
    drv: &Derivation,
    store_dir: &StoreDir,
    out: &mut Vec<u8>,
) -> Result<(usize, usize), DerivationError> {
    write_outputs(drv, store_dir, false, out)?;
    let start = out.len();
    write_input_drvs(drv, store_dir, out);
    let end = out.len();
    write_rest(drv, store_dir, false, out);
    Ok((start, end))
}

/// `Derive([outputs...],`
fn write_outputs(drv: &Derivation, store_dir: &StoreDir, mask: bool, out: &mut impl Sink) -> Result<(), DerivationError> {
    out.put(b"Derive([");
    for (i, (name, output)) in drv.outputs.iter().enumerate() {
        if i > 0 {
            out.put(b",");
        }
        out.put(b"(");
        put_raw(out, name);
        out.put(b",");
        match output {
            _ if mask => put_raw(out, ""),
            DerivationOutput::InputAddressed { path } => put_path(out, store_dir, path),
            DerivationOutput::CAFixed { .. } => match output.path(store_dir, &drv.name, name)? {
                Some(p) => put_path(out, store_dir, &p),
                None => put_raw(out, ""),
            },
            _ => put_raw(out, ""),
        }
        out.put(b",\"");
        match output {
            DerivationOutput::CAFixed { method, hash } => {
                out.put(method_prefix(*method).as_bytes());
                out.put(hash.algo().name().as_bytes());
                out.put(b"\",\"");
                out.put(hash.to_base16().as_bytes());
            }
            DerivationOutput::CAFloating { method, algo } | DerivationOutput::Impure { method, algo } => {
                out.put(method_prefix(*method).as_bytes());
                out.put(algo.name().as_bytes());
                out.put(b"\",\"");
                if matches!(output, DerivationOutput::Impure { .. }) {
                    out.put(b"impure");
                }
            }
            DerivationOutput::InputAddressed { .. } | DerivationOutput::Deferred => out.put(b"\",\""),
        }
        out.put(b"\")");
    }
    out.put(b"],");
    Ok(())
}

/// The input derivations list with their paths.
fn write_input_drvs(drv: &Derivation, store_dir: &StoreDir, out: &mut impl Sink) {
    put_list(out, &drv.input_drvs, |out, (path, outputs)| {
        out.put(b"(");
        put_path(out, store_dir, path);
        out.put(b",");
        put_list(out, outputs, |out, o| put_raw(out, o));
        out.put(b")");
    });
}

/// The input derivations list with each replaced by its modulo hash.
pub(crate) fn write_replaced_inputs(map: &ReplacedInputs<'_>, out: &mut impl Sink) {
    put_list(out, map, |out, (hash, outputs)| write_replaced_input(hash, outputs.iter().copied(), out));
}

/// One element of the replaced input derivations list:
/// `("<base16 hash>",["out",...])`.
pub(crate) fn write_replaced_input<'a>(hash: &str, outputs: impl IntoIterator<Item = &'a str>, out: &mut impl Sink) {
    out.put(b"(");
    put_raw(out, hash);
    out.put(b",");
    put_list(out, outputs, put_raw);
    out.put(b")");
}

/// `,[input sources...],"system","builder",[args...],[env...])`
fn write_rest(drv: &Derivation, store_dir: &StoreDir, mask: bool, out: &mut impl Sink) {
    out.put(b",");
    put_list(out, &drv.input_srcs, |out, path| put_path(out, store_dir, path));
    out.put(b",");
    put_raw(out, &drv.system);
    out.put(b",");
    put_escaped(out, &drv.builder);
    out.put(b",");
    put_list(out, &drv.args, |out, a| put_escaped(out, a));
    out.put(b",");
    put_list(out, &drv.env, |out, (k, v)| {
        out.put(b"(");
        put_escaped(out, k);
        out.put(b",");
        put_escaped(out, if mask && drv.outputs.contains_key(k) { "" } else { v });
        out.put(b")");
    });
    out.put(b")");
}

/// A malformed ATerm derivation; `offset` is the byte where parsing stopped.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("malformed derivation at byte {offset}: expected {expected}")]
    Expected { offset: usize, expected: &'static str },
    #[error("malformed derivation at byte {offset}: unterminated string")]
    UnterminatedString { offset: usize },
    #[error("malformed derivation at byte {offset}: not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("malformed derivation at byte {offset}: bad store path '{path}': {source}")]
    BadPath { offset: usize, path: String, source: StorePathError },
    #[error("malformed derivation at byte {offset}: bad hash algorithm '{algo}': {source}")]
    BadHashAlgo { offset: usize, algo: String, source: HashError },
    #[error("malformed derivation at byte {offset}: bad output hash '{hash}': {source}")]
    BadHash { offset: usize, hash: String, source: HashError },
    #[error("malformed derivation at byte {offset}: output '{output}' {problem}")]
    BadOutput { offset: usize, output: String, problem: &'static str },
    #[error("malformed derivation at byte {offset}: duplicate {what} '{key}'")]
    Duplicate { offset: usize, what: &'static str, key: String },
    #[error("malformed derivation at byte {offset}: unexpected data after the end")]
    TrailingData { offset: usize },
    #[error("derivation has no name: no .drv file name given and no 'name' environment variable")]
    MissingName,
}

struct Parser<'a> {
    s: &'a str,
    store_dir: &'a StoreDir,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn expect(&mut self, lit: &'static str) -> Result<(), ParseError> {
        if self.s.as_bytes().get(self.pos..self.pos + lit.len()) == Some(lit.as_bytes()) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(ParseError::Expected { offset: self.pos, expected: lit })
        }
    }

    /// A quoted string; escapes are decoded as Nix does.
    fn string(&mut self) -> Result<String, ParseError> {
        self.expect("\"")?;
        let start = self.pos;
        let rest = self.s.get(start..).unwrap_or_default();
        let Some(end) = rest.find(['"', '\\']) else {
            return Err(ParseError::UnterminatedString { offset: start - 1 });
        };
        if rest.as_bytes().get(end) == Some(&b'"') {
            self.pos = start + end + 1;
            return Ok(rest[..end].to_owned());
        }
        let mut res = String::with_capacity(rest.len().min(end + 64));
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = start + i + 1;
                    return Ok(res);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => res.push('\n'),
                    Some((_, 'r')) => res.push('\r'),
                    Some((_, 't')) => res.push('\t'),
                    Some((_, c)) => res.push(c),
                    None => break,
                },
                c => res.push(c),
            }
        }
        Err(ParseError::UnterminatedString { offset: start - 1 })
    }

    fn store_path(&mut self) -> Result<StorePath, ParseError> {
        let offset = self.pos;
        let path = self.string()?;
        self.store_dir.parse(&path).map_err(|source| ParseError::BadPath { offset, path, source })
    }

    /// A `[`-delimited, comma-separated list; `elem` parses one element.
    fn list(&mut self, mut elem: impl FnMut(&mut Self) -> Result<(), ParseError>) -> Result<(), ParseError> {
        self.expect("[")?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            elem(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(ParseError::Expected { offset: self.pos, expected: "',' or ']'" }),
            }
        }
    }

    fn output(&mut self, outputs: &mut BTreeMap<String, DerivationOutput>) -> Result<(), ParseError> {
        let offset = self.pos;
        self.expect("(")?;
        let name = self.string()?;
        self.expect(",")?;
        let path_offset = self.pos;
        let path = self.string()?;
        self.expect(",")?;
        let algo_offset = self.pos;
        let algo_field = self.string()?;
        self.expect(",")?;
        let hash_offset = self.pos;
        let hash = self.string()?;
        self.expect(")")?;
        let bad = |problem| ParseError::BadOutput { offset, output: name.clone(), problem };
        let parse_path = |path: String| {
            self.store_dir.parse(&path).map_err(|source| ParseError::BadPath { offset: path_offset, path, source })
        };
        let output = if algo_field.is_empty() {
            if !hash.is_empty() {
                return Err(bad("has a hash but no hash algorithm"));
            }
            if path.is_empty() { DerivationOutput::Deferred } else { DerivationOutput::InputAddressed { path: parse_path(path)? } }
        } else {
            let (method, algo_name) = match algo_field.strip_prefix("r:") {
                Some(a) => (FileIngestionMethod::Recursive, a),
                None => (FileIngestionMethod::Flat, algo_field.as_str()),
            };
            let algo: HashAlgo = algo_name
                .parse()
                .map_err(|source| ParseError::BadHashAlgo { offset: algo_offset, algo: algo_field.clone(), source })?;
            if hash == "impure" || hash.is_empty() {
                if !path.is_empty() {
                    return Err(bad("is impure or floating content-addressed but has a path"));
                }
                if hash.is_empty() {
                    DerivationOutput::CAFloating { method, algo }
                } else {
                    DerivationOutput::Impure { method, algo }
                }
            } else {
                parse_path(path)?;
                let bad_hash = |source| ParseError::BadHash { offset: hash_offset, hash: hash.clone(), source };
                if hash.contains([':', '-']) {
                    return Err(bad_hash(HashError::InvalidDigest { hash: hash.clone(), encoding: "unprefixed" }));
                }
                let hash = Hash::parse(&hash, Some(algo)).map_err(bad_hash)?;
                DerivationOutput::CAFixed { method, hash }
            }
        };
        if outputs.insert(name.clone(), output).is_some() {
            return Err(ParseError::Duplicate { offset, what: "output", key: name });
        }
        Ok(())
    }

    fn input_drv(&mut self, inputs: &mut BTreeMap<StorePath, BTreeSet<String>>) -> Result<(), ParseError> {
        let offset = self.pos;
        self.expect("(")?;
        let path = self.store_path()?;
        self.expect(",")?;
        let mut outputs = BTreeSet::new();
        self.list(|p| {
            let o_offset = p.pos;
            let o = p.string()?;
            if outputs.contains(&o) {
                return Err(ParseError::Duplicate { offset: o_offset, what: "input derivation output", key: o });
            }
            outputs.insert(o);
            Ok(())
        })?;
        self.expect(")")?;
        if inputs.contains_key(&path) {
            return Err(ParseError::Duplicate { offset, what: "input derivation", key: path.to_string() });
        }
        inputs.insert(path, outputs);
        Ok(())
    }

    fn derivation(&mut self) -> Result<Derivation, ParseError> {
        let mut drv = Derivation::default();
        self.expect("Derive(")?;
        self.list(|p| p.output(&mut drv.outputs))?;
        self.expect(",")?;
        self.list(|p| p.input_drv(&mut drv.input_drvs))?;
        self.expect(",")?;
        self.list(|p| {
            let offset = p.pos;
            let path = p.store_path()?;
            if drv.input_srcs.contains(&path) {
                return Err(ParseError::Duplicate { offset, what: "input source", key: path.to_string() });
            }
            drv.input_srcs.insert(path);
            Ok(())
        })?;
        self.expect(",")?;
        drv.system = self.string()?;
        self.expect(",")?;
        drv.builder = self.string()?;
        self.expect(",")?;
        self.list(|p| {
            let arg = p.string()?;
            drv.args.push(arg);
            Ok(())
        })?;
        self.expect(",")?;
        self.list(|p| {
            let offset = p.pos;
            p.expect("(")?;
            let key = p.string()?;
            p.expect(",")?;
            let value = p.string()?;
            p.expect(")")?;
            if drv.env.contains_key(&key) {
                return Err(ParseError::Duplicate { offset, what: "environment variable", key });
            }
            drv.env.insert(key, value);
            Ok(())
        })?;
        self.expect(")")?;
        if self.pos != self.s.len() {
            return Err(ParseError::TrailingData { offset: self.pos });
        }
        Ok(drv)
    }
}

/// Parse an ATerm derivation (see [`Derivation::parse`]).
pub fn parse(store_dir: &StoreDir, aterm: &[u8], name: Option<&str>) -> Result<Derivation, ParseError> {
    let s = std::str::from_utf8(aterm).map_err(|e| ParseError::InvalidUtf8 { offset: e.valid_up_to() })?;
    let mut drv = Parser { s, store_dir, pos: 0 }.derivation()?;
    drv.name = match name {
        Some(n) => n.to_owned(),
        None => drv.env.get("name").cloned().ok_or(ParseError::MissingName)?,
    };
    Ok(drv)
}
