//! UNSTABLE writes answer UNSTABLE with a verifier COMMIT repeats; FILE_SYNC
//! writes survive SIGKILL; the verifier changes with every start; SIGTERM
//! shuts down cleanly with the store closed.
mod common;
use cairn_testkit::nfs3_types::nfs3::stable_how;
use common::*;

#[tokio::test]
async fn stability_levels_and_verifiers() {
    let (_d, store) = store();
    let s = Server::nfs(&store, &[]);
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let r = root(&c);
    let f = create(&mut c, &r, b"u", 0o644).await.expect("create");
    let w = write(&mut c, &f, 0, &noise(200_000, 1), stable_how::UNSTABLE)
        .await
        .expect("write");
    assert_eq!(w.committed, stable_how::UNSTABLE);
    let v1 = w.verf.0;
    assert_eq!(
        commit(&mut c, &f).await.expect("commit"),
        v1,
        "same verifier"
    );
    let g = create(&mut c, &r, b"sync", 0o644).await.expect("create");
    let w = write(&mut c, &g, 0, &noise(100_000, 2), stable_how::FILE_SYNC)
        .await
        .expect("write");
    assert_eq!(w.committed, stable_how::FILE_SYNC);
    // A crash right after the replies.
    s.kill();

    let s = Server::nfs(&store, &[]);
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    assert_eq!(
        read_all(&mut c, &g).await.expect("read"),
        noise(100_000, 2),
        "FILE_SYNC data survived"
    );
    assert_eq!(
        read_all(&mut c, &f).await.expect("read"),
        noise(200_000, 1),
        "committed data survived"
    );
    let v2 = write(&mut c, &f, 0, b"x", stable_how::UNSTABLE)
        .await
        .expect("write")
        .verf
        .0;
    assert_ne!(v1, v2, "a restart changes the write verifier");
    let (status, stderr) = s.stop();
    assert!(
        status.success(),
        "SIGTERM exits cleanly: {status}\n{stderr}"
    );
}

#[test]
fn sigterm_flushes_and_closes() {
    let (_d, store) = store();
    let s = Server::nfs(&store, &[]);
    let (status, stderr) = s.stop();
    assert!(status.success(), "{status}");
    assert!(stderr.contains("store closed"), "{stderr}");
}
