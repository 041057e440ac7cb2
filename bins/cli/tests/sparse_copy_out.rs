//! A sparse file through a real NFS client: 50 KB written at 100 MiB
//! reports the space of its one chunk in GETATTR (not 100 MiB), and a
//! copy-out restore of it from a snapshot lands as a sparse local file with
//! the same bytes.
mod common;
use std::os::unix::fs::MetadataExt;

use cairn_testkit::nfs3_types::nfs3::{GETATTR3args, Nfs3Result};
use cairn_testkit::{commit, create_file, write_unstable};
use common::*;

const AT: u64 = 100 << 20;
const LEN: usize = 50_000;
/// "A few chunks" of the default 64 KiB.
const FEW: u64 = 4 * 64 * 1024;

#[test]
fn sparse_file_reports_and_restores_sparse() {
    let (dir, s) = server();
    let data = noise(LEN, 22);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (size, used) = rt.block_on(async {
        let mut c = mount(s.nfs_port, "/", 0, 0).await;
        let fh = create_file(&mut c, "sparse.img").await;
        write_unstable(&mut c, &fh, AT, &data)
            .await
            .expect("write at 100 MiB");
        commit(&mut c, &fh).await;
        match c.getattr(&GETATTR3args { object: fh }).await.expect("rpc") {
            Nfs3Result::Ok(r) => (r.obj_attributes.size, r.obj_attributes.used),
            Nfs3Result::Err((st, _)) => panic!("getattr: {st:?}"),
        }
    });
    assert_eq!(size, AT + LEN as u64, "size is the apparent size");
    assert!(
        (LEN as u64..=FEW).contains(&used),
        "used {used} should be the written chunk's {LEN} bytes, not the {size}-byte apparent size"
    );

    cairn_ok(&s, &["dataset", "snapshot", "root", "s"]);
    let out = dir.path().join("sparse.out");
    let r = cairn_json(
        &s,
        &[
            "dataset",
            "restore",
            "--snapshot",
            "root@s",
            "--source",
            "/sparse.img",
            "--destination",
            out.to_str().expect("path"),
        ],
    );
    assert_eq!(r["files"], 1, "{r}");
    assert_eq!(r["bytes"], LEN, "only the data crossed the wire: {r}");
    assert_eq!(r["hole_bytes"], AT, "{r}");
    let meta = std::fs::metadata(&out).expect("restored file");
    assert_eq!(meta.len(), AT + LEN as u64, "restored size");
    let on_disk = meta.blocks() * 512;
    assert!(
        on_disk <= FEW,
        "the restored copy occupies {on_disk} bytes on disk; a sparse copy needs at most {FEW}"
    );
    let got = std::fs::read(&out).expect("read restored");
    let first = got[..AT as usize].iter().position(|b| *b != 0);
    assert_eq!(first, None, "the hole reads as zeros");
    assert!(
        got[AT as usize..] == data[..],
        "the data after the hole differs"
    );
}
