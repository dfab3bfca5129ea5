//! The server loop against the client over an in-memory stream, with the
//! store's files in a temporary directory and a recording fake daemon.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};

use ndeploy_store::hash::{Hash, HashAlgo};
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::{StoreDir, StorePath};
use tokio::io::AsyncWriteExt;

use crate::client::{AgentClient, PushItem, PushOutcome};
use crate::delta::{EncodeOptions, KnowledgeIndex, encode};
use crate::manifest::NarManifest;
use crate::protocol::{FrameReader, FrameWriter, Message, WirePathInfo};
use crate::server::{ImportError, Importer, ServerConfig, Spool, serve};
use crate::test_nar::{dir, exe, file, manifest_and_files, nar_of, noise};

/// What the fake daemon imported: path info and NAR.
type Imports = Arc<Mutex<Vec<(PathInfo, Vec<u8>)>>>;

#[derive(Default, Clone)]
struct FakeDaemon {
    imported: Imports,
    valid: Arc<Mutex<HashSet<StorePath>>>,
    /// Like a real daemon: write imported paths here (after a delay, so a
    /// rebuild that runs ahead of the import would find nothing).
    store: Option<std::path::PathBuf>,
    /// The size of each import batch.
    batches: Arc<Mutex<Vec<usize>>>,
    /// Refuse this path (as a daemon refuses a bad signature): the batch stops there.
    refuse: Option<StorePath>,
}

impl Importer for FakeDaemon {
    async fn valid_among(&mut self, paths: &[StorePath]) -> Result<std::collections::BTreeSet<StorePath>, ImportError> {
        let valid = self.valid.lock().unwrap();
        Ok(paths.iter().filter(|p| valid.contains(*p)).cloned().collect())
    }
    async fn import(&mut self, nars: Vec<(PathInfo, Spool)>, check_sigs: bool) -> Result<(), ImportError> {
        self.batches.lock().unwrap().push(nars.len());
        for (info, nar) in nars {
            self.import_one(info, nar, check_sigs).await?;
        }
        Ok(())
    }
}

impl FakeDaemon {
    async fn import_one(&mut self, info: PathInfo, nar: Spool, _check_sigs: bool) -> Result<(), ImportError> {
        if self.refuse.as_ref() == Some(&info.path) {
            let message = format!("cannot add path '{}' because it lacks a signature by a trusted key", info.path);
            return Err(ImportError::Daemon(ndeploy_store::daemon::DaemonError::Remote { message, level: 0, traces: Vec::new() }));
        }
        let bytes = match nar {
            Spool::Memory(v) => v,
            Spool::File(mut f) => {
                use std::io::Seek;
                let mut v = Vec::new();
                f.rewind().unwrap();
                f.read_to_end(&mut v).unwrap();
                v
            }
        };
        // Like a real daemon (LocalStore::addToStore): the NAR's hash and size must be the path info's.
        if Hash::digest(HashAlgo::Sha256, &bytes) != info.nar_hash || bytes.len() as u64 != info.nar_size {
            let message = format!("hash mismatch importing path '{}'", info.path);
            return Err(ImportError::Daemon(ndeploy_store::daemon::DaemonError::Remote { message, level: 0, traces: Vec::new() }));
        }
        if let Some(dir) = &self.store {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            ndeploy_store::nar::restore(&bytes[..], &dir.join(info.path.to_string())).unwrap();
        }
        self.valid.lock().unwrap().insert(info.path.clone());
        self.imported.lock().unwrap().push((info, bytes));
        Ok(())
    }
}

fn sp(s: &str) -> StorePath {
    StorePath::from_base_name(s).unwrap()
}

fn info_of(path: &StorePath, nar: &[u8]) -> PathInfo {
    PathInfo::new(path.clone(), Hash::digest(HashAlgo::Sha256, nar), nar.len() as u64)
}

fn pkg(seed: u64, marker: &str) -> Vec<u8> {
    let mut lib = noise(seed, 50_000);
    lib.extend_from_slice(marker.as_bytes());
    nar_of(&dir(vec![("bin", dir(vec![("run", exe(marker.as_bytes()))])), ("lib", dir(vec![("libx.so", file(&lib))])), ("data", file(&noise(99, 20_000)))]))
}

#[tokio::test]
async fn push_verifies_and_imports_or_asks_for_a_resend() {
    let tmp = tempfile::tempdir().unwrap();
    let config = ServerConfig { store_dir: StoreDir::default(), store_root: Some(tmp.path().to_owned()) };
    let files = config.files_dir();
    std::fs::create_dir_all(&files).unwrap();
    let old = sp("00000000000000000000000000000000-pkg-1");
    ndeploy_store::nar::restore(&pkg(1, "old")[..], &files.join(old.to_string())).unwrap();

    let daemon = FakeDaemon::default();
    daemon.valid.lock().unwrap().insert(old.clone());
    let (client_end, server_end) = tokio::io::duplex(1 << 16);
    let (sr, sw) = tokio::io::split(server_end);
    let mut fake = daemon.clone();
    let server = tokio::spawn(async move { serve(sr, sw, &config, &mut fake).await });
    let (cr, cw) = tokio::io::split(client_end);
    let mut client = AgentClient::handshake(cr, cw, StoreDir::default()).await.unwrap();

    // Index: the old path's manifest, nothing for an absent or bogus path.
    let new = sp("11111111111111111111111111111111-pkg-1");
    let ms = client.manifests(&[old.clone(), new.clone()]).await.unwrap();
    assert_eq!(ms[0].as_ref().unwrap(), &NarManifest::from_nar(&pkg(1, "old")[..]).unwrap());
    assert!(ms[1].is_none());
    let mut knowledge = KnowledgeIndex::reading_from(files.clone());
    knowledge.add(old.clone(), ms[0].clone().unwrap());

    let item = |path: &StorePath, nar: &[u8], knowledge: &KnowledgeIndex| {
        let (m, contents) = manifest_and_files(nar);
        let encoded = encode(path, &m, &mut |rel| Ok(contents[rel].clone()), knowledge, &EncodeOptions::default()).unwrap();
        PushItem { info: info_of(path, nar), encoded, check_sigs: false }
    };
    let new_nar = pkg(1, "new");
    let good = item(&new, &new_nar, &knowledge);
    assert!(good.encoded.stats.reference.files == 1 && good.encoded.stats.delta.files == 1, "{:?}", good.encoded.stats);
    // A path whose path info lies about its hash (the daemon refuses it), and a path referring to it.
    let liar = sp("22222222222222222222222222222222-liar-1");
    let liar_nar = pkg(2, "liar");
    let mut bad = item(&liar, &liar_nar, &knowledge);
    bad.info.nar_hash = Hash::digest(HashAlgo::Sha256, b"something else");
    let user = sp("33333333333333333333333333333333-user-1");
    let user_nar = pkg(3, "user");
    let mut dependent = item(&user, &user_nar, &knowledge);
    dependent.info.references.insert(liar.clone());
    let again = item(&old, &pkg(1, "old"), &knowledge);

    let report = client.push(vec![good, bad, dependent, again]).await.unwrap();
    let outcomes: Vec<_> = report.outcomes.iter().map(|(p, o)| (p.clone(), matches!(o, PushOutcome::Imported))).collect();
    assert_eq!(outcomes, [(new.clone(), true), (liar.clone(), false), (user.clone(), false), (old.clone(), true)]);
    let reasons: Vec<&str> = report.resends().map(|r| r.1).collect();
    assert!(reasons[0].contains("hash"), "{reasons:?}");
    // Refused for its reference, or with it when both went to the daemon in one batch.
    assert!(reasons[1].contains("liar"), "{reasons:?}");
    assert!(report.wire_bytes < new_nar.len() as u64 + 3 * 80_000, "{}", report.wire_bytes);
    {
        let imported = daemon.imported.lock().unwrap();
        assert_eq!(imported.len(), 1);
        assert_eq!(imported[0].0.path, new);
        assert!(imported[0].1 == new_nar, "imported NAR differs");
    }

    // The failed path made valid meanwhile (the deployer sent it whole, say):
    // a path referring to it is no longer refused in the same session.
    daemon.valid.lock().unwrap().insert(liar.clone());
    let user2 = sp("55555555555555555555555555555555-user-2");
    let mut dependent2 = item(&user2, &pkg(5, "user2"), &knowledge);
    dependent2.info.references.insert(liar.clone());
    let report = client.push(vec![dependent2]).await.unwrap();
    assert!(matches!(report.outcomes[0].1, PushOutcome::Imported), "{:?}", report.outcomes);

    // A reused file corrupted on the target: the path must be resent.
    let victim = files.join(old.to_string()).join("data");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let other = sp("44444444444444444444444444444444-pkg-1");
    let other_nar = pkg(1, "other");
    let report = client.push(vec![item(&other, &other_nar, &knowledge)]).await.unwrap();
    let (_, outcome) = &report.outcomes[0];
    assert!(matches!(outcome, PushOutcome::Resend { reason } if reason.contains("data")), "{outcome:?}");
    assert_eq!(daemon.imported.lock().unwrap().len(), 2);

    client.bye().await.unwrap();
    let stats = server.await.unwrap().unwrap();
    assert_eq!((stats.imported, stats.resent), (3, 3));
}

#[tokio::test]
async fn a_truncated_stream_imports_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = ServerConfig { store_dir: StoreDir::default(), store_root: Some(tmp.path().to_owned()) };
    let nar = pkg(5, "x");
    let path = sp("55555555555555555555555555555555-x");
    let (m, contents) = manifest_and_files(&nar);
    let encoded = encode(&path, &m, &mut |rel| Ok(contents[rel].clone()), &(), &EncodeOptions::default()).unwrap();
    let push = Message::Push { info: WirePathInfo::from_path_info(&info_of(&path, &nar)), plan: encoded.plan.clone(), check_sigs: false };
    let mut w = FrameWriter::new(Vec::new());
    w.message(&Message::hello(&StoreDir::default())).await.unwrap();
    w.message(&push).await.unwrap();
    w.payload(&encoded.payload).await.unwrap();
    let stream = w.into_inner();
    for cut in [stream.len() - 1, stream.len() - 6, stream.len() - 1000, 30] {
        let daemon = FakeDaemon::default();
        let (mut client_end, server_end) = tokio::io::duplex(1 << 20);
        client_end.write_all(&stream[..cut]).await.unwrap();
        drop(client_end);
        let (sr, sw) = tokio::io::split(server_end);
        let mut fake = daemon.clone();
        let res = serve(sr, sw, &config, &mut fake).await;
        assert!(res.is_err(), "cut at {cut}");
        assert!(daemon.imported.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn paths_received_before_a_cut_are_still_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let config = ServerConfig { store_dir: StoreDir::default(), store_root: Some(tmp.path().to_owned()) };
    let mut w = FrameWriter::new(Vec::new());
    w.message(&Message::hello(&StoreDir::default())).await.unwrap();
    let mut paths = Vec::new();
    for (i, name) in ["66666666666666666666666666666666-a", "77777777777777777777777777777777-b"].into_iter().enumerate() {
        let (path, nar) = (sp(name), pkg(10 + i as u64, name));
        let (m, contents) = manifest_and_files(&nar);
        let encoded = encode(&path, &m, &mut |rel| Ok(contents[rel].clone()), &(), &EncodeOptions::default()).unwrap();
        let push = Message::Push { info: WirePathInfo::from_path_info(&info_of(&path, &nar)), plan: encoded.plan, check_sigs: false };
        w.message(&push).await.unwrap();
        w.payload(&encoded.payload).await.unwrap();
        paths.push(path);
    }
    let mut stream = w.into_inner();
    stream.truncate(stream.len() - 100);
    let daemon = FakeDaemon::default();
    let (mut client_end, server_end) = tokio::io::duplex(1 << 22);
    client_end.write_all(&stream).await.unwrap();
    client_end.shutdown().await.unwrap();
    let (sr, sw) = tokio::io::split(server_end);
    let mut fake = daemon.clone();
    let res = serve(sr, sw, &config, &mut fake).await;
    assert!(matches!(res, Err(crate::protocol::ProtocolError::Truncated)), "{res:?}");
    let imported: Vec<StorePath> = daemon.imported.lock().unwrap().iter().map(|(i, _)| i.path.clone()).collect();
    assert_eq!(imported, paths[..1]);
    drop(client_end);
}

#[tokio::test]
async fn a_plan_cannot_spool_more_than_the_declared_nar_size() {
    use crate::delta::{Method, NarPlan, PlanEntry, PlanNode};
    use crate::manifest::{FileHash, RelPath};
    let tmp = tempfile::tempdir().unwrap();
    let config = ServerConfig { store_dir: StoreDir::default(), store_root: Some(tmp.path().to_owned()) };
    // 200 MB of zeros in a few KB of payload, under a path info announcing 1 KB.
    let size = 200u64 << 20;
    let bomb = zstd::bulk::compress(&vec![0u8; size as usize], 1).unwrap();
    let plan = NarPlan {
        entries: vec![PlanEntry {
            path: RelPath::root(),
            node: PlanNode::Regular { executable: false, size, b3: FileHash([0; 32]), how: Method::Raw { len: bomb.len() as u64 } },
        }],
        payload_len: bomb.len() as u64,
    };
    let path = sp("88888888888888888888888888888888-bomb");
    let mut info = info_of(&path, b"whatever");
    info.nar_size = 1024;
    let mut w = FrameWriter::new(Vec::new());
    w.message(&Message::hello(&StoreDir::default())).await.unwrap();
    w.message(&Message::Push { info: WirePathInfo::from_path_info(&info), plan, check_sigs: false }).await.unwrap();
    w.payload(&bomb).await.unwrap();
    w.message(&Message::Bye).await.unwrap();
    let stream = w.into_inner();
    let (mut client_end, server_end) = tokio::io::duplex(1 << 20);
    client_end.write_all(&stream).await.unwrap();
    let (sr, sw) = tokio::io::split(server_end);
    let daemon = FakeDaemon::default();
    let mut fake = daemon.clone();
    let stats = serve(sr, sw, &config, &mut fake).await.unwrap();
    assert_eq!((stats.imported, stats.resent), (0, 1));
    let replies = client_end_bytes(client_end).await;
    let mut replies = FrameReader::new(&replies[..]);
    replies.message().await.unwrap();
    match replies.message().await.unwrap() {
        Message::Resend { reason, .. } => assert!(reason.contains("larger than"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

async fn client_end_bytes(mut end: tokio::io::DuplexStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    end.shutdown().await.unwrap();
    let mut out = Vec::new();
    end.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn a_plan_reusing_files_of_a_path_pushed_just_before_waits_for_its_import() {
    let tmp = tempfile::tempdir().unwrap();
    let config = ServerConfig { store_dir: StoreDir::default(), store_root: Some(tmp.path().to_owned()) };
    let files = config.files_dir();
    std::fs::create_dir_all(&files).unwrap();
    let daemon = FakeDaemon { store: Some(files.clone()), ..Default::default() };
    let (client_end, server_end) = tokio::io::duplex(1 << 16);
    let (sr, sw) = tokio::io::split(server_end);
    let mut fake = daemon.clone();
    let server = tokio::spawn(async move { serve(sr, sw, &config, &mut fake).await });
    let (cr, cw) = tokio::io::split(client_end);
    let mut client = AgentClient::handshake(cr, cw, StoreDir::default()).await.unwrap();
    // Three versions of one package in one push: each deltas against (and
    // references files of) the one before it.
    type Local = Arc<Mutex<HashMap<StorePath, HashMap<crate::manifest::RelPath, Vec<u8>>>>>;
    let local: Local = Arc::default();
    let reader = Arc::clone(&local);
    let mut knowledge = KnowledgeIndex::new(move |p, rel| reader.lock().unwrap().get(p).and_then(|f| f.get(rel)).cloned());
    let mut items = Vec::new();
    for (i, name) in ["99999999999999999999999999999990-pkg-1", "99999999999999999999999999999991-pkg-1", "99999999999999999999999999999992-pkg-1"].iter().enumerate() {
        let (path, nar) = (sp(name), pkg(1, &format!("v{i}")));
        let (m, contents) = manifest_and_files(&nar);
        let encoded = encode(&path, &m, &mut |rel| Ok(contents[rel].clone()), &knowledge, &EncodeOptions::default()).unwrap();
        if i > 0 {
            assert_eq!(encoded.stats.reference.files + encoded.stats.delta.files, 2, "{:?}", encoded.stats);
        }
        knowledge.add(path.clone(), m);
        local.lock().unwrap().insert(path.clone(), contents);
        items.push(PushItem { info: info_of(&path, &nar), encoded, check_sigs: false });
    }
    let report = client.push(items).await.unwrap();
    assert_eq!(report.resends().count(), 0, "{:?}", report.outcomes);
    client.bye().await.unwrap();
    assert_eq!(server.await.unwrap().unwrap().imported, 3);
}

#[tokio::test]
async fn a_stale_daemon_socket_falls_back_to_a_daemon_of_our_own() {
    use crate::server::{DaemonImporter, DaemonTarget};
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("socket");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_err(), "nobody listens");
    let mut importer = DaemonImporter::new(DaemonTarget::Socket(socket), StoreDir::default());
    // Answered by `nix-daemon --stdio` on this machine's store.
    let absent = sp("00000000000000000000000000000000-surely-not-there");
    assert!(importer.valid_among(&[absent]).await.unwrap().is_empty());
}

/// One batch, every fate in it: answered in order, the rebuilt paths before
/// the daemon's refusal imported with one `AddMultipleToStore`, the refused
/// one and those after it resent with the daemon's reason, a failed rebuild
/// and a path referring to it resent without reaching the daemon, an
/// already valid path `Imported` without import.
#[tokio::test]
async fn a_batch_imports_in_one_operation_and_resends_from_a_refusal_on() {
    use crate::server::import::import_batch;
    use crate::server::{RebuiltPush, ResendReason};
    let path = |i: usize| sp(&format!("{}-p-{i}", i.to_string().repeat(32)));
    let held = sp("99999999999999999999999999999999-held");
    let mut daemon = FakeDaemon { refuse: Some(path(5)), ..Default::default() };
    daemon.valid.lock().unwrap().insert(held.clone());
    let rebuilt = |p: &StorePath, refs: &[&StorePath]| {
        let nar = pkg(1, &p.to_string());
        let mut info = info_of(p, &nar);
        info.references.extend(refs.iter().map(|r| (*r).clone()));
        RebuiltPush { name: p.to_string(), rebuilt: Ok((info, Ok((Spool::Memory(nar), Default::default())))), check_sigs: false, _spool: None }
    };
    let mut failed_rebuild = rebuilt(&path(2), &[]);
    if let Ok((_, r)) = &mut failed_rebuild.rebuilt {
        *r = Err(ResendReason::Size { got: 1, want: 2 });
    }
    let batch = vec![
        rebuilt(&path(1), &[&held]),
        failed_rebuild,
        rebuilt(&path(3), &[&path(2)]),
        rebuilt(&held, &[]),
        rebuilt(&path(4), &[&path(1)]),
        rebuilt(&path(5), &[]),
        rebuilt(&path(6), &[&path(4)]),
    ];
    let mut failed = HashSet::new();
    let mut stats = crate::server::ServeStats::default();
    let answers = import_batch(&mut daemon, &mut failed, batch, &mut stats).await;
    let got: Vec<(String, String)> = answers
        .iter()
        .map(|m| match m {
            Message::Imported { path } => (path.clone(), "imported".to_owned()),
            Message::Resend { path, reason } => (path.clone(), reason.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    let names: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    let order = [path(1), path(2), path(3), held.clone(), path(4), path(5), path(6)].map(|p| p.to_string());
    assert_eq!(names, order.iter().map(String::as_str).collect::<Vec<_>>());
    let fate: Vec<&str> = got.iter().map(|(_, f)| f.as_str()).collect();
    assert_eq!(fate[..2], ["imported", "rebuilt NAR has 1 bytes, the path info says 2"]);
    assert!(fate[2].contains("reference") && fate[2].contains(&path(2).to_string()), "{fate:?}");
    assert_eq!(fate[3..5], ["imported", "imported"]);
    assert!(fate[5].contains("lacks a signature") && fate[6].contains("lacks a signature"), "{fate:?}");
    // One operation for the four paths the daemon got; it stopped at the refusal.
    assert_eq!(*daemon.batches.lock().unwrap(), [4]);
    let imported: Vec<StorePath> = daemon.imported.lock().unwrap().iter().map(|(i, _)| i.path.clone()).collect();
    assert_eq!(imported, [path(1), path(4)]);
    assert_eq!((stats.imported, stats.resent), (3, 4));
    // The resent paths are remembered as failed (what refers to them later is refused).
    assert_eq!(failed, [path(2), path(3), path(5), path(6)].into_iter().collect());
}
