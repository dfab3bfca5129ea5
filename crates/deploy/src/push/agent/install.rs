//! Installing the agent: the `ndeploy-agent` binary as a content-addressed
//! store path (tier 0).
//!
//! The binary is found next to the running `ndeploy` executable (cargo puts
//! both in the same target directory), or at `$NDEPLOY_AGENT`. Its store
//! object is a directory holding `bin/ndeploy-agent` (executable), added by
//! content: the path is `fixed:r:sha256` of that directory's NAR
//! ([`StoreDir::make_fixed_output_path`], Nix's `source` path type), named
//! `ndeploy-agent-<version>`, without references. So any change of the
//! binary gives a new path, and an agent path on a target is always exactly
//! the binary that made it: version skew between deployer and agent cannot
//! happen. A content-addressed path needs no signature, so even a daemon that
//! does not trust us accepts it.
//!
//! [`AgentPackage::load`] reads and hashes the binary (pure but for the
//! file read); [`AgentPackage::add_to`] adds it to a store through any daemon
//! connection (the local store, then each target's) unless it is valid there.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndeploy_store::content_address::ContentAddress;
use ndeploy_store::daemon::{AddToStoreFlags, DaemonConnection};
use ndeploy_store::hash::{Hash, HashAlgo};
use ndeploy_store::nar::NarEncoder;
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::{FileIngestionMethod, StoreDir, StorePath};
use tokio::io::{AsyncRead, AsyncWrite};

use super::AgentError;

/// The binary's file name, and the name of its directory under `bin/`.
pub const AGENT_BIN: &str = "ndeploy-agent";

/// The agent as a store object: its NAR and path info.
#[derive(Clone)]
pub struct AgentPackage {
    /// Path info of the store path (content address, NAR hash and size, no references).
    pub info: PathInfo,
    /// The NAR of `{ bin/ndeploy-agent }`.
    pub nar: Arc<Vec<u8>>,
}

impl std::fmt::Debug for AgentPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentPackage").field("path", &self.info.path).field("nar_size", &self.info.nar_size).finish()
    }
}

/// Where the agent binary is: `$NDEPLOY_AGENT`, else `ndeploy-agent` next
/// to the running executable.
pub fn locate_binary() -> Result<PathBuf, AgentError> {
    if let Some(p) = std::env::var_os("NDEPLOY_AGENT").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| AgentError::NoBinary { path: PathBuf::from("ndeploy"), reason: e.to_string() })?;
    // Test binaries live in target/<profile>/deps; the agent one level up.
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut candidates = vec![dir.join(AGENT_BIN)];
    if dir.file_name().is_some_and(|n| n == "deps")
        && let Some(up) = dir.parent()
    {
        candidates.push(up.join(AGENT_BIN));
    }
    candidates.iter().find(|c| c.is_file()).cloned().ok_or_else(|| AgentError::NoBinary {
        path: candidates.swap_remove(0),
        reason: "not found (build it with `cargo build -p ndeploy-agent`, or set NDEPLOY_AGENT)".to_owned(),
    })
}

/// The NAR of a directory with `bin/<AGENT_BIN>` holding `binary` (executable).
pub fn package_nar(binary: &[u8]) -> Result<Vec<u8>, AgentError> {
    let encode = || -> Result<Vec<u8>, ndeploy_store::nar::EncodeError> {
        let mut e = NarEncoder::new(Vec::with_capacity(binary.len() + 512));
        e.begin_directory()?;
        e.entry(b"bin")?;
        e.begin_directory()?;
        e.entry(AGENT_BIN.as_bytes())?;
        e.regular_bytes(true, binary)?;
        e.end_directory()?;
        e.end_directory()?;
        e.finish()
    };
    encode().map_err(|e| AgentError::Package(e.to_string()))
}

impl AgentPackage {
    /// The package for the binary bytes `binary`, named `ndeploy-agent-<version>`.
    pub fn from_binary(dir: &StoreDir, binary: &[u8], version: &str) -> Result<AgentPackage, AgentError> {
        let nar = package_nar(binary)?;
        let nar_hash = Hash::digest(HashAlgo::Sha256, &nar);
        let name = format!("{AGENT_BIN}-{version}");
        let path = dir
            .make_fixed_output_path(FileIngestionMethod::Recursive, &nar_hash, &name, [], false)
            .map_err(|e| AgentError::Package(e.to_string()))?;
        let mut info = PathInfo::new(path, nar_hash, nar.len() as u64);
        info.ca = Some(ContentAddress::Fixed { method: FileIngestionMethod::Recursive, hash: nar_hash });
        Ok(AgentPackage { info, nar: Arc::new(nar) })
    }

    /// Read the binary at `path` and package it with this crate's version.
    pub fn load(dir: &StoreDir, path: &Path) -> Result<AgentPackage, AgentError> {
        let binary =
            std::fs::read(path).map_err(|e| AgentError::NoBinary { path: path.to_path_buf(), reason: e.to_string() })?;
        AgentPackage::from_binary(dir, &binary, env!("CARGO_PKG_VERSION"))
    }

    pub fn path(&self) -> &StorePath {
        &self.info.path
    }

    /// The command that runs the agent from `dir` on a target.
    pub fn command(&self, dir: &StoreDir) -> String {
        format!("{}/bin/{AGENT_BIN} --stdio", dir.display(&self.info.path))
    }

    /// Add the package to the store behind `conn` unless it is valid there.
    /// Returns whether it was added.
    pub async fn add_to<R, W>(&self, conn: &mut DaemonConnection<R, W>) -> Result<bool, AgentError>
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        let valid = conn.is_valid_path(&self.info.path).await.map_err(|e| AgentError::Install(e.to_string()))?;
        if valid {
            return Ok(false);
        }
        let flags = AddToStoreFlags { repair: false, dont_check_sigs: false };
        let mut nar: &[u8] = &self.nar;
        conn.add_to_store_nar(&self.info, &mut nar, flags).await.map_err(|e| AgentError::Install(e.to_string()))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_is_a_content_addressed_directory() {
        let dir = StoreDir::default();
        let a = AgentPackage::from_binary(&dir, b"#!/bin/sh\necho agent\n", "0.1.0").unwrap();
        assert_eq!(a.path().name(), "ndeploy-agent-0.1.0");
        assert!(a.info.references.is_empty());
        assert_eq!(a.info.nar_size, a.nar.len() as u64);
        // The NAR parses and holds bin/ndeploy-agent, executable.
        struct Files(Vec<String>);
        impl ndeploy_store::nar::NarVisitor for Files {
            fn regular(&mut self, path: &[u8], executable: bool, size: u64) -> Result<(), ndeploy_store::nar::NarReadError> {
                self.0.push(format!("{}:{executable}:{size}", String::from_utf8_lossy(path)));
                Ok(())
            }
        }
        let mut files = Files(Vec::new());
        ndeploy_store::nar::parse(&a.nar[..], &mut files).unwrap();
        assert_eq!(files.0.len(), 1);
        assert!(files.0[0].ends_with("ndeploy-agent:true:21"), "{:?}", files.0);
        // Same bytes, same path; other bytes, another path.
        let b = AgentPackage::from_binary(&dir, b"#!/bin/sh\necho agent\n", "0.1.0").unwrap();
        assert_eq!(a.path(), b.path());
        let c = AgentPackage::from_binary(&dir, b"#!/bin/sh\necho agent 2\n", "0.1.0").unwrap();
        assert_ne!(a.path(), c.path());
        assert_eq!(a.command(&dir), format!("/nix/store/{}-ndeploy-agent-0.1.0/bin/ndeploy-agent --stdio", a.path().hash_part()));
    }
}
