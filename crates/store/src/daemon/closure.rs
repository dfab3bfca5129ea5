//! Batched path-info queries and closure computation.
//!
//! The worker protocol has no batch form of QueryPathInfo (before a future
//! QueryPathInfos), but the daemon serves requests strictly in order, so they
//! can be pipelined: [`DaemonConnection::query_path_infos`] writes all the
//! requests while it reads the replies, which costs one round trip for the
//! whole batch instead of one per path. Writing and reading run concurrently,
//! so neither side can fill the pipe and stall the other, and a failure of
//! either ends both at once (the connection is then broken).
//!
//! [`DaemonConnection::query_closure`] walks references breadth-first with
//! one pipelined batch per level, so a closure costs as many round trips as
//! it is deep.

use std::collections::BTreeSet;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::client::{DaemonConnection, Parts};
use super::copy::sort_references_first;
use super::opcodes::Op;
use super::path_info::read_unkeyed;
use super::stderr::process_stderr;
use super::wire::{WireBuf, read_bool};
use super::{DaemonError, Result};
use crate::path_info::PathInfo;
use crate::store_path::StorePath;

impl<R, W> DaemonConnection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// QueryPathInfo for every path, pipelined: `None` where a path is not
    /// valid. If the daemon reports an error for some path, the remaining
    /// replies are still read (the connection stays usable) and the first
    /// such error is returned.
    pub async fn query_path_infos(&mut self, paths: &[StorePath]) -> Result<Vec<Option<PathInfo>>> {
        let Parts { reader, writer, log, dir } = self.begin_pipelined()?;
        let send = async {
            for p in paths {
                let mut w = WireBuf::new();
                w.u64(Op::QueryPathInfo.code()).path(dir, p);
                writer.write_all(w.as_bytes()).await?;
            }
            writer.flush().await?;
            Ok::<(), DaemonError>(())
        };
        let recv = async {
            let mut infos = Vec::with_capacity(paths.len());
            let mut first_error = None;
            for p in paths {
                match process_stderr(&mut *reader, &mut *log).await {
                    Ok(()) => {}
                    Err(e @ DaemonError::Remote { .. }) => {
                        first_error.get_or_insert(e);
                        infos.push(None);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                let info = if read_bool(&mut *reader).await? {
                    Some(read_unkeyed(&mut *reader, dir, p.clone()).await?)
                } else {
                    None
                };
                infos.push(info);
            }
            Ok((infos, first_error))
        };
        let ((), (infos, first_error)) = tokio::try_join!(send, recv)?;
        self.finish(match first_error {
            Some(e) => Err(e),
            None => Ok(infos),
        })
    }

    /// The closure of `roots` (every path they reference, transitively), with
    /// references before referrers. A path that is not valid is an error.
    pub async fn query_closure(&mut self, roots: &[StorePath]) -> Result<Vec<PathInfo>> {
        let mut seen: BTreeSet<StorePath> = roots.iter().cloned().collect();
        let mut frontier: Vec<StorePath> = seen.iter().cloned().collect();
        let mut all = Vec::new();
        while !frontier.is_empty() {
            let infos = self.query_path_infos(&frontier).await?;
            let mut next = Vec::new();
            for (path, info) in frontier.iter().zip(infos) {
                let info = info.ok_or_else(|| DaemonError::BadInput {
                    message: format!("path '{}' is not valid on the daemon", self.store_dir().display(path)),
                })?;
                next.extend(info.references.iter().filter(|r| seen.insert((*r).clone())).cloned());
                all.push(info);
            }
            frontier = next;
        }
        sort_references_first(all)
    }
}
