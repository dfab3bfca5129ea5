//! The errors of the apply pipeline, one enum per stage: [`FeedError`]
//! (registering evaluated hosts), [`BatchError`] (a push handed to the
//! batcher) and [`HostError`] (one host's way from build to confirmation).
//! A host's error ends up as the text of its `Failed` verdict, so every
//! message names the step that failed and keeps the cause's own words.

use std::sync::Arc;

use ndeploy_store::daemon::DaemonError;
use thiserror::Error;

use crate::activate::ActivateError;
use crate::build::BuildError;
use crate::health::HealthError;
use crate::keys::KeyError;
use crate::push::PushError;
use crate::ssh::SshError;

/// Why a round of registration failed (every host of the round fails with it).
#[derive(Debug, Error)]
pub enum FeedError {
    /// The injected manifest snapshot failed.
    #[error("{0}")]
    Snapshot(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("manifest task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    #[error("local Nix store: {0}")]
    Local(#[source] DaemonError),
    #[error(transparent)]
    Register(#[from] BuildError),
}

/// Why the batcher could not push a host's closure.
#[derive(Debug, Error)]
pub enum BatchError {
    #[error("the push coordinator has stopped")]
    Stopped,
    #[error("the push coordinator dropped the request")]
    Dropped,
    /// The whole batch failed (shared by each of its hosts).
    #[error(transparent)]
    Push(Arc<PushError>),
    #[error("push returned no report for {0}")]
    NoReport(String),
}

/// Why a host failed before a verdict of its own.
#[derive(Debug, Error)]
pub enum HostError {
    #[error("local Nix store: {0}")]
    Local(#[source] DaemonError),
    #[error(transparent)]
    Build(BuildError),
    #[error("on the target: {0}")]
    RemoteBuild(#[source] BuildError),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("connecting task failed: {0}")]
    ConnectTask(#[source] tokio::task::JoinError),
    #[error("cannot reconnect to confirm: {0}")]
    Reconnect(#[source] Box<HostError>),
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The push reached the target and failed there.
    #[error("push: {0}")]
    Push(String),
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// A key upload failed; `restored` says whether the previous keys are back.
    #[error("{error} ({restored})")]
    KeysRestored { error: KeyError, restored: String },
    #[error(transparent)]
    Activate(#[from] ActivateError),
    #[error(transparent)]
    Health(#[from] HealthError),
    #[error("lost the connection during activation ({lost}) and cannot reconnect ({reconnect}); the target rolls back by itself")]
    LostActivation { lost: ActivateError, reconnect: SshError },
}
