//! Through a real NFS client: READ of a `0711` file is allowed to another
//! user (who may execute it), and refused (NFS3ERR_ACCES) once it is
//! `0700`; GETATTR reports what a sparse file really stores.
mod common;
use cairn_testkit::nfs3_types::nfs3::{Nfs3Option, nfsstat3, sattr3, stable_how};
use common::*;

#[tokio::test]
async fn execute_only_programs_are_readable_and_sparse_files_small() {
    let (_d, store) = store();
    let s = Server::nfs(&store, &[]);
    let mut root_c = mount(s.nfs_port, "/", 0, 0).await;
    let r = root(&root_c);
    let prog = create(&mut root_c, &r, b"prog", 0o644)
        .await
        .expect("create");
    let body = b"\x7fELF pretend program";
    write(&mut root_c, &prog, 0, body, stable_how::FILE_SYNC)
        .await
        .expect("write");
    let chmod = |mode| sattr3 {
        mode: Nfs3Option::Some(mode),
        uid: Nfs3Option::Some(1000),
        gid: Nfs3Option::Some(1000),
        ..Default::default()
    };
    setattr(&mut root_c, &prog, chmod(0o711))
        .await
        .expect("chmod 0711");
    let mut other = mount(s.nfs_port, "/", 2000, 2000).await;
    let (got, _) = read(&mut other, &prog, 0, 100)
        .await
        .expect("uid 2000 may execute 0711, so may read it");
    assert_eq!(got, body);
    setattr(&mut root_c, &prog, chmod(0o700))
        .await
        .expect("chmod 0700");
    assert_eq!(
        read(&mut other, &prog, 0, 100).await.err(),
        Some(nfsstat3::NFS3ERR_ACCES),
        "0700: neither read nor execute for uid 2000"
    );

    // 50 KB at 100 MiB stores one chunk.
    let img = create(&mut root_c, &r, b"img", 0o644)
        .await
        .expect("create");
    write(
        &mut root_c,
        &img,
        100 << 20,
        &noise(50_000, 5),
        stable_how::FILE_SYNC,
    )
    .await
    .expect("write");
    let a = getattr(&mut root_c, &img).await.expect("getattr");
    assert_eq!(a.size, (100 << 20) + 50_000);
    assert_eq!(
        a.used, 50_000,
        "used is the stored chunk, not the apparent size"
    );
    let d = getattr(&mut root_c, &r).await.expect("getattr root");
    assert_eq!(d.used, 4096, "a directory reports one block");
    stop_ok(s).await;
}
