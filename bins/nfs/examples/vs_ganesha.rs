//! cairn against NFS-Ganesha exporting a local directory, both driven by
//! the same client (libnfs `nfs-cp`, one process per copy), alternating
//! cairn and Ganesha within each round and printing medians. Run it with
//! `cargo xtask bench-nfs` (release build; Ganesha is installed and started
//! with `../shared/tools/peer-nfs/start-ganesha.sh`).
//!
//! Per round, with data distinct from every earlier round (so cairn's dedup
//! never helps): upload of a BIG file, its download right after (warm), the
//! same for a 256 MiB file, and 200 files of 32 KiB, one `nfs-cp` each;
//! then both servers are emptied (cairn: delete and gc). Every copy starts
//! after a `sync`, so none pays for the writeback of the one before.
//!
//! usage: vs_ganesha [BIG_MIB] [ROUNDS]   (defaults 2048 and 3)
//!
//! With `CAIRN_BEFORE=NAME`, a third server joins the rotation: the binary
//! NAME beside `cairn-nfs` (an older build, e.g. the one before a change),
//! on a store of its own, so before and after are measured in one run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cairn_testkit::{Server, noise, ok};

const MIB: usize = 1 << 20;
const SMALL_FILES: usize = 200;
const SMALL_BYTES: usize = 32 << 10;
const MID_MIB: usize = 256;

/// One NFS server under test: how to name a path on it, and (for cairn)
/// the server, emptied between rounds.
struct Target<'a> {
    name: String,
    url: Box<dyn Fn(&str) -> String>,
    cairn: Option<&'a Server>,
}

/// A libnfs URL for `path` on a cairn server.
fn cairn_url(s: &Server) -> Box<dyn Fn(&str) -> String> {
    let port = s.nfs_port;
    Box::new(move |p| format!("nfs://127.0.0.1//{p}?nfsport={port}&mountport={port}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn peer_script(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("../shared/tools/peer-nfs").join(name)
}

/// Write `mib` MiB of data no other file of this run shares.
fn write_distinct(path: &Path, mib: usize, seed: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create source"));
    for i in 0..mib {
        f.write_all(&noise(MIB, seed * 1_000_003 + i as u64))
            .expect("write source");
    }
    f.flush().expect("flush source");
}

/// Time `f`, after writing back every dirty page (`sync`): otherwise a
/// copy pays for the writeback of whatever ran before it (the other
/// server's upload, the previous download), and the figures depend on the
/// order of the rotation.
fn timed(f: impl FnOnce()) -> f64 {
    let _ = Command::new("sync").status();
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let big: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2048);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir().expect("tempdir");

    let store = format!("file://{}", dir.path().join("store").display());
    let cairn = Server::nfs(&store, &[]);
    let export = dir.path().join("ganesha-export");
    let (gport, gmnt) = (free_port(), free_port());
    let out = ok(
        "bash",
        &[
            peer_script("start-ganesha.sh").to_str().expect("path"),
            &gport.to_string(),
            &gmnt.to_string(),
            export.to_str().expect("path"),
            dir.path().join("ganesha-state").to_str().expect("path"),
        ],
    );
    let gpid = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string();
    let export_path = export.to_str().expect("path").to_string();
    let before = std::env::var("CAIRN_BEFORE").ok().map(|name| {
        let store = format!("file://{}", dir.path().join("store-before").display());
        let listen = ["--nfs-listen", "127.0.0.1:0", "--rpc-listen", "127.0.0.1:0"];
        let args: Vec<&str> = ["--store", store.as_str()]
            .into_iter()
            .chain(listen)
            .collect();
        let s = Server::start(&name, &args).unwrap_or_else(|e| panic!("{name}: {e}"));
        (name, s)
    });
    let mut targets = vec![
        Target {
            name: "cairn".into(),
            url: cairn_url(&cairn),
            cairn: Some(&cairn),
        },
        Target {
            name: "ganesha".into(),
            url: Box::new(move |p| {
                format!("nfs://127.0.0.1{export_path}/{p}?nfsport={gport}&mountport={gmnt}")
            }),
            cairn: None,
        },
    ];
    if let Some((name, s)) = &before {
        targets.push(Target {
            name: name.clone(),
            url: cairn_url(s),
            cairn: Some(s),
        });
    }

    // figures[target][measure] = seconds per round
    let measures = [
        "big upload",
        "big download",
        "256M upload",
        "256M download",
        "200 small files",
    ];
    let mut secs = vec![vec![Vec::new(); measures.len()]; targets.len()];
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("src dir");
    let sink = dir.path().join("sink");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for round in 0..rounds {
        // Data no earlier round had (so cairn's dedup never helps); both
        // servers get the same bytes in a round.
        let seed = round as u64 + 1;
        write_distinct(&src.join("big"), big, seed * 3);
        write_distinct(&src.join("mid"), MID_MIB, seed * 3 + 1);
        let small: Vec<PathBuf> = (0..SMALL_FILES)
            .map(|i| {
                let p = src.join(format!("s{i}"));
                std::fs::write(&p, noise(SMALL_BYTES, seed * 100_000 + i as u64))
                    .expect("small source");
                p
            })
            .collect();
        // Rotate which server goes first.
        let n = targets.len();
        for ti in (0..n).map(|i| (i + round) % n) {
            let t = &targets[ti];
            let cp = |from: &str, to: &str| {
                let o = Command::new("nfs-cp")
                    .args([from, to])
                    .output()
                    .expect("nfs-cp");
                assert!(
                    o.status.success(),
                    "nfs-cp {from} {to}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            };
            let s = src.to_str().expect("path");
            let k = sink.to_str().expect("path");
            let big_url = (t.url)("big");
            let mid_url = (t.url)("mid");
            secs[ti][0].push(timed(|| cp(&format!("{s}/big"), &big_url)));
            let _ = std::fs::remove_file(&sink);
            secs[ti][1].push(timed(|| cp(&big_url, k)));
            secs[ti][2].push(timed(|| cp(&format!("{s}/mid"), &mid_url)));
            let _ = std::fs::remove_file(&sink);
            secs[ti][3].push(timed(|| cp(&mid_url, k)));
            secs[ti][4].push(timed(|| {
                for (i, p) in small.iter().enumerate() {
                    cp(p.to_str().expect("path"), &(t.url)(&format!("s{i}")));
                }
            }));
            let _ = std::fs::remove_file(&sink);
            println!(
                "round {round} {:<8} big up {:6.1}s down {:6.1}s | 256M up {:5.2}s down {:5.2}s | small {:5.2}s",
                t.name,
                secs[ti][0][round],
                secs[ti][1][round],
                secs[ti][2][round],
                secs[ti][3][round],
                secs[ti][4][round]
            );
        }
        // Empty both servers for the next round (cairn: delete, then gc so
        // the space comes back).
        let names = ["big".to_string(), "mid".to_string()]
            .into_iter()
            .chain((0..SMALL_FILES).map(|i| format!("s{i}")));
        let servers: Vec<&Server> = targets.iter().filter_map(|t| t.cairn).collect();
        for n in names {
            for s in &servers {
                cairn_testkit::nfs_remove(s.nfs_port, &format!("/{n}"));
            }
            let _ = std::fs::remove_file(export.join(&n));
        }
        for s in servers {
            rt.block_on(async {
                let mut a = cairn_rpc::connect(&s.endpoint(), None)
                    .await
                    .expect("admin");
                a.gc(cairn_rpc::pb::GcRequest {}).await.expect("gc");
            });
        }
    }

    println!("\nnfs-cp, medians of {rounds} alternating rounds (big = {big} MiB, distinct data):");
    let mut head = format!("{:<16}", "");
    for t in &targets {
        head += &format!(" {:>14}", t.name);
    }
    for t in targets.iter().filter(|t| t.cairn.is_some()) {
        head += &format!(" {:>14}", format!("{}/ganesha", t.name));
    }
    println!("{head}");
    for (mi, m) in measures.iter().enumerate() {
        let med: Vec<f64> = secs.iter().map(|t| median(t[mi].clone())).collect();
        // Speeds for the copies, time for the small files.
        let figure = |secs: f64| match mi {
            0 | 1 => big as f64 / secs,
            2 | 3 => MID_MIB as f64 / secs,
            _ => secs,
        };
        let mut line = format!("{m:<16}");
        for &t in &med {
            line += &match mi {
                0..=3 => format!(" {:>14}", format!("{:.0} MiB/s", figure(t))),
                _ => format!(" {:>14}", format!("{t:.2} s")),
            };
        }
        for (ti, t) in targets.iter().enumerate() {
            if t.cairn.is_some() {
                line += &format!(" {:>14.2}", figure(med[ti]) / figure(med[1]));
            }
        }
        println!("{line}");
    }
    println!("(speeds: higher is better, ratio target >= 0.8; small files: time, target <= 1.2)");

    let _ = Command::new("bash")
        .args([
            peer_script("stop-ganesha.sh").to_str().expect("path"),
            &gpid,
        ])
        .status();
    drop(targets);
    for (name, s) in before.into_iter().chain([("cairn-nfs".to_string(), cairn)]) {
        let (status, log) = s.stop();
        assert!(status.success(), "{name} did not exit cleanly:\n{log}");
    }
}
