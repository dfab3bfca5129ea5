//! [`SshTarget`]: where to deploy, as written by the user.
//!
//! Accepted forms: `ssh://[USER@]HOST[:PORT][?remote-store=STORE]` (also
//! `ssh-ng://`), and a plain `[USER@]HOST`. `HOST` may be a `~/.ssh/config`
//! alias; IPv6 literals are written in brackets (`[::1]:2222`). Query values
//! are percent-decoded, so `remote-store=local%3Froot%3D/x` works. Fields left
//! out are `None` and are filled in later from `~/.ssh/config` and defaults.
//! Invariant: `host` is non-empty and has no whitespace, `/`, or leading `-`.

use std::fmt;
use std::str::FromStr;

use super::SshError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// The `--store` the remote `nix-daemon --stdio` should serve.
    pub remote_store: Option<String>,
}

impl SshTarget {
    /// A target for `host` with everything else defaulted.
    pub fn new(host: impl Into<String>) -> SshTarget {
        SshTarget { user: None, host: host.into(), port: None, remote_store: None }
    }

    pub fn parse(s: &str) -> Result<SshTarget, SshError> {
        let bad = |reason: &str| SshError::InvalidTarget { target: s.to_owned(), reason: reason.to_owned() };
        let (rest, is_url) = match s.split_once("://") {
            Some(("ssh" | "ssh-ng", rest)) => (rest, true),
            Some((scheme, _)) => return Err(bad(&format!("unsupported scheme '{scheme}' (use ssh://)"))),
            None => (s, false),
        };
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) if is_url => (a, Some(q)),
            Some(_) => return Err(bad("options like '?remote-store=' need the ssh:// form")),
            None => (rest, None),
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => {
                if u.is_empty() {
                    return Err(bad("empty user name"));
                }
                (Some(percent_decode(u).ok_or_else(|| bad("bad %-escape in user"))?), h)
            }
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport).map_err(|r| bad(&r))?;
        if host.is_empty() {
            return Err(bad("no host name"));
        }
        if host.starts_with('-') || host.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
            return Err(bad("the host name has characters a host name cannot have"));
        }
        let mut remote_store = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("remote-store", v)) => {
                    remote_store = Some(percent_decode(v).ok_or_else(|| bad("bad %-escape in remote-store"))?);
                }
                _ => return Err(bad(&format!("unknown option '{pair}' (only remote-store=STORE is supported)"))),
            }
        }
        Ok(SshTarget { user, host: host.to_owned(), port, remote_store })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let parse_port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| format!("invalid port '{p}'"));
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '[' in host")?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host, Some(parse_port(p)?))),
                None => Err(format!("unexpected '{after}' after ']'")),
            },
        };
    }
    match s.split_once(':') {
        Some((h, p)) if !p.contains(':') => Ok((h, Some(parse_port(p)?))),
        Some(_) => Err("IPv6 addresses must be written in brackets, e.g. [::1]:22".to_owned()),
        None => Ok((s, None)),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

impl FromStr for SshTarget {
    type Err = SshError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SshTarget::parse(s)
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ssh://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(s) = &self.remote_store {
            let enc: String = s
                .chars()
                .map(|c| match c {
                    '&' | '%' | '#' | ' ' => format!("%{:02X}", c as u32),
                    c => c.to_string(),
                })
                .collect();
            write!(f, "?remote-store={enc}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(user: Option<&str>, host: &str, port: Option<u16>, store: Option<&str>) -> SshTarget {
        SshTarget { user: user.map(Into::into), host: host.into(), port, remote_store: store.map(Into::into) }
    }

    #[test]
    fn forms() {
        assert_eq!(SshTarget::parse("web1").unwrap(), t(None, "web1", None, None));
        assert_eq!(SshTarget::parse("root@web1").unwrap(), t(Some("root"), "web1", None, None));
        assert_eq!(SshTarget::parse("deploy@10.0.0.1:2222").unwrap(), t(Some("deploy"), "10.0.0.1", Some(2222), None));
        assert_eq!(SshTarget::parse("ssh://web1").unwrap(), t(None, "web1", None, None));
        assert_eq!(SshTarget::parse("ssh-ng://u@h:22/").unwrap(), t(Some("u"), "h", Some(22), None));
        assert_eq!(
            SshTarget::parse("ssh://root@h:2200?remote-store=local%3Froot%3D/tmp/s").unwrap(),
            t(Some("root"), "h", Some(2200), Some("local?root=/tmp/s"))
        );
        assert_eq!(
            SshTarget::parse("ssh://h?remote-store=local?root=/x").unwrap(),
            t(None, "h", None, Some("local?root=/x"))
        );
        assert_eq!(SshTarget::parse("ssh://[::1]:2222").unwrap(), t(None, "::1", Some(2222), None));
        assert_eq!(SshTarget::parse("[fe80::1]").unwrap(), t(None, "fe80::1", None, None));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "ssh://",
            "http://h",
            "h:0",
            "h:99999",
            "h:x",
            "@h",
            "::1",
            "-oProxyCommand=x",
            "h?remote-store=x",
            "ssh://h?foo=1",
            "[::1",
            "[::1]x",
            "a b",
            "ssh://h?remote-store=%zz",
        ] {
            assert!(SshTarget::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["ssh://root@h:22", "ssh://h", "ssh://[::1]:2", "ssh://u@h?remote-store=local?root=/a%26b"] {
            let t = SshTarget::parse(s).unwrap();
            assert_eq!(t.to_string(), s);
            assert_eq!(SshTarget::parse(&t.to_string()).unwrap(), t);
        }
    }
}
