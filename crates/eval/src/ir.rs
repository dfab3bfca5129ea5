//! The compiled form of Nix expressions.
//!
//! Design: the rnix syntax tree is compiled once (see `compile`) into this
//! tree. Variables are resolved at compile time: a [`Expr::Local`] is a
//! `(depth, index)` slot in the environment chain; only names under a `with`
//! that are not bound lexically stay dynamic ([`Expr::WithVar`]). Builtins are
//! compiled to constants. Sub-expressions that may become thunks (attribute
//! values, list elements, arguments, bindings) are `Brc<Expr>` (shared, counted without atomics on the thread that
//! compiled them: `value/brc.rs`) so a thunk can
//! hold them without copying. Positions are packed [`Pos`]es.

use crate::value::Brc;

use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::Value;

/// `repr(u8)`: the variant is a byte at offset 0, so every `match` on a node
/// (several per evaluated node: `eval`, `eval_ref`, `delay`) is a byte load
/// and a jump. Without it the tag lived in a niche of `Assert`'s string
/// (a 64-bit load, an xor, a sign test and a conditional move per match).
#[repr(u8)]
pub enum Expr {
    Const(Value),
    Local { depth: u32, idx: u32 },
    /// A name only a `with` can bind: the with frames at these depths are
    /// searched innermost first.
    WithVar { name: Symbol, withs: Box<[u32]>, pos: Pos },
    /// String interpolation / concatenation of parts (`"a${b}c"`).
    Interp { parts: Box<[Expr]>, pos: Pos },
    /// Path with interpolation: parts concatenated then made a path;
    /// `base` is the directory relative paths resolve against.
    PathInterp { parts: Box<[Expr]>, pos: Pos },
    List(Box<[Brc<Expr>]>),
    Attrs(Box<AttrsExpr>),
    Let(Box<LetExpr>),
    Lambda(Brc<Lambda>),
    Apply { func: Box<Expr>, args: Box<[Brc<Expr>]>, pos: Pos },
    Select { expr: Box<Expr>, path: Box<[AttrName]>, default: Option<Box<Expr>>, pos: Pos },
    HasAttr { expr: Box<Expr>, path: Box<[AttrName]> },
    If { cond: Box<Expr>, then: Box<Expr>, else_: Box<Expr>, pos: Pos },
    Assert { cond: Box<Expr>, body: Box<Expr>, text: Box<str>, pos: Pos },
    With { attrs: Brc<Expr>, body: Box<Expr> },
    BinOp { op: BinOp, lhs: Box<Expr>, rhs: Box<Expr>, pos: Pos },
    Not(Box<Expr>, Pos),
    Neg(Box<Expr>, Pos),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Concat,
    Update,
    Eq,
    NotEq,
    Less,
    LessEq,
    More,
    MoreEq,
    And,
    Or,
    Impl,
    PipeRight,
    PipeLeft,
}

pub enum AttrName {
    Static(Symbol),
    Dynamic(Expr),
}

/// How an attribute's value is computed.
pub struct AttrDef {
    pub name: Symbol,
    pub value: Brc<Expr>,
    /// `inherit x;` in a `rec`/`let`: evaluated in the enclosing frame.
    pub inherited: bool,
    pub pos: Pos,
}

pub struct DynAttr {
    pub name: Expr,
    pub value: Brc<Expr>,
    pub pos: Pos,
}

pub struct AttrsExpr {
    /// `rec { }`: a frame with one slot per static attribute (in order).
    pub rec: bool,
    /// Sorted by name, unique.
    pub attrs: Vec<AttrDef>,
    pub dynamic: Vec<DynAttr>,
    pub pos: Pos,
}

pub struct LetExpr {
    /// One slot per binding, in this order.
    pub binds: Vec<AttrDef>,
    pub body: Expr,
    /// Some binding refers to the frame itself; otherwise the bindings are
    /// compiled against the enclosing frame and the frame is immutable.
    pub rec: bool,
}

pub enum Param {
    Ident(Symbol),
    Pattern(Box<Pattern>),
}

pub struct Formal {
    pub name: Symbol,
    pub default: Option<Brc<Expr>>,
    pub pos: Pos,
}

pub struct Pattern {
    /// Sorted by name; slot i of the frame is formal i, then the `@` binding.
    pub formals: Vec<Formal>,
    pub ellipsis: bool,
    pub bind: Option<Symbol>,
    /// Some default refers to the frame itself (needs a recursive frame).
    pub rec: bool,
}

pub struct Lambda {
    pub name: Option<Symbol>,
    pub param: Param,
    pub body: Expr,
    pub pos: Pos,
}

impl Expr {
    /// Cheap and infallible to evaluate: no thunk needed.
    pub fn is_trivial(&self) -> bool {
        matches!(self, Expr::Const(_) | Expr::Local { .. })
    }
}

const _: () = assert!(std::mem::size_of::<Expr>() == 48);

impl Pattern {
    pub fn slots(&self) -> usize {
        self.formals.len() + usize::from(self.bind.is_some())
    }
}
