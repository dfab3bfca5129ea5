//! Evaluation errors.
//!
//! Design: an [`EvalError`] is boxed (so `Result<Value, EvalError>` stays two
//! words) and holds an [`ErrorKind`] (the message, worded as C++ Nix words
//! it), the position of the innermost expression that failed, and a trace of
//! [`Frame`]s added while the error propagated outwards (what `--show-trace`
//! prints: "while evaluating the attribute 'x'", "while calling 'f'",
//! `addErrorContext` messages). `Display` renders it as Nix does: the message,
//! then `at file:line:col:` and the source lines with a caret.

use std::fmt;

use thiserror::Error;

use crate::source::Pos;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum ErrorKind {
    #[error("{0}")]
    Throw(String),
    #[error("evaluation aborted with the following error message: '{0}'")]
    Abort(String),
    #[error("assertion '{0}' failed")]
    Assert(String),
    #[error("undefined variable '{0}'")]
    UndefinedVar(String),
    #[error("attribute '{0}' missing")]
    MissingAttr(String),
    #[error("infinite recursion encountered")]
    InfiniteRecursion,
    #[error("value is {got} while {expected} was expected")]
    Type { got: &'static str, expected: &'static str },
    #[error("stack overflow (possible infinite recursion)")]
    MaxCallDepth,
    #[error("integer overflow in {0}")]
    Overflow(&'static str),
    #[error("division by zero")]
    DivZero,
    #[error("syntax error, {0}")]
    Parse(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Other(String),
}

/// One line of the `--show-trace` trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub pos: Pos,
    pub msg: String,
}

#[derive(Debug, Clone)]
pub struct EvalError(Box<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    kind: ErrorKind,
    pos: Pos,
    trace: Vec<Frame>,
}

pub type EvalResult<T> = Result<T, EvalError>;

impl EvalError {
    pub fn new(kind: ErrorKind) -> EvalError {
        EvalError(Box::new(Inner { kind, pos: Pos::NONE, trace: Vec::new() }))
    }
    pub fn at(kind: ErrorKind, pos: Pos) -> EvalError {
        EvalError(Box::new(Inner { kind, pos, trace: Vec::new() }))
    }
    pub fn other(msg: impl Into<String>) -> EvalError {
        EvalError::new(ErrorKind::Other(msg.into()))
    }
    pub fn type_error(got: &'static str, expected: &'static str) -> EvalError {
        EvalError::new(ErrorKind::Type { got, expected })
    }
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }
    pub fn pos(&self) -> Pos {
        self.0.pos
    }
    pub fn trace(&self) -> &[Frame] {
        &self.0.trace
    }
    /// Set the position if none is known yet.
    pub fn with_pos(mut self, pos: Pos) -> EvalError {
        if self.0.pos.is_none() {
            self.0.pos = pos;
        }
        self
    }
    pub fn add_frame(mut self, pos: Pos, msg: impl Into<String>) -> EvalError {
        self.0.trace.push(Frame { pos, msg: msg.into() });
        self
    }
    /// Catchable by `builtins.tryEval` (throw and assertion failures).
    pub fn is_catchable(&self) -> bool {
        matches!(self.0.kind, ErrorKind::Throw(_) | ErrorKind::Assert(_))
    }

    /// Render with or without the trace (`--show-trace`).
    pub fn render(&self, show_trace: bool) -> String {
        let mut out = format!("error: {}", self.0.kind);
        write_pos(&mut out, self.0.pos);
        if show_trace {
            for f in &self.0.trace {
                out.push_str("\n\n       … ");
                out.push_str(&f.msg);
                write_pos(&mut out, f.pos);
            }
        }
        out
    }
}

fn write_pos(out: &mut String, pos: Pos) {
    let Some((src, line, col)) = pos.resolve() else { return };
    out.push_str(&format!("\n\n       at {}:{line}:{col}:\n", src.name()));
    let first = line.saturating_sub(1).max(1);
    for n in first..=line + 1 {
        let Some(text) = src.line(n) else { break };
        out.push_str(&format!("\n{:>13}| {text}", n));
        if n == line {
            out.push_str(&format!("\n{:>13}| {}^", "", " ".repeat(col.saturating_sub(1))));
        }
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for EvalError {}

impl From<ErrorKind> for EvalError {
    fn from(k: ErrorKind) -> EvalError {
        EvalError::new(k)
    }
}
