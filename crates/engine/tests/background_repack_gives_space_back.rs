//! The background repacker gives the space of deleted data back on its
//! own, while a writer keeps replacing a file and readers keep reading the
//! survivors: the pack files shrink to what is live (within the repack
//! fraction), every read returns its file's bytes, fsck is clean, and
//! closing the store stops the task.
mod common;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_engine::{BackgroundRepack, Engine, EngineOptions};
use cairn_fs::{Creds, Filesystem};
use common::*;

const FILES: u64 = 32;
/// Not a multiple of the pack size, so packs hold parts of several files.
const FILE_BYTES: usize = 160 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_repack_gives_space_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    let options = EngineOptions {
        pack_bytes: Some(256 << 10),
        background_repack: Some(BackgroundRepack {
            bytes_per_sec: 64 << 20,
            interval: Duration::from_millis(100),
        }),
        ..Default::default()
    };
    let engine = Engine::open(&url, options).await.expect("open");
    let fs = engine.root_dataset().await;
    let files: Vec<Vec<u8>> = (0..FILES).map(|i| noise(FILE_BYTES, i)).collect();
    for (i, data) in files.iter().enumerate() {
        put(&fs, &format!("f{i}"), data).await;
    }
    engine.flush().await.expect("flush");
    let written = pack_files(dir.path()).1;
    // Keep one file in four.
    for i in (0..FILES).filter(|i| i % 4 != 0) {
        fs.remove(&Creds::root(), fs.info().root, format!("f{i}").as_bytes())
            .await
            .expect("remove");
    }
    engine.flush().await.expect("flush");
    let kept: Vec<(String, Vec<u8>)> = (0..FILES)
        .filter(|i| i % 4 == 0)
        .map(|i| (format!("f{i}"), files[i as usize].clone()))
        .collect();
    let live = (kept.len() * FILE_BYTES) as u64;

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (fs, stop, kept) = (fs.clone(), stop.clone(), kept.clone());
        tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::Acquire) {
                for (name, data) in &kept {
                    let got = get(&fs, name)
                        .await
                        .unwrap_or_else(|e| panic!("read {reads} of {name} failed: {e}"));
                    assert!(
                        &got == data,
                        "read {reads} of {name} returned other bytes ({} of {})",
                        got.len(),
                        data.len()
                    );
                    reads += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            reads
        })
    };
    let writer = {
        let (fs, stop) = (fs.clone(), stop.clone());
        tokio::spawn(async move {
            let mut round = 0u64;
            let mut last = Vec::new();
            while !stop.load(Ordering::Acquire) {
                last = noise(64 << 10, 1000 + round);
                put(&fs, "churn", &last).await;
                round += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            last
        })
    };

    // Converged: at most what is live over the repack fraction, plus the
    // churn file's packs and a partly filled pack or two.
    let bound = (live as f64 / cairn_engine::REPACK_LIVE_FRACTION) as u64 + (1 << 20);
    let t = Instant::now();
    let mut on_disk = pack_files(dir.path()).1;
    while on_disk > bound && t.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        on_disk = pack_files(dir.path()).1;
    }
    stop.store(true, Ordering::Release);
    let reads = reader.await.expect("reader");
    let churn = writer.await.expect("writer");
    eprintln!(
        "packs: {written} bytes written, {live} live after the deletes, {on_disk} on disk \
         after {:?} of background repacking; {reads} reads meanwhile",
        t.elapsed()
    );
    assert!(
        on_disk <= bound,
        "the background repacker left {on_disk} bytes of packs for {live} live \
         (bound {bound}, {written} written)"
    );
    assert!(reads > 0, "no read overlapped the background repacking");
    for (name, data) in &kept {
        assert!(
            &get(&fs, name).await.expect("read") == data,
            "{name} changed"
        );
    }
    assert!(get(&fs, "churn").await.expect("read") == churn);
    assert_clean(&engine).await;
    tokio::time::timeout(Duration::from_secs(30), engine.close())
        .await
        .expect("close stops the background repacker")
        .expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repack_pass_keeps_its_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    let options = EngineOptions {
        pack_bytes: Some(256 << 10),
        ..Default::default()
    };
    let engine = Engine::open(&url, options).await.expect("open");
    let fs = engine.root_dataset().await;
    for i in 0..16 {
        put(&fs, &format!("f{i}"), &noise(FILE_BYTES, i)).await;
    }
    for i in (0..16).filter(|i| i % 4 != 0) {
        fs.remove(&Creds::root(), fs.info().root, format!("f{i}").as_bytes())
            .await
            .expect("remove");
    }
    engine.flush().await.expect("flush");
    let rate = 4u64 << 20;
    let t = Instant::now();
    let r = engine.repack(Some(rate)).await.expect("repack");
    let took = t.elapsed();
    let bytes = r.bytes_read + r.bytes_written;
    eprintln!("{r:?} in {took:?}");
    assert!(
        r.packs_deleted > 0 && r.bytes_read > 0,
        "the pass moved nothing: {r:?}"
    );
    let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
    assert!(
        took + Duration::from_millis(1) >= due,
        "{bytes} bytes in {took:?}: faster than {rate} bytes/s (due {due:?})"
    );
    for i in (0..16).filter(|i| i % 4 == 0) {
        assert!(get(&fs, &format!("f{i}")).await.expect("read") == noise(FILE_BYTES, i));
    }
    assert_clean(&engine).await;
}
