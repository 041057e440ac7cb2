//! Rename, symlink, hard link and setattr through the real nfs3_client.
mod common;
use cairn_testkit::nfs3_types::nfs3::{
    Nfs3Option, nfsstat3, nfstime3, sattr3, set_mtime, stable_how,
};
use common::*;

#[tokio::test]
async fn rename_symlink_link_and_setattr() {
    let (_d, store) = store();
    let s = Server::nfs(&store, &[]);
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let r = root(&c);
    let d1 = mkdir(&mut c, &r, b"d1", 0o755).await.expect("mkdir");
    let d2 = mkdir(&mut c, &r, b"d2", 0o755).await.expect("mkdir");
    let f = create(&mut c, &d1, b"f", 0o644).await.expect("create");
    write(&mut c, &f, 0, b"hello", stable_how::FILE_SYNC)
        .await
        .expect("write");

    // Rename across directories keeps the file handle.
    rename(&mut c, &d1, b"f", &d2, b"g").await.expect("rename");
    assert_eq!(
        lookup(&mut c, &d1, b"f").await.err(),
        Some(nfsstat3::NFS3ERR_NOENT)
    );
    let (g, _) = lookup(&mut c, &d2, b"g").await.expect("renamed");
    assert_eq!(g, f, "same file, same handle");
    assert_eq!(read_all(&mut c, &g).await.expect("read"), b"hello");

    // Hard link: two names, nlink 2, same content.
    link(&mut c, &g, &d1, b"hard").await.expect("link");
    let (h, ha) = lookup(&mut c, &d1, b"hard").await.expect("link name");
    assert_eq!(h, g);
    assert_eq!(ha.nlink, 2);
    remove(&mut c, &d2, b"g").await.expect("rm one name");
    assert_eq!(getattr(&mut c, &h).await.expect("still there").nlink, 1);
    assert_eq!(
        link(&mut c, &d1, &r, b"dirlink").await.err(),
        Some(nfsstat3::NFS3ERR_PERM),
        "directories cannot be hard-linked"
    );

    // Symlink.
    let l = symlink(&mut c, &r, b"sym", b"d1/hard")
        .await
        .expect("symlink");
    assert_eq!(readlink(&mut c, &l).await.expect("readlink"), b"d1/hard");
    assert_eq!(
        readlink(&mut c, &h).await.err(),
        Some(nfsstat3::NFS3ERR_INVAL)
    );

    // Setattr: mode, size, mtime.
    setattr(
        &mut c,
        &h,
        sattr3 {
            mode: Nfs3Option::Some(0o600),
            size: Nfs3Option::Some(2),
            mtime: set_mtime::SET_TO_CLIENT_TIME(nfstime3 {
                seconds: 1_000_000,
                nseconds: 5,
            }),
            ..Default::default()
        },
    )
    .await
    .expect("setattr");
    let a = getattr(&mut c, &h).await.expect("getattr");
    assert_eq!(
        (a.mode & 0o7777, a.size, a.mtime.seconds, a.mtime.nseconds),
        (0o600, 2, 1_000_000, 5)
    );
    assert_eq!(read_all(&mut c, &h).await.expect("read"), b"he");
}
