//! `cairn-rpc`: the admin API alone, without NFS (administration and
//! restores on a store no NFS server is using).

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_daemon::Overrides;
use cairn_rpc::RpcServer;
use clap::Parser;

/// Serve the cairn admin API (gRPC) for a store, without NFS.
#[derive(Debug, Parser)]
#[command(name = "cairn-rpc", version, about)]
struct Args {
    /// Configuration file (see `cairn init` for a template).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Store URL: a directory, file:///dir, memory://, s3://bucket/prefix.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Address for the admin API.
    #[arg(long, value_name = "ADDR")]
    rpc_listen: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cairn_daemon::run_main("cairn-rpc", run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = cairn_daemon::load_config(
        args.config.as_deref(),
        &Overrides {
            store: args.store,
            rpc_listen: args.rpc_listen,
            ..Default::default()
        },
    )?;
    cairn_daemon::init_logging(&config.log.level);
    let addr = cairn_daemon::listen_addr(&config.rpc.listen, "rpc.listen")?;
    let token = cairn_daemon::admin_token(&config, addr)?;
    let engine = cairn_daemon::open_engine(&config).await?;
    let server = RpcServer::bind(engine.clone(), addr, token.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for the admin API on {addr}: {e}"))?;
    // Handlers go in before the "listening" lines: whoever waits for them
    // may signal at once.
    let shutdown = cairn_daemon::shutdown_on_signals();
    println!("cairn-rpc: store {}", engine.url());
    println!(
        "cairn-rpc: admin API listening on {}{}",
        server.local_addr()?,
        if token.is_some() {
            " (token required)"
        } else {
            ""
        }
    );
    cairn_daemon::with_grace(server.serve(shutdown.clone()), &shutdown, Ok(())).await?;
    cairn_daemon::close_engine(&engine).await
}
