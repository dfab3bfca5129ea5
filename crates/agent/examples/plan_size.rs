//! What the agent would send to update a target from one closure to another,
//! computed offline from the local store (no target, no SSH):
//!
//! `cargo run -p ndeploy-agent --example plan_size -- OLD_TOPLEVEL NEW_TOPLEVEL`
//!
//! The target is assumed to hold OLD's closure (its manifests are computed
//! from the local copies); every path of NEW's closure it lacks is encoded in
//! reference order (each added to the knowledge once encoded, as a push
//! does), and the bytes a push would write (compressed plan + payload +
//! framing, before SSH) are set against the missing NAR bytes.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ndeploy_agent::delta::{EncodeOptions, KnowledgeIndex, PlanStats, encode_from_disk};
use ndeploy_agent::manifest::NarManifest;
use ndeploy_agent::protocol::{FrameWriter, Message, WirePathInfo};
use ndeploy_store::hash::{Hash, HashAlgo};
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::{StoreDir, StorePath};

fn closure(dir: &StoreDir, top: &str) -> Vec<StorePath> {
    let out = Command::new("nix-store").args(["-qR", top]).output().expect("nix-store");
    assert!(out.status.success(), "nix-store -qR {top} failed");
    String::from_utf8_lossy(&out.stdout).lines().map(|l| dir.parse(l).expect("store path")).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [old, new] = args.as_slice() else {
        eprintln!("usage: plan_size OLD_TOPLEVEL NEW_TOPLEVEL");
        std::process::exit(2);
    };
    let dir = StoreDir::default();
    let store = Path::new(dir.as_str());
    let held = closure(&dir, old);
    let held_set: HashSet<&StorePath> = held.iter().collect();
    let mut knowledge = KnowledgeIndex::reading_from(store);
    let t = Instant::now();
    for p in &held {
        knowledge.add(p.clone(), NarManifest::from_disk(&store.join(p.to_string())).expect("manifest"));
    }
    let index_time = t.elapsed();
    let missing: Vec<StorePath> = closure(&dir, new).into_iter().filter(|p| !held_set.contains(p)).collect();
    let (mut nar_bytes, mut wire) = (0u64, 0u64);
    let mut stats = PlanStats::default();
    let opts = EncodeOptions::default();
    let t = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    // One session: the control stream's compression context carries over from path to path.
    let mut frames = FrameWriter::new(Vec::new());
    for p in &missing {
        let on_disk = store.join(p.to_string());
        let (manifest, encoded) = encode_from_disk(p, &on_disk, &knowledge, &opts).expect("encode");
        let mut nar = Vec::new();
        ndeploy_store::nar::dump_path(&on_disk, &mut nar).expect("dump");
        let info = PathInfo::new(p.clone(), Hash::digest(HashAlgo::Sha256, &nar), nar.len() as u64);
        rt.block_on(async {
            let push = Message::Push { info: WirePathInfo::from_path_info(&info), plan: encoded.plan, check_sigs: false };
            wire += frames.message(&push).await.expect("frame");
            wire += frames.payload(&encoded.payload).await.expect("frame");
        });
        nar_bytes += nar.len() as u64;
        stats.merge(&encoded.stats);
        knowledge.add(p.clone(), manifest);
    }
    let pct = |n: u64| 100.0 * n as f64 / nar_bytes.max(1) as f64;
    println!("{} paths held ({} manifests in {:.2?}), {} missing: {} NAR bytes", held.len(), knowledge.len(), index_time, missing.len(), nar_bytes);
    println!("on the wire (before SSH): {wire} bytes = {:.3}% of the NAR bytes; encoded in {:.2?}", pct(wire), t.elapsed());
    for (name, m) in [("reference", stats.reference), ("delta", stats.delta), ("chunks", stats.chunks), ("raw", stats.raw)] {
        println!("  {name:9} {:6} files {:12} bytes -> {:10} payload bytes ({:.3}% of the NAR bytes)", m.files, m.file_bytes, m.payload_bytes, pct(m.payload_bytes));
    }
}
