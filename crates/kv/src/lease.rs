//! Remote stores: the writer lease and the conditional-write check.
//!
//! A local store is locked with `flock`; an object store has no locks, so
//! the writer holds a lease object (`<prefix>/cairn.lease`) taken with
//! create-if-absent and renewed with update-if-version every
//! [`LEASE_RENEW`]. A second process finds a live lease and is refused with
//! who holds it; a lease [`LEASE_TTL`] past its last renewal, or held by a
//! dead process on this host, is taken over. SlateDB's own fencing still
//! guards the data if two writers ever meet; the lease turns that into a
//! clear refusal at start. A renewal that finds the lease taken poisons the
//! store.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};

use crate::{KvError, KvErrorKind, Result};

/// How long a lease outlives its last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often the holder renews it.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.write_u32(std::process::id());
    h.finish()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn unavailable(what: &str, e: object_store::Error) -> KvError {
    KvError::new(KvErrorKind::Unavailable, format!("{what}: {e}"))
}

/// Who holds a lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    owner: u64,
    host: String,
    pid: u32,
    expires_ms: u64,
}

impl Holder {
    fn encode(&self) -> String {
        format!(
            "cairn-lease 1\nowner {:016x}\nhost {}\npid {}\nexpires_ms {}\n",
            self.owner, self.host, self.pid, self.expires_ms
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let mut h = Holder {
            owner: 0,
            host: String::new(),
            pid: 0,
            expires_ms: 0,
        };
        for line in text.lines().skip(1) {
            let (k, v) = line.split_once(' ')?;
            match k {
                "owner" => h.owner = u64::from_str_radix(v, 16).ok()?,
                "host" => h.host = v.to_string(),
                "pid" => h.pid = v.parse().ok()?,
                "expires_ms" => h.expires_ms = v.parse().ok()?,
                _ => {}
            }
        }
        Some(h)
    }

    /// Whether it still excludes others.
    fn live(&self, host: &str) -> bool {
        if self.expires_ms <= now_ms() {
            return false;
        }
        // A dead process on this very host holds nothing.
        self.host != host || std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// A held lease, renewed in the background until released.
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    path: Path,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Take the lease at `base/cairn.lease`, or say who holds it.
    /// `poisoned` is set if a renewal later finds it taken over.
    pub(crate) async fn acquire(
        store: Arc<dyn ObjectStore>,
        base: &Path,
        shown: &str,
        poisoned: Arc<Mutex<Option<String>>>,
    ) -> Result<Lease> {
        let path = base.clone().join("cairn.lease");
        let host = hostname();
        let me = Holder {
            owner: random_u64(),
            host: host.clone(),
            pid: std::process::id(),
            expires_ms: now_ms() + LEASE_TTL.as_millis() as u64,
        };
        for _ in 0..3 {
            let mode = match store.get(&path).await {
                Err(object_store::Error::NotFound { .. }) => PutMode::Create,
                Err(e) => return Err(unavailable(&format!("reading the lease of {shown}"), e)),
                Ok(got) => {
                    let version = UpdateVersion {
                        e_tag: got.meta.e_tag.clone(),
                        version: got.meta.version.clone(),
                    };
                    let bytes = got
                        .bytes()
                        .await
                        .map_err(|e| unavailable(&format!("reading the lease of {shown}"), e))?;
                    let holder = Holder::parse(&String::from_utf8_lossy(&bytes));
                    if let Some(h) = holder.filter(|h| h.live(&host)) {
                        let left = h.expires_ms.saturating_sub(now_ms()) / 1000 + 1;
                        return Err(KvError::new(
                            KvErrorKind::Locked,
                            format!(
                                "store {shown} is in use by another cairn process (pid {} on {}); stop it first (only one process may serve a store; a crashed server's lease lapses in {left} s)",
                                h.pid, h.host
                            ),
                        ));
                    }
                    PutMode::Update(version)
                }
            };
            let put = store
                .put_opts(&path, me.encode().into(), PutOptions::from(mode))
                .await;
            match put {
                Ok(r) => {
                    let version = UpdateVersion {
                        e_tag: r.e_tag,
                        version: r.version,
                    };
                    let renewer = tokio::spawn(renew(
                        store.clone(),
                        path.clone(),
                        me,
                        version,
                        shown.to_string(),
                        poisoned,
                    ));
                    tracing::debug!(store = shown, "took the store lease");
                    return Ok(Lease {
                        store,
                        path,
                        renewer,
                    });
                }
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => continue,
                Err(e) => return Err(unavailable(&format!("taking the lease of {shown}"), e)),
            }
        }
        Err(KvError::new(
            KvErrorKind::Locked,
            format!("store {shown} is being taken by another cairn process; try again"),
        ))
    }

    /// Stop renewing and give the lease up.
    pub(crate) async fn release(&self) {
        self.renewer.abort();
        if let Err(e) = self.store.delete(&self.path).await {
            tracing::warn!(error = %e, "could not release the store lease; it lapses by itself");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

async fn renew(
    store: Arc<dyn ObjectStore>,
    path: Path,
    mut me: Holder,
    mut version: UpdateVersion,
    shown: String,
    poisoned: Arc<Mutex<Option<String>>>,
) {
    loop {
        tokio::time::sleep(LEASE_RENEW).await;
        me.expires_ms = now_ms() + LEASE_TTL.as_millis() as u64;
        let put = store
            .put_opts(
                &path,
                me.encode().into(),
                PutOptions::from(PutMode::Update(version.clone())),
            )
            .await;
        match put {
            Ok(r) => {
                version = UpdateVersion {
                    e_tag: r.e_tag,
                    version: r.version,
                };
            }
            Err(object_store::Error::Precondition { .. }) => {
                let why = format!("another process took over the lease of store {shown}");
                tracing::error!("{why}; refusing further writes");
                let mut p = poisoned.lock().unwrap_or_else(|p| p.into_inner());
                p.get_or_insert(why);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, store = %shown, "could not renew the store lease; retrying")
            }
        }
    }
}

/// Refuse stores that cannot do what SlateDB's fencing needs: a second
/// create-if-absent must fail, and an update with a stale version must fail.
pub(crate) async fn check_conditional_writes(
    store: &Arc<dyn ObjectStore>,
    base: &Path,
    shown: &str,
) -> Result<()> {
    let probe = base
        .clone()
        .join("cairn-probe")
        .join(format!("{:016x}", random_u64()).as_str());
    let refuse = |what: &str| {
        KvError::new(
            KvErrorKind::Invalid,
            format!(
                "store {shown} does not honour conditional writes ({what}); cairn needs create-if-absent and update-if-version to keep one writer (for S3-compatible stores set aws_conditional_put = \"etag\" and use a server that supports If-None-Match and If-Match)"
            ),
        )
    };
    let create = || PutOptions::from(PutMode::Create);
    match store.put_opts(&probe, "1".into(), create()).await {
        Ok(_) => {}
        Err(object_store::Error::NotImplemented { .. }) => {
            return Err(refuse("create-if-absent is not implemented"));
        }
        Err(e) => return Err(unavailable(&format!("writing to {shown}"), e)),
    }
    let second = store.put_opts(&probe, "2".into(), create()).await;
    let stale = store
        .put_opts(
            &probe,
            "3".into(),
            PutOptions::from(PutMode::Update(UpdateVersion {
                e_tag: Some("\"cairn-stale-etag\"".into()),
                version: None,
            })),
        )
        .await;
    let _ = store.delete(&probe).await;
    match second {
        Err(object_store::Error::AlreadyExists { .. }) => {}
        Ok(_) => {
            return Err(refuse(
                "a second create-if-absent of the same object succeeded",
            ));
        }
        Err(object_store::Error::NotImplemented { .. }) => {
            return Err(refuse("create-if-absent is not implemented"));
        }
        Err(e) => return Err(unavailable(&format!("writing to {shown}"), e)),
    }
    match stale {
        Err(object_store::Error::Precondition { .. }) => Ok(()),
        Ok(_) => Err(refuse("an update with a stale version succeeded")),
        Err(object_store::Error::NotImplemented { .. }) => {
            Err(refuse("update-if-version is not implemented"))
        }
        Err(e) => Err(unavailable(&format!("writing to {shown}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_round_trip_and_expire() {
        let h = Holder {
            owner: 0xabc,
            host: "h1".into(),
            pid: std::process::id(),
            expires_ms: now_ms() + 10_000,
        };
        assert_eq!(Holder::parse(&h.encode()), Some(h.clone()));
        assert!(h.live("h1"), "our own live process");
        assert!(h.live("elsewhere"));
        let expired = Holder {
            expires_ms: now_ms() - 1,
            ..h.clone()
        };
        assert!(!expired.live("elsewhere"));
        let dead = Holder {
            pid: u32::MAX - 7,
            ..h
        };
        assert!(
            !dead.live("h1"),
            "a dead process on this host holds nothing"
        );
        assert!(dead.live("other-host"), "elsewhere we cannot tell");
    }

    #[tokio::test]
    async fn memory_store_passes_the_conditional_write_check() -> Result<()> {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        check_conditional_writes(&store, &Path::from("x"), "memory://").await
    }

    #[tokio::test]
    async fn a_live_lease_refuses_a_second_holder_and_is_released() -> Result<()> {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let p = Arc::new(Mutex::new(None));
        let first = Lease::acquire(store.clone(), &Path::from("db"), "mem", p.clone()).await?;
        let second = Lease::acquire(store.clone(), &Path::from("db"), "mem", p.clone()).await;
        assert!(
            matches!(&second, Err(e) if e.kind == KvErrorKind::Locked && e.message.contains("in use")),
            "{:?}",
            second.err()
        );
        first.release().await;
        let again = Lease::acquire(store, &Path::from("db"), "mem", p).await?;
        again.release().await;
        Ok(())
    }
}
