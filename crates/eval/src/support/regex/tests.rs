//! Tests for the regex module. Expectations are nix-instantiate 2.8 output
//! rendered in Nix's printing syntax, so they can be compared verbatim.

use super::*;
use crate::support::oracle::{Lcg, eval_json, nix_string};

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
        ("match", r#"(a*)*"#, r#"aa"#, r#"[ "" ]"#),
        (
            "split",
            r#"a?(ab)?"#,
            r#"ab"#,
            r#"[ "" [ null ] "" [ null ] "b" [ null ] "" ]"#,
        ),
        (
            "split",
            r#"[[:alpha:]]?([^a]a*)?"#,
            r#"cba.cac"#,
            r#"[ "" [ "ba" ] "" [ "." ] "" [ null ] "" [ "c" ] "" [ null ] "" ]"#,
        ),
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

#[test]
fn brackets_classes_and_errors_match_nix_2_8() {
    check(&[
        ("match", "[]a]", "]", "[ ]"),
        ("match", "[^]a]", "b", "[ ]"),
        ("match", "[^]a]", "]", "null"),
        ("match", "[a-]", "-", "[ ]"),
        ("match", r"[\n]", r"\", "[ ]"),
        ("match", r"[a\]]", "a]", "[ ]"),
        ("match", "[[:alpha:]]+", "abc", "[ ]"),
        ("match", "[[:ALPHA:]]", "a", "[ ]"),
        ("match", "[[:w:]]+", "a_1", "[ ]"),
        ("match", "[[:d:]]", "1", "[ ]"),
        ("match", "[[:s:]]", " ", "[ ]"),
        ("match", "[[.space.]]", " ", "[ ]"),
        ("match", "[[.hyphen.]]", "-", "[ ]"),
        ("match", "[[.a.]-c]", "b", "[ ]"),
        ("match", "[[=a=]]", "a", "[ ]"),
        ("match", "[[=a=]]", "A", "[ ]"),
        ("match", "[[=A=]]", "a", "[ ]"),
        ("match", "[[.A.]]", "a", "null"),
        ("match", "[^[=a=]]", "A", "null"),
        ("match", "[[.zero.]]", "0", "[ ]"),
        ("match", "[[=zero=]]", "0", "[ ]"),
        ("match", "[[=hyphen=]]", "0", "null"),
        ("match", "[[.NUL.]]", "0", "null"),
        ("match", "[!--]", "0", "null"),
        ("match", "[!--]", "-", "[ ]"),
        ("match", "[-a]", "-", "[ ]"),
        ("match", "[[=a=]-]", "-", "[ ]"),
        (
            "match",
            "[a-[.c.]]",
            "b",
            "error: invalid regular expression '[a-[.c.]]'",
        ),
        (
            "match",
            "[[=a=]-c]",
            "b",
            "error: invalid regular expression '[[=a=]-c]'",
        ),
        (
            "match",
            "[[.0.]]",
            "0",
            "error: invalid regular expression '[[.0.]]'",
        ),
        (
            "match",
            "[[.-.]]",
            "-",
            "error: invalid regular expression '[[.-.]]'",
        ),
        (
            "match",
            "[[=-=]]",
            "-",
            "error: invalid regular expression '[[=-=]]'",
        ),
        (
            "match",
            "[[.hyphen-minus.]]",
            "-",
            "error: invalid regular expression '[[.hyphen-minus.]]'",
        ),
        ("match", "[--/]", ".", "[ ]"),
        ("match", "[[:alpha:]-]", "-", "[ ]"),
        ("match", "[[:alpha:][:digit:]]+", "a1", "[ ]"),
        ("match", ".", "é", "null"),
        ("match", "..", "é", "[ ]"),
        ("match", "[é]", "é", "null"),
        (
            "match",
            "[a-é]",
            "a",
            "error: invalid regular expression '[a-é]'",
        ),
        ("match", "[é-a]+", "a", "[ ]"),
        ("match", "[é-a]+", "b", "null"),
        ("match", "[é-a]+", "é", "[ ]"),
        ("match", "[À-ÿ]+", "é", "[ ]"),
        ("match", "é", "é", "[ ]"),
        ("match", ".*", "\n", "[ ]"),
        ("match", "a}", "a}", "[ ]"),
        ("match", "}", "}", "[ ]"),
        ("match", "a**", "aa", "[ ]"),
        ("match", "a+?", "aa", "[ ]"),
        ("match", "x{1,2}{3}", "xxxx", "[ ]"),
        ("match", "a{1000}", "a", "null"),
        ("match", "()", "", r#"[ "" ]"#),
        ("match", "a||b", "", "[ ]"),
        ("match", "|a", "", "[ ]"),
        ("match", "(|a)", "", r#"[ "" ]"#),
        ("match", "^a$", "a", "[ ]"),
        ("match", "a^b", "ab", "null"),
        ("match", "a$b", "ab", "null"),
        ("match", "(^a)", "a", r#"[ "a" ]"#),
        ("match", r"\(", "(", "[ ]"),
        ("match", r"\)\{\|\^\$\.\*\+\?\[\\", r"){|^$.*+?[\", "[ ]"),
        (
            "match",
            r"\]",
            "]",
            r"error: invalid regular expression '\]'",
        ),
        (
            "match",
            r"\}",
            "}",
            r"error: invalid regular expression '\}'",
        ),
        (
            "match",
            r"\d",
            "d",
            r"error: invalid regular expression '\d'",
        ),
        (
            "match",
            "a{",
            "a{",
            "error: invalid regular expression 'a{'",
        ),
        (
            "match",
            "[[:foo:]]",
            "a",
            "error: invalid regular expression '[[:foo:]]'",
        ),
        (
            "match",
            "a{100000}",
            "a",
            "error: memory limit exceeded by regular expression 'a{100000}'",
        ),
        (
            "split",
            "(a{1000}){1000}",
            "a",
            "error: memory limit exceeded by regular expression '(a{1000}){1000}'",
        ),
    ]);
}

#[test]
fn byte_ranges_and_cache() {
    let re = compile("(.)").unwrap();
    assert!(Arc::ptr_eq(&re, &compile("(.)").unwrap()));
    assert_eq!(re.group_count(), 1);
    assert_eq!(re.pattern(), "(.)");
    // `.` matches single bytes of "é" (0xC3 0xA9), as in Nix.
    assert_eq!(
        re.split("é".as_bytes()),
        [
            SplitPart::Text(0..0),
            SplitPart::Match(vec![Some(0..1)]),
            SplitPart::Text(1..1),
            SplitPart::Match(vec![Some(1..2)]),
            SplitPart::Text(2..2),
        ]
    );
    assert_eq!(re.match_whole(b"x"), Some(vec![Some(0..1)]));
    assert_eq!(re.match_whole(b"xy"), None);
    // The cache stays bounded.
    for i in 0..CACHE_CAPACITY + 10 {
        compile(&format!("a{{{}}}", i % 2000)).unwrap();
    }
    let len = cache().lock().unwrap().map.len();
    assert!(len <= CACHE_CAPACITY, "{len}");
    // Big patterns are bounded by weight: at most ~20 of these fit.
    for i in 0..40 {
        compile(&format!("(a{{{}}}){{20}}", 4000 + i)).unwrap();
    }
    let c = cache().lock().unwrap();
    assert!(c.weight <= CACHE_WEIGHT, "{}", c.weight);
    let recomputed: usize = c.map.values().map(|re| re.weight()).sum();
    assert_eq!(recomputed, c.weight);
}

#[test]
fn long_inputs_do_not_overflow() {
    // libstdc++ recurses per character here; this engine must not.
    let s = "ab".repeat(500_000);
    assert_eq!(
        match_str("(a|b)*", &s).unwrap(),
        Some(vec![Some("b".to_owned())])
    );
    let parts = split_str("b", &s).unwrap();
    assert_eq!(parts.len(), 1_000_001);
}

/// A random ERE (`nullable`: whether it can match the empty string).
/// Nullable groups are only rarely repeated: nesting them makes libstdc++'s
/// exhaustive search exponential, beyond the backtracker's budget.
fn gen_alt(r: &mut Lcg, depth: u32) -> (String, bool) {
    let (mut s, mut nullable) = gen_concat(r, depth);
    while r.chance(25) {
        let (t, n) = gen_concat(r, depth);
        s.push('|');
        s.push_str(&t);
        nullable |= n;
    }
    (s, nullable)
}

fn gen_concat(r: &mut Lcg, depth: u32) -> (String, bool) {
    let count = r.below(3) + u64::from(depth == 0);
    let mut s = String::new();
    let mut nullable = true;
    for _ in 0..count {
        let (atom, mut n) = if depth < 3 && r.chance(25) {
            let (inner, n) = gen_alt(r, depth + 1);
            (format!("({inner})"), n)
        } else {
            let atoms = [
                "a",
                "b",
                "c",
                ".",
                "[ab]",
                "[^a]",
                "[[:alpha:]]",
                "[a-c]",
                "\\.",
            ];
            (r.pick(&atoms).to_owned(), false)
        };
        s.push_str(&atom);
        if !n || r.chance(20) {
            let quantifiers = ["", "", "", "*", "+", "?", "{1,2}", "{2}"];
            let q = r.pick(&quantifiers);
            s.push_str(q);
            n = matches!(q, "*" | "?");
        }
        nullable &= n;
    }
    (s, nullable)
}

#[test]
fn generated_cases_match_nix_oracle() {
    let mut r = Lcg(2026);
    let mut cases = Vec::new();
    while cases.len() < 600 {
        let (mut p, _) = gen_alt(&mut r, 0);
        if r.chance(10) {
            p.insert(0, '^');
        }
        if r.chance(10) {
            p.push('$');
        }
        let len = r.below(8);
        let s: String = (0..len).map(|_| r.pick(&['a', 'b', 'c', '.'])).collect();
        cases.push((p, s));
    }
    let expr = cases
        .iter()
        .map(|(p, s)| {
            let (p, s) = (nix_string(p), nix_string(s));
            format!("[ (builtins.match {p} {s}) (builtins.split {p} {s}) ]")
        })
        .collect::<Vec<_>>()
        .join(" ");
    let Some(nix) = eval_json(&format!("[ {expr} ]")) else {
        return;
    };
    let mut failures = Vec::new();
    for ((p, s), expected) in cases.iter().zip(nix.as_array().unwrap()) {
        let m = serde_json::to_value(match_str(p, s).unwrap()).unwrap();
        let sp: Vec<serde_json::Value> = split_str(p, s)
            .unwrap()
            .into_iter()
            .map(|piece| match piece {
                SplitPiece::Text(t) => serde_json::json!(t),
                SplitPiece::Match(g) => serde_json::json!(g),
            })
            .collect();
        if m != expected[0] || serde_json::Value::Array(sp.clone()) != expected[1] {
            failures.push(format!("{p:?} {s:?}: nix {expected} ours [{m}, {sp:?}]"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn compiled_regexes_are_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Regex>();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..200 {
                    let pattern = format!("(x{})|([0-9]+)", (i + t) % 7);
                    let re = compile(&pattern).unwrap();
                    let hay = format!("ax{}b123", (i + t) % 7);
                    let parts = re.split(hay.as_bytes());
                    assert_eq!(parts.len(), 5, "{pattern} on {hay}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn exploding_patterns_fall_back_once_per_split() {
    // Exhaustive POSIX search of `(a|a)*b` is exponential in the run of
    // `a`s; after the first search exceeds the budget the rest of the split
    // uses the linear engine, so 50 such matches stay cheap.
    let hay = ("a".repeat(30) + "b").repeat(50);
    let parts = split_str("(a|a)*b", &hay).unwrap();
    assert_eq!(parts.len(), 101);
    assert_eq!(parts[1], SplitPiece::Match(vec![Some("a".to_owned())]));
    assert_eq!(parts[100], SplitPiece::Text(String::new()));
}

/// A random ERE over the syntax that libstdc++ may reject: brackets with
/// classes, collating symbols, ranges and dashes, escapes, intervals.
fn gen_wild(r: &mut Lcg, depth: u32) -> String {
    let mut s = String::new();
    for _ in 0..r.below(4) + 1 {
        match r.below(10) {
            0 | 1 if depth < 2 => {
                s.push('(');
                s.push_str(&gen_wild(r, depth + 1));
                s.push(')');
            }
            2 | 3 => {
                s.push('[');
                for _ in 0..r.below(4) {
                    s.push_str(r.pick(&[
                        "^",
                        "]",
                        "-",
                        "a",
                        "a-c",
                        "[:alpha:]",
                        "[:Digit:]",
                        "[.a.]",
                        "[.-.]",
                        "[.hyphen.]",
                        "[=a=]",
                        "[",
                        "\\",
                        "z-a",
                        "é",
                    ]));
                }
                s.push(']');
            }
            4 => s.push_str(r.pick(&["\\.", "\\]", "\\}", "\\(", "\\)", "\\{", "\\d", "\\"])),
            5 => s.push_str(r.pick(&["|", "^", "$", "{", "}", "*"])),
            _ => s.push_str(r.pick(&["a", "b", ".", "-", "é"])),
        }
        if r.chance(30) {
            s.push_str(r.pick(&["*", "+", "?", "{2}", "{1,}", "{0,2}", "{2,1}", "{,1}"]));
        }
    }
    s
}

#[test]
fn wild_patterns_match_nix_oracle() {
    use crate::support::oracle::eval_result;
    let mut r = Lcg(77);
    let (mut errors, mut values) = (0, 0);
    for _ in 0..40 {
        let p = gen_wild(&mut r, 0);
        let s: String = (0..r.below(6))
            .map(|_| r.pick(&["a", "b", "-", "]", "é", "."]))
            .collect();
        let (np, ns) = (nix_string(&p), nix_string(&s));
        let expr = format!("[ (builtins.match {np} {ns}) (builtins.split {np} {ns}) ]");
        let Some(nix) = eval_result(&expr) else {
            return;
        };
        let ours = match (match_str(&p, &s), split_str(&p, &s)) {
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            (Ok(m), Ok(parts)) => {
                let mut out = String::from("[ ");
                out.push_str(&match m {
                    None => "null".to_owned(),
                    Some(g) => show_groups(&g),
                });
                out.push_str(" [ ");
                for part in parts {
                    match part {
                        SplitPiece::Text(t) => {
                            out.push_str(&crate::support::escape::escape_string(&t))
                        }
                        SplitPiece::Match(g) => out.push_str(&show_groups(&g)),
                    }
                    out.push(' ');
                }
                out.push_str("] ]");
                Ok(out)
            }
        };
        assert_eq!(ours, nix, "{p:?} on {s:?}");
        if nix.is_ok() {
            values += 1
        } else {
            errors += 1
        }
    }
    assert!(
        errors >= 5 && values >= 5,
        "{errors} errors, {values} values"
    );
}

#[test]
fn largest_patterns_nix_accepts_compile() {
    // The largest repetition counts libstdc++ accepts (see ere.rs) must
    // compile here too, not fail on the linear engine's size limits.
    for p in ["a{99993}", "(a|b){12498}", "a{1,49997}", "(a{2}){14283}"] {
        let re = Regex::new(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(re.match_whole(b"c"), None, "{p}");
    }
}
