//! [`SshSession`]: an authenticated SSH connection to one target.
//!
//! Connecting resolves the target through `~/.ssh/config` ([`super::config`]),
//! opens TCP (or, with `ProxyJump`, a `direct-tcpip` channel on an already
//! connected jump host, recursively, at most [`MAX_JUMPS`] deep), verifies the
//! host key in [`Client::check_server_key`] against known_hosts (see the
//! invariants in [`super`]), and authenticates ([`super::auth`]). The
//! known_hosts files are the user's (`UserKnownHostsFile`, default
//! `~/.ssh/known_hosts` and `known_hosts2`; accept-new records in the first)
//! followed by the global ones, which are only read. The whole
//! connect is bounded by [`ConnectOptions::connect_timeout`]. The TCP stream
//! is a [`super::tcp::QuickAckStream`] (no Nagle, quick ACKs, byte counts);
//! each stage's duration is kept ([`SshSession::stages`]).
//!
//! A session is `Send + Sync`; its methods take `&self`, so one session can
//! run many commands at once and many sessions can run concurrently on tokio.
//! Commands are strings run by the remote user's login shell; quote
//! arguments with [`super::shell_quote`]. Commands that need root run as
//! `sudo -n -- CMD` for non-root users ([`SshSession::root_command`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{Algorithm, HashAlg, PublicKeyOrCertificate};

use super::auth::{AuthMethods, authenticate, default_identity_files};
use super::config::{SshConfig, StrictHostKeyChecking};
use super::exec_stream::ExecStream;
use super::tcp::{QuickAckStream, WireCounters};
use super::known_hosts::{HostKeyVerdict, KnownHosts, append_host_key, host_entry_name};
use super::{HostKeyChanged, Result, SshError, SshTarget, UnknownHostKey, home_dir, shell_quote};

/// The longest ProxyJump chain followed.
pub const MAX_JUMPS: usize = 8;

/// How to connect; [`ConnectOptions::from_env`] reads `$HOME` and `$SSH_AUTH_SOCK`.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The home directory whose `.ssh/` holds config, keys and known_hosts.
    pub home: Option<PathBuf>,
    /// The client config file; default `HOME/.ssh/config`.
    pub config_file: Option<PathBuf>,
    /// The ssh-agent socket; `None` disables the agent.
    pub agent_socket: Option<PathBuf>,
    /// Record the keys of hosts not yet in any known_hosts file (never
    /// accepts a changed key).
    pub accept_new_host_keys: bool,
    /// System-wide known_hosts files, consulted but never written
    /// (default `/etc/ssh/ssh_known_hosts`, `/etc/ssh/ssh_known_hosts2`).
    pub global_known_hosts_files: Vec<PathBuf>,
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions::from_env()
    }
}

impl ConnectOptions {
    pub fn from_env() -> ConnectOptions {
        ConnectOptions {
            home: home_dir(),
            config_file: None,
            agent_socket: std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).map(PathBuf::from),
            accept_new_host_keys: false,
            global_known_hosts_files: vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2"),
            ],
            connect_timeout: Duration::from_secs(20),
        }
    }

    fn config_path(&self) -> Option<PathBuf> {
        self.config_file.clone().or_else(|| self.home.as_ref().map(|h| h.join(".ssh/config")))
    }
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    Code(u32),
    /// Killed by a signal (its name).
    Signal(String),
    /// The channel closed without an exit status.
    Unknown,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
    pub fn code(&self) -> Option<u32> {
        match self {
            ExitStatus::Code(c) => Some(*c),
            _ => None,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
            ExitStatus::Unknown => f.write_str("no exit status"),
        }
    }
}

/// Which stream a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Stdout,
    Stderr,
}

/// The collected result of [`SshSession::exec`].
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
}

impl ExecOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A target with config and defaults applied.
#[derive(Debug, Clone)]
struct Resolved {
    /// The name the user gave (for messages).
    alias: String,
    host_name: String,
    port: u16,
    user: String,
    auth: AuthMethods,
    proxy_jump: Vec<String>,
    /// The user's known_hosts files (new keys go to the first), then the global ones.
    known_hosts_files: Vec<PathBuf>,
    /// Where accept-new records keys: the first user file, if any.
    record_to: Option<PathBuf>,
    accept_new: bool,
}

fn local_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "root".to_owned())
}

fn resolve(target: &SshTarget, config: &SshConfig, opts: &ConnectOptions) -> Result<Resolved> {
    let home = opts.home.as_deref();
    let local = local_user();
    let c = config.resolve(&target.host, home, &local)?;
    let user = target.user.clone().or(c.user).unwrap_or(local);
    let port = target.port.or(c.port).unwrap_or(22);
    let identity_files = if c.identity_files.is_empty() { default_identity_files(home) } else { c.identity_files };
    let user_files = match (c.user_known_hosts_files, home) {
        (Some(files), _) => files,
        (None, Some(h)) => vec![h.join(".ssh/known_hosts"), h.join(".ssh/known_hosts2")],
        (None, None) => Vec::new(),
    };
    let record_to = user_files.first().cloned();
    let known_hosts_files = user_files.into_iter().chain(opts.global_known_hosts_files.iter().cloned()).collect();
    let accept_new = match c.strict_host_key_checking {
        Some(StrictHostKeyChecking::AcceptNew) => true,
        Some(StrictHostKeyChecking::No) => {
            tracing::warn!("ignoring StrictHostKeyChecking=no for {}: ndeploy always verifies host keys", target.host);
            opts.accept_new_host_keys
        }
        _ => opts.accept_new_host_keys,
    };
    Ok(Resolved {
        alias: target.host.clone(),
        host_name: c.host_name,
        port,
        user,
        auth: AuthMethods {
            agent_socket: opts.agent_socket.clone(),
            identity_files,
            identities_only: c.identities_only,
        },
        proxy_jump: c.proxy_jump,
        known_hosts_files,
        record_to,
        accept_new,
    })
}

/// The russh event handler: host key verification.
pub struct Client {
    name: String,
    host: String,
    /// `ssh-keyscan` arguments for the real host name and port.
    scan: String,
    known_hosts: Arc<KnownHosts>,
    files: Vec<PathBuf>,
    record_to: Option<PathBuf>,
    accept_new: bool,
    /// Why the host key was refused, for the caller (russh only sees `false`).
    refusal: Arc<Mutex<Option<SshError>>>,
}

impl Client {
    fn verify(&self, key: &PublicKeyOrCertificate) -> Result<()> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Err(SshError::HostCertificate { host: self.host.clone() });
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        match self.known_hosts.check(&self.name, key) {
            HostKeyVerdict::Known { .. } => Ok(()),
            HostKeyVerdict::Revoked { file, line } => Err(SshError::HostKeyRevoked {
                host: self.host.clone(),
                fingerprint,
                file: file.display().to_string(),
                line,
            }),
            HostKeyVerdict::Changed { file, line } => Err(SshError::HostKeyChanged(Box::new(HostKeyChanged {
                host: self.host.clone(),
                entry: self.name.clone(),
                key_type: key.algorithm().as_str().to_owned(),
                fingerprint,
                file: file.display().to_string(),
                line,
            }))),
            HostKeyVerdict::Unknown => match (self.accept_new, &self.record_to) {
                (true, Some(file)) => {
                    append_host_key(file, &self.name, key)?;
                    tracing::warn!("recorded the new host key of {} ({fingerprint}) in {}", self.host, file.display());
                    Ok(())
                }
                _ => Err(SshError::UnknownHostKey(Box::new(UnknownHostKey {
                    host: self.host.clone(),
                    scan: self.scan.clone(),
                    key_type: key.algorithm().as_str().to_owned(),
                    fingerprint,
                    files: self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
                }))),
            },
        }
    }
}

impl client::Handler for Client {
    type Error = SshError;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool> {
        match self.verify(key) {
            Ok(()) => Ok(true),
            Err(e) => {
                if let Ok(mut r) = self.refusal.lock() {
                    *r = Some(e);
                }
                Ok(false)
            }
        }
    }
}

/// An authenticated connection to a target.
pub struct SshSession {
    handle: Handle<Client>,
    user: String,
    host: String,
    /// The jump host this connection is tunnelled through (kept alive with it).
    _jump: Option<Box<SshSession>>,
    /// How long each connection stage took (see [`SshSession::stages`]).
    stages: Vec<(&'static str, Duration)>,
    /// Bytes on the TCP connection (`None` through a ProxyJump channel).
    wire: Option<Arc<WireCounters>>,
}

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSession").field("user", &self.user).field("host", &self.host).finish()
    }
}

impl SshSession {
    /// Connect to `target` and authenticate.
    pub async fn connect(target: &SshTarget, opts: &ConnectOptions) -> Result<SshSession> {
        let config = match opts.config_path() {
            Some(p) => SshConfig::load(&p, opts.home.as_deref())?,
            None => SshConfig::default(),
        };
        let secs = opts.connect_timeout.as_secs();
        let fut = Box::pin(connect_via(target, &config, opts, 0));
        match tokio::time::timeout(opts.connect_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Timeout { host: target.host.clone(), port: target.port.unwrap_or(22), secs }),
        }
    }

    /// The remote user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The host as the user named it.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn is_root(&self) -> bool {
        self.user == "root"
    }

    /// The stages of connecting and how long each took, in order: `config`
    /// (ssh config and known_hosts read), `tcp` (or the `jump` hops and the
    /// forwarded channel), `kex` (version exchange, key exchange, host key
    /// check) and `auth`.
    pub fn stages(&self) -> &[(&'static str, Duration)] {
        &self.stages
    }

    /// Bytes sent and received on the TCP connection so far (SSH framing
    /// included); `None` for a session tunnelled through a jump host.
    pub fn wire_bytes(&self) -> Option<(u64, u64)> {
        self.wire.as_ref().map(|w| (w.sent(), w.received()))
    }

    /// `cmd` as root: unchanged for root, else `sudo -n -- CMD` (CMD must be one command).
    pub fn root_command(&self, cmd: &str) -> String {
        if self.is_root() { cmd.to_owned() } else { format!("sudo -n -- {cmd}") }
    }

    /// A shell `script` (pipes, `;`, redirections) as root: `sh -c SCRIPT`,
    /// through `sudo -n --` for non-root users.
    pub fn root_script(&self, script: &str) -> String {
        self.root_command(&format!("sh -c {}", shell_quote(script)))
    }

    async fn open_exec(&self, cmd: &str) -> Result<russh::Channel<client::Msg>> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, cmd).await?;
        Ok(channel)
    }

    /// Run `cmd`, handing output chunks to `on_output` as they arrive.
    pub async fn exec_with(&self, cmd: &str, mut on_output: impl FnMut(OutputKind, &[u8])) -> Result<ExitStatus> {
        let mut channel = self.open_exec(cmd).await?;
        channel.eof().await?;
        let mut status = ExitStatus::Unknown;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => on_output(OutputKind::Stdout, &data),
                ChannelMsg::ExtendedData { data, ext: 1 } => on_output(OutputKind::Stderr, &data),
                ChannelMsg::ExitStatus { exit_status } => status = ExitStatus::Code(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => status = ExitStatus::Signal(format!("{signal_name:?}")),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(status)
    }

    /// Run `cmd` and collect its output.
    pub async fn exec(&self, cmd: &str) -> Result<ExecOutput> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let status = self
            .exec_with(cmd, |kind, data| match kind {
                OutputKind::Stdout => stdout.extend_from_slice(data),
                OutputKind::Stderr => stderr.extend_from_slice(data),
            })
            .await?;
        Ok(ExecOutput { stdout, stderr, status })
    }

    /// Run `cmd`, calling `on_line` for each complete line of output (without
    /// its newline; a last unterminated line is delivered too). For prefixed
    /// progress output like `host> line`.
    pub async fn exec_lines(&self, cmd: &str, mut on_line: impl FnMut(OutputKind, &str)) -> Result<ExitStatus> {
        let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let status = self
            .exec_with(cmd, |kind, data| {
                let buf = &mut pending[kind as usize];
                buf.extend_from_slice(data);
                while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    on_line(
                        kind,
                        String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).trim_end_matches('\r'),
                    );
                }
            })
            .await?;
        for (kind, rest) in [(OutputKind::Stdout, &pending[0]), (OutputKind::Stderr, &pending[1])] {
            if !rest.is_empty() {
                on_line(kind, &String::from_utf8_lossy(rest));
            }
        }
        Ok(status)
    }

    /// Run `cmd` as root (see [`Self::root_command`]); a sudo password
    /// prompt becomes [`SshError::SudoPassword`].
    pub async fn exec_as_root(&self, cmd: &str) -> Result<ExecOutput> {
        let out = self.exec(&self.root_command(cmd)).await?;
        if !self.is_root() && !out.status.success() {
            self.check_sudo(&out.stderr_str())?;
        }
        Ok(out)
    }

    /// An error if `stderr` shows that sudo wanted a password.
    pub fn check_sudo(&self, stderr: &str) -> Result<()> {
        if stderr.contains("sudo:")
            && (stderr.contains("password is required") || stderr.contains("a terminal is required"))
        {
            return Err(SshError::SudoPassword { host: self.host.clone(), user: self.user.clone() });
        }
        Ok(())
    }

    /// Run `cmd` with its stdin/stdout as a byte stream; stderr goes to `on_stderr`.
    pub async fn exec_stream(&self, cmd: &str, on_stderr: impl FnMut(&[u8]) + Send + 'static) -> Result<ExecStream> {
        let channel = self.open_exec(cmd).await?;
        let (read, write) = channel.split();
        let writer = write.make_writer();
        Ok(ExecStream::start(read, writer, on_stderr))
    }

    /// Open a TCP connection from the remote host to `host:port` (as ProxyJump does).
    pub async fn direct_tcpip(&self, host: &str, port: u16) -> Result<russh::ChannelStream<client::Msg>> {
        let ch = self.handle.channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0).await?;
        Ok(ch.into_stream())
    }

    /// Close the connection politely.
    pub async fn disconnect(&self) -> Result<()> {
        self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await?;
        Ok(())
    }
}

fn client_config(known: &[Algorithm]) -> Arc<client::Config> {
    let mut preferred = russh::Preferred::default();
    if !known.is_empty() {
        // Ask for a key type we can verify first, as OpenSSH does.
        // RSA entries are one key type whatever the signature hash.
        let rsa = |a: &Algorithm| matches!(a, Algorithm::Rsa { .. });
        let is_known = |a: &Algorithm| known.iter().any(|k| k == a || (rsa(k) && rsa(a)));
        let mut keys: Vec<Algorithm> = preferred.key.iter().filter(|a| is_known(a)).cloned().collect();
        keys.extend(preferred.key.iter().filter(|a| !is_known(a)).cloned());
        preferred.key = keys.into();
    }
    if aes_gcm_in_hardware() {
        // Bulk transfers (`ndeploy push`): with AES and carry-less multiply
        // in the CPU, AES-GCM costs both ends far less than
        // chacha20-poly1305 (russh's and OpenSSH's default first choice).
        let gcm = russh::cipher::AES_256_GCM;
        let mut ciphers = vec![gcm];
        ciphers.extend(preferred.cipher.iter().copied().filter(|c| *c != gcm));
        preferred.cipher = ciphers.into();
    }
    Arc::new(client::Config {
        preferred,
        keepalive_interval: Some(Duration::from_secs(30)),
        nodelay: true,
        ..Default::default()
    })
}

fn aes_gcm_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

async fn connect_via(
    target: &SshTarget,
    config: &SshConfig,
    opts: &ConnectOptions,
    depth: usize,
) -> Result<SshSession> {
    if depth > MAX_JUMPS {
        return Err(SshError::ProxyJumpTooDeep { host: target.host.clone(), max: MAX_JUMPS });
    }
    let r = resolve(target, config, opts)?;
    // ProxyJump a,b: reach a (with its own config), then b through a, then the target through b.
    let mut jump: Option<SshSession> = None;
    for hop in &r.proxy_jump {
        let hop_target = SshTarget::parse(hop)?;
        let next = match jump.take() {
            None => Box::pin(connect_via(&hop_target, config, opts, depth + 1)).await?,
            Some(via) => {
                let hr = resolve(&hop_target, config, opts)?;
                establish(&hr, Some(via)).await?
            }
        };
        jump = Some(next);
    }
    establish(&r, jump).await
}

async fn establish(r: &Resolved, jump: Option<SshSession>) -> Result<SshSession> {
    let mut clock = Stages::start();
    let known_hosts = Arc::new(KnownHosts::load(&r.known_hosts_files)?);
    let name = host_entry_name(&r.host_name, r.port);
    let config = client_config(&known_hosts.algorithms_for(&name));
    let refusal = Arc::new(Mutex::new(None));
    let handler = Client {
        name,
        host: r.alias.clone(),
        scan: if r.port == 22 { r.host_name.clone() } else { format!("-p {} {}", r.port, r.host_name) },
        known_hosts,
        files: r.known_hosts_files.clone(),
        record_to: r.record_to.clone(),
        accept_new: r.accept_new,
        refusal: Arc::clone(&refusal),
    };
    clock.lap("config");
    let mut wire = None;
    let connected = match &jump {
        Some(via) => {
            let stream = via.direct_tcpip(&r.host_name, r.port).await.map_err(|e| SshError::Remote {
                host: via.host.clone(),
                message: format!("ProxyJump: could not forward to {} port {}: {e}", r.host_name, r.port),
            })?;
            clock.lap("jump");
            client::connect_stream(config, stream, handler).await
        }
        None => {
            let tcp = tokio::net::TcpStream::connect((r.host_name.as_str(), r.port))
                .await
                .map_err(|source| SshError::Connect { host: r.host_name.clone(), port: r.port, source })?;
            clock.lap("tcp");
            // No Nagle, quick ACKs: ~40 ms saved per stalled pair of messages.
            let stream = QuickAckStream::new(tcp);
            wire = Some(stream.counters());
            client::connect_stream(config, stream, handler).await
        }
    };
    let mut handle = match connected {
        Ok(h) => h,
        Err(e) => {
            let refused = refusal.lock().ok().and_then(|mut r| r.take());
            return Err(refused.unwrap_or(e));
        }
    };
    clock.lap("kex");
    authenticate(&mut handle, &r.user, &r.alias, &r.auth).await?;
    clock.lap("auth");
    let stages = clock.into_stages();
    tracing::debug!("connected to {}: {}", r.alias, describe_stages(&stages));
    Ok(SshSession { handle, user: r.user.clone(), host: r.alias.clone(), _jump: jump.map(Box::new), stages, wire })
}

/// A stopwatch that records named laps.
#[derive(Debug)]
pub struct Stages {
    last: std::time::Instant,
    laps: Vec<(&'static str, Duration)>,
}

impl Stages {
    pub fn start() -> Stages {
        Stages { last: std::time::Instant::now(), laps: Vec::new() }
    }

    /// Record the time since the previous lap as `name`.
    pub fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((name, now.duration_since(self.last)));
        self.last = now;
    }

    pub fn into_stages(self) -> Vec<(&'static str, Duration)> {
        self.laps
    }
}

/// `tcp 0.4 ms, kex 12.0 ms, ...`
pub fn describe_stages(stages: &[(&'static str, Duration)]) -> String {
    stages.iter().map(|(n, d)| format!("{n} {:.1} ms", d.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ConnectOptions {
        ConnectOptions {
            home: Some(PathBuf::from("/home/me")),
            config_file: None,
            agent_socket: None,
            accept_new_host_keys: false,
            global_known_hosts_files: vec![PathBuf::from("/etc/ssh/ssh_known_hosts")],
            connect_timeout: Duration::from_secs(1),
        }
    }

    /// Sessions are shared across tasks and their futures can be spawned.
    #[test]
    fn sessions_and_futures_are_send() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<SshSession>();
        send(&SshSession::connect(&SshTarget::new("h"), &opts()));
        fn with_session(s: &SshSession) {
            send(&s.exec("true"));
            send(&s.exec_stream("cat", |_| {}));
            send(&crate::ssh::open_remote_store(s, None));
        }
        let _ = with_session;
    }

    #[test]
    fn target_overrides_config_and_defaults_fill_in() {
        let cfg = SshConfig::parse(
            "cfg",
            "Host web\n HostName 192.0.2.7\n User deploy\n Port 2222\n ProxyJump bastion\n StrictHostKeyChecking accept-new\n\
             Host plain\n StrictHostKeyChecking no\n",
        )
        .unwrap();
        let r = resolve(&SshTarget::parse("ssh://root@web:22").unwrap(), &cfg, &opts()).unwrap();
        assert_eq!((r.host_name.as_str(), r.port, r.user.as_str()), ("192.0.2.7", 22, "root"));
        assert_eq!(r.proxy_jump, vec!["bastion".to_owned()]);
        assert!(r.accept_new, "accept-new from the config");
        assert_eq!(
            r.auth.identity_files,
            ["id_ed25519", "id_ecdsa", "id_rsa"].map(|n| PathBuf::from("/home/me/.ssh").join(n)).to_vec()
        );
        assert_eq!(
            r.known_hosts_files,
            ["/home/me/.ssh/known_hosts", "/home/me/.ssh/known_hosts2", "/etc/ssh/ssh_known_hosts"].map(PathBuf::from)
        );
        assert_eq!(r.record_to, Some(PathBuf::from("/home/me/.ssh/known_hosts")));

        let r = resolve(&SshTarget::parse("web").unwrap(), &cfg, &opts()).unwrap();
        assert_eq!((r.port, r.user.as_str()), (2222, "deploy"));

        let cfg_none = SshConfig::parse("cfg", "UserKnownHostsFile none\n").unwrap();
        let r = resolve(&SshTarget::new("x"), &cfg_none, &opts()).unwrap();
        assert_eq!((r.known_hosts_files, r.record_to), (vec![PathBuf::from("/etc/ssh/ssh_known_hosts")], None));

        // StrictHostKeyChecking=no never turns verification off or on accept-new.
        let r = resolve(&SshTarget::parse("plain").unwrap(), &cfg, &opts()).unwrap();
        assert!(!r.accept_new);
        assert_eq!((r.host_name.as_str(), r.port), ("plain", 22));
    }
}
