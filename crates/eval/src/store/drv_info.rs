//! Finding the derivations in a value, as `nix-instantiate` does (Nix's
//! `getDerivations` in `get-drvs.cc`), and printing them.
//!
//! Rules (Nix 2.8): a value is auto-called, then a derivation (an attribute
//! set with `type = "derivation"`) is taken as is; a list contributes each
//! element (derivations, or lists/sets searched further); an attribute set
//! contributes, in name order, each attribute whose name matches
//! `[A-Za-z_][A-Za-z0-9-_+]*` and is a derivation, and descends into nested
//! sets only when they say `recurseForDerivations = true`. The same set met
//! twice (`rec { x = drv; y = x; }`) is listed once. Anything else is an error.

use std::collections::HashSet;

use ndeploy_store::derivation::json::show_derivations;
use ndeploy_store::store_path::StorePath;

use super::ComputingStore;
use crate::error::{EvalError, EvalResult};
use crate::eval::{CoerceOpts, Evaluator};
use crate::value::{Attrs, Value};

/// One derivation found in a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrvInfo {
    /// The attribute path it was found at (`a.b`, `0`), empty at the root.
    pub attr_path: String,
    pub name: String,
    pub drv_path: String,
    pub output_name: String,
}

/// Auto-calls a value with `--arg`/`--argstr` (Nix's `autoCallFunction`).
pub type AutoCall<'a> = dyn Fn(&Evaluator, Value) -> EvalResult<Value> + 'a;

fn is_derivation(ev: &Evaluator, a: &Attrs) -> EvalResult<bool> {
    match a.get_str("type") {
        Some(t) => Ok(matches!(ev.force(t)?, Value::String(s) if s.as_str() == "derivation")),
        None => Ok(false),
    }
}

fn valid_attr_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'))
}

fn join(prefix: &str, s: impl std::fmt::Display) -> String {
    if prefix.is_empty() { s.to_string() } else { format!("{prefix}.{s}") }
}

struct Walk<'a> {
    ev: &'a Evaluator,
    auto: &'a AutoCall<'a>,
    done: HashSet<usize>,
    /// Attribute path, name and attributes of each derivation found.
    found: Vec<(String, String, Attrs)>,
}

impl Walk<'_> {
    /// Nix's `getDerivation`: true when `v` is not a derivation. The name
    /// is evaluated as soon as a derivation is found, as Nix does (and
    /// while its attributes are still in the cache).
    fn derivation(&mut self, v: &Value, path: &str) -> EvalResult<bool> {
        let Value::Attrs(a) = self.ev.force(v)? else { return Ok(true) };
        if !is_derivation(self.ev, &a)? {
            return Ok(true);
        }
        if self.done.insert(a.ptr_id()) {
            let name = string_attr(self.ev, &a, "name")?.ok_or_else(|| EvalError::other("derivation name missing"))?;
            self.found.push((path.to_owned(), name, a));
        }
        Ok(false)
    }

    fn walk(&mut self, v: Value, path: &str) -> EvalResult<()> {
        let v = (self.auto)(self.ev, v)?;
        let v = self.ev.force(&v)?;
        if !self.derivation(&v, path)? {
            return Ok(());
        }
        match v {
            Value::Attrs(a) => {
                for attr in a.iter() {
                    let n = attr.name.as_str();
                    if !valid_attr_name(n) {
                        continue;
                    }
                    let p = join(path, n);
                    if self.derivation(&attr.value, &p)?
                        && let Value::Attrs(inner) = self.ev.force(&attr.value)?
                        && let Some(r) = inner.get_str("recurseForDerivations")
                        && self.ev.force_bool(r)?
                    {
                        self.walk(attr.value.clone(), &p)?;
                    }
                }
                Ok(())
            }
            Value::List(l) => {
                for (i, x) in l.iter().enumerate() {
                    let p = join(path, i);
                    if self.derivation(x, &p)? {
                        self.walk(x.clone(), &p)?;
                    }
                }
                Ok(())
            }
            _ => Err(EvalError::other("expression does not evaluate to a derivation (or a set or list of those)")),
        }
    }
}

fn string_attr(ev: &Evaluator, a: &Attrs, name: &str) -> EvalResult<Option<String>> {
    match a.get_str(name) {
        Some(v) => Ok(Some(crate::builtins::derivation::force_string_no_ctx(ev, v)?)),
        None => Ok(None),
    }
}

/// The derivations in `v`, with their `.drv` paths (which instantiates them).
pub fn get_derivations(ev: &Evaluator, v: Value, auto: &AutoCall<'_>) -> EvalResult<Vec<DrvInfo>> {
    let mut w = Walk { ev, auto, done: HashSet::new(), found: Vec::new() };
    w.walk(v, "")?;
    let mut out = Vec::with_capacity(w.found.len());
    for (attr_path, name, a) in w.found {
        let drv = a
            .get_str("drvPath")
            .ok_or_else(|| EvalError::other("derivation does not contain a 'drvPath' attribute"))?;
        let drv_path = ev
            .coerce_to_shared_string(drv, CoerceOpts { coerce_more: false, copy_to_store: false })?
            .as_str()
            .to_owned();
        let output_name = string_attr(ev, &a, "outputName")?.unwrap_or_default();
        if output_name.is_empty() {
            return Err(EvalError::other(format!("derivation '{drv_path}' lacks an 'outputName' attribute")));
        }
        out.push(DrvInfo { attr_path, name, drv_path, output_name });
    }
    Ok(out)
}

impl ComputingStore {
    fn parse_drv(&self, d: &DrvInfo) -> Result<StorePath, super::StoreError> {
        Ok(self.store_dir().parse(&d.drv_path)?)
    }

    /// `nix-instantiate`'s output: one `.drv` path per line, `!output` when
    /// the selected output is not `out`.
    pub fn print_drv_paths(&self, drvs: &[DrvInfo]) -> String {
        let mut s = String::new();
        for d in drvs {
            s.push_str(&d.drv_path);
            if d.output_name != "out" {
                s.push('!');
                s.push_str(&d.output_name);
            }
            s.push('\n');
        }
        s
    }

    /// `[{"drvPath": …, "outputs": {"out": "/nix/store/…"}}]` (as `nix build
    /// --json` prints), outputs whose path is not known yet as `null`.
    pub fn drvs_json(&self, drvs: &[DrvInfo]) -> Result<String, super::StoreError> {
        let mut list = Vec::with_capacity(drvs.len());
        for d in drvs {
            let p = self.parse_drv(d)?;
            let drv = self.registry().derivation(&p)?;
            let mut outputs = serde_json::Map::new();
            for (name, o) in &drv.outputs {
                let path = o.path(self.store_dir(), &drv.name, name)?.map(|p| self.store_dir().display(&p));
                outputs.insert(name.clone(), path.map_or(serde_json::Value::Null, serde_json::Value::String));
            }
            let mut obj = serde_json::Map::new();
            obj.insert("drvPath".into(), serde_json::Value::String(d.drv_path.clone()));
            obj.insert("outputs".into(), serde_json::Value::Object(outputs));
            list.push(serde_json::Value::Object(obj));
        }
        serde_json::to_string(&list).map_err(|e| super::StoreError::Other(e.to_string()))
    }

    /// The derivations as `nix show-derivation` prints them.
    pub fn show_derivations(&self, drvs: &[DrvInfo]) -> Result<String, super::StoreError> {
        let mut loaded = Vec::with_capacity(drvs.len());
        for d in drvs {
            let p = self.parse_drv(d)?;
            let drv = self.registry().derivation(&p)?;
            loaded.push((p, drv));
        }
        let refs: Vec<_> = loaded.iter().map(|(p, d)| (p.clone(), d)).collect();
        Ok(show_derivations(self.store_dir(), &refs)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{get_derivations, valid_attr_name};
    use crate::{EvalConfig, Evaluator};

    fn evaluator() -> Evaluator {
        let mut ev = Evaluator::new(EvalConfig::default(), Arc::new(crate::io::MemIO::new()));
        ev.store = Some(Arc::new(super::ComputingStore::new("/nix/store")));
        ev
    }

    fn first_error(expr: &str) -> String {
        let ev = evaluator();
        let v = ev.eval_str(expr).unwrap();
        let err = get_derivations(&ev, v, &|_, v| Ok(v)).unwrap_err();
        err.to_string()
    }

    #[test]
    fn a_name_is_evaluated_when_its_derivation_is_found() {
        // nix-instantiate 2.8 reports `name-A`: getDerivation queries the
        // name before the walk moves on to the next element.
        let err = first_error(r#"[ { type = "derivation"; name = throw "name-A"; } (throw "elem-B") ]"#);
        assert!(err.contains("name-A"), "{err}");
    }

    #[test]
    fn duplicates_are_listed_once_and_sets_descend_only_when_asked() {
        let ev = evaluator();
        let v = ev
            .eval_str(
                r#"let d = derivation { name = "x"; system = "s"; builder = "/bin/sh"; }; in
                   rec { a = d; b = a; c = { e = d; }; f = { recurseForDerivations = true; g = d // { name = "y"; }; }; }"#,
            )
            .unwrap();
        let drvs = get_derivations(&ev, v, &|_, v| Ok(v)).unwrap();
        let got: Vec<(&str, &str)> = drvs.iter().map(|d| (d.attr_path.as_str(), d.name.as_str())).collect();
        // As nix-instantiate: `b` is `a` (listed once), `c` is not searched,
        // `f` is; `g`'s name differs but its drvPath is `d`'s.
        assert_eq!(got, [("a", "x"), ("f.g", "y")]);
        assert_eq!(drvs[0].drv_path, drvs[1].drv_path);
        assert_eq!(drvs[0].drv_path, "/nix/store/jkscfziazyzcw4yc7ldhirnsb6rck4ys-x.drv");
    }

    #[test]
    fn attr_names_as_nix_accepts_them() {
        for ok in ["a", "_x", "foo-bar", "g++", "A1"] {
            assert!(valid_attr_name(ok), "{ok}");
        }
        for bad in ["", "1a", "-a", "a.b", "a b", "ä"] {
            assert!(!valid_attr_name(bad), "{bad}");
        }
    }
}
