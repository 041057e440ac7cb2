//! `cairn-demo`: opens a cairn store (default `./cairn-data`), writes a file
//! twice (showing dedup), reads it back, and prints fsstat and fsck.
//!
//! Usage: `cairn-demo [STORE_URL]`. A stand-in until `cairn-nfs` exists.

use anyhow::{Context, bail};
use cairn_engine::{Engine, EngineOptions};
use cairn_fs::{CreateHow, Creds, ErrorKind, Filesystem, SetAttr};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./cairn-data".into());
    let engine = Engine::open(&url, EngineOptions::default())
        .await
        .with_context(|| format!("opening store {url}"))?;
    println!("store: {}", engine.url());
    let fs = engine.root_dataset().await;
    let root = Creds::root();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..8u32 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let mut run = 0;
    let dir = loop {
        let name = format!("demo-{run}");
        match fs
            .mkdir(&root, fs.info().root, name.as_bytes(), &SetAttr::default())
            .await
        {
            Ok(a) => break a.ino,
            Err(e) if e.kind == ErrorKind::Exists => run += 1,
            Err(e) => return Err(e).context("creating the demo directory"),
        }
    };
    for name in ["copy-1", "copy-2"] {
        let f = fs
            .create(
                &root,
                dir,
                name.as_bytes(),
                CreateHow::Guarded,
                &SetAttr::default(),
            )
            .await
            .with_context(|| format!("creating {name}"))?;
        for (i, piece) in data.chunks(1 << 20).enumerate() {
            fs.write(&root, f.ino, (i << 20) as u64, piece)
                .await
                .context("writing")?;
        }
        let (back, _) = fs
            .read(&root, f.ino, 0, data.len() as u32)
            .await
            .context("reading back")?;
        if back.as_ref() != data.as_slice() {
            bail!("{name} read back differently from what was written");
        }
        println!(
            "wrote and verified demo-{run}/{name} ({} MiB)",
            data.len() >> 20
        );
    }
    fs.commit().await.context("making writes durable")?;
    let st = fs.fsstat().await.context("fsstat")?;
    let chunks = engine.chunk_stats().await.context("chunk stats")?;
    println!(
        "store holds {} inodes, {} distinct chunks, {:.1} MiB stored (16 MiB written: dedup)",
        st.used_files,
        chunks.chunks,
        st.used_bytes as f64 / 1048576.0
    );
    let report = engine.fsck().await.context("fsck")?;
    print!("fsck: {report}");
    engine.close().await.context("closing the store")?;
    if !report.is_clean() {
        bail!("fsck found problems");
    }
    Ok(())
}
