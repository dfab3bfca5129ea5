//! `ndeploy_deploy::ssh` against real OpenSSH servers (the [`crate::sshd`]
//! harness): exec and exit codes, host key verification (unknown, accept-new,
//! changed), agent and key authentication, ProxyJump, sudo for non-root
//! users, the Nix worker protocol over SSH to each target's own store, and
//! several targets at once.

use std::collections::BTreeSet;

use ndeploy_deploy::ssh::{ConnectOptions, ExitStatus, OutputKind, SshError, SshSession, open_remote_store};
use ndeploy_store::store_path::{StoreDir, StorePath};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::sshd::{Agent, ClientHome, SshTarget, SshdOptions, TargetUser, keygen};
use crate::support::{run_ok, run_str, write_file};

async fn connect(t: &SshTarget) -> SshSession {
    SshSession::connect(&t.target(), &t.connect_options())
        .await
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", t.log()))
}

/// Add a file with unique contents to the target's own store (from outside).
fn add_to_target_store(t: &SshTarget, tag: &str) -> StorePath {
    let src = t.dir.path().join(format!("src-{tag}"));
    write_file(&src, format!("only in the target store {tag} {}\n", t.port));
    let p = run_str(t.nix_store().arg("--add").arg(&src));
    StoreDir::default().parse(&p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_output_exit_codes_and_streams() {
    let t = SshTarget::start(SshdOptions::default());
    let s = connect(&t).await;
    assert_eq!(s.user(), "root");

    let out = s.exec("echo out; echo err >&2; exit 3").await.unwrap();
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(out.stderr_str(), "err\n");
    assert_eq!(out.status, ExitStatus::Code(3));
    assert!(s.exec("true").await.unwrap().status.success());
    assert_eq!(s.exec("kill -9 $$").await.unwrap().status, ExitStatus::Signal("KILL".into()));
    // The OpenSSH client agrees about the same command.
    let ssh = crate::support::run(t.ssh().arg("echo out; exit 3"));
    assert_eq!((ssh.status.code(), ssh.stdout.as_slice()), (Some(3), b"out\n".as_slice()));

    // Line callbacks, including an unterminated last line.
    let mut lines = Vec::new();
    let st = s
        .exec_lines("printf 'a\\nb\\n'; printf 'e1\\n' >&2; printf tail", |k, l| lines.push((k, l.to_owned())))
        .await
        .unwrap();
    assert!(st.success());
    let stdout: Vec<&str> = lines.iter().filter(|(k, _)| *k == OutputKind::Stdout).map(|(_, l)| l.as_str()).collect();
    assert_eq!(stdout, ["a", "b", "tail"]);
    assert!(lines.contains(&(OutputKind::Stderr, "e1".to_owned())));

    // A byte stream: 3 MiB through `cat` both ways at once, EOF ends it.
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let stream = s.exec_stream("cat; echo done >&2", |_| {}).await.unwrap();
    let (mut r, mut w, mut exit) = stream.into_split();
    let writer = async {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let reader = r.read_to_end(&mut back);
    let ((), n) = tokio::join!(writer, reader);
    assert_eq!(n.unwrap(), data.len());
    assert!(back == data, "stream data differs");
    assert_eq!(exit.wait().await, ExitStatus::Code(0));
    assert_eq!(exit.stderr_tail(), "done\n");

    // Many commands at once on one session.
    let outs = futures_join_all((0..8).map(|i| {
        let s = &s;
        async move { s.exec(&format!("echo {i}")).await.unwrap().stdout_str() }
    }))
    .await;
    assert_eq!(outs, (0..8).map(|i| format!("{i}\n")).collect::<Vec<_>>());
}

/// Await futures concurrently, results in order.
async fn futures_join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futs.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(fut) = slot
                && let std::task::Poll::Ready(v) = fut.as_mut().poll(cx)
            {
                *result = Some(v);
                *slot = None;
            }
        }
        if pending.iter().all(Option::is_none) { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    results.into_iter().map(Option::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_refused_then_accepted_with_accept_new() {
    let t = SshTarget::start(SshdOptions { register_host_key: false, own_store: false, ..Default::default() });
    let err = SshSession::connect(&t.target(), &t.connect_options()).await.unwrap_err();
    let SshError::UnknownHostKey(u) = &err else { panic!("expected an unknown host key error, got {err}") };
    let fp =
        run_str(std::process::Command::new("ssh-keygen").arg("-lf").arg(t.dir.path().join("ssh_host_ed25519_key.pub")));
    assert!(fp.contains(&u.fingerprint), "{fp} vs {}", u.fingerprint);
    assert!(err.to_string().contains("--accept-new-host-keys"), "{err}");
    assert!(err.to_string().contains(&format!("ssh-keyscan -p {} 127.0.0.1", t.port)), "{err}");
    assert_eq!(std::fs::read_to_string(t.client.known_hosts()).unwrap(), "", "nothing recorded without accept-new");

    let opts = ConnectOptions { accept_new_host_keys: true, ..t.connect_options() };
    let s = SshSession::connect(&t.target(), &opts).await.unwrap();
    assert!(s.exec("true").await.unwrap().status.success());
    let recorded = std::fs::read_to_string(t.client.known_hosts()).unwrap();
    assert_eq!(recorded, format!("{}\n", t.known_hosts_line()));
    // OpenSSH (StrictHostKeyChecking yes) accepts what we recorded.
    run_ok(t.ssh().arg("true"));
    // And we accept it without accept-new from now on.
    SshSession::connect(&t.target(), &t.connect_options()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_refused_even_with_accept_new() {
    let t = SshTarget::start(SshdOptions { own_store: false, ..Default::default() });
    let other = keygen(&t.dir.path().join("other_key"), "");
    let mut words = other.split_whitespace();
    let line = format!("[127.0.0.1]:{} {} {}\n", t.port, words.next().unwrap(), words.next().unwrap());
    std::fs::write(t.client.known_hosts(), format!("# first line\n{line}")).unwrap();
    for accept_new in [false, true] {
        let opts = ConnectOptions { accept_new_host_keys: accept_new, ..t.connect_options() };
        let err = SshSession::connect(&t.target(), &opts).await.unwrap_err();
        let SshError::HostKeyChanged(c) = &err else { panic!("expected a changed host key error, got {err}") };
        assert_eq!((c.file.as_str(), c.line), (t.client.known_hosts().to_str().unwrap(), 2));
        assert!(err.to_string().contains("HAS CHANGED"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(t.client.known_hosts()).unwrap(), format!("# first line\n{line}"));

    // A hashed entry (`ssh-keygen -H`) for the right key is accepted.
    std::fs::write(t.client.known_hosts(), format!("{}\n", t.known_hosts_line())).unwrap();
    run_ok(std::process::Command::new("ssh-keygen").arg("-H").arg("-f").arg(t.client.known_hosts()));
    assert!(std::fs::read_to_string(t.client.known_hosts()).unwrap().starts_with("|1|"));
    SshSession::connect(&t.target(), &t.connect_options()).await.unwrap();

    // @revoked refuses the key.
    std::fs::write(t.client.known_hosts(), format!("{}\n@revoked * {}\n", t.known_hosts_line(), t.host_key)).unwrap();
    let err = SshSession::connect(&t.target(), &t.connect_options()).await.unwrap_err();
    assert!(matches!(err, SshError::HostKeyRevoked { line: 2, .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_authentication_and_encrypted_keys() {
    let t = SshTarget::start(SshdOptions { own_store: false, ..Default::default() });
    let agent = Agent::start();
    agent.add(&t.client.key());
    // Only the agent holds the private key now (the .pub stays for IdentitiesOnly).
    std::fs::remove_file(t.client.key()).unwrap();

    let err = SshSession::connect(&t.target(), &t.connect_options()).await.unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err}");

    let opts = ConnectOptions { agent_socket: Some(agent.socket.clone()), ..t.connect_options() };
    let s = SshSession::connect(&t.target(), &opts).await.unwrap();
    assert_eq!(s.exec("echo via-agent").await.unwrap().stdout_str(), "via-agent\n");
    assert!(t.log().contains("Accepted publickey for root"), "{}", t.log());

    // An encrypted key and no agent: a clear error naming the key and ssh-add.
    let enc = t.client.path().join(".ssh/id_ed25519");
    keygen(&enc, "secret passphrase");
    std::fs::write(t.dir.path().join("authorized_keys"), std::fs::read(enc.with_extension("pub")).unwrap()).unwrap();
    let err = SshSession::connect(&t.target(), &t.connect_options()).await.unwrap_err();
    assert!(matches!(&err, SshError::EncryptedKey { path } if *path == enc), "{err}");
    assert!(err.to_string().contains("ssh-add"), "{err}");
    assert!(!err.to_string().contains("secret passphrase"));
    // The same encrypted key works once an agent holds it.
    let agent2 = Agent::start();
    agent2.add_encrypted(&enc, "secret passphrase");
    let opts = ConnectOptions { agent_socket: Some(agent2.socket.clone()), ..t.connect_options() };
    assert_eq!(
        SshSession::connect(&t.target(), &opts).await.unwrap().exec("echo enc").await.unwrap().stdout_str(),
        "enc\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_jump_through_a_second_sshd() {
    let client = ClientHome::new();
    let jump =
        SshTarget::start(SshdOptions { own_store: false, log_level: "DEBUG1", ..Default::default() }.client(&client));
    let t =
        SshTarget::start(SshdOptions { proxy_jump: Some(jump.alias.clone()), ..Default::default() }.client(&client));
    let s = connect(&t).await;
    let p = add_to_target_store(&t, "jump");
    let out = s.exec(&format!("nix-store --check-validity {}", StoreDir::default().display(&p))).await.unwrap();
    assert!(out.status.success(), "{}", out.stderr_str());
    // The connection to the target was forwarded by the jump host.
    assert!(
        jump.log().contains(&format!("port {}", t.port)) && jump.log().contains("direct-tcpip"),
        "jump host log shows no forwarding to port {}:\n{}",
        t.port,
        jump.log()
    );
    // OpenSSH takes the same route with the same config.
    assert_eq!(run_str(t.ssh().arg("echo ok")), "ok");

    // The `user@host:port` form of ProxyJump.
    let t2 = SshTarget::start(
        SshdOptions {
            proxy_jump: Some(format!("root@127.0.0.1:{}", jump.port)),
            own_store: false,
            ..Default::default()
        }
        .client(&client),
    );
    let s2 = connect(&t2).await;
    assert_eq!(s2.exec("echo hop").await.unwrap().stdout_str(), "hop\n");
    assert!(jump.log().contains(&format!("port {}", t2.port)), "{}", jump.log());

    // The jump host's key is verified like any other.
    let client = ClientHome::new();
    let jump = SshTarget::start(
        SshdOptions { own_store: false, register_host_key: false, ..Default::default() }.client(&client),
    );
    let t = SshTarget::start(
        SshdOptions { own_store: false, proxy_jump: Some(jump.alias.clone()), ..Default::default() }.client(&client),
    );
    let err = SshSession::connect(&t.target(), &t.connect_options()).await.unwrap_err();
    assert!(matches!(&err, SshError::UnknownHostKey(u) if u.host == jump.alias), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_are_clear() {
    let client = ClientHome::new();
    // A port that accepts TCP but never speaks SSH: the connect timeout fires.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let opts = ConnectOptions { connect_timeout: std::time::Duration::from_millis(500), ..client.connect_options() };
    let target = ndeploy_deploy::ssh::SshTarget::parse(&format!("root@127.0.0.1:{port}")).unwrap();
    let err = SshSession::connect(&target, &opts).await.unwrap_err();
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
    // Nobody listening: the connect error names host and port.
    drop(silent);
    let err = SshSession::connect(&target, &opts).await.unwrap_err();
    assert!(matches!(err, SshError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1 port {port}")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_protocol_over_ssh_sees_the_targets_own_store() {
    let t = SshTarget::start(SshdOptions::default());
    let s = connect(&t).await;
    let p = add_to_target_store(&t, "daemon");
    let missing = StoreDir::default().parse("/nix/store/00000000000000000000000000000000-missing").unwrap();
    // The path is in the target's store, not the machine's.
    assert!(
        !crate::support::run(
            crate::support::nix("nix-store").arg("--check-validity").arg(StoreDir::default().display(&p))
        )
        .status
        .success()
    );

    let mut remote = open_remote_store(&s, None).await.unwrap();
    assert!(remote.conn.info().trusted != Some(false));
    let valid = remote.conn.query_valid_paths([&p, &missing], false).await.unwrap();
    assert_eq!(valid, BTreeSet::from([p.clone()]));
    assert!(remote.conn.is_valid_path(&p).await.unwrap());
    // EOF on the daemon's stdin ends it cleanly.
    assert_eq!(remote.close().await.unwrap(), ExitStatus::Code(0));

    // remote-store= selects another store on the target.
    let other = t.dir.path().join("other-store");
    let mut remote = open_remote_store(&s, Some(&format!("local?root={}", other.display()))).await.unwrap();
    assert!(remote.conn.query_valid_paths([&p], false).await.unwrap().is_empty());
    drop(remote);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_root_targets_use_sudo_or_fail_clearly() {
    let client = ClientHome::new();
    let sudo = SshTarget::start(SshdOptions { user: TargetUser::Sudo, ..Default::default() }.client(&client));
    // Its own /nix, where no daemon listens.
    let nosudo = SshTarget::start(SshdOptions { user: TargetUser::NoSudo, ..Default::default() }.client(&client));

    let s = connect(&sudo).await;
    assert_eq!(s.exec("id -un").await.unwrap().stdout_str(), "ndeploy-sudo\n");
    assert_eq!(s.exec_as_root("id -u").await.unwrap().stdout_str(), "0\n");
    let out = s.exec(&s.root_script("cd / && id -u | cat")).await.unwrap();
    assert_eq!(out.stdout_str(), "0\n", "{}", out.stderr_str());
    let p = add_to_target_store(&sudo, "sudo");
    let mut remote = open_remote_store(&s, None).await.unwrap();
    assert_eq!(remote.conn.query_valid_paths([&p], false).await.unwrap(), BTreeSet::from([p.clone()]));
    drop(remote);

    let s = connect(&nosudo).await;
    let err = s.exec_as_root("id -u").await.unwrap_err();
    assert!(matches!(err, SshError::SudoPassword { .. }), "{err}");
    // Without sudo the daemon socket is used as the user; there is none here.
    let err = open_remote_store(&s, None).await.unwrap_err();
    assert!(matches!(err, SshError::DaemonAsUser { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("ndeploy-nosudo has no passwordless sudo") && msg.contains("daemon-socket"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_targets_at_once() {
    let client = ClientHome::new();
    let targets: Vec<SshTarget> = std::thread::scope(|sc| {
        let hs: Vec<_> =
            (0..4).map(|_| sc.spawn(|| SshTarget::start(SshdOptions::default().client(&client)))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let paths: Vec<StorePath> =
        targets.iter().enumerate().map(|(i, t)| add_to_target_store(t, &format!("multi{i}"))).collect();
    let paths = &paths;
    let results = futures_join_all(targets.iter().zip(paths).map(|(t, p)| async move {
        let s = connect(t).await;
        let mut remote = open_remote_store(&s, None).await.unwrap();
        let all: Vec<&StorePath> = paths.iter().collect();
        let valid = remote.conn.query_valid_paths(all, false).await.unwrap();
        (valid, p.clone(), s.exec("echo $SSH_CONNECTION").await.unwrap().stdout_str())
    }))
    .await;
    for ((valid, own, conn), t) in results.into_iter().zip(&targets) {
        assert_eq!(valid, BTreeSet::from([own]), "each target sees only its own store");
        assert!(conn.trim_end().ends_with(&format!("127.0.0.1 {}", t.port)), "{conn}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_writer_fails_when_the_command_exits_early() {
    let t = SshTarget::start(SshdOptions { own_store: false, ..Default::default() });
    let s = connect(&t).await;
    let (mut r, mut w, mut exit) = s.exec_stream("head -c 10", |_| {}).await.unwrap().into_split();
    // Far more than the SSH window: the writer would wait forever for window space.
    let data = vec![1u8; 16 << 20];
    let mut back = Vec::new();
    // (A generous guard so that a regression fails instead of hanging the suite.)
    let both = async { tokio::join!(w.write_all(&data), r.read_to_end(&mut back)) };
    let (written, read) = tokio::time::timeout(std::time::Duration::from_secs(120), both).await.expect("writer hung");
    assert_eq!(read.unwrap(), 10);
    assert_eq!(written.unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
    assert_eq!(exit.wait().await, ExitStatus::Code(0));
    w.shutdown().await.unwrap();
    // The session is still usable.
    assert_eq!(s.exec("echo ok").await.unwrap().stdout_str(), "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_type_follows_known_hosts_and_rsa_user_keys_work() {
    // An RSA user key: OpenSSH 9 only accepts it signed with SHA-2 (rsa-sha2-256/512).
    let client = ClientHome::with_key_type("rsa");
    let t = SshTarget::start(
        SshdOptions {
            own_store: false,
            register_host_key: false,
            host_key_types: vec!["ed25519", "rsa", "ecdsa"],
            ..Default::default()
        }
        .client(&client),
    );
    for key in &t.host_keys {
        // known_hosts lists only this key type: we must ask the server for it
        // (as OpenSSH does) rather than fail with a "changed" key.
        std::fs::write(client.known_hosts(), format!("{}\n", t.known_hosts_line_for(key))).unwrap();
        let s = connect(&t).await;
        assert_eq!(s.exec("echo ok").await.unwrap().stdout_str(), "ok\n", "host key {key}");
    }
    assert!(
        t.log().contains("Accepted publickey for root from 127.0.0.1") && t.log().contains(" RSA SHA256:"),
        "{}",
        t.log()
    );
}

/// A push-shaped workload over SSH: a 6 MiB path from the machine's store is
/// uploaded (framed NAR, AddMultipleToStore) to the target's own store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_a_path_over_ssh() {
    use ndeploy_store::content_address::ContentAddress;
    use ndeploy_store::daemon::AddToStoreFlags;
    use ndeploy_store::hash::{Hash, HashAlgo};
    use ndeploy_store::path_info::PathInfo;

    let t = SshTarget::start(SshdOptions::default());
    let src = t.dir.path().join("payload");
    let mut x: u32 = t.port.into();
    let payload: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(&src, &payload).unwrap();
    let printed = run_str(crate::support::nix("nix-store").arg("--add").arg(&src));
    let mut local = crate::support::LocalPaths::new();
    local.add_closure(&printed);
    let path = StoreDir::default().parse(&printed).unwrap();
    let q = |what: &str| run_str(crate::support::nix("nix-store").args(["-q", what, &printed]));
    let nar_hash = Hash::parse(&q("--hash"), Some(HashAlgo::Sha256)).unwrap();
    let mut info = PathInfo::new(path.clone(), nar_hash, q("--size").parse().unwrap());
    info.ca = Some(ContentAddress::parse(&format!("fixed:r:{}", q("--hash"))).unwrap());

    let s = connect(&t).await;
    let mut remote = open_remote_store(&s, None).await.unwrap();
    let open = |info: &PathInfo| {
        let p = StoreDir::default().display(&info.path);
        async move {
            let mut child = tokio::process::Command::new("nix-store")
                .args(["--dump", &p])
                .stdout(std::process::Stdio::piped())
                .spawn()?;
            child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))
        }
    };
    let report = remote.conn.copy_missing(vec![info], open, AddToStoreFlags::default()).await.unwrap();
    assert_eq!(report.added, [path]);
    assert_eq!(remote.close().await.unwrap(), ExitStatus::Code(0));
    // The target's store has it, intact.
    run_ok(t.nix_store().args(["--verify-path", &printed]));
    assert_eq!(run_str(t.nix_store().args(["-q", "--hash", &printed])), q("--hash"));
    let on_target = t.store_root.as_ref().unwrap().join(printed.trim_start_matches('/'));
    assert!(std::fs::read(on_target).unwrap() == payload);
}
