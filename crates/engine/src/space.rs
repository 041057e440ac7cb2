//! Space accounting by walking: what the counters each operation keeps
//! ([`cairn_registry::Space`], a snapshot's `referenced` and `written`)
//! must equal, counted from the records. fsck compares the two; opening a
//! store counts the figures an older build did not keep. A snapshot's
//! `used` is no counter (it changes whenever a neighbour goes): it is
//! summed from the dead-list range only that snapshot sees, O(the changes
//! between its neighbours).

use cairn_codec::{HeadKey, Key, KeyPrefix, birth_of};
use cairn_fs::{ErrorKind, FsError};
use cairn_kv::Kv;
use cairn_meta::{Lineage, View};
use cairn_registry::{Registry, SnapshotRecord, Space};

use crate::{Engine, WriterState, kv_err, meta_err, reg_err, snap_err};

type Result<T> = std::result::Result<T, FsError>;

/// Records read per page while counting.
const PAGE: usize = 4096;

fn corrupt(k: &[u8], e: impl std::fmt::Display) -> FsError {
    FsError::new(ErrorKind::Corrupt, format!("record {k:?}: {e}"))
}

/// The data of the inode and extent records `view` sees, and of those
/// of them born after generation `since`.
async fn view_charges(kv: &Kv, view: View, since: u64) -> Result<(u64, u64)> {
    let t = kv.txn();
    let (mut total, mut after) = (0u64, 0u64);
    for kind in [KeyPrefix::Inode, KeyPrefix::Extent] {
        let (mut start, end) = Key::tree_range(kind, view.tree);
        loop {
            let (page, done) = cairn_meta::visible_range(&t, view, &start, &end, PAGE)
                .await
                .map_err(meta_err)?;
            for (k, v) in &page {
                let head = HeadKey::decode(k).map_err(|e| corrupt(k, e))?;
                let c = cairn_snapshot::charge(&t, &head, v)
                    .await
                    .map_err(snap_err)?;
                total += c;
                if birth_of(v).map_err(|e| corrupt(k, e))? > since {
                    after += c;
                }
            }
            match page.last() {
                Some((k, _)) if !done => {
                    start = k.to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
    }
    Ok((total, after))
}

/// The same view without its origins: the records of its own tree.
fn own(view: View) -> View {
    View {
        lineage: Lineage::NONE,
        ..view
    }
}

/// The data of every history record of `tree`: what only its snapshots
/// hold.
async fn history_charges(kv: &Kv, tree: u64) -> Result<u64> {
    let t = kv.txn();
    let mut total = 0;
    for kind in [KeyPrefix::HistInode, KeyPrefix::HistExtent] {
        let (start, end) = Key::tree_range(kind, tree);
        let mut it = kv.iter(&start, &end).await.map_err(kv_err)?;
        while let Some((k, v)) = it.next().await.map_err(kv_err)? {
            let Ok(Key::History { head, .. }) = Key::decode(&k) else {
                return Err(corrupt(&k, "not a history key"));
            };
            total += cairn_snapshot::charge(&t, &head, &v)
                .await
                .map_err(snap_err)?;
        }
    }
    Ok(total)
}

/// Dataset `id`'s space counters, counted from its records.
pub(crate) async fn count_dataset(kv: &Kv, reg: &Registry, id: u64) -> Result<Space> {
    let d = reg
        .dataset(id)
        .ok_or_else(|| FsError::new(ErrorKind::NotFound, format!("no dataset {id}")))?;
    let head = reg.head_view(id).map_err(reg_err)?;
    let (referenced, _) = view_charges(kv, head, 0).await?;
    let (own_bytes, written) = view_charges(kv, own(head), d.last_snapshot).await?;
    Ok(Space {
        referenced,
        own: own_bytes,
        snapshots: history_charges(kv, id).await?,
        written,
    })
}

/// Snapshot `s`'s `referenced` and `written`, counted from its records.
pub(crate) async fn count_snapshot(
    kv: &Kv,
    reg: &Registry,
    s: &SnapshotRecord,
) -> Result<(u64, u64)> {
    let view = reg.snapshot_view(s.tree, s.generation).map_err(reg_err)?;
    let (referenced, _) = view_charges(kv, view, 0).await?;
    let (prev, _) = reg.neighbours(s.tree, s.generation);
    let (_, written) = view_charges(kv, own(view), prev).await?;
    Ok((referenced, written))
}

/// Snapshot `s`'s `used`: the data of the versions only it sees (born
/// after the previous snapshot, dead by the next one), which deleting it
/// frees. Reads its dead-list range and the history records it names.
pub(crate) async fn snapshot_used(kv: &Kv, reg: &Registry, s: &SnapshotRecord) -> Result<u64> {
    let (prev, next) = reg.neighbours(s.tree, s.generation);
    let t = kv.txn();
    let (start, end) = Key::dead_range(s.tree, s.generation + 1, next.unwrap_or(u64::MAX));
    let mut it = kv.iter(&start, &end).await.map_err(kv_err)?;
    let mut used = 0;
    while let Some((k, _)) = it.next().await.map_err(kv_err)? {
        let Ok(Key::Dead {
            death, birth, head, ..
        }) = Key::decode(&k)
        else {
            return Err(corrupt(&k, "not a dead-list key"));
        };
        if birth <= prev || birth > s.generation {
            continue;
        }
        if let Some(v) = t.get(&head.history_key(death)).await.map_err(kv_err)? {
            used += cairn_snapshot::charge(&t, &head, &v)
                .await
                .map_err(snap_err)?;
        }
    }
    Ok(used)
}

impl Engine {
    /// Mark dataset `id`'s figures (and its snapshots' `written`) as to be
    /// counted again, in one batch.
    pub(crate) async fn uncount(&self, w: &mut WriterState, id: u64) -> Result<()> {
        let mut t = self.inner.kv.txn();
        let snaps: Vec<SnapshotRecord> = w.reg.snapshots_of(id).into_iter().cloned().collect();
        for mut s in snaps {
            s.written = None;
            w.reg.put_snapshot(&mut t, s);
        }
        if let Some(mut d) = w.reg.dataset(id).cloned() {
            d.space = None;
            w.reg.put_dataset(&mut t, d);
        }
        self.commit_registry(t, &mut w.reg).await
    }

    /// Count and store the figures records an older build wrote lack (a
    /// dataset's counters, a snapshot's `referenced` and `written`), and
    /// those an operation that moves records wholesale (promote, a rollback
    /// to such a snapshot) left to count. One batch per dataset.
    pub(crate) async fn count_missing(&self, w: &mut WriterState) -> Result<()> {
        let kv = &self.inner.kv;
        let ids: Vec<u64> = w.reg.datasets().map(|d| d.id).collect();
        for id in ids {
            let snaps: Vec<SnapshotRecord> = w
                .reg
                .snapshots_of(id)
                .into_iter()
                .filter(|s| s.referenced.is_none() || s.written.is_none())
                .cloned()
                .collect();
            let uncounted = w.reg.dataset(id).is_some_and(|d| d.space.is_none());
            if snaps.is_empty() && !uncounted {
                continue;
            }
            let mut t = kv.txn();
            for mut s in snaps {
                let (referenced, written) = count_snapshot(kv, &w.reg, &s).await?;
                s.referenced = Some(referenced);
                s.written = Some(written);
                w.reg.put_snapshot(&mut t, s);
            }
            if uncounted {
                let space = count_dataset(kv, &w.reg, id).await?;
                if let Some(mut d) = w.reg.dataset(id).cloned() {
                    tracing::info!(dataset = %d.name, ?space, "counted the space of a dataset");
                    d.space = Some(space);
                    w.reg.put_dataset(&mut t, d);
                }
            }
            self.commit_registry(t, &mut w.reg).await?;
        }
        Ok(())
    }
}
