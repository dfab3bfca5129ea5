//! SSH to deployment targets, with [russh] (pure Rust, `ring` backend).
//!
//! Layout, one concept per module:
//! - [`target`]: [`SshTarget`], parsed from `ssh://[USER@]HOST[:PORT][?remote-store=STORE]`
//!   or a plain `[USER@]HOST`.
//! - [`config`]: the subset of `~/.ssh/config` we honour (`Host` patterns,
//!   `HostName`, `Port`, `User`, `IdentityFile`, `ProxyJump`,
//!   `UserKnownHostsFile`, `StrictHostKeyChecking`), first value wins as in OpenSSH.
//! - [`known_hosts`]: host key verification against `known_hosts` files
//!   (hashed `|1|` entries, `[host]:port`, `@revoked`).
//! - [`auth`]: public-key authentication, ssh-agent first, then identity files.
//! - [`session`]: [`SshSession`]: connect (timeout, ProxyJump), `exec`, and
//!   `exec_stream` (a channel as an `AsyncRead + AsyncWrite` byte stream).
//! - [`tcp`]: the TCP stream under a session (no Nagle, quick ACKs).
//! - [`remote_store`]: a Nix worker-protocol connection to the target's
//!   daemon (`nix-daemon --stdio` over an exec channel).
//!
//! Security invariants: a host key is never accepted unless it is in a
//! known_hosts file, or the host is not in any file at all and the caller
//! explicitly asked to accept (and record) new keys. A changed or revoked key
//! is always refused, whatever the configuration says. Nothing secret
//! (passphrases, private keys, agent replies) is logged or put in errors.

pub mod auth;
pub mod config;
pub mod exec_stream;
pub mod known_hosts;
pub mod remote_store;
pub mod session;
pub mod target;
pub mod tcp;

use std::path::PathBuf;

use thiserror::Error;

pub use config::{HostConfig, SshConfig};
pub use exec_stream::{ChannelReader, ChannelWriter, ExecStream, ExitWatch};
pub use known_hosts::{HostKeyVerdict, KnownHosts};
pub use remote_store::{RemoteStore, open_remote_store};
pub use session::{ConnectOptions, ExecOutput, ExitStatus, OutputKind, SshSession};
pub use target::SshTarget;

/// Everything that can go wrong reaching a target over SSH.
#[derive(Debug, Error)]
pub enum SshError {
    #[error("invalid SSH target '{target}': {reason}")]
    InvalidTarget { target: String, reason: String },
    #[error("{file}:{line}: {message}")]
    Config { file: String, line: usize, message: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("could not connect to {host} port {port}: {source}")]
    Connect { host: String, port: u16, source: std::io::Error },
    #[error("timed out after {secs}s connecting to {host} port {port}")]
    Timeout { host: String, port: u16, secs: u64 },
    #[error("SSH protocol error: {0}")]
    Protocol(#[from] russh::Error),
    #[error(transparent)]
    UnknownHostKey(Box<UnknownHostKey>),
    #[error(transparent)]
    HostKeyChanged(Box<HostKeyChanged>),
    #[error("the host key of {host} ({fingerprint}) is marked @revoked at {file}:{line}; refusing to connect")]
    HostKeyRevoked { host: String, fingerprint: String, file: String, line: usize },
    #[error("the host {host} did not present a plain host key (certificates are not supported)")]
    HostCertificate { host: String },
    #[error("could not record the host key of {host} in {file}: {source}")]
    RecordHostKey { host: String, file: String, source: std::io::Error },
    #[error("permission denied for {user}@{host} (tried: {tried})")]
    AuthFailed { user: String, host: String, tried: String },
    #[error(
        "the private key {} is encrypted and no ssh-agent holds it; add it to the agent with `ssh-add {}`",
        path.display(), path.display()
    )]
    EncryptedKey { path: PathBuf },
    #[error("could not load the private key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("ssh-agent at {socket}: {reason}")]
    Agent { socket: String, reason: String },
    #[error(
        "sudo on {host} asks {user} for a password; ndeploy needs passwordless sudo (`sudo -n`) for non-root targets"
    )]
    SudoPassword { host: String, user: String },
    #[error(
        "{user} has no passwordless sudo on {host}, so ndeploy talked to the target's Nix daemon socket as {user}, \
         which failed: {detail}"
    )]
    DaemonAsUser { host: String, user: String, detail: String },
    #[error("ProxyJump chain for {host} is longer than {max} hops (a loop in ~/.ssh/config?)")]
    ProxyJumpTooDeep { host: String, max: usize },
    #[error("remote command on {host} failed: {message}")]
    Remote { host: String, message: String },
    #[error("Nix daemon on {host}: {source}")]
    Daemon { host: String, source: ndeploy_store::daemon::DaemonError },
}

/// A host whose key is in no known_hosts file (and accept-new was not asked for).
#[derive(Debug, Error)]
#[error(
    "the host key of {host} is not known ({key_type} {fingerprint}); none of {files} has an entry for it.\n\
     Verify the fingerprint, then add it with `ssh-keyscan {scan} >> ~/.ssh/known_hosts`, \
     or pass --accept-new-host-keys to record it on first use"
)]
pub struct UnknownHostKey {
    pub host: String,
    /// `ssh-keyscan` arguments that fetch the key.
    pub scan: String,
    pub key_type: String,
    pub fingerprint: String,
    /// The known_hosts files consulted.
    pub files: String,
}

/// A host presenting a key that differs from its known_hosts entry.
#[derive(Debug, Error)]
#[error(
    "@@@ WARNING: THE HOST KEY OF {host} HAS CHANGED! @@@\n\
     It now presents {key_type} {fingerprint}, which does not match {file}:{line}.\n\
     Someone could be intercepting the connection (man-in-the-middle), or the host was reinstalled.\n\
     Refusing to connect. If the change is expected, remove the old entry (ssh-keygen -R '{entry}' -f {file})"
)]
pub struct HostKeyChanged {
    pub host: String,
    /// The known_hosts name (`host` or `[host]:port`).
    pub entry: String,
    pub key_type: String,
    pub fingerprint: String,
    pub file: String,
    pub line: usize,
}

pub type Result<T, E = SshError> = std::result::Result<T, E>;

/// Quote `word` for a POSIX shell (the remote login shell runs exec commands).
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b)) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `~` and `~/...` expanded against `home`.
pub fn expand_tilde(path: &str, home: Option<&std::path::Path>) -> PathBuf {
    match (path.strip_prefix('~'), home) {
        (Some(""), Some(h)) => h.to_path_buf(),
        (Some(rest), Some(h)) if rest.starts_with('/') => h.join(rest.trim_start_matches('/')),
        _ => PathBuf::from(path),
    }
}

/// The user's home directory (`$HOME`).
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("nix-daemon"), "nix-daemon");
        assert_eq!(shell_quote("local?root=/x"), "'local?root=/x'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    /// Random inputs built from the parsers' special characters: no panics, no hangs.
    #[test]
    fn parsers_never_panic() {
        const ALPHABET: &[&str] = &[
            "Host",
            " ",
            "\t",
            "\n",
            "=",
            "\"",
            "*",
            "?",
            "!",
            ",",
            "@",
            ":",
            "[",
            "]",
            "|1|",
            "|",
            "#",
            "%",
            "%h",
            "~",
            "/",
            "ssh://",
            "?remote-store=",
            "&",
            "AAAA",
            "ssh-ed25519",
            "@revoked",
            "Port",
            "ProxyJump",
            "IdentityFile",
            "é",
            "a",
            "0",
            "65536",
            "Match",
            "StrictHostKeyChecking",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let len = next() % 40;
            let text: String = (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect();
            let _ = SshTarget::parse(&text);
            if let Ok(cfg) = SshConfig::parse("fuzz", &text) {
                let _ = cfg.resolve(&text, None, "me");
                let _ = cfg.resolve("a", Some(std::path::Path::new("/h")), "me");
            }
            let mut kh = KnownHosts::default();
            kh.add_text(std::path::Path::new("fuzz"), &text);
            let _ = config::glob_match(&text, &text.replace('*', "a"));
        }
    }

    #[test]
    fn tilde() {
        let h = std::path::Path::new("/home/u");
        assert_eq!(expand_tilde("~/.ssh/id", Some(h)), PathBuf::from("/home/u/.ssh/id"));
        assert_eq!(expand_tilde("~", Some(h)), PathBuf::from("/home/u"));
        assert_eq!(expand_tilde("/abs", Some(h)), PathBuf::from("/abs"));
        assert_eq!(expand_tilde("~other/x", Some(h)), PathBuf::from("~other/x"));
    }
}
