//! Copy-out restore: a 32 MiB file comes back byte-identical after the live
//! file was deleted; existing files are refused without --force; directory
//! trees restore recursively.
mod common;
use common::*;

#[test]
fn copy_out_restores_files_and_trees() {
    let (dir, s) = server();
    let big = noise(32 << 20, 32);
    put(&s, dir.path(), "/big.bin", &big);
    nfs_mkdir(s.nfs_port, "/docs");
    put(&s, dir.path(), "/docs/a.txt", b"alpha");
    put(&s, dir.path(), "/docs/b.txt", &noise(70_000, 7));
    cairn_ok(&s, &["dataset", "snapshot", "root", "s"]);
    nfs_remove(s.nfs_port, "/big.bin");
    assert!(
        run("nfs-cat", &[&s.url("/big.bin")]).status.code() != Some(0),
        "deleted"
    );

    let out = dir.path().join("big.out");
    let r = cairn_json(
        &s,
        &[
            "dataset",
            "restore",
            "--snapshot",
            "root@s",
            "--source",
            "/big.bin",
            "--destination",
            out.to_str().expect("path"),
        ],
    );
    assert_eq!(r["bytes"], 32 << 20);
    let got = std::fs::read(&out).expect("restored file");
    assert!(got == big, "restored bytes differ (len {})", got.len());

    let e = cairn_fails(
        &s,
        &[
            "dataset",
            "restore",
            "--snapshot",
            "root@s",
            "--source",
            "/big.bin",
            "--destination",
            out.to_str().expect("path"),
        ],
        4,
    );
    assert!(e.contains("--force"), "{e}");
    cairn_ok(
        &s,
        &[
            "dataset",
            "restore",
            "--snapshot",
            "root@s",
            "--source",
            "/big.bin",
            "--destination",
            out.to_str().expect("path"),
            "--force",
        ],
    );

    // A directory, into an existing local directory.
    let into = dir.path().join("into");
    std::fs::create_dir(&into).expect("mkdir");
    cairn_ok(
        &s,
        &[
            "dataset",
            "restore",
            "--snapshot",
            "s",
            "--source",
            "/docs",
            "--destination",
            into.to_str().expect("path"),
        ],
    );
    assert_eq!(std::fs::read(into.join("docs/a.txt")).expect("a"), b"alpha");
    assert_eq!(
        std::fs::read(into.join("docs/b.txt")).expect("b"),
        noise(70_000, 7)
    );
    let e = cairn_fails(
        &s,
        &[
            "dataset",
            "restore",
            "--snapshot",
            "root@s",
            "--source",
            "/nope",
            "--destination",
            dir.path().join("x").to_str().expect("path"),
        ],
        3,
    );
    assert!(e.contains("/nope"), "{e}");
}
