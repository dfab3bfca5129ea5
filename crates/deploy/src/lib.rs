//! ndeploy-deploy: SSH, push, build, activation, rollback and fleet selection.
pub mod fleet;
pub mod push;
pub mod ssh;
