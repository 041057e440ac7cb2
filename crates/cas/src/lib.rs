//! Content-addressed chunk store with exact refcounts.
//!
//! Owns: the chunk index (BLAKE3 hash of a chunk's plaintext -> its
//! [`Location`] in a pack object, see `cairn-pack`), new chunks appended as
//! frames (LZ4 when that helps) to the open pack, chunks read back in
//! batches and verified against their hash on every read; extent maps
//! (lists of chunk addresses, [`ExtentMap`]) keyed by the hash of their
//! encoding, verified the same way; one refcount per chunk and per map; the
//! live chunks and bytes of each pack ([`PackLive`]); store-wide chunk
//! statistics.
//!
//! Two levels of references: extent records name maps, maps name chunks.
//! refcount(map) == number of extent records naming it (the caller's
//! business); refcount(chunk) == number of slots of stored maps naming it
//! (kept here: storing a map adds one to each of its chunks, deleting it takes
//! one away). Changes are collected in a [`Pending`] set and applied inside
//! the caller's transaction, so counts change in the same atomic batch as the
//! records that name them; whatever reaches zero is deleted in that batch,
//! and its bytes leave its pack's live count in that batch too.
//!
//! Must never know: paths, inodes, datasets, snapshots, NFS or protobuf. It
//! sees hashes, maps and bytes only.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use cairn_codec::{ChunkHash, ExtentMap, Key, KeyPrefix, decode_u64, encode_u64};
use cairn_kv::{Kv, KvError, Txn};

pub use cairn_codec::ChunkHash as Hash;

const STATS_KEY: &[u8] = b"cas.stats";

pub use cairn_pack::{
    DEFAULT_CACHE_BYTES, DEFAULT_PACK_BYTES, DEFAULT_REMOTE_PACK_BYTES, DirEntry, Location,
    PackError, PackStore, Packer, decode_frame, encode_frame, parse_pack,
};

/// What went wrong in the chunk store.
#[derive(Debug, thiserror::Error)]
pub enum CasError {
    /// A chunk's or map's bytes do not hash to its address or do not decode:
    /// the store is damaged. Never returns data.
    #[error("chunk {hash} is corrupt: {reason}")]
    Corrupt {
        /// Hex of the chunk's address.
        hash: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A map or chunk looked up by address is not stored. Either a record
    /// that names it was replaced while a lock-free reader held it (read
    /// again), or the store is damaged.
    #[error("{what} {hash} is missing")]
    Missing {
        /// `"chunk"`, `"map"` or `"pack"`.
        what: &'static str,
        /// Hex of its address (a pack's id).
        hash: String,
    },
    /// The object store failed a pack request: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The key-value layer failed.
    #[error(transparent)]
    Kv(#[from] KvError),
}

/// Result of chunk store operations.
pub type Result<T> = std::result::Result<T, CasError>;

fn corrupt(hash: &ChunkHash, reason: impl Into<String>) -> CasError {
    CasError::Corrupt {
        hash: hash.to_hex(),
        reason: reason.into(),
    }
}

impl From<PackError> for CasError {
    fn from(e: PackError) -> Self {
        match e {
            PackError::BadFrame { hash, reason } => CasError::Corrupt { hash, reason },
            PackError::Corrupt { pack, reason } => CasError::Corrupt {
                hash: format!("pack {pack:016x}"),
                reason,
            },
            PackError::Missing { pack } => CasError::Missing {
                what: "pack",
                hash: format!("{pack:016x}"),
            },
            PackError::Store(m) => CasError::Unavailable(m),
        }
    }
}

/// Where chunk `hash` is stored, from the index.
pub async fn locate(kv: &Kv, hash: &ChunkHash) -> Result<Location> {
    match kv.get(&Key::Chunk(*hash).encode()).await? {
        Some(v) => decode_location(hash, &v),
        None => Err(CasError::Missing {
            what: "chunk",
            hash: hash.to_hex(),
        }),
    }
}

/// Decode an index entry.
pub fn decode_location(hash: &ChunkHash, v: &[u8]) -> Result<Location> {
    Location::decode(v).ok_or_else(|| corrupt(hash, "index entry is malformed"))
}

/// Read and verify one chunk.
pub async fn read_chunk(
    kv: &Kv,
    packer: &Packer,
    hash: &ChunkHash,
    max_len: usize,
) -> Result<Bytes> {
    let mut v = read_chunks(kv, packer, std::slice::from_ref(hash), max_len).await?;
    Ok(v.pop().unwrap_or_default())
}

/// Read and verify chunks: their locations are looked up together, then
/// the frames of each pack are fetched with coalesced ranged reads.
pub async fn read_chunks(
    kv: &Kv,
    packer: &Packer,
    hashes: &[ChunkHash],
    max_len: usize,
) -> Result<Vec<Bytes>> {
    let frames = fetch_frames(kv, packer, hashes).await?;
    decode_frames(hashes, &frames, max_len)
}

/// The stored frames of chunks, not yet verified (the I/O half of
/// [`read_chunks`], so a caller can verify elsewhere, off its thread):
/// locations looked up together, then coalesced reads per pack.
pub async fn fetch_frames(kv: &Kv, packer: &Packer, hashes: &[ChunkHash]) -> Result<Vec<Bytes>> {
    let locs = futures::future::try_join_all(hashes.iter().map(|h| locate(kv, h))).await?;
    Ok(packer.read_frames(&locs).await?)
}

/// Decode and verify `frames` against `hashes` (the CPU half of
/// [`read_chunks`]): each chunk's plaintext, at most `max_len` bytes.
pub fn decode_frames(hashes: &[ChunkHash], frames: &[Bytes], max_len: usize) -> Result<Vec<Bytes>> {
    hashes
        .iter()
        .zip(frames)
        .map(|(h, f)| Ok(decode_frame(h, f, max_len)?))
        .collect()
}

/// Read the frames at `located` and verify each against its chunk (for
/// fsck and scrub): one batched read, or one read per frame if the batch
/// fails, so a failure names the chunks it hits. Returns the failures with
/// what is wrong.
pub async fn verify_frames(
    packer: &Packer,
    located: &[(ChunkHash, Location)],
) -> Vec<(ChunkHash, Location, String)> {
    let check = |h: &ChunkHash, f: &Bytes| decode_frame(h, f, 1 << 20).err().map(|e| e.to_string());
    let locs: Vec<Location> = located.iter().map(|(_, l)| *l).collect();
    let mut bad = Vec::new();
    match packer.read_frames(&locs).await {
        Ok(frames) => {
            for ((h, l), f) in located.iter().zip(frames) {
                if let Some(e) = check(h, &f) {
                    bad.push((*h, *l, e));
                }
            }
        }
        Err(_) => {
            for (h, l) in located {
                let e = match packer.read_frames(std::slice::from_ref(l)).await {
                    Ok(f) => check(h, &f.into_iter().next().unwrap_or_default()),
                    Err(e) => Some(format!("chunk {}: {e}", h.to_hex())),
                };
                if let Some(e) = e {
                    bad.push((*h, *l, e));
                }
            }
        }
    }
    bad
}

/// Live chunks and bytes of one pack, kept in the same batches as the
/// index entries that point into it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackLive {
    /// Index entries pointing into the pack.
    pub chunks: u64,
    /// Their frame bytes.
    pub bytes: u64,
}

impl PackLive {
    /// Encode as a record value.
    pub fn encode(&self) -> Vec<u8> {
        cairn_codec::encode_u64s(&[self.chunks, self.bytes])
    }

    /// Decode a record value.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let [chunks, bytes] = cairn_codec::decode_u64s(b)?;
        Some(Self { chunks, bytes })
    }
}

/// The live record of pack `id` as `txn` sees it.
pub async fn pack_live(txn: &Txn<'_>, id: u64) -> Result<PackLive> {
    match txn.get(&Key::Pack(id).encode()).await? {
        Some(b) => PackLive::decode(&b).ok_or_else(|| CasError::Corrupt {
            hash: format!("pack {id:016x}"),
            reason: "live-bytes record is malformed".into(),
        }),
        None => Ok(PackLive::default()),
    }
}

/// Add signed deltas `(chunks, bytes)` to packs' live records in `txn`.
/// A pack left with nothing live keeps a zero record until gc deletes it.
pub async fn add_pack_live(txn: &mut Txn<'_>, deltas: &HashMap<u64, (i64, i64)>) -> Result<()> {
    let mut ids: Vec<u64> = deltas.keys().copied().collect();
    ids.sort_unstable();
    let olds = futures::future::try_join_all(ids.iter().map(|id| pack_live(txn, *id))).await?;
    for (id, old) in ids.into_iter().zip(olds) {
        let (dc, db) = deltas[&id];
        let chunks = old.chunks as i128 + dc as i128;
        let bytes = old.bytes as i128 + db as i128;
        if chunks < 0 || bytes < 0 {
            return Err(CasError::Corrupt {
                hash: format!("pack {id:016x}"),
                reason: format!(
                    "live count would go negative ({} chunks {dc:+}, {} bytes {db:+})",
                    old.chunks, old.bytes
                ),
            });
        }
        let new = PackLive {
            chunks: chunks as u64,
            bytes: bytes as u64,
        };
        txn.put(Key::Pack(id).encode(), new.encode());
    }
    Ok(())
}

/// Read a chunk's refcount (0 if it has none).
pub async fn refcount(kv: &Kv, hash: &ChunkHash) -> Result<u64> {
    match kv.get(&Key::Ref(*hash).encode()).await? {
        Some(v) => decode_u64(&v).map_err(|e| corrupt(hash, format!("refcount: {e}"))),
        None => Ok(0),
    }
}

/// Read and verify one extent map.
pub async fn read_map(kv: &Kv, hash: &ChunkHash) -> Result<ExtentMap> {
    match kv.get(&Key::Map(*hash).encode()).await? {
        Some(stored) => decode_map(hash, &stored),
        None => Err(CasError::Missing {
            what: "map",
            hash: hash.to_hex(),
        }),
    }
}

/// Decode stored map bytes and verify them against `hash`.
pub fn decode_map(hash: &ChunkHash, stored: &[u8]) -> Result<ExtentMap> {
    if ChunkHash::of(stored) != *hash {
        return Err(corrupt_map(hash, "content does not match its hash"));
    }
    ExtentMap::decode(stored).map_err(|e| corrupt_map(hash, e.to_string()))
}

fn corrupt_map(hash: &ChunkHash, reason: impl Into<String>) -> CasError {
    CasError::Corrupt {
        hash: format!("map {}", hash.to_hex()),
        reason: reason.into(),
    }
}

/// Read an extent map's refcount (0 if it has none).
pub async fn map_refcount(kv: &Kv, hash: &ChunkHash) -> Result<u64> {
    match kv.get(&Key::MapRef(*hash).encode()).await? {
        Some(v) => decode_u64(&v).map_err(|e| corrupt_map(hash, format!("refcount: {e}"))),
        None => Ok(0),
    }
}

/// Store-wide chunk statistics, kept exact in the same batches as refcounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkStats {
    /// Number of distinct chunks stored.
    pub chunks: u64,
    /// Bytes stored for them (after compression).
    pub stored_bytes: u64,
    /// Their plaintext bytes (each distinct chunk once).
    pub plain_bytes: u64,
}

impl ChunkStats {
    fn encode(&self) -> Vec<u8> {
        cairn_codec::encode_u64s(&[self.chunks, self.stored_bytes, self.plain_bytes])
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let [chunks, stored_bytes, plain_bytes] = cairn_codec::decode_u64s(b)?;
        Some(Self {
            chunks,
            stored_bytes,
            plain_bytes,
        })
    }
}

/// Read the store-wide chunk statistics.
pub async fn stats(kv: &Kv) -> Result<ChunkStats> {
    match kv.get(&Key::Meta(STATS_KEY.to_vec()).encode()).await? {
        Some(b) => ChunkStats::decode(&b).ok_or_else(|| CasError::Corrupt {
            hash: "-".into(),
            reason: "chunk statistics record is malformed".into(),
        }),
        None => Ok(ChunkStats::default()),
    }
}

/// A chunk staged in a [`Pending`] set: its plaintext and, when the caller
/// encoded it already (off the thread that serves requests), its frame.
struct Staged {
    data: Bytes,
    frame: Option<Bytes>,
}

/// Refcount changes, new chunk contents and new maps collected during one
/// operation, applied with [`Pending::apply`] into its transaction.
#[derive(Default)]
pub struct Pending {
    /// Map refcount deltas.
    maps: HashMap<ChunkHash, i64>,
    /// New maps, stored if their count leaves zero.
    staged_maps: HashMap<ChunkHash, ExtentMap>,
    /// New chunk contents, stored if a stored map comes to name them.
    staged: HashMap<ChunkHash, Staged>,
    /// Store chunks as they are (no LZ4 attempt).
    raw: bool,
    /// Where new chunks are appended (a set without one can only move
    /// references and free chunks).
    packer: Option<Arc<Packer>>,
}

impl Pending {
    /// An empty set of changes that stores no new chunks (snapshot delete,
    /// promote, restore: they move references and free what reaches zero).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set of changes that appends new chunks to `packer`'s open
    /// pack, LZ4-compressed where that saves space if `compress`.
    pub fn with_packer(packer: Arc<Packer>, compress: bool) -> Self {
        Self {
            raw: !compress,
            packer: Some(packer),
            ..Self::default()
        }
    }

    /// Stage chunk content (stored only if a map stored in this set names
    /// it and it is not stored yet). Returns its address.
    pub fn stage(&mut self, data: Bytes) -> ChunkHash {
        let hash = ChunkHash::of(&data);
        self.staged
            .entry(hash)
            .or_insert(Staged { data, frame: None });
        hash
    }

    /// Stage chunk content whose address and frame the caller computed
    /// ([`prepare`]), so this set does no hashing or compression.
    pub fn stage_prepared(&mut self, p: Prepared) -> ChunkHash {
        self.staged.entry(p.hash).or_insert(Staged {
            data: p.data,
            frame: Some(p.frame),
        });
        p.hash
    }

    /// Content staged in this set under `hash` (not yet in the store).
    pub fn staged(&self, hash: &ChunkHash) -> Option<Bytes> {
        self.staged.get(hash).map(|s| s.data.clone())
    }

    /// Reference a map with these slots (storing it if it is new; its
    /// chunks must be stored or staged). `map` must be canonical
    /// ([`ExtentMap::trim`]). Returns its address.
    pub fn put_map(&mut self, map: ExtentMap) -> ChunkHash {
        let hash = map.hash();
        self.staged_maps.entry(hash).or_insert(map);
        *self.maps.entry(hash).or_default() += 1;
        hash
    }

    /// Add a reference to a map that is already stored and referenced (a
    /// restore or promote copying an extent record that keeps naming it).
    /// Applied as a blind counter addition: no read of the refcount.
    pub fn incref_map(&mut self, hash: ChunkHash) {
        *self.maps.entry(hash).or_default() += 1;
    }

    /// Drop a reference to a map.
    pub fn decref_map(&mut self, hash: ChunkHash) {
        *self.maps.entry(hash).or_default() -= 1;
    }

    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.maps.values().all(|d| *d == 0)
    }

    /// Write the refcount changes, new maps and chunks, and deletions of
    /// whatever reaches zero into `txn`. Fails (leaving `txn` to be
    /// dropped) if a count would go negative, a new map was not staged or a
    /// new chunk's content was not: bugs or corruption, never input errors.
    pub async fn apply(self, txn: &mut Txn<'_>) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        // Maps first: storing one references its chunks, deleting one
        // releases them.
        let (created, freed) = apply_counts(txn, Level::Maps, &self.maps, |h| {
            !self.staged_maps.contains_key(h)
        })
        .await?;
        let mut chunks: HashMap<ChunkHash, i64> = HashMap::new();
        let mut count = |map: &ExtentMap, sign: i64| {
            for (_, c) in map.chunks() {
                *chunks.entry(c.hash).or_default() += sign;
            }
        };
        for hash in created {
            let Some(map) = self.staged_maps.get(&hash) else {
                return Err(corrupt_map(&hash, "referenced before it was stored"));
            };
            count(map, 1);
            txn.put(Key::Map(hash).encode(), map.encode());
        }
        let keys: Vec<Vec<u8>> = freed.iter().map(|h| Key::Map(*h).encode()).collect();
        for (hash, stored) in freed.iter().zip(get_all(txn, &keys).await?) {
            match (self.staged_maps.get(hash), stored) {
                (Some(map), _) => count(map, -1),
                (None, Some(stored)) => count(&decode_map(hash, &stored)?, -1),
                (None, None) => return Err(corrupt_map(hash, "freed map is missing")),
            }
        }
        for key in keys {
            txn.delete(key);
        }

        // Then chunks. A chunk gaining references without staged content is
        // named by a map already stored (its slot was kept): it stays, so its
        // count is added to blindly.
        let (created, freed) = apply_counts(txn, Level::Chunks, &chunks, |h| {
            !self.staged.contains_key(h)
        })
        .await?;
        if created.is_empty() && freed.is_empty() {
            return Ok(());
        }
        let stats_key = Key::Meta(STATS_KEY.to_vec()).encode();
        let mut st = match txn.get(&stats_key).await? {
            Some(b) => ChunkStats::decode(&b).ok_or_else(|| CasError::Corrupt {
                hash: "-".into(),
                reason: "chunk statistics record is malformed".into(),
            })?,
            None => ChunkStats::default(),
        };
        let mut live: HashMap<u64, (i64, i64)> = HashMap::new();
        if !created.is_empty() {
            let Some(packer) = self.packer.as_ref() else {
                return Err(CasError::Corrupt {
                    hash: created[0].to_hex(),
                    reason: "a new chunk was staged in a set that stores none".into(),
                });
            };
            for hash in created {
                let Some(staged) = self.staged.get(&hash) else {
                    return Err(corrupt(&hash, "referenced before it was stored"));
                };
                let frame = match &staged.frame {
                    Some(f) => f.clone(),
                    None => Bytes::from(encode_frame(&staged.data, !self.raw)),
                };
                let (loc, _full) = packer.append(hash, &frame, staged.data.len() as u32);
                st.chunks += 1;
                st.stored_bytes += loc.len as u64;
                st.plain_bytes += loc.plain as u64;
                let e = live.entry(loc.pack).or_default();
                e.0 += 1;
                e.1 += loc.len as i64;
                txn.put(Key::Chunk(hash).encode(), loc.encode());
            }
        }
        let keys: Vec<Vec<u8>> = freed.iter().map(|h| Key::Chunk(*h).encode()).collect();
        for (hash, stored) in freed.iter().zip(get_all(txn, &keys).await?) {
            let Some(stored) = stored else {
                return Err(corrupt(hash, "freed chunk has no index entry"));
            };
            let loc = decode_location(hash, &stored)?;
            st.chunks = st.chunks.saturating_sub(1);
            st.stored_bytes = st.stored_bytes.saturating_sub(loc.len as u64);
            st.plain_bytes = st.plain_bytes.saturating_sub(loc.plain as u64);
            let e = live.entry(loc.pack).or_default();
            e.0 -= 1;
            e.1 -= loc.len as i64;
        }
        for key in keys {
            txn.delete(key);
        }
        add_pack_live(txn, &live).await?;
        txn.put(stats_key, st.encode());
        Ok(())
    }
}

/// A chunk hashed and encoded ahead of its operation, off the thread
/// that serves requests.
pub struct Prepared {
    /// Its address.
    pub hash: ChunkHash,
    /// Its plaintext.
    pub data: Bytes,
    /// Its frame.
    pub frame: Bytes,
}

/// Hash and encode a chunk (CPU work: run it on a blocking thread).
pub fn prepare(data: Bytes, compress: bool) -> Prepared {
    Prepared {
        hash: ChunkHash::of(&data),
        frame: Bytes::from(encode_frame(&data, compress)),
        data,
    }
}

/// Read `keys` through `txn`, concurrently (a batch's reads would otherwise
/// wait on each other: a snapshot delete reads thousands of counts).
async fn get_all(txn: &Txn<'_>, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>> {
    Ok(futures::future::try_join_all(keys.iter().map(|k| txn.get(k))).await?)
}

/// Add each delta to the refcount of that object of `level`. A positive
/// delta is added without reading the count if `blind` says the object is
/// known to be stored and referenced; other counts are read (all at once)
/// and written back. Returns the objects whose count left zero (to store)
/// and those whose count reached zero (to delete). Fails if a count would go
/// negative or does not decode.
async fn apply_counts(
    txn: &mut Txn<'_>,
    level: Level,
    deltas: &HashMap<ChunkHash, i64>,
    blind: impl Fn(&ChunkHash) -> bool,
) -> Result<(Vec<ChunkHash>, Vec<ChunkHash>)> {
    let bad = |h: &ChunkHash, reason: String| match level {
        Level::Maps => corrupt_map(h, reason),
        Level::Chunks => corrupt(h, reason),
    };
    let mut read = Vec::new();
    for (hash, delta) in deltas {
        match *delta {
            0 => {}
            d if d > 0 && blind(hash) => txn.add(level.count_key(*hash), d.unsigned_abs())?,
            d => read.push((*hash, d)),
        }
    }
    let keys: Vec<Vec<u8>> = read.iter().map(|(h, _)| level.count_key(*h)).collect();
    let olds = get_all(txn, &keys).await?;
    let (mut created, mut freed) = (Vec::new(), Vec::new());
    for (((hash, delta), key), old) in read.into_iter().zip(keys).zip(olds) {
        let old = match old {
            Some(v) => decode_u64(&v).map_err(|e| bad(&hash, format!("refcount: {e}")))?,
            None => 0,
        };
        let new = old as i128 + delta as i128;
        if new < 0 {
            return Err(bad(
                &hash,
                format!("refcount would go negative ({old} {delta:+})"),
            ));
        }
        if new == 0 {
            txn.delete(key);
        } else {
            txn.put(key, encode_u64(new as u64));
        }
        match (old, new) {
            (0, n) if n > 0 => created.push(hash),
            (o, 0) if o > 0 => freed.push(hash),
            _ => {}
        }
    }
    Ok((created, freed))
}

/// Replace the store-wide statistics (gc recomputes them from the chunks).
pub fn put_stats(txn: &mut Txn<'_>, st: &ChunkStats) {
    txn.put(Key::Meta(STATS_KEY.to_vec()).encode(), st.encode());
}

/// The two kinds of content-addressed objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Extent maps, referenced by extent records.
    Maps,
    /// Chunks, referenced by map slots.
    Chunks,
}

impl Level {
    fn prefixes(self) -> (KeyPrefix, KeyPrefix) {
        match self {
            Level::Maps => (KeyPrefix::Map, KeyPrefix::MapRef),
            Level::Chunks => (KeyPrefix::Chunk, KeyPrefix::Ref),
        }
    }

    /// The key of an object of this level.
    pub fn object_key(self, h: ChunkHash) -> Vec<u8> {
        match self {
            Level::Maps => Key::Map(h).encode(),
            Level::Chunks => Key::Chunk(h).encode(),
        }
    }

    /// The key of an object's refcount.
    pub fn count_key(self, h: ChunkHash) -> Vec<u8> {
        match self {
            Level::Maps => Key::MapRef(h).encode(),
            Level::Chunks => Key::Ref(h).encode(),
        }
    }
}

/// Every `(hash, value)` under one prefix whose keys are 32-byte hashes.
async fn all_under(kv: &Kv, prefix: KeyPrefix) -> Result<Vec<(ChunkHash, Bytes)>> {
    let (start, end) = Key::prefix_range(prefix);
    let mut it = kv.iter(&start, &end).await?;
    let mut out = Vec::new();
    while let Some((k, v)) = it.next().await? {
        let h = match Key::decode(&k) {
            Ok(Key::Chunk(h) | Key::Ref(h) | Key::Map(h) | Key::MapRef(h)) => h,
            _ => {
                return Err(CasError::Corrupt {
                    hash: "-".into(),
                    reason: format!("undecodable key {k:?} under prefix {prefix:?}"),
                });
            }
        };
        out.push((h, v));
    }
    Ok(out)
}

/// Every pack's live record, for fsck and gc, in id order.
pub async fn all_pack_live(kv: &Kv) -> Result<Vec<(u64, PackLive)>> {
    let (start, end) = Key::prefix_range(KeyPrefix::Pack);
    let mut it = kv.iter(&start, &end).await?;
    let mut out = Vec::new();
    while let Some((k, v)) = it.next().await? {
        let bad = |reason: String| CasError::Corrupt {
            hash: "-".into(),
            reason,
        };
        let Ok(Key::Pack(id)) = Key::decode(&k) else {
            return Err(bad(format!("undecodable pack key {k:?}")));
        };
        let live = PackLive::decode(&v)
            .ok_or_else(|| bad(format!("pack {id:016x} live record is malformed")))?;
        out.push((id, live));
    }
    Ok(out)
}

/// Every refcount of one level, for fsck and gc: `(hash, refcount)` in hash
/// order.
pub async fn all_refcounts(kv: &Kv, level: Level) -> Result<Vec<(ChunkHash, u64)>> {
    all_under(kv, level.prefixes().1)
        .await?
        .into_iter()
        .map(|(h, v)| {
            decode_u64(&v)
                .map(|n| (h, n))
                .map_err(|e| corrupt(&h, format!("{level:?} refcount: {e}")))
        })
        .collect()
}

/// Every stored object of one level with its stored bytes, for fsck and gc.
pub async fn all_objects(kv: &Kv, level: Level) -> Result<Vec<(ChunkHash, Bytes)>> {
    all_under(kv, level.prefixes().0).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_codec::ChunkRef;
    use cairn_kv::KvOptions;

    #[tokio::test]
    async fn refcounts_are_exact_and_zero_deletes() -> Result<()> {
        let kv = Kv::open("memory://", KvOptions::default()).await?;
        let store = PackStore::new(kv.object_store(), kv.pack_root().clone(), 0);
        let packer = Arc::new(Packer::new(store, 1 << 20, 1));
        let data = Bytes::from(vec![1u8; 100]);
        let other = Bytes::from(vec![2u8; 100]);
        let mut p = Pending::with_packer(packer.clone(), true);
        let h = p.stage(data.clone());
        let o = p.stage(other.clone());
        let slot = |hash| Some(ChunkRef { hash, len: 100 });
        // Two slots naming `h`, one naming `o`; the map referenced twice.
        let m = p.put_map(ExtentMap {
            slots: vec![slot(h), None, slot(h), slot(o)],
        });
        p.incref_map(m);
        let mut t = kv.txn();
        p.apply(&mut t).await?;
        t.commit().await?;
        assert_eq!(map_refcount(&kv, &m).await?, 2);
        assert_eq!(refcount(&kv, &h).await?, 2, "one per slot");
        assert_eq!(refcount(&kv, &o).await?, 1);
        assert_eq!(stats(&kv).await?.chunks, 2);
        let t = kv.txn();
        assert_eq!(pack_live(&t, 1).await?.chunks, 2, "both chunks in pack 1");
        drop(t);
        let read = read_chunks(&kv, &packer, &[h, o], 65536).await?;
        assert_eq!(
            read,
            vec![data.clone(), other.clone()],
            "read from the open pack"
        );

        // A second map keeping `h` and dropping `o`, while the first goes.
        let mut p = Pending::new();
        let m2 = p.put_map(ExtentMap {
            slots: vec![slot(h)],
        });
        p.decref_map(m);
        p.decref_map(m);
        let mut t = kv.txn();
        p.apply(&mut t).await?;
        t.commit().await?;
        assert_eq!(map_refcount(&kv, &m).await?, 0);
        assert!(read_map(&kv, &m).await.is_err(), "map deleted at zero");
        assert_eq!(refcount(&kv, &h).await?, 1);
        assert_eq!(refcount(&kv, &o).await?, 0);
        assert!(
            read_chunk(&kv, &packer, &o, 65536).await.is_err(),
            "chunk deleted at zero"
        );
        assert_eq!(stats(&kv).await?.chunks, 1);

        let mut p = Pending::new();
        p.decref_map(m2);
        let mut t = kv.txn();
        p.apply(&mut t).await?;
        t.commit().await?;
        assert_eq!(refcount(&kv, &h).await?, 0);
        assert_eq!(stats(&kv).await?, ChunkStats::default());
        let t = kv.txn();
        assert_eq!(pack_live(&t, 1).await?, PackLive::default(), "nothing live");
        drop(t);

        let mut p = Pending::new();
        p.decref_map(m2);
        let mut t = kv.txn();
        assert!(p.apply(&mut t).await.is_err(), "underflow refused");
        Ok(())
    }
}
