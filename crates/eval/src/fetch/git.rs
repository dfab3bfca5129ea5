//! `git` inputs from local repositories (`fetchGit`, `fetchTree { type =
//! "git"; }`, `git+file:` flakes), as Nix 2.8's git fetcher.
//!
//! Design: the `git` program does the repository work. With a `rev` (or a
//! `ref`, or a clean working tree, which means `HEAD`) the tree is
//! `git archive`d into a temporary directory, hashed and moved into the
//! cache under its store path, unless the locked `narHash` already names a
//! store path or cache entry that exists. A dirty working tree without
//! `rev`/`ref` is used in place: its tracked files (`git ls-files`) are
//! hashed and the checkout is mapped with those files only, as Nix copies
//! them. `revCount` and `lastModified` come from `git rev-list --count` and
//! the commit time; a dirty tree has no `rev`. An exported commit is
//! remembered in the cache (`git-revs/<rev>-<name>` holds its NAR hash), so
//! later runs find its tree without exporting it again.
//! `submodules = true` on a repository that has submodules is refused (their
//! checkouts are not made), never silently fetched without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ndeploy_store::hash::Hash;

use super::{FetchError, FetchResult, Fetched, Fetcher, TrackedFiles};

/// A git input's attributes (those Nix 2.8 accepts for local repositories).
#[derive(Clone, Debug, Default)]
pub struct GitInput {
    pub url: String,
    pub rev: Option<String>,
    pub ref_: Option<String>,
    pub name: String,
    pub submodules: bool,
    /// A shallow clone is enough: no `revCount` (Nix cannot count then).
    pub shallow: bool,
    pub nar_hash: Option<Hash>,
    pub last_modified: Option<i64>,
    pub rev_count: Option<i64>,
}

/// What the fetch learned about the revision.
#[derive(Clone, Debug, Default)]
pub struct GitInfo {
    pub rev: Option<String>,
    pub rev_count: Option<i64>,
    pub last_modified: i64,
}

/// The local directory of a `file://` (or bare path) git URL.
pub fn local_repo(url: &str) -> FetchResult<PathBuf> {
    // A query (lock files keep `?dir=…` in the URL) is not part of the path.
    let base = url.split(['?', '#']).next().unwrap_or(url);
    let p = base.strip_prefix("git+file://").or_else(|| base.strip_prefix("file://")).unwrap_or(base);
    if !p.starts_with('/') {
        return Err(FetchError::Git(format!(
            "only local git repositories (file:// URLs or absolute paths) are supported, not '{url}'"
        )));
    }
    Ok(PathBuf::from(p))
}

fn git(repo: &Path, args: &[&str]) -> FetchResult<std::process::Output> {
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| FetchError::Git(format!("cannot run 'git': {e}")))
}

/// Run git and return its trimmed stdout; a failure names the command.
fn git_out(repo: &Path, args: &[&str]) -> FetchResult<String> {
    let out = git(repo, args)?;
    if !out.status.success() {
        return Err(FetchError::Git(format!(
            "'git -C {} {}' failed: {}",
            repo.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn parse_int(s: &str, what: &str) -> FetchResult<i64> {
    s.parse().map_err(|_| FetchError::Git(format!("unexpected {what} from git: '{s}'")))
}

/// The tracked files of the working tree at `repo`.
pub fn tracked_files(repo: &Path) -> FetchResult<TrackedFiles> {
    let out = git(repo, &["ls-files", "-z"])?;
    if !out.status.success() {
        return Err(FetchError::Git(format!(
            "listing the files of '{}': {}",
            repo.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(TrackedFiles::new(
        out.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()).map(|f| String::from_utf8_lossy(f).into_owned()),
    ))
}

/// The top directory of the working tree containing `dir`, if any.
pub fn work_tree_root(dir: &Path) -> Option<PathBuf> {
    let out = git(dir, &["rev-parse", "--show-toplevel"]).ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then(|| PathBuf::from(s))
}

/// `submodules = true` with actual submodules (gitlinks, mode 160000, in
/// `git ls-tree`/`ls-files -s` output) would need their checkouts, which
/// this fetcher does not make: an error rather than a different tree.
fn refuse_submodules(repo: &Path, listing: &str) -> FetchResult<()> {
    if listing.lines().any(|l| l.starts_with("160000 ")) {
        return Err(FetchError::Git(format!(
            "'{}' has submodules; fetching with 'submodules = true' is not supported by ndeploy",
            repo.display()
        )));
    }
    Ok(())
}

impl Fetcher {
    /// Fetch a git input from a local repository.
    pub fn fetch_git(&self, input: &GitInput) -> FetchResult<(Fetched, GitInfo)> {
        if let Some(url) = super::git_remote::remote_url(&input.url) {
            // Locked and already present: no network.
            if let (Some(rev), Some(h), Some(last_modified)) = (&input.rev, &input.nar_hash, input.last_modified)
                && (input.rev_count.is_some() || input.shallow)
                && let Some(f) = self.lookup_tree(h, &input.name)?
            {
                return Ok((f, GitInfo { rev: Some(rev.clone()), rev_count: input.rev_count, last_modified }));
            }
            let (repo, rev) = self.fetch_remote(&url, input)?;
            return self.fetch_rev(&repo, rev, input);
        }
        let repo = local_repo(&input.url)?;
        if !repo.join(".git").exists() && git(&repo, &["rev-parse", "--git-dir"]).is_ok_and(|o| !o.status.success()) {
            return Err(FetchError::Git(format!("'{}' is not a Git repository", repo.display())));
        }
        let rev = match (&input.rev, &input.ref_) {
            (Some(r), _) => r.clone(),
            (None, Some(r)) => {
                let full = if r.starts_with("refs/") || r == "HEAD" { r.clone() } else { format!("refs/heads/{r}") };
                git_out(&repo, &["rev-parse", "--verify", &format!("{full}^{{commit}}")])?
            }
            (None, None) => {
                let head = git(&repo, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])?;
                let has_head = head.status.success();
                let clean = has_head && {
                    let mut args = vec!["diff", "HEAD", "--quiet"];
                    if !input.submodules {
                        args.push("--ignore-submodules");
                    }
                    args.push("--");
                    git(&repo, &args)?.status.success()
                };
                if !clean {
                    return self.fetch_dirty(&repo, input, has_head);
                }
                String::from_utf8_lossy(&head.stdout).trim().to_string()
            }
        };
        self.fetch_rev(&repo, rev, input)
    }

    /// The tree of commit `rev` of the repository at `repo`.
    fn fetch_rev(&self, repo: &Path, rev: String, input: &GitInput) -> FetchResult<(Fetched, GitInfo)> {
        if rev.len() != 40 || !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FetchError::Git(format!("'{rev}' is not a full commit hash")));
        }
        if input.submodules {
            let tree = git_out(repo, &["ls-tree", "-r", &rev])?;
            refuse_submodules(repo, &tree)?;
        }
        let info = |fetched: Fetched| -> FetchResult<(Fetched, GitInfo)> {
            let last_modified = match input.last_modified {
                Some(t) => t,
                None => parse_int(
                    &git_out(repo, &["log", "-1", "--format=%ct", "--no-show-signature", &rev])?,
                    "commit time",
                )?,
            };
            let rev_count = match (input.rev_count, input.shallow) {
                (Some(n), _) => Some(n),
                (None, true) => None,
                (None, false) => Some(parse_int(&git_out(repo, &["rev-list", "--count", &rev])?, "revision count")?),
            };
            Ok((fetched, GitInfo { rev: Some(rev.clone()), rev_count, last_modified }))
        };
        if let Some(h) = &input.nar_hash
            && let Some(f) = self.lookup_tree(h, &input.name)?
        {
            return info(f);
        }
        let key = format!("git:{}:{rev}:{}", repo.display(), input.name);
        if let Some(f) = self.memo_get(&key) {
            return info(f);
        }
        // A revision exported before (by any run) is found through its
        // index file: the commit's NAR hash.
        let index = self.cache_dir.join("git-revs").join(format!("{rev}-{}", input.name));
        if let Ok(text) = std::fs::read_to_string(&index)
            && let Ok(h) = Hash::parse(text.trim(), Some(ndeploy_store::hash::HashAlgo::Sha256))
            && let Some(f) = self.lookup_tree(&h, &input.name)?
        {
            self.memo_put(key, f.clone());
            return info(f);
        }
        let tmp = self.tmp_path("git")?;
        self.export_rev(repo, &rev, &tmp)?;
        let f = self.add_tree(&tmp, &input.name)?;
        if let Some(dir) = index.parent()
            && std::fs::create_dir_all(dir).is_ok()
        {
            // Best effort: without the index the next run exports again.
            let _ = std::fs::write(&index, f.nar_hash.to_sri());
        }
        self.memo_put(key, f.clone());
        info(f)
    }

    fn fetch_dirty(&self, repo: &Path, input: &GitInput, has_head: bool) -> FetchResult<(Fetched, GitInfo)> {
        eprintln!("warning: Git tree '{}' is dirty", repo.display());
        if input.submodules {
            refuse_submodules(repo, &git_out(repo, &["ls-files", "-s"])?)?;
        }
        let tracked = tracked_files(repo)?;
        let f = self.fetch_local(repo, &input.name, Some(tracked))?;
        let last_modified = if has_head {
            parse_int(&git_out(repo, &["log", "-1", "--format=%ct", "--no-show-signature", "HEAD"])?, "commit time")?
        } else {
            0
        };
        Ok((f, GitInfo { rev: None, rev_count: None, last_modified }))
    }

    /// `git archive <rev>` unpacked into `dest`.
    fn export_rev(&self, repo: &Path, rev: &str, dest: &Path) -> FetchResult<()> {
        let mut child = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["archive", "--format=tar", rev])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| FetchError::Git(format!("cannot run 'git': {e}")))?;
        let url = format!("git+file://{}?rev={rev}", repo.display());
        let r = match child.stdout.take() {
            Some(out) => super::unpack_tarball(std::io::BufReader::new(out), dest, &url),
            None => Err(FetchError::Git("no output from git archive".into())),
        };
        let out = child.wait_with_output().map_err(|e| FetchError::Git(format!("waiting for git: {e}")))?;
        if !out.status.success() {
            super::remove_any(dest);
            // git dies of SIGPIPE when the unpacking stopped reading: then
            // the unpacking's error is the cause, and git's stderr is empty.
            let cause = match &r {
                Err(e) => format!(" (unpacking: {e})"),
                Ok(()) => String::new(),
            };
            return Err(FetchError::Git(format!(
                "cannot export revision {rev} of '{}': git archive {}: {}{cause}",
                repo.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        if r.is_err() {
            super::remove_any(dest);
        }
        r
    }
}
