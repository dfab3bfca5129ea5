//! Bindings of attribute sets and `let`: collecting, merging and compiling.
//!
//! Design: bindings are first collected into a [`Binds`] tree, where
//! attribute paths (`a.b.c = 1;`) become nested sets and attribute-set
//! literals bound to the same name are merged (`a.x = 1; a = { y = 2; };`),
//! exactly as Nix's parser does; any other redefinition is an "already
//! defined" error. The tree is then compiled: static attributes sorted by
//! name (their index is their slot in a `rec`/`let` frame), dynamic ones
//! (`${e} = v;`) kept in source order for evaluation time.
//!
//! Invariant: `inherit x;` in a `rec` set or `let` resolves `x` outside the
//! frame being defined (skip one scope), as in Nix.
//!
//! A `let` whose bindings contain none of its own names (a scan of their
//! identifiers before compiling them) is compiled against the enclosing
//! frame and marked non-recursive: at run time its frame is then immutable
//! (no lock, no reference cycle, nothing to register). Each let is compiled
//! once; the scans are linear in the bindings' size per level of let
//! nesting.


use crate::value::Brc;

use rnix::SyntaxKind as K;
use rnix::ast;

use super::green::{GNode, is_attr};
use super::names::WordMap;
use super::{Compiler, Scope};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::ir::{AttrDef, AttrName, AttrsExpr, DynAttr, Expr, LetExpr};
use crate::source::Pos;
use crate::symbol::Symbol;

pub(crate) struct Binds<'g> {
    statics: Vec<StaticBind<'g>>,
    dynamics: Vec<DynBind<'g>>,
    /// Position of each static name in `statics`, so that building a set of
    /// n attributes is O(n), not O(n²). Valid until `statics` is sorted;
    /// built only once there are more than [`SMALL`] names.
    index: WordMap<Symbol, usize>,
}

/// Up to this many static names, a linear search beats hashing.
const SMALL: usize = 8;

struct StaticBind<'g> {
    name: Symbol,
    pos: Pos,
    bind: Bind<'g>,
}

struct DynBind<'g> {
    attr: GNode<'g>,
    pos: Pos,
    bind: Bind<'g>,
}

enum Bind<'g> {
    Value(GNode<'g>),
    Inherit,
    InheritFrom(GNode<'g>),
    /// Boxed: keeps a binding (and a set of thousands of them) small.
    Nested(Box<Binds<'g>>, bool),
}

/// The statically known name of an attribute, if any.
fn static_name(c: &mut Compiler<'_>, a: GNode<'_>) -> Option<Symbol> {
    match a.kind() {
        K::NODE_IDENT => Some(c.ident(a)),
        K::NODE_STRING => literal_str(a),
        _ => match a.expr(0)? {
            s if s.kind() == K::NODE_STRING => literal_str(s),
            _ => None,
        },
    }
}

fn literal_str(s: GNode<'_>) -> Option<Symbol> {
    if let Some(text) = Compiler::plain_string(s) {
        return Some(Symbol::new(text));
    }
    let s = <ast::Str as rowan::ast::AstNode>::cast(s.red())?;
    let mut out = String::new();
    for p in s.normalized_parts() {
        match p {
            ast::InterpolPart::Literal(t) => out.push_str(&t),
            ast::InterpolPart::Interpolation(_) => return None,
        }
    }
    Some(Symbol::new(&out))
}

impl<'g> Binds<'g> {
    fn new() -> Self {
        Binds { statics: Vec::new(), dynamics: Vec::new(), index: WordMap::default() }
    }
    fn find(&mut self, name: Symbol) -> Option<&mut StaticBind<'g>> {
        if self.statics.len() <= SMALL {
            return self.statics.iter_mut().find(|b| b.name == name);
        }
        let i = *self.index.get(&name)?;
        self.statics.get_mut(i)
    }
    fn push_static(&mut self, sb: StaticBind<'g>) {
        self.statics.push(sb);
        // Small sets are searched linearly; the index is built once they grow.
        match self.statics.len() {
            n if n <= SMALL => {}
            n if n == SMALL + 1 => {
                // Sized for all the entries (`statics` was reserved for them).
                self.index = WordMap::with_capacity_and_hasher(self.statics.capacity(), Default::default());
                self.index.extend(self.statics.iter().enumerate().map(|(i, b)| (b.name, i)));
            }
            n => {
                if let Some(b) = self.statics.last() {
                    self.index.insert(b.name, n - 1);
                }
            }
        }
    }
}

fn dup(name: Symbol, pos: Pos) -> EvalError {
    let at = match pos.resolve() {
        Some((src, l, c)) => format!(" at {}:{l}:{c}", src.name()),
        None => String::new(),
    };
    EvalError::at(ErrorKind::Other(format!("attribute '{name}' already defined{at}")), pos)
}

fn merge<'g>(into: &mut Binds<'g>, from: Binds<'g>) -> EvalResult<()> {
    for sb in from.statics {
        match into.find(sb.name) {
            None => into.push_static(sb),
            Some(existing) => match (&mut existing.bind, sb.bind) {
                (Bind::Nested(a, _), Bind::Nested(b, _)) => merge(a, *b)?,
                _ => return Err(dup(sb.name, sb.pos)),
            },
        }
    }
    into.dynamics.extend(from.dynamics);
    Ok(())
}

impl<'a> Compiler<'a> {
    pub(super) fn collect_binds<'g>(&mut self, node: GNode<'g>, is_let: bool) -> EvalResult<Binds<'g>> {
        let mut binds = Binds::new();
        binds.statics.reserve(node.nodes().count());
        for entry in node.nodes() {
            match entry.kind() {
                K::NODE_INHERIT => {
                    let inh = entry;
                    let from_node = inh.child(K::NODE_INHERIT_FROM);
                    let from = from_node.and_then(|f| f.expr(0));
                    if from_node.is_some() && from.is_none() {
                        return Err(self.missing(inh));
                    }
                    for a in inh.nodes().filter(|a| is_attr(a.kind())) {
                        let pos = self.pos(a);
                        let Some(name) = static_name(self, a) else {
                            return Err(self.err(a, "dynamic attributes not allowed in inherit"));
                        };
                        if binds.find(name).is_some() {
                            return Err(dup(name, pos));
                        }
                        let bind = match from {
                            Some(f) => Bind::InheritFrom(f),
                            None => Bind::Inherit,
                        };
                        binds.push_static(StaticBind { name, pos, bind });
                    }
                }
                K::NODE_ATTRPATH_VALUE => {
                    let av = entry;
                    let path = av.child(K::NODE_ATTRPATH).ok_or_else(|| self.missing(av))?;
                    let attrs: Vec<GNode<'g>> = path.nodes().filter(|a| is_attr(a.kind())).collect();
                    let value = av.expr(0).ok_or_else(|| self.missing(av))?;
                    self.add_bind(&mut binds, &attrs, value, is_let)?;
                }
                _ => {}
            }
        }
        Ok(binds)
    }

    fn value_bind<'g>(&mut self, value: GNode<'g>) -> EvalResult<Bind<'g>> {
        Ok(if value.kind() == K::NODE_ATTR_SET {
            let rec = value.token(K::TOKEN_REC).is_some();
            Bind::Nested(Box::new(self.collect_binds(value, false)?), rec)
        } else {
            Bind::Value(value)
        })
    }

    fn add_bind<'g>(&mut self, binds: &mut Binds<'g>, path: &[GNode<'g>], value: GNode<'g>, is_let: bool) -> EvalResult<()> {
        let Some((&first, rest)) = path.split_first() else {
            return Err(self.missing(value));
        };
        let pos = self.pos(first);
        let name = static_name(self, first);
        if name.is_none() && is_let {
            return Err(self.err(first, "dynamic attributes not allowed in let"));
        }
        let bind = if rest.is_empty() {
            self.value_bind(value)?
        } else {
            let mut inner = Binds::new();
            if let Some(n) = name
                && let Some(existing) = binds.find(n)
            {
                return match &mut existing.bind {
                    Bind::Nested(b, _) => {
                        let mut b = std::mem::replace(&mut **b, Binds::new());
                        let r = self.add_bind(&mut b, rest, value, false);
                        if let Some(StaticBind { bind: Bind::Nested(slot, _), .. }) = binds.find(n) {
                            **slot = b;
                        }
                        r
                    }
                    _ => Err(dup(n, pos)),
                };
            }
            self.add_bind(&mut inner, rest, value, false)?;
            Bind::Nested(Box::new(inner), false)
        };
        match name {
            Some(n) => match binds.find(n) {
                None => binds.push_static(StaticBind { name: n, pos, bind }),
                Some(existing) => match (&mut existing.bind, bind) {
                    (Bind::Nested(a, _), Bind::Nested(b, _)) => merge(a, *b)?,
                    _ => return Err(dup(n, pos)),
                },
            },
            None => binds.dynamics.push(DynBind { attr: first, pos, bind }),
        }
        Ok(())
    }

    /// Compile one binding. Bindings are borrowed (mutably: nested sets are
    /// sorted in place), so that a `let` can be compiled twice without a copy.
    fn compile_bind(&mut self, name: Symbol, bind: &mut Bind<'_>, in_rec: bool, pos: Pos) -> EvalResult<Expr> {
        Ok(match bind {
            Bind::Value(l) if l.kind() == K::NODE_LAMBDA => Expr::Lambda(Brc::new(self.lambda(*l, Some(name))?)),
            Bind::Value(e) => self.expr(*e)?,
            Bind::Inherit => self.resolve(name, usize::from(in_rec), pos)?,
            Bind::InheritFrom(from) => {
                let e = self.expr(*from)?;
                Expr::Select { expr: Box::new(e), path: vec![AttrName::Static(name)].into_boxed_slice(), default: None, pos }
            }
            Bind::Nested(b, rec) => self.compile_binds(b, *rec, pos)?,
        })
    }

    pub(super) fn compile_binds(&mut self, binds: &mut Binds<'_>, rec: bool, pos: Pos) -> EvalResult<Expr> {
        binds.statics.sort_by_key(|b| b.name);
        if rec {
            let m: WordMap<Symbol, u32> = binds.statics.iter().enumerate().map(|(i, b)| (b.name, i as u32)).collect();
            self.scopes.push(Scope::Static(m, Default::default()));
        }
        let r = (|| {
            let mut attrs = Vec::with_capacity(binds.statics.len());
            for sb in binds.statics.iter_mut() {
                let inherited = matches!(sb.bind, Bind::Inherit);
                let value = Brc::new(self.compile_bind(sb.name, &mut sb.bind, rec, sb.pos)?);
                attrs.push(AttrDef { name: sb.name, value, inherited, pos: sb.pos });
            }
            let mut dynamic = Vec::with_capacity(binds.dynamics.len());
            for db in binds.dynamics.iter_mut() {
                let name = match self.attr_name(db.attr)? {
                    AttrName::Dynamic(e) => e,
                    AttrName::Static(s) => Expr::Const(crate::value::Value::string(s.as_str())),
                };
                let value = Brc::new(self.compile_bind(Symbol::new("<dynamic>"), &mut db.bind, rec, db.pos)?);
                dynamic.push(DynAttr { name, value, pos: db.pos });
            }
            Ok(Expr::Attrs(Box::new(AttrsExpr { rec, attrs, dynamic, pos })))
        })();
        if rec {
            self.scopes.pop();
        }
        r
    }

    pub(super) fn compile_let(&mut self, mut binds: Binds<'_>, body: Option<GNode<'_>>, node: GNode<'_>) -> EvalResult<Expr> {
        if let Some(d) = binds.dynamics.first() {
            return Err(EvalError::at(ErrorKind::Other("dynamic attributes not allowed in let".into()), d.pos));
        }
        binds.statics.sort_by_key(|b| b.name);
        let mut m: WordMap<Symbol, u32> = binds.statics.iter().enumerate().map(|(i, b)| (b.name, i as u32)).collect();
        // The frame is recursive only if a binding may refer to it: some
        // identifier in the bindings is one of the let's names (a syntactic
        // over-approximation: shadowed names and some attribute names count).
        // Otherwise the bindings are compiled against the enclosing frame
        // and the frame is fixed (no lock, no reference cycle, nothing to
        // register). Each let is compiled once (nested lets decide for
        // themselves), and scanning is linear in the bindings' size per
        // level of let nesting.
        let rec = binds.statics.iter().any(|b| self.bind_mentions(&b.bind, &m));
        let defs = if rec {
            self.scopes.push(Scope::Static(m, Default::default()));
            let defs = self.compile_defs(&mut binds, true);
            match self.scopes.pop() {
                Some(Scope::Static(m2, _)) => m = m2,
                _ => return Err(EvalError::other("internal error: let scope lost")),
            }
            defs?
        } else {
            self.compile_defs(&mut binds, false)?
        };
        self.scopes.push(Scope::Static(m, Default::default()));
        let body = self.sub(body, node);
        self.scopes.pop();
        Ok(Expr::Let(Box::new(LetExpr { binds: defs, body: body?, rec })))
    }

    /// Whether the binding's expressions contain an identifier that is one
    /// of `names` (`inherit x;` refers outside the frame: not counted).
    fn bind_mentions(&mut self, bind: &Bind<'_>, names: &WordMap<Symbol, u32>) -> bool {
        match bind {
            Bind::Inherit => false,
            Bind::Value(n) | Bind::InheritFrom(n) => self.node_mentions(*n, names),
            Bind::Nested(b, _) => {
                b.statics.iter().any(|s| self.bind_mentions(&s.bind, names))
                    || b.dynamics.iter().any(|d| self.node_mentions(d.attr, names) || self.bind_mentions(&d.bind, names))
            }
        }
    }

    /// Whether the subtree of `n` contains an identifier that is one of
    /// `names` (an explicit stack: no recursion on deep input).
    fn node_mentions(&mut self, n: GNode<'_>, names: &WordMap<Symbol, u32>) -> bool {
        let mut stack = vec![n];
        while let Some(n) = stack.pop() {
            if n.kind() == K::NODE_IDENT {
                if names.contains_key(&self.ident(n)) {
                    return true;
                }
                continue;
            }
            stack.extend(n.nodes());
        }
        false
    }

    fn compile_defs(&mut self, binds: &mut Binds<'_>, in_rec: bool) -> EvalResult<Vec<AttrDef>> {
        let mut defs = Vec::with_capacity(binds.statics.len());
        for sb in binds.statics.iter_mut() {
            let inherited = matches!(sb.bind, Bind::Inherit);
            let value = Brc::new(self.compile_bind(sb.name, &mut sb.bind, in_rec, sb.pos)?);
            defs.push(AttrDef { name: sb.name, value, inherited, pos: sb.pos });
        }
        Ok(defs)
    }
}
