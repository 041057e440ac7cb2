//! A crash at each crash-critical step (a `fail` point armed with
//! "return": what was committed so far is made durable, then the store
//! halts as if the process was killed there), then a reopen: the operation
//! either happened whole or not at all (or, for multi-batch operations,
//! resumes or can be repeated), and fsck is clean.
//!
//! Built only with `--features cairn-engine/failpoints`.
mod common;
use cairn_engine::{Engine, EngineOptions};
use cairn_fs::{Creds, Filesystem};
use common::*;

struct Store {
    _dir: tempfile::TempDir,
    url: String,
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("file://{}", dir.path().display());
        Self { _dir: dir, url }
    }

    async fn open(&self) -> Engine {
        Engine::open(&self.url, EngineOptions::default())
            .await
            .expect("open store")
    }
}

fn arm(point: &str) {
    fail::cfg(point, "return").expect("arm fail point");
}

/// The error of an operation cut short by a crash point.
fn crashed<T: std::fmt::Debug>(r: Result<T, cairn_fs::FsError>, point: &str) {
    match r {
        Ok(v) => panic!("crash point {point} was not reached: the operation returned {v:?}"),
        Err(e) => assert!(
            e.message.contains("crash point"),
            "operation failed before crash point {point}: {e}"
        ),
    }
    fail::remove(point);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_chunk_write_and_extent_record() {
    let s = Store::new();
    let before = {
        let engine = s.open().await;
        let fs = engine.root_dataset().await;
        let ino = put(&fs, "f", &noise(300_000, 1)).await;
        engine.flush().await.expect("flush");
        let before = engine.chunk_stats().await.expect("stats");
        arm("write.before_commit");
        crashed(
            fs.write(&Creds::root(), ino, 0, &noise(300_000, 2)).await,
            "write.before_commit",
        );
        before
    };
    let engine = s.open().await;
    let fs = engine.root_dataset().await;
    assert!(
        get(&fs, "f").await.expect("read") == noise(300_000, 1),
        "a write cut short before its batch changed the file"
    );
    assert_eq!(
        engine.chunk_stats().await.expect("stats"),
        before,
        "chunks of the lost write were stored without their extents"
    );
    assert_clean(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_inside_snapshot_delete_resumes_on_reopen() {
    let s = Store::new();
    let base = {
        let engine = s.open().await;
        let fs = engine.root_dataset().await;
        for i in 0..30 {
            put(&fs, &format!("f{i}"), &noise(3 * 65536, i)).await;
        }
        let base = engine.chunk_stats().await.expect("stats");
        engine.create_snapshot("root", "s").await.expect("snapshot");
        for i in 0..30 {
            put(&fs, &format!("f{i}"), &noise(3 * 65536, 100 + i)).await;
        }
        fail::cfg("snapshot_delete.batch", "return(7)").expect("batch size");
        arm("snapshot_delete.between_steps");
        crashed(
            engine.delete_snapshot("root@s").await,
            "snapshot_delete.between_steps",
        );
        fail::remove("snapshot_delete.batch");
        base
    };
    let engine = s.open().await;
    assert!(
        engine.list_snapshots(None).await.expect("list").is_empty(),
        "the interrupted delete was not finished on reopen"
    );
    assert_eq!(
        engine.chunk_stats().await.expect("stats").chunks,
        base.chunks,
        "the resumed delete did not free exactly the snapshot's chunks"
    );
    let fs = engine.root_dataset().await;
    for i in 0..30 {
        assert!(get(&fs, &format!("f{i}")).await.expect("read") == noise(3 * 65536, 100 + i));
    }
    assert_clean(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_inside_rollback_after_destroying_newer_snapshots() {
    let s = Store::new();
    {
        let engine = s.open().await;
        let fs = engine.root_dataset().await;
        put(&fs, "f", b"one").await;
        engine.create_snapshot("root", "a").await.expect("a");
        put(&fs, "f", b"two").await;
        engine.create_snapshot("root", "b").await.expect("b");
        put(&fs, "f", b"three").await;
        arm("rollback.after_destroying_newer");
        crashed(
            engine.rollback("root@a", true).await,
            "rollback.after_destroying_newer",
        );
    }
    let engine = s.open().await;
    let names: Vec<String> = engine
        .list_snapshots(None)
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a"], "the newer snapshot's destruction was durable");
    let fs = engine.root_dataset().await;
    assert_eq!(get(&fs, "f").await.expect("read"), b"three");
    assert_clean(&engine).await;
    engine
        .rollback("root@a", false)
        .await
        .expect("rollback again");
    assert_eq!(get(&fs, "f").await.expect("read"), b"one");
    assert_clean(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_inside_rollback_before_its_batch() {
    let s = Store::new();
    {
        let engine = s.open().await;
        let fs = engine.root_dataset().await;
        put(&fs, "f", &noise(200_000, 1)).await;
        engine.create_snapshot("root", "a").await.expect("a");
        put(&fs, "f", &noise(200_000, 2)).await;
        put(&fs, "g", b"new").await;
        arm("rollback.before_commit");
        crashed(
            engine.rollback("root@a", false).await,
            "rollback.before_commit",
        );
    }
    let engine = s.open().await;
    let fs = engine.root_dataset().await;
    assert!(get(&fs, "f").await.expect("read") == noise(200_000, 2));
    assert_eq!(get(&fs, "g").await.expect("read"), b"new");
    assert_clean(&engine).await;
    engine
        .rollback("root@a", false)
        .await
        .expect("rollback again");
    assert!(get(&fs, "f").await.expect("read") == noise(200_000, 1));
    assert!(
        get(&fs, "g").await.is_err(),
        "g was born after the snapshot"
    );
    assert_clean(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_inside_restore() {
    let s = Store::new();
    let before = {
        let engine = s.open().await;
        let fs = engine.root_dataset().await;
        mkdir(&fs, "d").await;
        put(&fs, "d/x", &noise(150_000, 5)).await;
        put(&fs, "d/y", b"small").await;
        engine.create_snapshot("root", "s").await.expect("snapshot");
        let d = resolve(&fs, "d").await.expect("d");
        for n in [&b"x"[..], b"y"] {
            fs.remove(&Creds::root(), d, n).await.expect("rm");
        }
        fs.rmdir(&Creds::root(), fs.info().root, b"d")
            .await
            .expect("rmdir");
        engine.flush().await.expect("flush");
        let before = engine.chunk_stats().await.expect("stats");
        arm("restore.before_commit");
        crashed(
            engine.restore("root@s", "d", None).await,
            "restore.before_commit",
        );
        before
    };
    let engine = s.open().await;
    let fs = engine.root_dataset().await;
    assert!(
        resolve(&fs, "d").await.is_err(),
        "half a restore is visible"
    );
    assert_eq!(engine.chunk_stats().await.expect("stats"), before);
    assert_clean(&engine).await;
    engine.restore("root@s", "d", None).await.expect("restore");
    assert!(get(&fs, "d/x").await.expect("x") == noise(150_000, 5));
    assert_clean(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_inside_rename_across_directories() {
    let s = Store::new();
    {
        let engine = s.open().await;
        let fs = engine.root_dataset().await;
        let a = mkdir(&fs, "a").await;
        let b = mkdir(&fs, "b").await;
        mkdir(&fs, "a/sub").await;
        put(&fs, "a/sub/x", b"payload").await;
        engine.flush().await.expect("flush");
        arm("rename.across_directories");
        crashed(
            fs.rename(&Creds::root(), a, b"sub", b, b"moved").await,
            "rename.across_directories",
        );
    }
    let engine = s.open().await;
    let fs = engine.root_dataset().await;
    assert_eq!(get(&fs, "a/sub/x").await.expect("old path"), b"payload");
    assert!(resolve(&fs, "b/moved").await.is_err(), "half a rename");
    let a = resolve(&fs, "a").await.expect("a");
    let b = resolve(&fs, "b").await.expect("b");
    assert_eq!(fs.getattr(a).await.expect("a").nlink, 3);
    assert_eq!(fs.getattr(b).await.expect("b").nlink, 2);
    assert_clean(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_inside_promote_can_be_repeated() {
    let s = Store::new();
    {
        let engine = s.open().await;
        let fs = engine.root_dataset().await;
        for i in 0..700 {
            put(&fs, &format!("f{i}"), format!("file {i}").as_bytes()).await;
        }
        engine.create_snapshot("root", "s").await.expect("snapshot");
        engine.clone_snapshot("root@s", "c").await.expect("clone");
        arm("promote.between_batches");
        crashed(engine.promote("c").await, "promote.between_batches");
    }
    let engine = s.open().await;
    let c = engine.dataset("c").await.expect("clone");
    assert_eq!(get(&c, "f3").await.expect("read"), b"file 3");
    assert_clean(&engine).await;
    engine.promote("c").await.expect("promote again");
    for i in [0, 350, 699] {
        assert_eq!(
            get(&c, &format!("f{i}")).await.expect("read"),
            format!("file {i}").as_bytes()
        );
    }
    assert_clean(&engine).await;
    engine
        .delete_snapshot("root@s")
        .await
        .expect("the promoted clone no longer holds the snapshot");
    assert_clean(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_inside_dataset_delete_can_be_repeated() {
    let s = Store::new();
    {
        let engine = s.open().await;
        engine
            .create_dataset("scratch", Default::default())
            .await
            .expect("create");
        let fs = engine.dataset("scratch").await.expect("scratch");
        for i in 0..20 {
            put(&fs, &format!("f{i}"), &noise(70_000, i)).await;
        }
        fail::cfg("snapshot_delete.batch", "return(5)").expect("batch size");
        arm("dataset_delete.between_batches");
        crashed(
            engine.delete_dataset("scratch", false).await,
            "dataset_delete.between_batches",
        );
        fail::remove("snapshot_delete.batch");
    }
    let engine = s.open().await;
    assert_clean(&engine).await;
    if engine.dataset_info("scratch").await.is_ok() {
        engine
            .delete_dataset("scratch", false)
            .await
            .expect("delete again");
    }
    assert!(engine.dataset_info("scratch").await.is_err());
    assert_eq!(engine.chunk_stats().await.expect("stats").chunks, 0);
    assert_clean(&engine).await;
}

/// A store with a pack mostly dead (an overwritten file) for gc to repack.
async fn store_to_repack(s: &Store) -> (Vec<u8>, Vec<u8>) {
    let engine = Engine::open(
        &s.url,
        EngineOptions {
            pack_bytes: Some(1 << 20),
            ..Default::default()
        },
    )
    .await
    .expect("open");
    let fs = engine.root_dataset().await;
    let keep = noise(200_000, 7);
    put(&fs, "keep", &keep).await;
    put(&fs, "gone", &noise(900_000, 8)).await;
    engine.flush().await.expect("flush");
    let new = noise(900_000, 9);
    put(&fs, "gone", &new).await;
    engine.flush().await.expect("flush");
    engine.close().await.expect("close");
    (keep, new)
}

async fn crash_in_repack(point: &str) {
    let s = Store::new();
    let (keep, new) = store_to_repack(&s).await;
    {
        let engine = s.open().await;
        arm(point);
        crashed(engine.gc().await, point);
    }
    let engine = s.open().await;
    assert_clean(&engine).await;
    let fs = engine.root_dataset().await;
    assert!(
        get(&fs, "keep").await.expect("read") == keep,
        "moved chunks read"
    );
    assert!(
        get(&fs, "gone").await.expect("read") == new,
        "new data reads"
    );
    // A gc after the crash finishes the job.
    let report = engine.gc().await.expect("gc");
    assert_clean(&engine).await;
    let r = engine.fsck().await.expect("fsck");
    assert_eq!(r.reclaimable_packs, 0, "{report:?}\n{r}");
    assert!(get(&fs, "keep").await.expect("read") == keep, "after gc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_in_repack_after_the_new_pack_is_stored() {
    crash_in_repack("gc.repack.after_seal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_in_repack_after_repointing_before_the_old_pack_goes() {
    crash_in_repack("gc.repack.before_delete").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_a_seal_before_its_commit_leaves_no_trace() {
    let s = Store::new();
    let data = noise(300_000, 1);
    {
        let engine = s.open().await;
        let fs = engine.root_dataset().await;
        put(&fs, "f", &data).await;
        engine.flush().await.expect("flush");
        arm("pack.after_put");
        let ino = resolve(&fs, "f").await.expect("f");
        let _ = fs.write(&Creds::root(), ino, 0, &noise(300_000, 2)).await;
        crashed(engine.flush().await, "pack.after_put");
    }
    let engine = s.open().await;
    let fs = engine.root_dataset().await;
    assert!(
        get(&fs, "f").await.expect("read") == data,
        "a write whose layer never reached the database is gone whole"
    );
    assert_clean(&engine).await;
}
