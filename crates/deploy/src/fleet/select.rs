//! Host selection: `--all`, host names, and `--on` selector lists.
//!
//! A selector is a host-name glob (`web-*`, `db-?`, `[a-c]*`; `*` matches any
//! run of characters, `?` one character, `[...]` a class with ranges and a
//! leading `!` or `^` for negation) or `@TAG`, matching hosts whose
//! deployment tags contain TAG (glob too: `@web*`). `--on` takes a
//! comma-separated list; a host is selected when any selector matches.
//! Selection is pure: tags come from a closure, so only selectors that need
//! tags cause deployment settings to be evaluated ([`Selection::needs_tags`]).
//!
//! Invariants: the result is in the order of the host list given (sorted by
//! the caller), without duplicates; a selector that names no host is an
//! error (a typo must not silently deploy nothing).

use super::FleetError;

/// One selector of `--on` (or a positional host argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A glob on the host name.
    Name(String),
    /// A glob on the deployment tags.
    Tag(String),
}

impl Selector {
    pub fn parse(s: &str) -> Result<Selector, FleetError> {
        let s = s.trim();
        let (sel, pat) = match s.strip_prefix('@') {
            Some(tag) => (Selector::Tag(tag.to_string()), tag),
            None => (Selector::Name(s.to_string()), s),
        };
        if pat.is_empty() {
            return Err(FleetError::Selector(format!("empty selector '{s}'")));
        }
        Ok(sel)
    }

    /// Parse a comma-separated list (`web-*,@db`).
    pub fn parse_list(s: &str) -> Result<Vec<Selector>, FleetError> {
        s.split(',').filter(|p| !p.trim().is_empty()).map(Selector::parse).collect()
    }

    pub fn needs_tags(&self) -> bool {
        matches!(self, Selector::Tag(_))
    }

    pub fn matches(&self, host: &str, tags: &[String]) -> bool {
        match self {
            Selector::Name(g) => glob_match(g.as_bytes(), host.as_bytes()),
            Selector::Tag(g) => tags.iter().any(|t| glob_match(g.as_bytes(), t.as_bytes())),
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Name(g) => f.write_str(g),
            Selector::Tag(g) => write!(f, "@{g}"),
        }
    }
}

/// Which hosts to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Any(Vec<Selector>),
}

impl Selection {
    pub fn needs_tags(&self) -> bool {
        match self {
            Selection::All => false,
            Selection::Any(s) => s.iter().any(Selector::needs_tags),
        }
    }

    /// The selected hosts of `hosts`, in that order. `tags(host)` gives a
    /// host's tags (called only when a tag selector needs them; an `Err`
    /// there means the host cannot be matched by tag and is skipped).
    pub fn apply<E>(
        &self,
        hosts: &[String],
        mut tags: impl FnMut(&str) -> Result<Vec<String>, E>,
    ) -> Result<Vec<String>, FleetError> {
        let sels = match self {
            Selection::All => return Ok(hosts.to_vec()),
            Selection::Any(s) => s,
        };
        let mut used = vec![false; sels.len()];
        let mut out = Vec::new();
        for host in hosts {
            let host_tags = if sels.iter().any(Selector::needs_tags) { tags(host).unwrap_or_default() } else { Vec::new() };
            let mut hit = false;
            for (sel, used) in sels.iter().zip(used.iter_mut()) {
                if sel.matches(host, &host_tags) {
                    *used = true;
                    hit = true;
                }
            }
            if hit {
                out.push(host.clone());
            }
        }
        let unused: Vec<String> = sels.iter().zip(&used).filter(|(_, u)| !**u).map(|(s, _)| s.to_string()).collect();
        if !unused.is_empty() {
            return Err(FleetError::NoMatch { selectors: unused, hosts: hosts.to_vec() });
        }
        Ok(out)
    }
}

/// Shell-style glob match (`*`, `?`, `[...]`), iterative with one
/// backtrack point, so it is linear-ish and never recurses.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pat.get(p) {
            Some(b'*') => {
                star = Some((p, i));
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                i += 1;
                continue;
            }
            Some(b'[') => {
                if let Some((matched, next)) = class_match(pat, p, s.get(i).copied().unwrap_or(0)) {
                    if matched {
                        p = next;
                        i += 1;
                        continue;
                    }
                } else if s.get(i) == Some(&b'[') {
                    // An unterminated class is a literal '['.
                    p += 1;
                    i += 1;
                    continue;
                }
            }
            Some(c) if s.get(i) == Some(c) => {
                p += 1;
                i += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, si)) => {
                p = sp + 1;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pat.get(p..).is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// Match `c` against the class starting at `pat[start] == '['`: returns
/// (matched, index after the class), or `None` if the class is unterminated.
fn class_match(pat: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = start + 1;
    let negate = matches!(pat.get(j), Some(b'!' | b'^'));
    if negate {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *pat.get(j)?;
        if lo == b']' && !first {
            return Some((matched != negate, j + 1));
        }
        first = false;
        if pat.get(j + 1) == Some(&b'-') && pat.get(j + 2).is_some_and(|&h| h != b']') {
            let hi = *pat.get(j + 2)?;
            matched |= lo <= c && c <= hi;
            j += 3;
        } else {
            matched |= lo == c;
            j += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        ["db-1", "monitor-1", "web-1", "web-2"].map(String::from).to_vec()
    }

    fn tags(h: &str) -> Result<Vec<String>, ()> {
        Ok(match h {
            "db-1" => vec!["primary".into(), "db".into()],
            "web-1" | "web-2" => vec!["web".into()],
            "monitor-1" => vec!["monitoring".into()],
            _ => vec![],
        })
    }

    fn select(on: &str) -> Result<Vec<String>, FleetError> {
        Selection::Any(Selector::parse_list(on)?).apply(&hosts(), tags)
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"web-*", b"web-1"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"*-1", b"monitor-1"));
        assert!(!glob_match(b"*-1", b"web-2"));
        assert!(glob_match(b"w?b-[12]", b"web-2"));
        assert!(!glob_match(b"web-[!12]", b"web-2"));
        assert!(glob_match(b"web-[a-z0-9]", b"web-x"));
        assert!(glob_match(b"a*b*c", b"aXXbYYbc"));
        assert!(!glob_match(b"a*b*c", b"aXXbYYb"));
        assert!(glob_match(b"[ab", b"[ab"));
        assert!(!glob_match(b"web", b"web-1"));
        assert!(glob_match(b"**a**", b"bab"));
    }

    #[test]
    fn selectors_pick_hosts() {
        assert_eq!(select("web-*").unwrap(), ["web-1", "web-2"]);
        assert_eq!(select("@db").unwrap(), ["db-1"]);
        assert_eq!(select("@db,monitor-1").unwrap(), ["db-1", "monitor-1"]);
        assert_eq!(select("@mon*, web-2").unwrap(), ["monitor-1", "web-2"]);
        assert_eq!(select("web-1,web-*").unwrap(), ["web-1", "web-2"], "no duplicates");
        assert_eq!(Selection::All.apply(&hosts(), tags).unwrap(), hosts());
    }

    #[test]
    fn selector_matching_nothing_is_an_error() {
        let e = select("web-*,@nope").unwrap_err().to_string();
        assert!(e.contains("@nope"), "{e}");
        assert!(select("@").is_err());
        assert!(select("").unwrap().is_empty());
    }

    #[test]
    fn tags_are_only_read_when_needed() {
        let sel = Selection::Any(Selector::parse_list("web-*").unwrap());
        assert!(!sel.needs_tags());
        let got = sel.apply(&hosts(), |_| -> Result<Vec<String>, ()> { panic!("tags read") }).unwrap();
        assert_eq!(got, ["web-1", "web-2"]);
    }
}
