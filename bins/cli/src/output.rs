//! Human output (aligned tables, readable sizes and times) and `--json`.

use std::time::{Duration, UNIX_EPOCH};

use cairn_rpc::pb;
use comfy_table::{Cell, CellAlignment, Table, presets::NOTHING};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

/// Where results go.
pub struct Out {
    json: bool,
}

/// `1.5 GiB`-style sizes.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// UTC time to the second.
pub fn time(unix_ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(unix_ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(NOTHING);
    t.set_header(headers.iter().map(Cell::new));
    t
}

fn right(s: impl ToString) -> Cell {
    Cell::new(s.to_string()).set_alignment(CellAlignment::Right)
}

fn opt_size(v: Option<u64>) -> String {
    v.map(size).unwrap_or_else(|| "-".into())
}

fn type_name(t: i32) -> &'static str {
    match pb::FileType::try_from(t).unwrap_or(pb::FileType::Unspecified) {
        pb::FileType::Regular => "file",
        pb::FileType::Directory => "directory",
        pb::FileType::Symlink => "symlink",
        pb::FileType::Fifo => "fifo",
        pb::FileType::Socket => "socket",
        pb::FileType::CharDevice => "char-device",
        pb::FileType::BlockDevice => "block-device",
        pb::FileType::Unspecified => "unknown",
    }
}

/// A property's value as `dataset get` shows it.
#[derive(Debug, Clone, Copy)]
pub enum PropValue {
    /// A size in bytes.
    Size(u64),
    /// On or off.
    Flag(bool),
    /// Not set (a quota of none).
    None,
}

/// A dataset as JSON.
pub fn dataset_json(d: &pb::Dataset) -> Value {
    json!({
        "id": d.id,
        "name": d.name,
        "uuid": d.uuid,
        "created_unix_ms": d.created_unix_ms,
        "origin": if d.origin.is_empty() { Value::Null } else { json!(d.origin) },
        "read_only": d.read_only,
        "default": d.is_default,
        "chunk_size_bytes": d.chunk_size_bytes,
        "files": d.files,
        "used": d.used,
        "available": d.available,
        "referenced": d.referenced,
        "usedbysnapshots": d.usedbysnapshots,
        "usedbydataset": d.usedbydataset,
        "written": d.written,
        "logicalreferenced": d.logicalreferenced,
        "quota": d.quota,
        "refquota": d.refquota,
        "generation": d.generation,
        "snapshots": d.snapshots,
    })
}

/// A snapshot as JSON.
pub fn snapshot_json(s: &pb::Snapshot) -> Value {
    json!({
        "dataset": s.dataset,
        "name": s.name,
        "spec": format!("{}@{}", s.dataset, s.name),
        "generation": s.generation,
        "created_unix_ms": s.created_unix_ms,
        "files": s.files,
        "referenced_bytes": s.referenced_bytes,
        "unique_bytes": s.unique_bytes,
        "written_bytes": s.written_bytes,
        "clones": s.clones,
    })
}

impl Out {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    fn print_json(&self, v: &Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
        );
    }

    /// A one-line result, or its JSON.
    pub fn done(&self, line: &str, json: Value) {
        if self.json {
            self.print_json(&json);
        } else {
            println!("{line}");
        }
    }

    /// A spinner for a call that may take a while (hidden for `--json` and
    /// when stderr is not a terminal).
    pub fn spinner(&self, what: &str) -> ProgressBar {
        let pb = if self.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new_spinner()
        };
        pb.set_message(what.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    }

    /// A progress bar counting `what` up to `total` (hidden for `--json`).
    pub fn count_bar(&self, total: u64, what: &str) -> ProgressBar {
        let pb = if self.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total)
        };
        if let Ok(style) = ProgressStyle::with_template(&format!(
            "{{spinner}} [{{bar:30}}] {{pos}}/{{len}} {what} eta {{eta}} {{wide_msg}}"
        )) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb
    }

    /// A byte progress bar over `total` bytes.
    pub fn bytes_bar(&self, total: u64) -> ProgressBar {
        let pb = if self.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total)
        };
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_msg}",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb
    }

    pub fn dataset_created(&self, d: &pb::Dataset) {
        let from = if d.origin.is_empty() {
            String::new()
        } else {
            format!(" from {}", d.origin)
        };
        self.done(
            &format!("created dataset {}{from}", d.name),
            dataset_json(d),
        );
    }

    /// The dataset listing; `exact`: sizes in bytes (`zfs list -p`).
    pub fn datasets(&self, list: &[pb::Dataset], exact: bool) {
        if self.json {
            return self.print_json(&Value::Array(list.iter().map(dataset_json).collect()));
        }
        let sz = |n: u64| if exact { n.to_string() } else { size(n) };
        let mut t = table(&[
            "NAME",
            "USED",
            "AVAIL",
            "REFER",
            "DEFAULT",
            "FILES",
            "SNAPSHOTS",
            "ORIGIN",
            "CREATED",
        ]);
        for d in list {
            t.add_row(vec![
                Cell::new(&d.name),
                right(sz(d.used)),
                right(sz(d.available)),
                right(sz(d.referenced)),
                Cell::new(if d.is_default { "*" } else { "" }),
                right(d.files),
                right(d.snapshots),
                Cell::new(if d.origin.is_empty() { "-" } else { &d.origin }),
                Cell::new(time(d.created_unix_ms)),
            ]);
        }
        println!("{t}");
    }

    /// `dataset get`: `props` of a dataset or snapshot, with their values
    /// (`None`: unset; sizes in bytes), one JSON object keyed by property.
    pub fn properties(&self, target: &str, props: &[(String, PropValue)], exact: bool) {
        if self.json {
            let m: serde_json::Map<String, Value> = props
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        PropValue::Size(n) => json!(n),
                        PropValue::Flag(b) => json!(b),
                        PropValue::None => Value::Null,
                    };
                    (k.clone(), v)
                })
                .collect();
            return self.print_json(&Value::Object(m));
        }
        let mut t = table(&["NAME", "PROPERTY", "VALUE"]);
        for (k, v) in props {
            let shown = match v {
                PropValue::Size(n) if exact => n.to_string(),
                PropValue::Size(n) => size(*n),
                PropValue::Flag(b) => if *b { "on" } else { "off" }.to_string(),
                PropValue::None => "none".to_string(),
            };
            t.add_row(vec![Cell::new(target), Cell::new(k), right(shown)]);
        }
        println!("{t}");
    }

    pub fn dataset_info(&self, d: &pb::Dataset) {
        if self.json {
            return self.print_json(&dataset_json(d));
        }
        let rows = [
            ("name", d.name.clone()),
            ("id", d.id.to_string()),
            ("uuid", d.uuid.clone()),
            ("created", time(d.created_unix_ms)),
            (
                "origin",
                if d.origin.is_empty() {
                    "-".into()
                } else {
                    d.origin.clone()
                },
            ),
            ("read-only", d.read_only.to_string()),
            ("default", d.is_default.to_string()),
            ("chunk size", size(d.chunk_size_bytes as u64)),
            ("files", d.files.to_string()),
            ("used", size(d.used)),
            ("available", size(d.available)),
            ("referenced", size(d.referenced)),
            ("used by snapshots", size(d.usedbysnapshots)),
            ("used by dataset", size(d.usedbydataset)),
            ("written since newest snapshot", size(d.written)),
            ("quota", opt_size(d.quota)),
            ("refquota", opt_size(d.refquota)),
            ("generation", d.generation.to_string()),
            ("snapshots", d.snapshots.to_string()),
        ];
        print_fields(&rows);
    }

    pub fn snapshot_info(&self, s: &pb::Snapshot) {
        if self.json {
            return self.print_json(&snapshot_json(s));
        }
        let rows = [
            ("snapshot", format!("{}@{}", s.dataset, s.name)),
            ("created", time(s.created_unix_ms)),
            ("generation", s.generation.to_string()),
            ("files", s.files.to_string()),
            ("referenced", opt_size(s.referenced_bytes)),
            ("unique (freed if deleted)", opt_size(s.unique_bytes)),
            ("written since previous", opt_size(s.written_bytes)),
            (
                "clones",
                if s.clones.is_empty() {
                    "-".into()
                } else {
                    s.clones.join(", ")
                },
            ),
        ];
        print_fields(&rows);
    }

    pub fn snapshot_created(&self, r: &pb::CreateSnapshotResponse) {
        let Some(s) = &r.snapshot else { return };
        let mut line = format!("created snapshot {}@{}", s.dataset, s.name);
        if let Some(c) = &r.clone {
            line.push_str(&format!(" and writable dataset {}", c.name));
        }
        let mut j = snapshot_json(s);
        if let (Some(c), Some(obj)) = (&r.clone, j.as_object_mut()) {
            obj.insert("clone".into(), dataset_json(c));
        }
        self.done(&line, j);
    }

    pub fn snapshots(&self, list: &[pb::Snapshot]) {
        if self.json {
            return self.print_json(&Value::Array(list.iter().map(snapshot_json).collect()));
        }
        let mut t = table(&["SNAPSHOT", "CREATED", "FILES", "CLONES"]);
        for s in list {
            t.add_row(vec![
                Cell::new(format!("{}@{}", s.dataset, s.name)),
                Cell::new(time(s.created_unix_ms)),
                right(s.files),
                Cell::new(if s.clones.is_empty() {
                    "-".into()
                } else {
                    s.clones.join(",")
                }),
            ]);
        }
        println!("{t}");
    }

    pub fn restored_in_place(
        &self,
        snap: &str,
        source: &str,
        target: &str,
        r: &pb::RestoreResponse,
    ) {
        self.done(
            &format!(
                "restored {source} from {snap} to {target}: {} inode(s), {} of data referenced, no data copied",
                r.inodes,
                size(r.bytes)
            ),
            json!({
                "snapshot": snap, "source": source, "target": target,
                "inodes": r.inodes, "extents": r.extents, "bytes": r.bytes,
            }),
        );
    }

    pub fn diff(&self, list: &[pb::DiffEntry]) {
        if self.json {
            let v: Vec<Value> = list
                .iter()
                .map(|e| {
                    json!({
                        "change": match pb::ChangeType::try_from(e.change).unwrap_or(pb::ChangeType::Unspecified) {
                            pb::ChangeType::Added => "added",
                            pb::ChangeType::Removed => "removed",
                            pb::ChangeType::Modified => "modified",
                            pb::ChangeType::Renamed => "renamed",
                            pb::ChangeType::Unspecified => "unknown",
                        },
                        "path": e.path,
                        "from": if e.from.is_empty() { Value::Null } else { json!(e.from) },
                        "type": type_name(e.r#type),
                    })
                })
                .collect();
            return self.print_json(&Value::Array(v));
        }
        for e in list {
            let slash = if e.r#type == pb::FileType::Directory as i32 {
                "/"
            } else {
                ""
            };
            match pb::ChangeType::try_from(e.change).unwrap_or(pb::ChangeType::Unspecified) {
                pb::ChangeType::Added => println!("A  {}{slash}", e.path),
                pb::ChangeType::Removed => println!("D  {}{slash}", e.path),
                pb::ChangeType::Modified => println!("M  {}{slash}", e.path),
                pb::ChangeType::Renamed => println!("R  {}{slash} -> {}{slash}", e.from, e.path),
                pb::ChangeType::Unspecified => println!("?  {}", e.path),
            }
        }
    }

    pub fn stats(&self, s: &pb::StatsResponse) {
        if self.json {
            return self.print_json(&json!({
                "store": s.store,
                "chunks": s.chunks,
                "stored_bytes": s.stored_bytes,
                "unique_plain_bytes": s.unique_plain_bytes,
                "referenced_bytes": s.referenced_bytes,
                "dedup_ratio": s.dedup_ratio,
                "compression_ratio": s.compression_ratio,
                "requests": s.requests.as_ref().map(|r| json!({
                    "put": r.put, "get": r.get, "list": r.list, "delete": r.delete,
                    "copy": r.copy, "put_bytes": r.put_bytes,
                })),
                "datasets": s.datasets.iter().map(|d| json!({
                    "name": d.name, "files": d.files, "referenced": d.referenced,
                    "used": d.used, "snapshots": d.snapshots,
                })).collect::<Vec<_>>(),
            }));
        }
        print_fields(&[
            ("store", s.store.clone()),
            ("chunks", s.chunks.to_string()),
            ("stored", size(s.stored_bytes)),
            ("unique data", size(s.unique_plain_bytes)),
            ("referenced data", size(s.referenced_bytes)),
            ("dedup ratio", format!("{:.2}x", s.dedup_ratio)),
            ("compression ratio", format!("{:.2}x", s.compression_ratio)),
            (
                "object store requests",
                s.requests
                    .as_ref()
                    .map(|r| {
                        format!(
                            "{} PUT ({}), {} GET, {} LIST, {} DELETE since the server started",
                            r.put,
                            size(r.put_bytes),
                            r.get,
                            r.list,
                            r.delete
                        )
                    })
                    .unwrap_or_else(|| "-".into()),
            ),
        ]);
        println!();
        let mut t = table(&["DATASET", "FILES", "REFER", "USED", "SNAPSHOTS"]);
        for d in &s.datasets {
            t.add_row(vec![
                Cell::new(&d.name),
                right(d.files),
                right(size(d.referenced)),
                right(size(d.used)),
                right(d.snapshots),
            ]);
        }
        println!("{t}");
    }

    pub fn fsck(&self, r: &pb::FsckResponse) {
        if self.json {
            return self.print_json(&json!({
                "clean": r.clean, "inodes": r.inodes, "dirents": r.dirents,
                "extents": r.extents, "maps": r.maps, "chunks": r.chunks,
                "problems": r.problems.iter().map(|p| json!({"class": p.class, "detail": p.detail})).collect::<Vec<_>>(),
            }));
        }
        println!(
            "checked {} inodes, {} entries, {} extents, {} maps, {} chunks: {}",
            r.inodes,
            r.dirents,
            r.extents,
            r.maps,
            r.chunks,
            if r.clean {
                "clean".to_string()
            } else {
                format!("{} problem(s)", r.problems.len())
            }
        );
        for p in &r.problems {
            println!("  [{}] {}", p.class, p.detail);
        }
    }

    pub fn gc(&self, r: &pb::GcResponse) {
        self.done(
            &format!(
                "examined {} chunks: swept {} ({} freed) and {} extent map(s), corrected {} refcount(s); \
                 rewrote {} pack(s) ({} chunks moved), deleted {} pack(s), reclaimed {}",
                r.chunks,
                r.swept,
                size(r.freed_bytes),
                r.swept_maps,
                r.fixed_refcounts + r.fixed_pack_counts,
                r.packs_rewritten,
                r.chunks_moved,
                r.packs_deleted,
                size(r.pack_bytes_reclaimed),
            ),
            json!({
                "chunks": r.chunks, "swept": r.swept, "freed_bytes": r.freed_bytes,
                "swept_maps": r.swept_maps, "fixed_refcounts": r.fixed_refcounts,
                "fixed_pack_counts": r.fixed_pack_counts,
                "packs_rewritten": r.packs_rewritten, "chunks_moved": r.chunks_moved,
                "packs_deleted": r.packs_deleted, "pack_bytes_reclaimed": r.pack_bytes_reclaimed,
            }),
        );
    }

    pub fn scrub(&self, r: &pb::ScrubReport) {
        if self.json {
            return self.print_json(&json!({
                "chunks": r.chunks, "bytes": r.bytes, "clean": r.damaged.is_empty(),
                "damaged": r.damaged.iter().map(|d| json!({
                    "hash": d.hash, "error": d.error, "files": d.files,
                })).collect::<Vec<_>>(),
            }));
        }
        println!(
            "verified {} chunks ({}): {}",
            r.chunks,
            size(r.bytes),
            if r.damaged.is_empty() {
                "all intact".to_string()
            } else {
                format!("{} damaged", r.damaged.len())
            }
        );
        for d in &r.damaged {
            println!("  chunk {}: {}", d.hash, d.error);
            for f in &d.files {
                println!("    used by {f}");
            }
        }
    }
}

fn print_fields(rows: &[(&str, String)]) {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<w$}  {v}");
    }
}
