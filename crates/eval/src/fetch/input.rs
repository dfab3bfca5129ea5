//! Inputs as attribute sets (`fetchTree`'s argument, a lock file's
//! `locked` node) and their fetching, independent of evaluator values.
//!
//! Design: an [`Input`] is a sorted map of string / integer / Boolean
//! attributes with a `type`. [`Fetcher::fetch_input`] dispatches on the type
//! (`path`, `tarball`, `file`, `git`, `github`/`gitlab`/`sourcehut`) and
//! returns a [`Tree`]: the fetched tree plus what `fetchTree` reports
//! (`rev`, `revCount`, `lastModified`, `submodules`). A `narHash` attribute is checked against
//! what was fetched ("NAR hash mismatch in input ..."). [`parse_url`] turns
//! the URL forms (`path:`, `git+file:`, `github:`, tarball URLs) into
//! attributes.

use std::collections::BTreeMap;

use ndeploy_store::hash::{Hash, HashAlgo};

use super::{FetchError, FetchResult, Fetched, Fetcher, GitInput};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl std::fmt::Display for AttrValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Bool(b) => f.write_str(if *b { "1" } else { "0" }),
        }
    }
}

/// An input's attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Input(pub BTreeMap<String, AttrValue>);

impl Input {
    pub fn get_str(&self, k: &str) -> FetchResult<Option<&str>> {
        match self.0.get(k) {
            None => Ok(None),
            Some(AttrValue::Str(s)) => Ok(Some(s)),
            Some(_) => Err(FetchError::Input(format!("attribute '{k}' of input '{self}' should be a string"))),
        }
    }
    pub fn req_str(&self, k: &str) -> FetchResult<&str> {
        self.get_str(k)?.ok_or_else(|| FetchError::Input(format!("input attribute '{k}' is missing in '{self}'")))
    }
    pub fn get_int(&self, k: &str) -> FetchResult<Option<i64>> {
        match self.0.get(k) {
            None => Ok(None),
            Some(AttrValue::Int(i)) => Ok(Some(*i)),
            Some(AttrValue::Str(s)) => {
                s.parse().map(Some).map_err(|_| FetchError::Input(format!("attribute '{k}' of '{self}' is not an integer")))
            }
            Some(_) => Err(FetchError::Input(format!("attribute '{k}' of input '{self}' should be an integer"))),
        }
    }
    pub fn get_bool(&self, k: &str) -> FetchResult<Option<bool>> {
        match self.0.get(k) {
            None => Ok(None),
            Some(AttrValue::Bool(b)) => Ok(Some(*b)),
            Some(AttrValue::Str(s)) if s == "1" || s == "0" => Ok(Some(s == "1")),
            Some(_) => Err(FetchError::Input(format!("attribute '{k}' of input '{self}' should be a Boolean"))),
        }
    }
    pub fn set(&mut self, k: &str, v: AttrValue) {
        self.0.insert(k.to_string(), v);
    }
    fn nar_hash(&self) -> FetchResult<Option<Hash>> {
        match self.get_str("narHash")? {
            None => Ok(None),
            Some(s) => Hash::parse(s, Some(HashAlgo::Sha256))
                .map(Some)
                .map_err(|e| FetchError::Input(format!("invalid narHash in input '{self}': {e}"))),
        }
    }
    fn name(&self) -> FetchResult<String> {
        Ok(self.get_str("name")?.unwrap_or("source").to_string())
    }
    /// Only the given attributes may appear (besides `type`).
    fn check_allowed(&self, allowed: &[&str]) -> FetchResult<()> {
        for k in self.0.keys() {
            if k != "type" && !allowed.contains(&k.as_str()) {
                return Err(FetchError::Input(format!("unsupported input attribute '{k}' in '{self}'")));
            }
        }
        Ok(())
    }
}

/// Rendered like Nix's `Input::to_string` (close enough for messages).
impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ty = match self.0.get("type") {
            Some(AttrValue::Str(t)) => t.as_str(),
            _ => "?",
        };
        let main = match ty {
            "path" => format!("path:{}", self.0.get("path").map(|v| v.to_string()).unwrap_or_default()),
            "git" => {
                let u = self.0.get("url").map(|v| v.to_string()).unwrap_or_default();
                if u.starts_with("git+") { u } else { format!("git+{u}") }
            }
            "github" | "gitlab" | "sourcehut" => format!(
                "{ty}:{}/{}",
                self.0.get("owner").map(|v| v.to_string()).unwrap_or_default(),
                self.0.get("repo").map(|v| v.to_string()).unwrap_or_default()
            ),
            _ => self.0.get("url").map(|v| v.to_string()).unwrap_or_else(|| ty.to_string()),
        };
        let query: Vec<String> = self
            .0
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "type" | "path" | "url" | "owner" | "repo"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if query.is_empty() { f.write_str(&main) } else { write!(f, "{main}?{}", query.join("&")) }
    }
}

/// A fetched tree and what `fetchTree` reports about it.
#[derive(Clone, Debug)]
pub struct Tree {
    pub fetched: Fetched,
    pub rev: Option<String>,
    pub rev_count: Option<i64>,
    pub last_modified: Option<i64>,
    /// `Some` for git inputs.
    pub submodules: Option<bool>,
    /// A git working tree with uncommitted changes.
    pub dirty: bool,
}

impl Tree {
    fn plain(fetched: Fetched) -> Tree {
        Tree { fetched, rev: None, rev_count: None, last_modified: None, submodules: None, dirty: false }
    }
}

impl Fetcher {
    /// Fetch an input given as attributes.
    pub fn fetch_input(&self, input: &Input) -> FetchResult<Tree> {
        let ty = input.req_str("type")?;
        let expected = input.nar_hash()?;
        let tree = match ty {
            "path" => {
                input.check_allowed(&["path", "narHash", "lastModified", "rev", "revCount"])?;
                let path = input.req_str("path")?;
                if !path.starts_with('/') {
                    return Err(FetchError::Input(format!(
                        "cannot fetch input '{input}' because it uses a relative path"
                    )));
                }
                let path = crate::support::path::canon_path(path).unwrap_or_else(|_| path.to_string());
                // Under a fetched input outside the store (a relative path
                // input of a flake): that input's real files.
                let f = match self.sources.resolve(&path) {
                    Some(r) => {
                        let tracked = r.tracked.as_ref().map(|t| t.under(&r.rel));
                        self.fetch_local(&r.real, "source", tracked)?
                    }
                    None => self.fetch_local(std::path::Path::new(&path), "source", None)?,
                };
                let mut t = Tree::plain(f);
                t.last_modified = Some(input.get_int("lastModified")?.unwrap_or(t.fetched.mtime));
                t.rev = input.get_str("rev")?.map(str::to_string);
                t.rev_count = input.get_int("revCount")?;
                t
            }
            "tarball" => {
                input.check_allowed(&["url", "narHash", "name"])?;
                let url = input.req_str("url")?;
                Tree::plain(self.fetch_tarball(url, expected.as_ref(), &input.name()?)?)
            }
            "file" => {
                input.check_allowed(&["url", "narHash", "name"])?;
                let url = input.req_str("url")?;
                let name = match input.get_str("name")? {
                    Some(n) => n.to_string(),
                    None => crate::support::path::base_name_of(url).to_string(),
                };
                Tree::plain(self.fetch_file(url, None, &name)?)
            }
            "git" => {
                input.check_allowed(&[
                    "url", "ref", "rev", "shallow", "submodules", "lastModified", "revCount", "narHash", "allRefs", "name",
                ])?;
                let g = GitInput {
                    url: input.req_str("url")?.to_string(),
                    rev: input.get_str("rev")?.map(str::to_string),
                    ref_: input.get_str("ref")?.map(str::to_string),
                    name: input.name()?,
                    submodules: input.get_bool("submodules")?.unwrap_or(false),
                    shallow: input.get_bool("shallow")?.unwrap_or(false),
                    nar_hash: expected,
                    last_modified: input.get_int("lastModified")?,
                    rev_count: input.get_int("revCount")?,
                };
                let (f, info) = self.fetch_git(&g)?;
                Tree {
                    dirty: info.rev.is_none(),
                    fetched: f,
                    rev: info.rev,
                    rev_count: info.rev_count,
                    last_modified: Some(info.last_modified),
                    submodules: Some(g.submodules),
                }
            }
            "github" | "gitlab" | "sourcehut" => {
                input.check_allowed(&["owner", "repo", "rev", "ref", "narHash", "lastModified", "host", "name"])?;
                let owner = input.req_str("owner")?;
                let repo = input.req_str("repo")?;
                let Some(rev) = input.get_str("rev")? else {
                    return Err(FetchError::Input(format!(
                        "input '{input}' is not locked (no 'rev'); ndeploy only fetches locked {ty} inputs"
                    )));
                };
                let host = input.get_str("host")?;
                if host.is_some_and(|h| !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')) {
                    return Err(FetchError::Input(format!("input '{input}' has an invalid host")));
                }
                // The archive URLs of Nix 2.8's git-archive fetchers.
                let url = match ty {
                    "github" => format!(
                        "https://api.{}/repos/{owner}/{repo}/tarball/{rev}",
                        host.unwrap_or("github.com")
                    ),
                    "gitlab" => format!(
                        "https://{}/api/v4/projects/{owner}%2F{repo}/repository/archive.tar.gz?sha={rev}",
                        host.unwrap_or("gitlab.com")
                    ),
                    _ => format!("https://{}/{owner}/{repo}/archive/{rev}.tar.gz", host.unwrap_or("git.sr.ht")),
                };
                let mut t = Tree::plain(self.fetch_tarball(&url, expected.as_ref(), &input.name()?)?);
                t.rev = Some(rev.to_string());
                t.last_modified = input.get_int("lastModified")?;
                t
            }
            other => return Err(FetchError::Input(format!("input type '{other}' is not supported by ndeploy"))),
        };
        if let Some(h) = &expected
            && *h != tree.fetched.nar_hash
        {
            return Err(FetchError::NarHashMismatch {
                input: input.to_string(),
                path: tree.fetched.real_path.display().to_string(),
                expected: h.to_sri(),
                got: tree.fetched.nar_hash.to_sri(),
            });
        }
        Ok(tree)
    }
}

/// Percent-decoding of a URL query component.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(h), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if c == b'+' { b' ' } else { c });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Split `url?query` into the URL and its decoded parameters.
pub fn split_query(s: &str) -> (&str, Vec<(String, String)>) {
    match s.split_once('?') {
        None => (s, Vec::new()),
        Some((u, q)) => (
            u,
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (percent_decode(k), percent_decode(v)),
                    None => (percent_decode(p), String::new()),
                })
                .collect(),
        ),
    }
}

fn typed(k: &str, v: String) -> AttrValue {
    match k {
        "lastModified" | "revCount" => v.parse().map(AttrValue::Int).unwrap_or(AttrValue::Str(v)),
        "shallow" | "submodules" | "allRefs" => AttrValue::Bool(v == "1" || v == "true"),
        _ => AttrValue::Str(v),
    }
}

/// Parse an input URL (`path:/p`, `git+file:///p?rev=…`, `github:o/r/rev`,
/// `https://…/x.tar.gz`, `file:///…`) into attributes; `dir` stays as an
/// attribute for the caller. Tarball URLs are recognised by their suffix.
pub fn parse_url(s: &str) -> FetchResult<Input> {
    let (base, query) = split_query(s);
    let mut input = Input::default();
    let bad = || FetchError::Input(format!("'{s}' is not a supported input URL"));
    if let Some(p) = base.strip_prefix("path:") {
        input.set("type", AttrValue::Str("path".into()));
        input.set("path", AttrValue::Str(p.to_string()));
    } else if let Some(rest) = base.strip_prefix("git+") {
        input.set("type", AttrValue::Str("git".into()));
        input.set("url", AttrValue::Str(rest.to_string()));
    } else if let Some((ty, rest)) = ["github", "gitlab", "sourcehut"]
        .iter()
        .find_map(|t| base.strip_prefix(&format!("{t}:")).map(|r| (*t, r)))
    {
        let parts: Vec<&str> = rest.split('/').collect();
        let (owner, repo) = match (parts.first(), parts.get(1)) {
            (Some(o), Some(r)) if !o.is_empty() && !r.is_empty() => (*o, *r),
            _ => return Err(bad()),
        };
        input.set("type", AttrValue::Str(ty.into()));
        input.set("owner", AttrValue::Str(owner.into()));
        input.set("repo", AttrValue::Str(repo.into()));
        if let Some(r) = parts.get(2) {
            let key = if r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit()) { "rev" } else { "ref" };
            input.set(key, AttrValue::Str(parts.get(2..).unwrap_or_default().join("/")));
        }
    } else if let Some(u) = ["tarball+", "file+", ""].iter().find_map(|p| {
        base.strip_prefix(p).filter(|u| ["http://", "https://", "file://"].iter().any(|s| u.starts_with(s)))
    }) {
        let tarball = base.starts_with("tarball+")
            || (!base.starts_with("file+")
                && [".zip", ".tar", ".tgz", ".tar.gz", ".tar.xz", ".tar.bz2", ".tar.zst"].iter().any(|x| u.ends_with(x)));
        input.set("type", AttrValue::Str(if tarball { "tarball" } else { "file" }.into()));
        input.set("url", AttrValue::Str(u.to_string()));
    } else if base.starts_with('/') {
        input.set("type", AttrValue::Str("path".into()));
        input.set("path", AttrValue::Str(base.to_string()));
    } else {
        return Err(bad());
    }
    for (k, v) in query {
        let v = typed(&k, v);
        input.set(&k, v);
    }
    Ok(input)
}

/// `YYYYmmddHHMMSS` in UTC for seconds since the epoch
/// (`lastModifiedDate`).
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil-from-days (proleptic Gregorian).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "19700101000000");
        assert_eq!(format_utc(1_700_000_000), "20231114221320");
        assert_eq!(format_utc(951_782_400), "20000229000000");
    }

    #[test]
    fn url_forms() {
        let i = parse_url("git+file:///r?rev=0123456789012345678901234567890123456789&dir=sub").unwrap();
        assert_eq!(i.get_str("type").unwrap(), Some("git"));
        assert_eq!(i.get_str("url").unwrap(), Some("file:///r"));
        assert_eq!(i.get_str("dir").unwrap(), Some("sub"));
        let i = parse_url("http://127.0.0.1:1/a.tar.gz?narHash=sha256-x").unwrap();
        assert_eq!(i.get_str("type").unwrap(), Some("tarball"));
        assert_eq!(i.get_str("narHash").unwrap(), Some("sha256-x"));
        let i = parse_url("github:NixOS/nixpkgs/nixos-22.05").unwrap();
        assert_eq!(i.get_str("ref").unwrap(), Some("nixos-22.05"));
        let i = parse_url("path:/a/b?lastModified=5").unwrap();
        assert_eq!(i.get_int("lastModified").unwrap(), Some(5));
        assert!(parse_url("foo").is_err());
    }
}
