//! Test harness: real OpenSSH servers on loopback, each with its own Nix store.
//!
//! [`SshTarget::start`] generates a throwaway ed25519 host key, writes an
//! `sshd_config` (a free 127.0.0.1 port, `PermitRootLogin prohibit-password`,
//! `AuthorizedKeysFile` in the temp dir, `StrictModes no`, `UsePAM no`, no
//! DNS) and runs `/usr/sbin/sshd -D -e` until the port answers with an SSH
//! banner. The server and all its sessions are killed on drop (it runs in its
//! own process group).
//!
//! Per-target Nix store (the chosen design): sshd runs inside `unshare -m`
//! with the target's directory `ROOT/nix` bind-mounted on `/nix`, so
//! `nix-daemon --stdio` on the target serves an ordinary store at the standard
//! path (`/nix/store`, `/nix/var/nix`). From outside, the same store is the
//! chroot store `local?root=ROOT` ([`SshTarget::store_uri`],
//! [`SshTarget::nix_store`]). The store is initialised (`nix-store --init`)
//! before sshd starts, without Nix's 8 MiB gc-reserved-space file
//! ([`crate::support::without_gc_reserve`]). With `own_store: false` sshd shares the host's `/nix`.
//!
//! Client side: a [`ClientHome`] is a throwaway `$HOME` with `.ssh/id_ed25519`,
//! `.ssh/config` and `.ssh/known_hosts`. Each target started for it is
//! authorised for its key, gets a `Host <alias>` block (HostName 127.0.0.1,
//! Port, User, optional ProxyJump) and, unless `register_host_key: false`, a
//! `[127.0.0.1]:PORT` known_hosts line. So both `ndeploy` (with `HOME` set to
//! [`ClientHome::path`]) and OpenSSH (`ssh -F CONFIG ALIAS`, [`SshTarget::ssh`])
//! reach the target by its alias. Several targets can share one `ClientHome`.
//!
//! Non-root targets: `TargetUser::Sudo` logs in as `ndeploy-sudo` (created
//! with `useradd` if missing, passwordless sudo via /etc/sudoers.d),
//! `TargetUser::NoSudo` as `ndeploy-nosudo` (no sudo rule: `sudo -n` fails).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ndeploy_deploy::ssh::ConnectOptions;

use crate::support::{descendants, nix, run_ok, without_gc_reserve};

/// Serialises user creation and sudoers edits across test threads.
static SYSTEM_LOCK: Mutex<()> = Mutex::new(());

/// Which account the client logs in as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetUser {
    #[default]
    Root,
    /// `ndeploy-sudo`, with passwordless sudo.
    Sudo,
    /// `ndeploy-nosudo`, without any sudo rule.
    NoSudo,
}

impl TargetUser {
    pub fn name(self) -> &'static str {
        match self {
            TargetUser::Root => "root",
            TargetUser::Sudo => "ndeploy-sudo",
            TargetUser::NoSudo => "ndeploy-nosudo",
        }
    }
}

#[derive(Clone)]
pub struct SshdOptions {
    pub user: TargetUser,
    /// Run in a mount namespace with a private `/nix` (default true).
    pub own_store: bool,
    /// The client to authorise and configure; a new one if `None`.
    pub client: Option<ClientHome>,
    /// Write the host key to the client's known_hosts (default true).
    pub register_host_key: bool,
    /// `ProxyJump` for the alias: the alias of a jump host in the same client home.
    pub proxy_jump: Option<String>,
    /// sshd `LogLevel` (default VERBOSE; DEBUG1 shows forwarding requests).
    pub log_level: &'static str,
    /// Host key types, one key each (default `["ed25519"]`); the first is [`SshTarget::host_key`].
    pub host_key_types: Vec<&'static str>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions {
            user: TargetUser::Root,
            own_store: true,
            client: None,
            register_host_key: true,
            proxy_jump: None,
            log_level: "VERBOSE",
            host_key_types: vec!["ed25519"],
        }
    }
}

impl SshdOptions {
    pub fn client(mut self, c: &ClientHome) -> Self {
        self.client = Some(c.clone());
        self
    }
}

/// `ssh-keygen -t ed25519` into `path` (and `path.pub`); returns the public line.
pub fn keygen(path: &Path, passphrase: &str) -> String {
    keygen_type("ed25519", path, passphrase)
}

/// `ssh-keygen -t KEY_TYPE` (`ed25519`, `ecdsa`, `rsa`); returns the public line.
pub fn keygen_type(key_type: &str, path: &Path, passphrase: &str) -> String {
    run_ok(
        Command::new("ssh-keygen").args(["-q", "-t", key_type, "-C", "ndeploy-test", "-N", passphrase, "-f"]).arg(path),
    );
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    std::fs::read_to_string(pub_path).unwrap().trim().to_owned()
}

struct ClientInner {
    dir: tempfile::TempDir,
    key_type: &'static str,
}

/// A throwaway client `$HOME` (see the module docs). Cheap to clone (shared).
#[derive(Clone)]
pub struct ClientHome(Arc<ClientInner>);

impl ClientHome {
    /// A home with an ed25519 key.
    pub fn new() -> ClientHome {
        ClientHome::with_key_type("ed25519")
    }

    /// A home whose key (`.ssh/id_KEY_TYPE`) is of `key_type`: `ed25519`, `ecdsa` or `rsa`.
    pub fn with_key_type(key_type: &'static str) -> ClientHome {
        let dir = tempfile::Builder::new().prefix("ndeploy-client-").tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        keygen_type(key_type, &ssh.join(format!("id_{key_type}")), "");
        std::fs::write(ssh.join("known_hosts"), "").unwrap();
        let home = ClientHome(Arc::new(ClientInner { dir, key_type }));
        // Global options first: they apply to every Host block appended later.
        std::fs::write(
            home.config_file(),
            format!(
                "IdentityFile {}\nUserKnownHostsFile {}\nIdentitiesOnly yes\nBatchMode yes\nStrictHostKeyChecking yes\n\n",
                home.key().display(),
                home.known_hosts().display()
            ),
        )
        .unwrap();
        home
    }

    pub fn path(&self) -> &Path {
        self.0.dir.path()
    }
    pub fn key(&self) -> PathBuf {
        self.path().join(format!(".ssh/id_{}", self.0.key_type))
    }
    pub fn public_key(&self) -> String {
        std::fs::read_to_string(self.path().join(format!(".ssh/id_{}.pub", self.0.key_type))).unwrap().trim().to_owned()
    }
    pub fn config_file(&self) -> PathBuf {
        self.path().join(".ssh/config")
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.path().join(".ssh/known_hosts")
    }

    fn append(&self, file: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(file).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Options for `ndeploy_deploy::ssh` using this home (no agent).
    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            home: Some(self.path().to_path_buf()),
            config_file: Some(self.config_file()),
            agent_socket: None,
            accept_new_host_keys: false,
            global_known_hosts_files: Vec::new(),
            connect_timeout: Duration::from_secs(20),
        }
    }
}

impl Default for ClientHome {
    fn default() -> Self {
        ClientHome::new()
    }
}

/// A running sshd (see the module docs).
pub struct SshTarget {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user: TargetUser,
    /// The `Host` alias in the client's config.
    pub alias: String,
    pub client: ClientHome,
    /// `ssh-ed25519 AAAA...` of the server (its first host key).
    pub host_key: String,
    /// All its host keys' public lines, in `host_key_types` order.
    pub host_keys: Vec<String>,
    /// The target's store root: its `/nix` is `store_root/nix` (with `own_store`).
    pub store_root: Option<PathBuf>,
    child: Child,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ensure_user(user: TargetUser) {
    if user == TargetUser::Root {
        return;
    }
    let _guard = SYSTEM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let name = user.name();
    if !Command::new("id").arg("-u").arg(name).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success() {
        run_ok(Command::new("useradd").args(["-m", "-s", "/bin/sh", name]));
    }
    // Not locked (sshd refuses locked accounts without PAM), but no password either.
    run_ok(Command::new("usermod").args(["-p", "*", name]));
    assert!(Path::new("/usr/bin/sudo").exists(), "sudo is missing: run scripts/test, which installs it");
    let rule = Path::new("/etc/sudoers.d/ndeploy-test");
    let text = "ndeploy-sudo ALL=(ALL) NOPASSWD: ALL\n";
    if std::fs::read_to_string(rule).ok().as_deref() != Some(text) {
        std::fs::write(rule, text).unwrap();
        std::fs::set_permissions(rule, std::fs::Permissions::from_mode(0o440)).unwrap();
    }
}

impl SshTarget {
    /// Start a server; panics (with sshd's log) if it does not come up.
    pub fn start(opts: SshdOptions) -> SshTarget {
        ensure_user(opts.user);
        let client = opts.client.clone().unwrap_or_default();
        let dir = tempfile::Builder::new().prefix("ndeploy-sshd-").tempdir().unwrap();
        // Non-root users must read authorized_keys through this directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        let host_keys: Vec<String> =
            opts.host_key_types.iter().map(|t| keygen_type(t, &d.join(format!("ssh_host_{t}_key")), "")).collect();
        let host_key = host_keys.first().expect("at least one host key type").clone();
        let host_key_lines: String = opts
            .host_key_types
            .iter()
            .map(|t| format!("HostKey {}\n", d.join(format!("ssh_host_{t}_key")).display()))
            .collect();
        let auth = d.join("authorized_keys");
        std::fs::write(&auth, format!("{}\n", client.public_key())).unwrap();
        std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store_root = opts.own_store.then(|| {
            let root = d.join("root");
            std::fs::create_dir_all(root.join("nix/store")).unwrap();
            without_gc_reserve(&root);
            run_ok(nix("nix-store").args(["--store", &format!("local?root={}", root.display()), "--init"]));
            root
        });
        std::fs::create_dir_all("/run/sshd").unwrap();

        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let cfg = d.join("sshd_config");
            std::fs::write(
                &cfg,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\n{host_key_lines}PidFile {pid}\nAuthorizedKeysFile {auth}\n\
                     PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PubkeyAuthentication yes\nStrictModes no\nUsePAM no\nUseDNS no\nAllowTcpForwarding yes\n\
                     MaxStartups 100\nMaxSessions 100\nLogLevel {log}\nPrintMotd no\n",
                    pid = d.join("sshd.pid").display(),
                    auth = auth.display(),
                    log = opts.log_level,
                ),
            )
            .unwrap();
            let log_path = d.join("sshd.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut cmd = match &store_root {
                Some(root) => {
                    let mut c = Command::new("unshare");
                    c.args(["-m", "--propagation", "private", "--", "sh", "-c"]).arg(format!(
                        "mount --bind '{}' /nix && exec /usr/sbin/sshd -D -e -f '{}'",
                        root.join("nix").display(),
                        cfg.display()
                    ));
                    c
                }
                None => {
                    let mut c = Command::new("/usr/sbin/sshd");
                    c.args(["-D", "-e", "-f"]).arg(&cfg);
                    c
                }
            };
            cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).process_group(0);
            let mut child = cmd.spawn().unwrap_or_else(|e| panic!("could not start sshd: {e}"));
            if wait_for_banner(port, &mut child) {
                let alias = format!("target-{port}");
                let mut block =
                    format!("Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {}\n", opts.user.name());
                if let Some(j) = &opts.proxy_jump {
                    block.push_str(&format!("  ProxyJump {j}\n"));
                }
                client.append(&client.config_file(), &format!("{block}\n"));
                let target =
                    SshTarget { dir, port, user: opts.user, alias, client, host_key, host_keys, store_root, child };
                if opts.register_host_key {
                    target.client.append(&target.client.known_hosts(), &format!("{}\n", target.known_hosts_line()));
                }
                return target;
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("sshd did not start; its log:\n{last_log}");
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA...` for the first host key.
    pub fn known_hosts_line(&self) -> String {
        self.known_hosts_line_for(&self.host_key)
    }

    /// The known_hosts line for one of [`Self::host_keys`] (or any public key line).
    pub fn known_hosts_line_for(&self, public_key: &str) -> String {
        let mut words = public_key.split_whitespace();
        let (t, k) = (words.next().unwrap(), words.next().unwrap());
        format!("[127.0.0.1]:{} {t} {k}", self.port)
    }

    /// `ssh://USER@127.0.0.1:PORT` (for OpenSSH-style direct addressing).
    pub fn url(&self) -> String {
        format!("ssh://{}@127.0.0.1:{}", self.user.name(), self.port)
    }

    /// The alias as an `ndeploy_deploy::ssh::SshTarget`.
    pub fn target(&self) -> ndeploy_deploy::ssh::SshTarget {
        ndeploy_deploy::ssh::SshTarget::parse(&self.alias).unwrap()
    }

    /// The store the target's daemon serves, as seen from outside.
    pub fn store_uri(&self) -> String {
        let root = self.store_root.as_ref().expect("target started with own_store");
        format!("local?root={}", root.display())
    }

    /// `nix-store --store local?root=ROOT` for inspecting the target's store.
    pub fn nix_store(&self) -> Command {
        let mut c = nix("nix-store");
        c.args(["--store", &self.store_uri()]);
        c
    }

    /// OpenSSH's client, configured for this target: append the remote command.
    pub fn ssh(&self) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-F").arg(self.client.config_file()).arg(&self.alias);
        c
    }

    pub fn connect_options(&self) -> ConnectOptions {
        self.client.connect_options()
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

/// Wait until `port` answers with an SSH banner, or the child exits.
fn wait_for_banner(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 8];
            if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"SSH-2.0") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Drop for SshTarget {
    fn drop(&mut self) {
        // sshd, its process group, and every session it spawned: sessions
        // call setsid, so they are outside the group and, once sshd is gone,
        // no longer its descendants. Found first, then all killed.
        let sessions: Vec<String> = descendants(self.child.id()).into_iter().map(|(pid, _)| pid.to_string()).collect();
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).args(&sessions).status();
        let _ = self.child.wait();
    }
}

/// A running `ssh-agent` on a socket in a temp dir; killed on drop.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Child,
}

impl Agent {
    pub fn start() -> Agent {
        let dir = tempfile::Builder::new().prefix("ndeploy-agent-").tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("could not start ssh-agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not create its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { dir, socket, child }
    }

    /// `ssh-add KEY` (an unencrypted key).
    pub fn add(&self, key: &Path) {
        run_ok(Command::new("ssh-add").arg("-q").arg(key).env("SSH_AUTH_SOCK", &self.socket));
    }

    /// `ssh-add KEY` for a key encrypted with `passphrase` (given through `SSH_ASKPASS`).
    pub fn add_encrypted(&self, key: &Path, passphrase: &str) {
        let askpass = self.dir.path().join("askpass");
        std::fs::write(&askpass, format!("#!/bin/sh\nprintf '%s\\n' '{passphrase}'\n")).unwrap();
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
        run_ok(
            Command::new("ssh-add")
                .arg("-q")
                .arg(key)
                .env("SSH_AUTH_SOCK", &self.socket)
                .env("SSH_ASKPASS", &askpass)
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("DISPLAY", ":0")
                .stdin(Stdio::null()),
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
