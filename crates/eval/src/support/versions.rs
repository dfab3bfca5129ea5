//! Version strings as Nix 2.8 understands them: `builtins.compareVersions`,
//! `builtins.splitVersion` and `builtins.parseDrvName`.
//!
//! Design: a version is a sequence of *components*. Separators are `.` and
//! `-` (runs of them are skipped). A component is either a maximal run of
//! ASCII digits or a maximal run of non-digit, non-separator bytes, so
//! `"1.2pre3"` is `1`, `2`, `pre`, `3`. Components are compared pairwise,
//! with a missing component being the empty string:
//! - two numbers (that fit a C `int`) compare numerically;
//! - the empty component is below any number (`1.0 < 1.0.1`);
//! - `pre` is below everything except `pre`;
//! - a number is above any non-number (`2.3a < 2.3.1`);
//! - otherwise byte-wise string comparison.
//!
//! Digit runs too large for a 32-bit int are *not* numbers for the
//! comparison (as in Nix, which parses with `boost::lexical_cast<int>`).
//! All functions work on bytes and only split at ASCII bytes, so slicing
//! UTF-8 input is always on character boundaries.

use std::cmp::Ordering;

/// Returns the next version component of `s` starting at `*pos`, advancing
/// `*pos` past it; the empty string when only separators remain.
pub fn next_component<'a>(s: &'a str, pos: &mut usize) -> &'a str {
    let bytes = s.as_bytes();
    let is_sep = |b: u8| b == b'.' || b == b'-';
    let mut p = (*pos).min(bytes.len());
    while bytes.get(p).is_some_and(|&b| is_sep(b)) {
        p += 1;
    }
    let start = p;
    match bytes.get(p) {
        None => {}
        Some(b) if b.is_ascii_digit() => {
            while bytes.get(p).is_some_and(u8::is_ascii_digit) {
                p += 1;
            }
        }
        Some(_) => {
            while bytes
                .get(p)
                .is_some_and(|&b| !b.is_ascii_digit() && !is_sep(b))
            {
                p += 1;
            }
        }
    }
    *pos = p;
    s.get(start..p).unwrap_or("")
}

/// A component's numeric value, if it is a digit run fitting an `i32`.
fn as_number(c: &str) -> Option<i32> {
    if c.is_empty() || !c.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    c.parse().ok()
}

/// Nix's `componentsLT`.
fn component_lt(c1: &str, c2: &str) -> bool {
    let n1 = as_number(c1);
    let n2 = as_number(c2);
    match (n1, n2) {
        (Some(a), Some(b)) => a < b,
        _ if c1.is_empty() && n2.is_some() => true,
        _ if c1 == "pre" && c2 != "pre" => true,
        _ if c2 == "pre" => false,
        (_, Some(_)) => true,
        (Some(_), _) => false,
        _ => c1 < c2,
    }
}

/// `builtins.compareVersions a b`: `Less` is Nix's `-1`.
pub fn compare_versions(v1: &str, v2: &str) -> Ordering {
    let (mut p1, mut p2) = (0, 0);
    while p1 < v1.len() || p2 < v2.len() {
        let c1 = next_component(v1, &mut p1);
        let c2 = next_component(v2, &mut p2);
        if component_lt(c1, c2) {
            return Ordering::Less;
        }
        if component_lt(c2, c1) {
            return Ordering::Greater;
        }
    }
    Ordering::Equal
}

/// `compare_versions` as the integer `builtins.compareVersions` returns.
pub fn compare_versions_int(v1: &str, v2: &str) -> i64 {
    match compare_versions(v1, v2) {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }
}

/// `builtins.splitVersion`: the list of components.
pub fn split_version(v: &str) -> Vec<&str> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < v.len() {
        let c = next_component(v, &mut pos);
        if c.is_empty() {
            break;
        }
        out.push(c);
    }
    out
}

/// `builtins.parseDrvName` is the store crate's split (deploy's diff and
/// the agent use the same one).
pub use ndeploy_store::drv_name::{DrvName, parse_drv_name};

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn compare_versions_cases() {
        // Expectations from nix-instantiate 2.8 `builtins.compareVersions`.
        let cases = [
            ("1.0", "2.3", Less),
            ("2.1", "2.3", Less),
            ("2.3", "2.3", Equal),
            ("2.5", "2.3", Greater),
            ("3.1", "2.3", Greater),
            ("2.3.1", "2.3", Greater),
            ("2.3.1", "2.3a", Greater),
            ("2.3pre1", "2.3", Less),
            ("2.3pre3", "2.3pre12", Less),
            ("2.3a", "2.3c", Less),
            ("2.3pre1", "2.3c", Less),
            ("2.3pre1", "2.3q", Less),
            ("1.0", "1.0.0", Less),
            ("1.0-1", "1.0.1", Equal),
            ("1..0", "1.0", Equal),
            ("", "0", Less),
            ("", "", Equal),
            ("a", "", Greater),
            ("pre", "", Less),
            ("1.2147483648", "1.3", Less),
            ("1.2147483647", "1.3", Greater),
            ("1.01", "1.1", Equal),
            ("1.0", "1.00", Equal),
        ];
        for (a, b, expected) in cases {
            assert_eq!(compare_versions(a, b), expected, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), expected.reverse(), "{b} vs {a}");
        }
        assert_eq!(compare_versions_int("1", "2"), -1);
    }

    #[test]
    fn split_version_cases() {
        assert_eq!(split_version("1.2.3"), ["1", "2", "3"]);
        assert_eq!(
            split_version("1.2pre3-rc.4"),
            ["1", "2", "pre", "3", "rc", "4"]
        );
        assert_eq!(split_version("..1--a.."), ["1", "a"]);
        assert_eq!(split_version(""), Vec::<&str>::new());
        assert_eq!(split_version("-."), Vec::<&str>::new());
        assert_eq!(split_version("1.é2"), ["1", "é", "2"]);
    }

    #[test]
    fn parse_drv_name_cases() {
        let cases = [
            ("nix-0.12pre12876", "nix", "0.12pre12876"),
            ("hello-1.0.2", "hello", "1.0.2"),
            ("915resolution-0.5.2", "915resolution", "0.5.2"),
            ("xf86-video-i810-1.7.4", "xf86-video-i810", "1.7.4"),
            ("a-b-c-1.2", "a-b-c", "1.2"),
            ("hello", "hello", ""),
            ("hello-", "hello-", ""),
            ("-1", "", "1"),
            ("a--1", "a", "-1"),
            ("a-é", "a", "é"),
            ("", "", ""),
        ];
        for (s, name, version) in cases {
            assert_eq!(parse_drv_name(s), DrvName { name, version }, "{s}");
        }
    }

    #[test]
    fn generated_versions_match_nix_oracle() {
        use crate::support::oracle::{Lcg, eval_json, nix_string};
        let parts = [
            "0",
            "1",
            "2",
            "10",
            "007",
            "2147483647",
            "2147483648",
            "99999999999",
            "pre",
            "rc",
            "a",
            "b",
            "alpha",
            "",
            ".",
            "-",
            "..",
            "p",
            "é",
            "x86",
        ];
        let mut r = Lcg(99);
        let gen_version = |r: &mut Lcg| -> String {
            let mut v = String::new();
            for _ in 0..r.below(5) {
                v.push_str(r.pick(&parts));
                if r.chance(60) {
                    v.push(r.pick(&['.', '-', '.', '_']));
                }
            }
            v
        };
        let pairs: Vec<(String, String)> = (0..300)
            .map(|_| (gen_version(&mut r), gen_version(&mut r)))
            .collect();
        let expr: String = pairs
            .iter()
            .map(|(a, b)| {
                let (a, b) = (nix_string(a), nix_string(b));
                format!(
                    "[ (builtins.compareVersions {a} {b}) (builtins.splitVersion {a}) \
                     (builtins.parseDrvName (\"n-\" + {a} + \"-\" + {b})) ] "
                )
            })
            .collect();
        let Some(nix) = eval_json(&format!("[ {expr}]")) else {
            return;
        };
        for ((a, b), expected) in pairs.iter().zip(nix.as_array().unwrap()) {
            let drv_input = format!("n-{a}-{b}");
            let drv = parse_drv_name(&drv_input);
            let ours = serde_json::json!([
                compare_versions_int(a, b),
                split_version(a),
                { "name": drv.name, "version": drv.version },
            ]);
            assert_eq!(&ours, expected, "{a:?} {b:?}");
        }
    }
}
