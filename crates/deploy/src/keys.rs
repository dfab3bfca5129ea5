//! Secret keys (`deployment.keys`): uploaded over SSH, never through the Nix
//! store, never logged.
//!
//! Each key's bytes (its `text`, or the deployer's `keyFile` read at upload
//! time) travel on the stdin of one exec channel of the host's single SSH
//! session; the remote side writes them to a fresh temporary file in
//! `destDir` (created under `umask 077`, so the secret is never readable by
//! others), sets owner and mode, and renames it over `destDir/name`, so a
//! reader sees the old key or the new one, never a partial file. Only names
//! and destinations appear in commands, errors and logs.

use std::sync::{Arc, Mutex};

use serde_json::Value as Json;
use tokio::io::AsyncWriteExt;

use crate::ssh::{SshSession, shell_quote};

/// One key as declared (contents not loaded yet).
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub source: KeySource,
    pub dest_dir: String,
    pub user: String,
    pub group: String,
    pub permissions: String,
    /// `pre-activation` or `post-activation`.
    pub upload_at: String,
}

#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    Text(String),
    File(String),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key contents.
        f.debug_struct("Key").field("name", &self.name).field("dest_dir", &self.dest_dir).finish_non_exhaustive()
    }
}

impl Key {
    pub fn path(&self) -> String {
        format!("{}/{}", self.dest_dir.trim_end_matches('/'), self.name)
    }

    /// The key's bytes.
    pub fn contents(&self) -> Result<Vec<u8>, String> {
        match &self.source {
            KeySource::Text(t) => Ok(t.as_bytes().to_vec()),
            KeySource::File(f) => std::fs::read(f).map_err(|e| format!("key {}: cannot read {f}: {e}", self.name)),
        }
    }
}

fn valid_word(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('-') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The keys of a deployment's JSON, validated (names, owners and modes end
/// up in shell commands; everything is also quoted).
pub fn parse(deployment: &Json) -> Result<Vec<Key>, String> {
    let Some(keys) = deployment.get("keys").and_then(Json::as_object) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for (attr, k) in keys {
        let s = |f: &str| k.get(f).and_then(Json::as_str).map(str::to_owned);
        let name = s("name").unwrap_or_else(|| attr.clone());
        let source = match (s("text"), s("keyFile")) {
            (Some(t), None) => KeySource::Text(t),
            (None, Some(f)) => KeySource::File(f),
            _ => return Err(format!("key {attr} needs exactly one of text / keyFile")),
        };
        let key = Key {
            name,
            source,
            dest_dir: s("destDir").unwrap_or_else(|| "/run/keys".into()),
            user: s("user").unwrap_or_else(|| "root".into()),
            group: s("group").unwrap_or_else(|| "root".into()),
            permissions: s("permissions").unwrap_or_else(|| "0600".into()),
            upload_at: s("uploadAt").unwrap_or_else(|| "pre-activation".into()),
        };
        if !valid_word(&key.name) || key.name == "." || key.name == ".." {
            return Err(format!("key {attr}: invalid file name '{}'", key.name));
        }
        if !valid_word(&key.user) || !valid_word(&key.group) {
            return Err(format!("key {attr}: invalid user or group"));
        }
        if !(3..=4).contains(&key.permissions.len()) || !key.permissions.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(format!("key {attr}: permissions '{}' are not octal", key.permissions));
        }
        if !key.dest_dir.starts_with('/') {
            return Err(format!("key {attr}: destDir '{}' is not absolute", key.dest_dir));
        }
        out.push(key);
    }
    Ok(out)
}

/// The remote script that installs one key from stdin.
pub fn install_script(key: &Key, target_root: &str) -> String {
    let dir = shell_quote(&format!("{}{}", target_root.trim_end_matches('/'), key.dest_dir));
    format!(
        "umask 077 && mkdir -p {dir} && t=$(mktemp {dir}/.ndeploy-key.XXXXXX) && \
         {{ cat > \"$t\" && chown {u}:{g} \"$t\" && chmod {m} \"$t\" && mv -f \"$t\" {dir}/{n}; }} || {{ rm -f \"$t\"; exit 1; }}",
        u = shell_quote(&key.user),
        g = shell_quote(&key.group),
        m = key.permissions,
        n = shell_quote(&key.name),
    )
}

/// Upload `keys` over `session`; stops at the first failure.
pub async fn upload(session: &SshSession, keys: &[Key], target_root: &str) -> Result<usize, String> {
    for key in keys {
        let contents = key.contents()?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let cmd = session.root_script(&install_script(key, target_root));
        let stream = session
            .exec_stream(&cmd, move |d| {
                if let Ok(mut s) = sink.lock() {
                    s.extend_from_slice(d);
                }
            })
            .await
            .map_err(|e| format!("key {}: {e}", key.name))?;
        let (_reader, mut writer, mut exit) = stream.into_split();
        let sent = async {
            writer.write_all(&contents).await?;
            writer.shutdown().await
        }
        .await;
        let status = exit.wait().await;
        let err = String::from_utf8_lossy(&stderr.lock().map(|s| s.clone()).unwrap_or_default()).trim().to_owned();
        if let Err(e) = sent {
            return Err(format!("key {}: sending failed: {e}", key.name));
        }
        if !status.success() {
            return Err(format!("key {} ({}): remote install failed ({status}): {err}", key.name, key.path()));
        }
    }
    Ok(keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let d = serde_json::json!({ "keys": { "api": {
            "name": "api", "text": "s3cret", "keyFile": null, "destDir": "/run/keys",
            "user": "root", "group": "root", "permissions": "0640", "uploadAt": "pre-activation" } } });
        let k = parse(&d).unwrap();
        assert_eq!(k[0].path(), "/run/keys/api");
        assert_eq!(k[0].contents().unwrap(), b"s3cret");
        assert!(!format!("{:?}", k[0]).contains("s3cret"));
        let s = install_script(&k[0], "/tmp/r");
        assert!(s.contains("/tmp/r/run/keys") && s.contains("chmod 0640") && !s.contains("s3cret"), "{s}");
        for (field, bad) in [("name", "../x"), ("permissions", "rw"), ("user", "a b"), ("destDir", "rel")] {
            let mut d2 = d.clone();
            d2["keys"]["api"][field] = bad.into();
            assert!(parse(&d2).is_err(), "{field}={bad}");
        }
    }

    /// The install script itself, run locally: mode, atomic replace, no temp left.
    #[test]
    fn install_script_runs() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let key = Key {
            name: "k".into(),
            source: KeySource::Text("v".into()),
            dest_dir: "/keys".into(),
            user: "root".into(),
            group: "root".into(),
            permissions: "0640".into(),
            upload_at: "pre-activation".into(),
        };
        for contents in ["first", "second"] {
            let mut c = std::process::Command::new("sh")
                .args(["-c", &install_script(&key, &d.path().display().to_string())])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            c.stdin.take().unwrap().write_all(contents.as_bytes()).unwrap();
            assert!(c.wait().unwrap().success());
            let f = d.path().join("keys/k");
            assert_eq!(std::fs::read_to_string(&f).unwrap(), contents);
            assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o640);
        }
        assert_eq!(std::fs::read_dir(d.path().join("keys")).unwrap().count(), 1);
    }
}
