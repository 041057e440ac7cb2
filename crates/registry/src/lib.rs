//! The dataset and snapshot registry: which datasets and snapshots exist,
//! their names, generations, origins and flags.
//!
//! Owns: the registry records (one per dataset at `Dataset(id)`, one per
//! snapshot at `Snapshot(tree, generation)`, the default dataset and the
//! tree-id counter under `Meta`), name rules, `dataset@snapshot` addressing,
//! and an in-memory copy the single writer keeps in step with the store.
//!
//! Must never know: how snapshots are freed or rolled back (the snapshot
//! crate), file data, paths, NFS or protobuf.

use std::collections::BTreeMap;

use bytes::Bytes;
use cairn_codec::{Key, KeyPrefix, Reader, Timestamp, decode_u64, encode_u64};
use cairn_kv::{Kv, KvError, Txn};
use cairn_meta::{Lineage, MAX_CLONE_DEPTH, TreeState, View};

/// Longest dataset or snapshot name, in bytes.
pub const NAME_MAX: usize = 255;
/// Name of the dataset a new store starts with.
pub const ROOT_DATASET: &str = "root";
/// Largest dataset or snapshot id a store hands out (2^24 - 1): protocol
/// front ends pack a view id and an inode number into one 64-bit file id.
pub const MAX_VIEW_ID: u64 = (1 << 24) - 1;

const META_DEFAULT: &[u8] = b"registry.default";
const META_NEXT_TREE: &[u8] = b"registry.next_tree";
/// Prefix of the markers of deleted datasets whose trees are still being
/// freed (followed by the tree id, big-endian).
const META_FREEING: &[u8] = b"registry.freeing.";
/// Version 2 appends the space counters and quotas (datasets) and the
/// frozen figures (snapshots); version 1 records decode without them.
const RECORD_VERSION: u8 = 2;

/// What went wrong; the kind says what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No dataset or snapshot by that name.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken.
    #[error("{0}")]
    Exists(String),
    /// The name or request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A bare snapshot name matches snapshots of several datasets.
    #[error("{0}")]
    Ambiguous(String),
    /// Refused because something depends on it (snapshots, clones, default).
    #[error("{0}")]
    Busy(String),
    /// A registry record does not decode.
    #[error("corrupt registry record: {0}")]
    Corrupt(String),
    /// The key-value layer failed.
    #[error(transparent)]
    Kv(#[from] KvError),
}

/// Result of registry operations.
pub type Result<T> = std::result::Result<T, RegistryError>;

/// Check a dataset or snapshot name: 1-255 bytes of `[A-Za-z0-9._:-]`, not
/// starting with `.` or `-`.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let bad = |why: &str| RegistryError::Invalid(format!("invalid {what} name {name:?}: {why}"));
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > NAME_MAX {
        return Err(bad(&format!(
            "{} bytes; the limit is {NAME_MAX}",
            name.len()
        )));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(bad("must not start with '.' or '-'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(bad(&format!(
            "{c:?} is not allowed (use letters, digits, '.', '_', ':', '-')"
        )));
    }
    Ok(())
}

/// A snapshot address: `dataset@snapshot`, or a bare snapshot name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSpec {
    /// The dataset, if given.
    pub dataset: Option<String>,
    /// The snapshot name.
    pub snapshot: String,
}

impl SnapshotSpec {
    /// Parse `dataset@snapshot` or `snapshot`.
    pub fn parse(s: &str) -> Result<Self> {
        let (dataset, snapshot) = match s.split_once('@') {
            Some((d, n)) => {
                validate_name("dataset", d)?;
                (Some(d.to_string()), n)
            }
            None => (None, s),
        };
        validate_name("snapshot", snapshot)?;
        Ok(Self {
            dataset,
            snapshot: snapshot.to_string(),
        })
    }
}

impl std::fmt::Display for SnapshotSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.dataset {
            Some(d) => write!(f, "{d}@{}", self.snapshot),
            None => f.write_str(&self.snapshot),
        }
    }
}

/// A dataset: a named writable tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRecord {
    /// Dataset id, which is also its tree id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Random-looking identity, stable for the dataset's life.
    pub uuid: [u8; 16],
    /// Creation time.
    pub created: Timestamp,
    /// The snapshot `(tree, generation)` this dataset was cloned from.
    pub origin: Option<(u64, u64)>,
    /// Chunk size of its files.
    pub chunk_size: u32,
    /// Whether writes are refused.
    pub read_only: bool,
    /// Current generation.
    pub generation: u64,
    /// Generation of its newest live snapshot (0 if none).
    pub last_snapshot: u64,
    /// Inodes in the live tree.
    pub files: u64,
    /// Its space counters; `None` in a record an older build wrote, until
    /// the engine counts them on open.
    pub space: Option<Space>,
    /// Limit on `used` (live data plus what only its snapshots hold).
    pub quota: Option<u64>,
    /// Limit on `referenced` (live data only).
    pub refquota: Option<u64>,
}

/// A dataset's space counters: plain bytes of file data (stored chunks
/// and inline data; holes cost nothing), each kept in the same batch as
/// the records it counts. A chunk shared by dedup counts once per record
/// naming it, as ZFS charges deduplicated blocks to every dataset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Space {
    /// Data the live tree sees, inherited from a clone's origin included
    /// (ZFS `referenced`).
    pub referenced: u64,
    /// Data of the records in its own tree's head: what deleting the
    /// dataset (after its snapshots) would free (ZFS `usedbydataset`).
    pub own: u64,
    /// Data of its history records: what only its snapshots hold, freed if
    /// every snapshot went (ZFS `usedbysnapshots`).
    pub snapshots: u64,
    /// Data of its head records born since its newest snapshot (ZFS
    /// `written`).
    pub written: u64,
}

impl Space {
    /// ZFS `used`: its own live data plus what only its snapshots hold.
    pub fn used(&self) -> u64 {
        self.own.saturating_add(self.snapshots)
    }
}

fn put_opt(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_be_bytes());
        }
        None => out.push(0),
    }
}

fn get_opt(r: &mut Reader<'_>) -> cairn_codec::Result<Option<u64>> {
    Ok(match r.u8()? {
        0 => None,
        _ => Some(r.u64()?),
    })
}

impl DatasetRecord {
    /// The generation state the write rule needs.
    pub fn tree_state(&self) -> TreeState {
        TreeState {
            tree: self.id,
            generation: self.generation,
            last_snapshot: self.last_snapshot,
            has_origin: self.origin.is_some(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        put_str(&mut out, &self.name);
        out.extend_from_slice(&self.uuid);
        put_ts(&mut out, self.created);
        match self.origin {
            Some((t, g)) => {
                out.push(1);
                out.extend_from_slice(&t.to_be_bytes());
                out.extend_from_slice(&g.to_be_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.push(self.read_only as u8);
        for v in [self.generation, self.last_snapshot, self.files] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        match self.space {
            Some(s) => {
                out.push(1);
                for v in [s.referenced, s.own, s.snapshots, s.written] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
            None => out.push(0),
        }
        put_opt(&mut out, self.quota);
        put_opt(&mut out, self.refquota);
        out
    }

    fn decode(id: u64, b: &[u8]) -> cairn_codec::Result<Self> {
        let mut r = Reader::new(b, "dataset record");
        let version = r.u8()?;
        let name = get_str(&mut r)?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(r.take(16)?);
        let created = get_ts(&mut r)?;
        let origin = match r.u8()? {
            0 => None,
            _ => Some((r.u64()?, r.u64()?)),
        };
        let chunk_size = r.u32()?;
        let read_only = r.u8()? != 0;
        let mut rec = Self {
            id,
            name,
            uuid,
            created,
            origin,
            chunk_size,
            read_only,
            generation: r.u64()?,
            last_snapshot: r.u64()?,
            files: r.u64()?,
            space: None,
            quota: None,
            refquota: None,
        };
        if version >= 2 {
            if r.u8()? != 0 {
                rec.space = Some(Space {
                    referenced: r.u64()?,
                    own: r.u64()?,
                    snapshots: r.u64()?,
                    written: r.u64()?,
                });
            }
            rec.quota = get_opt(&mut r)?;
            rec.refquota = get_opt(&mut r)?;
        }
        r.finish()?;
        Ok(rec)
    }
}

/// A snapshot: a frozen generation of one dataset's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The dataset's tree.
    pub tree: u64,
    /// The frozen generation.
    pub generation: u64,
    /// Name, unique within the dataset.
    pub name: String,
    /// Creation time.
    pub created: Timestamp,
    /// Inodes in the tree when it was taken.
    pub files: u64,
    /// Set while it is being destroyed: the end (inclusive) of the dead-list
    /// death range the destruction frees. Hidden from listings.
    pub destroying: Option<u64>,
    /// Its view id: a store-wide number, never reused, from the counter that
    /// also numbers datasets (a dataset's view id is its id). Protocol front
    /// ends name views by it (NFS file handles and file ids).
    pub view_id: u64,
    /// Data it sees (its dataset's `referenced` when it was taken); `None`
    /// for one an older build took.
    pub referenced: Option<u64>,
    /// Data written between the previous snapshot and this one: what it
    /// sees that the previous one does not (ZFS `written`). Grows when the
    /// previous snapshot is deleted. `None` for one an older build took.
    pub written: Option<u64>,
}

impl SnapshotRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        put_str(&mut out, &self.name);
        put_ts(&mut out, self.created);
        out.extend_from_slice(&self.files.to_be_bytes());
        match self.destroying {
            Some(end) => {
                out.push(1);
                out.extend_from_slice(&end.to_be_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.view_id.to_be_bytes());
        put_opt(&mut out, self.referenced);
        put_opt(&mut out, self.written);
        out
    }

    fn decode(tree: u64, generation: u64, b: &[u8]) -> cairn_codec::Result<Self> {
        let mut r = Reader::new(b, "snapshot record");
        let version = r.u8()?;
        let name = get_str(&mut r)?;
        let created = get_ts(&mut r)?;
        let files = r.u64()?;
        let destroying = match r.u8()? {
            0 => None,
            _ => Some(r.u64()?),
        };
        let view_id = r.u64()?;
        let (referenced, written) = if version >= 2 {
            (get_opt(&mut r)?, get_opt(&mut r)?)
        } else {
            (None, None)
        };
        r.finish()?;
        Ok(Self {
            tree,
            generation,
            name,
            created,
            files,
            destroying,
            view_id,
            referenced,
            written,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn get_str(r: &mut Reader<'_>) -> cairn_codec::Result<String> {
    let n = r.u16()? as usize;
    let b = r.take(n)?;
    String::from_utf8(b.to_vec()).map_err(|_| cairn_codec::CodecError::Malformed {
        what: "registry name",
        reason: "not UTF-8",
    })
}

fn put_ts(out: &mut Vec<u8>, t: Timestamp) {
    out.extend_from_slice(&t.sec.to_be_bytes());
    out.extend_from_slice(&t.nsec.to_be_bytes());
}

fn get_ts(r: &mut Reader<'_>) -> cairn_codec::Result<Timestamp> {
    Ok(Timestamp {
        sec: r.i64()?,
        nsec: r.u32()?,
    })
}

fn meta(name: &[u8]) -> Vec<u8> {
    Key::Meta(name.to_vec()).encode()
}

fn freeing_key(id: u64) -> Vec<u8> {
    let mut name = META_FREEING.to_vec();
    name.extend_from_slice(&id.to_be_bytes());
    meta(&name)
}

/// The registry as the writer sees it. Mutations update this copy and stage
/// the matching records in a transaction; the caller commits it.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    datasets: BTreeMap<u64, DatasetRecord>,
    snapshots: BTreeMap<(u64, u64), SnapshotRecord>,
    default: u64,
    next_tree: u64,
    /// Trees of deleted datasets whose records are still being freed.
    freeing: std::collections::BTreeSet<u64>,
}

impl Registry {
    /// The committed record of dataset `id` as `kv` sees it now (counters
    /// such as `files` change with every operation, without the registry).
    pub async fn read_dataset(kv: &Kv, id: u64) -> Result<Option<DatasetRecord>> {
        match kv.get(&Key::Dataset(id).encode()).await? {
            Some(v) => DatasetRecord::decode(id, &v)
                .map(Some)
                .map_err(|e| RegistryError::Corrupt(format!("dataset {id}: {e}"))),
            None => Ok(None),
        }
    }

    /// Every committed dataset record as `kv` sees it now, in one scan.
    pub async fn read_datasets(kv: &Kv) -> Result<Vec<DatasetRecord>> {
        let (s, e) = Key::prefix_range(KeyPrefix::Dataset);
        let mut out = Vec::new();
        for (k, v) in kv.scan(&s, &e, usize::MAX).await? {
            let Ok(Key::Dataset(id)) = Key::decode(&k) else {
                return Err(RegistryError::Corrupt(format!("bad dataset key {k:?}")));
            };
            out.push(
                DatasetRecord::decode(id, &v)
                    .map_err(|e| RegistryError::Corrupt(format!("dataset {id}: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Load every registry record.
    pub async fn load(kv: &Kv) -> Result<Self> {
        let mut reg = Registry::default();
        for rec in Self::read_datasets(kv).await? {
            reg.datasets.insert(rec.id, rec);
        }
        let (s, e) = Key::prefix_range(KeyPrefix::Snapshot);
        for (k, v) in kv.scan(&s, &e, usize::MAX).await? {
            let Ok(Key::Snapshot { tree, generation }) = Key::decode(&k) else {
                return Err(RegistryError::Corrupt(format!("bad snapshot key {k:?}")));
            };
            let rec = SnapshotRecord::decode(tree, generation, &v).map_err(|e| {
                RegistryError::Corrupt(format!("snapshot ({tree}, {generation}): {e}"))
            })?;
            reg.snapshots.insert((tree, generation), rec);
        }
        let read = async |name: &[u8]| -> Result<Option<u64>> {
            match kv.get(&meta(name)).await? {
                Some(b) => decode_u64(&b).map(Some).map_err(|e| {
                    RegistryError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(name)))
                }),
                None => Ok(None),
            }
        };
        let start = meta(META_FREEING);
        let mut end = start.clone();
        end.push(0xff);
        for (k, _) in kv.scan(&start, &end, usize::MAX).await? {
            let id = k
                .get(start.len()..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| RegistryError::Corrupt(format!("bad freeing marker {k:?}")))?;
            reg.freeing.insert(id);
        }
        reg.default = read(META_DEFAULT).await?.unwrap_or(0);
        reg.next_tree = read(META_NEXT_TREE)
            .await?
            .unwrap_or_else(|| reg.datasets.keys().max().map_or(1, |m| m + 1));
        Ok(reg)
    }

    /// Every dataset, by id.
    pub fn datasets(&self) -> impl Iterator<Item = &DatasetRecord> {
        self.datasets.values()
    }

    /// The dataset with id `id`.
    pub fn dataset(&self, id: u64) -> Option<&DatasetRecord> {
        self.datasets.get(&id)
    }

    /// The dataset named `name`.
    pub fn by_name(&self, name: &str) -> Result<&DatasetRecord> {
        self.datasets
            .values()
            .find(|d| d.name == name)
            .ok_or_else(|| RegistryError::NotFound(format!("no dataset named {name:?}")))
    }

    /// The default dataset's id (0 if none is set).
    pub fn default_id(&self) -> u64 {
        self.default
    }

    /// Live (not being destroyed) snapshots of `tree`, oldest first.
    pub fn snapshots_of(&self, tree: u64) -> Vec<&SnapshotRecord> {
        self.snapshots
            .range((tree, 0)..=(tree, u64::MAX))
            .map(|(_, s)| s)
            .filter(|s| s.destroying.is_none())
            .collect()
    }

    /// The generations of the live snapshots of `tree` just before
    /// `generation` (0 if none) and just after it (`None`: the live head
    /// comes next).
    pub fn neighbours(&self, tree: u64, generation: u64) -> (u64, Option<u64>) {
        let live = self.snapshots_of(tree);
        let prev = live
            .iter()
            .map(|s| s.generation)
            .filter(|g| *g < generation)
            .max()
            .unwrap_or(0);
        let next = live.iter().map(|s| s.generation).find(|g| *g > generation);
        (prev, next)
    }

    /// Every snapshot record of every tree, destroying ones included.
    pub fn all_snapshots(&self) -> impl Iterator<Item = &SnapshotRecord> {
        self.snapshots.values()
    }

    /// The snapshot record at `(tree, generation)`.
    pub fn snapshot(&self, tree: u64, generation: u64) -> Option<&SnapshotRecord> {
        self.snapshots.get(&(tree, generation))
    }

    /// Resolve a snapshot address to its record.
    pub fn resolve(&self, spec: &SnapshotSpec) -> Result<&SnapshotRecord> {
        if let Some(ds) = &spec.dataset {
            let d = self.by_name(ds)?;
            return self
                .snapshots_of(d.id)
                .into_iter()
                .find(|s| s.name == spec.snapshot)
                .ok_or_else(|| {
                    RegistryError::NotFound(format!("dataset {ds:?} has no snapshot {spec}"))
                });
        }
        let hits: Vec<&SnapshotRecord> = self
            .snapshots
            .values()
            .filter(|s| s.destroying.is_none() && s.name == spec.snapshot)
            .collect();
        match hits.as_slice() {
            [one] => Ok(one),
            [] => Err(RegistryError::NotFound(format!(
                "no snapshot named {:?}",
                spec.snapshot
            ))),
            many => Err(RegistryError::Ambiguous(format!(
                "snapshot name {:?} is ambiguous; say which: {}",
                spec.snapshot,
                many.iter()
                    .map(|s| format!("{}@{}", self.name_of(s.tree), s.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The name of dataset `id`, or `#id` if it is unknown.
    pub fn name_of(&self, id: u64) -> String {
        self.datasets
            .get(&id)
            .map_or_else(|| format!("#{id}"), |d| d.name.clone())
    }

    /// Datasets cloned from snapshot `(tree, generation)`.
    pub fn clones_of(&self, tree: u64, generation: u64) -> Vec<&DatasetRecord> {
        self.datasets
            .values()
            .filter(|d| d.origin == Some((tree, generation)))
            .collect()
    }

    /// The origin chain of dataset `id`, nearest first.
    pub fn lineage(&self, id: u64) -> Result<Lineage> {
        let mut links = Vec::new();
        let mut cur = self.datasets.get(&id);
        while let Some(d) = cur {
            let Some((t, g)) = d.origin else { break };
            links.push((t, g));
            if links.len() > MAX_CLONE_DEPTH {
                return Err(RegistryError::Corrupt(format!(
                    "dataset {:?} has an origin chain deeper than {MAX_CLONE_DEPTH}",
                    d.name
                )));
            }
            cur = self.datasets.get(&t);
        }
        Lineage::new(&links).ok_or_else(|| {
            RegistryError::Corrupt(format!("origin chain of dataset {id} is too deep"))
        })
    }

    /// The live view of dataset `id`.
    pub fn head_view(&self, id: u64) -> Result<View> {
        Ok(View {
            tree: id,
            at: None,
            lineage: self.lineage(id)?,
        })
    }

    /// The view of snapshot `(tree, generation)`.
    pub fn snapshot_view(&self, tree: u64, generation: u64) -> Result<View> {
        Ok(View {
            tree,
            at: Some(generation),
            lineage: self.lineage(tree)?,
        })
    }

    /// Check a new dataset name is valid and free.
    pub fn check_new_dataset_name(&self, name: &str) -> Result<()> {
        validate_name("dataset", name)?;
        if self.datasets.values().any(|d| d.name == name) {
            return Err(RegistryError::Exists(format!(
                "a dataset named {name:?} already exists"
            )));
        }
        Ok(())
    }

    /// Allocate an id for a new dataset (its tree id) or snapshot (its view
    /// id), staging the counter. Ids are never reused. Refused past
    /// [`MAX_VIEW_ID`].
    pub fn alloc_tree(&mut self, txn: &mut Txn<'_>) -> Result<u64> {
        let id = self.next_tree.max(1);
        if id > MAX_VIEW_ID {
            return Err(RegistryError::Busy(format!(
                "this store has used all {MAX_VIEW_ID} dataset and snapshot ids"
            )));
        }
        self.next_tree = id + 1;
        txn.put(meta(META_NEXT_TREE), encode_u64(self.next_tree));
        Ok(id)
    }

    /// The dataset or live snapshot whose view id is `id`: `(tree, None)`
    /// for a dataset head, `(tree, Some(generation))` for a snapshot.
    pub fn view_by_id(&self, id: u64) -> Option<(u64, Option<u64>)> {
        if self.datasets.contains_key(&id) {
            return Some((id, None));
        }
        self.snapshots
            .values()
            .find(|s| s.view_id == id && s.destroying.is_none())
            .map(|s| (s.tree, Some(s.generation)))
    }

    /// A new dataset record (not yet stored).
    pub fn new_dataset(
        id: u64,
        name: &str,
        chunk_size: u32,
        origin: Option<(u64, u64)>,
        files: u64,
    ) -> DatasetRecord {
        let created = Timestamp::now();
        let seed = format!("{id}/{name}/{}/{}", created.sec, created.nsec);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..16]);
        // RFC 4122 version 4 / variant bits, so it prints like a UUID.
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        DatasetRecord {
            id,
            name: name.to_string(),
            uuid,
            created,
            origin,
            chunk_size,
            read_only: false,
            generation: 1,
            last_snapshot: 0,
            files,
            space: Some(Space::default()),
            quota: None,
            refquota: None,
        }
    }

    /// Store (create or replace) a dataset record.
    pub fn put_dataset(&mut self, txn: &mut Txn<'_>, rec: DatasetRecord) {
        txn.put(Key::Dataset(rec.id).encode(), rec.encode());
        self.datasets.insert(rec.id, rec);
    }

    /// Remove a dataset record and mark its tree as being freed: the
    /// dataset is gone at once; its records are freed afterwards, in
    /// batches, and [`Registry::end_free`] drops the mark. A crash between
    /// leaves the mark, so the work resumes on the next open.
    pub fn remove_dataset(&mut self, txn: &mut Txn<'_>, id: u64) {
        txn.delete(Key::Dataset(id).encode());
        txn.put(freeing_key(id), Vec::new());
        self.datasets.remove(&id);
        self.freeing.insert(id);
    }

    /// The tree of a deleted dataset is wholly freed: drop its mark.
    pub fn end_free(&mut self, txn: &mut Txn<'_>, id: u64) {
        txn.delete(freeing_key(id));
        self.freeing.remove(&id);
    }

    /// Trees of deleted datasets still being freed.
    pub fn freeing(&self) -> impl Iterator<Item = u64> + '_ {
        self.freeing.iter().copied()
    }

    /// Whether `tree` belongs to a deleted dataset still being freed.
    pub fn is_freeing(&self, tree: u64) -> bool {
        self.freeing.contains(&tree)
    }

    /// Make dataset `id` the default.
    pub fn set_default(&mut self, txn: &mut Txn<'_>, id: u64) {
        self.default = id;
        txn.put(meta(META_DEFAULT), encode_u64(id));
    }

    /// Store (create or replace) a snapshot record.
    pub fn put_snapshot(&mut self, txn: &mut Txn<'_>, rec: SnapshotRecord) {
        txn.put(
            Key::Snapshot {
                tree: rec.tree,
                generation: rec.generation,
            }
            .encode(),
            rec.encode(),
        );
        self.snapshots.insert((rec.tree, rec.generation), rec);
    }

    /// Remove a snapshot record.
    pub fn remove_snapshot(&mut self, txn: &mut Txn<'_>, tree: u64, generation: u64) {
        txn.delete(Key::Snapshot { tree, generation }.encode());
        self.snapshots.remove(&(tree, generation));
    }

    /// Update a dataset's in-memory copy only (the caller staged the record).
    pub fn refresh_dataset(&mut self, rec: DatasetRecord) {
        self.datasets.insert(rec.id, rec);
    }

    /// Encoded form of a dataset record (for callers staging it themselves).
    pub fn encode_dataset(rec: &DatasetRecord) -> (Vec<u8>, Bytes) {
        (Key::Dataset(rec.id).encode(), Bytes::from(rec.encode()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in ["root", "a", "home.v2", "x_y:z-1", "A9"] {
            assert!(validate_name("dataset", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            "a@b",
            "é",
            &"n".repeat(256),
        ] {
            let e = validate_name("dataset", bad).expect_err(bad);
            assert!(matches!(e, RegistryError::Invalid(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn specs_parse() -> Result<()> {
        assert_eq!(
            SnapshotSpec::parse("home@monday")?,
            SnapshotSpec {
                dataset: Some("home".into()),
                snapshot: "monday".into()
            }
        );
        assert_eq!(SnapshotSpec::parse("monday")?.dataset, None);
        assert!(SnapshotSpec::parse("home@").is_err());
        assert!(SnapshotSpec::parse("@x").is_err());
        assert!(SnapshotSpec::parse("a@b@c").is_err());
        Ok(())
    }

    #[tokio::test]
    async fn records_round_trip_through_the_store() -> Result<()> {
        let kv = Kv::open("memory://", Default::default()).await?;
        let mut reg = Registry::load(&kv).await?;
        let mut t = kv.txn();
        let id = reg.alloc_tree(&mut t)?;
        let mut d = Registry::new_dataset(id, "home", 65536, Some((9, 4)), 3);
        d.generation = 7;
        d.quota = Some(1 << 30);
        d.space = Some(Space {
            referenced: 5,
            own: 4,
            snapshots: 3,
            written: 2,
        });
        reg.put_dataset(&mut t, d.clone());
        reg.set_default(&mut t, id);
        let s = SnapshotRecord {
            tree: id,
            generation: 6,
            name: "monday".into(),
            created: Timestamp::now(),
            files: 3,
            destroying: None,
            view_id: 12,
            referenced: Some(4096),
            written: None,
        };
        reg.put_snapshot(&mut t, s.clone());
        t.commit().await?;
        let back = Registry::load(&kv).await?;
        assert_eq!(back.dataset(id), Some(&d));
        assert_eq!(back.snapshot(id, 6), Some(&s));
        assert_eq!(back.default_id(), id);
        assert_eq!(back.view_by_id(12), Some((id, Some(6))));
        assert_eq!(back.view_by_id(id), Some((id, None)));
        assert_eq!(back.view_by_id(99), None);
        assert_eq!(back.resolve(&SnapshotSpec::parse("home@monday")?)?, &s);
        assert_eq!(back.resolve(&SnapshotSpec::parse("monday")?)?, &s);
        assert!(matches!(
            back.resolve(&SnapshotSpec::parse("tuesday")?),
            Err(RegistryError::NotFound(_))
        ));
        Ok(())
    }
}
