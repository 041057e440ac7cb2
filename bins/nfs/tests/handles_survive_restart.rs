//! File handles stay valid across a server restart; a handle to something
//! deleted (a file, or a whole snapshot) answers NFS3ERR_STALE.
mod common;
use cairn_testkit::nfs3_types::nfs3::{nfsstat3, stable_how};
use common::*;

#[tokio::test]
async fn handles_outlive_restarts_and_go_stale_when_deleted() {
    let (_d, store) = store();
    let s = Server::nfs(&store, &[]);
    let (f, sf) = {
        let mut c = mount(s.nfs_port, "/", 0, 0).await;
        let r = root(&c);
        let f = create(&mut c, &r, b"keep", 0o644).await.expect("create");
        write(&mut c, &f, 0, b"kept", stable_how::FILE_SYNC)
            .await
            .expect("write");
        snapshot(&s, "root", "s").await;
        let snap = walk(&mut c, ".snapshots/s").await.expect("snap");
        let (sf, _) = lookup(&mut c, &snap, b"keep").await.expect("lookup");
        (f, sf)
    };
    let (status, stderr) = s.stop();
    assert!(status.success(), "clean shutdown: {stderr}");

    let s = Server::nfs(&store, &[]);
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    assert_eq!(read_all(&mut c, &f).await.expect("old handle"), b"kept");
    assert_eq!(
        read_all(&mut c, &sf).await.expect("old snapshot handle"),
        b"kept"
    );
    let r = root(&c);
    remove(&mut c, &r, b"keep").await.expect("remove");
    assert_eq!(
        getattr(&mut c, &f).await.err(),
        Some(nfsstat3::NFS3ERR_STALE)
    );
    assert_eq!(
        read_all(&mut c, &sf).await.expect("snapshot still has it"),
        b"kept"
    );
    admin(&s)
        .await
        .delete_snapshot(cairn_rpc::pb::DeleteSnapshotRequest {
            snapshot: "root@s".into(),
        })
        .await
        .expect("delete snapshot");
    assert_eq!(
        getattr(&mut c, &sf).await.err(),
        Some(nfsstat3::NFS3ERR_STALE)
    );
    // Garbage is a bad handle, not a crash.
    let junk = cairn_testkit::nfs3_types::nfs3::nfs_fh3 {
        data: cairn_testkit::nfs3_types::xdr_codec::Opaque::owned(vec![7; 9]),
    };
    assert_eq!(
        getattr(&mut c, &junk).await.err(),
        Some(nfsstat3::NFS3ERR_BADHANDLE)
    );
}
