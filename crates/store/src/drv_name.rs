//! Derivation names split into package name and version, as Nix's
//! `DrvName` (`builtins.parseDrvName`) does: the split is at the first `-`
//! followed by a byte that is not an ASCII letter (`hello-2.12` → `hello`,
//! `2.12`; `gtk+-3-dev` → `gtk+`, `3-dev`); a name without such a dash,
//! or with only a trailing one, is all package name and an empty version.
//!
//! Invariants: `name` and `version` are slices of the input (the split
//! dash is ASCII, so both are on character boundaries) and, when the
//! version is not empty, `name + "-" + version` is the input.

/// A name split as `builtins.parseDrvName` splits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrvName<'a> {
    /// Everything before the split dash (the whole input if there is none).
    pub name: &'a str,
    /// Everything after the split dash; empty if there is none.
    pub version: &'a str,
}

/// Split `s` (a derivation or store path name) as Nix's `parseDrvName`.
pub fn parse_drv_name(s: &str) -> DrvName<'_> {
    let bytes = s.as_bytes();
    for (i, pair) in bytes.windows(2).enumerate() {
        if let [b'-', next] = pair
            && !next.is_ascii_alphabetic()
            && let (Some(name), Some(version)) = (s.get(..i), s.get(i + 1..))
        {
            return DrvName { name, version };
        }
    }
    DrvName { name: s, version: "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected splits as `nix-instantiate --eval -E 'builtins.parseDrvName "…"'` prints them.
    #[test]
    fn splits_like_nix() {
        for (input, name, version) in [
            ("hello-2.12", "hello", "2.12"),
            ("nginx-1.24.0", "nginx", "1.24.0"),
            ("ndeploy-system-web-1", "ndeploy-system-web", "1"),
            ("bench-leaf-3", "bench-leaf", "3"),
            ("nix-0.12pre12876", "nix", "0.12pre12876"),
            ("foo-bar-2-x", "foo-bar", "2-x"),
            ("gtk+-3-dev", "gtk+", "3-dev"),
            ("system-path", "system-path", ""),
            ("etc", "etc", ""),
            ("x-", "x-", ""),
            ("-1", "", "1"),
            ("", "", ""),
            ("é-1", "é", "1"),
        ] {
            assert_eq!(parse_drv_name(input), DrvName { name, version }, "{input}");
        }
    }
}
