//! Permission checks against AUTH_SYS-style credentials.
//!
//! Rules (POSIX, as Linux knfsd applies them to a stateless protocol):
//! root passes read and write checks, and execute when any execute bit is set
//! (or on directories); otherwise the owner, group or other bits apply, in
//! that order. For file data, the owner may always read and write: NFS has no
//! open(), so a file created `0o444` must still accept its creator's writes.
//! READ is also allowed to a caller who may execute the file (knfsd's rule:
//! the client reads a program's pages to run it); ACCESS reports the mode
//! bits as they are.

use cairn_codec::{FileKind, InodeRecord};
use cairn_fs::{Creds, ErrorKind, FsError, access};

/// The [`access`] bits `creds` hold on `rec` by its mode bits.
pub(crate) fn granted(creds: &Creds, rec: &InodeRecord) -> u32 {
    let mode = rec.mode as u32;
    if creds.uid == 0 {
        let any_x = mode & 0o111 != 0 || rec.kind == FileKind::Directory;
        return access::READ | access::WRITE | if any_x { access::EXECUTE } else { 0 };
    }
    (if creds.uid == rec.uid {
        mode >> 6
    } else if creds.in_group(rec.gid) {
        mode >> 3
    } else {
        mode
    }) & 0o7
}

/// Fail with `Access` unless `creds` hold every bit of `want` on `rec`.
pub(crate) fn check(
    creds: &Creds,
    rec: &InodeRecord,
    want: u32,
    what: &str,
) -> Result<(), FsError> {
    if granted(creds, rec) & want == want {
        Ok(())
    } else {
        Err(FsError::new(
            ErrorKind::Access,
            format!("permission denied: uid {} may not {what}", creds.uid),
        ))
    }
}

/// Data access: like [`check`], but the owner may always read and write.
pub(crate) fn check_data(
    creds: &Creds,
    rec: &InodeRecord,
    want: u32,
    what: &str,
) -> Result<(), FsError> {
    if creds.uid == rec.uid && want & access::EXECUTE == 0 {
        return Ok(());
    }
    check(creds, rec, want, what)
}

/// Reading file data: like [`check_data`] for read, but execute permission
/// also allows it, as knfsd allows it: a client must read a program's pages
/// to run it, so a caller who may execute a `0o711` file may read it.
pub(crate) fn check_read(creds: &Creds, rec: &InodeRecord) -> Result<(), FsError> {
    if creds.uid == rec.uid || granted(creds, rec) & (access::READ | access::EXECUTE) != 0 {
        return Ok(());
    }
    Err(FsError::new(
        ErrorKind::Access,
        format!(
            "permission denied: uid {} may neither read nor execute this file",
            creds.uid
        ),
    ))
}

/// Whether `creds` own `rec` or are root.
pub(crate) fn owns(creds: &Creds, rec: &InodeRecord) -> bool {
    creds.uid == 0 || creds.uid == rec.uid
}

/// Sticky directories: only the entry's owner, the directory's owner or root
/// may remove or rename an entry.
pub(crate) fn check_sticky(
    creds: &Creds,
    dir: &InodeRecord,
    child: &InodeRecord,
) -> Result<(), FsError> {
    if dir.mode & 0o1000 != 0 && creds.uid != 0 && creds.uid != dir.uid && creds.uid != child.uid {
        return Err(FsError::new(
            ErrorKind::Permission,
            format!(
                "operation not permitted: the directory is sticky and uid {} owns neither it nor the entry",
                creds.uid
            ),
        ));
    }
    Ok(())
}
