//! The subset of OpenSSH's client configuration (`~/.ssh/config`) ndeploy honours.
//!
//! A small parser of our own (no well-kept crate implements OpenSSH's
//! first-match semantics and `!` negation faithfully). Semantics follow
//! ssh_config(5):
//! - lines are `Keyword args` or `Keyword=args`, keywords case-insensitive,
//!   `#` comments, arguments may be double-quoted;
//! - options before the first `Host` apply to every host; a `Host` block
//!   applies when one of its patterns (`*`, `?` globs, case-insensitive)
//!   matches the name given on the command line and none of its `!`
//!   patterns does;
//! - for each option the first value obtained wins, except `IdentityFile`,
//!   which accumulates;
//! - `~` and the tokens `%h %p %r %u %d %%` are expanded in `IdentityFile`
//!   and `UserKnownHostsFile`, `%h` in `HostName`.
//!
//! Honoured: `Host`, `HostName`, `Port`, `User`, `IdentityFile`,
//! `IdentitiesOnly`, `ProxyJump`, `UserKnownHostsFile`,
//! `StrictHostKeyChecking`, and `Include` (files read through an injected
//! reader; [`SshConfig::load`] reads them from disk: `~` expansion, relative
//! to `~/.ssh`, `*`/`?` globs in the file name, nesting at most
//! [`MAX_INCLUDE_DEPTH`] deep). An `Include` inside a `Host` block is
//! conditional on that block, as in OpenSSH. `Match` blocks are not evaluated
//! (their options never apply); other keywords are ignored.
//! Parsing never panics; malformed values are errors naming file and line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{SshError, expand_tilde};

/// `StrictHostKeyChecking`. We never skip verification: `No` only logs a
/// warning; `AcceptNew` records unknown keys like `--accept-new-host-keys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    Yes,
    AcceptNew,
    No,
}

/// How deeply `Include`s may nest.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// Reads the files an `Include` argument names, as `(file name, text)` pairs.
pub type IncludeReader<'a> = dyn FnMut(&str) -> Result<Vec<(String, String)>, SshError> + 'a;

#[derive(Debug, Clone)]
struct Opt {
    file: Arc<str>,
    keyword: String,
    args: Vec<String>,
    line: usize,
}

#[derive(Debug, Clone)]
struct Block {
    /// `(negated, lowercase pattern)`; `None` for the implicit global block
    /// and for `Match` blocks (which never apply).
    patterns: Option<Vec<(bool, String)>>,
    global: bool,
    opts: Vec<Opt>,
}

/// A parsed config file.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
}

/// The options that apply to one host, with defaults not yet filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// The real host name to connect to (`HostName`, else the name given).
    pub host_name: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_files: Vec<PathBuf>,
    pub identities_only: bool,
    /// Jump hosts in order (`ProxyJump a,b`), each `[user@]host[:port]` or an `ssh://` URL.
    pub proxy_jump: Vec<String>,
    /// `None` when unset (OpenSSH's default files apply); `Some(empty)` for `none`.
    pub user_known_hosts_files: Option<Vec<PathBuf>>,
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
}

/// Split a config line into words: whitespace-separated, `"..."` quoting.
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".to_owned());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Glob match with `*` and `?` (iterative, linear backtracking; no recursion).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

/// Whether a pattern list (`a*,!b` or space-separated words) matches `name`:
/// some positive pattern matches and no negated one does.
pub fn patterns_match<'a>(patterns: impl IntoIterator<Item = (bool, &'a str)>, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let mut matched = false;
    for (negated, pat) in patterns {
        if glob_match(&pat.to_ascii_lowercase(), &name) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

impl SshConfig {
    /// Parse `text`; `file` names it in errors. `Include` lines are ignored.
    pub fn parse(file: &str, text: &str) -> Result<SshConfig, SshError> {
        SshConfig::parse_with(file, text, &mut |_| Ok(Vec::new()))
    }

    /// Parse `text`, reading included files with `include`.
    pub fn parse_with(file: &str, text: &str, include: &mut IncludeReader<'_>) -> Result<SshConfig, SshError> {
        let mut blocks = vec![Block { patterns: None, global: true, opts: Vec::new() }];
        parse_into(&mut blocks, file, text, include, 0)?;
        Ok(SshConfig { blocks })
    }

    /// Read and parse `path` and its includes; a missing file is an empty config.
    pub fn load(path: &Path, home: Option<&Path>) -> Result<SshConfig, SshError> {
        match std::fs::read_to_string(path) {
            Ok(text) => SshConfig::parse_with(&path.display().to_string(), &text, &mut |arg| read_include(arg, home)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SshConfig::default()),
            Err(source) => Err(SshError::Io { what: format!("reading {}", path.display()), source }),
        }
    }

    /// The options for `host` (the name as given by the user), with `~` and
    /// `%` tokens expanded using `home` and `local_user`.
    pub fn resolve(&self, host: &str, home: Option<&Path>, local_user: &str) -> Result<HostConfig, SshError> {
        let err = |o: &Opt, message: String| SshError::Config { file: o.file.to_string(), line: o.line, message };
        let mut c = HostConfig::default();
        let mut host_name: Option<String> = None;
        let mut identities_only: Option<bool> = None;
        let mut proxy_jump: Option<Vec<String>> = None;
        let mut known_hosts: Option<Vec<String>> = None;
        let mut identity_files: Vec<String> = Vec::new();
        for block in &self.blocks {
            let applies = match &block.patterns {
                Some(p) => patterns_match(p.iter().map(|(n, s)| (*n, s.as_str())), host),
                None => block.global,
            };
            if !applies {
                continue;
            }
            for o in &block.opts {
                let first = o.args.first().map(String::as_str).unwrap_or_default();
                match o.keyword.as_str() {
                    "hostname" if host_name.is_none() => host_name = Some(first.replace("%h", host)),
                    "port" if c.port.is_none() => {
                        let port = first.parse::<u16>().ok().filter(|&p| p != 0);
                        c.port = Some(port.ok_or_else(|| err(o, format!("invalid Port '{first}'")))?);
                    }
                    "user" if c.user.is_none() => c.user = Some(first.to_owned()),
                    "identityfile" => identity_files.push(first.to_owned()),
                    "identitiesonly" if identities_only.is_none() => {
                        identities_only = Some(
                            parse_yes_no(first).ok_or_else(|| err(o, format!("invalid IdentitiesOnly '{first}'")))?,
                        );
                    }
                    "proxyjump" if proxy_jump.is_none() => {
                        proxy_jump = Some(if first.eq_ignore_ascii_case("none") {
                            Vec::new()
                        } else {
                            first.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
                        });
                    }
                    "userknownhostsfile" if known_hosts.is_none() => {
                        known_hosts =
                            Some(if first.eq_ignore_ascii_case("none") { Vec::new() } else { o.args.clone() });
                    }
                    "stricthostkeychecking" if c.strict_host_key_checking.is_none() => {
                        c.strict_host_key_checking = Some(match first.to_ascii_lowercase().as_str() {
                            "yes" | "ask" | "true" => StrictHostKeyChecking::Yes,
                            "accept-new" => StrictHostKeyChecking::AcceptNew,
                            "no" | "off" | "false" => StrictHostKeyChecking::No,
                            _ => return Err(err(o, format!("invalid StrictHostKeyChecking '{first}'"))),
                        });
                    }
                    _ => {}
                }
            }
        }
        c.host_name = host_name.unwrap_or_else(|| host.to_owned());
        c.identities_only = identities_only.unwrap_or(false);
        c.proxy_jump = proxy_jump.unwrap_or_default();
        let tokens = Tokens {
            host_name: &c.host_name,
            port: c.port.unwrap_or(22),
            user: c.user.as_deref().unwrap_or(local_user),
            local_user,
            home,
        };
        c.identity_files = identity_files.iter().map(|f| tokens.expand_path(f)).collect();
        c.user_known_hosts_files = known_hosts.map(|files| files.iter().map(|f| tokens.expand_path(f)).collect());
        Ok(c)
    }
}

/// Parse `text` (from `file`) into `blocks`, following includes.
fn parse_into(
    blocks: &mut Vec<Block>,
    file: &str,
    text: &str,
    include: &mut IncludeReader<'_>,
    depth: usize,
) -> Result<(), SshError> {
    let err = |line: usize, message: String| SshError::Config { file: file.to_owned(), line, message };
    let file_name: Arc<str> = Arc::from(file);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // `Keyword=args` or `Keyword args`.
        let split_at = trimmed.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(trimmed.len());
        let (kw, rest) = trimmed.split_at(split_at);
        let rest = rest.trim_start();
        let rest = rest.strip_prefix('=').unwrap_or(rest);
        let keyword = kw.to_ascii_lowercase();
        let args = words(rest).map_err(|m| err(line, m))?;
        match keyword.as_str() {
            "host" => {
                if args.is_empty() {
                    return Err(err(line, "Host needs at least one pattern".to_owned()));
                }
                let pats = args
                    .iter()
                    .map(|a| match a.strip_prefix('!') {
                        Some(p) => (true, p.to_ascii_lowercase()),
                        None => (false, a.to_ascii_lowercase()),
                    })
                    .collect();
                blocks.push(Block { patterns: Some(pats), global: false, opts: Vec::new() });
            }
            "match" => {
                tracing::debug!("{file}:{line}: Match blocks are not supported; their options are ignored");
                blocks.push(Block { patterns: None, global: false, opts: Vec::new() });
            }
            "include" => {
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(err(line, format!("Include nested more than {MAX_INCLUDE_DEPTH} deep (a loop?)")));
                }
                let (patterns, global) = blocks.last().map(|b| (b.patterns.clone(), b.global)).unwrap_or((None, true));
                if patterns.is_none() && !global {
                    continue; // inside a Match block, which never applies
                }
                for arg in &args {
                    for (name, text) in include(arg)? {
                        // The included file's leading options share the enclosing condition.
                        blocks.push(Block { patterns: patterns.clone(), global, opts: Vec::new() });
                        parse_into(blocks, &name, &text, include, depth + 1)?;
                    }
                }
                // The rest of the enclosing block continues under its condition.
                blocks.push(Block { patterns, global, opts: Vec::new() });
            }
            _ => {
                if args.is_empty() {
                    return Err(err(line, format!("{kw} needs a value")));
                }
                if let Some(b) = blocks.last_mut() {
                    b.opts.push(Opt { file: Arc::clone(&file_name), keyword, args, line });
                }
            }
        }
    }
    Ok(())
}

/// The files an `Include` argument names on disk, sorted; missing ones are skipped.
fn read_include(arg: &str, home: Option<&Path>) -> Result<Vec<(String, String)>, SshError> {
    let path = expand_tilde(arg, home);
    let path = match (path.is_absolute(), home) {
        (false, Some(h)) => h.join(".ssh").join(path),
        _ => path,
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let paths: Vec<PathBuf> = if name.contains(['*', '?']) {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let mut found: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| glob_match(&name, &e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect(),
            Err(_) => Vec::new(),
        };
        found.sort();
        found
    } else {
        vec![path]
    };
    let mut out = Vec::new();
    for p in paths {
        match std::fs::read_to_string(&p) {
            Ok(text) => out.push((p.display().to_string(), text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SshError::Io { what: format!("reading {}", p.display()), source }),
        }
    }
    Ok(out)
}

fn parse_yes_no(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

struct Tokens<'a> {
    host_name: &'a str,
    port: u16,
    user: &'a str,
    local_user: &'a str,
    home: Option<&'a Path>,
}

impl Tokens<'_> {
    fn expand_path(&self, s: &str) -> PathBuf {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('h') => out.push_str(self.host_name),
                Some('p') => out.push_str(&self.port.to_string()),
                Some('r') => out.push_str(self.user),
                Some('u') => out.push_str(self.local_user),
                Some('d') => out.push_str(&self.home.map(|h| h.display().to_string()).unwrap_or_default()),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        expand_tilde(&out, self.home)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
# global defaults
IdentityFile ~/.ssh/global_key

Host web? !web9 "db*"
    HostName %h.example.org
    User deploy
    Port=2222
    IdentityFile ~/.ssh/id_%r_%h

Host bastion
    HostName 192.0.2.1
    User jump

Host *.internal
    ProxyJump bastion,admin@other:2200
    UserKnownHostsFile ~/.ssh/kh_internal /etc/ssh/kh2
    StrictHostKeyChecking no

Match host web1
    User nobody

Host *
    User root
    Port 22
    StrictHostKeyChecking accept-new
    IdentitiesOnly yes
"#;

    fn resolve(host: &str) -> HostConfig {
        SshConfig::parse("cfg", CFG).unwrap().resolve(host, Some(Path::new("/home/me")), "me").unwrap()
    }

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let c = resolve("web1");
        assert_eq!(c.host_name, "web1.example.org");
        assert_eq!(c.user.as_deref(), Some("deploy"));
        assert_eq!(c.port, Some(2222));
        assert_eq!(
            c.identity_files,
            vec![PathBuf::from("/home/me/.ssh/global_key"), PathBuf::from("/home/me/.ssh/id_deploy_web1.example.org")]
        );
        assert!(c.identities_only);
        assert_eq!(c.strict_host_key_checking, Some(StrictHostKeyChecking::AcceptNew));
        assert!(c.proxy_jump.is_empty());
    }

    #[test]
    fn negation_and_quotes() {
        assert_eq!(resolve("web9").user.as_deref(), Some("root"));
        assert_eq!(resolve("web9").host_name, "web9");
        assert_eq!(resolve("web10").user.as_deref(), Some("root"), "? matches exactly one character");
        assert_eq!(resolve("DB-main").user.as_deref(), Some("deploy"), "patterns are case-insensitive");
    }

    #[test]
    fn proxy_jump_and_known_hosts() {
        let c = resolve("a.internal");
        assert_eq!(c.proxy_jump, vec!["bastion".to_owned(), "admin@other:2200".to_owned()]);
        assert_eq!(
            c.user_known_hosts_files,
            Some(vec![PathBuf::from("/home/me/.ssh/kh_internal"), PathBuf::from("/etc/ssh/kh2")])
        );
        assert_eq!(resolve("web1").user_known_hosts_files, None);
        assert_eq!(c.strict_host_key_checking, Some(StrictHostKeyChecking::No));
        assert_eq!(resolve("bastion").host_name, "192.0.2.1");
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("*.example.org", "x.y.example.org"));
        assert!(!glob_match("?", ""));
        assert!(glob_match(&"*".repeat(50), &"a".repeat(1000)));
        assert!(!glob_match(&"*a".repeat(30), &"a".repeat(29)));
    }

    #[test]
    fn includes_are_conditional_and_bounded() {
        let mut read = |arg: &str| -> Result<Vec<(String, String)>, SshError> {
            Ok(match arg {
                "hosts.conf" => vec![("hosts.conf".to_owned(), "User inc-user\nHost db\n  Port 5\n".to_owned())],
                "loop" => vec![("loop".to_owned(), "Include loop\n".to_owned())],
                _ => Vec::new(),
            })
        };
        let cfg = SshConfig::parse_with(
            "main",
            "Host web\n  Include hosts.conf missing\n  Port 7\nHost *\n  User fallback\n",
            &mut read,
        )
        .unwrap();
        let r = |h: &str| cfg.resolve(h, None, "me").unwrap();
        assert_eq!((r("web").user.as_deref(), r("web").port), (Some("inc-user"), Some(7)));
        assert_eq!((r("db").user.as_deref(), r("db").port), (Some("fallback"), Some(5)));
        assert_eq!(r("other").user.as_deref(), Some("fallback"));
        let e = SshConfig::parse_with("main", "Include loop\n", &mut read).unwrap_err();
        assert!(e.to_string().contains("nested"), "{e}");
    }

    #[test]
    fn include_reads_globs_from_disk() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(ssh.join("conf.d")).unwrap();
        std::fs::write(ssh.join("conf.d/b.conf"), "Host b\n  Port 2\n").unwrap();
        std::fs::write(ssh.join("conf.d/a.conf"), "Host b\n  Port 1\n").unwrap();
        std::fs::write(ssh.join("conf.d/skip.txt"), "Host b\n  Port 3\n").unwrap();
        std::fs::write(ssh.join("config"), "Include conf.d/*.conf ~/.ssh/none\n").unwrap();
        let cfg = SshConfig::load(&ssh.join("config"), Some(home.path())).unwrap();
        assert_eq!(cfg.resolve("b", Some(home.path()), "me").unwrap().port, Some(1), "sorted, first wins");
        let bad = SshConfig::parse("f", "Host x\n  Port 0\n").unwrap().resolve("x", None, "me").unwrap_err();
        assert!(bad.to_string().starts_with("f:2:"), "{bad}");
    }

    #[test]
    fn errors_name_the_line() {
        let e = SshConfig::parse("f", "Host x\n  Port nope\n").unwrap().resolve("x", None, "me").unwrap_err();
        assert!(e.to_string().starts_with("f:2:"), "{e}");
        assert!(SshConfig::parse("f", "Host\n").is_err());
        assert!(SshConfig::parse("f", "User \"unterminated\n").is_err());
        assert!(SshConfig::parse("f", "Port\n").is_err());
    }
}
