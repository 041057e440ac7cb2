//! The cairn engine: composes the key-value layer, the chunk store and the
//! versioned record store into [`Filesystem`] views of datasets.
//!
//! Owns: opening and initialising a store, inode allocation (a store-wide
//! counter, never reused), permission checks against caller credentials, the
//! single ordered writer (every mutation holds one lock and commits one
//! atomic batch), file data layout (inline small files, fixed-size
//! content-addressed chunks, holes), and `fsck`.
//!
//! Must never know: NFS or protobuf types (protocol crates translate), the
//! byte layout of keys (the codec owns it), SlateDB (the kv crate owns it).

mod admin;
mod fs;
mod fsck;
mod ops;
mod perm;
mod promote;
mod readahead;
mod repack;
mod restore;
mod scrub;
mod space;

use std::collections::HashSet;
use std::sync::Arc;

use cairn_codec::{
    FileKind, HeadKey, InodeRecord, Key, Timestamp, Versioned, decode_u64, encode_u64,
};
use cairn_fs::{ErrorKind, FsError};
use cairn_kv::{Kv, KvError, KvErrorKind};
use cairn_registry::{Registry, RegistryError};

pub use admin::{
    DatasetInfo, DatasetOptions, GcReport, Property, SnapshotInfo, StoreStats, ViewInfo,
};
pub use cairn_fs as api;
pub use cairn_kv::{FaultPlan, Faults, KvOptions, RequestCounts};
pub use cairn_registry::Space;
pub use cairn_registry::{MAX_VIEW_ID, ROOT_DATASET, SnapshotSpec};
pub use cairn_snapshot::{Change, DiffEntry, RollbackReport};
pub use fs::DatasetFs;
pub use fsck::{FsckReport, Problem};
pub use repack::{
    BackgroundRepack, DEFAULT_REPACK_INTERVAL, DEFAULT_REPACK_RATE, REPACK_LIVE_FRACTION,
    RepackReport,
};
pub use restore::RestoreReport;
pub use scrub::{DamagedChunk, ScrubProgress, ScrubReport};

/// Files up to this many bytes are stored inline in their inode record.
pub const INLINE_MAX: usize = 4096;
/// Default chunk size (64 KiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// The allocation a directory or symlink reports (`Attr::used`), as a local
/// filesystem reports one block for either.
pub const META_ALLOCATION: u64 = 4096;

/// The on-disk format version this build writes and reads.
pub const FORMAT_VERSION: u64 = 5;
/// The root directory's inode number in every dataset.
pub const ROOT_INO: u64 = 1;
/// Largest inode number a store hands out (2^40 - 2): protocol front ends
/// pack a view id and an inode number into one 64-bit file id, and keep
/// 2^40 - 1 for a virtual directory of their own.
pub const MAX_INO: u64 = (1 << 40) - 2;
/// Capacity reported by fsstat for object stores, which have no fixed
/// size: 1 PiB. A local store reports its filesystem's size and free space
/// less the reserve ([`cairn_kv::DEFAULT_RESERVE_BYTES`]).
pub const REPORTED_CAPACITY_BYTES: u64 = 1 << 50;
/// Inode capacity reported by fsstat.
pub const REPORTED_CAPACITY_FILES: u64 = 1 << 40;

const META_FORMAT: &[u8] = b"format";
const META_CHUNK_SIZE: &[u8] = b"chunk_size";
const META_NEXT_INO: &[u8] = b"next_ino";
const META_STORE_ID: &[u8] = b"store_id";
/// The id after the newest pack whose seal reached the database: packs at
/// or above it found at open were sealed but never committed (orphans).
const META_NEXT_PACK: &[u8] = b"next_pack";

/// Options for opening a store.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Chunk size for a new store (ignored when opening an existing one).
    pub chunk_size: u32,
    /// Whether new chunks are LZ4-compressed where that saves space.
    pub compress: bool,
    /// Key-value options (object store credentials, wrappers).
    pub kv: KvOptions,
    /// Size at which the open pack is sealed; `None`: 32 MiB for a local
    /// store, 64 MiB for a remote one (fewer PUTs).
    pub pack_bytes: Option<usize>,
    /// Bytes of pack blocks cached for a remote store (the page cache
    /// serves local ones).
    pub pack_cache_bytes: u64,
    /// The background repacker (`None`: off; space comes back only with
    /// `gc` or `repack`).
    pub background_repack: Option<BackgroundRepack>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            compress: true,
            kv: KvOptions::default(),
            pack_bytes: None,
            pack_cache_bytes: cairn_cas::DEFAULT_CACHE_BYTES,
            background_repack: None,
        }
    }
}

/// State only the writer touches, behind the writer lock.
pub(crate) struct WriterState {
    pub(crate) next_ino: u64,
    pub(crate) reg: Registry,
}

/// A view that readers may use: a dataset head (`None`) or a snapshot.
pub(crate) type ViewId = (u64, Option<u64>);

pub(crate) struct Inner {
    pub(crate) kv: Kv,
    /// The open pack new chunks are appended to, and the pack store.
    pub(crate) packs: Arc<cairn_cas::Packer>,
    pub(crate) chunk_size: u32,
    pub(crate) compress: bool,
    pub(crate) store_id: u64,
    pub(crate) writer: tokio::sync::Mutex<WriterState>,
    /// Views that exist, published by the writer after registry changes so
    /// lock-free readers can answer `Stale` for deleted ones.
    pub(crate) live: std::sync::RwLock<HashSet<ViewId>>,
    /// Files being read sequentially, and the ranges fetched ahead for them.
    pub(crate) ahead: readahead::ReadAhead,
    /// Repack passes (gc's and the background task's), one at a time.
    pub(crate) repack: Arc<repack::Repacker>,
    /// The registry as of its last commit, for readers that must not wait
    /// for the writer lock (NFS handle lookups, MOUNT, listings). Its
    /// datasets' counters (`files`) are as of that commit; read the record
    /// from the store for current ones.
    pub(crate) registry: std::sync::RwLock<Arc<Registry>>,
}

impl Inner {
    pub(crate) fn is_live(&self, v: ViewId) -> bool {
        self.live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&v)
    }

    /// The registry as of its last commit.
    pub(crate) fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Publish a committed registry to lock-free readers: the registry
    /// itself and the set of live views.
    pub(crate) fn publish(&self, reg: &Registry) {
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(reg.clone());
        let mut set: HashSet<ViewId> = reg.datasets().map(|d| (d.id, None)).collect();
        for d in reg.datasets() {
            for s in reg.snapshots_of(d.id) {
                set.insert((d.id, Some(s.generation)));
            }
        }
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = set;
    }
}

/// An open cairn store.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Open the store at `url`, initialising it if it is empty.
    pub async fn open(url: &str, options: EngineOptions) -> Result<Self, FsError> {
        if !options.chunk_size.is_power_of_two() || !(4096..=1 << 20).contains(&options.chunk_size)
        {
            return Err(FsError::new(
                ErrorKind::Invalid,
                format!(
                    "chunk size {} must be a power of two between 4 KiB and 1 MiB",
                    options.chunk_size
                ),
            ));
        }
        let kv = Kv::open(url, options.kv.clone()).await.map_err(kv_err)?;
        let meta = |name: &[u8]| Key::Meta(name.to_vec()).encode();
        let read_u64 = async |kv: &Kv, name: &[u8]| -> Result<Option<u64>, FsError> {
            match kv.get(&meta(name)).await.map_err(kv_err)? {
                Some(b) => decode_u64(&b).map(Some).map_err(|e| {
                    FsError::new(
                        ErrorKind::Corrupt,
                        format!("store record {:?}: {e}", String::from_utf8_lossy(name)),
                    )
                }),
                None => Ok(None),
            }
        };
        let format = read_u64(&kv, META_FORMAT).await?;
        if format.is_none() {
            init_store(&kv, options.chunk_size).await?;
        } else if format != Some(FORMAT_VERSION) {
            let why = match format {
                Some(v) if v < FORMAT_VERSION => format!(
                    "store {} has format version {v}, written by an older cairn that kept \
                     chunk bytes inside the database; this build reads version \
                     {FORMAT_VERSION} (chunks in pack objects) and does not convert stores: \
                     copy the files out with the older build and into a new store",
                    kv.url()
                ),
                v => format!(
                    "store {} has format version {v:?}; this build reads version \
                     {FORMAT_VERSION}: use a newer cairn",
                    kv.url()
                ),
            };
            return Err(FsError::new(ErrorKind::Invalid, why));
        }
        let missing = |what: &str| {
            FsError::new(
                ErrorKind::Corrupt,
                format!("store record {what} is missing"),
            )
        };
        let chunk_size = read_u64(&kv, META_CHUNK_SIZE)
            .await?
            .ok_or_else(|| missing("chunk_size"))?;
        let next_ino = read_u64(&kv, META_NEXT_INO)
            .await?
            .ok_or_else(|| missing("next_ino"))?;
        let store_id = read_u64(&kv, META_STORE_ID)
            .await?
            .ok_or_else(|| missing("store_id"))?;
        let next_pack = read_u64(&kv, META_NEXT_PACK).await?.unwrap_or(1);
        let cache = if kv.is_remote() {
            options.pack_cache_bytes
        } else {
            0
        };
        let store = cairn_cas::PackStore::new(kv.object_store(), kv.pack_root().clone(), cache);
        remove_orphans(&store, next_pack).await?;
        let pack_bytes = options.pack_bytes.unwrap_or(if kv.is_remote() {
            cairn_cas::DEFAULT_REMOTE_PACK_BYTES
        } else {
            cairn_cas::DEFAULT_PACK_BYTES
        });
        let packs = Arc::new(cairn_cas::Packer::new(store, pack_bytes, next_pack));
        install_cutter(&kv, packs.clone());
        let reg = Registry::load(&kv).await.map_err(reg_err)?;
        if reg.dataset(reg.default_id()).is_none() {
            return Err(FsError::new(
                ErrorKind::Corrupt,
                "the default dataset record is missing",
            ));
        }
        tracing::info!(store = kv.url(), chunk_size, next_ino, "store opened");
        let engine = Self {
            inner: Arc::new(Inner {
                kv,
                packs,
                chunk_size: chunk_size as u32,
                compress: options.compress,
                store_id,
                registry: std::sync::RwLock::new(Arc::new(reg.clone())),
                writer: tokio::sync::Mutex::new(WriterState { next_ino, reg }),
                live: Default::default(),
                ahead: Default::default(),
                repack: Default::default(),
            }),
        };
        engine.resume().await?;
        if let Some(cfg) = options.background_repack {
            engine.inner.repack.start(&engine.inner, cfg);
        }
        Ok(engine)
    }

    /// The live, writable view of the default dataset (`root` in a new
    /// store).
    pub async fn root_dataset(&self) -> DatasetFs {
        let w = self.inner.writer.lock().await;
        let id = w.reg.default_id();
        self.fs_for(&w.reg, id, None).unwrap_or_else(|_| {
            DatasetFs::new(
                self.inner.clone(),
                cairn_meta::View::head(id),
                self.inner.chunk_size,
            )
        })
    }

    /// The store's location, safe to print.
    pub fn url(&self) -> &str {
        self.inner.kv.url()
    }

    /// Chunk size in bytes.
    pub fn chunk_size(&self) -> u32 {
        self.inner.chunk_size
    }

    /// The store's identity: a random number fixed when the store was made.
    /// Protocol front ends put it in file handles so handles from another
    /// store are refused as stale.
    pub fn store_id(&self) -> u64 {
        self.inner.store_id
    }

    /// Store-wide chunk statistics (distinct chunks, stored and plain bytes).
    pub async fn chunk_stats(&self) -> Result<cairn_cas::ChunkStats, FsError> {
        cairn_cas::stats(&self.inner.kv).await.map_err(cas_err)
    }

    /// Check every invariant of the store; see [`FsckReport`].
    pub async fn fsck(&self) -> Result<FsckReport, FsError> {
        let w = self.inner.writer.lock().await;
        fsck::run(&self.inner, &w.reg).await
    }

    /// Make every completed mutation durable.
    pub async fn flush(&self) -> Result<(), FsError> {
        self.inner.kv.flush().await.map_err(kv_err)
    }

    /// Flush and close the store.
    pub async fn close(&self) -> Result<(), FsError> {
        self.inner.repack.shutdown().await;
        let _w = self.inner.writer.lock().await;
        self.inner.kv.close().await.map_err(kv_err)
    }

    /// Object store requests made since the store was opened.
    pub fn requests(&self) -> RequestCounts {
        self.inner.kv.requests()
    }

    /// Raw key-value access for tests that plant corruption.
    #[doc(hidden)]
    pub fn kv_for_tests(&self) -> &Kv {
        &self.inner.kv
    }
}

/// Delete packs at or above `next_pack`: sealed and stored, but the batch
/// recording their seal never committed, so nothing names them. Lists only
/// those names, not every pack.
async fn remove_orphans(store: &cairn_cas::PackStore, next_pack: u64) -> Result<(), FsError> {
    let orphans = store.list_from(next_pack).await.map_err(pack_err)?;
    for (id, size) in orphans {
        tracing::warn!(
            pack = id,
            size,
            "deleting a pack sealed but never committed"
        );
        store.delete(id).await.map_err(pack_err)?;
    }
    Ok(())
}

/// At every cut of the database's open layer, seal the open pack: the
/// layer then carries the hook that stores it (one PUT) before SlateDB
/// gets the layer, and the record that it was sealed (ordering rule 1).
fn install_cutter(kv: &Kv, packs: Arc<cairn_cas::Packer>) {
    kv.set_cutter(Arc::new(move || {
        let sealed = packs.seal()?;
        let up = packs.clone();
        let id = sealed.id;
        let hook: cairn_kv::Hook = Arc::new(move || {
            let up = up.clone();
            Box::pin(async move {
                up.upload(id).await.map_err(|e| {
                    KvError::new(KvErrorKind::Unavailable, format!("storing pack {id}: {e}"))
                })?;
                // Crash after a seal's PUT, before its layer commits.
                #[cfg(feature = "failpoints")]
                if fail::eval("pack.after_put", |_| ()).is_some() {
                    return Err(KvError::new(
                        KvErrorKind::Poisoned,
                        format!("crash point pack.after_put reached (pack {id} stored)"),
                    ));
                }
                Ok(())
            })
        });
        tracing::debug!(
            pack = id,
            size = sealed.size,
            frames = sealed.frames,
            "sealed pack"
        );
        Some(cairn_kv::Cut {
            hook,
            puts: vec![(
                Key::Meta(META_NEXT_PACK.to_vec()).encode(),
                bytes::Bytes::from(encode_u64(id + 1)),
            )],
        })
    }));
}

pub(crate) fn pack_err(e: cairn_cas::PackError) -> FsError {
    cas_err(e.into())
}

async fn init_store(kv: &Kv, chunk_size: u32) -> Result<(), FsError> {
    let mut t = kv.txn();
    let meta = |name: &[u8]| Key::Meta(name.to_vec()).encode();
    let seed = format!(
        "{:?}{}{:?}",
        std::time::SystemTime::now(),
        std::process::id(),
        kv.url()
    );
    let id_hash = blake3::hash(seed.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&id_hash.as_bytes()[..8]);
    t.put(meta(META_FORMAT), encode_u64(FORMAT_VERSION));
    t.put(meta(META_CHUNK_SIZE), encode_u64(chunk_size as u64));
    t.put(meta(META_NEXT_INO), encode_u64(ROOT_INO + 1));
    t.put(meta(META_STORE_ID), encode_u64(u64::from_be_bytes(id) | 1));
    let mut reg = Registry::default();
    let tree = reg.alloc_tree(&mut t).map_err(reg_err)?;
    let ds = Registry::new_dataset(tree, ROOT_DATASET, chunk_size, None, 1);
    let generation = ds.generation;
    reg.put_dataset(&mut t, ds);
    reg.set_default(&mut t, tree);
    put_root_dir(&mut t, tree, generation);
    t.commit().await.map_err(kv_err)?;
    kv.flush().await.map_err(kv_err)?;
    tracing::info!(store = kv.url(), chunk_size, "initialised a new store");
    Ok(())
}

/// Stage the root directory of a new, empty tree.
pub(crate) fn put_root_dir(t: &mut cairn_kv::Txn<'_>, tree: u64, generation: u64) {
    let now = Timestamp::now();
    let root = InodeRecord {
        kind: FileKind::Directory,
        mode: 0o755,
        uid: 0,
        gid: 0,
        nlink: 2,
        size: 0,
        atime: now,
        mtime: now,
        ctime: now,
        rdev: (0, 0),
        parent: ROOT_INO,
        create_verifier: None,
        inline: None,
        allocated: Some(0),
    };
    t.put(
        HeadKey::Inode {
            tree,
            ino: ROOT_INO,
        }
        .encode(),
        Versioned::new(generation, root).encode(),
    );
}

/// A crash-critical step. Built with the `failpoints` feature, a test arms
/// the point with `fail::cfg(name, "return")`; reaching it then makes
/// durable everything committed so far and halts the store (no later write
/// of the operation, nor any cleanup, reaches it), as if the process was
/// killed right there. The test then drops the engine and reopens the store.
/// Without the feature it costs nothing.
pub(crate) async fn crash_point(kv: &Kv, name: &str) -> Result<(), FsError> {
    #[cfg(feature = "failpoints")]
    if fail::eval(name, |_| ()).is_some() {
        let _ = kv.flush().await;
        kv.halt(&format!("crash point {name}"));
        return Err(FsError::new(
            ErrorKind::Io,
            format!("crash point {name} reached"),
        ));
    }
    let _ = (kv, name);
    Ok(())
}

/// Dead-list entries freed per snapshot-destroy batch (a test may lower it
/// through the `snapshot_delete.batch` fail point).
pub(crate) fn destroy_batch() -> usize {
    #[cfg(feature = "failpoints")]
    if let Some(Some(n)) = fail::eval("snapshot_delete.batch", |arg| {
        arg.and_then(|a| a.parse::<usize>().ok())
    }) {
        return n;
    }
    admin::DESTROY_BATCH
}

pub(crate) fn kv_err(e: KvError) -> FsError {
    let kind = match e.kind {
        KvErrorKind::Corrupt => ErrorKind::Corrupt,
        KvErrorKind::Poisoned => ErrorKind::Poisoned,
        KvErrorKind::Invalid => ErrorKind::Invalid,
        KvErrorKind::Locked => ErrorKind::Busy,
        KvErrorKind::NoSpace => ErrorKind::NoSpace,
        KvErrorKind::Unavailable
        | KvErrorKind::Fenced
        | KvErrorKind::Closed
        | KvErrorKind::Internal => ErrorKind::Io,
    };
    let msg = match e.kind {
        KvErrorKind::Fenced => format!(
            "another cairn process opened this store and fenced this one: {}",
            e.message
        ),
        _ => e.message,
    };
    FsError::new(kind, msg)
}

pub(crate) fn cas_err(e: cairn_cas::CasError) -> FsError {
    match e {
        cairn_cas::CasError::Kv(e) => kv_err(e),
        e @ (cairn_cas::CasError::Corrupt { .. } | cairn_cas::CasError::Missing { .. }) => {
            FsError::new(ErrorKind::Corrupt, e.to_string())
        }
        e @ cairn_cas::CasError::Unavailable(_) => FsError::new(ErrorKind::Io, e.to_string()),
    }
}

pub(crate) fn meta_err(e: cairn_meta::MetaError) -> FsError {
    match e {
        cairn_meta::MetaError::Kv(e) => kv_err(e),
        e @ cairn_meta::MetaError::Corrupt { .. } => {
            FsError::new(ErrorKind::Corrupt, e.to_string())
        }
    }
}

pub(crate) fn reg_err(e: RegistryError) -> FsError {
    let kind = match e {
        RegistryError::NotFound(m) => (ErrorKind::NotFound, m),
        RegistryError::Exists(m) => (ErrorKind::Exists, m),
        RegistryError::Invalid(m) | RegistryError::Ambiguous(m) => (ErrorKind::Invalid, m),
        RegistryError::Busy(m) => (ErrorKind::Busy, m),
        RegistryError::Corrupt(m) => (ErrorKind::Corrupt, format!("corrupt registry: {m}")),
        RegistryError::Kv(e) => return kv_err(e),
    };
    FsError::new(kind.0, kind.1)
}

pub(crate) fn snap_err(e: cairn_snapshot::SnapshotError) -> FsError {
    use cairn_snapshot::SnapshotError as S;
    match e {
        S::Registry(e) => reg_err(e),
        S::Corrupt(m) => FsError::new(ErrorKind::Corrupt, m),
        S::Meta(e) => meta_err(e),
        S::Cas(e) => cas_err(e),
        S::Kv(e) => kv_err(e),
    }
}

pub(crate) fn meta_key(name: &[u8]) -> Vec<u8> {
    Key::Meta(name.to_vec()).encode()
}

pub(crate) use META_NEXT_INO as NEXT_INO_KEY;
