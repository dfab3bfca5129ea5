//! ndeploy-agent: the target side of `ndeploy push` that receives only the
//! bytes a target lacks.
//!
//! The deployer runs `ndeploy-agent --stdio` on the target (over SSH) and
//! speaks the framed [`protocol`] with it: the agent reports
//! [`manifest::NarManifest`]s of paths the target holds (file BLAKE3s), the
//! deployer [`delta::encode`]s each missing path as a [`delta::NarPlan`]
//! (references to files the target has, zstd deltas against the previous
//! version, chunks, raw bytes) and the agent ([`server`]) rebuilds the exact
//! NAR, verifies every reused file and the NAR's hash against the path info,
//! and imports it through the target's own daemon. [`client::AgentClient`] is
//! the deployer's end, pure async over any stream.
//!
//! Invariant: nothing is registered on the target unless every file of the
//! rebuilt NAR has the planned size and BLAKE3 (checked by the agent) and
//! the NAR's sha256 and size equal the path info's (checked by the target's
//! daemon on import); any mismatch is a `Resend` of that path, which the
//! deployer then sends whole.
//!
//! Measuring without SSH: `examples/plan_size.rs` (the bytes a push would
//! write between two closures of the local store) and `examples/push_local.rs`
//! (closures pushed through the real binary into a chroot store).

pub mod client;
pub mod delta;
pub mod manifest;
pub mod protocol;
pub mod server;

#[cfg(test)]
mod test_nar;

pub use client::{AgentClient, PushItem, PushOutcome, PushReport};
pub use delta::{EncodedNar, KnowledgeIndex, NarPlan, TargetKnowledge};
pub use manifest::NarManifest;
pub use protocol::{Message, PROTOCOL_VERSION, ProtocolError};
