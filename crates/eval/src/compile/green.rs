//! A positioned view of rnix's *green* tree, walked by the compiler.
//!
//! Design: rowan's red tree (`SyntaxNode`) allocates a refcounted cursor for
//! every node visited and re-scans the children on every typed accessor. The
//! compiler instead walks the immutable green nodes directly: a [`GNode`] is
//! a borrowed green node plus its absolute offset in the source, and child
//! offsets are the parent's offset plus the text length of the preceding
//! siblings (the same arithmetic rowan does for red nodes), so positions stay
//! exact. Child selection mirrors rnix's typed accessors: the n-th child that
//! casts to a node type (`ast::Expr::can_cast`, ...), tokens by kind.
//!
//! Where rnix's own logic is worth keeping (indented-string stripping, path
//! parts, literal values), [`GNode::red`] builds a red root for just that
//! subtree; its offsets are relative to [`GNode::off`].
//!
//! Invariant: every method is total (missing children are `None`), and
//! offsets never exceed the source length (they are sums of lengths of the
//! tree's own text, which is the source).

use rnix::{NixLanguage, SyntaxKind};
use rowan::{GreenNodeData, GreenTokenData, Language, NodeOrToken};

/// A green node at an absolute source offset.
#[derive(Clone, Copy)]
pub(crate) struct GNode<'g> {
    pub(crate) green: &'g GreenNodeData,
    pub(crate) off: u32,
}

/// A green token (its offset is not needed by the compiler).
#[derive(Clone, Copy)]
pub(crate) struct GToken<'g> {
    pub(crate) green: &'g GreenTokenData,
}

pub(crate) fn kind_of(raw: rowan::SyntaxKind) -> SyntaxKind {
    NixLanguage::kind_from_raw(raw)
}

impl<'g> GToken<'g> {
    pub(crate) fn kind(self) -> SyntaxKind {
        kind_of(self.green.kind())
    }
    pub(crate) fn text(self) -> &'g str {
        self.green.text()
    }
}

impl<'g> GNode<'g> {
    pub(crate) fn new(green: &'g GreenNodeData, off: u32) -> Self {
        GNode { green, off }
    }

    pub(crate) fn kind(self) -> SyntaxKind {
        kind_of(self.green.kind())
    }

    pub(crate) fn len(self) -> u32 {
        u32::from(self.green.text_len())
    }

    /// Children (nodes and tokens) with their absolute offsets.
    pub(crate) fn elements(self) -> impl Iterator<Item = NodeOrToken<GNode<'g>, GToken<'g>>> {
        let mut off = self.off;
        self.green.children().map(move |c| {
            let at = off;
            match c {
                NodeOrToken::Node(n) => {
                    off += u32::from(n.text_len());
                    NodeOrToken::Node(GNode { green: n, off: at })
                }
                NodeOrToken::Token(t) => {
                    off += u32::from(t.text_len());
                    NodeOrToken::Token(GToken { green: t })
                }
            }
        })
    }

    /// Child nodes.
    pub(crate) fn nodes(self) -> impl Iterator<Item = GNode<'g>> {
        self.elements().filter_map(|e| e.into_node())
    }

    /// Child tokens.
    pub(crate) fn tokens(self) -> impl Iterator<Item = GToken<'g>> {
        self.elements().filter_map(|e| e.into_token())
    }

    /// Child nodes that rnix's `ast::Expr` accepts.
    pub(crate) fn exprs(self) -> impl Iterator<Item = GNode<'g>> {
        self.nodes().filter(|n| is_expr(n.kind()))
    }

    /// The `n`-th expression child (rnix's `nth::<Expr>`).
    pub(crate) fn expr(self, n: usize) -> Option<GNode<'g>> {
        self.exprs().nth(n)
    }

    /// The first child node of kind `k`.
    pub(crate) fn child(self, k: SyntaxKind) -> Option<GNode<'g>> {
        self.nodes().find(|n| n.kind() == k)
    }

    /// The first child token of kind `k`.
    pub(crate) fn token(self, k: SyntaxKind) -> Option<GToken<'g>> {
        self.tokens().find(|t| t.kind() == k)
    }

    /// A red tree of just this node (offsets relative to `self.off`).
    pub(crate) fn red(self) -> rnix::SyntaxNode {
        rnix::SyntaxNode::new_root(self.green.to_owned())
    }
}

/// Whether a node kind is an expression (rnix's `ast::Expr::can_cast`).
pub(crate) fn is_expr(k: SyntaxKind) -> bool {
    <rnix::ast::Expr as rowan::ast::AstNode>::can_cast(k)
}

/// Whether a node kind is an attribute name (rnix's `ast::Attr`).
pub(crate) fn is_attr(k: SyntaxKind) -> bool {
    <rnix::ast::Attr as rowan::ast::AstNode>::can_cast(k)
}
