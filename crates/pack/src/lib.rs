//! Pack objects: chunk frames gathered into large immutable objects.
//!
//! Owns: the frame and pack formats ([`format`]), the open pack filled in
//! memory and the sealed ones waiting for their upload (read-your-writes
//! from both), the one PUT per sealed pack, ranged reads that coalesce
//! neighbouring frames of one pack, a bounded cache of pack blocks with
//! read-ahead for remote stores, listing packs from an id on (for orphans)
//! and deleting packs.
//!
//! Must never know: SlateDB, refcounts, the index, files, datasets, NFS or
//! protobuf. It sees pack ids, offsets and bytes; the chunk store decides
//! what is live and when a pack may go.

mod cache;
pub mod format;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cairn_codec::ChunkHash;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

pub use format::{DirEntry, Location, decode_frame, encode_frame, parse_pack};

/// Default size at which the open pack of a local store is sealed: 32 MiB.
pub const DEFAULT_PACK_BYTES: usize = 32 << 20;
/// Default size at which the open pack of a remote store is sealed: 64 MiB.
/// Every full pack is one PUT and ends a layer (one more, for SlateDB's
/// WAL), so 32 MiB packs cost about 67 PUTs per GiB written; these cost
/// about 40, for at most about 3 x 64 MiB of frames in memory.
pub const DEFAULT_REMOTE_PACK_BYTES: usize = 64 << 20;
/// Neighbouring frames of one pack closer than this are read with one
/// request: 256 KiB.
pub const COALESCE_GAP: u64 = 256 << 10;
/// Largest single coalesced read: 16 MiB.
pub const MAX_READ: u64 = 16 << 20;
/// Block of a pack held by the remote-store cache: 8 MiB.
pub const CACHE_BLOCK: u64 = 8 << 20;
/// Default bytes of pack blocks cached for a remote store: 128 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 128 << 20;

/// What went wrong with packs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PackError {
    /// A pack's framing is damaged (magic, version, directory).
    #[error("pack {pack} is corrupt: {reason}")]
    Corrupt {
        /// Pack id.
        pack: u64,
        /// What is wrong.
        reason: String,
    },
    /// One frame does not decode or does not hash to its chunk.
    #[error("chunk {hash} is corrupt: {reason}")]
    BadFrame {
        /// Hex of the chunk's address.
        hash: String,
        /// What is wrong.
        reason: String,
    },
    /// The pack object is not in the store.
    #[error("pack {pack} is missing from the object store")]
    Missing {
        /// Pack id.
        pack: u64,
    },
    /// The object store failed a request: retry later.
    #[error("object store: {0}")]
    Store(String),
}

/// Attempts of one object store request before its error is returned.
pub const REQUEST_ATTEMPTS: u32 = 8;

/// Run `f` until it succeeds, fails with something retrying cannot fix
/// (not found), or [`REQUEST_ATTEMPTS`] attempts failed; the pause doubles
/// from 10 ms up to 1 s between attempts.
async fn retry<T, F, Fut>(what: &str, mut f: F) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<T>>,
{
    let mut pause = std::time::Duration::from_millis(10);
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e @ object_store::Error::NotFound { .. }) => return Err(e),
            Err(e) if attempt >= REQUEST_ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::debug!(what, attempt, error = %e, "retrying a pack request");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
                attempt += 1;
            }
        }
    }
}

fn store_err(pack: u64, e: object_store::Error) -> PackError {
    match e {
        object_store::Error::NotFound { .. } => PackError::Missing { pack },
        e => PackError::Store(format!("pack {pack}: {e}")),
    }
}

/// Packs in one object store directory.
pub struct PackStore {
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    cache: Option<cache::BlockCache>,
}

impl PackStore {
    /// Packs under `root` of `store`; `cache_bytes` of pack blocks are
    /// cached (0: none, for stores the page cache serves).
    pub fn new(store: Arc<dyn ObjectStore>, root: ObjectPath, cache_bytes: u64) -> Self {
        Self {
            store,
            root,
            cache: (cache_bytes > 0).then(|| cache::BlockCache::new(cache_bytes)),
        }
    }

    /// The object name of pack `id`.
    pub fn path(&self, id: u64) -> ObjectPath {
        self.root.clone().join(format!("{id:016x}"))
    }

    fn id_of(&self, p: &ObjectPath) -> Option<u64> {
        let name = p.filename()?;
        if name.len() != 16 {
            return None;
        }
        u64::from_str_radix(name, 16).ok()
    }

    /// Store a sealed pack with one PUT.
    pub async fn put(&self, id: u64, bytes: Bytes) -> Result<(), PackError> {
        let path = self.path(id);
        retry("put", || {
            self.store.put(&path, PutPayload::from(bytes.clone()))
        })
        .await
        .map(|_| ())
        .map_err(|e| store_err(id, e))
    }

    /// A whole pack.
    pub async fn get(&self, id: u64) -> Result<Bytes, PackError> {
        let path = self.path(id);
        retry("get", || async {
            self.store.get(&path).await?.bytes().await
        })
        .await
        .map_err(|e| store_err(id, e))
    }

    /// Delete a pack (absent already is fine).
    pub async fn delete(&self, id: u64) -> Result<(), PackError> {
        if let Some(c) = &self.cache {
            c.forget(id);
        }
        let path = self.path(id);
        match retry("delete", || self.store.delete(&path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(id, e)),
        }
    }

    /// Every pack with an id of at least `from`, with its size, in id order.
    /// Lists only those names (`list_with_offset`), not the whole store.
    pub async fn list_from(&self, from: u64) -> Result<Vec<(u64, u64)>, PackError> {
        let offset = self.path(from.saturating_sub(1));
        let mut out: Vec<(u64, u64)> = retry("list", || {
            let listing = if from == 0 {
                self.store.list(Some(&self.root))
            } else {
                self.store.list_with_offset(Some(&self.root), &offset)
            };
            listing.try_collect::<Vec<_>>()
        })
        .await
        .map_err(|e| PackError::Store(format!("listing packs: {e}")))?
        .into_iter()
        .filter_map(|m| Some((self.id_of(&m.location)?, m.size)))
        .filter(|(id, _)| *id >= from)
        .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Read byte ranges of pack `id` (each within the pack): neighbours
    /// are coalesced into one request; through the block cache for remote
    /// stores.
    pub async fn read(
        &self,
        id: u64,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<Bytes>, PackError> {
        if let Some(c) = &self.cache {
            return c.read(self, id, ranges).await;
        }
        self.read_direct(id, ranges).await
    }

    async fn read_direct(
        &self,
        id: u64,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<Bytes>, PackError> {
        let mut order: Vec<usize> = (0..ranges.len()).collect();
        order.sort_by_key(|&i| ranges[i].start);
        // Runs of ranges read together: (start, end, members).
        let mut runs: Vec<(u64, u64, Vec<usize>)> = Vec::new();
        for i in order {
            let r = &ranges[i];
            match runs.last_mut() {
                Some((s, e, m))
                    if r.start <= *e + COALESCE_GAP && r.end.max(*e) - *s <= MAX_READ =>
                {
                    *e = (*e).max(r.end);
                    m.push(i);
                }
                _ => runs.push((r.start, r.end, vec![i])),
            }
        }
        let path = self.path(id);
        let fetched = futures::future::try_join_all(runs.iter().map(|(s, e, _)| {
            let path = &path;
            async move {
                retry("get_range", || self.store.get_range(path, *s..*e))
                    .await
                    .map_err(|e| store_err(id, e))
            }
        }))
        .await?;
        let mut out = vec![Bytes::new(); ranges.len()];
        for ((s, e, members), bytes) in runs.iter().zip(fetched) {
            if bytes.len() as u64 != e - s {
                return Err(PackError::Corrupt {
                    pack: id,
                    reason: format!("read {s}..{e} returned {} bytes", bytes.len()),
                });
            }
            for &i in members {
                let r = &ranges[i];
                out[i] = bytes.slice((r.start - s) as usize..(r.end - s) as usize);
            }
        }
        Ok(out)
    }

    async fn size(&self, id: u64) -> Result<u64, PackError> {
        let path = self.path(id);
        retry("head", || self.store.head(&path))
            .await
            .map(|m| m.size)
            .map_err(|e| store_err(id, e))
    }
}

/// A sealed pack, with what its cut records about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// Its id.
    pub id: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Frames in it.
    pub frames: u64,
}

struct State {
    next_id: u64,
    open: Option<(u64, format::PackBuf)>,
    /// Sealed packs not yet stored, by id.
    sealed: BTreeMap<u64, Bytes>,
}

/// The open pack and the sealed packs waiting for their PUT, over a
/// [`PackStore`].
pub struct Packer {
    store: PackStore,
    pack_bytes: usize,
    state: Mutex<State>,
}

impl Packer {
    /// A packer whose first pack gets id `next_id`, sealing packs at
    /// `pack_bytes`.
    pub fn new(store: PackStore, pack_bytes: usize, next_id: u64) -> Self {
        Self {
            store,
            pack_bytes: pack_bytes.max(4096),
            state: Mutex::new(State {
                next_id,
                open: None,
                sealed: BTreeMap::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pack store under this packer.
    pub fn store(&self) -> &PackStore {
        &self.store
    }

    /// Size at which the open pack is sealed.
    pub fn pack_bytes(&self) -> usize {
        self.pack_bytes
    }

    /// Append a frame to the open pack (opening one if none is). Returns
    /// its location and whether the pack reached its size (the caller
    /// cuts).
    pub fn append(&self, hash: ChunkHash, frame: &[u8], plain: u32) -> (Location, bool) {
        let mut st = self.state();
        if st.open.is_none() {
            let id = st.next_id;
            st.next_id += 1;
            st.open = Some((id, format::PackBuf::new(self.pack_bytes + (1 << 20))));
        }
        let Some((id, buf)) = st.open.as_mut() else {
            unreachable!("opened above")
        };
        let offset = buf.push(hash, frame, plain);
        let loc = Location {
            pack: *id,
            offset,
            len: frame.len() as u32,
            plain,
        };
        (loc, buf.buf.len() >= self.pack_bytes)
    }

    /// Bytes in the open pack.
    pub fn open_bytes(&self) -> usize {
        self.state().open.as_ref().map_or(0, |(_, b)| b.buf.len())
    }

    /// Seal the open pack, if it holds anything: it stays in memory until
    /// [`Packer::upload`] stored it.
    pub fn seal(&self) -> Option<Sealed> {
        let mut st = self.state();
        let (id, buf) = st.open.take()?;
        let frames = buf.dir.len() as u64;
        let bytes = buf.finish();
        let size = bytes.len() as u64;
        st.sealed.insert(id, bytes);
        Some(Sealed { id, size, frames })
    }

    /// Store sealed pack `id` (and any older one still waiting) with one
    /// PUT each; done already is fine. Reads of it go to the store once it
    /// returns.
    pub async fn upload(&self, id: u64) -> Result<(), PackError> {
        loop {
            let next = {
                let st = self.state();
                st.sealed.range(..=id).next().map(|(i, b)| (*i, b.clone()))
            };
            let Some((i, bytes)) = next else {
                return Ok(());
            };
            self.store.put(i, bytes).await?;
            tracing::debug!(pack = i, "stored pack");
            self.state().sealed.remove(&i);
        }
    }

    /// The id the next pack will get.
    pub fn next_id(&self) -> u64 {
        self.state().next_id
    }

    /// Whether pack `id` is still only in memory (open or sealed).
    pub fn in_memory(&self, id: u64) -> bool {
        let st = self.state();
        st.sealed.contains_key(&id) || st.open.as_ref().is_some_and(|(o, _)| *o == id)
    }

    fn buffered(&self, loc: &Location) -> Option<Bytes> {
        let st = self.state();
        let r = loc.offset as usize..(loc.offset as usize + loc.len as usize);
        if let Some(b) = st.sealed.get(&loc.pack) {
            return b.get(r.clone()).map(|_| b.slice(r));
        }
        match &st.open {
            Some((id, buf)) if *id == loc.pack => buf.buf.get(r).map(Bytes::copy_from_slice),
            _ => None,
        }
    }

    /// The frames at `locs`, in order: from memory for packs not yet
    /// stored, else one coalesced read per pack.
    pub async fn read_frames(&self, locs: &[Location]) -> Result<Vec<Bytes>, PackError> {
        let mut out = vec![Bytes::new(); locs.len()];
        let mut by_pack: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, loc) in locs.iter().enumerate() {
            match self.buffered(loc) {
                Some(b) => out[i] = b,
                None => by_pack.entry(loc.pack).or_default().push(i),
            }
        }
        let reads =
            futures::future::try_join_all(by_pack.into_iter().map(|(pack, idx)| async move {
                let ranges: Vec<_> = idx.iter().map(|&i| locs[i].range()).collect();
                self.store.read(pack, &ranges).await.map(|b| (idx, b))
            }))
            .await?;
        for (idx, bytes) in reads {
            for (i, b) in idx.into_iter().zip(bytes) {
                out[i] = b;
            }
        }
        Ok(out)
    }
}
