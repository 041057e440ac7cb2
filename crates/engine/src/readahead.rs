//! Sequential read-ahead. A read that starts a file or continues where the
//! previous read of the same file ended is part of a stream; after it, the
//! next range of the same length is fetched, verified and assembled in the
//! background, so it is ready (or on its way) when the client asks for it,
//! while the current reply is still going out.
//!
//! A prefetched range is used only if no transaction has committed since
//! it began (`Kv::commits` unchanged): then nothing it read has changed, so
//! it is exactly what a fresh read would return. Any write anywhere
//! discards it, which costs only the work already done.
//!
//! Knows views, inodes and byte ranges; the fetching itself is the
//! caller's (a future handed to [`ReadAhead::start`]).

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use cairn_meta::View;

use crate::ops::Result;

/// Files read sequentially that are followed at once; the least recently
/// read one is forgotten beyond it.
pub(crate) const READ_AHEAD_STREAMS: usize = 16;
/// Longest read that is read ahead (the next range has the same length):
/// NFS reads are at most 1 MiB, so at most 16 MiB are held.
pub(crate) const READ_AHEAD_MAX: u64 = 1 << 20;

/// A range being fetched ahead of its read.
pub(crate) struct Ahead {
    offset: u64,
    end: u64,
    /// `Kv::commits` when the fetch began.
    commits: u64,
    task: Option<tokio::task::JoinHandle<Result<Bytes>>>,
}

impl Ahead {
    /// The fetched bytes, or `None` if the fetch failed (the caller reads
    /// afresh, and reports the error that read meets, if any).
    pub(crate) async fn bytes(mut self) -> Option<Bytes> {
        match self.task.take()?.await {
            Ok(Ok(b)) => Some(b),
            _ => None,
        }
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// One file being read sequentially in one view.
struct Stream {
    view: View,
    ino: u64,
    /// Where its last read ended.
    next: u64,
    ahead: Option<Ahead>,
}

/// The streams of a store's readers (most recently read last).
#[derive(Default)]
pub(crate) struct ReadAhead {
    streams: Mutex<VecDeque<Stream>>,
}

impl ReadAhead {
    fn streams(&self) -> std::sync::MutexGuard<'_, VecDeque<Stream>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// For a read of `offset..end` of `ino` in `view`, with `commits` the
    /// store's commit count now: the range fetched ahead if it is exactly
    /// this one and still valid, and whether the read continues a stream
    /// (so the next range is worth fetching).
    pub(crate) fn take(
        &self,
        view: View,
        ino: u64,
        offset: u64,
        end: u64,
        commits: u64,
    ) -> (Option<Ahead>, bool) {
        let mut s = self.streams();
        let Some(i) = s.iter().position(|st| st.view == view && st.ino == ino) else {
            return (None, offset == 0);
        };
        let st = &mut s[i];
        let sequential = offset == 0 || st.next == offset;
        let ahead = st
            .ahead
            .take()
            .filter(|a| a.offset == offset && a.end == end && a.commits == commits);
        (ahead, sequential)
    }

    /// Record that a read of `ino` in `view` ended at `end`, and, if
    /// `next` is given, fetch `next` (a range starting at `end`) with
    /// `fetch`, a future begun after `commits` was read.
    pub(crate) fn start<F>(
        &self,
        view: View,
        ino: u64,
        end: u64,
        next: Option<(u64, u64)>,
        fetch: F,
    ) where
        F: std::future::Future<Output = Result<Bytes>> + Send + 'static,
    {
        let ahead = next.map(|(commits, ahead_end)| Ahead {
            offset: end,
            end: ahead_end,
            commits,
            task: Some(tokio::spawn(fetch)),
        });
        let mut s = self.streams();
        if let Some(i) = s.iter().position(|st| st.view == view && st.ino == ino) {
            s.remove(i);
        }
        while s.len() >= READ_AHEAD_STREAMS {
            s.pop_front();
        }
        s.push_back(Stream {
            view,
            ino,
            next: end,
            ahead,
        });
    }

    /// Streams followed.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.streams().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        View::head(1)
    }

    #[tokio::test]
    async fn a_range_fetched_ahead_is_used_only_while_nothing_committed() {
        let ra = ReadAhead::default();
        // The first read of a file starts a stream.
        assert!(ra.take(view(), 5, 0, 10, 0).1);
        ra.start(view(), 5, 10, Some((0, 20)), async {
            Ok(Bytes::from_static(b"0123456789"))
        });
        let (a, seq) = ra.take(view(), 5, 10, 20, 0);
        assert!(seq);
        assert_eq!(
            a.expect("the range read ahead").bytes().await.as_deref(),
            Some(&b"0123456789"[..])
        );
        // A commit since the fetch began discards it.
        ra.start(view(), 5, 20, Some((0, 30)), async { Ok(Bytes::new()) });
        let (a, seq) = ra.take(view(), 5, 20, 30, 1);
        assert!(seq && a.is_none());
        // Another range of the same file is not a continuation.
        ra.start(view(), 5, 30, Some((1, 40)), async { Ok(Bytes::new()) });
        let (a, seq) = ra.take(view(), 5, 35, 45, 1);
        assert!(!seq && a.is_none());
        // A read of another file, mid-way, starts nothing.
        assert!(!ra.take(view(), 6, 4096, 8192, 1).1);
    }

    #[tokio::test]
    async fn streams_are_bounded() {
        let ra = ReadAhead::default();
        for ino in 0..(READ_AHEAD_STREAMS as u64 * 2) {
            ra.start(view(), ino, 10, None, async { Ok(Bytes::new()) });
        }
        assert_eq!(ra.len(), READ_AHEAD_STREAMS);
        // The oldest were forgotten, the newest kept.
        assert!(!ra.take(view(), 0, 10, 20, 0).1);
        assert!(
            ra.take(view(), READ_AHEAD_STREAMS as u64 * 2 - 1, 10, 20, 0)
                .1
        );
    }
}
