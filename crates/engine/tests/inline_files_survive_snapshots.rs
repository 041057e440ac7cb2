//! Small files live inline in their inode record; snapshots keep them (the
//! earlier attempt lost them).
mod common;
use common::*;

#[tokio::test]
async fn small_inline_files_survive_in_snapshots_and_clones() {
    let engine = memory_engine().await;
    let fs = engine.root_dataset().await;
    mkdir(&fs, "etc").await;
    for i in 0..50 {
        put(
            &fs,
            &format!("etc/f{i}"),
            format!("small file {i}").as_bytes(),
        )
        .await;
    }
    engine.create_snapshot("root", "s").await.expect("snapshot");
    for i in 0..50 {
        put(&fs, &format!("etc/f{i}"), b"changed").await;
    }
    engine
        .clone_snapshot("root@s", "copy")
        .await
        .expect("clone");
    let snap = engine.snapshot("root@s").await.expect("view");
    let copy = engine.dataset("copy").await.expect("clone view");
    for i in 0..50 {
        let want = format!("small file {i}").into_bytes();
        assert_eq!(
            get(&snap, &format!("etc/f{i}")).await.expect("snap read"),
            want
        );
        assert_eq!(
            get(&copy, &format!("etc/f{i}")).await.expect("clone read"),
            want
        );
        assert_eq!(
            get(&fs, &format!("etc/f{i}")).await.expect("live read"),
            b"changed"
        );
    }
    assert_clean(&engine).await;
}
