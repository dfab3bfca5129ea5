//! Interned attribute and variable names.
//!
//! Design: a [`Symbol`] is a `&'static str` that went through the global,
//! thread-safe interner, so two symbols are equal iff their pointers are equal
//! (an integer compare) while ordering still follows the byte order of the
//! names, which is the order Nix uses for attribute sets.
//!
//! Invariant: every `Symbol` is created by [`Symbol::new`]; the interned
//! strings live for the rest of the process (like C++ Nix's symbol table).
//! Only identifiers of parsed code and dynamically created attribute names
//! are interned, so the table grows with the program, not with evaluation.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock};

#[derive(Clone, Copy)]
pub struct Symbol(&'static str);

fn table() -> &'static Mutex<HashSet<&'static str>> {
    static TABLE: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(HashSet::new()))
}

impl Symbol {
    /// Intern `name`.
    pub fn new(name: &str) -> Symbol {
        let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = t.get(name) {
            return Symbol(s);
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        t.insert(leaked);
        Symbol(leaked)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl PartialEq for Symbol {
    fn eq(&self, other: &Symbol) -> bool {
        std::ptr::eq(self.0.as_ptr(), other.0.as_ptr()) && self.0.len() == other.0.len()
    }
}
impl Eq for Symbol {}

impl PartialOrd for Symbol {
    fn partial_cmp(&self, other: &Symbol) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Symbol {
    fn cmp(&self, other: &Symbol) -> Ordering {
        if self == other { Ordering::Equal } else { self.0.cmp(other.0) }
    }
}

impl Hash for Symbol {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0.as_ptr() as usize).hash(state)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_identity() {
        let a = Symbol::new("foo");
        let b = Symbol::new(&String::from("foo"));
        assert_eq!(a, b);
        assert!(Symbol::new("a") < Symbol::new("b"));
        assert_ne!(Symbol::new("a"), Symbol::new("ab"));
    }
}
