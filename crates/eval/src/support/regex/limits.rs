//! The size of the NFA libstdc++ would build for an ERE, to reproduce its
//! "memory limit exceeded" (`error_space`) rejection exactly.
//!
//! Design: libstdc++ compiles each alternative as its terms plus a trailing
//! dummy state, each `|` as a join dummy plus an alternative node, a group
//! as its begin/end states around its disjunction, `*`/`+` as one loop
//! node, `?` as a loop node plus a dummy, and `{n,m}` by compiling the body
//! once (left unreachable) and then *copying* its reachable states n (+
//! m - n with a loop node each, or + 1 with a loop node for `{n,}`) times
//! between two dummies. Counting the same way gives the exact total, which
//! was checked against Nix 2.8 by bisecting the largest accepted counts of
//! several patterns (see the tests in `ere.rs`). Arithmetic saturates, so
//! absurd counts cannot overflow.

use super::ere::{Node, RepeatKind};

/// NFA states libstdc++ creates for a fragment: `reach` are the states
/// reachable from its start (what a copy of it costs), `waste` the states
/// created while compiling it but left unreachable (the originals that
/// `{n,m}` compiles once and then only copies).
#[derive(Clone, Copy)]
struct States {
    reach: u64,
    waste: u64,
}

impl States {
    fn total(self) -> u64 {
        self.reach.saturating_add(self.waste)
    }

    fn plus(self, other: States) -> States {
        States {
            reach: self.reach.saturating_add(other.reach),
            waste: self.waste.saturating_add(other.waste),
        }
    }

    fn more(self, n: u64) -> States {
        States {
            reach: self.reach.saturating_add(n),
            waste: self.waste,
        }
    }
}

/// States of one alternative (a concatenation): its terms and a trailing
/// dummy state.
fn branch_states(node: &Node) -> States {
    match node {
        Node::Concat(items) => items
            .iter()
            .map(states)
            .fold(States { reach: 0, waste: 0 }, States::plus)
            .more(1),
        other => states(other).more(1),
    }
}

/// States of a disjunction: each branch, plus a join dummy and an
/// alternative node per `|`.
fn disjunction_states(node: &Node) -> States {
    match node {
        Node::Alt(branches) => branches
            .iter()
            .map(branch_states)
            .fold(States { reach: 0, waste: 0 }, States::plus)
            .more(2 * (branches.len() as u64).saturating_sub(1)),
        other => branch_states(other),
    }
}

/// libstdc++'s state count for a term (see [`States`]).
fn states(node: &Node) -> States {
    match node {
        Node::Literal(_) | Node::Set(_) | Node::Start | Node::End => States { reach: 1, waste: 0 },
        Node::Group(_, inner) => disjunction_states(inner).more(2),
        Node::Concat(_) | Node::Alt(_) => disjunction_states(node),
        Node::Repeat {
            node,
            kind,
            min,
            max,
        } => {
            let x = states(node);
            match kind {
                RepeatKind::Star | RepeatKind::Plus => x.more(1),
                RepeatKind::Opt => x.more(2),
                RepeatKind::Interval => {
                    let min = u64::from(*min);
                    let copies = match max {
                        // A dummy, min copies, one more copy and a loop node.
                        None => min
                            .saturating_add(1)
                            .saturating_mul(x.reach)
                            .saturating_add(2),
                        // A dummy, min copies, (max - min) copies each with a
                        // repeat node, and an end dummy.
                        Some(max) => {
                            let optional = u64::from(*max).saturating_sub(min);
                            min.saturating_mul(x.reach)
                                .saturating_add(optional.saturating_mul(x.reach.saturating_add(1)))
                                .saturating_add(2)
                        }
                    };
                    States {
                        reach: copies,
                        waste: x.total(),
                    }
                }
            }
        }
    }
}

/// Total NFA states libstdc++ creates for a whole pattern: the branch(es),
/// group 0's begin and end, and the accepting state.
pub(super) fn pattern_states(ast: &Node) -> u64 {
    disjunction_states(ast).more(3).total()
}
