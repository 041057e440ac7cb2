//! MOUNT: `/` is the default dataset, `/<name>` a dataset, any directory
//! inside one can be mounted, EXPORT lists them, and bad paths get the right
//! MOUNT status.
mod common;
use cairn_testkit::nfs3_types::mount::{dirpath, mountres3};
use cairn_testkit::nfs3_types::xdr_codec::Opaque;
use common::*;

#[tokio::test]
async fn mount_paths_resolve_and_exports_list_datasets() {
    let (_d, store) = store();
    let s = Server::nfs(&store, &[]);
    admin(&s)
        .await
        .create_dataset(cairn_rpc::pb::CreateDatasetRequest {
            name: "home".into(),
            chunk_size_bytes: 0,
        })
        .await
        .expect("dataset");
    {
        let mut c = mount(s.nfs_port, "/", 0, 0).await;
        let r = root(&c);
        let d = mkdir(&mut c, &r, b"dir", 0o755).await.expect("mkdir");
        create(&mut c, &d, b"in-root", 0o644).await.expect("create");
        create(&mut c, &r, b"file", 0o644).await.expect("create");
    }
    let mut home = mount(s.nfs_port, "/home", 0, 0).await;
    let hr = root(&home);
    create(&mut home, &hr, b"in-home", 0o644)
        .await
        .expect("create in home");
    let mut sub = mount(s.nfs_port, "/dir", 0, 0).await;
    let sr = root(&sub);
    lookup(&mut sub, &sr, b"in-root")
        .await
        .expect("subdirectory mount");
    // The same directory through the default dataset's name.
    let mut sub2 = mount(s.nfs_port, "/root/dir", 0, 0).await;
    assert_eq!(root(&sub2), sr);
    lookup(&mut sub2, &sr, b"in-root").await.expect("lookup");
    snapshot(&s, "home", "h1").await;
    let mut snap = mount(s.nfs_port, "/home/.snapshots/h1", 0, 0).await;
    let snr = root(&snap);
    lookup(&mut snap, &snr, b"in-home")
        .await
        .expect("snapshot mount");

    let mnt = &mut home.mount_client;
    let bad = |p: &'static str| dirpath(Opaque::borrowed(p.as_bytes()));
    for (path, want) in [
        ("/nope", "NOENT"),
        ("/file", "NOTDIR"),
        ("/home/nope", "NOENT"),
    ] {
        match mnt.mnt(bad(path)).await {
            Ok(_) => panic!("mount {path} should fail"),
            Err(e) => assert!(format!("{e:?}").contains(want), "{path}: {e:?}"),
        }
    }
    let exports: Vec<String> = mnt
        .export()
        .await
        .expect("export")
        .0
        .into_iter()
        .map(|e| String::from_utf8_lossy(e.ex_dir.0.as_ref()).into_owned())
        .collect();
    assert_eq!(exports, vec!["/", "/home", "/root"]);
    let _ = mountres3::Err; // the MOUNT status type the failures above carry
}
