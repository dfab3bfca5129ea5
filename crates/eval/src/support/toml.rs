//! `builtins.fromTOML` into the neutral [`Data`] tree, via the `toml` crate.
//!
//! Design: the document is parsed into a `toml::Table` and converted
//! recursively (the `toml` parser bounds nesting depth, so the conversion
//! cannot overflow the stack). Mapping, as in C++ Nix 2.8:
//! tables → attribute sets, arrays (including arrays of tables) → lists,
//! integers → ints, floats (including `inf`, `nan`, `-nan`) → floats,
//! strings → strings, booleans → booleans. Any date/time value is an error
//! ("Dates and times are not supported") as in Nix 2.8, unless timestamps
//! are asked for ([`parse_toml_with`], current Nix's experimental feature
//! `parse-toml-timestamps`): then it is `{ _type = "timestamp"; value =
//! "..."; }` with the value printed as current Nix prints it (upper-case `T`,
//! seconds always, a fraction of 3, 6 or 9 digits, `Z` for a zero offset).
//!
//! Error messages are prefixed like Nix's ("while parsing a TOML string:
//! ...") but the parser's own wording is the `toml` crate's, not toml11's.
//! Known gaps: Nix 2.8 (toml11) accepts a `[a]` header after dotted keys
//! have defined `a` (`a.b.c = 1` then `[a]`), which TOML 1.0 and the `toml`
//! crate reject. Nix 2.8 clamps numbers outside the `i64` / `f64`
//! range to the bound (`9223372036854775808` → `9223372036854775807`,
//! `-1e400` → `-1.79769e+308`); here such integers and positive floats are
//! a parse error, as the TOML specification requires, and negative
//! overflowing floats become `-inf` (the `toml` crate's behaviour).

use std::collections::BTreeMap;

use thiserror::Error;

use super::data::Data;

/// A `fromTOML` failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TomlError {
    /// The document is not valid TOML.
    #[error("while parsing a TOML string: {0}")]
    Syntax(String),
    /// The document contains a date or time, which Nix 2.8 cannot represent.
    #[error("while parsing a TOML string: Dates and times are not supported")]
    DateTime,
}

/// `builtins.fromTOML`: parses a TOML document into an attribute set.
pub fn parse_toml(s: &str) -> Result<Data, TomlError> {
    parse_toml_with(s, false)
}

/// [`parse_toml`], with date/time values as timestamp sets when
/// `timestamps` (Nix's `parse-toml-timestamps` feature).
pub fn parse_toml_with(s: &str, timestamps: bool) -> Result<Data, TomlError> {
    let table: toml::Table = s
        .parse()
        .map_err(|e: toml::de::Error| TomlError::Syntax(e.message().to_owned()))?;
    convert_table(table, timestamps)
}

fn convert_table(table: toml::Table, timestamps: bool) -> Result<Data, TomlError> {
    let mut attrs = BTreeMap::new();
    for (key, value) in table {
        attrs.insert(key, convert(value, timestamps)?);
    }
    Ok(Data::Attrs(attrs))
}

fn convert(value: toml::Value, timestamps: bool) -> Result<Data, TomlError> {
    Ok(match value {
        toml::Value::String(s) => Data::String(s),
        toml::Value::Integer(i) => Data::Int(i),
        toml::Value::Float(f) => Data::Float(f),
        toml::Value::Boolean(b) => Data::Bool(b),
        toml::Value::Datetime(d) if timestamps => {
            let mut attrs = BTreeMap::new();
            attrs.insert("_type".to_owned(), Data::String("timestamp".into()));
            attrs.insert("value".to_owned(), Data::String(format_datetime(&d)));
            Data::Attrs(attrs)
        }
        toml::Value::Datetime(_) => return Err(TomlError::DateTime),
        toml::Value::Array(items) => Data::List(
            items
                .into_iter()
                .map(|v| convert(v, timestamps))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => convert_table(table, timestamps)?,
    })
}

/// A date/time as current Nix prints it (toml11 with Nix's normalisation).
fn format_datetime(d: &toml::value::Datetime) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if let Some(date) = &d.date {
        let _ = write!(out, "{:04}-{:02}-{:02}", date.year, date.month, date.day);
    }
    if let Some(time) = &d.time {
        if d.date.is_some() {
            out.push('T');
        }
        let _ = write!(out, "{:02}:{:02}:{:02}", time.hour, time.minute, time.second);
        let ns = time.nanosecond;
        // The fraction in milli-, micro- or nanoseconds, whichever is exact.
        if ns % 1_000_000 == 0 && ns != 0 {
            let _ = write!(out, ".{:03}", ns / 1_000_000);
        } else if ns % 1_000 == 0 && ns != 0 {
            let _ = write!(out, ".{:06}", ns / 1_000);
        } else if ns != 0 {
            let _ = write!(out, ".{ns:09}");
        }
    }
    match d.offset {
        Some(toml::value::Offset::Z) | Some(toml::value::Offset::Custom { minutes: 0 }) => out.push('Z'),
        Some(toml::value::Offset::Custom { minutes }) => {
            let sign = if minutes < 0 { '-' } else { '+' };
            let m = minutes.unsigned_abs();
            let _ = write!(out, "{sign}{:02}:{:02}", m / 60, m % 60);
        }
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::data::attrs;

    #[test]
    fn document_matches_nix_2_8() {
        // nix-instantiate: { a = 1; arr = [ { x = 1; } { y = inf; z = nan; } ];
        //                    b = "x"; t = { c = [ 1 2.5 ]; }; }
        let doc =
            "a = 1\nb = \"x\"\n[t]\nc = [1, 2.5]\n[[arr]]\nx = 1\n[[arr]]\ny = inf\nz = nan\n";
        let Data::Attrs(top) = parse_toml(doc).unwrap() else {
            panic!("not a set")
        };
        assert_eq!(top["a"], Data::Int(1));
        assert_eq!(top["b"], Data::String("x".into()));
        assert_eq!(
            top["t"],
            attrs([("c", Data::List(vec![Data::Int(1), Data::Float(2.5)]))])
        );
        let Data::List(arr) = &top["arr"] else {
            panic!("not a list")
        };
        assert_eq!(arr.len(), 2);
        assert_eq!(arr[0], attrs([("x", Data::Int(1))]));
        let Data::Attrs(second) = &arr[1] else {
            panic!("not a set")
        };
        assert_eq!(second["y"], Data::Float(f64::INFINITY));
        assert!(matches!(second["z"], Data::Float(f) if f.is_nan()));
    }

    #[test]
    fn scalars_match_nix_2_8() {
        // { a = { b = { c = 16; }; }; d = 1000; e = -nan; f = 1000; g = 0.1; }
        let d = parse_toml("a.b.c = 0x10\nd = 1_000\ne = -nan\nf = 1e3\ng = 0.1\n").unwrap();
        let Data::Attrs(top) = d else { panic!() };
        assert_eq!(top["a"], attrs([("b", attrs([("c", Data::Int(16))]))]));
        assert_eq!(top["d"], Data::Int(1000));
        assert!(matches!(top["e"], Data::Float(f) if f.is_nan()));
        assert_eq!(top["f"], Data::Float(1000.0));
        assert_eq!(top["g"], Data::Float(0.1));
        // { x = "multi\nline"; y = "lit\\n"; }
        let d = parse_toml("x = \"\"\"\nmulti\nline\"\"\"\ny = 'lit\\n'\n").unwrap();
        assert_eq!(
            d,
            attrs([
                ("x", Data::String("multi\nline".into())),
                ("y", Data::String("lit\\n".into()))
            ])
        );
        assert_eq!(parse_toml("").unwrap(), Data::Attrs(BTreeMap::new()));
    }

    #[test]
    fn errors_match_nix_2_8() {
        for dt in [
            "a = 1979-05-27T07:32:00Z",
            "a = 1979-05-27",
            "a = 07:32:00",
            "a = [1979-05-27T07:32:00]",
        ] {
            let e = parse_toml(dt).unwrap_err();
            assert_eq!(e, TomlError::DateTime, "{dt}");
            assert_eq!(
                e.to_string(),
                "while parsing a TOML string: Dates and times are not supported"
            );
        }
        for bad in ["a = 1\na = 2", "a = ", "[a]\n[a]", "a = [1,", "= 1"] {
            let e = parse_toml(bad).unwrap_err();
            assert!(matches!(e, TomlError::Syntax(_)), "{bad:?}");
            assert!(e.to_string().starts_with("while parsing a TOML string: "));
        }
        let deep = "a = ".to_owned() + &"[".repeat(100_000);
        assert!(parse_toml(&deep).is_err());
    }

    #[test]
    fn timestamps_as_current_nix_prints_them() {
        // From Nix's eval-okay-fromTOML-timestamps test.
        let doc = "odt2 = 1979-05-27T00:32:00-07:00\nodt5 = 1979-05-27 07:32:00.1Z\n\
                   odt14 = 1979-05-27t07:32:00.1234567891Z\nodt9 = 1979-05-27t07:32:00.12345Z\n\
                   ldt8 = 1979-05-27 00:32:00.1234567\nld1 = 1979-05-27\nlt1 = 07:32:00\n\
                   lt3 = 00:32:00.12\nz = 1979-05-27T07:32:00+00:00\nodt3 = 1979-05-27T00:32:00.999999-07:00\n";
        let Data::Attrs(top) = parse_toml_with(doc, true).unwrap() else {
            panic!()
        };
        let value = |k: &str| match &top[k] {
            Data::Attrs(a) => {
                assert_eq!(a["_type"], Data::String("timestamp".into()));
                match &a["value"] {
                    Data::String(s) => s.clone(),
                    v => panic!("{v:?}"),
                }
            }
            v => panic!("{v:?}"),
        };
        for (k, want) in [
            ("odt2", "1979-05-27T00:32:00-07:00"),
            ("odt5", "1979-05-27T07:32:00.100Z"),
            ("odt14", "1979-05-27T07:32:00.123456789Z"),
            ("odt9", "1979-05-27T07:32:00.123450Z"),
            ("ldt8", "1979-05-27T00:32:00.123456700"),
            ("ld1", "1979-05-27"),
            ("lt1", "07:32:00"),
            ("lt3", "00:32:00.120"),
            ("z", "1979-05-27T07:32:00Z"),
            ("odt3", "1979-05-27T00:32:00.999999-07:00"),
        ] {
            assert_eq!(value(k), want, "{k}");
        }
        assert_eq!(parse_toml_with(doc, false), Err(TomlError::DateTime));
    }

    #[test]
    fn toml_1_0_features_match_nix_2_8() {
        // { a = inf; b = -inf; c = -0; d = 15; e = 5; f = "é😀";
        //   g = { x = 1; y = [ 1 2 ]; }; h = { i = 2; }; "q k" = 1; }
        let doc = "a = +inf\nb = -inf\nc = -0.0\nd = 0o17\ne = 0b101\nf = \"\\u00e9\\U0001F600\"\n\
                   g = { x = 1, y = [1,2] }\n\"q k\" = 1\nh.i = 2\n";
        let Data::Attrs(top) = parse_toml(doc).unwrap() else {
            panic!()
        };
        assert_eq!(top["a"], Data::Float(f64::INFINITY));
        assert_eq!(top["b"], Data::Float(f64::NEG_INFINITY));
        assert!(matches!(top["c"], Data::Float(f) if f == 0.0 && f.is_sign_negative()));
        assert_eq!(top["d"], Data::Int(15));
        assert_eq!(top["e"], Data::Int(5));
        assert_eq!(top["f"], Data::String("é😀".into()));
        assert_eq!(
            top["g"],
            attrs([
                ("x", Data::Int(1)),
                ("y", Data::List(vec![Data::Int(1), Data::Int(2)]))
            ])
        );
        assert_eq!(top["h"], attrs([("i", Data::Int(2))]));
        assert_eq!(top["q k"], Data::Int(1));
        let cases = [
            (
                "x = 1.0\ny = 3e2\nz = 1_0.5",
                attrs([
                    ("x", Data::Float(1.0)),
                    ("y", Data::Float(300.0)),
                    ("z", Data::Float(10.5)),
                ]),
            ),
            (
                "k = \"\"\"a\\\n   b\"\"\"",
                attrs([("k", Data::String("ab".into()))]),
            ),
            (
                "a = [\n1,\n2,\n]",
                attrs([("a", Data::List(vec![Data::Int(1), Data::Int(2)]))]),
            ),
            (
                "a.b = 1\na.c = 2",
                attrs([("a", attrs([("b", Data::Int(1)), ("c", Data::Int(2))]))]),
            ),
            (
                "[[x]]\n[x.y]\nz=1",
                attrs([(
                    "x",
                    Data::List(vec![attrs([("y", attrs([("z", Data::Int(1))]))])]),
                )]),
            ),
            ("a = 'x' # c", attrs([("a", Data::String("x".into()))])),
            (
                "a = -9223372036854775808",
                attrs([("a", Data::Int(i64::MIN))]),
            ),
            ("1 = 2", attrs([("1", Data::Int(2))])),
        ];
        for (doc, expected) in cases {
            assert_eq!(parse_toml(doc).unwrap(), expected, "{doc:?}");
        }
        // All rejected by Nix 2.8 too.
        for bad in ["a = { x = 1, }", "a = 1\n[a.b]", "a = \"\\x41\""] {
            assert!(
                matches!(parse_toml(bad), Err(TomlError::Syntax(_))),
                "{bad:?}"
            );
        }
    }
    #[test]
    fn documents_match_nix_oracle() {
        use crate::support::oracle::{eval_result, nix_string, print_data};
        let docs = [
            "a = \"\"\"\n\"\"\"",
            "\"\" = 1",
            "a = 1979-05-27T07:32:00.999999-07:00",
            "[a]\n[a.b]\nc = 1",
            "[[a]]\n[a]",
            "a = [ [1, 2], [\"x\"], [] ]",
            "a = { b = { c = [ { d = 1 } ] } }",
            "a = 'C:\\path'\nb = '''\nraw\\n'''",
            "a = 0xDEADBEEF\nb = 0o755\nc = 0b11\nd = +1\ne = -0",
            "a = 6.626e-34\nb = 5e+22\nc = -3.14\nd = 1e6",
            "a = true\nb = false",
            "# comment only\n",
            "a = \"tab\\there\\u00e9\"",
            "x.y = 1\nx.z = 2\n[x.w]\nv = 3",
            "a = [1,\n# c\n2]",
            "a = 07",
            "a = 1__0",
            "a = .5",
            "a = \"unterminated",
            "[a\nb = 1",
            "a = [1, 2,,]",
            "key with spaces = 1",
            "a = nan\nb = -inf",
        ];
        for doc in docs {
            let Some(nix) = eval_result(&format!("builtins.fromTOML {}", nix_string(doc))) else {
                return;
            };
            match (nix, parse_toml(doc)) {
                (Ok(nix), Ok(data)) => {
                    let mut ours = String::new();
                    print_data(&data, &mut ours);
                    assert_eq!(ours, nix, "{doc:?}");
                }
                (Err(nix), Err(ours)) => {
                    assert!(nix.starts_with("while parsing a TOML string: "), "{nix}");
                    if nix.ends_with("Dates and times are not supported") {
                        assert_eq!(ours, TomlError::DateTime, "{doc:?}");
                    }
                }
                (nix, ours) => panic!("{doc:?}: nix {nix:?}, ours {ours:?}"),
            }
        }
    }
}
