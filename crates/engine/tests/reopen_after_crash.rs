//! Write, make durable, drop the handle without a clean close, reopen from the
//! same `file://` directory: everything made durable is there and fsck is clean.

use cairn_engine::{Engine, EngineOptions};
use cairn_fs::{CreateHow, Creds, Filesystem, SetAttr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_writes_survive_an_unclean_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    let root = Creds::root();
    let big: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let (file, small, sub) = {
        let engine = Engine::open(&url, EngineOptions::default())
            .await
            .expect("open");
        let fs = engine.root_dataset().await;
        let r = fs.info().root;
        let f = fs
            .create(&root, r, b"big", CreateHow::Guarded, &SetAttr::default())
            .await
            .expect("create");
        fs.write(&root, f.ino, 0, &big).await.expect("write");
        let s = fs
            .create(&root, r, b"small", CreateHow::Guarded, &SetAttr::default())
            .await
            .expect("create");
        fs.write(&root, s.ino, 0, b"inline bytes")
            .await
            .expect("write");
        let d = fs
            .mkdir(&root, r, b"sub", &SetAttr::default())
            .await
            .expect("mkdir");
        fs.link(&root, s.ino, d.ino, b"hardlink")
            .await
            .expect("link");
        fs.commit().await.expect("durability barrier");
        // Dropped without close(): whatever was not flushed is lost, what was is not.
        drop(fs);
        drop(engine);
        (f.ino, s.ino, d.ino)
    };
    let engine = Engine::open(&url, EngineOptions::default())
        .await
        .expect("reopen");
    let fs = engine.root_dataset().await;
    let (data, eof) = fs.read(&root, file, 0, 2_000_000).await.expect("read big");
    assert!(eof);
    assert!(
        data.as_ref() == big.as_slice(),
        "big file differs after reopen"
    );
    let (data, _) = fs.read(&root, small, 0, 100).await.expect("read small");
    assert_eq!(data.as_ref(), b"inline bytes");
    assert_eq!(
        fs.lookup(&root, sub, b"hardlink")
            .await
            .expect("lookup")
            .ino,
        small
    );
    assert_eq!(fs.getattr(small).await.expect("getattr").nlink, 2);
    let report = engine.fsck().await.expect("fsck");
    assert!(report.is_clean(), "fsck after reopen:\n{report}");
    // Inode numbers are never reused after a reopen.
    let n = fs
        .create(
            &root,
            fs.info().root,
            b"new",
            CreateHow::Guarded,
            &SetAttr::default(),
        )
        .await
        .expect("create");
    assert!(n.ino > file.max(small).max(sub), "inode {} reused", n.ino);
}
