//! Strings with context.
//!
//! Design: a [`NixString`] is immutable UTF-8 text plus a [`Context`]: the set
//! of store-path context elements, encoded as Nix does (`/nix/store/...` for a
//! plain path, `=/nix/store/x.drv` for a derivation with all its outputs,
//! `!out!/nix/store/x.drv` for one output). Every operation that builds a
//! string from other strings must union their contexts; the helpers here make
//! that the easy path. An empty context costs nothing (`None`).

use std::collections::BTreeSet;

/// A set of context elements; `None`-like when empty.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Context(Option<BTreeSet<String>>);

impl Context {
    pub fn new() -> Context {
        Context(None)
    }
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|s| s.is_empty())
    }
    pub fn insert(&mut self, elem: String) {
        self.0.get_or_insert_with(Default::default).insert(elem);
    }
    pub fn extend(&mut self, other: &Context) {
        if let Some(o) = &other.0 {
            if o.is_empty() {
                return;
            }
            let s = self.0.get_or_insert_with(Default::default);
            s.extend(o.iter().cloned());
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter().flat_map(|s| s.iter())
    }
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |s| s.len())
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
