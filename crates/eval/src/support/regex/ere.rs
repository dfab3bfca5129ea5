//! Parser for POSIX extended regular expressions as libstdc++'s
//! `std::regex::extended` accepts them (what C++ Nix 2.8 uses).
//!
//! Design: the pattern is parsed as bytes into a small syntax tree
//! ([`Node`]) and validated with libstdc++'s rules; the tree is then
//! compiled by the backtracker and translated for the linear engine. Rules
//! implemented (each checked against Nix 2.8):
//! - `\` may only escape one of `.[\()*+?{|^$` (libstdc++'s ERE special
//!   characters); anything else (`\]`, `\}`, `\d`, `\n`, `\1`, `\/`) is
//!   an invalid regex, as Nix is built in strict ISO mode;
//! - a quantifier (`*`, `+`, `?`, `{`) needs an atom before it; `^` and `$`
//!   are anchors, not atoms; stacked quantifiers (`a+?`, `a**`,
//!   `x{1,2}{3}`) each apply to the previous result (`?` is never lazy);
//! - `{n}`, `{n,}`, `{n,m}` with `n <= m`; any other `{` is invalid, while a
//!   lone `}` or `]` is a literal;
//! - `()` and empty alternatives are allowed; `(`/`)` must balance;
//! - bracket expressions: `]` first is literal, `\` is literal, `-` is
//!   literal first or last; a range starts with a character or `[.name.]`
//!   and ends with a plain character, is ordered as signed `char`s (so
//!   `[é-a]` is valid and `[a-é]` is not), and may not be followed by a
//!   dash other than a final one; `[:name:]` classes (case-insensitive,
//!   plus libstdc++'s `d`, `w`, `s`) and `[=name=]` equivalence classes
//!   (case-folded) are never range endpoints; `[.name.]` and `[=name=]`
//!   only know the POSIX names of the ASCII characters (`a`, `zero`,
//!   `hyphen`, ...), so `[.-.]` is invalid;
//! - `.` matches any byte but NUL, newlines included; `^`/`$` match only at
//!   the ends of the whole string.
//!
//! Invariants: tree depth is bounded by [`MAX_DEPTH`] (nesting of groups
//! and stacked quantifiers) so the recursive passes over it cannot
//! overflow the stack; patterns whose NFA would exceed libstdc++'s state
//! limit ([`STATE_LIMIT`], counted exactly as libstdc++ builds its NFA,
//! copies of `{n,m}` bodies included) are reported as too big, which Nix
//! reports as "memory limit exceeded".

/// Maximum nesting of groups plus stacked quantifiers.
pub(super) const MAX_DEPTH: usize = 200;

/// libstdc++'s `_GLIBCXX_REGEX_STATE_LIMIT`.
pub(super) const STATE_LIMIT: u64 = 100_000;

/// Why a pattern was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EreError {
    /// Not a valid ERE for libstdc++.
    Invalid,
    /// Valid, but too large to compile.
    TooBig,
}

/// A 256-bit byte set.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct ByteSet([u64; 4]);

impl ByteSet {
    fn new() -> Self {
        ByteSet([0; 4])
    }

    fn insert(&mut self, b: u8) {
        if let Some(word) = self.0.get_mut(usize::from(b >> 6)) {
            *word |= 1 << (b & 63);
        }
    }

    fn insert_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.insert(b);
        }
    }

    fn insert_where(&mut self, pred: impl Fn(u8) -> bool) {
        for b in 0..=u8::MAX {
            if pred(b) {
                self.insert(b);
            }
        }
    }

    pub(super) fn contains(&self, b: u8) -> bool {
        self.0
            .get(usize::from(b >> 6))
            .is_some_and(|w| w & (1 << (b & 63)) != 0)
    }

    fn union(&mut self, other: &ByteSet) {
        for (w, o) in self.0.iter_mut().zip(other.0) {
            *w |= o;
        }
    }

    fn negate(&mut self) {
        for w in &mut self.0 {
            *w = !*w;
        }
    }
}

/// How a repetition was written; libstdc++ compiles each differently.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum RepeatKind {
    /// `*`
    Star,
    /// `+`
    Plus,
    /// `?`
    Opt,
    /// `{n}`, `{n,}`, `{n,m}`
    Interval,
}

/// The parsed ERE.
#[derive(Clone)]
pub(super) enum Node {
    /// One byte.
    Literal(u8),
    /// A bracket expression or `.`.
    Set(Box<ByteSet>),
    /// `^`
    Start,
    /// `$`
    End,
    /// A capture group with its 1-based index.
    Group(usize, Box<Node>),
    /// A sequence (possibly empty).
    Concat(Vec<Node>),
    /// Alternatives, left to right.
    Alt(Vec<Node>),
    /// A repetition.
    Repeat {
        node: Box<Node>,
        kind: RepeatKind,
        min: u32,
        max: Option<u32>,
    },
}

/// A parsed ERE and its properties.
pub(super) struct Parsed {
    /// The syntax tree.
    pub ast: Node,
    /// Number of capture groups.
    pub groups: usize,
    /// Whether the pattern contains `$`.
    pub has_end: bool,
}

/// Parses and validates an ERE.
pub(super) fn parse(pattern: &[u8]) -> Result<Parsed, EreError> {
    let mut parser = Parser {
        input: pattern,
        pos: 0,
        groups: 0,
        has_end: false,
    };
    let ast = parser.parse_alt(0)?;
    if parser.pos != pattern.len() {
        // Only an unbalanced ')' stops the top-level parse early.
        return Err(EreError::Invalid);
    }
    if super::limits::pattern_states(&ast) > STATE_LIMIT {
        return Err(EreError::TooBig);
    }
    Ok(Parsed {
        ast,
        groups: parser.groups,
        has_end: parser.has_end,
    })
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    groups: usize,
    has_end: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.input.get(self.pos + offset).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn parse_alt(&mut self, depth: usize) -> Result<Node, EreError> {
        if depth > MAX_DEPTH {
            return Err(EreError::Invalid);
        }
        let mut branches = vec![self.parse_concat(depth)?];
        while self.peek() == Some(b'|') {
            self.pos += 1;
            branches.push(self.parse_concat(depth)?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Concat(Vec::new()))
        } else {
            Node::Alt(branches)
        })
    }

    fn parse_concat(&mut self, depth: usize) -> Result<Node, EreError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            let atom = match c {
                b'|' => break,
                b')' if depth > 0 => break,
                b')' => return Err(EreError::Invalid),
                b'^' | b'$' => {
                    self.pos += 1;
                    if matches!(self.peek(), Some(b'*' | b'+' | b'?' | b'{')) {
                        return Err(EreError::Invalid);
                    }
                    items.push(if c == b'^' {
                        Node::Start
                    } else {
                        self.has_end = true;
                        Node::End
                    });
                    continue;
                }
                b'*' | b'+' | b'?' | b'{' => return Err(EreError::Invalid),
                b'(' => {
                    self.pos += 1;
                    self.groups += 1;
                    let index = self.groups;
                    let inner = self.parse_alt(depth + 1)?;
                    if self.bump() != Some(b')') {
                        return Err(EreError::Invalid);
                    }
                    Node::Group(index, Box::new(inner))
                }
                b'.' => {
                    self.pos += 1;
                    let mut set = ByteSet::new();
                    set.insert_range(1, u8::MAX);
                    Node::Set(Box::new(set))
                }
                b'[' => {
                    self.pos += 1;
                    Node::Set(Box::new(self.parse_bracket()?))
                }
                b'\\' => {
                    self.pos += 1;
                    match self.bump() {
                        Some(e) if b".[\\()*+?{|^$".contains(&e) => Node::Literal(e),
                        _ => return Err(EreError::Invalid),
                    }
                }
                _ => {
                    self.pos += 1;
                    Node::Literal(c)
                }
            };
            items.push(self.parse_quantifiers(atom, depth)?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Node::Concat(Vec::new()))
        } else {
            Node::Concat(items)
        })
    }

    fn parse_quantifiers(&mut self, mut atom: Node, depth: usize) -> Result<Node, EreError> {
        let mut stacked = depth;
        loop {
            let kind = match self.peek() {
                Some(b'*') => RepeatKind::Star,
                Some(b'+') => RepeatKind::Plus,
                Some(b'?') => RepeatKind::Opt,
                Some(b'{') => RepeatKind::Interval,
                _ => return Ok(atom),
            };
            self.pos += 1;
            let (min, max) = match kind {
                RepeatKind::Star => (0, None),
                RepeatKind::Plus => (1, None),
                RepeatKind::Opt => (0, Some(1)),
                RepeatKind::Interval => self.parse_interval()?,
            };
            stacked += 1;
            if stacked > MAX_DEPTH {
                return Err(EreError::Invalid);
            }
            atom = Node::Repeat {
                node: Box::new(atom),
                kind,
                min,
                max,
            };
        }
    }

    /// Parses `n}`, `n,}` or `n,m}` (after the `{`).
    fn parse_interval(&mut self) -> Result<(u32, Option<u32>), EreError> {
        let min = self.parse_count()?.ok_or(EreError::Invalid)?;
        match self.bump() {
            Some(b'}') => Ok((min, Some(min))),
            Some(b',') => {
                let max = self.parse_count()?;
                if self.bump() != Some(b'}') {
                    return Err(EreError::Invalid);
                }
                match max {
                    Some(max) if max < min => Err(EreError::Invalid),
                    max => Ok((min, max)),
                }
            }
            _ => Err(EreError::Invalid),
        }
    }

    fn parse_count(&mut self) -> Result<Option<u32>, EreError> {
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            self.pos += 1;
            value = value.saturating_mul(10).saturating_add(u64::from(d - b'0'));
        }
        if self.pos == start {
            return Ok(None);
        }
        if value > STATE_LIMIT {
            return Err(EreError::TooBig);
        }
        u32::try_from(value).map(Some).map_err(|_| EreError::TooBig)
    }

    /// Parses a bracket expression after its `[`.
    fn parse_bracket(&mut self) -> Result<ByteSet, EreError> {
        let mut set = ByteSet::new();
        let negate = self.peek() == Some(b'^');
        if negate {
            self.pos += 1;
        }
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return Err(EreError::Invalid);
            };
            if c == b']' && !first {
                self.pos += 1;
                break;
            }
            first = false;
            let lo = match self.parse_bracket_element()? {
                BracketElement::Class(class) => {
                    // "[:alpha:]-" may only end the expression.
                    if self.peek() == Some(b'-') && self.peek_at(1) != Some(b']') {
                        return Err(EreError::Invalid);
                    }
                    set.union(&class);
                    continue;
                }
                BracketElement::Byte(b) | BracketElement::Collating(b) => b,
            };
            if self.peek() != Some(b'-') || matches!(self.peek_at(1), Some(b']') | None) {
                set.insert(lo);
                continue;
            }
            self.pos += 1;
            // A range must end with a plain character.
            let BracketElement::Byte(hi) = self.parse_bracket_element()? else {
                return Err(EreError::Invalid);
            };
            // libstdc++ compares `char`s, which are signed.
            let (lo, hi) = (lo as i8, hi as i8);
            if lo > hi {
                return Err(EreError::Invalid);
            }
            set.insert_where(|b| (lo..=hi).contains(&(b as i8)));
            // After a range, a dash may only end the expression.
            if self.peek() == Some(b'-') && self.peek_at(1) != Some(b']') {
                return Err(EreError::Invalid);
            }
        }
        if negate {
            set.negate();
        }
        Ok(set)
    }

    fn parse_bracket_element(&mut self) -> Result<BracketElement, EreError> {
        let c = self.bump().ok_or(EreError::Invalid)?;
        if c != b'[' {
            return Ok(BracketElement::Byte(c));
        }
        let kind = match self.peek() {
            Some(k @ (b':' | b'=' | b'.')) => k,
            _ => return Ok(BracketElement::Byte(b'[')),
        };
        // The name runs to the next `kind` character, which must be
        // followed by `]`.
        self.pos += 1;
        let start = self.pos;
        while self.peek().is_some_and(|b| b != kind) {
            self.pos += 1;
        }
        let name = self.input.get(start..self.pos).ok_or(EreError::Invalid)?;
        if self.bump() != Some(kind) || self.bump() != Some(b']') {
            return Err(EreError::Invalid);
        }
        match kind {
            b':' => {
                let class = class_predicate(name).ok_or(EreError::Invalid)?;
                let mut set = ByteSet::new();
                set.insert_where(class);
                Ok(BracketElement::Class(set))
            }
            b'.' => collating_element(name)
                .map(BracketElement::Collating)
                .ok_or(EreError::Invalid),
            _ => {
                // An equivalence class: the C locale's primary collation
                // key is the lower-cased character.
                let c = collating_element(name).ok_or(EreError::Invalid)?;
                let mut set = ByteSet::new();
                set.insert_where(|b| b.eq_ignore_ascii_case(&c));
                Ok(BracketElement::Class(set))
            }
        }
    }
}

/// One element of a bracket expression.
enum BracketElement {
    /// A plain character: may start or end a range.
    Byte(u8),
    /// `[.name.]`: may start a range but not end one.
    Collating(u8),
    /// `[:class:]` or `[=name=]`: never part of a range.
    Class(ByteSet),
}

/// The character class `[:name:]` (C locale; names are case-insensitive).
fn class_predicate(name: &[u8]) -> Option<fn(u8) -> bool> {
    let name = name.to_ascii_lowercase();
    Some(match name.as_slice() {
        b"alnum" => |b: u8| b.is_ascii_alphanumeric(),
        b"alpha" => |b: u8| b.is_ascii_alphabetic(),
        b"blank" => |b: u8| b == b' ' || b == b'\t',
        b"cntrl" => |b: u8| b.is_ascii_control(),
        b"digit" | b"d" => |b: u8| b.is_ascii_digit(),
        b"graph" => |b: u8| b.is_ascii_graphic(),
        b"lower" => |b: u8| b.is_ascii_lowercase(),
        b"print" => |b: u8| b.is_ascii_graphic() || b == b' ',
        b"punct" => |b: u8| b.is_ascii_punctuation(),
        b"space" | b"s" => |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c),
        b"upper" => |b: u8| b.is_ascii_uppercase(),
        b"xdigit" => |b: u8| b.is_ascii_hexdigit(),
        b"w" => |b: u8| b.is_ascii_alphanumeric() || b == b'_',
        _ => return None,
    })
}

/// The POSIX names of the 128 ASCII characters, indexed by character
/// (libstdc++'s collating-symbol table).
const COLLATING_NAMES: [&str; 128] = [
    "NUL",
    "SOH",
    "STX",
    "ETX",
    "EOT",
    "ENQ",
    "ACK",
    "alert",
    "backspace",
    "tab",
    "newline",
    "vertical-tab",
    "form-feed",
    "carriage-return",
    "SO",
    "SI",
    "DLE",
    "DC1",
    "DC2",
    "DC3",
    "DC4",
    "NAK",
    "SYN",
    "ETB",
    "CAN",
    "EM",
    "SUB",
    "ESC",
    "IS4",
    "IS3",
    "IS2",
    "IS1",
    "space",
    "exclamation-mark",
    "quotation-mark",
    "number-sign",
    "dollar-sign",
    "percent-sign",
    "ampersand",
    "apostrophe",
    "left-parenthesis",
    "right-parenthesis",
    "asterisk",
    "plus-sign",
    "comma",
    "hyphen",
    "period",
    "slash",
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "colon",
    "semicolon",
    "less-than-sign",
    "equals-sign",
    "greater-than-sign",
    "question-mark",
    "commercial-at",
    "A",
    "B",
    "C",
    "D",
    "E",
    "F",
    "G",
    "H",
    "I",
    "J",
    "K",
    "L",
    "M",
    "N",
    "O",
    "P",
    "Q",
    "R",
    "S",
    "T",
    "U",
    "V",
    "W",
    "X",
    "Y",
    "Z",
    "left-square-bracket",
    "backslash",
    "right-square-bracket",
    "circumflex",
    "underscore",
    "grave-accent",
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "h",
    "i",
    "j",
    "k",
    "l",
    "m",
    "n",
    "o",
    "p",
    "q",
    "r",
    "s",
    "t",
    "u",
    "v",
    "w",
    "x",
    "y",
    "z",
    "left-curly-bracket",
    "vertical-line",
    "right-curly-bracket",
    "tilde",
    "DEL",
];

/// The character a collating-symbol name denotes. As in libstdc++, only
/// the names of the POSIX portable character set are known, so `[.a.]` is
/// valid (`a` is the name of `a`) but `[.-.]` and `[.0.]` are not.
fn collating_element(name: &[u8]) -> Option<u8> {
    let index = COLLATING_NAMES.iter().position(|n| n.as_bytes() == name)?;
    u8::try_from(index).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_patterns_match_nix() {
        // Each rejected by Nix 2.8 with "invalid regular expression".
        for p in [
            "\\d",
            "\\n",
            "(a)\\1",
            "\\/",
            "\\",
            "a{",
            "{",
            "*a",
            "(",
            ")",
            "a{,2}",
            "a{2,1}",
            "a{1,2,3}",
            "a{ 1}",
            "[]",
            "[^]",
            "[a",
            "[[:foo:]]",
            "[z-a]",
            "[a-c-e]",
            "[[:digit:]-z]",
            "[[:alpha:]",
            "[[:alpha]]",
            "[[.ab.]]",
            "[[=ab=]]",
            "a|*b",
            "(*a)",
            "a|?",
            "^*a",
            "$*",
        ] {
            assert_eq!(parse(p.as_bytes()).err(), Some(EreError::Invalid), "{p:?}");
        }
        // The largest counts libstdc++ (Nix 2.8) accepts, found by bisection
        // with nix-instantiate; one more is "memory limit exceeded".
        for (p, max_ok) in [
            ("a{N}", 99993),
            ("(a){N}", 24997),
            ("(ab){N}", 19997),
            ("(a|b){N}", 12498),
            ("a{1,N}", 49997),
            ("[ab]{N}", 99993),
            ("x(a){N}", 24997),
            ("(a)(b){N}", 24996),
            ("a*{N}", 49996),
            ("(a{2}){N}", 14283),
        ] {
            let ok = p.replace('N', &max_ok.to_string());
            assert!(parse(ok.as_bytes()).is_ok(), "{ok}");
            let big = p.replace('N', &(max_ok + 1).to_string());
            assert_eq!(parse(big.as_bytes()).err(), Some(EreError::TooBig), "{big}");
        }
        for p in ["a{100000}", "(a{1000}){1000}", "a{99999999999999999999}"] {
            assert_eq!(parse(p.as_bytes()).err(), Some(EreError::TooBig), "{p:?}");
        }
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowing() {
        let deep = "(".repeat(10_000) + &")".repeat(10_000);
        assert_eq!(parse(deep.as_bytes()).err(), Some(EreError::Invalid));
        let stars = "a".to_owned() + &"*".repeat(10_000);
        assert_eq!(parse(stars.as_bytes()).err(), Some(EreError::Invalid));
    }
}
