//! Health checks from `config.deployment.healthChecks`, run after
//! activation and before confirming.
//!
//! A check is either `cmd` (a shell command on the target, healthy on exit
//! 0, bounded by coreutils `timeout`) or `http` (a GET from the deployer,
//! healthy on 2xx, bounded by the agent's timeout). Each gets `1 + retries`
//! attempts one second apart. The checks of a host run in order and stop at
//! the first unhealthy one, whose last error is the reason reported for the
//! rollback. Parsing is pure; the runners take the transport as arguments.

use std::time::Duration;

use serde_json::Value as Json;
use thiserror::Error;

use crate::ssh::{SshSession, shell_quote};

/// A declaration that is not a check, or a check that stayed unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HealthError {
    #[error("deployment.healthChecks is not a list")]
    NotAList,
    #[error("health check {index} needs exactly one of cmd / http")]
    Kind { index: usize },
    #[error("health check {check} failed after {attempts} attempts: {last}")]
    Unhealthy { check: String, attempts: u64, last: String },
}

/// One check as declared in the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    pub timeout_secs: u64,
    pub retries: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    Cmd(String),
    Http(String),
}

impl HealthCheck {
    /// A short description for reports.
    pub fn describe(&self) -> String {
        match &self.kind {
            CheckKind::Cmd(c) => format!("command `{c}`"),
            CheckKind::Http(u) => format!("GET {u}"),
        }
    }
}

/// The checks of a deployment's JSON (`healthChecks = [ { cmd; http; timeout; retries; } ]`).
pub fn parse(deployment: &Json) -> Result<Vec<HealthCheck>, HealthError> {
    let Some(list) = deployment.get("healthChecks") else { return Ok(Vec::new()) };
    let Some(list) = list.as_array() else { return Err(HealthError::NotAList) };
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            let s = |k: &str| c.get(k).and_then(Json::as_str).map(str::to_owned);
            let kind = match (s("cmd"), s("http")) {
                (Some(cmd), None) => CheckKind::Cmd(cmd),
                (None, Some(url)) => CheckKind::Http(url),
                _ => return Err(HealthError::Kind { index: i }),
            };
            let timeout_secs = c.get("timeout").and_then(Json::as_u64).unwrap_or(10).max(1);
            let retries = c.get("retries").and_then(Json::as_u64).unwrap_or(3).min(100);
            Ok(HealthCheck { kind, timeout_secs, retries })
        })
        .collect()
}

/// The remote command of a `cmd` check.
pub fn remote_command(cmd: &str, timeout_secs: u64, env_prefix: &str) -> String {
    format!("{env_prefix}timeout {timeout_secs} sh -c {}", shell_quote(cmd))
}

/// One HTTP GET; `Ok` on 2xx.
pub fn http_get(url: &str, timeout: Duration) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new().timeout(timeout).redirects(5).build();
    match agent.get(url).call() {
        Ok(r) if (200..300).contains(&r.status()) => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(ureq::Error::Status(code, _)) => Err(format!("HTTP {code}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Run `checks` for one host; `Err` names the first failing check.
pub async fn run_checks(session: &SshSession, checks: &[HealthCheck], env_prefix: &str) -> Result<(), HealthError> {
    for check in checks {
        let mut last = String::new();
        let mut healthy = false;
        for attempt in 0..=check.retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let r = match &check.kind {
                CheckKind::Cmd(cmd) => {
                    let script = remote_command(cmd, check.timeout_secs, env_prefix);
                    match session.exec(&session.root_script(&script)).await {
                        Ok(out) if out.status.success() => Ok(()),
                        Ok(out) => Err(format!("exit {}: {}", out.status, out.stderr_str().trim())),
                        Err(e) => Err(e.to_string()),
                    }
                }
                CheckKind::Http(url) => {
                    let (url, t) = (url.clone(), Duration::from_secs(check.timeout_secs));
                    tokio::task::spawn_blocking(move || http_get(&url, t))
                        .await
                        .unwrap_or_else(|e| Err(format!("check task failed: {e}")))
                }
            };
            match r {
                Ok(()) => {
                    healthy = true;
                    break;
                }
                Err(e) => last = e,
            }
        }
        if !healthy {
            return Err(HealthError::Unhealthy { check: check.describe(), attempts: check.retries + 1, last });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_checks() {
        let d = serde_json::json!({ "healthChecks": [
            { "cmd": "true", "http": null, "timeout": 2, "retries": 0 },
            { "cmd": null, "http": "http://x/", "timeout": 10, "retries": 3 },
        ]});
        let c = parse(&d).unwrap();
        assert_eq!(c[0], HealthCheck { kind: CheckKind::Cmd("true".into()), timeout_secs: 2, retries: 0 });
        assert_eq!(c[1].kind, CheckKind::Http("http://x/".into()));
        assert_eq!(parse(&serde_json::json!({ "healthChecks": [ { "cmd": "a", "http": "b" } ] })), Err(HealthError::Kind { index: 0 }));
        assert_eq!(parse(&serde_json::json!({ "healthChecks": "true" })), Err(HealthError::NotAList));
        assert!(parse(&serde_json::json!({})).unwrap().is_empty());
    }

    #[test]
    fn http_checks_against_a_local_server() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        let url = format!("http://127.0.0.1:{port}/");
        assert_eq!(http_get(&url, Duration::from_secs(5)), Ok(()));
        assert_eq!(http_get(&url, Duration::from_secs(5)), Err("HTTP 503".into()));
        server.join().unwrap();
    }
}
