//! `fsck`: walk the whole store and report every violated invariant.
//!
//! Checked: every record decodes; every directory entry names an existing
//! inode of the recorded type in a directory; link counts equal the entries
//! naming an inode (directories: 2 + subdirectories); every directory but the
//! root has exactly one entry and its parent field agrees; no orphans; extents
//! belong to regular, non-inline files and lie within their size; for every
//! chunk, refcount == number of extent records (head and history, all trees)
//! naming it, and the chunk exists and matches its hash; no chunk or refcount
//! without references; the inode counter is above every inode; the store's
//! statistics match what is stored.

use std::collections::{BTreeMap, HashMap};

use cairn_codec::{
    ChunkHash, DirentRecord, ExtentRecord, FileKind, HeadKey, InodeRecord, Key, KeyPrefix,
    Versioned, decode_u64,
};
use cairn_fs::FsError;

use crate::{INODES_KEY, Inner, NEXT_INO_KEY, ROOT_INO, cas_err, kv_err, meta_key};

/// One violated invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Short machine-readable class (`refcount`, `nlink`, `orphan`, ...).
    pub class: &'static str,
    /// What is wrong, naming the records involved.
    pub detail: String,
}

/// The result of a full check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Every violation found (empty when the store is consistent).
    pub problems: Vec<Problem>,
    /// Inodes checked.
    pub inodes: u64,
    /// Directory entries checked.
    pub dirents: u64,
    /// Extent records checked (head and history).
    pub extents: u64,
    /// Chunks checked.
    pub chunks: u64,
}

impl FsckReport {
    /// Whether no invariant is violated.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, class: &'static str, detail: String) {
        self.problems.push(Problem { class, detail });
    }
}

impl std::fmt::Display for FsckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} inodes, {} entries, {} extents, {} chunks: {} problem(s)",
            self.inodes,
            self.dirents,
            self.extents,
            self.chunks,
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  [{}] {}", p.class, p.detail)?;
        }
        Ok(())
    }
}

async fn scan_prefix(
    inner: &Inner,
    prefix: KeyPrefix,
) -> Result<Vec<(bytes::Bytes, bytes::Bytes)>, FsError> {
    let (start, end) = Key::prefix_range(prefix);
    inner
        .kv
        .scan(&start, &end, usize::MAX)
        .await
        .map_err(kv_err)
}

pub(crate) async fn run(inner: &Inner) -> Result<FsckReport, FsError> {
    let mut r = FsckReport::default();
    let cs = inner.chunk_size as u64;

    // Inodes, per tree.
    let mut inodes: HashMap<(u64, u64), InodeRecord> = HashMap::new();
    for (k, v) in scan_prefix(inner, KeyPrefix::Inode).await? {
        match (HeadKey::decode(&k), Versioned::<InodeRecord>::decode(&v)) {
            (
                Ok(HeadKey::Inode { tree, ino }),
                Ok(Versioned {
                    value: Some(rec), ..
                }),
            ) => {
                inodes.insert((tree, ino), rec);
            }
            (Ok(_), Ok(Versioned { value: None, .. })) => {}
            (a, b) => r.problem("decode", format!("inode record {k:?}: {a:?} / {b:?}")),
        }
    }
    r.inodes = inodes.len() as u64;

    // Directory entries.
    let mut links: HashMap<(u64, u64), u32> = HashMap::new();
    let mut subdirs: HashMap<(u64, u64), u32> = HashMap::new();
    let mut dir_refs: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
    for (k, v) in scan_prefix(inner, KeyPrefix::Dirent).await? {
        let (
            Ok(HeadKey::Dirent {
                tree,
                dir,
                cookie,
                name,
            }),
            Ok(rec),
        ) = (HeadKey::decode(&k), Versioned::<DirentRecord>::decode(&v))
        else {
            r.problem("decode", format!("directory entry {k:?} does not decode"));
            continue;
        };
        let Some(rec) = rec.value else { continue };
        r.dirents += 1;
        let shown = String::from_utf8_lossy(&name);
        if cookie != cairn_codec::name_cookie(&name) {
            r.problem(
                "dirent",
                format!("tree {tree} dir {dir} entry {shown:?} has a wrong cookie"),
            );
        }
        match inodes.get(&(tree, dir)) {
            Some(d) if d.kind == FileKind::Directory => {}
            Some(_) => r.problem(
                "dirent",
                format!("tree {tree}: entry {shown:?} is in inode {dir}, which is not a directory"),
            ),
            None => r.problem(
                "dirent",
                format!("tree {tree}: entry {shown:?} is in missing directory {dir}"),
            ),
        }
        match inodes.get(&(tree, rec.ino)) {
            Some(child) => {
                if child.kind != rec.kind {
                    r.problem(
                        "dirent",
                        format!(
                            "tree {tree} dir {dir} entry {shown:?}: type {:?} but inode {} is {:?}",
                            rec.kind, rec.ino, child.kind
                        ),
                    );
                }
                if child.kind == FileKind::Directory {
                    *subdirs.entry((tree, dir)).or_default() += 1;
                    dir_refs.entry((tree, rec.ino)).or_default().push(dir);
                } else {
                    *links.entry((tree, rec.ino)).or_default() += 1;
                }
            }
            None => r.problem(
                "dangling",
                format!(
                    "tree {tree} dir {dir} entry {shown:?} names missing inode {}",
                    rec.ino
                ),
            ),
        }
    }

    // Link counts, parents, orphans.
    let next_ino = match inner
        .kv
        .get(&meta_key(NEXT_INO_KEY))
        .await
        .map_err(kv_err)?
    {
        Some(b) => decode_u64(&b).unwrap_or(0),
        None => 0,
    };
    let mut sorted: Vec<_> = inodes.iter().collect();
    sorted.sort_by_key(|(k, _)| **k);
    for &(&(tree, ino), rec) in &sorted {
        if ino >= next_ino {
            r.problem(
                "counter",
                format!("tree {tree} inode {ino} is not below the inode counter {next_ino}"),
            );
        }
        if rec.kind == FileKind::Directory {
            let want = 2 + subdirs.get(&(tree, ino)).copied().unwrap_or(0);
            if rec.nlink != want {
                r.problem(
                    "nlink",
                    format!(
                        "tree {tree} directory {ino} has nlink {} but {want} is right",
                        rec.nlink
                    ),
                );
            }
            let refs = dir_refs.get(&(tree, ino)).cloned().unwrap_or_default();
            if ino == ROOT_INO {
                if !refs.is_empty() || rec.parent != ROOT_INO {
                    r.problem(
                        "parent",
                        format!(
                            "tree {tree} root directory is referenced by {refs:?} or has parent {}",
                            rec.parent
                        ),
                    );
                }
            } else if refs.len() != 1 {
                r.problem(
                    if refs.is_empty() { "orphan" } else { "parent" },
                    format!(
                        "tree {tree} directory {ino} is named by {} entries",
                        refs.len()
                    ),
                );
            } else if refs[0] != rec.parent {
                r.problem(
                    "parent",
                    format!(
                        "tree {tree} directory {ino} has parent {} but lives in {}",
                        rec.parent, refs[0]
                    ),
                );
            }
        } else {
            let n = links.get(&(tree, ino)).copied().unwrap_or(0);
            if n == 0 {
                r.problem(
                    "orphan",
                    format!("tree {tree} inode {ino} is named by no entry"),
                );
            } else if rec.nlink != n {
                r.problem(
                    "nlink",
                    format!(
                        "tree {tree} inode {ino} has nlink {} but {n} entries name it",
                        rec.nlink
                    ),
                );
            }
        }
    }
    let live_inodes = match inner.kv.get(&meta_key(INODES_KEY)).await.map_err(kv_err)? {
        Some(b) => decode_u64(&b).unwrap_or(u64::MAX),
        None => u64::MAX,
    };
    if live_inodes != inodes.len() as u64 {
        r.problem(
            "stats",
            format!(
                "inode count says {live_inodes} but {} inodes exist",
                inodes.len()
            ),
        );
    }

    // Extents: head and history, all trees.
    let mut refs: BTreeMap<ChunkHash, u64> = BTreeMap::new();
    for (k, v) in scan_prefix(inner, KeyPrefix::Extent).await? {
        let (Ok(HeadKey::Extent { tree, ino, idx }), Ok(rec)) =
            (HeadKey::decode(&k), Versioned::<ExtentRecord>::decode(&v))
        else {
            r.problem("decode", format!("extent record {k:?} does not decode"));
            continue;
        };
        let Some(e) = rec.value else { continue };
        r.extents += 1;
        *refs.entry(e.hash).or_default() += 1;
        match inodes.get(&(tree, ino)) {
            Some(f) if f.kind == FileKind::Regular && f.inline.is_none() => {
                if e.len as u64 > cs || idx.saturating_mul(cs).saturating_add(e.len as u64) > f.size
                {
                    r.problem(
                        "extent",
                        format!(
                            "tree {tree} inode {ino} extent {idx} (len {}) lies beyond size {}",
                            e.len, f.size
                        ),
                    );
                }
            }
            Some(_) => r.problem(
                "extent",
                format!(
                    "tree {tree} inode {ino} has extent {idx} but is not a chunked regular file"
                ),
            ),
            None => r.problem(
                "extent",
                format!("tree {tree} extent {idx} belongs to missing inode {ino}"),
            ),
        }
    }
    for (k, v) in scan_prefix(inner, KeyPrefix::HistExtent).await? {
        match Versioned::<ExtentRecord>::decode(&v) {
            Ok(Versioned { value: Some(e), .. }) => {
                r.extents += 1;
                *refs.entry(e.hash).or_default() += 1;
            }
            Ok(_) => {}
            Err(e) => r.problem("decode", format!("history extent {k:?}: {e}")),
        }
    }

    // Refcounts and chunks.
    let counts = cairn_cas::all_refcounts(&inner.kv).await.map_err(cas_err)?;
    let mut counted: BTreeMap<ChunkHash, u64> = BTreeMap::new();
    for (h, n) in counts {
        counted.insert(h, n);
    }
    for (h, want) in &refs {
        match counted.get(h) {
            Some(n) if n == want => {}
            Some(n) => r.problem(
                "refcount",
                format!(
                    "chunk {} has refcount {n} but {want} extents name it",
                    h.to_hex()
                ),
            ),
            None => r.problem(
                "refcount",
                format!(
                    "chunk {} has no refcount but {want} extents name it",
                    h.to_hex()
                ),
            ),
        }
    }
    for (h, n) in &counted {
        if !refs.contains_key(h) {
            r.problem(
                "refcount",
                format!(
                    "chunk {} has refcount {n} but no extent names it",
                    h.to_hex()
                ),
            );
        }
    }
    let chunks = cairn_cas::all_chunks(&inner.kv).await.map_err(cas_err)?;
    r.chunks = chunks.len() as u64;
    let mut stored_bytes = 0u64;
    let mut have = std::collections::BTreeSet::new();
    for (h, stored) in &chunks {
        stored_bytes += stored.len() as u64;
        have.insert(*h);
        if !counted.contains_key(h) {
            r.problem(
                "leak",
                format!("chunk {} is stored but has no refcount", h.to_hex()),
            );
        }
        if let Err(e) = cairn_cas::decode_chunk(h, stored, inner.chunk_size as usize) {
            r.problem("checksum", e.to_string());
        }
    }
    for h in refs.keys() {
        if !have.contains(h) {
            r.problem(
                "missing",
                format!("chunk {} is referenced but not stored", h.to_hex()),
            );
        }
    }
    let st = cairn_cas::stats(&inner.kv).await.map_err(cas_err)?;
    if st.chunks != chunks.len() as u64 || st.stored_bytes != stored_bytes {
        r.problem(
            "stats",
            format!(
                "chunk statistics say {} chunks / {} bytes but {} / {} are stored",
                st.chunks,
                st.stored_bytes,
                chunks.len(),
                stored_bytes
            ),
        );
    }
    Ok(r)
}
