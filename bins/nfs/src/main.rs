//! `cairn-nfs`: serves a cairn store over NFSv3 (and, in the same process,
//! the admin API). With no arguments it serves `./cairn-data` on
//! `127.0.0.1:2049`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cairn_config::Config;
use cairn_engine::{Engine, EngineOptions, KvOptions};
use cairn_nfs::{NfsOptions, NfsServer};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Serve a cairn store over NFSv3.
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
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn-nfs: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn-nfs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &Args) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(s) = &args.store {
        config.storage.url = s.clone();
    }
    if let Some(a) = &args.nfs_listen {
        config.nfs.listen = a.clone();
    }
    if let Some(a) = &args.rpc_listen {
        config.rpc.listen = a.clone();
    }
    Ok(config)
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    init_logging(&config.log.level);
    let nfs_addr: SocketAddr = config.nfs.listen.parse().with_context(|| {
        format!(
            "--nfs-listen {:?} is not an address:port",
            config.nfs.listen
        )
    })?;
    let engine = Engine::open(
        &config.storage.url,
        EngineOptions {
            chunk_size: config.storage.chunk_size_bytes as u32,
            compress: config.storage.compression == cairn_config::Compression::Lz4,
            kv: KvOptions {
                object_store_options: config.storage.options.clone().into_iter().collect(),
                ..Default::default()
            },
        },
    )
    .await
    .with_context(|| format!("cannot open store {}", config.storage.url))?;
    let server = NfsServer::bind(
        engine.clone(),
        nfs_addr,
        NfsOptions {
            snapdir_visible: config.nfs.snapdir == cairn_config::Snapdir::Visible,
            ..Default::default()
        },
    )
    .await?;
    let local = server.local_addr()?;
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
    println!("cairn-nfs: store {}", engine.url());
    println!("cairn-nfs: datasets: {}", datasets.join(", "));
    println!("cairn-nfs: NFS listening on {local}");
    println!(
        "cairn-nfs: mount with: mount -t nfs -o vers=3,proto=tcp,port={p},mountport={p},nolock {}:/ /mnt",
        local.ip(),
        p = local.port()
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    server.serve(shutdown).await?;
    tracing::info!("stopped serving; flushing the store");
    engine
        .flush()
        .await
        .context("flushing the store at shutdown")?;
    engine.close().await.context("closing the store")?;
    tracing::info!("store closed");
    Ok(())
}

/// Cancel `token` on SIGINT or SIGTERM.
async fn signals(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    token.cancel();
}
