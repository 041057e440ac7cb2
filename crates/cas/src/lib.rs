//! Content-addressed chunk store with exact refcounts.
//!
//! Owns: chunk bytes keyed by the BLAKE3 hash of their plaintext, compressed
//! with LZ4 when that helps, verified against the hash on every read; one
//! refcount per chunk; store-wide chunk statistics. Refcount changes are
//! collected in a [`Pending`] set and applied inside the caller's transaction,
//! so a chunk's count changes in the same atomic batch as the extent records
//! that name it. A chunk whose count reaches zero is deleted in that batch.
//!
//! Must never know: paths, inodes, datasets, snapshots, NFS or protobuf. It
//! sees hashes and bytes only.

use std::collections::HashMap;

use bytes::Bytes;
use cairn_codec::{ChunkHash, Key, KeyPrefix, decode_u64, encode_u64};
use cairn_kv::{Kv, KvError, Txn};

pub use cairn_codec::ChunkHash as Hash;

const CODEC_RAW: u8 = 0;
const CODEC_LZ4: u8 = 1;
const STATS_KEY: &[u8] = b"cas.stats";

/// What went wrong in the chunk store.
#[derive(Debug, thiserror::Error)]
pub enum CasError {
    /// A chunk's bytes do not hash to its address, do not decompress, or a
    /// referenced chunk is missing: the store is damaged. Never returns data.
    #[error("chunk {hash} is corrupt: {reason}")]
    Corrupt {
        /// Hex of the chunk's address.
        hash: String,
        /// What is wrong with it.
        reason: String,
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
        None => Err(corrupt(hash, "referenced chunk is missing")),
    }
}

/// Read a chunk's refcount (0 if it has none).
pub async fn refcount(kv: &Kv, hash: &ChunkHash) -> Result<u64> {
    match kv.get(&Key::Ref(*hash).encode()).await? {
        Some(v) => decode_u64(&v).map_err(|e| corrupt(hash, format!("refcount: {e}"))),
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

/// Refcount changes and new chunk contents collected during one operation,
/// applied with [`Pending::apply`] into its transaction.
pub struct Pending {
    deltas: HashMap<ChunkHash, i64>,
    staged: HashMap<ChunkHash, Bytes>,
    compress: bool,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            deltas: HashMap::new(),
            staged: HashMap::new(),
            compress: true,
        }
    }
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
            compress,
            ..Self::default()
        }
    }

    /// Reference a chunk with this content (storing it if it is new).
    /// Returns its address.
    pub fn put(&mut self, data: Bytes) -> ChunkHash {
        let hash = ChunkHash::of(&data);
        self.put_hashed(hash, data);
        hash
    }

    /// Like [`Pending::put`] when the hash is already known.
    pub fn put_hashed(&mut self, hash: ChunkHash, data: Bytes) {
        debug_assert_eq!(ChunkHash::of(&data), hash);
        self.staged.entry(hash).or_insert(data);
        *self.deltas.entry(hash).or_default() += 1;
    }

    /// Content staged in this set under `hash` (not yet in the store).
    pub fn staged(&self, hash: &ChunkHash) -> Option<Bytes> {
        self.staged.get(hash).cloned()
    }

    /// Add a reference to a chunk that is already stored and referenced (a
    /// restore copying an extent record that keeps naming it). Applied as a
    /// blind counter addition: no read of the refcount.
    pub fn incref(&mut self, hash: ChunkHash) {
        *self.deltas.entry(hash).or_default() += 1;
    }

    /// Drop a reference.
    pub fn decref(&mut self, hash: ChunkHash) {
        *self.deltas.entry(hash).or_default() -= 1;
    }

    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.deltas.values().all(|d| *d == 0)
    }

    /// Write the refcount changes, new chunks and deletions of chunks that
    /// reach zero into `txn`. Fails (writing nothing) if a count would go
    /// negative or a new chunk's content was not staged: both are bugs or
    /// corruption, never input errors.
    pub async fn apply(self, txn: &mut Txn<'_>) -> Result<()> {
        if self.is_empty() {
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
        let mut changed = false;
        let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for (hash, delta) in &self.deltas {
            if *delta == 0 {
                continue;
            }
            let ref_key = Key::Ref(*hash).encode();
            if *delta > 0 && !self.staged.contains_key(hash) {
                // Only references to stored chunks were added (`incref`'s
                // contract): the chunk exists and stays, so the count is
                // added to without reading it.
                txn.add(ref_key, delta.unsigned_abs())?;
                continue;
            }
            let old = match txn.get(&ref_key).await? {
                Some(v) => decode_u64(&v).map_err(|e| corrupt(hash, format!("refcount: {e}")))?,
                None => 0,
            };
            let new = old as i128 + *delta as i128;
            if new < 0 {
                return Err(corrupt(
                    hash,
                    format!("refcount would go negative ({old} {delta:+})"),
                ));
            }
            let chunk_key = Key::Chunk(*hash).encode();
            if old == 0 && new > 0 {
                let Some(data) = self.staged.get(hash) else {
                    return Err(corrupt(hash, "referenced before it was stored"));
                };
                let stored = encode_chunk_as(data, self.compress);
                st.chunks += 1;
                st.stored_bytes += stored.len() as u64;
                st.plain_bytes += data.len() as u64;
                writes.push((chunk_key, Some(stored)));
                changed = true;
            } else if old > 0 && new == 0 {
                if let Some(stored) = txn.get(&chunk_key).await? {
                    st.chunks = st.chunks.saturating_sub(1);
                    st.stored_bytes = st.stored_bytes.saturating_sub(stored.len() as u64);
                    let plain = chunk_plain_len(&stored);
                    st.plain_bytes = st.plain_bytes.saturating_sub(plain);
                }
                writes.push((chunk_key, None));
                changed = true;
            }
            if new == 0 {
                writes.push((ref_key, None));
            } else {
                writes.push((ref_key, Some(encode_u64(new as u64))));
            }
        }
        for (k, v) in writes {
            match v {
                Some(v) => txn.put(k, v),
                None => txn.delete(k),
            }
        }
        if changed {
            txn.put(stats_key, st.encode());
        }
        Ok(())
    }
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

/// Every chunk's refcount, for fsck: `(hash, refcount)` in hash order.
pub async fn all_refcounts(kv: &Kv) -> Result<Vec<(ChunkHash, u64)>> {
    let (start, end) = Key::prefix_range(KeyPrefix::Ref);
    let mut it = kv.iter(&start, &end).await?;
    let mut out = Vec::new();
    while let Some((k, v)) = it.next().await? {
        let Ok(Key::Ref(h)) = Key::decode(&k) else {
            return Err(CasError::Corrupt {
                hash: "-".into(),
                reason: format!("undecodable refcount key {k:?}"),
            });
        };
        let n = decode_u64(&v).map_err(|e| corrupt(&h, format!("refcount: {e}")))?;
        out.push((h, n));
    }
    Ok(out)
}

/// Every stored chunk's hash and stored bytes, for fsck and gc.
pub async fn all_chunks(kv: &Kv) -> Result<Vec<(ChunkHash, Bytes)>> {
    let (start, end) = Key::prefix_range(KeyPrefix::Chunk);
    let mut it = kv.iter(&start, &end).await?;
    let mut out = Vec::new();
    while let Some((k, v)) = it.next().await? {
        let Ok(Key::Chunk(h)) = Key::decode(&k) else {
            return Err(CasError::Corrupt {
                hash: "-".into(),
                reason: format!("undecodable chunk key {k:?}"),
            });
        };
        out.push((h, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let mut p = Pending::new();
        let h = p.put(data.clone());
        p.put(data.clone());
        let mut t = kv.txn();
        p.apply(&mut t).await?;
        t.commit().await?;
        assert_eq!(refcount(&kv, &h).await?, 2);
        assert_eq!(stats(&kv).await?.chunks, 1);

        let mut p = Pending::new();
        p.decref(h);
        p.decref(h);
        let mut t = kv.txn();
        p.apply(&mut t).await?;
        t.commit().await?;
        assert_eq!(refcount(&kv, &h).await?, 0);
        assert!(
            read_chunk(&kv, &h, 65536).await.is_err(),
            "chunk deleted at zero"
        );
        assert_eq!(stats(&kv).await?, ChunkStats::default());

        let mut p = Pending::new();
        p.decref(h);
        let mut t = kv.txn();
        assert!(p.apply(&mut t).await.is_err(), "underflow refused");
        Ok(())
    }
}
