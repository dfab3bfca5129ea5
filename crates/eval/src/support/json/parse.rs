//! `builtins.fromJSON`'s parser: a byte-level re-implementation of the
//! nlohmann-json lexer and SAX parser loop that C++ Nix 2.8 uses, producing
//! a [`Data`] tree.
//!
//! Design: a lexer that mirrors nlohmann's cursor bookkeeping (every byte
//! read, and the end of input, advances the column; looking one byte past a
//! number or literal and giving it back retreats it; a newline starts a new
//! line) and its "token string" (the bytes read since the last string or
//! number started), so error messages are nlohmann's, position and `last
//! read` included:
//! `[json.exception.parse_error.101] parse error at line 1, column 4:
//! syntax error while parsing value - unexpected ']'; expected '[', '{', or
//! a literal`. The parser is an explicit-stack loop like nlohmann's
//! `sax_parse_internal`, so no input can overflow the native stack.
//!
//! Value rules (Nix 2.8): an integer literal that fits `i64` is an int; a
//! non-negative one that fits `u64` is an int wrapped to `i64`; any other
//! number is a float, and a float that overflows is an error
//! (`out_of_range.406`); `-0` is the int 0; duplicate keys keep the last
//! value; a leading UTF-8 byte-order mark is skipped. A string value holding
//! a NUL is an error, as in current Nix (Nix 2.8 silently cut it at the NUL,
//! its strings being C strings); NULs in object keys are kept, as Nix 2.8 keeps them.
//!
//! Invariant: nesting deeper than [`MAX_DEPTH`] is an error (Nix 2.8 has no
//! limit), so recursive consumers of the resulting [`Data`] are safe.

use std::collections::BTreeMap;

use super::JsonError;
use crate::support::data::{Data, MAX_DEPTH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Uninitialized,
    True,
    False,
    Null,
    String,
    Number,
    BeginArray,
    BeginObject,
    EndArray,
    EndObject,
    NameSeparator,
    ValueSeparator,
    ParseError,
    EndOfInput,
    LiteralOrValue,
}

impl Token {
    /// nlohmann's `token_type_name`.
    fn name(self) -> &'static str {
        match self {
            Token::Uninitialized => "<uninitialized>",
            Token::True => "true literal",
            Token::False => "false literal",
            Token::Null => "null literal",
            Token::String => "string literal",
            Token::Number => "number literal",
            Token::BeginArray => "'['",
            Token::BeginObject => "'{'",
            Token::EndArray => "']'",
            Token::EndObject => "'}'",
            Token::NameSeparator => "':'",
            Token::ValueSeparator => "','",
            Token::ParseError => "<parse error>",
            Token::EndOfInput => "end of input",
            Token::LiteralOrValue => "'[', '{', or a literal",
        }
    }
}

struct Lexer<'a> {
    input: &'a [u8],
    /// Index of the next byte to read.
    next: usize,
    /// The last byte read; `None` is the end of input.
    current: Option<u8>,
    lines: usize,
    column: usize,
    /// Bytes read in total (the end of input counts as one when read).
    total: usize,
    /// Bytes read since the current string/number started.
    token_string: Vec<u8>,
    error: &'static str,
    /// The decoded string of a `Token::String`.
    string: Vec<u8>,
    /// The raw text of a `Token::Number`.
    number: Vec<u8>,
    number_is_integer: bool,
}

impl<'a> Lexer<'a> {
    fn get(&mut self) -> Option<u8> {
        self.total += 1;
        self.column += 1;
        self.current = self.input.get(self.next).copied();
        if let Some(c) = self.current {
            self.next += 1;
            self.token_string.push(c);
            if c == b'\n' {
                self.lines += 1;
                self.column = 0;
            }
        }
        self.current
    }

    fn unget(&mut self) {
        self.total = self.total.saturating_sub(1);
        if self.column == 0 {
            self.lines = self.lines.saturating_sub(1);
        } else {
            self.column -= 1;
        }
        if self.current.is_some() {
            self.next -= 1;
            self.token_string.pop();
        }
    }

    fn reset(&mut self) {
        self.token_string.clear();
        self.token_string.extend(self.current);
    }

    fn fail(&mut self, message: &'static str) -> Token {
        self.error = message;
        Token::ParseError
    }

    fn scan(&mut self) -> Token {
        if self.total == 0 && !self.skip_bom() {
            return self.fail("invalid BOM; must be 0xEF 0xBB 0xBF if given");
        }
        while matches!(self.get(), Some(b' ' | b'\t' | b'\n' | b'\r')) {}
        match self.current {
            Some(b'[') => Token::BeginArray,
            Some(b']') => Token::EndArray,
            Some(b'{') => Token::BeginObject,
            Some(b'}') => Token::EndObject,
            Some(b':') => Token::NameSeparator,
            Some(b',') => Token::ValueSeparator,
            Some(b't') => self.scan_literal(b"true", Token::True),
            Some(b'f') => self.scan_literal(b"false", Token::False),
            Some(b'n') => self.scan_literal(b"null", Token::Null),
            Some(b'"') => self.scan_string(),
            Some(b'-' | b'0'..=b'9') => self.scan_number(),
            None => Token::EndOfInput,
            Some(_) => self.fail("invalid literal"),
        }
    }

    /// Skips a UTF-8 byte-order mark at the start of the input.
    fn skip_bom(&mut self) -> bool {
        if self.get() == Some(0xEF) {
            return self.get() == Some(0xBB) && self.get() == Some(0xBF);
        }
        self.unget();
        true
    }

    fn scan_literal(&mut self, text: &[u8], token: Token) -> Token {
        for &expected in text.iter().skip(1) {
            if self.get() != Some(expected) {
                return self.fail("invalid literal");
            }
        }
        token
    }

    fn hex4(&mut self) -> Option<u32> {
        let mut value = 0;
        for _ in 0..4 {
            let digit = char::from(self.get()?).to_digit(16)?;
            value = value * 16 + digit;
        }
        Some(value)
    }

    fn push_char(&mut self, code: u32) {
        let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
        let mut buf = [0; 4];
        self.string
            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }

    fn scan_string(&mut self) -> Token {
        self.reset();
        self.string.clear();
        loop {
            let Some(c) = self.get() else {
                return self.fail("invalid string: missing closing quote");
            };
            match c {
                b'"' => return Token::String,
                b'\\' => {
                    let simple = match self.get() {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'/') => b'/',
                        Some(b'b') => 8,
                        Some(b'f') => 12,
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'u') => {
                            if let Err(message) = self.scan_unicode_escape() {
                                return self.fail(message);
                            }
                            continue;
                        }
                        _ => {
                            return self
                                .fail("invalid string: forbidden character after backslash");
                        }
                    };
                    self.string.push(simple);
                }
                0..=0x1f => {
                    self.error = CONTROL_ERRORS[usize::from(c)];
                    return Token::ParseError;
                }
                c => self.string.push(c),
            }
        }
    }

    /// After `\u`: four hex digits, and for a high surrogate `\u` and the
    /// low surrogate.
    fn scan_unicode_escape(&mut self) -> Result<(), &'static str> {
        const HEX: &str = "invalid string: '\\u' must be followed by 4 hex digits";
        let code = self.hex4().ok_or(HEX)?;
        match code {
            0xD800..=0xDBFF => {
                if self.get() != Some(b'\\') || self.get() != Some(b'u') {
                    return Err(
                        "invalid string: surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF",
                    );
                }
                let low = self.hex4().ok_or(HEX)?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(
                        "invalid string: surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF",
                    );
                }
                self.push_char(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00));
            }
            0xDC00..=0xDFFF => {
                return Err("invalid string: surrogate U+DC00..U+DFFF must follow U+D800..U+DBFF");
            }
            code => self.push_char(code),
        }
        Ok(())
    }

    fn digits(&mut self) {
        while matches!(self.get(), Some(b'0'..=b'9')) {}
    }

    fn scan_number(&mut self) -> Token {
        self.reset();
        self.number_is_integer = true;
        if self.current == Some(b'-') {
            match self.get() {
                Some(b'0'..=b'9') => {}
                _ => return self.fail("invalid number; expected digit after '-'"),
            }
        }
        if self.current == Some(b'0') {
            self.get();
        } else {
            self.digits();
        }
        if self.current == Some(b'.') {
            self.number_is_integer = false;
            if !matches!(self.get(), Some(b'0'..=b'9')) {
                return self.fail("invalid number; expected digit after '.'");
            }
            self.digits();
        }
        if matches!(self.current, Some(b'e' | b'E')) {
            self.number_is_integer = false;
            match self.get() {
                Some(b'+' | b'-') => {
                    if !matches!(self.get(), Some(b'0'..=b'9')) {
                        return self.fail("invalid number; expected digit after exponent sign");
                    }
                }
                Some(b'0'..=b'9') => {}
                _ => {
                    return self.fail("invalid number; expected '+', '-', or digit after exponent");
                }
            }
            self.digits();
        }
        self.unget();
        self.number.clear();
        self.number.extend_from_slice(&self.token_string);
        Token::Number
    }

    /// nlohmann's `get_token_string`: control characters as `<U+XXXX>`,
    /// incomplete UTF-8 sequences as U+FFFD.
    fn token_string(&self) -> String {
        let mut out = String::new();
        for chunk in self.token_string.utf8_chunks() {
            for c in chunk.valid().chars() {
                if (c as u32) < 0x20 {
                    out.push_str(&format!("<U+{:04X}>", c as u32));
                } else {
                    out.push(c);
                }
            }
            if !chunk.invalid().is_empty() {
                // A lone byte of a multi-byte character (read before the
                // error): Nix prints it raw, which reads as U+FFFD.
                out.push(char::REPLACEMENT_CHARACTER);
            }
        }
        out
    }
}

/// The "invalid string: control character" message for each byte < 0x20.
const CONTROL_ERRORS: [&str; 32] = [
    "invalid string: control character U+0000 (NUL) must be escaped to \\u0000",
    "invalid string: control character U+0001 (SOH) must be escaped to \\u0001",
    "invalid string: control character U+0002 (STX) must be escaped to \\u0002",
    "invalid string: control character U+0003 (ETX) must be escaped to \\u0003",
    "invalid string: control character U+0004 (EOT) must be escaped to \\u0004",
    "invalid string: control character U+0005 (ENQ) must be escaped to \\u0005",
    "invalid string: control character U+0006 (ACK) must be escaped to \\u0006",
    "invalid string: control character U+0007 (BEL) must be escaped to \\u0007",
    "invalid string: control character U+0008 (BS) must be escaped to \\u0008 or \\b",
    "invalid string: control character U+0009 (HT) must be escaped to \\u0009 or \\t",
    "invalid string: control character U+000A (LF) must be escaped to \\u000A or \\n",
    "invalid string: control character U+000B (VT) must be escaped to \\u000B",
    "invalid string: control character U+000C (FF) must be escaped to \\u000C or \\f",
    "invalid string: control character U+000D (CR) must be escaped to \\u000D or \\r",
    "invalid string: control character U+000E (SO) must be escaped to \\u000E",
    "invalid string: control character U+000F (SI) must be escaped to \\u000F",
    "invalid string: control character U+0010 (DLE) must be escaped to \\u0010",
    "invalid string: control character U+0011 (DC1) must be escaped to \\u0011",
    "invalid string: control character U+0012 (DC2) must be escaped to \\u0012",
    "invalid string: control character U+0013 (DC3) must be escaped to \\u0013",
    "invalid string: control character U+0014 (DC4) must be escaped to \\u0014",
    "invalid string: control character U+0015 (NAK) must be escaped to \\u0015",
    "invalid string: control character U+0016 (SYN) must be escaped to \\u0016",
    "invalid string: control character U+0017 (ETB) must be escaped to \\u0017",
    "invalid string: control character U+0018 (CAN) must be escaped to \\u0018",
    "invalid string: control character U+0019 (EM) must be escaped to \\u0019",
    "invalid string: control character U+001A (SUB) must be escaped to \\u001A",
    "invalid string: control character U+001B (ESC) must be escaped to \\u001B",
    "invalid string: control character U+001C (FS) must be escaped to \\u001C",
    "invalid string: control character U+001D (GS) must be escaped to \\u001D",
    "invalid string: control character U+001E (RS) must be escaped to \\u001E",
    "invalid string: control character U+001F (US) must be escaped to \\u001F",
];

/// A container being filled.
enum Frame {
    List(Vec<Data>),
    Object(BTreeMap<String, Data>, String),
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    token: Token,
}

impl Parser<'_> {
    fn next_token(&mut self) -> Token {
        self.token = self.lexer.scan();
        self.token
    }

    /// nlohmann's `parse_error.101` message for the current token.
    fn syntax_error(&self, context: &str, expected: Token) -> JsonError {
        let mut msg = format!(
            "[json.exception.parse_error.101] parse error at line {}, column {}: syntax error while parsing {context} - ",
            self.lexer.lines + 1,
            self.lexer.column
        );
        if self.token == Token::ParseError {
            msg.push_str(self.lexer.error);
            msg.push_str("; last read: '");
            msg.push_str(&self.lexer.token_string());
            msg.push('\'');
        } else {
            msg.push_str("unexpected ");
            msg.push_str(self.token.name());
        }
        if expected != Token::Uninitialized {
            msg.push_str("; expected ");
            msg.push_str(expected.name());
        }
        JsonError { message: msg }
    }

    fn number(&self) -> Result<Data, JsonError> {
        let text = std::str::from_utf8(&self.lexer.number).unwrap_or("");
        if self.lexer.number_is_integer {
            if text.starts_with('-') {
                if let Ok(i) = text.parse::<i64>() {
                    return Ok(Data::Int(i));
                }
            } else if let Ok(u) = text.parse::<u64>() {
                // Nix 2.8 stores nlohmann's unsigned integers with a
                // wrapping cast.
                return Ok(Data::Int(u as i64));
            }
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Data::Float(f)),
            _ => Err(JsonError {
                message: format!(
                    "[json.exception.out_of_range.406] number overflow parsing '{}'",
                    self.lexer.token_string()
                ),
            }),
        }
    }

    /// A string token's text.
    fn string(&mut self) -> String {
        let bytes = std::mem::take(&mut self.lexer.string);
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// A string value: Nix strings cannot hold NUL (current Nix's error;
    /// the NUL shows as U+2400 SYMBOL FOR NULL).
    fn string_value(&mut self) -> Result<String, JsonError> {
        let s = self.string();
        if s.contains('\0') {
            return Err(JsonError {
                message: format!(
                    "input string '{}' cannot be represented as Nix string because it contains null bytes",
                    s.replace('\0', "\u{2400}")
                ),
            });
        }
        Ok(s)
    }

    /// Reads an object key and its `:` (after `{` or `,`), leaving the
    /// first token of the value read.
    fn object_key(&mut self) -> Result<String, JsonError> {
        if self.token != Token::String {
            return Err(self.syntax_error("object key", Token::String));
        }
        let key = self.string();
        if self.next_token() != Token::NameSeparator {
            return Err(self.syntax_error("object separator", Token::NameSeparator));
        }
        self.next_token();
        Ok(key)
    }

    fn parse(&mut self) -> Result<Data, JsonError> {
        let mut stack: Vec<Frame> = Vec::new();
        self.next_token();
        loop {
            // Parse one value starting at the current token.
            let mut value = match self.token {
                Token::BeginArray | Token::BeginObject if stack.len() >= MAX_DEPTH => {
                    return Err(JsonError {
                        message: format!(
                            "JSON nesting deeper than {MAX_DEPTH} levels is not supported"
                        ),
                    });
                }
                Token::BeginObject => {
                    if self.next_token() == Token::EndObject {
                        Some(Data::Attrs(BTreeMap::new()))
                    } else {
                        let key = self.object_key()?;
                        stack.push(Frame::Object(BTreeMap::new(), key));
                        None
                    }
                }
                Token::BeginArray => {
                    if self.next_token() == Token::EndArray {
                        Some(Data::List(Vec::new()))
                    } else {
                        stack.push(Frame::List(Vec::new()));
                        None
                    }
                }
                Token::Number => Some(self.number()?),
                Token::True => Some(Data::Bool(true)),
                Token::False => Some(Data::Bool(false)),
                Token::Null => Some(Data::Null),
                Token::String => Some(Data::String(self.string_value()?)),
                Token::ParseError => return Err(self.syntax_error("value", Token::Uninitialized)),
                _ => return Err(self.syntax_error("value", Token::LiteralOrValue)),
            };
            // Store finished values and close finished containers.
            while let Some(done) = value.take() {
                let Some(frame) = stack.last_mut() else {
                    if self.next_token() != Token::EndOfInput {
                        return Err(self.syntax_error("value", Token::EndOfInput));
                    }
                    return Ok(done);
                };
                match frame {
                    Frame::List(items) => {
                        items.push(done);
                        match self.next_token() {
                            Token::ValueSeparator => {
                                self.next_token();
                            }
                            Token::EndArray => {
                                if let Some(Frame::List(items)) = stack.pop() {
                                    value = Some(Data::List(items));
                                }
                            }
                            _ => return Err(self.syntax_error("array", Token::EndArray)),
                        }
                    }
                    Frame::Object(attrs, key) => {
                        attrs.insert(std::mem::take(key), done);
                        match self.next_token() {
                            Token::ValueSeparator => {
                                self.next_token();
                                let next_key = self.object_key()?;
                                if let Some(Frame::Object(_, key)) = stack.last_mut() {
                                    *key = next_key;
                                }
                            }
                            Token::EndObject => {
                                if let Some(Frame::Object(attrs, _)) = stack.pop() {
                                    value = Some(Data::Attrs(attrs));
                                }
                            }
                            _ => return Err(self.syntax_error("object", Token::EndObject)),
                        }
                    }
                }
            }
        }
    }
}

/// Parses a JSON document as Nix 2.8's `builtins.fromJSON`.
pub(super) fn parse(input: &str) -> Result<Data, JsonError> {
    let mut parser = Parser {
        lexer: Lexer {
            input: input.as_bytes(),
            next: 0,
            current: None,
            lines: 0,
            column: 0,
            total: 0,
            token_string: Vec::new(),
            error: "",
            string: Vec::new(),
            number: Vec::new(),
            number_is_integer: true,
        },
        token: Token::Uninitialized,
    };
    parser.parse()
}
