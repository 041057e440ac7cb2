//! Off loopback the admin API requires the bearer token; a server with no
//! token to use refuses to start there.
mod common;
use common::*;

#[test]
fn token_required_off_loopback() {
    let d = tempfile::tempdir().expect("tempdir");
    let store = d.path().join("store");
    let url = format!("file://{}", store.display());
    let s = Server::start(
        "cairn-nfs",
        &[
            "--store",
            &url,
            "--nfs-listen",
            "127.0.0.1:0",
            "--rpc-listen",
            "0.0.0.0:0",
        ],
    )
    .expect("server");
    let port = s.rpc_addr.rsplit(':').next().expect("port").to_string();
    let endpoint = format!("http://127.0.0.1:{port}");
    let bin = env!("CARGO_BIN_EXE_cairn");
    let out = run(bin, &["--endpoint", &endpoint, "dataset", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("token"), "{stderr}");
    let out = run(
        bin,
        &[
            "--endpoint",
            &endpoint,
            "--token",
            "wrong",
            "dataset",
            "list",
        ],
    );
    assert_eq!(out.status.code(), Some(7));

    let token_file = store.join("admin.token");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "token file is private");
    let token = std::fs::read_to_string(&token_file).expect("token");
    ok(
        bin,
        &[
            "--endpoint",
            &endpoint,
            "--token",
            token.trim(),
            "dataset",
            "list",
        ],
    );
    // The config file finds the store's token by itself.
    let cfg = d.path().join("cairn.toml");
    std::fs::write(
        &cfg,
        format!("[storage]\nurl = \"{url}\"\n[rpc]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .expect("config");
    ok(bin, &["-c", cfg.to_str().expect("path"), "dataset", "list"]);
    drop(s);

    let refused = Server::start(
        "cairn-nfs",
        &[
            "--store",
            "memory://",
            "--nfs-listen",
            "127.0.0.1:0",
            "--rpc-listen",
            "0.0.0.0:0",
        ],
    );
    let err = refused.err().unwrap_or_default();
    assert!(err.contains("without a token"), "{err}");
}
