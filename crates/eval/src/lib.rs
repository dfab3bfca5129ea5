//! ndeploy-eval: a lazy, thread-safe Nix evaluator.
pub mod support;
