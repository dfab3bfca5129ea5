//! Source files and positions.
//!
//! Design: every parsed text (file or `-E` string) is registered once in a
//! global, append-only table and gets a [`SourceId`]; registering the same
//! origin with the same text again returns the existing id, so the table is
//! bounded by the distinct texts a process parses, however many evaluators
//! it creates (a fleet evaluation starts one per group of hosts). A [`Pos`] is a packed
//! `(source, byte offset)` pair (8 bytes, `Copy`) stored in IR nodes; it is
//! turned into `file:line:col` and a source excerpt only when an error is
//! displayed. Sources are kept for the process lifetime so errors can outlive
//! the evaluator that produced them (the table only grows with parsed files).

use std::fmt;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

/// What a source text was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    File(String),
    /// `-E` expressions and `builtins` strings: printed as `«string»`.
    String,
    Stdin,
}

#[derive(Debug)]
pub struct Source {
    pub origin: Origin,
    pub text: Arc<str>,
    /// Byte offset of the start of every line.
    line_starts: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId(u32);

/// A position in a source: `Pos::NONE` when unknown.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Pos(u64);

#[derive(Default)]
struct Table {
    sources: Vec<Arc<Source>>,
    ids: HashMap<(Origin, Arc<str>), SourceId>,
}

fn table() -> &'static RwLock<Table> {
    static T: OnceLock<RwLock<Table>> = OnceLock::new();
    T.get_or_init(|| RwLock::new(Table::default()))
}

impl Source {
    /// Register a source text and return its id.
    pub fn register(origin: Origin, text: Arc<str>) -> SourceId {
        let key = (origin, text);
        if let Some(id) = table().read().unwrap_or_else(|e| e.into_inner()).ids.get(&key) {
            return *id;
        }
        let (origin, text) = key;
        let mut line_starts = vec![0u32];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(u32::try_from(i + 1).unwrap_or(u32::MAX));
            }
        }
        let src = Arc::new(Source { origin: origin.clone(), text: text.clone(), line_starts });
        let mut t = table().write().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = t.ids.get(&(origin.clone(), text.clone())) {
            return *id;
        }
        t.sources.push(src);
        let id = SourceId(u32::try_from(t.sources.len()).unwrap_or(u32::MAX));
        t.ids.insert((origin, text), id);
        id
    }

    pub fn get(id: SourceId) -> Option<Arc<Source>> {
        let t = table().read().unwrap_or_else(|e| e.into_inner());
        t.sources.get((id.0 as usize).checked_sub(1)?).cloned()
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, off: u32) -> (usize, usize) {
        let line = match self.line_starts.binary_search(&off) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        (line + 1, (off.saturating_sub(start)) as usize + 1)
    }

    /// Text of 1-based line `n`, without its newline.
    pub fn line(&self, n: usize) -> Option<&str> {
        let start = *self.line_starts.get(n.checked_sub(1)?)? as usize;
        let end = self.line_starts.get(n).map(|e| *e as usize - 1).unwrap_or(self.text.len());
        self.text.get(start..end.max(start))
    }

    /// The `file` of a position as Nix 2.8's `unsafeGetAttrPos` and
    /// `__curPos` report it: the path, or for an `-E`/stdin expression its
    /// source text (Nix's `Pos::file` holds the parsed string itself).
    pub fn pos_file(&self) -> String {
        match &self.origin {
            Origin::File(p) => p.clone(),
            Origin::String | Origin::Stdin => self.text.to_string(),
        }
    }

    pub fn name(&self) -> String {
        match &self.origin {
            Origin::File(p) => p.clone(),
            Origin::String => "«string»".into(),
            Origin::Stdin => "«stdin»".into(),
        }
    }
}

impl Pos {
    pub const NONE: Pos = Pos(0);

    pub fn new(src: SourceId, off: u32) -> Pos {
        Pos(((src.0 as u64) << 32) | off as u64)
    }
    pub fn source_id(self) -> Option<SourceId> {
        let id = (self.0 >> 32) as u32;
        (id != 0).then_some(SourceId(id))
    }
    pub fn offset(self) -> u32 {
        self.0 as u32
    }
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
    pub fn source(self) -> Option<Arc<Source>> {
        Source::get(self.source_id()?)
    }
    /// (file name, line, column) when known.
    pub fn resolve(self) -> Option<(Arc<Source>, usize, usize)> {
        let src = self.source()?;
        let (l, c) = src.line_col(self.offset());
        Some((src, l, c))
    }
}

impl fmt::Debug for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.resolve() {
            Some((s, l, c)) => write!(f, "{}:{l}:{c}", s.name()),
            None => f.write_str("<unknown>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col() {
        let id = Source::register(Origin::String, "ab\ncd\n\nx".into());
        let src = Source::get(id).unwrap();
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(4), (2, 2));
        assert_eq!(src.line_col(7), (4, 1));
        assert_eq!(src.line(2), Some("cd"));
        assert_eq!(src.line(3), Some(""));
        assert_eq!(src.line(4), Some("x"));
        let p = Pos::new(id, 4);
        assert_eq!(format!("{p:?}"), "«string»:2:2");
    }
}
