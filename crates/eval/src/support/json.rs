//! `builtins.fromJSON` into the neutral [`Data`] tree, and the byte-exact
//! `builtins.toJSON` writer pieces of C++ Nix 2.8.
//!
//! Parsing design: `serde_json` drives a custom visitor that applies Nix
//! 2.8's (nlohmann-json based) number rules:
//! - an integer literal that fits `i64` is an int;
//! - a non-negative integer literal that fits `u64` but not `i64` is an int
//!   *wrapped* to `i64` (`9223372036854775808` → `-9223372036854775808`,
//!   `18446744073709551615` → `-1`), exactly as Nix 2.8 does;
//! - anything else (fraction, exponent, larger integers) is a float, and a
//!   float that overflows (`1e400`) is an error;
//! - duplicate object keys: the last one wins;
//! - a leading UTF-8 byte-order mark is skipped, as nlohmann does;
//! - a string value ends at its first NUL (`"a\u0000b"` is `"a"`), since
//!   Nix 2.8 stores strings as C strings.
//!
//! Known difference: `-0` is the float `-0.0` here (serde_json does not
//! distinguish it from `-0.0`) but the int `0` in Nix 2.8.
//!
//! Error messages come from serde_json ("... at line L column C"), not
//! nlohmann's wording. Known gap: nesting deeper than
//! [`MAX_DEPTH`](super::data::MAX_DEPTH) (128) levels is rejected, while Nix
//! 2.8 accepts any depth; the limit keeps every consumer of [`Data`] safe
//! from stack overflow.
//!
//! Writing design: [`write_json_string`] escapes like Nix's `toJSON`: `"`
//! and `\` are backslash-escaped, `\n` `\r` `\t` use short escapes, other
//! bytes below 0x20 use `\u00XX` (lower-case hex), and everything else —
//! `/`, DEL, non-ASCII — is copied verbatim. Floats use
//! [`format_float_json`](super::float::format_float_json). [`to_json`]
//! writes a whole [`Data`] tree compactly (`{"a":[1,2.5,null]}`) with keys
//! in byte order, which is the output format of `builtins.toJSON`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use thiserror::Error;

use super::data::Data;
use super::escape::common_escape;
use super::float::write_float;

/// A `fromJSON` failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct JsonError {
    /// serde_json's description of the problem, with line and column.
    pub message: String,
}

/// The part of `s` before its first NUL: Nix 2.8 stores string values as
/// C strings, so `"a\u0000b"` decodes to `"a"`.
fn until_nul(s: &str) -> &str {
    s.split('\0').next().unwrap_or(s)
}

struct DataVisitor;

impl<'de> Visitor<'de> for DataVisitor {
    type Value = Data;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Data, E> {
        Ok(Data::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Data, E> {
        Ok(Data::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Data, E> {
        Ok(Data::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Data, E> {
        // Nix 2.8 stores nlohmann's unsigned integers with a wrapping cast.
        Ok(Data::Int(v as i64))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Data, E> {
        Ok(Data::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Data, E> {
        Ok(Data::String(until_nul(v).to_owned()))
    }

    fn visit_string<E>(self, mut v: String) -> Result<Data, E> {
        v.truncate(until_nul(&v).len());
        Ok(Data::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Data, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(DataSeed)? {
            items.push(item);
        }
        Ok(Data::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
        let mut attrs = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(DataSeed)?;
            attrs.insert(key, value);
        }
        Ok(Data::Attrs(attrs))
    }
}

struct DataSeed;

impl<'de> de::DeserializeSeed<'de> for DataSeed {
    type Value = Data;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Data, D::Error> {
        d.deserialize_any(DataVisitor)
    }
}

/// `builtins.fromJSON`: parses a JSON document into [`Data`].
pub fn parse_json(s: &str) -> Result<Data, JsonError> {
    let s = s.strip_prefix('\u{feff}').unwrap_or(s);
    let mut de = serde_json::Deserializer::from_str(s);
    let value = (&mut de)
        .deserialize_any(DataVisitor)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| JsonError {
            message: e.to_string(),
        })?;
    Ok(value)
}

/// Appends `s` as a JSON string literal exactly as Nix 2.8's `toJSON`.
pub fn write_json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if let Some(e) = common_escape(c) {
            out.push_str(e);
            continue;
        }
        match c {
            c if (c as u32) < 0x20 => {
                let b = c as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `f` as Nix 2.8's `toJSON` renders a float (`%g`, lossy).
pub fn write_json_float(out: &mut String, f: f64) {
    write_float(out, f);
}

/// Appends a whole [`Data`] tree as compact JSON, as `builtins.toJSON`.
pub fn write_json(out: &mut String, data: &Data) {
    match data {
        Data::Null => out.push_str("null"),
        Data::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Data::Int(i) => out.push_str(&i.to_string()),
        Data::Float(f) => write_json_float(out, *f),
        Data::String(s) => write_json_string(out, s),
        Data::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Data::Attrs(attrs) => {
            out.push('{');
            for (i, (key, value)) in attrs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, key);
                out.push(':');
                write_json(out, value);
            }
            out.push('}');
        }
    }
}

/// A [`Data`] tree as compact JSON (see [`write_json`]).
pub fn to_json(data: &Data) -> String {
    let mut out = String::new();
    write_json(&mut out, data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::data::attrs;

    #[test]
    fn numbers_follow_nix_2_8() {
        // nix-instantiate --eval -E 'builtins.fromJSON (builtins.readFile f)'
        let cases = [
            ("9223372036854775807", Data::Int(i64::MAX)),
            ("9223372036854775808", Data::Int(i64::MIN)),
            ("18446744073709551615", Data::Int(-1)),
            ("18446744073709551616", Data::Float(18446744073709551616.0)),
            ("-9223372036854775808", Data::Int(i64::MIN)),
            ("-9223372036854775809", Data::Float(-9223372036854775809.0)),
            ("1.0", Data::Float(1.0)),
            ("1e2", Data::Float(100.0)),
            ("0.5", Data::Float(0.5)),
            ("1e-400", Data::Float(0.0)),
            ("2.5e-324", Data::Float(5e-324)),
            (
                "123456789012345678901234567890",
                Data::Float(1.2345678901234568e29),
            ),
            (r#""a\u0000b""#, Data::String("a".into())),
        ];
        for (json, expected) in cases {
            assert_eq!(parse_json(json).unwrap(), expected, "{json}");
        }
        // Known difference: Nix 2.8 reads `-0` as the int 0; serde_json
        // reports it as the float -0.0, indistinguishable from `-0.0`.
        assert!(matches!(parse_json("-0").unwrap(), Data::Float(f) if f == 0.0));
        let neg_zero = parse_json("-0.0").unwrap();
        assert!(matches!(neg_zero, Data::Float(f) if f == 0.0 && f.is_sign_negative()));
        assert!(parse_json("1e400").is_err());
    }

    #[test]
    fn structure_and_strings() {
        assert_eq!(
            parse_json(r#"{"a":1,"a":2}"#).unwrap(),
            attrs([("a", Data::Int(2))])
        );
        assert_eq!(
            parse_json(r#""\ud83d\ude00 \u00e9 \/""#).unwrap(),
            Data::String("😀 é /".to_owned())
        );
        assert_eq!(
            parse_json(" [1, 2 ] ").unwrap(),
            Data::List(vec![Data::Int(1), Data::Int(2)])
        );
        assert_eq!(
            parse_json("\u{feff}[true,null]").unwrap(),
            Data::List(vec![Data::Bool(true), Data::Null])
        );
        assert_eq!(
            parse_json(r#"{"x": [1, 2, 3], "y": null}"#).unwrap(),
            attrs([
                (
                    "x",
                    Data::List(vec![Data::Int(1), Data::Int(2), Data::Int(3)])
                ),
                ("y", Data::Null)
            ])
        );
    }

    #[test]
    fn invalid_documents_are_errors() {
        // All rejected by Nix 2.8 as well.
        for bad in [
            "",
            "[1,]",
            r#"{"a" 1}"#,
            "nul",
            r#""\ud800""#,
            "01",
            "1.",
            "\"a\tb\"",
            "[1] x",
        ] {
            assert!(parse_json(bad).is_err(), "{bad:?}");
        }
        let e = parse_json("[1,]").unwrap_err();
        assert!(e.to_string().contains("line 1 column 4"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(parse_json(&deep).is_err());
        let ok = "[".repeat(100) + &"]".repeat(100);
        assert!(parse_json(&ok).is_ok());
    }

    #[test]
    fn to_json_matches_nix_2_8() {
        // builtins.toJSON { b = [1 2.5 null true "x"]; a = {}; c = []; "a\"b" = "u0000"; }
        let d = attrs([
            (
                "b",
                Data::List(vec![
                    Data::Int(1),
                    Data::Float(2.5),
                    Data::Null,
                    Data::Bool(true),
                    Data::String("x".into()),
                ]),
            ),
            ("a", Data::Attrs(BTreeMap::new())),
            ("c", Data::List(vec![])),
            ("a\"b", Data::String("u0000".into())),
        ]);
        assert_eq!(
            to_json(&d),
            r#"{"a":{},"a\"b":"u0000","b":[1,2.5,null,true,"x"],"c":[]}"#
        );
        // builtins.toJSON "é/\"\\\n\r\t" and a string from fromJSON "\u0001\u007f".
        let mut s = String::new();
        write_json_string(&mut s, "é/\"\\\n\r\t");
        assert_eq!(s, r#""é/\"\\\n\r\t""#);
        assert_eq!(
            to_json(&Data::String("\u{1}\u{7f}\u{8}\u{c}".into())),
            "\"\\u0001\u{7f}\\u0008\\u000c\""
        );
        // builtins.toJSON [ 0.1 1.0 1.0e20 1.0e-7 123456789.0 ]
        let floats = Data::List(
            [0.1, 1.0, 1.0e20, 1.0e-7, 123456789.0]
                .map(Data::Float)
                .to_vec(),
        );
        assert_eq!(to_json(&floats), "[0.1,1,1e+20,1e-07,1.23457e+08]");
    }

    /// Prints a [`Data`] tree as nix-instantiate prints the value.
    fn nix_print(d: &Data, out: &mut String) {
        use crate::support::escape::{write_attr_name, write_escaped_string};
        match d {
            Data::Null => out.push_str("null"),
            Data::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Data::Int(i) => out.push_str(&i.to_string()),
            Data::Float(f) => write_float(out, *f),
            Data::String(s) => write_escaped_string(out, s),
            Data::List(items) => {
                out.push_str("[ ");
                for item in items {
                    nix_print(item, out);
                    out.push(' ');
                }
                out.push(']');
            }
            Data::Attrs(attrs) => {
                out.push_str("{ ");
                for (k, v) in attrs {
                    write_attr_name(out, k);
                    out.push_str(" = ");
                    nix_print(v, out);
                    out.push_str("; ");
                }
                out.push('}');
            }
        }
    }

    fn gen_json(r: &mut crate::support::oracle::Lcg, depth: u32, out: &mut String) {
        let strings = [
            "",
            "a",
            "a b",
            "if",
            "x$",
            "${y}",
            "é",
            "\\u00e9",
            "\\ud83d\\ude00",
            "\\n\\t\\r",
            "\\\"q\\\"",
            "\\\\",
            "\\/",
            "\\u0001\\u001f",
            "\\b\\f",
            "A-1_'",
            "1a",
            "\u{7f}",
        ];
        match r.below(if depth < 3 { 10 } else { 7 }) {
            0 => out.push_str(r.pick(&["null", "true", "false"])),
            1 | 2 => {
                let numbers = [
                    "0",
                    "-1",
                    "42",
                    "9223372036854775807",
                    "9223372036854775808",
                    "18446744073709551615",
                    "18446744073709551616",
                    "-9223372036854775809",
                    "1.5",
                    "-0.25",
                    "1e3",
                    "1E-7",
                    "123456789.0",
                    "0.1",
                    "3.14159265358979",
                    "1e300",
                    "2.5e-5",
                    "100000",
                    "1000000.0",
                    "1e-400",
                ];
                out.push_str(r.pick(&numbers));
            }
            3..=6 => {
                out.push('"');
                out.push_str(r.pick(&strings));
                out.push('"');
            }
            7 => {
                out.push('[');
                for i in 0..r.below(4) {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    gen_json(r, depth + 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..r.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    out.push_str(r.pick(&strings));
                    out.push_str("\": ");
                    gen_json(r, depth + 1, out);
                }
                out.push('}');
            }
        }
    }

    #[test]
    fn generated_documents_match_nix_oracle() {
        use crate::support::oracle::{Lcg, eval_raw, nix_string};
        let mut r = Lcg(42);
        let docs: Vec<String> = (0..150)
            .map(|_| {
                let mut s = String::new();
                gen_json(&mut r, 0, &mut s);
                s
            })
            .collect();
        let expr: String = docs
            .iter()
            .map(|d| {
                let lit = nix_string(d);
                format!("(builtins.fromJSON {lit}) (builtins.toJSON (builtins.fromJSON {lit})) ")
            })
            .collect();
        let Some(nix) = eval_raw(&format!("[ {expr}]")) else {
            return;
        };
        let mut ours = String::from("[ ");
        for d in &docs {
            let data = parse_json(d).unwrap();
            nix_print(&data, &mut ours);
            ours.push(' ');
            crate::support::escape::write_escaped_string(&mut ours, &to_json(&data));
            ours.push(' ');
        }
        ours.push(']');
        if nix != ours {
            let at = nix
                .bytes()
                .zip(ours.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            let from = at.saturating_sub(80);
            panic!(
                "first difference at byte {at}:\n nix:  {}\n ours: {}",
                nix.get(from..(at + 80).min(nix.len())).unwrap_or(""),
                ours.get(from..(at + 80).min(ours.len())).unwrap_or("")
            );
        }
    }
}
