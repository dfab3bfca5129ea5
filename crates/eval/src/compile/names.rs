//! Names at compile time: interning identifiers once per distinct token,
//! and the hasher of the compiler's name maps.
//!
//! Design: rowan's green-tree builder shares one token allocation among all
//! equal tokens of a parse, so an identifier token's address identifies its
//! text within one file. [`Names`] maps that address to the interned
//! [`Symbol`], so the global interner (a lock and a string hash) is asked
//! once per distinct name rather than once per occurrence. Both that map and
//! the scope maps (keyed by a `Symbol`, itself a pointer) hash one machine
//! word with [`WordHasher`] (a multiplicative hash), not SipHash.
//!
//! Invariant: a `Names` lives no longer than the tree whose token addresses
//! it holds (one compilation), so an address is never reused for another
//! text while it is in the map.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rowan::GreenTokenData;

use crate::symbol::Symbol;

/// Hashes values that hash as one machine word (pointers, `Symbol`s).
#[derive(Default, Clone, Copy)]
pub(crate) struct WordHasher(u64);

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing; the rotation moves the well-mixed high bits
        // down to where hashbrown takes its bucket index from.
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(26);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

pub(crate) type WordMap<K, V> = HashMap<K, V, BuildHasherDefault<WordHasher>>;

/// Interned identifier tokens of one compilation.
#[derive(Default)]
pub(crate) struct Names {
    by_token: WordMap<usize, Symbol>,
}

impl Names {
    /// The symbol of a token's text.
    pub(crate) fn get(&mut self, tok: &GreenTokenData) -> Symbol {
        let key = tok as *const GreenTokenData as usize;
        *self.by_token.entry(key).or_insert_with(|| Symbol::new(tok.text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_tokens_share_a_symbol_and_distinct_ones_do_not() {
        let parse = rnix::Root::parse("let a = 1; b = a; in a + b");
        let root = parse.syntax();
        let mut names = Names::default();
        let mut seen: Vec<(String, Symbol)> = Vec::new();
        for t in root.descendants_with_tokens().filter_map(|e| e.into_token()) {
            if t.kind() == rnix::SyntaxKind::TOKEN_IDENT {
                seen.push((t.text().to_string(), names.get(t.green())));
            }
        }
        assert_eq!(seen.len(), 5);
        for (text, sym) in &seen {
            assert_eq!(sym.as_str(), text);
            assert_eq!(*sym, Symbol::new(text));
        }
        assert_eq!(names.by_token.len(), 2, "one entry per distinct token");
    }
}
