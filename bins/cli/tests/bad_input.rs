//! Bad input gets one line naming the problem and a meaningful exit status,
//! and changes nothing.
mod common;
use common::*;

#[test]
fn bad_names_unknown_things_and_no_server() {
    let (_d, s) = server();
    let e = cairn_fails(&s, &["dataset", "create", "bad/name"], 2);
    assert!(e.contains("bad/name") && e.contains("'/'"), "{e}");
    let e = cairn_fails(&s, &["dataset", "create", ".hidden"], 2);
    assert!(e.contains(".hidden"), "{e}");
    let long = "n".repeat(256);
    let e = cairn_fails(&s, &["dataset", "create", &long], 2);
    assert!(e.contains("255"), "{e}");
    let e = cairn_fails(&s, &["dataset", "info", "nope"], 3);
    assert!(e.contains("nope"), "{e}");
    let e = cairn_fails(&s, &["dataset", "info", "root@nope"], 3);
    assert!(e.contains("nope"), "{e}");
    let e = cairn_fails(&s, &["dataset", "delete-snapshot", "ghost"], 3);
    assert!(e.contains("ghost"), "{e}");
    let e = cairn_fails(&s, &["dataset", "snapshot", "nope", "s"], 3);
    assert!(e.contains("nope"), "{e}");
    cairn_ok(&s, &["dataset", "create", "x"]);
    let e = cairn_fails(&s, &["dataset", "create", "x"], 4);
    assert!(e.contains("already exists"), "{e}");
    let e = cairn_fails(&s, &["dataset", "clone", "root@none", "y"], 3);
    assert!(e.contains("none"), "{e}");
    let e = cairn_fails(&s, &["dataset", "promote", "x"], 2);
    assert!(e.contains("not a clone"), "{e}");
    // Nothing changed.
    let list = cairn_json(&s, &["dataset", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(2));

    // Usage errors come from clap with status 2.
    let out = cairn(&s, &["dataset", "create"]);
    assert_eq!(out.status.code(), Some(2));

    // No server.
    drop(s);
    let out = run(
        env!("CARGO_BIN_EXE_cairn"),
        &["--endpoint", "http://127.0.0.1:9", "dataset", "list"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("no cairn server at http://127.0.0.1:9") && stderr.contains("cairn-nfs"),
        "{stderr}"
    );
}
