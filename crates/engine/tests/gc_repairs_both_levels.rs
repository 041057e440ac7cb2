//! `gc` sweeps maps and chunks nothing references (as an interrupted
//! operation could leave) and sets wrong refcounts of both levels back to
//! what is counted; afterwards fsck is clean and files read the same.
mod common;
use common::*;

use cairn_codec::{ChunkHash, ChunkRef, ExtentMap, Key, KeyPrefix, encode_u64};

#[tokio::test]
async fn gc_sweeps_leaked_maps_and_chunks_and_fixes_refcounts() {
    let engine = memory_engine().await;
    let fs = engine.root_dataset().await;
    let data = noise(5 * 65536 + 100, 7);
    put(&fs, "f", &data).await;
    let before = engine.chunk_stats().await.expect("stats");
    let kv = engine.kv_for_tests();

    // A leaked chunk, and a leaked map naming it, each with a refcount.
    let leaked = b"left by an interrupted operation".to_vec();
    let leaked_hash = ChunkHash::of(&leaked);
    let map = ExtentMap {
        slots: vec![Some(ChunkRef {
            hash: leaked_hash,
            len: leaked.len() as u32,
        })],
    };
    let map_hash = map.hash();
    // Wrong counts on the file's map and one of its chunks.
    let (start, end) = Key::prefix_range(KeyPrefix::MapRef);
    let (live_map_ref, _) = kv.scan(&start, &end, 1).await.expect("scan")[0].clone();
    let (start, end) = Key::prefix_range(KeyPrefix::Ref);
    let (live_chunk_ref, _) = kv.scan(&start, &end, 1).await.expect("scan")[0].clone();
    // The leaked index entry points at a stored frame (of another chunk).
    let (start, end) = Key::prefix_range(KeyPrefix::Chunk);
    let (_, loc) = kv.scan(&start, &end, 1).await.expect("scan")[0].clone();
    let mut t = kv.txn();
    t.put(Key::Chunk(leaked_hash).encode(), loc);
    t.put(Key::Ref(leaked_hash).encode(), encode_u64(1));
    t.put(Key::Map(map_hash).encode(), map.encode());
    t.put(Key::MapRef(map_hash).encode(), encode_u64(1));
    t.put(live_map_ref.to_vec(), encode_u64(9));
    t.put(live_chunk_ref.to_vec(), encode_u64(9));
    t.commit().await.expect("plant");
    let planted = engine.fsck().await.expect("fsck");
    assert!(!planted.is_clean(), "fsck sees the damage:\n{planted}");

    let report = engine.gc().await.expect("gc");
    assert_eq!(
        (report.swept, report.swept_maps, report.fixed_refcounts),
        (1, 1, 2),
        "{report:?}"
    );
    assert_clean(&engine).await;
    assert_eq!(engine.chunk_stats().await.expect("stats"), before);
    assert_eq!(get(&fs, "f").await.expect("read"), data);
}
