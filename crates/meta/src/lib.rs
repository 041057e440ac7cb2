//! Versioned inode, directory-entry and extent records of one dataset tree.
//!
//! Owns: reading a record as of the live head or of any snapshot generation
//! (head version if born at or before it, else the history version with the
//! smallest death after it), and the write rule (ZFS birth-time rule): a head
//! version that no snapshot can see is dropped; one a snapshot can see moves
//! to a history key with a dead-list entry. See
//! `../shared/design/storage-model.md` sections 2 and 3.
//!
//! Clones: a tree may have an origin, a frozen generation of another tree
//! (itself possibly a clone). A read that finds no version in the tree falls
//! through to the origin at that generation; deleting in a clone writes a
//! whiteout (a versioned "absent" record) so inherited keys stay hidden.
//!
//! Must never know: chunk bytes, extent maps or refcounts (it returns the
//! extent records it dropped; the caller releases their maps), paths,
//! permissions, NFS or protobuf.

use bytes::Bytes;
use cairn_codec::{
    Body, CodecError, DirentRecord, ExtentRecord, HeadKey, InodeRecord, Key, Versioned, birth_of,
};
use cairn_kv::{KvError, Txn, TxnIter};

/// What went wrong reading or writing records.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A stored record does not decode: the store is damaged.
    #[error("corrupt record at key {key}: {source}")]
    Corrupt {
        /// Hex of the key.
        key: String,
        /// The decode failure.
        source: CodecError,
    },
    /// The key-value layer failed.
    #[error(transparent)]
    Kv(#[from] KvError),
}

/// Result of record operations.
pub type Result<T> = std::result::Result<T, MetaError>;

fn corrupt(key: &[u8], source: CodecError) -> MetaError {
    MetaError::Corrupt {
        key: key.iter().map(|b| format!("{b:02x}")).collect(),
        source,
    }
}

fn decode<T: Body>(key: &[u8], bytes: &[u8]) -> Result<Versioned<T>> {
    Versioned::decode(bytes).map_err(|e| corrupt(key, e))
}

/// The generation state of a writable tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeState {
    /// Tree id (the key prefix of all its records).
    pub tree: u64,
    /// Current generation: records written now are born at it.
    pub generation: u64,
    /// The newest snapshot's generation (0 if none): versions born at or
    /// before it are visible to a snapshot and must be kept in history.
    pub last_snapshot: u64,
    /// Whether the tree is a clone (deletes write whiteouts).
    pub has_origin: bool,
}

/// How many clone-of-a-clone levels a view can read through.
pub const MAX_CLONE_DEPTH: usize = 8;

/// The origin chain of a clone: `(tree, generation)` pairs, nearest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lineage {
    len: u8,
    links: [(u64, u64); MAX_CLONE_DEPTH],
}

impl Lineage {
    /// No origin.
    pub const NONE: Lineage = Lineage {
        len: 0,
        links: [(0, 0); MAX_CLONE_DEPTH],
    };

    /// A chain from nearest origin to farthest; `None` if it is too deep.
    pub fn new(links: &[(u64, u64)]) -> Option<Self> {
        if links.len() > MAX_CLONE_DEPTH {
            return None;
        }
        let mut l = Lineage::NONE;
        l.links[..links.len()].copy_from_slice(links);
        l.len = links.len() as u8;
        Some(l)
    }

    /// The links, nearest origin first.
    pub fn links(&self) -> &[(u64, u64)] {
        &self.links[..self.len as usize]
    }

    /// Whether there is no origin.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The view of the nearest origin, with the rest of the chain.
    pub fn origin_view(&self) -> Option<View> {
        let (&(tree, at), rest) = self.links().split_first()?;
        Some(View {
            tree,
            at: Some(at),
            lineage: Lineage::new(rest).unwrap_or(Lineage::NONE),
        })
    }
}

/// Which version of a tree to read: the live head, or a snapshot generation,
/// reading through to the tree's origins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Tree id.
    pub tree: u64,
    /// `None` reads the head; `Some(g)` reads as of generation `g`.
    pub at: Option<u64>,
    /// Where reads that miss in this tree go.
    pub lineage: Lineage,
}

impl View {
    /// The live head of `tree`, which has no origin.
    pub fn head(tree: u64) -> Self {
        Self {
            tree,
            at: None,
            lineage: Lineage::NONE,
        }
    }
}

/// Rewrite the tree id of an encoded per-tree key (head or history).
fn retree(key: &[u8], tree: u64) -> Vec<u8> {
    let mut k = key.to_vec();
    if k.len() >= 9 {
        k[1..9].copy_from_slice(&tree.to_be_bytes());
    }
    k
}

/// Map a range bound of tree `from` to tree `to`. A bound just past the tree
/// (`from + 1`, the end of a whole-tree range) maps to just past `to`.
fn retree_bound(key: &[u8], from: u64, to: u64) -> Vec<u8> {
    let Some(t) = key.get(1..9) else {
        return key.to_vec();
    };
    let mut b = [0u8; 8];
    b.copy_from_slice(t);
    let t = u64::from_be_bytes(b);
    if t != from && Some(t) == from.checked_add(1) {
        return retree(key, to.saturating_add(1));
    }
    retree(key, to)
}

/// Read one record as `view` sees it. Whiteouts read as absent.
pub async fn get<T: Body>(r: &Txn<'_>, view: View, key: &HeadKey) -> Result<Option<T>> {
    Ok(get_versioned(r, view, key).await?.and_then(|v| v.value))
}

/// Read one record with its birth generation (whiteouts included: a
/// `Versioned` with no value). Misses fall through to the view's origins.
pub async fn get_versioned<T: Body>(
    r: &Txn<'_>,
    view: View,
    key: &HeadKey,
) -> Result<Option<Versioned<T>>> {
    let mut view = view;
    let mut key = key.clone();
    loop {
        if let Some(v) = get_own::<T>(r, view.at, &key).await? {
            return Ok(Some(v));
        }
        match view.lineage.origin_view() {
            Some(o) => {
                key = key.with_tree(o.tree);
                view = o;
            }
            None => return Ok(None),
        }
    }
}

/// The version of `key` in its own tree as of `at` (no fall-through).
async fn get_own<T: Body>(
    r: &Txn<'_>,
    at: Option<u64>,
    key: &HeadKey,
) -> Result<Option<Versioned<T>>> {
    let hk = key.encode();
    let head = match r.get(&hk).await? {
        Some(b) => Some(decode::<T>(&hk, &b)?),
        None => None,
    };
    let Some(at) = at else {
        return Ok(head);
    };
    if let Some(h) = &head
        && h.birth <= at
    {
        return Ok(head);
    }
    // The history version with the smallest death > at, if born <= at.
    let prefix = key.history_prefix();
    let start = key.history_key(at.saturating_add(1));
    let mut end = prefix.clone();
    end.extend_from_slice(&[0xff; 9]);
    for (k, v) in r.scan(&start, &end, 1).await? {
        let ver = decode::<T>(&k, &v)?;
        if ver.birth <= at {
            return Ok(Some(ver));
        }
    }
    Ok(None)
}

/// The smallest birth generation of any version of `key` in its own tree
/// (head or history, whiteouts included), or `None` if it has none.
pub async fn earliest_birth(r: &Txn<'_>, key: &HeadKey) -> Result<Option<u64>> {
    let hk = key.encode();
    let mut min = match r.get(&hk).await? {
        Some(b) => Some(birth_of(&b).map_err(|e| corrupt(&hk, e))?),
        None => None,
    };
    let start = key.history_prefix();
    let mut end = start.clone();
    end.extend_from_slice(&[0xff; 9]);
    let mut it = r.iter(&start, &end).await?;
    while let Some((k, v)) = it.next().await? {
        let b = birth_of(&v).map_err(|e| corrupt(&k, e))?;
        min = Some(min.map_or(b, |m: u64| m.min(b)));
    }
    Ok(min)
}

/// What happened to the head version a write replaced or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retired<T> {
    /// There was no head version.
    Nothing,
    /// No snapshot could see it: it is gone. If it was an extent record, the
    /// caller must drop its map reference in the same transaction.
    Dropped(T),
    /// A snapshot can see it: it moved to history with a dead-list entry and
    /// still holds its references (the version kept, `None` for a whiteout).
    Kept(Option<T>),
}

async fn retire<T: Body>(txn: &mut Txn<'_>, tree: &TreeState, key: &HeadKey) -> Result<Retired<T>> {
    let hk = key.encode();
    let Some(old) = txn.get(&hk).await? else {
        return Ok(Retired::Nothing);
    };
    let v = decode::<T>(&hk, &old)?;
    let birth = v.birth;
    if birth > tree.last_snapshot {
        return Ok(match v.value {
            Some(v) => Retired::Dropped(v),
            None => Retired::Nothing,
        });
    }
    // Birth <= last snapshot: some snapshot sees this version. A version born
    // in the current generation can never be visible to a snapshot, so the
    // (key, death) history key is unique.
    debug_assert!(birth < tree.generation);
    txn.put(key.history_key(tree.generation), old);
    txn.put(
        Key::Dead {
            tree: tree.tree,
            death: tree.generation,
            birth,
            head: key.clone(),
        }
        .encode(),
        Bytes::new(),
    );
    Ok(Retired::Kept(v.value))
}

/// Write `value` as the head version of `key`, born at the current generation.
pub async fn put<T: Body>(
    txn: &mut Txn<'_>,
    tree: &TreeState,
    key: &HeadKey,
    value: T,
) -> Result<Retired<T>> {
    debug_assert_eq!(key.tree(), tree.tree);
    let retired = retire::<T>(txn, tree, key).await?;
    txn.put(
        key.encode(),
        Versioned::new(tree.generation, value).encode(),
    );
    Ok(retired)
}

/// Write `value` as the first version of `key`, a key that has never existed
/// in this tree or its origins (one of a newly allocated inode: inode numbers
/// are never reused), so there is nothing to retire and nothing is read.
pub fn put_new<T: Body>(txn: &mut Txn<'_>, tree: &TreeState, key: &HeadKey, value: T) {
    debug_assert_eq!(key.tree(), tree.tree);
    txn.put(
        key.encode(),
        Versioned::new(tree.generation, value).encode(),
    );
}

/// Delete the head version of `key`.
pub async fn delete<T: Body>(
    txn: &mut Txn<'_>,
    tree: &TreeState,
    key: &HeadKey,
) -> Result<Retired<T>> {
    debug_assert_eq!(key.tree(), tree.tree);
    let retired = retire::<T>(txn, tree, key).await?;
    if tree.has_origin {
        // The origin may hold this key: hide it.
        txn.put(
            key.encode(),
            Versioned::<T>::whiteout(tree.generation).encode(),
        );
    } else {
        txn.delete(key.encode());
    }
    Ok(retired)
}

/// Shortcut: the inode `ino` as `view` sees it.
pub async fn inode(r: &Txn<'_>, view: View, ino: u64) -> Result<Option<InodeRecord>> {
    get(
        r,
        view,
        &HeadKey::Inode {
            tree: view.tree,
            ino,
        },
    )
    .await
}

/// Shortcut: the entry `name` of directory `dir` as `view` sees it.
pub async fn dirent(
    r: &Txn<'_>,
    view: View,
    dir: u64,
    name: &[u8],
) -> Result<Option<DirentRecord>> {
    get(r, view, &HeadKey::dirent(view.tree, dir, name)).await
}

/// A visible directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedEntry {
    /// Readdir cookie.
    pub cookie: u64,
    /// Entry name.
    pub name: Vec<u8>,
    /// Target.
    pub record: DirentRecord,
}

/// Entries of `dir` with cookie > `after`, in cookie order, as `view` sees
/// them. Returns at least `limit` entries unless the listing ends (it may
/// return more so that a page never splits entries sharing a cookie), and
/// whether the listing ended.
pub async fn list_dirents(
    r: &Txn<'_>,
    view: View,
    dir: u64,
    after: u64,
    limit: usize,
) -> Result<(Vec<ListedEntry>, bool)> {
    let limit = limit.max(1);
    let (_, end) = Key::dirent_range(view.tree, dir);
    let mut start = Key::dirent_after(view.tree, dir, after);
    let mut out: Vec<ListedEntry> = Vec::new();
    loop {
        // Fetch one more than needed to know whether the listing goes on.
        let fetch = limit - out.len().min(limit) + 1;
        let (batch, exhausted) = visible_range(r, view, &start, &end, fetch).await?;
        let mut last_key = None;
        for (k, v) in batch {
            let HeadKey::Dirent { cookie, name, .. } =
                HeadKey::decode(&k).map_err(|e| corrupt(&k, e))?
            else {
                return Err(corrupt(
                    &k,
                    CodecError::Malformed {
                        what: "dirent key",
                        reason: "wrong kind",
                    },
                ));
            };
            let rec = decode::<DirentRecord>(&k, &v)?;
            last_key = Some(k.clone());
            if let Some(record) = rec.value {
                out.push(ListedEntry {
                    cookie,
                    name,
                    record,
                });
            }
        }
        let enough = out.len() > limit;
        if exhausted && !enough {
            return Ok((out, true));
        }
        if enough {
            // Keep `limit` entries plus any that share the last kept cookie.
            let keep_cookie = out[limit - 1].cookie;
            let mut n = limit;
            while n < out.len() && out[n].cookie == keep_cookie {
                n += 1;
            }
            let ended = n == out.len() && exhausted;
            out.truncate(n);
            return Ok((out, ended));
        }
        match last_key {
            Some(k) => {
                start = k.to_vec();
                start.push(0);
            }
            None => return Ok((out, true)),
        }
    }
}

/// Extent records of groups `first..=last` of `ino`, as `view` sees them.
pub async fn list_extents(
    r: &Txn<'_>,
    view: View,
    ino: u64,
    first: u64,
    last: u64,
) -> Result<Vec<(u64, ExtentRecord)>> {
    let (start, end) = Key::extent_range(view.tree, ino, first, last);
    let (entries, _) = visible_range_of(r, view, &start, &end, usize::MAX, Some(ino)).await?;
    let mut out = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let HeadKey::Extent { idx, .. } = HeadKey::decode(&k).map_err(|e| corrupt(&k, e))? else {
            return Err(corrupt(
                &k,
                CodecError::Malformed {
                    what: "extent key",
                    reason: "wrong kind",
                },
            ));
        };
        if let Some(e) = decode::<ExtentRecord>(&k, &v)?.value {
            out.push((idx, e));
        }
    }
    Ok(out)
}

/// Head-key-ordered versions visible to `view` within head range
/// `[start, end)` (keys in `view.tree`), reading through origins: up to
/// `limit` (key, value) pairs, whiteouts included, and whether the range was
/// exhausted.
pub async fn visible_range(
    r: &Txn<'_>,
    view: View,
    start: &[u8],
    end: &[u8],
    limit: usize,
) -> Result<(Vec<(Bytes, Bytes)>, bool)> {
    visible_range_of(r, view, start, end, limit, None).await
}

/// [`visible_range`] of a range of inode `owner`'s extent keys, when given:
/// a tree whose head holds no version of that inode holds no head extent of
/// it either (deleting an inode deletes its extents in the same batch), so
/// snapshot reads of a deleted file skip the head stream and its tombstones.
async fn visible_range_of(
    r: &Txn<'_>,
    view: View,
    start: &[u8],
    end: &[u8],
    limit: usize,
    owner: Option<u64>,
) -> Result<(Vec<(Bytes, Bytes)>, bool)> {
    let (own, own_done) = visible_range_own(r, view, start, end, limit, owner).await?;
    let Some(origin) = view.lineage.origin_view() else {
        return Ok((own, own_done));
    };
    let (inherited, inh_done) = Box::pin(visible_range_of(
        r,
        origin,
        &retree_bound(start, view.tree, origin.tree),
        &retree_bound(end, view.tree, origin.tree),
        limit,
        owner,
    ))
    .await?; // Everything up to `cutoff` (inclusive) is complete in both streams.
    let mut cutoff: Option<Vec<u8>> = None;
    if !own_done && let Some((k, _)) = own.last() {
        cutoff = Some(k.to_vec());
    }
    if !inh_done && let Some((k, _)) = inherited.last() {
        let k = retree(k, view.tree);
        cutoff = Some(match cutoff {
            Some(c) if c <= k => c,
            _ => k,
        });
    }
    let within = |k: &[u8]| cutoff.as_deref().is_none_or(|c| k <= c);
    let mut merged: std::collections::BTreeMap<Vec<u8>, Bytes> = Default::default();
    for (k, v) in inherited {
        let k = retree(&k, view.tree);
        if within(&k) {
            merged.insert(k, v);
        }
    }
    for (k, v) in own {
        if within(&k) {
            merged.insert(k.to_vec(), v);
        }
    }
    let mut out: Vec<(Bytes, Bytes)> = merged
        .into_iter()
        .map(|(k, v)| (Bytes::from(k), v))
        .collect();
    let mut exhausted = cutoff.is_none();
    if out.len() > limit {
        out.truncate(limit);
        exhausted = false;
    }
    Ok((out, exhausted))
}

/// [`visible_range`] of the view's own tree only.
async fn visible_range_own(
    r: &Txn<'_>,
    view: View,
    start: &[u8],
    end: &[u8],
    limit: usize,
    owner: Option<u64>,
) -> Result<(Vec<(Bytes, Bytes)>, bool)> {
    let Some(at) = view.at else {
        let page = r.scan(start, end, limit).await?;
        let exhausted = page.len() < limit;
        return Ok((page, exhausted));
    };
    // Snapshot view: merge head versions born <= at with history versions
    // alive at `at`. History keys are head-key bodies with another prefix, so
    // the two streams share an order once the prefix is swapped. Both are
    // streamed once, so deleted keys are skipped once, whatever the page size.
    let hist = |k: &[u8]| {
        let mut h = k.to_vec();
        if let Some(p) = h.first_mut() {
            *p |= 0x80;
        }
        h
    };
    let owner_gone = match owner {
        Some(ino) => r
            .get(
                &HeadKey::Inode {
                    tree: view.tree,
                    ino,
                }
                .encode(),
            )
            .await?
            .is_none(),
        None => false,
    };
    let (hs, he) = if owner_gone { (end, end) } else { (start, end) };
    let mut heads = r.iter(hs, he).await?;
    let mut hists = r.iter(&hist(start), &hist(end)).await?;
    let mut head = heads.next().await?;
    let mut old = next_history(&mut hists).await?;
    let mut out: Vec<(Bytes, Bytes)> = Vec::new();
    while out.len() < limit {
        let key: Vec<u8> = match (&head, &old) {
            (None, None) => break,
            (Some((k, _)), None) => k.to_vec(),
            (None, Some((k, _, _))) => k.clone(),
            (Some((a, _)), Some((b, _, _))) => std::cmp::min(a.as_ref(), b.as_slice()).to_vec(),
        };
        let mut visible = None;
        if let Some((k, v)) = &head
            && k.as_ref() == key.as_slice()
        {
            if birth_of(v).map_err(|e| corrupt(k, e))? <= at {
                visible = Some(v.clone());
            }
            head = heads.next().await?;
        }
        // History versions of `key` come ordered by death: the first alive
        // one (death > at) is the candidate, visible if born by `at`.
        let mut decided = visible.is_some();
        while let Some((k, death, v)) = &old
            && *k == key
        {
            if !decided && *death > at {
                decided = true;
                if birth_of(v).map_err(|e| corrupt(k, e))? <= at {
                    visible = Some(v.clone());
                }
            }
            old = next_history(&mut hists).await?;
        }
        if let Some(v) = visible {
            out.push((Bytes::from(key), v));
        }
    }
    let exhausted = head.is_none() && old.is_none();
    Ok((out, exhausted))
}

/// The next history entry as `(head key, death, value)`.
async fn next_history(it: &mut TxnIter<'_>) -> Result<Option<(Vec<u8>, u64, Bytes)>> {
    let Some((k, v)) = it.next().await? else {
        return Ok(None);
    };
    let Key::History { head, death } = Key::decode(&k).map_err(|e| corrupt(&k, e))? else {
        return Err(corrupt(
            &k,
            CodecError::Malformed {
                what: "history key",
                reason: "wrong kind",
            },
        ));
    };
    Ok(Some((head.encode(), death, v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_codec::{ChunkHash, FileKind};
    use cairn_kv::{Kv, KvOptions};

    fn ext(b: u8) -> ExtentRecord {
        ExtentRecord::new(ChunkHash([b; 32]), u64::from(b))
    }

    #[tokio::test]
    async fn write_rule_keeps_only_what_snapshots_see() -> Result<()> {
        let kv = Kv::open("memory://", KvOptions::default()).await?;
        let key = HeadKey::Extent {
            tree: 1,
            ino: 5,
            idx: 0,
        };
        let mut st = TreeState {
            tree: 1,
            generation: 1,
            last_snapshot: 0,
            has_origin: false,
        };

        let mut t = kv.txn();
        assert_eq!(put(&mut t, &st, &key, ext(1)).await?, Retired::Nothing);
        // Replaced in the same generation with no snapshot: dropped.
        assert_eq!(
            put(&mut t, &st, &key, ext(2)).await?,
            Retired::Dropped(ext(2 - 1))
        );
        t.commit().await?;

        // Snapshot at generation 1.
        st.last_snapshot = 1;
        st.generation = 2;
        let mut t = kv.txn();
        assert_eq!(
            put(&mut t, &st, &key, ext(3)).await?,
            Retired::<ExtentRecord>::Kept(Some(ext(2)))
        );
        assert_eq!(
            put(&mut t, &st, &key, ext(4)).await?,
            Retired::Dropped(ext(3))
        );
        t.commit().await?;

        let t = kv.txn();
        let snap = View {
            at: Some(1),
            ..View::head(1)
        };
        assert_eq!(get::<ExtentRecord>(&t, snap, &key).await?, Some(ext(2)));
        assert_eq!(
            get::<ExtentRecord>(&t, View::head(1), &key).await?,
            Some(ext(4))
        );
        assert_eq!(list_extents(&t, snap, 5, 0, 10).await?, vec![(0, ext(2))]);

        // Deleted after the snapshot: the snapshot still sees it.
        let mut t = kv.txn();
        assert_eq!(
            delete::<ExtentRecord>(&mut t, &st, &key).await?,
            Retired::Dropped(ext(4))
        );
        t.commit().await?;
        let t = kv.txn();
        assert_eq!(get::<ExtentRecord>(&t, snap, &key).await?, Some(ext(2)));
        assert_eq!(get::<ExtentRecord>(&t, View::head(1), &key).await?, None);
        Ok(())
    }

    #[tokio::test]
    async fn snapshot_listing_pages_through_head_and_history() -> Result<()> {
        let kv = Kv::open("memory://", KvOptions::default()).await?;
        let mut st = TreeState {
            tree: 1,
            generation: 1,
            last_snapshot: 0,
            has_origin: false,
        };
        let rec = DirentRecord {
            ino: 9,
            kind: FileKind::Regular,
        };
        let mut t = kv.txn();
        for i in 0..50u32 {
            put(
                &mut t,
                &st,
                &HeadKey::dirent(1, 2, format!("f{i}").as_bytes()),
                rec,
            )
            .await?;
        }
        t.commit().await?;
        st.last_snapshot = 1;
        st.generation = 2;
        let mut t = kv.txn();
        for i in 0..50u32 {
            let k = HeadKey::dirent(1, 2, format!("f{i}").as_bytes());
            if i % 2 == 0 {
                delete::<DirentRecord>(&mut t, &st, &k).await?;
            }
            put(
                &mut t,
                &st,
                &HeadKey::dirent(1, 2, format!("g{i}").as_bytes()),
                rec,
            )
            .await?;
        }
        t.commit().await?;
        let t = kv.txn();
        for (view, want) in [
            (
                View {
                    at: Some(1),
                    ..View::head(1)
                },
                50,
            ),
            (View::head(1), 75),
        ] {
            let mut names = Vec::new();
            let mut after = 0;
            loop {
                let (page, done) = list_dirents(&t, view, 2, after, 7).await?;
                if let Some(last) = page.last() {
                    after = last.cookie;
                }
                names.extend(page.into_iter().map(|e| e.name));
                if done {
                    break;
                }
            }
            names.sort();
            names.dedup();
            assert_eq!(names.len(), want, "{view:?}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn clone_reads_through_and_whiteouts_hide() -> Result<()> {
        let kv = Kv::open("memory://", KvOptions::default()).await?;
        let origin = TreeState {
            tree: 1,
            generation: 2,
            last_snapshot: 1,
            has_origin: false,
        };
        let rec = |ino| DirentRecord {
            ino,
            kind: FileKind::Regular,
        };
        let mut t = kv.txn();
        let origin_at_1 = TreeState {
            generation: 1,
            last_snapshot: 0,
            ..origin
        };
        for i in 0..20u64 {
            put(
                &mut t,
                &origin_at_1,
                &HeadKey::dirent(1, 2, format!("f{i:02}").as_bytes()),
                rec(i),
            )
            .await?;
        }
        t.commit().await?;
        // Origin changes after the snapshot at 1 do not reach the clone.
        let mut t = kv.txn();
        delete::<DirentRecord>(&mut t, &origin, &HeadKey::dirent(1, 2, b"f00")).await?;
        t.commit().await?;

        let clone = TreeState {
            tree: 7,
            generation: 1,
            last_snapshot: 0,
            has_origin: true,
        };
        let view = View {
            tree: 7,
            at: None,
            lineage: Lineage::new(&[(1, 1)]).expect("short chain"),
        };
        let mut t = kv.txn();
        delete::<DirentRecord>(&mut t, &clone, &HeadKey::dirent(7, 2, b"f01")).await?;
        put(&mut t, &clone, &HeadKey::dirent(7, 2, b"f02"), rec(99)).await?;
        put(&mut t, &clone, &HeadKey::dirent(7, 2, b"new"), rec(100)).await?;
        t.commit().await?;

        let t = kv.txn();
        assert_eq!(dirent(&t, view, 2, b"f00").await?, Some(rec(0)));
        assert_eq!(dirent(&t, view, 2, b"f01").await?, None);
        assert_eq!(dirent(&t, view, 2, b"f02").await?, Some(rec(99)));
        assert_eq!(dirent(&t, View::head(1), 2, b"f02").await?, Some(rec(2)));
        assert_eq!(dirent(&t, View::head(1), 2, b"new").await?, None);
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let (page, done) = list_dirents(&t, view, 2, after, 3).await?;
            if let Some(last) = page.last() {
                after = last.cookie;
            }
            seen.extend(page.into_iter().map(|e| (e.name, e.record.ino)));
            if done {
                break;
            }
        }
        seen.sort();
        let mut want: Vec<(Vec<u8>, u64)> = (0..20u64)
            .filter(|i| *i != 1)
            .map(|i| (format!("f{i:02}").into_bytes(), if i == 2 { 99 } else { i }))
            .collect();
        want.push((b"new".to_vec(), 100));
        want.sort();
        assert_eq!(seen, want);
        Ok(())
    }
}
