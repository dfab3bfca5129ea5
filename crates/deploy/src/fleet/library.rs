//! ndeploy's Nix library (`nix/` of the repository), embedded in the binary.
//!
//! Design: the build script embeds every file of `nix/` except `tests/`
//! ([`FILES`]). [`materialise`] writes them once into
//! `<cache>/nix-<digest>/`, where the digest (SHA-256 over paths, modes and
//! contents) names the exact library version: an existing directory with
//! that name is reused as is, a new one is written to a temporary sibling
//! and renamed into place, so concurrent processes never see a half-written
//! library. The evaluator then imports real files (so relative imports,
//! `./file` path literals and store copies of them behave exactly as with
//! the repository's `nix/`, and C++ Nix could read the same directory).
//!
//! `NDEPLOY_NIX_DIR` overrides the location (e.g. a checkout's `nix/`).

use std::path::{Path, PathBuf};

use ndeploy_store::hash::{HashAlgo, Hasher};

use super::FleetError;

/// The embedded files: (path relative to `nix/`, executable, contents).
pub static FILES: &[(&str, bool, &[u8])] = include!(concat!(env!("OUT_DIR"), "/nix_files.rs"));

/// A short digest of the embedded library (paths, modes and contents).
pub fn digest() -> String {
    let mut h = Hasher::new(HashAlgo::Sha256);
    for (path, exec, contents) in FILES {
        h.update(path.as_bytes());
        h.update(&[0, u8::from(*exec)]);
        h.update(&(contents.len() as u64).to_le_bytes());
        h.update(contents);
    }
    let hex = h.finish().to_base16();
    hex.get(..16).unwrap_or(&hex).to_string()
}

/// The directory for cached data: `$XDG_CACHE_HOME/ndeploy`, else
/// `$HOME/.cache/ndeploy`, else a directory under the system's temp dir.
pub fn cache_root(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(x) = env("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("ndeploy");
    }
    if let Some(h) = env("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h).join(".cache/ndeploy");
    }
    std::env::temp_dir().join("ndeploy-cache")
}

/// The library directory for this process: `NDEPLOY_NIX_DIR` if set, else
/// the embedded library materialised under [`cache_root`].
pub fn locate() -> Result<PathBuf, FleetError> {
    if let Some(d) = std::env::var_os("NDEPLOY_NIX_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    materialise(&cache_root(|k| std::env::var(k).ok()))
}

/// Write the embedded library into `cache/nix-<digest>` unless it is there;
/// returns that directory.
pub fn materialise(cache: &Path) -> Result<PathBuf, FleetError> {
    let dest = cache.join(format!("nix-{}", digest()));
    if dest.join("fleet.nix").is_file() {
        return Ok(dest);
    }
    let io = |path: &Path, e: std::io::Error| FleetError::Library { path: path.to_path_buf(), source: e };
    std::fs::create_dir_all(cache).map_err(|e| io(cache, e))?;
    let tmp = cache.join(format!(".nix-{}.tmp-{}", digest(), std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    for (rel, exec, contents) in FILES {
        let path = tmp.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        std::fs::write(&path, contents).map_err(|e| io(&path, e))?;
        use std::os::unix::fs::PermissionsExt;
        let mode = if *exec { 0o555 } else { 0o444 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(|e| io(&path, e))?;
    }
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => Ok(dest),
        // Another process won the race: use its copy.
        Err(_) if dest.join("fleet.nix").is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(e) => Err(io(&dest, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_the_repository_library() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nix");
        for want in ["fleet.nix", "system.nix", "lib/modules.nix", "modules/system/toplevel-builder.sh"] {
            let (_, _, contents) = FILES.iter().find(|(p, _, _)| *p == want).unwrap();
            assert_eq!(*contents, std::fs::read(repo.join(want)).unwrap().as_slice(), "{want}");
        }
        assert!(!FILES.iter().any(|(p, _, _)| p.starts_with("tests/")));
    }

    #[test]
    fn materialises_once_with_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = materialise(tmp.path()).unwrap();
        assert_eq!(dir, materialise(tmp.path()).unwrap());
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nix");
        for (rel, _, _) in FILES {
            assert_eq!(std::fs::read(dir.join(rel)).unwrap(), std::fs::read(repo.join(rel)).unwrap(), "{rel}");
        }
        let entries: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1, "no temporary directory left behind");
    }

    #[test]
    fn cache_root_prefers_xdg() {
        let env = |k: &str| match k {
            "XDG_CACHE_HOME" => Some("/x".to_string()),
            "HOME" => Some("/h".to_string()),
            _ => None,
        };
        assert_eq!(cache_root(env), PathBuf::from("/x/ndeploy"));
        assert_eq!(cache_root(|k| (k == "HOME").then(|| "/h".to_string())), PathBuf::from("/h/.cache/ndeploy"));
    }
}
