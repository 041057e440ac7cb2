//! Lookups and listings read the published registry: while a gc sweep
//! holds the writer lock, resolving views by id and name, MOUNT-style
//! dataset and snapshot lookups, dataset and snapshot listings, and reads
//! all answer; a write waits for the sweep (so the lock really was held).
mod common;
use std::time::Duration;

use cairn_engine::{DatasetOptions, Engine, EngineOptions};
use common::*;

const ANSWER: Duration = Duration::from_secs(5);

/// `f`'s output, or a panic naming `what` if it takes longer than
/// [`ANSWER`] (it waited for the writer lock).
async fn answers<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(ANSWER, f)
        .await
        .unwrap_or_else(|_| panic!("{what} waited for the writer lock a gc sweep holds"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_do_not_wait_for_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    let engine = Engine::open(&url, EngineOptions::default())
        .await
        .expect("open");
    let fs = engine.root_dataset().await;
    let data = noise(100_000, 1);
    put(&fs, "f", &data).await;
    engine
        .create_dataset("work", DatasetOptions::default())
        .await
        .expect("create");
    engine
        .create_snapshot("root", "s1")
        .await
        .expect("snapshot");
    let root = engine.default_dataset_id().await;

    fail::cfg("gc.sweep", "pause").expect("failpoint");
    // On any failure below, release the sweep so the runtime can stop.
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            let _ = fail::cfg("gc.sweep", "off");
        }
    }
    let release = Release;
    let gc = {
        let e = engine.clone();
        tokio::spawn(async move { e.gc().await })
    };
    // Let the sweep take the lock and park; then a write must wait.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let write = {
        let e = engine.clone();
        tokio::spawn(async move { e.create_dataset("late", DatasetOptions::default()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !write.is_finished(),
        "a write finished while the sweep held the writer lock"
    );

    let (view, info) = answers("view by id", engine.view(root))
        .await
        .expect("view");
    assert_eq!(info.dataset, "root");
    assert_eq!(
        answers("dataset id by name", engine.dataset_id("work")).await,
        engine
            .list_datasets()
            .await
            .expect("list")
            .iter()
            .find(|d| d.name == "work")
            .map(|d| d.id)
    );
    answers("dataset view", engine.dataset("work"))
        .await
        .expect("dataset");
    let snap = answers("snapshot view", engine.snapshot("root@s1"))
        .await
        .expect("snapshot");
    let names: Vec<String> = answers("dataset list", engine.list_datasets())
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["root", "work"]);
    let snaps = answers("snapshot list", engine.list_snapshots(None))
        .await
        .expect("snapshots");
    assert_eq!(snaps.len(), 1);
    assert_eq!(
        answers("default dataset", engine.default_dataset())
            .await
            .expect("default"),
        "root"
    );
    let got = answers("read", get(&view, "f")).await.expect("read");
    assert!(got == data, "read returned other bytes");
    let got = answers("snapshot read", get(&snap, "f"))
        .await
        .expect("read");
    assert!(got == data, "snapshot read returned other bytes");
    assert!(!write.is_finished(), "the write did not wait for the sweep");

    drop(release);
    gc.await.expect("gc task").expect("gc");
    write.await.expect("write task").expect("create late");
    let names: Vec<String> = engine
        .list_datasets()
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(
        names,
        ["late", "root", "work"],
        "the published registry lags the writer's"
    );
    assert_clean(&engine).await;
}
