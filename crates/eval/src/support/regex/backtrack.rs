//! A backtracking matcher that reproduces libstdc++'s `std::regex` POSIX
//! depth-first executor, which is what gives C++ Nix 2.8 its exact
//! `match`/`split` results.
//!
//! Design: the ERE syntax tree is compiled into an NFA shaped like the one
//! libstdc++ builds (alternation nodes chained left-associatively, `*` as a
//! repeat node looping back, `+` as the atom followed by such a loop, `?`
//! and each optional copy of `{n,m}` as a repeat node whose "more" branch is
//! tried first, `{n}` as n copies), and explored depth first with the same
//! rules:
//! - an alternation explores both branches; the solution flag is cleared
//!   for the right branch and merged afterwards;
//! - a greedy repeat tries one more iteration first and only tries leaving
//!   the loop if no solution has been found yet — the "pruning" that makes
//!   `split "a?(ab)?" "ab"` find `a` rather than `ab`;
//! - a repeat may be re-entered at most twice at the same position, which
//!   gives libstdc++'s extra empty iteration (`match "(a*)*" "aa"` is
//!   `[""]`);
//! - on accepting, prefix-mode searches keep the first longest solution,
//!   exact-mode matches the first full-length one.
//!
//! Invariants: the recursion of the C++ executor is an explicit stack of
//! continuation frames here, so no input can overflow the native stack; and
//! every run has a step budget and a frame limit: when either is exceeded
//! the run reports [`OutOfBudget`] and the caller falls back to the
//! linear-time engine. That happens for patterns whose exhaustive POSIX
//! exploration is exponential (where libstdc++ itself hangs) and for very
//! long matches (hundreds of kilobytes, where libstdc++ overflows its
//! stack and Nix crashes); only there can results differ from Nix.

use super::ere::{ByteSet, Node, RepeatKind};

/// Steps one run may take before giving up.
pub(super) const STEP_BUDGET: u64 = 2_000_000;

/// Pending frames one run may hold (memory bound: about 48 bytes each).
pub(super) const MAX_FRAMES: usize = 1 << 18;

/// The run exceeded [`STEP_BUDGET`] or [`MAX_FRAMES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OutOfBudget;

const NONE: usize = usize::MAX;

#[derive(Clone)]
enum State {
    Byte(u8, usize),
    Set(Box<ByteSet>, usize),
    LineBegin(usize),
    LineEnd(usize),
    Begin(usize, usize),
    End(usize, usize),
    /// Explore `alt`, then `next`.
    Alt {
        alt: usize,
        next: usize,
    },
    /// Greedy repeat: `more` is one more iteration, `next` leaves.
    Repeat {
        more: usize,
        next: usize,
    },
    /// Epsilon.
    Dummy(usize),
    Accept,
}

/// An NFA fragment: entry state and the state whose exit is patched next.
#[derive(Clone, Copy)]
struct Frag {
    start: usize,
    end: usize,
}

/// A compiled NFA.
pub(super) struct Program {
    states: Vec<State>,
    start: usize,
    /// Capture slots including group 0.
    slots: usize,
}

impl Program {
    /// Compiles the syntax tree of an ERE with `groups` capture groups.
    pub(super) fn new(ast: &Node, groups: usize) -> Program {
        let mut p = Program {
            states: Vec::new(),
            start: 0,
            slots: groups + 1,
        };
        let begin = p.push(State::Begin(0, NONE));
        let body = p.build(ast);
        let end = p.push(State::End(0, NONE));
        let accept = p.push(State::Accept);
        p.link(
            Frag {
                start: begin,
                end: begin,
            },
            body,
        );
        p.link(body, Frag { start: end, end });
        p.link(
            Frag { start: end, end },
            Frag {
                start: accept,
                end: accept,
            },
        );
        p.start = begin;
        p
    }

    /// Number of NFA states.
    pub(super) fn len(&self) -> usize {
        self.states.len()
    }

    fn push(&mut self, s: State) -> usize {
        self.states.push(s);
        self.states.len() - 1
    }

    /// Points the exit of `a.end` at `b.start`; returns the joined fragment.
    fn link(&mut self, a: Frag, b: Frag) -> Frag {
        if let Some(state) = self.states.get_mut(a.end) {
            match state {
                State::Byte(_, n)
                | State::Set(_, n)
                | State::LineBegin(n)
                | State::LineEnd(n)
                | State::Begin(_, n)
                | State::End(_, n)
                | State::Dummy(n)
                | State::Alt { next: n, .. }
                | State::Repeat { next: n, .. } => *n = b.start,
                State::Accept => {}
            }
        }
        Frag {
            start: a.start,
            end: b.end,
        }
    }

    fn single(&mut self, s: State) -> Frag {
        let id = self.push(s);
        Frag { start: id, end: id }
    }

    fn build(&mut self, node: &Node) -> Frag {
        match node {
            Node::Literal(b) => self.single(State::Byte(*b, NONE)),
            Node::Set(set) => self.single(State::Set(set.clone(), NONE)),
            Node::Start => self.single(State::LineBegin(NONE)),
            Node::End => self.single(State::LineEnd(NONE)),
            Node::Group(index, inner) => {
                let begin = self.single(State::Begin(*index, NONE));
                let body = self.build(inner);
                let end = self.single(State::End(*index, NONE));
                let f = self.link(begin, body);
                self.link(f, end)
            }
            Node::Concat(items) => {
                let mut f = self.single(State::Dummy(NONE));
                for item in items {
                    let g = self.build(item);
                    f = self.link(f, g);
                }
                f
            }
            Node::Alt(branches) => {
                let mut iter = branches.iter();
                let mut acc = match iter.next() {
                    Some(first) => self.build(first),
                    None => self.single(State::Dummy(NONE)),
                };
                for branch in iter {
                    let right = self.build(branch);
                    let end = self.single(State::Dummy(NONE));
                    self.link(acc, end);
                    self.link(right, end);
                    let alt = self.push(State::Alt {
                        alt: acc.start,
                        next: right.start,
                    });
                    acc = Frag {
                        start: alt,
                        end: end.end,
                    };
                }
                acc
            }
            Node::Repeat {
                node,
                kind,
                min,
                max,
            } => self.build_repeat(node, *kind, *min, *max),
        }
    }

    /// A loop: repeat node whose "more" branch is `body`, which loops back.
    fn star(&mut self, body: Frag) -> Frag {
        let r = self.single(State::Repeat {
            more: body.start,
            next: NONE,
        });
        self.link(body, r);
        r
    }

    fn build_repeat(&mut self, node: &Node, kind: RepeatKind, min: u32, max: Option<u32>) -> Frag {
        match kind {
            RepeatKind::Star => {
                let body = self.build(node);
                self.star(body)
            }
            RepeatKind::Plus => {
                let body = self.build(node);
                let r = self.star(body);
                Frag {
                    start: body.start,
                    end: r.end,
                }
            }
            RepeatKind::Opt => {
                let body = self.build(node);
                let end = self.single(State::Dummy(NONE));
                let r = self.single(State::Repeat {
                    more: body.start,
                    next: end.start,
                });
                self.link(body, end);
                Frag {
                    start: r.start,
                    end: end.end,
                }
            }
            RepeatKind::Interval => {
                let mut f = self.single(State::Dummy(NONE));
                for _ in 0..min {
                    let copy = self.build(node);
                    f = self.link(f, copy);
                }
                match max {
                    None => {
                        let body = self.build(node);
                        let r = self.star(body);
                        self.link(f, r)
                    }
                    Some(max) => {
                        let end = self.single(State::Dummy(NONE));
                        for _ in min..max {
                            let copy = self.build(node);
                            let r = self.push(State::Repeat {
                                more: copy.start,
                                next: end.start,
                            });
                            f = self.link(
                                f,
                                Frag {
                                    start: r,
                                    end: copy.end,
                                },
                            );
                        }
                        self.link(f, end)
                    }
                }
            }
        }
    }
}

/// Whether a run must consume the whole input (`regex_match`) or may stop
/// anywhere (`regex_search` from one start position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Exact,
    Prefix,
}

/// libstdc++ match flags that matter for ERE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Flags {
    /// `match_prev_avail`: `^` cannot match at the start position.
    pub prev_avail: bool,
    /// `match_not_null`: empty matches are rejected.
    pub not_null: bool,
}

/// One capture slot: (start, end), `end` set once the group closed.
pub(super) type Slot = (Option<usize>, Option<usize>);

enum Frame {
    Explore(usize),
    SetPos(usize),
    RestoreSlot(usize, Slot),
    RestoreRep(usize, (usize, u8)),
    /// After an alternation's left branch: explore the right one.
    AltRight(usize),
    /// After an alternation's right branch: merge the left's solution flag.
    AltMerge(bool),
    /// After a repeat's "more" branch: leave the loop unless solved.
    RepeatExit(usize),
}

/// Runs the program from `start` on `hay`; returns the capture slots of
/// the solution (slot 0 is the whole match), `None` if there is none.
pub(super) fn run(
    prog: &Program,
    hay: &[u8],
    start: usize,
    mode: Mode,
    flags: Flags,
) -> Result<Option<Vec<Slot>>, OutOfBudget> {
    let mut slots: Vec<Slot> = vec![(None, None); prog.slots];
    let mut rep: Vec<(usize, u8)> = vec![(0, 0); prog.states.len()];
    let mut has_sol = false;
    let mut sol_end: Option<usize> = None;
    let mut result: Option<Vec<Slot>> = None;
    let mut pos = start;
    let mut stack = vec![Frame::Explore(prog.start)];
    let mut steps: u64 = 0;
    while let Some(frame) = stack.pop() {
        steps += 1;
        if steps > STEP_BUDGET || stack.len() > MAX_FRAMES {
            return Err(OutOfBudget);
        }
        let id = match frame {
            Frame::Explore(id) => id,
            Frame::SetPos(p) => {
                pos = p;
                continue;
            }
            Frame::RestoreSlot(g, s) => {
                if let Some(slot) = slots.get_mut(g) {
                    *slot = s;
                }
                continue;
            }
            Frame::RestoreRep(id, r) => {
                if let Some(c) = rep.get_mut(id) {
                    *c = r;
                }
                continue;
            }
            Frame::AltRight(next) => {
                stack.push(Frame::AltMerge(has_sol));
                has_sol = false;
                stack.push(Frame::Explore(next));
                continue;
            }
            Frame::AltMerge(left) => {
                has_sol |= left;
                continue;
            }
            Frame::RepeatExit(next) => {
                if !has_sol {
                    stack.push(Frame::Explore(next));
                }
                continue;
            }
        };
        let Some(state) = prog.states.get(id) else {
            continue;
        };
        match state {
            State::Byte(b, next) => {
                if hay.get(pos) == Some(b) {
                    stack.push(Frame::SetPos(pos));
                    pos += 1;
                    stack.push(Frame::Explore(*next));
                }
            }
            State::Set(set, next) => {
                if hay.get(pos).is_some_and(|&c| set.contains(c)) {
                    stack.push(Frame::SetPos(pos));
                    pos += 1;
                    stack.push(Frame::Explore(*next));
                }
            }
            State::LineBegin(next) => {
                if pos == start && !flags.prev_avail {
                    stack.push(Frame::Explore(*next));
                }
            }
            State::LineEnd(next) => {
                if pos == hay.len() {
                    stack.push(Frame::Explore(*next));
                }
            }
            State::Begin(g, next) => {
                if let Some(slot) = slots.get_mut(*g) {
                    stack.push(Frame::RestoreSlot(*g, *slot));
                    slot.0 = Some(pos);
                }
                stack.push(Frame::Explore(*next));
            }
            State::End(g, next) => {
                if let Some(slot) = slots.get_mut(*g) {
                    stack.push(Frame::RestoreSlot(*g, *slot));
                    slot.1 = Some(pos);
                }
                stack.push(Frame::Explore(*next));
            }
            State::Alt { alt, next } => {
                stack.push(Frame::AltRight(*next));
                stack.push(Frame::Explore(*alt));
            }
            State::Repeat { more, next } => {
                stack.push(Frame::RepeatExit(*next));
                let Some(count) = rep.get_mut(id) else {
                    continue;
                };
                if count.1 == 0 || count.0 != pos {
                    stack.push(Frame::RestoreRep(id, *count));
                    *count = (pos, 1);
                    stack.push(Frame::Explore(*more));
                } else if count.1 < 2 {
                    stack.push(Frame::RestoreRep(id, *count));
                    count.1 += 1;
                    stack.push(Frame::Explore(*more));
                }
            }
            State::Dummy(next) => stack.push(Frame::Explore(*next)),
            State::Accept => {
                has_sol = match mode {
                    Mode::Exact => pos == hay.len(),
                    Mode::Prefix => true,
                };
                if pos == start && flags.not_null {
                    has_sol = false;
                }
                if has_sol && sol_end.is_none_or(|e| e < pos) {
                    sol_end = Some(pos);
                    result = Some(slots.clone());
                }
            }
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::super::ere::parse;
    use super::*;

    fn groups(pattern: &str, hay: &str, mode: Mode) -> Option<Vec<Option<String>>> {
        let parsed = parse(pattern.as_bytes()).unwrap();
        let prog = Program::new(&parsed.ast, parsed.groups);
        let slots = run(&prog, hay.as_bytes(), 0, mode, Flags::default()).unwrap()?;
        Some(
            slots
                .iter()
                .map(|s| match s {
                    (Some(a), Some(b)) => Some(hay[*a..*b].to_owned()),
                    _ => None,
                })
                .collect(),
        )
    }

    fn s(v: &[Option<&str>]) -> Option<Vec<Option<String>>> {
        Some(v.iter().map(|x| x.map(str::to_owned)).collect())
    }

    #[test]
    fn libstdcxx_quirks() {
        // builtins.match "(a*)*" "aa" is [ "" ] in Nix 2.8.
        assert_eq!(
            groups("(a*)*", "aa", Mode::Exact),
            s(&[Some("aa"), Some("")])
        );
        // The first match of builtins.split "a?(ab)?" "ab" is "a".
        assert_eq!(groups("a?(ab)?", "ab", Mode::Prefix), s(&[Some("a"), None]));
        // Alternation keeps the longest: split "a|ab" finds "ab".
        assert_eq!(groups("a|ab", "abc", Mode::Prefix), s(&[Some("ab")]));
        assert_eq!(groups("x{2,3}", "xxxx", Mode::Prefix), s(&[Some("xxx")]));
        assert_eq!(groups("x{2,3}", "x", Mode::Prefix), None);
    }

    #[test]
    fn exponential_patterns_run_out_of_budget() {
        let parsed = parse(b"(a|a)*b").unwrap();
        let prog = Program::new(&parsed.ast, parsed.groups);
        let hay = "a".repeat(40);
        assert_eq!(
            run(&prog, hay.as_bytes(), 0, Mode::Prefix, Flags::default()),
            Err(OutOfBudget)
        );
    }
}
