//! A snapshot reads what the dataset held when it was taken, whatever is
//! done to the source afterwards: overwrite, truncate, delete, rename.
mod common;
use cairn_fs::{Creds, ErrorKind, Filesystem, SetAttr};
use common::*;

#[tokio::test]
async fn snapshot_is_immutable_under_overwrite_truncate_delete_rename() {
    let engine = memory_engine().await;
    let fs = engine.root_dataset().await;
    let big = noise(300_000, 1);
    put(&fs, "over", &big).await;
    put(&fs, "trunc", &big).await;
    put(&fs, "gone", &big).await;
    put(&fs, "moved", b"I move").await;
    engine
        .create_snapshot("root", "before")
        .await
        .expect("snapshot");

    put(&fs, "over", &noise(100_000, 2)).await;
    let t = resolve(&fs, "trunc").await.expect("trunc");
    let attrs = SetAttr {
        size: Some(10),
        ..Default::default()
    };
    fs.setattr(&Creds::root(), t, &attrs, None)
        .await
        .expect("truncate");
    let root = fs.info().root;
    fs.remove(&Creds::root(), root, b"gone")
        .await
        .expect("remove");
    fs.rename(&Creds::root(), root, b"moved", root, b"elsewhere")
        .await
        .expect("rename");

    let snap = engine.snapshot("root@before").await.expect("snapshot view");
    for name in ["over", "trunc", "gone"] {
        assert_eq!(
            get(&snap, name).await.expect(name),
            big,
            "{name} changed in the snapshot"
        );
    }
    assert_eq!(get(&snap, "moved").await.expect("moved"), b"I move");
    assert_eq!(
        get(&snap, "elsewhere").await.map_err(|e| e.kind),
        Err(ErrorKind::NotFound)
    );
    // And the snapshot refuses writes.
    let ino = resolve(&snap, "over").await.expect("over");
    let e = snap
        .write(&Creds::root(), ino, 0, b"x")
        .await
        .expect_err("write into a snapshot");
    assert_eq!(e.kind, ErrorKind::ReadOnly);
    assert_clean(&engine).await;
}
