//! `cargo xtask e2e-kernel`: the Linux kernel's NFSv3 client against the
//! real `cairn-nfs`, in a qemu guest (this machine's kernel has no NFS
//! client). The guest boots Debian's kernel with the host's `/` mounted
//! read-only, runs `kernel-vm/payload.sh`, and leaves results in an out
//! folder this reads back: cp -a / tar / git clone with diff and git fsck,
//! a snapshot read through `.snapshots`, fsx, and pjdfstest group by group.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{cargo, run};

/// pjdfstest's groups (the first component of every test name).
const GROUPS: [&str; 15] = [
    "chmod",
    "chown",
    "ftruncate",
    "link",
    "mkdir",
    "mkfifo",
    "mknod",
    "open",
    "posix_fallocate",
    "rename",
    "rmdir",
    "symlink",
    "truncate",
    "unlink",
    "utimensat",
];

/// pjdfstest cases that cannot pass over NFSv3, with the reason. They are
/// reported, not counted as failures.
const EXPECTED_FAILURES: [(&str, &str); 2] = [
    (
        "unlink::open_file_not_freed",
        "NFSv3 has no open state: the Linux client renames a file that is still open to .nfsXXXX instead of removing it (\"silly rename\"), so fstat on the open descriptor still sees nlink 1; knfsd behaves the same",
    ),
    (
        "utimensat::y2038",
        "nfstime3 seconds are unsigned 32-bit (RFC 1813), so 2^32 cannot cross the wire; times up to 2106-02-07 round-trip",
    ),
];

struct Opts {
    fsx_ops: u64,
    groups: Vec<String>,
    timeout_s: u64,
    /// Print the results of the last run without running again.
    report_only: bool,
}

fn parse(args: &[String]) -> anyhow::Result<Opts> {
    let mut o = Opts {
        fsx_ops: 3000,
        groups: GROUPS.iter().map(|g| g.to_string()).collect(),
        timeout_s: 2400,
        report_only: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().context(format!("{a} needs a value"));
        match a.as_str() {
            "--fsx-ops" => o.fsx_ops = val()?.parse().context("--fsx-ops")?,
            "--groups" => o.groups = val()?.split(',').map(str::to_string).collect(),
            "--timeout" => o.timeout_s = val()?.parse().context("--timeout")?,
            "--report-only" => o.report_only = true,
            other => bail!(
                "unknown option {other}; use --fsx-ops N, --groups a,b,c, --timeout SECONDS, --report-only"
            ),
        }
    }
    Ok(o)
}

pub(crate) fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Install the guest's tools: Debian packages and the crates.io fsx and
/// pjdfstest.
fn tools(dir: &Path) -> anyhow::Result<()> {
    let missing: Vec<&str> = [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("busybox", "busybox-static"),
        ("cpio", "cpio"),
        ("depmod", "kmod"),
        ("mount.nfs", "nfs-common"),
        ("git", "git"),
    ]
    .into_iter()
    .filter(|(cmd, _)| !have(cmd))
    .map(|(_, pkg)| pkg)
    .collect();
    if !missing.is_empty() {
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .context("installing the VM's Debian packages (needs root)")?;
    }
    for t in ["fsx", "pjdfstest"] {
        if !dir.join("bin").join(t).exists() {
            run(cargo()
                .args(["install", "--locked", "--root"])
                .arg(dir)
                .arg(t))?;
        }
    }
    Ok(())
}

pub fn e2e_kernel(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let home = PathBuf::from(std::env::var("HOME").context("HOME")?);
    let cache = home.join(".cache");
    let kvm = cache.join("cairn-kvm");
    if o.report_only {
        return report(&kvm.join("out"), &o, std::time::Duration::ZERO);
    }
    let tooldir = cache.join("cairn-tools");
    let here = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("kernel-vm");
    let root = here
        .parent()
        .and_then(Path::parent)
        .context("workspace root")?
        .to_path_buf();
    tools(&tooldir)?;
    run(cargo().args(["build", "--release", "-p", "cairn-nfs", "-p", "cairn-cli"]))?;
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let target = std::path::absolute(target)?;
    if !kvm.join("vmlinuz").exists() || !kvm.join("initrd.gz").exists() {
        std::fs::create_dir_all(&kvm)?;
        run(Command::new("sh")
            .arg(here.join("build-vm.sh"))
            .arg(&kvm)
            .current_dir(&kvm))?;
    }
    let out = kvm.join("out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let env = format!(
        "SERVER={}\nCLI={}\nFSX={}\nPJD={}\nPJDCONF={}\nSRC={}\nREPO={}\nFSX_OPS={}\nPJD_TIMEOUT=600\nGROUPS=\"{}\"\n",
        target.join("release/cairn-nfs").display(),
        target.join("release/cairn").display(),
        tooldir.join("bin/fsx").display(),
        tooldir.join("bin/pjdfstest").display(),
        here.join("pjdfstest.toml").display(),
        root.join("crates").display(),
        root.display(),
        o.fsx_ops,
        o.groups.join(" "),
    );
    std::fs::write(out.join("env"), env)?;
    eprintln!("xtask: booting the guest (about 10 s) and running the payload; this takes minutes");
    let started = std::time::Instant::now();
    run(Command::new("sh")
        .arg(here.join("run-vm.sh"))
        .arg(here.join("payload.sh"))
        .arg(o.timeout_s.to_string())
        .env("KVM_DIR", &kvm))?;
    report(&out, &o, started.elapsed())
}

/// Read the guest's results, print them, and fail on any failure.
fn report(out: &Path, o: &Opts, took: std::time::Duration) -> anyhow::Result<()> {
    let status = std::fs::read_to_string(out.join("status")).unwrap_or_default();
    let steps: Vec<(String, i32)> = status
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect();
    println!(
        "kernel NFS client tier ({} s in the guest):",
        took.as_secs()
    );
    let mut failed = Vec::new();
    for (k, v) in &steps {
        if k.starts_with("pjd-") {
            continue;
        }
        println!("  {k:<16} {}", if *v == 0 { "ok" } else { "FAILED" });
        if *v != 0 {
            failed.push(k.clone());
        }
    }
    if !steps.iter().any(|(k, _)| k == "done") {
        failed.push("payload did not finish (timeout or crash; see the out folder)".into());
    }
    if let Some(last) = std::fs::read_to_string(out.join("fsx.log"))
        .ok()
        .and_then(|l| l.lines().last().map(str::to_string))
    {
        println!("  fsx: {last}");
    }

    // pjdfstest: count each test once, in the group its name starts with.
    let mut results: BTreeMap<String, String> = BTreeMap::new();
    for g in &o.groups {
        let log = std::fs::read_to_string(out.join(format!("pjd-{g}.log"))).unwrap_or_default();
        for line in log.lines() {
            let mut parts = line.split_whitespace();
            let (Some(name), Some(verdict)) = (parts.next(), parts.next()) else {
                continue;
            };
            if name.split("::").next() != Some(g.as_str()) || !name.contains("::") {
                continue;
            }
            let verdict = match verdict {
                "ok" => "passed",
                "skipped" => "skipped",
                "FAILED" | "failed" => "failed",
                _ => continue,
            };
            let verdict =
                if verdict == "failed" && EXPECTED_FAILURES.iter().any(|(n, _)| *n == name) {
                    "expected failure"
                } else {
                    verdict
                };
            results.insert(name.to_string(), verdict.to_string());
        }
    }
    println!("  pjdfstest by group (passed / failed / skipped):");
    let (mut tp, mut tf, mut ts, mut tx) = (0, 0, 0, 0);
    for g in &o.groups {
        let of = |v: &str| {
            results
                .iter()
                .filter(|(n, r)| n.split("::").next() == Some(g.as_str()) && r.as_str() == v)
                .count()
        };
        let (p, f, s, x) = (
            of("passed"),
            of("failed"),
            of("skipped"),
            of("expected failure"),
        );
        let rc = steps
            .iter()
            .find(|(k, _)| *k == format!("pjd-{g}"))
            .map(|(_, v)| *v);
        let note = match rc {
            Some(124) => " (timed out)",
            None => " (not run)",
            _ => "",
        };
        let expected = if x > 0 {
            format!(" (+{x} expected failure)")
        } else {
            String::new()
        };
        println!("    {g:<16} {p:>4} / {f:>3} / {s:>3}{expected}{note}");
        (tp, tf, ts, tx) = (tp + p, tf + f, ts + s, tx + x);
        if f > 0 || matches!(rc, Some(124) | None) {
            failed.push(format!("pjdfstest {g}"));
        }
    }
    println!(
        "    {:<16} {tp:>4} / {tf:>3} / {ts:>3} (+{tx} expected failures)",
        "total"
    );
    for (n, r) in &results {
        if r == "failed" {
            println!("    failed: {n}");
        }
    }
    for (n, why) in EXPECTED_FAILURES {
        if results.get(n).map(String::as_str) == Some("expected failure") {
            println!("    expected failure: {n}: {why}");
        }
    }
    println!("  logs: {}", out.display());
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("kernel tier failures: {}", failed.join(", "))
    }
}
