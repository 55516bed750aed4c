//! [`BufferBudget`]: the bytes that all requests together may hold in
//! buffers (multipart part buffers, bodies read whole, decoded Pub/Sub
//! data). A byte semaphore: a request reserves what it is about to buffer,
//! waits when the budget is spent, and gives up after a bounded wait so the
//! trigger can redeliver (503 with `Retry-After`) instead of the instance
//! running out of memory.
//!
//! ```text
//! BUFFER_BUDGET_BYTES=268435456   # default: half of the cgroup's memory.max, else 256 MiB
//! ```
//!
//! Permits count units of [`UNIT`] bytes, so that any budget fits tokio's
//! permit counter; a reservation is rounded up to whole units.

use std::sync::Arc;
use std::time::Duration;

use crate::settings::number;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes per permit.
pub(crate) const UNIT: u64 = 64 * 1024;
/// The budget when the container's memory limit is unknown.
pub(crate) const DEFAULT_BUDGET: u64 = 256 * 1024 * 1024;
/// How long a request waits for its buffers before answering 503.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// Where cgroup v2 publishes the container's memory limit.
const CGROUP_MEMORY_MAX: &str = "/sys/fs/cgroup/memory.max";

/// Why buffers could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The budget stayed spent for the whole wait: transient.
    #[error("no buffer budget for {wanted} bytes after {waited:?} (budget {total} bytes)")]
    Exhausted {
        /// Bytes asked for.
        wanted: u64,
        /// The whole budget.
        total: u64,
        /// How long the request waited.
        waited: Duration,
    },
    /// More than the whole budget: can never be had on this instance.
    #[error("{wanted} bytes of buffers are more than the whole budget of {total} bytes")]
    OverBudget {
        /// Bytes asked for.
        wanted: u64,
        /// The whole budget.
        total: u64,
    },
}

/// A shared byte semaphore. Cloning shares the budget.
#[derive(Clone, Debug)]
pub struct BufferBudget {
    sem: Arc<Semaphore>,
    units: u64,
    wait: Duration,
}

/// Bytes reserved from a [`BufferBudget`], given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// The bytes held (whole units).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.permit
            .as_ref()
            .map_or(0, |p| p.num_permits() as u64 * UNIT)
    }
    /// Adds `other` to this reservation.
    pub(crate) fn merge(&mut self, other: Reservation) {
        match (&mut self.permit, other.permit) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, theirs) => self.permit = theirs,
            (Some(_), None) => {}
        }
    }
}

fn units_for(bytes: u64) -> u64 {
    bytes.div_ceil(UNIT)
}

impl BufferBudget {
    /// A budget of `bytes` (at least one unit); requests wait at most `wait`.
    pub(crate) fn new(bytes: u64, wait: Duration) -> BufferBudget {
        let units = units_for(bytes).clamp(1, Semaphore::MAX_PERMITS as u64);
        BufferBudget {
            sem: Arc::new(Semaphore::new(units as usize)),
            units,
            wait,
        }
    }

    /// A budget nothing can exhaust (tools and tests that set none).
    pub(crate) fn unbounded() -> BufferBudget {
        BufferBudget {
            sem: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            units: Semaphore::MAX_PERMITS as u64,
            wait: DEFAULT_WAIT,
        }
    }

    /// The whole budget in bytes.
    pub(crate) fn total(&self) -> u64 {
        self.units.saturating_mul(UNIT)
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> u64 {
        self.sem.available_permits() as u64 * UNIT
    }

    fn units(&self, bytes: u64) -> Result<u32, BudgetError> {
        let units = units_for(bytes);
        if units > self.units {
            return Err(BudgetError::OverBudget {
                wanted: bytes,
                total: self.total(),
            });
        }
        u32::try_from(units).map_err(|_| BudgetError::OverBudget {
            wanted: bytes,
            total: self.total(),
        })
    }

    /// Reserves `bytes`, waiting (first come, first served) at most the
    /// budget's wait.
    pub(crate) async fn reserve(&self, bytes: u64) -> Result<Reservation, BudgetError> {
        if bytes == 0 {
            return Ok(Reservation::default());
        }
        let units = self.units(bytes)?;
        match tokio::time::timeout(self.wait, self.sem.clone().acquire_many_owned(units)).await {
            Ok(Ok(permit)) => Ok(Reservation {
                permit: Some(permit),
            }),
            // The semaphore is never closed; treat it as spent.
            Ok(Err(_)) | Err(_) => Err(BudgetError::Exhausted {
                wanted: bytes,
                total: self.total(),
                waited: self.wait,
            }),
        }
    }

    /// Reserves `bytes` when they are free now, without waiting (and
    /// without passing requests that wait).
    pub(crate) fn try_reserve(&self, bytes: u64) -> Option<Reservation> {
        if bytes == 0 {
            return Some(Reservation::default());
        }
        let units = self.units(bytes).ok()?;
        self.sem
            .clone()
            .try_acquire_many_owned(units)
            .ok()
            .map(|p| Reservation { permit: Some(p) })
    }
}

/// The default budget: half of `memory.max` when the text is a number of
/// bytes, else [`DEFAULT_BUDGET`] (`max` means no limit).
pub(crate) fn default_budget_from(memory_max: Option<&str>) -> u64 {
    memory_max
        .map(str::trim)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&v| v > 0)
        .map_or(DEFAULT_BUDGET, |v| v / 2)
}

/// The default budget of this container (cgroup v2 `memory.max`).
pub(crate) fn default_budget() -> u64 {
    default_budget_from(std::fs::read_to_string(CGROUP_MEMORY_MAX).ok().as_deref())
}

/// Bounded resources (`budget`, the triggers' body limits).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LimitSettings {
    /// `MAX_BODY_BYTES`: request body limit except for streamed object PUTs
    /// (default 32 MiB).
    #[serde(
        default = "default_max_body",
        deserialize_with = "number::<_, _, 1, { u64::MAX }>"
    )]
    pub(crate) max_body_bytes: usize,
    /// `MAX_OBJECT_BYTES`: largest object a PUT may write (default and most
    /// 5 TiB, S3's limit).
    #[serde(
        default = "default_max_object",
        deserialize_with = "number::<_, _, 1, { crate::s3_limits::MAX_OBJECT }>"
    )]
    pub(crate) max_object_bytes: u64,
    /// `BUFFER_BUDGET_BYTES`: bytes all requests together may hold in buffers
    /// (default half the cgroup `memory.max`, else 256 MiB).
    #[serde(
        default = "crate::budget::default_budget",
        deserialize_with = "number::<_, _, 1, { u64::MAX / 2 }>"
    )]
    pub buffer_budget_bytes: u64,
    /// How long a request waits for buffers before answering 503 (10 s; not
    /// read from the environment, tests shorten it).
    #[serde(skip_deserializing, default = "default_buffer_wait")]
    pub buffer_wait: Duration,
}

fn default_max_body() -> usize {
    32 * 1024 * 1024
}

fn default_max_object() -> u64 {
    crate::s3_limits::MAX_OBJECT
}

fn default_buffer_wait() -> Duration {
    crate::budget::DEFAULT_WAIT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_half_the_cgroup_limit() {
        assert_eq!(default_budget_from(Some("536870912\n")), 256 * 1024 * 1024);
        assert_eq!(default_budget_from(Some("2147483648")), 1024 * 1024 * 1024);
        assert_eq!(default_budget_from(Some("max\n")), DEFAULT_BUDGET);
        assert_eq!(default_budget_from(None), DEFAULT_BUDGET);
        assert_eq!(default_budget_from(Some("garbage")), DEFAULT_BUDGET);
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_waits_then_refuses() {
        let budget = BufferBudget::new(4 * UNIT, Duration::from_secs(10));
        let held = budget.reserve(3 * UNIT).await.unwrap();
        assert_eq!(held.bytes(), 3 * UNIT);
        assert_eq!(budget.available(), UNIT);
        // One byte rounds up to a unit: the last one.
        let one = budget.try_reserve(1).unwrap();
        assert!(budget.try_reserve(1).is_none());
        let started = tokio::time::Instant::now();
        let e = budget.reserve(2 * UNIT).await.unwrap_err();
        assert!(matches!(e, BudgetError::Exhausted { .. }), "{e}");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        // Given back on drop, and a waiter gets it.
        let waiter = {
            let b = budget.clone();
            tokio::spawn(async move { b.reserve(4 * UNIT).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(held);
        drop(one);
        let all = waiter.await.unwrap().unwrap();
        assert_eq!(all.bytes(), 4 * UNIT);
        assert_eq!(budget.available(), 0);
    }

    #[tokio::test]
    async fn more_than_the_budget_is_refused_at_once() {
        let budget = BufferBudget::new(UNIT, Duration::from_secs(3600));
        let e = budget.reserve(UNIT + 1).await.unwrap_err();
        assert!(matches!(e, BudgetError::OverBudget { .. }), "{e}");
        assert!(budget.try_reserve(u64::MAX).is_none());
        let e = BufferBudget::unbounded()
            .reserve(u64::MAX)
            .await
            .unwrap_err();
        assert!(matches!(e, BudgetError::OverBudget { .. }), "{e}");
    }

    #[tokio::test]
    async fn reservations_merge() {
        let budget = BufferBudget::new(8 * UNIT, Duration::from_secs(1));
        let mut r = Reservation::default();
        r.merge(budget.reserve(UNIT).await.unwrap());
        r.merge(budget.reserve(2 * UNIT).await.unwrap());
        assert_eq!(r.bytes(), 3 * UNIT);
        drop(r);
        assert_eq!(budget.available(), 8 * UNIT);
    }
}
