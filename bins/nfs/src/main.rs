//! `cairn-nfs`: serves a cairn store over NFSv3 and, in the same process
//! (the one that owns the store), the admin API. With no arguments it serves
//! `./cairn-data` on `127.0.0.1:2049`, and the admin API on
//! `127.0.0.1:7049`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cairn_daemon::Overrides;
use cairn_nfs::{NfsOptions, NfsServer};
use cairn_rpc::RpcServer;
use clap::Parser;

/// Serve a cairn store over NFSv3, with the admin API beside it.
#[derive(Debug, Parser)]
#[command(name = "cairn-nfs", version, about)]
struct Args {
    /// Configuration file (see `cairn init` for a template).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Store URL: a directory, file:///dir, memory://, s3://bucket/prefix.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Address for NFS, MOUNT and the port query.
    #[arg(long, value_name = "ADDR")]
    nfs_listen: Option<String>,
    /// Address for the admin API.
    #[arg(long, value_name = "ADDR")]
    rpc_listen: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cairn_daemon::run_main("cairn-nfs", run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = cairn_daemon::load_config(
        args.config.as_deref(),
        &Overrides {
            store: args.store,
            nfs_listen: args.nfs_listen,
            rpc_listen: args.rpc_listen,
        },
    )?;
    cairn_daemon::init_logging(&config.log.level);
    let nfs_addr = cairn_daemon::listen_addr(&config.nfs.listen, "nfs.listen")?;
    let rpc_addr = cairn_daemon::listen_addr(&config.rpc.listen, "rpc.listen")?;
    let token = cairn_daemon::admin_token(&config, rpc_addr)?;
    let engine = cairn_daemon::open_engine(&config).await?;
    let nfs = NfsServer::bind(
        engine.clone(),
        nfs_addr,
        NfsOptions {
            snapdir_visible: config.nfs.snapdir == cairn_config::Snapdir::Visible,
            ..Default::default()
        },
    )
    .await?;
    let rpc = RpcServer::bind(engine.clone(), rpc_addr, token.clone())
        .await
        .with_context(|| format!("cannot listen for the admin API on {rpc_addr}"))?;
    let local = nfs.local_addr()?;
    let datasets: Vec<String> = engine
        .list_datasets()
        .await
        .map(|l| {
            l.into_iter()
                .map(|d| {
                    if d.default {
                        format!("{} (default)", d.name)
                    } else {
                        d.name
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    // Handlers go in before the "listening" lines: whoever waits for them
    // may signal at once.
    let shutdown = cairn_daemon::shutdown_on_signals();
    println!("cairn-nfs: store {}", engine.url());
    println!("cairn-nfs: datasets: {}", datasets.join(", "));
    println!("cairn-nfs: NFS listening on {local}");
    println!(
        "cairn-nfs: admin API listening on {}{}",
        rpc.local_addr()?,
        if token.is_some() {
            " (token required)"
        } else {
            ""
        }
    );
    println!(
        "cairn-nfs: mount with: mount -t nfs -o vers=3,proto=tcp,port={p},mountport={p},nolock {}:/ /mnt",
        local.ip(),
        p = local.port()
    );

    // The admin API runs on a thread of its own, so its CPU work (gc,
    // walks, snapshot deletes) never delays an NFS reply; if it fails it
    // stops NFS too rather than run half a server.
    let admin = rpc.serve_on_thread(shutdown.clone());
    let serving = async { tokio::join!(nfs.serve(shutdown.clone()), admin) };
    let (n, r) = cairn_daemon::with_grace(serving, &shutdown, (Ok(()), Ok(()))).await;
    n?;
    r.context("admin API")?;
    tracing::info!("stopped serving; flushing the store");
    cairn_daemon::close_engine(&engine).await
}
