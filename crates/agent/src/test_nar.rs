//! Test fixtures: file trees described in code, serialised with the store
//! crate's [`NarEncoder`] (so fixtures are canonical NARs by construction).

use std::collections::HashMap;

use ndeploy_store::nar::NarEncoder;

use crate::manifest::{NarManifest, RelPath};

mod noise;
pub use noise::noise;

pub enum Tree {
    File { executable: bool, contents: Vec<u8> },
    Link(Vec<u8>),
    Dir(Vec<(Vec<u8>, Tree)>),
}

pub fn file(contents: &[u8]) -> Tree {
    Tree::File { executable: false, contents: contents.to_vec() }
}

pub fn exe(contents: &[u8]) -> Tree {
    Tree::File { executable: true, contents: contents.to_vec() }
}

pub fn link(target: &str) -> Tree {
    Tree::Link(target.as_bytes().to_vec())
}

/// A directory; entries are sorted here, so callers may list them in any order.
pub fn dir(entries: Vec<(&str, Tree)>) -> Tree {
    let mut e: Vec<(Vec<u8>, Tree)> = entries.into_iter().map(|(n, t)| (n.as_bytes().to_vec(), t)).collect();
    e.sort_by(|a, b| a.0.cmp(&b.0));
    Tree::Dir(e)
}

fn encode(enc: &mut NarEncoder<&mut Vec<u8>>, t: &Tree) {
    match t {
        Tree::File { executable, contents } => enc.regular_bytes(*executable, contents).unwrap(),
        Tree::Link(target) => enc.symlink(target).unwrap(),
        Tree::Dir(entries) => {
            enc.begin_directory().unwrap();
            for (name, child) in entries {
                enc.entry(name).unwrap();
                encode(enc, child);
            }
            enc.end_directory().unwrap();
        }
    }
}

pub fn nar_of(t: &Tree) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = NarEncoder::new(&mut out);
    encode(&mut enc, t);
    enc.finish().unwrap();
    out
}

/// A NAR's manifest and its files' contents by relative path.
pub fn manifest_and_files(nar: &[u8]) -> (NarManifest, HashMap<RelPath, Vec<u8>>) {
    let mut by_index = Vec::new();
    let m = NarManifest::from_nar_with(nar, &mut |i, bytes| by_index.push((i, bytes))).unwrap();
    let contents = by_index.into_iter().map(|(i, b)| (m.entries[i].path.clone(), b)).collect();
    (m, contents)
}
