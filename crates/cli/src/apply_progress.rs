//! How `apply` / `build` show progress: on a terminal, one indicatif line per
//! host (spinner, host, phase, elapsed time; NAR bytes while pushing) with
//! output lines printed above the bars as `host> line`, like colmena; when
//! stderr is not a terminal, or with `--json` / `--no-progress`, plain
//! `host> line` lines on stderr (stdout stays for the report).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndeploy_deploy::apply::{ApplyProgress, HostReport, Lines, Phase};
use ndeploy_deploy::push::TargetProgress;

/// Bars on a terminal (unless `plain`), else prefixed lines.
pub fn progress(plain: bool) -> Arc<dyn ApplyProgress> {
    if plain || !std::io::stderr().is_terminal() {
        Arc::new(Lines(|host: &str, line: &str| eprintln!("{host}> {line}")))
    } else {
        Arc::new(Bars::new())
    }
}

/// One bar per host, created when the host first shows up.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new() -> Bars {
        Bars { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()), bars: Mutex::new(HashMap::new()) }
    }

    fn bar(&self, host: &str) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.entry(host.to_owned())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(style(false));
                bar.set_prefix(host.to_owned());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
            .clone()
    }
}

fn style(bytes: bool) -> ProgressStyle {
    let template = if bytes {
        "{spinner} {prefix:20!} {elapsed:>4} {msg} {bytes}/{total_bytes}"
    } else {
        "{spinner} {prefix:20!} {elapsed:>4} {wide_msg}"
    };
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl ApplyProgress for Bars {
    fn phase(&self, host: &str, phase: Phase) {
        let bar = self.bar(host);
        bar.set_style(style(false));
        bar.set_message(phase.as_str());
    }

    fn line(&self, host: &str, line: &str) {
        let _ = self.multi.println(format!("{host}> {line}"));
    }

    fn push_progress(&self, host: &str) -> Arc<dyn TargetProgress> {
        Arc::new(PushBar(self.bar(host)))
    }

    fn finished(&self, report: &HostReport) {
        let bar = self.bar(&report.host);
        bar.set_style(style(false));
        let text = report.result_text();
        let first = text.lines().next().unwrap_or_default().to_owned();
        if report.ok() { bar.finish_with_message(first) } else { bar.abandon_with_message(first) }
    }
}

/// A host's bar while its closure is pushed.
struct PushBar(ProgressBar);

impl TargetProgress for PushBar {
    fn stage(&self, stage: &str) {
        self.0.set_message(format!("pushing: {stage}"));
    }
    fn planned(&self, paths: usize, bytes: u64) {
        self.0.set_style(style(true));
        self.0.set_length(bytes);
        self.0.set_position(0);
        self.0.set_message(format!("pushing {paths} paths"));
    }
    fn bytes(&self, n: u64) {
        self.0.inc(n);
    }
}
