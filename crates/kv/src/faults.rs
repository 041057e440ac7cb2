//! A fault-injecting `ObjectStore` decorator: errors, timeouts, lost replies
//! and latency on a seeded schedule, switched on and off at run time.
//!
//! It sits under SlateDB (through [`crate::KvOptions::wrap`]) so tests see
//! what the engine does when the object store misbehaves. The schedule is a
//! pure function of the seed and the request's sequence number: the same
//! seed and the same request order replay the same faults.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use crate::ObjectStoreWrapper;

/// What to inject, in parts per thousand of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultPlan {
    /// Seed of the schedule.
    pub seed: u64,
    /// Requests that fail at once with an I/O error (‰).
    pub error_permille: u32,
    /// Requests that hang for `timeout` and then fail (‰).
    pub timeout_permille: u32,
    /// Writes that reach the store but whose reply is lost (‰): the caller
    /// sees an error although the object was written.
    pub lost_reply_permille: u32,
    /// Upper bound of latency added to every other request (uniform in
    /// `0..=max_latency`).
    pub max_latency: Duration,
    /// How long a timed-out request hangs before failing.
    pub timeout: Duration,
    /// Inject only into requests whose object path contains this (for
    /// example `"packs/"`: pack objects fail, SlateDB's do not); `None`:
    /// every request.
    pub only_matching: Option<&'static str>,
}

impl FaultPlan {
    /// A plan that fails `error_permille` of requests, times out a tenth of
    /// that, loses a tenth of write replies, and adds up to 2 ms latency.
    pub fn flaky(seed: u64, error_permille: u32) -> Self {
        Self {
            seed,
            error_permille,
            timeout_permille: error_permille / 10,
            lost_reply_permille: error_permille / 10,
            max_latency: Duration::from_millis(2),
            timeout: Duration::from_millis(50),
            only_matching: None,
        }
    }

    /// A plan that fails every request to a path containing `pattern`
    /// (with an error, or after hanging for `timeout` if `hang`), and
    /// leaves every other request alone.
    pub fn failing(pattern: &'static str, hang: Option<Duration>) -> Self {
        Self {
            seed: 0,
            error_permille: if hang.is_some() { 0 } else { 1000 },
            timeout_permille: if hang.is_some() { 1000 } else { 0 },
            lost_reply_permille: 0,
            max_latency: Duration::ZERO,
            timeout: hang.unwrap_or_default(),
            only_matching: Some(pattern),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None(Duration),
    Error,
    Timeout(Duration),
    LostReply,
}

#[derive(Debug, Default)]
struct State {
    plan: Mutex<Option<FaultPlan>>,
    seq: AtomicU64,
    injected: AtomicU64,
}

/// The switch of one fault-injecting store: turn faults on and off, count
/// what was injected. Cheap to clone; every clone controls the same store.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    state: Arc<State>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Faults {
    /// A switch with faults off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start injecting faults by `plan` (the request sequence restarts at 0).
    pub fn start(&self, plan: FaultPlan) {
        self.state.seq.store(0, Ordering::SeqCst);
        *self.state.plan.lock().unwrap_or_else(|p| p.into_inner()) = Some(plan);
        tracing::warn!(?plan, "object store fault injection on");
    }

    /// Stop injecting faults.
    pub fn stop(&self) {
        *self.state.plan.lock().unwrap_or_else(|p| p.into_inner()) = None;
        tracing::warn!("object store fault injection off");
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.state.injected.load(Ordering::Relaxed)
    }

    /// The wrapper to put in [`crate::KvOptions::wrap`].
    pub fn wrapper(&self) -> ObjectStoreWrapper {
        let faults = self.clone();
        ObjectStoreWrapper(Arc::new(move |inner| {
            Arc::new(FaultStore {
                inner,
                faults: faults.clone(),
            })
        }))
    }

    fn next(&self, write: bool, path: Option<&Path>) -> Fault {
        let Some(plan) = *self.state.plan.lock().unwrap_or_else(|p| p.into_inner()) else {
            return Fault::None(Duration::ZERO);
        };
        if let Some(pattern) = plan.only_matching
            && !path.is_some_and(|p| p.as_ref().contains(pattern))
        {
            return Fault::None(Duration::ZERO);
        }
        let n = self.state.seq.fetch_add(1, Ordering::SeqCst);
        let r = splitmix(plan.seed ^ splitmix(n));
        let roll = (r % 1000) as u32;
        let fault = if roll < plan.error_permille {
            Fault::Error
        } else if roll < plan.error_permille + plan.timeout_permille {
            Fault::Timeout(plan.timeout)
        } else if write
            && roll < plan.error_permille + plan.timeout_permille + plan.lost_reply_permille
        {
            Fault::LostReply
        } else {
            let max = plan.max_latency.as_micros() as u64;
            Fault::None(Duration::from_micros(if max == 0 {
                0
            } else {
                (r >> 20) % (max + 1)
            }))
        };
        if !matches!(fault, Fault::None(_)) {
            self.state.injected.fetch_add(1, Ordering::Relaxed);
        }
        fault
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "fault-injection",
        source: Box::new(std::io::Error::other(format!("injected fault: {what}"))),
    }
}

/// Applies the schedule's decision before (or, for lost replies, after) the
/// real request.
async fn before(fault: Fault) -> Result<()> {
    match fault {
        Fault::None(d) => {
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
            Ok(())
        }
        Fault::Error => Err(injected("request failed")),
        Fault::Timeout(d) => {
            tokio::time::sleep(d).await;
            Err(injected("request timed out"))
        }
        Fault::LostReply => Ok(()),
    }
}

/// Injects faults into every request it forwards to `inner`.
#[derive(Debug)]
struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    faults: Faults,
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faults({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let fault = self.faults.next(true, Some(location));
        before(fault).await?;
        let r = self.inner.put_opts(location, payload, opts).await;
        if fault == Fault::LostReply && r.is_ok() {
            return Err(injected("reply lost after the write"));
        }
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        before(self.faults.next(false, Some(location))).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        before(self.faults.next(false, Some(location))).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        before(self.faults.next(false, Some(location))).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // The paths are inside the stream: a path filter sees none.
        match self.faults.next(true, None) {
            Fault::Error | Fault::Timeout(_) => {
                futures::stream::once(async { Err(injected("delete failed")) }).boxed()
            }
            _ => self.inner.delete_stream(locations),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.faults.next(false, prefix) {
            Fault::Error | Fault::Timeout(_) => {
                futures::stream::once(async { Err(injected("list failed")) }).boxed()
            }
            _ => self.inner.list(prefix),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.faults.next(false, prefix) {
            Fault::Error | Fault::Timeout(_) => {
                futures::stream::once(async { Err(injected("list failed")) }).boxed()
            }
            _ => self.inner.list_with_offset(prefix, offset),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        before(self.faults.next(false, prefix)).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let fault = self.faults.next(true, Some(to));
        before(fault).await?;
        let r = self.inner.copy_opts(from, to, options).await;
        if fault == Fault::LostReply && r.is_ok() {
            return Err(injected("reply lost after the copy"));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_a_function_of_the_seed() {
        let run = |seed| {
            let f = Faults::new();
            f.start(FaultPlan::flaky(seed, 300));
            (0..200).map(|_| f.next(true, None)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let a = run(7);
        let errors = a.iter().filter(|f| **f == Fault::Error).count();
        assert!((30..=90).contains(&errors), "{errors} errors of 200 at 30%");
    }

    #[test]
    fn stopped_faults_inject_nothing() {
        let f = Faults::new();
        f.start(FaultPlan::flaky(1, 1000));
        assert_eq!(f.next(false, None), Fault::Error);
        f.stop();
        assert_eq!(f.next(false, None), Fault::None(Duration::ZERO));
        assert_eq!(f.injected(), 1);
    }

    #[test]
    fn a_path_filter_spares_other_objects() {
        let f = Faults::new();
        f.start(FaultPlan::failing("packs/", None));
        let pack = Path::from("packs/0000000000000001");
        let sst = Path::from("db/compacted/01.sst");
        assert_eq!(f.next(true, Some(&pack)), Fault::Error);
        assert_eq!(f.next(true, Some(&sst)), Fault::None(Duration::ZERO));
        assert_eq!(f.next(false, None), Fault::None(Duration::ZERO));
        assert_eq!(f.injected(), 1);
    }
}
