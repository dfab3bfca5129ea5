//! String-level path operations of Nix 2.8: `canonPath` (used for path
//! literals and `/.` + string coercions), and the `baseNameOf` / `dirOf`
//! builtins.
//!
//! Design: purely lexical; no symlink resolution and no file-system access.
//! `canon_path` collapses repeated slashes, removes `.` components and
//! resolves `..` against the components seen so far (`..` at the root stays
//! at the root); the result never ends in `/` unless it is `/`.
//! `base_name_of` / `dir_of` follow Nix's rules exactly, including their
//! asymmetry: `baseNameOf` ignores one trailing slash, `dirOf` does not.

use thiserror::Error;

/// Errors from [`canon_path`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    /// The input did not start with `/`.
    #[error("not an absolute path: '{0}'")]
    NotAbsolute(String),
}

/// Canonicalises an absolute path lexically, as Nix's `canonPath`.
///
/// `//a/./b/../c/` → `/a/c`; `/..` → `/`.
pub fn canon_path(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute(path.to_owned()));
    }
    let mut out = String::with_capacity(path.len());
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                let cut = out.rfind('/').unwrap_or(0);
                out.truncate(cut);
            }
            name => {
                out.push('/');
                out.push_str(name);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// `builtins.baseNameOf` on a string: everything after the last slash,
/// ignoring a single trailing slash (`"/a/b/"` → `"b"`, `"/"` → `""`).
pub fn base_name_of(path: &str) -> &str {
    let trimmed = match path.strip_suffix('/') {
        Some(rest) if !rest.is_empty() => rest,
        _ => path,
    };
    match trimmed.rfind('/') {
        // `trimmed` is "/" only when path is "/": the base name is empty.
        Some(pos) => trimmed.get(pos + 1..).unwrap_or(""),
        None => trimmed,
    }
}

/// `builtins.dirOf` on a string: everything before the last slash; `"."`
/// if there is none and `"/"` if it is the first character. A trailing
/// slash is not ignored: `dirOf "a/"` is `"a"`.
pub fn dir_of(path: &str) -> &str {
    match path.rfind('/') {
        None => ".",
        Some(0) => "/",
        Some(pos) => path.get(..pos).unwrap_or("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canon_path_cases() {
        // Path literals evaluated by nix-instantiate 2.8 (`/. + "..."`).
        let cases = [
            ("/", "/"),
            ("//", "/"),
            ("/a/b", "/a/b"),
            ("/a//b/", "/a/b"),
            ("/a/./b/.", "/a/b"),
            ("/a/../b", "/b"),
            ("/..", "/"),
            ("/../../a", "/a"),
            ("/a/b/../../..", "/"),
            ("/a/.b/..c/...", "/a/.b/..c/..."),
            ("/a/b/..", "/a"),
        ];
        for (input, expected) in cases {
            assert_eq!(canon_path(input).unwrap(), expected, "{input}");
        }
        assert_eq!(
            canon_path("a/b").unwrap_err().to_string(),
            "not an absolute path: 'a/b'"
        );
        assert!(canon_path("").is_err());
    }

    #[test]
    fn base_name_of_cases() {
        let cases = [
            ("", ""),
            ("/", ""),
            ("//", ""),
            ("a", "a"),
            ("/a", "a"),
            ("/a/b", "b"),
            ("/a/b/", "b"),
            ("/a/b//", ""),
            ("a/", "a"),
            ("/nix/store/abc-foo.tar.gz", "abc-foo.tar.gz"),
        ];
        for (input, expected) in cases {
            assert_eq!(base_name_of(input), expected, "{input:?}");
        }
    }

    #[test]
    fn dir_of_cases() {
        let cases = [
            ("", "."),
            ("a", "."),
            ("/", "/"),
            ("/a", "/"),
            ("//a", "/"),
            ("/a/b", "/a"),
            ("/a/b/", "/a/b"),
            ("a/", "a"),
            ("a/b", "a"),
            ("/a//b", "/a/"),
        ];
        for (input, expected) in cases {
            assert_eq!(dir_of(input), expected, "{input:?}");
        }
    }

    #[test]
    fn generated_paths_match_nix_oracle() {
        use crate::support::oracle::{Lcg, eval_json, nix_string};
        let pieces = ["/", "/", "a", "bc", ".", "..", "...", ".a", "é", "-"];
        let mut r = Lcg(11);
        let paths: Vec<String> = (0..300)
            .map(|_| (0..r.below(7)).map(|_| r.pick(&pieces)).collect())
            .collect();
        let expr: String = paths
            .iter()
            .map(|p| {
                let lit = nix_string(p);
                format!("[ (baseNameOf {lit}) (dirOf {lit}) (toString (/. + {lit})) ] ")
            })
            .collect();
        let Some(nix) = eval_json(&format!("[ {expr}]")) else {
            return;
        };
        for (p, expected) in paths.iter().zip(nix.as_array().unwrap()) {
            // `/. + s` appends s to "/" and canonicalises the result.
            let ours = serde_json::json!([
                base_name_of(p),
                dir_of(p),
                canon_path(&format!("/{p}")).unwrap()
            ]);
            assert_eq!(&ours, expected, "{p:?}");
        }
    }
}
