//! Remote `git` inputs (`git+https:`, `git+ssh:`, `git://`, scp-style
//! `user@host:path`): fetched into a bare repository in ndeploy's cache.
//!
//! Design: each URL has its own bare repository,
//! `<cache>/git/<nix32 sha256 of the URL>`. The wanted ref (the lock's
//! `ref`, `HEAD` when none) is fetched with `git fetch`; when a locked
//! `rev` is still missing afterwards it is fetched by its hash. Then the
//! local machinery exports the commit ([`super::Fetcher::fetch_git`]). A
//! locked revision already in the cache repository needs no network; in
//! offline mode a missing one is an error naming the input.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ndeploy_store::hash::{Hash, HashAlgo};

use super::{FetchError, FetchResult, Fetcher, GitInput};

/// The URL to hand to `git` for a remote input, or `None` for local ones
/// (`file://`, absolute paths). The `git+` prefix and a query are dropped;
/// scp-style `user@host:path` becomes `ssh://user@host/path`, as Nix does.
pub fn remote_url(url: &str) -> Option<String> {
    let url = url.strip_prefix("git+").unwrap_or(url);
    let base = url.split(['?', '#']).next().unwrap_or(url);
    if base.starts_with("file://") || base.starts_with('/') {
        return None;
    }
    if ["https://", "http://", "ssh://", "git://"].iter().any(|p| base.starts_with(p)) {
        return Some(base.to_string());
    }
    // user@host:path
    let (user_host, path) = base.split_once(':')?;
    if user_host.contains('@') && !user_host.contains('/') {
        return Some(format!("ssh://{user_host}/{path}"));
    }
    None
}

fn run_git(dir: &Path, args: &[&str]) -> FetchResult<std::process::Output> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| FetchError::Git(format!("cannot run 'git': {e}")))
}

fn has_commit(repo: &Path, rev: &str) -> bool {
    run_git(repo, &["cat-file", "-e", &format!("{rev}^{{commit}}")]).is_ok_and(|o| o.status.success())
}

impl Fetcher {
    /// Make sure the wanted commit of `url` is in its cache repository;
    /// returns that repository and the commit.
    pub(super) fn fetch_remote(&self, url: &str, input: &GitInput) -> FetchResult<(PathBuf, String)> {
        let repo = self.cache_dir.join("git").join(Hash::digest(HashAlgo::Sha256, url.as_bytes()).to_nix32());
        if !repo.join("HEAD").exists() {
            std::fs::create_dir_all(&repo).map_err(super::io_err("creating directory", &repo))?;
            let out = run_git(&repo, &["init", "--bare", "--quiet"])?;
            if !out.status.success() {
                return Err(FetchError::Git(format!("cannot create '{}': {}", repo.display(), stderr(&out))));
            }
        }
        if let Some(rev) = &input.rev
            && has_commit(&repo, rev)
        {
            return Ok((repo, rev.clone()));
        }
        if self.offline {
            return Err(FetchError::Offline { input: url.to_string(), path: repo.display().to_string() });
        }
        let wanted = match &input.ref_ {
            Some(r) if r.starts_with("refs/") || r == "HEAD" => r.clone(),
            Some(r) => format!("refs/heads/{r}"),
            None => "HEAD".to_string(),
        };
        let local_ref = if wanted == "HEAD" { "refs/ndeploy/HEAD".to_string() } else { wanted.clone() };
        eprintln!("fetching Git repository '{url}'");
        let fetched = run_git(&repo, &["fetch", "--quiet", "--force", "--", url, &format!("+{wanted}:{local_ref}")])?;
        let rev = match &input.rev {
            Some(rev) => {
                if !has_commit(&repo, rev) {
                    // Not on that ref: ask for the commit itself.
                    let by_hash = run_git(&repo, &["fetch", "--quiet", "--", url, rev])?;
                    if !has_commit(&repo, rev) {
                        let why = if fetched.status.success() { stderr(&by_hash) } else { stderr(&fetched) };
                        return Err(FetchError::Git(format!(
                            "cannot find Git revision '{rev}' in ref '{wanted}' of repository '{url}': {why}"
                        )));
                    }
                }
                rev.clone()
            }
            None => {
                if !fetched.status.success() {
                    return Err(FetchError::Git(format!(
                        "cannot fetch '{wanted}' from Git repository '{url}': {}",
                        stderr(&fetched)
                    )));
                }
                let out = run_git(&repo, &["rev-parse", "--verify", &format!("{local_ref}^{{commit}}")])?;
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
        };
        Ok((repo, rev))
    }
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_url_forms() {
        assert_eq!(remote_url("git+https://h/r.git?ref=main").as_deref(), Some("https://h/r.git"));
        assert_eq!(remote_url("ssh://git@h/r").as_deref(), Some("ssh://git@h/r"));
        assert_eq!(remote_url("git@github.com:o/r").as_deref(), Some("ssh://git@github.com/o/r"));
        assert_eq!(remote_url("git://127.0.0.1:9418/r").as_deref(), Some("git://127.0.0.1:9418/r"));
        assert_eq!(remote_url("file:///r"), None);
        assert_eq!(remote_url("/r"), None);
        assert_eq!(remote_url("r"), None);
    }
}
