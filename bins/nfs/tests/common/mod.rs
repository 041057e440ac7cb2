//! Helpers for the end-to-end tests: a thin typed layer over the crates.io
//! `nfs3_client` (a client we did not write), returning the server's
//! `nfsstat3` on failure.
#![allow(dead_code, unused_imports)]

use cairn_testkit::Nfs;
use cairn_testkit::nfs3_types::nfs3::*;
use cairn_testkit::nfs3_types::xdr_codec::Opaque;

pub use cairn_testkit::{Server, mount, noise, ok, run};

pub type R<T> = Result<T, nfsstat3>;

fn name(n: &[u8]) -> filename3<'_> {
    filename3(Opaque::borrowed(n))
}

fn dirop<'a>(dir: &nfs_fh3, n: &'a [u8]) -> diropargs3<'a> {
    cairn_testkit::dirop(dir.clone(), n)
}

fn check<T, E>(r: Nfs3Result<T, E>) -> R<T> {
    match r {
        Nfs3Result::Ok(v) => Ok(v),
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

pub fn root(c: &Nfs) -> nfs_fh3 {
    c.root_nfs_fh3()
}

pub async fn lookup(c: &mut Nfs, dir: &nfs_fh3, n: &[u8]) -> R<(nfs_fh3, fattr3)> {
    let r = check(
        c.lookup(&LOOKUP3args {
            what: dirop(dir, n),
        })
        .await
        .expect("rpc"),
    )?;
    let attr = match r.obj_attributes {
        Nfs3Option::Some(a) => a,
        Nfs3Option::None => getattr(c, &r.object).await?,
    };
    Ok((r.object, attr))
}

/// Walk `a/b/c` from the root.
pub async fn walk(c: &mut Nfs, path: &str) -> R<nfs_fh3> {
    let mut fh = root(c);
    for p in path.split('/').filter(|p| !p.is_empty()) {
        fh = lookup(c, &fh, p.as_bytes()).await?.0;
    }
    Ok(fh)
}

pub async fn getattr(c: &mut Nfs, fh: &nfs_fh3) -> R<fattr3> {
    check(
        c.getattr(&GETATTR3args { object: fh.clone() })
            .await
            .expect("rpc"),
    )
    .map(|r| r.obj_attributes)
}

pub async fn create(c: &mut Nfs, dir: &nfs_fh3, n: &[u8], mode: u32) -> R<nfs_fh3> {
    let r = check(
        c.create(&CREATE3args {
            where_: dirop(dir, n),
            how: createhow3::GUARDED(sattr3 {
                mode: Nfs3Option::Some(mode),
                ..Default::default()
            }),
        })
        .await
        .expect("rpc"),
    )?;
    match r.obj {
        Nfs3Option::Some(fh) => Ok(fh),
        Nfs3Option::None => Err(nfsstat3::NFS3ERR_SERVERFAULT),
    }
}

pub async fn mkdir(c: &mut Nfs, dir: &nfs_fh3, n: &[u8], mode: u32) -> R<nfs_fh3> {
    let r = check(
        c.mkdir(&MKDIR3args {
            where_: dirop(dir, n),
            attributes: sattr3 {
                mode: Nfs3Option::Some(mode),
                ..Default::default()
            },
        })
        .await
        .expect("rpc"),
    )?;
    match r.obj {
        Nfs3Option::Some(fh) => Ok(fh),
        Nfs3Option::None => Err(nfsstat3::NFS3ERR_SERVERFAULT),
    }
}

pub async fn write(
    c: &mut Nfs,
    fh: &nfs_fh3,
    offset: u64,
    data: &[u8],
    stable: stable_how,
) -> R<WRITE3resok> {
    check(
        c.write(&WRITE3args {
            file: fh.clone(),
            offset,
            count: data.len() as u32,
            stable,
            data: Opaque::borrowed(data),
        })
        .await
        .expect("rpc"),
    )
}

pub async fn read(c: &mut Nfs, fh: &nfs_fh3, offset: u64, count: u32) -> R<(Vec<u8>, bool)> {
    let r = check(
        c.read(&READ3args {
            file: fh.clone(),
            offset,
            count,
        })
        .await
        .expect("rpc"),
    )?;
    Ok((r.data.to_vec(), r.eof))
}

/// A whole file, in 1 MiB reads.
pub async fn read_all(c: &mut Nfs, fh: &nfs_fh3) -> R<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let (d, eof) = read(c, fh, out.len() as u64, 1 << 20).await?;
        out.extend_from_slice(&d);
        if eof || d.is_empty() {
            return Ok(out);
        }
    }
}

pub async fn commit(c: &mut Nfs, fh: &nfs_fh3) -> R<[u8; 8]> {
    check(
        c.commit(&COMMIT3args {
            file: fh.clone(),
            offset: 0,
            count: 0,
        })
        .await
        .expect("rpc"),
    )
    .map(|r| r.verf.0)
}

pub async fn remove(c: &mut Nfs, dir: &nfs_fh3, n: &[u8]) -> R<()> {
    check(
        c.remove(&REMOVE3args {
            object: dirop(dir, n),
        })
        .await
        .expect("rpc"),
    )
    .map(drop)
}

pub async fn rmdir(c: &mut Nfs, dir: &nfs_fh3, n: &[u8]) -> R<()> {
    check(
        c.rmdir(&RMDIR3args {
            object: dirop(dir, n),
        })
        .await
        .expect("rpc"),
    )
    .map(drop)
}

pub async fn rename(c: &mut Nfs, from: &nfs_fh3, f: &[u8], to: &nfs_fh3, t: &[u8]) -> R<()> {
    check(
        c.rename(&RENAME3args {
            from: dirop(from, f),
            to: dirop(to, t),
        })
        .await
        .expect("rpc"),
    )
    .map(drop)
}

pub async fn link(c: &mut Nfs, file: &nfs_fh3, dir: &nfs_fh3, n: &[u8]) -> R<()> {
    check(
        c.link(&LINK3args {
            file: file.clone(),
            link: dirop(dir, n),
        })
        .await
        .expect("rpc"),
    )
    .map(drop)
}

pub async fn symlink(c: &mut Nfs, dir: &nfs_fh3, n: &[u8], target: &[u8]) -> R<nfs_fh3> {
    let r = check(
        c.symlink(&SYMLINK3args {
            where_: dirop(dir, n),
            symlink: symlinkdata3 {
                symlink_attributes: sattr3::default(),
                symlink_data: nfspath3(Opaque::borrowed(target)),
            },
        })
        .await
        .expect("rpc"),
    )?;
    match r.obj {
        Nfs3Option::Some(fh) => Ok(fh),
        Nfs3Option::None => Err(nfsstat3::NFS3ERR_SERVERFAULT),
    }
}

pub async fn readlink(c: &mut Nfs, fh: &nfs_fh3) -> R<Vec<u8>> {
    check(
        c.readlink(&READLINK3args {
            symlink: fh.clone(),
        })
        .await
        .expect("rpc"),
    )
    .map(|r| r.data.0.to_vec())
}

pub async fn setattr(c: &mut Nfs, fh: &nfs_fh3, attrs: sattr3) -> R<()> {
    check(
        c.setattr(&SETATTR3args {
            object: fh.clone(),
            new_attributes: attrs,
            guard: Nfs3Option::None,
        })
        .await
        .expect("rpc"),
    )
    .map(drop)
}

/// Every entry of a directory with READDIRPLUS, in pages of `maxcount`
/// bytes: (name, fileid, cookie).
pub async fn readdirplus_all(c: &mut Nfs, dir: &nfs_fh3, maxcount: u32) -> R<Vec<(Vec<u8>, u64)>> {
    let mut out = Vec::new();
    let (mut cookie, mut verf) = (0u64, cookieverf3::default());
    loop {
        let r = check(
            c.readdirplus(&READDIRPLUS3args {
                dir: dir.clone(),
                cookie,
                cookieverf: verf,
                dircount: maxcount,
                maxcount,
            })
            .await
            .expect("rpc"),
        )?;
        verf = r.cookieverf;
        let n = r.reply.entries.0.len();
        for e in r.reply.entries.0 {
            cookie = e.cookie;
            out.push((e.name.0.to_vec(), e.fileid));
        }
        if r.reply.eof {
            return Ok(out);
        }
        assert!(n > 0, "a page that is not the last must hold entries");
    }
}

/// Every entry of a directory with READDIR, in pages of `count` bytes.
pub async fn readdir_all(c: &mut Nfs, dir: &nfs_fh3, count: u32) -> R<Vec<(Vec<u8>, u64)>> {
    let mut out = Vec::new();
    let (mut cookie, mut verf) = (0u64, cookieverf3::default());
    loop {
        let r = check(
            c.readdir(&READDIR3args {
                dir: dir.clone(),
                cookie,
                cookieverf: verf,
                count,
            })
            .await
            .expect("rpc"),
        )?;
        verf = r.cookieverf;
        let n = r.reply.entries.0.len();
        for e in r.reply.entries.0 {
            cookie = e.cookie;
            out.push((e.name.0.to_vec(), e.fileid));
        }
        if r.reply.eof {
            return Ok(out);
        }
        assert!(n > 0, "a page that is not the last must hold entries");
    }
}

/// The admin API client of a running server.
pub async fn admin(s: &Server) -> cairn_rpc::Client {
    cairn_rpc::connect(&s.endpoint(), None)
        .await
        .expect("admin client")
}

/// Take snapshot `ds@name` through the admin API.
pub async fn snapshot(s: &Server, ds: &str, name: &str) {
    admin(s)
        .await
        .create_snapshot(cairn_rpc::pb::CreateSnapshotRequest {
            dataset: ds.into(),
            name: name.into(),
            writable: false,
        })
        .await
        .expect("create snapshot");
}

/// A fresh store directory.
pub fn store() -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", d.path().join("store").display());
    (d, url)
}

/// Stop a server with SIGTERM (off the async runtime) and assert it exited
/// cleanly, printing its log if not.
pub async fn stop_ok(s: Server) {
    let (status, log) = tokio::task::spawn_blocking(move || s.stop())
        .await
        .expect("stop");
    assert!(status.success(), "{log}");
}
