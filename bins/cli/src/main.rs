//! `cairn`: the admin command line. It talks to a running `cairn-nfs` or
//! `cairn-rpc` over the admin API; it knows only the generated client and
//! clap.

mod output;
mod restore;

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_config::Config;
use cairn_rpc::{Client, ConnectError, pb};
use clap::{CommandFactory, Parser, Subcommand};
use tonic::Code;

use output::{Out, PropValue};

const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  other failure
  2  bad usage or invalid argument (a bad name, path or size)
  3  no such dataset, snapshot or path
  4  already exists (a name is taken, a restore target exists)
  5  refused for a reason the message gives (snapshots, clones, default dataset)
  6  no server reachable, or the store is unavailable
  7  missing or wrong token
  8  the store failed a check (fsck found problems, data failed verification)";

/// Administer a cairn store: datasets, snapshots, clones, rollbacks and
/// restores.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// Configuration file: the endpoint is its [rpc] listen address, the
    /// token its [rpc] token or the token file in its store.
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Admin API endpoint [default: http://127.0.0.1:7049].
    #[arg(long, global = true, env = "CAIRN_ENDPOINT", value_name = "URL")]
    endpoint: Option<String>,
    /// Bearer token (needed when the server listens beyond loopback).
    #[arg(
        long,
        global = true,
        env = "CAIRN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Datasets, snapshots, clones, rollback, restore, diff.
    #[command(subcommand)]
    Dataset(DatasetCmd),
    /// Space used by the store and each dataset, dedup and compression.
    Stats,
    /// Check every invariant of the store.
    Fsck,
    /// Sweep chunks nothing references, correct refcounts, and repack:
    /// delete packs nothing lives in, rewrite packs under half live.
    Gc,
    /// Read every stored chunk back and verify it against its hash; list
    /// each damaged chunk with the files that use it.
    Scrub,
    /// Write a commented configuration template.
    Init {
        /// Where to write it.
        #[arg(default_value = "cairn.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum DatasetCmd {
    /// Create an empty dataset.
    Create {
        /// Dataset name.
        #[arg(value_name = "NAME", required_unless_present = "name")]
        pos: Option<String>,
        /// Dataset name (same as the argument).
        #[arg(long, value_name = "NAME", conflicts_with = "pos")]
        name: Option<String>,
        /// Chunk size of its files (e.g. 64KiB); the store's default if unset.
        #[arg(long, value_name = "SIZE")]
        chunk_size: Option<String>,
    },
    /// List datasets, with USED, AVAIL and REFER as ZFS shows them.
    List {
        /// Sizes as exact numbers of bytes.
        #[arg(short = 'p')]
        parsable: bool,
    },
    /// Set dataset properties, ZFS style: quota, refquota (a size such as
    /// 10GiB, or none) and readonly (on/off).
    Set {
        /// Dataset name.
        dataset: String,
        /// PROPERTY=VALUE pairs, all set at once or none.
        #[arg(required = true, value_name = "PROPERTY=VALUE")]
        properties: Vec<String>,
    },
    /// Show properties of a dataset (or of DATASET@SNAPSHOT): all of them,
    /// or those named.
    Get {
        /// NAME or DATASET@SNAPSHOT.
        target: String,
        /// Properties to show (default: all).
        #[arg(value_name = "PROPERTY")]
        properties: Vec<String>,
        /// Sizes as exact numbers of bytes.
        #[arg(short = 'p')]
        parsable: bool,
    },
    /// Show a dataset (NAME) or a snapshot (DATASET@SNAPSHOT).
    Info {
        /// NAME or DATASET@SNAPSHOT.
        #[arg(value_name = "NAME", required_unless_present = "name")]
        pos: Option<String>,
        /// Same as the argument.
        #[arg(long, value_name = "NAME", conflicts_with = "pos")]
        name: Option<String>,
    },
    /// Delete a dataset.
    Delete {
        /// Dataset name.
        #[arg(value_name = "NAME", required_unless_present = "name")]
        pos: Option<String>,
        /// Same as the argument.
        #[arg(long, value_name = "NAME", conflicts_with = "pos")]
        name: Option<String>,
        /// Also delete its snapshots.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Make a dataset the default (what `/` mounts).
    SetDefault {
        /// Dataset name.
        #[arg(value_name = "NAME", required_unless_present = "name")]
        pos: Option<String>,
        /// Same as the argument.
        #[arg(long, value_name = "NAME", conflicts_with = "pos")]
        name: Option<String>,
    },
    /// Show the default dataset.
    GetDefault,
    /// Snapshot a dataset (read-only; --writable also makes a dataset NAME
    /// from it, like a btrfs writable snapshot).
    Snapshot {
        /// The dataset to snapshot.
        #[arg(value_name = "SOURCE", required_unless_present = "source")]
        source_pos: Option<String>,
        /// The snapshot's name.
        #[arg(value_name = "NAME", required_unless_present = "name")]
        name_pos: Option<String>,
        /// Same as SOURCE.
        #[arg(long, value_name = "SOURCE", conflicts_with = "source_pos")]
        source: Option<String>,
        /// Same as NAME.
        #[arg(long, value_name = "NAME", conflicts_with = "name_pos")]
        name: Option<String>,
        /// Read-only snapshot (the default).
        #[arg(long, conflicts_with = "writable")]
        readonly: bool,
        /// Also create a writable dataset NAME from the snapshot.
        #[arg(long)]
        writable: bool,
    },
    /// List snapshots, oldest first (of one dataset, or all).
    ListSnapshots {
        /// Only this dataset's.
        #[arg(value_name = "DATASET")]
        pos: Option<String>,
        /// Same as the argument.
        #[arg(long, value_name = "DATASET", conflicts_with = "pos")]
        dataset: Option<String>,
    },
    /// Delete a snapshot (DATASET@SNAPSHOT, or a name unique across datasets).
    DeleteSnapshot {
        /// The snapshot.
        #[arg(value_name = "SNAPSHOT", required_unless_present = "name")]
        pos: Option<String>,
        /// Same as the argument.
        #[arg(
            long,
            visible_alias = "snapshot",
            value_name = "SNAPSHOT",
            conflicts_with = "pos"
        )]
        name: Option<String>,
    },
    /// Restore from a snapshot: copy out to a local path (--destination), or
    /// in place into the live dataset (--in-place; metadata only, instant).
    Restore {
        /// The snapshot (DATASET@SNAPSHOT, or a name unique across datasets).
        #[arg(long, value_name = "SNAPSHOT")]
        snapshot: String,
        /// Path inside the snapshot (a file or a directory).
        #[arg(long, value_name = "PATH")]
        source: String,
        /// Local path to copy out to (into it, if it is a directory).
        #[arg(
            long,
            value_name = "LOCAL_PATH",
            required_unless_present = "in_place",
            conflicts_with = "in_place"
        )]
        destination: Option<PathBuf>,
        /// Overwrite existing local files.
        #[arg(long, requires = "destination")]
        force: bool,
        /// Restore into the live dataset instead of copying out.
        #[arg(long)]
        in_place: bool,
        /// Path in the live dataset for --in-place [default: --source].
        #[arg(long, value_name = "PATH", requires = "in_place")]
        target: Option<String>,
    },
    /// Make a writable dataset from a snapshot.
    Clone {
        /// DATASET@SNAPSHOT.
        snapshot: String,
        /// The new dataset's name.
        name: String,
    },
    /// Make a clone independent of its origin snapshot (metadata copy, no
    /// data), so that snapshot can be deleted.
    Promote {
        /// The clone.
        name: String,
    },
    /// Roll a dataset back to one of its snapshots.
    Rollback {
        /// DATASET@SNAPSHOT.
        snapshot: String,
        /// Destroy snapshots newer than it (refused otherwise).
        #[arg(long, visible_alias = "force")]
        destroy_newer: bool,
    },
    /// What changed between two snapshots, or a snapshot and the live dataset.
    Diff {
        /// The older snapshot.
        from: String,
        /// The newer snapshot [default: the live dataset].
        to: Option<String>,
    },
}

/// A dataset's properties as `dataset get` shows them, in `zfs get` order.
fn dataset_properties(d: &pb::Dataset) -> Vec<(String, PropValue)> {
    let opt = |v: Option<u64>| v.map_or(PropValue::None, PropValue::Size);
    [
        ("used", PropValue::Size(d.used)),
        ("available", PropValue::Size(d.available)),
        ("referenced", PropValue::Size(d.referenced)),
        ("usedbysnapshots", PropValue::Size(d.usedbysnapshots)),
        ("usedbydataset", PropValue::Size(d.usedbydataset)),
        ("written", PropValue::Size(d.written)),
        ("logicalreferenced", PropValue::Size(d.logicalreferenced)),
        ("quota", opt(d.quota)),
        ("refquota", opt(d.refquota)),
        ("readonly", PropValue::Flag(d.read_only)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A snapshot's properties as `dataset get` shows them.
fn snapshot_properties(s: &pb::Snapshot) -> Vec<(String, PropValue)> {
    let opt = |v: Option<u64>| v.map_or(PropValue::None, PropValue::Size);
    [
        ("used", opt(s.unique_bytes)),
        ("referenced", opt(s.referenced_bytes)),
        ("written", opt(s.written_bytes)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A failure: one line to print and an exit status.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        let code = match s.code() {
            Code::InvalidArgument | Code::OutOfRange => 2,
            Code::NotFound => 3,
            Code::AlreadyExists => 4,
            Code::FailedPrecondition | Code::ResourceExhausted | Code::Aborted => 5,
            Code::Unavailable | Code::DeadlineExceeded => 6,
            Code::Unauthenticated | Code::PermissionDenied => 7,
            Code::DataLoss => 8,
            _ => 1,
        };
        let msg = if s.code() == Code::Unavailable && s.message().contains("transport") {
            "lost the connection to the cairn server; check it is running".to_string()
        } else {
            s.message().to_string()
        };
        Failure::new(code, msg)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::new(1, format!("{e:#}"))
    }
}

type Result<T> = std::result::Result<T, Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("cairn: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// `pos` or `flag`, whichever was given (clap enforces exactly one).
fn either(pos: Option<String>, flag: Option<String>) -> String {
    pos.or(flag).unwrap_or_default()
}

async fn run(cli: Cli) -> Result<()> {
    let out = Out::new(cli.json);
    match cli.cmd {
        Cmd::Init { path, force } => return init(&out, &path, force),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "cairn", &mut std::io::stdout());
            return Ok(());
        }
        _ => {}
    }
    let config = match &cli.config {
        Some(p) => Some(Config::load(p).map_err(|e| Failure::new(2, e.to_string()))?),
        None => None,
    };
    let endpoint = cli
        .endpoint
        .clone()
        .or_else(|| config.as_ref().map(Config::endpoint))
        .unwrap_or_else(|| Config::default().endpoint());
    let endpoint = if endpoint.contains("://") {
        endpoint
    } else {
        format!("http://{endpoint}")
    };
    let token = cli.token.clone().or_else(|| {
        let c = config.clone().unwrap_or_default();
        c.rpc.token.clone().or_else(|| {
            c.token_path()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        })
    });
    let mut client = cairn_rpc::connect(&endpoint, token.as_deref())
        .await
        .map_err(|e| match e {
            ConnectError::Unreachable { endpoint, .. } => Failure::new(
                6,
                format!(
                    "no cairn server at {endpoint} — start one with `cairn-nfs` (or `cairn-rpc`), or pass --endpoint"
                ),
            ),
            e => Failure::new(2, e.to_string()),
        })?;
    match cli.cmd {
        Cmd::Dataset(cmd) => dataset(&out, &mut client, cmd).await,
        Cmd::Stats => {
            let s = client.stats(pb::StatsRequest {}).await?.into_inner();
            out.stats(&s);
            Ok(())
        }
        Cmd::Fsck => {
            let spin = out.spinner("checking every invariant of the store");
            let r = client.fsck(pb::FsckRequest {}).await;
            spin.finish_and_clear();
            let r = r?.into_inner();
            out.fsck(&r);
            if r.clean {
                Ok(())
            } else {
                Err(Failure::new(
                    8,
                    format!("fsck found {} problem(s)", r.problems.len()),
                ))
            }
        }
        Cmd::Scrub => {
            use pb::scrub_event::Item;
            let mut stream = client.scrub(pb::ScrubRequest {}).await?.into_inner();
            let bar = out.count_bar(0, "chunks verified");
            let mut report = None;
            while let Some(ev) = stream.message().await? {
                match ev.item {
                    Some(Item::Progress(p)) => {
                        bar.set_length(p.total_chunks.max(p.chunks));
                        bar.set_position(p.chunks);
                        if p.damaged > 0 {
                            bar.set_message(format!("{} damaged", p.damaged));
                        }
                    }
                    Some(Item::Report(r)) => report = Some(r),
                    None => {}
                }
            }
            bar.finish_and_clear();
            let r = report
                .ok_or_else(|| Failure::new(1, "the server ended the scrub without a report"))?;
            out.scrub(&r);
            if r.damaged.is_empty() {
                Ok(())
            } else {
                Err(Failure::new(
                    8,
                    format!("scrub found {} damaged chunk(s)", r.damaged.len()),
                ))
            }
        }
        Cmd::Gc => {
            let spin = out.spinner("sweeping unreferenced chunks and repacking");
            let r = client.gc(pb::GcRequest {}).await;
            spin.finish_and_clear();
            out.gc(&r?.into_inner());
            Ok(())
        }
        Cmd::Init { .. } | Cmd::Completions { .. } => Ok(()),
    }
}

fn init(out: &Out, path: &std::path::Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(Failure::new(
            4,
            format!("{} exists; pass --force to overwrite it", path.display()),
        ));
    }
    std::fs::write(path, cairn_config::TEMPLATE)
        .map_err(|e| Failure::new(1, format!("cannot write {}: {e}", path.display())))?;
    out.done(
        &format!("wrote {}", path.display()),
        serde_json::json!({ "path": path.display().to_string() }),
    );
    Ok(())
}

async fn dataset(out: &Out, c: &mut Client, cmd: DatasetCmd) -> Result<()> {
    match cmd {
        DatasetCmd::Create {
            pos,
            name,
            chunk_size,
        } => {
            let chunk_size_bytes = match chunk_size {
                Some(s) => {
                    let n = cairn_config::parse_size(&s).map_err(|e| Failure::new(2, e))?;
                    u32::try_from(n)
                        .map_err(|_| Failure::new(2, format!("chunk size {s} is too large")))?
                }
                None => 0,
            };
            let d = c
                .create_dataset(pb::CreateDatasetRequest {
                    name: either(pos, name),
                    chunk_size_bytes,
                })
                .await?
                .into_inner();
            out.dataset_created(&d);
        }
        DatasetCmd::List { parsable } => {
            let r = c
                .list_datasets(pb::ListDatasetsRequest {})
                .await?
                .into_inner();
            out.datasets(&r.datasets, parsable);
        }
        DatasetCmd::Set {
            dataset,
            properties,
        } => {
            let properties = properties
                .iter()
                .map(|p| match p.split_once('=') {
                    Some((name, value)) => Ok(pb::Property {
                        name: name.trim().to_string(),
                        value: value.trim().to_string(),
                    }),
                    None => Err(Failure::new(
                        2,
                        format!("{p:?} is not PROPERTY=VALUE (e.g. refquota=10GiB)"),
                    )),
                })
                .collect::<Result<Vec<_>>>()?;
            let d = c
                .set_properties(pb::SetPropertiesRequest {
                    dataset: dataset.clone(),
                    properties: properties.clone(),
                })
                .await?
                .into_inner();
            let set: Vec<String> = properties
                .iter()
                .map(|p| format!("{}={}", p.name, p.value))
                .collect();
            out.done(
                &format!("set {} on {dataset}", set.join(" ")),
                output::dataset_json(&d),
            );
        }
        DatasetCmd::Get {
            target,
            properties,
            parsable,
        } => {
            let all = if target.contains('@') {
                let s = c
                    .snapshot_info(pb::SnapshotInfoRequest {
                        snapshot: target.clone(),
                    })
                    .await?
                    .into_inner();
                snapshot_properties(&s)
            } else {
                let d = c
                    .dataset_info(pb::DatasetInfoRequest {
                        name: target.clone(),
                    })
                    .await?
                    .into_inner();
                dataset_properties(&d)
            };
            let chosen = if properties.is_empty() {
                all
            } else {
                let mut chosen = Vec::new();
                for p in &properties {
                    let Some(i) = all.iter().position(|(k, _)| k == p) else {
                        let known: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
                        return Err(Failure::new(
                            2,
                            format!(
                                "unknown property {p:?} of {target}; it has {}",
                                known.join(", ")
                            ),
                        ));
                    };
                    let (k, v) = &all[i];
                    chosen.push((k.clone(), *v));
                }
                chosen
            };
            out.properties(&target, &chosen, parsable);
        }
        DatasetCmd::Info { pos, name } => {
            let target = either(pos, name);
            if target.contains('@') {
                let s = c
                    .snapshot_info(pb::SnapshotInfoRequest { snapshot: target })
                    .await?
                    .into_inner();
                out.snapshot_info(&s);
            } else {
                let d = c
                    .dataset_info(pb::DatasetInfoRequest { name: target })
                    .await?
                    .into_inner();
                out.dataset_info(&d);
            }
        }
        DatasetCmd::Delete {
            pos,
            name,
            recursive,
        } => {
            let name = either(pos, name);
            c.delete_dataset(pb::DeleteDatasetRequest {
                name: name.clone(),
                recursive,
            })
            .await?;
            out.done(
                &format!("deleted dataset {name}"),
                serde_json::json!({ "deleted": name }),
            );
        }
        DatasetCmd::SetDefault { pos, name } => {
            let d = c
                .set_default(pb::SetDefaultRequest {
                    name: either(pos, name),
                })
                .await?
                .into_inner();
            out.done(
                &format!("{} is now the default dataset", d.name),
                output::dataset_json(&d),
            );
        }
        DatasetCmd::GetDefault => {
            let d = c.get_default(pb::GetDefaultRequest {}).await?.into_inner();
            out.done(&d.name, output::dataset_json(&d));
        }
        DatasetCmd::Snapshot {
            source_pos,
            name_pos,
            source,
            name,
            readonly: _,
            writable,
        } => {
            let r = c
                .create_snapshot(pb::CreateSnapshotRequest {
                    dataset: either(source_pos, source),
                    name: either(name_pos, name),
                    writable,
                })
                .await?
                .into_inner();
            out.snapshot_created(&r);
        }
        DatasetCmd::ListSnapshots { pos, dataset } => {
            let r = c
                .list_snapshots(pb::ListSnapshotsRequest {
                    dataset: pos.or(dataset).unwrap_or_default(),
                })
                .await?
                .into_inner();
            out.snapshots(&r.snapshots);
        }
        DatasetCmd::DeleteSnapshot { pos, name } => {
            let snapshot = either(pos, name);
            c.delete_snapshot(pb::DeleteSnapshotRequest {
                snapshot: snapshot.clone(),
            })
            .await?;
            out.done(
                &format!("deleted snapshot {snapshot}"),
                serde_json::json!({ "deleted": snapshot }),
            );
        }
        DatasetCmd::Restore {
            snapshot,
            source,
            destination,
            force,
            in_place,
            target,
        } => {
            if in_place {
                let r = c
                    .restore(pb::RestoreRequest {
                        snapshot: snapshot.clone(),
                        source: source.clone(),
                        target: target.clone().unwrap_or_default(),
                    })
                    .await?
                    .into_inner();
                out.restored_in_place(&snapshot, &source, target.as_deref().unwrap_or(&source), &r);
            } else if let Some(dest) = destination {
                restore::copy_out(out, c, &snapshot, &source, &dest, force).await?;
            }
        }
        DatasetCmd::Clone { snapshot, name } => {
            let d = c
                .clone(pb::CloneRequest { snapshot, name })
                .await?
                .into_inner();
            out.dataset_created(&d);
        }
        DatasetCmd::Promote { name } => {
            let spin = out.spinner("copying inherited metadata");
            let r = c.promote(pb::PromoteRequest { name }).await;
            spin.finish_and_clear();
            let d = r?.into_inner();
            out.done(
                &format!("{} no longer depends on a snapshot", d.name),
                output::dataset_json(&d),
            );
        }
        DatasetCmd::Rollback {
            snapshot,
            destroy_newer,
        } => {
            let r = c
                .rollback(pb::RollbackRequest {
                    snapshot: snapshot.clone(),
                    destroy_newer,
                })
                .await
                .map_err(|s| {
                    let mut f = Failure::from(s);
                    if f.code == 5 && f.message.contains("newest snapshot") {
                        f.message = f.message.replace("(--force)", "with --destroy-newer");
                    }
                    f
                })?
                .into_inner();
            out.done(
                &format!(
                    "rolled back to {snapshot}: {} change(s) discarded, {} version(s) brought back",
                    r.discarded, r.restored
                ),
                serde_json::json!({ "snapshot": snapshot, "discarded": r.discarded, "restored": r.restored }),
            );
        }
        DatasetCmd::Diff { from, to } => {
            let mut stream = c
                .diff(pb::DiffRequest {
                    from,
                    to: to.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let mut all = Vec::new();
            while let Some(e) = stream.message().await? {
                all.push(e);
            }
            out.diff(&all);
        }
    }
    Ok(())
}
