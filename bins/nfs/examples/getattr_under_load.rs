//! NFS GETATTR latency through the real server, idle and while admin work
//! runs beside it: a `cairn gc` loop, a `cairn dataset info` loop and the
//! delete of a snapshot that holds 10,000 changes (the files it kept were
//! removed from the live tree). Prints p50 and p99 of each phase and the
//! ratio of the p99s (issue target: loaded p99 <= 2x idle p99). Run it with
//! `cargo xtask bench-getattr [CHANGES] [SECONDS]` (release build).
//!
//! usage: getattr_under_load [CHANGES] [SECONDS]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_testkit::nfs3_types::nfs3::{
    GETATTR3args, Nfs3Result, REMOVE3args, diropargs3, filename3, nfs_fh3,
};
use cairn_testkit::nfs3_types::xdr_codec::Opaque;
use cairn_testkit::{Nfs, Server, bin, create_file, mount, ok};

/// GETATTR round trips of `fh` for `secs` seconds: sorted latencies (µs).
async fn getattrs(c: &mut Nfs, fh: &nfs_fh3, secs: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        let r = c
            .getattr(&GETATTR3args { object: fh.clone() })
            .await
            .expect("rpc");
        assert!(matches!(r, Nfs3Result::Ok(_)), "getattr failed");
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Run `cairn args` in a loop on a thread until `stop`; counts runs.
fn cli_loop(
    s: &Server,
    args: &'static [&'static str],
    stop: Arc<AtomicBool>,
    runs: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let endpoint = s.endpoint();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let mut all = vec!["--endpoint", endpoint.as_str()];
            all.extend_from_slice(args);
            ok(bin("cairn"), &all);
            runs.fetch_add(1, Ordering::Relaxed);
        }
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let changes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let secs: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5.0);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().join("store").display());
    let s = Server::nfs(&url, &[]);
    let cli = |args: &[&str]| {
        let endpoint = s.endpoint();
        let mut all = vec!["--endpoint", endpoint.as_str()];
        all.extend_from_slice(args);
        ok(bin("cairn"), &all);
    };

    // CHANGES files kept only by snapshot `held`.
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let probe = create_file(&mut c, "probe").await;
    for i in 0..changes {
        create_file(&mut c, &format!("f{i:06}")).await;
    }
    cli(&["dataset", "snapshot", "root", "held"]);
    let root = c.root_nfs_fh3();
    for i in 0..changes {
        let name = format!("f{i:06}");
        let r = c
            .remove(&REMOVE3args {
                object: diropargs3 {
                    dir: root.clone(),
                    name: filename3(Opaque::borrowed(name.as_bytes())),
                },
            })
            .await
            .expect("rpc");
        assert!(matches!(r, Nfs3Result::Ok(_)), "remove {name}");
    }

    let idle = getattrs(&mut c, &probe, secs).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (gcs, infos) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let endpoint = s.endpoint();
    let delete = std::thread::spawn(move || {
        let t = Instant::now();
        ok(
            bin("cairn"),
            &[
                "--endpoint",
                &endpoint,
                "dataset",
                "delete-snapshot",
                "root@held",
            ],
        );
        t.elapsed()
    });
    let gc = cli_loop(&s, &["gc"], stop.clone(), gcs.clone());
    let info = cli_loop(
        &s,
        &["dataset", "info", "root"],
        stop.clone(),
        infos.clone(),
    );
    let loaded = getattrs(&mut c, &probe, secs).await;
    stop.store(true, Ordering::Relaxed);
    let took: Duration = delete.join().expect("delete thread");
    gc.join().expect("gc thread");
    info.join().expect("info thread");
    let (status, log) = s.stop();
    assert!(status.success(), "{log}");

    println!(
        "NFS GETATTR latency through cairn-nfs (µs, {secs} s per phase, one client, calls in sequence):"
    );
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>8}",
        "", "calls", "p50", "p99", "max"
    );
    for (what, v) in [("idle", &idle), ("loaded", &loaded)] {
        println!(
            "{what:<8} {:>8} {:>8.0} {:>8.0} {:>8.0}",
            v.len(),
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 1.0)
        );
    }
    println!(
        "loaded p99 / idle p99: {:.2} (target <= 2); beside it: {} gc runs, {} dataset info runs, \
         and the delete of a {changes}-change snapshot ({:.2} s)",
        pct(&loaded, 0.99) / pct(&idle, 0.99),
        gcs.load(Ordering::Relaxed),
        infos.load(Ordering::Relaxed),
        took.as_secs_f64()
    );
}
