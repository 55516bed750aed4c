//! Bounded exponential backoff with full jitter, shared by the outbound
//! clients that retry on their own (the identity sources, STS and the Cloud
//! Storage reader). Each dependency has one retry layer: a caller of a client
//! that retries does not retry it again, so attempts never multiply.

use std::future::Future;
use std::time::Duration;

/// How often and how patiently a transient failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Ceiling of the wait before the second attempt; doubles each time.
    pub initial: Duration,
    /// Upper bound of a single wait's ceiling.
    pub max_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            max_attempts: 4,
            initial: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
        }
    }
}

/// Whether a failure may succeed when tried again.
pub(crate) trait Transient {
    /// True for connect errors, timeouts, 408, 429 and 5xx.
    fn is_transient(&self) -> bool;
}

impl Backoff {
    /// The ceiling of the wait after failed attempt `attempt` (1-based):
    /// `initial` doubled per attempt, at most `max_delay`.
    pub(crate) fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait after failed attempt `attempt`: uniform in
    /// `[0, ceiling(attempt)]` ("full jitter"), so that callers failing
    /// together do not retry together.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }

    /// Runs `op` until it succeeds, fails permanently, or the attempts run out.
    pub(crate) async fn retry<T, E, F, Fut>(&self, mut op: F) -> Result<T, E>
    where
        E: Transient,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt < self.max_attempts => {
                    tokio::time::sleep(self.delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Transient HTTP statuses: 408, 429 and 5xx.
pub(crate) fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_and_cap() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(2), Duration::from_millis(400));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(5), Duration::from_secs(2));
        assert_eq!(b.ceiling(40), Duration::from_secs(2));
    }

    #[test]
    fn delays_are_jittered_below_the_ceiling() {
        let b = Backoff::default();
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(3)).collect();
        assert!(delays.iter().all(|d| *d <= b.ceiling(3)), "{delays:?}");
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "{} distinct delays", distinct.len());
        assert!(
            delays.iter().any(|d| *d < b.ceiling(3) / 2),
            "some delays fall in the lower half"
        );
    }

    #[test]
    fn transient_status_table() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_transient_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 412] {
            assert!(!is_transient_status(s), "{s}");
        }
    }
}
