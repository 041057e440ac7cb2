//! Key and value codec for every record cairn keeps in its key-value store.
//!
//! Owns: the byte layout of keys (one prefix byte per record kind, big-endian
//! integers so that byte order equals logical order) and of values (a tag byte
//! and the birth generation first, then the body). Decoding never panics: every
//! malformed input is a [`CodecError`].
//!
//! Must never know: SlateDB, object stores, paths, NFS or protobuf. It is pure
//! data in, data out.
//!
//! Layout (see `docs/ARCHITECTURE.md` and `../shared/design/storage-model.md`):
//!
//! | prefix | key                                        | value                     |
//! |--------|--------------------------------------------|---------------------------|
//! | `0x01` | meta name (ASCII)                          | store-wide records        |
//! | `0x02` | dataset id                                 | dataset record (registry) |
//! | `0x10` | tree, ino                                  | [`InodeRecord`]           |
//! | `0x11` | tree, dir, cookie, name                    | [`DirentRecord`]          |
//! | `0x12` | tree, ino, group (chunk index / [`MAP_SLOTS`]) | [`ExtentRecord`]: a map hash |
//! | `0x90..0x92` | history: head key body, (`0x00` after a name), death | same as the head |
//! | `0x40` | dead list: tree, death, birth, head key    | empty                     |
//! | `0x50` | chunk hash                                 | stored chunk bytes        |
//! | `0x51` | chunk hash                                 | refcount (u64)            |
//! | `0x52` | map hash                                   | [`ExtentMap`]             |
//! | `0x53` | map hash                                   | refcount (u64)            |

mod key;
mod value;

pub use key::{ChunkHash, HeadKey, Key, KeyPrefix, name_cookie};
pub use value::{
    Body, ChunkRef, DirentRecord, ExtentMap, ExtentRecord, FileKind, InodeRecord, MAP_SLOTS,
    Timestamp, Versioned, birth_of, decode_u64, decode_u64s, encode_u64, encode_u64s, is_whiteout,
    set_birth,
};

/// A record could not be decoded: the bytes are not what this codec writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input ended before the record did.
    #[error("record truncated: needed {needed} more bytes while decoding {what}")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A tag, prefix or enum discriminant has a value this codec never writes.
    #[error("unknown {what} tag {tag:#04x}")]
    UnknownTag {
        /// What was being decoded.
        what: &'static str,
        /// The offending byte.
        tag: u8,
    },
    /// The record decoded but is internally inconsistent.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why it is malformed.
        reason: &'static str,
    },
}

/// Codec result.
pub type Result<T> = std::result::Result<T, CodecError>;

/// A bounds-checked cursor over bytes being decoded.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Start reading `buf`; `what` names the record in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    /// Take `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated {
                what: self.what,
                needed: n - self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Read a byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// Read a big-endian u16.
    pub fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Read a big-endian u32.
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Read a big-endian u64.
    pub fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Read a big-endian i64.
    pub fn i64(&mut self) -> Result<i64> {
        Ok(self.u64()? as i64)
    }

    /// Take everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Fail unless everything was consumed.
    pub fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Malformed {
                what: self.what,
                reason: "trailing bytes",
            })
        }
    }
}
