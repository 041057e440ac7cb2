//! Promote: make a clone independent of its origin snapshot, so that
//! snapshot (and the origin dataset) can be deleted.
//!
//! Every record the clone still inherits (visible in the origin snapshot,
//! with no version of its own in the clone's tree) is copied into the
//! clone's tree as if the clone had written it at its first generation:
//!
//! - a key the clone never touched becomes a head record born at 1, which
//!   the clone's head and every clone snapshot see, as they saw the origin's;
//! - a key the clone first changed at generation `b` becomes a history
//!   record born at 1 that died at `b` (with its dead-list entry), when a
//!   clone snapshot older than `b` still sees the inherited version.
//!
//! Extent copies take a chunk reference each; no chunk data is read or
//! written. Cost: the origin snapshot's records, in batches. A crash midway
//! leaves the clone reading exactly what it read (the copies equal what it
//! fell through to) and a rerun skips what was copied; the last batch drops
//! the origin.

use cairn_cas::Pending;
use cairn_codec::{ExtentRecord, HeadKey, Key, KeyPrefix, Versioned, is_whiteout, set_birth};
use cairn_fs::{ErrorKind, FsError};

use crate::admin::DatasetInfo;
use crate::{Engine, kv_err, meta_err, reg_err};

type Result<T> = std::result::Result<T, FsError>;

/// Inherited records copied per batch.
const PROMOTE_BATCH: usize = 1024;

fn corrupt(k: &[u8], e: impl std::fmt::Display) -> FsError {
    FsError::new(ErrorKind::Corrupt, format!("record {k:?}: {e}"))
}

impl Engine {
    /// Make clone `name` independent of its origin snapshot (see the module
    /// docs). `Invalid` if it is not a clone.
    pub async fn promote(&self, name: &str) -> Result<DatasetInfo> {
        let mut w = self.inner.writer.lock().await;
        let d = w.reg.by_name(name).map_err(reg_err)?.clone();
        let Some((otree, ogen)) = d.origin else {
            return Err(FsError::new(
                ErrorKind::Invalid,
                format!("dataset {name:?} is not a clone; there is nothing to promote"),
            ));
        };
        let origin = w.reg.snapshot_view(otree, ogen).map_err(reg_err)?;
        let snaps: Vec<u64> = w
            .reg
            .snapshots_of(d.id)
            .iter()
            .map(|s| s.generation)
            .collect();
        let kv = &self.inner.kv;
        // The copies move data between inherited and own records, and the
        // snapshots' written with it: the figures are counted again after
        // the last batch (or on the next open, after a crash midway).
        self.uncount(&mut w, d.id).await?;
        let mut copied = 0u64;
        for kind in [KeyPrefix::Inode, KeyPrefix::Dirent, KeyPrefix::Extent] {
            let (mut cursor, end) = Key::tree_range(kind, otree);
            loop {
                let read = kv.txn();
                let (page, done) =
                    cairn_meta::visible_range(&read, origin, &cursor, &end, PROMOTE_BATCH)
                        .await
                        .map_err(meta_err)?;
                drop(read);
                let mut t = kv.txn();
                let mut pending = Pending::new();
                for (k, v) in &page {
                    // Whiteouts in the origin's view mean "absent": nothing
                    // to inherit.
                    if is_whiteout(v).map_err(|e| corrupt(k, e))? {
                        continue;
                    }
                    let key = HeadKey::decode(k)
                        .map_err(|e| corrupt(k, e))?
                        .with_tree(d.id);
                    let earliest = cairn_meta::earliest_birth(&t, &key)
                        .await
                        .map_err(meta_err)?;
                    let mut value = v.to_vec();
                    set_birth(&mut value, 1).map_err(|e| corrupt(k, e))?;
                    match earliest {
                        None => t.put(key.encode(), value),
                        Some(b) if b > 1 && snaps.iter().any(|&g| g < b) => {
                            t.put(key.history_key(b), value);
                            t.put(
                                Key::Dead {
                                    tree: d.id,
                                    death: b,
                                    birth: 1,
                                    head: key.clone(),
                                }
                                .encode(),
                                bytes::Bytes::new(),
                            );
                        }
                        Some(_) => continue,
                    }
                    if kind == KeyPrefix::Extent {
                        let e = Versioned::<ExtentRecord>::decode(v).map_err(|e| corrupt(k, e))?;
                        if let Some(e) = e.value {
                            pending.incref_map(e.map);
                        }
                    }
                    copied += 1;
                }
                pending.apply(&mut t).await.map_err(crate::cas_err)?;
                t.commit().await.map_err(kv_err)?;
                crate::crash_point(kv, "promote.between_batches").await?;
                match (done, page.last()) {
                    (false, Some((k, _))) => {
                        cursor = k.to_vec();
                        cursor.push(0);
                    }
                    _ => break,
                }
            }
        }
        let mut rec = w.reg.dataset(d.id).cloned().unwrap_or(d.clone());
        rec.origin = None;
        let mut t = kv.txn();
        w.reg.put_dataset(&mut t, rec);
        self.commit_registry(t, &mut w.reg).await?;
        self.count_missing(&mut w).await?;
        tracing::info!(dataset = name, copied, "promoted clone");
        self.info_of(&w.reg, d.id).await
    }
}
