//! Compiling rnix syntax trees into the IR of [`crate::ir`].
//!
//! Design: one pass over rnix's green tree (see [`green`]: no red cursors,
//! positions tracked as offsets while walking) with a stack of compile-time scopes
//! mirroring the runtime frames (one scope per `let`/`rec`/lambda/`with`).
//! A variable is resolved innermost-out among the lexical scopes, then among
//! the builtins (which are compiled to constants, as are selections like
//! `builtins.length` from them), and only then, if some
//! `with` encloses it, left as a dynamic [`Expr::WithVar`]; otherwise it is a
//! compile-time "undefined variable" error, as in Nix. Attribute paths in
//! bindings (`a.b.c = 1;`) are merged at compile time (see [`binds`]).
//! Path literals are made absolute here against the file's directory.
//!
//! Invariant: the compiler never panics on input; every malformed tree
//! becomes a positioned `EvalError`. rnix bounds the nesting depth while
//! parsing, which bounds the recursion here.

mod binds;
mod green;
pub(crate) mod names;

use std::collections::HashMap;
use std::sync::Arc;

use crate::value::Brc;

use rnix::SyntaxKind as K;
use rnix::ast;
use rowan::NodeOrToken;
use rowan::ast::AstNode;

use green::{GNode, is_attr};
use names::{Names, WordMap};

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
    Static(WordMap<Symbol, u32>, std::cell::Cell<bool>),
    With,
}

pub(crate) struct Compiler<'a> {
    env: &'a CompileEnv<'a>,
    src: SourceId,
    /// The source text (for the text of `assert` conditions).
    text: &'a str,
    /// Identifier tokens already interned.
    names: Names,
    scopes: Vec<Scope>,
    /// Current expression nesting (bounded by [`MAX_NESTING`]).
    depth: usize,
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
    let root = parse.syntax();
    let green = root.green();
    let root = GNode::new(green, 0);
    let mut c = Compiler { env, src, text, names: Names::default(), scopes: Vec::new(), depth: 0 };
    if let Some(names) = &env.extra_scope {
        let m = names.iter().enumerate().map(|(i, s)| (*s, i as u32)).collect();
        c.scopes.push(Scope::Static(m, Default::default()));
    }
    match root.expr(0) {
        Some(e) => c.expr(e),
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

impl<'a> Compiler<'a> {
    /// The name of an identifier node: its one token's text (`TOKEN_IDENT`,
    /// or `TOKEN_OR` for an identifier spelled `or`).
    fn ident(&mut self, id: GNode<'_>) -> Symbol {
        match id.tokens().next() {
            Some(t) => self.names.get(t.green),
            None => Symbol::new(""),
        }
    }

    fn pos(&self, node: GNode<'_>) -> Pos {
        Pos::new(self.src, node.off)
    }

    fn err(&self, node: GNode<'_>, msg: impl Into<String>) -> EvalError {
        EvalError::at(ErrorKind::Other(msg.into()), self.pos(node))
    }

    fn missing(&self, node: GNode<'_>) -> EvalError {
        EvalError::at(ErrorKind::Parse("unexpected end of expression".into()), self.pos(node))
    }

    /// The source text of a node.
    fn node_text(&self, node: GNode<'_>) -> &'a str {
        let start = node.off as usize;
        self.text.get(start..start + node.len() as usize).unwrap_or("")
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

    fn sub(&mut self, e: Option<GNode<'_>>, parent: GNode<'_>) -> EvalResult<Expr> {
        match e {
            Some(e) => self.expr(e),
            None => Err(self.missing(parent)),
        }
    }

    fn sub_arc(&mut self, e: Option<GNode<'_>>, parent: GNode<'_>) -> EvalResult<Brc<Expr>> {
        self.sub(e, parent).map(Brc::new)
    }

    /// The first two expression children of `node`.
    fn two(node: GNode<'_>) -> (Option<GNode<'_>>, Option<GNode<'_>>) {
        let mut it = node.exprs();
        let a = it.next();
        (a, it.next())
    }

    pub(crate) fn expr(&mut self, e: GNode<'_>) -> EvalResult<Expr> {
        if self.depth >= MAX_NESTING {
            return Err(EvalError::at(ErrorKind::Parse("expression nested too deeply".into()), self.pos(e)));
        }
        self.depth += 1;
        let r = stacker::maybe_grow(128 * 1024, 4 << 20, || self.expr_inner(e));
        self.depth -= 1;
        r
    }

    fn expr_inner(&mut self, e: GNode<'_>) -> EvalResult<Expr> {
        let pos = self.pos(e);
        Ok(match e.kind() {
            K::NODE_PAREN | K::NODE_ROOT => return self.sub(e.expr(0), e),
            K::NODE_LITERAL => self.literal(e)?,
            K::NODE_IDENT => {
                let name = self.ident(e);
                self.resolve(name, 0, pos)?
            }
            K::NODE_STRING => self.string(e)?,
            K::NODE_PATH_ABS => self.path(e, PathKind::Abs)?,
            K::NODE_PATH_REL => self.path(e, PathKind::Rel)?,
            K::NODE_PATH_HOME => self.path(e, PathKind::Home)?,
            K::NODE_PATH_SEARCH => {
                let text = e.tokens().next().map_or("", |t| t.text());
                let name = text.trim_start_matches('<').trim_end_matches('>').to_string();
                let find = self.resolve(Symbol::new("__findFile"), 0, pos)?;
                let path = self.resolve(Symbol::new("__nixPath"), 0, pos)?;
                Expr::Apply {
                    func: Box::new(find),
                    args: vec![Brc::new(path), Brc::new(Expr::Const(Value::string(name)))].into_boxed_slice(),
                    pos,
                }
            }
            K::NODE_CUR_POS => {
                let mut b = AttrsBuilder::new();
                if let Some((src, line, col)) = pos.resolve() {
                    b.insert(Symbol::new("file"), Value::string(src.pos_file()));
                    b.insert(Symbol::new("line"), Value::Int(line as i64));
                    b.insert(Symbol::new("column"), Value::Int(col as i64));
                }
                Expr::Const(Value::Attrs(b.finish()))
            }
            K::NODE_LIST => {
                let items: EvalResult<Vec<_>> = e.exprs().map(|i| self.expr(i).map(Brc::new)).collect();
                Expr::List(items?.into_boxed_slice())
            }
            K::NODE_ATTR_SET => self.attr_set(e)?,
            K::NODE_LET_IN => self.let_in(e)?,
            K::NODE_LEGACY_LET => self.legacy_let(e)?,
            K::NODE_LAMBDA => Expr::Lambda(Brc::new(self.lambda(e, None)?)),
            K::NODE_APPLY => {
                let mut args = Vec::new();
                let mut cur = e;
                while cur.kind() == K::NODE_APPLY {
                    let (f, a) = Self::two(cur);
                    args.push(self.sub_arc(a, cur)?);
                    cur = f.ok_or_else(|| self.missing(cur))?;
                }
                args.reverse();
                let func = self.expr(cur)?;
                Expr::Apply { func: Box::new(func), args: args.into_boxed_slice(), pos }
            }
            K::NODE_SELECT => {
                let (inner, default) = Self::two(e);
                let expr = self.sub(inner, e)?;
                let path = self.attrpath(e.child(K::NODE_ATTRPATH), e)?;
                let default = match default {
                    Some(d) => Some(Box::new(self.expr(d)?)),
                    None => None,
                };
                match constant_select(&expr, &path) {
                    Some(v) => Expr::Const(v),
                    None => Expr::Select { expr: Box::new(expr), path, default, pos },
                }
            }
            K::NODE_HAS_ATTR => {
                let expr = self.sub(e.expr(0), e)?;
                let path = self.attrpath(e.child(K::NODE_ATTRPATH), e)?;
                Expr::HasAttr { expr: Box::new(expr), path }
            }
            K::NODE_IF_ELSE => {
                let mut it = e.exprs();
                let (c, t, f) = (it.next(), it.next(), it.next());
                Expr::If {
                    cond: Box::new(self.sub(c, e)?),
                    then: Box::new(self.sub(t, e)?),
                    else_: Box::new(self.sub(f, e)?),
                    pos: c.map(|c| self.pos(c)).unwrap_or(pos),
                }
            }
            K::NODE_ASSERT => {
                let (c, b) = Self::two(e);
                let text = c.map(|c| self.node_text(c).to_string()).unwrap_or_default().into_boxed_str();
                Expr::Assert { cond: Box::new(self.sub(c, e)?), body: Box::new(self.sub(b, e)?), text, pos }
            }
            K::NODE_WITH => {
                let (ns, body) = Self::two(e);
                let attrs = self.sub_arc(ns, e)?;
                self.scopes.push(Scope::With);
                let body = self.sub(body, e);
                self.scopes.pop();
                Expr::With { attrs, body: Box::new(body?) }
            }
            K::NODE_UNARY_OP => {
                let inner = self.sub(e.expr(0), e)?;
                match e.tokens().find_map(|t| ast::UnaryOpKind::from_kind(t.kind())) {
                    Some(ast::UnaryOpKind::Invert) => Expr::Not(Box::new(inner), pos),
                    Some(ast::UnaryOpKind::Negate) => Expr::Neg(Box::new(inner), pos),
                    None => return Err(self.missing(e)),
                }
            }
            K::NODE_BIN_OP => {
                let op = match e.tokens().find_map(|t| ast::BinOpKind::from_kind(t.kind())) {
                    Some(k) => binop(k),
                    None => return Err(self.missing(e)),
                };
                let (l, r) = Self::two(e);
                let lhs = self.sub(l, e)?;
                let rhs = self.sub(r, e)?;
                Expr::BinOp { op, lhs: Box::new(lhs), rhs: Box::new(rhs), pos }
            }
            _ => return Err(EvalError::at(ErrorKind::Parse("unexpected token".into()), pos)),
        })
    }

    fn literal(&self, l: GNode<'_>) -> EvalResult<Expr> {
        let Some(tok) = l.tokens().next() else {
            return Err(self.missing(l));
        };
        let text = tok.text();
        let v = match tok.kind() {
            K::TOKEN_INTEGER => match text.parse() {
                Ok(v) => Value::Int(v),
                Err(_) => return Err(self.err(l, format!("invalid integer '{text}'"))),
            },
            K::TOKEN_FLOAT => match text.parse() {
                Ok(v) => Value::Float(v),
                Err(_) => return Err(self.err(l, format!("invalid float '{text}'"))),
            },
            _ => {
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

    /// A `"..."` string without interpolation or escapes: its text as it is.
    fn plain_string<'t>(s: GNode<'t>) -> Option<&'t str> {
        let mut content = "";
        for (i, el) in s.elements().enumerate() {
            let t = el.into_token()?;
            match t.kind() {
                K::TOKEN_STRING_START if i == 0 && t.text() == "\"" => {}
                K::TOKEN_STRING_END => {}
                K::TOKEN_STRING_CONTENT if i == 1 && !t.text().contains('\\') => content = t.text(),
                _ => return None,
            }
        }
        Some(content)
    }

    fn string(&mut self, s: GNode<'_>) -> EvalResult<Expr> {
        let pos = self.pos(s);
        let nul = || EvalError::at(ErrorKind::Parse("input string contains a NUL byte".into()), pos);
        if let Some(text) = Self::plain_string(s) {
            if text.contains('\0') {
                return Err(nul());
            }
            return Ok(Expr::Const(Value::string(text)));
        }
        // Escapes, interpolation and indented strings: rnix's normalisation
        // on a red tree of just this string.
        let Some(red) = ast::Str::cast(s.red()) else {
            return Err(self.missing(s));
        };
        let mut parts = Vec::new();
        for p in red.normalized_parts() {
            match p {
                ast::InterpolPart::Literal(text) => {
                    if text.contains('\0') {
                        return Err(nul());
                    }
                    if !text.is_empty() {
                        parts.push(Expr::Const(Value::string(text)));
                    }
                }
                ast::InterpolPart::Interpolation(i) => parts.push(self.interpolation(&i, s.off)?),
            }
        }
        Ok(match parts.len() {
            0 => Expr::Const(Value::string("")),
            1 if matches!(parts[0], Expr::Const(Value::String(_))) => parts.pop().unwrap_or(Expr::Const(Value::Null)),
            _ => Expr::Interp { parts: parts.into_boxed_slice(), pos },
        })
    }

    /// The expression of an interpolation found in a red tree rooted at `base`.
    fn interpolation(&mut self, i: &ast::Interpol, base: u32) -> EvalResult<Expr> {
        let off = base + u32::from(i.syntax().text_range().start());
        let green = i.syntax().green();
        self.interpol(GNode::new(green, off))
    }

    /// The expression inside a `NODE_INTERPOL`.
    fn interpol(&mut self, i: GNode<'_>) -> EvalResult<Expr> {
        self.sub(i.expr(0), i)
    }

    fn path(&mut self, p: GNode<'_>, kind: PathKind) -> EvalResult<Expr> {
        let pos = self.pos(p);
        let mut out = Vec::new();
        let mut first = true;
        for el in p.elements() {
            match el {
                NodeOrToken::Token(tok) => {
                    let mut t = tok.text().to_string();
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
                NodeOrToken::Node(i) => {
                    if first {
                        return Err(EvalError::at(ErrorKind::Parse("path cannot start with interpolation".into()), pos));
                    }
                    out.push(self.interpol(i)?)
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

    fn attr_name(&mut self, a: GNode<'_>) -> EvalResult<AttrName> {
        let e = match a.kind() {
            K::NODE_IDENT => return Ok(AttrName::Static(self.ident(a))),
            K::NODE_STRING => self.string(a)?,
            _ => self.sub(a.expr(0), a)?,
        };
        Ok(match e {
            Expr::Const(Value::String(s)) => AttrName::Static(Symbol::new(s.as_str())),
            e => AttrName::Dynamic(e),
        })
    }

    fn attrpath(&mut self, p: Option<GNode<'_>>, parent: GNode<'_>) -> EvalResult<Box<[AttrName]>> {
        let p = p.ok_or_else(|| self.missing(parent))?;
        let names: EvalResult<Vec<_>> = p.nodes().filter(|a| is_attr(a.kind())).map(|a| self.attr_name(a)).collect();
        Ok(names?.into_boxed_slice())
    }

    /// The identifier inside a parameter node (`x:`, a formal, `@x`).
    fn param_ident(&mut self, n: GNode<'_>) -> EvalResult<Symbol> {
        let id = n.child(K::NODE_IDENT).ok_or_else(|| self.missing(n))?;
        Ok(self.ident(id))
    }

    pub(crate) fn lambda(&mut self, l: GNode<'_>, name: Option<Symbol>) -> EvalResult<Lambda> {
        let pos = self.pos(l);
        let param = l.nodes().find(|n| matches!(n.kind(), K::NODE_IDENT_PARAM | K::NODE_PATTERN));
        let param = param.ok_or_else(|| self.missing(l))?;
        let body = l.expr(0);
        if param.kind() == K::NODE_IDENT_PARAM {
            let sym = self.param_ident(param)?;
            self.scopes.push(Scope::Static(WordMap::from_iter([(sym, 0)]), Default::default()));
            let body = self.sub(body, l);
            self.scopes.pop();
            return Ok(Lambda { name, param: Param::Ident(sym), body: body?, pos });
        }
        let pat = param;
        let mut entries: Vec<(Symbol, Option<GNode<'_>>, Pos)> = Vec::new();
        for e in pat.nodes().filter(|n| n.kind() == K::NODE_PAT_ENTRY) {
            let sym = self.param_ident(e)?;
            if entries.iter().any(|(s, _, _)| *s == sym) {
                return Err(self.err(e, format!("duplicate formal function argument '{sym}'")));
            }
            entries.push((sym, e.expr(1), self.pos(e)));
        }
        entries.sort_by_key(|e| e.0);
        let bind = match pat.child(K::NODE_PAT_BIND) {
            Some(b) => {
                let sym = self.param_ident(b)?;
                if entries.iter().any(|(s, _, _)| *s == sym) {
                    return Err(self.err(b, format!("duplicate formal function argument '{sym}'")));
                }
                Some(sym)
            }
            None => None,
        };
        let mut m: WordMap<Symbol, u32> = entries.iter().enumerate().map(|(i, (s, _, _))| (*s, i as u32)).collect();
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
                        Some(Brc::new(self.expr(*d)?))
                    }
                    None => None,
                };
                formals.push(Formal { name: *sym, default, pos: *fpos });
            }
            let body = self.sub(body, l)?;
            let ellipsis = pat.token(K::TOKEN_ELLIPSIS).is_some();
            Ok(Lambda {
                name,
                param: Param::Pattern(Box::new(Pattern { formals, ellipsis, bind, rec })),
                body,
                pos,
            })
        })();
        self.scopes.pop();
        r
    }

    fn legacy_let(&mut self, l: GNode<'_>) -> EvalResult<Expr> {
        // `let { a = 1; body = a; }` is `rec { ... }.body`.
        let pos = self.pos(l);
        let mut binds = self.collect_binds(l, false)?;
        let attrs = self.compile_binds(&mut binds, true, pos)?;
        Ok(Expr::Select {
            expr: Box::new(attrs),
            path: vec![AttrName::Static(Symbol::new("body"))].into_boxed_slice(),
            default: None,
            pos,
        })
    }

    fn let_in(&mut self, l: GNode<'_>) -> EvalResult<Expr> {
        let binds = self.collect_binds(l, true)?;
        self.compile_let(binds, l.expr(0), l)
    }

    fn attr_set(&mut self, a: GNode<'_>) -> EvalResult<Expr> {
        let pos = self.pos(a);
        let rec = a.token(K::TOKEN_REC).is_some();
        let mut binds = self.collect_binds(a, false)?;
        self.compile_binds(&mut binds, rec, pos)
    }
}

enum PathKind {
    Abs,
    Rel,
    Home,
}

/// `builtins.name` (a selection by static names from a constant set, which
/// only the builtins are) as the constant it selects, when every step is
/// there and the result is a value already (not a thunk): the builtins set
/// is immutable, so the selection would give that value every time; folded,
/// a call of `builtins.length` does not search the ~150 builtins per call.
/// Anything else (a missing name, a dynamic one, `or`) stays a selection, so
/// its errors and defaults are unchanged.
fn constant_select(expr: &Expr, path: &[AttrName]) -> Option<Value> {
    let Expr::Const(v) = expr else { return None };
    let mut v: &Value = v;
    for n in path {
        let (Value::Attrs(a), AttrName::Static(name)) = (v, n) else { return None };
        v = a.get(*name)?;
    }
    (!matches!(v, Value::Thunk(_))).then(|| v.clone())
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::eval::{EvalConfig, Evaluator};
    use crate::io::MemIO;
    use crate::ir::Expr;

    fn eval(ev: &Evaluator, src: &str) -> String {
        match ev.eval_str(src).and_then(|v| ev.force_deep(&v)) {
            Ok(v) => crate::print::print_value(ev, &v, true).unwrap(),
            Err(e) => format!("error: {e}"),
        }
    }

    /// `builtins.name` compiles to the builtin itself; shadowed, missing
    /// or defaulted selections stay selections and behave as in
    /// nix-instantiate 2.8.
    #[test]
    fn selections_from_the_builtins_are_folded() {
        let ev = Evaluator::new(EvalConfig::default(), Arc::new(MemIO::new()));
        assert!(matches!(ev.compile_str("builtins.length", "/").unwrap(), Expr::Const(_)));
        assert!(matches!(ev.compile_str("builtins.builtins.head", "/").unwrap(), Expr::Const(_)));
        assert!(matches!(ev.compile_str("builtins.nope or 5", "/").unwrap(), Expr::Select { .. }));
        assert!(matches!(ev.compile_str("x: x.length", "/").unwrap(), Expr::Lambda(_)));
        assert_eq!(eval(&ev, "with { builtins = 1; }; builtins.length [ 1 ]"), "1");
        assert_eq!(eval(&ev, "let builtins = { length = x: 7; }; in builtins.length [ ]"), "7");
        assert_eq!(eval(&ev, "builtins.builtins.length [ 1 2 ]"), "2");
        assert_eq!(eval(&ev, "builtins.nope or 5"), "5");
        assert_eq!(eval(&ev, "builtins.length.x or 4"), "4");
        assert!(eval(&ev, "builtins.nope").contains("attribute 'nope' missing"));
    }

    /// A let is recursive exactly when its bindings name it (syntactically),
    /// lets nested in a recursive let's bindings included; values as
    /// nix-instantiate 2.8 gives them.
    #[test]
    fn lets_are_recursive_only_when_their_bindings_name_them() {
        fn let_rec(e: &Expr) -> Option<(bool, &Expr)> {
            match e {
                Expr::Let(l) => Some((l.rec, &*l.binds.iter().find(|b| b.name.as_str() == "f")?.value)),
                _ => None,
            }
        }
        let ev = Evaluator::new(EvalConfig::default(), Arc::new(MemIO::new()));
        let src = "let a = 1; b = a; f = x: let y = x; in y; in f a";
        let e = ev.compile_str(src, "/").unwrap();
        let (outer, f) = let_rec(&e).unwrap();
        let Expr::Lambda(l) = f else { panic!("f is a lambda") };
        assert!(outer);
        assert!(matches!(&l.body, Expr::Let(inner) if !inner.rec));
        assert!(!let_rec(&ev.compile_str("let f = 1; g = 2; in f", "/").unwrap()).unwrap().0);
        assert!(let_rec(&ev.compile_str("let f = { g = f; }; in f", "/").unwrap()).unwrap().0);
        assert_eq!(eval(&ev, src), "1");
        assert_eq!(eval(&ev, "let x = 5; in let inherit x; y = x; in y"), "5");
        assert_eq!(eval(&ev, "let inherit (s) x; s = { x = 3; }; in x"), "3");
        assert_eq!(eval(&ev, "let a.b = 1; a.c = a.b; in a"), "{ b = 1; c = 1; }");
        assert_eq!(eval(&ev, "let f = x: let y = x; z = y; in z; in f 2"), "2");
    }
}
