//! The `cairn.toml` configuration shared by `cairn-nfs`, `cairn-rpc` and the
//! `cairn` CLI.
//!
//! Owns: the file's schema (every key, its default and its unit), parsing
//! with unknown keys refused by name, `${VAR}` substitution from the
//! environment (so secrets stay out of files), human sizes (`64KiB`), and the
//! commented template `cairn init` writes.
//!
//! Must never know: how the store, the NFS server or the admin API work; it
//! only describes what they are told.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The default store: a directory beside where the server starts.
pub const DEFAULT_STORE: &str = "./cairn-data";
/// Where NFS listens by default (NFS, MOUNT and the port query on one port).
pub const DEFAULT_NFS_LISTEN: &str = "127.0.0.1:2049";
/// Where the admin API listens by default (loopback only).
pub const DEFAULT_RPC_LISTEN: &str = "127.0.0.1:7049";

/// A configuration problem, naming the key or variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a bad value.
    #[error("config {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the key.
        message: String,
    },
    /// A `${VAR}` names a variable that is not set.
    #[error("config {path}: key {key} uses ${{{var}}}, which is not set in the environment")]
    MissingVar {
        /// The file.
        path: String,
        /// The key whose value uses it.
        key: String,
        /// The variable.
        var: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where and how data is stored.
    pub storage: Storage,
    /// The NFS server.
    pub nfs: Nfs,
    /// The admin API.
    pub rpc: Rpc,
    /// Logging.
    pub log: Log,
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Store URL: a directory, `file:///abs/dir`, `memory://`,
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.
    pub url: String,
    /// Chunk size of a new store's files (a power of two, 4 KiB to 1 MiB).
    #[serde(deserialize_with = "de_size")]
    pub chunk_size_bytes: u64,
    /// Chunk compression: `lz4` (only where it saves space) or `none`.
    pub compression: Compression,
    /// Bound of the local block cache in front of the object store.
    #[serde(deserialize_with = "de_size")]
    pub cache_size_bytes: u64,
    /// Free space a local store's filesystem keeps: writes of new data are
    /// refused (ENOSPC) below it, so compaction and deletes still have room.
    #[serde(deserialize_with = "de_size")]
    pub reserve_bytes: u64,
    /// Bytes per second the background repacker may read and write to give
    /// back the space of deleted data (copying live chunks out of packs
    /// that are mostly dead); 0 turns it off (`cairn gc` still repacks).
    #[serde(deserialize_with = "de_size")]
    pub repack_rate_bytes: u64,
    /// Extra object store options (credentials, endpoint, region, ...),
    /// passed to `object_store` as given (`aws_access_key_id`, ...).
    pub options: BTreeMap<String, String>,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            url: DEFAULT_STORE.into(),
            chunk_size_bytes: 64 * 1024,
            compression: Compression::Lz4,
            cache_size_bytes: 64 * 1024 * 1024,
            reserve_bytes: 1024 * 1024 * 1024,
            repack_rate_bytes: 64 * 1024 * 1024,
            options: BTreeMap::new(),
        }
    }
}

/// Chunk compression.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// LZ4, kept only when it makes the chunk smaller.
    #[default]
    Lz4,
    /// Store chunks as they are.
    None,
}

/// `[nfs]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Nfs {
    /// Address NFS, MOUNT and the port query listen on.
    pub listen: String,
    /// Whether `.snapshots` shows in directory listings of dataset roots
    /// (`hidden`, the default, like ZFS `snapdir=hidden`; or `visible`). It
    /// can always be looked up by name.
    pub snapdir: Snapdir,
}

impl Default for Nfs {
    fn default() -> Self {
        Self {
            listen: DEFAULT_NFS_LISTEN.into(),
            snapdir: Snapdir::Hidden,
        }
    }
}

/// Whether `.snapshots` is listed.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Snapdir {
    /// Reachable by name only.
    #[default]
    Hidden,
    /// Listed in the dataset root.
    Visible,
}

/// `[rpc]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Rpc {
    /// Address the admin API listens on (`cairn-nfs` and `cairn-rpc`) and
    /// the CLI connects to.
    pub listen: String,
    /// Bearer token every call must carry. When unset, the server generates
    /// one into the store's config directory (mode 0600) and requires it on
    /// any non-loopback address.
    pub token: Option<String>,
}

impl Default for Rpc {
    fn default() -> Self {
        Self {
            listen: DEFAULT_RPC_LISTEN.into(),
            token: None,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// A `tracing` filter (`info`, `cairn_nfs=debug,info`, ...); `RUST_LOG`
    /// overrides it.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Read and check `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string(), &|k| {
            std::env::var(k).ok()
        })
    }

    /// Parse config text; `env` looks up `${VAR}`s; `origin` names the text
    /// in errors.
    pub fn parse(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_string(),
            message,
        };
        let mut value: toml::Value = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        substitute(&mut value, "", origin, env)?;
        let config: Config = value.try_into().map_err(|e| invalid(e.to_string()))?;
        config.check().map_err(invalid)?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        let cs = self.storage.chunk_size_bytes;
        if !cs.is_power_of_two() || !(4096..=1 << 20).contains(&cs) {
            return Err(format!(
                "storage.chunk_size_bytes = {cs}: must be a power of two between 4 KiB and 1 MiB"
            ));
        }
        for (key, addr) in [
            ("nfs.listen", &self.nfs.listen),
            ("rpc.listen", &self.rpc.listen),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!(
                    "{key} = {addr:?}: expected an address and port such as 127.0.0.1:2049"
                ));
            }
        }
        if self.storage.url.is_empty() {
            return Err("storage.url is empty".into());
        }
        Ok(())
    }
}

/// Name of the generated admin token file in a local store's directory.
pub const TOKEN_FILE: &str = "admin.token";

impl Config {
    /// The local directory of the store, for `file://` URLs and plain paths
    /// (relative paths are taken from the current directory); `None` for
    /// remote and in-memory stores.
    pub fn local_store_dir(&self) -> Option<std::path::PathBuf> {
        let url = self.storage.url.as_str();
        if let Some(rest) = url.strip_prefix("file://") {
            return Some(std::path::PathBuf::from(rest));
        }
        if url.contains("://") {
            return None;
        }
        std::path::absolute(url).ok()
    }

    /// Where the generated admin token lives (local stores only).
    pub fn token_path(&self) -> Option<std::path::PathBuf> {
        self.local_store_dir().map(|d| d.join(TOKEN_FILE))
    }

    /// The admin endpoint URL clients use: `http://` + `rpc.listen`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.rpc.listen)
    }
}

/// Replace `${VAR}` in every string value.
fn substitute(
    v: &mut toml::Value,
    key: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match v {
        toml::Value::String(s) => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                out.push_str(&rest[..i]);
                let after = &rest[i + 2..];
                let Some(end) = after.find('}') else {
                    return Err(ConfigError::Invalid {
                        path: origin.into(),
                        message: format!("key {key}: unterminated ${{ in {s:?}"),
                    });
                };
                let var = &after[..end];
                let val = env(var).ok_or_else(|| ConfigError::MissingVar {
                    path: origin.into(),
                    key: key.into(),
                    var: var.into(),
                })?;
                out.push_str(&val);
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let path = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                substitute(v, &path, origin, env)?;
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                substitute(v, &format!("{key}[{i}]"), origin, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Parse a size: a number of bytes, or a string such as `64KiB`, `1 MiB`,
/// `512k`, `2G` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (use bytes, or e.g. 64KiB, 256MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "{s:?}: unknown size unit {other:?} (use KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n),
        Raw::S(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

/// The commented template `cairn init` writes: every key with its default.
pub const TEMPLATE: &str = r#"# cairn configuration. Every key is optional; the values shown are the
# defaults. `${VAR}` in any string is replaced from the environment, so
# secrets can stay out of this file. Unknown keys are an error.

[storage]
# Where the data lives: a directory, file:///abs/dir, memory:// (lost on
# exit), s3://bucket/prefix, gs://bucket/prefix or az://container/prefix.
url = "./cairn-data"
# Chunk size of a new store's files: a power of two, 4KiB to 1MiB.
chunk_size_bytes = "64KiB"
# "lz4" (kept only where it saves space) or "none".
compression = "lz4"
# Local cache of object store blocks, so re-reads do not go back to S3.
cache_size_bytes = "64MiB"
# A local store's filesystem keeps this much free: new data is refused
# (ENOSPC) below it, so compaction, deletes and snapshot deletes still work.
reserve_bytes = "1GiB"
# Background repacking, in bytes per second read and written: every minute,
# live chunks are copied out of packs that are mostly dead so their space
# comes back. 0 turns it off (`cairn gc` still repacks on demand).
repack_rate_bytes = "64MiB"

# Object store settings, passed to object_store as given. The standard
# AWS_* / GOOGLE_* / AZURE_* environment variables are read as well.
[storage.options]
# aws_access_key_id = "${AWS_ACCESS_KEY_ID}"
# aws_secret_access_key = "${AWS_SECRET_ACCESS_KEY}"
# aws_endpoint = "http://127.0.0.1:9000"
# aws_allow_http = "true"
# aws_region = "us-east-1"

[nfs]
# NFS, MOUNT and the port query share this one port.
listen = "127.0.0.1:2049"
# "hidden": .snapshots is reachable by name but not listed (like ZFS
# snapdir=hidden); "visible": listed in every dataset root.
snapdir = "hidden"

[rpc]
# The admin API (gRPC), used by the cairn CLI. Loopback by default.
listen = "127.0.0.1:7049"
# Bearer token required on every call. If unset, one is generated into the
# store's config directory (mode 0600); a non-loopback listen address
# requires one.
# token = "${CAIRN_TOKEN}"

[log]
# tracing filter; RUST_LOG overrides it.
level = "info"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn template_parses_to_the_defaults() {
        let c = Config::parse(TEMPLATE, "template", &no_env);
        assert_eq!(c.ok(), Some(Config::default()));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse(
            "[nfs]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n",
            "c.toml",
            &no_env,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("lisen"), "error names the key: {e}");
        let e = Config::parse("[nsf]\n", "c.toml", &no_env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("nsf"), "error names the section: {e}");
    }

    #[test]
    fn variables_are_substituted_and_missing_ones_named() {
        let env = |k: &str| (k == "SECRET").then(|| "s3cr3t".to_string());
        let c = Config::parse(
            "[storage.options]\naws_secret_access_key = \"${SECRET}\"\n",
            "c.toml",
            &env,
        );
        assert_eq!(
            c.ok()
                .and_then(|c| c.storage.options.get("aws_secret_access_key").cloned()),
            Some("s3cr3t".into())
        );
        let e = Config::parse("[rpc]\ntoken = \"${NOPE}\"\n", "c.toml", &env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("NOPE") && e.contains("rpc.token"), "{e}");
    }

    #[test]
    fn sizes_and_bad_values() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12 parsecs").is_err());
        let c = Config::parse("[storage]\nchunk_size_bytes = 1000\n", "c.toml", &no_env);
        assert!(c.is_err(), "chunk size must be a power of two");
        let c = Config::parse("[nfs]\nlisten = \"nowhere\"\n", "c.toml", &no_env);
        assert!(c.is_err(), "listen must be an address");
        let c = Config::parse("[storage]\ncompression = \"zstd\"\n", "c.toml", &no_env);
        assert!(c.is_err(), "unknown compression");
    }
}
