//! Host key verification against OpenSSH `known_hosts` files.
//!
//! Line format: `[@marker] hostpatterns keytype base64key [comment]`.
//! `hostpatterns` is either a comma-separated pattern list (`*`/`?` globs,
//! `!` negation) or a hashed name `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
//! The name looked up is `host` for port 22 and `[host]:port` otherwise, as in
//! OpenSSH. `@revoked` lines refuse their key for every host;
//! `@cert-authority` lines are ignored (we accept no certificates).
//! Unparsable lines are skipped (OpenSSH does the same), never fatal.
//!
//! [`KnownHosts::check`] is pure: it decides [`HostKeyVerdict`]; the caller
//! turns anything but `Known` into a refusal (or, for `Unknown` and an
//! explicit accept-new, into [`append_host_key`]).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use russh::keys::{Algorithm, PublicKey};
use sha1::{Digest, Sha1};

use super::SshError;
use super::config::patterns_match;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug, Clone)]
enum HostField {
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    Patterns(Vec<(bool, String)>),
}

#[derive(Debug, Clone)]
struct Entry {
    marker: Marker,
    hosts: HostField,
    key: PublicKey,
    file: usize,
    line: usize,
}

/// The entries of one or more known_hosts files.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    files: Vec<PathBuf>,
    entries: Vec<Entry>,
}

/// What the known_hosts files say about a host presenting a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// The key is listed for the host.
    Known { file: PathBuf, line: usize },
    /// No entry names the host.
    Unknown,
    /// The host is listed, with other keys only: `file:line` is the entry of
    /// the same key type if there is one, else the first entry for the host.
    Changed { file: PathBuf, line: usize },
    /// The key is marked `@revoked`.
    Revoked { file: PathBuf, line: usize },
}

/// The name known_hosts stores for `host` at `port`.
pub fn host_entry_name(host: &str, port: u16) -> String {
    if port == 22 { host.to_owned() } else { format!("[{host}]:{port}") }
}

fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha1::new().chain_update(pad(0x36)).chain_update(msg).finalize();
    Sha1::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

fn parse_host_field(s: &str) -> Option<HostField> {
    if let Some(rest) = s.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|')?;
        return Some(HostField::Hashed { salt: B64.decode(salt).ok()?, hash: B64.decode(hash).ok()? });
    }
    let pats = s
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.strip_prefix('!') {
            Some(p) => (true, p.to_owned()),
            None => (false, p.to_owned()),
        })
        .collect();
    Some(HostField::Patterns(pats))
}

impl HostField {
    fn matches(&self, name: &str) -> bool {
        match self {
            HostField::Hashed { salt, hash } => hmac_sha1(salt, name.as_bytes()).as_slice() == hash.as_slice(),
            HostField::Patterns(p) => patterns_match(p.iter().map(|(n, s)| (*n, s.as_str())), name),
        }
    }
}

impl KnownHosts {
    /// Add the entries of a file's text; `path` names it in verdicts.
    pub fn add_text(&mut self, path: &Path, text: &str) {
        let file = self.files.len();
        self.files.push(path.to_path_buf());
        for (i, line) in text.lines().enumerate() {
            let mut words = line.split_whitespace();
            let Some(mut first) = words.next().filter(|w| !w.starts_with('#')) else { continue };
            let marker = match first {
                "@revoked" => Marker::Revoked,
                "@cert-authority" => Marker::CertAuthority,
                m if m.starts_with('@') => continue,
                _ => Marker::None,
            };
            if marker != Marker::None {
                let Some(next) = words.next() else { continue };
                first = next;
            }
            let (Some(hosts), Some(_key_type), Some(b64)) = (parse_host_field(first), words.next(), words.next())
            else {
                tracing::debug!("{}:{}: skipping unparsable known_hosts line", path.display(), i + 1);
                continue;
            };
            match russh::keys::parse_public_key_base64(b64) {
                Ok(key) => self.entries.push(Entry { marker, hosts, key, file, line: i + 1 }),
                Err(_) => {
                    tracing::debug!("{}:{}: skipping known_hosts line with an unreadable key", path.display(), i + 1)
                }
            }
        }
    }

    /// Load the files that exist among `paths`.
    pub fn load(paths: &[PathBuf]) -> Result<KnownHosts, SshError> {
        let mut kh = KnownHosts::default();
        for p in paths {
            match std::fs::read_to_string(p) {
                Ok(text) => kh.add_text(p, &text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(SshError::Io { what: format!("reading {}", p.display()), source }),
            }
        }
        Ok(kh)
    }

    fn location(&self, e: &Entry) -> (PathBuf, usize) {
        (self.files.get(e.file).cloned().unwrap_or_default(), e.line)
    }

    /// Decide on `key` presented by the host known as `name` (see [`host_entry_name`]).
    pub fn check(&self, name: &str, key: &PublicKey) -> HostKeyVerdict {
        let same = |e: &Entry| e.key.key_data() == key.key_data();
        if let Some(e) = self.entries.iter().find(|e| e.marker == Marker::Revoked && same(e)) {
            let (file, line) = self.location(e);
            return HostKeyVerdict::Revoked { file, line };
        }
        let for_host: Vec<&Entry> =
            self.entries.iter().filter(|e| e.marker == Marker::None && e.hosts.matches(name)).collect();
        if let Some(e) = for_host.iter().find(|e| same(e)) {
            let (file, line) = self.location(e);
            return HostKeyVerdict::Known { file, line };
        }
        let shown = for_host.iter().find(|e| e.key.algorithm() == key.algorithm()).or(for_host.first());
        match shown {
            Some(e) => {
                let (file, line) = self.location(e);
                HostKeyVerdict::Changed { file, line }
            }
            None => HostKeyVerdict::Unknown,
        }
    }

    /// The key algorithms known for `name`, in file order, without repeats
    /// (used to ask the server for a key type we can verify).
    pub fn algorithms_for(&self, name: &str) -> Vec<Algorithm> {
        let mut out: Vec<Algorithm> = Vec::new();
        for e in self.entries.iter().filter(|e| e.marker == Marker::None && e.hosts.matches(name)) {
            let a = e.key.algorithm();
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }
}

/// The known_hosts line recording `key` for `name`.
pub fn known_hosts_line(name: &str, key: &PublicKey) -> Result<String, SshError> {
    let mut key = key.clone();
    key.set_comment("");
    let text = key
        .to_openssh()
        .map_err(|e| SshError::Key { path: PathBuf::new(), reason: format!("cannot encode host key: {e}") })?;
    Ok(format!("{name} {}", text.trim_end()))
}

/// Append `key` for `name` to `path` (created with its directory if missing).
pub fn append_host_key(path: &Path, name: &str, key: &PublicKey) -> Result<(), SshError> {
    use std::io::Write;
    let err = |source| SshError::RecordHostKey { host: name.to_owned(), file: path.display().to_string(), source };
    let line = known_hosts_line(name, key)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let needs_newline = std::fs::read(path).map(|b| b.last().is_some_and(|&c| c != b'\n')).unwrap_or(false);
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(err)?;
    let text = format!("{}{line}\n", if needs_newline { "\n" } else { "" });
    f.write_all(text.as_bytes()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGy7iui10ScWpt4lTJxWqVC043zd+V4l+cT55yHA3xSL";
    const ED_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAINRREQIURoTSVhjStfyA8uNMe0imDh6DJwdS2zJLjTi/";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).unwrap()
    }

    fn kh(text: &str) -> KnownHosts {
        let mut k = KnownHosts::default();
        k.add_text(Path::new("/kh"), text);
        k
    }

    #[test]
    fn hmac_sha1_rfc2202() {
        assert_eq!(hex::encode(hmac_sha1(&[0x0b; 20], b"Hi There")), "b617318655057264e28bc0b6fb378c8ef146be00");
        assert_eq!(
            hex::encode(hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex::encode(hmac_sha1(&[0xaa; 80], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }

    #[test]
    fn verdicts() {
        let k = kh(&format!(
            "# comment\n\nweb1,web2 ssh-ed25519 {ED_A}\n[web1]:2222 ssh-ed25519 {ED_B} c\n*.lan,!bad.lan ssh-ed25519 {ED_A}\ngarbage\n"
        ));
        assert_eq!(k.check("web2", &key(ED_A)), HostKeyVerdict::Known { file: "/kh".into(), line: 3 });
        assert_eq!(k.check("web1", &key(ED_B)), HostKeyVerdict::Changed { file: "/kh".into(), line: 3 });
        assert_eq!(k.check("[web1]:2222", &key(ED_B)), HostKeyVerdict::Known { file: "/kh".into(), line: 4 });
        assert_eq!(k.check("[web1]:2223", &key(ED_B)), HostKeyVerdict::Unknown);
        assert_eq!(k.check("x.lan", &key(ED_A)), HostKeyVerdict::Known { file: "/kh".into(), line: 5 });
        assert_eq!(k.check("bad.lan", &key(ED_A)), HostKeyVerdict::Unknown);
        assert_eq!(k.check("other", &key(ED_A)), HostKeyVerdict::Unknown);
        assert_eq!(k.algorithms_for("web1"), vec![Algorithm::Ed25519]);
    }

    #[test]
    fn revoked_wins() {
        let k = kh(&format!(
            "web1 ssh-ed25519 {ED_A}\n@revoked * ssh-ed25519 {ED_A}\n@cert-authority * ssh-ed25519 {ED_B}\n"
        ));
        assert_eq!(k.check("web1", &key(ED_A)), HostKeyVerdict::Revoked { file: "/kh".into(), line: 2 });
        assert_eq!(k.check("web9", &key(ED_B)), HostKeyVerdict::Unknown, "a CA line is not a host key");
    }

    #[test]
    fn hashed_entries() {
        // salt = 20 zero bytes; hash = HMAC-SHA1(salt, "[h]:2200").
        let salt = [0u8; 20];
        let hash = hmac_sha1(&salt, b"[h]:2200");
        let line = format!("|1|{}|{} ssh-ed25519 {ED_A}\n", B64.encode(salt), B64.encode(hash));
        let k = kh(&line);
        assert!(matches!(k.check("[h]:2200", &key(ED_A)), HostKeyVerdict::Known { .. }));
        assert!(matches!(k.check("[h]:2200", &key(ED_B)), HostKeyVerdict::Changed { .. }));
        assert_eq!(k.check("h", &key(ED_A)), HostKeyVerdict::Unknown);
    }

    #[test]
    fn append_then_known() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/known_hosts");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("other ssh-ed25519 {ED_B}")).unwrap();
        append_host_key(&p, "[127.0.0.1]:2022", &key(ED_A)).unwrap();
        let k = KnownHosts::load(std::slice::from_ref(&p)).unwrap();
        assert!(matches!(k.check("[127.0.0.1]:2022", &key(ED_A)), HostKeyVerdict::Known { line: 2, .. }));
        assert!(matches!(k.check("other", &key(ED_B)), HostKeyVerdict::Known { line: 1, .. }));
    }
}
