//! Fleets: discovering the hosts of a flake / hive / plain fleet, selecting
//! some, and evaluating them in parallel on one shared evaluator.
//!
//! Pipeline: [`discover`] picks the source (flake, `hive.nix`, `fleet.nix`)
//! → [`evaluate::load_source`] evaluates it → [`Fleet::open`] applies
//! ndeploy's `nix/fleet.nix` ([`library`], embedded in the binary and
//! materialised once per version) → [`Selection`] picks hosts (names, globs,
//! `@tags`) → [`Fleet::evaluate`] computes each host's toplevel (or an
//! attribute) on a rayon pool, streaming [`HostResult`]s → [`report`]
//! prints them as a table or JSON lines. All host semantics (what is a
//! host, deployment defaults) live on the Nix side, in `nix/fleet.nix`, so
//! ndeploy and C++ Nix evaluating the same expression agree.

pub mod discover;
pub mod evaluate;
pub mod chunks;
pub mod library;
pub mod memory;
pub mod report;
pub mod select;

use std::path::PathBuf;

use thiserror::Error;

pub use discover::{FleetSource, discover};
pub use evaluate::{Deployment, Fleet, FleetArg, FleetParts, FlakeLoader, Target, thread_pool};
pub use report::HostResult;
pub use select::{Selection, Selector};

#[derive(Debug, Error)]
pub enum FleetError {
    #[error("cannot find the fleet: {0}")]
    NoSource(String),
    #[error("cannot evaluate flake '{0}': this build has no flake support (use --file fleet.nix)")]
    NoFlakeSupport(String),
    #[error("while evaluating {source_name}:\n{message}")]
    Eval { source_name: String, message: String },
    #[error("invalid selector: {0}")]
    Selector(String),
    #[error("no host matches {}; hosts are: {}", selectors.join(", "), hosts.join(", "))]
    NoMatch { selectors: Vec<String>, hosts: Vec<String> },
    #[error("cannot write ndeploy's Nix library to '{path}': {source}")]
    Library { path: PathBuf, source: std::io::Error },
    #[error("cannot start evaluation threads: {0}")]
    ThreadPool(String),
}

impl FleetError {
    pub fn eval(source: &FleetSource, e: ndeploy_eval::EvalError) -> FleetError {
        FleetError::Eval { source_name: source.to_string(), message: e.render(false) }
    }
}
