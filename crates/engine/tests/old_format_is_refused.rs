//! A store written by an older format (chunk bytes inside the database,
//! format 4) is refused at open with a message that says so, and is left
//! as it was.
use cairn_codec::{Key, encode_u64};
use cairn_engine::{Engine, EngineOptions, FORMAT_VERSION};
use cairn_fs::ErrorKind;

#[tokio::test]
async fn a_format_4_store_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    {
        let engine = Engine::open(&url, EngineOptions::default())
            .await
            .expect("open");
        let mut t = engine.kv_for_tests().txn();
        t.put(Key::Meta(b"format".to_vec()).encode(), encode_u64(4));
        t.commit().await.expect("plant");
        engine.close().await.expect("close");
    }
    let e = Engine::open(&url, EngineOptions::default())
        .await
        .err()
        .expect("an old store must be refused");
    assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
    for want in [
        "format version 4",
        "older",
        &format!("version {FORMAT_VERSION}"),
    ] {
        assert!(e.message.contains(want), "message lacks {want:?}: {e}");
    }
    // Refusing it changed nothing: it is refused the same way again.
    let again = Engine::open(&url, EngineOptions::default()).await.err();
    assert_eq!(again.map(|e| e.message), Some(e.message));
}
