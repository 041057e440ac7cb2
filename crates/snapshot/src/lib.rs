//! The snapshot engine: create, destroy, roll back to, and diff snapshots of
//! dataset trees, following `../shared/design/storage-model.md` sections 2-5.
//!
//! Owns: snapshot creation (one small batch that freezes a generation),
//! destruction through the dead list (marked first, freed in batches,
//! idempotent so a crash mid-way resumes), rollback (one batch undoing the
//! changes since a snapshot), and tree diffs between two views; with each,
//! the space counters it moves (a snapshot's frozen `referenced` and
//! `written`, the dataset's `usedbysnapshots`), and what a record charges
//! ([`charge`]: the file data it holds).
//!
//! Must never know: paths beyond the names a diff reports, permissions,
//! chunk bytes (only refcounts), NFS or protobuf.

use std::collections::{BTreeMap, HashMap};

use cairn_cas::{CasError, Pending};
use cairn_codec::{
    CodecError, ExtentRecord, FileKind, HeadKey, InodeRecord, Key, KeyPrefix, Timestamp, Versioned,
    birth_of,
};
use cairn_kv::{Kv, KvError, Txn};
use cairn_meta::{MetaError, View};
use cairn_registry::{Registry, RegistryError, SnapshotRecord, validate_name};

/// What went wrong; the kind says what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Registry refusal (unknown, exists, invalid, busy, ambiguous).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A record does not decode.
    #[error("corrupt record during snapshot work: {0}")]
    Corrupt(String),
    /// Record layer failure.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// Chunk store failure.
    #[error(transparent)]
    Cas(#[from] CasError),
    /// Key-value failure.
    #[error(transparent)]
    Kv(#[from] KvError),
}

/// Result of snapshot operations.
pub type Result<T> = std::result::Result<T, SnapshotError>;

fn corrupt(k: &[u8], e: CodecError) -> SnapshotError {
    SnapshotError::Corrupt(format!(
        "key {}: {e}",
        k.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// The file data (plain bytes) the record `raw` under `head` holds: an
/// inline file's data, or the chunks of an extent record's map (read from
/// the map only for a record written before extent records kept it).
/// Directory entries, whiteouts and other inodes hold none. This is what
/// the dataset space counters ([`cairn_registry::Space`]) sum.
pub async fn charge(txn: &Txn<'_>, head: &HeadKey, raw: &[u8]) -> Result<u64> {
    let k = head.encode();
    Ok(match head {
        HeadKey::Inode { .. } => Versioned::<InodeRecord>::decode(raw)
            .map_err(|e| corrupt(&k, e))?
            .value
            .map_or(0, |r| inode_charge(&r)),
        HeadKey::Extent { .. } => {
            match Versioned::<ExtentRecord>::decode(raw)
                .map_err(|e| corrupt(&k, e))?
                .value
            {
                Some(ExtentRecord { bytes: Some(b), .. }) => b,
                Some(ExtentRecord { map, bytes: None }) => {
                    match txn.get(&Key::Map(map).encode()).await? {
                        Some(stored) => cairn_cas::decode_map(&map, &stored)?.logical_bytes(),
                        None => {
                            return Err(SnapshotError::Corrupt(format!(
                                "extent record {head:?} names missing map {}",
                                map.to_hex()
                            )));
                        }
                    }
                }
                None => 0,
            }
        }
        _ => 0,
    })
}

/// The file data an inode record itself holds: an inline file's bytes.
pub fn inode_charge(r: &InodeRecord) -> u64 {
    match (&r.kind, &r.inline) {
        (FileKind::Regular, Some(d)) => d.len() as u64,
        _ => 0,
    }
}

/// Stage the creation of snapshot `name` of dataset `dataset`: record the
/// current generation and start a new one. O(1): nothing else is written.
pub fn create(
    reg: &mut Registry,
    txn: &mut Txn<'_>,
    dataset: u64,
    name: &str,
) -> Result<SnapshotRecord> {
    validate_name("snapshot", name)?;
    let mut d = reg
        .dataset(dataset)
        .cloned()
        .ok_or_else(|| RegistryError::NotFound(format!("no dataset with id {dataset}")))?;
    if reg
        .all_snapshots()
        .any(|s| s.tree == dataset && s.name == name)
    {
        return Err(RegistryError::Exists(format!(
            "dataset {:?} already has a snapshot named {name:?}",
            d.name
        ))
        .into());
    }
    let view_id = reg.alloc_tree(txn)?;
    let rec = SnapshotRecord {
        tree: dataset,
        generation: d.generation,
        name: name.to_string(),
        created: Timestamp::now(),
        files: d.files,
        destroying: None,
        view_id,
        referenced: d.space.map(|s| s.referenced),
        written: d.space.map(|s| s.written),
    };
    if let Some(s) = &mut d.space {
        s.written = 0;
    }
    d.last_snapshot = d.generation;
    d.generation += 1;
    reg.put_snapshot(txn, rec.clone());
    reg.put_dataset(txn, d);
    Ok(rec)
}

/// Stage the first step of destroying snapshot `(tree, generation)`: refuse
/// if clones depend on it, hide it from listings, fix the dataset's newest
/// snapshot, and fix the dead-list range the destruction will free.
pub fn begin_destroy(
    reg: &mut Registry,
    txn: &mut Txn<'_>,
    tree: u64,
    generation: u64,
) -> Result<()> {
    let snap = reg
        .snapshot(tree, generation)
        .cloned()
        .ok_or_else(|| RegistryError::NotFound(format!("no snapshot at ({tree}, {generation})")))?;
    if snap.destroying.is_some() {
        return Ok(());
    }
    let clones = reg.clones_of(tree, generation);
    if !clones.is_empty() {
        return Err(RegistryError::Busy(format!(
            "snapshot {}@{} has dependent clones: {}; delete or promote them first",
            reg.name_of(tree),
            snap.name,
            clones
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    let mut d = reg
        .dataset(tree)
        .cloned()
        .ok_or_else(|| RegistryError::NotFound(format!("no dataset with id {tree}")))?;
    let (prev, next) = reg.neighbours(tree, generation);
    // Versions that die from now on are judged against the previous
    // snapshot; the range this destruction frees is fixed here.
    let scan_end = next.unwrap_or(d.generation);
    // What it wrote passes to its successor (the next snapshot, or the
    // live tree); each destruction step takes back what it frees.
    match next.and_then(|g| reg.snapshot(tree, g).cloned()) {
        Some(mut n) => {
            n.written = n.written.zip(snap.written).map(|(a, b)| a + b);
            reg.put_snapshot(txn, n);
        }
        None => {
            if let Some(s) = &mut d.space {
                s.written += snap.written.unwrap_or(0);
            }
        }
    }
    if d.last_snapshot == generation {
        d.last_snapshot = prev;
    }
    reg.put_dataset(txn, d);
    reg.put_snapshot(
        txn,
        SnapshotRecord {
            destroying: Some(scan_end),
            ..snap
        },
    );
    Ok(())
}

/// Progress of one destruction step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestroyStep {
    /// Dead-list entries examined.
    pub examined: u64,
    /// Versions freed (history record and dead-list entry deleted).
    pub freed: u64,
    /// Whether the snapshot is now gone.
    pub done: bool,
}

/// Free up to `budget` dead-list entries of snapshot `(tree, generation)`
/// (already marked by [`begin_destroy`]) in one batch, continuing after
/// `cursor`. Frees exactly the versions only it could see: deaths in
/// `(s, scan_end]`, births in `(previous snapshot, s]`. The final step
/// removes the snapshot record. Idempotent: after a crash, start again with
/// no cursor.
pub async fn destroy_step(
    kv: &Kv,
    reg: &mut Registry,
    tree: u64,
    generation: u64,
    cursor: &mut Option<Vec<u8>>,
    budget: usize,
) -> Result<DestroyStep> {
    let snap = reg
        .snapshot(tree, generation)
        .cloned()
        .ok_or_else(|| RegistryError::NotFound(format!("no snapshot at ({tree}, {generation})")))?;
    let Some(scan_end) = snap.destroying else {
        return Err(RegistryError::Invalid(format!(
            "snapshot {} is not being destroyed",
            snap.name
        ))
        .into());
    };
    let prev = reg
        .all_snapshots()
        .filter(|s| s.tree == tree && s.generation < generation)
        .map(|s| s.generation)
        .max()
        .unwrap_or(0);
    let (start, end) = Key::dead_range(tree, generation + 1, scan_end.max(generation + 1));
    let start = cursor.clone().unwrap_or(start);
    let entries = kv.scan(&start, &end, budget.max(1)).await?;
    let mut step = DestroyStep::default();
    let mut txn = kv.txn();
    let mut pending = Pending::new();
    let mut freed_bytes = 0u64;
    for (k, _) in &entries {
        step.examined += 1;
        let Key::Dead {
            death, birth, head, ..
        } = Key::decode(k).map_err(|e| corrupt(k, e))?
        else {
            return Err(SnapshotError::Corrupt(
                "dead-list key of the wrong kind".into(),
            ));
        };
        if birth <= prev || birth > generation {
            continue; // still visible to an older snapshot (or not ours)
        }
        let hist = head.history_key(death);
        if let Some(v) = txn.get(&hist).await? {
            freed_bytes += charge(&txn, &head, &v).await?;
            if let HeadKey::Extent { .. } = head {
                let ver = Versioned::<ExtentRecord>::decode(&v).map_err(|e| corrupt(&hist, e))?;
                if let Some(e) = ver.value {
                    pending.decref_map(e.map);
                }
            }
        }
        txn.delete(hist);
        txn.delete(k.to_vec());
        step.freed += 1;
    }
    if freed_bytes > 0 {
        take_back(reg, &mut txn, tree, generation, freed_bytes);
    }
    if entries.len() < budget.max(1) {
        reg.remove_snapshot(&mut txn, tree, generation);
        step.done = true;
    } else if let Some((k, _)) = entries.last() {
        let mut c = k.to_vec();
        c.push(0);
        *cursor = Some(c);
    }
    pending.apply(&mut txn).await?;
    txn.commit().await?;
    Ok(step)
}

/// Stage the counters of `freed` bytes of history that destroying snapshot
/// `(tree, generation)` freed: they leave the dataset's `usedbysnapshots`,
/// and the `written` its successor inherited (they never reached it).
fn take_back(reg: &mut Registry, txn: &mut Txn<'_>, tree: u64, generation: u64, freed: u64) {
    let next = reg
        .neighbours(tree, generation)
        .1
        .and_then(|g| reg.snapshot(tree, g).cloned());
    let Some(mut d) = reg.dataset(tree).cloned() else {
        return;
    };
    match next {
        Some(mut n) => {
            n.written = n.written.map(|w| w.saturating_sub(freed));
            reg.put_snapshot(txn, n);
        }
        None => {
            if let Some(s) = &mut d.space {
                s.written = s.written.saturating_sub(freed);
            }
        }
    }
    if let Some(s) = &mut d.space {
        s.snapshots = s.snapshots.saturating_sub(freed);
    }
    reg.put_dataset(txn, d);
}

/// What a rollback changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollbackReport {
    /// Head versions born after the snapshot that were discarded.
    pub discarded: u64,
    /// History versions brought back to the head.
    pub restored: u64,
}

/// Stage the rollback of dataset `tree` to its newest snapshot at
/// `generation`: discard every head version born after it and bring back the
/// versions it saw. The caller destroys newer snapshots first and commits
/// `txn` (one atomic batch).
pub async fn rollback(
    reg: &mut Registry,
    txn: &mut Txn<'_>,
    pending: &mut Pending,
    tree: u64,
    generation: u64,
) -> Result<RollbackReport> {
    let snap = reg
        .snapshot(tree, generation)
        .cloned()
        .ok_or_else(|| RegistryError::NotFound(format!("no snapshot at ({tree}, {generation})")))?;
    let mut d = reg
        .dataset(tree)
        .cloned()
        .ok_or_else(|| RegistryError::NotFound(format!("no dataset with id {tree}")))?;
    if let Some(newer) = reg
        .all_snapshots()
        .find(|s| s.tree == tree && s.generation > generation)
    {
        return Err(RegistryError::Busy(format!(
            "snapshot {}@{} is newer than {}; destroy it first",
            d.name, newer.name, snap.name
        ))
        .into());
    }
    let mut report = RollbackReport::default();
    let (mut discarded, mut restored) = (0u64, 0u64);
    // Head versions no snapshot sees. (A full scan of the tree's head keys:
    // births are not indexed; see docs/ARCHITECTURE.md.)
    for kind in [KeyPrefix::Inode, KeyPrefix::Dirent, KeyPrefix::Extent] {
        let (start, end) = Key::tree_range(kind, tree);
        for (k, v) in txn.scan(&start, &end, usize::MAX).await? {
            if birth_of(&v).map_err(|e| corrupt(&k, e))? <= generation {
                continue;
            }
            if kind != KeyPrefix::Dirent
                && let Ok(Key::Head(head)) = Key::decode(&k)
            {
                discarded += charge(txn, &head, &v).await?;
            }
            if kind == KeyPrefix::Extent {
                let ver = Versioned::<ExtentRecord>::decode(&v).map_err(|e| corrupt(&k, e))?;
                if let Some(e) = ver.value {
                    pending.decref_map(e.map);
                }
            }
            txn.delete(k.to_vec());
            report.discarded += 1;
        }
    }
    // Versions the snapshot saw that died since: back to the head.
    let (start, end) = Key::dead_range(tree, generation + 1, u64::MAX);
    for (k, _) in txn.scan(&start, &end, usize::MAX).await? {
        let Key::Dead { death, head, .. } = Key::decode(&k).map_err(|e| corrupt(&k, e))? else {
            return Err(SnapshotError::Corrupt(
                "dead-list key of the wrong kind".into(),
            ));
        };
        let hist = head.history_key(death);
        let Some(v) = txn.get(&hist).await? else {
            return Err(SnapshotError::Corrupt(format!(
                "dead-list entry without its history version: {head:?} died at {death}"
            )));
        };
        restored += charge(txn, &head, &v).await?;
        txn.put(head.encode(), v);
        txn.delete(hist);
        txn.delete(k.to_vec());
        report.restored += 1;
    }
    d.files = snap.files;
    // The head is the snapshot again. Without a figure frozen at the
    // snapshot (an older build took it) the engine counts again.
    d.space = match (d.space, snap.referenced) {
        (Some(s), Some(referenced)) => Some(cairn_registry::Space {
            referenced,
            own: (s.own + restored).saturating_sub(discarded),
            snapshots: s.snapshots.saturating_sub(restored),
            written: 0,
        }),
        _ => None,
    };
    d.last_snapshot = generation;
    reg.put_dataset(txn, d);
    Ok(report)
}

/// How a path differs between two views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Exists only in the newer view.
    Added,
    /// Exists only in the older view.
    Removed,
    /// Same inode, different content or attributes.
    Modified,
    /// Same inode at another path (the entry's `from` says where).
    Renamed,
}

/// One difference between two views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    /// What changed.
    pub change: Change,
    /// Path (in the newer view; in the older one for removals).
    pub path: String,
    /// Previous path, for renames.
    pub from: Option<String>,
    /// The file type.
    pub kind: FileKind,
}

/// Every inode reachable from `root` in `view`, with its first path.
async fn walk(
    txn: &Txn<'_>,
    view: View,
    root: u64,
) -> Result<BTreeMap<u64, (String, InodeRecord)>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root, String::new())];
    while let Some((dir, path)) = stack.pop() {
        let mut after = 0;
        loop {
            let (page, done) = cairn_meta::list_dirents(txn, view, dir, after, 1024).await?;
            for e in &page {
                after = e.cookie;
                let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
                if out.contains_key(&e.record.ino) {
                    continue; // another hard link
                }
                let Some(rec) = cairn_meta::inode(txn, view, e.record.ino).await? else {
                    return Err(SnapshotError::Corrupt(format!(
                        "entry {p} names missing inode {}",
                        e.record.ino
                    )));
                };
                if rec.kind == FileKind::Directory {
                    stack.push((e.record.ino, p.clone()));
                }
                out.insert(e.record.ino, (p, rec));
            }
            if done {
                break;
            }
        }
    }
    Ok(out)
}

fn same_content(a: &InodeRecord, b: &InodeRecord) -> bool {
    InodeRecord {
        atime: b.atime,
        ..a.clone()
    } == *b
}

/// Differences from `old` to `new` (two views of related trees), sorted by
/// path. Walks both trees: O(files).
pub async fn diff(txn: &Txn<'_>, old: View, new: View, root: u64) -> Result<Vec<DiffEntry>> {
    let a = walk(txn, old, root).await?;
    let b = walk(txn, new, root).await?;
    let mut out = Vec::new();
    let mut seen: HashMap<u64, ()> = HashMap::new();
    for (ino, (path, rec)) in &b {
        seen.insert(*ino, ());
        match a.get(ino) {
            None => out.push(DiffEntry {
                change: Change::Added,
                path: path.clone(),
                from: None,
                kind: rec.kind,
            }),
            Some((old_path, old_rec)) => {
                if old_path != path {
                    out.push(DiffEntry {
                        change: Change::Renamed,
                        path: path.clone(),
                        from: Some(old_path.clone()),
                        kind: rec.kind,
                    });
                }
                if !same_content(old_rec, rec) {
                    out.push(DiffEntry {
                        change: Change::Modified,
                        path: path.clone(),
                        from: None,
                        kind: rec.kind,
                    });
                }
            }
        }
    }
    for (ino, (path, rec)) in &a {
        if !seen.contains_key(ino) {
            out.push(DiffEntry {
                change: Change::Removed,
                path: path.clone(),
                from: None,
                kind: rec.kind,
            });
        }
    }
    out.sort_by(|x, y| (&x.path, x.change).cmp(&(&y.path, y.change)));
    Ok(out)
}
