//! Space comes back: write, snapshot, overwrite, delete the snapshot, gc:
//! each pack's live bytes match the index exactly (fsck), no pack without
//! live chunks is left, the pack files are the referenced frames plus
//! framing and at most as much dead data (the 50% repack rule); after
//! deleting everything and gc, no pack is left.
mod common;
use cairn_engine::{Engine, EngineOptions};
use cairn_fs::{Creds, Filesystem};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwritten_and_deleted_data_leaves_the_packs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    let options = EngineOptions {
        pack_bytes: Some(256 << 10),
        ..Default::default()
    };
    let engine = Engine::open(&url, options).await.expect("open");
    let fs = engine.root_dataset().await;
    let (a, b) = (noise(3 << 20, 1), noise(3 << 20, 2));
    put(&fs, "f", &a).await;
    put(&fs, "g", &b).await;
    engine.flush().await.expect("flush");
    engine.create_snapshot("root", "s").await.expect("snapshot");
    let a2 = noise(3 << 20, 3);
    put(&fs, "f", &a2).await;
    engine.flush().await.expect("flush");
    let (_, with_snapshot) = pack_files(dir.path());
    engine
        .delete_snapshot("root@s")
        .await
        .expect("delete snapshot");
    let report = engine.gc().await.expect("gc");
    assert!(
        report.packs_deleted > 0,
        "the old data's packs go: {report:?}"
    );
    let st = engine.chunk_stats().await.expect("stats");
    let (packs, on_disk) = pack_files(dir.path());
    let r = engine.fsck().await.expect("fsck");
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.reclaimable_packs, 0, "gc left nothing to reclaim:\n{r}");
    assert_eq!(r.packs, packs, "fsck saw every pack file");
    // Frames of referenced chunks, plus per pack its header, directory
    // (48 bytes per frame) and trailer; dead frames only in packs still at
    // least half live (gc rewrites the others).
    let exact = st.stored_bytes + packs * (16 + 37) + st.chunks * 48;
    assert!(
        on_disk >= exact && on_disk <= 2 * exact,
        "pack files hold {on_disk} bytes for {exact} referenced ({st:?}, {packs} packs; \
         {with_snapshot} bytes before the snapshot went)"
    );
    assert!(
        get(&fs, "f").await.expect("read f") == a2,
        "f reads its new data"
    );
    assert!(
        get(&fs, "g").await.expect("read g") == b,
        "g survives the repack"
    );

    // Delete everything: the packs go.
    for name in ["f", "g"] {
        fs.remove(&Creds::root(), fs.info().root, name.as_bytes())
            .await
            .expect("remove");
    }
    engine.gc().await.expect("gc");
    assert_eq!(pack_files(dir.path()), (0, 0), "no pack is left");
    assert_clean(&engine).await;
    engine.close().await.expect("close");
    drop((fs, engine));
    let engine = Engine::open(&url, EngineOptions::default())
        .await
        .expect("reopen");
    assert_clean(&engine).await;
}
