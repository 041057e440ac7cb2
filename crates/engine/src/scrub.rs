//! Scrub: read every stored chunk back from its pack and verify it against
//! its hash, without the writer lock (writes go on), and name the files
//! that use each damaged chunk.

use std::collections::{HashMap, HashSet};

use cairn_codec::{ChunkHash, DirentRecord, ExtentRecord, HeadKey, Key, KeyPrefix, Versioned};
use cairn_fs::{ErrorKind, FsError};

use crate::{Engine, ROOT_INO, cas_err, kv_err};

/// Chunks verified per batch of reads.
const SCRUB_BATCH: usize = 256;
/// Directory levels followed up from a damaged file to name its path.
const MAX_PATH_DEPTH: usize = 256;

/// How far a scrub has got, reported after every batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubProgress {
    /// Chunks verified so far.
    pub chunks: u64,
    /// Their plaintext bytes.
    pub bytes: u64,
    /// Chunks in the store when the scrub began (an estimate: writes go on).
    pub total_chunks: u64,
    /// Damaged chunks found so far.
    pub damaged: u64,
}

/// One chunk that failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedChunk {
    /// Hex of its address.
    pub hash: String,
    /// What is wrong with it.
    pub error: String,
    /// The files that use it: `dataset:/path`, or `dataset: inode N` for
    /// a file only snapshots still see.
    pub files: Vec<String>,
}

/// What a scrub found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Chunks verified.
    pub chunks: u64,
    /// Their plaintext bytes.
    pub bytes: u64,
    /// Those that failed.
    pub damaged: Vec<DamagedChunk>,
}

impl Engine {
    /// Read and verify every stored chunk; `progress` is called after each
    /// batch. Takes no lock: a chunk freed or moved meanwhile is skipped.
    pub async fn scrub(
        &self,
        mut progress: impl FnMut(ScrubProgress) + Send,
    ) -> Result<ScrubReport, FsError> {
        let kv = &self.inner.kv;
        let mut p = ScrubProgress {
            total_chunks: cairn_cas::stats(kv).await.map_err(cas_err)?.chunks,
            ..Default::default()
        };
        let (start, end) = Key::prefix_range(KeyPrefix::Chunk);
        let mut it = kv.iter(&start, &end).await.map_err(kv_err)?;
        let mut bad: Vec<(ChunkHash, String)> = Vec::new();
        let mut batch: Vec<(ChunkHash, bytes::Bytes)> = Vec::with_capacity(SCRUB_BATCH);
        loop {
            let next = it.next().await.map_err(kv_err)?;
            let done = next.is_none();
            if let Some((k, v)) = next {
                match Key::decode(&k) {
                    Ok(Key::Chunk(h)) => batch.push((h, v)),
                    _ => {
                        return Err(FsError::new(
                            ErrorKind::Corrupt,
                            format!("undecodable chunk index key {k:?}"),
                        ));
                    }
                }
            }
            if batch.len() >= SCRUB_BATCH || (done && !batch.is_empty()) {
                let before = bad.len();
                p.bytes += self.verify_batch(&batch, &mut bad).await?;
                p.chunks += batch.len() as u64;
                p.damaged += (bad.len() - before) as u64;
                batch.clear();
                progress(p);
            }
            if done {
                break;
            }
        }
        let users = self.files_using(&bad).await?;
        Ok(ScrubReport {
            chunks: p.chunks,
            bytes: p.bytes,
            damaged: bad
                .into_iter()
                .map(|(h, error)| DamagedChunk {
                    hash: h.to_hex(),
                    error,
                    files: users.get(&h).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// Verify one batch of index entries; failures go to `bad`. Returns
    /// the plaintext bytes verified.
    async fn verify_batch(
        &self,
        batch: &[(ChunkHash, bytes::Bytes)],
        bad: &mut Vec<(ChunkHash, String)>,
    ) -> Result<u64, FsError> {
        let mut located = Vec::with_capacity(batch.len());
        for (h, v) in batch {
            match cairn_cas::decode_location(h, v) {
                Ok(l) => located.push((*h, l)),
                Err(e) => bad.push((*h, e.to_string())),
            }
        }
        located.sort_by_key(|(_, l)| (l.pack, l.offset));
        let bytes = located.iter().map(|(_, l)| l.plain as u64).sum();
        let failed = cairn_cas::verify_frames(&self.inner.packs, &located).await;
        for (h, l, e) in failed {
            // Freed or moved (by a write or gc) since it was listed: not damage.
            let now = self
                .inner
                .kv
                .get(&Key::Chunk(h).encode())
                .await
                .map_err(kv_err)?;
            if now.is_some_and(|v| cairn_cas::decode_location(&h, &v).ok() == Some(l)) {
                bad.push((h, e));
            }
        }
        Ok(bytes)
    }

    /// For each damaged chunk, the files (of every dataset head and
    /// snapshot) whose extents name a map that names it.
    async fn files_using(
        &self,
        bad: &[(ChunkHash, String)],
    ) -> Result<HashMap<ChunkHash, Vec<String>>, FsError> {
        let mut out: HashMap<ChunkHash, Vec<String>> = HashMap::new();
        if bad.is_empty() {
            return Ok(out);
        }
        let kv = &self.inner.kv;
        let wanted: HashSet<ChunkHash> = bad.iter().map(|(h, _)| *h).collect();
        // Maps naming a damaged chunk.
        let mut maps: HashMap<ChunkHash, Vec<ChunkHash>> = HashMap::new();
        for (mh, stored) in cairn_cas::all_objects(kv, cairn_cas::Level::Maps)
            .await
            .map_err(cas_err)?
        {
            let Ok(map) = cairn_cas::decode_map(&mh, &stored) else {
                continue;
            };
            let hit: Vec<ChunkHash> = map
                .chunks()
                .map(|(_, c)| c.hash)
                .filter(|h| wanted.contains(h))
                .collect();
            if !hit.is_empty() {
                maps.insert(mh, hit);
            }
        }
        // Extent records (head and history) naming those maps.
        let mut files: HashMap<ChunkHash, HashSet<(u64, u64)>> = HashMap::new();
        for kind in [KeyPrefix::Extent, KeyPrefix::HistExtent] {
            let (start, end) = Key::prefix_range(kind);
            let mut it = kv.iter(&start, &end).await.map_err(kv_err)?;
            while let Some((k, v)) = it.next().await.map_err(kv_err)? {
                let Ok(Versioned {
                    value: Some(ExtentRecord { map, .. }),
                    ..
                }) = Versioned::<ExtentRecord>::decode(&v)
                else {
                    continue;
                };
                let Some(chunks) = maps.get(&map) else {
                    continue;
                };
                let head = match Key::decode(&k) {
                    Ok(Key::Head(h)) | Ok(Key::History { head: h, .. }) => h,
                    _ => continue,
                };
                if let HeadKey::Extent { tree, ino, .. } = head {
                    for c in chunks {
                        files.entry(*c).or_default().insert((tree, ino));
                    }
                }
            }
        }
        let names: HashMap<u64, String> = {
            let w = self.inner.writer.lock().await;
            w.reg.datasets().map(|d| (d.id, d.name.clone())).collect()
        };
        let mut by_tree: HashMap<u64, Vec<u64>> = HashMap::new();
        for set in files.values() {
            for (tree, ino) in set {
                by_tree.entry(*tree).or_default().push(*ino);
            }
        }
        let mut named: HashMap<(u64, u64), String> = HashMap::new();
        for (tree, mut inos) in by_tree {
            inos.sort_unstable();
            inos.dedup();
            let ds = names
                .get(&tree)
                .cloned()
                .unwrap_or_else(|| format!("tree {tree}"));
            for (ino, path) in inos.iter().zip(self.paths_in(tree, &inos).await?) {
                named.insert(
                    (tree, *ino),
                    match path {
                        Some(p) => format!("{ds}:{p}"),
                        None => format!("{ds}: inode {ino} (only in snapshots)"),
                    },
                );
            }
        }
        for (h, set) in files {
            let mut v: Vec<String> = set.iter().filter_map(|k| named.get(k).cloned()).collect();
            v.sort();
            out.insert(h, v);
        }
        Ok(out)
    }

    /// Paths of `inos` in the head of `tree`: every directory entry of the
    /// tree is read once to map children to their directory and name (the
    /// inode keeps a parent only for directories); `None` for an inode no
    /// entry of the head names (deleted: only snapshots see it).
    async fn paths_in(&self, tree: u64, inos: &[u64]) -> Result<Vec<Option<String>>, FsError> {
        let (start, end) = Key::tree_range(KeyPrefix::Dirent, tree);
        let mut it = self.inner.kv.iter(&start, &end).await.map_err(kv_err)?;
        let mut up: HashMap<u64, (u64, String)> = HashMap::new();
        while let Some((k, v)) = it.next().await.map_err(kv_err)? {
            let Ok(Key::Head(HeadKey::Dirent { dir, name, .. })) = Key::decode(&k) else {
                continue;
            };
            if let Ok(Versioned {
                value: Some(DirentRecord { ino, .. }),
                ..
            }) = Versioned::<DirentRecord>::decode(&v)
            {
                up.insert(ino, (dir, String::from_utf8_lossy(&name).into_owned()));
            }
        }
        Ok(inos
            .iter()
            .map(|&ino| {
                let mut parts = Vec::new();
                let mut cur = ino;
                for _ in 0..MAX_PATH_DEPTH {
                    if cur == ROOT_INO {
                        parts.reverse();
                        return Some(format!("/{}", parts.join("/")));
                    }
                    let (dir, name) = up.get(&cur)?;
                    parts.push(name.clone());
                    cur = *dir;
                }
                None
            })
            .collect())
    }
}
