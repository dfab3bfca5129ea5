//! The linear-time engine: the ERE translated into `regex-automata` syntax
//! (every non-alphanumeric byte written `\xHH`, Unicode mode off, so it
//! matches bytes like libstdc++) and run by `regex-automata`.
//!
//! Design: it serves two purposes. (1) A prefilter for the backtracking
//! matcher: whether and where the leftmost match starts is the same for
//! both engines (the backtracker's search is exhaustive until a first
//! solution), so the backtracker only runs at positions where a match
//! really starts. (2) The fallback when the backtracker runs out of its
//! step budget: POSIX leftmost-longest matching — the leftmost start, the
//! longest end from there (an anchored all-matches search), and captures
//! from the first path in priority order ending exactly there (a
//! leftmost-first search on the haystack truncated at that end, with `$`
//! compiled to never match unless the end is the end of the string).
//!
//! Invariant: every search here is linear in the haystack length.

use std::ops::Range;
use std::sync::OnceLock;

use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind, meta};

use std::fmt::Write;

use super::Groups;
use super::ere::{ByteSet, MAX_DEPTH, Node, Parsed};

/// The translation of one ERE.
pub(super) struct Translation {
    /// Pattern for matches that may end at the end of the string.
    pub at_end: String,
    /// Pattern in which `$` can never match, for matches ending before the
    /// end of the string; `None` if the ERE has no `$`.
    pub inner: Option<String>,
    /// Number of capture groups.
    pub groups: usize,
}

/// Translates a parsed ERE into `regex-automata` syntax.
pub(super) fn translate(parsed: &Parsed) -> Translation {
    let emit_all = |end_matches: bool| {
        let mut out = String::new();
        out.push_str("(?:");
        emit(&parsed.ast, end_matches, &mut out);
        out.push(')');
        out
    };
    Translation {
        at_end: emit_all(true),
        inner: parsed.has_end.then(|| emit_all(false)),
        groups: parsed.groups,
    }
}

fn emit_byte(out: &mut String, b: u8) {
    if b.is_ascii_alphanumeric() {
        out.push(char::from(b));
    } else {
        // Infallible: writing to a String.
        let _ = write!(out, "\\x{b:02X}");
    }
}

/// A class that matches nothing (valid in byte-oriented mode).
const NEVER: &str = "[^\\x00-\\xFF]";

fn emit(node: &Node, end_matches: bool, out: &mut String) {
    match node {
        Node::Literal(b) => emit_byte(out, *b),
        Node::Set(set) => emit_set(set, out),
        Node::Start => out.push_str("\\A"),
        Node::End if end_matches => out.push_str("\\z"),
        Node::End => out.push_str(NEVER),
        Node::Group(_, inner) => {
            out.push('(');
            emit(inner, end_matches, out);
            out.push(')');
        }
        Node::Concat(items) => {
            for item in items {
                emit(item, end_matches, out);
            }
        }
        Node::Alt(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                emit(item, end_matches, out);
            }
        }
        Node::Repeat { node, min, max, .. } => {
            out.push_str("(?:");
            emit(node, end_matches, out);
            out.push(')');
            // Infallible: writing to a String.
            let _ = match (min, max) {
                (0, None) => write!(out, "*"),
                (1, None) => write!(out, "+"),
                (0, Some(1)) => write!(out, "?"),
                (n, None) => write!(out, "{{{n},}}"),
                (n, Some(m)) if n == m => write!(out, "{{{n}}}"),
                (n, Some(m)) => write!(out, "{{{n},{m}}}"),
            };
        }
    }
}

fn emit_set(set: &ByteSet, out: &mut String) {
    let mut ranges = Vec::new();
    let mut b: u16 = 0;
    while b <= 255 {
        let lo = b as u8;
        if set.contains(lo) {
            let mut hi = lo;
            while hi < u8::MAX && set.contains(hi + 1) {
                hi += 1;
            }
            ranges.push((lo, hi));
            b = u16::from(hi) + 1;
        } else {
            b += 1;
        }
    }
    if ranges.is_empty() {
        out.push_str(NEVER);
        return;
    }
    out.push('[');
    for (lo, hi) in ranges {
        // Infallible: writing to a String.
        let _ = write!(out, "\\x{lo:02X}");
        if hi != lo {
            let _ = write!(out, "-\\x{hi:02X}");
        }
    }
    out.push(']');
}

/// Compiles a translated pattern; `None` if it exceeds the size limits.
fn build(source: &str, kind: MatchKind) -> Option<meta::Regex> {
    meta::Builder::new()
        .configure(
            meta::Config::new()
                .match_kind(kind)
                .utf8_empty(false)
                .nfa_size_limit(Some(64 << 20)),
        )
        .syntax(
            syntax::Config::new()
                .unicode(false)
                .utf8(false)
                .nest_limit(4 * MAX_DEPTH as u32 + 16),
        )
        .build(source)
        .ok()
}

/// The compiled forms of one translated ERE (all but the first built on
/// first use).
pub(super) struct Linear {
    groups: usize,
    /// `(?:P)\z`, leftmost-first: whole-string matches and captures.
    exact_at_end: meta::Regex,
    /// `(?:P')\z` with `$` never matching, if P has a `$`.
    inner_source: Option<String>,
    exact_inner: OnceLock<Option<meta::Regex>>,
    /// P, leftmost-first: where the leftmost match starts.
    search: OnceLock<Option<meta::Regex>>,
    /// P, all-matches: the longest match end from an anchored start.
    longest: OnceLock<Option<meta::Regex>>,
    source: String,
}

impl Linear {
    /// Compiles a translation; `None` if it is too big.
    pub(super) fn new(t: Translation) -> Option<Linear> {
        Some(Linear {
            groups: t.groups,
            exact_at_end: build(&format!("{}\\z", t.at_end), MatchKind::LeftmostFirst)?,
            inner_source: t.inner.map(|s| format!("{s}\\z")),
            exact_inner: OnceLock::new(),
            search: OnceLock::new(),
            longest: OnceLock::new(),
            source: t.at_end,
        })
    }

    fn lazy<'a>(
        &'a self,
        cell: &'a OnceLock<Option<meta::Regex>>,
        kind: MatchKind,
    ) -> Option<&'a meta::Regex> {
        cell.get_or_init(|| build(&self.source, kind)).as_ref()
    }

    /// Captures of the first-priority match of `re` spanning exactly
    /// `start..hay.len()`.
    fn captures_exact(&self, re: &meta::Regex, hay: &[u8], start: usize) -> Option<Groups> {
        let mut caps: Captures = re.create_captures();
        let input = Input::new(hay).range(start..).anchored(Anchored::Yes);
        re.search_captures(&input, &mut caps);
        if !caps.is_match() {
            return None;
        }
        Some(
            (1..=self.groups)
                .map(|g| caps.get_group(g).map(|s| s.range()))
                .collect(),
        )
    }

    /// Whole-string match with leftmost-first captures.
    pub(super) fn match_whole(&self, hay: &[u8]) -> Option<Groups> {
        self.captures_exact(&self.exact_at_end, hay, 0)
    }

    /// Whether the whole string matches.
    pub(super) fn is_match_whole(&self, hay: &[u8]) -> bool {
        self.exact_at_end
            .is_match(Input::new(hay).anchored(Anchored::Yes))
    }

    /// Where the leftmost match at or after `from` starts.
    pub(super) fn leftmost_start(&self, hay: &[u8], from: usize) -> Option<usize> {
        let search = self.lazy(&self.search, MatchKind::LeftmostFirst)?;
        search
            .search(&Input::new(hay).range(from..))
            .map(|m| m.start())
    }

    /// The leftmost-longest match at or after `from`: (span, groups).
    pub(super) fn find_at(&self, hay: &[u8], from: usize) -> Option<(Range<usize>, Groups)> {
        let search = self.lazy(&self.search, MatchKind::LeftmostFirst)?;
        let first = search.search(&Input::new(hay).range(from..))?;
        let start = first.start();
        let longest = self.lazy(&self.longest, MatchKind::All)?;
        let end = longest
            .search(&Input::new(hay).range(start..).anchored(Anchored::Yes))
            .map_or(first.end(), |m| m.end().max(first.end()));
        let truncated = hay.get(..end)?;
        let groups = if end == hay.len() {
            self.captures_exact(&self.exact_at_end, truncated, start)
        } else {
            let inner = match &self.inner_source {
                None => Some(&self.exact_at_end),
                Some(src) => self
                    .exact_inner
                    .get_or_init(|| build(src, MatchKind::LeftmostFirst))
                    .as_ref(),
            };
            inner.and_then(|re| self.captures_exact(re, truncated, start))
        };
        Some((start..end, groups?))
    }
}

#[cfg(test)]
mod tests {
    use super::super::ere::parse;
    use super::*;

    fn ok(p: &str) -> String {
        match parse(p.as_bytes()) {
            Ok(parsed) => translate(&parsed).at_end,
            Err(e) => panic!("{p:?}: {e:?}"),
        }
    }

    #[test]
    fn translations() {
        assert_eq!(ok("ab"), "(?:ab)");
        assert_eq!(ok("a.b"), "(?:a[\\x01-\\xFF]b)");
        assert_eq!(ok("^a$"), "(?:\\Aa\\z)");
        assert_eq!(ok("a+?"), "(?:(?:(?:a)+)?)");
        assert_eq!(ok("a{2,3}|b"), "(?:(?:a){2,3}|b)");
        assert_eq!(ok("[]a]"), "(?:[\\x5D\\x61])");
        assert_eq!(ok("\\."), "(?:\\x2E)");
        assert_eq!(ok("}]"), "(?:\\x7D\\x5D)");
        let t = translate(&parse(b"a$").unwrap());
        assert_eq!(t.inner.as_deref(), Some("(?:a[^\\x00-\\xFF])"));
        assert!(translate(&parse(b"a").unwrap()).inner.is_none());
        assert_eq!(parse(b"(a)(b(c))").unwrap().groups, 3);
    }
}
