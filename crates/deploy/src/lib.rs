//! ndeploy-deploy: SSH, push, build, activation, rollback and fleet selection.
pub mod activate;
pub mod apply;
pub mod build;
pub mod diff;
pub mod exec;
pub mod fleet;
pub mod health;
pub mod keys;
pub mod push;
pub mod ssh;
