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
//!
//! Keys uploaded before an activation can be undone: with an undo directory
//! (the activation's run directory) each install first copies the file it
//! replaces into `RUN/keys-undo/` (`cp -pP`: contents, mode, owner) and
//! prepends the matching restore command (`mv` back, or `rm` when the key is
//! new) to `RUN/keys-undo.sh`, whose last line deletes the backups. Running
//! that script ([`restore_script`]) undoes the uploads newest first; the
//! activation agent runs it when it rolls back, and deletes the backups
//! instead when the activation is confirmed.

use std::sync::{Arc, Mutex};

use serde_json::Value as Json;
use thiserror::Error;
use tokio::io::AsyncWriteExt;

use crate::ssh::{ExitStatus, SshError, SshSession, shell_quote};

/// Why a key could not be declared, read, uploaded or restored. Variants
/// carry names, paths and remote messages only, never a key's contents.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("key {attr} needs exactly one of text / keyFile")]
    Source { attr: String },
    #[error("key {attr}: invalid file name '{name}'")]
    Name { attr: String, name: String },
    #[error("key {attr}: invalid user or group")]
    Owner { attr: String },
    #[error("key {attr}: permissions '{permissions}' are not octal")]
    Permissions { attr: String, permissions: String },
    #[error("key {attr}: destDir '{dest_dir}' is not absolute")]
    DestDir { attr: String, dest_dir: String },
    #[error("key {name}: cannot read {file}: {source}")]
    ReadFile { name: String, file: String, source: std::io::Error },
    #[error("key {name}: {source}")]
    Ssh { name: String, source: SshError },
    #[error("key {name}: sending failed: {source}")]
    Send { name: String, source: std::io::Error },
    #[error("key {name} ({path}): remote install failed ({status}): {stderr}")]
    Install { name: String, path: String, status: ExitStatus, stderr: String },
    #[error("restoring the previous keys failed: {0}")]
    Restore(String),
}

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
    pub fn contents(&self) -> Result<Vec<u8>, KeyError> {
        match &self.source {
            KeySource::Text(t) => Ok(t.as_bytes().to_vec()),
            KeySource::File(f) => {
                std::fs::read(f).map_err(|source| KeyError::ReadFile { name: self.name.clone(), file: f.clone(), source })
            }
        }
    }
}

fn valid_word(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('-') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The keys of a deployment's JSON, validated (names, owners and modes end
/// up in shell commands; everything is also quoted).
pub fn parse(deployment: &Json) -> Result<Vec<Key>, KeyError> {
    let Some(keys) = deployment.get("keys").and_then(Json::as_object) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for (attr, k) in keys {
        let s = |f: &str| k.get(f).and_then(Json::as_str).map(str::to_owned);
        let name = s("name").unwrap_or_else(|| attr.clone());
        let source = match (s("text"), s("keyFile")) {
            (Some(t), None) => KeySource::Text(t),
            (None, Some(f)) => KeySource::File(f),
            _ => return Err(KeyError::Source { attr: attr.clone() }),
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
            return Err(KeyError::Name { attr: attr.clone(), name: key.name });
        }
        if !valid_word(&key.user) || !valid_word(&key.group) {
            return Err(KeyError::Owner { attr: attr.clone() });
        }
        if !(3..=4).contains(&key.permissions.len()) || !key.permissions.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(KeyError::Permissions { attr: attr.clone(), permissions: key.permissions });
        }
        if !key.dest_dir.starts_with('/') {
            return Err(KeyError::DestDir { attr: attr.clone(), dest_dir: key.dest_dir });
        }
        out.push(key);
    }
    Ok(out)
}

/// Where an upload records how to undo itself: the run directory and the
/// key's number in this run.
#[derive(Debug, Clone, Copy)]
pub struct Undo<'a> {
    pub run_dir: &'a str,
    pub index: usize,
}

/// The undo script of a run directory.
fn undo_file(run_dir: &str) -> String {
    format!("{}/keys-undo.sh", run_dir.trim_end_matches('/'))
}

/// The commands that back up `dest` and prepend its restore command to the
/// undo script (ending in `&& `, to go before the rename).
fn undo_commands(dest: &str, undo: Undo<'_>) -> String {
    let run = undo.run_dir.trim_end_matches('/');
    let backups = format!("{run}/keys-undo");
    let backup = format!("{backups}/{:04}", undo.index);
    let q = shell_quote;
    let cleanup = format!("rm -rf {} {}", q(&backups), q(&undo_file(run)));
    let restore = format!("mv -f {} {}", q(&backup), q(dest));
    let remove = format!("rm -f {}", q(dest));
    format!(
        "mkdir -p {b} && u={u} && {{ [ -e \"$u\" ] || printf '%s\\n' {cleanup} > \"$u\"; }} && \
         if [ -e {d} ] || [ -L {d} ]; then cp -pP {d} {bk} && l={restore}; else l={remove}; fi && \
         {{ printf '%s\\n' \"$l\"; cat \"$u\"; }} > \"$u.tmp\" && mv -f \"$u.tmp\" \"$u\" && ",
        b = q(&backups),
        u = q(&undo_file(run)),
        d = q(dest),
        bk = q(&backup),
        cleanup = q(&cleanup),
        restore = q(&restore),
        remove = q(&remove),
    )
}

/// The remote script that installs one key from stdin (recording how to
/// undo it with `undo`).
pub fn install_script(key: &Key, target_root: &str, undo: Option<Undo<'_>>) -> String {
    let root = target_root.trim_end_matches('/');
    let dir = shell_quote(&format!("{root}{}", key.dest_dir));
    let dest = format!("{root}{}", key.path());
    let undo = undo.map(|u| undo_commands(&dest, u)).unwrap_or_default();
    format!(
        "umask 077 && mkdir -p {dir} && t=$(mktemp {dir}/.ndeploy-key.XXXXXX) && \
         {{ cat > \"$t\" && chown {u}:{g} \"$t\" && chmod {m} \"$t\" && {undo}mv -f \"$t\" {dest}; }} || {{ rm -f \"$t\"; exit 1; }}",
        u = shell_quote(&key.user),
        g = shell_quote(&key.group),
        m = key.permissions,
        dest = shell_quote(&dest),
    )
}

/// Undo the uploads recorded in `run_dir` (nothing when there are none).
pub fn restore_script(run_dir: &str) -> String {
    format!("u={}; [ ! -e \"$u\" ] || sh \"$u\"", shell_quote(&undo_file(run_dir)))
}

/// Upload `keys` over `session`; stops at the first failure. With
/// `undo_run_dir`, each upload records how to undo it (see the module doc).
pub async fn upload(
    session: &SshSession,
    keys: &[Key],
    target_root: &str,
    undo_run_dir: Option<&str>,
) -> Result<usize, KeyError> {
    for (index, key) in keys.iter().enumerate() {
        let contents = key.contents()?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let undo = undo_run_dir.map(|run_dir| Undo { run_dir, index });
        let cmd = session.root_script(&install_script(key, target_root, undo));
        let stream = session
            .exec_stream(&cmd, move |d| {
                if let Ok(mut s) = sink.lock() {
                    s.extend_from_slice(d);
                }
            })
            .await
            .map_err(|source| KeyError::Ssh { name: key.name.clone(), source })?;
        let (_reader, mut writer, mut exit) = stream.into_split();
        let sent = async {
            writer.write_all(&contents).await?;
            writer.shutdown().await
        }
        .await;
        let status = exit.wait().await;
        let err = String::from_utf8_lossy(&stderr.lock().map(|s| s.clone()).unwrap_or_default()).trim().to_owned();
        if let Err(source) = sent {
            return Err(KeyError::Send { name: key.name.clone(), source });
        }
        if !status.success() {
            return Err(KeyError::Install { name: key.name.clone(), path: key.path(), status, stderr: err });
        }
    }
    Ok(keys.len())
}

/// Undo the uploads recorded in `run_dir` over `session`.
pub async fn restore(session: &SshSession, run_dir: &str) -> Result<(), KeyError> {
    let out = session.exec(&session.root_script(&restore_script(run_dir))).await.map_err(|e| KeyError::Restore(e.to_string()))?;
    if out.status.success() { Ok(()) } else { Err(KeyError::Restore(out.stderr_str().trim().to_owned())) }
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
        let s = install_script(&k[0], "/tmp/r", None);
        assert!(s.contains("/tmp/r/run/keys") && s.contains("chmod 0640") && !s.contains("s3cret"), "{s}");
        for (field, bad) in [("name", "../x"), ("permissions", "rw"), ("user", "a b"), ("destDir", "rel")] {
            let mut d2 = d.clone();
            d2["keys"]["api"][field] = bad.into();
            let e = parse(&d2).unwrap_err();
            assert!(!format!("{e} {e:?}").contains("s3cret"), "{field}={bad}: {e}");
        }
        let mut d3 = d.clone();
        d3["keys"]["api"]["keyFile"] = "/nonexistent/key".into();
        assert!(matches!(parse(&d3), Err(KeyError::Source { .. })));
        d3["keys"]["api"]["text"] = serde_json::Value::Null;
        let e = parse(&d3).unwrap()[0].contents().unwrap_err();
        assert!(matches!(&e, KeyError::ReadFile { file, .. } if file == "/nonexistent/key"), "{e}");
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
                .args(["-c", &install_script(&key, &d.path().display().to_string(), None)])
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

    /// Installs recorded in a run directory are undone newest first: a
    /// replaced key gets its old contents and mode back, a new key is removed,
    /// and the backups are deleted.
    #[test]
    fn undo_restores_replaced_and_removes_new_keys() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().display().to_string();
        let run_dir = d.path().join("run").display().to_string();
        let key = |name: &str, mode: &str| Key {
            name: name.into(),
            source: KeySource::Text(String::new()),
            dest_dir: "/keys dir".into(),
            user: "root".into(),
            group: "root".into(),
            permissions: mode.into(),
            upload_at: "pre-activation".into(),
        };
        let install = |k: &Key, contents: &str, undo: Option<Undo<'_>>| {
            let mut c = std::process::Command::new("sh")
                .args(["-c", &install_script(k, &root, undo)])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            c.stdin.take().unwrap().write_all(contents.as_bytes()).unwrap();
            assert!(c.wait().unwrap().success());
        };
        let (old, new) = (key("old", "0600"), key("new", "0644"));
        install(&old, "v1", None);
        let keys = d.path().join("keys dir");
        install(&old, "v2", Some(Undo { run_dir: &run_dir, index: 0 }));
        install(&new, "n", Some(Undo { run_dir: &run_dir, index: 1 }));
        install(&key("old", "0644"), "v3", Some(Undo { run_dir: &run_dir, index: 2 }));
        assert_eq!(std::fs::read_to_string(keys.join("old")).unwrap(), "v3");
        assert!(d.path().join("run/keys-undo.sh").exists());
        let st = std::process::Command::new("sh").args(["-c", &restore_script(&run_dir)]).status().unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read_to_string(keys.join("old")).unwrap(), "v1");
        assert_eq!(std::fs::metadata(keys.join("old")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!keys.join("new").exists());
        let left: Vec<_> = std::fs::read_dir(d.path().join("run")).unwrap().collect();
        assert!(left.is_empty(), "backups deleted: {left:?}");
        // Nothing recorded: restoring does nothing.
        assert!(std::process::Command::new("sh").args(["-c", &restore_script(&run_dir)]).status().unwrap().success());
    }
}

