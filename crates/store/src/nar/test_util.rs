//! Test helpers: NARs assembled by hand from the grammar, independently of
//! [`super::NarEncoder`], so encoder and parser are checked against the format
//! rather than against each other.

/// One wire string: length, bytes, zero padding.
pub fn s(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(b);
    v.resize(v.len() + (8 - b.len() % 8) % 8, 0);
    v
}

/// Concatenated wire strings.
pub fn strs(items: &[&[u8]]) -> Vec<u8> {
    items.iter().flat_map(|b| s(b)).collect()
}

/// A node (without the magic) for a regular file.
pub fn node_regular(executable: bool, contents: &[u8]) -> Vec<u8> {
    let mut v = strs(&[b"(", b"type", b"regular"]);
    if executable {
        v.extend(strs(&[b"executable", b""]));
    }
    v.extend(strs(&[b"contents", contents, b")"]));
    v
}

pub fn node_symlink(target: &[u8]) -> Vec<u8> {
    strs(&[b"(", b"type", b"symlink", b"target", target, b")"])
}

/// A directory node from (name, node) pairs, in the order given.
pub fn node_dir(entries: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut v = strs(&[b"(", b"type", b"directory"]);
    for (name, node) in entries {
        v.extend(strs(&[b"entry", b"(", b"name", name, b"node"]));
        v.extend_from_slice(node);
        v.extend(s(b")"));
    }
    v.extend(s(b")"));
    v
}

pub fn nar(node: Vec<u8>) -> Vec<u8> {
    let mut v = s(b"nix-archive-1");
    v.extend(node);
    v
}

pub fn nar_regular(executable: bool, contents: &[u8]) -> Vec<u8> {
    nar(node_regular(executable, contents))
}

pub fn nar_symlink(target: &[u8]) -> Vec<u8> {
    nar(node_symlink(target))
}

/// A whole NAR whose root is a directory of the given entries (entry nodes
/// may be whole NARs from the helpers above; their magic is stripped).
pub fn nar_dir(entries: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let magic = s(b"nix-archive-1");
    let stripped: Vec<(&[u8], Vec<u8>)> = entries
        .iter()
        .map(|(n, node)| (*n, node.strip_prefix(magic.as_slice()).unwrap_or(node).to_vec()))
        .collect();
    nar(node_dir(&stripped))
}
