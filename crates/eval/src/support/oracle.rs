//! Test-only access to the C++ Nix oracle: evaluates an expression with
//! `nix-instantiate --eval --strict` and returns its output.
//!
//! Design: tests that compare against Nix call [`eval_json`] /
//! [`eval_raw`]; when `nix-instantiate` is not installed they get `None`
//! and return early after saying so on stderr, so the crate's tests still
//! run on machines without Nix (the hard-coded expectations in each module
//! were recorded from the same Nix 2.8 and always run).

use std::process::Command;

use super::data::Data;

fn run(args: &[&str], expr: &str) -> Option<String> {
    let out = match Command::new("nix-instantiate")
        .args(["--eval", "--strict"])
        .args(args)
        .args(["--option", "sandbox", "false", "-E", expr])
        .output()
    {
        Ok(out) => out,
        Err(_) => {
            eprintln!("nix-instantiate not available: skipping the oracle comparison");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "nix-instantiate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `expr` evaluated by Nix and converted with `--json`.
pub(crate) fn eval_json(expr: &str) -> Option<serde_json::Value> {
    let out = run(&["--json"], expr)?;
    Some(serde_json::from_str(&out).expect("nix-instantiate printed invalid JSON"))
}

/// `expr` evaluated by Nix, as printed (without the trailing newline).
pub(crate) fn eval_raw(expr: &str) -> Option<String> {
    run(&[], expr).map(|s| s.trim_end_matches('\n').to_owned())
}

/// The first line of the error `expr` fails with (without `error: `), or
/// `Ok(output)` if it evaluates; `None` without nix-instantiate.
pub(crate) fn eval_result(expr: &str) -> Option<Result<String, String>> {
    let out = Command::new("nix-instantiate")
        .args([
            "--eval", "--strict", "--option", "sandbox", "false", "-E", expr,
        ])
        .output()
        .ok()?;
    if out.status.success() {
        return Some(Ok(String::from_utf8_lossy(&out.stdout)
            .trim_end()
            .to_owned()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    Some(Err(first
        .strip_prefix("error: ")
        .unwrap_or(first)
        .to_owned()))
}

/// A Nix string literal for `s` (escaping `"`, `\` and `$`).
pub(crate) fn nix_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A small deterministic pseudo-random generator for generated cases.
pub(crate) struct Lcg(pub u64);

impl Lcg {
    /// The next value in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    /// True with probability `percent`/100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A random element of `items` (non-empty).
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Prints a [`Data`] tree as nix-instantiate prints the value.
pub(crate) fn print_data(d: &Data, out: &mut String) {
    use crate::support::escape::{write_attr_name, write_escaped_string};
    use crate::support::float::write_float;
    match d {
        Data::Null => out.push_str("null"),
        Data::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Data::Int(i) => out.push_str(&i.to_string()),
        Data::Float(f) => write_float(out, *f),
        Data::String(s) => write_escaped_string(out, s),
        Data::List(items) => {
            out.push_str("[ ");
            for item in items {
                print_data(item, out);
                out.push(' ');
            }
            out.push(']');
        }
        Data::Attrs(attrs) => {
            out.push_str("{ ");
            for (k, v) in attrs {
                write_attr_name(out, k);
                out.push_str(" = ");
                print_data(v, out);
                out.push_str("; ");
            }
            out.push('}');
        }
    }
}
