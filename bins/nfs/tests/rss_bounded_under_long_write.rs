//! Backpressure, not unbounded memory: writing distinct data through NFS
//! (1 MiB UNSTABLE writes, one in flight, a COMMIT every 256 MiB) keeps the
//! server's peak RSS under 512 MiB. 4 GiB by default; `CAIRN_RSS_TEST_MIB`
//! sets another amount. The file:// store peaks at about 9 GiB on disk
//! during the run (docs/limits.md).
mod common;
use cairn_testkit::{commit, create_file, mount, noise, write_unstable};
use common::*;

const MIB: usize = 1 << 20;

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kb / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_write_keeps_rss_under_512_mib() {
    let total: usize = std::env::var("CAIRN_RSS_TEST_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let (_d, store) = store();
    let cfg = std::env::var("CAIRN_RSS_TEST_CONFIG").unwrap_or_default();
    let extra: Vec<&str> = if cfg.is_empty() {
        vec![]
    } else {
        vec!["-c", cfg.as_str()]
    };
    let s = Server::nfs(&store, &extra);
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let fh = create_file(&mut c, "big").await;
    // Distinct data everywhere (no dedup): a fresh block per MiB.
    let mut base = noise(MIB, 1);
    for i in 0..total {
        for (j, w) in base.chunks_mut(64 * 1024).enumerate() {
            w[..8].copy_from_slice(&((i * 16 + j) as u64).to_le_bytes());
        }
        if let Err(status) = write_unstable(&mut c, &fh, (i * MIB) as u64, &base).await {
            let log = s.stderr();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "write {i} failed: {status:?} (the store needs about 9 GiB free); server log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if (i + 1) % 256 == 0 || i + 1 == total {
            commit(&mut c, &fh).await;
        }
    }
    let peak = peak_rss_mib(s.pid());
    eprintln!("wrote {total} MiB through NFS; server peak RSS {peak} MiB");
    assert!(
        peak < 512,
        "server peak RSS {peak} MiB after writing {total} MiB (bound 512 MiB)"
    );
    drop(c);
    stop_ok(s).await;
}
