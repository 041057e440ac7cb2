//! A pack PUT that fails (an error, or a request that hangs and times out)
//! fails the commit that waited on it with an I/O error; no index entry for
//! its chunks reaches the database (a crash then loses the unacknowledged
//! write whole, and fsck is clean); reads of the written data still work
//! from memory meanwhile; once the faults stop, the same commit succeeds and
//! the data survives a restart.
mod common;
use std::time::Duration;

use cairn_codec::ChunkHash;
use cairn_engine::{Engine, EngineOptions, FaultPlan, Faults, KvOptions};
use cairn_fs::{Creds, ErrorKind, Filesystem};
use common::*;

/// Only pack objects fail: SlateDB's own requests pass.
const PACKS: &str = "packs/";

fn options(faults: &Faults) -> EngineOptions {
    EngineOptions {
        kv: KvOptions {
            wrap: Some(faults.wrapper()),
            ..Default::default()
        },
        ..Default::default()
    }
}

struct Setup {
    dir: tempfile::TempDir,
    faults: Faults,
    engine: Engine,
    ino: u64,
    data: Vec<u8>,
}

/// A store with an empty, committed file `f`; then `data` is written to
/// it while every pack request fails by `plan`, and the commit must fail
/// with an I/O error that names the pack.
async fn write_while_packs_fail(plan: FaultPlan) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    let faults = Faults::new();
    let engine = Engine::open(&url, options(&faults)).await.expect("open");
    let fs = engine.root_dataset().await;
    let ino = put(&fs, "f", b"").await;
    fs.commit().await.expect("commit of the empty file");

    faults.start(plan);
    let data = noise(3 * engine.chunk_size() as usize + 1000, 7);
    fs.write(&Creds::root(), ino, 0, &data)
        .await
        .expect("an unstable write is buffered, no PUT yet");
    let err = fs
        .commit()
        .await
        .expect_err("commit succeeded although every pack PUT failed");
    assert_eq!(
        err.kind,
        ErrorKind::Io,
        "a failed pack PUT must fail the commit with an I/O error (EIO), got: {err}"
    );
    assert!(
        err.message.contains("storing pack"),
        "the commit's error does not name the pack it could not store: {err}"
    );
    assert!(faults.injected() > 0, "no fault was injected");
    // Read-your-writes: the sealed pack is still in memory.
    let got = get(&fs, "f").await.expect("read while the PUT fails");
    assert!(
        got == data,
        "reading the uncommitted data back returned {} bytes, not the {} written",
        got.len(),
        data.len()
    );
    Setup {
        dir,
        faults,
        engine,
        ino,
        data,
    }
}

/// After a crash while the pack could not be stored: the file is as it was
/// before the write, no chunk of the write is indexed, and no pack object
/// is left behind that nothing names.
async fn crash_loses_only_the_unacknowledged_write(plan: FaultPlan) {
    let s = write_while_packs_fail(plan).await;
    let url = format!("file://{}", s.dir.path().display());
    let first = ChunkHash::of(&s.data[..s.engine.chunk_size() as usize]);
    // Killed with the faults still on.
    drop(s.engine);
    let engine = Engine::open(&url, EngineOptions::default())
        .await
        .expect("reopen");
    let fs = engine.root_dataset().await;
    let attr = fs.getattr(s.ino).await.expect("the committed file");
    let got = get(&fs, "f").await.expect("read");
    assert!(
        attr.size == 0 && got.is_empty(),
        "the unacknowledged write survived in part: size {}, {} bytes read",
        attr.size,
        got.len()
    );
    match cairn_cas::locate(engine.kv_for_tests(), &first).await {
        Err(cairn_cas::CasError::Missing { .. }) => {}
        other => panic!("an index entry for a chunk of the failed pack was committed: {other:?}"),
    }
    assert_clean(&engine).await;
    // The store takes the same write now.
    fs.write(&Creds::root(), s.ino, 0, &s.data)
        .await
        .expect("write");
    fs.commit().await.expect("commit after the restart");
    assert!(get(&fs, "f").await.expect("read") == s.data);
    assert_clean(&engine).await;
}

/// The faults stop: the waiting layer is stored on its next try, the same
/// commit succeeds, and the data is there after a restart.
async fn recovers_after_the_faults_stop(plan: FaultPlan) {
    let s = write_while_packs_fail(plan).await;
    s.faults.stop();
    let fs = s.engine.root_dataset().await;
    // A PUT already on its last attempt when the faults stopped may still
    // fail this first commit; the one after must work.
    if let Err(e) = fs.commit().await {
        assert_eq!(
            e.kind,
            ErrorKind::Io,
            "commit after the faults stopped: {e}"
        );
        fs.commit()
            .await
            .expect("commit once the object store works again");
    }
    assert!(get(&fs, "f").await.expect("read") == s.data);
    drop(fs);
    s.engine.close().await.expect("close");
    drop(s.engine);
    let url = format!("file://{}", s.dir.path().display());
    let engine = Engine::open(&url, EngineOptions::default())
        .await
        .expect("reopen");
    let fs = engine.root_dataset().await;
    let got = get(&fs, "f").await.expect("read after restart");
    assert!(
        got == s.data,
        "after recovery and a restart the file has {} bytes, wrote {}",
        got.len(),
        s.data.len()
    );
    assert_clean(&engine).await;
}

fn hanging() -> FaultPlan {
    FaultPlan::failing(PACKS, Some(Duration::from_millis(40)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pack_put_commits_nothing_of_its_writes() {
    crash_loses_only_the_unacknowledged_write(FaultPlan::failing(PACKS, None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_pack_put_commits_nothing_of_its_writes() {
    crash_loses_only_the_unacknowledged_write(hanging()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_waiting_on_a_failed_pack_put_succeed_after_the_faults_stop() {
    recovers_after_the_faults_stop(FaultPlan::failing(PACKS, None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_waiting_on_a_timed_out_pack_put_succeed_after_the_faults_stop() {
    recovers_after_the_faults_stop(hanging()).await;
}
