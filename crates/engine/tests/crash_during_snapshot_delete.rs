//! A crash in the middle of a snapshot delete: reopening finishes the
//! delete, and the store is consistent.
mod common;
use cairn_engine::{Engine, EngineOptions};
use common::*;

#[tokio::test]
async fn crash_mid_snapshot_delete_resumes_on_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    let base;
    {
        let engine = Engine::open(&url, EngineOptions::default())
            .await
            .expect("open");
        let fs = engine.root_dataset().await;
        for i in 0..40 {
            put(&fs, &format!("f{i}"), &noise(3 * 65536, i)).await;
        }
        base = engine.chunk_stats().await.expect("stats");
        engine.create_snapshot("root", "s").await.expect("snapshot");
        for i in 0..40 {
            put(&fs, &format!("f{i}"), &noise(3 * 65536, 1000 + i)).await;
        }
        // Mark for destruction and free only the first batch, then "crash":
        // flush what was written and drop the handle without closing.
        engine
            .begin_snapshot_delete_for_tests("root@s", 7)
            .await
            .expect("partial delete");
        engine.flush().await.expect("flush");
        let listed = engine.list_snapshots(None).await.expect("list");
        assert!(
            listed.is_empty(),
            "a snapshot being destroyed is hidden at once"
        );
        drop(fs);
        drop(engine);
    }
    let engine = Engine::open(&url, EngineOptions::default())
        .await
        .expect("reopen");
    assert!(engine.list_snapshots(None).await.expect("list").is_empty());
    let after = engine.chunk_stats().await.expect("stats");
    assert_eq!(
        after.chunks, base.chunks,
        "the resumed delete freed every old version"
    );
    assert_clean(&engine).await;
}
