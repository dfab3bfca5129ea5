//! Activation on a target: a new system profile generation, then
//! `bin/switch-to-configuration GOAL`, guarded by the magic-rollback agent.
//!
//! Design: everything that must survive a broken connection runs on the
//! target in a detached agent (`agent.sh`, started with `setsid nohup`):
//! it takes a lock (`flock`, so two deployments never interleave), remembers
//! the current profile generation, sets the profile with `nix-env -p PROFILE
//! --set TOPLEVEL` (through the target's own Nix), runs the activation, and
//! then — when the goal asks for magic rollback — waits for a `confirm` file
//! that ndeploy writes over a NEW SSH connection. No confirmation within the
//! timeout, an `abort` file (a failed health check), or a failed activation
//! all end the same way: the previous generation is switched back to and
//! activated again, and the new generation is deleted. The agent writes its
//! outcome to `result` last (write-then-rename), so a reader sees a complete
//! word: `confirmed`, `done`, `rolled-back REASON` or `failed REASON`.
//!
//! Goal `test` activates without a new generation (as `nixos-rebuild
//! test`); its rollback re-activates what the profile points to.
//!
//! Keys uploaded for this run (`keys-undo.sh` in the run directory, see
//! [`crate::keys`]) are put back as they were before any rollback and when
//! the agent fails before activating; a confirmed (or finished) activation
//! deletes their backups instead.
//!
//! The SSH session that starts the agent follows the activation log and ends
//! with one marker line `@ndeploy-status CODE`; activation output streams
//! to the caller as it is written. All file names live under
//! `$NDEPLOY_TARGET_ROOT/var/lib/ndeploy/agent/RUN_ID`.
//!
//! The command texts are built by pure functions (tested without a target);
//! the async functions only run them over an [`SshSession`]. Run
//! directories older than a week are removed when the next one starts.

use std::time::Duration;

use thiserror::Error;

use crate::ssh::{OutputKind, SshError, SshSession, shell_quote};

/// The agent script, shipped inside the activation command.
pub const AGENT_SCRIPT: &str = include_str!("agent.sh");
/// The marker line that ends the activation stream.
pub const STATUS_MARKER: &str = "@ndeploy-status ";
/// The default system profile on targets.
pub const SYSTEM_PROFILE: &str = "/nix/var/nix/profiles/system";

#[derive(Debug, Error)]
pub enum ActivateError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("unknown activation goal '{0}' (expected switch, boot, test or dry-activate)")]
    Goal(String),
    #[error("the activation agent did not report a status (output ended without the status line)")]
    NoStatus,
}

/// What `switch-to-configuration` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Switch,
    Boot,
    Test,
    DryActivate,
}

impl Goal {
    pub fn parse(s: &str) -> Result<Goal, ActivateError> {
        Ok(match s {
            "switch" => Goal::Switch,
            "boot" => Goal::Boot,
            "test" => Goal::Test,
            "dry-activate" => Goal::DryActivate,
            _ => return Err(ActivateError::Goal(s.to_owned())),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Goal::Switch => "switch",
            Goal::Boot => "boot",
            Goal::Test => "test",
            Goal::DryActivate => "dry-activate",
        }
    }

    /// Whether magic rollback applies by default (the running system changes).
    pub fn rollback_by_default(self) -> bool {
        matches!(self, Goal::Switch | Goal::Test)
    }
}

/// Waits (confirmation timeout, waiting for a result) are capped at this
/// many seconds (136 years): the scripts count tenths of a second in the
/// shell's 64-bit arithmetic, which a larger value would overflow (a
/// negative count: no wait at all).
pub const MAX_WAIT_SECS: u64 = 1 << 32;

/// Settings of one activation.
#[derive(Debug, Clone)]
pub struct ActivateOptions {
    pub goal: Goal,
    /// Wait for confirmation, roll back without it.
    pub magic_rollback: bool,
    pub confirm_timeout: Duration,
    /// `NDEPLOY_TARGET_ROOT` on the target (empty on real machines).
    pub target_root: String,
    pub profile: String,
    /// Names this deployment's run directory on the target.
    pub run_id: String,
}

impl ActivateOptions {
    pub fn new(goal: Goal, run_id: &str) -> ActivateOptions {
        ActivateOptions {
            goal,
            magic_rollback: goal.rollback_by_default(),
            confirm_timeout: Duration::from_secs(30),
            target_root: String::new(),
            profile: SYSTEM_PROFILE.to_owned(),
            run_id: run_id.to_owned(),
        }
    }

    /// The run directory on the target.
    pub fn run_dir(&self) -> String {
        format!("{}/var/lib/ndeploy/agent/{}", self.target_root.trim_end_matches('/'), self.run_id)
    }

    /// `export NDEPLOY_TARGET_ROOT=…; ` when a root is set.
    pub fn env_prefix(&self) -> String {
        if self.target_root.is_empty() {
            String::new()
        } else {
            format!("NDEPLOY_TARGET_ROOT={}; export NDEPLOY_TARGET_ROOT; ", shell_quote(&self.target_root))
        }
    }
}

/// The script that starts the agent and follows its log until the
/// activation's exit status is known: every poll prints the bytes the log
/// gained since the last one, so nothing is lost or repeated; an `echo`
/// ends a last unterminated line before the status marker.
pub fn start_script(opts: &ActivateOptions, toplevel: &str) -> String {
    let run = shell_quote(&opts.run_dir());
    let args = [
        opts.goal.as_str().to_owned(),
        shell_quote(toplevel),
        shell_quote(&opts.profile),
        run.clone(),
        opts.confirm_timeout.as_secs().clamp(1, MAX_WAIT_SECS).to_string(),
        if opts.magic_rollback { "1" } else { "0" }.to_owned(),
    ]
    .join(" ");
    format!(
        "{env}run={run}; mkdir -p \"$run\" || exit 1; : > \"$run/log\"\n\
         find \"$(dirname \"$run\")\" -mindepth 1 -maxdepth 1 -type d -mtime +7 -exec rm -rf {{}} + 2>/dev/null\n\
         cat > \"$run/agent.sh\" <<'NDEPLOY_AGENT_EOF'\n{AGENT_SCRIPT}NDEPLOY_AGENT_EOF\n\
         setsid nohup sh \"$run/agent.sh\" {args} </dev/null >\"$run/agent.out\" 2>&1 &\n\
         agent=$!\n\
         off=0\n\
         flush() {{ sz=$(wc -c < \"$run/log\"); if [ \"$sz\" -gt \"$off\" ]; then tail -c +$((off + 1)) \"$run/log\" | head -c $((sz - off)); off=$sz; fi; }}\n\
         while [ ! -e \"$run/status\" ]; do\n\
           flush\n\
           kill -0 \"$agent\" 2>/dev/null || [ -e \"$run/status\" ] || {{ echo; echo '{STATUS_MARKER}agent-died'; exit 1; }}\n\
           sleep 0.05\n\
         done\n\
         flush; echo\n\
         echo \"{STATUS_MARKER}$(cat \"$run/status\")\"\n",
        env = opts.env_prefix(),
    )
}

/// Wait up to `secs` for the agent's result and print it (`pending` if none).
pub fn result_script(run_dir: &str, secs: u64) -> String {
    let run = shell_quote(run_dir);
    format!(
        "n={n}; while [ ! -e {run}/result ] && [ $n -gt 0 ]; do sleep 0.1; n=$((n - 1)); done; \
         cat {run}/result 2>/dev/null || echo pending",
        n = secs.min(MAX_WAIT_SECS) * 10
    )
}

/// Wait up to `secs` for the activation's exit status and print it (`pending` if none).
pub fn status_script(run_dir: &str, secs: u64) -> String {
    result_script(run_dir, secs).replace("/result", "/status")
}

/// Write `file` (`confirm` or `abort`) in the run directory, then wait for the result.
pub fn signal_script(run_dir: &str, file: &str, reason: &str, wait_secs: u64) -> String {
    format!("echo {} > {}/{file}; {}", shell_quote(reason), shell_quote(run_dir), result_script(run_dir, wait_secs))
}

/// How an activation ended from ndeploy's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Activated (and confirmed when magic rollback was on).
    Done,
    /// The target went back to the previous generation.
    RolledBack(String),
    /// Nothing changed (lock busy, profile could not be set).
    Failed(String),
    /// No result seen; the agent on the target decides by itself.
    Unknown(String),
}

impl Outcome {
    /// Parse the agent's `result` file.
    pub fn parse(result: &str) -> Outcome {
        let result = result.trim();
        let (word, rest) = result.split_once(' ').unwrap_or((result, ""));
        match word {
            "confirmed" | "done" => Outcome::Done,
            "rolled-back" => Outcome::RolledBack(rest.to_owned()),
            "failed" => Outcome::Failed(rest.to_owned()),
            _ => Outcome::Unknown(format!("agent result '{result}'")),
        }
    }
}

/// The activation's exit status as reported by the start script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// `0` on success; else an exit code or a word (`busy`, `profile`, `agent-died`).
    pub status: String,
}

impl Started {
    pub fn succeeded(&self) -> bool {
        self.status == "0"
    }
}

/// Start the agent and stream the activation's output lines to `on_line`.
pub async fn start(
    session: &SshSession,
    opts: &ActivateOptions,
    toplevel: &str,
    mut on_line: impl FnMut(&str),
) -> Result<Started, ActivateError> {
    let mut status = None;
    // The script ends the log with an `echo`: an empty line right before the
    // marker is that, not output.
    let mut held_empty = false;
    let cmd = session.root_script(&start_script(opts, toplevel));
    let exit = session
        .exec_lines(&cmd, |kind, line| {
            if kind == OutputKind::Stdout {
                if let Some(s) = line.strip_prefix(STATUS_MARKER) {
                    status = Some(s.trim().to_owned());
                    held_empty = false;
                    return;
                }
                if std::mem::take(&mut held_empty) {
                    on_line("");
                }
                if line.is_empty() {
                    held_empty = true;
                    return;
                }
            }
            on_line(line)
        })
        .await?;
    match status {
        Some(status) => Ok(Started { status }),
        None if !exit.success() => Err(ActivateError::Ssh(SshError::Remote {
            host: session.host().to_owned(),
            message: format!("the activation command ended with {exit}"),
        })),
        None => Err(ActivateError::NoStatus),
    }
}

/// Wait for the activation's exit status over `session` (after the
/// connection that started it broke).
pub async fn wait_status(session: &SshSession, run_dir: &str, secs: u64) -> Result<Started, ActivateError> {
    let out = session.exec(&session.root_script(&status_script(run_dir, secs))).await?;
    Ok(Started { status: out.stdout_str().trim().to_owned() })
}

/// Wait for the agent's outcome over `session`.
pub async fn wait_result(session: &SshSession, run_dir: &str, secs: u64) -> Result<Outcome, ActivateError> {
    let out = session.exec(&session.root_script(&result_script(run_dir, secs))).await?;
    Ok(Outcome::parse(&out.stdout_str()))
}

/// Confirm over `session` (which must be a new connection) and wait for the result.
pub async fn confirm(session: &SshSession, run_dir: &str) -> Result<Outcome, ActivateError> {
    let out = session.exec(&session.root_script(&signal_script(run_dir, "confirm", "ok", 10))).await?;
    Ok(Outcome::parse(&out.stdout_str()))
}

/// Ask the agent to roll back now (e.g. a health check failed) and wait for it.
pub async fn abort(session: &SshSession, run_dir: &str, reason: &str, wait_secs: u64) -> Result<Outcome, ActivateError> {
    let out = session.exec(&session.root_script(&signal_script(run_dir, "abort", reason, wait_secs))).await?;
    Ok(Outcome::parse(&out.stdout_str()))
}

/// `dry-activate`: run the toplevel's script directly; nothing is recorded.
pub async fn dry_activate(
    session: &SshSession,
    opts: &ActivateOptions,
    toplevel: &str,
    mut on_line: impl FnMut(&str),
) -> Result<bool, ActivateError> {
    let script = format!("{}{}/bin/switch-to-configuration dry-activate", opts.env_prefix(), shell_quote(toplevel));
    let exit = session.exec_lines(&session.root_script(&script), |_, l| on_line(l)).await?;
    Ok(exit.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals() {
        for g in ["switch", "boot", "test", "dry-activate"] {
            assert_eq!(Goal::parse(g).unwrap().as_str(), g);
        }
        assert!(Goal::parse("reboot").is_err());
        assert!(Goal::Switch.rollback_by_default() && Goal::Test.rollback_by_default());
        assert!(!Goal::Boot.rollback_by_default() && !Goal::DryActivate.rollback_by_default());
    }

    #[test]
    fn outcomes() {
        assert_eq!(Outcome::parse("confirmed\n"), Outcome::Done);
        assert_eq!(Outcome::parse("rolled-back confirmation-timeout"), Outcome::RolledBack("confirmation-timeout".into()));
        assert_eq!(Outcome::parse("failed setting-profile"), Outcome::Failed("setting-profile".into()));
        assert!(matches!(Outcome::parse("pending"), Outcome::Unknown(_)));
    }

    #[test]
    fn run_dir_and_env() {
        let mut o = ActivateOptions::new(Goal::Switch, "r1");
        assert_eq!(o.run_dir(), "/var/lib/ndeploy/agent/r1");
        assert_eq!(o.env_prefix(), "");
        o.target_root = "/tmp/t root/".into();
        assert_eq!(o.run_dir(), "/tmp/t root/var/lib/ndeploy/agent/r1");
        assert!(o.env_prefix().starts_with("NDEPLOY_TARGET_ROOT='/tmp/t root/';"));
    }

    /// A fake `nix-env` (PROFILE-N-link generations like Nix) in `DIR/bin`,
    /// and toplevels whose switch-to-configuration logs to `DIR/activations`.
    fn fixture() -> (tempfile::TempDir, std::path::PathBuf, impl Fn(&str, i32) -> String) {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().to_path_buf();
        let bin = p.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let nix_env = r#"#!/bin/sh
p=$2; shift 2
case "$1" in
  --set) n=$(ls "$(dirname "$p")" | sed -n "s/^$(basename "$p")-\([0-9]*\)-link$/\1/p" | sort -n | tail -1); n=$((${n:-0}+1));
         ln -sfn "$2" "$p-$n-link"; ln -sfn "$(basename "$p")-$n-link" "$p" ;;
  --switch-generation) ln -sfn "$(basename "$p")-$2-link" "$p" ;;
  --delete-generations) rm -f "$p-$2-link" ;;
esac
"#;
        std::fs::write(bin.join("nix-env"), nix_env).unwrap();
        std::fs::set_permissions(bin.join("nix-env"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = p.clone();
        let mk_top = move |name: &str, rc: i32| {
            let top = dir.join(name);
            std::fs::create_dir_all(top.join("bin")).unwrap();
            let s = top.join("bin/switch-to-configuration");
            let body = format!("#!/bin/sh\necho \"$1 {name}\" >> {}/activations\necho line one\nprintf 'no newline'\nexit {rc}\n", dir.display());
            std::fs::write(&s, body).unwrap();
            std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
            top.display().to_string()
        };
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        (d, std::path::PathBuf::from(path), mk_top)
    }

    /// The start script run locally: output streams, then the status marker.
    #[test]
    fn start_script_streams_and_reports() {
        let (d, path, mk_top) = fixture();
        let top = mk_top("t", 0);
        let mut o = ActivateOptions::new(Goal::Test, "run-1");
        o.target_root = d.path().join("root").display().to_string();
        o.profile = d.path().join("profiles/system").display().to_string();
        o.magic_rollback = false;
        let out = std::process::Command::new("sh").args(["-c", &start_script(&o, &top)]).env("PATH", &path).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text, format!("line one\nno newline\n{STATUS_MARKER}0\n"));
        let status = std::process::Command::new("sh").args(["-c", &status_script(&o.run_dir(), 5)]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&status.stdout).trim(), "0");
        let result = std::process::Command::new("sh").args(["-c", &result_script(&o.run_dir(), 5)]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&result.stdout).trim(), "done");
    }

    /// The longest confirmation timeout still waits for confirmation (a
    /// larger one overflowed the agent's count of tenths of a second and
    /// rolled back at once), and waiting that long does not overflow here.
    #[test]
    fn longest_confirmation_timeout_waits() {
        let mut o = ActivateOptions::new(Goal::Switch, "r");
        o.confirm_timeout = Duration::MAX;
        assert!(start_script(&o, "/top").contains(&format!(" {MAX_WAIT_SECS} 1 <")));
        assert!(result_script("/run", u64::MAX).starts_with(&format!("n={};", MAX_WAIT_SECS * 10)));
        let (d, path, mk_top) = fixture();
        let top = mk_top("t", 0);
        let profile = d.path().join("profiles/system").display().to_string();
        let run_dir = d.path().join("agent/1");
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::write(run_dir.join("confirm"), "ok").unwrap();
        let timeout = MAX_WAIT_SECS.to_string();
        let st = std::process::Command::new("sh")
            .args(["-c", AGENT_SCRIPT, "agent", "switch", &top, &profile, &run_dir.display().to_string(), &timeout, "1"])
            .env("PATH", &path)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read_to_string(run_dir.join("result")).unwrap().trim(), "confirmed");
    }

    /// The agent run locally: activation failure rolls back to the previous
    /// generation; confirmation keeps the new one; no confirmation rolls back.
    #[test]
    fn agent_rolls_back_and_confirms() {
        let (d, path, mk_top) = fixture();
        let p = d.path();
        let (good, bad, newer) = (mk_top("good", 0), mk_top("bad", 1), mk_top("newer", 0));
        let profile = p.join("profiles/system").display().to_string();
        let run = |top: &str, id: &str, wait: &str, confirm: bool| {
            let run_dir = p.join("agent").join(id);
            std::fs::create_dir_all(&run_dir).unwrap();
            if confirm {
                std::fs::write(run_dir.join("confirm"), "ok").unwrap();
            }
            let st = std::process::Command::new("sh")
                .args(["-c", AGENT_SCRIPT, "agent", "switch", top, &profile, &run_dir.display().to_string(), "1", wait])
                .env("PATH", &path)
                .status()
                .unwrap();
            assert!(st.success());
            std::fs::read_to_string(run_dir.join("result")).unwrap().trim().to_owned()
        };
        assert_eq!(run(&good, "1", "0", false), "done");
        assert_eq!(run(&bad, "2", "1", false), "rolled-back activation-failed");
        let current = std::fs::canonicalize(&profile).unwrap();
        assert_eq!(current.display().to_string(), good);
        assert!(!p.join("profiles/system-2-link").exists(), "the failed generation is deleted");
        assert_eq!(run(&newer, "3", "1", false), "rolled-back confirmation-timeout");
        assert_eq!(std::fs::canonicalize(&profile).unwrap().display().to_string(), good);
        assert_eq!(run(&newer, "4", "1", true), "confirmed");
        assert_eq!(std::fs::canonicalize(&profile).unwrap().display().to_string(), newer);
        // Another activation holds the lock: nothing happens.
        let run_dir = p.join("agent/5");
        std::fs::create_dir_all(&run_dir).unwrap();
        let st = std::process::Command::new("flock")
            .arg(p.join("agent/lock"))
            .args(["sh", "-c", AGENT_SCRIPT, "agent", "switch", &good, &profile, &run_dir.display().to_string(), "1", "1"])
            .env("PATH", &path)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read_to_string(run_dir.join("result")).unwrap().trim(), "failed another-activation-running");
        assert_eq!(std::fs::read_to_string(run_dir.join("status")).unwrap().trim(), "busy");
        assert_eq!(std::fs::canonicalize(&profile).unwrap().display().to_string(), newer);
        let log = std::fs::read_to_string(p.join("activations")).unwrap();
        assert_eq!(log, "switch good\nswitch bad\nswitch good\nswitch newer\nswitch good\nswitch newer\n");
    }
}
