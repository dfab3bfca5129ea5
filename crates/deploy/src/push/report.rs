//! The outcome of a push: one [`TargetReport`] per target, a summary table
//! for people and a JSON document for programs. Sizes come from the path
//! infos (NAR sizes), except the bytes counted on each target's TCP
//! connection (`wireBytesSent`/`wireBytesReceived`).

use std::fmt::Write as _;

use serde_json::json;

/// What happened on one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetReport {
    /// The name the user gave (host name or `ssh://` URL).
    pub name: String,
    /// Paths of the closure wanted on this target.
    pub closure_paths: usize,
    /// Of those, paths the target already had.
    pub already_valid: usize,
    /// Paths it lacked (to send, or sent in a dry run: would send).
    pub missing_paths: usize,
    /// Their NAR bytes.
    pub missing_bytes: u64,
    /// Paths sent completely (0 in a dry run).
    pub sent_paths: usize,
    /// NAR bytes handed to the connection.
    pub sent_bytes: u64,
    /// The paths it lacked, in the order they are (or would be) sent.
    pub missing: Vec<String>,
    /// Seconds until connected (SSH and daemon handshake) and until its
    /// QueryValidPaths was answered.
    pub connect_seconds: f64,
    pub query_seconds: f64,
    /// Where the connect and query time went: `config`, `tcp`, `kex`,
    /// `auth`, `exec`, `handshake`, `query`, in seconds each.
    pub stages: Vec<(String, f64)>,
    /// Bytes sent and received on the target's TCP connection (SSH framing
    /// included), for targets that finished; `None` through a ProxyJump.
    pub wire_bytes: Option<(u64, u64)>,
    pub seconds: f64,
    pub error: Option<String>,
    /// How the paths travelled and what that cost (agent or plain).
    pub transfer: super::agent::TransferStats,
}

/// The whole push.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushReport {
    pub targets: Vec<TargetReport>,
    pub dry_run: bool,
    /// Paths in the union closure.
    pub closure_paths: usize,
    /// NAR bytes produced locally (each path read once, whatever the number
    /// of targets, plus the re-reads for detached slow targets).
    pub produced_bytes: u64,
    /// Targets that fell behind and were served by a producer of their own.
    pub detached_targets: usize,
    /// Seconds until the local closure was known.
    pub closure_seconds: f64,
    pub seconds: f64,
}

impl PushReport {
    pub fn failed(&self) -> usize {
        self.targets.iter().filter(|t| t.error.is_some()).count()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let targets: Vec<serde_json::Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({
                    "target": t.name,
                    "ok": t.error.is_none(),
                    "closurePaths": t.closure_paths,
                    "alreadyValid": t.already_valid,
                    "missingPaths": t.missing_paths,
                    "missingNarBytes": t.missing_bytes,
                    "sentPaths": t.sent_paths,
                    "sentNarBytes": t.sent_bytes,
                    "missing": t.missing,
                    "connectSeconds": t.connect_seconds,
                    "querySeconds": t.query_seconds,
                    "wireBytesSent": t.wire_bytes.map(|w| w.0),
                    "wireBytesReceived": t.wire_bytes.map(|w| w.1),
                    "stages": t.stages.iter().map(|(n, s)| (n.clone(), json!(s))).collect::<serde_json::Map<_, _>>(),
                    "seconds": t.seconds,
                    "error": t.error,
                    "transfer": t.transfer.to_json(),
                })
            })
            .collect();
        json!({
            "dryRun": self.dry_run,
            "ok": self.failed() == 0,
            "closurePaths": self.closure_paths,
            "producedNarBytes": self.produced_bytes,
            "detachedTargets": self.detached_targets,
            "closureSeconds": self.closure_seconds,
            "seconds": self.seconds,
            "targets": targets,
        })
    }

    /// A table, one row per target, and a last line with the totals.
    pub fn table(&self) -> String {
        let width = self.targets.iter().map(|t| t.name.len()).max().unwrap_or(0).max(6);
        let verb = if self.dry_run { "would send" } else { "sent" };
        let mut out = format!("{:<width$}  {:>8}  {:>8}  {:>10}  {:>10}  {:>7}  status\n", "target", "closure", "valid", verb, "NAR", "secs");
        for t in &self.targets {
            let (paths, bytes) = if self.dry_run { (t.missing_paths, t.missing_bytes) } else { (t.sent_paths, t.sent_bytes) };
            let status = match &t.error {
                None => "ok".to_owned(),
                Some(e) => format!("FAILED: {}", e.lines().next().unwrap_or_default()),
            };
            let _ = writeln!(
                out,
                "{:<width$}  {:>8}  {:>8}  {:>10}  {:>10}  {:>7.2}  {status}",
                t.name,
                t.closure_paths,
                t.already_valid,
                paths,
                human_bytes(bytes),
                t.seconds
            );
        }
        let _ = writeln!(
            out,
            "{} target(s), {} failed; {} paths in the closure, {} NAR produced once, {:.2}s",
            self.targets.len(),
            self.failed(),
            self.closure_paths,
            human_bytes(self.produced_bytes),
            self.seconds
        );
        out
    }
}

impl PushReport {
    /// One line per target: where its connect and query time went
    /// (`host: tcp 0.3 ms, kex 9.1 ms, ...`), after the local closure query.
    pub fn timings(&self) -> String {
        let mut out = format!("local closure: {:.1} ms\n", self.closure_seconds * 1e3);
        for t in &self.targets {
            let stages: Vec<String> = t.stages.iter().map(|(n, s)| format!("{n} {:.1} ms", s * 1e3)).collect();
            let wire = match t.wire_bytes {
                Some((sent, received)) => format!("; on the wire {} sent, {} received", human_bytes(sent), human_bytes(received)),
                None => String::new(),
            };
            let _ = writeln!(out, "{}: {}; done at {:.1} ms{wire}", t.name, stages.join(", "), t.seconds * 1e3);
        }
        out
    }
}

/// `1.5 MiB` style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit.min(UNITS.len() - 1)]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_json() {
        let r = PushReport {
            targets: vec![
                TargetReport { name: "web1".into(), closure_paths: 10, already_valid: 4, missing_paths: 6, missing_bytes: 3 << 20, sent_paths: 6, sent_bytes: 3 << 20, wire_bytes: Some((3 << 20 | 4096, 900)), ..Default::default() },
                TargetReport { name: "db".into(), closure_paths: 10, error: Some("connection refused\nmore".into()), ..Default::default() },
            ],
            closure_paths: 10,
            produced_bytes: 3 << 20,
            ..Default::default()
        };
        let t = r.table();
        assert!(t.contains("web1") && t.contains("3.0 MiB") && t.contains("FAILED: connection refused"), "{t}");
        assert!(!t.contains("more"));
        assert!(t.contains("2 target(s), 1 failed"), "{t}");
        let j = r.to_json();
        assert_eq!(j["ok"], false);
        assert_eq!(j["targets"][0]["sentPaths"], 6);
        assert_eq!(j["targets"][1]["error"], "connection refused\nmore");
        assert_eq!((j["targets"][0]["wireBytesSent"].as_u64(), j["targets"][0]["wireBytesReceived"].as_u64()), (Some(3 << 20 | 4096), Some(900)));
        assert!(j["targets"][1]["wireBytesSent"].is_null());
        assert!(r.timings().contains("web1: ; done at 0.0 ms; on the wire 3.0 MiB sent, 900 B received"), "{}", r.timings());
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
