//! Interned attribute and variable names.
//!
//! Design: a [`Symbol`] is a `&'static str` that went through the global,
//! thread-safe interner (fronted by a per-thread cache: a hit takes no
//! lock), so two symbols are equal iff their pointers are equal
//! (an integer compare) while ordering still follows the byte order of the
//! names, which is the order Nix uses for attribute sets.
//!
//! Invariant: every `Symbol` is created by [`Symbol::new`]; the interned
//! strings live for the rest of the process (like C++ Nix's symbol table).
//! Only identifiers of parsed code and dynamically created attribute names
//! are interned, so the table grows with the program, not with evaluation.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Mutex, OnceLock};

#[derive(Clone, Copy)]
pub struct Symbol(&'static str);

/// The Fx hash (rustc's): a multiply and a rotate per word. Names are
/// short and not attacker-chosen in a way that matters (a slow table is
/// the worst case), so SipHash's cost buys nothing here.
#[derive(Default)]
struct FxHasher(u64);

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

type FxSet = HashSet<&'static str, BuildHasherDefault<FxHasher>>;

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
        t.insert(leaked);
        Symbol(leaked)
    }

    pub fn as_str(self) -> &'static str {
        self.0
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
    /// Byte order of the names. Equal symbols are one pointer compare;
    /// different ones are compared inline, eight bytes at a time (attribute
    /// names are short and usually differ early: a call to `memcmp` per
    /// step of a binary search over a large set cost more than the compare).
    #[inline]
    fn cmp(&self, other: &Symbol) -> Ordering {
        if self == other {
            return Ordering::Equal;
        }
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        let n = a.len().min(b.len());
        let (ha, hb) = (a.get(..n).unwrap_or_default(), b.get(..n).unwrap_or_default());
        let (mut ca, mut cb) = (ha.chunks_exact(8), hb.chunks_exact(8));
        for (x, y) in (&mut ca).zip(&mut cb) {
            let (x, y) = (word(x), word(y));
            if x != y {
                return x.cmp(&y);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            if x != y {
                return x.cmp(y);
            }
        }
        a.len().cmp(&b.len())
    }
}

/// Eight name bytes as a big-endian word (so words compare as the bytes).
#[inline(always)]
fn word(c: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(c);
    u64::from_be_bytes(w)
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
            "zzzzzzzzzzzzzzzzzzzz", "zzzzzzzzzzzzzzzzzzzy",
        ];
        for x in names {
            for y in names {
                assert_eq!(Symbol::new(x).cmp(&Symbol::new(y)), x.as_bytes().cmp(y.as_bytes()), "{x:?} vs {y:?}");
            }
        }
    }
}
