//! [`DatasetFs`]: the [`Filesystem`] view of one dataset, live or at a
//! snapshot generation.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_codec::{ChunkHash, DirentRecord, FileKind, InodeRecord, MAP_SLOTS, Timestamp};
use cairn_fs::{
    Attr, CreateHow, Creds, DirEntry, DirPage, ErrorKind, Filesystem, FsError, FsInfo, FsStat,
    InodeId, LINK_MAX, MAX_FILE_SIZE, PATH_MAX, SetAttr, SetTime, SpecialKind, access,
};
use cairn_meta::View;

use crate::ops::{Op, Result, err, is_dot, show, validate_name};
use crate::readahead::READ_AHEAD_MAX;
use crate::{
    Inner, REPORTED_CAPACITY_BYTES, REPORTED_CAPACITY_FILES, ROOT_INO, cas_err, kv_err, meta_err,
    perm,
};

/// A filesystem view of one dataset: the live head (writable) or a snapshot
/// generation (read-only).
#[derive(Clone)]
pub struct DatasetFs {
    inner: Arc<Inner>,
    view: View,
    chunk_size: u32,
}

impl DatasetFs {
    pub(crate) fn new(inner: Arc<Inner>, view: View, chunk_size: u32) -> Self {
        Self {
            inner,
            view,
            chunk_size,
        }
    }

    /// The dataset's tree id.
    pub fn tree(&self) -> u64 {
        self.view.tree
    }

    /// The snapshot generation this view reads, or `None` for the live head.
    pub fn generation(&self) -> Option<u64> {
        self.view.at
    }

    /// `Stale` if the dataset or snapshot behind this view was deleted.
    fn check_alive(&self) -> Result<()> {
        if self.inner.is_live((self.view.tree, self.view.at)) {
            return Ok(());
        }
        Err(err(
            ErrorKind::Stale,
            match self.view.at {
                Some(g) => format!(
                    "snapshot {g} of dataset {} no longer exists",
                    self.view.tree
                ),
                None => format!("dataset {} no longer exists", self.view.tree),
            },
        ))
    }

    fn read_only(&self) -> bool {
        self.view.at.is_some()
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only() {
            return Err(err(
                ErrorKind::ReadOnly,
                "this view is a read-only snapshot",
            ));
        }
        Ok(())
    }

    async fn inode(&self, ino: u64) -> Result<InodeRecord> {
        self.check_alive()?;
        let t = self.inner.kv.txn();
        cairn_meta::inode(&t, self.view, ino)
            .await
            .map_err(meta_err)?
            .ok_or_else(|| err(ErrorKind::Stale, format!("inode {ino} no longer exists")))
    }

    fn attr(&self, ino: u64, rec: &InodeRecord) -> Attr {
        let used = match (rec.kind, &rec.inline, rec.allocated) {
            (FileKind::Regular, Some(d), _) => d.len() as u64,
            (FileKind::Regular, None, Some(a)) => a,
            // Written by an older build: at most every chunk up to its size.
            (FileKind::Regular, None, None) => rec.size,
            (FileKind::Directory | FileKind::Symlink, _, _) => crate::META_ALLOCATION,
            _ => 0,
        };
        Attr {
            ino,
            kind: rec.kind,
            mode: rec.mode,
            nlink: rec.nlink,
            uid: rec.uid,
            gid: rec.gid,
            size: match rec.kind {
                FileKind::Directory => 4096,
                _ => rec.size,
            },
            used,
            rdev: rec.rdev,
            atime: rec.atime,
            mtime: rec.mtime,
            ctime: rec.ctime,
        }
    }

    /// Lock the writer and start an operation on this dataset.
    async fn begin(&self) -> Result<tokio::sync::MutexGuard<'_, crate::WriterState>> {
        self.check_writable()?;
        Ok(self.inner.writer.lock().await)
    }

    /// Common prologue of create/mkdir/mknod/symlink: the parent must be a
    /// searchable, writable directory and `name` must be free.
    async fn prepare_new(op: &Op<'_>, creds: &Creds, dir: u64, name: &[u8]) -> Result<InodeRecord> {
        validate_name(name)?;
        let drec = op.dir(dir).await?;
        if is_dot(name) {
            return Err(err(
                ErrorKind::Exists,
                format!("{:?} already exists", show(name)),
            ));
        }
        perm::check(
            creds,
            &drec,
            access::WRITE | access::EXECUTE,
            "add entries to this directory",
        )?;
        if op.entry(dir, name).await?.is_some() {
            return Err(err(
                ErrorKind::Exists,
                format!("{:?} already exists", show(name)),
            ));
        }
        Ok(drec)
    }

    /// Link a fresh inode into `dir` and store both.
    async fn finish_new(
        op: &mut Op<'_>,
        dir: u64,
        mut drec: InodeRecord,
        name: &[u8],
        mut rec: InodeRecord,
    ) -> Result<u64> {
        let ino = op.alloc_ino()?;
        if rec.kind == FileKind::Directory {
            rec.parent = dir;
            drec.nlink += 1;
        }
        op.put_entry(
            dir,
            name,
            DirentRecord {
                ino,
                kind: rec.kind,
            },
        )
        .await?;
        drec.mtime = op.now;
        drec.ctime = op.now;
        op.put_inode(dir, drec).await?;
        op.put_inode(ino, rec).await?;
        op.count_inodes(1);
        Ok(ino)
    }

    /// Apply the ownership and time parts of `attrs` to a new record (root
    /// may give it away; others only get what they already have).
    fn initial_attrs(creds: &Creds, rec: &mut InodeRecord, attrs: &SetAttr, now: Timestamp) {
        if let Some(uid) = attrs.uid
            && creds.uid == 0
        {
            rec.uid = uid;
        }
        if let Some(gid) = attrs.gid
            && (creds.uid == 0 || creds.in_group(gid))
        {
            rec.gid = gid;
        }
        for (t, set) in [(&mut rec.atime, attrs.atime), (&mut rec.mtime, attrs.mtime)] {
            match set {
                SetTime::Keep => {}
                SetTime::Now => *t = now,
                SetTime::At(at) => *t = at,
            }
        }
    }

    /// Whether `ancestor` is `dir` or one of its ancestors.
    async fn is_ancestor(op: &Op<'_>, ancestor: u64, mut dir: u64) -> Result<bool> {
        // Bounded: directory depth cannot exceed the number of inodes.
        for _ in 0..=op.w.next_ino {
            if dir == ancestor {
                return Ok(true);
            }
            if dir == ROOT_INO {
                return Ok(false);
            }
            dir = op.dir(dir).await?.parent;
        }
        Err(err(
            ErrorKind::Corrupt,
            "directory parent chain has a cycle",
        ))
    }

    async fn is_empty_dir(op: &Op<'_>, view: View, dir: u64) -> Result<bool> {
        let (page, _) = cairn_meta::list_dirents(&op.txn, view, dir, 0, 1)
            .await
            .map_err(meta_err)?;
        Ok(page.is_empty())
    }
}

/// How many times a read looks its extents up again after a map or chunk it
/// was about to fetch vanished (a concurrent write freed it; reads take no
/// lock). Past that, the object is really missing: the store is damaged.
const READ_RETRIES: u32 = 8;

/// Extent groups a [`Filesystem::next_data`] call reads at a time (and at
/// most, once it has found data): 16 x 64 chunks, 64 MiB at 64 KiB chunks.
const DATA_SCAN_GROUPS: u64 = 16;

/// Reads at least this long are verified and assembled on a blocking
/// thread, so the thread serving sockets goes on meanwhile.
const OFFLOAD_BYTES: u64 = 256 << 10;

/// The frames covering a range: `(chunk index, hash, frame)`, holes left out.
type Frames = (Vec<u64>, Vec<ChunkHash>, Vec<Bytes>);

impl DatasetFs {
    /// The stored frames of the chunks covering bytes `offset..end` of
    /// `ino` as this view sees them, not yet verified. The inner error: a
    /// map or chunk looked up was missing (see [`READ_RETRIES`]).
    async fn read_frames(
        &self,
        ino: u64,
        offset: u64,
        end: u64,
    ) -> Result<std::result::Result<Frames, FsError>> {
        let cs = self.chunk_size as u64;
        let (first, last) = (offset / cs, (end - 1) / cs);
        let t = self.inner.kv.txn();
        let groups =
            cairn_meta::list_extents(&t, self.view, ino, first / MAP_SLOTS, last / MAP_SLOTS)
                .await
                .map_err(meta_err)?;
        let kv = &self.inner.kv;
        let maps = futures::future::try_join_all(groups.iter().map(|(g, rec)| async move {
            cairn_cas::read_map(kv, &rec.map).await.map(|m| (*g, m))
        }))
        .await;
        let maps = match maps {
            Ok(m) => m,
            Err(e) => return missing(e).map(Err),
        };
        let wanted = maps
            .iter()
            .flat_map(|(g, m)| m.chunks().map(move |(i, c)| (g * MAP_SLOTS + i, c)))
            .filter(|(idx, _)| (first..=last).contains(idx));
        let (idxs, hashes): (Vec<u64>, Vec<ChunkHash>) = wanted.map(|(i, c)| (i, c.hash)).unzip();
        match cairn_cas::fetch_frames(kv, &self.inner.packs, &hashes).await {
            Ok(frames) => Ok(Ok((idxs, hashes, frames))),
            Err(e) => missing(e).map(Err),
        }
    }

    /// The record of regular file `ino`, if `creds` may read its data.
    async fn readable(&self, creds: &Creds, ino: u64) -> Result<InodeRecord> {
        let rec = self.inode(ino).await?;
        match rec.kind {
            FileKind::Regular => {}
            FileKind::Directory => return Err(err(ErrorKind::IsDir, "cannot read a directory")),
            _ => return Err(err(ErrorKind::Invalid, "only regular files can be read")),
        }
        perm::check_read(creds, &rec)?;
        Ok(rec)
    }

    /// [`Filesystem::next_data`] of a chunked file of `size` bytes, from
    /// its extent maps; the inner error: a map looked up was missing (a
    /// concurrent write replaced it).
    async fn scan_data(
        &self,
        ino: u64,
        size: u64,
        offset: u64,
    ) -> Result<std::result::Result<Option<std::ops::Range<u64>>, FsError>> {
        let cs = self.chunk_size as u64;
        let first = offset / cs;
        let t = self.inner.kv.txn();
        let mut run: Option<std::ops::Range<u64>> = None;
        let mut group = first / MAP_SLOTS;
        let last = size.saturating_sub(1) / cs / MAP_SLOTS;
        while group <= last {
            let upto = last.min(group + DATA_SCAN_GROUPS - 1);
            let groups = cairn_meta::list_extents(&t, self.view, ino, group, upto)
                .await
                .map_err(meta_err)?;
            for (g, rec) in groups {
                if run.as_ref().is_some_and(|r| r.end < g * MAP_SLOTS * cs) {
                    return Ok(Ok(run));
                }
                let map = match cairn_cas::read_map(&self.inner.kv, &rec.map).await {
                    Ok(m) => m,
                    Err(e) => return missing(e).map(Err),
                };
                for (i, c) in map.chunks() {
                    let idx = g * MAP_SLOTS + i;
                    if idx < first {
                        continue;
                    }
                    let (lo, hi) = ((idx * cs).max(offset), (idx * cs + c.len as u64).min(size));
                    match &mut run {
                        Some(r) if r.end == idx * cs => r.end = hi,
                        Some(_) => return Ok(Ok(run)),
                        None if hi > lo => run = Some(lo..hi),
                        None => {}
                    }
                }
            }
            if run.is_some() {
                // Bounded work per call; the caller asks again from its end.
                return Ok(Ok(run));
            }
            group = upto + 1;
        }
        Ok(Ok(run))
    }

    /// Bytes `offset..end` of a regular file `ino` (within its size, not
    /// inline): fetched, looked up again if a concurrent write or repack
    /// moved what was looked up, then verified and assembled.
    async fn read_range(&self, ino: u64, offset: u64, end: u64) -> Result<Bytes> {
        let mut retries = 0;
        let (idxs, hashes, frames) = loop {
            match self.read_frames(ino, offset, end).await? {
                Ok(f) => break f,
                Err(e) if retries < READ_RETRIES => {
                    // A concurrent write replaced the record we had looked up.
                    tracing::debug!(ino, %e, "read raced a write; reading again");
                    retries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let cs = self.chunk_size as u64;
        let finish = move || -> Result<Bytes> {
            let plain = cairn_cas::decode_frames(&hashes, &frames, cs as usize).map_err(cas_err)?;
            Ok(assemble(
                cs,
                offset,
                end,
                idxs.into_iter().zip(plain).collect(),
            ))
        };
        if end - offset < OFFLOAD_BYTES {
            return finish();
        }
        tokio::task::spawn_blocking(finish)
            .await
            .map_err(|e| err(ErrorKind::Io, format!("read of inode {ino} stopped: {e}")))?
    }
}

/// Bytes `offset..end` from `chunks` (`(index, plaintext)` in index order,
/// holes left out, a chunk shorter than the chunk size ends in zeros): a
/// slice of the chunk when one covers the range, else one copy.
fn assemble(cs: u64, offset: u64, end: u64, mut chunks: Vec<(u64, Bytes)>) -> Bytes {
    chunks.sort_by_key(|(idx, _)| *idx);
    if let [(idx, data)] = &chunks[..] {
        let cstart = idx * cs;
        if cstart <= offset && end <= cstart + data.len() as u64 {
            return data.slice((offset - cstart) as usize..(end - cstart) as usize);
        }
    }
    let mut out = Vec::with_capacity((end - offset) as usize);
    for (idx, data) in chunks {
        let cstart = idx * cs;
        let lo = offset.max(cstart);
        let hi = end.min(cstart + data.len() as u64);
        if lo < hi {
            // A hole (or a short chunk's tail) before this chunk reads as zeros.
            out.resize((lo - offset) as usize, 0);
            out.extend_from_slice(&data[(lo - cstart) as usize..(hi - cstart) as usize]);
        }
    }
    out.resize((end - offset) as usize, 0);
    Bytes::from(out)
}

/// `Ok(error)` if `e` says an object was missing (worth reading again),
/// else `e` as the read's error.
fn missing(e: cairn_cas::CasError) -> Result<FsError> {
    match e {
        e @ cairn_cas::CasError::Missing { .. } => Ok(cas_err(e)),
        e => Err(cas_err(e)),
    }
}

#[async_trait]
impl Filesystem for DatasetFs {
    fn info(&self) -> FsInfo {
        FsInfo {
            root: ROOT_INO,
            read_only: self.read_only(),
            chunk_size: self.chunk_size,
            max_file_size: MAX_FILE_SIZE,
        }
    }

    async fn getattr(&self, ino: InodeId) -> Result<Attr> {
        let rec = self.inode(ino).await?;
        Ok(self.attr(ino, &rec))
    }

    async fn lookup(&self, creds: &Creds, dir: InodeId, name: &[u8]) -> Result<Attr> {
        let drec = self.inode(dir).await?;
        if drec.kind != FileKind::Directory {
            return Err(err(
                ErrorKind::NotDir,
                format!("inode {dir} is not a directory"),
            ));
        }
        perm::check(creds, &drec, access::EXECUTE, "search this directory")?;
        if name == b"." {
            return Ok(self.attr(dir, &drec));
        }
        if name == b".." {
            return self.getattr(drec.parent).await;
        }
        validate_name(name)?;
        let t = self.inner.kv.txn();
        let entry = cairn_meta::dirent(&t, self.view, dir, name)
            .await
            .map_err(meta_err)?
            .ok_or_else(|| err(ErrorKind::NotFound, format!("{:?} not found", show(name))))?;
        let rec = cairn_meta::inode(&t, self.view, entry.ino)
            .await
            .map_err(meta_err)?
            .ok_or_else(|| {
                err(
                    ErrorKind::Corrupt,
                    format!("entry {:?} names missing inode {}", show(name), entry.ino),
                )
            })?;
        Ok(self.attr(entry.ino, &rec))
    }

    async fn access(&self, creds: &Creds, ino: InodeId, mask: u32) -> Result<u32> {
        let rec = self.inode(ino).await?;
        // By the mode bits alone, as knfsd answers ACCESS: clients use it to
        // decide open(), so a 0o000 file refuses even its owner here, while
        // the data paths still let the owner read and write (NFS has no open).
        let mut granted = perm::granted(creds, &rec);
        if self.read_only() {
            granted &= !access::WRITE;
        }
        Ok(granted & mask)
    }

    async fn setattr(
        &self,
        creds: &Creds,
        ino: InodeId,
        attrs: &SetAttr,
        guard: Option<Timestamp>,
    ) -> Result<Attr> {
        let mut w = self.begin().await?;
        let mut op = Op::new(&self.inner, &mut w, self.view.tree)?;
        let mut rec = op.inode(ino).await?;
        if let Some(g) = guard
            && g != rec.ctime
        {
            return Err(err(
                ErrorKind::NotSync,
                "guard ctime does not match the inode's ctime",
            ));
        }
        let owner = perm::owns(creds, &rec);
        let mut changed = false;
        if let Some(uid) = attrs.uid
            && uid != rec.uid
        {
            if creds.uid != 0 {
                return Err(err(
                    ErrorKind::Permission,
                    "only root may change a file's owner",
                ));
            }
            rec.uid = uid;
            changed = true;
        }
        if let Some(gid) = attrs.gid
            && gid != rec.gid
        {
            if !(creds.uid == 0 || (creds.uid == rec.uid && creds.in_group(gid))) {
                return Err(err(
                    ErrorKind::Permission,
                    format!("uid {} may not change the group to {gid}", creds.uid),
                ));
            }
            rec.gid = gid;
            changed = true;
        }
        if (attrs.uid.is_some() || attrs.gid.is_some())
            && rec.kind != FileKind::Directory
            && attrs.mode.is_none()
        {
            // chown clears setuid, and setgid when group-executable (Linux).
            let mut clear = 0o4000;
            if rec.mode & 0o010 != 0 {
                clear |= 0o2000;
            }
            if rec.mode & clear != 0 {
                rec.mode &= !clear;
                changed = true;
            }
        }
        if let Some(mode) = attrs.mode {
            if !owner {
                return Err(err(
                    ErrorKind::Permission,
                    "only the owner or root may change the mode",
                ));
            }
            let mut mode = mode & 0o7777;
            if creds.uid != 0 && rec.kind != FileKind::Directory && !creds.in_group(rec.gid) {
                mode &= !0o2000;
            }
            rec.mode = mode;
            changed = true;
        }
        if let Some(size) = attrs.size {
            match rec.kind {
                FileKind::Regular => {}
                FileKind::Directory => {
                    return Err(err(ErrorKind::IsDir, "cannot set the size of a directory"));
                }
                _ => {
                    return Err(err(
                        ErrorKind::Invalid,
                        "only regular files have a settable size",
                    ));
                }
            }
            if size > MAX_FILE_SIZE {
                return Err(err(
                    ErrorKind::FileTooBig,
                    format!("size {size} exceeds the maximum {MAX_FILE_SIZE}"),
                ));
            }
            perm::check_data(creds, &rec, access::WRITE, "truncate this file")?;
            op.set_size(ino, &mut rec, size).await?;
            rec.mtime = op.now;
            changed = true;
        }
        for (is_atime, set) in [(true, attrs.atime), (false, attrs.mtime)] {
            let t = match set {
                SetTime::Keep => continue,
                SetTime::Now => {
                    if !owner {
                        perm::check(creds, &rec, access::WRITE, "set times on this file")?;
                    }
                    op.now
                }
                SetTime::At(t) => {
                    if !owner {
                        return Err(err(
                            ErrorKind::Permission,
                            "only the owner or root may set explicit times",
                        ));
                    }
                    t
                }
            };
            if is_atime {
                rec.atime = t;
            } else {
                rec.mtime = t;
            }
            changed = true;
        }
        if changed {
            rec.ctime = op.now;
            op.put_inode(ino, rec.clone()).await?;
            op.commit().await?;
        }
        Ok(self.attr(ino, &rec))
    }

    async fn read(
        &self,
        creds: &Creds,
        ino: InodeId,
        offset: u64,
        count: u32,
    ) -> Result<(Bytes, bool)> {
        let rec = self.readable(creds, ino).await?;
        if offset >= rec.size || count == 0 {
            return Ok((Bytes::new(), offset >= rec.size));
        }
        let end = rec.size.min(offset + count as u64);
        let eof = end == rec.size;
        if let Some(inline) = &rec.inline {
            return Ok((
                Bytes::copy_from_slice(&inline[offset as usize..end as usize]),
                eof,
            ));
        }
        // Read before anything this read looks at, so a range fetched
        // ahead is used only if nothing has committed since it began.
        let commits = self.inner.kv.commits();
        let (ahead, sequential) = self.inner.ahead.take(self.view, ino, offset, end, commits);
        let fetched = match ahead {
            Some(a) => a.bytes().await,
            None => None,
        };
        let data = match fetched {
            Some(d) => d,
            None => self.read_range(ino, offset, end).await?,
        };
        let len = end - offset;
        let next = (sequential && !eof && len <= READ_AHEAD_MAX)
            .then(|| (self.inner.kv.commits(), rec.size.min(end + len)));
        let fs = self.clone();
        let ahead_end = next.map_or(end, |(_, e)| e);
        self.inner
            .ahead
            .start(self.view, ino, end, next, async move {
                fs.read_range(ino, end, ahead_end).await
            });
        Ok((data, eof))
    }

    async fn next_data(
        &self,
        creds: &Creds,
        ino: InodeId,
        offset: u64,
    ) -> Result<Option<std::ops::Range<u64>>> {
        let rec = self.readable(creds, ino).await?;
        if offset >= rec.size {
            return Ok(None);
        }
        if rec.inline.is_some() {
            return Ok(Some(offset..rec.size));
        }
        let mut retries = 0;
        loop {
            match self.scan_data(ino, rec.size, offset).await? {
                Ok(r) => return Ok(r),
                Err(e) if retries < READ_RETRIES => {
                    tracing::debug!(ino, %e, "hole scan raced a write; scanning again");
                    retries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn write(&self, creds: &Creds, ino: InodeId, offset: u64, data: &[u8]) -> Result<Attr> {
        let prepared = match offset.checked_add(data.len() as u64) {
            Some(end) if end <= MAX_FILE_SIZE => {
                crate::ops::prepare_chunks(offset, data, self.chunk_size, self.inner.compress).await
            }
            _ => Default::default(),
        };
        let mut w = self.begin().await?;
        let mut op = Op::new(&self.inner, &mut w, self.view.tree)?;
        op.prepared = prepared;
        let mut rec = op.inode(ino).await?;
        match rec.kind {
            FileKind::Regular => {}
            FileKind::Directory => return Err(err(ErrorKind::IsDir, "cannot write a directory")),
            _ => return Err(err(ErrorKind::Invalid, "only regular files can be written")),
        }
        perm::check_data(creds, &rec, access::WRITE, "write this file")?;
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= MAX_FILE_SIZE);
        if end.is_none() {
            return Err(err(
                ErrorKind::FileTooBig,
                format!(
                    "writing {} bytes at {offset} exceeds the maximum file size {MAX_FILE_SIZE}",
                    data.len()
                ),
            ));
        }
        if data.is_empty() {
            return Ok(self.attr(ino, &rec));
        }
        // New data needs room; refuse it while deletes still have some.
        self.inner.kv.check_space().map_err(kv_err)?;
        op.write_data(ino, &mut rec, offset, data).await?;
        if creds.uid != 0 && rec.mode & 0o6000 != 0 {
            // A write by anyone but root clears setuid/setgid (Linux).
            rec.mode &= !0o6000;
        }
        rec.mtime = op.now;
        rec.ctime = op.now;
        op.put_inode(ino, rec.clone()).await?;
        // Chunks and extent records are staged; one batch commits both.
        crate::crash_point(&self.inner.kv, "write.before_commit").await?;
        op.commit().await?;
        Ok(self.attr(ino, &rec))
    }

    async fn create(
        &self,
        creds: &Creds,
        dir: InodeId,
        name: &[u8],
        how: CreateHow,
        attrs: &SetAttr,
    ) -> Result<Attr> {
        let mut w = self.begin().await?;
        let mut op = Op::new(&self.inner, &mut w, self.view.tree)?;
        validate_name(name)?;
        let drec = op.dir(dir).await?;
        if is_dot(name) {
            return Err(err(
                ErrorKind::Exists,
                format!("{:?} already exists", show(name)),
            ));
        }
        perm::check(creds, &drec, access::EXECUTE, "search this directory")?;
        if let Some(existing) = op.entry(dir, name).await? {
            let mut rec = op.inode(existing.ino).await?;
            match how {
                CreateHow::Guarded => {
                    return Err(err(
                        ErrorKind::Exists,
                        format!("{:?} already exists", show(name)),
                    ));
                }
                CreateHow::Exclusive(v) => {
                    if rec.kind == FileKind::Regular && rec.create_verifier == Some(v) {
                        return Ok(self.attr(existing.ino, &rec));
                    }
                    return Err(err(
                        ErrorKind::Exists,
                        format!("{:?} already exists", show(name)),
                    ));
                }
                CreateHow::Unchecked => {
                    if rec.kind != FileKind::Regular {
                        return Err(err(
                            ErrorKind::Exists,
                            format!("{:?} exists and is not a regular file", show(name)),
                        ));
                    }
                    if let Some(size) = attrs.size {
                        perm::check_data(creds, &rec, access::WRITE, "truncate this file")?;
                        op.set_size(existing.ino, &mut rec, size).await?;
                        rec.mtime = op.now;
                        rec.ctime = op.now;
                        op.put_inode(existing.ino, rec.clone()).await?;
                        op.commit().await?;
                    }
                    return Ok(self.attr(existing.ino, &rec));
                }
            }
        }
        perm::check(creds, &drec, access::WRITE, "add entries to this directory")?;
        let mut rec = op.new_record(creds, &drec, FileKind::Regular, attrs.mode.unwrap_or(0o644));
        Self::initial_attrs(creds, &mut rec, attrs, op.now);
        if let CreateHow::Exclusive(v) = how {
            rec.create_verifier = Some(v);
        }
        let size = attrs.size.unwrap_or(0);
        if size > MAX_FILE_SIZE {
            return Err(err(
                ErrorKind::FileTooBig,
                format!("size {size} exceeds the maximum"),
            ));
        }
        let ino = Self::finish_new(&mut op, dir, drec, name, rec.clone()).await?;
        if size > 0 {
            op.set_size(ino, &mut rec, size).await?;
            op.put_inode(ino, rec.clone()).await?;
        }
        op.commit().await?;
        Ok(self.attr(ino, &rec))
    }

    async fn mkdir(
        &self,
        creds: &Creds,
        dir: InodeId,
        name: &[u8],
        attrs: &SetAttr,
    ) -> Result<Attr> {
        let mut w = self.begin().await?;
        let mut op = Op::new(&self.inner, &mut w, self.view.tree)?;
        let drec = Self::prepare_new(&op, creds, dir, name).await?;
        if drec.nlink >= LINK_MAX {
            return Err(err(
                ErrorKind::TooManyLinks,
                "the directory has too many subdirectories",
            ));
        }
        let mut rec = op.new_record(
            creds,
            &drec,
            FileKind::Directory,
            attrs.mode.unwrap_or(0o755),
        );
        Self::initial_attrs(creds, &mut rec, attrs, op.now);
        rec.parent = dir;
        let ino = Self::finish_new(&mut op, dir, drec, name, rec.clone()).await?;
        op.commit().await?;
        Ok(self.attr(ino, &rec))
    }

    async fn mknod(
        &self,
        creds: &Creds,
        dir: InodeId,
        name: &[u8],
        kind: SpecialKind,
        attrs: &SetAttr,
    ) -> Result<Attr> {
        let mut w = self.begin().await?;
        let mut op = Op::new(&self.inner, &mut w, self.view.tree)?;
        let drec = Self::prepare_new(&op, creds, dir, name).await?;
        let (fk, rdev) = match kind {
            SpecialKind::Fifo => (FileKind::Fifo, (0, 0)),
            SpecialKind::Socket => (FileKind::Socket, (0, 0)),
            SpecialKind::Char(a, b) => (FileKind::CharDevice, (a, b)),
            SpecialKind::Block(a, b) => (FileKind::BlockDevice, (a, b)),
        };
        if matches!(fk, FileKind::CharDevice | FileKind::BlockDevice) && creds.uid != 0 {
            return Err(err(
                ErrorKind::Permission,
                "only root may create device nodes",
            ));
        }
        let mut rec = op.new_record(creds, &drec, fk, attrs.mode.unwrap_or(0o644));
        Self::initial_attrs(creds, &mut rec, attrs, op.now);
        rec.rdev = rdev;
        let ino = Self::finish_new(&mut op, dir, drec, name, rec.clone()).await?;
        op.commit().await?;
        Ok(self.attr(ino, &rec))
    }

    async fn symlink(
        &self,
        creds: &Creds,
        dir: InodeId,
        name: &[u8],
        target: &[u8],
        attrs: &SetAttr,
    ) -> Result<Attr> {
        let mut w = self.begin().await?;
        let mut op = Op::new(&self.inner, &mut w, self.view.tree)?;
        if target.is_empty() {
            return Err(err(ErrorKind::Invalid, "symlink target is empty"));
        }
        if target.len() > PATH_MAX {
            return Err(err(
                ErrorKind::NameTooLong,
                format!(
                    "symlink target is {} bytes; the limit is {PATH_MAX}",
                    target.len()
                ),
            ));
        }
        if target.contains(&0) {
            return Err(err(ErrorKind::Invalid, "symlink target contains NUL"));
        }
        let drec = Self::prepare_new(&op, creds, dir, name).await?;
        let mut rec = op.new_record(creds, &drec, FileKind::Symlink, attrs.mode.unwrap_or(0o777));
        Self::initial_attrs(creds, &mut rec, attrs, op.now);
        rec.size = target.len() as u64;
        rec.inline = Some(target.to_vec());
        let ino = Self::finish_new(&mut op, dir, drec, name, rec.clone()).await?;
        op.commit().await?;
        Ok(self.attr(ino, &rec))
    }

    async fn readlink(&self, ino: InodeId) -> Result<Bytes> {
        let rec = self.inode(ino).await?;
        match (rec.kind, rec.inline) {
            (FileKind::Symlink, Some(t)) => Ok(Bytes::from(t)),
            _ => Err(err(
                ErrorKind::Invalid,
                format!("inode {ino} is not a symlink"),
            )),
        }
    }

    async fn link(&self, creds: &Creds, ino: InodeId, dir: InodeId, name: &[u8]) -> Result<Attr> {
        let mut w = self.begin().await?;
        let mut op = Op::new(&self.inner, &mut w, self.view.tree)?;
        let mut rec = op.inode(ino).await?;
        if rec.kind == FileKind::Directory {
            return Err(err(
                ErrorKind::Permission,
                "directories cannot be hard-linked",
            ));
        }
        let drec = Self::prepare_new(&op, creds, dir, name).await?;
        if rec.nlink >= LINK_MAX {
            return Err(err(
                ErrorKind::TooManyLinks,
                format!("inode {ino} already has {} links", rec.nlink),
            ));
        }
        rec.nlink += 1;
        rec.ctime = op.now;
        op.put_entry(
            dir,
            name,
            DirentRecord {
                ino,
                kind: rec.kind,
            },
        )
        .await?;
        let mut drec = drec;
        drec.mtime = op.now;
        drec.ctime = op.now;
        op.put_inode(dir, drec).await?;
        op.put_inode(ino, rec.clone()).await?;
        op.commit().await?;
        Ok(self.attr(ino, &rec))
    }

    async fn remove(&self, creds: &Creds, dir: InodeId, name: &[u8]) -> Result<()> {
        let mut w = self.begin().await?;
        let mut op = Op::new(&self.inner, &mut w, self.view.tree)?;
        validate_name(name)?;
        let mut drec = op.dir(dir).await?;
        if is_dot(name) {
            return Err(err(
                ErrorKind::Invalid,
                format!("cannot remove {:?}", show(name)),
            ));
        }
        perm::check(
            creds,
            &drec,
            access::WRITE | access::EXECUTE,
            "remove entries from this directory",
        )?;
        let entry = op
            .entry(dir, name)
            .await?
            .ok_or_else(|| err(ErrorKind::NotFound, format!("{:?} not found", show(name))))?;
        let rec = op.inode(entry.ino).await?;
        if rec.kind == FileKind::Directory {
            return Err(err(
                ErrorKind::IsDir,
                format!("{:?} is a directory", show(name)),
            ));
        }
        perm::check_sticky(creds, &drec, &rec)?;
        op.delete_entry(dir, name).await?;
        op.drop_link(entry.ino, rec).await?;
        drec.mtime = op.now;
        drec.ctime = op.now;
        op.put_inode(dir, drec).await?;
        op.commit().await
    }

    async fn rmdir(&self, creds: &Creds, dir: InodeId, name: &[u8]) -> Result<()> {
        let mut w = self.begin().await?;
        let mut op = Op::new(&self.inner, &mut w, self.view.tree)?;
        validate_name(name)?;
        let mut drec = op.dir(dir).await?;
        if name == b"." {
            return Err(err(ErrorKind::Invalid, "cannot remove \".\""));
        }
        if name == b".." {
            return Err(err(ErrorKind::NotEmpty, "cannot remove \"..\""));
        }
        perm::check(
            creds,
            &drec,
            access::WRITE | access::EXECUTE,
            "remove entries from this directory",
        )?;
        let entry = op
            .entry(dir, name)
            .await?
            .ok_or_else(|| err(ErrorKind::NotFound, format!("{:?} not found", show(name))))?;
        let rec = op.inode(entry.ino).await?;
        if rec.kind != FileKind::Directory {
            return Err(err(
                ErrorKind::NotDir,
                format!("{:?} is not a directory", show(name)),
            ));
        }
        perm::check_sticky(creds, &drec, &rec)?;
        if !Self::is_empty_dir(&op, self.view, entry.ino).await? {
            return Err(err(
                ErrorKind::NotEmpty,
                format!("directory {:?} is not empty", show(name)),
            ));
        }
        op.delete_entry(dir, name).await?;
        op.free_inode(entry.ino, &rec).await?;
        drec.nlink = drec.nlink.saturating_sub(1);
        drec.mtime = op.now;
        drec.ctime = op.now;
        op.put_inode(dir, drec).await?;
        op.commit().await
    }

    async fn rename(
        &self,
        creds: &Creds,
        from_dir: InodeId,
        from: &[u8],
        to_dir: InodeId,
        to: &[u8],
    ) -> Result<()> {
        let mut w = self.begin().await?;
        let mut op = Op::new(&self.inner, &mut w, self.view.tree)?;
        validate_name(from)?;
        validate_name(to)?;
        let fdrec = op.dir(from_dir).await?;
        let tdrec = op.dir(to_dir).await?;
        if is_dot(from) || is_dot(to) {
            return Err(err(ErrorKind::Invalid, "cannot rename \".\" or \"..\""));
        }
        perm::check(
            creds,
            &fdrec,
            access::WRITE | access::EXECUTE,
            "remove entries from the source directory",
        )?;
        perm::check(
            creds,
            &tdrec,
            access::WRITE | access::EXECUTE,
            "add entries to the target directory",
        )?;
        let src = op
            .entry(from_dir, from)
            .await?
            .ok_or_else(|| err(ErrorKind::NotFound, format!("{:?} not found", show(from))))?;
        if from_dir == to_dir && from == to {
            return Ok(());
        }
        let mut srec = op.inode(src.ino).await?;
        perm::check_sticky(creds, &fdrec, &srec)?;
        let is_dir = srec.kind == FileKind::Directory;
        if is_dir && to_dir != from_dir && Self::is_ancestor(&op, src.ino, to_dir).await? {
            return Err(err(
                ErrorKind::Invalid,
                "cannot move a directory into its own subtree",
            ));
        }
        if is_dir && to_dir != from_dir && creds.uid != 0 && creds.uid != srec.uid {
            // Moving a directory rewrites its "..": needs write on it (Linux).
            perm::check(creds, &srec, access::WRITE, "move this directory")?;
        }
        let mut replaced_dir = false;
        if let Some(dst) = op.entry(to_dir, to).await? {
            if dst.ino == src.ino {
                return Ok(());
            }
            let drec = op.inode(dst.ino).await?;
            perm::check_sticky(creds, &tdrec, &drec)?;
            match (is_dir, drec.kind == FileKind::Directory) {
                (true, false) => {
                    return Err(err(
                        ErrorKind::NotDir,
                        format!("{:?} is not a directory", show(to)),
                    ));
                }
                (false, true) => {
                    return Err(err(
                        ErrorKind::IsDir,
                        format!("{:?} is a directory", show(to)),
                    ));
                }
                (true, true) => {
                    if !Self::is_empty_dir(&op, self.view, dst.ino).await? {
                        return Err(err(
                            ErrorKind::NotEmpty,
                            format!("directory {:?} is not empty", show(to)),
                        ));
                    }
                    op.free_inode(dst.ino, &drec).await?;
                    replaced_dir = true;
                }
                (false, false) => op.drop_link(dst.ino, drec).await?,
            }
        }
        op.delete_entry(from_dir, from).await?;
        op.put_entry(
            to_dir,
            to,
            DirentRecord {
                ino: src.ino,
                kind: srec.kind,
            },
        )
        .await?;
        srec.ctime = op.now;
        if is_dir {
            srec.parent = to_dir;
        }
        op.put_inode(src.ino, srec).await?;
        // Re-read: the directories may be the same inode and drop_link may
        // have touched neither, but replaced entries changed nothing else.
        let mut fdrec = op.dir(from_dir).await?;
        fdrec.mtime = op.now;
        fdrec.ctime = op.now;
        if from_dir == to_dir {
            if replaced_dir {
                fdrec.nlink = fdrec.nlink.saturating_sub(1);
            }
            op.put_inode(from_dir, fdrec).await?;
        } else {
            if is_dir {
                fdrec.nlink = fdrec.nlink.saturating_sub(1);
            }
            op.put_inode(from_dir, fdrec).await?;
            let mut tdrec = op.dir(to_dir).await?;
            tdrec.mtime = op.now;
            tdrec.ctime = op.now;
            if is_dir && !replaced_dir {
                tdrec.nlink += 1;
            }
            op.put_inode(to_dir, tdrec).await?;
            crate::crash_point(&self.inner.kv, "rename.across_directories").await?;
        }
        op.commit().await
    }

    async fn readdir(
        &self,
        creds: &Creds,
        dir: InodeId,
        cookie: u64,
        verifier: u64,
        max_entries: usize,
    ) -> Result<DirPage> {
        let drec = self.inode(dir).await?;
        if drec.kind != FileKind::Directory {
            return Err(err(
                ErrorKind::NotDir,
                format!("inode {dir} is not a directory"),
            ));
        }
        perm::check(creds, &drec, access::READ, "list this directory")?;
        let expected = self.inner.store_id;
        if cookie != 0 && verifier != 0 && verifier != expected {
            return Err(err(
                ErrorKind::BadCookie,
                "readdir verifier is from another store",
            ));
        }
        let t = self.inner.kv.txn();
        let (entries, eof) =
            cairn_meta::list_dirents(&t, self.view, dir, cookie, max_entries.clamp(1, 4096))
                .await
                .map_err(meta_err)?;
        Ok(DirPage {
            entries: entries
                .into_iter()
                .map(|e| DirEntry {
                    name: e.name,
                    ino: e.record.ino,
                    kind: e.record.kind,
                    cookie: e.cookie,
                })
                .collect(),
            eof,
            verifier: expected,
        })
    }

    async fn fsstat(&self) -> Result<FsStat> {
        self.check_alive()?;
        let st = cairn_cas::stats(&self.inner.kv).await.map_err(cas_err)?;
        // The dataset's record as committed (its counters move with
        // every operation; the published registry's copy does not).
        let ds = cairn_registry::Registry::read_dataset(&self.inner.kv, self.view.tree)
            .await
            .map_err(crate::reg_err)?;
        let inodes = match self.view.at {
            Some(g) => self
                .inner
                .registry()
                .snapshot(self.view.tree, g)
                .map(|s| s.files),
            None => ds.as_ref().map(|d| d.files),
        }
        .unwrap_or(0);
        let mut used = st.stored_bytes;
        let (mut total_bytes, mut free_bytes) = match self.inner.kv.space().map_err(kv_err)? {
            Some(sp) => (sp.total, sp.available.saturating_sub(sp.reserve)),
            None => (
                REPORTED_CAPACITY_BYTES.max(used),
                REPORTED_CAPACITY_BYTES.saturating_sub(used),
            ),
        };
        // A dataset with a quota reports it as its size, as df shows a
        // ZFS dataset's: what its quotas leave is what is free.
        if let Some(d) = &ds
            && let Some(limit) = [d.quota, d.refquota].into_iter().flatten().min()
        {
            free_bytes = crate::admin::available(d, free_bytes);
            total_bytes = limit.max(free_bytes);
            used = total_bytes - free_bytes;
        }
        Ok(FsStat {
            total_bytes,
            free_bytes,
            used_bytes: used,
            total_files: REPORTED_CAPACITY_FILES,
            free_files: REPORTED_CAPACITY_FILES.saturating_sub(inodes),
            used_files: inodes,
        })
    }

    async fn commit(&self) -> Result<()> {
        self.inner.kv.flush().await.map_err(kv_err)
    }
}

#[cfg(test)]
mod assemble_tests {
    use super::assemble;
    use bytes::Bytes;

    #[test]
    fn ranges_over_chunks_holes_and_short_tails() {
        let c = |b: u8, n: usize| Bytes::from(vec![b; n]);
        // One chunk covering the range: a slice of it.
        let one = assemble(4, 5, 7, vec![(1, c(1, 4))]);
        assert_eq!(&one[..], &[1, 1]);
        // Chunk 0, a hole at 1, chunk 2 short (2 bytes), read 2..12.
        let got = assemble(4, 2, 12, vec![(2, c(3, 2)), (0, c(1, 4))]);
        assert_eq!(
            &got[..],
            &[1, 1, 0, 0, 0, 0, 3, 3, 0, 0],
            "holes and tails read as zeros"
        );
        // Nothing stored: all zeros.
        assert_eq!(&assemble(4, 0, 3, Vec::new())[..], &[0, 0, 0]);
    }
}
