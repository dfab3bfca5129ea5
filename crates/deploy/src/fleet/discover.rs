//! Fleet discovery: which Nix source describes the fleet.
//!
//! Order: an explicit `--file FILE` (a hive / plain fleet, or a flake
//! directory's `flake.nix`), an explicit `--flake REF`, else the directory:
//! `flake.nix` (a flake: `nixosConfigurations`, `deploy.nodes`,
//! `colmena`/`colmenaHive`), then `hive.nix` (colmena), then `fleet.nix`
//! (ndeploy's plain form). What the source *contains* is sorted out on the
//! Nix side by `nix/fleet.nix`; this module only picks the entry point.
//! Pure: file existence is injected.

use std::path::{Path, PathBuf};

use super::FleetError;

/// Where the fleet comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetSource {
    /// A flake reference: a directory path, `path:…`, `git+file:…`, `.`.
    Flake(String),
    /// A Nix file evaluating to a hive / plain fleet, or to a function
    /// taking an attribute set (called with `{ }`).
    File(PathBuf),
}

impl std::fmt::Display for FleetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FleetSource::Flake(r) => write!(f, "flake '{r}'"),
            FleetSource::File(p) => write!(f, "'{}'", p.display()),
        }
    }
}

/// File names looked for in the current directory, in order.
pub const CANDIDATES: &[&str] = &["flake.nix", "hive.nix", "fleet.nix"];

/// Pick the fleet's source. `cwd` must be absolute; relative `file`s are
/// resolved against it.
pub fn discover(
    cwd: &Path,
    flake: Option<&str>,
    file: Option<&Path>,
    is_file: impl Fn(&Path) -> bool,
) -> Result<FleetSource, FleetError> {
    if let Some(file) = file {
        let path = cwd.join(file);
        if !is_file(&path) {
            return Err(FleetError::NoSource(format!("'{}' does not exist", path.display())));
        }
        if path.file_name().is_some_and(|n| n == "flake.nix") {
            let dir = path.parent().unwrap_or(cwd);
            return Ok(FleetSource::Flake(dir.display().to_string()));
        }
        return Ok(FleetSource::File(path));
    }
    if let Some(r) = flake {
        return Ok(FleetSource::Flake(r.to_string()));
    }
    for name in CANDIDATES {
        let path = cwd.join(name);
        if is_file(&path) {
            return Ok(if *name == "flake.nix" {
                FleetSource::Flake(cwd.display().to_string())
            } else {
                FleetSource::File(path)
            });
        }
    }
    Err(FleetError::NoSource(format!(
        "no flake.nix, hive.nix or fleet.nix in '{}' (use --flake REF or --file FILE)",
        cwd.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(files: &'static [&'static str]) -> impl Fn(&Path) -> bool {
        move |p: &Path| files.iter().any(|f| Path::new(f) == p)
    }

    #[test]
    fn directory_order() {
        let cwd = Path::new("/f");
        let all = with(&["/f/flake.nix", "/f/hive.nix", "/f/fleet.nix"]);
        assert_eq!(discover(cwd, None, None, &all).unwrap(), FleetSource::Flake("/f".into()));
        let hive = with(&["/f/hive.nix", "/f/fleet.nix"]);
        assert_eq!(discover(cwd, None, None, hive).unwrap(), FleetSource::File("/f/hive.nix".into()));
        let fleet = with(&["/f/fleet.nix"]);
        assert_eq!(discover(cwd, None, None, fleet).unwrap(), FleetSource::File("/f/fleet.nix".into()));
        let e = discover(cwd, None, None, with(&[])).unwrap_err().to_string();
        assert!(e.contains("no flake.nix, hive.nix or fleet.nix in '/f'"), "{e}");
    }

    #[test]
    fn explicit_sources_win() {
        let cwd = Path::new("/f");
        let all = with(&["/f/flake.nix", "/f/sub/fleet.nix", "/f/sub/flake.nix"]);
        assert_eq!(
            discover(cwd, None, Some(Path::new("sub/fleet.nix")), &all).unwrap(),
            FleetSource::File("/f/sub/fleet.nix".into())
        );
        assert_eq!(
            discover(cwd, None, Some(Path::new("sub/flake.nix")), &all).unwrap(),
            FleetSource::Flake("/f/sub".into())
        );
        assert_eq!(discover(cwd, Some("git+file:///r?dir=x"), None, &all).unwrap(), FleetSource::Flake("git+file:///r?dir=x".into()));
        assert!(discover(cwd, None, Some(Path::new("missing.nix")), &all).is_err());
    }
}
