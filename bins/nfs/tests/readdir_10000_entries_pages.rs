//! A 10,000-entry directory lists completely, each name once, in small
//! pages (READDIR and READDIRPLUS through nfs3_client) and with nfs-ls.
mod common;
use std::collections::BTreeSet;

use common::*;

#[tokio::test]
async fn ten_thousand_entries_page_completely() {
    let (_d, store) = store();
    let s = Server::nfs(&store, &[]);
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let r = root(&c);
    let dir = mkdir(&mut c, &r, b"big", 0o755).await.expect("mkdir");
    let want: BTreeSet<Vec<u8>> = (0..10_000)
        .map(|i| format!("entry-{i:05}").into_bytes())
        .collect();
    for n in &want {
        create(&mut c, &dir, n, 0o644).await.expect("create");
    }
    for (what, list) in [
        (
            "readdirplus",
            readdirplus_all(&mut c, &dir, 8192)
                .await
                .expect("readdirplus"),
        ),
        (
            "readdir",
            readdir_all(&mut c, &dir, 4096).await.expect("readdir"),
        ),
    ] {
        let names: Vec<Vec<u8>> = list
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n != b"." && n != b"..")
            .collect();
        let unique: BTreeSet<Vec<u8>> = names.iter().cloned().collect();
        assert_eq!(names.len(), unique.len(), "{what}: no entry listed twice");
        assert!(
            unique == want,
            "{what}: {} of {} names",
            unique.len(),
            want.len()
        );
    }
    let ls = ok("nfs-ls", &[&s.url("/big")]);
    let lines = String::from_utf8_lossy(&ls.stdout)
        .lines()
        .filter(|l| l.contains("entry-"))
        .count();
    assert_eq!(lines, 10_000, "nfs-ls lists every entry");
}
