//! `cairn dataset clone|promote|rollback|diff`.
mod common;
use common::*;

#[test]
fn clone_promote_rollback_and_diff() {
    let (dir, s) = server();
    put(&s, dir.path(), "/keep", b"keep");
    put(&s, dir.path(), "/gone", b"gone");
    cairn_ok(&s, &["dataset", "snapshot", "root", "a"]);
    let c = cairn_json(&s, &["dataset", "clone", "root@a", "dev"]);
    assert_eq!(c["origin"], "root@a");
    let e = cairn_fails(&s, &["dataset", "delete-snapshot", "root@a"], 5);
    assert!(e.contains("dev") && e.contains("promote"), "{e}");
    let p = cairn_json(&s, &["dataset", "promote", "dev"]);
    assert!(p["origin"].is_null());
    cairn_ok(&s, &["dataset", "delete-snapshot", "root@a"]);

    cairn_ok(&s, &["dataset", "snapshot", "root", "b"]);
    nfs_remove(s.nfs_port, "/gone");
    put(&s, dir.path(), "/new", b"new");
    let d = cairn_json(&s, &["dataset", "diff", "root@b"]);
    let changes: Vec<(String, String)> = d
        .as_array()
        .expect("array")
        .iter()
        .map(|e| {
            (
                e["change"].as_str().unwrap_or("").to_string(),
                e["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        changes.contains(&("removed".into(), "/gone".into())),
        "{changes:?}"
    );
    assert!(
        changes.contains(&("added".into(), "/new".into())),
        "{changes:?}"
    );
    let human = cairn_ok(&s, &["dataset", "diff", "root@b"]);
    assert!(
        human.contains("A  /new") && human.contains("D  /gone"),
        "{human}"
    );

    cairn_ok(&s, &["dataset", "snapshot", "root", "c"]);
    let d2 = cairn_json(&s, &["dataset", "diff", "root@b", "root@c"]);
    assert_eq!(d2.as_array().map(Vec::len), d.as_array().map(Vec::len));
    let e = cairn_fails(&s, &["dataset", "rollback", "root@b"], 5);
    assert!(e.contains("--destroy-newer") && e.contains('c'), "{e}");
    let r = cairn_json(&s, &["dataset", "rollback", "root@b", "--destroy-newer"]);
    assert!(r["discarded"].as_u64().is_some_and(|n| n > 0), "{r}");
    assert_eq!(cat(&s, "/gone"), b"gone");
    assert!(
        run("nfs-cat", &[&s.url("/new")]).status.code() != Some(0),
        "rolled back"
    );
}
