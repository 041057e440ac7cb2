//! Errors map to the right nfsstat3, and AUTH_SYS credentials decide
//! permissions (owner/group/other bits, sticky directories, root).
mod common;
use cairn_testkit::nfs3_types::nfs3::{Nfs3Option, nfsstat3, sattr3, stable_how};
use common::*;

#[tokio::test]
async fn error_statuses_and_auth_sys_permissions() {
    let (_d, store) = store();
    let s = Server::nfs(&store, &[]);
    let mut root_c = mount(s.nfs_port, "/", 0, 0).await;
    let r = root(&root_c);
    // Names.
    let long = vec![b'n'; 256];
    assert_eq!(
        create(&mut root_c, &r, &long, 0o644).await.err(),
        Some(nfsstat3::NFS3ERR_NAMETOOLONG)
    );
    assert_eq!(
        create(&mut root_c, &r, b"a/b", 0o644).await.err(),
        Some(nfsstat3::NFS3ERR_INVAL)
    );
    assert_eq!(
        lookup(&mut root_c, &r, b"missing").await.err(),
        Some(nfsstat3::NFS3ERR_NOENT)
    );
    let f = create(&mut root_c, &r, b"f", 0o644).await.expect("create");
    assert_eq!(
        create(&mut root_c, &r, b"f", 0o644).await.err(),
        Some(nfsstat3::NFS3ERR_EXIST)
    );
    assert_eq!(
        lookup(&mut root_c, &f, b"x").await.err(),
        Some(nfsstat3::NFS3ERR_NOTDIR)
    );
    let d = mkdir(&mut root_c, &r, b"d", 0o755).await.expect("mkdir");
    assert_eq!(
        remove(&mut root_c, &r, b"d").await.err(),
        Some(nfsstat3::NFS3ERR_ISDIR)
    );

    // uid 1000 in a root-owned 0755 directory: read yes, write no.
    let mut user = mount(s.nfs_port, "/", 1000, 1000).await;
    lookup(&mut user, &d, b".").await.expect("search");
    assert_eq!(
        create(&mut user, &d, b"x", 0o644).await.err(),
        Some(nfsstat3::NFS3ERR_ACCES)
    );
    assert_eq!(
        write(&mut user, &f, 0, b"x", stable_how::UNSTABLE)
            .await
            .err(),
        Some(nfsstat3::NFS3ERR_ACCES)
    );
    let chmod = sattr3 {
        mode: Nfs3Option::Some(0o777),
        ..Default::default()
    };
    assert_eq!(
        setattr(&mut user, &f, chmod.clone()).await.err(),
        Some(nfsstat3::NFS3ERR_PERM)
    );
    // A sticky, world-writable directory: others' entries cannot be removed.
    let tmp = mkdir(&mut root_c, &r, b"tmp", 0o1777)
        .await
        .expect("mkdir tmp");
    create(&mut root_c, &tmp, b"roots", 0o644)
        .await
        .expect("create");
    let mine = create(&mut user, &tmp, b"mine", 0o600)
        .await
        .expect("user creates");
    assert_eq!(getattr(&mut user, &mine).await.expect("attr").uid, 1000);
    assert_eq!(
        remove(&mut user, &tmp, b"roots").await.err(),
        Some(nfsstat3::NFS3ERR_PERM)
    );
    remove(&mut user, &tmp, b"mine").await.expect("own entry");
    // Root may do what the bits refuse others.
    setattr(&mut root_c, &f, chmod).await.expect("root chmod");
}
