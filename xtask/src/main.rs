//! Developer workflows: `cargo xtask ci | test | bench | e2e-kernel`.
//!
//! `ci` is what `.ci/run` calls: format check, clippy with warnings as
//! errors, then the whole test suite (nextest when installed, else cargo test).

mod kernel;

use std::process::Command;

use anyhow::{Context, bail};

pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

pub(crate) fn cargo() -> Command {
    Command::new(cargo_exe())
}

/// SIGKILL crash cycles against the real server (`args` as for
/// `bins/nfs/examples/crash.rs`). Built for the whole workspace with the
/// test features, as the test suite is: a `-p cairn-nfs` build would unify
/// features differently and rebuild much of the dependency tree.
fn crash(args: &[String]) -> anyhow::Result<()> {
    run(cargo()
        .args(["build", "--workspace", "--bins", "--examples"])
        .args(TEST_FEATURES))?;
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| workspace_root().join("target"),
        std::path::PathBuf::from,
    );
    run(Command::new(target.join("debug/examples/crash")).args(args))
}

fn cargo_exe() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// What the end-to-end tests need beyond the Rust toolchain, installed if
/// missing: Debian's `libnfs-utils` (the `nfs-cp` client) and PyPI's
/// `moto[server]` (the S3 server for the `s3://` tests).
fn test_deps() -> anyhow::Result<()> {
    if !kernel::have("nfs-cp") {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        let apt = |args: &[&str]| {
            let mut c = if root {
                Command::new("apt-get")
            } else {
                let mut c = Command::new("sudo");
                c.arg("apt-get");
                c
            };
            c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            c
        };
        run(&mut apt(&["update", "-qq"]))?;
        run(&mut apt(&[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "libnfs-utils",
        ]))
        .context("installing libnfs-utils (the nfs-cp client the end-to-end tests use)")?;
    }
    let moto = Command::new("python3")
        .args(["-c", "import moto.server"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !moto {
        run(Command::new("python3").args(["-m", "pip", "install", "-q", "moto[server]"]))
            .context("installing moto[server] (the S3 server the s3:// tests use)")?;
    }
    Ok(())
}

/// A `cairn-nfs` example that drives the release server and CLI binaries:
/// build both, then run it.
fn server_example(example: &str, args: &[String]) -> anyhow::Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "cairn-nfs",
        "-p",
        "cairn-cli",
        "--bins",
    ]))?;
    release_example("cairn-nfs", example, args)
}

/// Run example `name` of `package`, release build, with `rest` as its
/// arguments.
fn release_example(package: &str, name: &str, rest: &[String]) -> anyhow::Result<()> {
    run(cargo()
        .args(["run", "--release", "-p", package, "--example", name, "--"])
        .args(rest))
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Features of every test build: the engine's crash points (inert unless a
/// test arms one), so the crash-point tests build and one build serves all.
const TEST_FEATURES: [&str; 2] = ["--features", "cairn-engine/failpoints"];

fn test() -> anyhow::Result<()> {
    // The end-to-end tests run the workspace's binaries (cairn-nfs, cairn).
    run(cargo()
        .args(["build", "--workspace", "--bins"])
        .args(TEST_FEATURES))?;
    if has_nextest() {
        run(cargo()
            .args(["nextest", "run", "--workspace", "--no-fail-fast"])
            .args(TEST_FEATURES))?;
        // nextest does not run doctests.
        run(cargo()
            .args(["test", "--workspace", "--doc"])
            .args(TEST_FEATURES))
    } else {
        run(cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(TEST_FEATURES))
    }
}

/// The workspace's root directory, read at run time: this binary may have
/// been built for a clone at another path sharing the target directory.
fn workspace_root() -> std::path::PathBuf {
    let xtask = std::path::PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    );
    xtask
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or(xtask)
}

/// The cargo-fuzz targets in `fuzz/`.
const FUZZ_TARGETS: [&str; 5] = [
    "codec_keys",
    "codec_values",
    "nfs_handle",
    "nfs_call",
    "admin_request",
];

/// `fuzz [--smoke | --seconds N] [target]`: each target for N seconds
/// (`--smoke`: 20). Installs cargo-fuzz if missing; builds on the stable
/// toolchain without a sanitizer (coverage-guided, panics are crashes).
fn fuzz(args: &[String]) -> anyhow::Result<()> {
    let mut seconds = 300u64;
    let mut only = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => seconds = 20,
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("--seconds wants a number"))?
            }
            t if FUZZ_TARGETS.contains(&t) => only = Some(t.to_string()),
            other => bail!("unknown fuzz argument {other:?} (targets: {FUZZ_TARGETS:?})"),
        }
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let tools = format!("{home}/.cache/cairn-tools");
    let path = format!("{tools}/bin:{}", std::env::var("PATH").unwrap_or_default());
    let has = cargo()
        .env("PATH", &path)
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has {
        run(cargo().args(["install", "--locked", "cargo-fuzz", "--root", &tools]))?;
    }
    let target_dir = format!("{home}/.cache/cairn-fuzz-target");
    let root = workspace_root().join("fuzz");
    for t in FUZZ_TARGETS {
        if only.as_deref().is_some_and(|o| o != t) {
            continue;
        }
        println!("fuzz {t}: {seconds} s");
        run(cargo()
            .current_dir(&root)
            .env("PATH", &path)
            .args([
                "fuzz",
                "run",
                "-s",
                "none",
                "--target-dir",
                &target_dir,
                t,
                "--",
            ])
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1"))?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => {
            test_deps()?;
            run(cargo().args(["fmt", "--all", "--check"]))?;
            run(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                TEST_FEATURES[0],
                TEST_FEATURES[1],
                "--",
                "-D",
                "warnings",
            ]))?;
            test()?;
            // SIGKILL crash cycles against the real server (reuses the
            // test build).
            crash(&["--cycles", "12", "--seed", "20261121"].map(String::from))?;
            // Every fuzz target briefly (installs cargo-fuzz; its own
            // build, cached).
            fuzz(&["--smoke".to_string()])?;
            // The Linux kernel NFS client against cairn-nfs, in a qemu
            // guest (a few minutes).
            kernel::e2e_kernel(&[])
        }
        Some("test") => test(),
        Some("bench") => run(cargo()
            .args(["bench", "-p", "cairn-engine"])
            .args(&args[1..])),
        Some("e2e-kernel") => kernel::e2e_kernel(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("crash") => crash(&args[1..]),
        Some("bench-engine") => {
            // bench-engine [MiB] [SETTLE_SECS]: sustained write, store size
            // during and after it, read back, small-file creates.
            release_example("cairn-engine", "sustained", &args[1..])
        }
        // bench-admin [FILES] [RUNS]: admin call wall times through the
        // real server and CLI, small dataset vs FILES files.
        Some("bench-admin") => server_example("admin_latency", &args[1..]),
        // bench-getattr [CHANGES] [SECONDS]: NFS GETATTR p50/p99 idle and
        // beside gc, dataset info and a snapshot delete.
        Some("bench-getattr") => server_example("getattr_under_load", &args[1..]),
        Some("bench-nfs") => {
            // bench-nfs [MiB] [BIG_MIB] [ROUNDS]: the store figures at MiB,
            // then the nfs-cp comparison with Ganesha at BIG_MIB.
            run(cargo().args(["build", "--release", "-p", "cairn-nfs", "--bins"]))?;
            release_example("cairn-nfs", "throughput", &args[1..args.len().min(2)])?;
            release_example("cairn-nfs", "vs_ganesha", &args[args.len().min(2)..])
        }
        _ => bail!(
            "usage: cargo xtask <ci | test | bench [criterion args] | bench-engine [MiB] [SETTLE_SECS] | bench-nfs [MiB] [BIG_MIB] [ROUNDS] | bench-admin [FILES] [RUNS] | bench-getattr [CHANGES] [SECONDS] | crash [--cycles N] [--seed S] | fuzz [--smoke | --seconds N] [target] | e2e-kernel [--fsx-ops N] [--groups a,b] [--timeout S]>"
        ),
    }
}
