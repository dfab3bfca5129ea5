//! The agent end to end without SSH: push closures from the local store into
//! a chroot store (`local?root=ROOT`) through the real `ndeploy-agent --stdio`
//! binary, one generation after the other, as a push would (encoding in a
//! producer thread against what the target holds, the agent rebuilding,
//! verifying and importing through `nix-daemon --stdio`).
//!
//! `cargo run --release -p ndeploy-agent --example push_local -- ROOT TOPLEVEL...`
//!
//! ROOT should be an empty directory. The local store is read through
//! `nix-daemon --stdio` (no running daemon needed). The agent binary is the
//! one built next to this example (`target/<profile>/ndeploy-agent`), or
//! `$NDEPLOY_AGENT`. Prints per generation: paths, NAR bytes, bytes written
//! to the agent, resends, wall time and the producer's encoding time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ndeploy_agent::client::{AgentClient, PushItem};
use ndeploy_agent::delta::{EncodeOptions, KnowledgeIndex, encode_from_disk};
use ndeploy_store::daemon;
use ndeploy_store::store_path::{StoreDir, StorePath};

fn closure(dir: &StoreDir, top: &str) -> Vec<StorePath> {
    let out = Command::new("nix-store").args(["-qR", top]).output().expect("nix-store");
    assert!(out.status.success(), "nix-store -qR {top} failed");
    String::from_utf8_lossy(&out.stdout).lines().map(|l| dir.parse(l).expect("store path")).collect()
}

fn agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NDEPLOY_AGENT") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target dir").join("ndeploy-agent")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((root, tops)) = args.split_first().filter(|(_, t)| !t.is_empty()) else {
        eprintln!("usage: push_local ROOT TOPLEVEL...");
        std::process::exit(2);
    };
    let dir = StoreDir::default();
    let store: &'static Path = Path::new(ndeploy_store::store_path::DEFAULT_STORE_DIR);
    let mut cmd = tokio::process::Command::new("nix-daemon");
    cmd.arg("--stdio");
    let mut local = daemon::spawn_stdio(cmd, dir.clone()).await.expect("local nix-daemon --stdio");
    let mut knowledge = KnowledgeIndex::reading_from(store);
    let mut held: Vec<StorePath> = Vec::new();
    for top in tops {
        let missing: Vec<StorePath> = closure(&dir, top).into_iter().filter(|p| !held.contains(p)).collect();
        let infos = local.conn.query_path_infos(&missing).await.expect("path infos");
        let mut child = tokio::process::Command::new(agent_binary())
            .arg("--stdio")
            .arg("--store-root")
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("agent binary");
        let (stdin, stdout) = (child.stdin.take().expect("stdin"), child.stdout.take().expect("stdout"));
        let started = Instant::now();
        let mut client = AgentClient::handshake(stdout, stdin, dir.clone()).await.expect("handshake");
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let mut k = knowledge.clone();
        let producer = tokio::task::spawn_blocking(move || {
            let mut encoding = Duration::ZERO;
            for info in infos.into_iter().flatten() {
                let t = Instant::now();
                let on_disk = store.join(info.path.to_string());
                let (m, encoded) = encode_from_disk(&info.path, &on_disk, &k, &EncodeOptions::default()).expect("encode");
                encoding += t.elapsed();
                k.add(info.path.clone(), m);
                if tx.blocking_send(PushItem { info, encoded, check_sigs: false }).is_err() {
                    break;
                }
            }
            (k, encoding)
        });
        let report = client.push_from(rx).await.expect("push");
        let (k, encoding) = producer.await.expect("producer");
        knowledge = k;
        client.bye().await.expect("bye");
        let wall = started.elapsed();
        let pct = 100.0 * report.wire_bytes as f64 / report.nar_bytes.max(1) as f64;
        println!(
            "{top}: {} paths, {} NAR bytes, {} bytes to the agent ({pct:.3}%), {} resent, wall {wall:.2?} (encoding {encoding:.2?})",
            report.outcomes.len(),
            report.nar_bytes,
            report.wire_bytes,
            report.resends().count()
        );
        for (p, why) in report.resends().take(3) {
            println!("  resent {p}: {why}");
        }
        held.extend(missing);
    }
}
