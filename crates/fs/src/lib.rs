//! The protocol-neutral `Filesystem` trait, its types and its errors.
//!
//! Owns: the contract every cairn filesystem view honours (the live dataset,
//! a read-only snapshot view), what each method does, when it is atomic, how
//! it pages, and what each error kind means (one-to-one with POSIX errno).
//! Also ships [`conformance`]: one suite of behaviours any implementation must
//! pass, run against the engine directly and through protocol front ends.
//!
//! Must never know: NFS or protobuf types, SlateDB, chunk hashes. Protocol
//! crates map to and from these types; storage crates implement them.

pub mod conformance;

use async_trait::async_trait;
use bytes::Bytes;

pub use cairn_codec::{FileKind, Timestamp};

/// An inode number: opaque, from a store-wide counter, never reused.
pub type InodeId = u64;

/// Longest entry name, in bytes.
pub const NAME_MAX: usize = 255;
/// Longest symlink target, in bytes.
pub const PATH_MAX: usize = 4096;
/// Largest file size, in bytes (4 PiB).
pub const MAX_FILE_SIZE: u64 = 1 << 52;
/// Most hard links one inode can have.
pub const LINK_MAX: u32 = 65_000;

/// What kind of failure, which says what the caller should do. Each kind maps
/// to exactly one POSIX errno ([`ErrorKind::errno`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The name does not exist (ENOENT).
    NotFound,
    /// The name already exists (EEXIST).
    Exists,
    /// A path component is not a directory (ENOTDIR).
    NotDir,
    /// The operation needs a non-directory (EISDIR).
    IsDir,
    /// The directory is not empty (ENOTEMPTY).
    NotEmpty,
    /// A name is longer than [`NAME_MAX`] or a target longer than [`PATH_MAX`] (ENAMETOOLONG).
    NameTooLong,
    /// An argument is invalid: bad name, `.`/`..` where not allowed, moving a
    /// directory into itself, readlink of a non-symlink (EINVAL).
    Invalid,
    /// Only the owner or root may do this (EPERM).
    Permission,
    /// The permission bits refuse this caller (EACCES).
    Access,
    /// The view is read-only (a snapshot) (EROFS).
    ReadOnly,
    /// The store is full (ENOSPC).
    NoSpace,
    /// The dataset is at its quota or refquota (EDQUOT); deleting or
    /// truncating files brings it back under.
    QuotaExceeded,
    /// The file would exceed [`MAX_FILE_SIZE`] (EFBIG).
    FileTooBig,
    /// Too many hard links (EMLINK).
    TooManyLinks,
    /// The inode no longer exists: the handle is stale (ESTALE).
    Stale,
    /// A readdir cookie or verifier is no longer valid (EINVAL; NFS BAD_COOKIE).
    BadCookie,
    /// A guarded setattr found a different ctime (EINVAL; NFS NOT_SYNC).
    NotSync,
    /// Not supported by this filesystem (EOPNOTSUPP).
    NotSupported,
    /// Refused because something depends on it: a snapshot with clones, a
    /// dataset with snapshots, the default dataset (EBUSY).
    Busy,
    /// The object store failed or is unreachable; retry later (EIO).
    Io,
    /// Stored data failed verification; nothing wrong was returned (EIO).
    Corrupt,
    /// The store refuses writes after a durability failure (EIO).
    Poisoned,
}

impl ErrorKind {
    /// The POSIX errno this kind stands for (Linux numbering).
    pub fn errno(self) -> i32 {
        match self {
            ErrorKind::NotFound => 2,
            ErrorKind::Exists => 17,
            ErrorKind::NotDir => 20,
            ErrorKind::IsDir => 21,
            ErrorKind::NotEmpty => 39,
            ErrorKind::NameTooLong => 36,
            ErrorKind::Invalid | ErrorKind::BadCookie | ErrorKind::NotSync => 22,
            ErrorKind::Permission => 1,
            ErrorKind::Access => 13,
            ErrorKind::ReadOnly => 30,
            ErrorKind::NoSpace => 28,
            ErrorKind::QuotaExceeded => 122,
            ErrorKind::FileTooBig => 27,
            ErrorKind::TooManyLinks => 31,
            ErrorKind::Stale => 116,
            ErrorKind::NotSupported => 95,
            ErrorKind::Busy => 16,
            ErrorKind::Io | ErrorKind::Corrupt | ErrorKind::Poisoned => 5,
        }
    }
}

/// A filesystem error: a kind to act on and a message naming the problem.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct FsError {
    /// What to do about it.
    pub kind: ErrorKind,
    /// Human-readable detail (not API).
    pub message: String,
}

impl FsError {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Result of filesystem operations.
pub type Result<T> = std::result::Result<T, FsError>;

/// The caller's credentials (AUTH_SYS style).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Creds {
    /// The superuser.
    pub fn root() -> Self {
        Self {
            uid: 0,
            gid: 0,
            groups: vec![],
        }
    }

    /// An ordinary user with no supplementary groups.
    pub fn user(uid: u32, gid: u32) -> Self {
        Self {
            uid,
            gid,
            groups: vec![],
        }
    }

    /// Whether the caller is in group `gid`.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// Attributes of an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: InodeId,
    /// Type.
    pub kind: FileKind,
    /// Permission bits with setuid/setgid/sticky (`0o7777`).
    pub mode: u16,
    /// Hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Logical size in bytes (symlinks: target length).
    pub size: u64,
    /// Bytes of storage the content occupies, before compression and
    /// dedup: for a regular file its non-hole chunks (holes cost nothing)
    /// or its inline bytes; a small fixed figure for directories and
    /// symlinks. What `du` and `st_blocks` report.
    pub used: u64,
    /// Device numbers for device nodes.
    pub rdev: (u32, u32),
    /// Last access.
    pub atime: Timestamp,
    /// Last content change.
    pub mtime: Timestamp,
    /// Last attribute change.
    pub ctime: Timestamp,
}

/// How to set a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetTime {
    /// Leave it.
    #[default]
    Keep,
    /// The server's current time.
    Now,
    /// This time.
    At(Timestamp),
}

/// Attribute changes; `None`/`Keep` fields are left alone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetAttr {
    /// New permission bits (`0o7777`).
    pub mode: Option<u16>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size: truncates or extends with zeros (regular files only).
    pub size: Option<u64>,
    /// New access time.
    pub atime: SetTime,
    /// New modification time.
    pub mtime: SetTime,
}

/// How `create` treats an existing name (NFSv3 createhow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateHow {
    /// Succeed on an existing regular file, applying the size in the attributes.
    Unchecked,
    /// Fail with `Exists` if the name exists.
    Guarded,
    /// Exclusive create with a verifier: a retransmitted create with the same
    /// verifier succeeds, any other existing name fails with `Exists`.
    Exclusive([u8; 8]),
}

/// The special-file kinds `mknod` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device (major, minor); root only.
    Char(u32, u32),
    /// Block device (major, minor); root only.
    Block(u32, u32),
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Entry name.
    pub name: Vec<u8>,
    /// Target inode.
    pub ino: InodeId,
    /// Target type.
    pub kind: FileKind,
    /// Cookie to resume the listing after this entry.
    pub cookie: u64,
}

/// One page of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirPage {
    /// Entries in cookie order (`.` and `..` are not listed).
    pub entries: Vec<DirEntry>,
    /// True when the listing has no more entries.
    pub eof: bool,
    /// Verifier to send back with the next page's cookie.
    pub verifier: u64,
}

/// Space and inode accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStat {
    /// Capacity in bytes.
    pub total_bytes: u64,
    /// Free bytes.
    pub free_bytes: u64,
    /// Bytes stored (after dedup and compression).
    pub used_bytes: u64,
    /// Inode capacity.
    pub total_files: u64,
    /// Free inodes.
    pub free_files: u64,
    /// Inodes in use.
    pub used_files: u64,
}

/// Static facts about a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsInfo {
    /// The root directory's inode.
    pub root: InodeId,
    /// Whether every write fails with `ReadOnly`.
    pub read_only: bool,
    /// Chunk size in bytes: the preferred read/write size.
    pub chunk_size: u32,
    /// Largest file size.
    pub max_file_size: u64,
}

/// Access bits for [`Filesystem::access`].
pub mod access {
    /// Read a file or list a directory.
    pub const READ: u32 = 4;
    /// Write a file or change a directory.
    pub const WRITE: u32 = 2;
    /// Execute a file or search a directory.
    pub const EXECUTE: u32 = 1;
}

/// A filesystem view: the live dataset or a read-only snapshot.
///
/// Every mutating method is atomic: it commits as one batch or not at all,
/// and a crash shows all of it or none of it. Mutations are ordered; a read
/// that starts after a mutation returns sees it. Nothing is durable until
/// [`Filesystem::commit`] returns (a barrier for every earlier mutation).
///
/// Errors: an inode id that no longer exists is `Stale`; a missing *name* is
/// `NotFound`. Names are raw bytes: empty, containing `/` or NUL is
/// `Invalid`, longer than [`NAME_MAX`] is `NameTooLong`. Permission checks
/// use `creds`; root bypasses read/write bits. Every mutation of a read-only
/// view fails with `ReadOnly` before anything else is checked.
#[async_trait]
pub trait Filesystem: Send + Sync {
    /// Static facts: root inode, read-only flag, preferred I/O size.
    fn info(&self) -> FsInfo;

    /// Attributes of `ino`. `Stale` if it does not exist.
    async fn getattr(&self, ino: InodeId) -> Result<Attr>;

    /// Look `name` up in `dir` (needs search permission). `.` is `dir`
    /// itself; `..` is its parent (the root's parent is the root).
    async fn lookup(&self, creds: &Creds, dir: InodeId, name: &[u8]) -> Result<Attr>;

    /// Which of the requested [`access`] bits `creds` holds on `ino`.
    async fn access(&self, creds: &Creds, ino: InodeId, mask: u32) -> Result<u32>;

    /// Change attributes. With `guard`, the change applies only if the
    /// inode's ctime equals it (else `NotSync`). Size changes need write permission;
    /// mode changes need ownership; owner changes need root; group changes
    /// need ownership and membership. Times: `Now` needs ownership or write
    /// permission, an explicit time needs ownership.
    async fn setattr(
        &self,
        creds: &Creds,
        ino: InodeId,
        attrs: &SetAttr,
        guard: Option<Timestamp>,
    ) -> Result<Attr>;

    /// Read up to `count` bytes at `offset`. Returns the bytes and whether
    /// the read reached end of file. Holes read as zeros. Needs read
    /// permission (the owner may always read: the protocol has no open).
    async fn read(
        &self,
        creds: &Creds,
        ino: InodeId,
        offset: u64,
        count: u32,
    ) -> Result<(Bytes, bool)>;

    /// The first run of stored data of regular file `ino` that ends after
    /// `offset`, clipped to start at it; `None` if only a hole remains up
    /// to end of file (lseek's `SEEK_DATA` and `SEEK_HOLE` in one call).
    /// Everything between `offset` and the run's start is a hole and reads
    /// as zeros. A run may end before the data does: ask again from its
    /// end. Needs what [`Filesystem::read`] needs. The default reports the
    /// whole rest of the file as data, which is always true, just not
    /// sparse.
    async fn next_data(
        &self,
        creds: &Creds,
        ino: InodeId,
        offset: u64,
    ) -> Result<Option<std::ops::Range<u64>>> {
        let a = self.getattr(ino).await?;
        // An empty read makes read's type and permission checks.
        self.read(creds, ino, offset.min(a.size), 0).await?;
        Ok((offset < a.size).then_some(offset..a.size))
    }

    /// Write `data` at `offset`, extending the file (with zeros before
    /// `offset` if it is past the end). Returns the new attributes. Needs
    /// write permission (the owner may always write). `FileTooBig` past
    /// [`MAX_FILE_SIZE`]. Not durable until [`Filesystem::commit`].
    async fn write(&self, creds: &Creds, ino: InodeId, offset: u64, data: &[u8]) -> Result<Attr>;

    /// Create a regular file. See [`CreateHow`] for existing names. `attrs`
    /// gives the mode (default `0o644`) and optionally a size.
    async fn create(
        &self,
        creds: &Creds,
        dir: InodeId,
        name: &[u8],
        how: CreateHow,
        attrs: &SetAttr,
    ) -> Result<Attr>;

    /// Create a directory (mode default `0o755`).
    async fn mkdir(
        &self,
        creds: &Creds,
        dir: InodeId,
        name: &[u8],
        attrs: &SetAttr,
    ) -> Result<Attr>;

    /// Create a special file. Device nodes need root (`Permission`).
    async fn mknod(
        &self,
        creds: &Creds,
        dir: InodeId,
        name: &[u8],
        kind: SpecialKind,
        attrs: &SetAttr,
    ) -> Result<Attr>;

    /// Create a symlink to `target` (1..=[`PATH_MAX`] bytes, stored as is).
    async fn symlink(
        &self,
        creds: &Creds,
        dir: InodeId,
        name: &[u8],
        target: &[u8],
        attrs: &SetAttr,
    ) -> Result<Attr>;

    /// A symlink's target. `Invalid` if `ino` is not a symlink.
    async fn readlink(&self, ino: InodeId) -> Result<Bytes>;

    /// Add a hard link `dir/name` to `ino`. Directories cannot be linked
    /// (`Permission`, as on Linux). `TooManyLinks` at [`LINK_MAX`].
    async fn link(&self, creds: &Creds, ino: InodeId, dir: InodeId, name: &[u8]) -> Result<Attr>;

    /// Remove a non-directory entry (`IsDir` for a directory). The inode and
    /// its data go when its last link goes.
    async fn remove(&self, creds: &Creds, dir: InodeId, name: &[u8]) -> Result<()>;

    /// Remove an empty directory (`NotEmpty`, `NotDir`).
    async fn rmdir(&self, creds: &Creds, dir: InodeId, name: &[u8]) -> Result<()>;

    /// Atomically rename `from_dir/from` to `to_dir/to`, replacing a
    /// non-directory target or an empty directory target. A directory cannot
    /// move into its own subtree (`Invalid`). Renaming a name onto itself, or
    /// onto another link of the same inode, does nothing.
    async fn rename(
        &self,
        creds: &Creds,
        from_dir: InodeId,
        from: &[u8],
        to_dir: InodeId,
        to: &[u8],
    ) -> Result<()>;

    /// List `dir` after `cookie` (0 starts), at most about `max_entries`
    /// entries (a page may hold a few more so entries sharing a cookie are
    /// never split). Cookies stay valid across changes to the directory and
    /// restarts; `verifier` must be 0 or the one a previous page returned
    /// (else `BadCookie`). Needs read permission.
    async fn readdir(
        &self,
        creds: &Creds,
        dir: InodeId,
        cookie: u64,
        verifier: u64,
        max_entries: usize,
    ) -> Result<DirPage>;

    /// Space and inode accounting for the whole store.
    async fn fsstat(&self) -> Result<FsStat>;

    /// Durability barrier: when it returns, every mutation that returned
    /// before it was called survives a crash.
    async fn commit(&self) -> Result<()>;
}
