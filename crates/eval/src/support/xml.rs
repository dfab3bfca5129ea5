//! The `builtins.toXML` output format of C++ Nix 2.8.
//!
//! Design: [`XmlWriter`] is a streaming writer the evaluator drives while it
//! walks (and forces) a value, so this module never sees the evaluator's
//! `Value` type. It owns the exact layout rules:
//! - the document starts with `<?xml version='1.0' encoding='utf-8'?>` and a
//!   root `<expr>` element, and ends with `</expr>` and a newline;
//! - each element is on its own line, indented two spaces per level; empty
//!   elements are written `<name attr="v" />`; an opened element is always
//!   closed on its own line even when it has no children
//!   (`<attrs>\n</attrs>`);
//! - XML attributes are written sorted by name (Nix keeps them in a
//!   `std::map`), values escaped as `&quot; &lt; &gt; &amp;` and newline as
//!   `&#xA;`; every other byte is copied verbatim;
//! - floats use Nix's `%g` printing ([`format_float`]).
//!
//! Derivations: [`XmlWriter::begin_derivation`] writes `<derivation
//! drvPath=… outPath=…>` and tracks which `drvPath`s were already shown in
//! this document; it returns whether the caller should now write the
//! derivation's attributes (first occurrence of a non-empty `drvPath`) or
//! not (a `<repeated />` was written instead).
//!
//! Invariant: `finish` closes every element still open, so the output is
//! always well-formed whatever the caller's control flow; closing more
//! elements than were opened is ignored (never closes `<expr>` early).

use std::collections::HashSet;

use super::float::format_float;

/// A source position, shown only when the caller asks for locations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlPos<'a> {
    /// The file name.
    pub path: &'a str,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

/// The argument pattern of a lambda.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LambdaPattern<'a> {
    /// `x: ...`
    Var(&'a str),
    /// `{ a, b ? 1, ... } @ name: ...`
    Formals {
        /// The `@`-bound name, if any.
        name: Option<&'a str>,
        /// Whether `...` is present.
        ellipsis: bool,
        /// The formal names, in any order (written sorted).
        formals: Vec<&'a str>,
    },
}

/// Streaming writer for the `builtins.toXML` format.
#[derive(Debug)]
pub struct XmlWriter {
    out: String,
    open: Vec<&'static str>,
    drvs_seen: HashSet<String>,
}

impl Default for XmlWriter {
    fn default() -> Self {
        Self::new()
    }
}

fn escape_attr_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' => out.push_str("&#xA;"),
            c => out.push(c),
        }
    }
}

fn pos_attrs(pos: XmlPos<'_>) -> [(&'static str, String); 3] {
    [
        ("column", pos.column.to_string()),
        ("line", pos.line.to_string()),
        ("path", pos.path.to_owned()),
    ]
}

impl XmlWriter {
    /// Starts a document: the XML declaration and the opened `<expr>`.
    pub fn new() -> Self {
        let mut w = XmlWriter {
            out: String::from("<?xml version='1.0' encoding='utf-8'?>\n"),
            open: Vec::new(),
            drvs_seen: HashSet::new(),
        };
        w.open_element("expr", &[]);
        w
    }

    fn indent(&mut self) {
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
    }

    fn write_tag(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        let mut sorted: Vec<&(&str, &str)> = attrs.iter().collect();
        sorted.sort_by_key(|(k, _)| *k);
        for (key, value) in sorted {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push_str("=\"");
            escape_attr_value(&mut self.out, value);
            self.out.push('"');
        }
    }

    /// Opens `<name attrs…>`; attributes are written sorted by name.
    pub fn open_element(&mut self, name: &'static str, attrs: &[(&str, &str)]) {
        self.write_tag(name, attrs);
        self.out.push_str(">\n");
        self.open.push(name);
    }

    /// Writes `<name attrs… />`; attributes are written sorted by name.
    pub fn empty_element(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.write_tag(name, attrs);
        self.out.push_str(" />\n");
    }

    /// Closes the innermost element opened by the caller (never `<expr>`).
    pub fn end(&mut self) {
        if self.open.len() > 1
            && let Some(name) = self.open.pop()
        {
            self.indent();
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push_str(">\n");
        }
    }

    /// `<int value="…" />`
    pub fn int(&mut self, i: i64) {
        self.empty_element("int", &[("value", &i.to_string())]);
    }

    /// `<float value="…" />` with Nix's `%g` formatting.
    pub fn float(&mut self, f: f64) {
        self.empty_element("float", &[("value", &format_float(f))]);
    }

    /// `<bool value="true|false" />`
    pub fn bool(&mut self, b: bool) {
        self.empty_element("bool", &[("value", if b { "true" } else { "false" })]);
    }

    /// `<string value="…" />`
    pub fn string(&mut self, s: &str) {
        self.empty_element("string", &[("value", s)]);
    }

    /// `<path value="…" />`
    pub fn path(&mut self, p: &str) {
        self.empty_element("path", &[("value", p)]);
    }

    /// `<null />`
    pub fn null(&mut self) {
        self.empty_element("null", &[]);
    }

    /// `<unevaluated />`: thunks (non-strict mode), primops and partial
    /// primop applications.
    pub fn unevaluated(&mut self) {
        self.empty_element("unevaluated", &[]);
    }

    /// Opens `<attrs>` (a non-derivation attribute set); children are
    /// [`begin_attr`](Self::begin_attr) … [`end`](Self::end) pairs, which
    /// the caller writes in byte-wise name order.
    pub fn begin_attrs(&mut self) {
        self.open_element("attrs", &[]);
    }

    /// Opens `<attr name="…">` (with the position if given); the caller
    /// writes the value and calls [`end`](Self::end).
    pub fn begin_attr(&mut self, name: &str, pos: Option<XmlPos<'_>>) {
        match pos {
            None => self.open_element("attr", &[("name", name)]),
            Some(pos) => {
                let p = pos_attrs(pos);
                let mut attrs: Vec<(&str, &str)> =
                    p.iter().map(|(k, v)| (*k, v.as_str())).collect();
                attrs.push(("name", name));
                self.open_element("attr", &attrs);
            }
        }
    }

    /// Opens `<list>`; the caller writes the elements and calls
    /// [`end`](Self::end).
    pub fn begin_list(&mut self) {
        self.open_element("list", &[]);
    }

    /// Opens `<derivation …>` for a derivation attribute set. `drv_path` /
    /// `out_path` are the string values of its `drvPath` / `outPath`
    /// attributes, if they are strings. Returns `true` if the caller must
    /// now write the attributes (as for [`begin_attrs`](Self::begin_attrs));
    /// otherwise `<repeated />` was written. Either way the caller then
    /// calls [`end`](Self::end).
    pub fn begin_derivation(&mut self, drv_path: Option<&str>, out_path: Option<&str>) -> bool {
        let mut attrs = Vec::with_capacity(2);
        if let Some(d) = drv_path {
            attrs.push(("drvPath", d));
        }
        if let Some(o) = out_path {
            attrs.push(("outPath", o));
        }
        self.open_element("derivation", &attrs);
        let first = match drv_path {
            Some(d) if !d.is_empty() => self.drvs_seen.insert(d.to_owned()),
            _ => false,
        };
        if !first {
            self.empty_element("repeated", &[]);
        }
        first
    }

    /// Writes a complete `<function>` element for a lambda.
    pub fn function(&mut self, pos: Option<XmlPos<'_>>, pattern: &LambdaPattern<'_>) {
        match pos {
            None => self.open_element("function", &[]),
            Some(pos) => {
                let p = pos_attrs(pos);
                let attrs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
                self.open_element("function", &attrs);
            }
        }
        match pattern {
            LambdaPattern::Var(name) => self.empty_element("varpat", &[("name", name)]),
            LambdaPattern::Formals {
                name,
                ellipsis,
                formals,
            } => {
                let mut attrs = Vec::new();
                if let Some(n) = name.filter(|n| !n.is_empty()) {
                    attrs.push(("name", n));
                }
                if *ellipsis {
                    attrs.push(("ellipsis", "1"));
                }
                self.open_element("attrspat", &attrs);
                let mut sorted = formals.clone();
                sorted.sort_unstable();
                for formal in sorted {
                    self.empty_element("attr", &[("name", formal)]);
                }
                self.end();
            }
        }
        self.end();
    }

    /// Closes all open elements and returns the document.
    pub fn finish(mut self) -> String {
        while self.open.len() > 1 {
            self.end();
        }
        self.out.push_str("</expr>\n");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_matches_nix_2_8() {
        // builtins.toXML { a = 1; b = [ true null "x\"<>&\n'y" 1.5 /tmp ];
        //   c = { x, y ? 1, ... }: x; d = z: z; e = {}; f = []; g = builtins.add;
        //   h = derivation {...}; i = [ h ]; j = { a, b } @ args: 1; }
        // (h's attributes abbreviated to `all` and `name` here.)
        let drv = "/nix/store/cg640mzh547glk3j28mznachxi6zd49v-n.drv";
        let out = "/nix/store/zlg5d2pykkd015w3h53q0vq5lq1fgl62-n";
        let mut w = XmlWriter::new();
        w.begin_attrs();
        w.begin_attr("a", None);
        w.int(1);
        w.end();
        w.begin_attr("b", None);
        w.begin_list();
        w.bool(true);
        w.null();
        w.string("x\"<>&\n'y");
        w.float(1.5);
        w.path("/tmp");
        w.end();
        w.end();
        w.begin_attr("c", None);
        w.function(
            None,
            &LambdaPattern::Formals {
                name: None,
                ellipsis: true,
                formals: vec!["y", "x"],
            },
        );
        w.end();
        w.begin_attr("d", None);
        w.function(None, &LambdaPattern::Var("z"));
        w.end();
        w.begin_attr("e", None);
        w.begin_attrs();
        w.end();
        w.end();
        w.begin_attr("f", None);
        w.begin_list();
        w.end();
        w.end();
        w.begin_attr("g", None);
        w.unevaluated();
        w.end();
        w.begin_attr("h", None);
        assert!(w.begin_derivation(Some(drv), Some(out)));
        w.begin_attr("all", None);
        w.begin_list();
        assert!(!w.begin_derivation(Some(drv), Some(out)));
        w.end();
        w.end();
        w.end();
        w.begin_attr("name", None);
        w.string("n");
        w.end();
        w.end();
        w.end();
        w.begin_attr("j", None);
        w.function(
            None,
            &LambdaPattern::Formals {
                name: Some("args"),
                ellipsis: false,
                formals: vec!["a", "b"],
            },
        );
        // Left open on purpose: finish() closes it.
        let expected = format!(
            "<?xml version='1.0' encoding='utf-8'?>
<expr>
  <attrs>
    <attr name=\"a\">
      <int value=\"1\" />
    </attr>
    <attr name=\"b\">
      <list>
        <bool value=\"true\" />
        <null />
        <string value=\"x&quot;&lt;&gt;&amp;&#xA;'y\" />
        <float value=\"1.5\" />
        <path value=\"/tmp\" />
      </list>
    </attr>
    <attr name=\"c\">
      <function>
        <attrspat ellipsis=\"1\">
          <attr name=\"x\" />
          <attr name=\"y\" />
        </attrspat>
      </function>
    </attr>
    <attr name=\"d\">
      <function>
        <varpat name=\"z\" />
      </function>
    </attr>
    <attr name=\"e\">
      <attrs>
      </attrs>
    </attr>
    <attr name=\"f\">
      <list>
      </list>
    </attr>
    <attr name=\"g\">
      <unevaluated />
    </attr>
    <attr name=\"h\">
      <derivation drvPath=\"{drv}\" outPath=\"{out}\">
        <attr name=\"all\">
          <list>
            <derivation drvPath=\"{drv}\" outPath=\"{out}\">
              <repeated />
            </derivation>
          </list>
        </attr>
        <attr name=\"name\">
          <string value=\"n\" />
        </attr>
      </derivation>
    </attr>
    <attr name=\"j\">
      <function>
        <attrspat name=\"args\">
          <attr name=\"a\" />
          <attr name=\"b\" />
        </attrspat>
      </function>
    </attr>
  </attrs>
</expr>
"
        );
        assert_eq!(w.finish(), expected);
    }

    #[test]
    fn scalars_and_positions() {
        // builtins.toXML 1.0e20 and builtins.toXML "" in Nix 2.8.
        let mut w = XmlWriter::new();
        w.float(1.0e20);
        assert_eq!(
            w.finish(),
            "<?xml version='1.0' encoding='utf-8'?>\n<expr>\n  <float value=\"1e+20\" />\n</expr>\n"
        );
        let mut w = XmlWriter::new();
        w.begin_attr(
            "a",
            Some(XmlPos {
                path: "/f.nix",
                line: 3,
                column: 7,
            }),
        );
        w.end();
        w.end(); // extra end() calls never close <expr>
        assert_eq!(
            w.finish(),
            "<?xml version='1.0' encoding='utf-8'?>\n<expr>\n  <attr column=\"7\" line=\"3\" name=\"a\" path=\"/f.nix\">\n  </attr>\n</expr>\n"
        );
        // A derivation without a drvPath is always shown as repeated.
        let mut w = XmlWriter::new();
        assert!(!w.begin_derivation(None, Some("/o")));
        assert_eq!(
            w.finish(),
            "<?xml version='1.0' encoding='utf-8'?>\n<expr>\n  <derivation outPath=\"/o\">\n    <repeated />\n  </derivation>\n</expr>\n"
        );
    }

    /// Drives the writer over a [`Data`](crate::support::Data) tree, as the
    /// evaluator does over values.
    fn write_data(w: &mut XmlWriter, d: &crate::support::Data) {
        use crate::support::Data;
        match d {
            Data::Null => w.null(),
            Data::Bool(b) => w.bool(*b),
            Data::Int(i) => w.int(*i),
            Data::Float(f) => w.float(*f),
            Data::String(s) => w.string(s),
            Data::List(items) => {
                w.begin_list();
                for item in items {
                    write_data(w, item);
                }
                w.end();
            }
            Data::Attrs(attrs) => {
                w.begin_attrs();
                for (k, v) in attrs {
                    w.begin_attr(k, None);
                    write_data(w, v);
                    w.end();
                }
                w.end();
            }
        }
    }

    #[test]
    fn json_documents_match_nix_oracle() {
        use crate::support::json::parse_json;
        use crate::support::oracle::{eval_json, nix_string};
        let docs = [
            r#"{"a":1,"b":[true,null,"x\"<>&\n'y\ty",1.5,-0.1,1e20],"c":{},"d":[],"e":{"f":{"g":"é😀"}}}"#,
            r#"[[[]],{"":"","a b":"\u0001\r"},123456789.0,-9223372036854775808]"#,
            r#""just a string with \"quotes\" & <tags>""#,
            "3.5",
        ];
        let expr: String = docs
            .iter()
            .map(|d| format!("(builtins.toXML (builtins.fromJSON {})) ", nix_string(d)))
            .collect();
        let Some(nix) = eval_json(&format!("[ {expr}]")) else {
            return;
        };
        for (doc, expected) in docs.iter().zip(nix.as_array().unwrap()) {
            let mut w = XmlWriter::new();
            write_data(&mut w, &parse_json(doc).unwrap());
            assert_eq!(w.finish(), expected.as_str().unwrap(), "{doc}");
        }
    }
}
