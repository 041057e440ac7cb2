//! `fsck`: walk the whole store and report every violated invariant.
//!
//! Checked, for every dataset head and every live snapshot as readers see
//! them (through clone origins): every record decodes; every directory entry names an existing
//! inode of the recorded type in a directory; link counts equal the entries
//! naming an inode (directories: 2 + subdirectories); every directory but the
//! root has exactly one entry and its parent field agrees; no orphans; extents
//! belong to regular, non-inline files and their chunks lie within their
//! size; each inode's recorded allocation is the sum of its chunks'
//! lengths; for every extent map, refcount == number of extent records
//! (head and history, all trees) naming it; for every chunk, refcount == number of
//! slots of stored maps naming it; every map and chunk exists and matches its
//! hash; no map, chunk or refcount without references; the inode counter is above every inode; the store's
//! statistics match what is stored. Registry: the default exists, each
//! dataset's newest-snapshot generation and file counts agree with what is
//! stored, clones' origins exist, no snapshot is half-destroyed. History:
//! every history version has its dead-list entry and is seen by some live
//! snapshot; no record is born after its tree's generation or belongs to a
//! tree that does not exist.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cairn_cas::Level;
use cairn_codec::{
    ChunkHash, DirentRecord, ExtentMap, ExtentRecord, FileKind, HeadKey, InodeRecord, Key,
    KeyPrefix, MAP_SLOTS, Versioned, decode_u64,
};
use cairn_fs::FsError;

use cairn_meta::View;
use cairn_registry::Registry;

use crate::{Inner, NEXT_INO_KEY, ROOT_INO, cas_err, kv_err, meta_err, meta_key, reg_err};

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
    /// Extent maps checked.
    pub maps: u64,
    /// Chunks checked (each read from its pack and verified).
    pub chunks: u64,
    /// Pack objects stored.
    pub packs: u64,
    /// Stored packs nothing lives in (emptied by deletes, or written by an
    /// operation or repack that did not commit): gc deletes them.
    pub reclaimable_packs: u64,
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
            "{} inodes, {} entries, {} extents, {} maps, {} chunks, {} packs \
             ({} reclaimable by gc): {} problem(s)",
            self.inodes,
            self.dirents,
            self.extents,
            self.maps,
            self.chunks,
            self.packs,
            self.reclaimable_packs,
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

/// The namespace of one view (a dataset head or a snapshot), as readers see
/// it through clone origins. `maps`: every stored map that verifies.
#[allow(clippy::too_many_arguments)]
async fn check_view(
    inner: &Inner,
    r: &mut FsckReport,
    view: View,
    label: &str,
    files: u64,
    cs: u64,
    next_ino: u64,
    maps: &HashMap<ChunkHash, ExtentMap>,
) -> Result<(), FsError> {
    let t = inner.kv.txn();
    let range = async |kind: KeyPrefix| {
        let (start, end) = Key::tree_range(kind, view.tree);
        cairn_meta::visible_range(&t, view, &start, &end, usize::MAX)
            .await
            .map(|(v, _)| v)
            .map_err(meta_err)
    };

    let mut inodes: BTreeMap<u64, InodeRecord> = BTreeMap::new();
    for (k, v) in range(KeyPrefix::Inode).await? {
        match (HeadKey::decode(&k), Versioned::<InodeRecord>::decode(&v)) {
            (
                Ok(HeadKey::Inode { ino, .. }),
                Ok(Versioned {
                    value: Some(rec), ..
                }),
            ) => {
                inodes.insert(ino, rec);
            }
            (Ok(_), Ok(Versioned { value: None, .. })) => {}
            (a, b) => r.problem(
                "decode",
                format!("{label}: inode record {k:?}: {a:?} / {b:?}"),
            ),
        }
    }
    r.inodes += inodes.len() as u64;
    if inodes.len() as u64 != files {
        r.problem(
            "counter",
            format!(
                "{label}: file count says {files} but {} inodes exist",
                inodes.len()
            ),
        );
    }
    if !inodes.contains_key(&ROOT_INO) {
        r.problem(
            "dangling",
            format!("{label}: the root directory is missing"),
        );
    }

    // Directory entries.
    let mut links: HashMap<u64, u32> = HashMap::new();
    let mut subdirs: HashMap<u64, u32> = HashMap::new();
    let mut dir_refs: HashMap<u64, Vec<u64>> = HashMap::new();
    for (k, v) in range(KeyPrefix::Dirent).await? {
        let (
            Ok(HeadKey::Dirent {
                dir, cookie, name, ..
            }),
            Ok(rec),
        ) = (HeadKey::decode(&k), Versioned::<DirentRecord>::decode(&v))
        else {
            r.problem(
                "decode",
                format!("{label}: directory entry {k:?} does not decode"),
            );
            continue;
        };
        let Some(rec) = rec.value else { continue };
        r.dirents += 1;
        let shown = String::from_utf8_lossy(&name);
        if cookie != cairn_codec::name_cookie(&name) {
            r.problem(
                "dirent",
                format!("{label}: dir {dir} entry {shown:?} has a wrong cookie"),
            );
        }
        match inodes.get(&dir) {
            Some(d) if d.kind == FileKind::Directory => {}
            Some(_) => r.problem(
                "dirent",
                format!("{label}: entry {shown:?} is in inode {dir}, which is not a directory"),
            ),
            None => r.problem(
                "dirent",
                format!("{label}: entry {shown:?} is in missing directory {dir}"),
            ),
        }
        match inodes.get(&rec.ino) {
            Some(child) => {
                if child.kind != rec.kind {
                    r.problem(
                        "dirent",
                        format!(
                            "{label}: dir {dir} entry {shown:?}: type {:?} but inode {} is {:?}",
                            rec.kind, rec.ino, child.kind
                        ),
                    );
                }
                if child.kind == FileKind::Directory {
                    *subdirs.entry(dir).or_default() += 1;
                    dir_refs.entry(rec.ino).or_default().push(dir);
                } else {
                    *links.entry(rec.ino).or_default() += 1;
                }
            }
            None => r.problem(
                "dangling",
                format!(
                    "{label}: dir {dir} entry {shown:?} names missing inode {}",
                    rec.ino
                ),
            ),
        }
    }

    // Link counts, parents, orphans.
    for (&ino, rec) in &inodes {
        if ino >= next_ino {
            r.problem(
                "counter",
                format!("{label}: inode {ino} is not below the inode counter {next_ino}"),
            );
        }
        if rec.kind == FileKind::Directory {
            let want = 2 + subdirs.get(&ino).copied().unwrap_or(0);
            if rec.nlink != want {
                r.problem(
                    "nlink",
                    format!(
                        "{label}: directory {ino} has nlink {} but {want} is right",
                        rec.nlink
                    ),
                );
            }
            let refs = dir_refs.get(&ino).cloned().unwrap_or_default();
            if ino == ROOT_INO {
                if !refs.is_empty() || rec.parent != ROOT_INO {
                    r.problem(
                        "parent",
                        format!(
                            "{label}: root directory is referenced by {refs:?} or has parent {}",
                            rec.parent
                        ),
                    );
                }
            } else if refs.len() != 1 {
                r.problem(
                    if refs.is_empty() { "orphan" } else { "parent" },
                    format!(
                        "{label}: directory {ino} is named by {} entries",
                        refs.len()
                    ),
                );
            } else if refs[0] != rec.parent {
                r.problem(
                    "parent",
                    format!(
                        "{label}: directory {ino} has parent {} but lives in {}",
                        rec.parent, refs[0]
                    ),
                );
            }
        } else {
            let n = links.get(&ino).copied().unwrap_or(0);
            if n == 0 {
                r.problem(
                    "orphan",
                    format!("{label}: inode {ino} is named by no entry"),
                );
            } else if rec.nlink != n {
                r.problem(
                    "nlink",
                    format!(
                        "{label}: inode {ino} has nlink {} but {n} entries name it",
                        rec.nlink
                    ),
                );
            }
        }
    }

    // Extents lie within chunked regular files; each file's allocation is
    // the sum of its chunks' lengths.
    let mut stored: HashMap<u64, u64> = HashMap::new();
    let mut unknown: BTreeSet<u64> = BTreeSet::new();
    for (k, v) in range(KeyPrefix::Extent).await? {
        let (
            Ok(HeadKey::Extent {
                ino, idx: group, ..
            }),
            Ok(rec),
        ) = (HeadKey::decode(&k), Versioned::<ExtentRecord>::decode(&v))
        else {
            r.problem(
                "decode",
                format!("{label}: extent record {k:?} does not decode"),
            );
            continue;
        };
        let Some(e) = rec.value else { continue };
        match inodes.get(&ino) {
            Some(f) if f.kind == FileKind::Regular && f.inline.is_none() => {
                // A missing or damaged map is reported with the store's maps.
                let Some(map) = maps.get(&e.map) else {
                    unknown.insert(ino);
                    continue;
                };
                for (i, c) in map.chunks() {
                    let idx = group.saturating_mul(MAP_SLOTS).saturating_add(i);
                    let len = c.len as u64;
                    *stored.entry(ino).or_default() += len;
                    if len > cs || idx.saturating_mul(cs).saturating_add(len) > f.size {
                        r.problem(
                            "extent",
                            format!(
                                "{label}: inode {ino} chunk {idx} (len {len}) lies beyond size {}",
                                f.size
                            ),
                        );
                    }
                }
            }
            Some(_) => r.problem(
                "extent",
                format!(
                    "{label}: inode {ino} has extent group {group} but is not a chunked regular file"
                ),
            ),
            None => r.problem(
                "extent",
                format!("{label}: extent group {group} belongs to missing inode {ino}"),
            ),
        }
    }
    for (&ino, rec) in &inodes {
        let want = stored.get(&ino).copied().unwrap_or(0);
        match rec.allocated {
            // Written before allocation was kept: nothing to compare.
            None => {}
            _ if unknown.contains(&ino) => {}
            Some(a) if a == want => {}
            got => r.problem(
                "allocated",
                format!("{label}: inode {ino} records {got:?} bytes allocated but its chunks hold {want}"),
            ),
        }
    }
    Ok(())
}

pub(crate) async fn run(inner: &Inner, reg: &Registry) -> Result<FsckReport, FsError> {
    let mut r = FsckReport::default();
    let next_ino = match inner
        .kv
        .get(&meta_key(NEXT_INO_KEY))
        .await
        .map_err(kv_err)?
    {
        Some(b) => decode_u64(&b).unwrap_or(0),
        None => 0,
    };

    // Registry: generations, origins, snapshots.
    if reg.dataset(reg.default_id()).is_none() {
        r.problem("registry", "the default dataset does not exist".into());
    }
    for d in reg.datasets() {
        let snaps = reg.snapshots_of(d.id);
        let newest = snaps.iter().map(|s| s.generation).max().unwrap_or(0);
        if d.last_snapshot != newest {
            r.problem(
                "registry",
                format!(
                    "dataset {:?}: newest snapshot is at {newest} but the record says {}",
                    d.name, d.last_snapshot
                ),
            );
        }
        if snaps.iter().any(|s| s.generation >= d.generation) {
            r.problem(
                "registry",
                format!(
                    "dataset {:?}: a snapshot is not older than generation {}",
                    d.name, d.generation
                ),
            );
        }
        if let Some((t, g)) = d.origin
            && reg.snapshot(t, g).is_none_or(|s| s.destroying.is_some())
        {
            r.problem(
                "registry",
                format!(
                    "clone {:?}: origin snapshot ({t}, {g}) does not exist",
                    d.name
                ),
            );
        }
    }
    for s in reg.all_snapshots() {
        if reg.dataset(s.tree).is_none() {
            r.problem(
                "registry",
                format!(
                    "snapshot {:?} belongs to missing dataset {}",
                    s.name, s.tree
                ),
            );
        }
        if s.destroying.is_some() {
            r.problem(
                "registry",
                format!("snapshot {:?} is half-destroyed", s.name),
            );
        }
    }
    for tree in reg.freeing() {
        r.problem(
            "registry",
            format!("the tree of deleted dataset {tree} is half-freed"),
        );
    }

    // Space counters against a walk of the records they count.
    for d in reg.datasets() {
        let fresh = Registry::read_dataset(&inner.kv, d.id)
            .await
            .map_err(crate::reg_err)?;
        let recorded = fresh.as_ref().unwrap_or(d).space;
        let counted = crate::space::count_dataset(&inner.kv, reg, d.id).await?;
        match recorded {
            Some(s) if s != counted => r.problem(
                "space",
                format!(
                    "dataset {:?}: counters say {s:?} but its records hold {counted:?}",
                    d.name
                ),
            ),
            None => r.problem(
                "space",
                format!("dataset {:?}: space counters were never counted", d.name),
            ),
            Some(_) => {}
        }
        for s in reg.snapshots_of(d.id) {
            let (referenced, written) = crate::space::count_snapshot(&inner.kv, reg, s).await?;
            if s.referenced != Some(referenced) || s.written != Some(written) {
                r.problem(
                    "space",
                    format!(
                        "snapshot {}@{}: recorded referenced {:?} written {:?}, its records hold {referenced} and {written}",
                        d.name, s.name, s.referenced, s.written
                    ),
                );
            }
        }
    }

    // Stored maps, verified against their hashes.
    let mut maps = HashMap::new();
    let stored_maps = cairn_cas::all_objects(&inner.kv, Level::Maps)
        .await
        .map_err(cas_err)?;
    r.maps = stored_maps.len() as u64;
    for (h, stored) in &stored_maps {
        match cairn_cas::decode_map(h, stored) {
            Ok(m) => {
                maps.insert(*h, m);
            }
            Err(e) => r.problem("checksum", e.to_string()),
        }
    }

    // Every view's namespace.
    for d in reg.datasets() {
        let cs = d.chunk_size as u64;
        let view = reg.head_view(d.id).map_err(reg_err)?;
        check_view(inner, &mut r, view, &d.name, d.files, cs, next_ino, &maps).await?;
        for s in reg.snapshots_of(d.id) {
            let view = reg.snapshot_view(d.id, s.generation).map_err(reg_err)?;
            let label = format!("{}@{}", d.name, s.name);
            check_view(inner, &mut r, view, &label, s.files, cs, next_ino, &maps).await?;
        }
    }

    // Records: births, history/dead-list pairing, trees that exist.
    for kind in [KeyPrefix::Inode, KeyPrefix::Dirent, KeyPrefix::Extent] {
        for (k, v) in scan_prefix(inner, kind).await? {
            let Ok(
                HeadKey::Inode { tree, .. }
                | HeadKey::Dirent { tree, .. }
                | HeadKey::Extent { tree, .. },
            ) = HeadKey::decode(&k)
            else {
                r.problem("decode", format!("head key {k:?} does not decode"));
                continue;
            };
            match (reg.dataset(tree), cairn_codec::birth_of(&v)) {
                (None, _) if reg.is_freeing(tree) => {}
                (None, _) => r.problem("orphan", format!("record {k:?} of missing tree {tree}")),
                (Some(d), Ok(b)) if b > d.generation => r.problem(
                    "generation",
                    format!(
                        "record {k:?} born at {b}, after generation {}",
                        d.generation
                    ),
                ),
                (_, Err(e)) => r.problem("decode", format!("record {k:?}: {e}")),
                _ => {}
            }
        }
    }
    let mut dead_hist = std::collections::BTreeSet::new();
    for (k, _) in scan_prefix(inner, KeyPrefix::Dead).await? {
        let Ok(Key::Dead {
            tree,
            death,
            birth,
            head,
        }) = Key::decode(&k)
        else {
            r.problem("decode", format!("dead-list key {k:?} does not decode"));
            continue;
        };
        let hk = head.history_key(death);
        if reg.is_freeing(tree) {
            dead_hist.insert(hk);
            continue;
        }
        match inner.kv.get(&hk).await.map_err(kv_err)? {
            Some(v) if cairn_codec::birth_of(&v).ok() == Some(birth) => {}
            Some(_) => r.problem(
                "history",
                format!("tree {tree}: dead-list entry {head:?}@{death} disagrees on birth {birth}"),
            ),
            None => r.problem(
                "history",
                format!("tree {tree}: dead-list entry {head:?}@{death} has no history version"),
            ),
        }
        // A version is worth keeping only if a live snapshot sees it.
        let seen = reg
            .snapshots_of(tree)
            .iter()
            .any(|s| birth <= s.generation && s.generation < death);
        if !seen {
            r.problem(
                "history",
                format!(
                    "tree {tree}: history version {head:?} (born {birth}, died {death}) is seen by no snapshot"
                ),
            );
        }
        dead_hist.insert(hk);
    }
    for kind in [
        KeyPrefix::HistInode,
        KeyPrefix::HistDirent,
        KeyPrefix::HistExtent,
    ] {
        for (k, _) in scan_prefix(inner, kind).await? {
            if !dead_hist.contains(&k[..]) {
                r.problem(
                    "history",
                    format!("history version {k:?} has no dead-list entry"),
                );
            }
        }
    }

    // Extent records (head and history, all trees) reference maps.
    let mut map_refs: BTreeMap<ChunkHash, u64> = BTreeMap::new();
    for kind in [KeyPrefix::Extent, KeyPrefix::HistExtent] {
        for (k, v) in scan_prefix(inner, kind).await? {
            match Versioned::<ExtentRecord>::decode(&v) {
                Ok(Versioned { value: Some(e), .. }) => {
                    r.extents += 1;
                    *map_refs.entry(e.map).or_default() += 1;
                }
                Ok(_) => {}
                Err(e) => r.problem("decode", format!("extent {k:?}: {e}")),
            }
        }
    }
    let stored: BTreeSet<ChunkHash> = stored_maps.iter().map(|(h, _)| *h).collect();
    check_level(inner, &mut r, Level::Maps, &map_refs, &stored).await?;

    // Stored maps' slots reference chunks.
    let mut chunk_refs: BTreeMap<ChunkHash, u64> = BTreeMap::new();
    for m in maps.values() {
        for (_, c) in m.chunks() {
            *chunk_refs.entry(c.hash).or_default() += 1;
        }
    }
    let chunks = cairn_cas::all_objects(&inner.kv, Level::Chunks)
        .await
        .map_err(cas_err)?;
    r.chunks = chunks.len() as u64;
    let mut stored_bytes = 0u64;
    let mut live: BTreeMap<u64, cairn_cas::PackLive> = BTreeMap::new();
    let mut located = Vec::with_capacity(chunks.len());
    for (h, stored) in &chunks {
        match cairn_cas::decode_location(h, stored) {
            Ok(loc) => {
                stored_bytes += loc.len as u64;
                let l = live.entry(loc.pack).or_default();
                l.chunks += 1;
                l.bytes += loc.len as u64;
                located.push((*h, loc));
            }
            Err(e) => r.problem("index", e.to_string()),
        }
    }
    check_packs(inner, &mut r, &located, &live).await?;
    let stored: BTreeSet<ChunkHash> = chunks.iter().map(|(h, _)| *h).collect();
    check_level(inner, &mut r, Level::Chunks, &chunk_refs, &stored).await?;
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

/// Frames read per batch while verifying chunks.
const VERIFY_BATCH: usize = 256;

/// Ordering rule 6: every index entry points into a stored (or still
/// buffered) pack at a frame whose bytes hash to the chunk; each pack's
/// live record equals the sum of the entries pointing into it; no pack is
/// stored at or past the next pack id (an orphan open should have deleted).
async fn check_packs(
    inner: &Inner,
    r: &mut FsckReport,
    located: &[(ChunkHash, cairn_cas::Location)],
    live: &BTreeMap<u64, cairn_cas::PackLive>,
) -> Result<(), FsError> {
    let packs = &inner.packs;
    let stored: BTreeMap<u64, u64> = packs
        .store()
        .list_from(0)
        .await
        .map_err(crate::pack_err)?
        .into_iter()
        .collect();
    r.packs = stored.len() as u64;
    let next = packs.next_id();
    for (id, size) in &stored {
        if *id >= next && !packs.in_memory(*id) {
            r.problem(
                "pack",
                format!("pack {id:016x} ({size} bytes) is past the last sealed pack"),
            );
        }
        if live.get(id).is_none_or(|l| l.chunks == 0) {
            r.reclaimable_packs += 1;
        }
    }
    let mut sorted: Vec<&(ChunkHash, cairn_cas::Location)> = located.iter().collect();
    sorted.sort_by_key(|(_, l)| (l.pack, l.offset));
    for batch in sorted.chunks(VERIFY_BATCH) {
        let mut readable = Vec::new();
        for (h, loc) in batch {
            let exists = stored.contains_key(&loc.pack) || packs.in_memory(loc.pack);
            match stored.get(&loc.pack) {
                Some(size) if loc.range().end > *size => r.problem(
                    "index",
                    format!(
                        "chunk {} points past the end of pack {:016x} ({size} bytes)",
                        h.to_hex(),
                        loc.pack
                    ),
                ),
                _ if !exists => r.problem(
                    "index",
                    format!(
                        "chunk {} points into pack {:016x}, which is not stored",
                        h.to_hex(),
                        loc.pack
                    ),
                ),
                _ => readable.push((*h, *loc)),
            }
        }
        for (_, _, e) in cairn_cas::verify_frames(packs, &readable).await {
            r.problem("checksum", e);
        }
    }
    let recorded: BTreeMap<u64, cairn_cas::PackLive> = cairn_cas::all_pack_live(&inner.kv)
        .await
        .map_err(cas_err)?
        .into_iter()
        .collect();
    let ids: BTreeSet<u64> = live.keys().chain(recorded.keys()).copied().collect();
    for id in &ids {
        let want = live.get(id).copied().unwrap_or_default();
        let got = recorded.get(id).copied().unwrap_or_default();
        if want != got {
            r.problem(
                "pack",
                format!(
                    "pack {id:016x} records {} live chunks / {} bytes but the index has {} / {}",
                    got.chunks, got.bytes, want.chunks, want.bytes
                ),
            );
        }
    }
    Ok(())
}

/// One level of references: every refcount equals the references `refs`
/// counted; no refcount without references; every stored object has a
/// refcount and every referenced one is stored.
async fn check_level(
    inner: &Inner,
    r: &mut FsckReport,
    level: Level,
    refs: &BTreeMap<ChunkHash, u64>,
    stored: &BTreeSet<ChunkHash>,
) -> Result<(), FsError> {
    let (what, referrers) = match level {
        Level::Maps => ("map", "extent records"),
        Level::Chunks => ("chunk", "map slots"),
    };
    let counted: BTreeMap<ChunkHash, u64> = cairn_cas::all_refcounts(&inner.kv, level)
        .await
        .map_err(cas_err)?
        .into_iter()
        .collect();
    for (h, want) in refs {
        let h_hex = h.to_hex();
        match counted.get(h) {
            Some(n) if n == want => {}
            Some(n) => r.problem(
                "refcount",
                format!("{what} {h_hex} has refcount {n} but {want} {referrers} name it"),
            ),
            None => r.problem(
                "refcount",
                format!("{what} {h_hex} has no refcount but {want} {referrers} name it"),
            ),
        }
        if !stored.contains(h) {
            r.problem(
                "missing",
                format!("{what} {h_hex} is referenced but not stored"),
            );
        }
    }
    for (h, n) in &counted {
        if !refs.contains_key(h) {
            r.problem(
                "refcount",
                format!(
                    "{what} {} has refcount {n} but no {referrers} name it",
                    h.to_hex()
                ),
            );
        }
    }
    for h in stored {
        if !counted.contains_key(h) {
            r.problem(
                "leak",
                format!("{what} {} is stored but has no refcount", h.to_hex()),
            );
        }
    }
    Ok(())
}
