//! Process plumbing shared by the server binaries (`cairn-nfs`,
//! `cairn-rpc`): configuration with command-line overrides, logging, opening
//! the engine from the configuration, the admin token, and shutdown on
//! SIGINT/SIGTERM.
//!
//! Must never know: NFS or protobuf types, or how the engine works inside.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use cairn_config::{Compression, Config};
use cairn_engine::{Engine, EngineOptions, KvOptions};
use tokio_util::sync::CancellationToken;

/// Command-line values that replace configuration keys.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `storage.url`.
    pub store: Option<String>,
    /// `nfs.listen`.
    pub nfs_listen: Option<String>,
    /// `rpc.listen`.
    pub rpc_listen: Option<String>,
}

/// Read the configuration (defaults if `path` is `None`) and apply
/// `overrides`.
pub fn load_config(path: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    let mut config = match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(s) = &overrides.store {
        config.storage.url = s.clone();
    }
    if let Some(a) = &overrides.nfs_listen {
        config.nfs.listen = a.clone();
    }
    if let Some(a) = &overrides.rpc_listen {
        config.rpc.listen = a.clone();
    }
    Ok(config)
}

/// Log to stderr; `RUST_LOG` overrides `level`.
pub fn init_logging(level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        // A log write that fails (its disk is full) must not panic the
        // task that logged: that task may be SlateDB's compactor.
        .log_internal_errors(false)
        .try_init();
}

/// Parse a listen address, naming the key it came from.
pub fn listen_addr(value: &str, key: &str) -> anyhow::Result<SocketAddr> {
    value
        .parse()
        .with_context(|| format!("{key} {value:?} is not an address:port such as 127.0.0.1:2049"))
}

/// Open the store the configuration names.
pub async fn open_engine(config: &Config) -> anyhow::Result<Engine> {
    let cs = config.storage.chunk_size_bytes;
    let chunk_size = u32::try_from(cs)
        .with_context(|| format!("storage.chunk_size_bytes = {cs}: must be at most 1 MiB"))?;
    Engine::open(
        &config.storage.url,
        EngineOptions {
            chunk_size,
            compress: config.storage.compression == Compression::Lz4,
            kv: KvOptions {
                object_store_options: config.storage.options.clone().into_iter().collect(),
                cache_bytes: Some(config.storage.cache_size_bytes),
                reserve_bytes: Some(config.storage.reserve_bytes),
                ..Default::default()
            },
            background_repack: (config.storage.repack_rate_bytes > 0).then(|| {
                cairn_engine::BackgroundRepack {
                    bytes_per_sec: config.storage.repack_rate_bytes,
                    ..Default::default()
                }
            }),
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("cannot open store {}", config.storage.url))
}

/// The bearer token the admin API requires, if any.
///
/// The configured `rpc.token` always applies. Otherwise a loopback address
/// needs none, and any other address uses the token file in the store's
/// directory (`admin.token`, created with mode 0600 if missing); a remote
/// store without a configured token cannot serve beyond loopback.
pub fn admin_token(config: &Config, listen: SocketAddr) -> anyhow::Result<Option<String>> {
    if let Some(t) = &config.rpc.token {
        if t.trim().is_empty() {
            bail!("rpc.token is empty; set a token or remove the key");
        }
        return Ok(Some(t.trim().to_string()));
    }
    if listen.ip().is_loopback() {
        return Ok(None);
    }
    let Some(path) = config.token_path() else {
        bail!(
            "refusing to serve the admin API on {listen} without a token: set [rpc] token in the config (the store {} has no local directory to keep a generated one)",
            config.storage.url
        );
    };
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(Some(t));
        }
    }
    let token = generate_token();
    write_secret(&path, &token)
        .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated an admin token");
    Ok(Some(token))
}

fn generate_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")
}

/// A token cancelled on SIGINT or SIGTERM.
///
/// The handlers are installed before this returns, so a binary that calls
/// it before announcing it is listening can never be killed by a signal sent
/// the moment it is ready (the default action would skip the flush).
pub fn shutdown_on_signals() -> CancellationToken {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return token;
    };
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        t.cancel();
    });
    token
}

/// How long shutdown waits for clients to finish and disconnect.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Run `serving` to completion; once `shutdown` is cancelled, give it
/// [`SHUTDOWN_GRACE`] to finish (calls in flight, clients hanging up), then
/// stop waiting and return `gave_up`, so a client that never disconnects
/// cannot keep the store from being flushed and closed.
pub async fn with_grace<F: std::future::Future>(
    serving: F,
    shutdown: &CancellationToken,
    gave_up: F::Output,
) -> F::Output {
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        out = serving => out,
        () = deadline => {
            tracing::warn!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "clients still connected after the grace period; closing the store anyway"
            );
            gave_up
        }
    }
}

/// Flush and close the store at shutdown.
pub async fn close_engine(engine: &Engine) -> anyhow::Result<()> {
    engine
        .flush()
        .await
        .context("flushing the store at shutdown")?;
    engine.close().await.context("closing the store")?;
    tracing::info!("store closed");
    Ok(())
}

/// Run `f` on a current-thread runtime (the engine's fastest flavour) and
/// turn its error into one line on stderr and a failing exit status.
pub fn run_main<F>(name: &str, f: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(f) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_off_loopback() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut c = Config::default();
        c.storage.url = dir.path().display().to_string();
        let lo: SocketAddr = "127.0.0.1:7049".parse()?;
        let any: SocketAddr = "0.0.0.0:7049".parse()?;
        assert_eq!(admin_token(&c, lo)?, None, "loopback needs no token");
        let t = admin_token(&c, any)?.unwrap_or_default();
        assert_eq!(t.len(), 64, "a generated token");
        let path = dir.path().join(cairn_config::TOKEN_FILE);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(admin_token(&c, any)?, Some(t), "reused");
        c.storage.url = "s3://bucket/x".into();
        let e = admin_token(&c, any)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("without a token"), "{e}");
        c.rpc.token = Some("s3cret".into());
        assert_eq!(admin_token(&c, any)?, Some("s3cret".into()));
        Ok(())
    }
}
