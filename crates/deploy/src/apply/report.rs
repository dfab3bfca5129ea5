//! The per-host report of `ndeploy apply` / `ndeploy build`: what each phase
//! did and how long it took, as a table or JSON.

use serde_json::json;

use crate::push::agent::{TransferStats, Via, target_stats};
use crate::push::report::human_bytes;

/// How a host's deployment ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Still running / not started.
    #[default]
    Pending,
    /// Built only (`ndeploy build`).
    Built,
    /// Activated (and confirmed, with magic rollback).
    Deployed,
    /// `dry-activate` ran.
    DryActivated,
    /// The host went back to its previous generation.
    RolledBack(String),
    /// Failed before anything changed on the host, or the state is unknown.
    Failed(String),
}

#[derive(Debug, Clone, Default)]
pub struct HostReport {
    pub host: String,
    pub toplevel: String,
    pub eval_secs: f64,
    pub build_secs: Option<f64>,
    pub push_secs: Option<f64>,
    pub pushed_paths: usize,
    pub pushed_bytes: u64,
    /// Where the push's time went before sending (push's connection stages
    /// and `query`), in seconds, and the seconds waited for a push slot.
    pub push_stages: Vec<(String, f64)>,
    /// How the push's bytes travelled (agent or plain, by method), when it pushed.
    pub push_transfer: Option<TransferStats>,
    pub activate_secs: Option<f64>,
    /// Health checks + confirmation.
    pub confirm_secs: Option<f64>,
    /// Of that, the health checks.
    pub health_secs: Option<f64>,
    pub keys: usize,
    pub verdict: Verdict,
    pub total_secs: f64,
}

impl HostReport {
    pub fn ok(&self) -> bool {
        matches!(self.verdict, Verdict::Built | Verdict::Deployed | Verdict::DryActivated)
    }

    pub fn result_text(&self) -> String {
        match &self.verdict {
            Verdict::Pending => "pending".into(),
            Verdict::Built => "built".into(),
            Verdict::Deployed => "deployed".into(),
            Verdict::DryActivated => "dry-activated".into(),
            Verdict::RolledBack(why) => format!("ROLLED BACK: {why}"),
            Verdict::Failed(why) => format!("FAILED: {why}"),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let (result, reason) = match &self.verdict {
            Verdict::RolledBack(w) => ("rolled-back", Some(w.clone())),
            Verdict::Failed(w) => ("failed", Some(w.clone())),
            Verdict::Built => ("built", None),
            Verdict::Deployed => ("deployed", None),
            Verdict::DryActivated => ("dry-activated", None),
            Verdict::Pending => ("pending", None),
        };
        json!({
            "host": self.host, "toplevel": self.toplevel, "result": result, "reason": reason,
            "evalSecs": self.eval_secs, "buildSecs": self.build_secs, "pushSecs": self.push_secs,
            "pushedPaths": self.pushed_paths, "pushedBytes": self.pushed_bytes,
            "activateSecs": self.activate_secs, "confirmSecs": self.confirm_secs, "healthSecs": self.health_secs, "keys": self.keys,
            "totalSecs": self.total_secs,
            "pushStages": self.push_stages.iter().map(|(n, s)| (n.clone(), json!(s))).collect::<serde_json::Map<_, _>>(),
            "pushTransfer": self.push_transfer.as_ref().map(TransferStats::to_json),
        })
    }

    /// What the push sent, agent or plain: `via agent, 12 KiB on the wire`.
    pub fn push_via(&self) -> Option<String> {
        let t = self.push_transfer.as_ref()?;
        Some(match t.via {
            Via::Agent => format!("via agent, {} on the wire", human_bytes(t.wire_bytes)),
            Via::Plain => "whole NARs".to_owned(),
        })
    }

    /// `--stats` lines of the host's push (push's format), if it pushed.
    pub fn push_stats(&self) -> Option<String> {
        self.push_transfer.as_ref().map(|t| target_stats(&self.host, self.pushed_paths, self.pushed_bytes, t))
    }
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".into(), |s| format!("{s:.2}s"))
}

/// The summary table.
pub fn table(reports: &[HostReport]) -> String {
    let mut rows = vec![[
        "HOST".to_owned(),
        "EVAL".into(),
        "BUILD".into(),
        "PUSH".into(),
        "ACTIVATE".into(),
        "CONFIRM".into(),
        "TOTAL".into(),
        "RESULT".into(),
    ]];
    for r in reports {
        let push = match r.push_secs {
            Some(s) => match r.push_transfer.as_ref().filter(|t| t.via == Via::Agent) {
                Some(t) => format!("{s:.2}s {} ({} paths, agent {})", human_bytes(r.pushed_bytes), r.pushed_paths, human_bytes(t.wire_bytes)),
                None => format!("{s:.2}s {} ({} paths)", human_bytes(r.pushed_bytes), r.pushed_paths),
            },
            None => "-".into(),
        };
        rows.push([
            r.host.clone(),
            format!("{:.2}s", r.eval_secs),
            secs(r.build_secs),
            push,
            secs(r.activate_secs),
            secs(r.confirm_secs),
            format!("{:.2}s", r.total_secs),
            r.result_text(),
        ]);
    }
    let widths: Vec<usize> = (0..8).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    let failed = reports.iter().filter(|r| !r.ok()).count();
    out.push_str(&format!("{} host(s), {} ok, {} failed or rolled back\n", reports.len(), reports.len() - failed, failed));
    out
}

/// A phase's duration in a report, if the phase ran.
type PhaseTime = fn(&HostReport) -> Option<f64>;

/// One line per phase: on how many hosts it ran, mean and max seconds.
pub fn phase_summary(reports: &[HostReport]) -> String {
    let phases: [(&str, PhaseTime); 5] = [
        ("build", |r| r.build_secs),
        ("push", |r| r.push_secs),
        ("activate", |r| r.activate_secs),
        ("confirm", |r| r.confirm_secs),
        ("host total", |r| Some(r.total_secs)),
    ];
    let mut out = String::new();
    for (name, get) in phases {
        let v: Vec<f64> = reports.iter().filter_map(get).collect();
        if v.is_empty() {
            continue;
        }
        let max = v.iter().copied().fold(0.0, f64::max);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        out.push_str(&format!("{name}: {} hosts, mean {mean:.2}s, max {max:.2}s\n", v.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_json() {
        let a = HostReport { host: "a".into(), verdict: Verdict::Deployed, push_secs: Some(1.0), pushed_bytes: 2048, ..Default::default() };
        let b = HostReport { host: "b".into(), verdict: Verdict::RolledBack("health check failed".into()), ..Default::default() };
        let t = table(&[a.clone(), b.clone()]);
        assert!(t.contains("deployed") && t.contains("ROLLED BACK: health check failed"), "{t}");
        assert!(t.ends_with("2 host(s), 1 ok, 1 failed or rolled back\n"), "{t}");
        assert_eq!(b.to_json()["result"], "rolled-back");
        assert!(b.to_json()["pushTransfer"].is_null() && b.push_stats().is_none());
        let c = HostReport {
            host: "c".into(),
            push_secs: Some(0.5),
            pushed_paths: 3,
            pushed_bytes: 4 << 20,
            push_transfer: Some(TransferStats { via: Via::Agent, wire_bytes: 40 << 10, ..Default::default() }),
            ..Default::default()
        };
        let t = table(std::slice::from_ref(&c));
        assert!(t.contains("0.50s 4.0 MiB (3 paths, agent 40.0 KiB)"), "{t}");
        assert_eq!(c.to_json()["pushTransfer"]["via"], "agent");
        assert_eq!(c.push_via().as_deref(), Some("via agent, 40.0 KiB on the wire"));
        assert!(c.push_stats().unwrap().starts_with("c: 3 paths, 4.0 MiB NAR missing; 40.0 KiB on the wire (0.98%)"), "{:?}", c.push_stats());
        assert!(a.ok() && !b.ok());
        assert_eq!(phase_summary(&[a, b]), "push: 1 hosts, mean 1.00s, max 1.00s\nhost total: 2 hosts, mean 0.00s, max 0.00s\n");
    }
}
