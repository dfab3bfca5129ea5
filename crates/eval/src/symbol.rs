//! Interned attribute and variable names.
//!
//! Design: a [`Symbol`] is one pointer to a record that went through the
//! global, thread-safe interner (fronted by a per-thread cache: a hit takes
//! no lock), so two symbols are equal iff their pointers are equal (an
//! integer compare) while ordering still follows the byte order of the
//! names, which is the order Nix uses for attribute sets. The record holds
//! the name and its first eight bytes as a big-endian word (zero-padded):
//! most comparisons of a binary search over a set are decided by that one
//! word, without reading the name's bytes; only names sharing an
//! eight-byte prefix compare their tails.
//!
//! Invariant: every `Symbol` is created by [`Symbol::new`]; the interned
//! records live for the rest of the process (like C++ Nix's symbol table).
//! Only identifiers of parsed code and dynamically created attribute names
//! are interned, so the table grows with the program, not with evaluation.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Mutex, OnceLock};

#[derive(Clone, Copy)]
pub struct Symbol(&'static Interned);

/// An interned name: its order key (the first eight bytes, big-endian,
/// zero-padded) and the name itself.
struct Interned {
    key: u64,
    name: &'static str,
}

impl Interned {
    fn new(name: &'static str) -> Interned {
        let mut w = [0u8; 8];
        let head = name.as_bytes().get(..name.len().min(8)).unwrap_or_default();
        if let Some(dst) = w.get_mut(..head.len()) {
            dst.copy_from_slice(head);
        }
        Interned { key: u64::from_be_bytes(w), name }
    }
}

// The interner's sets hold records, looked up by name.
impl std::borrow::Borrow<str> for &'static Interned {
    fn borrow(&self) -> &str {
        self.name
    }
}
impl PartialEq for Interned {
    fn eq(&self, other: &Interned) -> bool {
        self.name == other.name
    }
}
impl Eq for Interned {}
impl Hash for Interned {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

/// The Fx hash (rustc's): a multiply and a rotate per word. Names are
/// short and not attacker-chosen in a way that matters (a slow table is
/// the worst case), so SipHash's cost buys nothing here.
#[derive(Default)]
pub(crate) struct FxHasher(u64);

/// Hash maps and sets keyed by short strings the evaluator made (not
/// SipHash: see [`FxHasher`]).
pub(crate) type FxBuildHasher = BuildHasherDefault<FxHasher>;

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        let rest = chunks.remainder();
        w[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(w));
    }
    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.add(u64::from(b));
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FxSet = HashSet<&'static Interned, BuildHasherDefault<FxHasher>>;

fn table() -> &'static Mutex<FxSet> {
    static TABLE: OnceLock<Mutex<FxSet>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(FxSet::default()))
}

thread_local! {
    /// The symbols this thread has interned or looked up: hits take no
    /// lock (evaluation threads intern the same names over and over:
    /// dynamic attribute names, `listToAttrs`, builtins' result sets).
    static CACHE: RefCell<FxSet> = RefCell::new(FxSet::default());
}

impl Symbol {
    /// Intern `name`.
    pub fn new(name: &str) -> Symbol {
        let hit = CACHE.try_with(|c| c.try_borrow().ok().and_then(|c| c.get(name).copied()));
        if let Ok(Some(s)) = hit {
            return Symbol(s);
        }
        let s = Symbol::intern(name);
        let _ = CACHE.try_with(|c| c.try_borrow_mut().map(|mut c| c.insert(s.0)));
        s
    }

    fn intern(name: &str) -> Symbol {
        let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = t.get(name) {
            return Symbol(s);
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        let rec: &'static Interned = Box::leak(Box::new(Interned::new(leaked)));
        t.insert(rec);
        Symbol(rec)
    }

    #[inline]
    pub fn as_str(self) -> &'static str {
        self.0.name
    }

    /// `__overrides` (looked up in every `rec { }`), interned once.
    pub(crate) fn overrides() -> Symbol {
        static S: OnceLock<Symbol> = OnceLock::new();
        *S.get_or_init(|| Symbol::new("__overrides"))
    }

    /// `__functor` (looked up in every call of a set), interned once.
    pub(crate) fn functor() -> Symbol {
        static S: OnceLock<Symbol> = OnceLock::new();
        *S.get_or_init(|| Symbol::new("__functor"))
    }
}

impl PartialEq for Symbol {
    #[inline]
    fn eq(&self, other: &Symbol) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}
impl Eq for Symbol {}

impl PartialOrd for Symbol {
    #[inline]
    fn partial_cmp(&self, other: &Symbol) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Symbol {
    /// Byte order of the names. Equal symbols are one pointer compare;
    /// different ones are usually told apart by their order keys (one
    /// word each); names sharing their first eight bytes compare the rest.
    #[inline]
    fn cmp(&self, other: &Symbol) -> Ordering {
        if self == other {
            return Ordering::Equal;
        }
        match self.0.key.cmp(&other.0.key) {
            Ordering::Equal => self.0.name.as_bytes().cmp(other.0.name.as_bytes()),
            o => o,
        }
    }
}

impl Hash for Symbol {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0 as *const Interned as usize).hash(state)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}
impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.name)
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

    #[test]
    fn threads_share_symbols() {
        let here = Symbol::new("shared-between-threads");
        let there = std::thread::spawn(|| (Symbol::new("shared-between-threads"), Symbol::new("made-there")))
            .join()
            .unwrap();
        assert_eq!(here, there.0);
        assert_eq!(Symbol::new("made-there"), there.1);
        assert_ne!(Symbol::new("made-there"), Symbol::new("made-ther"));
    }

    /// Symbols order as their names' bytes (the order of Nix's sets),
    /// across the eight-byte steps and the tails.
    #[test]
    fn order_is_byte_order() {
        let names = [
            "", "a", "ab", "abc", "abcdefg", "abcdefgh", "abcdefghi", "abcdefgh\u{e9}", "abcdefgi", "abcdefghabcdefgh",
            "abcdefghabcdefgha", "abcdefghabcdefgg", "b", "B", "_", "o1", "o10", "o100", "o1000", "o11", "o2", "\u{e9}t\u{e9}",
            "zzzzzzzzzzzzzzzzzzzz", "zzzzzzzzzzzzzzzzzzzy", "a\0", "a\0b", "\0", "abcdefg\0", "\u{ff}",
        ];
        for x in names {
            for y in names {
                assert_eq!(Symbol::new(x).cmp(&Symbol::new(y)), x.as_bytes().cmp(y.as_bytes()), "{x:?} vs {y:?}");
            }
        }
    }
}
