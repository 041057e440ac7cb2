//! Sequential write and read through NFS on `file://` and on `s3://` (a
//! local moto server), with the object store requests each did per MiB.
//! Run it with `cargo xtask bench-nfs [MiB]` (release build).
//!
//! Write: 1 MiB UNSTABLE WRITEs of distinct data, then COMMIT. Read: the
//! server is restarted first (cold caches, so reads go to the object store),
//! then 1 MiB READs. The client is the crates.io `nfs3_client`, one call in
//! flight.

use std::time::Instant;

use cairn_testkit::nfs3_types::nfs3::*;
use cairn_testkit::{Moto, Server, commit, create_file, mount, noise, stamped, write_unstable};

const MIB: usize = 1 << 20;

fn start(args: &[&str]) -> Server {
    Server::start("cairn-nfs", args).unwrap_or_else(|e| panic!("{e}"))
}

async fn requests(s: &Server) -> (u64, u64) {
    let mut a = cairn_rpc::connect(&s.endpoint(), None)
        .await
        .expect("admin");
    let r = a
        .stats(cairn_rpc::pb::StatsRequest {})
        .await
        .expect("stats")
        .into_inner()
        .requests
        .unwrap_or_default();
    (r.put, r.get)
}

struct Figures {
    write_mib_s: f64,
    read_mib_s: f64,
    puts_per_mib: f64,
    gets_per_mib: f64,
}

async fn run(args: &[&str], mib: usize) -> Figures {
    let s = start(args);
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let fh = create_file(&mut c, "seq.bin").await;
    let blocks: Vec<Vec<u8>> = (0..16).map(|i| noise(MIB, i)).collect();
    let (p0, _) = requests(&s).await;
    let t = Instant::now();
    for i in 0..mib {
        let data = stamped(&blocks, i);
        let w = write_unstable(&mut c, &fh, (i * MIB) as u64, &data).await;
        assert!(w.is_ok(), "write {i} failed");
    }
    commit(&mut c, &fh).await;
    let write_s = t.elapsed().as_secs_f64();
    let (p1, _) = requests(&s).await;
    drop(c);
    let (status, log) = tokio::task::spawn_blocking(move || s.stop())
        .await
        .expect("stop");
    assert!(status.success(), "{log}");

    let s = start(args);
    let mut c = mount(s.nfs_port, "/", 0, 0).await;
    let (_, g0) = requests(&s).await;
    let t = Instant::now();
    let mut off = 0u64;
    loop {
        let r = c
            .read(&READ3args {
                file: fh.clone(),
                offset: off,
                count: MIB as u32,
            })
            .await
            .expect("rpc");
        let Nfs3Result::Ok(ok) = r else {
            panic!("read failed at {off}")
        };
        off += ok.data.len() as u64;
        if ok.eof || ok.data.is_empty() {
            break;
        }
    }
    let read_s = t.elapsed().as_secs_f64();
    assert_eq!(off, (mib * MIB) as u64, "read everything back");
    let (_, g1) = requests(&s).await;
    Figures {
        write_mib_s: mib as f64 / write_s,
        read_mib_s: mib as f64 / read_s,
        puts_per_mib: (p1 - p0) as f64 / mib as f64,
        gets_per_mib: (g1 - g0) as f64 / mib as f64,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let dir = tempfile::tempdir().expect("tempdir");
    let file_url = format!("file://{}", dir.path().join("store").display());
    let moto = Moto::start("bench");
    let cfg = dir.path().join("s3.toml");
    std::fs::write(&cfg, moto.config("bench", "")).expect("config");
    let cfg = cfg.to_str().expect("path").to_string();
    let listen = ["--nfs-listen", "127.0.0.1:0", "--rpc-listen", "127.0.0.1:0"];
    let file_args: Vec<&str> = ["--store", file_url.as_str()]
        .into_iter()
        .chain(listen)
        .collect();
    let s3_args: Vec<&str> = ["-c", cfg.as_str()].into_iter().chain(listen).collect();
    println!("sequential {mib} MiB through NFS (1 MiB calls, one in flight):");
    println!(
        "{:<10} {:>12} {:>12} {:>12} {:>12}",
        "store", "write MiB/s", "read MiB/s", "PUTs/MiB", "GETs/MiB"
    );
    for (name, args) in [("file://", &file_args), ("s3://", &s3_args)] {
        let f = run(args, mib).await;
        println!(
            "{name:<10} {:>12.1} {:>12.1} {:>12.3} {:>12.3}",
            f.write_mib_s, f.read_mib_s, f.puts_per_mib, f.gets_per_mib
        );
    }
    plain_s3(&moto, dir.path(), mib);
}

/// The same bytes PUT and GET by a plain S3 client (boto3's `upload_file`
/// and `download_file`, default transfer settings) against the same moto
/// server: the peer the `s3://` figures are compared with.
fn plain_s3(moto: &Moto, dir: &std::path::Path, mib: usize) {
    use std::io::Write;
    let src = dir.join("plain.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).expect("source"));
        let blocks: Vec<Vec<u8>> = (0..16).map(|i| noise(MIB, i)).collect();
        for i in 0..mib {
            f.write_all(&stamped(&blocks, i)).expect("write source");
        }
        f.flush().expect("flush source");
    }
    let script = r#"
import sys, time, boto3
ep, bucket, path = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
t = time.time(); s3.upload_file(path, bucket, "plain/obj"); up = time.time() - t
t = time.time(); s3.download_file(bucket, "plain/obj", path + ".back"); down = time.time() - t
print(up, down)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &moto.endpoint, &moto.bucket])
        .arg(&src)
        .output()
        .expect("python3");
    if !out.status.success() {
        println!(
            "plain S3 client: skipped ({})",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("boto3 failed")
        );
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let t: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if let [up, down] = t[..] {
        println!(
            "{:<10} {:>12.1} {:>12.1}   (boto3 upload_file / download_file, same moto)",
            "plain s3",
            mib as f64 / up,
            mib as f64 / down
        );
    }
}
