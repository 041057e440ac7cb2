//! NFS file handles and file ids.
//!
//! A handle names a view (a dataset's live tree or one of its snapshots, by
//! its store-wide view id), an inode number and the store it belongs to:
//!
//! ```text
//! [version = 1][store id: u64][view id: u64][inode: u64]   (25 bytes, big-endian)
//! ```
//!
//! View ids and inode numbers are never reused, so a handle stays valid
//! across restarts for exactly as long as what it names exists; afterwards
//! it is stale. A handle from another store is stale too.
//!
//! File ids pack the view id above the inode number, `view << 40 | ino`, so
//! they never collide between views. Inode `2^40 - 1` is the virtual
//! `.snapshots` directory of a dataset view.

/// Handle format version.
pub const HANDLE_VERSION: u8 = 1;
/// Encoded handle length in bytes.
pub const HANDLE_LEN: usize = 25;
/// Bits of a file id that hold the inode number.
pub const INO_BITS: u32 = 40;
/// The virtual `.snapshots` directory's inode number in a dataset view.
pub const SNAPDIR_INO: u64 = (1 << INO_BITS) - 1;
/// Largest view id a file id can carry.
pub const MAX_VIEW: u64 = (1 << (64 - INO_BITS)) - 1;

/// A decoded file handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileHandle {
    /// The store's identity.
    pub store: u64,
    /// The view id (a dataset id or a snapshot's view id).
    pub view: u64,
    /// The inode number, or [`SNAPDIR_INO`].
    pub ino: u64,
}

/// Why bytes are not a handle this server makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHandle {
    /// Wrong length.
    Length(usize),
    /// Unknown format version.
    Version(u8),
    /// View id or inode number out of range.
    Range,
}

impl FileHandle {
    /// Encode.
    pub fn encode(&self) -> [u8; HANDLE_LEN] {
        let mut out = [0u8; HANDLE_LEN];
        out[0] = HANDLE_VERSION;
        out[1..9].copy_from_slice(&self.store.to_be_bytes());
        out[9..17].copy_from_slice(&self.view.to_be_bytes());
        out[17..25].copy_from_slice(&self.ino.to_be_bytes());
        out
    }

    /// Decode untrusted bytes. Never panics.
    pub fn decode(b: &[u8]) -> Result<Self, BadHandle> {
        let b: &[u8; HANDLE_LEN] = b.try_into().map_err(|_| BadHandle::Length(b.len()))?;
        if b[0] != HANDLE_VERSION {
            return Err(BadHandle::Version(b[0]));
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(w)
        };
        let h = Self {
            store: word(1),
            view: word(9),
            ino: word(17),
        };
        if h.view == 0 || h.view > MAX_VIEW || h.ino == 0 || h.ino > SNAPDIR_INO {
            return Err(BadHandle::Range);
        }
        Ok(h)
    }

    /// The file id clients see.
    pub fn fileid(&self) -> u64 {
        fileid(self.view, self.ino)
    }
}

/// The file id of inode `ino` in view `view`.
pub fn fileid(view: u64, ino: u64) -> u64 {
    (view << INO_BITS) | (ino & SNAPDIR_INO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let h = FileHandle {
            store: 0xdead_beef,
            view: 3,
            ino: 77,
        };
        assert_eq!(FileHandle::decode(&h.encode()), Ok(h));
        assert_eq!(FileHandle::decode(&[]), Err(BadHandle::Length(0)));
        let mut bad = h.encode();
        bad[0] = 9;
        assert_eq!(FileHandle::decode(&bad), Err(BadHandle::Version(9)));
        let zero_view = FileHandle { view: 0, ..h };
        assert_eq!(
            FileHandle::decode(&zero_view.encode()),
            Err(BadHandle::Range)
        );
        assert_eq!(h.fileid(), (3 << 40) | 77);
        assert_ne!(
            fileid(3, 77),
            fileid(4, 77),
            "same inode in two views differs"
        );
    }
}
