//! Model-based property test: random operation sequences run against the
//! engine and an in-memory model must agree on every read, and fsck must be
//! clean after every sequence. The second half adds datasets: snapshots
//! (the model keeps a frozen copy of each), clones, writes in clones,
//! rollback, in-place restore and deletions; after every step every live
//! dataset and every snapshot must read exactly its model.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_engine::{BackgroundRepack, Engine, EngineOptions};
use cairn_fs::{CreateHow, Creds, ErrorKind, FileKind, Filesystem, SetAttr};
use proptest::prelude::*;

/// The model: paths to nodes; hard links share a file id.
#[derive(Debug, Clone, Default)]
struct Model {
    /// path -> node
    entries: BTreeMap<String, Node>,
    /// file id -> content
    files: BTreeMap<u32, Vec<u8>>,
    /// file id -> its stored chunks (`None` while its content is inline):
    /// chunk index -> stored length. What GETATTR's `used` must sum to.
    alloc: BTreeMap<u32, Option<BTreeMap<u64, u64>>>,
    next_file: u32,
    /// The dataset's chunk size.
    chunk: u64,
}

/// Files up to this size keep their content in the inode record (the
/// engine's `INLINE_MAX`) until they first grow past it.
const INLINE_MAX: u64 = 4096;

/// What GETATTR reports as `used` for a directory (the engine's
/// `META_ALLOCATION`).
const DIR_USED: u64 = 4096;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    File(u32),
    Dir,
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const DIRS: [&str; 3] = ["", "x", "x/y"];

#[derive(Debug, Clone)]
enum Op {
    Create(usize, usize),
    Mkdir(usize, usize),
    Write {
        dir: usize,
        name: usize,
        offset: u32,
        len: u32,
        seed: u8,
    },
    Truncate {
        dir: usize,
        name: usize,
        size: u32,
    },
    Link {
        from: (usize, usize),
        to: (usize, usize),
    },
    Rename {
        from: (usize, usize),
        to: (usize, usize),
    },
    Remove(usize, usize),
    Rmdir(usize, usize),
    /// Make the `x` and `x/y` directories the other locations live in.
    MkdirX,
}

fn path(dir: usize, name: usize) -> String {
    if DIRS[dir].is_empty() {
        NAMES[name].to_string()
    } else {
        format!("{}/{}", DIRS[dir], NAMES[name])
    }
}

fn arb_op() -> impl Strategy<Value = Op> {
    // Mostly the root, so sequences build on each other.
    let loc = (
        prop_oneof![6 => Just(0usize), 2 => Just(1usize), 1 => Just(2usize)],
        0..NAMES.len(),
    );
    prop_oneof![
        3 => loc.clone().prop_map(|(d, n)| Op::Create(d, n)),
        1 => loc.clone().prop_map(|(d, n)| Op::Mkdir(d, n)),
        2 => Just(Op::MkdirX),
        5 => (loc.clone(), prop_oneof![0u32..5000, 0u32..300_000], prop_oneof![1u32..100, 1u32..150_000], any::<u8>())
            .prop_map(|((dir, name), offset, len, seed)| Op::Write { dir, name, offset, len, seed }),
        2 => (loc.clone(), prop_oneof![0u32..5000, 0u32..300_000]).prop_map(|((dir, name), size)| Op::Truncate { dir, name, size }),
        2 => (loc.clone(), loc.clone()).prop_map(|(from, to)| Op::Link { from, to }),
        2 => (loc.clone(), loc.clone()).prop_map(|(from, to)| Op::Rename { from, to }),
        2 => loc.clone().prop_map(|(d, n)| Op::Remove(d, n)),
        1 => loc.prop_map(|(d, n)| Op::Rmdir(d, n)),
    ]
}

fn data(len: u32, seed: u8) -> Vec<u8> {
    // Mix runs of zeros (holes, dedup) with noise.
    let mut x = 0x2545_F491_4F6C_DD1Du64 ^ seed as u64;
    (0..len)
        .map(|i| {
            if seed.is_multiple_of(3) && (i / 4096).is_multiple_of(2) {
                return 0;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if seed.is_multiple_of(5) {
                seed
            } else {
                x as u8
            }
        })
        .collect()
}

fn parent(p: &str) -> &str {
    p.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

impl Model {
    fn new(chunk: u64) -> Self {
        Self {
            chunk,
            ..Default::default()
        }
    }

    /// The space file `id` occupies: its inline bytes, or the stored length
    /// of each chunk that is not a hole.
    fn used(&self, id: u32) -> u64 {
        match &self.alloc[&id] {
            None => self.files[&id].len() as u64,
            Some(chunks) => chunks.values().sum(),
        }
    }

    /// The dataset's `referenced`: the space of every file it holds, each
    /// file once however many links it has.
    fn referenced(&self) -> u64 {
        let ids: std::collections::BTreeSet<u32> = self
            .entries
            .values()
            .filter_map(|n| match n {
                Node::File(id) => Some(*id),
                Node::Dir => None,
            })
            .collect();
        ids.into_iter().map(|id| self.used(id)).sum()
    }

    /// Chunk `idx` of file `id` now holds its first `len` bytes (within
    /// the file): stored unless they are all zeros, which is a hole.
    fn store_chunk(&mut self, id: u32, idx: u64, len: u64) {
        let start = (idx * self.chunk) as usize;
        let zero = self.files[&id][start..start + len as usize]
            .iter()
            .all(|b| *b == 0);
        let chunks = self
            .alloc
            .get_mut(&id)
            .and_then(Option::as_mut)
            .expect("chunked file");
        if zero || len == 0 {
            chunks.remove(&idx);
        } else {
            chunks.insert(idx, len);
        }
    }

    /// Move an inline file of `old_size` bytes to chunks: chunk 0 holds
    /// what was inline.
    fn uninline(&mut self, id: u32, old_size: u64) {
        if self.alloc[&id].is_none() {
            self.alloc.insert(id, Some(BTreeMap::new()));
            self.store_chunk(id, 0, old_size);
        }
    }

    /// Allocation after writing `offset..end` of file `id` (content already
    /// written; it was `old_size` long): every chunk touched is stored up to
    /// the new size.
    fn after_write(&mut self, id: u32, old_size: u64, offset: u64, end: u64) {
        let size = self.files[&id].len() as u64;
        if self.alloc[&id].is_none() && size <= INLINE_MAX {
            return;
        }
        self.uninline(id, old_size);
        let cs = self.chunk;
        for idx in offset / cs..=(end - 1) / cs {
            self.store_chunk(id, idx, (size - idx * cs).min(cs));
        }
    }

    /// Allocation after truncating file `id` (content already resized) from
    /// `old_size`: chunks past the end go, the new tail chunk is cut; an
    /// extension stores nothing.
    fn after_truncate(&mut self, id: u32, old_size: u64) {
        let size = self.files[&id].len() as u64;
        let cs = self.chunk;
        match &mut self.alloc.get_mut(&id).expect("file") {
            None if size <= INLINE_MAX => {}
            None => self.uninline(id, old_size),
            Some(_) if size == 0 => {
                self.alloc.insert(id, None);
            }
            Some(chunks) if size < old_size => {
                chunks.retain(|idx, _| *idx < size.div_ceil(cs));
                let (idx, tail) = (size / cs, size % cs);
                if let Some(len) = chunks.get(&idx).copied()
                    && tail != 0
                    && len > tail
                {
                    self.store_chunk(id, idx, tail);
                }
            }
            Some(_) => {}
        }
    }

    fn dir_exists(&self, d: &str) -> bool {
        d.is_empty() || self.entries.get(d) == Some(&Node::Dir)
    }

    fn has_children(&self, d: &str) -> bool {
        let prefix = format!("{d}/");
        self.entries.keys().any(|k| k.starts_with(&prefix))
    }

    /// Apply; returns the error kind the engine must report, if any.
    fn apply(&mut self, op: &Op) -> Option<ErrorKind> {
        match op {
            Op::Create(d, n) => {
                let p = path(*d, *n);
                if !self.dir_exists(DIRS[*d]) {
                    return Some(ErrorKind::NotFound);
                }
                if self.entries.contains_key(&p) {
                    return Some(ErrorKind::Exists);
                }
                let id = self.next_file;
                self.next_file += 1;
                self.files.insert(id, Vec::new());
                self.alloc.insert(id, None);
                self.entries.insert(p, Node::File(id));
                None
            }
            Op::MkdirX => {
                for d in ["x", "x/y"] {
                    match self.entries.get(d) {
                        Some(Node::Dir) => {}
                        Some(Node::File(_)) => return Some(ErrorKind::Exists),
                        None => {
                            if !self.dir_exists(parent(d)) {
                                return Some(ErrorKind::NotFound);
                            }
                            self.entries.insert(d.to_string(), Node::Dir);
                        }
                    }
                }
                None
            }
            Op::Mkdir(d, n) => {
                let p = path(*d, *n);
                if !self.dir_exists(DIRS[*d]) {
                    return Some(ErrorKind::NotFound);
                }
                if self.entries.contains_key(&p) {
                    return Some(ErrorKind::Exists);
                }
                self.entries.insert(p, Node::Dir);
                None
            }
            Op::Write {
                dir,
                name,
                offset,
                len,
                seed,
            } => match self.entries.get(&path(*dir, *name)) {
                Some(Node::File(id)) => {
                    let id = *id;
                    let f = self.files.get_mut(&id).expect("file");
                    let old_size = f.len() as u64;
                    let end = (*offset + *len) as usize;
                    if f.len() < end {
                        f.resize(end, 0);
                    }
                    f[*offset as usize..end].copy_from_slice(&data(*len, *seed));
                    self.after_write(id, old_size, *offset as u64, end as u64);
                    None
                }
                Some(Node::Dir) => Some(ErrorKind::IsDir),
                None => Some(ErrorKind::NotFound),
            },
            Op::Truncate { dir, name, size } => match self.entries.get(&path(*dir, *name)) {
                Some(Node::File(id)) => {
                    let id = *id;
                    let f = self.files.get_mut(&id).expect("file");
                    let old_size = f.len() as u64;
                    f.resize(*size as usize, 0);
                    self.after_truncate(id, old_size);
                    None
                }
                Some(Node::Dir) => Some(ErrorKind::IsDir),
                None => Some(ErrorKind::NotFound),
            },
            Op::Link { from, to } => {
                let (src, dst) = (path(from.0, from.1), path(to.0, to.1));
                match self.entries.get(&src).cloned() {
                    None => Some(ErrorKind::NotFound),
                    Some(_) if !self.dir_exists(DIRS[to.0]) => Some(ErrorKind::NotFound),
                    Some(Node::Dir) => Some(ErrorKind::Permission),
                    Some(Node::File(id)) => {
                        if self.entries.contains_key(&dst) {
                            return Some(ErrorKind::Exists);
                        }
                        self.entries.insert(dst, Node::File(id));
                        None
                    }
                }
            }
            Op::Rename { from, to } => {
                let (src, dst) = (path(from.0, from.1), path(to.0, to.1));
                let Some(node) = self.entries.get(&src).cloned() else {
                    return Some(ErrorKind::NotFound);
                };
                if !self.dir_exists(DIRS[to.0]) {
                    return Some(ErrorKind::NotFound);
                }
                if src == dst {
                    return None;
                }
                if node == Node::Dir && (dst.starts_with(&format!("{src}/"))) {
                    return Some(ErrorKind::Invalid);
                }
                match (&node, self.entries.get(&dst)) {
                    (Node::Dir, Some(Node::File(_))) => return Some(ErrorKind::NotDir),
                    (Node::File(_), Some(Node::Dir)) => return Some(ErrorKind::IsDir),
                    (Node::Dir, Some(Node::Dir)) if self.has_children(&dst) => {
                        return Some(ErrorKind::NotEmpty);
                    }
                    (Node::File(a), Some(Node::File(b))) if a == b => return None,
                    _ => {}
                }
                self.entries.remove(&dst);
                let moved: Vec<(String, Node)> = self
                    .entries
                    .iter()
                    .filter(|(k, _)| **k == src || k.starts_with(&format!("{src}/")))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (k, v) in moved {
                    self.entries.remove(&k);
                    self.entries.insert(format!("{dst}{}", &k[src.len()..]), v);
                }
                self.gc();
                None
            }
            Op::Remove(d, n) => match self.entries.get(&path(*d, *n)) {
                Some(Node::File(_)) => {
                    self.entries.remove(&path(*d, *n));
                    self.gc();
                    None
                }
                Some(Node::Dir) => Some(ErrorKind::IsDir),
                None => Some(ErrorKind::NotFound),
            },
            Op::Rmdir(d, n) => {
                let p = path(*d, *n);
                match self.entries.get(&p) {
                    Some(Node::Dir) if self.has_children(&p) => Some(ErrorKind::NotEmpty),
                    Some(Node::Dir) => {
                        self.entries.remove(&p);
                        None
                    }
                    Some(Node::File(_)) => Some(ErrorKind::NotDir),
                    None => Some(ErrorKind::NotFound),
                }
            }
        }
    }

    fn gc(&mut self) {
        let live: std::collections::BTreeSet<u32> = self
            .entries
            .values()
            .filter_map(|n| {
                if let Node::File(id) = n {
                    Some(*id)
                } else {
                    None
                }
            })
            .collect();
        self.files.retain(|id, _| live.contains(id));
        self.alloc.retain(|id, _| live.contains(id));
    }
}

/// Resolve a model path in the engine; `Err(kind)` when a component is missing.
async fn resolve(fs: &dyn Filesystem, p: &str) -> Result<u64, ErrorKind> {
    let mut ino = fs.info().root;
    if p.is_empty() {
        return Ok(ino);
    }
    for part in p.split('/') {
        ino = fs
            .lookup(&Creds::root(), ino, part.as_bytes())
            .await
            .map_err(|e| e.kind)?
            .ino;
    }
    Ok(ino)
}

async fn run_engine(fs: &dyn Filesystem, op: &Op) -> Option<ErrorKind> {
    let root = Creds::root();
    let loc = |d: usize| async move { resolve(fs, DIRS[d]).await };
    let r: Result<(), ErrorKind> = async {
        match op {
            Op::Create(d, n) => {
                let dir = loc(*d).await?;
                fs.create(
                    &root,
                    dir,
                    NAMES[*n].as_bytes(),
                    CreateHow::Guarded,
                    &SetAttr::default(),
                )
                .await
                .map(drop)
                .map_err(|e| e.kind)
            }
            Op::MkdirX => {
                let mut dir = fs.info().root;
                for name in ["x", "y"] {
                    dir = match fs.lookup(&root, dir, name.as_bytes()).await {
                        Ok(a) if a.kind == FileKind::Directory => a.ino,
                        Ok(_) => return Err(ErrorKind::Exists),
                        Err(e) if e.kind == ErrorKind::NotFound => {
                            fs.mkdir(&root, dir, name.as_bytes(), &SetAttr::default())
                                .await
                                .map_err(|e| e.kind)?
                                .ino
                        }
                        Err(e) => return Err(e.kind),
                    };
                }
                Ok(())
            }
            Op::Mkdir(d, n) => {
                let dir = loc(*d).await?;
                fs.mkdir(&root, dir, NAMES[*n].as_bytes(), &SetAttr::default())
                    .await
                    .map(drop)
                    .map_err(|e| e.kind)
            }
            Op::Write {
                dir,
                name,
                offset,
                len,
                seed,
            } => {
                let ino = resolve(fs, &path(*dir, *name)).await?;
                fs.write(&root, ino, *offset as u64, &data(*len, *seed))
                    .await
                    .map(drop)
                    .map_err(|e| e.kind)
            }
            Op::Truncate { dir, name, size } => {
                let ino = resolve(fs, &path(*dir, *name)).await?;
                let attrs = SetAttr {
                    size: Some(*size as u64),
                    ..Default::default()
                };
                fs.setattr(&root, ino, &attrs, None)
                    .await
                    .map(drop)
                    .map_err(|e| e.kind)
            }
            Op::Link { from, to } => {
                let ino = resolve(fs, &path(from.0, from.1)).await?;
                let dir = loc(to.0).await?;
                fs.link(&root, ino, dir, NAMES[to.1].as_bytes())
                    .await
                    .map(drop)
                    .map_err(|e| e.kind)
            }
            Op::Rename { from, to } => {
                let fdir = loc(from.0).await?;
                // The model reports a missing source before a missing target dir.
                fs.lookup(&root, fdir, NAMES[from.1].as_bytes())
                    .await
                    .map_err(|e| e.kind)?;
                let tdir = loc(to.0).await?;
                fs.rename(
                    &root,
                    fdir,
                    NAMES[from.1].as_bytes(),
                    tdir,
                    NAMES[to.1].as_bytes(),
                )
                .await
                .map_err(|e| e.kind)
            }
            Op::Remove(d, n) => {
                let dir = loc(*d).await?;
                fs.remove(&root, dir, NAMES[*n].as_bytes())
                    .await
                    .map_err(|e| e.kind)
            }
            Op::Rmdir(d, n) => {
                let dir = loc(*d).await?;
                fs.rmdir(&root, dir, NAMES[*n].as_bytes())
                    .await
                    .map_err(|e| e.kind)
            }
        }
    }
    .await;
    r.err()
}

/// Compare every path, kind, content and link count.
async fn compare(fs: &dyn Filesystem, model: &Model) -> Result<(), String> {
    let root = Creds::root();
    // Walk the engine tree.
    let mut seen = BTreeMap::new();
    let mut stack = vec![(String::new(), fs.info().root)];
    while let Some((p, ino)) = stack.pop() {
        let mut cookie = 0;
        loop {
            let page = fs
                .readdir(&root, ino, cookie, 0, 3)
                .await
                .map_err(|e| format!("readdir {p:?}: {e}"))?;
            for e in &page.entries {
                let name = String::from_utf8_lossy(&e.name).into_owned();
                let child = if p.is_empty() {
                    name
                } else {
                    format!("{p}/{name}")
                };
                if e.kind == FileKind::Directory {
                    stack.push((child.clone(), e.ino));
                }
                seen.insert(child, (e.ino, e.kind));
                cookie = e.cookie;
            }
            if page.eof {
                break;
            }
        }
    }
    let want: Vec<&String> = model.entries.keys().collect();
    let got: Vec<&String> = seen.keys().collect();
    if want != got {
        return Err(format!(
            "tree differs:\n model:  {want:?}\n engine: {got:?}"
        ));
    }
    for (p, node) in &model.entries {
        let (ino, kind) = seen[p];
        match node {
            Node::Dir => {
                if kind != FileKind::Directory {
                    return Err(format!("{p}: engine has {kind:?}, model a directory"));
                }
                let attr = fs
                    .getattr(ino)
                    .await
                    .map_err(|e| format!("getattr {p}: {e}"))?;
                if attr.used != DIR_USED {
                    return Err(format!("{p}: directory used {} vs {DIR_USED}", attr.used));
                }
            }
            Node::File(id) => {
                let content = &model.files[id];
                let attr = fs
                    .getattr(ino)
                    .await
                    .map_err(|e| format!("getattr {p}: {e}"))?;
                if attr.size != content.len() as u64 {
                    return Err(format!(
                        "{p}: size {} vs model {}",
                        attr.size,
                        content.len()
                    ));
                }
                if attr.used != model.used(*id) {
                    return Err(format!(
                        "{p}: used {} vs model {} (size {}, chunks {:?})",
                        attr.used,
                        model.used(*id),
                        content.len(),
                        model.alloc[id]
                    ));
                }
                let links = model.entries.values().filter(|n| *n == node).count() as u32;
                if attr.nlink != links {
                    return Err(format!("{p}: nlink {} vs model {links}", attr.nlink));
                }
                let (got, _) = fs
                    .read(&root, ino, 0, content.len() as u32 + 10)
                    .await
                    .map_err(|e| format!("read {p}: {e}"))?;
                if got.as_ref() != content.as_slice() {
                    let at = got.iter().zip(content).position(|(a, b)| a != b);
                    return Err(format!(
                        "{p}: content differs (len {} vs {}, first difference at {at:?})",
                        got.len(),
                        content.len()
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_sequence(ops: Vec<Op>, chunk_size: u32) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let engine = Engine::open(
            "memory://",
            EngineOptions {
                chunk_size,
                pack_bytes: Some(256 << 10),
                background_repack: Some(BackgroundRepack {
                    bytes_per_sec: u64::MAX,
                    interval: Duration::from_millis(1),
                }),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| TestCaseError::fail(format!("open: {e}")))?;
        let fs = engine.root_dataset().await;
        let mut model = Model::new(chunk_size as u64);
        for (i, op) in ops.iter().enumerate() {
            let want = model.apply(op);
            let got = run_engine(&fs, op).await;
            prop_assert_eq!(got, want, "step {} {:?}: engine and model disagree", i, op);
            if let Err(e) = compare(&fs, &model).await {
                return Err(TestCaseError::fail(format!("after step {i} {op:?}: {e}")));
            }
        }
        let report = engine
            .fsck()
            .await
            .map_err(|e| TestCaseError::fail(format!("fsck: {e}")))?;
        prop_assert!(
            report.is_clean(),
            "fsck after {} ops:\n{}",
            ops.len(),
            report
        );
        Ok(())
    })
}

const DATASETS: [&str; 3] = ["root", "c1", "c2"];
const SNAPS: [&str; 3] = ["s0", "s1", "s2"];

#[derive(Debug, Clone)]
enum Step {
    Fs(usize, Op),
    Snap(usize, usize),
    DelSnap(usize, usize),
    Clone {
        ds: usize,
        snap: usize,
        to: usize,
    },
    DelDataset(usize),
    Promote(usize),
    Rollback(usize, usize),
    Restore {
        ds: usize,
        snap: usize,
        from: (usize, usize),
        to: (usize, usize),
    },
}

fn arb_step() -> impl Strategy<Value = Step> {
    let ds = prop_oneof![3 => Just(0usize), 1 => 1usize..3];
    let loc = (0usize..DIRS.len(), 0..NAMES.len());
    prop_oneof![
        14 => (ds.clone(), arb_op()).prop_map(|(d, op)| Step::Fs(d, op)),
        3 => (ds.clone(), 0..SNAPS.len()).prop_map(|(d, s)| Step::Snap(d, s)),
        1 => (ds.clone(), 0..SNAPS.len()).prop_map(|(d, s)| Step::DelSnap(d, s)),
        2 => (ds.clone(), 0..SNAPS.len(), 1usize..3).prop_map(|(ds, snap, to)| Step::Clone { ds, snap, to }),
        1 => (1usize..3).prop_map(Step::DelDataset),
        2 => (0usize..3).prop_map(Step::Promote),
        1 => (ds.clone(), 0..SNAPS.len()).prop_map(|(d, s)| Step::Rollback(d, s)),
        2 => (ds, 0..SNAPS.len(), loc.clone(), loc).prop_map(|(ds, snap, from, to)| Step::Restore { ds, snap, from, to }),
    ]
}

/// Live datasets and frozen snapshots.
#[derive(Debug, Clone)]
struct World {
    live: BTreeMap<String, Model>,
    /// `ds@snap` -> (creation order, frozen model)
    snaps: BTreeMap<String, (u64, Model)>,
    /// clone -> `ds@snap` it came from
    origins: BTreeMap<String, String>,
    order: u64,
}

fn spec(ds: usize, snap: usize) -> String {
    format!("{}@{}", DATASETS[ds], SNAPS[snap])
}

impl World {
    fn new() -> Self {
        let mut live = BTreeMap::new();
        live.insert("root".to_string(), Model::new(WORLD_CHUNK));
        World {
            live,
            snaps: BTreeMap::new(),
            origins: BTreeMap::new(),
            order: 0,
        }
    }

    fn has_clones(&self, spec: &str) -> bool {
        self.origins.values().any(|o| o == spec)
    }

    fn snaps_of(&self, ds: &str) -> Vec<String> {
        self.snaps
            .keys()
            .filter(|k| k.split_once('@').map(|(d, _)| d) == Some(ds))
            .cloned()
            .collect()
    }

    fn apply(&mut self, step: &Step) -> Option<ErrorKind> {
        match step {
            Step::Fs(ds, op) => match self.live.get_mut(DATASETS[*ds]) {
                Some(m) => m.apply(op),
                None => Some(ErrorKind::NotFound),
            },
            Step::Snap(ds, s) => {
                let Some(m) = self.live.get(DATASETS[*ds]) else {
                    return Some(ErrorKind::NotFound);
                };
                let k = spec(*ds, *s);
                if self.snaps.contains_key(&k) {
                    return Some(ErrorKind::Exists);
                }
                self.order += 1;
                self.snaps.insert(k, (self.order, m.clone()));
                None
            }
            Step::DelSnap(ds, s) => {
                let k = spec(*ds, *s);
                if !self.live.contains_key(DATASETS[*ds]) || !self.snaps.contains_key(&k) {
                    return Some(ErrorKind::NotFound);
                }
                if self.has_clones(&k) {
                    return Some(ErrorKind::Busy);
                }
                self.snaps.remove(&k);
                None
            }
            Step::Clone { ds, snap, to } => {
                let k = spec(*ds, *snap);
                if self.live.contains_key(DATASETS[*to]) {
                    return Some(ErrorKind::Exists);
                }
                let Some((_, m)) = self.snaps.get(&k) else {
                    return Some(ErrorKind::NotFound);
                };
                self.live.insert(DATASETS[*to].to_string(), m.clone());
                self.origins.insert(DATASETS[*to].to_string(), k);
                None
            }
            Step::DelDataset(ds) => {
                let name = DATASETS[*ds];
                if !self.live.contains_key(name) {
                    return Some(ErrorKind::NotFound);
                }
                let snaps = self.snaps_of(name);
                if snaps.iter().any(|s| self.has_clones(s)) {
                    return Some(ErrorKind::Busy);
                }
                for s in snaps {
                    self.snaps.remove(&s);
                }
                self.live.remove(name);
                self.origins.remove(name);
                None
            }
            Step::Promote(ds) => {
                let name = DATASETS[*ds];
                if !self.live.contains_key(name) {
                    return Some(ErrorKind::NotFound);
                }
                if self.origins.remove(name).is_none() {
                    return Some(ErrorKind::Invalid);
                }
                None
            }
            Step::Rollback(ds, s) => {
                let k = spec(*ds, *s);
                if !self.live.contains_key(DATASETS[*ds]) {
                    return Some(ErrorKind::NotFound);
                }
                let Some((order, m)) = self.snaps.get(&k).cloned() else {
                    return Some(ErrorKind::NotFound);
                };
                let newer: Vec<String> = self
                    .snaps_of(DATASETS[*ds])
                    .into_iter()
                    .filter(|n| self.snaps[n].0 > order)
                    .collect();
                if newer.iter().any(|n| self.has_clones(n)) {
                    return Some(ErrorKind::Busy);
                }
                for n in newer {
                    self.snaps.remove(&n);
                }
                self.live.insert(DATASETS[*ds].to_string(), m);
                None
            }
            Step::Restore { ds, snap, from, to } => {
                let k = spec(*ds, *snap);
                let Some(live) = self.live.get(DATASETS[*ds]) else {
                    return Some(ErrorKind::NotFound);
                };
                let Some((_, frozen)) = self.snaps.get(&k) else {
                    return Some(ErrorKind::NotFound);
                };
                let mut live = live.clone();
                let r = live.restore(frozen, &path(from.0, from.1), &path(to.0, to.1));
                if r.is_none() {
                    self.live.insert(DATASETS[*ds].to_string(), live);
                }
                r
            }
        }
    }
}

impl Model {
    /// In-place restore of `src` from `snap` to `dst`: new files with the
    /// snapshot's content, hard links within the restored set kept.
    fn restore(&mut self, snap: &Model, src: &str, dst: &str) -> Option<ErrorKind> {
        let Some(node) = snap.entries.get(src).cloned() else {
            return Some(ErrorKind::NotFound);
        };
        let dparent = parent(dst);
        if !dparent.is_empty() {
            let grand = parent(dparent);
            if !self.dir_exists(grand) {
                return Some(ErrorKind::NotFound);
            }
            match self.entries.get(dparent) {
                None => return Some(ErrorKind::NotFound),
                Some(Node::File(_)) => return Some(ErrorKind::NotDir),
                Some(Node::Dir) => {}
            }
        }
        match self.entries.get(dst) {
            Some(Node::Dir) => return Some(ErrorKind::Exists),
            Some(Node::File(_)) if node == Node::Dir => return Some(ErrorKind::Exists),
            Some(Node::File(_)) => {
                self.entries.remove(dst);
                self.gc();
            }
            None => {}
        }
        let mut ids: BTreeMap<u32, u32> = BTreeMap::new();
        let moved: Vec<(String, Node)> = snap
            .entries
            .iter()
            .filter(|(k, _)| *k == src || k.starts_with(&format!("{src}/")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in moved {
            let v = match v {
                Node::Dir => Node::Dir,
                Node::File(id) => {
                    let new = *ids.entry(id).or_insert_with(|| {
                        let n = self.next_file.max(snap.next_file);
                        self.next_file = n + 1;
                        n
                    });
                    self.files.insert(new, snap.files[&id].clone());
                    self.alloc.insert(new, snap.alloc[&id].clone());
                    Node::File(new)
                }
            };
            self.entries.insert(format!("{dst}{}", &k[src.len()..]), v);
        }
        None
    }
}

async fn run_step(engine: &Engine, step: &Step) -> Option<ErrorKind> {
    let r: Result<(), ErrorKind> = async {
        match step {
            Step::Fs(ds, op) => {
                let fs = engine.dataset(DATASETS[*ds]).await.map_err(|e| e.kind)?;
                match run_engine(&fs, op).await {
                    Some(k) => Err(k),
                    None => Ok(()),
                }
            }
            Step::Snap(ds, s) => engine
                .create_snapshot(DATASETS[*ds], SNAPS[*s])
                .await
                .map(drop)
                .map_err(|e| e.kind),
            Step::DelSnap(ds, s) => engine
                .delete_snapshot(&spec(*ds, *s))
                .await
                .map_err(|e| e.kind),
            Step::Clone { ds, snap, to } => engine
                .clone_snapshot(&spec(*ds, *snap), DATASETS[*to])
                .await
                .map(drop)
                .map_err(|e| e.kind),
            Step::DelDataset(ds) => engine
                .delete_dataset(DATASETS[*ds], true)
                .await
                .map_err(|e| e.kind),
            Step::Promote(ds) => engine
                .promote(DATASETS[*ds])
                .await
                .map(drop)
                .map_err(|e| e.kind),
            Step::Rollback(ds, s) => engine
                .rollback(&spec(*ds, *s), true)
                .await
                .map(drop)
                .map_err(|e| e.kind),
            Step::Restore { ds, snap, from, to } => engine
                .restore(
                    &spec(*ds, *snap),
                    &path(from.0, from.1),
                    Some(&path(to.0, to.1)),
                )
                .await
                .map(drop)
                .map_err(|e| e.kind),
        }
    }
    .await;
    r.err()
}

async fn compare_world(engine: &Engine, world: &World) -> Result<(), String> {
    let mut names: Vec<String> = engine
        .list_datasets()
        .await
        .map_err(|e| format!("list datasets: {e}"))?
        .into_iter()
        .map(|d| d.name)
        .collect();
    names.sort();
    let want: Vec<String> = world.live.keys().cloned().collect();
    if names != want {
        return Err(format!("datasets: engine {names:?}, model {want:?}"));
    }
    let mut snaps: Vec<String> = engine
        .list_snapshots(None)
        .await
        .map_err(|e| format!("list snapshots: {e}"))?
        .into_iter()
        .map(|s| format!("{}@{}", s.dataset, s.name))
        .collect();
    snaps.sort();
    let want: Vec<String> = world.snaps.keys().cloned().collect();
    if snaps != want {
        return Err(format!("snapshots: engine {snaps:?}, model {want:?}"));
    }
    for (name, m) in &world.live {
        let fs = engine
            .dataset(name)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        compare(&fs, m)
            .await
            .map_err(|e| format!("dataset {name}: {e}"))?;
        let info = engine
            .dataset_info(name)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        if info.space.referenced != m.referenced() {
            return Err(format!(
                "dataset {name}: referenced {} in the engine ({:?}), {} in the model",
                info.space.referenced,
                info.space,
                m.referenced()
            ));
        }
    }
    for (spec, (_, m)) in &world.snaps {
        let fs = engine
            .snapshot(spec)
            .await
            .map_err(|e| format!("{spec}: {e}"))?;
        compare(&fs, m)
            .await
            .map_err(|e| format!("snapshot {spec}: {e}"))?;
        let info = engine
            .snapshot_summary(spec)
            .await
            .map_err(|e| format!("{spec}: {e}"))?;
        if info.referenced_bytes != Some(m.referenced()) {
            return Err(format!(
                "snapshot {spec}: referenced {:?} in the engine, {} in the model",
                info.referenced_bytes,
                m.referenced()
            ));
        }
    }
    Ok(())
}

/// The chunk size of the datasets of [`check_world`].
const WORLD_CHUNK: u64 = 4096;

fn check_world(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let engine = Engine::open(
            "memory://",
            // Packs small enough to fill within a case, and the
            // background repacker running between (and inside) steps.
            EngineOptions {
                chunk_size: WORLD_CHUNK as u32,
                pack_bytes: Some(16 << 10),
                background_repack: Some(BackgroundRepack {
                    bytes_per_sec: u64::MAX,
                    interval: Duration::from_millis(1),
                }),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| TestCaseError::fail(format!("open: {e}")))?;
        let mut world = World::new();
        for (i, step) in steps.iter().enumerate() {
            let want = world.apply(step);
            let got = run_step(&engine, step).await;
            prop_assert_eq!(
                got,
                want,
                "step {} {:?}: engine and model disagree",
                i,
                step
            );
            if let Err(e) = compare_world(&engine, &world).await {
                return Err(TestCaseError::fail(format!("after step {i} {step:?}: {e}")));
            }
        }
        let report = engine
            .fsck()
            .await
            .map_err(|e| TestCaseError::fail(format!("fsck: {e}")))?;
        prop_assert!(
            report.is_clean(),
            "fsck after {} steps:\n{}",
            steps.len(),
            report
        );
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 4000, ..ProptestConfig::default() })]

    #[test]
    fn snapshots_clones_rollback_restore_match_model(steps in proptest::collection::vec(arb_step(), 1..50)) {
        check_world(steps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(arb_op(), 1..60)) {
        check_sequence(ops, 64 * 1024)?;
    }

    #[test]
    fn engine_matches_model_small_chunks(ops in proptest::collection::vec(arb_op(), 1..40)) {
        check_sequence(ops, 4096)?;
    }
}
