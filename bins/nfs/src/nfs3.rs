//! The 22 NFSv3 procedures (RFC 1813), each mapped onto the `Filesystem`
//! trait, plus the virtual `.snapshots` directories.

use cairn_engine::ROOT_INO;
use cairn_fs::{
    Attr, CreateHow, Creds, ErrorKind, FileKind, Filesystem, FsError, LINK_MAX, MAX_FILE_SIZE,
    NAME_MAX, SetAttr, SetTime, SpecialKind, Timestamp, access,
};
use nfs3_types::nfs3::*;
use nfs3_types::rpc::accept_stat_data;
use nfs3_types::xdr_codec::{List, Opaque, Pack, Void};

use crate::handle::{FileHandle, SNAPDIR_INO, fileid};
use crate::rpc::{Body, Call, pack, unpack};
use crate::server::State;
use crate::views::{Node, SNAPDIR_NAME};

/// Largest READ or WRITE payload, in bytes (FSINFO rtmax/wtmax).
pub const MAX_IO_BYTES: u32 = 1 << 20;
/// Preferred READDIR reply size, in bytes (FSINFO dtpref).
pub const DIR_PREF_BYTES: u32 = 64 * 1024;
/// Most entries read from the store for one READDIR(PLUS) reply.
pub const MAX_DIR_ENTRIES: usize = 4096;
/// The cookie of the `.snapshots` entry listed last in a dataset root.
const SNAPDIR_COOKIE: u64 = u64::MAX;

type NfsResult<T> = Result<T, nfsstat3>;

/// The nfsstat3 for an engine error.
pub fn status(e: &FsError) -> nfsstat3 {
    use nfsstat3::*;
    match e.kind {
        ErrorKind::NotFound => NFS3ERR_NOENT,
        ErrorKind::Exists => NFS3ERR_EXIST,
        ErrorKind::NotDir => NFS3ERR_NOTDIR,
        ErrorKind::IsDir => NFS3ERR_ISDIR,
        ErrorKind::NotEmpty => NFS3ERR_NOTEMPTY,
        ErrorKind::NameTooLong => NFS3ERR_NAMETOOLONG,
        ErrorKind::Invalid => NFS3ERR_INVAL,
        ErrorKind::Permission => NFS3ERR_PERM,
        ErrorKind::Access => NFS3ERR_ACCES,
        ErrorKind::ReadOnly => NFS3ERR_ROFS,
        ErrorKind::NoSpace => NFS3ERR_NOSPC,
        ErrorKind::QuotaExceeded => NFS3ERR_DQUOT,
        ErrorKind::FileTooBig => NFS3ERR_FBIG,
        ErrorKind::TooManyLinks => NFS3ERR_MLINK,
        ErrorKind::Stale => NFS3ERR_STALE,
        ErrorKind::BadCookie => NFS3ERR_BAD_COOKIE,
        ErrorKind::NotSync => NFS3ERR_NOT_SYNC,
        ErrorKind::NotSupported => NFS3ERR_NOTSUPP,
        // Like ext4 with errors=remount-ro: after a failure it cannot vouch
        // for, the store refuses writes until a restart.
        ErrorKind::Poisoned => NFS3ERR_ROFS,
        ErrorKind::Busy | ErrorKind::Io | ErrorKind::Corrupt => NFS3ERR_IO,
    }
}

fn ftype(k: FileKind) -> ftype3 {
    match k {
        FileKind::Regular => ftype3::NF3REG,
        FileKind::Directory => ftype3::NF3DIR,
        FileKind::Symlink => ftype3::NF3LNK,
        FileKind::Fifo => ftype3::NF3FIFO,
        FileKind::Socket => ftype3::NF3SOCK,
        FileKind::CharDevice => ftype3::NF3CHR,
        FileKind::BlockDevice => ftype3::NF3BLK,
    }
}

fn time(t: Timestamp) -> nfstime3 {
    nfstime3 {
        seconds: t.sec.clamp(0, u32::MAX as i64) as u32,
        nseconds: t.nsec,
    }
}

fn stamp(t: nfstime3) -> Timestamp {
    Timestamp {
        sec: t.seconds as i64,
        nsec: t.nseconds.min(999_999_999),
    }
}

/// Attributes as NFS sees them: the fsid is the view id, the file id packs
/// the view id and the inode.
pub fn fattr(view: u64, a: &Attr) -> fattr3 {
    fattr3 {
        type_: ftype(a.kind),
        mode: a.mode as u32 & 0o7777,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        used: a.used,
        rdev: specdata3 {
            specdata1: a.rdev.0,
            specdata2: a.rdev.1,
        },
        fsid: view,
        fileid: fileid(view, a.ino),
        atime: time(a.atime),
        mtime: time(a.mtime),
        ctime: time(a.ctime),
    }
}

fn set_attr(s: &sattr3) -> SetAttr {
    let opt = |o: &Nfs3Option<u32>| match o {
        Nfs3Option::Some(v) => Some(*v),
        Nfs3Option::None => None,
    };
    SetAttr {
        mode: opt(&s.mode).map(|m| (m & 0o7777) as u16),
        uid: opt(&s.uid),
        gid: opt(&s.gid),
        size: match s.size {
            Nfs3Option::Some(v) => Some(v),
            Nfs3Option::None => None,
        },
        atime: match s.atime {
            set_atime::DONT_CHANGE => SetTime::Keep,
            set_atime::SET_TO_SERVER_TIME => SetTime::Now,
            set_atime::SET_TO_CLIENT_TIME(t) => SetTime::At(stamp(t)),
        },
        mtime: match s.mtime {
            set_mtime::DONT_CHANGE => SetTime::Keep,
            set_mtime::SET_TO_SERVER_TIME => SetTime::Now,
            set_mtime::SET_TO_CLIENT_TIME(t) => SetTime::At(stamp(t)),
        },
    }
}

fn wcc(after: post_op_attr) -> wcc_data {
    wcc_data {
        before: Nfs3Option::None,
        after,
    }
}

/// Result helper: the reply body of an `Nfs3Result`.
fn reply<T: Pack, E: Pack>(r: Nfs3Result<T, E>) -> Vec<u8> {
    pack(&r)
}

/// A successful READ result whose data follows the packed header
/// uncopied: packed with an empty opaque, whose length word (the last word
/// of the result) is then set to the data's length.
fn read_ok(file_attributes: post_op_attr, eof: bool, data: bytes::Bytes) -> Body {
    let mut packed = reply::<_, READ3resfail>(Nfs3Result::Ok(READ3resok {
        file_attributes,
        count: data.len() as u32,
        eof,
        data: Opaque::borrowed(&[]),
    }));
    let at = packed.len() - 4;
    packed[at..].copy_from_slice(&(data.len() as u32).to_be_bytes());
    Body { packed, data }
}

/// One entry of a directory listing before it is encoded.
struct Item {
    name: Vec<u8>,
    cookie: u64,
    node: Node,
}

impl State {
    fn fh(&self, node: &Node) -> nfs_fh3 {
        nfs_fh3 {
            data: Opaque::owned(
                FileHandle {
                    store: self.store_id,
                    view: node.view.id,
                    ino: node.ino,
                }
                .encode()
                .to_vec(),
            ),
        }
    }

    /// What a handle names.
    async fn node(&self, fh: &nfs_fh3) -> NfsResult<Node> {
        let h = FileHandle::decode(fh.data.as_ref()).map_err(|_| nfsstat3::NFS3ERR_BADHANDLE)?;
        if h.store != self.store_id {
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        let view = self.views.get(h.view).await.map_err(|e| self.fail(&e))?;
        if h.ino == SNAPDIR_INO && view.is_snapshot() {
            return Err(nfsstat3::NFS3ERR_BADHANDLE);
        }
        Ok(Node { view, ino: h.ino })
    }

    /// RFC 1813 makes every modifying procedure but an UNSTABLE WRITE
    /// synchronous: after a success, make it durable before the reply (as
    /// knfsd's default `sync` export does).
    async fn synced<T>(&self, n: &Node, r: Result<T, nfsstat3>) -> Result<T, nfsstat3> {
        let v = r?;
        n.view.fs.commit().await.map_err(|e| self.fail(&e))?;
        Ok(v)
    }

    /// Log an engine error by its severity and turn it into a status.
    pub(crate) fn fail(&self, e: &FsError) -> nfsstat3 {
        match e.kind {
            ErrorKind::Io
            | ErrorKind::Corrupt
            | ErrorKind::Poisoned
            | ErrorKind::Busy
            | ErrorKind::NoSpace
            | ErrorKind::QuotaExceeded => {
                tracing::warn!(kind = ?e.kind, error = %e, "NFS request failed");
            }
            _ => tracing::debug!(kind = ?e.kind, error = %e, "NFS request refused"),
        }
        status(e)
    }

    /// Attributes of a node.
    async fn attr(&self, n: &Node) -> Result<fattr3, FsError> {
        if n.is_snapdir() {
            let root = n.view.fs.getattr(ROOT_INO).await?;
            let now = time(Timestamp::now());
            return Ok(fattr3 {
                type_: ftype3::NF3DIR,
                mode: 0o555,
                nlink: 2,
                uid: 0,
                gid: 0,
                size: 4096,
                used: 0,
                rdev: specdata3::default(),
                fsid: n.view.id,
                fileid: fileid(n.view.id, SNAPDIR_INO),
                // Snapshots come and go without touching the dataset: "now"
                // makes clients revalidate their listing of this directory.
                atime: time(root.atime),
                mtime: now,
                ctime: now,
            });
        }
        let a = n.view.fs.getattr(n.ino).await?;
        Ok(fattr(n.view.id, &a))
    }

    async fn post(&self, n: &Node) -> post_op_attr {
        match self.attr(n).await {
            Ok(a) => Nfs3Option::Some(a),
            Err(_) => Nfs3Option::None,
        }
    }

    /// Refuse writes into virtual directories and snapshots up front.
    fn writable(&self, dir: &Node) -> NfsResult<()> {
        if dir.is_snapdir() || dir.view.is_snapshot() {
            return Err(nfsstat3::NFS3ERR_ROFS);
        }
        Ok(())
    }

    /// A new name in `dir` must not shadow `.snapshots`.
    fn new_name(&self, dir: &Node, name: &[u8]) -> NfsResult<()> {
        self.writable(dir)?;
        if dir.is_dataset_root() && name == SNAPDIR_NAME {
            return Err(nfsstat3::NFS3ERR_EXIST);
        }
        Ok(())
    }

    /// An existing name in `dir` that a call removes or moves.
    fn old_name(&self, dir: &Node, name: &[u8]) -> NfsResult<()> {
        self.writable(dir)?;
        if dir.is_dataset_root() && name == SNAPDIR_NAME {
            return Err(nfsstat3::NFS3ERR_ROFS);
        }
        Ok(())
    }

    /// Serve one NFSv3 call; `Err` is an RPC-level failure.
    pub(crate) async fn nfs(&self, call: &Call, args: &[u8]) -> Result<Body, accept_stat_data> {
        let c = &call.creds;
        macro_rules! args {
            ($t:ty) => {
                unpack::<$t>(args).ok_or(accept_stat_data::GARBAGE_ARGS)?
            };
        }
        Ok(match call.proc_ {
            0 => pack(&Void).into(),
            1 => self.getattr(args!(GETATTR3args)).await.into(),
            2 => self.setattr(c, args!(SETATTR3args)).await.into(),
            3 => self.lookup(c, args!(LOOKUP3args)).await.into(),
            4 => self.access(c, args!(ACCESS3args)).await.into(),
            5 => self.readlink(args!(READLINK3args)).await.into(),
            6 => self.read(c, args!(READ3args)).await,
            7 => self.write(c, args!(WRITE3args)).await.into(),
            8 => self.create(c, args!(CREATE3args)).await.into(),
            9 => self.mkdir(c, args!(MKDIR3args)).await.into(),
            10 => self.symlink(c, args!(SYMLINK3args)).await.into(),
            11 => self.mknod(c, args!(MKNOD3args)).await.into(),
            12 => self.remove(c, args!(REMOVE3args)).await.into(),
            13 => self.rmdir(c, args!(RMDIR3args)).await.into(),
            14 => self.rename(c, args!(RENAME3args)).await.into(),
            15 => self.link(c, args!(LINK3args)).await.into(),
            16 => self.readdir(c, args!(READDIR3args)).await.into(),
            17 => self.readdirplus(c, args!(READDIRPLUS3args)).await.into(),
            18 => self.fsstat(args!(FSSTAT3args)).await.into(),
            19 => self.fsinfo(args!(FSINFO3args)).await.into(),
            20 => self.pathconf(args!(PATHCONF3args)).await.into(),
            21 => self.commit(args!(COMMIT3args)).await.into(),
            _ => return Err(accept_stat_data::PROC_UNAVAIL),
        })
    }

    async fn getattr(&self, a: GETATTR3args) -> Vec<u8> {
        let r = async {
            let n = self.node(&a.object).await?;
            self.attr(&n).await.map_err(|e| self.fail(&e))
        }
        .await;
        reply::<GETATTR3resok, Void>(match r {
            Ok(obj_attributes) => Nfs3Result::Ok(GETATTR3resok { obj_attributes }),
            Err(s) => Nfs3Result::Err((s, Void)),
        })
    }

    async fn setattr(&self, c: &Creds, a: SETATTR3args) -> Vec<u8> {
        let n = match self.node(&a.object).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<SETATTR3resok, _>(Nfs3Result::Err((s, SETATTR3resfail::default())));
            }
        };
        let r = async {
            self.writable(&n)?;
            let guard = match a.guard {
                Nfs3Option::Some(t) => Some(stamp(t)),
                Nfs3Option::None => None,
            };
            n.view
                .fs
                .setattr(c, n.ino, &set_attr(&a.new_attributes), guard)
                .await
                .map_err(|e| self.fail(&e))
        }
        .await;
        let r = self.synced(&n, r).await;
        match r {
            Ok(attr) => reply::<_, SETATTR3resfail>(Nfs3Result::Ok(SETATTR3resok {
                obj_wcc: wcc(Nfs3Option::Some(fattr(n.view.id, &attr))),
            })),
            Err(s) => {
                let obj_wcc = wcc(self.post(&n).await);
                reply::<SETATTR3resok, _>(Nfs3Result::Err((s, SETATTR3resfail { obj_wcc })))
            }
        }
    }

    async fn lookup(&self, c: &Creds, a: LOOKUP3args<'_>) -> Vec<u8> {
        let dir = match self.node(&a.what.dir).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<LOOKUP3resok, _>(Nfs3Result::Err((s, LOOKUP3resfail::default())));
            }
        };
        let r = self.views.lookup(c, &dir, a.what.name.as_ref()).await;
        let dir_attributes = self.post(&dir).await;
        match r {
            Ok(n) => {
                let obj_attributes = self.post(&n).await;
                reply::<_, LOOKUP3resfail>(Nfs3Result::Ok(LOOKUP3resok {
                    object: self.fh(&n),
                    obj_attributes,
                    dir_attributes,
                }))
            }
            Err(e) => reply::<LOOKUP3resok, _>(Nfs3Result::Err((
                self.fail(&e),
                LOOKUP3resfail { dir_attributes },
            ))),
        }
    }

    async fn access(&self, c: &Creds, a: ACCESS3args) -> Vec<u8> {
        let n = match self.node(&a.object).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<ACCESS3resok, _>(Nfs3Result::Err((s, ACCESS3resfail::default())));
            }
        };
        let granted = if n.is_snapdir() {
            Ok(ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_EXECUTE)
        } else {
            n.view
                .fs
                .access(c, n.ino, access::READ | access::WRITE | access::EXECUTE)
                .await
                .map(|g| {
                    let mut out = 0;
                    if g & access::READ != 0 {
                        out |= ACCESS3_READ;
                    }
                    if g & access::WRITE != 0 {
                        out |= ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;
                    }
                    if g & access::EXECUTE != 0 {
                        out |= ACCESS3_LOOKUP | ACCESS3_EXECUTE;
                    }
                    out
                })
        };
        let obj_attributes = self.post(&n).await;
        match granted {
            Ok(g) => reply::<_, ACCESS3resfail>(Nfs3Result::Ok(ACCESS3resok {
                obj_attributes,
                access: g & a.access,
            })),
            Err(e) => reply::<ACCESS3resok, _>(Nfs3Result::Err((
                self.fail(&e),
                ACCESS3resfail { obj_attributes },
            ))),
        }
    }

    async fn readlink(&self, a: READLINK3args) -> Vec<u8> {
        let r = async {
            let n = self.node(&a.symlink).await?;
            if n.is_snapdir() {
                return Err(nfsstat3::NFS3ERR_INVAL);
            }
            let target = n.view.fs.readlink(n.ino).await.map_err(|e| self.fail(&e))?;
            Ok((self.post(&n).await, target))
        }
        .await;
        match r {
            Ok((symlink_attributes, target)) => {
                reply::<_, READLINK3resfail>(Nfs3Result::Ok(READLINK3resok {
                    symlink_attributes,
                    data: nfspath3(Opaque::borrowed(&target)),
                }))
            }
            Err(s) => reply::<READLINK3resok, _>(Nfs3Result::Err((s, READLINK3resfail::default()))),
        }
    }

    async fn read(&self, c: &Creds, a: READ3args) -> Body {
        let n = match self.node(&a.file).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<READ3resok, _>(Nfs3Result::Err((s, READ3resfail::default())))
                    .into();
            }
        };
        if n.is_snapdir() {
            return reply::<READ3resok, _>(Nfs3Result::Err((
                nfsstat3::NFS3ERR_ISDIR,
                READ3resfail::default(),
            )))
            .into();
        }
        let count = a.count.min(MAX_IO_BYTES);
        match n.view.fs.read(c, n.ino, a.offset, count).await {
            Ok((data, eof)) => {
                let file_attributes = self.post(&n).await;
                read_ok(file_attributes, eof, data)
            }
            Err(e) => {
                let file_attributes = self.post(&n).await;
                reply::<READ3resok, _>(Nfs3Result::Err((
                    self.fail(&e),
                    READ3resfail { file_attributes },
                )))
                .into()
            }
        }
    }

    async fn write(&self, c: &Creds, a: WRITE3args<'_>) -> Vec<u8> {
        let n = match self.node(&a.file).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<WRITE3resok, _>(Nfs3Result::Err((s, WRITE3resfail::default())));
            }
        };
        let data: &[u8] = a.data.as_ref();
        let len = (a.count as usize).min(data.len());
        let r = async {
            self.writable(&n)?;
            if n.is_snapdir() {
                return Err(nfsstat3::NFS3ERR_ISDIR);
            }
            let attr = n
                .view
                .fs
                .write(c, n.ino, a.offset, &data[..len])
                .await
                .map_err(|e| self.fail(&e))?;
            let committed = if a.stable == stable_how::UNSTABLE {
                stable_how::UNSTABLE
            } else {
                n.view.fs.commit().await.map_err(|e| self.fail(&e))?;
                stable_how::FILE_SYNC
            };
            Ok((attr, committed))
        }
        .await;
        match r {
            Ok((attr, committed)) => reply::<_, WRITE3resfail>(Nfs3Result::Ok(WRITE3resok {
                file_wcc: wcc(Nfs3Option::Some(fattr(n.view.id, &attr))),
                count: len as u32,
                committed,
                verf: writeverf3(self.write_verf),
            })),
            Err(s) => {
                let file_wcc = wcc(self.post(&n).await);
                reply::<WRITE3resok, _>(Nfs3Result::Err((s, WRITE3resfail { file_wcc })))
            }
        }
    }

    /// Shared tail of CREATE, MKDIR, SYMLINK and MKNOD.
    async fn made(
        &self,
        dir: &Node,
        r: Result<Attr, nfsstat3>,
    ) -> Result<(post_op_fh3, post_op_attr, wcc_data), (nfsstat3, wcc_data)> {
        let dir_wcc = wcc(self.post(dir).await);
        match r {
            Ok(attr) => {
                let node = Node {
                    view: dir.view.clone(),
                    ino: attr.ino,
                };
                Ok((
                    Nfs3Option::Some(self.fh(&node)),
                    Nfs3Option::Some(fattr(dir.view.id, &attr)),
                    dir_wcc,
                ))
            }
            Err(s) => Err((s, dir_wcc)),
        }
    }

    async fn create(&self, c: &Creds, a: CREATE3args<'_>) -> Vec<u8> {
        let dir = match self.node(&a.where_.dir).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<CREATE3resok, _>(Nfs3Result::Err((s, CREATE3resfail::default())));
            }
        };
        let name = a.where_.name.as_ref();
        let r = async {
            self.new_name(&dir, name)?;
            let (how, attrs) = match &a.how {
                createhow3::UNCHECKED(s) => (CreateHow::Unchecked, set_attr(s)),
                createhow3::GUARDED(s) => (CreateHow::Guarded, set_attr(s)),
                createhow3::EXCLUSIVE(v) => (CreateHow::Exclusive(v.0), SetAttr::default()),
            };
            dir.view
                .fs
                .create(c, dir.ino, name, how, &attrs)
                .await
                .map_err(|e| self.fail(&e))
        }
        .await;
        let r = self.synced(&dir, r).await;
        match self.made(&dir, r).await {
            Ok((obj, obj_attributes, dir_wcc)) => {
                reply::<_, CREATE3resfail>(Nfs3Result::Ok(CREATE3resok {
                    obj,
                    obj_attributes,
                    dir_wcc,
                }))
            }
            Err((s, dir_wcc)) => {
                reply::<CREATE3resok, _>(Nfs3Result::Err((s, CREATE3resfail { dir_wcc })))
            }
        }
    }

    async fn mkdir(&self, c: &Creds, a: MKDIR3args<'_>) -> Vec<u8> {
        let dir = match self.node(&a.where_.dir).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<MKDIR3resok, _>(Nfs3Result::Err((s, MKDIR3resfail::default())));
            }
        };
        let name = a.where_.name.as_ref();
        let r = async {
            self.new_name(&dir, name)?;
            dir.view
                .fs
                .mkdir(c, dir.ino, name, &set_attr(&a.attributes))
                .await
                .map_err(|e| self.fail(&e))
        }
        .await;
        let r = self.synced(&dir, r).await;
        match self.made(&dir, r).await {
            Ok((obj, obj_attributes, dir_wcc)) => {
                reply::<_, MKDIR3resfail>(Nfs3Result::Ok(MKDIR3resok {
                    obj,
                    obj_attributes,
                    dir_wcc,
                }))
            }
            Err((s, dir_wcc)) => {
                reply::<MKDIR3resok, _>(Nfs3Result::Err((s, MKDIR3resfail { dir_wcc })))
            }
        }
    }

    async fn symlink(&self, c: &Creds, a: SYMLINK3args<'_>) -> Vec<u8> {
        let dir = match self.node(&a.where_.dir).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<SYMLINK3resok, _>(Nfs3Result::Err((s, SYMLINK3resfail::default())));
            }
        };
        let name = a.where_.name.as_ref();
        let r = async {
            self.new_name(&dir, name)?;
            dir.view
                .fs
                .symlink(
                    c,
                    dir.ino,
                    name,
                    a.symlink.symlink_data.as_ref(),
                    &set_attr(&a.symlink.symlink_attributes),
                )
                .await
                .map_err(|e| self.fail(&e))
        }
        .await;
        let r = self.synced(&dir, r).await;
        match self.made(&dir, r).await {
            Ok((obj, obj_attributes, dir_wcc)) => {
                reply::<_, SYMLINK3resfail>(Nfs3Result::Ok(SYMLINK3resok {
                    obj,
                    obj_attributes,
                    dir_wcc,
                }))
            }
            Err((s, dir_wcc)) => {
                reply::<SYMLINK3resok, _>(Nfs3Result::Err((s, SYMLINK3resfail { dir_wcc })))
            }
        }
    }

    async fn mknod(&self, c: &Creds, a: MKNOD3args<'_>) -> Vec<u8> {
        let dir = match self.node(&a.where_.dir).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<MKNOD3resok, _>(Nfs3Result::Err((
                    s,
                    MKNOD3resfail {
                        dir_wcc: wcc_data::default(),
                    },
                )));
            }
        };
        let name = a.where_.name.as_ref();
        let r = async {
            self.new_name(&dir, name)?;
            let (kind, attrs) = match &a.what {
                mknoddata3::NF3CHR(d) => (
                    SpecialKind::Char(d.spec.specdata1, d.spec.specdata2),
                    set_attr(&d.dev_attributes),
                ),
                mknoddata3::NF3BLK(d) => (
                    SpecialKind::Block(d.spec.specdata1, d.spec.specdata2),
                    set_attr(&d.dev_attributes),
                ),
                mknoddata3::NF3SOCK(s) => (SpecialKind::Socket, set_attr(s)),
                mknoddata3::NF3FIFO(s) => (SpecialKind::Fifo, set_attr(s)),
                mknoddata3::default => return Err(nfsstat3::NFS3ERR_BADTYPE),
            };
            dir.view
                .fs
                .mknod(c, dir.ino, name, kind, &attrs)
                .await
                .map_err(|e| self.fail(&e))
        }
        .await;
        let r = self.synced(&dir, r).await;
        match self.made(&dir, r).await {
            Ok((obj, obj_attributes, dir_wcc)) => {
                reply::<_, MKNOD3resfail>(Nfs3Result::Ok(MKNOD3resok {
                    obj,
                    obj_attributes,
                    dir_wcc,
                }))
            }
            Err((s, dir_wcc)) => {
                reply::<MKNOD3resok, _>(Nfs3Result::Err((s, MKNOD3resfail { dir_wcc })))
            }
        }
    }

    async fn remove(&self, c: &Creds, a: REMOVE3args<'_>) -> Vec<u8> {
        let dir = match self.node(&a.object.dir).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<REMOVE3resok, _>(Nfs3Result::Err((s, REMOVE3resfail::default())));
            }
        };
        let name = a.object.name.as_ref();
        let r = async {
            self.old_name(&dir, name)?;
            dir.view
                .fs
                .remove(c, dir.ino, name)
                .await
                .map_err(|e| self.fail(&e))
        }
        .await;
        let r = self.synced(&dir, r).await;
        let dir_wcc = wcc(self.post(&dir).await);
        match r {
            Ok(()) => reply::<_, REMOVE3resfail>(Nfs3Result::Ok(REMOVE3resok { dir_wcc })),
            Err(s) => reply::<REMOVE3resok, _>(Nfs3Result::Err((s, REMOVE3resfail { dir_wcc }))),
        }
    }

    async fn rmdir(&self, c: &Creds, a: RMDIR3args<'_>) -> Vec<u8> {
        let dir = match self.node(&a.object.dir).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<RMDIR3resok, _>(Nfs3Result::Err((
                    s,
                    RMDIR3resfail {
                        dir_wcc: wcc_data::default(),
                    },
                )));
            }
        };
        let name = a.object.name.as_ref();
        let r = async {
            self.old_name(&dir, name)?;
            dir.view
                .fs
                .rmdir(c, dir.ino, name)
                .await
                .map_err(|e| self.fail(&e))
        }
        .await;
        let r = self.synced(&dir, r).await;
        let dir_wcc = wcc(self.post(&dir).await);
        match r {
            Ok(()) => reply::<_, RMDIR3resfail>(Nfs3Result::Ok(RMDIR3resok { dir_wcc })),
            Err(s) => reply::<RMDIR3resok, _>(Nfs3Result::Err((s, RMDIR3resfail { dir_wcc }))),
        }
    }

    async fn rename(&self, c: &Creds, a: RENAME3args<'_, '_>) -> Vec<u8> {
        let (from, to) = match (self.node(&a.from.dir).await, self.node(&a.to.dir).await) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(s), _) | (_, Err(s)) => {
                return reply::<RENAME3resok, _>(Nfs3Result::Err((s, RENAME3resfail::default())));
            }
        };
        let (fname, tname) = (a.from.name.as_ref(), a.to.name.as_ref());
        let r = async {
            self.old_name(&from, fname)?;
            self.new_name(&to, tname)?;
            if from.view.id != to.view.id {
                return Err(nfsstat3::NFS3ERR_XDEV);
            }
            from.view
                .fs
                .rename(c, from.ino, fname, to.ino, tname)
                .await
                .map_err(|e| self.fail(&e))
        }
        .await;
        let r = self.synced(&from, r).await;
        let fromdir_wcc = wcc(self.post(&from).await);
        let todir_wcc = wcc(self.post(&to).await);
        match r {
            Ok(()) => reply::<_, RENAME3resfail>(Nfs3Result::Ok(RENAME3resok {
                fromdir_wcc,
                todir_wcc,
            })),
            Err(s) => reply::<RENAME3resok, _>(Nfs3Result::Err((
                s,
                RENAME3resfail {
                    fromdir_wcc,
                    todir_wcc,
                },
            ))),
        }
    }

    async fn link(&self, c: &Creds, a: LINK3args<'_>) -> Vec<u8> {
        let (file, dir) = match (self.node(&a.file).await, self.node(&a.link.dir).await) {
            (Ok(f), Ok(d)) => (f, d),
            (Err(s), _) | (_, Err(s)) => {
                return reply::<LINK3resok, _>(Nfs3Result::Err((
                    s,
                    LINK3resfail {
                        file_attributes: Nfs3Option::None,
                        linkdir_wcc: wcc_data::default(),
                    },
                )));
            }
        };
        let name = a.link.name.as_ref();
        let r = async {
            self.new_name(&dir, name)?;
            if file.is_snapdir() {
                return Err(nfsstat3::NFS3ERR_ROFS);
            }
            if file.view.id != dir.view.id {
                return Err(nfsstat3::NFS3ERR_XDEV);
            }
            dir.view
                .fs
                .link(c, file.ino, dir.ino, name)
                .await
                .map_err(|e| self.fail(&e))
        }
        .await;
        let r = self.synced(&dir, r).await;
        let file_attributes = self.post(&file).await;
        let linkdir_wcc = wcc(self.post(&dir).await);
        match r {
            Ok(_) => reply::<_, LINK3resfail>(Nfs3Result::Ok(LINK3resok {
                file_attributes,
                linkdir_wcc,
            })),
            Err(s) => reply::<LINK3resok, _>(Nfs3Result::Err((
                s,
                LINK3resfail {
                    file_attributes,
                    linkdir_wcc,
                },
            ))),
        }
    }

    /// Up to about `want` entries of `dir` after `cookie`, with `.` and `..`
    /// first and `.snapshots` last where it is listed; whether that is all,
    /// and the cookie verifier.
    async fn list(
        &self,
        c: &Creds,
        dir: &Node,
        cookie: u64,
        verf: u64,
        want: usize,
    ) -> Result<(Vec<Item>, bool, u64), FsError> {
        let mut items = Vec::new();
        if dir.is_snapdir() {
            if cookie < 1 {
                items.push(Item {
                    name: b".".to_vec(),
                    cookie: 1,
                    node: dir.clone(),
                });
            }
            if cookie < 2 {
                items.push(Item {
                    name: b"..".to_vec(),
                    cookie: 2,
                    node: Node {
                        view: dir.view.clone(),
                        ino: ROOT_INO,
                    },
                });
            }
            let snaps = self.views.snapshots(&dir.view).await?;
            let mut rest = snaps
                .into_iter()
                .filter(|(_, id)| id + 3 > cookie)
                .peekable();
            while items.len() < want.max(3) {
                let Some((name, id)) = rest.next() else { break };
                items.push(Item {
                    name: name.into_bytes(),
                    cookie: id + 3,
                    node: Node {
                        view: self.views.get(id).await?,
                        ino: ROOT_INO,
                    },
                });
            }
            return Ok((items, rest.peek().is_none(), 0));
        }
        if cookie == SNAPDIR_COOKIE {
            return Ok((items, true, verf));
        }
        let (from, verf) = if cookie <= 2 { (0, 0) } else { (cookie, verf) };
        let page = dir.view.fs.readdir(c, dir.ino, from, verf, want).await?;
        if cookie < 1 {
            items.push(Item {
                name: b".".to_vec(),
                cookie: 1,
                node: dir.clone(),
            });
        }
        if cookie < 2 {
            let parent = self.views.lookup(c, dir, b"..").await?;
            items.push(Item {
                name: b"..".to_vec(),
                cookie: 2,
                node: parent,
            });
        }
        for e in page.entries {
            items.push(Item {
                name: e.name,
                cookie: e.cookie,
                node: Node {
                    view: dir.view.clone(),
                    ino: e.ino,
                },
            });
        }
        if page.eof && self.snapdir_visible && dir.is_dataset_root() {
            items.push(Item {
                name: SNAPDIR_NAME.to_vec(),
                cookie: SNAPDIR_COOKIE,
                node: Node {
                    view: dir.view.clone(),
                    ino: SNAPDIR_INO,
                },
            });
        }
        Ok((items, page.eof, page.verifier))
    }

    async fn readdir(&self, c: &Creds, a: READDIR3args) -> Vec<u8> {
        let dir = match self.node(&a.dir).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<READDIR3resok, _>(Nfs3Result::Err((s, READDIR3resfail::default())));
            }
        };
        let verf = u64::from_be_bytes(a.cookieverf.0);
        let want = (a.count as usize / 32).clamp(1, MAX_DIR_ENTRIES);
        let r = self.list(c, &dir, a.cookie, verf, want).await;
        let dir_attributes = self.post(&dir).await;
        let (items, eof, verf) = match r {
            Ok(x) => x,
            Err(e) => {
                return reply::<READDIR3resok, _>(Nfs3Result::Err((
                    self.fail(&e),
                    READDIR3resfail { dir_attributes },
                )));
            }
        };
        // Fixed part: status, attributes, verifier, list end, eof, RPC header.
        let mut budget = (a.count as usize).saturating_sub(dir_attributes.packed_size() + 48);
        let mut entries = Vec::new();
        for it in &items {
            let e = entry3 {
                fileid: fileid(it.node.view.id, it.node.ino),
                name: filename3(Opaque::borrowed(&it.name)),
                cookie: it.cookie,
            };
            let size = 4 + e.packed_size();
            if size > budget {
                break;
            }
            budget -= size;
            entries.push(e);
        }
        let complete = entries.len() == items.len();
        if !complete {
            trim_cookie_group(&mut entries, &items, |e| e.cookie);
            if entries.is_empty() {
                return reply::<READDIR3resok, _>(Nfs3Result::Err((
                    nfsstat3::NFS3ERR_TOOSMALL,
                    READDIR3resfail { dir_attributes },
                )));
            }
        }
        reply::<_, READDIR3resfail>(Nfs3Result::Ok(READDIR3resok {
            dir_attributes,
            cookieverf: cookieverf3(verf.to_be_bytes()),
            reply: dirlist3 {
                entries: List(entries),
                eof: eof && complete,
            },
        }))
    }

    async fn readdirplus(&self, c: &Creds, a: READDIRPLUS3args) -> Vec<u8> {
        let dir = match self.node(&a.dir).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<READDIRPLUS3resok, _>(Nfs3Result::Err((
                    s,
                    READDIRPLUS3resfail::default(),
                )));
            }
        };
        let verf = u64::from_be_bytes(a.cookieverf.0);
        let want = (a.dircount as usize / 24)
            .min(a.maxcount as usize / 160)
            .clamp(1, MAX_DIR_ENTRIES);
        let r = self.list(c, &dir, a.cookie, verf, want).await;
        let dir_attributes = self.post(&dir).await;
        let (items, eof, verf) = match r {
            Ok(x) => x,
            Err(e) => {
                return reply::<READDIRPLUS3resok, _>(Nfs3Result::Err((
                    self.fail(&e),
                    READDIRPLUS3resfail { dir_attributes },
                )));
            }
        };
        let mut budget = (a.maxcount as usize).saturating_sub(dir_attributes.packed_size() + 48);
        let mut dir_budget = a.dircount as usize;
        let mut entries = Vec::new();
        for it in &items {
            let e = entryplus3 {
                fileid: fileid(it.node.view.id, it.node.ino),
                name: filename3(Opaque::borrowed(&it.name)),
                cookie: it.cookie,
                name_attributes: self.post(&it.node).await,
                name_handle: Nfs3Option::Some(self.fh(&it.node)),
            };
            let size = 4 + e.packed_size();
            let dsize = 8 + 4 + it.name.len().div_ceil(4) * 4 + 8;
            if size > budget || (dsize > dir_budget && !entries.is_empty()) {
                break;
            }
            budget -= size;
            dir_budget = dir_budget.saturating_sub(dsize);
            entries.push(e);
        }
        let complete = entries.len() == items.len();
        if !complete {
            trim_cookie_group(&mut entries, &items, |e| e.cookie);
            if entries.is_empty() {
                return reply::<READDIRPLUS3resok, _>(Nfs3Result::Err((
                    nfsstat3::NFS3ERR_TOOSMALL,
                    READDIRPLUS3resfail { dir_attributes },
                )));
            }
        }
        reply::<_, READDIRPLUS3resfail>(Nfs3Result::Ok(READDIRPLUS3resok {
            dir_attributes,
            cookieverf: cookieverf3(verf.to_be_bytes()),
            reply: dirlistplus3 {
                entries: List(entries),
                eof: eof && complete,
            },
        }))
    }

    async fn fsstat(&self, a: FSSTAT3args) -> Vec<u8> {
        let n = match self.node(&a.fsroot).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<FSSTAT3resok, _>(Nfs3Result::Err((s, FSSTAT3resfail::default())));
            }
        };
        let obj_attributes = self.post(&n).await;
        match n.view.fs.fsstat().await {
            Ok(st) => reply::<_, FSSTAT3resfail>(Nfs3Result::Ok(FSSTAT3resok {
                obj_attributes,
                tbytes: st.total_bytes,
                fbytes: st.free_bytes,
                abytes: st.free_bytes,
                tfiles: st.total_files,
                ffiles: st.free_files,
                afiles: st.free_files,
                invarsec: 0,
            })),
            Err(e) => reply::<FSSTAT3resok, _>(Nfs3Result::Err((
                self.fail(&e),
                FSSTAT3resfail { obj_attributes },
            ))),
        }
    }

    async fn fsinfo(&self, a: FSINFO3args) -> Vec<u8> {
        let n = match self.node(&a.fsroot).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<FSINFO3resok, _>(Nfs3Result::Err((s, FSINFO3resfail::default())));
            }
        };
        let obj_attributes = self.post(&n).await;
        reply::<_, FSINFO3resfail>(Nfs3Result::Ok(FSINFO3resok {
            obj_attributes,
            rtmax: MAX_IO_BYTES,
            rtpref: MAX_IO_BYTES,
            rtmult: 4096,
            wtmax: MAX_IO_BYTES,
            wtpref: MAX_IO_BYTES,
            wtmult: 4096,
            dtpref: DIR_PREF_BYTES,
            maxfilesize: MAX_FILE_SIZE,
            time_delta: nfstime3 {
                seconds: 0,
                nseconds: 1,
            },
            properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
        }))
    }

    async fn pathconf(&self, a: PATHCONF3args) -> Vec<u8> {
        let n = match self.node(&a.object).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<PATHCONF3resok, _>(Nfs3Result::Err((
                    s,
                    PATHCONF3resfail::default(),
                )));
            }
        };
        let obj_attributes = self.post(&n).await;
        reply::<_, PATHCONF3resfail>(Nfs3Result::Ok(PATHCONF3resok {
            obj_attributes,
            linkmax: LINK_MAX,
            name_max: NAME_MAX as u32,
            no_trunc: true,
            chown_restricted: true,
            case_insensitive: false,
            case_preserving: true,
        }))
    }

    async fn commit(&self, a: COMMIT3args) -> Vec<u8> {
        let n = match self.node(&a.file).await {
            Ok(n) => n,
            Err(s) => {
                return reply::<COMMIT3resok, _>(Nfs3Result::Err((
                    s,
                    COMMIT3resfail {
                        file_wcc: wcc_data::default(),
                    },
                )));
            }
        };
        let r = n.view.fs.commit().await;
        let file_wcc = wcc(self.post(&n).await);
        match r {
            Ok(()) => reply::<_, COMMIT3resfail>(Nfs3Result::Ok(COMMIT3resok {
                file_wcc,
                verf: writeverf3(self.write_verf),
            })),
            Err(e) => reply::<COMMIT3resok, _>(Nfs3Result::Err((
                self.fail(&e),
                COMMIT3resfail { file_wcc },
            ))),
        }
    }
}

/// A page cut short must not end between two entries sharing a cookie (a
/// name-hash collision): resuming after that cookie would skip the second.
fn trim_cookie_group<E>(entries: &mut Vec<E>, items: &[Item], cookie: impl Fn(&E) -> u64) {
    while let Some(last) = entries.last() {
        let next = items.get(entries.len()).map(|i| i.cookie);
        if next == Some(cookie(last)) {
            entries.pop();
        } else {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::success;

    #[tokio::test]
    async fn a_read_reply_with_uncopied_data_is_the_packed_reply() {
        for len in [0usize, 1, 2, 3, 4, 5, 4097, 1 << 20] {
            let data = bytes::Bytes::from((0..len).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
            let whole = reply::<_, READ3resfail>(Nfs3Result::Ok(READ3resok {
                file_attributes: post_op_attr::None,
                count: len as u32,
                eof: true,
                data: Opaque::borrowed(&data),
            }));
            let expected = success(9, whole.into()).to_vec();
            let split = success(9, read_ok(post_op_attr::None, true, data.clone()));
            assert_eq!(split.len(), expected.len(), "record length for {len} bytes");
            assert_eq!(split.to_vec(), expected, "record for {len} bytes");
            let mut wire = Vec::new();
            split.write_to(&mut wire).await.expect("write to a Vec");
            assert_eq!(wire, expected, "bytes written for {len} bytes");
        }
    }
}
