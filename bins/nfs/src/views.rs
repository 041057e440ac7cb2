//! Views (datasets and snapshots) as the NFS server sees them: a bounded
//! cache from view id to the engine's [`DatasetFs`], the nodes handles name
//! (a real inode, or a dataset's virtual `.snapshots` directory), and mount
//! path resolution.
//!
//! Mount paths: `/` is the default dataset. `/NAME/...` is dataset `NAME`
//! when a dataset of that name exists, and a path inside the default dataset
//! otherwise; a directory of the default dataset that shares a dataset's
//! name is reached as `/<default dataset>/NAME`. Any directory inside a
//! dataset can be mounted (as Linux knfsd allows), including
//! `.snapshots/<snapshot>/...`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cairn_engine::{DatasetFs, Engine, ROOT_INO, ViewInfo};
use cairn_fs::{Creds, ErrorKind, FileKind, Filesystem, FsError};

use crate::handle::SNAPDIR_INO;

/// Name of the virtual directory of snapshots in every dataset root.
pub const SNAPDIR_NAME: &[u8] = b".snapshots";
/// Views kept open at once; past it the cache starts over. A cached view
/// of a deleted dataset or snapshot answers `Stale` by itself.
pub const VIEW_CACHE_MAX: usize = 4096;

/// An open view.
pub struct View {
    /// Its view id.
    pub id: u64,
    /// The engine's filesystem for it.
    pub fs: DatasetFs,
    /// What it is.
    pub info: ViewInfo,
}

impl View {
    /// Whether it is a read-only snapshot.
    pub fn is_snapshot(&self) -> bool {
        self.info.snapshot.is_some()
    }
}

/// What a handle names.
#[derive(Clone)]
pub struct Node {
    /// The view.
    pub view: Arc<View>,
    /// The inode, or [`SNAPDIR_INO`].
    pub ino: u64,
}

impl Node {
    /// Whether this is a virtual `.snapshots` directory.
    pub fn is_snapdir(&self) -> bool {
        self.ino == SNAPDIR_INO
    }

    /// Whether this is the root directory of a live dataset.
    pub fn is_dataset_root(&self) -> bool {
        self.ino == ROOT_INO && !self.view.is_snapshot()
    }
}

/// The view cache.
pub struct Views {
    engine: Engine,
    cache: Mutex<HashMap<u64, Arc<View>>>,
}

impl Views {
    /// An empty cache over `engine`.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The view with id `id`; `Stale` if it no longer exists.
    pub async fn get(&self, id: u64) -> Result<Arc<View>, FsError> {
        if let Some(v) = self.lock().get(&id) {
            return Ok(v.clone());
        }
        let (fs, info) = self.engine.view(id).await?;
        let v = Arc::new(View { id, fs, info });
        let mut cache = self.lock();
        if cache.len() >= VIEW_CACHE_MAX {
            cache.clear();
        }
        cache.insert(id, v.clone());
        Ok(v)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<View>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The root of the default dataset.
    pub async fn default_root(&self) -> Result<Node, FsError> {
        let id = self.engine.default_dataset_id().await;
        Ok(Node {
            view: self.get(id).await?,
            ino: ROOT_INO,
        })
    }

    /// The `.snapshots` directory of the dataset a node belongs to.
    pub async fn snapdir_of(&self, view: &View) -> Result<Node, FsError> {
        Ok(Node {
            view: self.get(view.info.dataset_id).await?,
            ino: SNAPDIR_INO,
        })
    }

    /// Snapshots of a dataset view as `(name, view id)`, oldest first.
    pub async fn snapshots(&self, view: &View) -> Result<Vec<(String, u64)>, FsError> {
        let list = self
            .engine
            .list_snapshots(Some(&view.info.dataset))
            .await
            .map_err(|e| match e.kind {
                ErrorKind::NotFound => FsError::new(ErrorKind::Stale, e.message),
                _ => e,
            })?;
        let mut out: Vec<(String, u64)> = list.into_iter().map(|s| (s.name, s.view_id)).collect();
        out.sort_by_key(|(_, id)| *id);
        Ok(out)
    }

    /// Look `name` up in directory `dir`, through the virtual directories.
    pub async fn lookup(&self, creds: &Creds, dir: &Node, name: &[u8]) -> Result<Node, FsError> {
        if dir.is_snapdir() {
            return match name {
                b"." => Ok(dir.clone()),
                b".." => Ok(Node {
                    view: dir.view.clone(),
                    ino: ROOT_INO,
                }),
                _ => {
                    let wanted = String::from_utf8_lossy(name);
                    let id = self
                        .snapshots(&dir.view)
                        .await?
                        .into_iter()
                        .find(|(n, _)| *n == wanted)
                        .map(|(_, id)| id)
                        .ok_or_else(|| {
                            FsError::new(
                                ErrorKind::NotFound,
                                format!(
                                    "dataset {:?} has no snapshot {wanted:?}",
                                    dir.view.info.dataset
                                ),
                            )
                        })?;
                    Ok(Node {
                        view: self.get(id).await?,
                        ino: ROOT_INO,
                    })
                }
            };
        }
        if dir.ino == ROOT_INO {
            if dir.view.is_snapshot() && name == b".." {
                // Check the caller may search the snapshot root first.
                dir.view.fs.lookup(creds, ROOT_INO, b".").await?;
                return self.snapdir_of(&dir.view).await;
            }
            if !dir.view.is_snapshot() && name == SNAPDIR_NAME {
                dir.view.fs.lookup(creds, ROOT_INO, b".").await?;
                return self.snapdir_of(&dir.view).await;
            }
        }
        let a = dir.view.fs.lookup(creds, dir.ino, name).await?;
        Ok(Node {
            view: dir.view.clone(),
            ino: a.ino,
        })
    }

    /// Resolve a MOUNT path to a directory node (see the module docs).
    pub async fn resolve_mount(&self, creds: &Creds, path: &[u8]) -> Result<Node, FsError> {
        let comps: Vec<&[u8]> = path
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .collect();
        let mut rest = comps.as_slice();
        let mut node = match rest.first() {
            Some(first) => {
                let name = String::from_utf8_lossy(first);
                match self.engine.dataset_id(&name).await {
                    Some(id) => {
                        rest = &rest[1..];
                        Node {
                            view: self.get(id).await?,
                            ino: ROOT_INO,
                        }
                    }
                    None => self.default_root().await?,
                }
            }
            None => self.default_root().await?,
        };
        for c in rest {
            if *c == b".." {
                return Err(FsError::new(
                    ErrorKind::Invalid,
                    "'..' is not allowed in a mount path",
                ));
            }
            node = self.lookup(creds, &node, c).await?;
        }
        if !node.is_snapdir() {
            let a = node.view.fs.getattr(node.ino).await?;
            if a.kind != FileKind::Directory {
                return Err(FsError::new(
                    ErrorKind::NotDir,
                    format!("{} is not a directory", String::from_utf8_lossy(path)),
                ));
            }
        }
        Ok(node)
    }

    /// Export paths: `/` and one per dataset.
    pub async fn exports(&self) -> Vec<String> {
        let mut out = vec!["/".to_string()];
        if let Ok(list) = self.engine.list_datasets().await {
            out.extend(list.into_iter().map(|d| format!("/{}", d.name)));
        }
        out
    }
}
