//! Attribute-set builtins.
//!
//! Design: sets are sorted by name (`value/attrs.rs`), so the builtins that
//! combine sets (`removeAttrs`, `intersectAttrs`) walk sorted sequences
//! instead of searching one per element, and results are built already
//! sorted ([`Attrs::from_sorted`]) wherever the input order allows it.
//! Arguments are read in place ([`Evaluator::force_ref`]: no reference-count
//! round trip for a set or list that is only looked at), and attribute
//! names given to Nix code as strings (`attrNames`, `mapAttrs`,
//! `zipAttrsWith`) come from [`name_value`], a per-thread cache, rather than
//! a new string each time; names given to builtins as strings become
//! symbols through [`string_symbol`], a per-thread cache keyed by the
//! string node (string literals and `name_value`'s strings hit it).
//!
//! Invariant: strictness, evaluation order and error messages are those of
//! Nix 2.8 (elements are forced in list order; a missing `name`/`value` or a
//! non-set element fails at the first such element).

use std::cell::RefCell;

use super::lists::list_arg;
use super::{Arg, PrimOp, no_context};
use crate::compile::names::WordMap;
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::{Attr, Attrs, AttrsBuilder, Brc, NixString, Thunk, Value};

pub(super) const PRIMOPS: &[PrimOp] = &[
    PrimOp::new("attrNames", &[Arg::Attrs], attr_names),
    PrimOp::new("attrValues", &[Arg::Attrs], attr_values),
    PrimOp::new("getAttr", &[Arg::StrNoCtx, Arg::Attrs], get_attr),
    PrimOp::new("hasAttr", &[Arg::StrNoCtx, Arg::Attrs], has_attr),
    PrimOp::new("removeAttrs", &[Arg::Attrs, Arg::List], remove_attrs),
    PrimOp::new("listToAttrs", &[Arg::List], list_to_attrs),
    PrimOp::new("intersectAttrs", &[Arg::Attrs, Arg::Attrs], intersect_attrs),
    PrimOp::new("catAttrs", &[Arg::StrNoCtx, Arg::List], cat_attrs),
    PrimOp::new("mapAttrs", &[Arg::Lazy, Arg::Attrs], map_attrs),
    PrimOp::new("zipAttrsWith", &[Arg::Function, Arg::List], zip_attrs_with),
    PrimOp::new("unsafeGetAttrPos", &[Arg::StrNoCtx, Arg::Attrs], unsafe_get_attr_pos),
];

pub(super) fn attrs_arg(v: &Value) -> EvalResult<&Attrs> {
    match v {
        Value::Attrs(a) => Ok(a),
        v => Err(EvalError::type_error(v.type_desc(), "a set")),
    }
}

/// A string argument (without context, as Nix's `forceStringNoCtx`) as a
/// symbol, read in place.
fn name_arg(ev: &Evaluator, v: &Value) -> EvalResult<Symbol> {
    match &*ev.force_ref(v)? {
        Value::String(s) => {
            no_context(s)?;
            Ok(string_symbol(s))
        }
        v => Err(EvalError::type_error(v.type_desc(), "a string")),
    }
}

/// Slots of the per-thread cache of [`string_symbol`] (a power of two).
const SYMBOL_SLOTS: usize = 4096;

/// A cached string node (held, so its address cannot be reused by another
/// string while it is cached) and its symbol.
type SymbolSlot = Option<(Brc<NixString>, Symbol)>;

thread_local! {
    /// Direct mapped by the string node's address.
    static SYMBOLS: RefCell<Vec<SymbolSlot>> = const { RefCell::new(Vec::new()) };
}

/// A hash of a node's address for the per-thread caches (Fibonacci
/// hashing: the high bits of the product spread nearby addresses).
fn address_hash(addr: usize) -> usize {
    ((addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize
}

fn symbol_slot(s: &Brc<NixString>) -> usize {
    address_hash(Brc::as_ptr(s) as usize) & (SYMBOL_SLOTS - 1)
}

/// The symbol of the string `s`, remembered per string node: the names
/// builtins are given are mostly the same nodes again and again (string
/// literals of the code, such as `removeAttrs m [ "_file" "key" ... ]`,
/// and the names [`name_value`] hands out), so a hit is one pointer
/// compare instead of hashing and probing the symbol table.
pub(crate) fn string_symbol(s: &Brc<NixString>) -> Symbol {
    let slot = symbol_slot(s);
    let hit = SYMBOLS.try_with(|c| {
        let c = c.try_borrow().ok()?;
        match c.get(slot)? {
            Some((node, sym)) if Brc::ptr_eq(node, s) => Some(*sym),
            _ => None,
        }
    });
    if let Ok(Some(sym)) = hit {
        return sym;
    }
    let sym = Symbol::new(s.as_str());
    remember_symbol(s, sym);
    sym
}

fn remember_symbol(s: &Brc<NixString>, sym: Symbol) {
    let slot = symbol_slot(s);
    let _ = SYMBOLS.try_with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else { return };
        if c.is_empty() {
            c.resize(SYMBOL_SLOTS, None);
        }
        // The evicted node is dropped after the borrow ends (dropping a
        // string cannot reach this cache, but keep the borrow short).
        let old = c.get_mut(slot).map(|e| e.replace((s.clone(), sym)));
        drop(c);
        drop(old);
    });
}

/// Slots of the per-thread cache of [`name_value`] (a power of two), in
/// buckets of two.
const NAME_SLOTS: usize = 8192;

thread_local! {
    /// Two-way set associative: a symbol's bucket is a hash of its address;
    /// each slot holds the address (0: empty) and the string value made for
    /// it, the most recently made first.
    static NAMES: RefCell<Vec<(usize, Value)>> = const { RefCell::new(Vec::new()) };
}

/// `name` as a Nix string value. Made once per thread and name (as long as
/// it stays in the cache) and shared afterwards: the names of big sets are
/// handed out again and again (`attrNames`, `mapAttrs`, `zipAttrsWith`).
pub(crate) fn name_value(name: Symbol) -> Value {
    // A symbol's address identifies it: symbols are interned and never freed.
    let key = name.as_str().as_ptr() as usize;
    let slot = address_hash(key) & (NAME_SLOTS - 2);
    let cached = NAMES.try_with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        if c.is_empty() {
            c.resize(NAME_SLOTS, (0, Value::Null));
        }
        let bucket = c.get_mut(slot..slot + 2)?;
        if let Some(hit) = bucket.iter().find(|e| e.0 == key) {
            return Some(hit.1.clone());
        }
        let v = Value::string(name.as_str());
        if let Value::String(s) = &v {
            remember_symbol(s, name);
        }
        bucket.rotate_right(1);
        if let Some(first) = bucket.first_mut() {
            *first = (key, v.clone());
        }
        Some(v)
    });
    cached.ok().flatten().unwrap_or_else(|| Value::string(name.as_str()))
}

fn attr_names(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = attrs_arg(&a[0])?;
    Ok(Value::list(s.iter().map(|a| name_value(a.name)).collect()))
}

fn attr_values(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = attrs_arg(&a[0])?;
    Ok(Value::list(s.iter().map(|a| a.value.clone()).collect()))
}

fn get_attr(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let n = name_arg(ev, &a[0])?;
    match attrs_arg(&a[1])?.get(n) {
        Some(v) => ev.force(v),
        None => Err(EvalError::new(ErrorKind::MissingAttr(n.to_string()))),
    }
}

fn has_attr(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let n = name_arg(ev, &a[0])?;
    Ok(Value::Bool(attrs_arg(&a[1])?.get(n).is_some()))
}

fn remove_attrs(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = attrs_arg(&a[0])?;
    let names = list_arg(&a[1])?;
    let mut remove = Vec::with_capacity(names.len());
    for n in names.iter() {
        remove.push(name_arg(ev, n)?);
    }
    // Both sorted: one walk, not a search of the list per attribute.
    remove.sort_unstable();
    let mut kept = Vec::with_capacity(s.len());
    let mut r = remove.iter().peekable();
    for at in s.iter() {
        while r.next_if(|n| **n < at.name).is_some() {}
        if r.peek() != Some(&&at.name) {
            kept.push(at.clone());
        }
    }
    // Always a new set, even when nothing was removed: printing shows a set
    // met twice as «repeated», and Nix's removeAttrs makes a new one.
    Ok(Value::Attrs(Attrs::from_sorted(kept)))
}

fn list_to_attrs(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let l = list_arg(&a[0])?;
    let mut b = AttrsBuilder::with_capacity(l.len());
    let (name, value) = (sym!("name"), sym!("value"));
    for item in l.iter() {
        let (n, v) = with_attrs(ev, item, |s| (s.get(name).cloned(), s.get(value).cloned()))?;
        let missing = |a: &str| EvalError::other(format!("attribute '{a}' missing for call to 'listToAttrs'"));
        let n = n.ok_or_else(|| missing("name"))?;
        let n = name_arg(ev, &n)?;
        match v {
            Some(v) => b.insert(n, v),
            // Nix looks `value` up only for a name's first element (the
            // first wins), so a later one may lack it (a scan: rare).
            None if b.contains(n) => {}
            None => return Err(missing("value")),
        }
    }
    Ok(Value::Attrs(b.finish()))
}

fn intersect_attrs(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let x = attrs_arg(&a[0])?;
    let y = attrs_arg(&a[1])?;
    // The attributes of `y` whose names are in `x`, found from the smaller
    // side: searched when one side is much smaller, else one merge walk.
    let mut kept: Vec<Attr> = Vec::with_capacity(x.len().min(y.len()));
    if x.len() * 8 < y.len() {
        kept.extend(x.iter().filter_map(|at| y.get_attr(at.name)).cloned());
    } else if y.len() * 8 < x.len() {
        kept.extend(y.iter().filter(|at| x.get_attr(at.name).is_some()).cloned());
    } else {
        let mut xs = x.iter().peekable();
        for at in y.iter() {
            while xs.next_if(|b| b.name < at.name).is_some() {}
            if xs.peek().is_some_and(|b| b.name == at.name) {
                kept.push(at.clone());
            }
        }
    }
    Ok(Value::Attrs(Attrs::from_sorted(kept)))
}

fn cat_attrs(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let n = name_arg(ev, &a[0])?;
    let l = list_arg(&a[1])?;
    let mut out = Vec::with_capacity(l.len());
    for item in l.iter() {
        if let Some(v) = with_attrs(ev, item, |s| s.get(n).cloned())? {
            out.push(v);
        }
    }
    Ok(Value::list(out))
}

/// `f` of the set `v` forced in place (no reference-count round trip).
fn with_attrs<R>(ev: &Evaluator, v: &Value, f: impl FnOnce(&Attrs) -> R) -> EvalResult<R> {
    match &*ev.force_ref(v)? {
        Value::Attrs(s) => Ok(f(s)),
        v => Err(EvalError::type_error(v.type_desc(), "a set")),
    }
}

fn map_attrs(_: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let s = attrs_arg(&a[1])?;
    let f = &a[0];
    let out: Vec<Attr> = s
        .iter()
        // One thunk of `f name value` per attribute (Nix makes `f name` and
        // its application: nothing else holds `f name`, so forcing both in
        // one is the same evaluation).
        .map(|at| Attr {
            name: at.name,
            value: Thunk::apply2(f.clone(), name_value(at.name), at.value.clone()),
            pos: at.pos,
        })
        .collect();
    Ok(Value::Attrs(Attrs::from_sorted(out)))
}

fn zip_attrs_with(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let l = list_arg(&a[1])?;
    // Grouped by symbol (a pointer compare over the few groups of most
    // calls, a hash of the symbol's address past ZIP_SCAN groups), in list
    // order within each group; the groups sorted by name once at the end.
    const ZIP_SCAN: usize = 8;
    let mut index: Option<WordMap<Symbol, usize>> = None;
    let mut groups: Vec<(Symbol, Vec<Value>)> = Vec::new();
    for item in l.iter() {
        with_attrs(ev, item, |set| {
            for at in set.iter() {
                let found = match &index {
                    Some(ix) => ix.get(&at.name).copied(),
                    None => groups.iter().position(|(n, _)| *n == at.name),
                };
                let i = match found {
                    Some(i) => i,
                    None => {
                        groups.push((at.name, Vec::new()));
                        let i = groups.len() - 1;
                        match &mut index {
                            Some(ix) => {
                                ix.insert(at.name, i);
                            }
                            None if groups.len() > ZIP_SCAN => {
                                index = Some(groups.iter().enumerate().map(|(k, (n, _))| (*n, k)).collect());
                            }
                            None => {}
                        }
                        i
                    }
                };
                if let Some((_, g)) = groups.get_mut(i) {
                    g.push(at.value.clone());
                }
            }
        })?;
    }
    groups.sort_unstable_by_key(|(name, _)| *name);
    let f = &a[0];
    let out: Vec<Attr> = groups
        .into_iter()
        .map(|(name, vals)| Attr {
            name,
            value: Thunk::apply2(f.clone(), name_value(name), Value::list(vals)),
            pos: Pos::NONE,
        })
        .collect();
    Ok(Value::Attrs(Attrs::from_sorted(out)))
}

/// `{ file, line, column }` for a position, or null.
pub(crate) fn pos_value(pos: Pos) -> Value {
    let Some((src, line, col)) = pos.resolve() else { return Value::Null };
    let file = src.pos_file();
    let mut b = AttrsBuilder::with_capacity(3);
    b.insert(Symbol::new("file"), Value::string(file));
    b.insert(Symbol::new("line"), Value::Int(line as i64));
    b.insert(Symbol::new("column"), Value::Int(col as i64));
    Value::Attrs(b.finish())
}

fn unsafe_get_attr_pos(ev: &Evaluator, a: &[Value], _: Pos) -> EvalResult<Value> {
    let n = name_arg(ev, &a[0])?;
    Ok(match attrs_arg(&a[1])?.get_attr(n) {
        Some(at) => pos_value(at.pos),
        None => Value::Null,
    })
}
