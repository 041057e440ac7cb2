//! In-place restore: a file or directory tree from a snapshot back into the
//! live dataset, metadata only. New inode and extent records name the same
//! chunk hashes and increment their refcounts; no chunk is read or written.
//! The whole restore is one atomic batch.

use std::collections::HashMap;

use cairn_codec::{DirentRecord, FileKind, InodeRecord};
use cairn_fs::{ErrorKind, FsError};
use cairn_meta::View;
use cairn_registry::SnapshotSpec;

use crate::ops::{Op, err, validate_name};
use crate::{Engine, ROOT_INO, meta_err, reg_err};

type Result<T> = std::result::Result<T, FsError>;

/// What a restore created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Inodes created (files, directories, links, specials).
    pub inodes: u64,
    /// Extent records written (each a refcount increment, no data copied).
    pub extents: u64,
    /// Logical bytes of the restored regular files.
    pub bytes: u64,
}

/// Split `/a/b/c` into components, refusing empty, `.` and `..` ones.
fn components(path: &str) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        if c == "." || c == ".." {
            return Err(err(
                ErrorKind::Invalid,
                format!("path {path:?}: '.' and '..' are not allowed"),
            ));
        }
        validate_name(c.as_bytes())?;
        out.push(c.as_bytes());
    }
    Ok(out)
}

/// The inode at `path` in `view` (through `op`'s transaction).
async fn resolve(op: &Op<'_>, view: View, path: &[&[u8]], shown: &str) -> Result<u64> {
    let mut ino = ROOT_INO;
    for c in path {
        let e = cairn_meta::dirent(&op.txn, view, ino, c)
            .await
            .map_err(meta_err)?
            .ok_or_else(|| err(ErrorKind::NotFound, format!("{shown:?} does not exist")))?;
        ino = e.ino;
    }
    Ok(ino)
}

impl Engine {
    /// Restore `path` from snapshot `spec` into its dataset's live tree at
    /// `dest` (default: the same path). An existing non-directory at the
    /// destination is replaced by a non-directory; an existing directory is
    /// refused (restore to a new path, or remove it first).
    pub async fn restore(
        &self,
        spec: &str,
        path: &str,
        dest: Option<&str>,
    ) -> Result<RestoreReport> {
        let spec = SnapshotSpec::parse(spec).map_err(reg_err)?;
        let src = components(path)?;
        let dest_s = dest.unwrap_or(path);
        let dst = components(dest_s)?;
        let Some((dst_name, dst_parent)) = dst.split_last() else {
            return Err(err(
                ErrorKind::Invalid,
                "cannot restore onto the dataset's root; give a path inside it",
            ));
        };
        let mut w = self.inner.writer.lock().await;
        let s = w.reg.resolve(&spec).map_err(reg_err)?.clone();
        let snap_view = w.reg.snapshot_view(s.tree, s.generation).map_err(reg_err)?;
        let mut op = Op::new(&self.inner, &mut w, s.tree)?;
        let live = op.view();
        let src_ino = resolve(&op, snap_view, &src, path).await?;
        let parent = resolve(&op, live, dst_parent, dest_s).await?;
        let mut prec = op.dir(parent).await?;
        let src_rec = cairn_meta::inode(&op.txn, snap_view, src_ino)
            .await
            .map_err(meta_err)?
            .ok_or_else(|| err(ErrorKind::Corrupt, format!("{path:?}: inode is missing")))?;
        if let Some(existing) = op.entry(parent, dst_name).await? {
            let erec = op.inode(existing.ino).await?;
            if erec.kind == FileKind::Directory || src_rec.kind == FileKind::Directory {
                return Err(err(
                    ErrorKind::Exists,
                    format!(
                        "{dest_s:?} exists; restore a directory to a new path or remove the existing one first"
                    ),
                ));
            }
            op.delete_entry(parent, dst_name).await?;
            op.drop_link(existing.ino, erec).await?;
        }

        // Collect the source tree: every inode once (hard links map to one
        // new inode), directories with their entries.
        let mut report = RestoreReport::default();
        let mut map: HashMap<u64, u64> = HashMap::new();
        let mut links: HashMap<u64, u32> = HashMap::new();
        let mut order: Vec<(u64, InodeRecord)> = Vec::new();
        let mut entries: Vec<(u64, Vec<u8>, DirentRecord)> = Vec::new();
        let src_kind = src_rec.kind;
        let mut stack = vec![(src_ino, src_rec)];
        map.insert(src_ino, op.alloc_ino()?);
        links.insert(src_ino, 1);
        while let Some((ino, rec)) = stack.pop() {
            if rec.kind == FileKind::Directory {
                let mut after = 0;
                loop {
                    let (page, done) =
                        cairn_meta::list_dirents(&op.txn, snap_view, ino, after, 1024)
                            .await
                            .map_err(meta_err)?;
                    for e in page {
                        after = e.cookie;
                        entries.push((ino, e.name.clone(), e.record));
                        *links.entry(e.record.ino).or_default() += 1;
                        if map.contains_key(&e.record.ino) {
                            continue;
                        }
                        map.insert(e.record.ino, op.alloc_ino()?);
                        let child = cairn_meta::inode(&op.txn, snap_view, e.record.ino)
                            .await
                            .map_err(meta_err)?
                            .ok_or_else(|| {
                                err(
                                    ErrorKind::Corrupt,
                                    format!("inode {} is missing from the snapshot", e.record.ino),
                                )
                            })?;
                        stack.push((e.record.ino, child));
                    }
                    if done {
                        break;
                    }
                }
            }
            order.push((ino, rec));
        }
        let new_of = |ino: u64| map.get(&ino).copied().unwrap_or(0);
        for (old, mut rec) in order {
            let new = new_of(old);
            rec.ctime = op.now;
            if rec.kind == FileKind::Directory {
                let subdirs = entries
                    .iter()
                    .filter(|(d, _, r)| *d == old && r.kind == FileKind::Directory)
                    .count() as u32;
                rec.nlink = 2 + subdirs;
                rec.parent = if old == src_ino {
                    parent
                } else {
                    new_of(rec.parent)
                };
            } else {
                rec.nlink = links.get(&old).copied().unwrap_or(1);
            }
            if rec.kind == FileKind::Regular {
                report.bytes += rec.size;
                if rec.inline.is_none() && rec.size > 0 {
                    let extents = cairn_meta::list_extents(&op.txn, snap_view, old, 0, u64::MAX)
                        .await
                        .map_err(meta_err)?;
                    for (idx, e) in extents {
                        op.put_new_extent(new, idx, e).await?;
                        report.extents += 1;
                    }
                }
            }
            op.put_new_inode(new, rec);
            report.inodes += 1;
        }
        for (dir, name, mut rec) in entries {
            rec.ino = new_of(rec.ino);
            op.put_new_entry(new_of(dir), &name, rec);
        }
        op.put_entry(
            parent,
            dst_name,
            DirentRecord {
                ino: new_of(src_ino),
                kind: src_kind,
            },
        )
        .await?;
        if src_kind == FileKind::Directory {
            prec.nlink += 1;
        }
        prec.mtime = op.now;
        prec.ctime = op.now;
        op.put_inode(parent, prec).await?;
        op.count_inodes(report.inodes as i64);
        crate::crash_point(&self.inner.kv, "restore.before_commit").await?;
        op.commit().await?;
        self.inner.kv.flush().await.map_err(crate::kv_err)?;
        tracing::info!(snapshot = %spec, path, dest = dest_s, ?report, "restored");
        Ok(report)
    }
}
