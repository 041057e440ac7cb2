//! Helpers shared by the integration tests: open a store, write and read
//! whole files by path.
#![allow(dead_code)]

use cairn_engine::{DatasetFs, Engine, EngineOptions};
use cairn_fs::{CreateHow, Creds, Filesystem, FsError, SetAttr};

pub async fn memory_engine() -> Engine {
    Engine::open("memory://", EngineOptions::default())
        .await
        .expect("open memory store")
}

/// The inode at `path` ("a/b/c"), or the lookup error.
pub async fn resolve(fs: &DatasetFs, path: &str) -> Result<u64, FsError> {
    let mut ino = fs.info().root;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = fs.lookup(&Creds::root(), ino, part.as_bytes()).await?.ino;
    }
    Ok(ino)
}

/// Create (or truncate) `path` in its parent and write `data` to it.
pub async fn put(fs: &DatasetFs, path: &str, data: &[u8]) -> u64 {
    let (dir, name) = match path.rsplit_once('/') {
        Some((d, n)) => (resolve(fs, d).await.expect("parent"), n),
        None => (fs.info().root, path),
    };
    let attrs = SetAttr {
        size: Some(0),
        ..Default::default()
    };
    let f = fs
        .create(
            &Creds::root(),
            dir,
            name.as_bytes(),
            CreateHow::Unchecked,
            &attrs,
        )
        .await
        .expect("create");
    fs.write(&Creds::root(), f.ino, 0, data)
        .await
        .expect("write");
    f.ino
}

/// Make directory `path` (its parent must exist).
pub async fn mkdir(fs: &DatasetFs, path: &str) -> u64 {
    let (dir, name) = match path.rsplit_once('/') {
        Some((d, n)) => (resolve(fs, d).await.expect("parent"), n),
        None => (fs.info().root, path),
    };
    fs.mkdir(&Creds::root(), dir, name.as_bytes(), &SetAttr::default())
        .await
        .expect("mkdir")
        .ino
}

/// The whole content of `path`.
pub async fn get(fs: &DatasetFs, path: &str) -> Result<Vec<u8>, FsError> {
    let ino = resolve(fs, path).await?;
    let size = fs.getattr(ino).await?.size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let (d, eof) = fs
            .read(&Creds::root(), ino, out.len() as u64, 1 << 20)
            .await?;
        out.extend_from_slice(&d);
        if eof || d.is_empty() {
            break;
        }
    }
    Ok(out)
}

/// Deterministic incompressible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub async fn assert_clean(engine: &Engine) {
    let report = engine.fsck().await.expect("fsck");
    assert!(report.is_clean(), "fsck:\n{report}");
}

/// Pack files of a `file://` store at `dir` and their total size.
pub fn pack_files(dir: &std::path::Path) -> (u64, u64) {
    let Ok(rd) = std::fs::read_dir(dir.join("packs")) else {
        return (0, 0);
    };
    rd.filter_map(|e| e.ok()?.metadata().ok())
        .fold((0, 0), |(n, b), m| (n + 1, b + m.len()))
}
