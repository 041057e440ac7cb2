#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Snapshot benchmarks (run with `cargo xtask bench`), on `file://`, on a
//! current-thread runtime, without waiting for durability:
//! - snapshot create on a 10-file and a 100,000-file dataset (and the ratio)
//! - snapshot delete after 100 changed files, on both datasets (and the ratio)
//! - in-place restore of a 1 GiB file from a snapshot
//! - copy-out read of that file from the snapshot (MiB/s)

use std::time::{Duration, Instant};

use cairn_engine::{DatasetFs, Engine, EngineOptions};
use cairn_fs::{CreateHow, Creds, Filesystem, SetAttr};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MIB: usize = 1 << 20;
const BIG_FILE: usize = 1024 * MIB;

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

async fn create(fs: &DatasetFs, name: &str) -> u64 {
    let attrs = SetAttr {
        size: Some(0),
        ..Default::default()
    };
    fs.create(
        &Creds::root(),
        fs.info().root,
        name.as_bytes(),
        CreateHow::Unchecked,
        &attrs,
    )
    .await
    .expect("create")
    .ino
}

/// A dataset of `n` small files plus 100 "churn" files of 8 KiB.
async fn populate(engine: &Engine, name: &str, n: usize) -> DatasetFs {
    engine
        .create_dataset(name, Default::default())
        .await
        .expect("dataset");
    let fs = engine.dataset(name).await.expect("dataset view");
    for i in 0..n {
        create(&fs, &format!("f{i}")).await;
    }
    churn(&fs, 0).await;
    fs
}

/// Overwrite the 100 churn files with new 8 KiB contents.
async fn churn(fs: &DatasetFs, round: u64) {
    for i in 0..100u64 {
        let ino = create(fs, &format!("churn{i}")).await;
        fs.write(&Creds::root(), ino, 0, &noise(8192, round * 1000 + i))
            .await
            .expect("write");
    }
}

fn mean(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.iter().sum::<Duration>() / samples.len().max(1) as u32
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    let (engine, small, big) = rt.block_on(async {
        let engine = Engine::open(&url, EngineOptions::default())
            .await
            .expect("open");
        let small = populate(&engine, "small", 10).await;
        let big = populate(&engine, "big", 100_000).await;
        engine.flush().await.expect("flush");
        (engine, small, big)
    });

    // Snapshot create.
    let mut g = c.benchmark_group("snapshot_create");
    let mut seq = 0u64;
    let mut figures = Vec::new();
    for (label, ds) in [("10_files", "small"), ("100k_files", "big")] {
        g.bench_function(label, |b| {
            b.to_async(&rt).iter(|| {
                seq += 1;
                let engine = &engine;
                let name = format!("c{seq}");
                async move {
                    engine.create_snapshot(ds, &name).await.expect("snapshot");
                }
            })
        });
        let mut samples: Vec<Duration> = (0..50)
            .map(|_| {
                seq += 1;
                let t = Instant::now();
                rt.block_on(engine.create_snapshot(ds, &format!("c{seq}")))
                    .expect("snapshot");
                t.elapsed()
            })
            .collect();
        figures.push(mean(&mut samples));
    }
    g.finish();
    println!(
        "snapshot create: 10 files {:?}, 100k files {:?}, ratio {:.2}",
        figures[0],
        figures[1],
        figures[1].as_secs_f64() / figures[0].as_secs_f64()
    );

    // Snapshot delete after 100 changed files.
    let mut g = c.benchmark_group("snapshot_delete_after_100_changes");
    g.sample_size(20);
    let mut figures = Vec::new();
    for (label, fs, ds) in [("10_files", &small, "small"), ("100k_files", &big, "big")] {
        let mut round = 0u64;
        let mut run = |rt: &tokio::runtime::Runtime| -> Duration {
            round += 1;
            rt.block_on(async {
                let name = format!("d{round}");
                engine.create_snapshot(ds, &name).await.expect("snapshot");
                churn(fs, round).await;
                let t = Instant::now();
                engine
                    .delete_snapshot(&format!("{ds}@{name}"))
                    .await
                    .expect("delete");
                t.elapsed()
            })
        };
        g.bench_function(label, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run(&rt)).sum())
        });
        let mut samples: Vec<Duration> = (0..20).map(|_| run(&rt)).collect();
        figures.push(mean(&mut samples));
    }
    g.finish();
    println!(
        "snapshot delete after 100 changes: 10 files {:?}, 100k files {:?}, ratio {:.2}",
        figures[0],
        figures[1],
        figures[1].as_secs_f64() / figures[0].as_secs_f64()
    );

    // In-place restore and copy-out read of a 1 GiB file.
    let snap = rt.block_on(async {
        let ino = create(&small, "big.bin").await;
        let data = noise(BIG_FILE, 42);
        for (i, piece) in data.chunks(MIB).enumerate() {
            small
                .write(&Creds::root(), ino, (i * MIB) as u64, piece)
                .await
                .expect("write");
        }
        engine
            .create_snapshot("small", "gib")
            .await
            .expect("snapshot");
        let root = small.info().root;
        small
            .remove(&Creds::root(), root, b"big.bin")
            .await
            .expect("remove");
        engine.snapshot("small@gib").await.expect("view")
    });
    let mut g = c.benchmark_group("restore_1GiB");
    g.sample_size(10);
    let mut n = 0u64;
    g.bench_function("in_place_restore", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let engine = &engine;
            let dest = format!("restored{n}");
            async move {
                engine
                    .restore("small@gib", "big.bin", Some(&dest))
                    .await
                    .expect("restore");
            }
        })
    });
    g.throughput(Throughput::Bytes(BIG_FILE as u64));
    g.bench_function("copy_out_read_from_snapshot", |b| {
        b.to_async(&rt).iter(|| {
            let snap = snap.clone();
            async move {
                let ino = {
                    let root = snap.info().root;
                    snap.lookup(&Creds::root(), root, b"big.bin")
                        .await
                        .expect("lookup")
                        .ino
                };
                let mut off = 0u64;
                while off < BIG_FILE as u64 {
                    let (d, _) = snap
                        .read(&Creds::root(), ino, off, MIB as u32)
                        .await
                        .expect("read");
                    off += d.len() as u64;
                }
            }
        })
    });
    g.finish();
    rt.block_on(engine.close()).expect("close");
}

criterion_group!(benches, bench);
criterion_main!(benches);
