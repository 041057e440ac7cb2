//! The TCP server: accepts connections, reads RPC records, runs calls
//! concurrently (bounded per connection), writes replies, and shuts down
//! gracefully (stop accepting, finish what is in flight). Also the MOUNT and
//! port-query programs, which share the NFS port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_engine::Engine;
use nfs3_types::mount::{
    dirpath, export_node, exports, fhandle3, mountres3, mountres3_ok, mountstat3,
};
use nfs3_types::nfs3::nfsstat3;
use nfs3_types::portmap::{IPPROTO_TCP, mapping};
use nfs3_types::rpc::{accept_stat_data, rejected_reply};
use nfs3_types::xdr_codec::{List, Opaque, Void};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handle::FileHandle;
use crate::rpc::{self, BadCall, Call, pack, unpack};
use crate::views::Views;

/// NFS program and version.
const NFS_PROGRAM: u32 = nfs3_types::nfs3::PROGRAM;
/// MOUNT program.
const MOUNT_PROGRAM: u32 = nfs3_types::mount::PROGRAM;
/// Port mapper program.
const PORTMAP_PROGRAM: u32 = nfs3_types::portmap::PROGRAM;

/// Server settings.
#[derive(Debug, Clone)]
pub struct NfsOptions {
    /// List `.snapshots` in dataset roots (it can always be looked up).
    pub snapdir_visible: bool,
    /// Calls one connection may have in flight; further reads wait.
    pub max_in_flight_per_connection: usize,
    /// Connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// Calls in flight across all connections; further reads wait.
    pub max_calls_in_flight: usize,
    /// Bytes of call records held across all connections, from the moment
    /// a fragment's length is known (before its buffer is allocated) until
    /// the call is answered; further reads wait.
    pub max_request_bytes_in_flight: usize,
    /// A reply the client has not taken off the socket within this time
    /// closes its connection.
    pub reply_timeout: Duration,
    /// Once a call has begun to arrive, each further read of it must
    /// complete within this time, or its connection is closed.
    pub call_stall_timeout: Duration,
}

/// Default time a client has to take a reply off the socket before its
/// connection is closed (returning what its calls held to the budgets):
/// 30 s.
pub const REPLY_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time a client may pause in the middle of sending a call (after
/// a fragment header, before the rest) before its connection is closed,
/// returning the bytes announced to the budget: 30 s.
pub const CALL_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Default store-wide bound on calls in flight: 64. With replies of at most
/// 1 MiB (a READ), replies in flight are at most 64 MiB.
pub const DEFAULT_MAX_CALLS_IN_FLIGHT: usize = 64;

/// Default store-wide bound on call records held: 64 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES_IN_FLIGHT: usize = 64 << 20;

impl Default for NfsOptions {
    fn default() -> Self {
        Self {
            snapdir_visible: false,
            max_in_flight_per_connection: 64,
            max_connections: 256,
            max_calls_in_flight: DEFAULT_MAX_CALLS_IN_FLIGHT,
            max_request_bytes_in_flight: DEFAULT_MAX_REQUEST_BYTES_IN_FLIGHT,
            reply_timeout: REPLY_WRITE_TIMEOUT,
            call_stall_timeout: CALL_STALL_TIMEOUT,
        }
    }
}

/// What every call can reach.
pub struct State {
    pub(crate) views: Views,
    pub(crate) store_id: u64,
    /// Changes at every start, so clients resend writes they had not
    /// committed before a restart.
    pub(crate) write_verf: [u8; 8],
    pub(crate) port: u16,
    pub(crate) snapdir_visible: bool,
}

/// A bound NFS server.
pub struct NfsServer {
    listener: TcpListener,
    state: Arc<State>,
    options: NfsOptions,
}

impl NfsServer {
    /// Bind `addr` (port 0 picks a free port) to serve `engine`.
    pub async fn bind(
        engine: Engine,
        addr: SocketAddr,
        options: NfsOptions,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for NFS on {addr}"))?;
        let port = listener.local_addr()?.port();
        let seed = format!(
            "{:?}/{}/{}",
            std::time::SystemTime::now(),
            std::process::id(),
            engine.store_id()
        );
        let mut write_verf = [0u8; 8];
        write_verf.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..8]);
        let state = Arc::new(State {
            store_id: engine.store_id(),
            views: Views::new(engine),
            write_verf,
            port,
            snapdir_visible: options.snapdir_visible,
        });
        Ok(Self {
            listener,
            state,
            options,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` is cancelled; then stop accepting, stop
    /// reading new calls, and return once every call in flight has been
    /// answered.
    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        let conns = Arc::new(Semaphore::new(self.options.max_connections));
        let limits = Limits {
            per_connection: self.options.max_in_flight_per_connection.max(1),
            calls: Arc::new(Semaphore::new(self.options.max_calls_in_flight.max(1))),
            // Never below one whole record, or a maximal call could not be
            // read at all.
            bytes: Arc::new(Semaphore::new(
                self.options
                    .max_request_bytes_in_flight
                    .max(rpc::MAX_RECORD_BYTES),
            )),
            reply_timeout: self.options.reply_timeout,
            call_stall_timeout: self.options.call_stall_timeout,
        };
        loop {
            let permit = tokio::select! {
                p = conns.clone().acquire_owned() => p?,
                _ = shutdown.cancelled() => break,
            };
            let (stream, peer) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
                _ = shutdown.cancelled() => break,
            };
            let _ = stream.set_nodelay(true);
            tracing::debug!(%peer, "NFS connection");
            let state = self.state.clone();
            let shutdown = shutdown.clone();
            let limits = limits.clone();
            let t = tracker.clone();
            tracker.spawn(async move {
                if let Err(e) = connection(state, stream, shutdown, limits, t).await {
                    tracing::debug!(%peer, error = %e, "NFS connection closed");
                }
                drop(permit);
            });
        }
        drop(self.listener);
        tracker.close();
        tracker.wait().await;
        Ok(())
    }
}

/// The bounds on calls in flight, shared by all connections.
#[derive(Clone)]
struct Limits {
    per_connection: usize,
    calls: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    reply_timeout: Duration,
    call_stall_timeout: Duration,
}

async fn connection(
    state: Arc<State>,
    stream: TcpStream,
    shutdown: CancellationToken,
    limits: Limits,
    tracker: TaskTracker,
) -> anyhow::Result<()> {
    let max_in_flight = limits.per_connection;
    let (mut rd, wr) = stream.into_split();
    // A reply travels with its call's store-wide permit, which is returned
    // once the reply is on the socket: calls in flight and replies waiting
    // for a slow client count against the same bound.
    let (tx, rx) = mpsc::channel::<(rpc::Reply, OwnedSemaphorePermit)>(max_in_flight);
    let closed = shutdown.child_token();
    let writer = tokio::spawn(write_replies(wr, rx, limits.reply_timeout, closed.clone()));
    let slots = Arc::new(Semaphore::new(max_in_flight));
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s?,
            _ = closed.cancelled() => break,
        };
        let record = tokio::select! {
            r = rpc::read_record(&mut rd, &limits.bytes, limits.call_stall_timeout) => r,
            _ = closed.cancelled() => break,
        };
        let (record, held) = match record {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(error = %e, "dropping NFS connection");
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "NFS connection ended");
                break;
            }
        };
        // Taken once a call has arrived, so idle connections hold none.
        let call = tokio::select! {
            c = limits.calls.clone().acquire_owned() => c?,
            _ = closed.cancelled() => break,
        };
        let state = state.clone();
        let tx = tx.clone();
        tracker.spawn(async move {
            if let Some(reply) = state.handle(&record).await {
                drop(record);
                drop(held);
                let _ = tx.send((reply, call)).await;
            }
            drop(slot);
        });
    }
    drop(tx);
    writer.await??;
    Ok(())
}

/// Write replies in order; a reply not taken within `timeout` fails the
/// connection. The call's permit is returned once its reply is on the
/// socket. On failure, `closed` stops the connection's reader.
async fn write_replies(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<(rpc::Reply, OwnedSemaphorePermit)>,
    timeout: Duration,
    closed: CancellationToken,
) -> std::io::Result<()> {
    let r = async {
        while let Some((buf, call)) = rx.recv().await {
            rpc::within(timeout, "the client took no reply", buf.write_to(&mut wr)).await?;
            drop(call);
        }
        wr.shutdown().await
    }
    .await;
    if r.is_err() {
        closed.cancel();
    }
    r
}

impl State {
    /// Answer one record; `None` when no reply is possible.
    pub async fn handle(&self, record: &[u8]) -> Option<rpc::Reply> {
        let (call, off) = match rpc::parse_call(record) {
            Ok(x) => x,
            Err(BadCall::Garbage) => {
                tracing::warn!(
                    bytes = record.len(),
                    "ignoring a record that is not an RPC call"
                );
                return None;
            }
            Err(BadCall::NotACall) => return None,
            Err(BadCall::RpcMismatch(xid)) => {
                return Some(rpc::denied(xid, rejected_reply::rpc_mismatch(2, 2)));
            }
            Err(BadCall::Auth(xid, why)) => {
                return Some(rpc::denied(xid, rejected_reply::auth_error(why)));
            }
        };
        let args = &record[off..];
        let started = std::time::Instant::now();
        let result = match (call.prog, call.vers) {
            (NFS_PROGRAM, 3) => self.nfs(&call, args).await,
            (MOUNT_PROGRAM, 3) => self.mount(&call, args).await.map(Into::into),
            (PORTMAP_PROGRAM, 2) => self.portmap(&call, args).map(Into::into),
            (NFS_PROGRAM | MOUNT_PROGRAM, _) => {
                Err(accept_stat_data::PROG_MISMATCH { low: 3, high: 3 })
            }
            (PORTMAP_PROGRAM, _) => Err(accept_stat_data::PROG_MISMATCH { low: 2, high: 2 }),
            _ => Err(accept_stat_data::PROG_UNAVAIL),
        };
        tracing::trace!(
            prog = call.prog,
            proc_ = call.proc_,
            uid = call.creds.uid,
            elapsed_us = started.elapsed().as_micros() as u64,
            "call"
        );
        Some(match result {
            Ok(body) => rpc::success(call.xid, body),
            Err(e) => rpc::accept_error(call.xid, e),
        })
    }

    /// MOUNT v3.
    async fn mount(&self, call: &Call, args: &[u8]) -> Result<Vec<u8>, accept_stat_data> {
        match call.proc_ {
            0 => Ok(pack(&Void)),
            1 => {
                let path =
                    unpack::<dirpath<'static>>(args).ok_or(accept_stat_data::GARBAGE_ARGS)?;
                let path: &[u8] = path.0.as_ref();
                let shown = String::from_utf8_lossy(path).into_owned();
                let res = match self.views.resolve_mount(&call.creds, path).await {
                    Ok(node) => {
                        tracing::info!(path = %shown, view = node.view.id, uid = call.creds.uid, "mount");
                        let fh = FileHandle {
                            store: self.store_id,
                            view: node.view.id,
                            ino: node.ino,
                        };
                        mountres3::Ok(mountres3_ok {
                            fhandle: fhandle3(Opaque::owned(fh.encode().to_vec())),
                            auth_flavors: vec![1, 0],
                        })
                    }
                    Err(e) => {
                        tracing::info!(path = %shown, error = %e, "mount refused");
                        mountres3::Err(match crate::nfs3::status(&e) {
                            nfsstat3::NFS3ERR_NOENT | nfsstat3::NFS3ERR_STALE => {
                                mountstat3::MNT3ERR_NOENT
                            }
                            nfsstat3::NFS3ERR_NOTDIR => mountstat3::MNT3ERR_NOTDIR,
                            nfsstat3::NFS3ERR_ACCES | nfsstat3::NFS3ERR_PERM => {
                                mountstat3::MNT3ERR_ACCES
                            }
                            nfsstat3::NFS3ERR_INVAL => mountstat3::MNT3ERR_INVAL,
                            nfsstat3::NFS3ERR_NAMETOOLONG => mountstat3::MNT3ERR_NAMETOOLONG,
                            _ => mountstat3::MNT3ERR_IO,
                        })
                    }
                };
                Ok(pack(&res))
            }
            // DUMP: we keep no mount list (NFSv3 is stateless).
            2 => Ok(pack(
                &List::<nfs3_types::mount::mountbody<'static, 'static>>(Vec::new()),
            )),
            3 | 4 => Ok(pack(&Void)),
            5 => {
                let list = self.views.exports().await;
                let ex: exports<'_, '_> = List(
                    list.iter()
                        .map(|p| export_node {
                            ex_dir: dirpath(Opaque::borrowed(p.as_bytes())),
                            ex_groups: List(Vec::new()),
                        })
                        .collect(),
                );
                Ok(pack(&ex))
            }
            _ => Err(accept_stat_data::PROC_UNAVAIL),
        }
    }

    /// The port query: NFS and MOUNT are on this port, over TCP.
    fn portmap(&self, call: &Call, args: &[u8]) -> Result<Vec<u8>, accept_stat_data> {
        let ours = |prog: u32| prog == NFS_PROGRAM || prog == MOUNT_PROGRAM;
        match call.proc_ {
            0 => Ok(pack(&Void)),
            3 => {
                let m = unpack::<mapping>(args).ok_or(accept_stat_data::GARBAGE_ARGS)?;
                let port = if ours(m.prog) && m.vers == 3 && m.prot == IPPROTO_TCP {
                    self.port as u32
                } else {
                    0
                };
                Ok(pack(&port))
            }
            4 => {
                let list: Vec<mapping> = [NFS_PROGRAM, MOUNT_PROGRAM]
                    .into_iter()
                    .map(|prog| mapping {
                        prog,
                        vers: 3,
                        prot: IPPROTO_TCP,
                        port: self.port as u32,
                    })
                    .collect();
                Ok(pack(&List(list)))
            }
            _ => Err(accept_stat_data::PROC_UNAVAIL),
        }
    }
}
