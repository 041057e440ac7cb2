//! Keys: one prefix byte per record kind, then big-endian fields.

use crate::{CodecError, Reader, Result};

/// BLAKE3 hash of a chunk's plaintext: the chunk's address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkHash(pub [u8; 32]);

impl ChunkHash {
    /// Hash `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// Lowercase hex, for messages and fsck reports.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkHash({}..)", &self.to_hex()[..12])
    }
}

/// The prefix byte of each key kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum KeyPrefix {
    /// Store-wide records (format, counters, stats).
    Meta = 0x01,
    /// Dataset registry records.
    Dataset = 0x02,
    /// Snapshot registry records.
    Snapshot = 0x03,
    /// Head inode records.
    Inode = 0x10,
    /// Head directory entries.
    Dirent = 0x11,
    /// Head extent records.
    Extent = 0x12,
    /// Dead-list entries.
    Dead = 0x40,
    /// Chunk locations (pack, offset, lengths).
    Chunk = 0x50,
    /// Chunk refcounts.
    Ref = 0x51,
    /// Extent maps (a file's chunks, [`crate::MAP_SLOTS`] at a time).
    Map = 0x52,
    /// Extent map refcounts.
    MapRef = 0x53,
    /// Pack records (size, live bytes, state).
    Pack = 0x54,
    /// History inode records.
    HistInode = 0x90,
    /// History directory entries.
    HistDirent = 0x91,
    /// History extent records.
    HistExtent = 0x92,
}

const HISTORY_BIT: u8 = 0x80;

/// The key of a per-dataset record that has a head version (and, once a
/// snapshot can see it, history versions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeadKey {
    /// An inode's attributes (and inline data).
    Inode {
        /// Tree (dataset) id.
        tree: u64,
        /// Inode number.
        ino: u64,
    },
    /// A directory entry, ordered within its directory by cookie.
    Dirent {
        /// Tree (dataset) id.
        tree: u64,
        /// Directory inode number.
        dir: u64,
        /// Readdir cookie: [`name_cookie`] of `name`.
        cookie: u64,
        /// Entry name: never empty, never contains `/` or NUL.
        name: Vec<u8>,
    },
    /// One extent group of a regular file: chunk indexes
    /// `idx * MAP_SLOTS .. (idx + 1) * MAP_SLOTS`, named by one extent map.
    Extent {
        /// Tree (dataset) id.
        tree: u64,
        /// Inode number.
        ino: u64,
        /// Group index (chunk index / [`crate::MAP_SLOTS`]).
        idx: u64,
    },
}

impl HeadKey {
    /// A directory entry key, computing its cookie from the name.
    pub fn dirent(tree: u64, dir: u64, name: &[u8]) -> Self {
        HeadKey::Dirent {
            tree,
            dir,
            cookie: name_cookie(name),
            name: name.to_vec(),
        }
    }

    /// The tree this record belongs to.
    pub fn tree(&self) -> u64 {
        match self {
            HeadKey::Inode { tree, .. }
            | HeadKey::Dirent { tree, .. }
            | HeadKey::Extent { tree, .. } => *tree,
        }
    }

    /// The same key in another tree (clones read through to their origin).
    pub fn with_tree(&self, new_tree: u64) -> Self {
        let mut k = self.clone();
        match &mut k {
            HeadKey::Inode { tree, .. }
            | HeadKey::Dirent { tree, .. }
            | HeadKey::Extent { tree, .. } => *tree = new_tree,
        }
        k
    }

    fn prefix(&self) -> KeyPrefix {
        match self {
            HeadKey::Inode { .. } => KeyPrefix::Inode,
            HeadKey::Dirent { .. } => KeyPrefix::Dirent,
            HeadKey::Extent { .. } => KeyPrefix::Extent,
        }
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            HeadKey::Inode { tree, ino } => {
                out.extend_from_slice(&tree.to_be_bytes());
                out.extend_from_slice(&ino.to_be_bytes());
            }
            HeadKey::Dirent {
                tree,
                dir,
                cookie,
                name,
            } => {
                out.extend_from_slice(&tree.to_be_bytes());
                out.extend_from_slice(&dir.to_be_bytes());
                out.extend_from_slice(&cookie.to_be_bytes());
                out.extend_from_slice(name);
            }
            HeadKey::Extent { tree, ino, idx } => {
                out.extend_from_slice(&tree.to_be_bytes());
                out.extend_from_slice(&ino.to_be_bytes());
                out.extend_from_slice(&idx.to_be_bytes());
            }
        }
    }

    /// Encode as a head key.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        out.push(self.prefix() as u8);
        self.encode_body(&mut out);
        out
    }

    /// Encode the prefix that all history versions of this key share; the
    /// versions follow it ordered by death generation.
    pub fn history_prefix(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        out.push(self.prefix() as u8 | HISTORY_BIT);
        self.encode_body(&mut out);
        if matches!(self, HeadKey::Dirent { .. }) {
            // Names never contain NUL, so this terminator keeps every version
            // of one name contiguous and ordered by death.
            out.push(0);
        }
        out
    }

    /// Encode the history key of the version of this record that died at
    /// generation `death`.
    pub fn history_key(&self, death: u64) -> Vec<u8> {
        let mut out = self.history_prefix();
        out.extend_from_slice(&death.to_be_bytes());
        out
    }

    fn decode_body(kind: KeyPrefix, r: &mut Reader<'_>, history: bool) -> Result<HeadKey> {
        Ok(match kind {
            KeyPrefix::Inode => HeadKey::Inode {
                tree: r.u64()?,
                ino: r.u64()?,
            },
            KeyPrefix::Extent => HeadKey::Extent {
                tree: r.u64()?,
                ino: r.u64()?,
                idx: r.u64()?,
            },
            KeyPrefix::Dirent => {
                let tree = r.u64()?;
                let dir = r.u64()?;
                let cookie = r.u64()?;
                let name = if history {
                    let rest = r.rest();
                    if rest.len() < 9 || rest[rest.len() - 9] != 0 {
                        return Err(CodecError::Malformed {
                            what: "history dirent key",
                            reason: "missing name terminator",
                        });
                    }
                    let name = rest[..rest.len() - 9].to_vec();
                    *r = Reader::new(&rest[rest.len() - 8..], "history dirent key");
                    name
                } else {
                    r.rest().to_vec()
                };
                check_name(&name)?;
                HeadKey::Dirent {
                    tree,
                    dir,
                    cookie,
                    name,
                }
            }
            _ => {
                return Err(CodecError::UnknownTag {
                    what: "head key",
                    tag: kind as u8,
                });
            }
        })
    }

    /// Decode a head key (with its prefix byte).
    pub fn decode(bytes: &[u8]) -> Result<HeadKey> {
        match Key::decode(bytes)? {
            Key::Head(h) => Ok(h),
            _ => Err(CodecError::Malformed {
                what: "head key",
                reason: "not a head key",
            }),
        }
    }
}

fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.contains(&0) || name.contains(&b'/') {
        return Err(CodecError::Malformed {
            what: "dirent key",
            reason: "invalid entry name",
        });
    }
    Ok(())
}

/// Any key cairn stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// Store-wide record by name.
    Meta(Vec<u8>),
    /// Dataset registry record.
    Dataset(u64),
    /// Snapshot registry record: (tree, generation).
    Snapshot {
        /// Tree id of the snapshotted dataset.
        tree: u64,
        /// The generation the snapshot froze.
        generation: u64,
    },
    /// The live version of a record.
    Head(HeadKey),
    /// A version of a record that a snapshot can still see, retired at `death`.
    History {
        /// The record's head key.
        head: HeadKey,
        /// The generation in which this version was replaced or deleted.
        death: u64,
    },
    /// Dead-list entry: `head`'s version born at `birth` died at `death`.
    Dead {
        /// Tree id.
        tree: u64,
        /// Death generation.
        death: u64,
        /// Birth generation.
        birth: u64,
        /// The record's head key.
        head: HeadKey,
    },
    /// Chunk location by hash.
    Chunk(ChunkHash),
    /// Chunk refcount by hash.
    Ref(ChunkHash),
    /// Extent map by hash.
    Map(ChunkHash),
    /// Extent map refcount by hash.
    MapRef(ChunkHash),
    /// A pack's record by pack id.
    Pack(u64),
}

impl Key {
    /// Encode to bytes whose order equals the logical order of keys.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Key::Meta(name) => {
                let mut out = vec![KeyPrefix::Meta as u8];
                out.extend_from_slice(name);
                out
            }
            Key::Dataset(id) => {
                let mut out = vec![KeyPrefix::Dataset as u8];
                out.extend_from_slice(&id.to_be_bytes());
                out
            }
            Key::Snapshot { tree, generation } => {
                let mut out = vec![KeyPrefix::Snapshot as u8];
                out.extend_from_slice(&tree.to_be_bytes());
                out.extend_from_slice(&generation.to_be_bytes());
                out
            }
            Key::Head(h) => h.encode(),
            Key::History { head, death } => head.history_key(*death),
            Key::Dead {
                tree,
                death,
                birth,
                head,
            } => {
                let mut out = dead_prefix(*tree, *death);
                out.extend_from_slice(&birth.to_be_bytes());
                out.extend_from_slice(&head.encode());
                out
            }
            Key::Chunk(h) => chunk_key(KeyPrefix::Chunk, h),
            Key::Ref(h) => chunk_key(KeyPrefix::Ref, h),
            Key::Map(h) => chunk_key(KeyPrefix::Map, h),
            Key::MapRef(h) => chunk_key(KeyPrefix::MapRef, h),
            Key::Pack(id) => {
                let mut out = vec![KeyPrefix::Pack as u8];
                out.extend_from_slice(&id.to_be_bytes());
                out
            }
        }
    }

    /// Decode any key. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Key> {
        let mut r = Reader::new(bytes, "key");
        let tag = r.u8()?;
        let key = match tag {
            0x01 => Key::Meta(r.rest().to_vec()),
            0x02 => Key::Dataset(r.u64()?),
            0x03 => Key::Snapshot {
                tree: r.u64()?,
                generation: r.u64()?,
            },
            0x10..=0x12 => Key::Head(HeadKey::decode_body(prefix_of(tag)?, &mut r, false)?),
            0x90..=0x92 => {
                let head = HeadKey::decode_body(prefix_of(tag & !HISTORY_BIT)?, &mut r, true)?;
                Key::History {
                    head,
                    death: r.u64()?,
                }
            }
            0x40 => {
                let tree = r.u64()?;
                let death = r.u64()?;
                let birth = r.u64()?;
                let head = HeadKey::decode(r.rest())?;
                Key::Dead {
                    tree,
                    death,
                    birth,
                    head,
                }
            }
            0x50..=0x53 => {
                let mut h = [0u8; 32];
                h.copy_from_slice(r.take(32)?);
                let h = ChunkHash(h);
                match tag {
                    0x50 => Key::Chunk(h),
                    0x51 => Key::Ref(h),
                    0x52 => Key::Map(h),
                    _ => Key::MapRef(h),
                }
            }
            0x54 => Key::Pack(r.u64()?),
            tag => return Err(CodecError::UnknownTag { what: "key", tag }),
        };
        r.finish()?;
        Ok(key)
    }

    /// `[start, end)` covering every key with this one-byte prefix.
    pub fn prefix_range(prefix: KeyPrefix) -> (Vec<u8>, Vec<u8>) {
        (vec![prefix as u8], vec![prefix as u8 + 1])
    }

    /// `[start, end)` covering every head key of `kind` in `tree`.
    pub fn tree_range(kind: KeyPrefix, tree: u64) -> (Vec<u8>, Vec<u8>) {
        let mut start = vec![kind as u8];
        start.extend_from_slice(&tree.to_be_bytes());
        let end = increment(&start);
        (start, end)
    }

    /// `[start, end)` covering the head entries of directory `dir`.
    pub fn dirent_range(tree: u64, dir: u64) -> (Vec<u8>, Vec<u8>) {
        let start = dirent_dir_prefix(KeyPrefix::Dirent, tree, dir);
        let end = increment(&start);
        (start, end)
    }

    /// First head dirent key of `dir` with a cookie strictly greater than `cookie`.
    pub fn dirent_after(tree: u64, dir: u64, cookie: u64) -> Vec<u8> {
        let mut k = dirent_dir_prefix(KeyPrefix::Dirent, tree, dir);
        match cookie.checked_add(1) {
            Some(c) => k.extend_from_slice(&c.to_be_bytes()),
            None => return increment(&k),
        }
        k
    }

    /// `[start, end)` covering the history entries of directory `dir`.
    pub fn history_dirent_range(tree: u64, dir: u64) -> (Vec<u8>, Vec<u8>) {
        let start = dirent_dir_prefix(KeyPrefix::HistDirent, tree, dir);
        let end = increment(&start);
        (start, end)
    }

    /// `[start, end)` covering head extents `first..=last` of `ino`.
    pub fn extent_range(tree: u64, ino: u64, first: u64, last: u64) -> (Vec<u8>, Vec<u8>) {
        let start = HeadKey::Extent {
            tree,
            ino,
            idx: first,
        }
        .encode();
        let end = increment(
            &HeadKey::Extent {
                tree,
                ino,
                idx: last,
            }
            .encode(),
        );
        (start, end)
    }

    /// `[start, end)` covering history extents `first..=last` of `ino`
    /// (all deaths).
    pub fn history_extent_range(tree: u64, ino: u64, first: u64, last: u64) -> (Vec<u8>, Vec<u8>) {
        let start = HeadKey::Extent {
            tree,
            ino,
            idx: first,
        }
        .history_prefix();
        let end = increment(
            &HeadKey::Extent {
                tree,
                ino,
                idx: last,
            }
            .history_prefix(),
        );
        (start, end)
    }

    /// `[start, end)` covering dead-list entries of `tree` with
    /// `death_from <= death <= death_to`.
    pub fn dead_range(tree: u64, death_from: u64, death_to: u64) -> (Vec<u8>, Vec<u8>) {
        let start = dead_prefix(tree, death_from);
        let end = increment(&dead_prefix(tree, death_to));
        (start, end)
    }
}

fn prefix_of(tag: u8) -> Result<KeyPrefix> {
    Ok(match tag {
        0x10 => KeyPrefix::Inode,
        0x11 => KeyPrefix::Dirent,
        0x12 => KeyPrefix::Extent,
        tag => return Err(CodecError::UnknownTag { what: "key", tag }),
    })
}

fn dirent_dir_prefix(kind: KeyPrefix, tree: u64, dir: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(kind as u8);
    k.extend_from_slice(&tree.to_be_bytes());
    k.extend_from_slice(&dir.to_be_bytes());
    k
}

fn dead_prefix(tree: u64, death: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(KeyPrefix::Dead as u8);
    out.extend_from_slice(&tree.to_be_bytes());
    out.extend_from_slice(&death.to_be_bytes());
    out
}

fn chunk_key(prefix: KeyPrefix, h: &ChunkHash) -> Vec<u8> {
    let mut out = Vec::with_capacity(33);
    out.push(prefix as u8);
    out.extend_from_slice(&h.0);
    out
}

/// The smallest byte string greater than every string starting with `prefix`.
fn increment(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xff {
            out.push(last + 1);
            return out;
        }
    }
    // All 0xff: no finite upper bound shorter than "everything"; use a long one.
    vec![0xff; prefix.len() + 1]
}

/// The readdir cookie of an entry name: a 62-bit hash, never 0, 1 or 2
/// (0 starts a listing; 1 and 2 are left for `.` and `..`).
///
/// Cookies are stable across restarts, snapshots and unrelated changes to the
/// directory. Two names with the same cookie are both kept (the name is part of
/// the key); a page never ends between them, so resuming loses neither.
pub fn name_cookie(name: &[u8]) -> u64 {
    let h = blake3::hash(name);
    let mut a = [0u8; 8];
    a.copy_from_slice(&h.as_bytes()[..8]);
    let c = u64::from_be_bytes(a) >> 2;
    if c < 3 { c + 3 } else { c }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_name() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 1..40)
            .prop_map(|v| v.into_iter().filter(|b| *b != b'/').collect::<Vec<_>>())
            .prop_filter("non-empty", |v| !v.is_empty())
    }

    fn arb_head() -> impl Strategy<Value = HeadKey> {
        prop_oneof![
            (any::<u64>(), any::<u64>()).prop_map(|(tree, ino)| HeadKey::Inode { tree, ino }),
            (any::<u64>(), any::<u64>(), arb_name())
                .prop_map(|(tree, dir, name)| HeadKey::dirent(tree, dir, &name)),
            (any::<u64>(), any::<u64>(), any::<u64>())
                .prop_map(|(tree, ino, idx)| HeadKey::Extent { tree, ino, idx }),
        ]
    }

    fn arb_key() -> impl Strategy<Value = Key> {
        let hash = proptest::array::uniform32(any::<u8>()).prop_map(ChunkHash);
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..10).prop_map(Key::Meta),
            any::<u64>().prop_map(Key::Dataset),
            any::<u64>().prop_map(Key::Pack),
            (any::<u64>(), any::<u64>())
                .prop_map(|(tree, generation)| Key::Snapshot { tree, generation }),
            arb_head().prop_map(Key::Head),
            (arb_head(), any::<u64>()).prop_map(|(head, death)| Key::History { head, death }),
            (any::<u64>(), any::<u64>(), any::<u64>(), arb_head()).prop_map(
                |(tree, death, birth, head)| Key::Dead {
                    tree,
                    death,
                    birth,
                    head
                }
            ),
            hash.clone().prop_map(Key::Chunk),
            hash.clone().prop_map(Key::Ref),
            hash.clone().prop_map(Key::Map),
            hash.prop_map(Key::MapRef),
        ]
    }

    proptest! {
        #[test]
        fn key_round_trips(k in arb_key()) {
            let bytes = k.encode();
            prop_assert_eq!(Key::decode(&bytes), Ok(k));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Key::decode(&bytes);
        }

        #[test]
        fn extent_order_matches_logical_order(tree in any::<u64>(), ino in any::<u64>(), a in any::<u64>(), b in any::<u64>()) {
            let ka = HeadKey::Extent { tree, ino, idx: a }.encode();
            let kb = HeadKey::Extent { tree, ino, idx: b }.encode();
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }

        #[test]
        fn history_versions_of_a_name_are_contiguous_and_death_ordered(
            tree in any::<u64>(), dir in any::<u64>(), n1 in arb_name(), n2 in arb_name(),
            d1 in any::<u64>(), d2 in any::<u64>(), d3 in any::<u64>()
        ) {
            prop_assume!(n1 != n2);
            let k1 = HeadKey::dirent(tree, dir, &n1);
            let k2 = HeadKey::dirent(tree, dir, &n2);
            // Versions of k1 sort by death ...
            prop_assert_eq!(k1.history_key(d1).cmp(&k1.history_key(d2)), d1.cmp(&d2));
            // ... and no version of another name sorts between two of k1's.
            let lo = k1.history_key(d1.min(d2));
            let hi = k1.history_key(d1.max(d2));
            let other = k2.history_key(d3);
            prop_assert!(!(lo < other && other < hi));
        }

        #[test]
        fn dirent_after_skips_exactly_lower_cookies(tree in any::<u64>(), dir in any::<u64>(), n in arb_name(), c in any::<u64>()) {
            let k = HeadKey::dirent(tree, dir, &n);
            let HeadKey::Dirent { cookie, .. } = k else { unreachable!() };
            let after = Key::dirent_after(tree, dir, c);
            prop_assert_eq!(k.encode() >= after, cookie > c);
        }
    }

    #[test]
    fn cookies_avoid_reserved_values() {
        for i in 0..10_000u32 {
            assert!(name_cookie(&i.to_be_bytes()) >= 3);
        }
    }

    #[test]
    fn rejects_names_with_slash_or_nul() {
        for bad in [&b"a/b"[..], b"a\0b", b""] {
            let mut k = vec![0x11];
            k.extend_from_slice(&[0u8; 24]);
            k.extend_from_slice(bad);
            assert!(Key::decode(&k).is_err(), "{bad:?} decoded");
        }
    }
}
