//! A bounded cache of pack blocks for remote stores, with read-ahead.
//!
//! Packs are immutable, so a block never goes stale; it goes when the cache
//! is over its budget (oldest inserted first) or its pack is deleted. A miss
//! reads the wanted blocks and the one after them in one request, so a
//! sequential reader finds the next block waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

use crate::{CACHE_BLOCK, PackError, PackStore};

pub(crate) struct BlockCache {
    budget: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    blocks: HashMap<(u64, u64), Bytes>,
    order: VecDeque<(u64, u64)>,
    bytes: u64,
    sizes: HashMap<u64, u64>,
}

impl BlockCache {
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn forget(&self, pack: u64) {
        let mut c = self.inner();
        c.sizes.remove(&pack);
        let keys: Vec<_> = c
            .blocks
            .keys()
            .filter(|(p, _)| *p == pack)
            .copied()
            .collect();
        for k in keys {
            if let Some(b) = c.blocks.remove(&k) {
                c.bytes -= b.len() as u64;
            }
        }
        c.order.retain(|(p, _)| *p != pack);
    }

    fn insert(&self, pack: u64, block: u64, bytes: Bytes) {
        let mut c = self.inner();
        if c.blocks.contains_key(&(pack, block)) {
            return;
        }
        c.bytes += bytes.len() as u64;
        c.blocks.insert((pack, block), bytes);
        c.order.push_back((pack, block));
        while c.bytes > self.budget {
            let Some(k) = c.order.pop_front() else { break };
            if let Some(b) = c.blocks.remove(&k) {
                c.bytes -= b.len() as u64;
            }
        }
    }

    pub(crate) async fn read(
        &self,
        store: &PackStore,
        pack: u64,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<Bytes>, PackError> {
        let cached = self.inner().sizes.get(&pack).copied();
        let size = match cached {
            Some(s) => s,
            None => {
                let s = store.size(pack).await?;
                self.inner().sizes.insert(pack, s);
                s
            }
        };
        let blocks = size.div_ceil(CACHE_BLOCK);
        let mut missing: Vec<u64> = Vec::new();
        {
            let c = self.inner();
            for r in ranges {
                if r.end > size {
                    return Err(PackError::Corrupt {
                        pack,
                        reason: format!("frame {}..{} past its end {size}", r.start, r.end),
                    });
                }
                for b in r.start / CACHE_BLOCK..r.end.div_ceil(CACHE_BLOCK) {
                    if !c.blocks.contains_key(&(pack, b)) && !missing.contains(&b) {
                        missing.push(b);
                    }
                }
            }
        }
        if let Some(&last) = missing.iter().max() {
            // Read ahead one block past the last one missing.
            let first = *missing.iter().min().unwrap_or(&last);
            let end_block = (last + 2).min(blocks);
            let ranges: Vec<_> = (first..end_block)
                .map(|b| b * CACHE_BLOCK..((b + 1) * CACHE_BLOCK).min(size))
                .collect();
            let got = store.read_direct(pack, &ranges).await?;
            for (b, bytes) in (first..end_block).zip(got) {
                self.insert(pack, b, bytes);
            }
        }
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            match self.assemble(pack, r) {
                Some(b) => out.push(b),
                // Evicted meanwhile (a cache smaller than one read).
                None => out.push(
                    store
                        .read_direct(pack, std::slice::from_ref(r))
                        .await?
                        .remove(0),
                ),
            }
        }
        Ok(out)
    }

    /// Range `r` of `pack` from cached blocks, if they are all cached.
    fn assemble(&self, pack: u64, r: &std::ops::Range<u64>) -> Option<Bytes> {
        let c = self.inner();
        let (fb, lb) = (r.start / CACHE_BLOCK, (r.end - 1) / CACHE_BLOCK);
        if fb == lb {
            let blk = c.blocks.get(&(pack, fb))?;
            let base = fb * CACHE_BLOCK;
            return Some(blk.slice((r.start - base) as usize..(r.end - base) as usize));
        }
        let mut buf = Vec::with_capacity((r.end - r.start) as usize);
        for b in fb..=lb {
            let blk = c.blocks.get(&(pack, b))?;
            let lo = r.start.max(b * CACHE_BLOCK) - b * CACHE_BLOCK;
            let hi = r.end.min((b + 1) * CACHE_BLOCK) - b * CACHE_BLOCK;
            buf.extend_from_slice(blk.get(lo as usize..hi as usize)?);
        }
        Some(Bytes::from(buf))
    }
}
