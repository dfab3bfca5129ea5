//! Compiling rnix syntax trees into the IR of [`crate::ir`].
//!
//! Design: one pass over the rnix AST with a stack of compile-time scopes
//! mirroring the runtime frames (one scope per `let`/`rec`/lambda/`with`).
//! A variable is resolved innermost-out among the lexical scopes, then among
//! the builtins (which are compiled to constants), and only then, if some
//! `with` encloses it, left as a dynamic [`Expr::WithVar`]; otherwise it is a
//! compile-time "undefined variable" error, as in Nix. Attribute paths in
//! bindings (`a.b.c = 1;`) are merged at compile time (see [`binds`]).
//! Path literals are made absolute here against the file's directory.
//!
//! Invariant: the compiler never panics on input; every malformed tree
//! becomes a positioned `EvalError`. rnix bounds the nesting depth while
//! parsing, which bounds the recursion here.

mod binds;

use std::collections::HashMap;
use std::sync::Arc;

use rnix::ast::{self, AstToken, HasEntry};
use rowan::ast::AstNode;

use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::ir::{AttrName, BinOp, Expr, Formal, Lambda, Param, Pattern};
use crate::source::{Origin, Pos, Source, SourceId};
use crate::symbol::Symbol;
use crate::value::{AttrsBuilder, Value};

/// What a compilation needs from its surroundings.
pub struct CompileEnv<'a> {
    /// The names visible in every file (builtins, `true`, `import`, ...).
    pub base: &'a HashMap<Symbol, Value>,
    /// Directory that relative path literals resolve against.
    pub dir: String,
    /// `$HOME`, for `~/` paths.
    pub home: Option<String>,
    /// Names of an extra outermost frame (`scopedImport`'s attributes).
    pub extra_scope: Option<Vec<Symbol>>,
    pub lints: Lints,
}

/// Literal lints that are fatal (`--lint-*-literals fatal`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Lints {
    pub absolute_path: bool,
    pub short_path: bool,
    pub url: bool,
}

enum Scope {
    /// Names of a frame, and whether any of them was referred to.
    Static(HashMap<Symbol, u32>, std::cell::Cell<bool>),
    With,
}

pub(crate) struct Compiler<'a> {
    env: &'a CompileEnv<'a>,
    src: SourceId,
    scopes: Vec<Scope>,
    /// Current expression nesting (bounded by [`MAX_NESTING`]).
    depth: usize,
    /// Inside a first, trial compilation of `let` bindings.
    probing: bool,
}

/// Parse and compile a source text.
/// Deepest nesting the compiler accepts; deeper input is an error rather
/// than a risk to the stack (the parser, compiler and IR drop recurse).
pub const MAX_NESTING: usize = 10_000;

/// Bracket nesting depth of `text` (an upper bound for most inputs; cheap).
fn bracket_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

pub fn compile(text: Arc<str>, origin: Origin, env: &CompileEnv<'_>) -> EvalResult<Expr> {
    // Nix's lexer treats CR LF as a newline; rnix does not know CR.
    let text: Arc<str> = if text.contains('\r') { text.replace("\r\n", "\n").replace('\r', "\n").into() } else { text };
    let src = Source::register(origin, text.clone());
    if bracket_depth(&text) > MAX_NESTING / 4 {
        return Err(EvalError::at(ErrorKind::Parse("expression nested too deeply".into()), Pos::new(src, 0)));
    }
    // rnix parses recursively: give it (and the compiler) a large stack.
    stacker::maybe_grow(32 << 20, 64 << 20, || compile_parsed(&text, src, env))
}

fn compile_parsed(text: &str, src: SourceId, env: &CompileEnv<'_>) -> EvalResult<Expr> {
    let parse = rnix::Root::parse(text);
    if let Some(err) = parse.errors().first() {
        return Err(parse_error(err, src));
    }
    let root = parse.tree();
    let mut c = Compiler { env, src, scopes: Vec::new(), depth: 0, probing: false };
    if let Some(names) = &env.extra_scope {
        let m = names.iter().enumerate().map(|(i, s)| (*s, i as u32)).collect();
        c.scopes.push(Scope::Static(m, Default::default()));
    }
    match root.expr() {
        Some(e) => c.expr(&e),
        None => Err(EvalError::at(ErrorKind::Parse("unexpected end of file".into()), Pos::new(src, 0))),
    }
}

fn parse_error(err: &rnix::ParseError, src: SourceId) -> EvalError {
    use rnix::ParseError as P;
    let (msg, off) = match err {
        P::Unexpected(r) => ("unexpected token".to_string(), u32::from(r.start())),
        P::UnexpectedExtra(r) => ("unexpected token".to_string(), u32::from(r.start())),
        P::UnexpectedWanted(got, r, _) => (format!("unexpected {got:?}"), u32::from(r.start())),
        P::UnexpectedDoubleBind(r) => ("double @-binding".to_string(), u32::from(r.start())),
        P::UnexpectedEOF | P::UnexpectedEOFWanted(_) => {
            let len = Source::get(src).map_or(0, |s| s.text.len());
            ("unexpected end of file".to_string(), u32::try_from(len).unwrap_or(0))
        }
        P::DuplicatedArgs(r, name) => {
            return EvalError::at(
                ErrorKind::Other(format!("duplicate formal function argument '{name}'")),
                Pos::new(src, u32::from(r.start())),
            );
        }
        P::RecursionLimitExceeded => ("expression nested too deeply".to_string(), 0),
        _ => (err.to_string(), 0),
    };
    EvalError::at(ErrorKind::Parse(msg), Pos::new(src, off))
}

fn ident_name(id: &ast::Ident) -> Symbol {
    // The token's text as it is (no `SyntaxText` rendering into a new String).
    match id.ident_token() {
        Some(t) => Symbol::new(t.text()),
        None => Symbol::new(&id.syntax().text().to_string()),
    }
}

impl<'a> Compiler<'a> {
    fn pos(&self, node: &impl AstNode) -> Pos {
        Pos::new(self.src, u32::from(node.syntax().text_range().start()))
    }

    fn err(&self, node: &impl AstNode, msg: impl Into<String>) -> EvalError {
        EvalError::at(ErrorKind::Other(msg.into()), self.pos(node))
    }

    fn missing(&self, node: &impl AstNode) -> EvalError {
        EvalError::at(ErrorKind::Parse("unexpected end of expression".into()), self.pos(node))
    }

    /// Resolve a variable, skipping the `skip` innermost scopes.
    fn resolve(&self, name: Symbol, skip: usize, pos: Pos) -> EvalResult<Expr> {
        let mut withs = Vec::new();
        for (depth, scope) in self.scopes.iter().rev().enumerate().skip(skip) {
            match scope {
                Scope::Static(m, used) => {
                    if let Some(idx) = m.get(&name) {
                        used.set(true);
                        return Ok(Expr::Local { depth: depth as u32, idx: *idx });
                    }
                }
                Scope::With => withs.push(depth as u32),
            }
        }
        if let Some(v) = self.env.base.get(&name) {
            return Ok(Expr::Const(v.clone()));
        }
        if withs.is_empty() {
            return Err(EvalError::at(ErrorKind::UndefinedVar(name.to_string()), pos));
        }
        Ok(Expr::WithVar { name, withs: withs.into_boxed_slice(), pos })
    }

    fn sub(&mut self, e: Option<ast::Expr>, parent: &impl AstNode) -> EvalResult<Expr> {
        match e {
            Some(e) => self.expr(&e),
            None => Err(self.missing(parent)),
        }
    }

    fn sub_arc(&mut self, e: Option<ast::Expr>, parent: &impl AstNode) -> EvalResult<Arc<Expr>> {
        self.sub(e, parent).map(Arc::new)
    }

    pub(crate) fn expr(&mut self, e: &ast::Expr) -> EvalResult<Expr> {
        if self.depth >= MAX_NESTING {
            return Err(EvalError::at(ErrorKind::Parse("expression nested too deeply".into()), self.pos(e)));
        }
        self.depth += 1;
        let r = stacker::maybe_grow(128 * 1024, 4 << 20, || self.expr_inner(e));
        self.depth -= 1;
        r
    }

    fn expr_inner(&mut self, e: &ast::Expr) -> EvalResult<Expr> {
        let pos = self.pos(e);
        Ok(match e {
            ast::Expr::Paren(p) => return self.sub(p.expr(), p),
            ast::Expr::Root(r) => return self.sub(r.expr(), r),
            ast::Expr::Error(n) => return Err(EvalError::at(ErrorKind::Parse("unexpected token".into()), self.pos(n))),
            ast::Expr::Literal(l) => self.literal(l)?,
            ast::Expr::Ident(id) => self.resolve(ident_name(id), 0, pos)?,
            ast::Expr::Str(s) => self.string(s)?,
            ast::Expr::PathAbs(p) => self.path(p.parts(), pos, PathKind::Abs)?,
            ast::Expr::PathRel(p) => self.path(p.parts(), pos, PathKind::Rel)?,
            ast::Expr::PathHome(p) => self.path(p.parts(), pos, PathKind::Home)?,
            ast::Expr::PathSearch(p) => {
                let text = p.content().map(|c| c.text().to_string()).unwrap_or_default();
                let name = text.trim_start_matches('<').trim_end_matches('>').to_string();
                let find = self.resolve(Symbol::new("__findFile"), 0, pos)?;
                let path = self.resolve(Symbol::new("__nixPath"), 0, pos)?;
                Expr::Apply {
                    func: Box::new(find),
                    args: vec![Arc::new(path), Arc::new(Expr::Const(Value::string(name)))].into_boxed_slice(),
                    pos,
                }
            }
            ast::Expr::CurPos(_) => {
                let mut b = AttrsBuilder::new();
                if let Some((src, line, col)) = pos.resolve() {
                    let file = match &src.origin {
                        Origin::File(p) => Value::string(p.clone()),
                        _ => Value::Null,
                    };
                    b.insert(Symbol::new("file"), file);
                    b.insert(Symbol::new("line"), Value::Int(line as i64));
                    b.insert(Symbol::new("column"), Value::Int(col as i64));
                }
                Expr::Const(Value::Attrs(b.finish()))
            }
            ast::Expr::List(l) => {
                let items: EvalResult<Vec<_>> = l.items().map(|i| self.expr(&i).map(Arc::new)).collect();
                Expr::List(items?.into_boxed_slice())
            }
            ast::Expr::AttrSet(a) => self.attr_set(a)?,
            ast::Expr::LetIn(l) => self.let_in(l)?,
            ast::Expr::LegacyLet(l) => self.legacy_let(l)?,
            ast::Expr::Lambda(l) => Expr::Lambda(Arc::new(self.lambda(l, None)?)),
            ast::Expr::Apply(a) => {
                let mut args = Vec::new();
                let mut cur = ast::Expr::Apply(a.clone());
                while let ast::Expr::Apply(ap) = &cur {
                    args.push(self.sub_arc(ap.argument(), ap)?);
                    let f = ap.lambda().ok_or_else(|| self.missing(ap))?;
                    cur = f;
                }
                args.reverse();
                let func = self.expr(&cur)?;
                Expr::Apply { func: Box::new(func), args: args.into_boxed_slice(), pos }
            }
            ast::Expr::Select(s) => {
                let expr = self.sub(s.expr(), s)?;
                let path = self.attrpath(s.attrpath(), s)?;
                let default = match s.default_expr() {
                    Some(d) => Some(Box::new(self.expr(&d)?)),
                    None => None,
                };
                Expr::Select { expr: Box::new(expr), path, default, pos }
            }
            ast::Expr::HasAttr(h) => {
                let expr = self.sub(h.expr(), h)?;
                let path = self.attrpath(h.attrpath(), h)?;
                Expr::HasAttr { expr: Box::new(expr), path }
            }
            ast::Expr::IfElse(i) => Expr::If {
                cond: Box::new(self.sub(i.condition(), i)?),
                then: Box::new(self.sub(i.body(), i)?),
                else_: Box::new(self.sub(i.else_body(), i)?),
                pos: i.condition().map(|c| self.pos(&c)).unwrap_or(pos),
            },
            ast::Expr::Assert(a) => {
                let text = a.condition().map(|c| c.syntax().text().to_string()).unwrap_or_default();
                Expr::Assert {
                    cond: Box::new(self.sub(a.condition(), a)?),
                    body: Box::new(self.sub(a.body(), a)?),
                    text,
                    pos,
                }
            }
            ast::Expr::With(w) => {
                let attrs = self.sub_arc(w.namespace(), w)?;
                self.scopes.push(Scope::With);
                let body = self.sub(w.body(), w);
                self.scopes.pop();
                Expr::With { attrs, body: Box::new(body?) }
            }
            ast::Expr::UnaryOp(u) => {
                let inner = self.sub(u.expr(), u)?;
                match u.operator() {
                    Some(ast::UnaryOpKind::Invert) => Expr::Not(Box::new(inner), pos),
                    Some(ast::UnaryOpKind::Negate) => Expr::Neg(Box::new(inner), pos),
                    None => return Err(self.missing(u)),
                }
            }
            ast::Expr::BinOp(b) => {
                let op = match b.operator() {
                    Some(k) => binop(k),
                    None => return Err(self.missing(b)),
                };
                let lhs = self.sub(b.lhs(), b)?;
                let rhs = self.sub(b.rhs(), b)?;
                Expr::BinOp { op, lhs: Box::new(lhs), rhs: Box::new(rhs), pos }
            }
        })
    }

    fn literal(&self, l: &ast::Literal) -> EvalResult<Expr> {
        let v = match l.kind() {
            ast::LiteralKind::Integer(i) => match i.value() {
                Ok(v) => Value::Int(v),
                Err(_) => return Err(self.err(l, format!("invalid integer '{}'", i.syntax().text()))),
            },
            ast::LiteralKind::Float(f) => match f.value() {
                Ok(v) => Value::Float(v),
                Err(_) => return Err(self.err(l, format!("invalid float '{}'", f.syntax().text()))),
            },
            ast::LiteralKind::Uri(u) => {
                let text = u.syntax().text().to_string();
                if self.env.lints.url {
                    return Err(self.err(
                        l,
                        format!("URL literals are disallowed. Consider using a string literal \"{text}\" instead (lint-url-literals)"),
                    ));
                }
                Value::string(text)
            }
        };
        Ok(Expr::Const(v))
    }

    fn string(&mut self, s: &ast::Str) -> EvalResult<Expr> {
        let pos = self.pos(s);
        let mut parts = Vec::new();
        for p in s.normalized_parts() {
            match p {
                ast::InterpolPart::Literal(text) => {
                    if text.contains('\0') {
                        return Err(EvalError::at(
                            ErrorKind::Parse("input string contains a NUL byte".into()),
                            pos,
                        ));
                    }
                    if !text.is_empty() {
                        parts.push(Expr::Const(Value::string(text)));
                    }
                }
                ast::InterpolPart::Interpolation(i) => parts.push(self.sub(i.expr(), &i)?),
            }
        }
        Ok(match parts.len() {
            0 => Expr::Const(Value::string("")),
            1 if matches!(parts[0], Expr::Const(Value::String(_))) => parts.pop().unwrap_or(Expr::Const(Value::Null)),
            _ => Expr::Interp { parts: parts.into_boxed_slice(), pos },
        })
    }

    fn path(&mut self, parts: Vec<ast::InterpolPart<ast::PathContent>>, pos: Pos, kind: PathKind) -> EvalResult<Expr> {
        let mut out = Vec::new();
        let mut first = true;
        for p in parts {
            match p {
                ast::InterpolPart::Literal(text) => {
                    let mut t = text.text().to_string();
                    if first {
                        self.lint_path(&kind, &t, pos)?;
                        t = match kind {
                            PathKind::Abs => t,
                            PathKind::Rel => format!("{}/{}", self.env.dir, t),
                            PathKind::Home => match &self.env.home {
                                Some(h) => format!("{}{}", h, t.trim_start_matches('~')),
                                None => {
                                    return Err(EvalError::at(
                                        ErrorKind::Other("the contents of HOME are needed for '~/' paths".into()),
                                        pos,
                                    ));
                                }
                            },
                        };
                    }
                    out.push(Expr::Const(Value::string(t)));
                }
                ast::InterpolPart::Interpolation(i) => {
                    if first {
                        return Err(EvalError::at(ErrorKind::Parse("path cannot start with interpolation".into()), pos));
                    }
                    out.push(self.sub(i.expr(), &i)?)
                }
            }
            first = false;
        }
        if out.len() == 1
            && let Some(Expr::Const(Value::String(s))) = out.first()
        {
            let canon = crate::support::path::canon_path(s.as_str())
                .map_err(|e| EvalError::at(ErrorKind::Other(e.to_string()), pos))?;
            return Ok(Expr::Const(Value::path(canon)));
        }
        Ok(Expr::PathInterp { parts: out.into_boxed_slice(), pos })
    }

    fn lint_path(&self, kind: &PathKind, t: &str, pos: Pos) -> EvalResult<()> {
        let lints = self.env.lints;
        let msg = match kind {
            PathKind::Abs if lints.absolute_path => format!(
                "absolute path literals are not portable. Consider replacing path literal '{t}' by a string, relative path, or parameter (lint-absolute-path-literals)"
            ),
            PathKind::Home if lints.absolute_path => format!(
                "home path literals are not portable. Consider replacing path literal '{t}' by a string, relative path, or parameter (lint-absolute-path-literals)"
            ),
            PathKind::Rel if lints.short_path && !t.starts_with("./") && !t.starts_with("../") => format!(
                "relative path literal '{t}' should be prefixed with '.' for clarity: './{t}' (lint-short-path-literals)"
            ),
            _ => return Ok(()),
        };
        Err(EvalError::at(ErrorKind::Other(msg), pos))
    }

    fn attr_name(&mut self, a: &ast::Attr) -> EvalResult<AttrName> {
        Ok(match a {
            ast::Attr::Ident(id) => AttrName::Static(ident_name(id)),
            ast::Attr::Str(s) => match self.string(s)? {
                Expr::Const(Value::String(s)) => AttrName::Static(Symbol::new(s.as_str())),
                e => AttrName::Dynamic(e),
            },
            ast::Attr::Dynamic(d) => match self.sub(d.expr(), d)? {
                Expr::Const(Value::String(s)) => AttrName::Static(Symbol::new(s.as_str())),
                e => AttrName::Dynamic(e),
            },
        })
    }

    fn attrpath(&mut self, p: Option<ast::Attrpath>, parent: &impl AstNode) -> EvalResult<Box<[AttrName]>> {
        let p = p.ok_or_else(|| self.missing(parent))?;
        let names: EvalResult<Vec<_>> = p.attrs().map(|a| self.attr_name(&a)).collect();
        Ok(names?.into_boxed_slice())
    }

    pub(crate) fn lambda(&mut self, l: &ast::Lambda, name: Option<Symbol>) -> EvalResult<Lambda> {
        let pos = self.pos(l);
        let param = l.param().ok_or_else(|| self.missing(l))?;
        match param {
            ast::Param::IdentParam(ip) => {
                let id = ip.ident().ok_or_else(|| self.missing(&ip))?;
                let sym = ident_name(&id);
                self.scopes.push(Scope::Static(HashMap::from([(sym, 0)]), Default::default()));
                let body = self.sub(l.body(), l);
                self.scopes.pop();
                Ok(Lambda { name, param: Param::Ident(sym), body: body?, pos })
            }
            ast::Param::Pattern(pat) => {
                let mut entries: Vec<(Symbol, Option<ast::Expr>, Pos)> = Vec::new();
                for e in pat.pat_entries() {
                    let id = e.ident().ok_or_else(|| self.missing(&e))?;
                    let sym = ident_name(&id);
                    if entries.iter().any(|(s, _, _)| *s == sym) {
                        return Err(self.err(&e, format!("duplicate formal function argument '{sym}'")));
                    }
                    entries.push((sym, e.default(), self.pos(&e)));
                }
                entries.sort_by_key(|e| e.0);
                let bind = match pat.pat_bind() {
                    Some(b) => {
                        let id = b.ident().ok_or_else(|| self.missing(&b))?;
                        let sym = ident_name(&id);
                        if entries.iter().any(|(s, _, _)| *s == sym) {
                            return Err(self.err(&b, format!("duplicate formal function argument '{sym}'")));
                        }
                        Some(sym)
                    }
                    None => None,
                };
                let mut m: HashMap<Symbol, u32> =
                    entries.iter().enumerate().map(|(i, (s, _, _))| (*s, i as u32)).collect();
                if let Some(b) = bind {
                    m.insert(b, entries.len() as u32);
                }
                self.scopes.push(Scope::Static(m, Default::default()));
                let r = (|| {
                    let mut formals = Vec::with_capacity(entries.len());
                    let mut rec = false;
                    for (sym, def, fpos) in &entries {
                        let default = match def {
                            Some(d) => {
                                rec = true;
                                Some(Arc::new(self.expr(d)?))
                            }
                            None => None,
                        };
                        formals.push(Formal { name: *sym, default, pos: *fpos });
                    }
                    let body = self.sub(l.body(), l)?;
                    Ok(Lambda {
                        name,
                        param: Param::Pattern(Box::new(Pattern {
                            formals,
                            ellipsis: pat.ellipsis_token().is_some(),
                            bind,
                            rec,
                        })),
                        body,
                        pos,
                    })
                })();
                self.scopes.pop();
                r
            }
        }
    }

    fn legacy_let(&mut self, l: &ast::LegacyLet) -> EvalResult<Expr> {
        // `let { a = 1; body = a; }` is `rec { ... }.body`.
        let pos = self.pos(l);
        let binds = self.collect_binds(l, false)?;
        let attrs = self.compile_binds(binds, true, pos)?;
        Ok(Expr::Select {
            expr: Box::new(attrs),
            path: vec![AttrName::Static(Symbol::new("body"))].into_boxed_slice(),
            default: None,
            pos,
        })
    }

    fn let_in(&mut self, l: &ast::LetIn) -> EvalResult<Expr> {
        let binds = self.collect_binds(l, true)?;
        self.compile_let(binds, l.body(), l)
    }

    fn attr_set(&mut self, a: &ast::AttrSet) -> EvalResult<Expr> {
        let pos = self.pos(a);
        let rec = a.rec_token().is_some();
        let binds = self.collect_binds(a, false)?;
        self.compile_binds(binds, rec, pos)
    }

    fn entries_of(node: &impl HasEntry) -> Vec<ast::Entry> {
        node.entries().collect()
    }
}

enum PathKind {
    Abs,
    Rel,
    Home,
}

fn binop(k: ast::BinOpKind) -> BinOp {
    use ast::BinOpKind as K;
    match k {
        K::Concat => BinOp::Concat,
        K::Update => BinOp::Update,
        K::Add => BinOp::Add,
        K::Sub => BinOp::Sub,
        K::Mul => BinOp::Mul,
        K::Div => BinOp::Div,
        K::And => BinOp::And,
        K::Equal => BinOp::Eq,
        K::Implication => BinOp::Impl,
        K::Less => BinOp::Less,
        K::LessOrEq => BinOp::LessEq,
        K::More => BinOp::More,
        K::MoreOrEq => BinOp::MoreEq,
        K::NotEqual => BinOp::NotEq,
        K::Or => BinOp::Or,
        K::PipeRight => BinOp::PipeRight,
        K::PipeLeft => BinOp::PipeLeft,
    }
}
