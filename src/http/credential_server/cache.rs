//! The credential server's cache: one per role, single-flight, replaced
//! before what it hands out falls under [`min_left`]. A failure with nothing
//! left to hand out is remembered for [`FAILURE_BACKOFF`]: the callers that
//! waited on the failed attempt, and those that come within that time, get
//! the same error at once instead of each waiting on an attempt of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_smithy_async::time::SharedTimeSource;
use futures_util::future::{FutureExt, Shared};

use crate::aws::StsError;

/// What the server hands out has at least this long left: the AWS SDKs for
/// Python refresh container credentials that have less (their advisory
/// refresh), so anything shorter would send every SDK call here.
pub(crate) const MIN_LEFT: Duration = Duration::from_secs(15 * 60);

/// The cache replaces credentials this much before they fall under
/// [`MIN_LEFT`], so that a refresh that fails can be tried again while the
/// old credentials still serve.
pub(crate) const REFRESH_EARLY: Duration = Duration::from_secs(5 * 60);

/// After a refresh failed, the old credentials (still above [`min_left`])
/// are served for this long before STS is asked again.
pub(crate) const RETRY_REFRESH_AFTER: Duration = Duration::from_secs(30);

/// A failure with no credentials to hand out is answered again, without a
/// new attempt, for this long (as for Google's certificates).
pub(crate) const FAILURE_BACKOFF: Duration = Duration::from_secs(5);

/// The least life left of what is handed out, for credentials that lived
/// `lifetime` when issued: [`MIN_LEFT`], or half their lifetime when they
/// live under 30 minutes (a 15-minute session can never have 15 minutes left).
pub(crate) fn min_left(lifetime: Duration) -> Duration {
    MIN_LEFT.min(lifetime / 2)
}

/// Credentials with less life left than this are replaced:
/// [`min_left`] plus [`REFRESH_EARLY`] (a sixth of the lifetime when shorter).
pub(crate) fn refresh_left(lifetime: Duration) -> Duration {
    min_left(lifetime) + REFRESH_EARLY.min(lifetime / 6)
}

/// True when `now` is less than `d` after `since` (false when the clock went
/// back before `since`: then a new attempt is due).
fn within(now: SystemTime, since: SystemTime, d: Duration) -> bool {
    now.duration_since(since).is_ok_and(|e| e < d)
}

/// One STS call's worth of credentials.
pub(crate) type FetchFuture = Pin<Box<dyn Future<Output = Result<Credentials, StsError>> + Send>>;

/// Fetches credentials from STS (a role's [`crate::aws::WebIdentityProvider`]).
pub(crate) type Fetch = Box<dyn Fn() -> FetchFuture + Send + Sync>;

#[derive(Clone)]
struct Held {
    creds: Credentials,
    issued_at: SystemTime,
}

impl Held {
    fn left(&self, now: SystemTime) -> Duration {
        self.creds
            .expiry()
            .and_then(|e| e.duration_since(now).ok())
            .unwrap_or_default()
    }

    fn lifetime(&self) -> Duration {
        self.creds
            .expiry()
            .and_then(|e| e.duration_since(self.issued_at).ok())
            .unwrap_or_default()
    }

    /// Good to hand out without asking STS (never when they have no
    /// expiry, or none left).
    fn fresh(&self, now: SystemTime) -> bool {
        let left = self.left(now);
        !left.is_zero() && left >= refresh_left(self.lifetime())
    }

    /// Still good to hand out while a refresh is failing.
    fn usable(&self, now: SystemTime) -> bool {
        let left = self.left(now);
        !left.is_zero() && left >= min_left(self.lifetime())
    }
}

/// The credentials of one role, shared by every request for it.
pub(crate) struct RoleCache {
    role_arn: String,
    fetch: Fetch,
    time: SharedTimeSource,
    held: RwLock<Option<Held>>,
    /// Held while STS is asked (single flight); holds when a refresh last
    /// failed, and why.
    refresh: tokio::sync::Mutex<Option<(SystemTime, StsError)>>,
    /// The STS call under way, shared: a request that gives up (its client
    /// timed out) leaves it to the next one, which goes on with the same
    /// call instead of starting another.
    inflight: std::sync::Mutex<Option<Shared<FetchFuture>>>,
}

impl std::fmt::Debug for RoleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCache")
            .field("role_arn", &self.role_arn)
            .finish_non_exhaustive()
    }
}

impl RoleCache {
    /// A cache for `role_arn` whose credentials come from `fetch`.
    pub(crate) fn new(role_arn: String, fetch: Fetch, time: SharedTimeSource) -> RoleCache {
        RoleCache {
            role_arn,
            fetch,
            time,
            held: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(None),
            inflight: std::sync::Mutex::new(None),
        }
    }

    /// The role these credentials are for.
    pub(crate) fn role_arn(&self) -> &str {
        &self.role_arn
    }

    fn held(&self) -> Option<Held> {
        self.held.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Credentials with at least [`min_left`] of life: the cached ones while
    /// they are fresh, else new ones from STS, fetched once for all the
    /// callers waiting. When the refresh fails, credentials that are still
    /// above [`min_left`] are handed out; below it, the error is returned,
    /// and returned again without a new attempt for [`FAILURE_BACKOFF`].
    pub(crate) async fn credentials(&self) -> Result<Credentials, StsError> {
        if let Some(h) = self.held().filter(|h| h.fresh(self.time.now())) {
            return Ok(h.creds);
        }
        let mut last_failure = self.refresh.lock().await;
        // Whoever held the lock before may have refreshed them, or failed.
        let now = self.time.now();
        let held = self.held();
        if let Some(h) = held.as_ref().filter(|h| h.fresh(now)) {
            return Ok(h.creds.clone());
        }
        if let Some((failed, e)) = last_failure.as_ref() {
            match held.as_ref().filter(|h| h.usable(now)) {
                Some(h) if within(now, *failed, RETRY_REFRESH_AFTER) => return Ok(h.creds.clone()),
                None if within(now, *failed, FAILURE_BACKOFF) => return Err(e.clone()),
                _ => {}
            }
        }
        let call = self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| (self.fetch)().shared())
            .clone();
        let result = call.await;
        *self.inflight.lock().unwrap_or_else(|p| p.into_inner()) = None;
        match result {
            Ok(creds) => {
                *last_failure = None;
                let h = Held {
                    creds: creds.clone(),
                    issued_at: self.time.now(),
                };
                *self.held.write().unwrap_or_else(|p| p.into_inner()) = Some(h);
                Ok(creds)
            }
            Err(e) => {
                let now = self.time.now();
                *last_failure = Some((now, e.clone()));
                match held.filter(|h| h.usable(now)) {
                    Some(h) => {
                        tracing::warn!(
                            role_arn = %self.role_arn,
                            left_seconds = h.left(now).as_secs(),
                            "could not replace the role's credentials; handing out the current ones meanwhile"
                        );
                        Ok(h.creds)
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// When the cached credentials expire, if any are cached.
    #[cfg(test)]
    pub(crate) fn expiry(&self) -> Option<SystemTime> {
        self.held().and_then(|h| h.creds.expiry())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_without_life_left_are_neither_fresh_nor_usable() {
        let now = SystemTime::now();
        for expiry in [None, Some(now - Duration::from_secs(1)), Some(now)] {
            let held = Held {
                creds: Credentials::new("AKIDEXAMPLE", "secret", None, expiry, "test"),
                issued_at: now,
            };
            assert!(!held.fresh(now), "{expiry:?}");
            assert!(!held.usable(now), "{expiry:?}");
        }
        let held = Held {
            creds: Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                Some(now + Duration::from_secs(3600)),
                "test",
            ),
            issued_at: now,
        };
        assert!(held.fresh(now) && held.usable(now));
    }
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use aws_smithy_async::time::TimeSource;

    /// A clock the test moves by hand.
    #[derive(Debug, Clone)]
    struct Clock(Arc<AtomicU64>);

    impl Clock {
        fn new() -> Clock {
            Clock(Arc::new(AtomicU64::new(1_800_000_000)))
        }
        fn advance(&self, d: Duration) {
            self.0.fetch_add(d.as_secs(), Ordering::SeqCst);
        }
    }

    impl TimeSource for Clock {
        fn now(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
        }
    }

    /// A fake STS: counts calls, issues credentials of `lifetime`, fails
    /// while `fail` is set, and answers after a yield so that callers pile up.
    #[derive(Clone)]
    struct Sts {
        clock: Clock,
        calls: Arc<AtomicUsize>,
        lifetime: Duration,
        fail: Arc<Mutex<Option<StsError>>>,
    }

    impl Sts {
        fn new(clock: &Clock, lifetime: Duration) -> Sts {
            Sts {
                clock: clock.clone(),
                calls: Arc::default(),
                lifetime,
                fail: Arc::default(),
            }
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
        fn cache(&self) -> RoleCache {
            let sts = self.clone();
            RoleCache::new(
                "arn:aws:iam::123456789012:role/r".into(),
                Box::new(move || {
                    let sts = sts.clone();
                    Box::pin(async move {
                        tokio::task::yield_now().await;
                        let n = sts.calls.fetch_add(1, Ordering::SeqCst);
                        if let Some(e) = sts.fail.lock().unwrap().clone() {
                            return Err(e);
                        }
                        Ok(Credentials::new(
                            format!("ASIA{n}"),
                            "secret",
                            Some("token".into()),
                            Some(sts.clock.now() + sts.lifetime),
                            "test",
                        ))
                    })
                }),
                SharedTimeSource::new(self.clock.clone()),
            )
        }
    }

    fn left(c: &Credentials, clock: &Clock) -> Duration {
        c.expiry().unwrap().duration_since(clock.now()).unwrap()
    }

    #[test]
    fn thresholds() {
        let h = Duration::from_secs(3600);
        assert_eq!(min_left(h), Duration::from_secs(900));
        assert_eq!(refresh_left(h), Duration::from_secs(1200));
        let q = Duration::from_secs(900);
        assert_eq!(min_left(q), Duration::from_secs(450));
        assert_eq!(refresh_left(q), Duration::from_secs(600));
        let s = Duration::from_secs(60);
        assert_eq!((min_left(s), refresh_left(s)), (s / 2, s / 2 + s / 6));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_one_sts_call() {
        let clock = Clock::new();
        let sts = Sts::new(&clock, Duration::from_secs(3600));
        let cache = Arc::new(sts.cache());
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let cache = cache.clone();
            set.spawn(async move { cache.credentials().await.unwrap() });
        }
        let mut keys = std::collections::HashSet::new();
        while let Some(c) = set.join_next().await {
            keys.insert(c.unwrap().access_key_id().to_owned());
        }
        assert_eq!(sts.calls(), 1);
        assert_eq!(keys.len(), 1);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_its_sts_call_to_the_next() {
        let clock = Clock::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let (c, now) = (calls.clone(), clock.clone());
        let cache = RoleCache::new(
            "arn:aws:iam::123456789012:role/r".into(),
            Box::new(move || {
                let (c, now) = (c.clone(), now.clone());
                Box::pin(async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    // A slow STS: longer than the first caller waits.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok(Credentials::new(
                        "ASIA0",
                        "secret",
                        Some("token".into()),
                        Some(now.now() + Duration::from_secs(3600)),
                        "test",
                    ))
                })
            }),
            SharedTimeSource::new(clock.clone()),
        );
        let gave_up = tokio::time::timeout(Duration::from_millis(50), cache.credentials()).await;
        assert!(gave_up.is_err(), "the first caller waited it out");
        let creds = cache.credentials().await.unwrap();
        assert_eq!(creds.access_key_id(), "ASIA0");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the STS call started again"
        );
        // Cached now.
        cache.credentials().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn one_sts_call_per_lifetime_and_never_less_than_15_minutes_left() {
        let clock = Clock::new();
        let sts = Sts::new(&clock, Duration::from_secs(3600));
        let cache = sts.cache();
        let first = cache.credentials().await.unwrap();
        // Every minute for five hours.
        let mut seen = vec![first.access_key_id().to_owned()];
        for _ in 0..300 {
            clock.advance(Duration::from_secs(60));
            let c = cache.credentials().await.unwrap();
            assert!(left(&c, &clock) >= MIN_LEFT, "{:?}", left(&c, &clock));
            if seen.last().unwrap() != c.access_key_id() {
                seen.push(c.access_key_id().to_owned());
            }
        }
        // Replaced once under 20 minutes left: every 41 minutes in steps of one.
        assert_eq!(sts.calls(), 8);
        assert_eq!(seen.len(), sts.calls());
    }

    #[tokio::test]
    async fn short_sessions_are_replaced_at_a_share_of_their_life() {
        let clock = Clock::new();
        let sts = Sts::new(&clock, Duration::from_secs(60));
        let cache = sts.cache();
        for _ in 0..120 {
            let c = cache.credentials().await.unwrap();
            assert!(left(&c, &clock) >= Duration::from_secs(30));
            clock.advance(Duration::from_secs(1));
        }
        // 60 s credentials replaced once under 40 s left: every 21 s in steps of one.
        assert_eq!(sts.calls(), 6);
    }

    #[tokio::test]
    async fn a_failed_refresh_serves_the_old_credentials_above_the_floor_only() {
        let clock = Clock::new();
        let sts = Sts::new(&clock, Duration::from_secs(3600));
        let cache = sts.cache();
        let first = cache.credentials().await.unwrap();
        *sts.fail.lock().unwrap() = Some(StsError::Transient("STS is down".into()));
        // 19 minutes left: due for a refresh, which fails; the old ones serve.
        clock.advance(Duration::from_secs(41 * 60));
        let c = cache.credentials().await.unwrap();
        assert_eq!(c.access_key_id(), first.access_key_id());
        assert_eq!(sts.calls(), 2);
        // Not asked again within RETRY_REFRESH_AFTER.
        clock.advance(Duration::from_secs(10));
        cache.credentials().await.unwrap();
        assert_eq!(sts.calls(), 2);
        clock.advance(RETRY_REFRESH_AFTER);
        cache.credentials().await.unwrap();
        assert_eq!(sts.calls(), 3);
        // Under 15 minutes left: an error, not credentials about to expire.
        clock.advance(Duration::from_secs(4 * 60));
        let e = cache.credentials().await.unwrap_err();
        assert!(e.to_string().contains("STS is down"), "{e}");
        // STS is back: the failure is answered for a few seconds more, then
        // new credentials.
        *sts.fail.lock().unwrap() = None;
        assert!(cache.credentials().await.is_err());
        clock.advance(FAILURE_BACKOFF);
        let c = cache.credentials().await.unwrap();
        assert_ne!(c.access_key_id(), first.access_key_id());
        assert_eq!(left(&c, &clock), Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn a_rejection_is_an_error_when_nothing_is_cached() {
        let clock = Clock::new();
        let sts = Sts::new(&clock, Duration::from_secs(3600));
        *sts.fail.lock().unwrap() = Some(StsError::Failed("no".into()));
        let cache = sts.cache();
        assert!(cache.credentials().await.is_err());
        assert!(cache.credentials().await.is_err());
        assert_eq!(sts.calls(), 1, "the failure is remembered");
        clock.advance(FAILURE_BACKOFF);
        assert!(cache.credentials().await.is_err());
        assert_eq!(sts.calls(), 2, "then asked again");
        assert!(cache.expiry().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_one_failure_for_a_few_seconds() {
        let clock = Clock::new();
        let sts = Sts::new(&clock, Duration::from_secs(3600));
        *sts.fail.lock().unwrap() = Some(StsError::Transient("STS is down".into()));
        let cache = Arc::new(sts.cache());
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let cache = cache.clone();
            set.spawn(async move { cache.credentials().await.unwrap_err().to_string() });
        }
        while let Some(e) = set.join_next().await {
            assert!(e.unwrap().contains("STS is down"));
        }
        assert_eq!(sts.calls(), 1, "one attempt for the eight callers");
        // Following callers within the window: the same answer, no attempt.
        clock.advance(FAILURE_BACKOFF - Duration::from_secs(1));
        assert!(cache.credentials().await.is_err());
        assert_eq!(sts.calls(), 1);
        // After it, STS is asked again; recovered, it answers.
        *sts.fail.lock().unwrap() = None;
        clock.advance(Duration::from_secs(1));
        cache.credentials().await.unwrap();
        assert_eq!(sts.calls(), 2);
        // A clock set back does not prolong a failure.
        *sts.fail.lock().unwrap() = Some(StsError::Transient("STS is down".into()));
        clock.advance(Duration::from_secs(3600));
        assert!(cache.credentials().await.is_err());
        assert_eq!(sts.calls(), 3);
        clock.0.fetch_sub(60, Ordering::SeqCst);
        *sts.fail.lock().unwrap() = None;
        cache.credentials().await.unwrap();
        assert_eq!(sts.calls(), 4);
    }
}
