//! A clone and its origin are independent both ways; the origin snapshot
//! cannot be deleted while the clone exists.
mod common;
use cairn_fs::{Creds, ErrorKind, Filesystem};
use common::*;

#[tokio::test]
async fn clone_and_origin_are_independent_both_ways() {
    let engine = memory_engine().await;
    let fs = engine.root_dataset().await;
    put(&fs, "shared", &noise(150_000, 1)).await;
    put(&fs, "doomed", b"bye").await;
    let info = engine
        .writable_snapshot("root", "base", "work")
        .await
        .expect("writable snapshot");
    assert_eq!(info.origin.as_deref(), Some("root@base"));
    let work = engine.dataset("work").await.expect("clone");

    // Clone -> origin: nothing leaks back.
    put(&work, "shared", b"clone edit").await;
    put(&work, "only-in-clone", b"new").await;
    let wroot = work.info().root;
    work.remove(&Creds::root(), wroot, b"doomed")
        .await
        .expect("rm in clone");
    assert_eq!(get(&fs, "shared").await.expect("origin"), noise(150_000, 1));
    assert_eq!(get(&fs, "doomed").await.expect("origin"), b"bye");
    assert_eq!(
        get(&fs, "only-in-clone").await.map_err(|e| e.kind),
        Err(ErrorKind::NotFound)
    );

    // Origin -> clone: nothing leaks forward.
    put(&fs, "after-clone", b"origin only").await;
    put(&fs, "doomed", b"origin edit").await;
    assert_eq!(
        get(&work, "after-clone").await.map_err(|e| e.kind),
        Err(ErrorKind::NotFound)
    );
    assert_eq!(
        get(&work, "doomed").await.map_err(|e| e.kind),
        Err(ErrorKind::NotFound)
    );
    assert_eq!(get(&work, "shared").await.expect("clone"), b"clone edit");

    let e = engine
        .delete_snapshot("root@base")
        .await
        .expect_err("held by clone");
    assert_eq!(e.kind, ErrorKind::Busy);
    assert!(e.message.contains("work"), "message names the clone: {e}");
    assert_clean(&engine).await;
    engine
        .delete_dataset("work", false)
        .await
        .expect("delete clone");
    engine
        .delete_snapshot("root@base")
        .await
        .expect("now deletable");
    assert_clean(&engine).await;
}
