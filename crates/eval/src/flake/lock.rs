//! `flake.lock` reading and checking (versions 5 to 7, as Nix 2.8 reads).
//!
//! Design: the lock file is parsed with `serde_json` into [`LockFile`] only
//! to check it before evaluation: the root node exists, every node an input
//! points to exists and (except the root) has `locked` attributes with a
//! `type`, every `follows` path resolves. The evaluation itself reads the
//! same text with `builtins.fromJSON` in `call-flake.nix`, so what is
//! checked here and what is evaluated cannot disagree. ndeploy never writes
//! lock files: problems are errors telling the user to run `nix flake lock`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::FlakeError;

/// The lock file of a flake without inputs, as Nix would write it.
pub const EMPTY_LOCK: &str = r#"{"nodes":{"root":{}},"root":"root","version":7}"#;

#[derive(Debug, Deserialize)]
pub struct LockFile {
    pub version: u32,
    pub root: String,
    pub nodes: BTreeMap<String, Node>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Node {
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    #[serde(default)]
    pub locked: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub flake: Option<bool>,
    /// The reference as written in `flake.nix` when it was locked.
    #[serde(default)]
    pub original: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A node's input: another node's name, or a `follows` path from the root.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum InputSpec {
    Node(String),
    Follows(Vec<String>),
}

impl LockFile {
    pub fn parse(text: &str, file: &str) -> Result<LockFile, FlakeError> {
        let lock: LockFile =
            serde_json::from_str(text).map_err(|e| FlakeError::Lock { file: file.to_string(), msg: e.to_string() })?;
        if !(5..=7).contains(&lock.version) {
            return Err(FlakeError::Lock {
                file: file.to_string(),
                msg: format!("lock file version {} is not supported (5 to 7 are)", lock.version),
            });
        }
        lock.check(file)?;
        Ok(lock)
    }

    fn node(&self, name: &str, file: &str) -> Result<&Node, FlakeError> {
        self.nodes
            .get(name)
            .ok_or_else(|| FlakeError::Lock { file: file.to_string(), msg: format!("node '{name}' does not exist") })
    }

    /// The node an input spec designates (following `follows` paths from
    /// the root, themselves possibly `follows`).
    pub fn resolve(&self, spec: &InputSpec, file: &str) -> Result<String, FlakeError> {
        self.resolve_depth(spec, file, 0)
    }

    fn resolve_depth(&self, spec: &InputSpec, file: &str, depth: usize) -> Result<String, FlakeError> {
        match spec {
            InputSpec::Node(n) => Ok(n.clone()),
            InputSpec::Follows(path) => {
                if depth > 64 {
                    return Err(FlakeError::Lock {
                        file: file.to_string(),
                        msg: format!("'follows' cycle at '{}'", path.join("/")),
                    });
                }
                let mut node = self.root.clone();
                for input in path {
                    let next = self.node(&node, file)?.inputs.get(input).ok_or_else(|| FlakeError::Lock {
                        file: file.to_string(),
                        msg: format!("'follows' path '{}' does not exist", path.join("/")),
                    })?;
                    node = self.resolve_depth(next, file, depth + 1)?;
                }
                Ok(node)
            }
        }
    }

    /// Every node reachable from the root exists and is locked.
    fn check(&self, file: &str) -> Result<(), FlakeError> {
        self.node(&self.root, file)?;
        let mut todo = vec![self.root.clone()];
        let mut seen = BTreeSet::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let node = self.node(&name, file)?;
            if name != self.root {
                let locked = node.locked.as_ref().ok_or_else(|| FlakeError::Unlocked { input: name.clone() })?;
                if !locked.get("type").is_some_and(|t| t.is_string()) {
                    return Err(FlakeError::Unlocked { input: name.clone() });
                }
            }
            for spec in node.inputs.values() {
                todo.push(self.resolve(spec, file)?);
            }
        }
        Ok(())
    }

    /// The `original` attributes of the root's input `name` (not for
    /// `follows` inputs).
    pub fn root_original(&self, name: &str) -> Option<&serde_json::Map<String, serde_json::Value>> {
        match self.nodes.get(&self.root)?.inputs.get(name)? {
            InputSpec::Node(n) => self.nodes.get(n)?.original.as_ref(),
            InputSpec::Follows(_) => None,
        }
    }

    /// The input names of the root node.
    pub fn root_inputs(&self) -> BTreeSet<String> {
        self.nodes.get(&self.root).map(|n| n.inputs.keys().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"{
      "nodes": {
        "a": { "inputs": { "b": ["b"] }, "locked": { "type": "path", "path": "/a", "narHash": "sha256-x" } },
        "b": { "locked": { "type": "tarball", "url": "http://x/b.tar.gz", "narHash": "sha256-y" }, "flake": false },
        "root": { "inputs": { "a": "a", "b": "b" } }
      },
      "root": "root",
      "version": 7
    }"#;

    #[test]
    fn parses_and_resolves_follows() {
        let l = LockFile::parse(LOCK, "flake.lock").unwrap();
        assert_eq!(l.root_inputs().into_iter().collect::<Vec<_>>(), ["a", "b"]);
        let spec = &l.nodes["a"].inputs["b"];
        assert_eq!(l.resolve(spec, "f").unwrap(), "b");
        assert!(LockFile::parse(EMPTY_LOCK, "f").is_ok());
    }

    #[test]
    fn rejects_unlocked_missing_and_bad_versions() {
        let unlocked = LOCK.replace(r#""locked": { "type": "path", "path": "/a", "narHash": "sha256-x" }"#, r#""original": {}"#);
        assert!(matches!(LockFile::parse(&unlocked, "f"), Err(FlakeError::Unlocked { .. })));
        let missing = LOCK.replace(r#""b": ["b"]"#, r#""b": ["c"]"#);
        assert!(LockFile::parse(&missing, "f").unwrap_err().to_string().contains("'follows' path 'c' does not exist"));
        let v = LOCK.replace(r#""version": 7"#, r#""version": 99"#);
        assert!(LockFile::parse(&v, "f").unwrap_err().to_string().contains("version 99"));
        assert!(LockFile::parse("{", "f").is_err());
    }
}
