//! `builtins.fromJSON` into the neutral [`Data`] tree, and the byte-exact
//! `builtins.toJSON` writer pieces of C++ Nix 2.8.
//!
//! Parsing ([`parse_json`], implemented in [`parse`]) re-implements the
//! nlohmann-json lexer and parser that Nix 2.8 uses, so values *and* error
//! messages are Nix's (`[json.exception.parse_error.101] parse error at
//! line 1, column 4: syntax error while parsing value - unexpected ']';
//! expected '[', '{', or a literal`). Known difference: nesting deeper
//! than [`MAX_DEPTH`](super::data::MAX_DEPTH) levels is an error here.
//!
//! Writing design: [`write_json_string`] escapes like Nix's `toJSON`: `"`
//! and `\` are backslash-escaped, `\n` `\r` `\t` use short escapes, other
//! bytes below 0x20 use `\u00XX` (lower-case hex), and everything else —
//! `/`, DEL, non-ASCII — is copied verbatim. Floats use
//! [`format_float_json`](super::float::format_float_json). [`to_json`]
//! writes a whole [`Data`] tree compactly (`{"a":[1,2.5,null]}`) with keys
//! in byte order, which is the output format of `builtins.toJSON`.

mod parse;

use thiserror::Error;

use super::data::Data;
use super::escape::common_escape;
use super::float::write_float;

/// A `fromJSON` failure, with nlohmann-json's message as Nix 2.8 shows it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct JsonError {
    /// The complete message.
    pub message: String,
}

/// `builtins.fromJSON`: parses a JSON document into [`Data`].
pub fn parse_json(s: &str) -> Result<Data, JsonError> {
    parse::parse(s)
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
    use std::collections::BTreeMap;

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
        ];
        for (json, expected) in cases {
            assert_eq!(parse_json(json).unwrap(), expected, "{json}");
        }
        assert_eq!(parse_json("-0").unwrap(), Data::Int(0));
        let neg_zero = parse_json("-0.0").unwrap();
        assert!(matches!(neg_zero, Data::Float(f) if f == 0.0 && f.is_sign_negative()));
        assert!(parse_json("1e400").is_err());
        // Current Nix (2.8 cut the string at the NUL: "a").
        assert_eq!(
            parse_json(r#""a\u0000b""#).unwrap_err().message,
            "input string 'a\u{2400}b' cannot be represented as Nix string because it contains null bytes"
        );
        let Data::Attrs(a) = parse_json(r#"{"k\u0000":1}"#).unwrap() else { panic!() };
        assert!(a.contains_key("k\0"));
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
    fn error_messages_match_nix_2_8() {
        // `nix-instantiate --eval -E 'builtins.fromJSON (builtins.readFile f)'`
        // prints "error: " followed by exactly these messages.
        let p = "[json.exception.parse_error.101] parse error at ";
        let cases: &[(&str, &str)] = &[
            (
                "",
                "line 1, column 1: syntax error while parsing value - unexpected end of input; expected '[', '{', or a literal",
            ),
            (
                "  ",
                "line 1, column 3: syntax error while parsing value - unexpected end of input; expected '[', '{', or a literal",
            ),
            (
                "[1,]",
                "line 1, column 4: syntax error while parsing value - unexpected ']'; expected '[', '{', or a literal",
            ),
            (
                r#"{"a" 1}"#,
                "line 1, column 6: syntax error while parsing object separator - unexpected number literal; expected ':'",
            ),
            (
                "nul",
                "line 1, column 4: syntax error while parsing value - invalid literal; last read: 'nul'",
            ),
            (
                r#""\ud800""#,
                r#"line 1, column 8: syntax error while parsing value - invalid string: surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF; last read: '"\ud800"'"#,
            ),
            (
                r#""\uDEAD""#,
                r#"line 1, column 7: syntax error while parsing value - invalid string: surrogate U+DC00..U+DFFF must follow U+D800..U+DBFF; last read: '"\uDEAD'"#,
            ),
            (
                "01",
                "line 1, column 2: syntax error while parsing value - unexpected number literal; expected end of input",
            ),
            (
                "1.",
                "line 1, column 3: syntax error while parsing value - invalid number; expected digit after '.'; last read: '1.'",
            ),
            (
                "\"a\tb\"",
                "line 1, column 3: syntax error while parsing value - invalid string: control character U+0009 (HT) must be escaped to \\u0009 or \\t; last read: '\"a<U+0009>'",
            ),
            (
                "[1] x",
                "line 1, column 5: syntax error while parsing value - invalid literal; last read: '1] x'; expected end of input",
            ),
            (
                "-",
                "line 1, column 2: syntax error while parsing value - invalid number; expected digit after '-'; last read: '-'",
            ),
            (
                "[",
                "line 1, column 2: syntax error while parsing value - unexpected end of input; expected '[', '{', or a literal",
            ),
            (
                "tru",
                "line 1, column 4: syntax error while parsing value - invalid literal; last read: 'tru'",
            ),
            (
                r#""\q""#,
                r#"line 1, column 3: syntax error while parsing value - invalid string: forbidden character after backslash; last read: '"\q'"#,
            ),
            (
                "NaN",
                "line 1, column 1: syntax error while parsing value - invalid literal; last read: 'N'",
            ),
            (
                r#"{"a":1 "b":2}"#,
                "line 1, column 10: syntax error while parsing object - unexpected string literal; expected '}'",
            ),
            (
                "[1 2]",
                "line 1, column 4: syntax error while parsing array - unexpected number literal; expected ']'",
            ),
            (
                r#"{"a":1,}"#,
                "line 1, column 8: syntax error while parsing object key - unexpected '}'; expected string literal",
            ),
            (
                "{1:2}",
                "line 1, column 2: syntax error while parsing object key - unexpected number literal; expected string literal",
            ),
            (
                r#"{"a":true x}"#,
                r#"line 1, column 11: syntax error while parsing object - invalid literal; last read: '"a":true x'; expected '}'"#,
            ),
            (
                "[1,2",
                "line 1, column 5: syntax error while parsing array - unexpected end of input; expected ']'",
            ),
            (
                r#"{"a""#,
                "line 1, column 5: syntax error while parsing object separator - unexpected end of input; expected ':'",
            ),
            (
                r#""abc"#,
                r#"line 1, column 5: syntax error while parsing value - invalid string: missing closing quote; last read: '"abc'"#,
            ),
            (
                r#""\u12""#,
                r#"line 1, column 6: syntax error while parsing value - invalid string: '\u' must be followed by 4 hex digits; last read: '"\u12"'"#,
            ),
            (
                "1e",
                "line 1, column 3: syntax error while parsing value - invalid number; expected '+', '-', or digit after exponent; last read: '1e'",
            ),
            (
                "1e+",
                "line 1, column 4: syntax error while parsing value - invalid number; expected digit after exponent sign; last read: '1e+'",
            ),
            (
                "-a",
                "line 1, column 2: syntax error while parsing value - invalid number; expected digit after '-'; last read: '-a'",
            ),
            (
                "[tru]",
                "line 1, column 5: syntax error while parsing value - invalid literal; last read: '[tru]'",
            ),
            (
                r#"{"a":1}}"#,
                "line 1, column 8: syntax error while parsing value - unexpected '}'; expected end of input",
            ),
            (
                "\n [1,\n  ]",
                "line 3, column 3: syntax error while parsing value - unexpected ']'; expected '[', '{', or a literal",
            ),
            (
                "@",
                "line 1, column 1: syntax error while parsing value - invalid literal; last read: '@'",
            ),
            (
                "[01]",
                "line 1, column 3: syntax error while parsing array - unexpected number literal; expected ']'",
            ),
            (
                "1.0.0",
                "line 1, column 4: syntax error while parsing value - invalid literal; last read: '1.0.'; expected end of input",
            ),
            (
                "true false",
                "line 1, column 10: syntax error while parsing value - unexpected false literal; expected end of input",
            ),
            // Nix prints the lone byte 0xC3 of "é" raw.
            (
                "[é]",
                "line 1, column 2: syntax error while parsing value - invalid literal; last read: '[\u{fffd}'",
            ),
        ];
        for (doc, expected) in cases {
            let got = parse_json(doc).unwrap_err().to_string();
            assert_eq!(got, format!("{p}{expected}"), "{doc:?}");
        }
        for (doc, expected) in [
            (
                "1e400",
                "[json.exception.out_of_range.406] number overflow parsing '1e400'",
            ),
            (
                "[1.5e400]",
                "[json.exception.out_of_range.406] number overflow parsing '1.5e400'",
            ),
            (
                "1.7976931348623157e309",
                "[json.exception.out_of_range.406] number overflow parsing '1.7976931348623157e309'",
            ),
        ] {
            assert_eq!(
                parse_json(doc).unwrap_err().to_string(),
                expected,
                "{doc:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(parse_json(&deep).is_err());
        let ok = "[".repeat(1000) + &"]".repeat(1000);
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
            crate::support::oracle::print_data(&data, &mut ours);
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

    #[test]
    fn mutated_documents_fail_like_nix_oracle() {
        use crate::support::oracle::{Lcg, eval_result, nix_string};
        let mut r = Lcg(3);
        let inserts = [
            "[", "]", "{", "}", ":", ",", "\"", "\\", " ", "x", "0", "-", ".", "e", "\t", "\n",
            "tr", "nul", "\\u", "\\ud83d", "1e999",
        ];
        let (mut checked, mut errors) = (0, 0);
        for _ in 0..60 {
            let mut doc = String::new();
            gen_json(&mut r, 0, &mut doc);
            let cut = r.below(doc.len() as u64 + 1) as usize;
            let cut = (0..=cut)
                .rev()
                .find(|&i| doc.is_char_boundary(i))
                .unwrap_or(0);
            let mutated = match r.below(3) {
                0 => doc[..cut].to_owned(),
                1 => format!("{}{}{}", &doc[..cut], r.pick(&inserts), &doc[cut..]),
                _ => {
                    let end = (cut + 1..=doc.len())
                        .find(|&i| doc.is_char_boundary(i))
                        .unwrap_or(doc.len());
                    format!("{}{}", &doc[..cut], &doc[end..])
                }
            };
            let Some(nix) = eval_result(&format!("builtins.fromJSON {}", nix_string(&mutated)))
            else {
                return;
            };
            match (nix, parse_json(&mutated)) {
                (Err(nix), Err(ours)) => {
                    assert_eq!(nix, ours.to_string(), "{mutated:?}");
                    errors += 1;
                }
                (Ok(_), Ok(_)) => {}
                (nix, ours) => panic!("{mutated:?}: nix {nix:?}, ours {ours:?}"),
            }
            checked += 1;
        }
        assert_eq!(checked, 60);
        assert!(errors >= 20, "only {errors} of the mutations were invalid");
    }
}
