//! Derivations as JSON, in the shape of Nix 2.8's `nix show-derivation`:
//!
//! ```text
//! {"/nix/store/…-x.drv": {"outputs": {"out": {"path": …, "hashAlgo": …, "hash": …}},
//!   "inputSrcs": […], "inputDrvs": {"/nix/store/…drv": ["out"]}, "system": …,
//!   "builder": …, "args": […], "env": {…}}}
//! ```
//!
//! Field order follows Nix (serde structs keep declaration order), maps are in
//! key order and store paths in printed order. [`show_derivations`] prints
//! byte-identically to Nix: two-space indentation and Nix's string escaping,
//! which spells backspace and form feed as `\u0008`/`\u000c` (serde_json's
//! default is `\b`/`\f`).

use std::collections::BTreeMap;
use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, PrettyFormatter};

use super::{Derivation, DerivationError, DerivationOutput};
use crate::store_path::{StoreDir, StorePath};

#[derive(Debug, Serialize)]
pub struct JsonOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(rename = "hashAlgo", skip_serializing_if = "Option::is_none")]
    pub hash_algo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impure: Option<bool>,
}

/// One derivation's JSON object.
#[derive(Debug, Serialize)]
pub struct JsonDerivation<'a> {
    pub outputs: BTreeMap<&'a str, JsonOutput>,
    #[serde(rename = "inputSrcs")]
    pub input_srcs: Vec<String>,
    /// Keyed by printed path, so key order is printed order.
    #[serde(rename = "inputDrvs")]
    pub input_drvs: BTreeMap<String, Vec<&'a str>>,
    pub system: &'a str,
    pub builder: &'a str,
    pub args: &'a [String],
    pub env: &'a BTreeMap<String, String>,
}

impl Derivation {
    /// This derivation's object in `nix show-derivation` output.
    pub fn to_json(&self, store_dir: &StoreDir) -> Result<JsonDerivation<'_>, DerivationError> {
        let mut outputs = BTreeMap::new();
        for (name, output) in &self.outputs {
            let path = output.path(store_dir, &self.name, name)?.map(|p| store_dir.display(&p));
            let algo = Some(output.hash_algo_field()).filter(|a| !a.is_empty());
            let json = match output {
                DerivationOutput::InputAddressed { .. } | DerivationOutput::Deferred => {
                    JsonOutput { path, hash_algo: None, hash: None, impure: None }
                }
                DerivationOutput::CAFixed { .. } => {
                    JsonOutput { path, hash_algo: algo, hash: Some(output.hash_field()), impure: None }
                }
                DerivationOutput::CAFloating { .. } => JsonOutput { path: None, hash_algo: algo, hash: None, impure: None },
                DerivationOutput::Impure { .. } => {
                    JsonOutput { path: None, hash_algo: algo, hash: None, impure: Some(true) }
                }
            };
            outputs.insert(name.as_str(), json);
        }
        Ok(JsonDerivation {
            outputs,
            input_srcs: self.input_srcs.iter().map(|p| store_dir.display(p)).collect(),
            input_drvs: self
                .input_drvs
                .iter()
                .map(|(p, outs)| (store_dir.display(p), outs.iter().map(String::as_str).collect()))
                .collect(),
            system: &self.system,
            builder: &self.builder,
            args: &self.args,
            env: &self.env,
        })
    }
}

/// `nix show-derivation` output for `drvs` (drv path, derivation), exactly as
/// Nix prints it, trailing newline included.
pub fn show_derivations(store_dir: &StoreDir, drvs: &[(StorePath, &Derivation)]) -> Result<String, DerivationError> {
    let mut root = BTreeMap::new();
    for (path, drv) in drvs {
        root.insert(store_dir.display(path), drv.to_json(store_dir)?);
    }
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, NixFormatter(PrettyFormatter::new()));
    root.serialize(&mut ser).map_err(|e| DerivationError::Json(e.to_string()))?;
    out.push(b'\n');
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Forward layout methods of [`Formatter`] to the wrapped [`PrettyFormatter`].
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method<W: ?Sized + io::Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> io::Result<()> {
            self.0.$method(w $(, $arg)*)
        })*
    };
}

/// serde_json's pretty printer with Nix's escapes for control characters.
struct NixFormatter(PrettyFormatter<'static>);

impl Formatter for NixFormatter {
    fn write_char_escape<W: ?Sized + io::Write>(&mut self, w: &mut W, e: CharEscape) -> io::Result<()> {
        match e {
            CharEscape::Backspace => w.write_all(b"\\u0008"),
            CharEscape::FormFeed => w.write_all(b"\\u000c"),
            other => self.0.write_char_escape(w, other),
        }
    }
    forward! {
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
        begin_object();
        end_object();
        begin_object_key(first: bool);
        begin_object_value();
        end_object_value();
    }
}
