//! Tests for the regex module. Expectations are nix-instantiate 2.8 output
//! rendered in Nix's printing syntax, so they can be compared verbatim.

use super::*;

fn show_groups(groups: &[Option<String>]) -> String {
    let mut out = String::from("[ ");
    for g in groups {
        match g {
            Some(s) => out.push_str(&crate::support::escape::escape_string(s)),
            None => out.push_str("null"),
        }
        out.push(' ');
    }
    out.push(']');
    out
}

/// `builtins.<func> pattern s`, printed as nix-instantiate prints it.
fn eval(func: &str, pattern: &str, s: &str) -> String {
    match func {
        "match" => match match_str(pattern, s) {
            Ok(None) => "null".to_owned(),
            Ok(Some(groups)) => show_groups(&groups),
            Err(e) => format!("error: {e}"),
        },
        "split" => match split_str(pattern, s) {
            Ok(pieces) => {
                let mut out = String::from("[ ");
                for p in pieces {
                    match p {
                        SplitPiece::Text(t) => {
                            out.push_str(&crate::support::escape::escape_string(&t))
                        }
                        SplitPiece::Match(g) => out.push_str(&show_groups(&g)),
                    }
                    out.push(' ');
                }
                out.push(']');
                out
            }
            Err(e) => format!("error: {e}"),
        },
        _ => panic!("unknown function {func}"),
    }
}

fn check(cases: &[(&str, &str, &str, &str)]) {
    let mut failures = Vec::new();
    for &(func, pattern, s, expected) in cases {
        let got = eval(func, pattern, s);
        if got != expected {
            failures.push(format!(
                "{func} {pattern:?} {s:?}\n  nix:  {expected}\n  ours: {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn semantics_match_nix_2_8() {
    check(&[
        ("match", r#"x(a|b)*"#, r#"xab"#, r#"[ "b" ]"#),
        ("match", r#"((a)|b)*"#, r#"ab"#, r#"[ "b" "a" ]"#),
        (
            "split",
            r#"[[:space:]]*"#,
            r#"a b"#,
            r#"[ "" [ ] "a" [ ] "" [ ] "b" [ ] "" ]"#,
        ),
        ("split", r#"^a"#, r#"aaa"#, r#"[ "" [ ] "aa" ]"#),
        ("split", r#"a$"#, r#"aaa"#, r#"[ "aa" [ ] "" ]"#),
        ("split", r#""#, r#"ab"#, r#"[ "" [ ] "a" [ ] "b" [ ] "" ]"#),
        (
            "split",
            r#"(a)|(b)"#,
            r#"ab"#,
            r#"[ "" [ "a" null ] "" [ null "b" ] "" ]"#,
        ),
        (
            "split",
            r#"(a|ab)(c|bcd)(d*)"#,
            r#"abcd"#,
            r#"[ "" [ "a" "bcd" "" ] "" ]"#,
        ),
        (
            "split",
            r#"a*"#,
            r#"bab"#,
            r#"[ "" [ ] "b" [ ] "" [ ] "b" [ ] "" ]"#,
        ),
        ("split", r#"a*"#, r#""#, r#"[ "" [ ] "" ]"#),
        (
            "split",
            r#"(a)|b"#,
            r#"xaybz"#,
            r#"[ "x" [ "a" ] "y" [ null ] "z" ]"#,
        ),
        ("split", r#"a|ab"#, r#"xabc"#, r#"[ "x" [ ] "c" ]"#),
        (
            "match",
            r#"((.*)/)?([^/]*)\.(nix|cc)"#,
            r#"/path/to/foobar.nix"#,
            r#"[ "/path/to/" "/path/to" "foobar" "nix" ]"#,
        ),
        (
            "match",
            r#"((.*)/)?([^/]*)\.(nix|cc)"#,
            r#"foobar.cc"#,
            r#"[ null null "foobar" "cc" ]"#,
        ),
        (
            "split",
            r#"(/)"#,
            r#"a/b//c"#,
            r#"[ "a" [ "/" ] "b" [ "/" ] "" [ "/" ] "c" ]"#,
        ),
        (
            "split",
            r#"([[:digit:]]+)|([[:alpha:]]+)"#,
            r#"ab12cd"#,
            r#"[ "" [ null "ab" ] "" [ "12" null ] "" [ null "cd" ] "" ]"#,
        ),
        ("match", r#"(.*)e?abi.*"#, r#"linux"#, r#"null"#),
        (
            "match",
            r#"[[:alnum:]+_?=-][[:alnum:]+._?=-]*"#,
            r#"glibc-2.40-66"#,
            r#"[ ]"#,
        ),
        (
            "split",
            r#"(a*)(b*)"#,
            r#"aabbcab"#,
            r#"[ "" [ "aa" "bb" ] "" [ "" "" ] "c" [ "a" "b" ] "" [ "" "" ] "" ]"#,
        ),
        (
            "split",
            r#"x*"#,
            r#"xaxx"#,
            r#"[ "" [ ] "" [ ] "a" [ ] "" [ ] "" ]"#,
        ),
        (
            "split",
            r#"(x)?$"#,
            r#"ax"#,
            r#"[ "a" [ "x" ] "" [ null ] "" ]"#,
        ),
        ("split", r#"$"#, r#"ab"#, r#"[ "ab" [ ] "" ]"#),
        ("split", r#"^"#, r#"ab"#, r#"[ "" [ ] "ab" ]"#),
        ("match", r#"(a|b|ab)*c"#, r#"abc"#, r#"[ "b" ]"#),
        (
            "split",
            r#"(a|b|ab)*c"#,
            r#"xabcy"#,
            r#"[ "x" [ "b" ] "y" ]"#,
        ),
        (
            "split",
            r#"[^/]+"#,
            r#"/a/bc/"#,
            r#"[ "/" [ ] "/" [ ] "/" ]"#,
        ),
        ("match", r#"a{2,}"#, r#"aaaa"#, r#"[ ]"#),
        ("match", r#"(a{2}){2}"#, r#"aaaa"#, r#"[ "aa" ]"#),
        ("split", r#"\.|-"#, r#"1.2-3"#, r#"[ "1" [ ] "2" [ ] "3" ]"#),
        ("match", r#"[[.hyphen.]a]+"#, r#"a-a"#, r#"[ ]"#),
        ("match", r#"[^[:space:]]*"#, "a\tb", r#"null"#),
        (
            "split",
            r#"b?"#,
            r#"abc"#,
            r#"[ "" [ ] "a" [ ] "" [ ] "c" [ ] "" ]"#,
        ),
        (
            "split",
            r#"(ab|a)(bc|c)?"#,
            r#"abc"#,
            r#"[ "" [ "ab" "c" ] "" ]"#,
        ),
        ("match", r#"(ab|a)(bc|c)?"#, r#"abc"#, r#"[ "ab" "c" ]"#),
    ]);
}
