//! The three ways C++ Nix 2.8 renders a float.
//!
//! - [`format_float`]: how values are printed (`nix-instantiate --eval`,
//!   error messages, `builtins.toJSON`): C++ `ostream << double` with the
//!   default precision, i.e. `printf("%g")` with 6 significant digits:
//!   `0.1`, `1`, `1e+20`, `1e-07`, `1.23457e+08`, `-0`, `inf`, `-nan`.
//!   This is lossy, and `toJSON` is equally lossy in Nix 2.8 (newer Nix
//!   prints floats in toJSON with full precision).
//! - [`format_float_to_string`]: `toString` / string interpolation, which
//!   use `std::to_string`, i.e. `printf("%f")`: `0.100000`, `1e20` →
//!   `100000000000000000000.000000`.
//!
//! Design: Rust's `{:.N}` / `{:.Ne}` formatting is exact (correctly rounded
//! from the binary value, ties to even), as glibc's printf is, so the
//! digits are produced by Rust and only the %g layout rules (choice of
//! fixed vs exponent notation, trailing-zero removal, two-digit signed
//! exponent) are implemented here. NaN is printed as `nan` or `-nan`
//! according to its sign bit, as glibc does (`inf - inf` is `-nan` on
//! x86-64).

use std::fmt::Write;

/// Significant digits of C++'s default stream precision.
const PRECISION: i32 = 6;

fn non_finite(f: f64) -> Option<&'static str> {
    if f.is_nan() {
        Some(if f.is_sign_negative() { "-nan" } else { "nan" })
    } else if f.is_infinite() {
        Some(if f < 0.0 { "-inf" } else { "inf" })
    } else {
        None
    }
}

/// Removes trailing zeros of a fraction, and then a trailing `.`.
fn strip_fraction_zeros(s: &mut String) {
    if s.contains('.') {
        let kept = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(kept);
    }
}

/// Appends `f` as Nix 2.8 prints a float (`%g`, see the module doc).
pub fn write_float(out: &mut String, f: f64) {
    if let Some(s) = non_finite(f) {
        out.push_str(s);
        return;
    }
    // Round to PRECISION significant digits first: that decides the
    // exponent %g uses to choose the notation (999999.5 → 1e+06).
    let sci = format!("{:.*e}", (PRECISION - 1) as usize, f);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..PRECISION).contains(&exp) {
        let decimals = (PRECISION - 1 - exp) as usize;
        let mut fixed = format!("{f:.decimals$}");
        strip_fraction_zeros(&mut fixed);
        out.push_str(&fixed);
    } else {
        let mut m = mantissa.to_owned();
        strip_fraction_zeros(&mut m);
        out.push_str(&m);
        let sign = if exp < 0 { '-' } else { '+' };
        // Infallible: writing to a String.
        let _ = write!(out, "e{sign}{:02}", exp.unsigned_abs());
    }
}

/// `f` as Nix 2.8 prints a float (`%g`, see the module doc).
pub fn format_float(f: f64) -> String {
    let mut out = String::new();
    write_float(&mut out, f);
    out
}

/// `f` as `builtins.toJSON` renders it in Nix 2.8 (same as printing).
pub fn format_float_json(f: f64) -> String {
    format_float(f)
}

/// `f` as `toString` / `"${...}"` renders it in Nix 2.8 (`%f`).
pub fn format_float_to_string(f: f64) -> String {
    match non_finite(f) {
        Some(s) => s.to_owned(),
        None => format!("{f:.6}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg_nan() -> f64 {
        f64::from_bits(f64::NAN.to_bits() | (1 << 63))
    }

    #[test]
    fn printing_matches_nix_2_8() {
        // Output of nix-instantiate --eval --strict on the same values.
        let cases = [
            (0.1, "0.1"),
            (1.0, "1"),
            (1.0e20, "1e+20"),
            (1.0e-7, "1e-07"),
            (123456789.0, "1.23457e+08"),
            (-0.0, "-0"),
            (0.0, "0"),
            (1.5, "1.5"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (999999.5, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.0e300, "1e+300"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (neg_nan(), "-nan"),
            (f64::NAN, "nan"),
            (2.5e-5, "2.5e-05"),
            (123456.7, "123457"),
            (1234567.8, "1.23457e+06"),
            (0.000123456789, "0.000123457"),
            (1.0e-300, "1e-300"),
            (1.0e-300 / 1.0e20, "9.99989e-321"),
            (-2.5, "-2.5"),
            (0.3, "0.3"),
            (1.0 / 3.0, "0.333333"),
        ];
        for (f, expected) in cases {
            assert_eq!(format_float(f), expected, "{f:e}");
            assert_eq!(format_float_json(f), expected, "{f:e}");
        }
    }

    #[test]
    fn to_string_matches_nix_2_8() {
        let cases = [
            (0.1, "0.100000"),
            (1.0, "1.000000"),
            (1.0e20, "100000000000000000000.000000"),
            (1.0e-7, "0.000000"),
            (123456789.0, "123456789.000000"),
            (-0.0, "-0.000000"),
            (999999.5, "999999.500000"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (neg_nan(), "-nan"),
            (2.5e-5, "0.000025"),
            (0.000123456789, "0.000123"),
            (1234567.8, "1234567.800000"),
        ];
        for (f, expected) in cases {
            assert_eq!(format_float_to_string(f), expected, "{f:e}");
        }
        assert_eq!(
            format_float_to_string(1.0e300),
            "1000000000000000052504760255204420248704468581108159154915854115511802457988908195786371375080447864043704443832883878176942523235360430575644792184786706982848387200926575803737830233794788090059368953234970799945081119038967640880074652742780142494579258788820056842838115669472196386865459400540160.000000"
        );
    }

    #[test]
    fn generated_values_match_nix_oracle() {
        use crate::support::oracle::{Lcg, eval_raw};
        let mut r = Lcg(7);
        let mut values = vec![0.5, 2.5, 1.0e15, 1.0e16, 0.000099999, 999999.4, 9.999995];
        for _ in 0..400 {
            let mantissa = (r.below(1 << 53) as f64) / ((1u64 << 53) as f64) + 0.5;
            let exp = r.below(80) as i32 - 40;
            let digits = r.below(9) as i32;
            let mut v = mantissa * 10f64.powi(exp);
            if r.chance(50) {
                // Values with few significant digits exercise %g's rounding.
                let scale = 10f64.powi(digits - exp.max(-300));
                v = (v * scale).round() / scale;
            }
            if r.chance(30) {
                v = -v;
            }
            if v.is_finite() && v != 0.0 {
                values.push(v);
            }
        }
        let literal = |v: f64| {
            let s = format!("{:e}", v.abs());
            let s = match s.split_once('e') {
                Some((m, e)) if !m.contains('.') => format!("{m}.0e{e}"),
                _ => s,
            };
            if v < 0.0 { format!("(-{s})") } else { s }
        };
        let expr: String = values
            .iter()
            .map(|&v| {
                let l = literal(v);
                format!("[ {l} (toString {l}) (builtins.toJSON {l}) ] ")
            })
            .collect();
        let Some(nix) = eval_raw(&format!("[ {expr}]")) else {
            return;
        };
        let ours: String = values
            .iter()
            .map(|&v| {
                format!(
                    "[ {} \"{}\" \"{}\" ] ",
                    format_float(v),
                    format_float_to_string(v),
                    format_float_json(v)
                )
            })
            .collect();
        let ours = format!("[ {ours}]");
        if nix != ours {
            let diff: Vec<String> = nix
                .split("] [")
                .zip(ours.split("] ["))
                .filter(|(a, b)| a != b)
                .take(10)
                .map(|(a, b)| format!("nix {a} / ours {b}"))
                .collect();
            panic!("{}", diff.join("\n"));
        }
    }
}
