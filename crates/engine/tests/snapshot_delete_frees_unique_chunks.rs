//! Deleting a snapshot frees exactly the chunks only it referenced.
mod common;
use common::*;

#[tokio::test]
async fn deleting_a_snapshot_frees_exactly_its_unique_chunks() {
    let engine = memory_engine().await;
    let fs = engine.root_dataset().await;
    // 8 chunks that stay, 8 that the snapshot alone will keep.
    put(&fs, "keep", &noise(8 * 65536, 1)).await;
    put(&fs, "churn", &noise(8 * 65536, 2)).await;
    let base = engine.chunk_stats().await.expect("stats");
    engine.create_snapshot("root", "s").await.expect("snapshot");
    put(&fs, "churn", &noise(8 * 65536, 3)).await;
    let with_snap = engine.chunk_stats().await.expect("stats");
    assert_eq!(
        with_snap.chunks,
        base.chunks + 8,
        "old versions kept for the snapshot"
    );
    let info = engine.snapshot_info("root@s").await.expect("info");
    assert_eq!(info.unique_bytes, Some(8 * 65536), "{info:?}");

    engine.delete_snapshot("root@s").await.expect("delete");
    let after = engine.chunk_stats().await.expect("stats");
    assert_eq!(
        after.chunks, base.chunks,
        "exactly the 8 unique chunks freed"
    );
    assert_eq!(
        after.stored_bytes, base.stored_bytes,
        "stored bytes back to one version each"
    );
    assert_clean(&engine).await;
}
