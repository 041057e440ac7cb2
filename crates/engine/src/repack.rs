//! Repacking: packs nothing lives in are deleted; the live frames of packs
//! below [`REPACK_LIVE_FRACTION`] (and of small packs, when there are
//! several to merge) are copied forward into the open pack, repointed, and
//! their old packs deleted. One pass serves `gc` (at full speed, to
//! completion) and the background repacker (bounded in bytes per second,
//! one pass per interval, yielding to a waiting `gc`).
//!
//! A pass takes the writer lock only for short steps (reading the live
//! records, repointing a batch), never while it reads or stores a pack, so
//! NFS writes go on meanwhile. That is safe because:
//! - live records are read under the writer lock, when no operation is
//!   between appending its frames and committing their index entries, and
//!   only packs sealed before then are considered;
//! - nothing but a repack makes an index entry point into an existing pack,
//!   and passes run one at a time (`Repacker::pass`);
//! - a repoint is conditional: under the writer lock, an entry moves only if
//!   it still names the frame that was copied (a write that freed or
//!   replaced the chunk meanwhile wins, and the copy is dead bytes);
//! - the new pack is stored before anything names it, and a pack object is
//!   deleted only after the batch that left nothing in it is durable
//!   (ordering rules 1 and 5); readers that located a chunk in a deleted
//!   pack look it up again (`READ_RETRIES`).
//!
//! Memory: one source pack plus the frames appended to the open pack.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cairn_cas::{Location, PackLive};
use cairn_codec::{ChunkHash, Key};
use cairn_fs::FsError;

use crate::{Inner, cas_err, kv_err, pack_err};

/// A stored pack whose live bytes fall below this fraction of its size is
/// rewritten: 50%, so at most half of the pack bytes are dead after a full
/// pass and a rewrite copies at most as much as it frees.
pub const REPACK_LIVE_FRACTION: f64 = 0.5;
/// Default bound of the background repacker: 64 MiB/s read and written.
pub const DEFAULT_REPACK_RATE: u64 = 64 << 20;
/// Default time between background passes: 60 s. A pack is considered only
/// by a pass that starts at least one interval after it was sealed, so
/// fresh packs are not rewritten while their files are still being written.
pub const DEFAULT_REPACK_INTERVAL: Duration = Duration::from_secs(60);

/// Settings of the background repacker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundRepack {
    /// Bytes per second a pass reads and writes, at most (averaged from the
    /// pass's start; the pass sleeps after each source pack to keep it).
    pub bytes_per_sec: u64,
    /// Time between passes.
    pub interval: Duration,
}

impl Default for BackgroundRepack {
    fn default() -> Self {
        Self {
            bytes_per_sec: DEFAULT_REPACK_RATE,
            interval: DEFAULT_REPACK_INTERVAL,
        }
    }
}

/// What one repack pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepackReport {
    /// Packs whose live chunks were copied forward into a new pack.
    pub packs_rewritten: u64,
    /// Chunks copied forward and repointed.
    pub chunks_moved: u64,
    /// Pack objects deleted (emptied or rewritten).
    pub packs_deleted: u64,
    /// Bytes of pack objects given back to the store (dead frames and the
    /// framing of the packs deleted).
    pub pack_bytes_reclaimed: u64,
    /// Bytes of source packs read.
    pub bytes_read: u64,
    /// Bytes of frames copied into new packs.
    pub bytes_written: u64,
    /// Whether the pass stopped before its last candidate (shutdown, or a
    /// `gc` waiting); the next pass goes on.
    pub interrupted: bool,
}

/// Repack state shared by `gc` and the background task.
#[derive(Default)]
pub(crate) struct Repacker {
    /// Held for a whole pass: passes run one at a time.
    pass: tokio::sync::Mutex<()>,
    /// `gc` calls waiting for a pass: a background pass stops at its next
    /// step.
    waiting: AtomicUsize,
    stop: AtomicBool,
    wake: tokio::sync::Notify,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// One source pack's frames copied into the open pack: `(index key, hash,
/// old location, new location)`.
type Moved = Vec<(Vec<u8>, ChunkHash, Location, Location)>;

impl Repacker {
    /// Start the background task for `inner` (which owns `self`).
    pub(crate) fn start(self: &Arc<Self>, inner: &Arc<Inner>, cfg: BackgroundRepack) {
        let rep = self.clone();
        let weak: Weak<Inner> = Arc::downgrade(inner);
        let rate = cfg.bytes_per_sec.max(1);
        let mut below = inner.packs.next_id();
        let task = tokio::spawn(async move {
            loop {
                if !rep.sleep(cfg.interval).await {
                    return;
                }
                let Some(inner) = weak.upgrade() else { return };
                let next_below = inner.packs.next_id();
                match rep.run(&inner, below, Some(rate), true).await {
                    Ok(r) if r.packs_deleted > 0 || r.interrupted => {
                        tracing::info!(?r, "background repack")
                    }
                    Ok(r) => tracing::debug!(?r, "background repack"),
                    Err(e) => {
                        tracing::warn!(error = %e, "background repack failed; retrying next interval")
                    }
                }
                below = next_below;
            }
        });
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// Stop the background task, letting its current step finish.
    pub(crate) async fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.notify_one();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }

    /// Sleep `d`; false once stopped.
    async fn sleep(&self, d: Duration) -> bool {
        if self.stop.load(Ordering::Acquire) {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.wake.notified() => {}
        }
        !self.stop.load(Ordering::Acquire)
    }

    fn should_yield(&self, background: bool) -> bool {
        background
            && (self.stop.load(Ordering::Acquire) || self.waiting.load(Ordering::Acquire) > 0)
    }

    /// One pass over the packs sealed before `below`, at most `rate` bytes
    /// per second. A foreground pass (`gc`) goes ahead of background ones.
    pub(crate) async fn run(
        &self,
        inner: &Inner,
        below: u64,
        rate: Option<u64>,
        background: bool,
    ) -> Result<RepackReport, FsError> {
        let _pass = if background {
            self.pass.lock().await
        } else {
            self.waiting.fetch_add(1, Ordering::AcqRel);
            let g = self.pass.lock().await;
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            g
        };
        let started = Instant::now();
        let (kv, packs) = (&inner.kv, &inner.packs);
        let mut report = RepackReport::default();
        let (live, first_unsealed) = {
            let _w = inner.writer.lock().await;
            let live: HashMap<u64, PackLive> = cairn_cas::all_pack_live(kv)
                .await
                .map_err(cas_err)?
                .into_iter()
                .collect();
            (live, packs.next_id())
        };
        // What left packs empty is durable before they go.
        kv.flush().await.map_err(kv_err)?;
        let limit = below.min(first_unsealed);
        let stored = packs.store().list_from(0).await.map_err(pack_err)?;
        let sealed: Vec<(u64, u64, PackLive)> = stored
            .into_iter()
            .filter(|(id, _)| *id < limit && !packs.in_memory(*id))
            .map(|(id, size)| (id, size, live.get(&id).copied().unwrap_or_default()))
            .collect();
        let small = packs.pack_bytes() as u64 / 4;
        let smalls = sealed
            .iter()
            .filter(|(_, size, l)| l.chunks > 0 && *size < small)
            .count();
        let mut empty = Vec::new();
        let mut sources = Vec::new();
        for (id, size, l) in sealed {
            let sparse = (l.bytes as f64) < REPACK_LIVE_FRACTION * size as f64;
            let merge = smalls > 1 && size < small;
            if l.chunks == 0 {
                empty.push((id, size, 0));
            } else if sparse || merge {
                sources.push((id, size));
            }
        }
        // Packs nothing lives in: their records, then (durably) the objects.
        if !empty.is_empty() {
            {
                let _w = inner.writer.lock().await;
                let mut t = kv.txn();
                for (id, _, _) in &empty {
                    t.delete(Key::Pack(*id).encode());
                }
                t.commit().await.map_err(kv_err)?;
            }
            kv.flush().await.map_err(kv_err)?;
            delete_packs(inner, &empty, &mut report).await?;
        }
        let mut moved: Moved = Vec::new();
        let mut batch: Vec<(u64, u64)> = Vec::new();
        for (id, size) in sources {
            if self.should_yield(background) {
                report.interrupted = true;
                break;
            }
            let bytes = match packs.store().get(id).await {
                Ok(b) => b,
                // Deleted since it was listed (by nothing but a pass, which
                // holds the pass lock: damage). Leave it to fsck.
                Err(cairn_cas::PackError::Missing { .. }) => {
                    tracing::warn!(pack = id, "pack listed for repack is gone; skipped");
                    continue;
                }
                Err(e) => return Err(pack_err(e)),
            };
            report.bytes_read += bytes.len() as u64;
            report.bytes_written += gather(inner, id, &bytes, &mut moved).await?;
            drop(bytes);
            batch.push((id, size));
            if packs.open_bytes() >= packs.pack_bytes() {
                finish(inner, std::mem::take(&mut moved), &mut batch, &mut report).await?;
            }
            if let Some(rate) = rate {
                let due = Duration::from_secs_f64(
                    (report.bytes_read + report.bytes_written) as f64 / rate as f64,
                );
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        finish(inner, moved, &mut batch, &mut report).await?;
        Ok(report)
    }
}

/// Append the frames of pack `id` (its bytes) that the index still points
/// at to the open pack; returns the bytes appended.
async fn gather(inner: &Inner, id: u64, bytes: &[u8], moved: &mut Moved) -> Result<u64, FsError> {
    let kv = &inner.kv;
    let dir = cairn_cas::parse_pack(id, bytes).map_err(pack_err)?;
    let keys: Vec<Vec<u8>> = dir.iter().map(|e| Key::Chunk(e.hash).encode()).collect();
    let current = futures::future::try_join_all(keys.iter().map(|k| kv.get(k)))
        .await
        .map_err(kv_err)?;
    let mut appended = 0;
    for ((e, key), cur) in dir.iter().zip(keys).zip(current) {
        let Some(cur) = cur else { continue };
        let loc = cairn_cas::decode_location(&e.hash, &cur).map_err(cas_err)?;
        if loc.pack != id || loc.offset != e.offset {
            continue;
        }
        let r = loc.range();
        let Some(frame) = bytes.get(r.start as usize..r.end as usize) else {
            return Err(cas_err(cairn_cas::CasError::Corrupt {
                hash: e.hash.to_hex(),
                reason: format!("index points past the end of pack {id:016x}"),
            }));
        };
        let (new, _) = inner.packs.append(e.hash, frame, loc.plain);
        appended += frame.len() as u64;
        moved.push((key, e.hash, loc, new));
    }
    Ok(appended)
}

/// Store the open pack holding `moved` frames, repoint the entries that
/// still name the copied frames in one batch (ordering rule 5), then
/// delete the source packs in `batch` that nothing lives in any more.
async fn finish(
    inner: &Inner,
    moved: Moved,
    batch: &mut Vec<(u64, u64)>,
    report: &mut RepackReport,
) -> Result<(), FsError> {
    if batch.is_empty() {
        return Ok(());
    }
    let kv = &inner.kv;
    if !moved.is_empty() {
        // The new pack is stored before anything names it (rule 1).
        let epoch = kv.cut();
        kv.wait_written(epoch).await.map_err(kv_err)?;
        crate::crash_point(kv, "gc.repack.after_seal").await?;
    }
    let gone = {
        let _w = inner.writer.lock().await;
        let mut t = kv.txn();
        let current = futures::future::try_join_all(moved.iter().map(|(k, ..)| t.get(k)))
            .await
            .map_err(kv_err)?;
        let mut deltas: HashMap<u64, (i64, i64)> = HashMap::new();
        let mut moved_bytes: HashMap<u64, u64> = HashMap::new();
        for ((key, hash, old, new), cur) in moved.iter().zip(current) {
            let still = match cur {
                Some(c) => {
                    let loc = cairn_cas::decode_location(hash, &c).map_err(cas_err)?;
                    loc.pack == old.pack && loc.offset == old.offset
                }
                None => false,
            };
            if !still {
                continue;
            }
            t.put(key.clone(), new.encode());
            let d = deltas.entry(new.pack).or_default();
            d.0 += 1;
            d.1 += new.len as i64;
            let d = deltas.entry(old.pack).or_default();
            d.0 -= 1;
            d.1 -= old.len as i64;
            *moved_bytes.entry(old.pack).or_default() += old.len as u64;
            report.chunks_moved += 1;
        }
        cairn_cas::add_pack_live(&mut t, &deltas)
            .await
            .map_err(cas_err)?;
        let mut gone = Vec::new();
        for (id, size) in batch.drain(..) {
            let left = cairn_cas::pack_live(&t, id).await.map_err(cas_err)?;
            if left.chunks == 0 {
                t.delete(Key::Pack(id).encode());
                gone.push((id, size, moved_bytes.get(&id).copied().unwrap_or(0)));
            } else {
                tracing::warn!(
                    pack = id,
                    chunks = left.chunks,
                    "pack still has live chunks after its repack; kept"
                );
            }
        }
        t.commit().await.map_err(kv_err)?;
        gone
    };
    kv.flush().await.map_err(kv_err)?;
    crate::crash_point(kv, "gc.repack.before_delete").await?;
    delete_packs(inner, &gone, report).await
}

/// Delete pack objects `(id, size, live bytes moved out)`.
async fn delete_packs(
    inner: &Inner,
    gone: &[(u64, u64, u64)],
    report: &mut RepackReport,
) -> Result<(), FsError> {
    for &(id, size, live) in gone {
        inner.packs.store().delete(id).await.map_err(pack_err)?;
        report.packs_deleted += 1;
        report.pack_bytes_reclaimed += size.saturating_sub(live);
        if live > 0 {
            report.packs_rewritten += 1;
        }
    }
    Ok(())
}
