//! A read racing writes to the same extent group (each write replaces the
//! group's map and frees the old one; reads take no lock) returns data, never
//! a "missing map/chunk" error, and each chunk it returns is one some write
//! put there.
mod common;
use common::*;

use cairn_fs::{Creds, Filesystem};

const CHUNK: usize = 65536;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_writes_see_whole_chunks() {
    let engine = memory_engine().await;
    let fs = engine.root_dataset().await;
    // Eight chunks in one group; the writer rewrites chunk 0, the reader
    // reads chunks 1..8, which never change.
    let base = noise(8 * CHUNK, 1);
    let ino = put(&fs, "f", &base).await;
    let writer = {
        let fs = fs.clone();
        tokio::spawn(async move {
            for round in 0..300u64 {
                fs.write(&Creds::root(), ino, 0, &noise(CHUNK, 100 + round))
                    .await
                    .expect("write");
            }
        })
    };
    let mut reads = 0u64;
    while !writer.is_finished() {
        let (d, _) = fs
            .read(&Creds::root(), ino, CHUNK as u64, 7 * CHUNK as u32)
            .await
            .unwrap_or_else(|e| panic!("read {reads} racing a write failed: {e}"));
        assert!(d[..] == base[CHUNK..], "read {reads} returned other bytes");
        reads += 1;
    }
    writer.await.expect("writer");
    assert!(reads > 10, "only {reads} reads overlapped the writes");
    assert_clean(&engine).await;
}
