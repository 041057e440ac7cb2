//! In-place restore of a deleted directory tree: metadata only (no chunk is
//! written), contents and hard links back, fsck clean.
mod common;
use cairn_fs::{Creds, Filesystem};
use common::*;

#[tokio::test]
async fn restore_of_a_deleted_directory_tree() {
    let engine = memory_engine().await;
    let fs = engine.root_dataset().await;
    mkdir(&fs, "proj").await;
    mkdir(&fs, "proj/src").await;
    put(&fs, "proj/src/main.rs", &noise(200_000, 3)).await;
    put(&fs, "proj/README", b"hello").await;
    let a = resolve(&fs, "proj/README").await.expect("readme");
    let src = resolve(&fs, "proj/src").await.expect("src");
    fs.link(&Creds::root(), a, src, b"README.link")
        .await
        .expect("link");
    engine.create_snapshot("root", "s").await.expect("snapshot");

    // rm -rf proj
    let root = fs.info().root;
    let proj = resolve(&fs, "proj").await.expect("proj");
    for name in [&b"main.rs"[..], b"README.link"] {
        fs.remove(&Creds::root(), src, name).await.expect("rm");
    }
    fs.rmdir(&Creds::root(), proj, b"src").await.expect("rmdir");
    fs.remove(&Creds::root(), proj, b"README")
        .await
        .expect("rm");
    fs.rmdir(&Creds::root(), root, b"proj")
        .await
        .expect("rmdir");

    let before = engine.chunk_stats().await.expect("stats");
    let report = engine
        .restore("root@s", "proj", None)
        .await
        .expect("restore");
    let after = engine.chunk_stats().await.expect("stats");
    assert_eq!(before, after, "restore must not write chunks");
    assert_eq!(report.inodes, 4, "{report:?}");

    assert_eq!(
        get(&fs, "proj/src/main.rs").await.expect("main"),
        noise(200_000, 3)
    );
    assert_eq!(get(&fs, "proj/README").await.expect("readme"), b"hello");
    let l1 = resolve(&fs, "proj/README").await.expect("a");
    let l2 = resolve(&fs, "proj/src/README.link").await.expect("b");
    assert_eq!(l1, l2, "hard link within the restored tree is kept");
    assert_eq!(fs.getattr(l1).await.expect("attr").nlink, 2);
    // Restoring onto an existing directory is refused, to a new path works.
    let e = engine
        .restore("root@s", "proj", None)
        .await
        .expect_err("exists");
    assert_eq!(e.kind, cairn_fs::ErrorKind::Exists, "{e}");
    engine
        .restore("root@s", "proj/src", Some("src-copy"))
        .await
        .expect("restore to new path");
    assert_eq!(
        get(&fs, "src-copy/main.rs").await.expect("copy"),
        noise(200_000, 3)
    );
    assert_clean(&engine).await;
}
