//! Dataset and snapshot administration on an open [`Engine`]: the calls the
//! admin API and CLI make. Each runs under the writer lock; each change of
//! the registry is one atomic batch (snapshot destruction is several,
//! resumable).

use std::collections::HashMap;

use cairn_cas::Level;
use cairn_cas::Pending;
use cairn_codec::{ChunkHash, ExtentRecord, Key, KeyPrefix, Timestamp, Versioned};
use cairn_fs::{ErrorKind, FsError};
use cairn_registry::{DatasetRecord, Registry, SnapshotRecord, SnapshotSpec, Space, validate_name};
use cairn_snapshot::{DiffEntry, RollbackReport};

use crate::{
    DatasetFs, Engine, ROOT_INO, WriterState, cas_err, kv_err, put_root_dir, reg_err, snap_err,
};

type Result<T> = std::result::Result<T, FsError>;

/// Dead-list entries freed per batch while destroying a snapshot.
pub(crate) const DESTROY_BATCH: usize = 4096;

/// Options for a new dataset.
#[derive(Debug, Clone, Default)]
pub struct DatasetOptions {
    /// Chunk size (power of two, 4 KiB to 1 MiB); the store's default if unset.
    pub chunk_size: Option<u32>,
}

/// What `dataset info` and `dataset list` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetInfo {
    /// Dataset id (its tree id).
    pub id: u64,
    /// Name.
    pub name: String,
    /// UUID, formatted.
    pub uuid: String,
    /// Creation time.
    pub created: Timestamp,
    /// `dataset@snapshot` it was cloned from.
    pub origin: Option<String>,
    /// Whether writes are refused.
    pub read_only: bool,
    /// Whether it is the default dataset.
    pub default: bool,
    /// Chunk size of its files.
    pub chunk_size: u32,
    /// Inodes in the live tree.
    pub files: u64,
    /// Its space counters (see [`Space`]; `used` is [`Space::used`]).
    pub space: Space,
    /// Limit on `used`.
    pub quota: Option<u64>,
    /// Limit on `referenced`.
    pub refquota: Option<u64>,
    /// What it can still grow by: the store's free space, less what the
    /// quotas leave (ZFS `available`).
    pub available: u64,
    /// Current generation.
    pub generation: u64,
    /// Number of snapshots.
    pub snapshots: usize,
}

/// A settable dataset property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    /// Limit on `used` (`None`: no limit).
    Quota(Option<u64>),
    /// Limit on `referenced` (`None`: no limit).
    Refquota(Option<u64>),
    /// Whether writes are refused.
    ReadOnly(bool),
}

/// What `reg` and dataset record `d` say of it, with `store_free` bytes
/// free in the store.
fn describe(reg: &Registry, d: &DatasetRecord, store_free: u64) -> DatasetInfo {
    let id = d.id;
    let origin = d.origin.map(|(t, g)| {
        let snap = reg
            .snapshot(t, g)
            .map_or_else(|| format!("#{g}"), |s| s.name.clone());
        format!("{}@{snap}", reg.name_of(t))
    });
    let space = d.space.unwrap_or_default();
    let available = available(d, store_free);
    DatasetInfo {
        id,
        name: d.name.clone(),
        uuid: format_uuid(&d.uuid),
        created: d.created,
        origin,
        read_only: d.read_only,
        default: reg.default_id() == id,
        chunk_size: d.chunk_size,
        files: d.files,
        space,
        quota: d.quota,
        refquota: d.refquota,
        available,
        generation: d.generation,
        snapshots: reg.snapshots_of(id).len(),
    }
}

/// What dataset `d` can still grow by with `store_free` bytes free in the
/// store: the least of that and what each quota leaves.
pub(crate) fn available(d: &DatasetRecord, store_free: u64) -> u64 {
    let s = d.space.unwrap_or_default();
    let mut avail = store_free;
    if let Some(q) = d.quota {
        avail = avail.min(q.saturating_sub(s.used()));
    }
    if let Some(q) = d.refquota {
        avail = avail.min(q.saturating_sub(s.referenced));
    }
    avail
}

/// What `snapshot list` and `snapshot info` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Dataset name.
    pub dataset: String,
    /// Snapshot name.
    pub name: String,
    /// The frozen generation.
    pub generation: u64,
    /// Creation time.
    pub created: Timestamp,
    /// Inodes it holds.
    pub files: u64,
    /// File data it sees (ZFS `referenced`).
    pub referenced_bytes: Option<u64>,
    /// File data of the versions only it sees: what deleting it frees,
    /// counted before dedup (ZFS `used`; computed by `snapshot info`).
    pub unique_bytes: Option<u64>,
    /// File data written between the previous snapshot and this one (ZFS
    /// `written`).
    pub written_bytes: Option<u64>,
    /// Datasets cloned from it.
    pub clones: Vec<String>,
    /// Its view id (store-wide, never reused; see [`Engine::view`]).
    pub view_id: u64,
}

/// Store-wide space accounting (`stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    /// Distinct chunks stored.
    pub chunks: u64,
    /// Bytes stored for them (after dedup and compression).
    pub stored_bytes: u64,
    /// Their plain bytes (after dedup, before compression).
    pub plain_bytes: u64,
    /// Plain bytes every extent record (live files and snapshot versions,
    /// all datasets) refers to: what the data would take without dedup.
    pub referenced_bytes: u64,
    /// Every dataset, with computed sizes.
    pub datasets: Vec<DatasetInfo>,
    /// Object store requests since the store was opened.
    pub requests: cairn_kv::RequestCounts,
}

/// Which dataset or snapshot a view id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewInfo {
    /// The view id (a dataset's id, or a snapshot's view id).
    pub id: u64,
    /// The dataset's id.
    pub dataset_id: u64,
    /// The dataset's name.
    pub dataset: String,
    /// The snapshot's name, for a snapshot view.
    pub snapshot: Option<String>,
}

/// What `gc` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Chunks examined.
    pub chunks: u64,
    /// Chunks deleted because nothing referenced them.
    pub swept: u64,
    /// Extent maps deleted because nothing referenced them.
    pub swept_maps: u64,
    /// Stored bytes freed.
    pub freed_bytes: u64,
    /// Refcounts corrected to the references counted (extent records for
    /// maps, map slots for chunks).
    pub fixed_refcounts: u64,
    /// Pack live records corrected to the index entries counted.
    pub fixed_pack_counts: u64,
    /// Packs whose live chunks were copied forward into a new pack.
    pub packs_rewritten: u64,
    /// Chunks copied forward.
    pub chunks_moved: u64,
    /// Pack objects deleted (emptied, rewritten or never referenced).
    pub packs_deleted: u64,
    /// Bytes of pack objects given back to the store (dead frames and
    /// framing of the packs deleted).
    pub pack_bytes_reclaimed: u64,
}

fn format_uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Engine {
    /// A filesystem view of dataset `id` at `at` (`None`: live head).
    pub(crate) fn fs_for(&self, reg: &Registry, id: u64, at: Option<u64>) -> Result<DatasetFs> {
        let d = reg
            .dataset(id)
            .ok_or_else(|| FsError::new(ErrorKind::NotFound, format!("no dataset with id {id}")))?;
        let view = match at {
            Some(g) => reg.snapshot_view(id, g),
            None => reg.head_view(id),
        }
        .map_err(reg_err)?;
        Ok(DatasetFs::new(self.inner.clone(), view, d.chunk_size))
    }

    /// Commit a registry change and make it durable before returning: a
    /// created snapshot or dataset survives a crash once the call returns.
    /// After a failed commit the in-memory registry ran ahead of the store:
    /// it is reloaded (the store is poisoned for writes anyway).
    pub(crate) async fn commit_registry(
        &self,
        t: cairn_kv::Txn<'_>,
        reg: &mut Registry,
    ) -> Result<()> {
        if let Err(e) = t.commit().await {
            self.reload(reg).await;
            return Err(kv_err(e));
        }
        self.inner.publish(reg);
        self.inner.kv.flush().await.map_err(kv_err)
    }

    /// After a failed registry commit the in-memory copy ran ahead of the
    /// store: reload it (the store is poisoned for writes anyway).
    pub(crate) async fn reload(&self, reg: &mut Registry) {
        match Registry::load(&self.inner.kv).await {
            Ok(r) => *reg = r,
            Err(e) => tracing::error!(error = %e, "could not reload the registry"),
        }
        self.inner.publish(reg);
    }

    /// Finish work a crash interrupted (snapshot destruction).
    pub(crate) async fn resume(&self) -> Result<()> {
        let mut w = self.inner.writer.lock().await;
        let pending: Vec<(u64, u64)> = w
            .reg
            .all_snapshots()
            .filter(|s| s.destroying.is_some())
            .map(|s| (s.tree, s.generation))
            .collect();
        for (tree, generation) in pending {
            tracing::info!(
                tree,
                generation,
                "resuming an interrupted snapshot deletion"
            );
            self.finish_destroy(&mut w, tree, generation).await?;
        }
        let freeing: Vec<u64> = w.reg.freeing().collect();
        for tree in freeing {
            tracing::info!(tree, "resuming an interrupted dataset deletion");
            self.free_tree(&mut w, tree).await?;
        }
        self.count_missing(&mut w).await?;
        self.inner.publish(&w.reg);
        Ok(())
    }

    /// The view with id `id` (a dataset's id, or a snapshot's view id) and
    /// what it is. `Stale` if no live dataset or snapshot has that id: ids
    /// are never reused, so a view id stays valid exactly as long as what it
    /// names exists.
    pub async fn view(&self, id: u64) -> Result<(DatasetFs, ViewInfo)> {
        let reg = self.inner.registry();
        let (tree, at) = reg.view_by_id(id).ok_or_else(|| {
            FsError::new(
                ErrorKind::Stale,
                format!("no dataset or snapshot has view id {id}"),
            )
        })?;
        let fs = self.fs_for(&reg, tree, at)?;
        let snapshot = at.and_then(|g| reg.snapshot(tree, g).map(|s| s.name.clone()));
        Ok((
            fs,
            ViewInfo {
                id,
                dataset_id: tree,
                dataset: reg.name_of(tree),
                snapshot,
            },
        ))
    }

    /// The id of the dataset named `name`, if there is one.
    pub async fn dataset_id(&self, name: &str) -> Option<u64> {
        self.inner.registry().by_name(name).ok().map(|d| d.id)
    }

    /// The default dataset's id (its view id).
    pub async fn default_dataset_id(&self) -> u64 {
        self.inner.registry().default_id()
    }

    /// The live view of dataset `name`.
    pub async fn dataset(&self, name: &str) -> Result<DatasetFs> {
        let reg = self.inner.registry();
        let id = reg.by_name(name).map_err(reg_err)?.id;
        self.fs_for(&reg, id, None)
    }

    /// The read-only view of a snapshot (`dataset@snap` or a bare name).
    pub async fn snapshot(&self, spec: &str) -> Result<DatasetFs> {
        let spec = SnapshotSpec::parse(spec).map_err(reg_err)?;
        let reg = self.inner.registry();
        let s = reg.resolve(&spec).map_err(reg_err)?;
        self.fs_for(&reg, s.tree, Some(s.generation))
    }

    /// Create an empty dataset.
    pub async fn create_dataset(&self, name: &str, opts: DatasetOptions) -> Result<DatasetInfo> {
        let chunk_size = opts.chunk_size.unwrap_or(self.inner.chunk_size);
        if !chunk_size.is_power_of_two() || !(4096..=1 << 20).contains(&chunk_size) {
            return Err(FsError::new(
                ErrorKind::Invalid,
                format!("chunk size {chunk_size} must be a power of two between 4 KiB and 1 MiB"),
            ));
        }
        let mut w = self.inner.writer.lock().await;
        w.reg.check_new_dataset_name(name).map_err(reg_err)?;
        let reg = &mut w.reg;
        let mut t = self.inner.kv.txn();
        let id = reg.alloc_tree(&mut t).map_err(reg_err)?;
        let d = Registry::new_dataset(id, name, chunk_size, None, 1);
        put_root_dir(&mut t, id, d.generation);
        reg.put_dataset(&mut t, d);
        self.commit_registry(t, &mut w.reg).await?;
        tracing::info!(dataset = name, id, "created dataset");
        self.info_of(&w.reg, id).await
    }

    /// Every dataset (cheap fields only), by name. Takes no lock: the
    /// published registry, and each dataset's record as committed.
    pub async fn list_datasets(&self) -> Result<Vec<DatasetInfo>> {
        let reg = self.inner.registry();
        let free = self.store_free()?;
        let mut out: Vec<DatasetInfo> = Registry::read_datasets(&self.inner.kv)
            .await
            .map_err(reg_err)?
            .iter()
            .filter(|d| reg.dataset(d.id).is_some())
            .map(|d| describe(&reg, d, free))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One dataset's recorded fields, without its sizes (no walk, no lock).
    pub async fn dataset_summary(&self, name: &str) -> Result<DatasetInfo> {
        let reg = self.inner.registry();
        let id = reg.by_name(name).map_err(reg_err)?.id;
        self.info_of(&reg, id).await
    }

    /// One dataset, with its figures as committed (no walk, no lock).
    pub async fn dataset_info(&self, name: &str) -> Result<DatasetInfo> {
        self.dataset_summary(name).await
    }

    /// The store's free space for data (`u64::MAX` for stores that report
    /// none: memory and remote object stores).
    pub(crate) fn store_free(&self) -> Result<u64> {
        Ok(match self.inner.kv.space().map_err(kv_err)? {
            Some(sp) => sp.available.saturating_sub(sp.reserve),
            None => u64::MAX,
        })
    }

    /// Set dataset `name`'s properties, all in one batch (none if one is
    /// refused). A quota below what the dataset holds is allowed, as in
    /// ZFS: writes are refused until it is back under.
    pub async fn set_properties(&self, name: &str, props: &[Property]) -> Result<DatasetInfo> {
        let mut w = self.inner.writer.lock().await;
        let id = w.reg.by_name(name).map_err(reg_err)?.id;
        let mut d = Registry::read_dataset(&self.inner.kv, id)
            .await
            .map_err(reg_err)?
            .or_else(|| w.reg.dataset(id).cloned())
            .ok_or_else(|| FsError::new(ErrorKind::NotFound, format!("no dataset {id}")))?;
        for p in props {
            match *p {
                Property::Quota(q) => d.quota = q,
                Property::Refquota(q) => d.refquota = q,
                Property::ReadOnly(r) => d.read_only = r,
            }
        }
        let mut t = self.inner.kv.txn();
        w.reg.put_dataset(&mut t, d);
        self.commit_registry(t, &mut w.reg).await?;
        tracing::info!(dataset = name, ?props, "set properties");
        self.info_of(&w.reg, id).await
    }

    /// What `reg` says of dataset `id`, with its counters as committed
    /// (`sizes`: and its sizes, walked).
    pub(crate) async fn info_of(&self, reg: &Registry, id: u64) -> Result<DatasetInfo> {
        let fresh = Registry::read_dataset(&self.inner.kv, id)
            .await
            .map_err(reg_err)?;
        let d = fresh
            .as_ref()
            .or_else(|| reg.dataset(id))
            .ok_or_else(|| FsError::new(ErrorKind::NotFound, format!("no dataset {id}")))?;
        Ok(describe(reg, d, self.store_free()?))
    }

    /// How many extent records (head and history) in the ranges `range`
    /// gives for each extent kind name each map.
    async fn extent_refs(
        &self,
        range: impl Fn(KeyPrefix) -> (Vec<u8>, Vec<u8>),
    ) -> Result<HashMap<ChunkHash, u64>> {
        let mut refs = HashMap::new();
        for kind in [KeyPrefix::Extent, KeyPrefix::HistExtent] {
            let (start, end) = range(kind);
            let page = self
                .inner
                .kv
                .scan(&start, &end, usize::MAX)
                .await
                .map_err(kv_err)?;
            for (k, v) in page {
                let rec = Versioned::<ExtentRecord>::decode(&v)
                    .map_err(|e| FsError::new(ErrorKind::Corrupt, format!("extent {k:?}: {e}")))?;
                if let Some(e) = rec.value {
                    *refs.entry(e.map).or_default() += 1;
                }
            }
        }
        Ok(refs)
    }

    /// Delete a dataset and everything in it. Refuses the default dataset,
    /// and one with snapshots unless `recursive` (which destroys them first;
    /// still refused if a snapshot has clones).
    pub async fn delete_dataset(&self, name: &str, recursive: bool) -> Result<()> {
        let mut w = self.inner.writer.lock().await;
        let d = w.reg.by_name(name).map_err(reg_err)?.clone();
        if w.reg.default_id() == d.id {
            return Err(FsError::new(
                ErrorKind::Busy,
                format!("dataset {name:?} is the default; make another dataset the default first"),
            ));
        }
        let snaps: Vec<SnapshotRecord> = w.reg.snapshots_of(d.id).into_iter().cloned().collect();
        if !snaps.is_empty() && !recursive {
            return Err(FsError::new(
                ErrorKind::Busy,
                format!(
                    "dataset {name:?} has {} snapshot(s) ({}); delete them or ask for a recursive delete",
                    snaps.len(),
                    snaps
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        for s in &snaps {
            let clones = w.reg.clones_of(d.id, s.generation);
            if !clones.is_empty() {
                return Err(FsError::new(
                    ErrorKind::Busy,
                    format!(
                        "snapshot {name}@{} has dependent clones: {}; delete or promote them first",
                        s.name,
                        clones
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        for s in snaps.iter().rev() {
            self.destroy_snapshot(&mut w, s.tree, s.generation).await?;
        }
        // The dataset disappears in one batch that also marks its tree as
        // being freed; the records go afterwards, in batches. A crash in
        // between resumes on the next open.
        let mut t = self.inner.kv.txn();
        w.reg.remove_dataset(&mut t, d.id);
        self.commit_registry(t, &mut w.reg).await?;
        self.free_tree(&mut w, d.id).await?;
        tracing::info!(dataset = name, "deleted dataset");
        Ok(())
    }

    /// Make `name` the default dataset.
    pub async fn set_default_dataset(&self, name: &str) -> Result<()> {
        let mut w = self.inner.writer.lock().await;
        let id = w.reg.by_name(name).map_err(reg_err)?.id;
        let reg = &mut w.reg;
        let mut t = self.inner.kv.txn();
        reg.set_default(&mut t, id);
        self.commit_registry(t, &mut w.reg).await?;
        Ok(())
    }

    /// The default dataset's name.
    pub async fn default_dataset(&self) -> Result<String> {
        let reg = self.inner.registry();
        Ok(reg.name_of(reg.default_id()))
    }

    /// Make a dataset read-only (or writable again).
    pub async fn set_read_only(&self, name: &str, read_only: bool) -> Result<()> {
        let mut w = self.inner.writer.lock().await;
        let mut d = w.reg.by_name(name).map_err(reg_err)?.clone();
        d.read_only = read_only;
        let reg = &mut w.reg;
        let mut t = self.inner.kv.txn();
        reg.put_dataset(&mut t, d);
        self.commit_registry(t, &mut w.reg).await?;
        Ok(())
    }

    /// Take snapshot `name` of dataset `dataset`: one small batch, whatever
    /// the dataset's size.
    pub async fn create_snapshot(&self, dataset: &str, name: &str) -> Result<SnapshotInfo> {
        let mut w = self.inner.writer.lock().await;
        let id = w.reg.by_name(dataset).map_err(reg_err)?.id;
        let reg = &mut w.reg;
        let mut t = self.inner.kv.txn();
        let rec = cairn_snapshot::create(reg, &mut t, id, name).map_err(snap_err)?;
        self.commit_registry(t, &mut w.reg).await?;
        tracing::info!(
            dataset,
            snapshot = name,
            generation = rec.generation,
            "created snapshot"
        );
        Ok(self.snap_info(&w.reg, &rec))
    }

    fn snap_info(&self, reg: &Registry, s: &SnapshotRecord) -> SnapshotInfo {
        SnapshotInfo {
            dataset: reg.name_of(s.tree),
            name: s.name.clone(),
            generation: s.generation,
            created: s.created,
            files: s.files,
            view_id: s.view_id,
            referenced_bytes: s.referenced,
            unique_bytes: None,
            written_bytes: s.written,
            clones: reg
                .clones_of(s.tree, s.generation)
                .iter()
                .map(|c| c.name.clone())
                .collect(),
        }
    }

    /// Snapshots of `dataset` (or of all datasets), oldest first per dataset.
    pub async fn list_snapshots(&self, dataset: Option<&str>) -> Result<Vec<SnapshotInfo>> {
        let reg = self.inner.registry();
        let ids: Vec<DatasetRecord> = match dataset {
            Some(n) => vec![reg.by_name(n).map_err(reg_err)?.clone()],
            None => {
                let mut v: Vec<DatasetRecord> = reg.datasets().cloned().collect();
                v.sort_by(|a, b| a.name.cmp(&b.name));
                v
            }
        };
        let mut out = Vec::new();
        for d in ids {
            for s in reg.snapshots_of(d.id) {
                out.push(self.snap_info(&reg, s));
            }
        }
        // Creation order (a dataset's generations already are).
        out.sort_by_key(|s| s.created);
        Ok(out)
    }

    /// One snapshot's recorded fields, without its sizes (no walk): what
    /// a listing shows.
    pub async fn snapshot_summary(&self, spec: &str) -> Result<SnapshotInfo> {
        let spec = SnapshotSpec::parse(spec).map_err(reg_err)?;
        let reg = self.inner.registry();
        let s = reg.resolve(&spec).map_err(reg_err)?;
        Ok(self.snap_info(&reg, s))
    }

    /// One snapshot, with `used` computed from the dead-list range only
    /// it sees (O(the changes between its neighbours); no tree walk).
    pub async fn snapshot_info(&self, spec: &str) -> Result<SnapshotInfo> {
        let spec = SnapshotSpec::parse(spec).map_err(reg_err)?;
        let reg = self.inner.registry();
        let s = reg.resolve(&spec).map_err(reg_err)?.clone();
        let mut info = self.snap_info(&reg, &s);
        info.unique_bytes = Some(crate::space::snapshot_used(&self.inner.kv, &reg, &s).await?);
        Ok(info)
    }

    /// Delete a snapshot: hidden at once, freed through the dead list (cost
    /// proportional to what it frees); resumes after a crash. Refused while
    /// clones depend on it.
    pub async fn delete_snapshot(&self, spec: &str) -> Result<()> {
        let spec = SnapshotSpec::parse(spec).map_err(reg_err)?;
        let mut w = self.inner.writer.lock().await;
        let s = w.reg.resolve(&spec).map_err(reg_err)?.clone();
        self.destroy_snapshot(&mut w, s.tree, s.generation).await?;
        self.inner.kv.flush().await.map_err(kv_err)?;
        tracing::info!(snapshot = %spec, "deleted snapshot");
        Ok(())
    }

    pub(crate) async fn destroy_snapshot(
        &self,
        w: &mut WriterState,
        tree: u64,
        generation: u64,
    ) -> Result<()> {
        let reg = &mut w.reg;
        let mut t = self.inner.kv.txn();
        cairn_snapshot::begin_destroy(reg, &mut t, tree, generation).map_err(snap_err)?;
        self.commit_registry(t, &mut w.reg).await?;
        self.finish_destroy(w, tree, generation).await
    }

    /// Mark a snapshot for destruction and run only the first step (of
    /// `budget` dead-list entries), as a crash would leave it.
    #[doc(hidden)]
    pub async fn begin_snapshot_delete_for_tests(&self, spec: &str, budget: usize) -> Result<()> {
        let spec = SnapshotSpec::parse(spec).map_err(reg_err)?;
        let mut w = self.inner.writer.lock().await;
        let s = w.reg.resolve(&spec).map_err(reg_err)?.clone();
        let reg = &mut w.reg;
        let mut t = self.inner.kv.txn();
        cairn_snapshot::begin_destroy(reg, &mut t, s.tree, s.generation).map_err(snap_err)?;
        self.commit_registry(t, &mut w.reg).await?;
        let mut cursor = None;
        cairn_snapshot::destroy_step(
            &self.inner.kv,
            &mut w.reg,
            s.tree,
            s.generation,
            &mut cursor,
            budget,
        )
        .await
        .map_err(snap_err)?;
        self.inner.publish(&w.reg);
        Ok(())
    }

    /// Free every record (head and history, of every kind) of a deleted
    /// dataset's tree, in batches, then drop its freeing mark.
    pub(crate) async fn free_tree(&self, w: &mut WriterState, tree: u64) -> Result<()> {
        let kv = &self.inner.kv;
        for kind in [
            KeyPrefix::Dirent,
            KeyPrefix::HistDirent,
            KeyPrefix::Extent,
            KeyPrefix::HistExtent,
            KeyPrefix::Inode,
            KeyPrefix::HistInode,
            KeyPrefix::Dead,
        ] {
            let (start, end) = Key::tree_range(kind, tree);
            loop {
                let page = kv
                    .scan(&start, &end, crate::destroy_batch())
                    .await
                    .map_err(kv_err)?;
                if page.is_empty() {
                    break;
                }
                let mut t = kv.txn();
                let mut pending = Pending::new();
                for (k, v) in &page {
                    if matches!(kind, KeyPrefix::Extent | KeyPrefix::HistExtent) {
                        let rec = Versioned::<ExtentRecord>::decode(v).map_err(|e| {
                            FsError::new(ErrorKind::Corrupt, format!("extent {k:?}: {e}"))
                        })?;
                        if let Some(e) = rec.value {
                            pending.decref_map(e.map);
                        }
                    }
                    t.delete(k.to_vec());
                }
                pending.apply(&mut t).await.map_err(cas_err)?;
                t.commit().await.map_err(kv_err)?;
                crate::crash_point(kv, "dataset_delete.between_batches").await?;
            }
        }
        let mut t = kv.txn();
        w.reg.end_free(&mut t, tree);
        self.commit_registry(t, &mut w.reg).await
    }

    async fn finish_destroy(&self, w: &mut WriterState, tree: u64, generation: u64) -> Result<()> {
        let mut cursor = None;
        loop {
            let step = match cairn_snapshot::destroy_step(
                &self.inner.kv,
                &mut w.reg,
                tree,
                generation,
                &mut cursor,
                crate::destroy_batch(),
            )
            .await
            {
                Ok(step) => step,
                Err(e) => {
                    self.reload(&mut w.reg).await;
                    return Err(snap_err(e));
                }
            };
            if step.done {
                // The last step removed the snapshot's record.
                self.inner.publish(&w.reg);
                return Ok(());
            }
            crate::crash_point(&self.inner.kv, "snapshot_delete.between_steps").await?;
        }
    }

    /// Clone snapshot `spec` as a new writable dataset `name` (O(1): reads
    /// fall through to the snapshot).
    pub async fn clone_snapshot(&self, spec: &str, name: &str) -> Result<DatasetInfo> {
        let spec = SnapshotSpec::parse(spec).map_err(reg_err)?;
        let mut w = self.inner.writer.lock().await;
        w.reg.check_new_dataset_name(name).map_err(reg_err)?;
        let s = w.reg.resolve(&spec).map_err(reg_err)?.clone();
        let origin =
            w.reg.dataset(s.tree).cloned().ok_or_else(|| {
                FsError::new(ErrorKind::NotFound, format!("no dataset {}", s.tree))
            })?;
        if w.reg.lineage(s.tree).map_err(reg_err)?.links().len() >= cairn_meta::MAX_CLONE_DEPTH {
            return Err(FsError::new(
                ErrorKind::Invalid,
                format!(
                    "{spec} is already {} clones deep; clone something nearer the original",
                    cairn_meta::MAX_CLONE_DEPTH
                ),
            ));
        }
        let reg = &mut w.reg;
        let mut t = self.inner.kv.txn();
        let id = reg.alloc_tree(&mut t).map_err(reg_err)?;
        let mut d = Registry::new_dataset(
            id,
            name,
            origin.chunk_size,
            Some((s.tree, s.generation)),
            s.files,
        );
        // It sees what the snapshot saw, and holds nothing of its own yet.
        d.space = s.referenced.map(|referenced| cairn_registry::Space {
            referenced,
            ..Default::default()
        });
        reg.put_dataset(&mut t, d);
        self.commit_registry(t, &mut w.reg).await?;
        tracing::info!(clone = name, origin = %spec, "created clone");
        self.info_of(&w.reg, id).await
    }

    /// A btrfs-style writable snapshot: snapshot `dataset@snapshot`, then
    /// clone it as `clone`.
    pub async fn writable_snapshot(
        &self,
        dataset: &str,
        snapshot: &str,
        clone: &str,
    ) -> Result<DatasetInfo> {
        validate_name("dataset", clone).map_err(reg_err)?;
        {
            let w = self.inner.writer.lock().await;
            w.reg.check_new_dataset_name(clone).map_err(reg_err)?;
        }
        self.create_snapshot(dataset, snapshot).await?;
        self.clone_snapshot(&format!("{dataset}@{snapshot}"), clone)
            .await
    }

    /// Roll dataset back to snapshot `spec`. Newer snapshots must be
    /// destroyed: refused unless `destroy_newer`, and refused if any of them
    /// has clones. One atomic batch; cost proportional to the dataset's head
    /// plus the changes since the snapshot.
    pub async fn rollback(&self, spec: &str, destroy_newer: bool) -> Result<RollbackReport> {
        let spec = SnapshotSpec::parse(spec).map_err(reg_err)?;
        let mut w = self.inner.writer.lock().await;
        let s = w.reg.resolve(&spec).map_err(reg_err)?.clone();
        let newer: Vec<SnapshotRecord> = w
            .reg
            .snapshots_of(s.tree)
            .into_iter()
            .filter(|x| x.generation > s.generation)
            .cloned()
            .collect();
        if !newer.is_empty() {
            if !destroy_newer {
                return Err(FsError::new(
                    ErrorKind::Busy,
                    format!(
                        "{spec} is not the newest snapshot; rolling back destroys {}; ask to destroy them (--force)",
                        newer
                            .iter()
                            .map(|x| x.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            for n in &newer {
                if !w.reg.clones_of(n.tree, n.generation).is_empty() {
                    return Err(FsError::new(
                        ErrorKind::Busy,
                        format!(
                            "newer snapshot {} has dependent clones; delete or promote them first",
                            n.name
                        ),
                    ));
                }
            }
            for n in newer.iter().rev() {
                self.destroy_snapshot(&mut w, n.tree, n.generation).await?;
            }
            crate::crash_point(&self.inner.kv, "rollback.after_destroying_newer").await?;
        }
        let mut t = self.inner.kv.txn();
        let mut pending = Pending::new();
        let staged =
            match cairn_snapshot::rollback(&mut w.reg, &mut t, &mut pending, s.tree, s.generation)
                .await
            {
                Ok(report) => match pending.apply(&mut t).await {
                    Ok(()) => {
                        match crate::crash_point(&self.inner.kv, "rollback.before_commit").await {
                            Ok(()) => t.commit().await.map(|()| report).map_err(kv_err),
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(cas_err(e)),
                },
                Err(e) => Err(snap_err(e)),
            };
        let report = match staged {
            Ok(r) => r,
            Err(e) => {
                self.reload(&mut w.reg).await;
                return Err(e);
            }
        };
        self.inner.publish(&w.reg);
        self.count_missing(&mut w).await?;
        self.inner.kv.flush().await.map_err(kv_err)?;
        tracing::info!(snapshot = %spec, ?report, "rolled back");
        Ok(report)
    }

    /// Paths added, removed, modified and renamed from snapshot `from` to
    /// snapshot `to` (or to the live dataset if `None`).
    pub async fn diff(&self, from: &str, to: Option<&str>) -> Result<Vec<DiffEntry>> {
        let from = SnapshotSpec::parse(from).map_err(reg_err)?;
        let (old, new) = {
            let w = self.inner.writer.lock().await;
            let a = w.reg.resolve(&from).map_err(reg_err)?;
            let old = w.reg.snapshot_view(a.tree, a.generation).map_err(reg_err)?;
            let new = match to {
                Some(to) => {
                    let mut to = SnapshotSpec::parse(to).map_err(reg_err)?;
                    if to.dataset.is_none() {
                        to.dataset = Some(w.reg.name_of(a.tree));
                    }
                    let b = w.reg.resolve(&to).map_err(reg_err)?;
                    if b.tree != a.tree {
                        return Err(FsError::new(
                            ErrorKind::Invalid,
                            format!("{from} and {to} are snapshots of different datasets"),
                        ));
                    }
                    w.reg.snapshot_view(b.tree, b.generation).map_err(reg_err)?
                }
                None => w.reg.head_view(a.tree).map_err(reg_err)?,
            };
            (old, new)
        };
        let t = self.inner.kv.txn();
        cairn_snapshot::diff(&t, old, new, ROOT_INO)
            .await
            .map_err(snap_err)
    }

    /// Space accounting for the whole store and each dataset.
    pub async fn store_stats(&self) -> Result<StoreStats> {
        let w = self.inner.writer.lock().await;
        let kv = &self.inner.kv;
        let chunks = cairn_cas::stats(kv).await.map_err(cas_err)?;
        let mut referenced = 0u64;
        for (m, n) in self.extent_refs(Key::prefix_range).await? {
            let map = cairn_cas::read_map(kv, &m).await.map_err(cas_err)?;
            referenced += n * map.logical_bytes();
        }
        let ids: Vec<u64> = w.reg.datasets().map(|d| d.id).collect();
        let mut datasets = Vec::new();
        for id in ids {
            datasets.push(self.info_of(&w.reg, id).await?);
        }
        datasets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(StoreStats {
            chunks: chunks.chunks,
            stored_bytes: chunks.stored_bytes,
            plain_bytes: chunks.plain_bytes,
            referenced_bytes: referenced,
            datasets,
            requests: kv.requests(),
        })
    }

    /// Sweep maps and chunks nothing references (left by interrupted
    /// operations) and correct refcounts to the number of extent records
    /// naming each map and of stored maps' slots naming each chunk; then
    /// repack to completion ([`Engine::repack`]).
    pub async fn gc(&self) -> Result<GcReport> {
        let w = self.inner.writer.lock().await;
        // Tests hold the sweep here (`pause`) to show who waits for it.
        #[cfg(feature = "failpoints")]
        fail::fail_point!("gc.sweep");
        let kv = &self.inner.kv;
        let mut report = GcReport::default();
        let mut t = kv.txn();
        // Maps, referenced by extent records.
        let map_refs = self.extent_refs(Key::prefix_range).await?;
        let mut chunk_refs: HashMap<ChunkHash, u64> = HashMap::new();
        for (h, stored) in cairn_cas::all_objects(kv, Level::Maps)
            .await
            .map_err(cas_err)?
        {
            if map_refs.contains_key(&h) {
                let map = cairn_cas::decode_map(&h, &stored).map_err(cas_err)?;
                for (_, c) in map.chunks() {
                    *chunk_refs.entry(c.hash).or_default() += 1;
                }
            } else {
                t.delete(Level::Maps.object_key(h));
                report.swept_maps += 1;
            }
        }
        report.fixed_refcounts += self.fix_refcounts(&mut t, Level::Maps, &map_refs).await?;
        // Chunks, referenced by the maps that stay; live bytes per pack from
        // the index entries that stay.
        let mut stats = cairn_cas::ChunkStats::default();
        let mut live: HashMap<u64, cairn_cas::PackLive> = HashMap::new();
        for (h, stored) in cairn_cas::all_objects(kv, Level::Chunks)
            .await
            .map_err(cas_err)?
        {
            report.chunks += 1;
            let loc = cairn_cas::decode_location(&h, &stored).map_err(cas_err)?;
            if chunk_refs.contains_key(&h) {
                stats.chunks += 1;
                stats.stored_bytes += loc.len as u64;
                stats.plain_bytes += loc.plain as u64;
                let l = live.entry(loc.pack).or_default();
                l.chunks += 1;
                l.bytes += loc.len as u64;
            } else {
                t.delete(Level::Chunks.object_key(h));
                report.swept += 1;
                report.freed_bytes += loc.len as u64;
            }
        }
        cairn_cas::put_stats(&mut t, &stats);
        report.fixed_refcounts += self
            .fix_refcounts(&mut t, Level::Chunks, &chunk_refs)
            .await?;
        let recorded: HashMap<u64, cairn_cas::PackLive> = cairn_cas::all_pack_live(kv)
            .await
            .map_err(cas_err)?
            .into_iter()
            .collect();
        for id in recorded.keys() {
            live.entry(*id).or_default();
        }
        for (id, actual) in &live {
            if recorded.get(id) != Some(actual) {
                report.fixed_pack_counts += 1;
                t.put(Key::Pack(*id).encode(), actual.encode());
            }
        }
        t.commit().await.map_err(kv_err)?;
        drop(w);
        self.inner.kv.flush().await.map_err(kv_err)?;
        let r = self.repack(None).await?;
        report.packs_rewritten = r.packs_rewritten;
        report.chunks_moved = r.chunks_moved;
        report.packs_deleted = r.packs_deleted;
        report.pack_bytes_reclaimed = r.pack_bytes_reclaimed;
        if report.swept > 0 || report.swept_maps > 0 || report.fixed_refcounts > 0 {
            tracing::warn!(?report, "gc repaired the chunk store");
        }
        Ok(report)
    }

    /// One repack pass to completion over every sealed pack, at most
    /// `bytes_per_sec` read and written (`None`: unbounded); see
    /// `repack.rs`. Unlike `gc` it trusts the live records and sweeps
    /// nothing, so it costs what it moves, not a walk of the index.
    pub async fn repack(&self, bytes_per_sec: Option<u64>) -> Result<crate::RepackReport> {
        self.inner
            .repack
            .run(&self.inner, u64::MAX, bytes_per_sec, false)
            .await
    }

    /// Stage refcounts of `level` equal to `actual` (deleting those of
    /// unreferenced objects); returns how many were wrong.
    async fn fix_refcounts(
        &self,
        t: &mut cairn_kv::Txn<'_>,
        level: Level,
        actual: &HashMap<ChunkHash, u64>,
    ) -> Result<u64> {
        let recorded: HashMap<_, _> = cairn_cas::all_refcounts(&self.inner.kv, level)
            .await
            .map_err(cas_err)?
            .into_iter()
            .collect();
        let mut fixed = 0;
        for (h, n) in actual {
            if recorded.get(h) != Some(n) {
                t.put(level.count_key(*h), cairn_codec::encode_u64(*n));
                fixed += 1;
            }
        }
        for h in recorded.keys() {
            if !actual.contains_key(h) {
                t.delete(level.count_key(*h));
            }
        }
        Ok(fixed)
    }
}
