//! Reads racing repacks: round after round, gc merges the small pack
//! holding a file's chunks with another into a new pack and deletes the
//! old one, while a reader (which takes no lock) reads the file. Every read
//! returns the file's bytes, never a missing pack or chunk, never other
//! bytes: gc deletes a pack only after the batch repointing its chunks
//! committed, and a read that finds its pack gone looks its chunks up
//! again.
mod common;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_engine::{Engine, EngineOptions, FaultPlan, Faults, KvOptions};
use cairn_fs::{Creds, Filesystem};
use common::*;

const ROUNDS: u64 = 40;
/// Readers of the file at once.
const READERS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_repacks_see_every_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    // Packs under 1 MiB are small; gc merges small packs when it has two.
    // Pack reads are slowed (up to 20 ms, as on a remote store) so a read
    // that located its chunks before a repoint often reaches the store
    // after the old pack was deleted.
    let faults = Faults::new();
    let options = EngineOptions {
        pack_bytes: Some(4 << 20),
        kv: KvOptions {
            wrap: Some(faults.wrapper()),
            ..Default::default()
        },
        ..Default::default()
    };
    let engine = Engine::open(&url, options).await.expect("open");
    faults.start(FaultPlan {
        seed: 1,
        max_latency: Duration::from_millis(20),
        only_matching: Some("packs/"),
        ..Default::default()
    });
    let fs = engine.root_dataset().await;
    let data = noise(512 << 10, 1);
    put(&fs, "f", &data).await;
    engine.flush().await.expect("flush");

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (fs, stop, data) = (fs.clone(), stop.clone(), data.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let got = get(&fs, "f").await.unwrap_or_else(|e| {
                        panic!("reader {r}, read {reads} racing a repack failed: {e}")
                    });
                    assert!(
                        got == data,
                        "reader {r}, read {reads} racing a repack returned other bytes ({} of {})",
                        got.len(),
                        data.len()
                    );
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();
    let mut moved = 0;
    let mut deleted = 0;
    for round in 0..ROUNDS {
        // A new small pack with a live chunk, and the last round's one dead
        // beside the file in the merged pack: gc merges the two again.
        put(&fs, &format!("junk{round}"), &noise(64 << 10, 100 + round)).await;
        if round > 0 {
            let name = format!("junk{}", round - 1);
            fs.remove(&Creds::root(), fs.info().root, name.as_bytes())
                .await
                .expect("remove");
        }
        engine.flush().await.expect("flush");
        let report = engine.gc().await.expect("gc");
        moved += report.chunks_moved;
        deleted += report.packs_deleted;
    }
    stop.store(true, Ordering::Release);
    let mut reads = 0;
    for r in readers {
        reads += r.await.expect("reader");
    }
    eprintln!(
        "{reads} reads raced {ROUNDS} repacks: {moved} chunks moved, {deleted} packs deleted"
    );
    assert!(
        deleted >= ROUNDS,
        "gc deleted only {deleted} packs in {ROUNDS} rounds: the file's chunks did not move each round"
    );
    assert!(
        reads >= ROUNDS,
        "only {reads} reads overlapped {ROUNDS} repacks"
    );
    assert!(get(&fs, "f").await.expect("read") == data);
    assert_clean(&engine).await;
}
