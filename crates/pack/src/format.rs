//! The bytes of frames, locations and packs.
//!
//! A frame is one stored chunk: `[frame version][codec][payload]`. A pack is
//! `[header][frame]...[directory][trailer]`: the header is the magic and
//! the pack version; the directory lists every frame (hash, offset, stored
//! length, plaintext length); the fixed-size trailer at the very end says
//! where the directory is, how many entries it has and a BLAKE3 of it, then
//! repeats the version and magic. A pack can be checked and repacked from
//! its own bytes, without the index.

use bytes::Bytes;
use cairn_codec::ChunkHash;

use crate::PackError;

/// First bytes of every pack, and its last.
pub const PACK_MAGIC: &[u8; 8] = b"CAIRNPCK";
/// Pack layout version.
pub const PACK_VERSION: u8 = 1;
/// Frame layout version: `[1][codec][payload]`, no encryption.
pub const FRAME_VERSION: u8 = 1;
/// Payload stored as is.
pub const CODEC_RAW: u8 = 0;
/// Payload is LZ4 with the plaintext length prepended.
pub const CODEC_LZ4: u8 = 1;
/// Bytes before the first frame.
pub const HEADER_LEN: usize = 16;
/// Bytes of one directory entry.
pub const DIR_ENTRY_LEN: usize = 48;
/// Bytes of the trailer.
pub const TRAILER_LEN: usize = 8 + 4 + 16 + 1 + 8;

/// Encode a chunk as a frame, trying LZ4 if `compress` and keeping it only
/// when it saves space.
pub fn encode_frame(data: &[u8], compress: bool) -> Vec<u8> {
    if compress {
        let c = lz4_flex::compress_prepend_size(data);
        if c.len() < data.len() {
            let mut out = Vec::with_capacity(c.len() + 2);
            out.extend_from_slice(&[FRAME_VERSION, CODEC_LZ4]);
            out.extend_from_slice(&c);
            return out;
        }
    }
    let mut out = Vec::with_capacity(data.len() + 2);
    out.extend_from_slice(&[FRAME_VERSION, CODEC_RAW]);
    out.extend_from_slice(data);
    out
}

fn bad_frame(hash: &ChunkHash, reason: impl Into<String>) -> PackError {
    PackError::BadFrame {
        hash: hash.to_hex(),
        reason: reason.into(),
    }
}

/// Decode a frame and verify its plaintext against `hash`; at most
/// `max_len` plaintext bytes are accepted. A raw frame's plaintext is a
/// slice of `frame` (no copy).
pub fn decode_frame(hash: &ChunkHash, frame: &Bytes, max_len: usize) -> Result<Bytes, PackError> {
    let [version, codec, payload @ ..] = &frame[..] else {
        return Err(bad_frame(hash, "frame shorter than its header"));
    };
    if *version != FRAME_VERSION {
        return Err(bad_frame(hash, format!("unknown frame version {version}")));
    }
    let data = match *codec {
        CODEC_RAW => frame.slice(2..),
        CODEC_LZ4 => {
            let Some(declared) = payload.first_chunk::<4>().map(|b| u32::from_le_bytes(*b)) else {
                return Err(bad_frame(hash, "truncated lz4 header"));
            };
            if declared as usize > max_len {
                return Err(bad_frame(
                    hash,
                    format!("declared length {declared} exceeds {max_len}"),
                ));
            }
            Bytes::from(
                lz4_flex::decompress_size_prepended(payload)
                    .map_err(|e| bad_frame(hash, format!("lz4: {e}")))?,
            )
        }
        other => return Err(bad_frame(hash, format!("unknown codec {other}"))),
    };
    if ChunkHash::of(&data) != *hash {
        return Err(bad_frame(hash, "content does not match its hash"));
    }
    Ok(data)
}

/// Where a chunk's frame is: the value of its index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    /// Pack id.
    pub pack: u64,
    /// Offset of the frame in the pack.
    pub offset: u64,
    /// Bytes of the frame.
    pub len: u32,
    /// Plaintext bytes of the chunk.
    pub plain: u32,
}

const LOCATION_VERSION: u8 = 1;
const LOCATION_LEN: usize = 25;

impl Location {
    /// `[1][pack][offset][len][plain]`, big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LOCATION_LEN);
        out.push(LOCATION_VERSION);
        out.extend_from_slice(&self.pack.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.plain.to_be_bytes());
        out
    }

    /// Decode [`Location::encode`]'s bytes; `None` if they are not that.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != LOCATION_LEN || b[0] != LOCATION_VERSION {
            return None;
        }
        let u64_at = |i: usize| b.get(i..i + 8)?.try_into().ok().map(u64::from_be_bytes);
        let u32_at = |i: usize| b.get(i..i + 4)?.try_into().ok().map(u32::from_be_bytes);
        Some(Self {
            pack: u64_at(1)?,
            offset: u64_at(9)?,
            len: u32_at(17)?,
            plain: u32_at(21)?,
        })
    }

    /// The frame's byte range in its pack.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset + self.len as u64
    }
}

/// One directory entry of a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry {
    /// The chunk's address.
    pub hash: ChunkHash,
    /// Offset of its frame.
    pub offset: u64,
    /// Bytes of its frame.
    pub len: u32,
    /// Plaintext bytes.
    pub plain: u32,
}

/// An open pack being filled in memory.
pub(crate) struct PackBuf {
    pub(crate) buf: Vec<u8>,
    pub(crate) dir: Vec<DirEntry>,
}

impl PackBuf {
    pub(crate) fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(PACK_MAGIC);
        buf.push(PACK_VERSION);
        buf.resize(HEADER_LEN, 0);
        Self {
            buf,
            dir: Vec::new(),
        }
    }

    /// Append a frame; returns its offset.
    pub(crate) fn push(&mut self, hash: ChunkHash, frame: &[u8], plain: u32) -> u64 {
        let offset = self.buf.len() as u64;
        self.buf.extend_from_slice(frame);
        self.dir.push(DirEntry {
            hash,
            offset,
            len: frame.len() as u32,
            plain,
        });
        offset
    }

    /// The whole pack: frames, then directory and trailer.
    pub(crate) fn finish(mut self) -> Bytes {
        let dir_offset = self.buf.len() as u64;
        for e in &self.dir {
            self.buf.extend_from_slice(&e.hash.0);
            self.buf.extend_from_slice(&e.offset.to_be_bytes());
            self.buf.extend_from_slice(&e.len.to_be_bytes());
            self.buf.extend_from_slice(&e.plain.to_be_bytes());
        }
        let dir_hash = blake3::hash(&self.buf[dir_offset as usize..]);
        self.buf.extend_from_slice(&dir_offset.to_be_bytes());
        self.buf
            .extend_from_slice(&(self.dir.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(&dir_hash.as_bytes()[..16]);
        self.buf.push(PACK_VERSION);
        self.buf.extend_from_slice(PACK_MAGIC);
        Bytes::from(self.buf)
    }
}

/// Read a whole pack's directory and check the pack's framing: magic,
/// version, directory checksum, frames inside the frame area.
pub fn parse_pack(pack: u64, bytes: &[u8]) -> Result<Vec<DirEntry>, PackError> {
    let corrupt = |reason: String| PackError::Corrupt { pack, reason };
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(corrupt(format!("only {} bytes long", bytes.len())));
    }
    if &bytes[..8] != PACK_MAGIC || &bytes[bytes.len() - 8..] != PACK_MAGIC {
        return Err(corrupt("bad magic".into()));
    }
    let version = bytes[8];
    if version != PACK_VERSION || bytes[bytes.len() - 9] != PACK_VERSION {
        return Err(corrupt(format!("unknown pack version {version}")));
    }
    let t = &bytes[bytes.len() - TRAILER_LEN..];
    let dir_offset = u64::from_be_bytes(t[..8].try_into().unwrap_or_default());
    let count = u32::from_be_bytes(t[8..12].try_into().unwrap_or_default()) as usize;
    let dir_end = (bytes.len() - TRAILER_LEN) as u64;
    if dir_offset < HEADER_LEN as u64
        || dir_offset > dir_end
        || (dir_end - dir_offset) as usize != count * DIR_ENTRY_LEN
    {
        return Err(corrupt(format!(
            "directory of {count} entries at {dir_offset} does not fit"
        )));
    }
    let dir = &bytes[dir_offset as usize..dir_end as usize];
    if blake3::hash(dir).as_bytes()[..16] != t[12..28] {
        return Err(corrupt("directory checksum mismatch".into()));
    }
    let mut out = Vec::with_capacity(count);
    for e in dir.chunks_exact(DIR_ENTRY_LEN) {
        let mut h = [0u8; 32];
        h.copy_from_slice(&e[..32]);
        let entry = DirEntry {
            hash: ChunkHash(h),
            offset: u64::from_be_bytes(e[32..40].try_into().unwrap_or_default()),
            len: u32::from_be_bytes(e[40..44].try_into().unwrap_or_default()),
            plain: u32::from_be_bytes(e[44..48].try_into().unwrap_or_default()),
        };
        if entry.offset < HEADER_LEN as u64 || entry.offset + entry.len as u64 > dir_offset {
            return Err(corrupt(format!(
                "frame of {} at {} lies outside the frame area",
                entry.hash.to_hex(),
                entry.offset
            )));
        }
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_catch_flips() {
        let data = vec![7u8; 10_000];
        let h = ChunkHash::of(&data);
        let f = Bytes::from(encode_frame(&data, true));
        assert!(f.len() < data.len(), "repetitive data compresses");
        assert_eq!(decode_frame(&h, &f, 65536).ok().as_deref(), Some(&data[..]));
        let mut bad = f.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(
            decode_frame(&h, &Bytes::from(bad), 65536).is_err(),
            "flipped bit detected"
        );
        let raw = Bytes::from(encode_frame(&data, false));
        assert_eq!(raw[1], CODEC_RAW);
        assert_eq!(
            decode_frame(&h, &raw, 65536).ok().as_deref(),
            Some(&data[..])
        );
    }

    #[test]
    fn packs_list_their_frames() -> Result<(), PackError> {
        let mut p = PackBuf::new(0);
        let a = encode_frame(b"alpha", true);
        let b = encode_frame(&[9u8; 5000], true);
        let oa = p.push(ChunkHash::of(b"alpha"), &a, 5);
        let ob = p.push(ChunkHash::of(&[9u8; 5000]), &b, 5000);
        let bytes = p.finish();
        let dir = parse_pack(3, &bytes)?;
        assert_eq!(dir.len(), 2);
        assert_eq!((dir[0].offset, dir[1].offset), (oa, ob));
        assert_eq!(&bytes[oa as usize..oa as usize + a.len()], &a[..]);
        let mut bad = bytes.to_vec();
        let i = bad.len() - TRAILER_LEN - 3;
        bad[i] ^= 1;
        assert!(parse_pack(3, &bad).is_err(), "directory damage detected");
        let loc = Location {
            pack: 3,
            offset: ob,
            len: b.len() as u32,
            plain: 5000,
        };
        assert_eq!(Location::decode(&loc.encode()), Some(loc));
        Ok(())
    }
}
