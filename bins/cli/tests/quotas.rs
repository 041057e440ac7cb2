//! Quotas end to end: `cairn dataset set/get` against the real server,
//! writes through a real NFS client (libnfs `nfs-cp`) refused with EDQUOT
//! past a refquota, deletes always allowed, `quota` counting what only
//! snapshots hold where `refquota` does not, and the settings kept across
//! a restart.
mod common;
use common::*;

/// Copy `data` to `path` with nfs-cp; whether it succeeded.
fn try_put(s: &Server, dir: &std::path::Path, path: &str, data: &[u8]) -> bool {
    let local = dir.join("upload.tmp");
    std::fs::write(&local, data).expect("local write");
    run("nfs-cp", &[local.to_str().expect("path"), &s.url(path)])
        .status
        .success()
}

fn get(s: &Server, prop: &str) -> serde_json::Value {
    cairn_json(s, &["dataset", "get", "root", prop])[prop].clone()
}

#[test]
fn refquota_refuses_writes_past_it_and_deletes_bring_it_back() {
    let (dir, s) = server();
    let first = noise(300_000, 1);
    put(&s, dir.path(), "/first", &first);
    assert_eq!(get(&s, "referenced"), 300_000);
    cairn_ok(&s, &["dataset", "set", "root", "refquota=512KiB"]);
    assert_eq!(get(&s, "refquota"), 512 * 1024);
    assert_eq!(get(&s, "available"), 512 * 1024 - 300_000);

    // Past the refquota: the write is refused, and the server says why.
    assert!(
        !try_put(&s, dir.path(), "/second", &noise(400_000, 2)),
        "a write past the refquota succeeded"
    );
    assert!(
        s.stderr().contains("refquota"),
        "no log line names the refquota:\n{}",
        s.stderr()
    );
    assert_eq!(cat(&s, "/first"), first, "what was written before changed");
    assert!(get(&s, "referenced").as_u64().expect("size") <= 512 * 1024);

    // Deleting works on a full dataset, and then writing works again.
    nfs_remove(s.nfs_port, "/second");
    nfs_remove(s.nfs_port, "/first");
    assert_eq!(get(&s, "referenced"), 0);
    let third = noise(400_000, 3);
    put(&s, dir.path(), "/third", &third);
    assert_eq!(cat(&s, "/third"), third);

    // Kept across a restart.
    let url = format!("file://{}", dir.path().join("store").display());
    s.stop();
    let s = Server::nfs(&url, &[]);
    let props = cairn_json(&s, &["dataset", "get", "root", "refquota", "referenced"]);
    assert_eq!(props["refquota"], 512 * 1024, "{props}");
    assert_eq!(props["referenced"], 400_000, "{props}");
    cairn_ok(&s, &["dataset", "set", "root", "refquota=none"]);
    assert_eq!(get(&s, "refquota"), serde_json::Value::Null);
}

#[test]
fn quota_counts_snapshots_and_refquota_does_not() {
    let (dir, s) = server();
    put(&s, dir.path(), "/old", &noise(300_000, 4));
    cairn_ok(&s, &["dataset", "snapshot", "root", "before"]);
    nfs_remove(s.nfs_port, "/old");
    // The snapshot still holds the file.
    let props = cairn_json(&s, &["dataset", "get", "root"]);
    assert_eq!(props["referenced"], 0, "{props}");
    assert_eq!(props["usedbysnapshots"], 300_000, "{props}");
    assert_eq!(props["used"], 300_000, "{props}");
    let snap = cairn_json(&s, &["dataset", "get", "root@before"]);
    assert_eq!(snap["referenced"], 300_000, "{snap}");
    assert_eq!(snap["used"], 300_000, "{snap}");

    // A refquota of 512 KiB leaves room for 400 KB of new data...
    cairn_ok(&s, &["dataset", "set", "root", "refquota=512KiB"]);
    let new = noise(400_000, 5);
    put(&s, dir.path(), "/new", &new);
    nfs_remove(s.nfs_port, "/new");
    // ...a quota of 512 KiB does not: the snapshot's 300 KB count.
    cairn_ok(
        &s,
        &["dataset", "set", "root", "refquota=none", "quota=512KiB"],
    );
    assert!(
        !try_put(&s, dir.path(), "/new", &new),
        "a write past the quota (snapshots included) succeeded"
    );
    // Deleting the snapshot gives the room back.
    nfs_remove(s.nfs_port, "/new");
    cairn_ok(&s, &["dataset", "delete-snapshot", "root@before"]);
    assert_eq!(get(&s, "usedbysnapshots"), 0);
    put(&s, dir.path(), "/new", &new);
    assert_eq!(cat(&s, "/new"), new);
}

#[test]
fn bad_properties_are_refused_and_change_nothing() {
    let (dir, s) = server();
    put(&s, dir.path(), "/f", &noise(100_000, 6));
    cairn_ok(&s, &["dataset", "snapshot", "root", "s"]);
    cairn_ok(&s, &["dataset", "set", "root", "quota=1GiB"]);
    for (args, want) in [
        (
            vec!["dataset", "set", "root", "colour=blue"],
            "unknown property",
        ),
        (vec!["dataset", "set", "root", "quota=-5"], "not a size"),
        (vec!["dataset", "set", "root", "quota=lots"], "not a size"),
        (vec!["dataset", "set", "root", "quota=10XB"], "unit"),
        (vec!["dataset", "set", "root", "used=5"], "read-only"),
        (vec!["dataset", "set", "root", "quota"], "PROPERTY=VALUE"),
        (vec!["dataset", "set", "root@s", "quota=1GiB"], "snapshot"),
        (
            vec!["dataset", "set", "root", "refquota=1MiB", "quota=x"],
            "not a size",
        ),
        (vec!["dataset", "get", "root", "colour"], "unknown property"),
        (
            vec!["dataset", "get", "root@s", "quota"],
            "unknown property",
        ),
    ] {
        let err = cairn_fails(&s, &args, 2);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    cairn_fails(&s, &["dataset", "set", "nosuch", "quota=1GiB"], 3);
    let props = cairn_json(&s, &["dataset", "get", "root", "quota", "refquota"]);
    assert_eq!(props["quota"], 1 << 30, "{props}");
    assert_eq!(props["refquota"], serde_json::Value::Null, "{props}");

    // A quota below what the dataset holds is allowed, as in ZFS; writes
    // are refused until it is back under.
    cairn_ok(&s, &["dataset", "set", "root", "refquota=4KiB"]);
    assert!(!try_put(&s, dir.path(), "/g", &noise(100_000, 7)));
    let list = cairn_ok(&s, &["dataset", "list", "-p"]);
    assert!(
        list.contains("USED") && list.contains("AVAIL") && list.contains("REFER"),
        "{list}"
    );
}
