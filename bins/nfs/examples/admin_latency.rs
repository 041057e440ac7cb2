//! Wall time of admin calls through the real server and the real CLI, on
//! a small dataset and on a large one: `cairn dataset snapshot`, `cairn
//! dataset info` and `cairn dataset list` (1 dataset, then 100). Each figure
//! is the median of several runs of the `cairn` process, so it includes
//! the CLI's start and connection. Run it with `cargo xtask bench-admin
//! [FILES]` (release build; default 100,000 files, created through NFS).
//!
//! usage: admin_latency [FILES] [RUNS]

use std::time::Instant;

use cairn_testkit::{Server, bin, create_file, mount, ok};

const SMALL_FILES: usize = 10;
const DATASETS: usize = 100;

/// Median wall time in ms of `runs` runs of `cairn args(i)`.
fn median_ms(s: &Server, runs: usize, args: impl Fn(usize) -> Vec<String>) -> f64 {
    let cli = bin("cairn");
    let endpoint = s.endpoint();
    let mut times: Vec<f64> = (0..runs)
        .map(|i| {
            let mut all = vec!["--endpoint".to_string(), endpoint.clone()];
            all.extend(args(i));
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            let t = Instant::now();
            ok(&cli, &refs);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

fn v(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Create files `from..to` in the export's root through NFS.
async fn create_files(port: u16, from: usize, to: usize) {
    let mut c = mount(port, "/", 0, 0).await;
    for i in from..to {
        create_file(&mut c, &format!("f{i:07}")).await;
    }
}

struct Row {
    what: &'static str,
    small: f64,
    large: f64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let files: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().join("store").display());
    let s = Server::nfs(&url, &[]);
    let mut snaps = 0usize;
    let mut snap = |s: &Server| {
        let base = snaps;
        snaps += runs;
        median_ms(s, runs, move |i| {
            v(&["dataset", "snapshot", "root", &format!("s{}", base + i)])
        })
    };

    create_files(s.nfs_port, 0, SMALL_FILES).await;
    let baseline = median_ms(&s, runs, |_| v(&["--version"]));
    let snap_small = snap(&s);
    let info_small = median_ms(&s, runs, |_| v(&["dataset", "info", "root"]));
    let list_small = median_ms(&s, runs, |_| v(&["dataset", "list"]));

    let t = Instant::now();
    create_files(s.nfs_port, SMALL_FILES, files).await;
    eprintln!(
        "created {} files through NFS in {:.1} s",
        files - SMALL_FILES,
        t.elapsed().as_secs_f64()
    );
    let snap_large = snap(&s);
    let info_large = median_ms(&s, runs, |_| v(&["dataset", "info", "root"]));
    for i in 1..DATASETS {
        ok(
            bin("cairn"),
            &[
                "--endpoint",
                &s.endpoint(),
                "dataset",
                "create",
                &format!("d{i:03}"),
            ],
        );
    }
    let list_large = median_ms(&s, runs, |_| v(&["dataset", "list"]));
    let (status, log) = s.stop();
    assert!(status.success(), "{log}");

    let rows = [
        Row {
            what: "dataset snapshot",
            small: snap_small,
            large: snap_large,
        },
        Row {
            what: "dataset info",
            small: info_small,
            large: info_large,
        },
    ];
    println!(
        "admin calls through cairn-nfs and the cairn CLI, median of {runs} runs (ms, whole process; \
         `cairn --version` alone: {baseline:.1} ms):"
    );
    println!(
        "{:<20} {:>12} {:>14} {:>8}",
        "",
        format!("{SMALL_FILES} files"),
        format!("{files} files"),
        "ratio"
    );
    for r in rows {
        println!(
            "{:<20} {:>12.1} {:>14.1} {:>8.2}",
            r.what,
            r.small,
            r.large,
            r.large / r.small
        );
    }
    println!(
        "{:<20} {:>12.1} {:>14.1} {:>8.2}   (1 dataset vs {DATASETS} datasets)",
        "dataset list",
        list_small,
        list_large,
        list_large / list_small
    );
    println!("(targets: ratio <= 1.3 and each < 20 ms)");
}
