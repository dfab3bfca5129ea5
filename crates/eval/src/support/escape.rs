//! Quoting of strings and attribute names when printing Nix values, as
//! `nix-instantiate --eval` (C++ Nix 2.8) does.
//!
//! Design: two rules exist in Nix 2.8 and they differ on `$`:
//! - string *values* ([`escape_string`]) escape `"`, `\`, newline, CR and
//!   tab, and `$` only when it starts `${`;
//! - attribute *names* ([`escape_attr_name`]) are printed bare when they are
//!   identifier-like (`[A-Za-z_][A-Za-z0-9_'-]*`) and not `if`, otherwise
//!   quoted with a rule that escapes every `$`. Nix 2.8 only special-cases
//!   the keyword `if`: `{ "then" = 1; }` prints as `{ then = 1; }`.
//!
//! Everything else (other control characters, non-ASCII) is copied through
//! unchanged. Functions append to a caller-provided buffer so printing a
//! large value does not allocate per string.

/// The backslash escape shared by Nix printing and `toJSON` for `"`, `\`,
/// newline, carriage return and tab; `None` for every other character.
pub(crate) fn common_escape(c: char) -> Option<&'static str> {
    Some(match c {
        '"' => "\\\"",
        '\\' => "\\\\",
        '\n' => "\\n",
        '\r' => "\\r",
        '\t' => "\\t",
        _ => return None,
    })
}

/// Appends `s` as a double-quoted Nix string literal, as Nix 2.8 prints
/// string values: `"a\"b\${x}$y\n"`.
pub fn write_escaped_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (common_escape(c), c) {
            (Some(e), _) => out.push_str(e),
            (None, '$') if chars.peek() == Some(&'{') => out.push_str("\\$"),
            (None, c) => out.push(c),
        }
    }
    out.push('"');
}

/// Returns `s` as a double-quoted Nix string literal (see
/// [`write_escaped_string`]).
pub fn escape_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_escaped_string(&mut out, s);
    out
}

/// Whether Nix 2.8 prints this attribute name without quotes.
pub fn is_bare_attr_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    name != "if"
        && (first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'\'' | b'-'))
}

/// Appends an attribute name as Nix 2.8 prints it in `{ name = ...; }`:
/// bare if identifier-like, else quoted with every `$` escaped.
pub fn write_attr_name(out: &mut String, name: &str) {
    if is_bare_attr_name(name) {
        out.push_str(name);
        return;
    }
    out.reserve(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match (common_escape(c), c) {
            (Some(e), _) => out.push_str(e),
            (None, '$') => out.push_str("\\$"),
            (None, c) => out.push(c),
        }
    }
    out.push('"');
}

/// Returns an attribute name as Nix 2.8 prints it (see [`write_attr_name`]).
pub fn escape_attr_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    write_attr_name(&mut out, name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_values_match_nix_2_8() {
        // nix-instantiate --eval -E 's = "a\"b\${x}$y\n\r\t\\ é"' prints:
        assert_eq!(
            escape_string("a\"b${x}$y\n\r\t\\ é"),
            r#""a\"b\${x}$y\n\r\t\\ é""#
        );
        assert_eq!(escape_string("x$"), r#""x$""#);
        assert_eq!(escape_string("${"), r#""\${""#);
        assert_eq!(escape_string("$${"), r#""$\${""#);
        assert_eq!(escape_string(""), r#""""#);
        // Other control characters are printed raw.
        assert_eq!(escape_string("\u{1}\u{7f}"), "\"\u{1}\u{7f}\"");
    }

    #[test]
    fn attr_names_match_nix_2_8() {
        // From `nix-instantiate --eval --strict -E '{ "a b" = 1; ... }'`.
        let cases = [
            ("", r#""""#),
            ("1a", r#""1a""#),
            ("_x", "_x"),
            ("a\n", r#""a\n""#),
            ("a b", r#""a b""#),
            ("a\"b", r#""a\"b""#),
            ("a$b", r#""a\$b""#),
            ("a${x", r#""a\${x""#),
            ("a-b'c", "a-b'c"),
            ("a.b", r#""a.b""#),
            ("if", r#""if""#),
            ("in", "in"),
            ("or", "or"),
            ("rec", "rec"),
            ("then", "then"),
            ("é", r#""é""#),
        ];
        for (name, printed) in cases {
            assert_eq!(escape_attr_name(name), printed, "{name:?}");
        }
    }

    #[test]
    fn generated_strings_match_nix_oracle() {
        use crate::support::oracle::{Lcg, eval_raw, nix_string};
        let pieces = [
            "a", "Z", "_", "-", "'", "0", "$", "{", "}", "${", "\"", "\\", "\n", "\r", "\t", " ",
            "é", "if", "then", "in", "or", "let", ".", "\u{1}", "\u{7f}",
        ];
        let mut r = Lcg(5);
        let mut names = std::collections::BTreeSet::new();
        while names.len() < 200 {
            let n: String = (0..r.below(5)).map(|_| r.pick(&pieces)).collect();
            names.insert(n);
        }
        let body: String = names
            .iter()
            .map(|n| format!("{} = {}; ", nix_string(n), nix_string(n)))
            .collect();
        let Some(nix) = eval_raw(&format!("{{ {body}}}")) else {
            return;
        };
        let mut ours = String::from("{ ");
        for n in &names {
            write_attr_name(&mut ours, n);
            ours.push_str(" = ");
            write_escaped_string(&mut ours, n);
            ours.push_str("; ");
        }
        ours.push('}');
        assert_eq!(nix, ours);
    }
}
