//! cairn-nfs on `s3://` against a real S3-compatible server (moto) on
//! loopback: files and a snapshot through NFS, everything back after a
//! restart, a second server on the same bucket/prefix refused, and a store
//! without conditional writes refused at start.
mod common;
use cairn_testkit::Moto;
use common::*;

fn start(cfg: &std::path::Path) -> Result<Server, String> {
    Server::start(
        "cairn-nfs",
        &[
            "-c",
            cfg.to_str().expect("path"),
            "--nfs-listen",
            "127.0.0.1:0",
            "--rpc-listen",
            "127.0.0.1:0",
        ],
    )
}

#[tokio::test]
async fn nfs_on_s3_survives_restarts_and_excludes_a_second_server() {
    let moto = Moto::start("cairn-e2e");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("cairn.toml");
    std::fs::write(&cfg, moto.config("store", "")).expect("config");
    let s = start(&cfg).expect("server on s3://");
    assert!(
        s.banner
            .iter()
            .any(|l| l.contains("store s3://cairn-e2e/store")),
        "{:?}",
        s.banner
    );
    let data = noise(8 << 20, 3);
    let local = dir.path().join("f");
    std::fs::write(&local, &data).expect("local");
    ok("nfs-cp", &[local.to_str().expect("p"), &s.url("/f")]);
    ok("nfs-cp", &[local.to_str().expect("p"), &s.url("/g")]);
    snapshot(&s, "root", "s1").await;
    nfs_remove_async(&s, "g").await;
    assert!(ok("nfs-cat", &[&s.url("/f")]).stdout == data);
    assert!(
        ok("nfs-cat", &[&s.url("/.snapshots/s1/g")]).stdout == data,
        "snapshot on S3"
    );

    let second = start(&cfg);
    let err = second.err().unwrap_or_default();
    assert!(err.contains("in use by another cairn process"), "{err}");

    let (status, stderr) = s.stop();
    assert!(status.success(), "{stderr}");
    let s = start(&cfg).expect("restart on s3://");
    assert!(
        ok("nfs-cat", &[&s.url("/f")]).stdout == data,
        "after restart"
    );
    assert!(
        ok("nfs-cat", &[&s.url("/.snapshots/s1/g")]).stdout == data,
        "snapshot after restart"
    );
    let mut admin = admin(&s).await;
    let st = admin
        .stats(cairn_rpc::pb::StatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert!(
        st.requests.as_ref().is_some_and(|r| r.get > 0),
        "request counts: {st:?}"
    );
    let f = admin
        .fsck(cairn_rpc::pb::FsckRequest {})
        .await
        .expect("fsck")
        .into_inner();
    assert!(f.clean, "{:?}", f.problems);
}

async fn nfs_remove_async(s: &Server, name: &str) {
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let r = root(&c);
    remove(&mut c, &r, name.as_bytes()).await.expect("remove");
}

#[test]
fn a_store_without_conditional_writes_is_refused() {
    let moto = Moto::start("cairn-nocond");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("cairn.toml");
    std::fs::write(
        &cfg,
        moto.config("store", "aws_conditional_put = \"disabled\"\n"),
    )
    .expect("config");
    let err = start(&cfg).err().unwrap_or_default();
    assert!(err.contains("does not honour conditional writes"), "{err}");
}
