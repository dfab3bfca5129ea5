//! The daemon's "stderr" stream: log messages, activities and errors that
//! precede each operation's reply.
//!
//! After a request the daemon sends messages, each a `u64` tag and a body,
//! until `STDERR_LAST` (the reply follows) or `STDERR_ERROR` (the operation
//! failed; no reply follows, and the connection is ready for the next
//! operation). Log lines and activity events are handed to a callback
//! ([`LogMessage`]). `STDERR_READ`/`STDERR_WRITE` (the pre-1.23 way to tunnel
//! data) are never requested by the operations we send at protocol ≥ 1.34,
//! so they are protocol errors here.

use tokio::io::AsyncRead;

use super::wire::{MAX_LIST_LEN, MAX_STRING_LEN, read_len, read_string, read_u64};
use super::{DaemonError, Result};

pub const STDERR_NEXT: u64 = 0x6f6c_6d67;
pub const STDERR_READ: u64 = 0x6461_7461;
pub const STDERR_WRITE: u64 = 0x6461_7416;
pub const STDERR_LAST: u64 = 0x616c_7473;
pub const STDERR_ERROR: u64 = 0x6378_7470;
pub const STDERR_START_ACTIVITY: u64 = 0x5354_5254;
pub const STDERR_STOP_ACTIVITY: u64 = 0x5354_4f50;
pub const STDERR_RESULT: u64 = 0x5253_4c54;

/// A field of an activity or result message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogField {
    Int(u64),
    String(String),
}

/// One log event from the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogMessage {
    /// A plain log line (trailing newline removed).
    Next(String),
    StartActivity { id: u64, level: u64, activity_type: u64, text: String, fields: Vec<LogField>, parent: u64 },
    StopActivity { id: u64 },
    Result { id: u64, result_type: u64, fields: Vec<LogField> },
}

/// The default log sink: forward to `tracing`.
pub fn log_to_tracing(msg: LogMessage) {
    match msg {
        LogMessage::Next(line) => tracing::info!(target: "nix-daemon", "{line}"),
        LogMessage::StartActivity { text, .. } if !text.is_empty() => tracing::debug!(target: "nix-daemon", "{text}"),
        other => tracing::trace!(target: "nix-daemon", "{other:?}"),
    }
}

async fn read_fields<R: AsyncRead + Unpin + ?Sized>(r: &mut R) -> Result<Vec<LogField>> {
    let n = read_len(r, MAX_LIST_LEN, "log field list").await?;
    let mut fields = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(16));
    for _ in 0..n {
        fields.push(match read_u64(r).await? {
            0 => LogField::Int(read_u64(r).await?),
            1 => LogField::String(read_string(r, MAX_STRING_LEN, "log field").await?),
            t => return Err(DaemonError::protocol(format!("unsupported log field type {t}"))),
        });
    }
    Ok(fields)
}

/// Remove terminal escape sequences (`ESC [ ... final-byte`): Nix colours the
/// paths and hashes in its messages, which is noise outside a terminal.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, up to and including the final byte.
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Read a structured error (protocol ≥ 1.26) into [`DaemonError::Remote`].
async fn read_error<R: AsyncRead + Unpin + ?Sized>(r: &mut R) -> Result<DaemonError> {
    let kind = read_string(r, MAX_STRING_LEN, "error type").await?;
    if kind != "Error" {
        return Err(DaemonError::protocol(format!("unexpected error type '{kind}'")));
    }
    let level = read_u64(r).await?;
    let _name = read_string(r, MAX_STRING_LEN, "error name").await?;
    let message = strip_ansi(&read_string(r, MAX_STRING_LEN, "error message").await?);
    let no_pos = |r: u64| {
        if r == 0 { Ok(()) } else { Err(DaemonError::protocol("error positions are not supported")) }
    };
    no_pos(read_u64(r).await?)?;
    let n = read_len(r, MAX_LIST_LEN, "error trace list").await?;
    let mut traces = Vec::new();
    for _ in 0..n {
        no_pos(read_u64(r).await?)?;
        traces.push(strip_ansi(&read_string(r, MAX_STRING_LEN, "error trace").await?));
    }
    Ok(DaemonError::Remote { message, level, traces })
}

/// Process messages until `STDERR_LAST` (`Ok`) or `STDERR_ERROR`
/// (`Err(Remote)`); any other failure means the stream is out of sync.
pub async fn process_stderr<R>(r: &mut R, log: &mut (dyn FnMut(LogMessage) + Send)) -> Result<()>
where
    R: AsyncRead + Unpin + ?Sized,
{
    loop {
        match read_u64(r).await? {
            STDERR_LAST => return Ok(()),
            STDERR_ERROR => return Err(read_error(r).await?),
            STDERR_NEXT => {
                let s = read_string(r, MAX_STRING_LEN, "log line").await?;
                log(LogMessage::Next(s.trim_end_matches('\n').to_owned()));
            }
            STDERR_START_ACTIVITY => {
                let id = read_u64(r).await?;
                let level = read_u64(r).await?;
                let activity_type = read_u64(r).await?;
                let text = read_string(r, MAX_STRING_LEN, "activity text").await?;
                let fields = read_fields(r).await?;
                let parent = read_u64(r).await?;
                log(LogMessage::StartActivity { id, level, activity_type, text, fields, parent });
            }
            STDERR_STOP_ACTIVITY => log(LogMessage::StopActivity { id: read_u64(r).await? }),
            STDERR_RESULT => {
                let id = read_u64(r).await?;
                let result_type = read_u64(r).await?;
                let fields = read_fields(r).await?;
                log(LogMessage::Result { id, result_type, fields });
            }
            STDERR_READ | STDERR_WRITE => {
                return Err(DaemonError::protocol("the daemon asked to tunnel data (STDERR_READ/WRITE), which no operation we send uses"));
            }
            tag => return Err(DaemonError::protocol(format!("unknown message type {tag:#x} from the daemon"))),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::daemon::wire::WireBuf;

    /// An error message as the daemon sends it.
    pub fn error_msg(w: &mut WireBuf, message: &str, traces: &[&str]) {
        w.u64(STDERR_ERROR).str("Error").u64(0).str("Error").str(message).u64(0).u64(traces.len() as u64);
        for t in traces {
            w.u64(0).str(t);
        }
    }

    async fn collect(bytes: &[u8]) -> (Result<()>, Vec<LogMessage>, usize) {
        let mut log = Vec::new();
        let mut r = bytes;
        let res = process_stderr(&mut r, &mut |m| log.push(m)).await;
        (res, log, r.len())
    }

    #[tokio::test]
    async fn messages_then_last() {
        let mut w = WireBuf::new();
        w.u64(STDERR_NEXT).str("copying path\n");
        w.u64(STDERR_START_ACTIVITY).u64(7).u64(3).u64(100).str("building").u64(2).u64(0).u64(42).u64(1).str("x").u64(1);
        w.u64(STDERR_RESULT).u64(7).u64(101).u64(1).u64(1).str("line");
        w.u64(STDERR_STOP_ACTIVITY).u64(7);
        w.u64(STDERR_LAST).u64(99);
        let (res, log, rest) = collect(w.as_bytes()).await;
        res.unwrap();
        assert_eq!(rest, 8, "the reply after STDERR_LAST is left unread");
        assert_eq!(
            log,
            [
                LogMessage::Next("copying path".into()),
                LogMessage::StartActivity {
                    id: 7,
                    level: 3,
                    activity_type: 100,
                    text: "building".into(),
                    fields: vec![LogField::Int(42), LogField::String("x".into())],
                    parent: 1
                },
                LogMessage::Result { id: 7, result_type: 101, fields: vec![LogField::String("line".into())] },
                LogMessage::StopActivity { id: 7 },
            ]
        );
    }

    #[tokio::test]
    async fn errors() {
        let mut w = WireBuf::new();
        error_msg(&mut w, "path '/nix/store/x' is not valid", &["while doing it"]);
        let (res, _, rest) = collect(w.as_bytes()).await;
        match res {
            Err(DaemonError::Remote { message, traces, level: 0 }) => {
                assert_eq!(message, "path '/nix/store/x' is not valid");
                assert_eq!(traces, ["while doing it"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rest, 0);

        let mut w = WireBuf::new();
        error_msg(&mut w, "not an absolute path: '\u{1b}[35;1mnix-archive-1\u{1b}[0m'", &["in \u{1b}[1mx\u{1b}[0m"]);
        match collect(w.as_bytes()).await.0 {
            Err(DaemonError::Remote { message, traces, .. }) => {
                assert_eq!(message, "not an absolute path: 'nix-archive-1'");
                assert_eq!(traces, ["in x"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(strip_ansi("a\u{1b}[0mb\u{1b}"), "ab\u{1b}");

        let (res, _, _) = collect(WireBuf::new().u64(0x1234).as_bytes()).await;
        assert!(matches!(res, Err(DaemonError::Protocol { .. })));
        let (res, _, _) = collect(WireBuf::new().u64(STDERR_READ).u64(10).as_bytes()).await;
        assert!(matches!(res, Err(DaemonError::Protocol { .. })));
        let (res, _, _) = collect(WireBuf::new().u64(STDERR_NEXT).as_bytes()).await;
        assert!(matches!(res, Err(DaemonError::Disconnected)));
        let mut bad = WireBuf::new();
        bad.u64(STDERR_RESULT).u64(1).u64(2).u64(1).u64(9);
        let (res, _, _) = collect(bad.as_bytes()).await;
        assert!(matches!(res, Err(DaemonError::Protocol { .. })), "{res:?}");
    }
}
