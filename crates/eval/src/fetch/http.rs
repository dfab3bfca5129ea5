//! Downloads: the injected [`Downloader`] and the real one.
//!
//! Design: [`HttpDownloader`] is a blocking `ureq` client (rustls on the
//! `ring` provider, webpki roots) that streams the body into the given
//! writer and reports progress on stderr: a line per download, updated in
//! place on a terminal. `file://` URLs are read from the local file system.
//! Tests inject their own [`Downloader`] or serve files from a loopback
//! server.

use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

/// Fetches the bytes of a URL into `out`; the error is a message for
/// "unable to download '<url>': <message>".
pub trait Downloader: Send + Sync {
    fn download(&self, url: &str, out: &mut dyn Write) -> Result<u64, String>;
}

pub struct HttpDownloader {
    agent: ureq::Agent,
    progress: bool,
}

impl Default for HttpDownloader {
    fn default() -> Self {
        HttpDownloader::new()
    }
}

impl HttpDownloader {
    pub fn new() -> HttpDownloader {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(20))
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("ndeploy/", env!("CARGO_PKG_VERSION")))
            .build();
        HttpDownloader { agent, progress: true }
    }

    /// Without progress output (quiet callers, tests).
    pub fn quiet() -> HttpDownloader {
        HttpDownloader { progress: false, ..HttpDownloader::new() }
    }
}

impl Downloader for HttpDownloader {
    fn download(&self, url: &str, out: &mut dyn Write) -> Result<u64, String> {
        if let Some(path) = url.strip_prefix("file://") {
            let mut f = std::fs::File::open(path).map_err(|e| format!("opening '{path}': {e}"))?;
            return std::io::copy(&mut f, out).map_err(|e| e.to_string());
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err("unsupported URL scheme (only http, https and file are)".into());
        }
        let resp = self.agent.get(url).call().map_err(|e| match e {
            ureq::Error::Status(code, r) => format!("HTTP error {code} ({})", r.status_text()),
            ureq::Error::Transport(t) => t.to_string(),
        })?;
        let total: Option<u64> = resp.header("Content-Length").and_then(|v| v.parse().ok());
        let mut body = resp.into_reader();
        let mut progress = Progress::new(url, total, self.progress);
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        loop {
            let k = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.to_string()),
            };
            out.write_all(buf.get(..k).unwrap_or_default()).map_err(|e| e.to_string())?;
            n += k as u64;
            progress.update(n);
        }
        progress.done(n);
        if let Some(t) = total
            && t != n
        {
            return Err(format!("transfer ended after {n} of {t} bytes"));
        }
        Ok(n)
    }
}

/// Progress on stderr: redrawn in place on a terminal, else one line at the
/// start and one at the end.
struct Progress {
    enabled: bool,
    tty: bool,
    url: String,
    total: Option<u64>,
    last_mib: u64,
}

impl Progress {
    fn new(url: &str, total: Option<u64>, enabled: bool) -> Progress {
        let tty = std::io::stderr().is_terminal();
        if enabled && !tty {
            eprintln!("downloading '{url}'...");
        }
        Progress { enabled, tty, url: url.to_string(), total, last_mib: u64::MAX }
    }

    fn update(&mut self, n: u64) {
        if !self.enabled || !self.tty {
            return;
        }
        let mib = n / (1 << 20);
        if mib == self.last_mib {
            return;
        }
        self.last_mib = mib;
        let total = self.total.map(|t| format!("/{:.1}", t as f64 / 1048576.0)).unwrap_or_default();
        eprint!("\rdownloading '{}'... {:.1}{total} MiB", self.url, n as f64 / 1048576.0);
    }

    fn done(&self, n: u64) {
        if !self.enabled {
            return;
        }
        if self.tty {
            eprintln!("\rdownloaded '{}' ({:.1} MiB)       ", self.url, n as f64 / 1048576.0);
        } else {
            eprintln!("downloaded '{}' ({n} bytes)", self.url);
        }
    }
}
