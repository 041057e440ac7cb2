//! Content-addressed chunk store with exact refcounts.
//!
//! Owns: chunk bytes keyed by the BLAKE3 hash of their plaintext, compressed
//! with LZ4 when that helps, verified against the hash on every read; extent
//! maps (lists of chunk addresses, [`ExtentMap`]) keyed by the hash of their
//! encoding, verified the same way; one refcount per chunk and per map;
//! store-wide chunk statistics.
//!
//! Two levels of references: extent records name maps, maps name chunks.
//! refcount(map) == number of extent records naming it (the caller's
//! business); refcount(chunk) == number of slots of stored maps naming it
//! (kept here: storing a map adds one to each of its chunks, deleting it takes
//! one away). Changes are collected in a [`Pending`] set and applied inside
//! the caller's transaction, so counts change in the same atomic batch as the
//! records that name them; whatever reaches zero is deleted in that batch.
//!
//! Must never know: paths, inodes, datasets, snapshots, NFS or protobuf. It
//! sees hashes, maps and bytes only.

use std::collections::HashMap;

use bytes::Bytes;
use cairn_codec::{ChunkHash, ExtentMap, Key, KeyPrefix, decode_u64, encode_u64};
use cairn_kv::{Kv, KvError, Txn};

pub use cairn_codec::ChunkHash as Hash;

const CODEC_RAW: u8 = 0;
const CODEC_LZ4: u8 = 1;
const STATS_KEY: &[u8] = b"cas.stats";

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
        /// `"chunk"` or `"map"`.
        what: &'static str,
        /// Hex of its address.
        hash: String,
    },
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

/// Encode a chunk for storage: `[codec][payload]`, LZ4 only when it saves space.
pub fn encode_chunk(data: &[u8]) -> Vec<u8> {
    encode_chunk_as(data, true)
}

/// Encode a chunk for storage, trying LZ4 only if `compress`.
pub fn encode_chunk_as(data: &[u8], compress: bool) -> Vec<u8> {
    let compressed = if compress {
        lz4_flex::compress_prepend_size(data)
    } else {
        Vec::new()
    };
    if compress && compressed.len() < data.len() {
        let mut out = Vec::with_capacity(compressed.len() + 1);
        out.push(CODEC_LZ4);
        out.extend_from_slice(&compressed);
        out
    } else {
        let mut out = Vec::with_capacity(data.len() + 1);
        out.push(CODEC_RAW);
        out.extend_from_slice(data);
        out
    }
}

/// Decode stored chunk bytes and verify them against `hash`.
pub fn decode_chunk(hash: &ChunkHash, stored: &[u8], max_len: usize) -> Result<Bytes> {
    let Some((&codec, payload)) = stored.split_first() else {
        return Err(corrupt(hash, "empty record"));
    };
    let data = match codec {
        CODEC_RAW => Bytes::copy_from_slice(payload),
        CODEC_LZ4 => {
            if payload.len() < 4 {
                return Err(corrupt(hash, "truncated lz4 header"));
            }
            let declared = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
            if declared as usize > max_len {
                return Err(corrupt(
                    hash,
                    format!("declared length {declared} exceeds {max_len}"),
                ));
            }
            Bytes::from(
                lz4_flex::decompress_size_prepended(payload)
                    .map_err(|e| corrupt(hash, format!("lz4: {e}")))?,
            )
        }
        other => return Err(corrupt(hash, format!("unknown codec {other}"))),
    };
    if ChunkHash::of(&data) != *hash {
        return Err(corrupt(hash, "content does not match its hash"));
    }
    Ok(data)
}

/// Read and verify one chunk.
pub async fn read_chunk(kv: &Kv, hash: &ChunkHash, max_len: usize) -> Result<Bytes> {
    match kv.get(&Key::Chunk(*hash).encode()).await? {
        Some(stored) => decode_chunk(hash, &stored, max_len),
        None => Err(CasError::Missing {
            what: "chunk",
            hash: hash.to_hex(),
        }),
    }
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

/// Refcount changes, new chunk contents and new maps collected during one
/// operation, applied with [`Pending::apply`] into its transaction.
#[derive(Default)]
pub struct Pending {
    /// Map refcount deltas.
    maps: HashMap<ChunkHash, i64>,
    /// New maps, stored if their count leaves zero.
    staged_maps: HashMap<ChunkHash, ExtentMap>,
    /// New chunk contents, stored if a stored map comes to name them.
    staged: HashMap<ChunkHash, Bytes>,
    /// Store chunks as they are (no LZ4 attempt).
    raw: bool,
}

impl Pending {
    /// An empty set of changes; new chunks are LZ4-compressed where that
    /// saves space.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set of changes that stores new chunks as they are, or
    /// compressed where that saves space if `compress`.
    pub fn with_compression(compress: bool) -> Self {
        Self {
            raw: !compress,
            ..Self::default()
        }
    }

    /// Stage chunk content (stored only if a map stored in this set names
    /// it and it is not stored yet). Returns its address.
    pub fn stage(&mut self, data: Bytes) -> ChunkHash {
        let hash = ChunkHash::of(&data);
        self.staged.entry(hash).or_insert(data);
        hash
    }

    /// Content staged in this set under `hash` (not yet in the store).
    pub fn staged(&self, hash: &ChunkHash) -> Option<Bytes> {
        self.staged.get(hash).cloned()
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
        for hash in created {
            let Some(data) = self.staged.get(&hash) else {
                return Err(corrupt(&hash, "referenced before it was stored"));
            };
            let stored = encode_chunk_as(data, !self.raw);
            st.chunks += 1;
            st.stored_bytes += stored.len() as u64;
            st.plain_bytes += data.len() as u64;
            txn.put(Key::Chunk(hash).encode(), stored);
        }
        let keys: Vec<Vec<u8>> = freed.iter().map(|h| Key::Chunk(*h).encode()).collect();
        for stored in get_all(txn, &keys).await?.into_iter().flatten() {
            st.chunks = st.chunks.saturating_sub(1);
            st.stored_bytes = st.stored_bytes.saturating_sub(stored.len() as u64);
            st.plain_bytes = st.plain_bytes.saturating_sub(chunk_plain_len(&stored));
        }
        for key in keys {
            txn.delete(key);
        }
        txn.put(stats_key, st.encode());
        Ok(())
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

/// Plaintext length of a stored chunk without decompressing it.
pub fn chunk_plain_len(stored: &[u8]) -> u64 {
    match stored.split_first() {
        Some((&CODEC_LZ4, p)) if p.len() >= 4 => {
            u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as u64
        }
        Some((_, p)) => p.len() as u64,
        None => 0,
    }
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

    #[test]
    fn round_trip_and_verification() {
        let data = vec![7u8; 10_000];
        let h = ChunkHash::of(&data);
        let stored = encode_chunk(&data);
        assert!(stored.len() < data.len(), "repetitive data compresses");
        assert_eq!(
            decode_chunk(&h, &stored, 65536).ok().as_deref(),
            Some(&data[..])
        );
        let mut bad = stored.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(
            decode_chunk(&h, &bad, 65536).is_err(),
            "flipped bit detected"
        );
        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let stored = encode_chunk(&random);
        assert_eq!(
            decode_chunk(&ChunkHash::of(&random), &stored, 65536)
                .ok()
                .as_deref(),
            Some(&random[..])
        );
    }

    #[tokio::test]
    async fn refcounts_are_exact_and_zero_deletes() -> Result<()> {
        let kv = Kv::open("memory://", KvOptions::default()).await?;
        let data = Bytes::from(vec![1u8; 100]);
        let other = Bytes::from(vec![2u8; 100]);
        let mut p = Pending::new();
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
            read_chunk(&kv, &o, 65536).await.is_err(),
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

        let mut p = Pending::new();
        p.decref_map(m2);
        let mut t = kv.txn();
        assert!(p.apply(&mut t).await.is_err(), "underflow refused");
        Ok(())
    }
}
