//! End-to-end tests: the `ndeploy` binary against real C++ Nix (and, for the
//! transfer tests, real sshd). They need `nix-store`, `nix-instantiate` and
//! friends on PATH; `scripts/test` installs them. A missing tool is a test
//! failure, not a skip.

mod agent;
mod apply;
mod daemon;
mod derivation;
mod fleet;
mod flake;
mod instantiate;
mod nar;
mod nixlib;
mod paths;
mod push;
mod signature;
mod ssh;
mod sshd;
mod support;
