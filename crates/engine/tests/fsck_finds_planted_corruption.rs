//! fsck reports planted corruption: a wrong refcount, a flipped pack or map byte, a
//! dangling entry, a wrong link count; reads of a damaged chunk or map fail instead
//! of returning wrong bytes.

use cairn_codec::{ChunkHash, HeadKey, InodeRecord, Key, KeyPrefix, Versioned, encode_u64};
use cairn_engine::{Engine, EngineOptions};
use cairn_fs::{CreateHow, Creds, ErrorKind, Filesystem, SetAttr};
use object_store::ObjectStoreExt;

async fn setup() -> (Engine, u64) {
    let engine = Engine::open("memory://", EngineOptions::default())
        .await
        .expect("open");
    let fs = engine.root_dataset().await;
    let root = Creds::root();
    let f = fs
        .create(&root, 1, b"f", CreateHow::Guarded, &SetAttr::default())
        .await
        .expect("create");
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 9) as u8)
        .collect();
    fs.write(&root, f.ino, 0, &data).await.expect("write");
    assert!(engine.fsck().await.expect("fsck").is_clean());
    (engine, f.ino)
}

async fn first_chunk(engine: &Engine) -> (Vec<u8>, bytes::Bytes) {
    let (start, end) = Key::prefix_range(KeyPrefix::Chunk);
    let kv = engine.kv_for_tests();
    kv.scan(&start, &end, 1)
        .await
        .expect("scan")
        .into_iter()
        .next()
        .map(|(k, v)| (k.to_vec(), v))
        .expect("a chunk")
}

fn classes(r: &cairn_engine::FsckReport) -> Vec<&'static str> {
    r.problems.iter().map(|p| p.class).collect()
}

#[tokio::test]
async fn wrong_refcount_is_reported() {
    let (engine, _) = setup().await;
    let (k, _) = first_chunk(&engine).await;
    let Ok(Key::Chunk(h)) = Key::decode(&k) else {
        panic!("chunk key")
    };
    let mut t = engine.kv_for_tests().txn();
    t.put(Key::Ref(h).encode(), encode_u64(7));
    t.commit().await.expect("plant");
    let r = engine.fsck().await.expect("fsck");
    assert!(classes(&r).contains(&"refcount"), "{r}");
}

#[tokio::test]
async fn flipped_pack_byte_is_reported_and_never_read() {
    let (engine, ino) = setup().await;
    engine.flush().await.expect("flush: the pack is stored");
    let (k, v) = first_chunk(&engine).await;
    let Ok(Key::Chunk(h)) = Key::decode(&k) else {
        panic!("chunk key")
    };
    let loc = cairn_cas::decode_location(&h, &v).expect("location");
    let kv = engine.kv_for_tests();
    let store = kv.object_store();
    let path = cairn_cas::PackStore::new(store.clone(), kv.pack_root().clone(), 0).path(loc.pack);
    let mut bytes = store
        .get(&path)
        .await
        .expect("get pack")
        .bytes()
        .await
        .expect("pack bytes")
        .to_vec();
    bytes[(loc.offset + loc.len as u64 - 1) as usize] ^= 0x40;
    store
        .put(&path, bytes.into())
        .await
        .expect("put damaged pack");
    let r = engine.fsck().await.expect("fsck");
    assert!(
        r.problems
            .iter()
            .any(|p| p.class == "checksum" && p.detail.contains(&h.to_hex())),
        "fsck names the damaged chunk:\n{r}"
    );
    let fs = engine.root_dataset().await;
    let (mut bad, mut good) = (0, 0);
    for off in (0..200_000).step_by(65536) {
        match fs.read(&Creds::root(), ino, off, 65536).await {
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
                assert!(e.to_string().contains(&h.to_hex()), "names the chunk: {e}");
                bad += 1;
            }
            Ok(_) => good += 1,
        }
    }
    // The data repeats every 128 KiB, so the damaged chunk may back two of
    // the four reads; the others read from the same pack.
    assert!(bad >= 1 && good >= 1, "bad {bad}, good {good}");
}

#[tokio::test]
async fn dangling_entry_and_bad_nlink_are_reported() {
    let (engine, ino) = setup().await;
    let kv = engine.kv_for_tests();
    let mut t = kv.txn();
    let dirent = cairn_codec::DirentRecord {
        ino: 999_999,
        kind: cairn_codec::FileKind::Regular,
    };
    t.put(
        HeadKey::dirent(1, 1, b"ghost").encode(),
        Versioned::new(1, dirent).encode(),
    );
    let ikey = HeadKey::Inode { tree: 1, ino }.encode();
    let mut rec =
        Versioned::<InodeRecord>::decode(&kv.get(&ikey).await.expect("get").expect("inode"))
            .expect("decode");
    if let Some(r) = rec.value.as_mut() {
        r.nlink = 5;
    }
    t.put(ikey, rec.encode());
    t.commit().await.expect("plant");
    let r = engine.fsck().await.expect("fsck");
    let c = classes(&r);
    assert!(c.contains(&"dangling") && c.contains(&"nlink"), "{r}");
}

#[tokio::test]
async fn leaked_chunk_is_reported() {
    let (engine, _) = setup().await;
    let data = b"nobody references me";
    let h = ChunkHash::of(data);
    // An index entry nothing references, pointing at a stored frame.
    let kv = engine.kv_for_tests();
    let (start, end) = Key::prefix_range(KeyPrefix::Chunk);
    let (_, loc) = kv.scan(&start, &end, 1).await.expect("scan")[0].clone();
    let mut t = kv.txn();
    t.put(Key::Chunk(h).encode(), loc);
    t.commit().await.expect("plant");
    let r = engine.fsck().await.expect("fsck");
    assert!(classes(&r).contains(&"leak"), "{r}");
}

#[tokio::test]
async fn flipped_map_byte_is_reported_and_never_read() {
    let (engine, ino) = setup().await;
    let kv = engine.kv_for_tests();
    let (start, end) = Key::prefix_range(KeyPrefix::Map);
    let (k, v) = kv.scan(&start, &end, 1).await.expect("scan")[0].clone();
    let mut bad = v.to_vec();
    // A chunk length byte: still decodes, no longer matches its address.
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let mut t = kv.txn();
    t.put(k.to_vec(), bad);
    t.commit().await.expect("plant");
    let r = engine.fsck().await.expect("fsck");
    assert!(classes(&r).contains(&"checksum"), "{r}");
    let e = engine
        .root_dataset()
        .await
        .read(&Creds::root(), ino, 0, 65536)
        .await
        .expect_err("a read through the damaged map must fail");
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
}
