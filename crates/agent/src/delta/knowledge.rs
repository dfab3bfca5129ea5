//! What the deployer knows about one target's store, for the encoder.
//!
//! [`TargetKnowledge`] is the encoder's only view of the target: which file
//! contents it holds where, which earlier versions of a package it has, and
//! (on the deployer's side) the bytes of those earlier files. It is a trait so
//! tests inject fixtures; [`KnowledgeIndex`] is the implementation built from
//! the manifests the agent reports (and those of paths pushed since), with the
//! base-file reader injected as a closure (typically: read the file from the
//! deployer's local store, which holds what it pushed before).
//!
//! Invariant: knowledge only ever proposes; the target verifies every reused
//! byte, so stale or wrong knowledge costs a resend, never a bad import.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use ndeploy_store::drv_name::parse_drv_name;
use ndeploy_store::store_path::StorePath;

use crate::manifest::{FileHash, NarManifest, Node, RelPath};

/// The deployer's view of a target's store (see the module doc).
pub trait TargetKnowledge: Send + Sync {
    /// A file with these contents the target holds: its store path and relative path.
    fn locate(&self, b3: &FileHash) -> Option<(StorePath, RelPath)>;
    /// Paths the target holds that are earlier versions of `path`'s package, best first.
    fn previous_versions(&self, path: &StorePath) -> Vec<StorePath>;
    /// The manifest of a path the target holds.
    fn manifest(&self, path: &StorePath) -> Option<&NarManifest>;
    /// The bytes of file `rel` of `path` (a path the target holds), read on
    /// the deployer; `None` when the deployer cannot read it.
    fn read_base(&self, path: &StorePath, rel: &RelPath) -> Option<Vec<u8>>;
    /// A content-defined chunk with this BLAKE3 in any large file the target
    /// holds: `(path, rel, offset, size)` (none by default).
    fn locate_chunk(&self, _b3: &FileHash) -> Option<(StorePath, RelPath, u64, u64)> {
        None
    }
}

/// No knowledge at all: everything is sent raw.
impl TargetKnowledge for () {
    fn locate(&self, _: &FileHash) -> Option<(StorePath, RelPath)> {
        None
    }
    fn previous_versions(&self, _: &StorePath) -> Vec<StorePath> {
        Vec::new()
    }
    fn manifest(&self, _: &StorePath) -> Option<&NarManifest> {
        None
    }
    fn read_base(&self, _: &StorePath, _: &RelPath) -> Option<Vec<u8>> {
        None
    }
}

/// `bytes` with every run of digits replaced by `#`.
pub(crate) fn version_blind(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if !(b.is_ascii_digit() && out.last() == Some(&b'#')) {
            out.push(if b.is_ascii_digit() { b'#' } else { b });
        }
    }
    out
}

/// The keys a path is found under as an earlier version: its package name,
/// and that name with version numbers blanked (tagged apart).
fn package_keys(name: &str) -> [String; 2] {
    let pname = parse_drv_name(name).name;
    [format!("p:{pname}"), format!("b:{}", String::from_utf8_lossy(&version_blind(pname.as_bytes())))]
}

type BaseReader = dyn Fn(&StorePath, &RelPath) -> Option<Vec<u8>> + Send + Sync;

/// Where each content-defined chunk of the target's large files is.
type ChunkIndex = HashMap<FileHash, (StorePath, RelPath, u64, u64)>;

/// File bytes read at most to build the store-wide chunk index (about a
/// second of reading and hashing; a target holding more large files gets
/// an index of some of them).
pub const CHUNK_INDEX_BUDGET: u64 = 512 << 20;

/// [`TargetKnowledge`] from manifests (see the module doc).
///
/// The store-wide chunk index (method 3 across packages) is built on first
/// use only (the first large file without a base: reading the large files
/// the target holds costs, up to [`CHUNK_INDEX_BUDGET`] bytes), from the
/// base reader, and then kept up to date by [`Self::add`] and [`Self::remove`].
#[derive(Clone)]
pub struct KnowledgeIndex {
    manifests: HashMap<StorePath, NarManifest>,
    files: HashMap<FileHash, (StorePath, RelPath)>,
    by_package: HashMap<String, Vec<StorePath>>,
    reader: Arc<BaseReader>,
    chunks: OnceLock<ChunkIndex>,
}

impl std::fmt::Debug for KnowledgeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeIndex").field("paths", &self.manifests.len()).field("files", &self.files.len()).finish()
    }
}

impl KnowledgeIndex {
    /// An empty index; `reader` reads base files on the deployer.
    pub fn new(reader: impl Fn(&StorePath, &RelPath) -> Option<Vec<u8>> + Send + Sync + 'static) -> KnowledgeIndex {
        KnowledgeIndex {
            manifests: HashMap::new(),
            files: HashMap::new(),
            by_package: HashMap::new(),
            reader: Arc::new(reader),
            chunks: OnceLock::new(),
        }
    }

    /// Add the chunks of `path`'s large files (those the reader can read
    /// with the manifest's contents) to `index`, reading at most `budget`
    /// bytes (decreased by what was read).
    fn index_chunks(index: &mut ChunkIndex, reader: &BaseReader, path: &StorePath, manifest: &NarManifest, budget: &mut u64) {
        for (rel, _, size, b3) in manifest.files() {
            if !(super::chunks::MIN_CHUNKED_FILE..=super::MAX_BASE_FILE).contains(&size) || size > *budget {
                continue;
            }
            *budget -= size;
            let Some(data) = reader(path, rel).filter(|d| FileHash::of(d) == b3) else { continue };
            for c in super::chunks::chunk_list(&data) {
                index.entry(c.b3).or_insert_with(|| (path.clone(), rel.clone(), c.offset, c.size));
            }
        }
    }

    /// An index whose base files are read from `store_dir` on this machine
    /// (e.g. `/nix/store`), at most [`super::MAX_BASE_FILE`] bytes each.
    pub fn reading_from(store_dir: impl Into<std::path::PathBuf>) -> KnowledgeIndex {
        let dir: std::path::PathBuf = store_dir.into();
        KnowledgeIndex::new(move |path, rel| {
            let file = rel.under(&dir.join(path.to_string()));
            let meta = std::fs::symlink_metadata(&file).ok()?;
            (meta.is_file() && meta.len() <= super::MAX_BASE_FILE).then(|| std::fs::read(&file).ok())?
        })
    }

    /// Record that the target holds `path` with this manifest.
    pub fn add(&mut self, path: StorePath, manifest: NarManifest) {
        for e in &manifest.entries {
            if let Node::Regular { b3, size, .. } = e.node
                && size > 0
            {
                self.files.entry(b3).or_insert_with(|| (path.clone(), e.path.clone()));
            }
        }
        for key in package_keys(path.name()) {
            let versions = self.by_package.entry(key).or_default();
            if !versions.contains(&path) {
                versions.push(path.clone());
            }
        }
        if let Some(index) = self.chunks.get_mut() {
            // What this push sent: indexed whatever its size (the files were just read).
            let mut unlimited = u64::MAX;
            Self::index_chunks(index, &*self.reader, &path, &manifest, &mut unlimited);
        }
        self.manifests.insert(path, manifest);
    }

    /// Forget `path` (the target no longer holds it). Contents it held are
    /// then located in another path that has them, if any (one pass over
    /// the index, whatever the number of files).
    pub fn remove(&mut self, path: &StorePath) {
        let Some(m) = self.manifests.remove(path) else { return };
        if let Some(index) = self.chunks.get_mut() {
            // Chunks only it held are gone (another holder's are not re-indexed: a hint lost, not a wrong one).
            index.retain(|_, (p, ..)| p != path);
        }
        let mut orphans: std::collections::HashSet<FileHash> = std::collections::HashSet::new();
        for (_, _, _, b3) in m.files() {
            if self.files.get(&b3).is_some_and(|(p, _)| p == path) {
                self.files.remove(&b3);
                orphans.insert(b3);
            }
        }
        if !orphans.is_empty() {
            for (p, m) in &self.manifests {
                for (rel, _, size, b3) in m.files() {
                    if size > 0 && orphans.contains(&b3) {
                        self.files.entry(b3).or_insert_with(|| (p.clone(), rel.clone()));
                    }
                }
            }
        }
        for key in package_keys(path.name()) {
            if let Some(v) = self.by_package.get_mut(&key) {
                v.retain(|p| p != path);
            }
        }
    }

    pub fn contains(&self, path: &StorePath) -> bool {
        self.manifests.contains_key(path)
    }

    pub fn len(&self) -> usize {
        self.manifests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.manifests.is_empty()
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

impl TargetKnowledge for KnowledgeIndex {
    fn locate(&self, b3: &FileHash) -> Option<(StorePath, RelPath)> {
        self.files.get(b3).cloned()
    }

    fn previous_versions(&self, path: &StorePath) -> Vec<StorePath> {
        let name = path.name();
        // The same package name, else the same name up to version numbers
        // (`python3.11-foo` for `python3.12-foo`).
        let mut v: Vec<StorePath> = package_keys(name)
            .iter()
            .map(|k| self.by_package.get(k).map(|v| v.iter().filter(|p| *p != path).cloned().collect::<Vec<_>>()).unwrap_or_default())
            .find(|v| !v.is_empty())
            .unwrap_or_default();
        // Same full name first, then the longest common prefix (leaf-3-1.0 is
        // closer to leaf-3-1.1 than leaf-30-1.0 is), newest knowledge first on ties.
        // Ranked once each (a package name shared by hundreds of paths made
        // the sort's repeated comparisons of names a visible cost).
        v.reverse();
        v.sort_by_cached_key(|p| std::cmp::Reverse((p.name() == name, common_prefix(p.name(), name))));
        v
    }

    fn manifest(&self, path: &StorePath) -> Option<&NarManifest> {
        self.manifests.get(path)
    }

    fn read_base(&self, path: &StorePath, rel: &RelPath) -> Option<Vec<u8>> {
        (self.reader)(path, rel)
    }

    fn locate_chunk(&self, b3: &FileHash) -> Option<(StorePath, RelPath, u64, u64)> {
        let index = self.chunks.get_or_init(|| {
            let mut index = ChunkIndex::new();
            let mut budget = CHUNK_INDEX_BUDGET;
            for (path, m) in &self.manifests {
                Self::index_chunks(&mut index, &*self.reader, path, m, &mut budget);
            }
            index
        });
        index.get(b3).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_paths_hand_their_files_to_other_holders() {
        let p = |s: &str| StorePath::from_base_name(s).unwrap();
        let m = |files: &[(&str, &[u8])]| {
            let mut entries = vec![crate::manifest::Entry { path: RelPath::root(), node: Node::Directory }];
            for (name, data) in files {
                let node = Node::Regular { executable: false, size: data.len() as u64, b3: FileHash::of(data) };
                entries.push(crate::manifest::Entry { path: RelPath::new(*name).unwrap(), node });
            }
            NarManifest { entries }
        };
        let (a, b) = (p("00000000000000000000000000000000-a"), p("11111111111111111111111111111111-b"));
        let mut k = KnowledgeIndex::new(|_, _| None);
        k.add(a.clone(), m(&[("x", b"shared"), ("y", b"only in a")]));
        k.add(b.clone(), m(&[("z", b"shared")]));
        assert_eq!(k.locate(&FileHash::of(b"shared")), Some((a.clone(), RelPath::new("x").unwrap())));
        k.remove(&a);
        assert_eq!(k.locate(&FileHash::of(b"shared")), Some((b.clone(), RelPath::new("z").unwrap())));
        assert_eq!(k.locate(&FileHash::of(b"only in a")), None);
        assert!(!k.contains(&a) && k.contains(&b) && k.len() == 1);
    }

    #[test]
    fn base_files_are_read_from_a_store_directory_without_following_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let path = StorePath::from_base_name("00000000000000000000000000000000-pkg").unwrap();
        let root = tmp.path().join(path.to_string());
        std::fs::create_dir_all(root.join("lib")).unwrap();
        std::fs::write(root.join("lib/a"), b"contents").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("lib/link")).unwrap();
        let k = KnowledgeIndex::reading_from(tmp.path());
        let rel = |s: &str| RelPath::new(s).unwrap();
        assert_eq!(k.read_base(&path, &rel("lib/a")).as_deref(), Some(&b"contents"[..]));
        assert_eq!(k.read_base(&path, &rel("lib/link")), None);
        assert_eq!(k.read_base(&path, &rel("lib")), None);
        assert_eq!(k.read_base(&path, &rel("lib/missing")), None);
    }

    #[test]
    fn previous_versions_prefer_the_closest_name() {
        let p = |s: &str| StorePath::from_base_name(s).unwrap();
        let mut k = KnowledgeIndex::new(|_, _| None);
        for s in ["00000000000000000000000000000000-leaf-30-1.0", "11111111111111111111111111111111-leaf-3-1.0", "22222222222222222222222222222222-other-1"] {
            k.add(p(s), NarManifest::default());
        }
        let new = p("33333333333333333333333333333333-leaf-3-1.1");
        assert_eq!(k.previous_versions(&new), [p("11111111111111111111111111111111-leaf-3-1.0"), p("00000000000000000000000000000000-leaf-30-1.0")]);
        // A package whose name embeds another package's version.
        k.add(p("55555555555555555555555555555555-python3.11-foo-1.0"), NarManifest::default());
        assert_eq!(k.previous_versions(&p("66666666666666666666666666666666-python3.12-foo-1.0")), [p("55555555555555555555555555555555-python3.11-foo-1.0")]);
        let same = p("44444444444444444444444444444444-leaf-30-1.0");
        assert_eq!(k.previous_versions(&same)[0], p("00000000000000000000000000000000-leaf-30-1.0"));
        k.remove(&p("11111111111111111111111111111111-leaf-3-1.0"));
        assert_eq!(k.previous_versions(&new), [p("00000000000000000000000000000000-leaf-30-1.0")]);
    }
}
