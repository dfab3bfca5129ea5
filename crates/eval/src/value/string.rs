//! Strings with context.
//!
//! Design: a [`NixString`] is immutable UTF-8 text plus a [`Context`]: the set
//! of store-path context elements, encoded as Nix does (`/nix/store/...` for a
//! plain path, `=/nix/store/x.drv` for a derivation with all its outputs,
//! `!out!/nix/store/x.drv` for one output). Every operation that builds a
//! string from other strings must union their contexts; the helpers here make
//! that the easy path. An empty context costs nothing (an empty `Vec`).

use std::collections::BTreeSet;

/// A set of context elements. Most contexts have one to a few elements
/// (a derivation output, its inputs): they are a sorted, deduplicated
/// `Vec` (no allocation when empty, one small one per element set, copied
/// in one go); past [`SMALL_CONTEXT`] elements a `BTreeSet`, so building a
/// large context one element at a time stays `O(n log n)`.
#[derive(Clone, Debug)]
pub struct Context(Repr);

#[derive(Clone, Debug)]
enum Repr {
    Small(Vec<String>),
    Large(BTreeSet<String>),
}

/// The largest context kept as a sorted `Vec`.
const SMALL_CONTEXT: usize = 32;

impl Default for Context {
    fn default() -> Context {
        Context::new()
    }
}

impl PartialEq for Context {
    fn eq(&self, other: &Context) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Context {}

impl Context {
    pub fn new() -> Context {
        Context(Repr::Small(Vec::new()))
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn insert(&mut self, elem: String) {
        match &mut self.0 {
            Repr::Small(v) => match v.binary_search(&elem) {
                Ok(_) => {}
                Err(i) if v.len() < SMALL_CONTEXT => {
                    if v.is_empty() {
                        // Most contexts keep their single element.
                        v.reserve_exact(1);
                    }
                    v.insert(i, elem)
                }
                Err(_) => {
                    let mut set: BTreeSet<String> = std::mem::take(v).into_iter().collect();
                    set.insert(elem);
                    self.0 = Repr::Large(set);
                }
            },
            Repr::Large(s) => {
                s.insert(elem);
            }
        }
    }
    pub fn extend(&mut self, other: &Context) {
        if let (Repr::Small(v), Repr::Small(o)) = (&mut self.0, &other.0)
            && v.is_empty()
        {
            v.clone_from(o);
            return;
        }
        for e in other.iter() {
            if !self.contains(e) {
                self.insert(e.clone());
            }
        }
    }
    fn contains(&self, elem: &str) -> bool {
        match &self.0 {
            Repr::Small(v) => v.binary_search_by(|e| e.as_str().cmp(elem)).is_ok(),
            Repr::Large(s) => s.contains(elem),
        }
    }
    /// The elements in (byte) order.
    pub fn iter(&self) -> impl Iterator<Item = &String> {
        let (small, large) = match &self.0 {
            Repr::Small(v) => (Some(v.iter()), None),
            Repr::Large(s) => (None, Some(s.iter())),
        };
        small.into_iter().flatten().chain(large.into_iter().flatten())
    }
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Small(v) => v.len(),
            Repr::Large(s) => s.len(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NixString {
    s: String,
    ctx: Context,
}

impl NixString {
    pub fn new(s: String, ctx: Context) -> NixString {
        NixString { s, ctx }
    }
    pub fn plain(s: String) -> NixString {
        NixString { s, ctx: Context::new() }
    }
    pub fn as_str(&self) -> &str {
        &self.s
    }
    pub fn context(&self) -> &Context {
        &self.ctx
    }
    pub fn into_parts(self) -> (String, Context) {
        (self.s, self.ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(elems: &[String]) -> Context {
        let mut c = Context::new();
        for e in elems {
            c.insert(e.clone());
        }
        c
    }

    #[test]
    fn sorted_deduplicated_in_both_representations() {
        // Enough elements to pass from the Vec to the BTreeSet.
        let elems: Vec<String> = (0..3 * SMALL_CONTEXT).map(|i| format!("/nix/store/{:02}", (i * 37) % 97)).collect();
        let mut want: Vec<String> = elems.clone();
        want.sort();
        want.dedup();
        for n in [0, 1, 2, SMALL_CONTEXT, SMALL_CONTEXT + 1, elems.len()] {
            let mut twice = elems[..n].to_vec();
            twice.extend_from_slice(&elems[..n]);
            let c = ctx(&twice);
            let mut w: Vec<String> = elems[..n].to_vec();
            w.sort();
            w.dedup();
            assert_eq!(c.iter().cloned().collect::<Vec<_>>(), w);
            assert_eq!(c.len(), w.len());
            assert_eq!(c.is_empty(), n == 0);
        }
        // Unions, whatever the representations, and equality across them.
        let (a, b) = (ctx(&elems[..SMALL_CONTEXT + 5]), ctx(&elems[10..]));
        let mut u = a.clone();
        u.extend(&b);
        assert_eq!(u.iter().cloned().collect::<Vec<_>>(), want);
        let mut small_first = ctx(&elems[..3]);
        small_first.extend(&ctx(&elems[3..]));
        assert_eq!(small_first, u);
        let mut e = Context::new();
        e.extend(&ctx(&elems[..2]));
        assert_eq!(e, ctx(&elems[..2]));
        assert_ne!(e, ctx(&elems[..3]));
    }
}
