//! `used` is the space a file's stored chunks take, kept with its extents:
//! a hole costs nothing, zeros written over data punch a hole, truncates
//! give space back, and snapshots, clones and restored copies report the
//! allocation the file had. `next_data` finds the stored runs, skipping
//! holes. fsck checks every figure against the extents.
mod common;
use cairn_fs::{Creds, Filesystem, SetAttr};
use common::*;

const CS: u64 = 64 * 1024;

async fn used(fs: &cairn_engine::DatasetFs, path: &str) -> u64 {
    let ino = resolve(fs, path).await.expect("resolve");
    fs.getattr(ino).await.expect("getattr").used
}

async fn write_at(fs: &cairn_engine::DatasetFs, ino: u64, offset: u64, data: &[u8]) {
    fs.write(&Creds::root(), ino, offset, data)
        .await
        .expect("write");
}

async fn truncate(fs: &cairn_engine::DatasetFs, ino: u64, size: u64) {
    let a = SetAttr {
        size: Some(size),
        ..Default::default()
    };
    fs.setattr(&Creds::root(), ino, &a, None)
        .await
        .expect("truncate");
}

#[tokio::test]
async fn allocation_follows_the_stored_chunks() {
    let engine = memory_engine().await;
    let fs = engine.root_dataset().await;
    let root = Creds::root();
    let ino = put(&fs, "img", b"").await;

    // 50 KB at 100 MiB: one chunk, the rest a hole.
    write_at(&fs, ino, 100 << 20, &noise(50_000, 1)).await;
    assert_eq!(used(&fs, "img").await, 50_000);
    assert_eq!(
        fs.next_data(&root, ino, 0).await.expect("next_data"),
        Some((100 << 20)..(100 << 20) + 50_000),
        "everything before the data is a hole"
    );
    assert_eq!(
        fs.next_data(&root, ino, (100 << 20) + 50_000)
            .await
            .expect("eof"),
        None
    );

    // More data at two other offsets: three runs.
    write_at(&fs, ino, 10, &noise(2 * CS as usize, 2)).await;
    write_at(&fs, ino, 7 * CS, &noise(100, 3)).await;
    // Chunks 0..=2 (the write spans three), chunk 7 whole (the file goes
    // on past it), chunk 1600 as before.
    assert_eq!(used(&fs, "img").await, 3 * CS + CS + 50_000);
    assert_eq!(
        fs.next_data(&root, ino, 5).await.expect("next_data"),
        Some(5..3 * CS)
    );
    assert_eq!(
        fs.next_data(&root, ino, 3 * CS).await.expect("next_data"),
        Some(7 * CS..8 * CS)
    );

    // Zeros over a whole chunk punch a hole.
    write_at(&fs, ino, CS, &vec![0; CS as usize]).await;
    assert_eq!(used(&fs, "img").await, 2 * CS + CS + 50_000);
    assert_eq!(
        fs.next_data(&root, ino, 0).await.expect("next_data"),
        Some(0..CS),
        "the zeroed chunk splits the run"
    );

    engine.create_snapshot("root", "s").await.expect("snapshot");
    let before = 3 * CS + 50_000;

    // Truncate down into chunk 7: chunks past it go, its tail is cut.
    truncate(&fs, ino, 7 * CS + 10).await;
    assert_eq!(used(&fs, "img").await, 2 * CS + 10);
    // Up again: the extension is a hole.
    truncate(&fs, ino, 1 << 30).await;
    assert_eq!(used(&fs, "img").await, 2 * CS + 10);
    assert_eq!(
        fs.next_data(&root, ino, 3 * CS).await.expect("next_data"),
        Some(7 * CS..7 * CS + 10)
    );
    assert_eq!(fs.next_data(&root, ino, 8 * CS).await.expect("eof"), None);

    // The snapshot, a clone of it and a restored copy keep what it had.
    let snap = engine.snapshot("root@s").await.expect("snapshot view");
    assert_eq!(used(&snap, "img").await, before);
    engine.clone_snapshot("root@s", "c").await.expect("clone");
    let clone = engine.dataset("c").await.expect("clone view");
    assert_eq!(used(&clone, "img").await, before);
    engine
        .restore("root@s", "/img", Some("/img.old"))
        .await
        .expect("restore");
    assert_eq!(used(&fs, "img.old").await, before);

    // Back to empty, then inline: what is inline is what it uses.
    truncate(&fs, ino, 0).await;
    assert_eq!(used(&fs, "img").await, 0);
    write_at(&fs, ino, 0, b"tiny").await;
    assert_eq!(used(&fs, "img").await, 4);

    // Directories and symlinks report one block.
    let d = mkdir(&fs, "dir").await;
    assert_eq!(fs.getattr(d).await.expect("getattr").used, 4096);
    assert_clean(&engine).await;
}
