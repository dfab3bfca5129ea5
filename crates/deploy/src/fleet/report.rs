//! Per-host results and their two output forms.
//!
//! JSON lines: one complete object per host, fields in a fixed order
//! (`host`, `drvPath`, `outPath` — or `value` with `--attr` —, `targetHost`,
//! `tags`, `error`, `evalMs`), absent values as `null`. Table: one row per
//! host sorted by name, then every failed host's full error message. Only
//! `evalMs` depends on the run; everything else is determined by the fleet.

use serde_json::Value as Json;

/// The outcome of evaluating one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostResult {
    pub host: String,
    pub drv_path: Option<String>,
    pub out_path: Option<String>,
    /// The `--attr` value.
    pub value: Option<Json>,
    pub target_host: Option<String>,
    pub tags: Vec<String>,
    /// The rendered Nix error (message, position, source excerpt).
    pub error: Option<String>,
    pub eval_ms: u64,
}

impl HostResult {
    pub fn new(host: &str) -> HostResult {
        HostResult {
            host: host.to_string(),
            drv_path: None,
            out_path: None,
            value: None,
            target_host: None,
            tags: Vec::new(),
            error: None,
            eval_ms: 0,
        }
    }

    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// One JSON line (without the newline). `attr_mode` selects `value`
    /// instead of `drvPath`/`outPath`.
    pub fn to_json_line(&self, attr_mode: bool) -> String {
        let s = |v: &Option<String>| v.as_ref().map_or(Json::Null, |x| Json::String(x.clone()));
        let mut fields: Vec<(&str, Json)> = vec![("host", Json::String(self.host.clone()))];
        if attr_mode {
            fields.push(("value", self.value.clone().unwrap_or(Json::Null)));
        } else {
            fields.push(("drvPath", s(&self.drv_path)));
            fields.push(("outPath", s(&self.out_path)));
        }
        fields.push(("targetHost", s(&self.target_host)));
        fields.push(("tags", Json::Array(self.tags.iter().cloned().map(Json::String).collect())));
        fields.push(("error", s(&self.error)));
        fields.push(("evalMs", Json::from(self.eval_ms)));
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}:{v}", Json::String((*k).to_string()))).collect();
        format!("{{{}}}", body.join(","))
    }
}

/// The human table for `results` (sorted by host here), followed by the
/// errors in full.
pub fn table(results: &[HostResult], attr_mode: bool) -> String {
    let mut rows: Vec<&HostResult> = results.iter().collect();
    rows.sort_by(|a, b| a.host.cmp(&b.host));
    let last = if attr_mode { "VALUE" } else { "DRV PATH" };
    let mut cells: Vec<[String; 4]> = vec![["HOST".into(), "TARGET".into(), "TAGS".into(), last.into()]];
    for r in &rows {
        let last = match (&r.error, attr_mode) {
            (Some(e), _) => format!("error: {}", first_line(e)),
            (None, true) => r.value.as_ref().map(Json::to_string).unwrap_or_default(),
            (None, false) => r.drv_path.clone().unwrap_or_default(),
        };
        cells.push([r.host.clone(), r.target_host.clone().unwrap_or_else(|| "-".into()), tags_cell(&r.tags), last]);
    }
    let mut widths = [0usize; 3];
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for [host, target, tags, last] in &cells {
        out.push_str(&format!("{host:<w0$}  {target:<w1$}  {tags:<w2$}  {last}\n", w0 = widths[0], w1 = widths[1], w2 = widths[2]));
    }
    for r in rows.iter().filter(|r| r.failed()) {
        out.push_str(&format!("\n{}: {}\n", r.host, r.error.as_deref().unwrap_or_default().trim_end()));
    }
    out
}

fn tags_cell(tags: &[String]) -> String {
    if tags.is_empty() { "-".into() } else { tags.iter().map(|t| format!("@{t}")).collect::<Vec<_>>().join(",") }
}

fn first_line(s: &str) -> &str {
    let s = s.trim_start();
    let s = s.strip_prefix("error: ").unwrap_or(s);
    s.lines().next().unwrap_or_default()
}

/// A one-line summary: "4 hosts evaluated, 1 failed (web-2)".
pub fn summary(results: &[HostResult]) -> String {
    let mut failed: Vec<&str> = results.iter().filter(|r| r.failed()).map(|r| r.host.as_str()).collect();
    failed.sort_unstable();
    let n = results.len();
    let hosts = if n == 1 { "host" } else { "hosts" };
    if failed.is_empty() {
        format!("{n} {hosts} evaluated")
    } else {
        format!("{n} {hosts} evaluated, {} failed ({})", failed.len(), failed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(host: &str) -> HostResult {
        HostResult {
            drv_path: Some(format!("/nix/store/aaa-{host}.drv")),
            out_path: Some(format!("/nix/store/aaa-{host}")),
            target_host: Some(format!("{host}.example")),
            tags: vec!["web".into()],
            eval_ms: 12,
            ..HostResult::new(host)
        }
    }

    #[test]
    fn json_line_fields_in_order() {
        let line = ok("web-1").to_json_line(false);
        assert_eq!(
            line,
            r#"{"host":"web-1","drvPath":"/nix/store/aaa-web-1.drv","outPath":"/nix/store/aaa-web-1","targetHost":"web-1.example","tags":["web"],"error":null,"evalMs":12}"#
        );
        let mut bad = HostResult::new("db \"1\"");
        bad.error = Some("error: boom\n\n       at x.nix:1:1:".into());
        let v: Json = serde_json::from_str(&bad.to_json_line(true)).unwrap();
        assert_eq!(v["host"], "db \"1\"");
        assert_eq!(v["value"], Json::Null);
        assert_eq!(v["error"], "error: boom\n\n       at x.nix:1:1:");
    }

    #[test]
    fn table_sorted_with_errors_after() {
        let mut bad = HostResult::new("a-bad");
        bad.error = Some("error: attribute 'x' missing\n\n       at /f.nix:3:5:".into());
        let t = table(&[ok("web-2"), ok("web-1"), bad.clone()], false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("HOST "), "{t}");
        assert!(lines[1].starts_with("a-bad ") && lines[1].ends_with("error: attribute 'x' missing"), "{t}");
        assert!(lines[2].starts_with("web-1 ") && lines[3].starts_with("web-2 "), "{t}");
        assert!(t.contains("\na-bad: error: attribute 'x' missing\n\n       at /f.nix:3:5:\n"), "{t}");
        assert_eq!(summary(&[ok("x"), bad]), "2 hosts evaluated, 1 failed (a-bad)");
    }
}
