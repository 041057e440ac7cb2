//! `cairn dataset snapshot|list-snapshots|info DS@SNAP|delete-snapshot`,
//! positional and flag forms, writable snapshots, bare names.
mod common;
use common::*;

#[test]
fn snapshot_commands() {
    let (dir, s) = server();
    put(&s, dir.path(), "/a", &noise(200_000, 1));
    let snap = cairn_json(&s, &["dataset", "snapshot", "root", "monday"]);
    assert_eq!(snap["spec"], "root@monday");
    assert!(snap["clone"].is_null());
    cairn_ok(
        &s,
        &[
            "dataset",
            "snapshot",
            "--source",
            "root",
            "--name",
            "tuesday",
            "--readonly",
        ],
    );
    let w = cairn_json(&s, &["dataset", "snapshot", "root", "work", "--writable"]);
    assert_eq!(w["clone"]["name"], "work");
    assert_eq!(w["clone"]["origin"], "root@work");
    cairn_ok(&s, &["dataset", "snapshot", "work", "monday"]);

    let all = cairn_json(&s, &["dataset", "list-snapshots"]);
    let specs: Vec<&str> = all
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|x| x["spec"].as_str())
        .collect();
    assert_eq!(
        specs,
        ["root@monday", "root@tuesday", "root@work", "work@monday"],
        "creation order"
    );
    let of_work = cairn_json(&s, &["dataset", "list-snapshots", "work"]);
    assert_eq!(of_work.as_array().map(Vec::len), Some(1));
    let of_root = cairn_json(&s, &["dataset", "list-snapshots", "--dataset", "root"]);
    assert_eq!(of_root.as_array().map(Vec::len), Some(3));
    let human = cairn_ok(&s, &["dataset", "list-snapshots"]);
    assert!(
        human.contains("SNAPSHOT") && human.contains("root@tuesday"),
        "{human}"
    );

    put(&s, dir.path(), "/b", &noise(50_000, 2));
    let info = cairn_json(&s, &["dataset", "info", "root@tuesday"]);
    assert_eq!(info["referenced_bytes"], 200_000);
    assert!(
        info["unique_bytes"].is_u64() && info["written_bytes"].is_u64(),
        "{info}"
    );

    // A bare name works where unambiguous and lists candidates where not.
    cairn_ok(&s, &["dataset", "info", "root@tuesday"]);
    let e = cairn_fails(&s, &["dataset", "delete-snapshot", "monday"], 2);
    assert!(
        e.contains("root@monday") && e.contains("work@monday"),
        "{e}"
    );
    cairn_ok(&s, &["dataset", "delete-snapshot", "tuesday"]);
    cairn_ok(&s, &["dataset", "delete-snapshot", "--name", "work@monday"]);
    cairn_ok(&s, &["dataset", "delete-snapshot", "root@monday"]);
    let e = cairn_fails(&s, &["dataset", "delete-snapshot", "root@work"], 5);
    assert!(e.contains("work") && e.contains("clones"), "{e}");
    let left = cairn_json(&s, &["dataset", "list-snapshots"]);
    assert_eq!(left.as_array().map(Vec::len), Some(1));
}
