//! POSIX extended regular expressions for `builtins.match` and
//! `builtins.split`, matching C++ Nix 2.8 (libstdc++ `std::regex` with
//! `std::regex::extended`).
//!
//! Design: [`ere`] validates the ERE with libstdc++'s rules and translates
//! it to `regex-automata` syntax, compiled byte-oriented (no Unicode), so
//! matching is on bytes as in C++. All results are byte ranges into the
//! haystack; [`match_str`] / [`split_str`] are conveniences that copy them
//! into `String`s (lossily if a range cuts a UTF-8 character, which only
//! happens with patterns such as `.` applied to non-ASCII text; Nix would
//! produce the raw bytes).
//!
//! Semantics (libstdc++ runs a backtracking search that keeps the longest
//! match in POSIX mode):
//! - `match` is a whole-string match; among the ways to match, captures
//!   come from the first one in priority order (left alternative first,
//!   greedy repetition first), which is what a leftmost-first engine
//!   anchored at both ends yields: `match "(a|ab)(c|bcd)(d*)" "abcd"` is
//!   `["a" "bcd" ""]` as in Nix.
//! - `split` repeatedly searches: the match starts at the leftmost possible
//!   position and is the *longest* match from there (`split "a|ab" "xabc"`
//!   is `["x" [] "c"]`), with captures from the first path in priority
//!   order that ends there. After an empty match the search resumes one
//!   byte further and the skipped byte joins the next unmatched string;
//!   `^` only matches at the very start of the string.
//! - Known difference: libstdc++ prunes its search at greedy repetitions
//!   once any match was found, so in rare patterns it returns a shorter
//!   match than the longest (`split "a?(ab)?" "ab"` gives
//!   `["" [null] "" [null] "b" [null] ""]` in Nix, `["" ["ab"] ""]` here).
//!   libstdc++ also runs one extra empty iteration of a starred group
//!   after a non-empty one (`match "(a*)*" "aa"` is `[""]` in Nix,
//!   `["aa"]` here). Unlike libstdc++, matching here is linear-time and cannot overflow the
//!   stack on long strings.
//!
//! Compiled patterns are cached process-wide ([`compile`]): a mutex-guarded
//! map bounded to [`CACHE_CAPACITY`] entries (evicting the oldest), holding
//! `Arc`s so callers never hold the lock while matching.

mod ere;

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind, meta};
use thiserror::Error;

/// Maximum number of compiled patterns kept in the cache.
pub const CACHE_CAPACITY: usize = 1024;

/// Errors compiling a pattern, with Nix 2.8's messages.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegexError {
    /// The pattern is not a valid POSIX ERE.
    #[error("invalid regular expression '{0}'")]
    Invalid(String),
    /// The pattern is valid but too large to compile.
    #[error("memory limit exceeded by regular expression '{0}'")]
    TooBig(String),
}

/// Capture groups of one match: group 1 first; `None` for a group that did
/// not participate (Nix `null`).
pub type Groups = Vec<Option<Range<usize>>>;

/// One element of a `builtins.split` result, as byte ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitPart {
    /// A run of text between matches.
    Text(Range<usize>),
    /// The capture groups of a match.
    Match(Groups),
}

/// One element of a `builtins.split` result, as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitPiece {
    /// A run of text between matches.
    Text(String),
    /// The capture groups of a match (`None` is Nix `null`).
    Match(Vec<Option<String>>),
}

/// A compiled POSIX ERE.
pub struct Regex {
    pattern: String,
    groups: usize,
    /// Leftmost-first; anchored use gives whole-match priority captures.
    exact_at_end: meta::Regex,
    /// Translation of `exact_at_end` where `$` never matches.
    inner_source: Option<String>,
    exact_inner: OnceLock<Option<meta::Regex>>,
    /// Leftmost-first, unanchored: finds where the leftmost match starts.
    search: OnceLock<Option<meta::Regex>>,
    /// All-matches semantics: anchored, reports the longest match end.
    longest: OnceLock<Option<meta::Regex>>,
    source: String,
}

impl std::fmt::Debug for Regex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regex")
            .field("pattern", &self.pattern)
            .finish()
    }
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
                .nest_limit(4 * ere::MAX_DEPTH as u32 + 16),
        )
        .build(source)
        .ok()
}

impl Regex {
    /// Compiles `pattern` (not cached; see [`compile`]).
    pub fn new(pattern: &str) -> Result<Regex, RegexError> {
        let t = ere::translate(pattern.as_bytes()).map_err(|e| match e {
            ere::EreError::Invalid => RegexError::Invalid(pattern.to_owned()),
            ere::EreError::TooBig => RegexError::TooBig(pattern.to_owned()),
        })?;
        let exact_at_end = build(&format!("{}\\z", t.at_end), MatchKind::LeftmostFirst)
            .ok_or_else(|| RegexError::TooBig(pattern.to_owned()))?;
        Ok(Regex {
            pattern: pattern.to_owned(),
            groups: t.groups,
            exact_at_end,
            inner_source: t.inner.map(|s| format!("{s}\\z")),
            exact_inner: OnceLock::new(),
            search: OnceLock::new(),
            longest: OnceLock::new(),
            source: t.at_end,
        })
    }

    /// The ERE this was compiled from.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Number of capture groups.
    pub fn group_count(&self) -> usize {
        self.groups
    }

    /// `builtins.match`: if the whole of `hay` matches, the capture groups.
    pub fn match_whole(&self, hay: &[u8]) -> Option<Groups> {
        self.captures_exact(&self.exact_at_end, hay, 0)
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

    fn lazy<'a>(
        &'a self,
        cell: &'a OnceLock<Option<meta::Regex>>,
        kind: MatchKind,
    ) -> Option<&'a meta::Regex> {
        cell.get_or_init(|| build(&self.source, kind)).as_ref()
    }

    /// The leftmost-longest match at or after `from`: (span, groups).
    fn find_at(&self, hay: &[u8], from: usize) -> Option<(Range<usize>, Groups)> {
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

    /// `builtins.split`: unmatched text interleaved with match groups,
    /// always starting and ending with a [`SplitPart::Text`].
    pub fn split(&self, hay: &[u8]) -> Vec<SplitPart> {
        let mut parts = Vec::new();
        let mut text_start = 0;
        let mut from = 0;
        while from <= hay.len() {
            let Some((span, groups)) = self.find_at(hay, from) else {
                break;
            };
            parts.push(SplitPart::Text(text_start..span.start));
            parts.push(SplitPart::Match(groups));
            text_start = span.end;
            from = if span.is_empty() {
                span.end + 1
            } else {
                span.end
            };
        }
        parts.push(SplitPart::Text(text_start..hay.len()));
        parts
    }
}

/// The process-wide cache behind [`compile`].
struct Cache {
    map: HashMap<String, Arc<Regex>>,
    order: VecDeque<String>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(Cache {
            map: HashMap::new(),
            order: VecDeque::new(),
        })
    })
}

/// Compiles `pattern`, or returns the cached compilation. Thread-safe;
/// errors are not cached.
pub fn compile(pattern: &str) -> Result<Arc<Regex>, RegexError> {
    if let Ok(c) = cache().lock()
        && let Some(re) = c.map.get(pattern)
    {
        return Ok(Arc::clone(re));
    }
    let re = Arc::new(Regex::new(pattern)?);
    // A poisoned lock only means another thread panicked mid-insert; the
    // cache is an optimisation, so skip it rather than propagate.
    if let Ok(mut c) = cache().lock()
        && !c.map.contains_key(pattern)
    {
        while c.map.len() >= CACHE_CAPACITY {
            let Some(old) = c.order.pop_front() else {
                break;
            };
            c.map.remove(&old);
        }
        c.order.push_back(pattern.to_owned());
        c.map.insert(pattern.to_owned(), Arc::clone(&re));
    }
    Ok(re)
}

fn to_string(hay: &[u8], range: Range<usize>) -> String {
    String::from_utf8_lossy(hay.get(range).unwrap_or_default()).into_owned()
}

fn groups_to_strings(hay: &[u8], groups: Groups) -> Vec<Option<String>> {
    groups
        .into_iter()
        .map(|g| g.map(|r| to_string(hay, r)))
        .collect()
}

/// `builtins.match pattern s` with string results (`None`: no match).
pub fn match_str(pattern: &str, s: &str) -> Result<Option<Vec<Option<String>>>, RegexError> {
    let re = compile(pattern)?;
    let hay = s.as_bytes();
    Ok(re.match_whole(hay).map(|g| groups_to_strings(hay, g)))
}

/// `builtins.split pattern s` with string results.
pub fn split_str(pattern: &str, s: &str) -> Result<Vec<SplitPiece>, RegexError> {
    let re = compile(pattern)?;
    let hay = s.as_bytes();
    Ok(re
        .split(hay)
        .into_iter()
        .map(|part| match part {
            SplitPart::Text(r) => SplitPiece::Text(to_string(hay, r)),
            SplitPart::Match(g) => SplitPiece::Match(groups_to_strings(hay, g)),
        })
        .collect())
}

#[cfg(test)]
mod tests;
