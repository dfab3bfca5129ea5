//! POSIX extended regular expressions for `builtins.match` and
//! `builtins.split`, matching C++ Nix 2.8 (libstdc++ `std::regex` with
//! `std::regex::extended`).
//!
//! Design: [`ere`] validates the ERE with libstdc++'s rules and parses it
//! into a syntax tree, matched on bytes as in C++ (`.` matches one byte of a
//! multi-byte UTF-8 character). Two engines run it:
//! - [`backtrack`] reproduces libstdc++'s depth-first POSIX executor
//!   exactly, including its quirks (alternation keeps the longest match,
//!   greedy repetition stops exploring once any match was found, an extra
//!   empty iteration of starred groups), so results equal Nix 2.8's:
//!   `match "(a*)*" "aa"` is `[""]`, `split "a?(ab)?" "ab"` is
//!   `["" [null] "" [null] "b" [null] ""]`, `split "a|ab" "xabc"` is
//!   `["x" [] "c"]`;
//! - [`linear`] is the translation run by `regex-automata` in linear time.
//!   It first tells where a match starts (or that there is none), so the
//!   backtracker only runs where it will succeed; and it answers, with
//!   POSIX leftmost-longest semantics, when the backtracker exceeds its
//!   step or memory budget (exponential patterns, matches of hundreds of
//!   kilobytes — inputs on which libstdc++ hangs or overflows its stack).
//!
//! `split` follows `std::regex_iterator`: after an empty match it retries a
//! non-empty match at the same position, then resumes one byte further (the
//! skipped byte joins the next unmatched string); `^` only matches at the
//! very start of the string. All results are byte ranges into the
//! haystack; [`match_str`] / [`split_str`] copy them into `String`s (lossily
//! if a range cuts a UTF-8 character, where Nix would produce raw bytes).
//!
//! Compiled patterns are cached process-wide ([`compile`]): a mutex-guarded
//! map bounded to [`CACHE_CAPACITY`] entries and [`CACHE_WEIGHT`] total
//! size (evicting the oldest), holding
//! `Arc`s so callers never hold the lock while matching.

mod backtrack;
mod ere;
mod limits;
mod linear;

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use thiserror::Error;

/// Maximum number of compiled patterns kept in the cache.
pub const CACHE_CAPACITY: usize = 1024;

/// Maximum total [`Regex::weight`] of the cached patterns (a pattern near
/// libstdc++'s size limit weighs about 100 000).
pub const CACHE_WEIGHT: usize = 2_000_000;

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
    program: backtrack::Program,
    linear: linear::Linear,
}

impl std::fmt::Debug for Regex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regex")
            .field("pattern", &self.pattern)
            .finish()
    }
}

/// Converts backtracker slots (group 0 first) into [`Groups`].
fn slots_to_groups(slots: &[backtrack::Slot]) -> Groups {
    slots
        .iter()
        .skip(1)
        .map(|slot| match *slot {
            (Some(a), Some(b)) if a <= b => Some(a..b),
            _ => None,
        })
        .collect()
}

/// A match found by a search: its span and groups.
type Found = (Range<usize>, Groups);

impl Regex {
    /// Compiles `pattern` (not cached; see [`compile`]).
    pub fn new(pattern: &str) -> Result<Regex, RegexError> {
        let parsed = ere::parse(pattern.as_bytes()).map_err(|e| match e {
            ere::EreError::Invalid => RegexError::Invalid(pattern.to_owned()),
            ere::EreError::TooBig => RegexError::TooBig(pattern.to_owned()),
        })?;
        let linear = linear::Linear::new(linear::translate(&parsed))
            .ok_or_else(|| RegexError::TooBig(pattern.to_owned()))?;
        Ok(Regex {
            pattern: pattern.to_owned(),
            groups: parsed.groups,
            program: backtrack::Program::new(&parsed.ast, parsed.groups),
            linear,
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

    /// Approximate size, for bounding the cache: NFA states plus the
    /// pattern length.
    pub fn weight(&self) -> usize {
        self.program.len() + self.pattern.len()
    }

    /// `builtins.match`: if the whole of `hay` matches, the capture groups.
    pub fn match_whole(&self, hay: &[u8]) -> Option<Groups> {
        if !self.linear.is_match_whole(hay) {
            return None;
        }
        if self.groups == 0 {
            // Whether a full match exists is the same for both engines, and
            // without groups there is nothing else to report.
            return Some(Vec::new());
        }
        let flags = backtrack::Flags::default();
        match backtrack::run(&self.program, hay, 0, backtrack::Mode::Exact, flags) {
            Ok(slots) => slots.map(|s| slots_to_groups(&s)),
            Err(backtrack::OutOfBudget) => self.linear.match_whole(hay),
        }
    }

    /// One `regex_search` from `from`: the first start position with a
    /// solution, and the solution chosen there. `continuous` only tries
    /// `from` itself.
    fn search(
        &self,
        hay: &[u8],
        from: usize,
        mut flags: backtrack::Flags,
        continuous: bool,
        budget_exceeded: &mut bool,
    ) -> Option<Found> {
        let mut start = from;
        loop {
            if *budget_exceeded {
                return self.linear_search(hay, start, flags, continuous);
            }
            if !continuous {
                let next = self.linear.leftmost_start(hay, start)?;
                if next > start {
                    start = next;
                    flags.prev_avail = true;
                }
            }
            match backtrack::run(&self.program, hay, start, backtrack::Mode::Prefix, flags) {
                Ok(Some(slots)) => {
                    let span = match slots.first() {
                        Some(&(Some(a), Some(b))) if a <= b => a..b,
                        _ => start..start,
                    };
                    return Some((span, slots_to_groups(&slots)));
                }
                Ok(None) => {}
                Err(backtrack::OutOfBudget) => {
                    // This pattern explodes on this input: stay linear for
                    // the rest of the call so its cost stays bounded.
                    *budget_exceeded = true;
                    return self.linear_search(hay, start, flags, continuous);
                }
            }
            if continuous || start >= hay.len() {
                return None;
            }
            start += 1;
            flags.prev_avail = true;
        }
    }

    /// [`search`](Self::search) with the linear engine only.
    fn linear_search(
        &self,
        hay: &[u8],
        start: usize,
        flags: backtrack::Flags,
        continuous: bool,
    ) -> Option<Found> {
        let found = self.linear.find_at(hay, start)?;
        let acceptable =
            !continuous || (found.0.start == start && !(flags.not_null && found.0.is_empty()));
        acceptable.then_some(found)
    }

    /// `builtins.split`: unmatched text interleaved with match groups,
    /// always starting and ending with a [`SplitPart::Text`]. Follows
    /// `std::regex_iterator`: after an empty match it first retries a
    /// non-empty match at the same position, then moves one byte on.
    pub fn split(&self, hay: &[u8]) -> Vec<SplitPart> {
        use backtrack::Flags;
        let mut parts = Vec::new();
        let mut text_start = 0;
        let mut prev_avail = false;
        let mut exceeded = false;
        let mut found = self.search(hay, 0, Flags::default(), false, &mut exceeded);
        while let Some((span, groups)) = found {
            parts.push(SplitPart::Text(text_start..span.start));
            parts.push(SplitPart::Match(groups));
            text_start = span.end;
            let mut start = span.end;
            if span.is_empty() {
                if start >= hay.len() {
                    break;
                }
                let retry = Flags {
                    prev_avail,
                    not_null: true,
                };
                if let Some(m) = self.search(hay, start, retry, true, &mut exceeded) {
                    found = Some(m);
                    continue;
                }
                start += 1;
            }
            prev_avail = true;
            let flags = Flags {
                prev_avail: true,
                not_null: false,
            };
            found = self.search(hay, start, flags, false, &mut exceeded);
        }
        parts.push(SplitPart::Text(text_start..hay.len()));
        parts
    }
}

/// The process-wide cache behind [`compile`].
struct Cache {
    map: HashMap<String, Arc<Regex>>,
    order: VecDeque<String>,
    /// Sum of [`Regex::weight`] over the cached entries.
    weight: usize,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(Cache {
            map: HashMap::new(),
            order: VecDeque::new(),
            weight: 0,
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
        while c.map.len() >= CACHE_CAPACITY || c.weight + re.weight() > CACHE_WEIGHT {
            let Some(old) = c.order.pop_front() else {
                break;
            };
            if let Some(evicted) = c.map.remove(&old) {
                c.weight -= evicted.weight();
            }
        }
        c.weight += re.weight();
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
