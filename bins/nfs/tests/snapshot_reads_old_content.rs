//! A file read through `.snapshots/<name>/` after the live file changed
//! shows the content at snapshot time (libnfs utilities, a real client).
mod common;
use cairn_testkit::nfs3_types::nfs3::{Nfs3Option, sattr3, stable_how};
use common::*;

#[tokio::test]
async fn snapshot_directory_serves_the_old_bytes() {
    let (dir, store) = store();
    let s = Server::nfs(&store, &[]);
    let old = dir.path().join("old");
    std::fs::write(&old, noise(3 << 20, 1)).expect("local");
    ok("nfs-cp", &[old.to_str().expect("p"), &s.url("/f")]);
    snapshot(&s, "root", "before").await;
    // Rewrite the live file in place (truncate, then write).
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let f = walk(&mut c, "f").await.expect("lookup");
    let truncate = sattr3 {
        size: Nfs3Option::Some(0),
        ..Default::default()
    };
    setattr(&mut c, &f, truncate).await.expect("truncate");
    write(&mut c, &f, 0, b"rewritten", stable_how::FILE_SYNC)
        .await
        .expect("write");
    let live = ok("nfs-cat", &[&s.url("/f")]).stdout;
    assert_eq!(live, b"rewritten");
    let snap = ok("nfs-cat", &[&s.url("/.snapshots/before/f")]).stdout;
    assert!(
        snap == noise(3 << 20, 1),
        "snapshot content differs (len {})",
        snap.len()
    );
    // Hidden by default, but listable by name.
    let root_ls = String::from_utf8_lossy(&ok("nfs-ls", &[&s.url("/")]).stdout).into_owned();
    assert!(!root_ls.contains(".snapshots"), "hidden: {root_ls}");
    let snaps =
        String::from_utf8_lossy(&ok("nfs-ls", &[&s.url("/.snapshots")]).stdout).into_owned();
    assert!(snaps.contains("before"), "{snaps}");
}
