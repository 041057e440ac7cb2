//! `cairn dataset create|list|info|delete|set-default|get-default`, in both
//! the positional and the flag forms, with `--json` checked.
mod common;
use common::*;

#[test]
fn dataset_commands() {
    let (dir, s) = server();
    let created = cairn_json(&s, &["dataset", "create", "home"]);
    assert_eq!(created["name"], "home");
    let created = cairn_json(
        &s,
        &[
            "dataset",
            "create",
            "--name",
            "scratch",
            "--chunk-size",
            "16KiB",
        ],
    );
    assert_eq!(created["chunk_size_bytes"], 16384);

    let list = cairn_json(&s, &["dataset", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["home", "root", "scratch"]);
    let human = cairn_ok(&s, &["dataset", "list"]);
    assert!(
        human.lines().next().unwrap_or("").contains("NAME"),
        "table header: {human}"
    );
    assert!(human.contains("root") && human.contains('*'), "{human}");

    put(&s, dir.path(), "/f", &noise(100_000, 1));
    let info = cairn_json(&s, &["dataset", "info", "root"]);
    assert_eq!(info["default"], true);
    assert_eq!(info["referenced"], 100_000);
    assert!(
        info["uuid"].as_str().is_some_and(|u| u.len() == 36),
        "{info}"
    );
    let info = cairn_json(&s, &["dataset", "info", "--name", "home"]);
    assert_eq!(info["files"], 1, "just the root directory");
    let human = cairn_ok(&s, &["dataset", "info", "root"]);
    assert!(
        human.contains("referenced") && human.contains("97.7 KiB"),
        "{human}"
    );

    assert_eq!(cairn_json(&s, &["dataset", "get-default"])["name"], "root");
    cairn_ok(&s, &["dataset", "set-default", "home"]);
    assert_eq!(cairn_json(&s, &["dataset", "get-default"])["name"], "home");
    assert_eq!(cairn_ok(&s, &["dataset", "get-default"]).trim(), "home");
    cairn_ok(&s, &["dataset", "set-default", "--name", "root"]);

    let e = cairn_fails(&s, &["dataset", "delete", "root"], 5);
    assert!(e.contains("default"), "{e}");
    cairn_ok(&s, &["dataset", "snapshot", "scratch", "s1"]);
    let e = cairn_fails(&s, &["dataset", "delete", "scratch"], 5);
    assert!(e.contains("s1") && e.contains("recursive"), "{e}");
    cairn_ok(
        &s,
        &["dataset", "delete", "--name", "scratch", "--recursive"],
    );
    cairn_json(&s, &["dataset", "delete", "home"]);
    let list = cairn_json(&s, &["dataset", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
}
