//! In-place restore: a deleted file comes back in the live dataset (same
//! path or a new one), without copying data.
mod common;
use common::*;

#[test]
fn in_place_restore_brings_files_back() {
    let (dir, s) = server();
    let data = noise(5 << 20, 5);
    put(&s, dir.path(), "/report.pdf", &data);
    cairn_ok(&s, &["dataset", "snapshot", "root", "s"]);
    nfs_remove(s.nfs_port, "/report.pdf");
    let before = cairn_json(&s, &["stats"]);
    let r = cairn_json(
        &s,
        &[
            "dataset",
            "restore",
            "--snapshot",
            "root@s",
            "--source",
            "/report.pdf",
            "--in-place",
        ],
    );
    assert_eq!(r["bytes"], 5 << 20);
    assert_eq!(r["inodes"], 1);
    assert!(cat(&s, "/report.pdf") == data, "restored in place");
    let after = cairn_json(&s, &["stats"]);
    assert_eq!(
        before["stored_bytes"], after["stored_bytes"],
        "no data copied"
    );
    let human = cairn_ok(
        &s,
        &[
            "dataset",
            "restore",
            "--snapshot",
            "root@s",
            "--source",
            "/report.pdf",
            "--in-place",
            "--target",
            "/copy.pdf",
        ],
    );
    assert!(human.contains("no data copied"), "{human}");
    assert!(cat(&s, "/copy.pdf") == data);
    let e = cairn_fails(
        &s,
        &[
            "dataset",
            "restore",
            "--snapshot",
            "root@s",
            "--source",
            "/x",
            "--in-place",
        ],
        3,
    );
    assert!(e.contains("/x"), "{e}");
}
