//! Crash consistency under SIGKILL: `cargo xtask crash --cycles N [--seed S]`.
//!
//! Each cycle starts the real `cairn-nfs` on one `file://` store, drives a
//! seeded mixed workload through a real NFS client (the crates.io
//! `nfs3_client`) and the admin API (whole-file FILE_SYNC writes, UNSTABLE
//! overwrites with and without COMMIT, truncates, renames within and across
//! directories, hard links, removes, snapshot create/delete, clone,
//! in-place restore), kills the server with SIGKILL at a random moment,
//! restarts it and checks: fsck is clean; every write the client saw
//! acknowledged as durable (FILE_SYNC or COMMIT reply, or a synchronous
//! metadata reply, RFC 1813) reads back byte for byte; no removed name came
//! back; every snapshot and clone still reads what it read before the kill.
//! What the kill interrupted is unknown and is cleaned up before the next
//! cycle. Prints cycles, failures, and the seed to replay a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_rpc::pb;
use cairn_testkit::nfs3_types::nfs3::*;
use cairn_testkit::nfs3_types::xdr_codec::Opaque;
use cairn_testkit::{Nfs, Server, dirop, mount, noise};

/// Names the workload uses: `f0`..`f9` in the root and in `d/`.
const NAMES: u64 = 10;
const DIRS: [&str; 2] = ["", "d/"];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn path(&mut self) -> String {
        let d = DIRS[self.below(2) as usize];
        format!("{d}f{}", self.below(NAMES))
    }
}

/// What the client knows the store holds.
#[derive(Default, Clone)]
struct Model {
    /// Path to file id (hard links share one).
    paths: BTreeMap<String, u64>,
    content: BTreeMap<u64, Vec<u8>>,
    /// Files whose content is not known to be durable.
    unknown_files: BTreeSet<u64>,
    /// Paths an interrupted operation may or may not have changed.
    unknown_paths: BTreeSet<String>,
    next_file: u64,
    /// Snapshot name to what each known path read when it was taken.
    snapshots: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Clone dataset name to its origin snapshot's content.
    clones: BTreeMap<String, (String, BTreeMap<String, Vec<u8>>)>,
    /// Snapshots and clones an interrupted admin call may have made or
    /// removed.
    unknown_snapshots: BTreeSet<String>,
    unknown_clones: BTreeSet<String>,
    next_name: u64,
}

impl Model {
    fn known(&self) -> BTreeMap<String, Vec<u8>> {
        self.paths
            .iter()
            .filter(|(p, f)| !self.unknown_paths.contains(*p) && !self.unknown_files.contains(f))
            .map(|(p, f)| (p.clone(), self.content[f].clone()))
            .collect()
    }
    fn unlink(&mut self, path: &str) {
        if let Some(f) = self.paths.remove(path)
            && !self.paths.values().any(|g| *g == f)
        {
            self.content.remove(&f);
            self.unknown_files.remove(&f);
        }
    }
}

/// Why a workload stopped.
enum Stop {
    Killed,
    Bad(String),
}

type R<T> = Result<T, Stop>;

struct Ctx {
    c: Nfs,
    admin: cairn_rpc::Client,
    killed: Arc<AtomicBool>,
    /// What the step under way does (reported when the kill cuts it).
    doing: &'static str,
}

impl Ctx {
    fn transport<E: std::fmt::Debug>(&self, what: &str, e: E) -> Stop {
        if self.killed.load(Ordering::SeqCst) {
            Stop::Killed
        } else {
            Stop::Bad(format!(
                "{what}: the server went away without being killed: {e:?}"
            ))
        }
    }

    fn status(&self, what: &str, s: nfsstat3) -> Stop {
        if self.killed.load(Ordering::SeqCst) {
            Stop::Killed
        } else {
            Stop::Bad(format!("{what}: {s:?}"))
        }
    }

    fn admin_err(&self, what: &str, e: tonic::Status) -> Stop {
        if self.killed.load(Ordering::SeqCst) || e.code() == tonic::Code::Unavailable {
            Stop::Killed
        } else {
            Stop::Bad(format!("{what}: {e}"))
        }
    }

    async fn lookup_in(&mut self, dir: nfs_fh3, name: &str) -> R<Option<nfs_fh3>> {
        let r = self
            .c
            .lookup(&LOOKUP3args {
                what: dirop(dir, name.as_bytes()),
            })
            .await
            .map_err(|e| self.transport("lookup", e))?;
        match r {
            Nfs3Result::Ok(ok) => Ok(Some(ok.object)),
            Nfs3Result::Err((nfsstat3::NFS3ERR_NOENT, _)) => Ok(None),
            Nfs3Result::Err((s, _)) => Err(self.status(&format!("lookup {name}"), s)),
        }
    }

    /// The handle of `path` under `root`, if it exists.
    async fn lookup(&mut self, root: nfs_fh3, path: &str) -> R<Option<nfs_fh3>> {
        let mut fh = root;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            match self.lookup_in(fh, part).await? {
                Some(h) => fh = h,
                None => return Ok(None),
            }
        }
        Ok(Some(fh))
    }

    /// `path`'s parent handle and last name, under the export root.
    async fn parent(&mut self, path: &str) -> R<(nfs_fh3, String)> {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => ("", path),
        };
        let root = self.c.root_nfs_fh3();
        let fh = self
            .lookup(root, dir)
            .await?
            .ok_or_else(|| Stop::Bad(format!("directory {dir:?} is missing")))?;
        Ok((fh, name.to_string()))
    }

    async fn read_all(&mut self, fh: nfs_fh3) -> R<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let r = self
                .c
                .read(&READ3args {
                    file: fh.clone(),
                    offset: out.len() as u64,
                    count: 1 << 20,
                })
                .await
                .map_err(|e| self.transport("read", e))?;
            match r {
                Nfs3Result::Ok(ok) => {
                    out.extend_from_slice(ok.data.as_ref());
                    if ok.eof || ok.data.is_empty() {
                        return Ok(out);
                    }
                }
                Nfs3Result::Err((s, _)) => return Err(self.status("read", s)),
            }
        }
    }

    async fn write(&mut self, fh: &nfs_fh3, off: u64, data: &[u8], stable: stable_how) -> R<()> {
        let r = self
            .c
            .write(&WRITE3args {
                file: fh.clone(),
                offset: off,
                count: data.len() as u32,
                stable,
                data: Opaque::borrowed(data),
            })
            .await
            .map_err(|e| self.transport("write", e))?;
        match r {
            Nfs3Result::Ok(_) => Ok(()),
            Nfs3Result::Err((s, _)) => Err(self.status("write", s)),
        }
    }

    async fn remove(&mut self, path: &str) -> R<()> {
        let (dir, name) = self.parent(path).await?;
        let r = self
            .c
            .remove(&REMOVE3args {
                object: dirop(dir, name.as_bytes()),
            })
            .await
            .map_err(|e| self.transport("remove", e))?;
        match r {
            Nfs3Result::Ok(_) | Nfs3Result::Err((nfsstat3::NFS3ERR_NOENT, _)) => Ok(()),
            Nfs3Result::Err((s, _)) => Err(self.status(&format!("remove {path}"), s)),
        }
    }
}

/// One workload step. The model is updated only for what the reply proves.
async fn step(ctx: &mut Ctx, m: &mut Model, rng: &mut Rng, seed: u64) -> R<()> {
    let existing: Vec<String> = m.paths.keys().cloned().collect();
    let pick = |rng: &mut Rng| -> Option<String> {
        (!existing.is_empty()).then(|| existing[rng.below(existing.len() as u64) as usize].clone())
    };
    let roll = rng.below(106);
    ctx.doing = match roll {
        0..=24 => "a FILE_SYNC write (pack seal and PUT)",
        25..=44 => "an UNSTABLE write or COMMIT (pack seal and PUT)",
        81..=99 => "a snapshot, clone or restore",
        100.. => "gc (sweep and repack)",
        _ => "a metadata operation",
    };
    match roll {
        // A whole file, FILE_SYNC.
        0..=24 => {
            let path = rng.path();
            let data = noise(rng.below(300_000) as usize, rng.next() ^ seed);
            m.unknown_paths.insert(path.clone());
            if let Some(f) = m.paths.get(&path) {
                m.unknown_files.insert(*f);
            }
            let (dir, name) = ctx.parent(&path).await?;
            let r = ctx
                .c
                .create(&CREATE3args {
                    where_: dirop(dir, name.as_bytes()),
                    how: createhow3::UNCHECKED(sattr3 {
                        size: Nfs3Option::Some(0),
                        ..Default::default()
                    }),
                })
                .await
                .map_err(|e| ctx.transport("create", e))?;
            let fh = match r {
                Nfs3Result::Ok(CREATE3resok {
                    obj: Nfs3Option::Some(fh),
                    ..
                }) => fh,
                Nfs3Result::Ok(_) => return Err(Stop::Bad("create gave no handle".into())),
                Nfs3Result::Err((s, _)) => return Err(ctx.status(&format!("create {path}"), s)),
            };
            // Created (and truncated) synchronously: the file is now empty.
            let f = match m.paths.get(&path) {
                Some(f) => *f,
                None => {
                    m.next_file += 1;
                    m.paths.insert(path.clone(), m.next_file);
                    m.next_file
                }
            };
            m.content.insert(f, Vec::new());
            m.unknown_files.insert(f);
            m.unknown_paths.remove(&path);
            for (i, part) in data.chunks(64 << 10).enumerate() {
                ctx.write(&fh, (i * (64 << 10)) as u64, part, stable_how::FILE_SYNC)
                    .await?;
                m.content
                    .get_mut(&f)
                    .expect("content")
                    .extend_from_slice(part);
            }
            m.unknown_files.remove(&f);
        }
        // An UNSTABLE overwrite, committed or not.
        25..=44 => {
            let Some(path) = pick(rng) else { return Ok(()) };
            let f = m.paths[&path];
            let Some(fh) = ctx.lookup(ctx.c.root_nfs_fh3(), &path).await? else {
                return Err(Stop::Bad(format!("{path} vanished")));
            };
            let len = m.content[&f].len() as u64;
            let off = rng.below(len + 1);
            let data = noise(1 + rng.below(100_000) as usize, rng.next());
            m.unknown_files.insert(f);
            ctx.write(&fh, off, &data, stable_how::UNSTABLE).await?;
            let c = m.content.get_mut(&f).expect("content");
            let end = off as usize + data.len();
            if c.len() < end {
                c.resize(end, 0);
            }
            c[off as usize..end].copy_from_slice(&data);
            if rng.below(2) == 0 {
                let r = ctx
                    .c
                    .commit(&COMMIT3args {
                        file: fh,
                        offset: 0,
                        count: 0,
                    })
                    .await
                    .map_err(|e| ctx.transport("commit", e))?;
                if let Nfs3Result::Err((s, _)) = r {
                    return Err(ctx.status("commit", s));
                }
                m.unknown_files.clear();
            }
        }
        // Truncate.
        45..=52 => {
            let Some(path) = pick(rng) else { return Ok(()) };
            let f = m.paths[&path];
            let Some(fh) = ctx.lookup(ctx.c.root_nfs_fh3(), &path).await? else {
                return Err(Stop::Bad(format!("{path} vanished")));
            };
            let size = rng.below(m.content[&f].len() as u64 + 1);
            m.unknown_files.insert(f);
            let r = ctx
                .c
                .setattr(&SETATTR3args {
                    object: fh,
                    new_attributes: sattr3 {
                        size: Nfs3Option::Some(size),
                        ..Default::default()
                    },
                    guard: Nfs3Option::None,
                })
                .await
                .map_err(|e| ctx.transport("setattr", e))?;
            if let Nfs3Result::Err((s, _)) = r {
                return Err(ctx.status("truncate", s));
            }
            m.content
                .get_mut(&f)
                .expect("content")
                .resize(size as usize, 0);
            // Synchronous: everything before it is durable too.
            m.unknown_files.clear();
        }
        // Rename, within or across directories (may replace).
        53..=64 => {
            let Some(from) = pick(rng) else { return Ok(()) };
            let to = rng.path();
            if to == from {
                return Ok(());
            }
            m.unknown_paths.insert(from.clone());
            m.unknown_paths.insert(to.clone());
            let (fdir, fname) = ctx.parent(&from).await?;
            let (tdir, tname) = ctx.parent(&to).await?;
            let r = ctx
                .c
                .rename(&RENAME3args {
                    from: dirop(fdir, fname.as_bytes()),
                    to: dirop(tdir, tname.as_bytes()),
                })
                .await
                .map_err(|e| ctx.transport("rename", e))?;
            if let Nfs3Result::Err((s, _)) = r {
                return Err(ctx.status(&format!("rename {from} {to}"), s));
            }
            let f = m.paths[&from];
            if m.paths.get(&to) == Some(&f) {
                // Renaming onto another link of the same file does nothing.
            } else {
                m.unlink(&to);
                m.paths.remove(&from);
                m.paths.insert(to.clone(), f);
            }
            m.unknown_paths.remove(&from);
            m.unknown_paths.remove(&to);
            m.unknown_files.clear();
        }
        // Hard link.
        65..=72 => {
            let Some(from) = pick(rng) else { return Ok(()) };
            let to = rng.path();
            if m.paths.contains_key(&to) {
                return Ok(());
            }
            m.unknown_paths.insert(to.clone());
            let Some(fh) = ctx.lookup(ctx.c.root_nfs_fh3(), &from).await? else {
                return Err(Stop::Bad(format!("{from} vanished")));
            };
            let (dir, name) = ctx.parent(&to).await?;
            let r = ctx
                .c
                .link(&LINK3args {
                    file: fh,
                    link: dirop(dir, name.as_bytes()),
                })
                .await
                .map_err(|e| ctx.transport("link", e))?;
            if let Nfs3Result::Err((s, _)) = r {
                return Err(ctx.status(&format!("link {from} {to}"), s));
            }
            let f = m.paths[&from];
            m.paths.insert(to.clone(), f);
            m.unknown_paths.remove(&to);
            m.unknown_files.clear();
        }
        // Remove.
        73..=80 => {
            let Some(path) = pick(rng) else { return Ok(()) };
            m.unknown_paths.insert(path.clone());
            ctx.remove(&path).await?;
            m.unlink(&path);
            m.unknown_paths.remove(&path);
            m.unknown_files.clear();
        }
        // Snapshot create (durable on reply: everything before it is too).
        81..=87 => {
            if m.snapshots.len() >= 8 {
                return Ok(());
            }
            m.next_name += 1;
            let name = format!("s{}", m.next_name);
            m.unknown_snapshots.insert(name.clone());
            let known = m.known();
            ctx.admin
                .create_snapshot(pb::CreateSnapshotRequest {
                    dataset: "root".into(),
                    name: name.clone(),
                    writable: false,
                })
                .await
                .map_err(|e| ctx.admin_err("create snapshot", e))?;
            m.unknown_snapshots.remove(&name);
            m.unknown_files.clear();
            m.snapshots.insert(name, known);
        }
        // Snapshot delete (one no clone depends on), keeping a few.
        88..=91 => {
            let held: BTreeSet<&String> = m.clones.values().map(|(s, _)| s).collect();
            let Some(name) = m.snapshots.keys().find(|s| !held.contains(s)).cloned() else {
                return Ok(());
            };
            if m.snapshots.len() < 3 {
                return Ok(());
            }
            m.unknown_snapshots.insert(name.clone());
            ctx.admin
                .delete_snapshot(pb::DeleteSnapshotRequest {
                    snapshot: format!("root@{name}"),
                })
                .await
                .map_err(|e| ctx.admin_err("delete snapshot", e))?;
            m.unknown_snapshots.remove(&name);
            m.snapshots.remove(&name);
        }
        // Clone a snapshot (or delete the oldest clone).
        92..=95 => {
            if m.clones.len() >= 2 {
                let name = m.clones.keys().next().cloned().expect("a clone");
                m.unknown_clones.insert(name.clone());
                ctx.admin
                    .delete_dataset(pb::DeleteDatasetRequest {
                        name: name.clone(),
                        recursive: false,
                    })
                    .await
                    .map_err(|e| ctx.admin_err("delete clone", e))?;
                m.unknown_clones.remove(&name);
                m.clones.remove(&name);
                return Ok(());
            }
            let Some((snap, content)) = m.snapshots.iter().next_back() else {
                return Ok(());
            };
            let (snap, content) = (snap.clone(), content.clone());
            m.next_name += 1;
            let name = format!("c{}", m.next_name);
            m.unknown_clones.insert(name.clone());
            pb::admin_client::AdminClient::clone(
                &mut ctx.admin,
                pb::CloneRequest {
                    snapshot: format!("root@{snap}"),
                    name: name.clone(),
                },
            )
            .await
            .map_err(|e| ctx.admin_err("clone", e))?;
            m.unknown_clones.remove(&name);
            m.clones.insert(name, (snap, content));
        }
        // In-place restore of a file from a snapshot to a free name.
        96..=99 => {
            let Some((snap, content)) = m.snapshots.iter().next_back() else {
                return Ok(());
            };
            let Some((src, data)) = content.iter().next() else {
                return Ok(());
            };
            let (snap, src, data) = (snap.clone(), src.clone(), data.clone());
            let to = rng.path();
            if m.paths.contains_key(&to) {
                return Ok(());
            }
            m.unknown_paths.insert(to.clone());
            ctx.admin
                .restore(pb::RestoreRequest {
                    snapshot: format!("root@{snap}"),
                    source: src,
                    target: to.clone(),
                })
                .await
                .map_err(|e| ctx.admin_err("restore", e))?;
            m.next_file += 1;
            m.paths.insert(to.clone(), m.next_file);
            m.content.insert(m.next_file, data);
            m.unknown_paths.remove(&to);
            m.unknown_files.clear();
        }
        // gc: sweeps, and merges the many small packs the synchronous
        // writes sealed into new ones (a kill here lands mid-repack).
        _ => {
            ctx.admin
                .gc(pb::GcRequest {})
                .await
                .map_err(|e| ctx.admin_err("gc", e))?;
        }
    }
    Ok(())
}

/// Compare the files under `root` with `want`; names of the universe not in
/// `want` must be absent unless `maybe` says an interrupted call touched them.
async fn check_tree(
    ctx: &mut Ctx,
    root: nfs_fh3,
    label: &str,
    want: &BTreeMap<String, Vec<u8>>,
    maybe: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let e = |s: Stop| match s {
        Stop::Killed => format!("{label}: the server died during the check"),
        Stop::Bad(m) => format!("{label}: {m}"),
    };
    for d in DIRS {
        for i in 0..NAMES {
            let path = format!("{d}f{i}");
            if maybe(&path) {
                continue;
            }
            let fh = ctx.lookup(root.clone(), &path).await.map_err(e)?;
            match (fh, want.get(&path)) {
                (None, None) => {}
                (None, Some(_)) => return Err(format!("{label}: durable file {path} is gone")),
                (Some(_), None) => {
                    return Err(format!(
                        "{label}: {path} exists but was removed or never made"
                    ));
                }
                (Some(fh), Some(data)) => {
                    let got = ctx.read_all(fh).await.map_err(e)?;
                    if &got != data {
                        let at = got.iter().zip(data).position(|(a, b)| a != b);
                        return Err(format!(
                            "{label}: {path} has {} bytes, want {} (first difference at {at:?})",
                            got.len(),
                            data.len()
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

async fn connect(s: &Server, killed: Arc<AtomicBool>) -> Ctx {
    let c = mount(s.nfs_port, "/", 0, 0).await;
    let admin = cairn_rpc::connect(&s.endpoint(), None)
        .await
        .unwrap_or_else(|e| panic!("admin API: {e}"));
    Ctx {
        c,
        admin,
        killed,
        doing: "nothing yet",
    }
}

/// After a restart: everything the model knows must read back; then drop
/// what the kill left unknown, on the server and in the model.
async fn verify(ctx: &mut Ctx, m: &mut Model, port: u16) -> Result<(), String> {
    let fsck = ctx
        .admin
        .fsck(pb::FsckRequest {})
        .await
        .map_err(|e| format!("fsck: {e}"))?
        .into_inner();
    if !fsck.clean {
        return Err(format!("fsck after restart: {:?}", fsck.problems));
    }
    let want = m.known();
    let unknown: BTreeSet<String> = m
        .paths
        .iter()
        .filter(|(p, f)| m.unknown_paths.contains(*p) || m.unknown_files.contains(f))
        .map(|(p, _)| p.clone())
        .chain(m.unknown_paths.iter().cloned())
        .collect();
    let root = ctx.c.root_nfs_fh3();
    check_tree(ctx, root.clone(), "live", &want, &|p| unknown.contains(p)).await?;
    let listed: BTreeSet<String> = ctx
        .admin
        .list_snapshots(pb::ListSnapshotsRequest {
            dataset: "root".into(),
        })
        .await
        .map_err(|e| format!("list snapshots: {e}"))?
        .into_inner()
        .snapshots
        .into_iter()
        .map(|s| s.name)
        .collect();
    let snapdir = ctx
        .lookup_in(root.clone(), ".snapshots")
        .await
        .map_err(|_| "lookup .snapshots".to_string())?
        .ok_or("no .snapshots directory")?;
    for (name, files) in m.snapshots.clone() {
        if !listed.contains(&name) {
            if m.unknown_snapshots.contains(&name) {
                m.snapshots.remove(&name);
                continue;
            }
            return Err(format!("snapshot {name} is gone"));
        }
        let fh = ctx
            .lookup_in(snapdir.clone(), &name)
            .await
            .map_err(|_| format!("lookup snapshot {name}"))?
            .ok_or(format!("snapshot {name} missing from .snapshots"))?;
        // Paths unknown when it was taken are not in `files`; they may exist.
        let recorded = files.clone();
        check_tree(ctx, fh, &format!("snapshot {name}"), &files, &|p| {
            !recorded.contains_key(p)
        })
        .await?;
    }
    // A snapshot an interrupted create made: its content is not known.
    for name in listed {
        if !m.snapshots.contains_key(&name) {
            if !m.unknown_snapshots.contains(&name) {
                return Err(format!("snapshot {name} exists but was never made"));
            }
            ctx.admin
                .delete_snapshot(pb::DeleteSnapshotRequest {
                    snapshot: format!("root@{name}"),
                })
                .await
                .map_err(|e| format!("delete snapshot {name}: {e}"))?;
        }
    }
    m.unknown_snapshots.clear();
    let datasets: BTreeSet<String> = ctx
        .admin
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .map_err(|e| format!("list datasets: {e}"))?
        .into_inner()
        .datasets
        .into_iter()
        .map(|d| d.name)
        .collect();
    for (name, (_, files)) in m.clones.clone() {
        if !datasets.contains(&name) {
            if m.unknown_clones.contains(&name) {
                m.clones.remove(&name);
                continue;
            }
            return Err(format!("clone {name} is gone"));
        }
        let mut c = mount(port, &format!("/{name}"), 0, 0).await;
        let croot = c.root_nfs_fh3();
        std::mem::swap(&mut ctx.c, &mut c);
        let recorded = files.clone();
        let r = check_tree(ctx, croot, &format!("clone {name}"), &files, &|p| {
            !recorded.contains_key(p)
        })
        .await;
        std::mem::swap(&mut ctx.c, &mut c);
        r?;
    }
    for name in datasets {
        if name != "root" && !m.clones.contains_key(&name) {
            if !m.unknown_clones.contains(&name) {
                return Err(format!("dataset {name} exists but was never made"));
            }
            ctx.admin
                .delete_dataset(pb::DeleteDatasetRequest {
                    name: name.clone(),
                    recursive: false,
                })
                .await
                .map_err(|e| format!("delete clone {name}: {e}"))?;
        }
    }
    m.unknown_clones.clear();
    // Drop what the kill left unknown.
    for p in &unknown {
        ctx.remove(p)
            .await
            .map_err(|_| format!("removing unknown {p} failed"))?;
        m.unlink(p);
    }
    m.unknown_paths.clear();
    m.unknown_files.clear();
    Ok(())
}

/// One cycle: workload, SIGKILL, restart, verify. Returns the steps run
/// and what the kill interrupted.
async fn cycle(
    store: &str,
    m: &mut Model,
    seed: u64,
    n: u64,
) -> Result<(usize, &'static str), String> {
    let mut rng = Rng(seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let s = Server::start(
        "cairn-nfs",
        &[
            "--store",
            store,
            "--nfs-listen",
            "127.0.0.1:0",
            "--rpc-listen",
            "127.0.0.1:0",
        ],
    )?;
    let killed = Arc::new(AtomicBool::new(false));
    let mut ctx = connect(&s, killed.clone()).await;
    if n == 0 {
        let root = ctx.c.root_nfs_fh3();
        let _ = ctx
            .c
            .mkdir(&MKDIR3args {
                where_: dirop(root, b"d"),
                attributes: sattr3::default(),
            })
            .await;
    }
    let delay = Duration::from_millis(100 + rng.below(1500));
    let pid = s.pid();
    let kill_after = |after: Duration, k: Arc<AtomicBool>| {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            k.store(true, Ordering::SeqCst);
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        })
    };
    // Every other cycle aims the kill at a gc: once the workload ran for
    // `delay`, a gc starts and the kill follows within 40 ms, mid-sweep or
    // mid-repack. The others kill at `delay`, wherever the workload is.
    let aim_at_gc = n % 2 == 1;
    let mut killer = (!aim_at_gc).then(|| kill_after(delay, killed.clone()));
    let started = std::time::Instant::now();
    let mut steps = 0;
    let stop = loop {
        if killed.load(Ordering::SeqCst) {
            break Stop::Killed;
        }
        if killer.is_none() && started.elapsed() >= delay {
            killer = Some(kill_after(
                Duration::from_millis(rng.below(40)),
                killed.clone(),
            ));
            ctx.doing = "gc (sweep and repack)";
            match tokio::time::timeout(Duration::from_secs(10), ctx.admin.gc(pb::GcRequest {}))
                .await
            {
                Ok(Ok(_)) => {
                    steps += 1;
                    ctx.doing = "nothing (between steps)";
                    continue;
                }
                Ok(Err(e)) => break ctx.admin_err("gc", e),
                Err(_) if killed.load(Ordering::SeqCst) => break Stop::Killed,
                Err(_) => break Stop::Bad("gc took over 10 s".into()),
            }
        }
        // A step cut by the kill can hang on the dead connection.
        match tokio::time::timeout(Duration::from_secs(10), step(&mut ctx, m, &mut rng, seed)).await
        {
            Ok(Ok(())) => {
                steps += 1;
                ctx.doing = "nothing (between steps)";
            }
            Ok(Err(s)) => break s,
            Err(_) if killed.load(Ordering::SeqCst) => break Stop::Killed,
            Err(_) => break Stop::Bad("a step took over 10 s".into()),
        }
    };
    let interrupted = ctx.doing;
    if let Some(k) = killer {
        let _ = k.join();
    }
    s.kill();
    if let Stop::Bad(why) = stop {
        return Err(format!("during the workload: {why}"));
    }
    let s = Server::start(
        "cairn-nfs",
        &[
            "--store",
            store,
            "--nfs-listen",
            "127.0.0.1:0",
            "--rpc-listen",
            "127.0.0.1:0",
        ],
    )
    .map_err(|e| format!("restart after the kill: {e}"))?;
    let mut ctx = connect(&s, Arc::new(AtomicBool::new(false))).await;
    let r = verify(&mut ctx, m, s.nfs_port).await;
    drop(ctx);
    let (status, log) = tokio::task::spawn_blocking(move || s.stop())
        .await
        .map_err(|e| e.to_string())?;
    r?;
    if !status.success() {
        return Err(format!("clean stop failed: {log}"));
    }
    Ok((steps, interrupted))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name} wants a number, got {v:?}"))
            })
    };
    let cycles = flag("--cycles").unwrap_or(10);
    let seed = flag("--seed").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("file://{}", dir.path().join("store").display());
    println!("crash test: {cycles} cycles, seed {seed}, store {store}");
    let mut m = Model::default();
    let mut failures = 0;
    let mut steps = 0;
    let mut run = 0;
    let mut kills: BTreeMap<&'static str, u64> = BTreeMap::new();
    for n in 0..cycles {
        run += 1;
        match cycle(&store, &mut m, seed, n).await {
            Ok((k, interrupted)) => {
                steps += k;
                *kills.entry(interrupted).or_insert(0u64) += 1;
                println!(
                    "cycle {n}: {k} steps, then SIGKILL during {interrupted}; after restart: fsck clean, files {}, snapshots {}, clones {}, all as acknowledged",
                    m.paths.len(),
                    m.snapshots.len(),
                    m.clones.len()
                );
            }
            Err(e) => {
                failures += 1;
                println!(
                    "cycle {n}: FAILED: {e}\n  replay: cargo xtask crash --cycles {} --seed {seed}",
                    n + 1
                );
                break;
            }
        }
    }
    println!(
        "crash test: {run} cycles run, {steps} workload steps, {failures} failures (seed {seed})"
    );
    for (what, k) in &kills {
        println!("  killed during {what}: {k}");
    }
    if failures > 0 {
        std::process::exit(1);
    }
}
