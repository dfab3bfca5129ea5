//! What one target's transfer cost, by method: the figures of `ndeploy push
//! --stats` and of the report's `transfer` JSON object.
//!
//! `nar_bytes` of a method are the file contents it delivered (bytes of the
//! rebuilt NARs' regular files); `sent_bytes` what it put on the connection
//! for them. A reference sends (almost) nothing for its file, a delta the
//! compressed difference, chunks the chunks the target lacked, raw the
//! compressed file. `wire_bytes` is everything written to the agent's
//! channel (frames, plans, payloads; before SSH's own framing), plus the
//! NARs of paths sent whole; `received_bytes` what the agent answered.

use std::fmt::Write as _;

use serde_json::json;

use super::super::report::{PushReport, human_bytes};

/// How the paths reached the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Via {
    /// The worker protocol (`nix-daemon --stdio`), whole NARs.
    #[default]
    Plain,
    /// The agent, file by file.
    Agent,
}

/// One method's share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MethodBytes {
    pub files: u64,
    pub nar_bytes: u64,
    pub sent_bytes: u64,
}

impl MethodBytes {
    pub fn add(&mut self, nar_bytes: u64, sent_bytes: u64) {
        self.files += 1;
        self.nar_bytes += nar_bytes;
        self.sent_bytes += sent_bytes;
    }

    fn to_json(self) -> serde_json::Value {
        json!({ "files": self.files, "narBytes": self.nar_bytes, "sentBytes": self.sent_bytes })
    }
}

/// One target's transfer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransferStats {
    pub via: Via,
    /// Why the agent was not used, or not for everything (plain push instead).
    pub fallback: Option<String>,
    /// The agent's store path was pushed to the target in this run.
    pub agent_installed: bool,
    /// Whole NARs now, but the agent is to be installed for the next push.
    pub install_deferred: bool,
    pub reference: MethodBytes,
    pub delta: MethodBytes,
    pub chunks: MethodBytes,
    pub raw: MethodBytes,
    /// Paths the agent could not rebuild and verify, sent whole instead.
    pub resent_paths: u64,
    pub resent_nar_bytes: u64,
    /// Bytes written to the agent connection, plus whole NARs sent.
    pub wire_bytes: u64,
    /// Bytes the agent sent back (manifests, answers).
    pub received_bytes: u64,
    /// Manifests of held paths: from the cache, computed locally, asked from the agent.
    pub manifests_cached: u64,
    pub manifests_local: u64,
    pub manifests_remote: u64,
    /// Seconds spent sending (after the query).
    pub seconds: f64,
}

impl TransferStats {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "via": match self.via { Via::Plain => "plain", Via::Agent => "agent" },
            "fallback": self.fallback,
            "agentInstalled": self.agent_installed,
            "reference": self.reference.to_json(),
            "delta": self.delta.to_json(),
            "chunks": self.chunks.to_json(),
            "raw": self.raw.to_json(),
            "resentPaths": self.resent_paths,
            "resentNarBytes": self.resent_nar_bytes,
            "wireBytes": self.wire_bytes,
            "receivedBytes": self.received_bytes,
            "manifests": { "cached": self.manifests_cached, "local": self.manifests_local, "remote": self.manifests_remote },
            "seconds": self.seconds,
        })
    }
}

/// `--stats`: per target, NAR bytes missing, bytes sent by method, time.
pub fn stats_table(report: &PushReport) -> String {
    report.targets.iter().map(|t| target_stats(&t.name, t.missing_paths, t.missing_bytes, &t.transfer)).collect()
}

/// One target's `--stats` lines (push's and apply's).
pub fn target_stats(name: &str, missing_paths: usize, missing_bytes: u64, s: &TransferStats) -> String {
    let mut out = String::new();
    let via = match (s.via, &s.fallback) {
        (Via::Agent, None) => "agent".to_owned(),
        (Via::Agent, Some(why)) => format!("agent, partly plain: {why}"),
        (Via::Plain, None) => "plain".to_owned(),
        (Via::Plain, Some(why)) => format!("plain: {why}"),
    };
    let share = |n: u64| if missing_bytes == 0 { 0.0 } else { 100.0 * n as f64 / missing_bytes as f64 };
    let _ = writeln!(
        out,
        "{name}: {missing_paths} paths, {} NAR missing; {} on the wire ({:.2}%), {:.2}s, via {via}",
        human_bytes(missing_bytes),
        human_bytes(s.wire_bytes),
        share(s.wire_bytes),
        s.seconds
    );
    if s.via == Via::Agent {
        for (name, m) in [("reference", s.reference), ("delta", s.delta), ("chunks", s.chunks), ("raw", s.raw)] {
            let _ = writeln!(
                out,
                "  {name:<9} {:>7} files {:>10} of contents, {:>10} sent",
                m.files,
                human_bytes(m.nar_bytes),
                human_bytes(m.sent_bytes)
            );
        }
        if s.resent_paths > 0 {
            let _ = writeln!(out, "  resent whole: {} paths, {} NAR", s.resent_paths, human_bytes(s.resent_nar_bytes));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::super::report::TargetReport;
    use super::*;

    #[test]
    fn table_and_json() {
        let mut s = TransferStats { via: Via::Agent, wire_bytes: 1 << 20, ..Default::default() };
        s.reference.add(3 << 20, 40);
        s.delta.add(1 << 20, 1000);
        let t = TargetReport { name: "web1".into(), missing_paths: 2, missing_bytes: 4 << 20, transfer: s.clone(), ..Default::default() };
        let r = PushReport { targets: vec![t], ..Default::default() };
        let table = stats_table(&r);
        assert!(table.contains("web1: 2 paths, 4.0 MiB NAR missing; 1.0 MiB on the wire (25.00%)"), "{table}");
        assert!(table.contains("reference       1 files    3.0 MiB of contents,       40 B sent"), "{table}");
        let j = s.to_json();
        assert_eq!(j["via"], "agent");
        assert_eq!(j["delta"]["sentBytes"], 1000);
    }
}
