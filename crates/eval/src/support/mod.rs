//! Value-independent support code for the Nix evaluator's builtins.
//!
//! Design: every submodule is a pure function library over plain Rust types
//! (`&str`, `&[u8]`, `f64`, the neutral [`Data`] tree, small visitor/writer
//! types), so the evaluator can call it from builtins without this code
//! knowing the evaluator's `Value` type, and every function is unit-tested
//! against output recorded from C++ Nix 2.8 (`nix-instantiate --eval`),
//! plus generated cases compared live with `nix-instantiate` when it is
//! installed (the test-only `oracle` module).
//!
//! Invariants shared by all submodules: no panics on input-derived data, no
//! unbounded recursion on input-derived structure except where documented
//! (the [`Data`] tree depth is bounded by its producer), errors are
//! `thiserror` types whose messages follow Nix's wording.
//!
//! Modules:
//! - [`regex`]: POSIX ERE (`builtins.match` / `builtins.split`): a
//!   backtracker reproducing libstdc++'s executor, prefiltered by (and
//!   falling back to) a linear-time `regex-automata` translation, with a
//!   bounded thread-safe compile cache.
//! - [`versions`]: `compareVersions`, `splitVersion`, `parseDrvName`.
//! - [`float`]: the three float renderings (printing, `toString`, `toJSON`).
//! - [`json`]: `fromJSON` into [`Data`] (nlohmann-json's semantics and
//!   error messages) and the `toJSON` writer.
//! - [`toml`]: `fromTOML` into [`Data`].
//! - [`xml`]: the `builtins.toXML` writer.
//! - [`escape`]: string literal and attribute-name quoting for printing.
//! - [`path`]: `canonPath`, `baseNameOf`, `dirOf` on strings.

pub mod data;
pub mod escape;
pub mod float;
pub mod json;
#[cfg(test)]
mod oracle;
pub mod path;
pub mod regex;
#[cfg(test)]
mod robustness;
pub mod toml;
pub mod versions;
pub mod xml;

pub use data::Data;
