//! The agent's side of the protocol (`ndeploy-agent --stdio`): answers
//! `Index` from the store's files on disk, rebuilds each pushed NAR from its
//! plan, verifies it, and imports it through the target's own daemon.
//!
//! Per `Push`, in order: the payload is read (at most [`MAX_PAYLOAD`] bytes;
//! larger ones are skipped and answered `Resend`); the path is answered
//! `Imported` at once if already valid; a path whose references failed
//! earlier in the session is `Resend`; the NAR is rebuilt on a blocking
//! thread into a spool (memory, or a temporary file above [`SPOOL_IN_MEMORY`])
//! while its hash is computed; it is imported only if its hash and size
//! equal the path info's. Every failure of a single path (bad base file,
//! hash mismatch, daemon refusal) is a `Resend` with the reason, and the
//! session goes on; only a broken stream or an undecodable message ends it
//! (after an `Error` message when possible).
//!
//! The daemon is reached through the [`Importer`] trait so the loop tests
//! without one; [`DaemonImporter`] is the real one: the local socket, or
//! `nix-daemon --stdio` (optionally on a chroot store) when there is none.

use std::collections::HashSet;
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};

use ndeploy_store::daemon::{self, AddToStoreFlags, DaemonConnection, FromIter, SpawnedDaemon};
use ndeploy_store::hash::Hash;
use ndeploy_store::nar::HashingWriter;
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::{StoreDir, StorePath};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

use crate::delta::{NarPlan, PlanStats, StoreFiles, decode};
use crate::manifest::NarManifest;
use crate::protocol::{Frame, Message, PathManifest, ProtocolError, read_frame, read_message, read_payload, write_message};

/// Largest payload accepted for one path.
pub const MAX_PAYLOAD: u64 = 1 << 30;
/// Rebuilt NARs up to this size stay in memory; larger ones go to a temporary file.
pub const SPOOL_IN_MEMORY: u64 = 128 << 20;

/// Where the target's store is.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// The logical store dir (`/nix/store`).
    pub store_dir: StoreDir,
    /// For a chroot store (`local?root=DIR`): DIR. Files are then read under it.
    pub store_root: Option<PathBuf>,
}

impl ServerConfig {
    /// Where the store's files are on this machine.
    pub fn files_dir(&self) -> PathBuf {
        match &self.store_root {
            Some(root) => root.join(self.store_dir.as_str().trim_start_matches('/')),
            None => PathBuf::from(self.store_dir.as_str()),
        }
    }
}

/// A rebuilt NAR waiting to be imported.
pub enum Spool {
    Memory(Vec<u8>),
    File(std::fs::File),
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Spool::Memory(v) => Write::write(v, buf),
            Spool::File(f) => Write::write(f, buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Spool::Memory(_) => Ok(()),
            Spool::File(f) => f.flush(),
        }
    }
}

impl Spool {
    fn new(size: u64) -> io::Result<Spool> {
        Ok(if size <= SPOOL_IN_MEMORY { Spool::Memory(Vec::with_capacity(size.min(16 << 20) as usize)) } else { Spool::File(tempfile::tempfile()?) })
    }

    /// The spooled bytes as an async reader from the start.
    pub fn into_reader(self) -> io::Result<Box<dyn AsyncRead + Unpin + Send>> {
        Ok(match self {
            Spool::Memory(v) => Box::new(io::Cursor::new(v)),
            Spool::File(mut f) => {
                f.rewind()?;
                Box::new(tokio::fs::File::from_std(f))
            }
        })
    }
}

/// Imports verified NARs into the target's store.
pub trait Importer: Send {
    fn is_valid(&mut self, path: &StorePath) -> impl Future<Output = Result<bool, String>> + Send;
    fn import(&mut self, info: PathInfo, nar: Spool, check_sigs: bool) -> impl Future<Output = Result<(), String>> + Send;
}

/// How [`DaemonImporter`] reaches the daemon.
#[derive(Debug, Clone)]
pub enum DaemonTarget {
    /// The daemon socket (`$NIX_DAEMON_SOCKET_PATH` or the default).
    Socket(PathBuf),
    /// A `nix-daemon --stdio` child with these arguments.
    Spawn { program: PathBuf, args: Vec<String> },
}

impl DaemonTarget {
    /// The socket if one is listening, else `nix-daemon --stdio`; with a
    /// store root always the child, on `local?root=ROOT`.
    pub fn detect(config: &ServerConfig) -> DaemonTarget {
        let program = std::env::var_os("NDEPLOY_NIX_DAEMON").map_or_else(|| PathBuf::from("nix-daemon"), PathBuf::from);
        if let Some(root) = &config.store_root {
            return DaemonTarget::Spawn { program, args: vec!["--stdio".into(), "--store".into(), format!("local?root={}", root.display())] };
        }
        let socket = std::env::var_os("NIX_DAEMON_SOCKET_PATH").map_or_else(|| PathBuf::from(daemon::DEFAULT_SOCKET_PATH), PathBuf::from);
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            DaemonTarget::Socket(socket)
        } else {
            DaemonTarget::Spawn { program, args: vec!["--stdio".into()] }
        }
    }
}

enum Conn {
    Unix(Box<daemon::transport::UnixConnection>),
    Child(Box<SpawnedDaemon>),
}

/// The real [`Importer`]: the target's daemon, connected on first use.
pub struct DaemonImporter {
    target: DaemonTarget,
    store_dir: StoreDir,
    conn: Option<Conn>,
}

impl DaemonImporter {
    pub fn new(target: DaemonTarget, store_dir: StoreDir) -> DaemonImporter {
        DaemonImporter { target, store_dir, conn: None }
    }

    async fn conn(&mut self) -> Result<&mut Conn, String> {
        if self.conn.as_ref().is_some_and(|c| match c {
            Conn::Unix(c) => c.is_broken(),
            Conn::Child(c) => c.conn.is_broken(),
        }) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let c = match &self.target {
                DaemonTarget::Socket(p) => Conn::Unix(Box::new(daemon::connect_unix(p, self.store_dir.clone()).await.map_err(|e| e.to_string())?)),
                DaemonTarget::Spawn { program, args } => {
                    let mut cmd = tokio::process::Command::new(program);
                    cmd.args(args);
                    Conn::Child(Box::new(daemon::spawn_stdio(cmd, self.store_dir.clone()).await.map_err(|e| e.to_string())?))
                }
            };
            self.conn = Some(c);
        }
        self.conn.as_mut().ok_or_else(|| "no daemon connection".to_owned())
    }
}

async fn valid_on<R, W>(c: &mut DaemonConnection<R, W>, path: &StorePath) -> Result<bool, String>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    c.is_valid_path(path).await.map_err(|e| e.to_string())
}

async fn import_on<R, W>(c: &mut DaemonConnection<R, W>, info: PathInfo, nar: Spool, check_sigs: bool) -> Result<(), String>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let reader = nar.into_reader().map_err(|e| e.to_string())?;
    let flags = AddToStoreFlags { repair: false, dont_check_sigs: !check_sigs };
    c.add_multiple_to_store(1, FromIter(std::iter::once((info, reader))), flags).await.map_err(|e| e.to_string())
}

impl Importer for DaemonImporter {
    async fn is_valid(&mut self, path: &StorePath) -> Result<bool, String> {
        match self.conn().await? {
            Conn::Unix(c) => valid_on(c, path).await,
            Conn::Child(c) => valid_on(&mut c.conn, path).await,
        }
    }

    async fn import(&mut self, info: PathInfo, nar: Spool, check_sigs: bool) -> Result<(), String> {
        match self.conn().await? {
            Conn::Unix(c) => import_on(c, info, nar, check_sigs).await,
            Conn::Child(c) => import_on(&mut c.conn, info, nar, check_sigs).await,
        }
    }
}

/// What a session did.
#[derive(Debug, Clone, Default)]
pub struct ServeStats {
    pub imported: u64,
    pub resent: u64,
    pub indexed: u64,
    pub methods: PlanStats,
}

/// Serve one session on `reader`/`writer` until `Bye` or the end of the stream.
pub async fn serve<R, W, I>(reader: R, writer: W, config: &ServerConfig, importer: &mut I) -> Result<ServeStats, ProtocolError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
    I: Importer,
{
    let mut r = BufReader::with_capacity(256 << 10, reader);
    let mut w = BufWriter::new(writer);
    let mut stats = ServeStats::default();
    let res = session(&mut r, &mut w, config, importer, &mut stats).await;
    if let Err(e) = &res
        && !matches!(e, ProtocolError::Disconnected | ProtocolError::Truncated | ProtocolError::Io(_))
    {
        // Best effort: tell the client why before closing.
        let _ = write_message(&mut w, &Message::Error { message: e.to_string() }).await;
        let _ = w.flush().await;
    }
    res.map(|()| stats)
}

async fn session<R, W, I>(r: &mut R, w: &mut W, config: &ServerConfig, importer: &mut I, stats: &mut ServeStats) -> Result<(), ProtocolError>
where
    R: tokio::io::AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
    I: Importer,
{
    let hello = read_message(r).await?;
    let checked = hello.check_hello(&config.store_dir);
    write_message(w, &Message::hello(&config.store_dir)).await?;
    w.flush().await?;
    checked?;
    let files = config.files_dir();
    let mut failed: HashSet<StorePath> = HashSet::new();
    loop {
        let msg = match read_message(r).await {
            Err(ProtocolError::Disconnected) => return Ok(()),
            m => m?,
        };
        let reply = match msg {
            Message::Index { paths } => {
                stats.indexed += paths.len() as u64;
                let dir = files.clone();
                let manifests = tokio::task::spawn_blocking(move || index(&dir, paths))
                    .await
                    .map_err(|e| ProtocolError::Io(io::Error::other(e.to_string())))?;
                Message::Manifests { manifests }
            }
            Message::Push { info, plan, check_sigs } => {
                let outcome = push(r, &files, importer, &failed, info.to_path_info(), plan, check_sigs, stats).await?;
                match outcome {
                    Ok(path) => {
                        stats.imported += 1;
                        Message::Imported { path: path.to_string() }
                    }
                    Err(reason) => {
                        stats.resent += 1;
                        if let Ok(p) = StorePath::from_base_name(&info.path) {
                            failed.insert(p);
                        }
                        Message::Resend { path: info.path, reason }
                    }
                }
            }
            Message::Bye => {
                write_message(w, &Message::Bye).await?;
                w.flush().await?;
                return Ok(());
            }
            other => return Err(ProtocolError::Unexpected { expected: "Index, Push or Bye", got: other.name().to_owned() }),
        };
        write_message(w, &reply).await?;
        w.flush().await?;
    }
}

/// Manifests of the paths present under `dir` (`None` for absent or unreadable ones).
fn index(dir: &Path, paths: Vec<String>) -> Vec<PathManifest> {
    paths
        .into_iter()
        .map(|path| {
            let manifest = StorePath::from_base_name(&path)
                .ok()
                .map(|p| dir.join(p.to_string()))
                .filter(|full| std::fs::symlink_metadata(full).is_ok())
                .and_then(|full| NarManifest::from_disk(&full).ok());
            PathManifest { path, manifest }
        })
        .collect()
}

/// Handle one `Push` whose payload is next on `r`. The outer error ends the
/// session; the inner one is the `Resend` reason.
#[allow(clippy::too_many_arguments)]
async fn push<R, I>(
    r: &mut R,
    files: &Path,
    importer: &mut I,
    failed: &HashSet<StorePath>,
    info: Result<PathInfo, ProtocolError>,
    plan: NarPlan,
    check_sigs: bool,
    stats: &mut ServeStats,
) -> Result<Result<StorePath, String>, ProtocolError>
where
    R: tokio::io::AsyncRead + Unpin + Send,
    I: Importer,
{
    if plan.payload_len > MAX_PAYLOAD {
        skip_payload(r).await?;
        return Ok(Err(format!("payload of {} bytes is over the agent's limit of {MAX_PAYLOAD}", plan.payload_len)));
    }
    let payload = read_payload(r, plan.payload_len).await?;
    let info = match info {
        Ok(i) => i,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let path = info.path.clone();
    match importer.is_valid(&path).await {
        Ok(true) => return Ok(Ok(path)),
        Ok(false) => {}
        Err(e) => return Ok(Err(format!("asking the daemon: {e}"))),
    }
    if let Some(r) = info.references.iter().find(|r| failed.contains(*r)) {
        return Ok(Err(format!("its reference '{r}' was not imported")));
    }
    let source = StoreFiles { dir: files.to_owned() };
    let expected = (info.nar_hash, info.nar_size);
    let rebuilt = tokio::task::spawn_blocking(move || rebuild(&plan, &payload, &source, &expected.0, expected.1))
        .await
        .map_err(|e| ProtocolError::Io(io::Error::other(e.to_string())))?;
    let (spool, methods) = match rebuilt {
        Ok(x) => x,
        Err(reason) => return Ok(Err(reason)),
    };
    if let Err(e) = importer.import(info, spool, check_sigs).await {
        return Ok(Err(format!("importing: {e}")));
    }
    stats.methods.merge(&methods);
    Ok(Ok(path))
}

/// Rebuild and verify one NAR (see the module doc).
fn rebuild(plan: &NarPlan, payload: &[u8], source: &StoreFiles, nar_hash: &Hash, nar_size: u64) -> Result<(Spool, PlanStats), String> {
    let spool = Spool::new(nar_size).map_err(|e| format!("spooling the NAR: {e}"))?;
    let hashing = HashingWriter::new(nar_hash.algo(), spool);
    let (hashing, stats) = decode(plan, payload, source, hashing).map_err(|e| e.to_string())?;
    let (got, size, spool) = hashing.finish();
    if size != nar_size {
        return Err(format!("rebuilt NAR has {size} bytes, the path info says {nar_size}"));
    }
    if got != *nar_hash {
        return Err(format!("rebuilt NAR hash {} differs from the path info's {}", got.to_sri(), nar_hash.to_sri()));
    }
    Ok((spool, stats))
}

async fn skip_payload<R: tokio::io::AsyncRead + Unpin + Send>(r: &mut R) -> Result<(), ProtocolError> {
    loop {
        match read_frame(r).await? {
            Frame::Data(_) => {}
            Frame::End => return Ok(()),
            Frame::Control(m) => return Err(ProtocolError::Unexpected { expected: "data or End", got: m.name().to_owned() }),
        }
    }
}
