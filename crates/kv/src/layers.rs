//! The in-memory layers in front of SlateDB.
//!
//! A committed transaction lands in the *open* layer; a *cut* freezes it
//! (asking the registered [`Cutter`] for what must be durable first, such as
//! a pack of chunk bytes) and a background writer writes frozen layers to
//! SlateDB strictly in order, one `WriteBatch` each, after running each
//! layer's [`Hook`]. Reads look at the open layer, then the frozen ones
//! (newest first), then SlateDB; a frozen layer leaves memory only after
//! SlateDB holds it, so no read ever falls between the two.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::KvError;

/// Latest value of each key written in a layer; `None` is a delete.
pub(crate) type LayerMap = BTreeMap<Vec<u8>, Option<Bytes>>;

/// Run before a frozen layer is written to SlateDB; the layer waits (and
/// the hook is run again, after a pause) until it succeeds. A failure of
/// kind `Poisoned` poisons the store instead: nothing more is written.
pub type Hook = Arc<dyn Fn() -> BoxFuture<'static, Result<(), KvError>> + Send + Sync>;

/// What a cut must make durable before the layer it freezes.
pub struct Cut {
    /// Makes it durable (idempotent: run again after a failure).
    pub hook: Hook,
    /// Records added to the frozen layer (they describe what the hook
    /// stores, so they must not reach SlateDB before it did).
    pub puts: Vec<(Vec<u8>, Bytes)>,
}

/// Called at every cut, under the layer lock, so what it seals and the
/// layer it freezes are cut at the same instant.
pub type Cutter = Arc<dyn Fn() -> Option<Cut> + Send + Sync>;

pub(crate) struct Frozen {
    pub(crate) epoch: u64,
    pub(crate) map: LayerMap,
    pub(crate) hook: Option<Hook>,
}

pub(crate) struct State {
    pub(crate) open: LayerMap,
    pub(crate) open_bytes: usize,
    /// When the open layer got its first write since the last cut.
    pub(crate) open_since: Option<Instant>,
    pub(crate) last_commit: Instant,
    pub(crate) frozen: VecDeque<Arc<Frozen>>,
    /// Epoch the next cut gets; `next_epoch - 1` is the newest cut.
    pub(crate) next_epoch: u64,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            open: LayerMap::new(),
            open_bytes: 0,
            open_since: None,
            last_commit: Instant::now(),
            frozen: VecDeque::new(),
            next_epoch: 1,
        }
    }

    /// The newest value of `key` held in memory: `Some(None)` if deleted,
    /// `None` if no layer has it.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<Bytes>> {
        if let Some(v) = self.open.get(key) {
            return Some(v.clone());
        }
        self.frozen
            .iter()
            .rev()
            .find_map(|f| f.map.get(key).cloned())
    }

    /// Every in-memory entry of `[start, end)`, newest value per key.
    pub(crate) fn range(&self, start: &[u8], end: &[u8]) -> LayerMap {
        let mut out = LayerMap::new();
        let bounds = (
            std::ops::Bound::Included(start),
            std::ops::Bound::Excluded(end),
        );
        for map in self.frozen.iter().map(|f| &f.map).chain([&self.open]) {
            for (k, v) in map.range::<[u8], _>(bounds) {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }

    pub(crate) fn insert(&mut self, key: Vec<u8>, value: Option<Bytes>) {
        self.open_bytes += key.len() + value.as_ref().map_or(0, |v| v.len()) + 32;
        self.open.insert(key, value);
    }

    /// Freeze the open layer (with what `cut` adds) as the next epoch.
    /// Returns the newest epoch.
    pub(crate) fn freeze(&mut self, cut: Option<Cut>) -> u64 {
        if self.open.is_empty() && cut.is_none() {
            return self.next_epoch - 1;
        }
        let hook = cut.map(|c| {
            for (k, v) in c.puts {
                self.insert(k, Some(v));
            }
            c.hook
        });
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.frozen.push_back(Arc::new(Frozen {
            epoch,
            map: std::mem::take(&mut self.open),
            hook,
        }));
        self.open_bytes = 0;
        self.open_since = None;
        epoch
    }
}

/// What the background writer reports to waiters.
#[derive(Clone, Default)]
pub(crate) struct Status {
    /// Every epoch up to this one is in SlateDB.
    pub(crate) written: u64,
    /// Failed hook runs or writes so far.
    pub(crate) failures: u64,
    pub(crate) last_error: Option<KvError>,
}
