//! A file deleted after a snapshot is still readable from the snapshot,
//! even after the dataset reuses its name.
mod common;
use cairn_fs::{Creds, Filesystem};
use common::*;

#[tokio::test]
async fn deleted_file_is_readable_from_the_snapshot() {
    let engine = memory_engine().await;
    let fs = engine.root_dataset().await;
    let data = noise(1_000_000, 7);
    put(&fs, "report.bin", &data).await;
    engine
        .create_snapshot("root", "daily")
        .await
        .expect("snapshot");
    let root = fs.info().root;
    fs.remove(&Creds::root(), root, b"report.bin")
        .await
        .expect("remove");
    put(&fs, "report.bin", b"new").await;
    let snap = engine.snapshot("daily").await.expect("bare snapshot name");
    assert_eq!(get(&snap, "report.bin").await.expect("read"), data);
    assert_eq!(get(&fs, "report.bin").await.expect("read"), b"new");
    assert_clean(&engine).await;
}
