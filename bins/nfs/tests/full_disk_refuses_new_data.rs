//! A local store whose disk is down to its reserve (`[storage]
//! reserve_bytes`) refuses new data with NFS3ERR_NOSPC instead of filling
//! the disk (a full disk stalls SlateDB's compactions, and then every
//! write, forever). Nothing already written is lost, space can still be
//! freed, and fsstat shows no free space. A reserve larger than any disk
//! stands in for a full one.
mod common;
use cairn_testkit::nfs3_types::nfs3::{FSSTAT3args, Nfs3Result, nfsstat3, stable_how};
use common::*;

fn config(dir: &std::path::Path, reserve: &str) -> String {
    let p = dir.join(format!("cairn-{reserve}.toml"));
    std::fs::write(&p, format!("[storage]\nreserve_bytes = \"{reserve}\"\n")).expect("config");
    p.display().to_string()
}

#[tokio::test]
async fn writes_past_the_reserve_get_nospc_and_lose_nothing() {
    let (d, store) = store();
    let kept = noise(300_000, 7);
    let s = Server::nfs(&store, &[]);
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let r = root(&c);
    let f = create(&mut c, &r, b"kept", 0o644).await.expect("create");
    write(&mut c, &f, 0, &kept, stable_how::FILE_SYNC)
        .await
        .expect("write before the disk is full");
    let g = create(&mut c, &r, b"spare", 0o644).await.expect("create");
    write(&mut c, &g, 0, &noise(100_000, 8), stable_how::FILE_SYNC)
        .await
        .expect("write");
    drop(c);
    stop_ok(s).await;

    // 1 PiB free is more than any test machine has: the disk counts as full.
    let full = config(d.path(), "1048576GiB");
    let s = Server::nfs(&store, &["-c", &full]);
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let r = root(&c);
    let (f, _) = lookup(&mut c, &r, b"kept").await.expect("lookup");
    for stable in [stable_how::UNSTABLE, stable_how::FILE_SYNC] {
        assert_eq!(
            write(&mut c, &f, 0, b"overwrite", stable).await.err(),
            Some(nfsstat3::NFS3ERR_NOSPC),
            "a {stable:?} write on a full disk"
        );
    }
    let st = match c
        .fsstat(&FSSTAT3args { fsroot: r.clone() })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => ok,
        Nfs3Result::Err((s, _)) => panic!("fsstat failed: {s:?}"),
    };
    assert_eq!(st.fbytes, 0, "free bytes on a full disk: {st:?}");
    assert_eq!(st.abytes, 0, "available bytes on a full disk: {st:?}");
    assert!(
        st.tbytes < 1 << 50,
        "a local store reports its disk's size, not the object store figure: {st:?}"
    );
    assert_eq!(read_all(&mut c, &f).await.expect("read"), kept);
    // Freeing space still works.
    remove(&mut c, &r, b"spare")
        .await
        .expect("remove on a full disk");
    let log = s.stderr();
    assert!(
        log.contains("no space left for store")
            && log.contains("below the 1073741824 MiB kept free"),
        "the server log names the store and its reserve:\n{log}"
    );
    drop(c);
    stop_ok(s).await;

    // With room again, the data is intact and writes work.
    let s = Server::nfs(&store, &[]);
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let r = root(&c);
    let (f, _) = lookup(&mut c, &r, b"kept").await.expect("lookup");
    assert_eq!(read_all(&mut c, &f).await.expect("read"), kept);
    assert_eq!(
        lookup(&mut c, &r, b"spare").await.err(),
        Some(nfsstat3::NFS3ERR_NOENT)
    );
    write(&mut c, &f, 0, b"overwrite", stable_how::FILE_SYNC)
        .await
        .expect("write with room");
    drop(c);
    stop_ok(s).await;
}
