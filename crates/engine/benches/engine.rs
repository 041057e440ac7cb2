#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Storage-core benchmarks (run with `cargo xtask bench`):
//! - sequential write and read of 256 MiB through the trait on `file://` (MiB/s)
//! - 10,000 small-file creates without waiting for durability (ops/s)
//! - dedup: the same 256 MiB written to two files; stored bytes vs one copy

use std::time::{Duration, Instant};

use cairn_engine::{Engine, EngineOptions};
use cairn_fs::{CreateHow, Creds, Filesystem, SetAttr};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MIB: usize = 1 << 20;
const TOTAL: usize = 256 * MIB;

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

async fn open_file_store() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    let engine = Engine::open(&url, EngineOptions::default())
        .await
        .expect("open");
    (dir, engine)
}

async fn write_file(fs: &dyn Filesystem, name: &[u8], data: &[u8]) -> u64 {
    let root = Creds::root();
    let f = fs
        .create(
            &root,
            fs.info().root,
            name,
            CreateHow::Guarded,
            &SetAttr::default(),
        )
        .await
        .expect("create");
    for (i, piece) in data.chunks(MIB).enumerate() {
        fs.write(&root, f.ino, (i * MIB) as u64, piece)
            .await
            .expect("write");
    }
    f.ino
}

fn workloads(c: &mut Criterion, rt: &tokio::runtime::Runtime, flavour: &str, data: &[u8]) {
    let mut g = c.benchmark_group(format!("{flavour}/sequential_256MiB_file_store"));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Bytes(TOTAL as u64));
    g.bench_function("write", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (_dir, engine) = open_file_store().await;
                let fs = engine.root_dataset().await;
                let t = Instant::now();
                write_file(&fs, b"seq", data).await;
                total += t.elapsed();
                engine.close().await.expect("close");
            }
            total
        })
    });
    let (_dir, engine, ino) = rt.block_on(async {
        let (dir, engine) = open_file_store().await;
        let ino = write_file(&engine.root_dataset().await, b"seq", data).await;
        engine.flush().await.expect("flush");
        (dir, engine, ino)
    });
    g.bench_function("read", |b| {
        let fs = rt.block_on(engine.root_dataset());
        b.to_async(rt).iter(|| {
            let fs = fs.clone();
            async move {
                let root = Creds::root();
                let mut off = 0u64;
                while off < TOTAL as u64 {
                    let (d, _) = fs.read(&root, ino, off, MIB as u32).await.expect("read");
                    off += d.len() as u64;
                }
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group(format!("{flavour}/small_files"));
    g.sample_size(10).throughput(Throughput::Elements(10_000));
    g.bench_function("create_10k", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (_dir, engine) = open_file_store().await;
                let fs = engine.root_dataset().await;
                let root = Creds::root();
                let t = Instant::now();
                for i in 0..10_000 {
                    fs.create(
                        &root,
                        1,
                        format!("f{i}").as_bytes(),
                        CreateHow::Guarded,
                        &SetAttr::default(),
                    )
                    .await
                    .expect("create");
                }
                total += t.elapsed();
                engine.close().await.expect("close");
            }
            total
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let data = noise(TOTAL, 1);
    // The same workloads on both tokio runtime flavours: a multi-threaded
    // runtime pays a cross-thread wake-up for every hand-off to SlateDB's
    // writer task, a current-thread runtime does not.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (flavour, rt) in [("current_thread", &single), ("multi_thread", &multi)] {
        workloads(c, rt, flavour, &data);
    }
    let rt = &multi;
    // Dedup is a size, not a time: measure once and print the figure.
    rt.block_on(async {
        let (_dir, engine) = open_file_store().await;
        let fs = engine.root_dataset().await;
        write_file(&fs, b"one", &data).await;
        write_file(&fs, b"two", &data).await;
        let st = engine.chunk_stats().await.expect("stats");
        println!(
            "dedup: 2 x 256 MiB written, {} bytes stored = {:.4}x one copy ({} chunks)",
            st.stored_bytes,
            st.stored_bytes as f64 / TOTAL as f64,
            st.chunks
        );
        engine.close().await.expect("close");
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
