//! A caller who may execute a file may READ it (the client must read a
//! program's pages to run it; knfsd allows it); one who may neither read
//! nor execute may not. ACCESS still reports the mode bits as they are.
mod common;
use cairn_fs::{Creds, ErrorKind, Filesystem, SetAttr, access};
use common::*;

#[tokio::test]
async fn execute_permission_allows_read() {
    let engine = memory_engine().await;
    let fs = engine.root_dataset().await;
    let prog = b"#!/bin/sh\necho hi\n";
    let ino = put(&fs, "prog", prog).await;
    let owner = Creds::user(1000, 1000);
    let set = |mode| SetAttr {
        mode: Some(mode),
        uid: Some(1000),
        gid: Some(1000),
        ..Default::default()
    };
    let other = Creds::user(2000, 2000);
    let group = Creds::user(3000, 1000);

    let cases = [
        // (mode, who, may read)
        (0o711, &other, true),
        (0o701, &other, true),
        (0o710, &group, true),
        (0o710, &other, false),
        (0o700, &other, false),
        (0o700, &group, false),
        (0o000, &owner, true),
    ];
    for (mode, who, may) in cases {
        fs.setattr(&Creds::root(), ino, &set(mode), None)
            .await
            .expect("chmod");
        let r = fs.read(who, ino, 0, 100).await;
        match (may, r) {
            (true, Ok((data, _))) => assert_eq!(&data[..], prog, "mode {mode:o} uid {}", who.uid),
            (false, Err(e)) => assert_eq!(e.kind, ErrorKind::Access, "mode {mode:o}: {e}"),
            (may, r) => panic!(
                "mode {mode:o} uid {}: expected {}, got {r:?}",
                who.uid,
                if may { "a read" } else { "a refusal" }
            ),
        }
    }

    // ACCESS reports execute without read for 0711.
    fs.setattr(&Creds::root(), ino, &set(0o711), None)
        .await
        .expect("chmod");
    let granted = fs
        .access(&other, ino, access::READ | access::EXECUTE)
        .await
        .expect("access");
    assert_eq!(
        granted & access::READ,
        0,
        "ACCESS must not grant read on 0711"
    );
    assert_ne!(
        granted & access::EXECUTE,
        0,
        "ACCESS grants execute on 0711"
    );
}
