//! Sustained figures through the `Filesystem` trait on `file://`, release:
//! a sequential write of MiB (default 4096) of distinct data in 1 MiB
//! writes ended by a flush, the largest the store directory grew to while
//! it ran and its size after, a sequential read back, and 10,000 small-file
//! creates. Run it with `cargo xtask bench-engine [MiB] [SETTLE_SECS]`;
//! SETTLE_SECS (default 0) waits that long after the write and measures the
//! store again, once compaction and SlateDB's garbage collector have run.
//!
//! The peer: the same bytes written as plain 32 MiB files (a pack's size) to
//! the same filesystem, before and after the engine's write, so the
//! machine's own page-cache and disk speed is measured in the same run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_engine::{Engine, EngineOptions};
use cairn_fs::{CreateHow, Creds, Filesystem, SetAttr};
use cairn_testkit::{noise, stamped};

const MIB: usize = 1 << 20;

/// Bytes of the regular files under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Samples `du(dir)` every 200 ms until stopped; the largest seen.
struct Peak {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peak {
    fn watch(dir: PathBuf) -> Peak {
        let max = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (max.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(du(&dir), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Peak {
            max,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

fn ratio(bytes: u64, of: u64) -> String {
    format!(
        "{:.2} GiB = {:.3}x written",
        bytes as f64 / (1u64 << 30) as f64,
        bytes as f64 / of as f64
    )
}

/// Write the data set as plain 32 MiB files under `dir` (then removed);
/// MiB/s.
fn plain_write(dir: &Path, blocks: &[Vec<u8>], mib: usize) -> f64 {
    std::fs::create_dir_all(dir).expect("plain dir");
    let t = Instant::now();
    for (n, start) in (0..mib).step_by(32).enumerate() {
        let mut buf = Vec::with_capacity(32 * MIB);
        for i in start..(start + 32).min(mib) {
            buf.extend_from_slice(&stamped(blocks, i));
        }
        std::fs::write(dir.join(format!("{n:06}")), &buf).expect("plain write");
    }
    let rate = mib as f64 / t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(dir).expect("plain cleanup");
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4096);
    let settle: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let written = (mib * MIB) as u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let url = format!("file://{}", store.display());
    let engine = Engine::open(&url, EngineOptions::default())
        .await
        .expect("open");
    let fs = engine.root_dataset().await;
    let root = Creds::root();
    let f = fs
        .create(
            &root,
            fs.info().root,
            b"seq",
            CreateHow::Guarded,
            &SetAttr::default(),
        )
        .await
        .expect("create");
    let blocks: Vec<Vec<u8>> = (0..16).map(|i| noise(MIB, i)).collect();
    let plain_dir = dir.path().join("plain");
    let plain_before = plain_write(&plain_dir, &blocks, mib);

    let peak = Peak::watch(store.clone());
    let t = Instant::now();
    for i in 0..mib {
        let data = stamped(&blocks, i);
        fs.write(&root, f.ino, (i * MIB) as u64, &data)
            .await
            .expect("write");
    }
    engine.flush().await.expect("flush");
    let write_s = t.elapsed().as_secs_f64();
    let peak = peak.finish();
    let after = du(&store);
    let plain_after = plain_write(&plain_dir, &blocks, mib);
    let write = mib as f64 / write_s;
    let plain = (plain_before + plain_after) / 2.0;
    println!(
        "sequential write of {mib} MiB through the engine on file:// (1 MiB writes, then flush):"
    );
    println!(
        "  write        {write:>8.1} MiB/s = {:.2}x plain files ({plain_before:.1} before, {plain_after:.1} after)",
        write / plain
    );
    println!("  store peak   {}", ratio(peak, written));
    println!("  store after  {}", ratio(after, written));
    if settle > 0 {
        tokio::time::sleep(Duration::from_secs(settle)).await;
        println!("  store {settle} s later  {}", ratio(du(&store), written));
    }

    let t = Instant::now();
    let mut off = 0u64;
    while off < written {
        let (d, _) = fs.read(&root, f.ino, off, MIB as u32).await.expect("read");
        assert!(!d.is_empty(), "short read at {off}");
        off += d.len() as u64;
    }
    println!(
        "  read         {:>8.1} MiB/s (warm: page cache)",
        mib as f64 / t.elapsed().as_secs_f64()
    );

    let d = fs
        .mkdir(&root, fs.info().root, b"small", &SetAttr::default())
        .await
        .expect("mkdir");
    let t = Instant::now();
    for i in 0..10_000 {
        fs.create(
            &root,
            d.ino,
            format!("f{i}").as_bytes(),
            CreateHow::Guarded,
            &SetAttr::default(),
        )
        .await
        .expect("create");
    }
    println!(
        "  creates      {:>8.0} /s (10,000 empty files, no waiting for durability)",
        10_000.0 / t.elapsed().as_secs_f64()
    );
    engine.close().await.expect("close");
}
