//! A small neutral value tree shared by the data-format parsers
//! (`fromJSON`, `fromTOML`) and the `toJSON` writer.
//!
//! Design: it mirrors exactly the Nix values those formats can produce —
//! null, booleans, 64-bit integers, floats, strings, lists and attribute
//! sets — and nothing else, so the evaluator converts it to its own `Value`
//! type with one straightforward recursive match. Attribute sets are a
//! [`BTreeMap`], which gives the byte-wise lexicographic key order Nix uses
//! when printing and serialising, and makes "last duplicate key wins"
//! (Nix's `fromJSON` behaviour) the natural insert semantics.
//!
//! Invariant: trees produced by this crate's parsers have bounded depth (the
//! parsers reject deeper input, see [`MAX_DEPTH`]), so recursive consumers —
//! including the derived `Drop` — cannot overflow the stack on them. `Data`
//! deliberately has no custom `Drop` so callers can destructure it by value.

use std::collections::BTreeMap;

/// Maximum nesting depth of lists/sets accepted by the parsers.
pub const MAX_DEPTH: usize = 1000;

/// A Nix value that can be represented in JSON / TOML.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A Nix integer (64-bit signed).
    Int(i64),
    /// A Nix float.
    Float(f64),
    /// A Nix string (without context).
    String(String),
    /// A Nix list.
    List(Vec<Data>),
    /// A Nix attribute set, keys in byte-wise order.
    Attrs(BTreeMap<String, Data>),
}

impl Data {
    /// The Nix type name of this value, as `builtins.typeOf` reports it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Data::Null => "null",
            Data::Bool(_) => "bool",
            Data::Int(_) => "int",
            Data::Float(_) => "float",
            Data::String(_) => "string",
            Data::List(_) => "list",
            Data::Attrs(_) => "set",
        }
    }
}

/// Test helper: an attribute set from `(name, value)` pairs.
#[cfg(test)]
pub(crate) fn attrs<const N: usize>(items: [(&str, Data); N]) -> Data {
    Data::Attrs(items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        assert_eq!(Data::Null.type_name(), "null");
        assert_eq!(Data::Attrs(BTreeMap::new()).type_name(), "set");
        assert_eq!(Data::Float(1.0).type_name(), "float");
    }
}
