//! One mutation = one [`Op`]: a transaction over the committed state plus the
//! map and chunk refcount changes it causes, committed as one atomic batch
//! while the writer lock is held.
//!
//! File data: chunk `i` of a file is slot `i % MAP_SLOTS` of the extent map
//! named by the file's extent record `i / MAP_SLOTS` (a group). An `Op`
//! edits the slots of the groups it touches in memory and writes each
//! changed group once, at commit: one new map and one extent record per
//! group, however many of its chunks changed.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use cairn_cas::Pending;
use cairn_codec::{
    ChunkHash, ChunkRef, DirentRecord, ExtentMap, ExtentRecord, FileKind, HeadKey, InodeRecord,
    MAP_SLOTS, Timestamp, encode_u64,
};
use cairn_fs::{Creds, ErrorKind, FsError, NAME_MAX};
use cairn_kv::Txn;
use cairn_meta::{Retired, TreeState, View};

use cairn_registry::{DatasetRecord, Registry, Space};

use crate::{INLINE_MAX, Inner, NEXT_INO_KEY, WriterState, cas_err, kv_err, meta_err, meta_key};

pub(crate) type Result<T> = std::result::Result<T, FsError>;

pub(crate) fn err(kind: ErrorKind, msg: impl Into<String>) -> FsError {
    FsError::new(kind, msg)
}

/// Check an entry name: 1..=255 bytes, no `/`, no NUL.
pub(crate) fn validate_name(name: &[u8]) -> Result<()> {
    if name.is_empty() {
        return Err(err(ErrorKind::Invalid, "invalid name: empty"));
    }
    if name.len() > NAME_MAX {
        return Err(err(
            ErrorKind::NameTooLong,
            format!("name is {} bytes; the limit is {NAME_MAX}", name.len()),
        ));
    }
    if name.contains(&b'/') {
        return Err(err(
            ErrorKind::Invalid,
            format!("invalid name {:?}: contains '/'", show(name)),
        ));
    }
    if name.contains(&0) {
        return Err(err(
            ErrorKind::Invalid,
            format!("invalid name {:?}: contains NUL", show(name)),
        ));
    }
    Ok(())
}

pub(crate) fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

pub(crate) fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

pub(crate) struct Op<'a> {
    pub(crate) inner: &'a Inner,
    pub(crate) w: &'a mut WriterState,
    pub(crate) txn: Txn<'a>,
    pub(crate) pending: Pending,
    pub(crate) tree: TreeState,
    pub(crate) now: Timestamp,
    /// The dataset's record; staged at commit if its counters changed.
    pub(crate) ds: DatasetRecord,
    ds_dirty: bool,
    view: View,
    pub(crate) chunk_size: u32,
    /// Extent groups read or edited in this operation, by `(ino, group)`.
    groups: BTreeMap<(u64, u64), Group>,
    /// Whole chunks of the data being written, hashed and encoded before
    /// the writer lock was taken ([`prepare_chunks`]), by chunk index.
    pub(crate) prepared: HashMap<u64, cairn_cas::Prepared>,
    /// The dataset's space counters as the operation found them.
    space_before: Option<Space>,
    /// Whether the operation may grow a figure past its quota (a truncate
    /// may: it must always work, to clean a full dataset up).
    quota_exempt: bool,
}

/// Hash and encode the whole, aligned, non-zero chunks of `data` written at
/// `offset`, on a blocking thread: the CPU work of a write then runs beside
/// the thread serving requests, and before the writer lock.
pub(crate) async fn prepare_chunks(
    offset: u64,
    data: &[u8],
    chunk_size: u32,
    compress: bool,
) -> HashMap<u64, cairn_cas::Prepared> {
    let cs = chunk_size as u64;
    let end = offset + data.len() as u64;
    let (first, last) = (offset.div_ceil(cs), end / cs);
    if first >= last {
        return HashMap::new();
    }
    let buf = Bytes::copy_from_slice(
        &data[(first * cs - offset) as usize..(last * cs - offset) as usize],
    );
    tokio::task::spawn_blocking(move || {
        (first..last)
            .filter_map(|idx| {
                let lo = ((idx - first) * cs) as usize;
                let d = buf.slice(lo..lo + cs as usize);
                (!is_zero(&d)).then(|| (idx, cairn_cas::prepare(d, compress)))
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// One extent group as this operation sees it.
struct Group {
    /// The map the group's visible extent record names (`None`: no record).
    orig: Option<ChunkHash>,
    /// The plain bytes of that map's chunks.
    orig_bytes: u64,
    /// Its slots, as edited.
    map: ExtentMap,
    /// Whether the slots were edited.
    dirty: bool,
}

impl<'a> Op<'a> {
    pub(crate) fn new(inner: &'a Inner, w: &'a mut WriterState, tree: u64) -> Result<Self> {
        let ds = w
            .reg
            .dataset(tree)
            .cloned()
            .ok_or_else(|| err(ErrorKind::Stale, format!("dataset {tree} no longer exists")))?;
        if ds.read_only {
            return Err(err(
                ErrorKind::ReadOnly,
                format!("dataset {:?} is read-only", ds.name),
            ));
        }
        let view = w.reg.head_view(tree).map_err(crate::reg_err)?;
        Ok(Self {
            txn: inner.kv.txn(),
            inner,
            w,
            pending: Pending::with_packer(inner.packs.clone(), inner.compress),
            tree: ds.tree_state(),
            now: Timestamp::now(),
            chunk_size: ds.chunk_size,
            space_before: ds.space,
            ds,
            ds_dirty: false,
            quota_exempt: false,
            view,
            groups: BTreeMap::new(),
            prepared: HashMap::new(),
        })
    }

    pub(crate) async fn commit(mut self) -> Result<()> {
        self.write_groups().await?;
        self.check_quota()?;
        self.pending.apply(&mut self.txn).await.map_err(cas_err)?;
        if self.ds_dirty {
            let (k, v) = Registry::encode_dataset(&self.ds);
            self.txn.put(k, v);
        }
        self.txn.commit().await.map_err(kv_err)?;
        if self.ds_dirty {
            self.w.reg.refresh_dataset(self.ds);
        }
        // A full pack is sealed with the layer it fills.
        if self.inner.packs.open_bytes() >= self.inner.packs.pack_bytes() {
            self.inner.kv.cut();
        }
        Ok(())
    }

    pub(crate) fn view(&self) -> View {
        self.view
    }

    fn ikey(&self, ino: u64) -> HeadKey {
        HeadKey::Inode {
            tree: self.tree.tree,
            ino,
        }
    }

    /// The inode `ino`, or `Stale`.
    pub(crate) async fn inode(&self, ino: u64) -> Result<InodeRecord> {
        cairn_meta::inode(&self.txn, self.view(), ino)
            .await
            .map_err(meta_err)?
            .ok_or_else(|| err(ErrorKind::Stale, format!("inode {ino} no longer exists")))
    }

    /// The directory `ino`, or `Stale`/`NotDir`.
    pub(crate) async fn dir(&self, ino: u64) -> Result<InodeRecord> {
        let rec = self.inode(ino).await?;
        if rec.kind != FileKind::Directory {
            return Err(err(
                ErrorKind::NotDir,
                format!("inode {ino} is not a directory"),
            ));
        }
        Ok(rec)
    }

    pub(crate) async fn put_inode(&mut self, ino: u64, rec: InodeRecord) -> Result<()> {
        let key = self.ikey(ino);
        let inherited = self.inherited_charge(ino).await?;
        let new = cairn_snapshot::inode_charge(&rec);
        let retired = cairn_meta::put(&mut self.txn, &self.tree, &key, rec)
            .await
            .map_err(meta_err)?;
        let own = retired_charge(&retired, cairn_snapshot::inode_charge);
        self.account(own.unwrap_or(inherited), new, &retired, own.unwrap_or(0));
        Ok(())
    }

    /// For a clone: the data of the inode record `ino` as inherited from
    /// the origin (read before the record is replaced), in case the clone
    /// has no version of its own. 0 for a dataset with no origin.
    async fn inherited_charge(&self, ino: u64) -> Result<u64> {
        if !self.tree.has_origin {
            return Ok(0);
        }
        Ok(cairn_meta::inode(&self.txn, self.view(), ino)
            .await
            .map_err(meta_err)?
            .map_or(0, |r| cairn_snapshot::inode_charge(&r)))
    }

    /// Count a record replaced in this operation: `visible` bytes were
    /// seen before (own or inherited), `new` are seen now, `own` of them
    /// were the own head version `retired` says what became of.
    fn account<T>(&mut self, visible: u64, new: u64, retired: &Retired<T>, own: u64) {
        let Some(s) = &mut self.ds.space else {
            return;
        };
        if visible == 0 && new == 0 && own == 0 {
            return;
        }
        s.referenced = (s.referenced + new).saturating_sub(visible);
        s.own = (s.own + new).saturating_sub(own);
        s.written += new;
        match retired {
            Retired::Dropped(_) => s.written = s.written.saturating_sub(own),
            Retired::Kept(_) => s.snapshots += own,
            Retired::Nothing => {}
        }
        self.ds_dirty = true;
    }

    /// Refuse the operation if it grew a figure past the dataset's quota
    /// (`used`) or refquota (`referenced`): EDQUOT, naming the dataset.
    /// An operation that grows nothing always passes, so deletes work on a
    /// full dataset; so does a truncate.
    fn check_quota(&self) -> Result<()> {
        let (Some(before), Some(after)) = (self.space_before, self.ds.space) else {
            return Ok(());
        };
        if self.quota_exempt {
            return Ok(());
        }
        let over = |limit: Option<u64>, b: u64, a: u64| limit.filter(|l| a > *l && a > b);
        if let Some(q) = over(self.ds.refquota, before.referenced, after.referenced) {
            return Err(err(
                ErrorKind::QuotaExceeded,
                format!(
                    "dataset {:?} is at its refquota of {q} bytes (referenced {}); delete or truncate files to write again",
                    self.ds.name, before.referenced
                ),
            ));
        }
        if let Some(q) = over(self.ds.quota, before.used(), after.used()) {
            return Err(err(
                ErrorKind::QuotaExceeded,
                format!(
                    "dataset {:?} is at its quota of {q} bytes (used {}, its snapshots included); delete files or snapshots to write again",
                    self.ds.name,
                    before.used()
                ),
            ));
        }
        Ok(())
    }

    /// Stage the first record of a newly allocated inode (no read: its
    /// number was never used).
    pub(crate) fn put_new_inode(&mut self, ino: u64, rec: InodeRecord) {
        let key = self.ikey(ino);
        let new = cairn_snapshot::inode_charge(&rec);
        cairn_meta::put_new(&mut self.txn, &self.tree, &key, rec);
        self.account(0, new, &Retired::<InodeRecord>::Nothing, 0);
    }

    /// Stage an entry of a directory created in this operation.
    pub(crate) fn put_new_entry(&mut self, dir: u64, name: &[u8], rec: DirentRecord) {
        let key = HeadKey::dirent(self.tree.tree, dir, name);
        cairn_meta::put_new(&mut self.txn, &self.tree, &key, rec);
    }

    pub(crate) async fn entry(&self, dir: u64, name: &[u8]) -> Result<Option<DirentRecord>> {
        cairn_meta::dirent(&self.txn, self.view(), dir, name)
            .await
            .map_err(meta_err)
    }

    pub(crate) async fn put_entry(
        &mut self,
        dir: u64,
        name: &[u8],
        rec: DirentRecord,
    ) -> Result<()> {
        let key = HeadKey::dirent(self.tree.tree, dir, name);
        cairn_meta::put(&mut self.txn, &self.tree, &key, rec)
            .await
            .map_err(meta_err)?;
        Ok(())
    }

    pub(crate) async fn delete_entry(&mut self, dir: u64, name: &[u8]) -> Result<()> {
        let key = HeadKey::dirent(self.tree.tree, dir, name);
        cairn_meta::delete::<DirentRecord>(&mut self.txn, &self.tree, &key)
            .await
            .map_err(meta_err)?;
        Ok(())
    }

    /// Allocate an inode number (never reused, even if this op fails).
    /// `NoSpace` past [`crate::MAX_INO`].
    pub(crate) fn alloc_ino(&mut self) -> Result<u64> {
        let ino = self.w.next_ino;
        if ino > crate::MAX_INO {
            return Err(err(
                ErrorKind::NoSpace,
                format!("this store has used all {} inode numbers", crate::MAX_INO),
            ));
        }
        self.w.next_ino += 1;
        self.txn
            .put(meta_key(NEXT_INO_KEY), encode_u64(self.w.next_ino));
        Ok(ino)
    }

    pub(crate) fn count_inodes(&mut self, delta: i64) {
        self.ds.files = self.ds.files.saturating_add_signed(delta);
        self.ds_dirty = true;
    }

    /// A new inode record owned by `creds`, in directory `parent_rec`.
    pub(crate) fn new_record(
        &self,
        creds: &Creds,
        parent_rec: &InodeRecord,
        kind: FileKind,
        mode: u16,
    ) -> InodeRecord {
        let mut mode = mode & 0o7777;
        let gid = if parent_rec.mode & 0o2000 != 0 {
            // BSD group semantics on setgid directories; subdirectories inherit it.
            if kind == FileKind::Directory {
                mode |= 0o2000;
            }
            parent_rec.gid
        } else {
            creds.gid
        };
        InodeRecord {
            kind,
            mode,
            uid: creds.uid,
            gid,
            nlink: if kind == FileKind::Directory { 2 } else { 1 },
            size: 0,
            atime: self.now,
            mtime: self.now,
            ctime: self.now,
            rdev: (0, 0),
            parent: 0,
            create_verifier: None,
            inline: match kind {
                FileKind::Regular => Some(Vec::new()),
                _ => None,
            },
            allocated: Some(0),
        }
    }

    /// Drop one link to non-directory `ino`; free it when none remain.
    pub(crate) async fn drop_link(&mut self, ino: u64, mut rec: InodeRecord) -> Result<()> {
        rec.nlink = rec.nlink.saturating_sub(1);
        rec.ctime = self.now;
        if rec.nlink > 0 {
            return self.put_inode(ino, rec).await;
        }
        self.free_inode(ino, &rec).await
    }

    /// Delete an inode record and all its extents.
    pub(crate) async fn free_inode(&mut self, ino: u64, rec: &InodeRecord) -> Result<()> {
        if rec.kind == FileKind::Regular && rec.inline.is_none() {
            self.drop_extents_from(ino, 0).await?;
        }
        let key = self.ikey(ino);
        let inherited = self.inherited_charge(ino).await?;
        let retired = cairn_meta::delete::<InodeRecord>(&mut self.txn, &self.tree, &key)
            .await
            .map_err(meta_err)?;
        let own = retired_charge(&retired, cairn_snapshot::inode_charge);
        self.account(own.unwrap_or(inherited), 0, &retired, own.unwrap_or(0));
        self.count_inodes(-1);
        Ok(())
    }

    /// Stage extent record `group` of newly allocated inode `ino`, naming
    /// the map another record names (one more reference to it).
    pub(crate) async fn put_new_extent(
        &mut self,
        ino: u64,
        group: u64,
        e: ExtentRecord,
    ) -> Result<()> {
        let bytes = match e.bytes {
            Some(b) => b,
            None => cairn_cas::read_map(&self.inner.kv, &e.map)
                .await
                .map_err(cas_err)?
                .logical_bytes(),
        };
        let key = self.extent_key(ino, group);
        cairn_meta::put_new(
            &mut self.txn,
            &self.tree,
            &key,
            ExtentRecord::new(e.map, bytes),
        );
        self.pending.incref_map(e.map);
        self.account(0, bytes, &Retired::<ExtentRecord>::Nothing, 0);
        Ok(())
    }

    fn extent_key(&self, ino: u64, group: u64) -> HeadKey {
        HeadKey::Extent {
            tree: self.tree.tree,
            ino,
            idx: group,
        }
    }

    /// Group `group` of `ino`, read on first use.
    async fn group(&mut self, ino: u64, group: u64) -> Result<&mut Group> {
        if !self.groups.contains_key(&(ino, group)) {
            let key = self.extent_key(ino, group);
            let rec = cairn_meta::get::<ExtentRecord>(&self.txn, self.view(), &key)
                .await
                .map_err(meta_err)?;
            let map = match rec {
                Some(r) => cairn_cas::read_map(&self.inner.kv, &r.map)
                    .await
                    .map_err(cas_err)?,
                None => ExtentMap::default(),
            };
            self.groups.insert(
                (ino, group),
                Group {
                    orig: rec.map(|r| r.map),
                    orig_bytes: map.logical_bytes(),
                    map,
                    dirty: false,
                },
            );
        }
        self.groups
            .get_mut(&(ino, group))
            .ok_or_else(|| err(ErrorKind::Io, "extent group vanished from the operation"))
    }

    /// Delete every chunk of `ino` with index >= `first`; returns the
    /// stored bytes dropped (the maps of whole dropped groups are read to
    /// count them, except from chunk 0, where the whole file goes).
    async fn drop_extents_from(&mut self, ino: u64, first: u64) -> Result<u64> {
        let first_group = first / MAP_SLOTS;
        let keep = (first % MAP_SLOTS) as usize;
        let mut dropped = 0;
        if keep > 0 {
            let g = self.group(ino, first_group).await?;
            if g.map.slots.len() > keep {
                dropped += slot_bytes(&g.map.slots[keep..]);
                g.map.slots.truncate(keep);
                g.dirty = true;
            }
        }
        let from = first_group + u64::from(keep > 0);
        let stored = cairn_meta::list_extents(&self.txn, self.view(), ino, from, u64::MAX)
            .await
            .map_err(meta_err)?;
        for (g, rec) in stored {
            if first > 0 || rec.bytes.is_none() || self.groups.contains_key(&(ino, g)) {
                self.group(ino, g).await?;
            } else {
                // Emptied below: no need to read the map, the record says
                // what it holds.
                let bytes = rec.bytes.unwrap_or(0);
                self.groups.insert(
                    (ino, g),
                    Group {
                        orig: Some(rec.map),
                        orig_bytes: bytes,
                        map: ExtentMap::default(),
                        dirty: false,
                    },
                );
                dropped += bytes;
            }
        }
        for (_, g) in self.groups.range_mut((ino, from)..=(ino, u64::MAX)) {
            dropped += g.map.logical_bytes();
            g.map.slots.clear();
            g.dirty = true;
        }
        Ok(dropped)
    }

    /// The stored bytes of `ino`'s chunks, summed from its extent maps: for
    /// a record written before [`InodeRecord::allocated`] was kept.
    async fn count_allocated(&mut self, ino: u64) -> Result<u64> {
        let stored = cairn_meta::list_extents(&self.txn, self.view(), ino, 0, u64::MAX)
            .await
            .map_err(meta_err)?;
        let mut total = 0;
        for (g, _) in stored {
            total += slot_bytes(&self.group(ino, g).await?.map.slots);
        }
        Ok(total)
    }

    /// `rec.allocated` of a chunked file, computed from the extents if an
    /// older build wrote the record without it (call it before editing the
    /// file's slots).
    async fn allocated(&mut self, ino: u64, rec: &InodeRecord) -> Result<u64> {
        match rec.allocated {
            Some(a) => Ok(a),
            None => self.count_allocated(ino).await,
        }
    }

    /// Point chunk `idx` of `ino` at `data` (all zeros or `None`: a hole);
    /// returns the change in stored bytes.
    async fn set_extent(&mut self, ino: u64, idx: u64, data: Option<Bytes>) -> Result<i64> {
        let slot = data
            .filter(|d| !d.is_empty() && !is_zero(d))
            .map(|d| ChunkRef {
                len: d.len() as u32,
                hash: self.pending.stage(d),
            });
        self.set_slot(ino, idx, slot).await
    }

    /// Point chunk `idx` of `ino` at `slot`; returns the change in stored
    /// bytes.
    async fn set_slot(&mut self, ino: u64, idx: u64, slot: Option<ChunkRef>) -> Result<i64> {
        let g = self.group(ino, idx / MAP_SLOTS).await?;
        let i = (idx % MAP_SLOTS) as usize;
        if g.map.slots.len() <= i {
            if slot.is_none() {
                return Ok(0);
            }
            g.map.slots.resize(i + 1, None);
        }
        let new = slot.map_or(0, |c| i64::from(c.len));
        let old = std::mem::replace(&mut g.map.slots[i], slot).map_or(0, |c| i64::from(c.len));
        g.dirty = true;
        Ok(new - old)
    }

    /// Write every edited group: a new map and extent record where its
    /// slots changed, no record where none are left; release the maps of
    /// the records that no snapshot sees any more.
    async fn write_groups(&mut self) -> Result<()> {
        for ((ino, g), group) in std::mem::take(&mut self.groups) {
            if !group.dirty {
                continue;
            }
            let mut map = group.map;
            let key = self.extent_key(ino, g);
            let new = map.logical_bytes();
            let retired = if map.trim() {
                if group.orig.is_none() {
                    continue;
                }
                cairn_meta::delete::<ExtentRecord>(&mut self.txn, &self.tree, &key).await
            } else {
                if group.orig == Some(map.hash()) {
                    continue;
                }
                let map = self.pending.put_map(map);
                let rec = ExtentRecord::new(map, new);
                cairn_meta::put(&mut self.txn, &self.tree, &key, rec).await
            }
            .map_err(meta_err)?;
            // The version replaced is the one the group was read from:
            // the own head's, or (with no own version) the origin's.
            let own = retired_charge(&retired, |_| group.orig_bytes).unwrap_or(0);
            self.account(group.orig_bytes, new, &retired, own);
            if let Retired::Dropped(old) = retired {
                self.pending.decref_map(old.map);
            }
        }
        Ok(())
    }

    /// The plaintext of chunk `idx` of `ino` (empty for a hole).
    async fn extent_data(&mut self, ino: u64, idx: u64) -> Result<Bytes> {
        let g = self.group(ino, idx / MAP_SLOTS).await?;
        let Some(Some(c)) = g.map.slots.get((idx % MAP_SLOTS) as usize).copied() else {
            return Ok(Bytes::new());
        };
        // A chunk staged earlier in this operation is not in the store yet.
        if let Some(staged) = self.pending.staged(&c.hash) {
            return Ok(staged);
        }
        cairn_cas::read_chunk(
            &self.inner.kv,
            &self.inner.packs,
            &c.hash,
            self.chunk_size as usize,
        )
        .await
        .map_err(cas_err)
    }

    /// Move inline content into chunk 0 so the file can use extents.
    async fn uninline(&mut self, ino: u64, rec: &mut InodeRecord) -> Result<()> {
        if let Some(data) = rec.inline.take() {
            let mut allocated = 0;
            if !data.is_empty() {
                allocated += self.set_extent(ino, 0, Some(Bytes::from(data))).await?;
            }
            rec.allocated = Some(allocated.max(0) as u64);
        }
        Ok(())
    }

    /// Write `data` at `offset` into regular file `ino` (record `rec`,
    /// updated in place, its allocation with it; the caller stores it).
    pub(crate) async fn write_data(
        &mut self,
        ino: u64,
        rec: &mut InodeRecord,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        let new_size = rec.size.max(end);
        if let Some(inline) = &mut rec.inline
            && new_size <= INLINE_MAX as u64
        {
            if inline.len() < end as usize {
                inline.resize(end as usize, 0);
            }
            inline[offset as usize..end as usize].copy_from_slice(data);
            rec.size = new_size;
            return Ok(());
        }
        self.uninline(ino, rec).await?;
        let base = self.allocated(ino, rec).await?;
        let mut delta = 0;
        let cs = self.chunk_size as u64;
        let first = offset / cs;
        let last = (end - 1) / cs;
        for idx in first..=last {
            let cstart = idx * cs;
            let chunk_len = (new_size - cstart).min(cs) as usize;
            let lo = (offset.max(cstart) - cstart) as usize;
            let hi = (end.min(cstart + cs) - cstart) as usize;
            let src = &data
                [(cstart + lo as u64 - offset) as usize..(cstart + hi as u64 - offset) as usize];
            let buf = if lo == 0 && hi == chunk_len {
                if let Some(p) = self.prepared.remove(&idx)
                    && p.data.len() == chunk_len
                {
                    let slot = ChunkRef {
                        len: chunk_len as u32,
                        hash: self.pending.stage_prepared(p),
                    };
                    delta += self.set_slot(ino, idx, Some(slot)).await?;
                    continue;
                }
                Bytes::copy_from_slice(src)
            } else {
                let old = self.extent_data(ino, idx).await?;
                let mut buf = Vec::with_capacity(chunk_len);
                buf.extend_from_slice(&old[..old.len().min(chunk_len)]);
                buf.resize(chunk_len, 0);
                buf[lo..hi].copy_from_slice(src);
                Bytes::from(buf)
            };
            delta += self.set_extent(ino, idx, Some(buf)).await?;
        }
        rec.size = new_size;
        rec.allocated = Some(base.saturating_add_signed(delta));
        Ok(())
    }

    /// Truncate or extend regular file `ino` to `size` (its allocation
    /// with it).
    pub(crate) async fn set_size(
        &mut self,
        ino: u64,
        rec: &mut InodeRecord,
        size: u64,
    ) -> Result<()> {
        if let Some(inline) = &mut rec.inline {
            if size <= INLINE_MAX as u64 {
                inline.resize(size as usize, 0);
                rec.size = size;
                return Ok(());
            }
            self.uninline(ino, rec).await?;
            rec.size = size;
            return Ok(());
        }
        if size == 0 {
            self.quota_exempt = true;
            self.drop_extents_from(ino, 0).await?;
            rec.inline = Some(Vec::new());
            rec.size = 0;
            rec.allocated = Some(0);
            return Ok(());
        }
        if size < rec.size {
            self.quota_exempt = true;
            let base = self.allocated(ino, rec).await?;
            let cs = self.chunk_size as u64;
            let keep = size.div_ceil(cs);
            let mut delta = -(self.drop_extents_from(ino, keep).await? as i64);
            let tail = (size % cs) as usize;
            if tail != 0 {
                let idx = size / cs;
                let old = self.extent_data(ino, idx).await?;
                if old.len() > tail {
                    delta += self.set_extent(ino, idx, Some(old.slice(..tail))).await?;
                }
            }
            rec.allocated = Some(base.saturating_add_signed(delta));
        }
        rec.size = size;
        Ok(())
    }
}

/// The stored bytes of a map's slots.
fn slot_bytes(slots: &[Option<ChunkRef>]) -> u64 {
    slots.iter().flatten().map(|c| u64::from(c.len)).sum()
}

/// The data of the own head version `retired` replaced (`Some(0)` for a
/// whiteout), or `None` if there was none.
fn retired_charge<T>(retired: &Retired<T>, charge: impl Fn(&T) -> u64) -> Option<u64> {
    match retired {
        Retired::Dropped(v) | Retired::Kept(Some(v)) => Some(charge(v)),
        Retired::Kept(None) => Some(0),
        Retired::Nothing => None,
    }
}

fn is_zero(d: &[u8]) -> bool {
    let words = d.chunks_exact(8);
    let rest = words.remainder();
    words
        .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .all(|w| w == 0)
        && rest.iter().all(|b| *b == 0)
}
