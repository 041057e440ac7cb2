//! Values: `[tag][birth: u64]` then a body. Tag 1 is a record, tag 2 a
//! whiteout (a clone's deletion of an inherited key).

use crate::key::ChunkHash;
use crate::{CodecError, Reader, Result};

const TAG_RECORD: u8 = 1;
const TAG_WHITEOUT: u8 = 2;

/// A per-dataset record with its birth generation. `value: None` is a
/// whiteout: the key is deleted in this tree even if its origin has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The generation of the tree when this version was written.
    pub birth: u64,
    /// The record, or `None` for a whiteout.
    pub value: Option<T>,
}

/// A record body that can be encoded after the version header.
pub trait Body: Sized {
    /// Append the body.
    fn encode_body(&self, out: &mut Vec<u8>);
    /// Decode the body from the rest of the value.
    fn decode_body(r: &mut Reader<'_>) -> Result<Self>;
    /// Name used in error messages.
    const WHAT: &'static str;
}

impl<T: Body> Versioned<T> {
    /// A live record born at `birth`.
    pub fn new(birth: u64, value: T) -> Self {
        Self {
            birth,
            value: Some(value),
        }
    }

    /// A whiteout born at `birth`: hides the key of a clone's origin.
    pub fn whiteout(birth: u64) -> Self {
        Self { birth, value: None }
    }

    /// Encode header and body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(if self.value.is_some() {
            TAG_RECORD
        } else {
            TAG_WHITEOUT
        });
        out.extend_from_slice(&self.birth.to_be_bytes());
        if let Some(v) = &self.value {
            v.encode_body(&mut out);
        }
        out
    }

    /// Decode; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, T::WHAT);
        let tag = r.u8()?;
        let birth = r.u64()?;
        let value = match tag {
            TAG_RECORD => Some(T::decode_body(&mut r)?),
            TAG_WHITEOUT => None,
            tag => return Err(CodecError::UnknownTag { what: T::WHAT, tag }),
        };
        r.finish()?;
        Ok(Self { birth, value })
    }
}

/// Read only the birth generation of an encoded versioned value.
pub fn birth_of(bytes: &[u8]) -> Result<u64> {
    let mut r = Reader::new(bytes, "versioned value");
    let _ = r.u8()?;
    r.u64()
}

/// Whether an encoded versioned value is a whiteout (checks its header only).
pub fn is_whiteout(bytes: &[u8]) -> Result<bool> {
    birth_of(bytes)?;
    match bytes[0] {
        TAG_RECORD => Ok(false),
        TAG_WHITEOUT => Ok(true),
        tag => Err(CodecError::UnknownTag {
            what: "versioned value",
            tag,
        }),
    }
}

/// Rewrite the birth generation of an encoded versioned value in place.
/// Fails (changing nothing) if `bytes` is too short to be one.
pub fn set_birth(bytes: &mut [u8], birth: u64) -> Result<()> {
    birth_of(bytes)?;
    bytes[1..9].copy_from_slice(&birth.to_be_bytes());
    Ok(())
}

/// The type of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
}

impl FileKind {
    fn to_u8(self) -> u8 {
        match self {
            FileKind::Regular => 1,
            FileKind::Directory => 2,
            FileKind::Symlink => 3,
            FileKind::Fifo => 4,
            FileKind::Socket => 5,
            FileKind::CharDevice => 6,
            FileKind::BlockDevice => 7,
        }
    }

    fn from_u8(b: u8) -> Result<Self> {
        Ok(match b {
            1 => FileKind::Regular,
            2 => FileKind::Directory,
            3 => FileKind::Symlink,
            4 => FileKind::Fifo,
            5 => FileKind::Socket,
            6 => FileKind::CharDevice,
            7 => FileKind::BlockDevice,
            tag => {
                return Err(CodecError::UnknownTag {
                    what: "file kind",
                    tag,
                });
            }
        })
    }
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since the epoch (may be negative).
    pub sec: i64,
    /// Nanoseconds, `< 1_000_000_000`.
    pub nsec: u32,
}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sec.to_be_bytes());
        out.extend_from_slice(&self.nsec.to_be_bytes());
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let sec = r.i64()?;
        let nsec = r.u32()?;
        if nsec >= 1_000_000_000 {
            return Err(CodecError::Malformed {
                what: "timestamp",
                reason: "nanoseconds out of range",
            });
        }
        Ok(Self { sec, nsec })
    }
}

/// An inode's attributes, and for small files and symlinks their content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeRecord {
    /// File type.
    pub kind: FileKind,
    /// Permission bits with setuid/setgid/sticky (`0o7777`).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard link count (directories: 2 + subdirectories).
    pub nlink: u32,
    /// Logical size in bytes.
    pub size: u64,
    /// Last access.
    pub atime: Timestamp,
    /// Last content modification.
    pub mtime: Timestamp,
    /// Last attribute change.
    pub ctime: Timestamp,
    /// Device numbers (major, minor) for device nodes.
    pub rdev: (u32, u32),
    /// Parent directory (directories only; 0 otherwise).
    pub parent: u64,
    /// Exclusive-create verifier, kept so a retransmitted create succeeds.
    pub create_verifier: Option<[u8; 8]>,
    /// Inline content: small regular files and symlink targets. `None` for a
    /// regular file means its content lives in extents.
    pub inline: Option<Vec<u8>>,
    /// Bytes of the file's stored chunks: the sum of the plaintext lengths
    /// of its non-hole extent slots (0 for inline files and everything but
    /// regular files). Kept in the same batch as the extents, so a GETATTR
    /// reports allocation without reading them. `None` in records written
    /// before it was kept (encoded without it); computed from the extents
    /// when the file is next written.
    pub allocated: Option<u64>,
}

impl Body for InodeRecord {
    const WHAT: &'static str = "inode record";

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.kind.to_u8());
        out.extend_from_slice(&self.mode.to_be_bytes());
        out.extend_from_slice(&self.uid.to_be_bytes());
        out.extend_from_slice(&self.gid.to_be_bytes());
        out.extend_from_slice(&self.nlink.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        self.atime.encode(out);
        self.mtime.encode(out);
        self.ctime.encode(out);
        out.extend_from_slice(&self.rdev.0.to_be_bytes());
        out.extend_from_slice(&self.rdev.1.to_be_bytes());
        out.extend_from_slice(&self.parent.to_be_bytes());
        match &self.create_verifier {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(v);
            }
            None => out.push(0),
        }
        match &self.inline {
            Some(data) => {
                out.push(1);
                out.extend_from_slice(&(data.len() as u32).to_be_bytes());
                out.extend_from_slice(data);
            }
            None => out.push(0),
        }
        // Last, and optional: records written before it decode as `None`.
        if let Some(a) = self.allocated {
            out.extend_from_slice(&a.to_be_bytes());
        }
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let kind = FileKind::from_u8(r.u8()?)?;
        let mode = r.u16()?;
        if mode & !0o7777 != 0 {
            return Err(CodecError::Malformed {
                what: Self::WHAT,
                reason: "mode has bits outside 0o7777",
            });
        }
        let uid = r.u32()?;
        let gid = r.u32()?;
        let nlink = r.u32()?;
        let size = r.u64()?;
        let atime = Timestamp::decode(r)?;
        let mtime = Timestamp::decode(r)?;
        let ctime = Timestamp::decode(r)?;
        let rdev = (r.u32()?, r.u32()?);
        let parent = r.u64()?;
        let create_verifier = match r.u8()? {
            0 => None,
            1 => {
                let mut v = [0u8; 8];
                v.copy_from_slice(r.take(8)?);
                Some(v)
            }
            tag => {
                return Err(CodecError::UnknownTag {
                    what: "verifier flag",
                    tag,
                });
            }
        };
        let inline = match r.u8()? {
            0 => None,
            1 => {
                let len = r.u32()? as usize;
                Some(r.take(len)?.to_vec())
            }
            tag => {
                return Err(CodecError::UnknownTag {
                    what: "inline flag",
                    tag,
                });
            }
        };
        if let Some(data) = &inline
            && kind == FileKind::Regular
            && data.len() as u64 != size
        {
            return Err(CodecError::Malformed {
                what: Self::WHAT,
                reason: "inline length differs from size",
            });
        }
        let allocated = if r.is_empty() { None } else { Some(r.u64()?) };
        Ok(Self {
            kind,
            mode,
            uid,
            gid,
            nlink,
            size,
            atime,
            mtime,
            ctime,
            rdev,
            parent,
            create_verifier,
            inline,
            allocated,
        })
    }
}

/// A directory entry's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirentRecord {
    /// Child inode number.
    pub ino: u64,
    /// Child type (kept so readdir needs no inode reads).
    pub kind: FileKind,
}

impl Body for DirentRecord {
    const WHAT: &'static str = "dirent record";

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ino.to_be_bytes());
        out.push(self.kind.to_u8());
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            ino: r.u64()?,
            kind: FileKind::from_u8(r.u8()?)?,
        })
    }
}

/// Consecutive chunks of a file that one extent record covers, through one
/// extent map: a 1 GiB file at 64 KiB chunks is 256 extent records.
pub const MAP_SLOTS: u64 = 64;

/// One chunk of a file: the chunk's hash and how many bytes of it are file
/// content (the tail chunk can be shorter than the chunk size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    /// Content address of the chunk.
    pub hash: ChunkHash,
    /// Length of the chunk's plaintext (never 0).
    pub len: u32,
}

/// The chunks of [`MAP_SLOTS`] consecutive chunk indexes of a file, `None`
/// for a hole. Stored once per distinct content, keyed by the BLAKE3 hash of
/// its encoding, and refcounted like a chunk: every file version with the
/// same chunks in a group shares it. Canonical: at most [`MAP_SLOTS`] slots,
/// never empty, the last slot never a hole (so equal maps encode, and hash,
/// equally).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtentMap {
    /// Slot `i` is chunk index `group * MAP_SLOTS + i`.
    pub slots: Vec<Option<ChunkRef>>,
}

impl ExtentMap {
    const WHAT: &'static str = "extent map";

    /// Drop trailing holes (the canonical form); true if nothing is left.
    pub fn trim(&mut self) -> bool {
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        self.slots.is_empty()
    }

    /// Encode: `[slot count]`, then per slot `0` (hole) or `1, hash, len`.
    /// The map must be canonical (see [`ExtentMap::trim`]).
    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(!self.slots.is_empty() && self.slots.len() as u64 <= MAP_SLOTS);
        debug_assert!(matches!(self.slots.last(), Some(Some(_))));
        let mut out = Vec::with_capacity(1 + self.slots.len() * 37);
        out.push(self.slots.len() as u8);
        for s in &self.slots {
            match s {
                None => out.push(0),
                Some(c) => {
                    out.push(1);
                    out.extend_from_slice(&c.hash.0);
                    out.extend_from_slice(&c.len.to_be_bytes());
                }
            }
        }
        out
    }

    /// Decode; only canonical maps are accepted. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, Self::WHAT);
        let n = r.u8()? as u64;
        if n == 0 || n > MAP_SLOTS {
            return Err(CodecError::Malformed {
                what: Self::WHAT,
                reason: "slot count out of range",
            });
        }
        let mut slots = Vec::with_capacity(n as usize);
        for _ in 0..n {
            slots.push(match r.u8()? {
                0 => None,
                1 => {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(r.take(32)?);
                    let len = r.u32()?;
                    if len == 0 {
                        return Err(CodecError::Malformed {
                            what: Self::WHAT,
                            reason: "empty chunk slot",
                        });
                    }
                    Some(ChunkRef {
                        hash: ChunkHash(h),
                        len,
                    })
                }
                tag => {
                    return Err(CodecError::UnknownTag {
                        what: "extent map slot",
                        tag,
                    });
                }
            });
        }
        r.finish()?;
        if slots.last().is_some_and(Option::is_none) {
            return Err(CodecError::Malformed {
                what: Self::WHAT,
                reason: "trailing hole",
            });
        }
        Ok(Self { slots })
    }

    /// The map's address: BLAKE3 of its encoding.
    pub fn hash(&self) -> ChunkHash {
        ChunkHash::of(&self.encode())
    }

    /// The chunks with their chunk index within the group.
    pub fn chunks(&self) -> impl Iterator<Item = (u64, ChunkRef)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|c| (i as u64, c)))
    }

    /// File bytes the map's chunks hold.
    pub fn logical_bytes(&self) -> u64 {
        self.chunks().map(|(_, c)| c.len as u64).sum()
    }
}

/// One extent group of a file (key `(tree, ino, group)`): the address of the
/// [`ExtentMap`] naming its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentRecord {
    /// Address of the group's extent map.
    pub map: ChunkHash,
    /// The plain bytes of the map's chunks (holes excluded): what the
    /// record charges its dataset. `None` in records written before it was
    /// kept (read the map to count them).
    pub bytes: Option<u64>,
}

impl ExtentRecord {
    /// A record naming `map`, whose chunks hold `bytes` plain bytes.
    pub fn new(map: ChunkHash, bytes: u64) -> Self {
        Self {
            map,
            bytes: Some(bytes),
        }
    }
}

impl Body for ExtentRecord {
    const WHAT: &'static str = "extent record";

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.map.0);
        // Last, and optional: records written before it decode as `None`.
        if let Some(b) = self.bytes {
            out.extend_from_slice(&b.to_be_bytes());
        }
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let mut h = [0u8; 32];
        h.copy_from_slice(r.take(32)?);
        let bytes = if r.is_empty() { None } else { Some(r.u64()?) };
        Ok(Self {
            map: ChunkHash(h),
            bytes,
        })
    }
}

/// Encode a fixed tuple of u64s (big-endian), for small store-wide records.
pub fn encode_u64s(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// Decode exactly `N` big-endian u64s; `None` if the length is wrong.
pub fn decode_u64s<const N: usize>(bytes: &[u8]) -> Option<[u64; N]> {
    if bytes.len() != N * 8 {
        return None;
    }
    let mut out = [0u64; N];
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        *o = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    }
    Some(out)
}

/// Encode a bare counter value.
pub fn encode_u64(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// Decode a bare counter value.
pub fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let mut r = Reader::new(bytes, "counter");
    let v = r.u64()?;
    r.finish()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_kind() -> impl Strategy<Value = FileKind> {
        prop_oneof![
            Just(FileKind::Regular),
            Just(FileKind::Directory),
            Just(FileKind::Symlink),
            Just(FileKind::Fifo),
            Just(FileKind::Socket),
            Just(FileKind::CharDevice),
            Just(FileKind::BlockDevice),
        ]
    }

    fn arb_ts() -> impl Strategy<Value = Timestamp> {
        (any::<i64>(), 0u32..1_000_000_000).prop_map(|(sec, nsec)| Timestamp { sec, nsec })
    }

    prop_compose! {
        fn arb_inode()(kind in arb_kind(), mode in 0u16..0o10000, uid in any::<u32>(), gid in any::<u32>(),
            nlink in any::<u32>(), atime in arb_ts(), mtime in arb_ts(), ctime in arb_ts(),
            rdev in (any::<u32>(), any::<u32>()), parent in any::<u64>(),
            create_verifier in proptest::option::of(any::<[u8; 8]>()),
            inline in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            size in any::<u64>(), allocated in proptest::option::of(any::<u64>())) -> InodeRecord {
            let size = match (&inline, kind) { (Some(d), FileKind::Regular) => d.len() as u64, _ => size };
            InodeRecord { kind, mode, uid, gid, nlink, size, atime, mtime, ctime, rdev, parent, create_verifier, inline, allocated }
        }
    }

    proptest! {
        #[test]
        fn inode_round_trips(birth in any::<u64>(), rec in arb_inode()) {
            let v = Versioned::new(birth, rec);
            prop_assert_eq!(Versioned::<InodeRecord>::decode(&v.encode()), Ok(v.clone()));
            prop_assert_eq!(birth_of(&v.encode()), Ok(birth));
        }

        #[test]
        fn whiteout_round_trips(birth in any::<u64>()) {
            let v: Versioned<DirentRecord> = Versioned { birth, value: None };
            prop_assert_eq!(Versioned::decode(&v.encode()), Ok(v));
        }

        #[test]
        fn extent_round_trips(birth in any::<u64>(), h in any::<[u8; 32]>(),
                bytes in proptest::option::of(any::<u64>())) {
            let v = Versioned::new(birth, ExtentRecord { map: ChunkHash(h), bytes });
            prop_assert_eq!(Versioned::decode(&v.encode()), Ok(v));
        }

        #[test]
        fn extent_map_round_trips(
            slots in proptest::collection::vec(
                proptest::option::of((any::<[u8; 32]>(), 1u32..)), 0..MAP_SLOTS as usize),
            last in (any::<[u8; 32]>(), 1u32..),
        ) {
            let mut slots: Vec<_> = slots
                .into_iter()
                .map(|s| s.map(|(h, len)| ChunkRef { hash: ChunkHash(h), len }))
                .collect();
            slots.push(Some(ChunkRef { hash: ChunkHash(last.0), len: last.1 }));
            let m = ExtentMap { slots };
            prop_assert_eq!(ExtentMap::decode(&m.encode()), Ok(m.clone()));
            let mut holed = m.clone();
            holed.slots.push(None);
            prop_assert!(!holed.trim());
            prop_assert_eq!(&holed, &m);
            let mut bytes = m.encode();
            bytes[0] += 1;
            bytes.push(0);
            prop_assert!(ExtentMap::decode(&bytes).is_err(), "trailing hole refused");
        }

        #[test]
        fn value_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Versioned::<InodeRecord>::decode(&bytes);
            let _ = Versioned::<DirentRecord>::decode(&bytes);
            let _ = Versioned::<ExtentRecord>::decode(&bytes);
            let _ = ExtentMap::decode(&bytes);
            let _ = decode_u64(&bytes);
        }
    }

    #[test]
    fn truncated_inode_is_an_error_not_a_panic() {
        let rec = InodeRecord {
            kind: FileKind::Regular,
            mode: 0o644,
            uid: 1,
            gid: 1,
            nlink: 1,
            size: 3,
            atime: Timestamp::default(),
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            rdev: (0, 0),
            parent: 0,
            create_verifier: None,
            inline: Some(b"abc".to_vec()),
            allocated: Some(0),
        };
        let bytes = Versioned::new(1, rec.clone()).encode();
        let legacy = bytes.len() - 8;
        for cut in (0..bytes.len()).filter(|c| *c != legacy) {
            assert!(
                Versioned::<InodeRecord>::decode(&bytes[..cut]).is_err(),
                "cut at {cut} of {} decoded",
                bytes.len()
            );
        }
        // Without its last field it is a record an older build wrote.
        let old = Versioned::<InodeRecord>::decode(&bytes[..legacy]).expect("older record");
        assert_eq!(
            old.value,
            Some(InodeRecord {
                allocated: None,
                ..rec
            })
        );
    }
}
