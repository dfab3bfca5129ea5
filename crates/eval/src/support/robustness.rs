//! Test-only robustness checks: every public entry point of `support` is
//! fed many pseudo-random inputs built from the characters that matter to
//! it, and must return (a value or an error) without panicking. The inputs
//! are deterministic, so a failure is reproducible.

use super::oracle::Lcg;
use super::{escape, float, json, path, regex, toml, versions, xml};

fn random_string(r: &mut Lcg, alphabet: &[&str], max_len: u64) -> String {
    (0..r.below(max_len + 1))
        .map(|_| r.pick(alphabet))
        .collect()
}

#[test]
fn regex_never_panics() {
    let alphabet = [
        "a",
        "b",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "|",
        "*",
        "+",
        "?",
        "^",
        "$",
        ".",
        "\\",
        "-",
        ":",
        "=",
        ",",
        "1",
        "2",
        "[:alpha:]",
        "[.a.]",
        "[=b=]",
        "é",
        "\n",
    ];
    let mut r = Lcg(1);
    for _ in 0..3000 {
        let pattern = random_string(&mut r, &alphabet, 12);
        let hay = random_string(&mut r, &["a", "b", "-", "é", "\n", "1"], 10);
        match regex::compile(&pattern) {
            Ok(re) => {
                re.match_whole(hay.as_bytes());
                let parts = re.split(hay.as_bytes());
                assert!(parts.len() % 2 == 1, "{pattern:?} {hay:?}");
            }
            Err(e) => assert!(e.to_string().contains(&pattern)),
        }
    }
}

#[test]
fn parsers_never_panic() {
    let json_alphabet = [
        "[", "]", "{", "}", ":", ",", "\"", "\\", "\\u", "d83d", "0", "1", "-", ".", "e", "E", "+",
        " ", "\n", "\t", "true", "nul", "é", "\u{feff}", "\u{1}",
    ];
    let toml_alphabet = [
        "a",
        "=",
        "\"",
        "'",
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        ",",
        ".",
        "\n",
        " ",
        "1",
        "-",
        "_",
        "#",
        "1979-05-27",
        "T07:32:00",
        "Z",
        "inf",
        "nan",
        "0x",
        "\\",
        "\"\"\"",
    ];
    let mut r = Lcg(2);
    for _ in 0..5000 {
        let doc = random_string(&mut r, &json_alphabet, 16);
        if let Ok(d) = json::parse_json(&doc) {
            json::to_json(&d);
        }
        let doc = random_string(&mut r, &toml_alphabet, 16);
        let _ = toml::parse_toml(&doc);
    }
}

#[test]
fn string_functions_never_panic() {
    let alphabet = [
        "/", ".", "..", "a", "-", "1", "pre", "é", "$", "{", "\"", "\\", "\n", "",
    ];
    let mut r = Lcg(3);
    for _ in 0..5000 {
        let a = random_string(&mut r, &alphabet, 8);
        let b = random_string(&mut r, &alphabet, 8);
        let _ = path::canon_path(&a);
        path::base_name_of(&a);
        path::dir_of(&a);
        versions::compare_versions(&a, &b);
        versions::split_version(&a);
        versions::parse_drv_name(&a);
        escape::escape_string(&a);
        escape::escape_attr_name(&a);
        let f = f64::from_bits(r.below(u64::MAX));
        float::format_float(f);
        float::format_float_to_string(f);
        let mut w = xml::XmlWriter::new();
        w.begin_attrs();
        w.begin_attr(&a, None);
        w.string(&b);
        w.float(f);
        w.end();
        w.end();
        w.end();
        assert!(w.finish().ends_with("</expr>\n"));
    }
}
