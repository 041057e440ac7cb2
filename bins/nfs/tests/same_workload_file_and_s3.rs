//! The same workload through NFS on `file://` and on `s3://` (moto) leaves
//! identical bytes and identical fsck results.
mod common;
use cairn_testkit::Moto;
use cairn_testkit::nfs3_types::nfs3::{Nfs3Option, sattr3, stable_how};
use common::*;

/// Writes, overwrites, a truncate, a rename, a hard link, a delete and a
/// snapshot; returns every file's path and bytes, live and in the snapshot.
async fn workload(s: &Server) -> Vec<(String, Vec<u8>)> {
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let r = root(&c);
    let d = mkdir(&mut c, &r, b"d", 0o755).await.expect("mkdir");
    for i in 0..6u64 {
        let f = create(&mut c, &d, format!("f{i}").as_bytes(), 0o644)
            .await
            .expect("create");
        write(
            &mut c,
            &f,
            0,
            &noise(100_000 * (i as usize + 1), i),
            stable_how::UNSTABLE,
        )
        .await
        .expect("write");
        write(&mut c, &f, 5000 * i, b"patch", stable_how::UNSTABLE)
            .await
            .expect("overwrite");
        commit(&mut c, &f).await.expect("commit");
    }
    let f2 = walk(&mut c, "d/f2").await.expect("f2");
    setattr(
        &mut c,
        &f2,
        sattr3 {
            size: Nfs3Option::Some(1234),
            ..Default::default()
        },
    )
    .await
    .expect("truncate");
    rename(&mut c, &d, b"f3", &r, b"moved")
        .await
        .expect("rename");
    let f4 = walk(&mut c, "d/f4").await.expect("f4");
    link(&mut c, &f4, &r, b"hard").await.expect("link");
    snapshot(s, "root", "snap").await;
    remove(&mut c, &d, b"f5").await.expect("remove");
    let f0 = walk(&mut c, "d/f0").await.expect("f0");
    write(&mut c, &f0, 0, b"after the snapshot", stable_how::FILE_SYNC)
        .await
        .expect("write");
    let mut out = Vec::new();
    for p in [
        "d/f0",
        "d/f1",
        "d/f2",
        "d/f4",
        "moved",
        "hard",
        ".snapshots/snap/d/f0",
        ".snapshots/snap/d/f5",
        ".snapshots/snap/moved",
    ] {
        let fh = walk(&mut c, p).await.expect(p);
        out.push((p.to_string(), read_all(&mut c, &fh).await.expect("read")));
    }
    out
}

#[tokio::test]
async fn file_and_s3_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = Server::nfs(
        &format!("file://{}", dir.path().join("local").display()),
        &[],
    );
    let on_file = workload(&local).await;
    let moto = Moto::start("cairn-same");
    let cfg = dir.path().join("s3.toml");
    std::fs::write(&cfg, moto.config("same", "")).expect("config");
    let remote = Server::start(
        "cairn-nfs",
        &[
            "-c",
            cfg.to_str().expect("path"),
            "--nfs-listen",
            "127.0.0.1:0",
            "--rpc-listen",
            "127.0.0.1:0",
        ],
    )
    .expect("server on s3://");
    let on_s3 = workload(&remote).await;
    assert_eq!(on_file.len(), on_s3.len());
    for ((p, a), (_, b)) in on_file.iter().zip(&on_s3) {
        assert!(
            a == b,
            "{p}: {} bytes on file://, {} on s3://",
            a.len(),
            b.len()
        );
    }
    let fsck = |s: &Server| {
        let s = s.endpoint();
        async move {
            let mut a = cairn_rpc::connect(&s, None).await.expect("admin");
            a.fsck(cairn_rpc::pb::FsckRequest {})
                .await
                .expect("fsck")
                .into_inner()
        }
    };
    let (fa, fb) = (fsck(&local).await, fsck(&remote).await);
    assert!(fa.clean && fb.clean, "{:?} {:?}", fa.problems, fb.problems);
    assert_eq!(
        (fa.inodes, fa.dirents, fa.extents, fa.chunks),
        (fb.inodes, fb.dirents, fb.extents, fb.chunks),
        "same fsck figures"
    );
}
