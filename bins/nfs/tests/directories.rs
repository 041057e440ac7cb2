//! Directories through the real nfs3_client: nested mkdir, listing, rmdir
//! refusing a non-empty directory, and `..`.
mod common;
use cairn_testkit::nfs3_types::nfs3::nfsstat3;
use common::*;

#[tokio::test]
async fn nested_directories_list_and_remove() {
    let (_d, store) = store();
    let s = Server::nfs(&store, &[]);
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let r = root(&c);
    let a = mkdir(&mut c, &r, b"a", 0o755).await.expect("mkdir a");
    let b = mkdir(&mut c, &a, b"b", 0o750).await.expect("mkdir a/b");
    create(&mut c, &b, b"f", 0o644).await.expect("create a/b/f");
    assert_eq!(
        mkdir(&mut c, &r, b"a", 0o755).await.err(),
        Some(nfsstat3::NFS3ERR_EXIST)
    );
    let attr = getattr(&mut c, &a).await.expect("getattr");
    assert_eq!(attr.nlink, 3, "a holds one subdirectory");
    assert_eq!(attr.mode & 0o777, 0o755);
    let names: Vec<Vec<u8>> = readdirplus_all(&mut c, &b, 4096)
        .await
        .expect("list")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec![b".".to_vec(), b"..".to_vec(), b"f".to_vec()]);
    let (up, _) = lookup(&mut c, &b, b"..").await.expect("..");
    assert_eq!(up, a, "'..' of a/b is a");
    assert_eq!(
        rmdir(&mut c, &a, b"b").await.err(),
        Some(nfsstat3::NFS3ERR_NOTEMPTY)
    );
    remove(&mut c, &b, b"f").await.expect("rm f");
    rmdir(&mut c, &a, b"b").await.expect("rmdir b");
    assert_eq!(
        lookup(&mut c, &a, b"b").await.err(),
        Some(nfsstat3::NFS3ERR_NOENT)
    );
    assert_eq!(
        getattr(&mut c, &b).await.err(),
        Some(nfsstat3::NFS3ERR_STALE)
    );
}
