//! Importing verified NARs: the [`Importer`] trait the session loop uses,
//! and [`DaemonImporter`], the target's own Nix daemon (its socket, or a
//! `nix-daemon --stdio` child, optionally on a chroot store), connected on
//! first use and reconnected if an operation left the connection broken.
//!
//! Invariant: only [`super`] calls `import`, and only with NARs whose hash
//! and size it has checked against their path infos; a path that is already
//! valid is never sent (Nix 2.8 would lose its place in the stream). A batch
//! is one `AddMultipleToStore`: the daemon registers its paths one by one, in
//! order, and an error stops it at the failing path (those before it stay).

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;

use ndeploy_store::daemon::{self, AddToStoreFlags, DaemonConnection, FromIter, SpawnedDaemon};
use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::{StoreDir, StorePath};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{ServerConfig, Spool};

/// Why the target's daemon could not answer or import.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error(transparent)]
    Daemon(#[from] daemon::DaemonError),
    #[error("reading the spooled NAR: {0}")]
    Spool(#[from] io::Error),
}

/// Imports verified NARs into the target's store.
pub trait Importer: Send {
    /// Get ready to import (connect), ahead of the first request; failures
    /// are left for the first request to report.
    fn prepare(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// Which of `paths` are valid (one round trip).
    fn valid_among(&mut self, paths: &[StorePath]) -> impl Future<Output = Result<BTreeSet<StorePath>, ImportError>> + Send;
    /// Import `nars` in order, in one operation (references first: each
    /// path's references are valid or earlier in the batch).
    fn import(&mut self, nars: Vec<(PathInfo, Spool)>, check_sigs: bool) -> impl Future<Output = Result<(), ImportError>> + Send;
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
    /// The daemon socket if there is one (`DaemonImporter` falls back to a
    /// child if nothing listens on it), else `nix-daemon --stdio`; with a
    /// store root always the child, on `local?root=ROOT`. Nothing is
    /// connected here (a probe would leave an error in the daemon's log).
    pub fn detect(config: &ServerConfig) -> DaemonTarget {
        if let Some(root) = &config.store_root {
            return DaemonTarget::Spawn {
                program: nix_daemon(),
                args: vec!["--stdio".into(), "--store".into(), format!("local?root={}", root.display())],
            };
        }
        let socket = std::env::var_os("NIX_DAEMON_SOCKET_PATH").map_or_else(|| PathBuf::from(daemon::DEFAULT_SOCKET_PATH), PathBuf::from);
        if std::fs::metadata(&socket).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())) {
            DaemonTarget::Socket(socket)
        } else {
            DaemonTarget::stdio()
        }
    }

    /// `nix-daemon --stdio` on the default store.
    pub fn stdio() -> DaemonTarget {
        DaemonTarget::Spawn { program: nix_daemon(), args: vec!["--stdio".into()] }
    }
}

/// The daemon program: `$NDEPLOY_NIX_DAEMON`, else `nix-daemon` from `PATH`.
fn nix_daemon() -> PathBuf {
    std::env::var_os("NDEPLOY_NIX_DAEMON").map_or_else(|| PathBuf::from("nix-daemon"), PathBuf::from)
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

    async fn conn(&mut self) -> Result<&mut Conn, ImportError> {
        if self.conn.as_ref().is_some_and(|c| match c {
            Conn::Unix(c) => c.is_broken(),
            Conn::Child(c) => c.conn.is_broken(),
        }) {
            self.conn = None;
        }
        let conn = match self.conn.take() {
            Some(c) => c,
            None => match connect(&self.target, &self.store_dir).await {
                // A socket nobody listens on (a stale file): a daemon of our own.
                Err(e) if matches!(self.target, DaemonTarget::Socket(_)) => {
                    tracing::debug!("{e}; starting nix-daemon --stdio");
                    self.target = DaemonTarget::stdio();
                    connect(&self.target, &self.store_dir).await?
                }
                c => c?,
            },
        };
        Ok(self.conn.insert(conn))
    }
}

async fn connect(target: &DaemonTarget, store_dir: &StoreDir) -> Result<Conn, ImportError> {
    Ok(match target {
        DaemonTarget::Socket(p) => Conn::Unix(Box::new(daemon::connect_unix(p, store_dir.clone()).await?)),
        DaemonTarget::Spawn { program, args } => {
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args);
            Conn::Child(Box::new(daemon::spawn_stdio(cmd, store_dir.clone()).await?))
        }
    })
}

async fn valid_on<R, W>(c: &mut DaemonConnection<R, W>, paths: &[StorePath]) -> Result<BTreeSet<StorePath>, ImportError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    Ok(c.query_valid_paths(paths, false).await?)
}

async fn import_on<R, W>(c: &mut DaemonConnection<R, W>, nars: Vec<(PathInfo, Spool)>, check_sigs: bool) -> Result<(), ImportError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let count = nars.len() as u64;
    let readers = nars.into_iter().map(|(info, nar)| Ok((info, nar.into_reader()?))).collect::<io::Result<Vec<_>>>()?;
    let flags = AddToStoreFlags { repair: false, dont_check_sigs: !check_sigs };
    Ok(c.add_multiple_to_store(count, FromIter(readers.into_iter()), flags).await?)
}

impl Importer for DaemonImporter {
    async fn prepare(&mut self) {
        if let Err(e) = self.conn().await {
            tracing::debug!("connecting to the daemon: {e}");
        }
    }

    async fn valid_among(&mut self, paths: &[StorePath]) -> Result<BTreeSet<StorePath>, ImportError> {
        match self.conn().await? {
            Conn::Unix(c) => valid_on(c, paths).await,
            Conn::Child(c) => valid_on(&mut c.conn, paths).await,
        }
    }

    async fn import(&mut self, nars: Vec<(PathInfo, Spool)>, check_sigs: bool) -> Result<(), ImportError> {
        match self.conn().await? {
            Conn::Unix(c) => import_on(c, nars, check_sigs).await,
            Conn::Child(c) => import_on(&mut c.conn, nars, check_sigs).await,
        }
    }
}

