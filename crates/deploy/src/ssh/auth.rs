//! Public-key user authentication: ssh-agent first, then identity files.
//!
//! Order: every plain key the agent at `SSH_AUTH_SOCK` offers (restricted to
//! the configured identities when `IdentitiesOnly` is set), then each
//! identity file that exists (the config's `IdentityFile`s, else
//! `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`). An encrypted file is not
//! prompted for: if nothing else succeeds the error says to `ssh-add` it.
//! RSA keys sign with the best hash the server supports (`server-sig-algs`).
//! Private key material and agent replies are never logged; only key types
//! and public fingerprints appear in messages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{Handle, Handler};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};

use super::{Result, SshError};

/// Where keys come from.
#[derive(Debug, Clone, Default)]
pub struct AuthMethods {
    /// The agent's socket (`SSH_AUTH_SOCK`); `None` to not use an agent.
    pub agent_socket: Option<PathBuf>,
    /// Identity files to try, in order (missing ones are skipped).
    pub identity_files: Vec<PathBuf>,
    /// Only use agent keys whose public half matches an identity file's `.pub`.
    pub identities_only: bool,
}

/// The default identity files in `~/.ssh`, in OpenSSH's order (those we support).
pub fn default_identity_files(home: Option<&Path>) -> Vec<PathBuf> {
    let Some(home) = home else { return Vec::new() };
    ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|n| home.join(".ssh").join(n)).collect()
}

fn describe(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm().as_str(), key.fingerprint(HashAlg::Sha256))
}

/// Authenticate `user` on `handle`; `host` names the server in errors.
pub async fn authenticate<H>(handle: &mut Handle<H>, user: &str, host: &str, methods: &AuthMethods) -> Result<()>
where
    H: Handler<Error = SshError> + Send + 'static,
{
    let rsa_hash: Option<HashAlg> = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
    let mut tried: Vec<String> = Vec::new();
    let mut agent_keys: Vec<PublicKey> = Vec::new();

    if let Some(socket) = &methods.agent_socket {
        match AgentClient::connect_uds(socket).await {
            Ok(mut agent) => {
                let identities = agent.request_identities().await.map_err(|e| SshError::Agent {
                    socket: socket.display().to_string(),
                    reason: format!("could not list keys: {e}"),
                })?;
                let allowed: Option<Vec<PublicKey>> = methods.identities_only.then(|| {
                    methods
                        .identity_files
                        .iter()
                        .filter_map(|p| russh::keys::load_public_key(pub_path(p)).ok())
                        .collect()
                });
                for id in identities {
                    let AgentIdentity::PublicKey { key, .. } = id else { continue };
                    if allowed.as_ref().is_some_and(|a| !a.iter().any(|k| k.key_data() == key.key_data())) {
                        continue;
                    }
                    tried.push(format!("agent key {}", describe(&key)));
                    agent_keys.push(key.clone());
                    let hash = if key.algorithm().is_rsa() { rsa_hash } else { None };
                    match handle.authenticate_publickey_with(user, key, hash, &mut agent).await {
                        Ok(r) if r.success() => return Ok(()),
                        Ok(_) => {}
                        Err(e) => tracing::debug!("agent could not sign with a key for {host}: {e}"),
                    }
                }
            }
            Err(e) => tracing::debug!("no usable ssh-agent at {}: {e}", socket.display()),
        }
    }

    let mut encrypted: Option<PathBuf> = None;
    for path in &methods.identity_files {
        if !path.exists() {
            continue;
        }
        let key = match russh::keys::load_secret_key(path, None) {
            Ok(k) => k,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                // Covered if the agent offered the same key.
                let in_agent = russh::keys::load_public_key(pub_path(path))
                    .is_ok_and(|p| agent_keys.iter().any(|k| k.key_data() == p.key_data()));
                if !in_agent && encrypted.is_none() {
                    encrypted = Some(path.clone());
                }
                continue;
            }
            Err(e) => {
                tracing::warn!("skipping identity file {}: {e}", path.display());
                continue;
            }
        };
        tried.push(path.display().to_string());
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash);
        if handle.authenticate_publickey(user, key).await?.success() {
            return Ok(());
        }
    }
    if let Some(path) = encrypted {
        return Err(SshError::EncryptedKey { path });
    }
    let tried = if tried.is_empty() {
        "no keys: no ssh-agent keys and none of the identity files exist".to_owned()
    } else {
        tried.join(", ")
    };
    Err(SshError::AuthFailed { user: user.to_owned(), host: host.to_owned(), tried })
}

fn pub_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}
