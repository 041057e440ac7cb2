//! Helpers: a real `cairn-nfs` on free ports and the real `cairn` binary.
#![allow(dead_code, unused_imports)]

use std::process::Output;

pub use cairn_testkit::{Server, mount, nfs_mkdir, nfs_remove, noise, ok, run};
use serde_json::Value;

/// A server on a fresh local store.
pub fn server() -> (tempfile::TempDir, Server) {
    let d = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", d.path().join("store").display());
    let s = Server::nfs(&url, &[]);
    (d, s)
}

/// Run `cairn --endpoint <server> args...`.
pub fn cairn(s: &Server, args: &[&str]) -> Output {
    let endpoint = s.endpoint();
    let mut all = vec!["--endpoint", endpoint.as_str()];
    all.extend_from_slice(args);
    run(env!("CARGO_BIN_EXE_cairn"), &all)
}

/// Run it and require success; stdout as text.
pub fn cairn_ok(s: &Server, args: &[&str]) -> String {
    let out = cairn(s, args);
    assert!(
        out.status.success(),
        "cairn {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run it with `--json` and parse the output.
pub fn cairn_json(s: &Server, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = cairn_ok(s, &all);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("cairn {args:?}: not JSON ({e}):\n{text}"))
}

/// Run it expecting failure with exit status `code`; its stderr.
pub fn cairn_fails(s: &Server, args: &[&str], code: i32) -> String {
    let out = cairn(s, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "cairn {args:?}: expected exit {code}; stderr: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line of error: {stderr}");
    stderr
}

/// Write `data` to `path` in the default dataset through NFS (nfs-cp).
pub fn put(s: &Server, dir: &std::path::Path, path: &str, data: &[u8]) {
    let local = dir.join("upload.tmp");
    std::fs::write(&local, data).expect("local write");
    ok("nfs-cp", &[local.to_str().expect("path"), &s.url(path)]);
}

/// Read `path` through NFS (nfs-cat).
pub fn cat(s: &Server, path: &str) -> Vec<u8> {
    ok("nfs-cat", &[&s.url(path)]).stdout
}
