//! Every write through a snapshot view is refused with NFS3ERR_ROFS, and the
//! `.snapshots` name cannot be taken or removed.
mod common;
use cairn_testkit::nfs3_types::nfs3::{Nfs3Option, nfsstat3, sattr3, stable_how};
use common::*;

#[tokio::test]
async fn snapshot_views_refuse_writes() {
    let (_d, store) = store();
    let s = Server::nfs(&store, &[]);
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let r = root(&c);
    let f = create(&mut c, &r, b"f", 0o644).await.expect("create");
    write(&mut c, &f, 0, b"data", stable_how::FILE_SYNC)
        .await
        .expect("write");
    mkdir(&mut c, &r, b"d", 0o755).await.expect("mkdir");
    snapshot(&s, "root", "s").await;
    let snap = walk(&mut c, ".snapshots/s").await.expect("snapshot root");
    let (sf, _) = lookup(&mut c, &snap, b"f").await.expect("file in snapshot");
    let (sd, _) = lookup(&mut c, &snap, b"d").await.expect("dir in snapshot");
    let rofs = Some(nfsstat3::NFS3ERR_ROFS);
    assert_eq!(
        write(&mut c, &sf, 0, b"x", stable_how::UNSTABLE)
            .await
            .err(),
        rofs
    );
    assert_eq!(create(&mut c, &snap, b"new", 0o644).await.err(), rofs);
    assert_eq!(mkdir(&mut c, &sd, b"new", 0o755).await.err(), rofs);
    assert_eq!(remove(&mut c, &snap, b"f").await.err(), rofs);
    assert_eq!(rmdir(&mut c, &snap, b"d").await.err(), rofs);
    assert_eq!(rename(&mut c, &snap, b"f", &snap, b"g").await.err(), rofs);
    assert_eq!(symlink(&mut c, &snap, b"l", b"f").await.err(), rofs);
    assert_eq!(link(&mut c, &sf, &snap, b"h").await.err(), rofs);
    let chmod = sattr3 {
        mode: Nfs3Option::Some(0o777),
        ..Default::default()
    };
    assert_eq!(setattr(&mut c, &sf, chmod).await.err(), rofs);
    // The virtual directory itself.
    let sdir = walk(&mut c, ".snapshots").await.expect("snapdir");
    assert_eq!(mkdir(&mut c, &sdir, b"x", 0o755).await.err(), rofs);
    assert_eq!(
        create(&mut c, &r, b".snapshots", 0o644).await.err(),
        Some(nfsstat3::NFS3ERR_EXIST)
    );
    assert_eq!(rmdir(&mut c, &r, b".snapshots").await.err(), rofs);
    // Nothing changed.
    assert_eq!(read_all(&mut c, &sf).await.expect("read"), b"data");
    assert_eq!(read_all(&mut c, &f).await.expect("read"), b"data");
}
