//! The key-value layer: one SlateDB database on an `object_store` backend.
//!
//! Owns: opening a store from a URL (`file:///dir`, a plain directory path,
//! `memory://`, `s3://bucket/prefix` and the other schemes `object_store`
//! parses), the transaction overlay that turns one filesystem operation into
//! one atomic change, the in-memory layers that gather committed changes and
//! write each cut to SlateDB as one `WriteBatch`, in order, after the cut's
//! hook made what it names durable (`layers.rs`), merged streaming range
//! scans over layers and SlateDB (which reopen themselves before the files
//! they read can be collected), additions to counters (resolved at commit),
//! the durability barrier, and poisoning: after a failed write or
//! flush the store refuses writes rather than continue on unknown state;
//! SlateDB's compactor and garbage collector settings, which bound the
//! memory and disk a long write uses.
//!
//! Must never know: what the keys mean (inodes, chunks, datasets), paths, NFS
//! or protobuf. It is the only crate that names SlateDB types.

mod counting;
mod faults;
mod layers;
mod lease;

pub use counting::RequestCounts;
pub use faults::{FaultPlan, Faults};
pub use layers::{Cut, Cutter, Hook};
pub use lease::{LEASE_RENEW, LEASE_TTL};

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use slatedb::{Db, WriteBatch};

/// Width of a counter value: a big-endian `u64`.
pub const COUNTER_BYTES: usize = 8;

fn decode_counter(v: &[u8]) -> Option<u64> {
    <[u8; COUNTER_BYTES]>::try_from(v)
        .ok()
        .map(u64::from_be_bytes)
}

/// What kind of failure a key-value operation hit, which says what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvErrorKind {
    /// The store URL or an argument is invalid: fix the input.
    Invalid,
    /// The object store could not be reached or failed a request: retry later.
    Unavailable,
    /// Another process opened this store as writer; this handle is fenced.
    Fenced,
    /// The database is closed.
    Closed,
    /// Stored data is not what was written: run fsck, restore from backup.
    Corrupt,
    /// An earlier durability failure left state unknown; restart the process.
    Poisoned,
    /// Another process holds the store open: stop it, or use another store.
    Locked,
    /// The filesystem holding a local store is (nearly) full: free space
    /// or delete data, then retry.
    NoSpace,
    /// A bug or an unexpected internal failure.
    Internal,
}

/// A key-value error: a kind to act on and a message for humans.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct KvError {
    /// What to do about it.
    pub kind: KvErrorKind,
    /// Human-readable detail (not API).
    pub message: String,
}

impl KvError {
    /// An error of `kind` with `message`.
    pub fn new(kind: KvErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn from_slate(e: slatedb::Error, during: &str) -> Self {
        use slatedb::ErrorKind as K;
        let kind = match e.kind() {
            K::Closed(slatedb::CloseReason::Fenced) => KvErrorKind::Fenced,
            K::Closed(_) => KvErrorKind::Closed,
            K::Unavailable => KvErrorKind::Unavailable,
            K::Invalid => KvErrorKind::Invalid,
            K::Data => KvErrorKind::Corrupt,
            _ => KvErrorKind::Internal,
        };
        Self::new(kind, format!("{during}: {e}"))
    }
}

/// Result of key-value operations.
pub type Result<T> = std::result::Result<T, KvError>;

/// A parsed store location.
#[derive(Debug, Clone)]
pub struct StoreUrl {
    /// The URL as given, with any password removed (safe to print).
    pub display: String,
    kind: StoreKind,
}

#[derive(Debug, Clone)]
enum StoreKind {
    Memory,
    Local(std::path::PathBuf),
    Remote(url::Url),
}

impl StoreUrl {
    /// Parse `file:///dir`, a plain directory path, `memory://`, or any URL
    /// `object_store` understands (`s3://bucket/prefix`, `gs://`, `az://`).
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |why: String| KvError::new(KvErrorKind::Invalid, why);
        if s.is_empty() {
            return Err(invalid("store URL is empty".into()));
        }
        if !s.contains("://") {
            let path = std::path::absolute(s)
                .map_err(|e| invalid(format!("store path {s:?} is not usable: {e}")))?;
            return Ok(Self {
                display: format!("file://{}", path.display()),
                kind: StoreKind::Local(path),
            });
        }
        let url = url::Url::parse(s).map_err(|e| invalid(format!("store URL {s:?}: {e}")))?;
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        let display = shown.to_string();
        let kind = match url.scheme() {
            "memory" => StoreKind::Memory,
            "file" => {
                let path = url.to_file_path().map_err(|()| {
                    invalid(format!("store URL {s:?} is not an absolute file path"))
                })?;
                StoreKind::Local(path)
            }
            "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" | "http" | "https" => {
                StoreKind::Remote(url)
            }
            other => {
                return Err(invalid(format!(
                    "store URL scheme {other:?} is not supported (use file://, memory://, s3://, gs:// or az://)"
                )));
            }
        };
        Ok(Self { display, kind })
    }

    fn object_store(
        &self,
        options: &[(String, String)],
    ) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
        match &self.kind {
            StoreKind::Memory => Ok((
                Arc::new(object_store::memory::InMemory::new()),
                ObjectPath::from("cairn"),
            )),
            StoreKind::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    KvError::new(
                        KvErrorKind::Invalid,
                        format!("cannot create store directory {}: {e}", dir.display()),
                    )
                })?;
                let store =
                    object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
                        KvError::new(
                            KvErrorKind::Invalid,
                            format!("cannot use store directory {}: {e}", dir.display()),
                        )
                    })?;
                Ok((Arc::new(store), ObjectPath::from("db")))
            }
            StoreKind::Remote(url) => {
                let env = std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v));
                // SlateDB fences writers with conditional writes: ask S3
                // for them unless the caller chose otherwise (the check at
                // open refuses stores that do not honour them).
                let defaults = [("aws_conditional_put".to_string(), "etag".to_string())];
                let opts: Vec<(String, String)> = defaults
                    .into_iter()
                    .chain(env)
                    .chain(options.iter().cloned())
                    .collect();
                let (store, path) = object_store::parse_url_opts(url, opts).map_err(|e| {
                    KvError::new(
                        KvErrorKind::Invalid,
                        format!("store URL {}: {e}", self.display),
                    )
                })?;
                Ok((Arc::from(store), path))
            }
        }
    }
}

/// How to open the store.
#[derive(Debug, Clone, Default)]
pub struct KvOptions {
    /// Extra `object_store` options (credentials, endpoint, ...).
    pub object_store_options: Vec<(String, String)>,
    /// Wraps the object store before SlateDB sees it (fault injection,
    /// request counting). Applied last.
    pub wrap: Option<ObjectStoreWrapper>,
    /// Bytes of SlateDB's in-memory cache of SST blocks (plus a quarter of
    /// that for SST metadata), so re-reads do not go back to the object
    /// store; `None`: SlateDB's defaults (512 MiB + 128 MiB).
    pub cache_bytes: Option<u64>,
    /// Bytes of written but not yet uploaded data held in memory before
    /// writes wait for uploads (SlateDB's `max_unflushed_bytes`); `None`:
    /// [`DEFAULT_MAX_UNFLUSHED_BYTES`].
    pub max_unflushed_bytes: Option<usize>,
    /// Retries of one failing object store request (with backoff from
    /// 100 ms doubling to 1 s) before the operation fails; `None`:
    /// [`DEFAULT_OBJECT_STORE_RETRIES`].
    pub max_retries: Option<u32>,
    /// Free space a local store's filesystem must keep: writes that add
    /// data are refused with [`KvErrorKind::NoSpace`] below it (see
    /// [`Kv::check_space`]), so SlateDB's compactions and deletes still
    /// have room; `None`: [`DEFAULT_RESERVE_BYTES`].
    pub reserve_bytes: Option<u64>,
}

/// Default free space kept on a local store's filesystem: 1 GiB. A full
/// filesystem does not fail SlateDB's writes cleanly: its compactions fail,
/// level 0 fills, and every write then waits for a flush that never comes.
/// Refusing new data while this much is still free keeps the store usable
/// (reads, deletes, snapshot deletes) and the errors clear.
pub const DEFAULT_RESERVE_BYTES: u64 = 1 << 30;

/// Default retries of a failing object store request: 8, about 5 s of
/// backoff. After that the operation fails (and a failed write poisons the
/// store) instead of hanging clients forever.
pub const DEFAULT_OBJECT_STORE_RETRIES: u32 = 8;

/// Size of one memtable flushed as a level-0 SST: 16 MiB.
pub const L0_SST_BYTES: usize = 16 << 20;

/// Default bound of unflushed data in memory: 64 MiB (SlateDB's own default
/// is 1 GiB, too much for a server that must stay small under a long write).
pub const DEFAULT_MAX_UNFLUSHED_BYTES: usize = 64 << 20;

/// Largest SST the compactor writes: 32 MiB. SlateDB builds each output SST
/// in memory and uploads it with one PUT, so this bounds the compactor's
/// output buffer (its default, 256 MiB per output and four outputs at once,
/// was the memory that grew with the data written).
pub const COMPACTION_SST_BYTES: usize = 32 << 20;

/// Compactions run at once: 2, each a single task (no subcompactions).
/// With the sizes here a compaction holds about 40 MiB, so the compactor
/// holds at most about 80 MiB.
pub const COMPACTIONS: usize = 2;

/// Bytes the compactor reads ahead per input SST: 2 fetches of 1 MiB.
pub const COMPACTION_FETCH_BYTES: usize = 1 << 20;
/// Concurrent read-ahead fetches per input SST during compaction.
pub const COMPACTION_FETCH_TASKS: usize = 2;

/// The compactor's settings: [`COMPACTIONS`] at a time, none split into
/// concurrent subcompactions, with small output SSTs and read-ahead, so its
/// memory stays bounded whatever the store's size.
fn compactor_options() -> slatedb::config::CompactorOptions {
    let defaults = slatedb::config::CompactorOptions::default();
    let worker = slatedb::config::CompactionWorkerOptions {
        max_concurrent_compactions: COMPACTIONS,
        max_sst_size: COMPACTION_SST_BYTES,
        max_fetch_tasks: COMPACTION_FETCH_TASKS,
        bytes_to_fetch: COMPACTION_FETCH_BYTES,
        max_subcompactions: 1,
        ..Default::default()
    };
    slatedb::config::CompactorOptions {
        max_concurrent_compactions: COMPACTIONS,
        worker: Some(worker),
        checkpoint_lifetime: COMPACTION_CHECKPOINT_LIFETIME,
        ..defaults
    }
}

/// How long the compactor keeps the SSTs a compaction replaced (through a
/// checkpoint), for scans that were reading them: 15 s. SlateDB's default,
/// 15 min, kept several times the data written on disk during a long
/// write. Our scans reopen themselves well before this
/// ([`ITER_REOPEN_AFTER`]), so none reads a file older than this.
pub const COMPACTION_CHECKPOINT_LIFETIME: Duration = Duration::from_secs(15);

/// How often SlateDB's garbage collector deletes files nothing references
/// any more (WAL SSTs already in level 0, SSTs a compaction replaced once
/// their checkpoint expired, old manifests): every 10 s (SlateDB: 10 min).
pub const GC_INTERVAL: Duration = Duration::from_secs(10);

/// Age a WAL SST must reach before it is collected: 10 s. Only this
/// process reads the WAL, and only at open.
pub const GC_WAL_MIN_AGE: Duration = Duration::from_secs(10);

/// Age a compacted SST, manifest or compaction record must reach before it
/// is collected: 10 s (SlateDB: 5 min). Files a reader may still need are
/// kept by [`COMPACTION_CHECKPOINT_LIFETIME`], not by age.
pub const GC_MIN_AGE: Duration = Duration::from_secs(10);

/// A scan older than this reopens itself after the last key it returned:
/// 5 s, a third of [`COMPACTION_CHECKPOINT_LIFETIME`], so a long scan
/// (fsck, gc) never reads an SST the garbage collector may have deleted.
/// Within this time a scan sees one consistent state; a longer one may
/// also see what was committed after it started.
pub const ITER_REOPEN_AFTER: Duration = Duration::from_secs(5);

/// The garbage collector's settings. On a local directory, SlateDB's
/// manifest "boundary" files need a conditional overwrite the local file
/// system cannot do, so they are off there: they guard against a second
/// writer, which the directory's lock file already refuses.
fn gc_options(local: bool) -> slatedb::config::GarbageCollectorOptions {
    let dir = |min_age| slatedb::config::GarbageCollectorDirectoryOptions {
        interval: Some(GC_INTERVAL),
        min_age,
        dry_run: false,
    };
    slatedb::config::GarbageCollectorOptions {
        manifest_options: Some(dir(GC_MIN_AGE)),
        wal_options: Some(dir(GC_WAL_MIN_AGE)),
        compacted_options: Some(dir(GC_MIN_AGE)),
        compactions_options: Some(dir(GC_MIN_AGE)),
        boundary_files_enabled: !local,
        ..Default::default()
    }
}

/// Wraps one object store in another.
pub type WrapFn = dyn Fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync;

/// Layers cut once the open one holds this many bytes: 8 MiB.
pub const LAYER_CUT_BYTES: usize = 8 << 20;
/// Frozen layers waiting for SlateDB (each maybe with a pack upload)
/// before commits wait: 2.
pub const MAX_FROZEN_LAYERS: usize = 2;
/// The open layer is cut after this long without a commit: 200 ms.
pub const IDLE_CUT: Duration = Duration::from_millis(200);
/// ... or once its first write is this old, however busy: 2 s.
pub const MAX_LAYER_AGE: Duration = Duration::from_secs(2);
/// Pause before a failed hook or layer write is tried again: 1 s.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// State shared by the handle and its background layer writer.
struct Shared {
    db: Db,
    layers: Mutex<layers::State>,
    status: tokio::sync::watch::Sender<layers::Status>,
    cutter: Mutex<Option<Cutter>>,
    wake: tokio::sync::Notify,
    closed: std::sync::atomic::AtomicBool,
    poisoned: Arc<Mutex<Option<String>>>,
    /// Transactions committed since open (see [`Kv::commits`]).
    commits: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn layers(&self) -> std::sync::MutexGuard<'_, layers::State> {
        self.layers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Freeze the open layer, sealing with it whatever the cutter seals.
    fn cut(&self) -> u64 {
        let cutter = self
            .cutter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut l = self.layers();
        if l.open.is_empty() {
            return l.next_epoch - 1;
        }
        let cut = cutter.and_then(|c| c());
        let epoch = l.freeze(cut);
        drop(l);
        self.wake.notify_one();
        epoch
    }

    fn fail(&self, err: KvError) {
        self.status.send_modify(|s| {
            s.failures += 1;
            s.last_error = Some(err);
        });
    }
}

/// The background writer: writes frozen layers to SlateDB in order (each
/// after its hook succeeded), and cuts the open layer when it is idle or
/// old. Ends when the handle is dropped or closed.
async fn write_layers(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        if s.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let front = s.layers().frozen.front().cloned();
        let Some(front) = front else {
            let due = {
                let l = s.layers();
                !l.open.is_empty()
                    && (l.last_commit.elapsed() >= IDLE_CUT
                        || l.open_since.is_some_and(|t| t.elapsed() >= MAX_LAYER_AGE))
            };
            if due {
                s.cut();
            } else {
                let _ = tokio::time::timeout(IDLE_CUT / 2, s.wake.notified()).await;
            }
            continue;
        };
        if s.poisoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            // Nothing more reaches the store; waiters see the poison.
            s.fail(KvError::new(
                KvErrorKind::Poisoned,
                "store refuses writes after an earlier failure; restart to recover",
            ));
            let _ = tokio::time::timeout(RETRY_PAUSE, s.wake.notified()).await;
            continue;
        }
        if let Some(hook) = &front.hook
            && let Err(e) = hook().await
        {
            if e.kind == KvErrorKind::Poisoned {
                // The hook says state is unknown: nothing more is written.
                let mut p = s.poisoned.lock().unwrap_or_else(|p| p.into_inner());
                if p.is_none() {
                    *p = Some(e.message.clone());
                }
            } else {
                tracing::warn!(error = %e, epoch = front.epoch, "storing a cut failed; retrying");
            }
            s.fail(e);
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        }
        let mut batch = WriteBatch::new();
        for (k, v) in &front.map {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        if let Err(e) = s.db.write(batch).await {
            let err = KvError::from_slate(e, "writing a batch");
            tracing::error!(error = %err, "store poisoned: refusing further writes");
            {
                let mut p = s.poisoned.lock().unwrap_or_else(|p| p.into_inner());
                if p.is_none() {
                    *p = Some(err.message.clone());
                }
            }
            s.fail(err);
            continue;
        }
        {
            let mut l = s.layers();
            if l.frozen.front().is_some_and(|f| f.epoch == front.epoch) {
                l.frozen.pop_front();
            }
        }
        s.status.send_modify(|st| st.written = front.epoch);
    }
}

/// A function that wraps an object store (a decorator such as a fault injector).
#[derive(Clone)]
pub struct ObjectStoreWrapper(pub Arc<WrapFn>);

impl std::fmt::Debug for ObjectStoreWrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectStoreWrapper")
    }
}

/// An open key-value store: the one SlateDB writer of its location.
pub struct Kv {
    db: Db,
    shared: Arc<Shared>,
    /// The object store SlateDB uses (wrapped), for data kept beside it.
    store: Arc<dyn ObjectStore>,
    pack_root: ObjectPath,
    url: StoreUrl,
    poisoned: Arc<Mutex<Option<String>>>,
    /// Held for the life of the handle: refuses a second process on the same
    /// local store (released by the OS if this one dies).
    _lock: Option<std::fs::File>,
    /// The writer lease of a remote store.
    lease: Option<lease::Lease>,
    requests: Arc<counting::Counters>,
    reserve: u64,
}

/// Space on the filesystem holding a local store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Size of the filesystem.
    pub total: u64,
    /// Bytes available to this process (what `df` calls available).
    pub available: u64,
    /// Bytes the store keeps free ([`KvOptions::reserve_bytes`]).
    pub reserve: u64,
}

/// Name of the lock file in a local store's directory.
pub const LOCK_FILE: &str = "cairn.lock";

/// Take the exclusive lock of a local store directory, or say who holds it.
fn lock_dir(dir: &std::path::Path, shown: &str) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(LOCK_FILE);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            KvError::new(
                KvErrorKind::Invalid,
                format!("cannot open lock file {}: {e}", path.display()),
            )
        })?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(KvError::new(
                KvErrorKind::Locked,
                format!(
                    "store {shown} is in use by another cairn process{}; stop it first (only one process may serve a store)",
                    if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" ({holder})")
                    }
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(KvError::new(
                KvErrorKind::Invalid,
                format!("cannot lock {}: {e}", path.display()),
            ));
        }
    }
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = write!(f, "pid {}", std::process::id());
    let _ = f.flush();
    Ok(f)
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv")
            .field("url", &self.url.display)
            .finish()
    }
}

/// A key and its value.
pub type Entry = (Bytes, Bytes);

impl Kv {
    /// Open (creating if absent) the database at `url`.
    pub async fn open(url: &str, options: KvOptions) -> Result<Self> {
        let url = StoreUrl::parse(url)?;
        let (store, path) = url.object_store(&options.object_store_options)?;
        let lock = match &url.kind {
            StoreKind::Local(dir) => Some(lock_dir(dir, &url.display)?),
            _ => None,
        };
        let requests = Arc::new(counting::Counters::default());
        let mut store: Arc<dyn ObjectStore> = Arc::new(counting::Counting {
            inner: store,
            counters: requests.clone(),
        });
        let poisoned = Arc::new(Mutex::new(None));
        let lease = match &url.kind {
            StoreKind::Remote(_) => {
                lease::check_conditional_writes(&store, &path, &url.display).await?;
                Some(
                    lease::Lease::acquire(store.clone(), &path, &url.display, poisoned.clone())
                        .await?,
                )
            }
            _ => None,
        };
        if let Some(wrap) = &options.wrap {
            store = (wrap.0)(store);
        }
        let settings = slatedb::Settings {
            max_unflushed_bytes: options
                .max_unflushed_bytes
                .unwrap_or(DEFAULT_MAX_UNFLUSHED_BYTES),
            // Smaller memtables than SlateDB's 64 MiB, so the unflushed
            // bound above holds several and memory stays small.
            l0_sst_size_bytes: L0_SST_BYTES,
            object_store_max_retries: Some(
                options.max_retries.unwrap_or(DEFAULT_OBJECT_STORE_RETRIES),
            ),
            compactor_options: Some(compactor_options()),
            garbage_collector_options: Some(gc_options(matches!(url.kind, StoreKind::Local(_)))),
            ..Default::default()
        };
        let pack_root = match &url.kind {
            StoreKind::Local(_) => ObjectPath::from("packs"),
            _ => path.clone().join("packs"),
        };
        // 64 KiB blocks rather than SlateDB's 4 KiB: a cold read on S3 looks
        // up chunk locations at random across the index, one GET per block
        // touched, so a 1 GiB read cost ~1,600 GETs with 4 KiB blocks and
        // ~100 with these. SSTs carry their own block index, so stores
        // written with either size read the same.
        let mut builder = Db::builder(path, store.clone())
            .with_settings(settings)
            .with_sst_block_size(slatedb::config::SstBlockSize::Block64Kib);
        if let Some(bytes) = options.cache_bytes {
            use slatedb::db_cache::moka::{MokaCache, MokaCacheOptions};
            let moka = |max_capacity: u64| -> Arc<dyn slatedb::db_cache::DbCache> {
                Arc::new(MokaCache::new_with_opts(MokaCacheOptions {
                    max_capacity,
                    time_to_live: None,
                    time_to_idle: None,
                }))
            };
            let cache = slatedb::db_cache::SplitCache::new()
                .with_block_cache(Some(moka(bytes)))
                .with_meta_cache(Some(moka((bytes / 4).max(1 << 20))));
            builder = builder.with_db_cache(Arc::new(cache), 0);
        }
        let db = builder
            .build()
            .await
            .map_err(|e| KvError::from_slate(e, &format!("opening store {}", url.display)))?;
        tracing::debug!(store = %url.display, "opened key-value store");
        let shared = Arc::new(Shared {
            db: db.clone(),
            layers: Mutex::new(layers::State::new()),
            status: tokio::sync::watch::Sender::new(layers::Status::default()),
            cutter: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            poisoned: poisoned.clone(),
            commits: std::sync::atomic::AtomicU64::new(0),
        });
        tokio::spawn(write_layers(Arc::downgrade(&shared)));
        Ok(Self {
            db,
            shared,
            store,
            pack_root,
            url,
            poisoned,
            _lock: lock,
            lease,
            requests,
            reserve: options.reserve_bytes.unwrap_or(DEFAULT_RESERVE_BYTES),
        })
    }

    /// Space on the filesystem holding a local store; `None` for memory
    /// and remote stores (an object store has no size to report).
    pub fn space(&self) -> Result<Option<Space>> {
        let StoreKind::Local(dir) = &self.url.kind else {
            return Ok(None);
        };
        let st = rustix::fs::statvfs(dir).map_err(|e| {
            KvError::new(
                KvErrorKind::Unavailable,
                format!("cannot read free space of {}: {e}", dir.display()),
            )
        })?;
        Ok(Some(Space {
            total: st.f_blocks.saturating_mul(st.f_frsize),
            available: st.f_bavail.saturating_mul(st.f_frsize),
            reserve: self.reserve,
        }))
    }

    /// Refuse with [`KvErrorKind::NoSpace`] when the filesystem holding a
    /// local store has less than the reserve free. Callers ask before
    /// writes that add data; writes that free space go ahead.
    pub fn check_space(&self) -> Result<()> {
        match self.space()? {
            Some(s) if s.available < s.reserve => Err(KvError::new(
                KvErrorKind::NoSpace,
                format!(
                    "no space left for store {}: {} MiB free, below the {} MiB kept free for compaction and deletes",
                    self.url.display,
                    s.available >> 20,
                    s.reserve >> 20
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The store's location, safe to print.
    pub fn url(&self) -> &str {
        &self.url.display
    }

    /// Point read of the latest committed value.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        if let Some(v) = self.shared.layers().get(key) {
            return Ok(v);
        }
        self.db
            .get(key)
            .await
            .map_err(|e| self.slate_err(e, "reading"))
    }

    /// Up to `limit` entries of `[start, end)` in key order.
    pub async fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>> {
        let mut it = self.iter(start, end).await?;
        let mut out = Vec::new();
        while out.len() < limit {
            match it.next().await? {
                Some(e) => out.push(e),
                None => break,
            }
        }
        Ok(out)
    }

    /// A streaming iterator over `[start, end)`.
    pub async fn iter(&self, start: &[u8], end: &[u8]) -> Result<KvIter> {
        if start >= end {
            return Ok(KvIter {
                inner: None,
                db_next: None,
                primed: true,
                layer: layers::LayerMap::new().into_iter().peekable(),
            });
        }
        self.iter_reopening(start, end, ITER_REOPEN_AFTER).await
    }

    async fn iter_reopening(
        &self,
        start: &[u8],
        end: &[u8],
        reopen_after: Duration,
    ) -> Result<KvIter> {
        // Layers first: an entry leaves them only once SlateDB holds it, so
        // the scan opened after this sees whatever the snapshot misses.
        let layer = self.shared.layers().range(start, end);
        let from = Bound::Included(Bytes::copy_from_slice(start));
        let end = Bytes::copy_from_slice(end);
        let iter = scan_from(&self.db, &from, &end)
            .await
            .map_err(|e| self.slate_err(e, "scanning"))?;
        Ok(KvIter {
            inner: Some(OpenScan {
                db: self.db.clone(),
                iter,
                from,
                end,
                opened: Instant::now(),
                reopen_after,
            }),
            db_next: None,
            primed: false,
            layer: layer.into_iter().peekable(),
        })
    }

    /// How many transactions that wrote something have committed since
    /// open. Unchanged between two calls means nothing read in between
    /// was changed meanwhile (a read-ahead's validity test).
    pub fn commits(&self) -> u64 {
        self.shared
            .commits
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Start a transaction: reads see its own writes; commit writes one batch.
    pub fn txn(&self) -> Txn<'_> {
        Txn {
            kv: self,
            overlay: BTreeMap::new(),
            read_cache: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A SlateDB error, noticing when the database stopped itself (after an
    /// object store failure outlasted the retries, or a fence): every later
    /// call would fail the same way, so the store is poisoned and the error
    /// says a restart recovers.
    fn slate_err(&self, e: slatedb::Error, during: &str) -> KvError {
        let err = KvError::from_slate(e, during);
        if self.db.status().close_reason.is_none() {
            return err;
        }
        let why = match (err.kind, &self.url.kind) {
            // A local store is locked to this process: a fence there means
            // a manifest write landed but its reply was lost.
            (KvErrorKind::Fenced, StoreKind::Remote(_)) => {
                "this writer was fenced: another cairn process took over the store, or a write's reply was lost"
            }
            (KvErrorKind::Fenced, _) => "this writer was fenced after a write's reply was lost",
            _ => "the store stopped after this failure",
        };
        let err = KvError::new(
            KvErrorKind::Poisoned,
            format!(
                "{}; {why} and refuses further work: restart to recover",
                err.message
            ),
        );
        self.poison(&err);
        err
    }

    fn check_poisoned(&self) -> Result<()> {
        match &*self.poisoned.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(why) => Err(KvError::new(
                KvErrorKind::Poisoned,
                format!(
                    "store refuses writes after an earlier failure ({why}); restart to recover"
                ),
            )),
            None => Ok(()),
        }
    }

    fn poison(&self, why: &KvError) {
        tracing::error!(error = %why, "store poisoned: refusing further writes");
        let mut p = self.poisoned.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none() {
            *p = Some(why.message.clone());
        }
    }

    /// Refuse every further write, as if the process died here (crash-point
    /// tests): nothing after this call reaches the store.
    #[doc(hidden)]
    pub fn halt(&self, why: &str) {
        self.poison(&KvError::new(KvErrorKind::Poisoned, why.to_string()));
    }

    /// Whether an earlier failure made the store refuse writes.
    pub fn is_poisoned(&self) -> bool {
        self.check_poisoned().is_err()
    }

    /// Make every write committed so far durable in the object store:
    /// cut the open layer (sealing what the cutter seals), wait until every
    /// layer is in SlateDB, then flush SlateDB. Fails (without poisoning:
    /// the layers stay and are tried again) if a cut's hook fails.
    pub async fn flush(&self) -> Result<()> {
        self.check_poisoned()?;
        let epoch = self.cut();
        self.wait_written(epoch).await?;
        if let Err(e) = self.db.flush().await {
            let err = self.slate_err(e, "flushing to the object store");
            self.poison(&err);
            return Err(err);
        }
        Ok(())
    }

    /// Freeze the open layer now (with whatever the cutter seals); returns
    /// its epoch, for [`Kv::wait_written`].
    pub fn cut(&self) -> u64 {
        self.shared.cut()
    }

    /// Register what every cut seals with its layer (the chunk store's open
    /// pack). Replaces an earlier one.
    pub fn set_cutter(&self, cutter: Cutter) {
        *self.shared.cutter.lock().unwrap_or_else(|p| p.into_inner()) = Some(cutter);
    }

    /// Wait until the layers up to `epoch` are in SlateDB (not yet durable:
    /// see [`Kv::flush`]). Fails if storing one fails while waiting.
    pub async fn wait_written(&self, epoch: u64) -> Result<()> {
        self.wait_for(|written| written >= epoch).await
    }

    /// Wait until fewer than [`MAX_FROZEN_LAYERS`] wait for SlateDB.
    async fn wait_room(&self) -> Result<()> {
        self.wait_for(|_| self.shared.layers().frozen.len() < MAX_FROZEN_LAYERS)
            .await
    }

    /// Wait until `done(newest epoch written)` holds, checked at each change
    /// of the writer's status (outside its lock); fails if storing a cut
    /// fails meanwhile, the store is poisoned or closed.
    async fn wait_for(&self, done: impl Fn(u64) -> bool) -> Result<()> {
        let mut rx = self.shared.status.subscribe();
        let failures = rx.borrow().failures;
        loop {
            let (written, failed) = {
                let st = rx.borrow_and_update();
                let failed = (st.failures > failures).then(|| {
                    st.last_error.clone().unwrap_or_else(|| {
                        KvError::new(KvErrorKind::Unavailable, "storing a cut failed")
                    })
                });
                (st.written, failed)
            };
            if done(written) {
                return Ok(());
            }
            if let Some(e) = failed {
                return Err(e);
            }
            self.check_poisoned()?;
            if rx.changed().await.is_err() {
                return Err(KvError::new(KvErrorKind::Closed, "the store was closed"));
            }
        }
    }

    /// The object store the database lives in (with the same wrappers), for
    /// data kept beside it.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// Whether the store is reached over the network (no page cache holds
    /// what it reads).
    pub fn is_remote(&self) -> bool {
        matches!(self.url.kind, StoreKind::Remote(_))
    }

    /// Where data kept beside the database goes: `packs` next to it.
    pub fn pack_root(&self) -> &ObjectPath {
        &self.pack_root
    }

    /// Flush and close (and give up a remote store's lease). The handle is
    /// unusable afterwards.
    pub async fn close(&self) -> Result<()> {
        let flushed = if self.is_poisoned() {
            Ok(())
        } else {
            let epoch = self.cut();
            self.wait_written(epoch).await
        };
        self.shared
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.wake.notify_one();
        let r = self
            .db
            .close()
            .await
            .map_err(|e| KvError::from_slate(e, "closing"));
        if let Some(l) = &self.lease {
            l.release().await;
        }
        flushed.and(r)
    }

    /// Object store requests made since the store was opened.
    pub fn requests(&self) -> RequestCounts {
        self.requests.snapshot()
    }
}

/// One buffered write of a transaction.
#[derive(Debug, Clone)]
enum Write {
    Put(Bytes),
    Delete,
    /// Add to a counter without reading it.
    Add(u64),
}

fn counter_sum(key: &[u8], base: Option<&Bytes>, delta: u64) -> Result<Bytes> {
    let base = match base {
        Some(v) => decode_counter(v).ok_or_else(|| {
            KvError::new(
                KvErrorKind::Corrupt,
                format!(
                    "counter {key:?} holds {} bytes, not {COUNTER_BYTES}",
                    v.len()
                ),
            )
        })?,
        None => 0,
    };
    let sum = base
        .checked_add(delta)
        .ok_or_else(|| KvError::new(KvErrorKind::Internal, format!("counter {key:?} overflows")))?;
    Ok(Bytes::copy_from_slice(&sum.to_be_bytes()))
}

/// A streaming range iterator over the layers and SlateDB. Its SlateDB scan
/// reopens itself after the last key it returned once it is
/// [`ITER_REOPEN_AFTER`] old, so it never outlives the files it reads.
pub struct KvIter {
    /// `None` for an empty range.
    inner: Option<OpenScan>,
    /// The next SlateDB entry, once `primed`.
    db_next: Option<Entry>,
    primed: bool,
    /// The in-memory layers' entries of the range when it was opened.
    layer: std::iter::Peekable<std::collections::btree_map::IntoIter<Vec<u8>, Option<Bytes>>>,
}

struct OpenScan {
    db: Db,
    iter: slatedb::DbIterator,
    /// Where a reopened scan starts: the range's start, then just after
    /// the last key returned.
    from: Bound<Bytes>,
    end: Bytes,
    opened: Instant,
    reopen_after: Duration,
}

/// A SlateDB scan of `from` up to (not including) `end`.
async fn scan_from(
    db: &Db,
    from: &Bound<Bytes>,
    end: &Bytes,
) -> std::result::Result<slatedb::DbIterator, slatedb::Error> {
    db.scan((from.clone(), Bound::Excluded(end.clone()))).await
}

impl KvIter {
    /// The next entry, or `None` at the end of the range.
    pub async fn next(&mut self) -> Result<Option<Entry>> {
        if !self.primed {
            self.db_next = self.scan_next().await?;
            self.primed = true;
        }
        loop {
            let from_layer = match (&self.db_next, self.layer.peek()) {
                (None, None) => return Ok(None),
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((dk, _)), Some((lk, _))) => lk.as_slice() <= dk.as_ref(),
            };
            if !from_layer {
                let next = self.scan_next().await?;
                return Ok(std::mem::replace(&mut self.db_next, next));
            }
            let Some((k, v)) = self.layer.next() else {
                return Ok(None);
            };
            if self
                .db_next
                .as_ref()
                .is_some_and(|(dk, _)| dk.as_ref() == k.as_slice())
            {
                self.db_next = self.scan_next().await?;
            }
            if let Some(v) = v {
                return Ok(Some((Bytes::from(k), v)));
            }
        }
    }

    async fn scan_next(&mut self) -> Result<Option<Entry>> {
        let Some(scan) = &mut self.inner else {
            return Ok(None);
        };
        if scan.opened.elapsed() >= scan.reopen_after {
            scan.iter = scan_from(&scan.db, &scan.from, &scan.end)
                .await
                .map_err(|e| KvError::from_slate(e, "reopening a scan"))?;
            scan.opened = Instant::now();
        }
        let next = scan
            .iter
            .next()
            .await
            .map_err(|e| KvError::from_slate(e, "scanning"))?;
        Ok(next.map(|kv| {
            scan.from = Bound::Excluded(kv.key.clone());
            (kv.key, kv.value)
        }))
    }
}

/// A transaction: buffered writes over the committed state, committed as one
/// atomic `WriteBatch`. Callers serialise transactions (cairn has a single
/// ordered writer), so reads through the transaction see a stable state plus
/// the transaction's own writes.
pub struct Txn<'a> {
    kv: &'a Kv,
    overlay: BTreeMap<Vec<u8>, Write>,
    /// Committed values already read by this transaction. Valid because
    /// writers are serialised: nothing else commits while it is open.
    read_cache: Mutex<std::collections::HashMap<Vec<u8>, Option<Bytes>>>,
}

impl Txn<'_> {
    /// Read a key, seeing this transaction's writes first.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let delta = match self.overlay.get(key) {
            Some(Write::Put(v)) => return Ok(Some(v.clone())),
            Some(Write::Delete) => return Ok(None),
            Some(Write::Add(d)) => Some(*d),
            None => None,
        };
        let committed = self.committed(key).await?;
        match delta {
            Some(d) => counter_sum(key, committed.as_ref(), d).map(Some),
            None => Ok(committed),
        }
    }

    async fn committed(&self, key: &[u8]) -> Result<Option<Bytes>> {
        if let Some(v) = self.cache().get(key) {
            return Ok(v.clone());
        }
        let v = self.kv.get(key).await?;
        self.cache().insert(key.to_vec(), v.clone());
        Ok(v)
    }

    fn cache(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Vec<u8>, Option<Bytes>>> {
        self.read_cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Buffer a put.
    pub fn put(&mut self, key: Vec<u8>, value: impl Into<Bytes>) {
        self.overlay.insert(key, Write::Put(value.into()));
    }

    /// Buffer a delete.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.overlay.insert(key, Write::Delete);
    }

    /// Buffer an addition of `delta` to the counter at `key` (a big-endian
    /// `u64`; absent counts as 0) without reading it. Reads through this
    /// transaction see the sum. Fails only if a value this transaction put
    /// at `key` is not a counter.
    pub fn add(&mut self, key: Vec<u8>, delta: u64) -> Result<()> {
        let next = match self.overlay.get(&key) {
            None => Write::Add(delta),
            Some(Write::Add(d)) => Write::Add(d.checked_add(delta).ok_or_else(|| {
                KvError::new(KvErrorKind::Internal, format!("counter {key:?} overflows"))
            })?),
            Some(Write::Delete) => Write::Put(counter_sum(&key, None, delta)?),
            Some(Write::Put(v)) => Write::Put(counter_sum(&key, Some(v), delta)?),
        };
        self.overlay.insert(key, next);
        Ok(())
    }

    /// Number of buffered writes.
    pub fn len(&self) -> usize {
        self.overlay.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.overlay.is_empty()
    }

    /// Up to `limit` entries of `[start, end)`, merging the committed state
    /// with this transaction's writes.
    pub async fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>> {
        let mut it = self.iter(start, end).await?;
        let mut out = Vec::new();
        while out.len() < limit {
            match it.next().await? {
                Some(e) => out.push(e),
                None => break,
            }
        }
        Ok(out)
    }

    /// A streaming iterator over `[start, end)`, merging the committed state
    /// with this transaction's writes. One pass: deleted keys are skipped
    /// once, however many entries the caller takes.
    pub async fn iter<'t>(&'t self, start: &[u8], end: &[u8]) -> Result<TxnIter<'t>> {
        let mut db = self.kv.iter(start, end).await?;
        let db_next = db.next().await?;
        let overlay = if start < end {
            Some(
                self.overlay
                    .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
                    .peekable(),
            )
        } else {
            None
        };
        Ok(TxnIter {
            db,
            db_next,
            overlay,
        })
    }

    /// Apply every buffered write atomically: into the open layer, which
    /// reaches SlateDB as part of one batch at the next cut. Waits while
    /// [`MAX_FROZEN_LAYERS`] wait for SlateDB; fails if storing one fails
    /// meanwhile (nothing of this transaction is applied then).
    pub async fn commit(self) -> Result<()> {
        if self.overlay.is_empty() {
            return Ok(());
        }
        self.kv.check_poisoned()?;
        // Counter additions become puts: writers are serialised, so the
        // value read here is the one the addition applies to.
        let adds: Vec<(&Vec<u8>, u64)> = self
            .overlay
            .iter()
            .filter_map(|(k, w)| match w {
                Write::Add(d) => Some((k, *d)),
                _ => None,
            })
            .collect();
        let bases =
            futures::future::try_join_all(adds.iter().map(|(k, _)| self.committed(k))).await?;
        let mut sums = std::collections::HashMap::new();
        for ((k, d), base) in adds.into_iter().zip(bases) {
            sums.insert(k.clone(), counter_sum(k, base.as_ref(), d)?);
        }
        self.kv.wait_room().await?;
        let cut = {
            let mut l = self.kv.shared.layers();
            for (k, v) in self.overlay {
                let v = match v {
                    Write::Put(v) => Some(v),
                    Write::Delete => None,
                    Write::Add(_) => sums.remove(&k),
                };
                l.insert(k, v);
            }
            // Counted under the layer lock, after the writes are visible: a
            // reader that sees the count unchanged around its reads read no
            // state this commit changed.
            self.kv
                .shared
                .commits
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            l.last_commit = Instant::now();
            if l.open_since.is_none() {
                l.open_since = Some(l.last_commit);
            }
            l.open_bytes >= LAYER_CUT_BYTES
        };
        if cut {
            self.kv.cut();
        }
        Ok(())
    }
}

/// A streaming iterator over a transaction's view of a range.
pub struct TxnIter<'t> {
    db: KvIter,
    db_next: Option<Entry>,
    overlay: Option<std::iter::Peekable<std::collections::btree_map::Range<'t, Vec<u8>, Write>>>,
}

impl TxnIter<'_> {
    /// The next entry in key order, or `None` at the end of the range.
    pub async fn next(&mut self) -> Result<Option<Entry>> {
        loop {
            let Some(overlay) = self.overlay.as_mut() else {
                return self.advance_db().await;
            };
            let from_overlay = match (&self.db_next, overlay.peek()) {
                (None, None) => return Ok(None),
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((dk, _)), Some((ok, _))) => ok.as_slice() <= dk.as_ref(),
            };
            if !from_overlay {
                return self.advance_db().await;
            }
            let Some((k, w)) = overlay.next() else {
                return Ok(None);
            };
            let base = match &self.db_next {
                Some((dk, _)) if dk.as_ref() == k.as_slice() => {
                    self.advance_db().await?.map(|(_, v)| v)
                }
                _ => None,
            };
            match w {
                Write::Put(v) => return Ok(Some((Bytes::copy_from_slice(k), v.clone()))),
                Write::Delete => continue,
                Write::Add(d) => {
                    let v = counter_sum(k, base.as_ref(), *d)?;
                    return Ok(Some((Bytes::copy_from_slice(k), v)));
                }
            }
        }
    }

    /// Take the peeked committed entry and peek the next one.
    async fn advance_db(&mut self) -> Result<Option<Entry>> {
        let next = self.db.next().await?;
        Ok(std::mem::replace(&mut self.db_next, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn txn_reads_its_writes_and_commits_atomically() -> Result<()> {
        let kv = Kv::open("memory://", KvOptions::default()).await?;
        let mut t = kv.txn();
        t.put(b"a".to_vec(), &b"1"[..]);
        t.put(b"c".to_vec(), &b"3"[..]);
        assert_eq!(t.get(b"a").await?, Some(Bytes::from_static(b"1")));
        assert_eq!(kv.get(b"a").await?, None);
        t.commit().await?;
        let mut t = kv.txn();
        t.delete(b"a".to_vec());
        t.put(b"b".to_vec(), &b"2"[..]);
        let keys: Vec<_> = t
            .scan(b"a", b"z", 10)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            vec![Bytes::from_static(b"b"), Bytes::from_static(b"c")]
        );
        assert_eq!(t.scan(b"a", b"z", 1).await?.len(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn counters_add_without_reading() -> Result<()> {
        let kv = Kv::open("memory://", KvOptions::default()).await?;
        let n = |v: u64| Some(Bytes::copy_from_slice(&v.to_be_bytes()));
        let mut t = kv.txn();
        t.put(b"c1".to_vec(), 5u64.to_be_bytes().to_vec());
        t.commit().await?;
        let mut t = kv.txn();
        t.add(b"c1".to_vec(), 2)?;
        t.add(b"c1".to_vec(), 3)?;
        t.add(b"c2".to_vec(), 7)?;
        assert_eq!(t.get(b"c1").await?, n(10), "reads see committed + pending");
        let listed: Vec<_> = t.scan(b"c", b"d", 10).await?;
        assert_eq!(listed.len(), 2);
        assert_eq!(Some(listed[0].1.clone()), n(10));
        assert_eq!(Some(listed[1].1.clone()), n(7));
        t.commit().await?;
        assert_eq!(kv.get(b"c1").await?, n(10), "merged in the store");
        assert_eq!(kv.get(b"c2").await?, n(7), "absent counts as zero");
        let mut t = kv.txn();
        t.delete(b"c2".to_vec());
        t.add(b"c2".to_vec(), 1)?;
        t.commit().await?;
        assert_eq!(
            kv.get(b"c2").await?,
            n(1),
            "add after delete starts at zero"
        );
        let mut t = kv.txn();
        t.put(b"x".to_vec(), &b"not a counter"[..]);
        assert!(
            t.add(b"x".to_vec(), 1).is_err(),
            "adding to a non-counter fails"
        );
        Ok(())
    }

    #[tokio::test]
    async fn iter_streams_past_deleted_keys() -> Result<()> {
        let kv = Kv::open("memory://", KvOptions::default()).await?;
        let mut t = kv.txn();
        for i in 0..100u32 {
            t.put(format!("k{i:03}").into_bytes(), &b"v"[..]);
        }
        t.commit().await?;
        let mut t = kv.txn();
        for i in 0..90u32 {
            t.delete(format!("k{i:03}").into_bytes());
        }
        t.put(b"k050a".to_vec(), &b"new"[..]);
        let mut it = t.iter(b"k", b"l").await?;
        let mut keys = Vec::new();
        while let Some((k, _)) = it.next().await? {
            keys.push(String::from_utf8_lossy(&k).into_owned());
        }
        let mut want = vec!["k050a".to_string()];
        want.extend((90..100).map(|i| format!("k{i:03}")));
        assert_eq!(keys, want);
        Ok(())
    }

    #[tokio::test]
    async fn a_reopening_scan_resumes_after_its_last_key() -> Result<()> {
        let kv = Kv::open("memory://", KvOptions::default()).await?;
        let key = |i: u32| format!("k{i:04}").into_bytes();
        let mut t = kv.txn();
        for i in (0..200).step_by(2) {
            t.put(key(i), i.to_be_bytes().to_vec());
        }
        t.commit().await?;
        kv.flush().await?;
        // Reopens before every entry.
        let mut it = kv.iter_reopening(b"k", b"l", Duration::ZERO).await?;
        let mut seen = Vec::new();
        while let Some((k, _)) = it.next().await? {
            seen.push(String::from_utf8_lossy(&k).into_owned());
            if seen.len() == 50 {
                // Committed mid-scan: one key behind the cursor, one ahead.
                let mut t = kv.txn();
                t.put(key(1), vec![]);
                t.put(key(151), vec![]);
                t.commit().await?;
                // Once in SlateDB, the reopened scan sees what is ahead.
                kv.flush().await?;
            }
        }
        let mut want: Vec<String> = (0..200).step_by(2).map(|i| format!("k{i:04}")).collect();
        want.push("k0151".into());
        want.sort();
        assert_eq!(
            seen, want,
            "each key once, in order, none behind the cursor"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_second_opener_of_a_local_store_is_refused() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("cairn-kv-lock-{}", std::process::id()));
        let url = format!("file://{}", dir.display());
        let first = Kv::open(&url, KvOptions::default()).await?;
        let second = Kv::open(&url, KvOptions::default()).await;
        let err = second.err().map(|e| (e.kind, e.message));
        assert!(
            matches!(&err, Some((KvErrorKind::Locked, m)) if m.contains("in use") && m.contains("pid")),
            "{err:?}"
        );
        first.close().await?;
        drop(first);
        let again = Kv::open(&url, KvOptions::default()).await?;
        again.close().await?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[tokio::test]
    async fn a_local_store_below_its_reserve_refuses_new_data() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("cairn-kv-space-{}", std::process::id()));
        let url = format!("file://{}", dir.display());
        let opts = |reserve| KvOptions {
            reserve_bytes: Some(reserve),
            ..Default::default()
        };
        let kv = Kv::open(&url, opts(0)).await?;
        let sp = kv.space()?.map(|s| (s.total > 0, s.available <= s.total));
        assert_eq!(sp, Some((true, true)), "a local store has a disk");
        kv.check_space()?;
        kv.close().await?;
        drop(kv);
        let kv = Kv::open(&url, opts(u64::MAX)).await?;
        let err = kv.check_space().err().map(|e| (e.kind, e.message));
        assert!(
            matches!(&err, Some((KvErrorKind::NoSpace, m)) if m.contains(&dir.display().to_string()) && m.contains("MiB free")),
            "{err:?}"
        );
        kv.close().await?;
        let mem = Kv::open("memory://", opts(u64::MAX)).await?;
        assert_eq!(mem.space()?, None, "an object store has no disk");
        mem.check_space()?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn parses_store_urls() {
        assert!(StoreUrl::parse("memory://").is_ok());
        assert!(StoreUrl::parse("file:///tmp/x").is_ok());
        assert!(StoreUrl::parse("./cairn-data").is_ok());
        assert!(StoreUrl::parse("s3://bucket/prefix").is_ok());
        let e = StoreUrl::parse("ftp://x").err().map(|e| e.kind);
        assert_eq!(e, Some(KvErrorKind::Invalid));
        let shown = StoreUrl::parse("s3://user:secret@bucket/p").map(|u| u.display);
        assert!(matches!(shown, Ok(s) if !s.contains("secret")));
    }
}
