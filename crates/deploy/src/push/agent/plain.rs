//! The plain worker-protocol push of one target, for the paths the agent
//! could not deliver (it could not run there, or could not rebuild a path):
//! one AddMultipleToStore stream through the target's `nix-daemon --stdio`,
//! each NAR dumped from the local store on a blocking thread just before it
//! is sent (at most two NARs are held in memory). The fan-out of [`super::super::fanout`]
//! serves the targets that never try the agent; this one serves a single
//! target that changed course mid-push.

use std::sync::Arc;

use ndeploy_store::daemon::AddToStoreFlags;
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::signature::SecretKey;
use ndeploy_store::store_path::StoreDir;

use super::super::progress::TargetProgress;
use super::super::run::Dumper;
use super::super::session::TargetSession;
use super::record::Records;

/// Send `infos` (references first; none valid on the target) whole,
/// recording their manifests in `records` as they are serialised.
/// Returns the NAR bytes sent.
pub async fn upload(
    t: &mut TargetSession,
    infos: Vec<PathInfo>,
    dumper: Dumper,
    records: Records,
    sign: Option<(SecretKey, StoreDir)>,
    progress: Arc<dyn TargetProgress>,
) -> Result<u64, String> {
    if infos.is_empty() {
        return Ok(0);
    }
    let host = t.ssh.host().to_owned();
    let count = infos.len() as u64;
    let (tx, rx) = tokio::sync::mpsc::channel::<(PathInfo, std::io::Cursor<Vec<u8>>)>(1);
    let producer = tokio::task::spawn_blocking(move || -> Result<u64, String> {
        let mut total = 0;
        for mut info in infos {
            let mut nar = Vec::with_capacity(usize::try_from(info.nar_size).unwrap_or(0));
            records.dump_recording(&info, &mut nar, |i, w| dumper(i, w)).map_err(|e| format!("cannot serialise {}: {e}", info.path))?;
            if let Some((key, dir)) = &sign {
                info.sign(dir, key).map_err(|e| e.to_string())?;
            }
            total += nar.len() as u64;
            progress.bytes(nar.len() as u64);
            if tx.blocking_send((info, std::io::Cursor::new(nar))).is_err() {
                break;
            }
            progress.path_done();
        }
        Ok(total)
    });
    let flags = AddToStoreFlags { repair: false, dont_check_sigs: true };
    let sent = t.store.conn.add_multiple_to_store(count, rx, flags).await;
    let produced = producer.await.map_err(|e| format!("NAR producer failed: {e}"))?;
    // A failed dump ends the stream early: its error is the one that matters.
    let n = produced?;
    sent.map_err(|e| format!("Nix daemon on {host}: {e}"))?;
    Ok(n)
}
