//! The admin service over the engine.

use std::collections::VecDeque;
use std::net::SocketAddr;

use cairn_engine::{Change, DatasetInfo, Engine, Property, SnapshotInfo};
use cairn_fs::{Attr, Creds, DirEntry, ErrorKind, FileKind, Filesystem, FsError, Timestamp};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::AUTH_HEADER;
use crate::pb;
use crate::pb::admin_server::{Admin, AdminServer};

/// Messages a copy-out or diff stream may have queued ahead of the client
/// (each at most [`COPY_CHUNK_BYTES`]): the window that bounds its memory.
pub const STREAM_WINDOW_MESSAGES: usize = 16;
/// Bytes of file data per copy-out message.
pub const COPY_CHUNK_BYTES: u32 = 1 << 20;
/// Directory entries read per page while walking a tree.
const WALK_PAGE_ENTRIES: usize = 1024;

/// The gRPC status for an engine error: the code says what to do.
pub fn status_of(e: FsError) -> Status {
    let code = match e.kind {
        ErrorKind::NotFound | ErrorKind::Stale => tonic::Code::NotFound,
        ErrorKind::Exists => tonic::Code::AlreadyExists,
        ErrorKind::Invalid | ErrorKind::NameTooLong | ErrorKind::NotDir | ErrorKind::IsDir => {
            tonic::Code::InvalidArgument
        }
        ErrorKind::Busy | ErrorKind::NotEmpty | ErrorKind::ReadOnly => {
            tonic::Code::FailedPrecondition
        }
        ErrorKind::Permission | ErrorKind::Access => tonic::Code::PermissionDenied,
        ErrorKind::NoSpace
        | ErrorKind::QuotaExceeded
        | ErrorKind::FileTooBig
        | ErrorKind::TooManyLinks => tonic::Code::ResourceExhausted,
        ErrorKind::Io | ErrorKind::Poisoned => tonic::Code::Unavailable,
        ErrorKind::Corrupt => tonic::Code::DataLoss,
        ErrorKind::BadCookie | ErrorKind::NotSync | ErrorKind::NotSupported => {
            tonic::Code::Internal
        }
    };
    Status::new(code, e.message)
}

fn unix_ms(t: Timestamp) -> i64 {
    t.sec.saturating_mul(1000) + (t.nsec / 1_000_000) as i64
}

fn dataset(d: DatasetInfo) -> pb::Dataset {
    pb::Dataset {
        id: d.id,
        name: d.name,
        uuid: d.uuid,
        created_unix_ms: unix_ms(d.created),
        origin: d.origin.unwrap_or_default(),
        read_only: d.read_only,
        is_default: d.default,
        chunk_size_bytes: d.chunk_size,
        files: d.files,
        generation: d.generation,
        snapshots: d.snapshots as u32,
        used: d.space.used(),
        referenced: d.space.referenced,
        usedbysnapshots: d.space.snapshots,
        usedbydataset: d.space.own,
        written: d.space.written,
        logicalreferenced: d.space.referenced,
        available: d.available,
        quota: d.quota,
        refquota: d.refquota,
    }
}

/// The properties `zfs get` shows that cairn reports but does not let a
/// user set.
const READ_ONLY_PROPERTIES: [&str; 7] = [
    "used",
    "referenced",
    "usedbysnapshots",
    "usedbydataset",
    "written",
    "logicalreferenced",
    "available",
];

/// Parse one `name=value` for dataset `target`: refused, naming the
/// problem, if `target` is a snapshot, the name unknown or read-only, or
/// the value malformed.
fn property(target: &str, p: &pb::Property) -> Result<Property, Status> {
    let bad = |m: String| Status::invalid_argument(m);
    if target.contains('@') {
        return Err(bad(format!(
            "{target} is a snapshot; {} is a dataset property and snapshots have none to set",
            p.name
        )));
    }
    let size = |v: &str| -> Result<Option<u64>, Status> {
        if v.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        cairn_config::parse_size(v)
            .map(Some)
            .map_err(|e| bad(format!("{}: {e}, or none", p.name)))
    };
    match p.name.as_str() {
        "quota" => Ok(Property::Quota(size(&p.value)?)),
        "refquota" => Ok(Property::Refquota(size(&p.value)?)),
        "readonly" => match p.value.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => Ok(Property::ReadOnly(true)),
            "off" | "false" | "no" => Ok(Property::ReadOnly(false)),
            v => Err(bad(format!("readonly: {v:?} is not on or off"))),
        },
        n if READ_ONLY_PROPERTIES.contains(&n) => Err(bad(format!(
            "property {n:?} is read-only: it is counted, not set"
        ))),
        n => Err(bad(format!(
            "unknown property {n:?}; settable: quota, refquota, readonly"
        ))),
    }
}

fn snapshot(s: SnapshotInfo) -> pb::Snapshot {
    pb::Snapshot {
        dataset: s.dataset,
        name: s.name,
        generation: s.generation,
        created_unix_ms: unix_ms(s.created),
        files: s.files,
        referenced_bytes: s.referenced_bytes,
        unique_bytes: s.unique_bytes,
        written_bytes: s.written_bytes,
        clones: s.clones,
        view_id: s.view_id,
    }
}

fn file_type(k: FileKind) -> pb::FileType {
    match k {
        FileKind::Regular => pb::FileType::Regular,
        FileKind::Directory => pb::FileType::Directory,
        FileKind::Symlink => pb::FileType::Symlink,
        FileKind::Fifo => pb::FileType::Fifo,
        FileKind::Socket => pb::FileType::Socket,
        FileKind::CharDevice => pb::FileType::CharDevice,
        FileKind::BlockDevice => pb::FileType::BlockDevice,
    }
}

fn required<'a>(what: &str, v: &'a str) -> Result<&'a str, Status> {
    if v.is_empty() {
        return Err(Status::invalid_argument(format!("{what} is required")));
    }
    Ok(v)
}

/// The admin service.
#[derive(Clone)]
struct Service {
    engine: Engine,
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl Admin for Service {
    async fn create_dataset(
        &self,
        r: Request<pb::CreateDatasetRequest>,
    ) -> Result<Response<pb::Dataset>, Status> {
        let r = r.into_inner();
        let opts = cairn_engine::DatasetOptions {
            chunk_size: (r.chunk_size_bytes != 0).then_some(r.chunk_size_bytes),
        };
        let d = self
            .engine
            .create_dataset(required("name", &r.name)?, opts)
            .await
            .map_err(status_of)?;
        Ok(Response::new(dataset(d)))
    }

    async fn list_datasets(
        &self,
        _: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        let list = self.engine.list_datasets().await.map_err(status_of)?;
        Ok(Response::new(pb::ListDatasetsResponse {
            datasets: list.into_iter().map(dataset).collect(),
        }))
    }

    async fn dataset_info(
        &self,
        r: Request<pb::DatasetInfoRequest>,
    ) -> Result<Response<pb::Dataset>, Status> {
        let r = r.into_inner();
        let d = self
            .engine
            .dataset_info(required("name", &r.name)?)
            .await
            .map_err(status_of)?;
        Ok(Response::new(dataset(d)))
    }

    async fn delete_dataset(
        &self,
        r: Request<pb::DeleteDatasetRequest>,
    ) -> Result<Response<pb::DeleteDatasetResponse>, Status> {
        let r = r.into_inner();
        self.engine
            .delete_dataset(required("name", &r.name)?, r.recursive)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::DeleteDatasetResponse {}))
    }

    async fn set_properties(
        &self,
        r: Request<pb::SetPropertiesRequest>,
    ) -> Result<Response<pb::Dataset>, Status> {
        let r = r.into_inner();
        let name = required("dataset", &r.dataset)?;
        if r.properties.is_empty() {
            return Err(Status::invalid_argument(
                "no property to set: give PROPERTY=VALUE",
            ));
        }
        let props = r
            .properties
            .iter()
            .map(|p| property(name, p))
            .collect::<Result<Vec<_>, Status>>()?;
        let d = self
            .engine
            .set_properties(name, &props)
            .await
            .map_err(status_of)?;
        Ok(Response::new(dataset(d)))
    }

    async fn set_default(
        &self,
        r: Request<pb::SetDefaultRequest>,
    ) -> Result<Response<pb::Dataset>, Status> {
        let r = r.into_inner();
        let name = required("name", &r.name)?;
        self.engine
            .set_default_dataset(name)
            .await
            .map_err(status_of)?;
        let d = self.engine.dataset_summary(name).await.map_err(status_of)?;
        Ok(Response::new(dataset(d)))
    }

    async fn get_default(
        &self,
        _: Request<pb::GetDefaultRequest>,
    ) -> Result<Response<pb::Dataset>, Status> {
        let name = self.engine.default_dataset().await.map_err(status_of)?;
        let d = self
            .engine
            .dataset_summary(&name)
            .await
            .map_err(status_of)?;
        Ok(Response::new(dataset(d)))
    }

    async fn create_snapshot(
        &self,
        r: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::CreateSnapshotResponse>, Status> {
        let r = r.into_inner();
        let ds = required("dataset", &r.dataset)?;
        let name = required("name", &r.name)?;
        // What is known without a walk: sizes are for `dataset info`.
        let (s, clone) = if r.writable {
            let c = self
                .engine
                .writable_snapshot(ds, name, name)
                .await
                .map_err(status_of)?;
            let s = self
                .engine
                .snapshot_summary(&format!("{ds}@{name}"))
                .await
                .map_err(status_of)?;
            (s, Some(c))
        } else {
            let s = self
                .engine
                .create_snapshot(ds, name)
                .await
                .map_err(status_of)?;
            (s, None)
        };
        Ok(Response::new(pb::CreateSnapshotResponse {
            snapshot: Some(snapshot(s)),
            clone: clone.map(dataset),
        }))
    }

    async fn list_snapshots(
        &self,
        r: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let r = r.into_inner();
        let ds = (!r.dataset.is_empty()).then_some(r.dataset.as_str());
        let list = self.engine.list_snapshots(ds).await.map_err(status_of)?;
        Ok(Response::new(pb::ListSnapshotsResponse {
            snapshots: list.into_iter().map(snapshot).collect(),
        }))
    }

    async fn snapshot_info(
        &self,
        r: Request<pb::SnapshotInfoRequest>,
    ) -> Result<Response<pb::Snapshot>, Status> {
        let r = r.into_inner();
        let s = self
            .engine
            .snapshot_info(required("snapshot", &r.snapshot)?)
            .await
            .map_err(status_of)?;
        Ok(Response::new(snapshot(s)))
    }

    async fn delete_snapshot(
        &self,
        r: Request<pb::DeleteSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        let r = r.into_inner();
        self.engine
            .delete_snapshot(required("snapshot", &r.snapshot)?)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::DeleteSnapshotResponse {}))
    }

    async fn clone(&self, r: Request<pb::CloneRequest>) -> Result<Response<pb::Dataset>, Status> {
        let r = r.into_inner();
        let d = self
            .engine
            .clone_snapshot(
                required("snapshot", &r.snapshot)?,
                required("name", &r.name)?,
            )
            .await
            .map_err(status_of)?;
        Ok(Response::new(dataset(d)))
    }

    async fn promote(
        &self,
        r: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::Dataset>, Status> {
        let r = r.into_inner();
        let d = self
            .engine
            .promote(required("name", &r.name)?)
            .await
            .map_err(status_of)?;
        Ok(Response::new(dataset(d)))
    }

    async fn rollback(
        &self,
        r: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackResponse>, Status> {
        let r = r.into_inner();
        let rep = self
            .engine
            .rollback(required("snapshot", &r.snapshot)?, r.destroy_newer)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::RollbackResponse {
            discarded: rep.discarded,
            restored: rep.restored,
        }))
    }

    async fn restore(
        &self,
        r: Request<pb::RestoreRequest>,
    ) -> Result<Response<pb::RestoreResponse>, Status> {
        let r = r.into_inner();
        let target = (!r.target.is_empty()).then_some(r.target.as_str());
        let rep = self
            .engine
            .restore(
                required("snapshot", &r.snapshot)?,
                required("source", &r.source)?,
                target,
            )
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::RestoreResponse {
            inodes: rep.inodes,
            extents: rep.extents,
            bytes: rep.bytes,
        }))
    }

    type ReadSnapshotFileStream = Stream<pb::ReadSnapshotFileResponse>;

    async fn read_snapshot_file(
        &self,
        r: Request<pb::ReadSnapshotFileRequest>,
    ) -> Result<Response<Self::ReadSnapshotFileStream>, Status> {
        let r = r.into_inner();
        let fs = self
            .engine
            .snapshot(required("snapshot", &r.snapshot)?)
            .await
            .map_err(status_of)?;
        let root = Creds::root();
        let mut ino = fs.info().root;
        for c in r.path.split('/').filter(|c| !c.is_empty()) {
            if c == "." || c == ".." {
                return Err(Status::invalid_argument(format!(
                    "path {:?}: '.' and '..' are not allowed",
                    r.path
                )));
            }
            ino = fs
                .lookup(&root, ino, c.as_bytes())
                .await
                .map_err(|e| match e.kind {
                    ErrorKind::NotFound => Status::not_found(format!(
                        "{:?} does not exist in snapshot {}",
                        r.path, r.snapshot
                    )),
                    _ => status_of(e),
                })?
                .ino;
        }
        // First pass: the total, for the client's progress bar.
        let mut total = 0u64;
        let mut walk = Walker::new(&fs, ino).await.map_err(status_of)?;
        while let Some((_, a)) = walk.next().await.map_err(status_of)? {
            if a.kind == FileKind::Regular {
                total += a.size;
            }
        }
        let (tx, rx) = mpsc::channel(STREAM_WINDOW_MESSAGES);
        tokio::spawn(async move {
            if let Err(e) = copy_out(&fs, ino, total, &tx).await {
                let _ = tx.send(Err(status_of(e))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type DiffStream = Stream<pb::DiffEntry>;

    async fn diff(
        &self,
        r: Request<pb::DiffRequest>,
    ) -> Result<Response<Self::DiffStream>, Status> {
        let r = r.into_inner();
        let to = (!r.to.is_empty()).then_some(r.to.as_str());
        let entries = self
            .engine
            .diff(required("from", &r.from)?, to)
            .await
            .map_err(status_of)?;
        let (tx, rx) = mpsc::channel(STREAM_WINDOW_MESSAGES);
        tokio::spawn(async move {
            for e in entries {
                let m = pb::DiffEntry {
                    change: match e.change {
                        Change::Added => pb::ChangeType::Added,
                        Change::Removed => pb::ChangeType::Removed,
                        Change::Modified => pb::ChangeType::Modified,
                        Change::Renamed => pb::ChangeType::Renamed,
                    } as i32,
                    path: e.path,
                    from: e.from.unwrap_or_default(),
                    r#type: file_type(e.kind) as i32,
                };
                if tx.send(Ok(m)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn stats(
        &self,
        _: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let s = self.engine.store_stats().await.map_err(status_of)?;
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        Ok(Response::new(pb::StatsResponse {
            store: self.engine.url().to_string(),
            chunks: s.chunks,
            stored_bytes: s.stored_bytes,
            unique_plain_bytes: s.plain_bytes,
            referenced_bytes: s.referenced_bytes,
            dedup_ratio: ratio(s.referenced_bytes, s.plain_bytes),
            compression_ratio: ratio(s.plain_bytes, s.stored_bytes),
            datasets: s
                .datasets
                .into_iter()
                .map(|d| pb::DatasetStats {
                    name: d.name,
                    files: d.files,
                    referenced: d.space.referenced,
                    used: d.space.used(),
                    snapshots: d.snapshots as u32,
                })
                .collect(),
            requests: Some(pb::ObjectStoreRequests {
                put: s.requests.put,
                get: s.requests.get,
                list: s.requests.list,
                delete: s.requests.delete,
                copy: s.requests.copy,
                put_bytes: s.requests.put_bytes,
            }),
        }))
    }

    async fn fsck(
        &self,
        _: Request<pb::FsckRequest>,
    ) -> Result<Response<pb::FsckResponse>, Status> {
        let r = self.engine.fsck().await.map_err(status_of)?;
        Ok(Response::new(pb::FsckResponse {
            clean: r.is_clean(),
            inodes: r.inodes,
            dirents: r.dirents,
            extents: r.extents,
            maps: r.maps,
            chunks: r.chunks,
            problems: r
                .problems
                .into_iter()
                .map(|p| pb::FsckProblem {
                    class: p.class.to_string(),
                    detail: p.detail,
                })
                .collect(),
        }))
    }

    async fn gc(&self, _: Request<pb::GcRequest>) -> Result<Response<pb::GcResponse>, Status> {
        let r = self.engine.gc().await.map_err(status_of)?;
        Ok(Response::new(pb::GcResponse {
            chunks: r.chunks,
            swept: r.swept,
            freed_bytes: r.freed_bytes,
            fixed_refcounts: r.fixed_refcounts,
            swept_maps: r.swept_maps,
            packs_rewritten: r.packs_rewritten,
            packs_deleted: r.packs_deleted,
            pack_bytes_reclaimed: r.pack_bytes_reclaimed,
            chunks_moved: r.chunks_moved,
            fixed_pack_counts: r.fixed_pack_counts,
        }))
    }

    type ScrubStream = Stream<pb::ScrubEvent>;

    async fn scrub(
        &self,
        _: Request<pb::ScrubRequest>,
    ) -> Result<Response<Self::ScrubStream>, Status> {
        use pb::scrub_event::Item;
        let (tx, rx) = mpsc::channel(STREAM_WINDOW_MESSAGES);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let progress = tx.clone();
            let r = engine
                .scrub(move |p| {
                    // Progress may be dropped when the client reads slowly.
                    let _ = progress.try_send(Ok(pb::ScrubEvent {
                        item: Some(Item::Progress(pb::ScrubProgress {
                            chunks: p.chunks,
                            bytes: p.bytes,
                            total_chunks: p.total_chunks,
                            damaged: p.damaged,
                        })),
                    }));
                })
                .await;
            let m = r.map_err(status_of).map(|r| pb::ScrubEvent {
                item: Some(Item::Report(pb::ScrubReport {
                    chunks: r.chunks,
                    bytes: r.bytes,
                    damaged: r
                        .damaged
                        .into_iter()
                        .map(|d| pb::ScrubDamaged {
                            hash: d.hash,
                            error: d.error,
                            files: d.files,
                        })
                        .collect(),
                })),
            });
            let _ = tx.send(m).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Depth-first walk of a tree, parents before children, holding one page
/// of entries per directory level.
struct Walker<'a, F: Filesystem> {
    fs: &'a F,
    first: Option<(Vec<u8>, Attr)>,
    stack: Vec<Frame>,
}

struct Frame {
    ino: u64,
    path: Vec<u8>,
    pending: VecDeque<DirEntry>,
    cookie: u64,
    verifier: u64,
    eof: bool,
}

impl<'a, F: Filesystem> Walker<'a, F> {
    async fn new(fs: &'a F, ino: u64) -> Result<Self, FsError> {
        let a = fs.getattr(ino).await?;
        Ok(Self {
            fs,
            first: Some((Vec::new(), a)),
            stack: Vec::new(),
        })
    }

    fn enter(&mut self, ino: u64, path: Vec<u8>) {
        self.stack.push(Frame {
            ino,
            path,
            pending: VecDeque::new(),
            cookie: 0,
            verifier: 0,
            eof: false,
        });
    }

    async fn next(&mut self) -> Result<Option<(Vec<u8>, Attr)>, FsError> {
        if let Some((p, a)) = self.first.take() {
            if a.kind == FileKind::Directory {
                self.enter(a.ino, p.clone());
            }
            return Ok(Some((p, a)));
        }
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(None);
            };
            if let Some(e) = top.pending.pop_front() {
                let mut path = top.path.clone();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(&e.name);
                let a = self.fs.getattr(e.ino).await?;
                if a.kind == FileKind::Directory {
                    self.enter(a.ino, path.clone());
                }
                return Ok(Some((path, a)));
            }
            if top.eof {
                self.stack.pop();
                continue;
            }
            let page = self
                .fs
                .readdir(
                    &Creds::root(),
                    top.ino,
                    top.cookie,
                    top.verifier,
                    WALK_PAGE_ENTRIES,
                )
                .await?;
            if let Some(last) = page.entries.last() {
                top.cookie = last.cookie;
            }
            top.verifier = page.verifier;
            top.eof = page.eof;
            top.pending = page.entries.into();
        }
    }
}

/// Stream the tree at `ino`: each entry, then a regular file's data.
async fn copy_out<F: Filesystem>(
    fs: &F,
    ino: u64,
    total: u64,
    tx: &mpsc::Sender<Result<pb::ReadSnapshotFileResponse, Status>>,
) -> Result<(), FsError> {
    use pb::read_snapshot_file_response::Item;
    let root = Creds::root();
    let gone = || FsError::new(ErrorKind::Io, "client went away");
    let mut walk = Walker::new(fs, ino).await?;
    let mut first = true;
    while let Some((path, a)) = walk.next().await? {
        let target = if a.kind == FileKind::Symlink {
            fs.readlink(a.ino).await?.to_vec()
        } else {
            Vec::new()
        };
        let entry = pb::TreeEntry {
            path,
            r#type: file_type(a.kind) as i32,
            mode: a.mode as u32,
            size: a.size,
            mtime_unix_ms: unix_ms(a.mtime),
            target,
            total_bytes: if first { total } else { 0 },
        };
        first = false;
        let msg = pb::ReadSnapshotFileResponse {
            item: Some(Item::Entry(entry)),
        };
        tx.send(Ok(msg)).await.map_err(|_| gone())?;
        if a.kind != FileKind::Regular {
            continue;
        }
        // Data runs as data, holes as their length: a sparse file streams
        // (and lands) sparse.
        let mut off = 0u64;
        while off < a.size {
            let (start, end) = match fs.next_data(&root, a.ino, off).await? {
                Some(r) => (r.start, r.end),
                None => (a.size, a.size),
            };
            if start > off {
                let msg = pb::ReadSnapshotFileResponse {
                    item: Some(Item::Hole(start - off)),
                };
                tx.send(Ok(msg)).await.map_err(|_| gone())?;
                off = start;
            }
            while off < end {
                let want = (end - off).min(COPY_CHUNK_BYTES as u64) as u32;
                let (data, _) = fs.read(&root, a.ino, off, want).await?;
                if data.is_empty() {
                    // Shrunk meanwhile (a live view): what is left is gone.
                    off = a.size;
                    break;
                }
                off += data.len() as u64;
                let msg = pb::ReadSnapshotFileResponse {
                    item: Some(Item::Data(data.to_vec())),
                };
                tx.send(Ok(msg)).await.map_err(|_| gone())?;
            }
        }
    }
    Ok(())
}

/// The admin API server, bound and ready to serve.
pub struct RpcServer {
    listener: TcpListener,
    engine: Engine,
    token: Option<String>,
}

impl RpcServer {
    /// Bind `addr` (port 0 picks a free port). With `token`, every call must
    /// carry `authorization: Bearer <token>`.
    pub async fn bind(
        engine: Engine,
        addr: SocketAddr,
        token: Option<String>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            engine,
            token,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` is cancelled, then finish calls in flight.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), tonic::transport::Error> {
        let expected = self.token.map(|t| format!("Bearer {t}"));
        let check = move |req: Request<()>| -> Result<Request<()>, Status> {
            let Some(want) = &expected else {
                return Ok(req);
            };
            let got = req
                .metadata()
                .get(AUTH_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if constant_time_eq(got.as_bytes(), want.as_bytes()) {
                Ok(req)
            } else if got.is_empty() {
                Err(Status::unauthenticated(
                    "this server requires a token: pass --token, set CAIRN_TOKEN, or [rpc] token in the config",
                ))
            } else {
                Err(Status::unauthenticated("the token is wrong"))
            }
        };
        let svc = AdminServer::with_interceptor(
            Service {
                engine: self.engine,
            },
            check,
        );
        // Replies are small and the client waits for each: without
        // TCP_NODELAY, Nagle holds a reply's last segment until the
        // client's delayed ACK (about 40 ms per call).
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
    }
}

/// Why the admin API stopped serving on its own thread.
#[derive(Debug, thiserror::Error)]
pub enum ThreadServeError {
    /// The thread or its runtime could not be started.
    #[error("cannot start the admin API thread: {0}")]
    Start(#[source] std::io::Error),
    /// The server failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    /// The thread ended without saying how (it panicked).
    #[error("the admin API thread ended unexpectedly")]
    Lost,
}

impl RpcServer {
    /// Serve on a thread of its own with its own runtime, until `shutdown`
    /// is cancelled (and cancel it if serving fails). A process that also
    /// serves NFS keeps admin work (gc, fsck, walks, snapshot deletes) off
    /// the thread that answers NFS calls, so both cores work and NFS calls
    /// do not queue behind an admin call's CPU time. The engine is shared:
    /// its writer lock orders mutations from both threads. Resolves when
    /// the thread has stopped.
    pub fn serve_on_thread(
        self,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = Result<(), ThreadServeError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The listener moves between runtimes as a std socket.
        let started = self.listener.into_std().and_then(|std_listener| {
            let (engine, token) = (self.engine, self.token);
            let stop = shutdown.clone();
            std::thread::Builder::new()
                .name("cairn-admin".into())
                .spawn(move || {
                    let serve_stop = stop.clone();
                    let r = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(ThreadServeError::Start)
                        .and_then(|rt| {
                            rt.block_on(async move {
                                let listener = TcpListener::from_std(std_listener)
                                    .map_err(ThreadServeError::Start)?;
                                let server = RpcServer {
                                    listener,
                                    engine,
                                    token,
                                };
                                Ok(server.serve(serve_stop).await?)
                            })
                        });
                    stop.cancel();
                    let _ = tx.send(r);
                })
        });
        async move {
            if let Err(e) = started {
                shutdown.cancel();
                return Err(ThreadServeError::Start(e));
            }
            rx.await.unwrap_or(Err(ThreadServeError::Lost))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
