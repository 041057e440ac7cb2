//! The `Filesystem` conformance suite against the engine on `memory://` and `file://`.

use cairn_engine::{Engine, EngineOptions};

async fn check(url: &str) {
    let engine = Engine::open(url, EngineOptions::default())
        .await
        .expect("open store");
    let fs = engine.root_dataset().await;
    if let Err(failures) = cairn_fs::conformance::run(&fs).await {
        panic!("conformance failures on {url}:\n{failures}");
    }
    let report = engine.fsck().await.expect("fsck runs");
    assert!(
        report.is_clean(),
        "fsck after the suite on {url}:\n{report}"
    );
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_memory() {
    check("memory://").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    check(&format!("file://{}", dir.path().display())).await;
}
