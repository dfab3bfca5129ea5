//! Attribute sets: an immutable, shared vector of attributes sorted by name.
//!
//! Invariant: entries are strictly increasing by name (no duplicates). All
//! constructors establish it: [`AttrsBuilder::finish`] sorts and keeps the
//! FIRST definition of a duplicated name (as `listToAttrs` does), and
//! [`Attrs::update`] merges two sorted sets (right side wins, as `//`).

use crate::value::Brc;

use crate::source::Pos;
use crate::symbol::Symbol;
use crate::value::Value;

/// Sets up to this size are searched by a linear scan comparing symbol
/// pointers (most sets are small: module records, option declarations,
/// call arguments); larger ones by binary search on the names.
const LINEAR_LOOKUP: usize = 8;

pub struct Attr {
    pub name: Symbol,
    pub value: Value,
    pub pos: Pos,
}

/// Inlined (as `Value`'s): an out-of-line clone returned the attribute
/// through memory in 8-byte stores that `//`'s copy loop reloaded in
/// 16-byte loads, a store-forwarding stall per copied attribute.
impl Clone for Attr {
    #[inline(always)]
    fn clone(&self) -> Attr {
        Attr { name: self.name, value: self.value.clone(), pos: self.pos }
    }
}

#[derive(Clone)]
pub struct Attrs(Brc<AttrVec>);

/// The attribute vector; dropped iteratively (see `drop.rs`).
struct AttrVec(Vec<Attr>);

// `AttrVec`'s drop drops only the values.
const _: () = assert!(!std::mem::needs_drop::<Symbol>() && !std::mem::needs_drop::<Pos>());

impl std::ops::Deref for AttrVec {
    type Target = Vec<Attr>;
    fn deref(&self) -> &Vec<Attr> {
        &self.0
    }
}

impl Drop for AttrVec {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let Some(_nesting) = super::drop::shallow() else {
            return super::drop::nested(super::drop::Garbage::Attrs(std::mem::take(&mut self.0)));
        };
        let v = &mut self.0;
        let len = v.len();
        let p = v.as_mut_ptr();
        // SAFETY: the length is set to 0 first, so each attribute's value
        // is dropped exactly once, here (names and positions hold nothing
        // to drop); plain values skip the drop glue.
        unsafe {
            v.set_len(0);
            for i in 0..len {
                let x = &raw mut (*p.add(i)).value;
                if !super::drop::is_plain(&*x) {
                    std::ptr::drop_in_place(x);
                }
            }
        }
    }
}

impl Attrs {
    pub fn empty() -> Attrs {
        Attrs(Brc::new(AttrVec(Vec::new())))
    }

    /// Build from entries already sorted by name and unique.
    pub fn from_sorted(v: Vec<Attr>) -> Attrs {
        debug_assert!(v.windows(2).all(|w| w[0].name < w[1].name));
        Attrs(Brc::new(AttrVec(v)))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Frameless: the scan of a small set (most lookups) needs no saved
    /// register, the binary search of a bigger one is a tail call (when
    /// both were one function, every lookup paid the search's saves and
    /// restores: 16 of ~52 instructions).
    #[inline]
    pub fn get_attr(&self, name: Symbol) -> Option<&Attr> {
        let v = self.entries();
        if v.len() <= LINEAR_LOOKUP {
            // Symbols are equal iff their pointers are: no string bytes read.
            return v.iter().find(|a| a.name == name);
        }
        search(v, name)
    }

    #[inline]
    pub fn get(&self, name: Symbol) -> Option<&Value> {
        self.get_attr(name).map(|a| &a.value)
    }

    pub fn get_str(&self, name: &str) -> Option<&Value> {
        let i = self.0.binary_search_by(|a| a.name.as_str().cmp(name)).ok()?;
        self.0.get(i).map(|a| &a.value)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Attr> {
        self.0.iter()
    }

    pub fn entries(&self) -> &[Attr] {
        &self.0.0
    }

    /// Identity of the underlying storage (for «repeated» detection).
    pub fn ptr_id(&self) -> usize {
        Brc::as_ptr(&self.0) as usize
    }

    pub fn ptr_eq(&self, other: &Attrs) -> bool {
        Brc::ptr_eq(&self.0, &other.0)
    }

    /// `self // other`: a merge of two sorted vectors, right side wins.
    pub fn update(&self, other: &Attrs) -> Attrs {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let (a, b) = (&self.0, &other.0);
        let mut out = Vec::with_capacity(a.len() + b.len());
        if b.len() * 8 < a.len() {
            // Few new attributes (the `acc // { x = ...; }` pattern): find
            // each one's place by binary search and copy the runs between.
            let mut start = 0;
            for attr in b.iter() {
                let rest = &a[start..];
                match rest.binary_search_by(|x| x.name.cmp(&attr.name)) {
                    Ok(k) => {
                        out.extend_from_slice(&rest[..k]);
                        out.push(attr.clone());
                        start += k + 1;
                    }
                    Err(k) => {
                        out.extend_from_slice(&rest[..k]);
                        out.push(attr.clone());
                        start += k;
                    }
                }
            }
            out.extend_from_slice(&a[start..]);
            return Attrs(Brc::new(AttrVec(out)));
        }
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].name.cmp(&b[j].name) {
                std::cmp::Ordering::Less => {
                    out.push(a[i].clone());
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(b[j].clone());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push(b[j].clone());
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        Attrs(Brc::new(AttrVec(out)))
    }
}

/// The attribute `name` of a sorted vector, by binary search.
#[inline(never)]
fn search(v: &[Attr], name: Symbol) -> Option<&Attr> {
    let i = v.binary_search_by(|a| a.name.cmp(&name)).ok()?;
    v.get(i)
}

/// Collects attributes in any order; duplicates keep the first definition.
#[derive(Default)]
pub struct AttrsBuilder {
    v: Vec<Attr>,
}

impl AttrsBuilder {
    pub fn new() -> AttrsBuilder {
        AttrsBuilder { v: Vec::new() }
    }
    pub fn with_capacity(n: usize) -> AttrsBuilder {
        AttrsBuilder { v: Vec::with_capacity(n) }
    }
    pub fn insert(&mut self, name: Symbol, value: Value) {
        self.v.push(Attr { name, value, pos: Pos::NONE });
    }
    pub fn insert_pos(&mut self, name: Symbol, value: Value, pos: Pos) {
        self.v.push(Attr { name, value, pos });
    }
    /// Whether `name` was inserted (a scan: for small builders).
    pub fn contains(&self, name: Symbol) -> bool {
        self.v.iter().any(|a| a.name == name)
    }
    pub fn finish(mut self) -> Attrs {
        // Stable sort keeps the first of equal names first.
        self.v.sort_by_key(|a| a.name);
        self.v.dedup_by(|later, first| later.name == first.name);
        Attrs(Brc::new(AttrVec(std::mem::take(&mut self.v))))
    }
}

// Access for the cycle collector (`value/collect.rs`).
impl Attrs {
    pub(crate) fn strong_count(&self) -> usize {
        Brc::strong_count(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sorts_and_keeps_first() {
        let mut b = AttrsBuilder::new();
        b.insert(Symbol::new("b"), Value::Int(1));
        b.insert(Symbol::new("a"), Value::Int(2));
        b.insert(Symbol::new("b"), Value::Int(3));
        let a = b.finish();
        assert_eq!(a.len(), 2);
        assert!(matches!(a.get(Symbol::new("b")), Some(Value::Int(1))));
        let mut c = AttrsBuilder::new();
        c.insert(Symbol::new("b"), Value::Int(9));
        c.insert(Symbol::new("c"), Value::Int(8));
        let u = a.update(&c.finish());
        let names: Vec<_> = u.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(matches!(u.get_str("b"), Some(Value::Int(9))));
    }
}
