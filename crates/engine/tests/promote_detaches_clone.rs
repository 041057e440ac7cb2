//! Promote makes a clone independent of its origin snapshot: the origin
//! snapshot and dataset can then be deleted while the clone, and the clone's
//! own older snapshots, read exactly what they read before.
mod common;
use cairn_fs::{Creds, ErrorKind, Filesystem};
use common::*;

#[tokio::test]
async fn promote_keeps_the_clone_and_its_snapshots_intact() {
    let engine = memory_engine().await;
    let fs = engine.root_dataset().await;
    put(&fs, "untouched", &noise(200_000, 1)).await;
    put(&fs, "edited", &noise(150_000, 2)).await;
    put(&fs, "removed", &noise(90_000, 3)).await;
    put(&fs, "small", b"inline").await;
    engine
        .create_snapshot("root", "base")
        .await
        .expect("snapshot");
    engine
        .clone_snapshot("root@base", "work")
        .await
        .expect("clone");
    let work = engine.dataset("work").await.expect("clone view");
    // A clone snapshot, then changes in the clone after it.
    engine.create_snapshot("work", "early").await.expect("snap");
    put(&work, "edited", b"edited in the clone").await;
    let root = work.info().root;
    work.remove(&Creds::root(), root, b"removed")
        .await
        .expect("rm");
    put(&work, "new", &noise(70_000, 4)).await;

    // The origin snapshot is pinned until the clone is promoted.
    let e = engine
        .delete_snapshot("root@base")
        .await
        .map_err(|e| e.kind);
    assert_eq!(e, Err(ErrorKind::Busy));
    let before = engine.chunk_stats().await.expect("stats");
    let info = engine.promote("work").await.expect("promote");
    assert_eq!(info.origin, None);
    assert_eq!(
        engine.chunk_stats().await.expect("stats"),
        before,
        "promote copies no chunk"
    );
    assert_eq!(
        engine.promote("work").await.map(drop).map_err(|e| e.kind),
        Err(ErrorKind::Invalid),
        "a promoted dataset is no longer a clone"
    );

    // Now the origin can go entirely.
    engine
        .delete_snapshot("root@base")
        .await
        .expect("delete origin snapshot");
    let froot = fs.info().root;
    for name in ["untouched", "edited", "removed", "small"] {
        fs.remove(&Creds::root(), froot, name.as_bytes())
            .await
            .expect("rm in origin");
    }

    // The clone's head.
    assert_eq!(
        get(&work, "untouched").await.expect("read"),
        noise(200_000, 1)
    );
    assert_eq!(
        get(&work, "edited").await.expect("read"),
        b"edited in the clone"
    );
    assert_eq!(get(&work, "small").await.expect("read"), b"inline");
    assert_eq!(get(&work, "new").await.expect("read"), noise(70_000, 4));
    assert_eq!(
        get(&work, "removed").await.map_err(|e| e.kind),
        Err(ErrorKind::NotFound)
    );
    // The clone's snapshot from before its own changes.
    let early = engine.snapshot("work@early").await.expect("snapshot view");
    assert_eq!(
        get(&early, "untouched").await.expect("read"),
        noise(200_000, 1)
    );
    assert_eq!(
        get(&early, "edited").await.expect("read"),
        noise(150_000, 2)
    );
    assert_eq!(
        get(&early, "removed").await.expect("read"),
        noise(90_000, 3)
    );
    let report = engine.fsck().await.expect("fsck");
    assert!(report.is_clean(), "{report}");

    // Deleting the clone's snapshot frees what only it saw.
    engine.delete_snapshot("work@early").await.expect("delete");
    let report = engine.fsck().await.expect("fsck");
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        get(&work, "untouched").await.expect("read"),
        noise(200_000, 1)
    );
}
