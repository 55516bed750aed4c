//! Sync: replicate what a Cloud Storage bucket already holds, and repair
//! what events missed, one page per task.
//!
//! A sync command (`{"op":"sync","bucket":B,"prefix":P?,"delete":false}` at
//! an outside door, or `POST /v1/sync`) starts a *run* and handles its first
//! page; every further page is a task of the service's own
//! (`{"op":"sync",…,"page_token":T}` on `TASKS_TOPIC`, delivered to
//! `/tasks`). A page makes one Cloud Storage listing call (at most 1,000
//! objects after the page's start) and one S3 `ListObjectsV2` call (at most
//! 1,000 keys after the same start). It covers the names after its start up
//! to the smaller last name of the two listings that were cut short, or to
//! the end when neither was: every name falls in exactly one page, so an
//! orphan between two pages or after the last one is found exactly once.
//! An object of the page is copied when it is missing from S3, of another
//! size, or its replica is older than the object's `updated` time; the
//! others cost no request. For the names of the page it publishes
//! - a `replicate` task for each object to copy of at least
//!   `SYNC_INLINE_BYTES` (or that the listings do not describe enough);
//! - with `delete` (`SYNC_DELETE=true`), a `delete_replica` task for each
//!   key whose object is not listed (it removes only a replica of the
//!   bucket, and only once Cloud Storage confirms the object is gone);
//! - the task of the next page,
//!
//! then copies the smaller objects itself, [`INLINE_CONCURRENCY`] at once,
//! each holding its size of the buffer budget: one read of the listed
//! generation, checked against the listed size and CRC32C, and one S3
//! write conditional on what the S3 listing showed at the key (its ETag,
//! or nothing). A copy whose condition S3 refuses, whose generation is gone,
//! or that fails, becomes a `replicate` task, as does every copy not started
//! within half the request deadline; the page answers once those are
//! published. Keys under the reserved `.gcp-aws-bridge/` prefix are never
//! listed as replicas.
//!
//! **A run is traversed once.** Each run has an id (from the Pub/Sub message
//! that started it, so that message delivered again is the same run; random
//! for `POST /v1/sync`), carried in the page token with the page number and
//! the last name of the previous page. A page claims itself before it works:
//! a conditional write (`If-None-Match: *`) of
//! `{S3_PREFIX}.gcp-aws-bridge/sync/{run}/{page}-{start}` saying "started", and
//! after publishing, "done". A page whose marker says done does nothing (a
//! duplicate, or a redelivery after a lost answer); one that another
//! delivery has started answers 503 until that one is done, unless the
//! claim is the same message's or older than any request may run, which is
//! then taken over (conditional on the marker's ETag). So each page
//! publishes the next one once, however often Pub/Sub delivers it. The
//! token is checked: a malformed one, a page number out of range, or a
//! start outside the sync's prefix answers 400.
//!
//! A bucket already in sync costs the two listing calls and two marker
//! writes per page. One log line per page says what it found and did, and
//! one per object copied inline (`"replicated"`).

use crate::util::now_secs;
use std::collections::{HashMap, HashSet};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::aws::s3::{is_reserved, list_prefix, ObjectKey, RangeKey, Storage, StorageError};
use crate::google::gcs::{GcsClient, GcsError, GcsObject};
use crate::replication::replicate::direct::ListedCopy;
use crate::replication::replicate::{ReplicaOutcome, ReplicateError, Replicator};
use crate::retry::Backoff;
use crate::wire::{Delivery, OpTag, OrphanTask, SyncCommand, SyncPage, Task};

/// The highest page number a token may carry (10 billion objects).
const MAX_PAGE: u64 = 10_000_000;
/// The longest page token.
const MAX_TOKEN_CHARS: usize = 4096;
/// The most a page marker may hold.
const MAX_MARKER_BYTES: usize = 4096;
/// Listing pages with no object but a next page token followed in a row.
const MAX_EMPTY_LISTINGS: usize = 16;
/// The fields of a listing that sync reads (what an inline copy writes as
/// the replica's headers and metadata among them); Cloud Storage sends
/// only these (an emulator may send whole resources).
const LISTING_FIELDS: &str = "items(name,size,generation,metageneration,crc32c,updated,contentType,contentEncoding,contentDisposition,cacheControl,contentLanguage,metadata),nextPageToken";
/// The bytes a listing may take per object asked for: a name of at most
/// 1,024 bytes (more if escaped), custom metadata of at most 8 KiB and the
/// other fields.
const LISTING_BYTES_PER_OBJECT: usize = 16 * 1024;
/// Inline copies of one page in flight at once (each also holds its size
/// of the buffer budget, which bounds them further).
pub(crate) const INLINE_CONCURRENCY: usize = 32;
/// The bytes of a listing beyond its objects.
const LISTING_BYTES_BASE: usize = 64 * 1024;

/// Where a page stands in its run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Position {
    /// The run id: 32 lower-case hex digits.
    pub(crate) run: String,
    /// This page's number, 1-based.
    pub(crate) page: u64,
    /// The last name of the previous page; `None` on the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) after: Option<String>,
}

impl Position {
    /// The first page of a new run.
    pub(crate) fn first(run: String) -> Position {
        Position {
            run,
            page: 1,
            after: None,
        }
    }

    fn token(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("a position serializes"))
    }

    /// Decodes and checks a page token of a sync of `prefix`: a run id, a
    /// page from 2 to [`MAX_PAGE`], and a start within the prefix.
    fn from_token(token: &str, prefix: &str) -> Result<Position, ReplicateError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(ReplicateError::InvalidPageToken);
        }
        let p: Position = URL_SAFE_NO_PAD
            .decode(token.trim())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(ReplicateError::InvalidPageToken)?;
        let after_ok = p.after.as_deref().is_some_and(|a| {
            !a.is_empty() && a.len() <= crate::aws::s3::MAX_KEY_BYTES && a.starts_with(prefix)
        });
        if !is_run_id(&p.run) || !(2..=MAX_PAGE).contains(&p.page) || !after_ok {
            return Err(ReplicateError::InvalidPageToken);
        }
        Ok(p)
    }

    /// The position of the page after this one, ending at `after`.
    fn next(&self, after: String) -> Result<Position, ReplicateError> {
        let page = self
            .page
            .checked_add(1)
            .filter(|p| *p <= MAX_PAGE)
            .ok_or(ReplicateError::InvalidPageToken)?;
        Ok(Position {
            run: self.run.clone(),
            page,
            after: Some(after),
        })
    }
}

fn is_run_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The run id of a sync of `scope` started by `delivery`: derived from the
/// message and the scope, so that the same message delivered again is the
/// same run (and the same message id naming another sync is another run);
/// random without a message.
pub(crate) fn run_id(scope: &SyncScope, delivery: &Delivery) -> String {
    use sha2::Digest;
    match &delivery.id {
        Some(id) => {
            let mut h = sha2::Sha256::new();
            for part in [
                id.as_str(),
                &scope.bucket,
                &scope.prefix,
                if scope.delete { "delete" } else { "keep" },
            ] {
                h.update(part.as_bytes());
                h.update([0]);
            }
            h.finalize()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        }
        None => format!("{:032x}", fastrand::u128(..)),
    }
}

/// An object of a Cloud Storage listing: the object resource, as far as
/// the listing's fields go (its `bucket` may be left out).
pub(crate) type ListedSource = GcsObject;

/// The object resource the listing gave, of `bucket`.
pub(crate) fn resource(o: &ListedSource, bucket: &str) -> GcsObject {
    GcsObject {
        bucket: bucket.to_owned(),
        ..o.clone()
    }
}

/// A key of the S3 listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ListedReplica {
    /// Size in bytes.
    pub(crate) size: i64,
    /// Last modified, whole seconds since the epoch.
    pub(crate) modified: Option<i64>,
    /// ETag.
    pub(crate) etag: Option<String>,
}

/// What a page does with a listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// The replica is up to date: no request.
    InSync,
    /// The page copies it, conditional on the key holding the object with
    /// this ETag (`None`: nothing).
    Inline(Option<String>),
    /// A replicate task copies it.
    Task,
}

/// What to do with listed object `o` whose key holds `replica`: nothing
/// when the replica has its size and is not older than its `updated` time
/// (whole seconds: S3 listings have no finer precision); else an inline
/// copy when it is smaller than `inline_bytes` and the listings say all a
/// copy needs (generation, metageneration, CRC32C, the replica's ETag);
/// else a task.
pub(crate) fn action(
    o: &ListedSource,
    replica: Option<&ListedReplica>,
    inline_bytes: u64,
) -> Action {
    let stale = match replica {
        None => true,
        Some(r) => {
            let size_differs = o.size.and_then(|s| i64::try_from(s).ok()) != Some(r.size);
            let older = match (o.updated.as_deref().and_then(rfc3339_secs), r.modified) {
                (Some(updated), Some(m)) => m < updated,
                _ => false,
            };
            size_differs || older
        }
    };
    if !stale {
        return Action::InSync;
    }
    let small = o.size.is_some_and(|s| s < inline_bytes);
    let described = o.generation.is_some() && o.metageneration.is_some() && o.crc32c.is_some();
    if !small || !described {
        return Action::Task;
    }
    match replica {
        None => Action::Inline(None),
        // Only over a replica the listings show older than the object: a
        // key that is not (another size, no time to compare) may hold a
        // newer generation written since the Cloud Storage listing, which
        // a replicate task decides from the replica's own metadata.
        Some(ListedReplica {
            etag: Some(etag),
            modified: Some(m),
            ..
        }) if o
            .updated
            .as_deref()
            .and_then(rfc3339_secs)
            .is_some_and(|updated| *m < updated) =>
        {
            Action::Inline(Some(etag.clone()))
        }
        Some(_) => Action::Task,
    }
}

#[derive(Debug, Deserialize)]
struct ListAnswer {
    #[serde(default)]
    items: Vec<ListedSource>,
    #[serde(default, rename = "nextPageToken")]
    next_page_token: Option<String>,
}

impl GcsClient {
    /// Up to `max` objects named after `after` (all when `None`) under
    /// `prefix`, in name order, and whether more follow.
    pub(crate) async fn list_after(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<ListedSource>, bool), GcsError> {
        let url = format!(
            "{}/storage/v1/b/{}/o",
            self.base,
            percent_encoding::utf8_percent_encode(bucket, percent_encoding::NON_ALPHANUMERIC)
        );
        let mut query: Vec<(&str, String)> = vec![
            ("maxResults", max.to_string()),
            ("projection", "noAcl".into()),
            ("fields", LISTING_FIELDS.into()),
        ];
        let bound = LISTING_BYTES_BASE + max.min(1000) * LISTING_BYTES_PER_OBJECT;
        if !prefix.is_empty() {
            query.push(("prefix", prefix.to_owned()));
        }
        // startOffset is inclusive: the smallest name after `after` is
        // `after` followed by NUL.
        if let Some(a) = after {
            query.push(("startOffset", format!("{a}\u{0}")));
        }
        // Cloud Storage may answer a page with no items and a next page
        // token: follow it (a few times) rather than take the empty page for
        // the end of the listing.
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_EMPTY_LISTINGS {
            let mut q = query.clone();
            if let Some(t) = &page_token {
                q.push(("pageToken", t.clone()));
            }
            let answer: ListAnswer = Backoff::default()
                .retry(|| async {
                    let resp = self.send(self.http.get(&url).query(&q)).await?;
                    let body = crate::util::read_limited(resp, bound).await.map_err(|e| {
                        GcsError::Failed {
                            message: format!("listing: {e}"),
                            transient: true,
                        }
                    })?;
                    serde_json::from_slice::<ListAnswer>(&body).map_err(|e| GcsError::Failed {
                        message: format!("unreadable listing: {e}"),
                        transient: true,
                    })
                })
                .await?;
            let mut items: Vec<ListedSource> = answer
                .items
                .into_iter()
                .filter(|o| after.is_none_or(|a| o.name.as_str() > a))
                .collect();
            items.sort_by(|a, b| a.name.cmp(&b.name));
            page_token = answer.next_page_token.filter(|t| !t.is_empty());
            if !items.is_empty() || page_token.is_none() {
                return Ok((items, page_token.is_some()));
            }
        }
        Err(GcsError::Failed {
            message: format!(
                "{MAX_EMPTY_LISTINGS} listing pages in a row had no object but a next page token"
            ),
            transient: true,
        })
    }
}

/// What one page found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PagePlan {
    /// This page's number, 1-based.
    pub(crate) page: u64,
    /// Objects listed in the page's range.
    pub(crate) listed: u64,
    /// Objects whose replica is up to date.
    pub(crate) in_sync: u64,
    /// Objects a replicate task copies.
    pub(crate) replicate: Vec<ListedSource>,
    /// Objects the page copies itself, with the ETag the S3 listing showed
    /// at their key (`None`: nothing).
    pub(crate) inline: Vec<(ListedSource, Option<String>)>,
    /// Relative keys whose object is gone (with `delete`).
    pub(crate) delete: Vec<String>,
    /// Names that cannot be S3 keys here (logged, skipped).
    pub(crate) skipped: Vec<String>,
    /// The next page, if any.
    pub(crate) next: Option<Position>,
}

impl PagePlan {
    /// Bytes of the objects replicate tasks copy.
    pub(crate) fn replicate_bytes(&self) -> u64 {
        self.replicate.iter().filter_map(|o| o.size).sum()
    }

    /// Every object to copy, inline or by a task.
    pub(crate) fn copies(&self) -> impl Iterator<Item = &ListedSource> {
        self.replicate
            .iter()
            .chain(self.inline.iter().map(|(o, _)| o))
    }
}

fn rfc3339_secs(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// What a sync names: the bucket, the prefix and whether it deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncScope {
    pub(crate) bucket: String,
    pub(crate) prefix: String,
    pub(crate) delete: bool,
}

impl SyncScope {
    /// The scope of a sync command.
    pub(crate) fn of(bucket: &str, prefix: Option<&str>, delete: bool) -> SyncScope {
        SyncScope {
            bucket: bucket.to_owned(),
            prefix: prefix.unwrap_or_default().to_owned(),
            delete,
        }
    }

    /// Refuses what no page of this sync may do: a bucket outside
    /// `GCS_SOURCE_BUCKETS` (403), a prefix that is no key prefix (400).
    /// Returns the S3 side of the prefix.
    fn check(&self, r: &Replicator) -> Result<String, ReplicateError> {
        r.sources().check(&self.bucket)?;
        Ok(list_prefix(r.storage().prefix(), &self.prefix).map_err(StorageError::from)?)
    }

    /// The task of the page at `pos`.
    fn task(&self, pos: &Position) -> Task {
        Task::Sync(SyncPage {
            op: OpTag,
            bucket: self.bucket.clone(),
            prefix: (!self.prefix.is_empty()).then(|| self.prefix.clone()),
            delete: self.delete,
            page_token: pos.token(),
        })
    }
}

/// One page of a name range on both sides: the Cloud Storage objects and
/// the S3 keys up to where the page ends (the service's own bookkeeping
/// left out of the keys), and that end when another page follows.
pub(crate) struct PagePair {
    pub(crate) objects: Vec<ListedSource>,
    pub(crate) keys: Vec<RangeKey>,
    pub(crate) end: Option<String>,
}

/// Lists the page after `after` of `gs://{bucket}/{prefix}` and of the S3
/// keys under `s3_prefix` together: sync and verify walk a bucket with it.
pub(crate) async fn list_pair(
    st: &Storage,
    gcs: &GcsClient,
    (bucket, prefix): (&str, &str),
    s3_prefix: &str,
    after: Option<&str>,
    page_size: usize,
) -> Result<PagePair, ReplicateError> {
    let listing = gcs.list_after(bucket, prefix, after, page_size);
    let s3 = st.list_range(s3_prefix, after, page_size);
    let (listing, s3) = tokio::join!(listing, s3);
    let (objects, gcs_more) = listing?;
    let (keys, s3_more) = s3?;
    let end = page_end(
        objects.last().map(|o| o.name.as_str()).filter(|_| gcs_more),
        keys.last().map(|k| k.key.as_str()).filter(|_| s3_more),
    );
    let in_page = |name: &str| end.as_deref().is_none_or(|e| name <= e);
    Ok(PagePair {
        objects: objects.into_iter().filter(|o| in_page(&o.name)).collect(),
        keys: keys
            .into_iter()
            .filter(|k| in_page(&k.key) && !is_reserved(&k.key))
            .collect(),
        end,
    })
}

/// Where a page ends: at the smaller of the last names of the listings cut
/// short (`None` for a listing that was not), or nowhere (the rest of the
/// range) when neither was. Reserved keys count here, so that the next page
/// starts after them.
fn page_end(gcs_last: Option<&str>, s3_last: Option<&str>) -> Option<String> {
    match (gcs_last, s3_last) {
        (Some(g), Some(k)) => Some(g.min(k).to_owned()),
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (None, None) => None,
    }
}

/// Lists one page of the source and of S3 and decides what to publish.
pub(crate) async fn plan_page(
    r: &Replicator,
    scope: &SyncScope,
    pos: &Position,
) -> Result<PagePlan, ReplicateError> {
    let s3_prefix = scope.check(r)?;
    let page_size = r.fanout().page_size;
    let st = r.storage();
    let after = pos.after.as_deref();

    let PagePair { objects, keys, end } = list_pair(
        st,
        r.gcs(),
        (&scope.bucket, &scope.prefix),
        &s3_prefix,
        after,
        page_size,
    )
    .await?;
    let replicas: Vec<(String, ListedReplica)> = keys
        .into_iter()
        .map(|k| {
            let replica = ListedReplica {
                size: k.size,
                modified: k.modified,
                etag: k.etag,
            };
            (k.key, replica)
        })
        .collect();
    let by_name: HashMap<&str, &ListedReplica> =
        replicas.iter().map(|(n, r)| (n.as_str(), r)).collect();
    let inline_bytes = r.inline_limit();
    let mut plan = PagePlan {
        page: pos.page,
        ..PagePlan::default()
    };
    let mut names = HashSet::new();
    for o in objects {
        plan.listed += 1;
        names.insert(o.name.clone());
        if st.key(&o.name).is_err() {
            plan.skipped.push(o.name);
            continue;
        }
        match action(&o, by_name.get(o.name.as_str()).copied(), inline_bytes) {
            Action::InSync => plan.in_sync += 1,
            Action::Inline(etag) => plan.inline.push((o, etag)),
            Action::Task => plan.replicate.push(o),
        }
    }
    if scope.delete {
        plan.delete = replicas
            .iter()
            .filter(|(n, _)| !names.contains(n))
            .map(|(n, _)| n.clone())
            .collect();
    }
    plan.next = end.map(|after| pos.next(after)).transpose()?;
    Ok(plan)
}

fn replicate_task(scope: &SyncScope, o: &ListedSource) -> Task {
    Task::replicate(&scope.bucket, &o.name, o.generation, o.crc32c.clone(), 0)
}

/// What the inline copies of a page did.
#[derive(Debug, Default)]
struct InlineDone {
    /// Objects copied.
    copied: u64,
    /// Their bytes.
    bytes: u64,
    /// Objects left to replicate tasks.
    redo: Vec<ListedSource>,
}

/// Copies the page's small objects, [`INLINE_CONCURRENCY`] at once and
/// within a quarter of the buffer budget. A copy that does not happen, that
/// does not start within the page's window, or that is not done within
/// three quarters of the request's time is left to a replicate task.
async fn copy_inline(
    r: &Replicator,
    scope: &SyncScope,
    copies: Vec<(ListedSource, Option<String>)>,
) -> InlineDone {
    use futures_util::StreamExt;
    let window = r.fanout().inline_window;
    let until = tokio::time::Instant::now() + window;
    // A copy still running this long after the last may start is left to
    // a task, so that the page answers within its request's deadline.
    let finish_by = until + window / 2;
    // A page holds at most a quarter of the buffer budget (in KiB), so that
    // the requests of other callers are not queued behind its copies.
    let share_kib =
        u32::try_from((r.storage().budget().total() / 4 / 1024).max(1)).unwrap_or(u32::MAX);
    let share = tokio::sync::Semaphore::new(share_kib as usize);
    let share = &share;
    let results: Vec<(ListedSource, Result<ListedCopy, ReplicateError>)> =
        futures_util::stream::iter(copies)
            .map(|(o, etag)| async move {
                let kib = u32::try_from(o.size.unwrap_or(0).div_ceil(1024))
                    .unwrap_or(u32::MAX)
                    .clamp(1, share_kib);
                let Ok(_share) = share.acquire_many(kib).await else {
                    return (o, Ok(ListedCopy::Redo("page_time_spent")));
                };
                if tokio::time::Instant::now() >= until {
                    return (o, Ok(ListedCopy::Redo("page_time_spent")));
                }
                let resource = resource(&o, &scope.bucket);
                let copy = r.copy_listed(&resource, etag.as_deref());
                match tokio::time::timeout_at(finish_by, copy).await {
                    Ok(out) => (o, out),
                    Err(_) => (o, Ok(ListedCopy::Redo("page_time_spent"))),
                }
            })
            .buffer_unordered(INLINE_CONCURRENCY)
            .collect()
            .await;
    let mut done = InlineDone::default();
    for (o, out) in results {
        match out {
            Ok(ListedCopy::Copied(size)) => {
                done.copied += 1;
                done.bytes += size;
            }
            Ok(ListedCopy::Redo(reason)) => {
                tracing::info!(bucket = %scope.bucket, name = %o.name, reason, "inline copy left to a replicate task");
                done.redo.push(o);
            }
            Err(e) => {
                tracing::warn!(bucket = %scope.bucket, name = %o.name, error = %e, "inline copy failed; left to a replicate task");
                done.redo.push(o);
            }
        }
    }
    done
}

/// The tasks a page publishes: replicates, removals, then the next page.
pub(crate) fn page_tasks(scope: &SyncScope, plan: &PagePlan) -> Vec<Task> {
    let mut out: Vec<Task> = plan
        .replicate
        .iter()
        .map(|o| replicate_task(scope, o))
        .collect();
    out.extend(plan.delete.iter().map(|name| {
        Task::DeleteReplica(OrphanTask {
            op: OpTag,
            bucket: scope.bucket.clone(),
            name: name.clone(),
        })
    }));
    if let Some(next) = &plan.next {
        out.push(scope.task(next));
    }
    out
}

/// What a page did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SyncOutcome {
    /// The run id.
    pub(crate) run: String,
    /// Whether this delivery did the page (`false`: it was done before).
    /// `published` (this delivery did the page), `already_done`, or
    /// `in_progress` (another delivery holds it).
    pub(crate) status: &'static str,
    /// Tasks published.
    pub(crate) published: u64,
    /// Page number.
    pub(crate) page: u64,
    /// Replicate tasks (of large objects, and of inline copies that did
    /// not happen).
    pub(crate) replicate: u64,
    /// Their bytes.
    pub(crate) replicate_bytes: u64,
    /// Objects the page copied itself.
    pub(crate) copied: u64,
    /// Their bytes.
    pub(crate) copied_bytes: u64,
    /// Removal tasks.
    pub(crate) delete: u64,
    /// Objects already in sync.
    pub(crate) in_sync: u64,
    /// Whether a next page was published.
    pub(crate) next_page: bool,
}

impl SyncOutcome {
    /// JSON summary for the answer.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a sync outcome serializes")
    }
}

/// Starts a run and handles its first page.
pub(crate) async fn start(
    r: &Replicator,
    cmd: &SyncCommand,
    delivery: &Delivery,
) -> Result<SyncOutcome, ReplicateError> {
    let scope = SyncScope::of(&cmd.bucket, cmd.prefix.as_deref(), cmd.delete);
    let run_id = run_id(&scope, delivery);
    run(r, &scope, Position::first(run_id), delivery).await
}

/// Handles a page task.
pub(crate) async fn run_page(
    r: &Replicator,
    page: &SyncPage,
    delivery: &Delivery,
) -> Result<SyncOutcome, ReplicateError> {
    let scope = SyncScope::of(&page.bucket, page.prefix.as_deref(), page.delete);
    let pos = Position::from_token(&page.page_token, &scope.prefix)?;
    run(r, &scope, pos, delivery).await
}

/// Claims the page, lists, publishes, marks the page done, then answers.
async fn run(
    r: &Replicator,
    scope: &SyncScope,
    pos: Position,
    delivery: &Delivery,
) -> Result<SyncOutcome, ReplicateError> {
    crate::telemetry::operation(&format!("sync/{}", pos.run), pos.page == 1);
    scope.check(r)?;
    let publisher = r.fanout().publisher()?;
    let marker = PageMarker::key(r.storage(), &pos);
    let etag = match claim(r, &marker, delivery).await? {
        Claim::Go(etag) => etag,
        claim @ (Claim::Done | Claim::HeldByAnother) => {
            let status = match claim {
                Claim::Done => "already_done",
                _ => "in_progress",
            };
            tracing::info!(bucket = %scope.bucket, run = %pos.run, page = pos.page, status, "sync page done or held by another delivery; nothing to do");
            return Ok(SyncOutcome {
                run: pos.run,
                status,
                published: 0,
                page: pos.page,
                replicate: 0,
                replicate_bytes: 0,
                copied: 0,
                copied_bytes: 0,
                delete: 0,
                in_sync: 0,
                next_page: false,
            });
        }
    };
    let mut plan = plan_page(r, scope, &pos).await?;
    // The next page goes first, so that it runs while this one copies.
    let tasks = page_tasks(scope, &plan);
    let mut published = if tasks.is_empty() {
        0
    } else {
        publisher.publish_tasks(&tasks).await?
    };
    let inline = copy_inline(r, scope, std::mem::take(&mut plan.inline)).await;
    if !inline.redo.is_empty() {
        let redo: Vec<Task> = inline
            .redo
            .iter()
            .map(|o| replicate_task(scope, o))
            .collect();
        published += publisher.publish_tasks(&redo).await?;
    }
    PageMarker::done(delivery)
        .write(r.storage(), &marker, Some(etag))
        .await?;
    for name in &plan.skipped {
        tracing::warn!(bucket = %scope.bucket, name = %name, "object name cannot be an S3 key here; skipped");
    }
    let out = SyncOutcome {
        run: pos.run.clone(),
        status: "published",
        published: published as u64,
        page: plan.page,
        replicate: (plan.replicate.len() + inline.redo.len()) as u64,
        replicate_bytes: plan.replicate_bytes()
            + inline.redo.iter().filter_map(|o| o.size).sum::<u64>(),
        copied: inline.copied,
        copied_bytes: inline.bytes,
        delete: plan.delete.len() as u64,
        in_sync: plan.in_sync,
        next_page: plan.next.is_some(),
    };
    tracing::info!(
        bucket = %scope.bucket,
        prefix = %scope.prefix,
        delete = scope.delete,
        run = %out.run,
        page = out.page,
        pages_so_far = out.page,
        // A listing tells nothing of what follows it.
        pages_left = if out.next_page { "unknown" } else { "0" },
        listed = plan.listed,
        in_sync = out.in_sync,
        replicate = out.replicate,
        replicate_bytes = out.replicate_bytes,
        copied = out.copied,
        copied_bytes = out.copied_bytes,
        delete_replicas = out.delete,
        skipped = plan.skipped.len(),
        next_page = out.next_page,
        published = out.published,
        "sync page"
    );
    crate::metrics::sync_page(out.copied + out.replicate, out.delete, out.in_sync);
    if out.next_page {
        crate::telemetry::operation_continues();
    }
    Ok(out)
}

/// `sync/{run}/{page}-{where it starts}` (the start as 16 hex digits of
/// its SHA-256; none for the first page).
fn claim_name(pos: &Position) -> String {
    use sha2::Digest;
    match pos.after.as_deref() {
        None => format!("sync/{}/{:010}", pos.run, pos.page),
        Some(after) => {
            let h = sha2::Sha256::digest(after.as_bytes());
            let hex: String = h[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("sync/{}/{:010}-{hex}", pos.run, pos.page)
        }
    }
}

/// A page's claim: `{S3_PREFIX}.gcp-aws-bridge/sync/{run}/{page}-{start}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PageMarker {
    /// `started` or `done`.
    state: String,
    /// The delivery that wrote it.
    #[serde(default)]
    delivery: Option<String>,
    /// When, in seconds since the epoch.
    #[serde(default)]
    at: u64,
}

/// What a claim found.
enum Claim {
    /// This delivery holds the page; the marker has this ETag.
    Go(String),
    /// The page was done before.
    Done,
    /// Another Pub/Sub message holds the page: should that delivery fail,
    /// its own message comes back, so this one may be acknowledged.
    HeldByAnother,
}

impl PageMarker {
    /// The claim of the page at `pos`: its run, its number and where it
    /// starts. A page started again after its first attempt died may end
    /// elsewhere (the listings changed meanwhile): its next page then starts
    /// elsewhere too and claims a key of its own, so the names between the
    /// two ends are traversed (twice at worst) rather than skipped.
    fn key(st: &Storage, pos: &Position) -> ObjectKey {
        ObjectKey::reserved(st.prefix(), &claim_name(pos))
    }

    fn started(delivery: &Delivery) -> PageMarker {
        PageMarker {
            state: "started".into(),
            delivery: delivery.id.clone(),
            at: now_secs(),
        }
    }

    fn done(delivery: &Delivery) -> PageMarker {
        PageMarker {
            state: "done".into(),
            ..PageMarker::started(delivery)
        }
    }

    /// Writes the marker: new (`If-None-Match: *`) without `etag`, else
    /// over exactly that one (`If-Match`). Returns its ETag.
    async fn write(
        &self,
        st: &Storage,
        key: &ObjectKey,
        etag: Option<String>,
    ) -> Result<String, StorageError> {
        let body = serde_json::to_vec(self).expect("a marker serializes");
        st.write_record(key, body, etag).await
    }

    /// The marker and its ETag, `None` when there is none.
    async fn read(
        st: &Storage,
        key: &ObjectKey,
    ) -> Result<Option<(PageMarker, String)>, StorageError> {
        let Some((bytes, etag)) = st.read_record(key, MAX_MARKER_BYTES).await? else {
            return Ok(None);
        };
        // An unreadable marker is an abandoned claim.
        let marker = serde_json::from_slice(&bytes).unwrap_or(PageMarker {
            state: "started".into(),
            delivery: None,
            at: 0,
        });
        Ok(Some((marker, etag)))
    }
}

/// Claims a page for `delivery` (see the module's documentation).
async fn claim(
    r: &Replicator,
    key: &ObjectKey,
    delivery: &Delivery,
) -> Result<Claim, ReplicateError> {
    let st = r.storage();
    let started = PageMarker::started(delivery);
    let busy = |why: &str| ReplicateError::PageInProgress(format!("{key}: {why}"));
    match started.write(st, key, None).await {
        Ok(etag) => return Ok(Claim::Go(etag)),
        Err(StorageError::PreconditionFailed(_) | StorageError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let Some((seen, etag)) = PageMarker::read(st, key).await? else {
        return Err(busy("the claim changed while it was read"));
    };
    if seen.state == "done" {
        return Ok(Claim::Done);
    }
    let same_delivery = delivery.id.is_some() && seen.delivery == delivery.id;
    let stale = now_secs().saturating_sub(seen.at) > r.fanout().lease.as_secs();
    if !same_delivery && !stale {
        if delivery.id.is_some() && seen.delivery.is_some() {
            return Ok(Claim::HeldByAnother);
        }
        return Err(busy("another delivery started this page"));
    }
    match started.write(st, key, Some(etag)).await {
        Ok(etag) => Ok(Claim::Go(etag)),
        Err(StorageError::PreconditionFailed(_) | StorageError::Conflict(_)) => {
            Err(busy("another delivery took over this page"))
        }
        Err(e) => Err(e.into()),
    }
}

/// A `delete_replica` task: removes the replica of `gs://bucket/name`
/// only when Cloud Storage says the object is gone (see
/// [`Replicator::remove_orphan`]).
pub(crate) async fn delete_orphan(
    r: &Replicator,
    obj: &GcsObject,
) -> Result<ReplicaOutcome, ReplicateError> {
    r.remove_orphan(obj).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::AppError;

    fn pos(page: u64, after: &str) -> Position {
        Position {
            run: "0123456789abcdef0123456789abcdef".into(),
            page,
            after: Some(after.into()),
        }
    }

    #[test]
    fn page_tokens_round_trip_and_bad_ones_are_refused() {
        let t = pos(3, "p/a/b c/ü");
        assert_eq!(Position::from_token(&t.token(), "p/").unwrap(), t);
        let bad = |token: &str| {
            AppError::from(Position::from_token(token, "p/").unwrap_err())
                .code()
                .as_str()
        };
        assert_eq!(bad("***"), "invalid_page_token");
        assert_eq!(bad(&URL_SAFE_NO_PAD.encode("{}")), "invalid_page_token");
        // Out of range, outside the prefix, no run, too long.
        for p in [
            pos(u64::MAX, "p/a"),
            pos(MAX_PAGE + 1, "p/a"),
            pos(0, "p/a"),
            pos(1, "p/a"),
            pos(2, "q/a"),
            pos(2, ""),
            Position {
                run: "x".into(),
                ..pos(2, "p/a")
            },
        ] {
            assert_eq!(bad(&p.token()), "invalid_page_token", "{p:?}");
        }
        assert_eq!(bad(&"A".repeat(MAX_TOKEN_CHARS + 1)), "invalid_page_token");
        // The page after the last one a token may name is refused, not
        // wrapped.
        assert!(pos(MAX_PAGE, "p/a").next("p/b".into()).is_err());
        assert_eq!(pos(4, "p/a").next("p/b".into()).unwrap().page, 5);
    }

    /// A Cloud Storage listing stand-in that answers `pages` in turn,
    /// following `pageToken`.
    async fn listing(pages: Vec<serde_json::Value>) -> String {
        let pages = std::sync::Arc::new(pages);
        let app = axum::Router::new().route(
            "/storage/v1/b/{bucket}/o",
            axum::routing::get(move |q: axum::extract::Query<HashMap<String, String>>| {
                let pages = pages.clone();
                async move {
                    let i: usize = q.get("pageToken").and_then(|t| t.parse().ok()).unwrap_or(0);
                    axum::Json(pages[i].clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        host
    }

    #[tokio::test]
    async fn an_empty_listing_page_with_a_next_token_is_followed() {
        let host = listing(vec![
            serde_json::json!({"items": [], "nextPageToken": "1"}),
            serde_json::json!({"nextPageToken": "2"}),
            serde_json::json!({"items": [{"name": "b"}], "nextPageToken": "3"}),
        ])
        .await;
        let gcs = GcsClient::new(Some(&host));
        let (items, more) = gcs.list_after("src", "", None, 2).await.unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].name, "b");
        assert!(more);
        // Endless empty pages: transient, not the end of the listing.
        let empty: Vec<serde_json::Value> = (0..=MAX_EMPTY_LISTINGS)
            .map(|i| serde_json::json!({"items": [], "nextPageToken": (i + 1).to_string()}))
            .collect();
        let gcs = GcsClient::new(Some(&listing(empty).await));
        let e = gcs.list_after("src", "", None, 2).await.unwrap_err();
        assert_eq!(AppError::from(e).status().as_u16(), 503);
    }

    #[tokio::test]
    async fn a_listing_larger_than_its_bound_is_refused_unread() {
        use futures_util::StreamExt;
        // A listing that never ends, without a Content-Length: the read
        // stops at the bound instead of holding it all.
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let a = asked.clone();
        let app = axum::Router::new().route(
            "/storage/v1/b/{bucket}/o",
            axum::routing::get(move |q: axum::extract::Query<HashMap<String, String>>| {
                a.lock().unwrap().push(q.get("fields").cloned());
                async move {
                    let head = futures_util::stream::once(async {
                        Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                            br#"{"items":[{"name":"a","kind":""#,
                        ))
                    });
                    let endless = futures_util::stream::repeat_with(|| {
                        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 16 * 1024]))
                    });
                    axum::body::Body::from_stream(head.chain(endless))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let gcs = GcsClient::new(Some(&host));
        let e = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            gcs.list_after("src", "", None, 2),
        )
        .await
        .expect("the read stops at the bound")
        .unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        // Transient: a dependency's answer (503).
        assert_eq!(AppError::from(e).status().as_u16(), 503);
        // Only the fields sync reads are asked for.
        assert_eq!(asked.lock().unwrap()[0].as_deref(), Some(LISTING_FIELDS),);
        // A listing that declares a length over the bound is not read at all.
        let big = serde_json::json!({"items": [{"name": "a", "kind": "x".repeat(200_000)}]});
        let gcs = GcsClient::new(Some(&listing(vec![big]).await));
        let e = gcs.list_after("src", "", None, 2).await.unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    #[test]
    fn run_ids_follow_the_delivery() {
        let d = Delivery {
            id: Some("projects/p/subscriptions/s/42".into()),
        };
        let scope = SyncScope::of("b", Some("p/"), false);
        assert_eq!(run_id(&scope, &d), run_id(&scope, &d));
        assert!(is_run_id(&run_id(&scope, &d)));
        // The same message id for another sync is another run.
        for other in [
            SyncScope::of("c", Some("p/"), false),
            SyncScope::of("b", None, false),
            SyncScope::of("b", Some("p/"), true),
        ] {
            assert_ne!(run_id(&scope, &d), run_id(&other, &d), "{other:?}");
        }
        let none = Delivery::default();
        assert_ne!(run_id(&scope, &none), run_id(&scope, &none));
        assert!(is_run_id(&run_id(&scope, &none)));
    }

    fn listed(size: u64, updated: &str) -> ListedSource {
        ListedSource {
            name: "p/a".into(),
            size: Some(size),
            generation: Some(7),
            metageneration: Some(1),
            crc32c: Some("AAAAAA==".into()),
            updated: Some(updated.into()),
            ..ListedSource::default()
        }
    }

    fn replica(size: i64, modified: &str, etag: Option<&str>) -> ListedReplica {
        ListedReplica {
            size,
            modified: rfc3339_secs(modified),
            etag: etag.map(str::to_owned),
        }
    }

    #[test]
    fn a_page_started_elsewhere_claims_a_key_of_its_own() {
        let at = |after: Option<&str>, page| Position {
            run: "0".repeat(32),
            page,
            after: after.map(str::to_owned),
        };
        assert_eq!(
            claim_name(&at(None, 1)),
            format!("sync/{}/0000000001", "0".repeat(32))
        );
        // The same page delivered again: the same claim.
        assert_eq!(
            claim_name(&at(Some("p/b"), 2)),
            claim_name(&at(Some("p/b"), 2))
        );
        // A page 2 that starts elsewhere (its page 1 was run again and
        // ended elsewhere) is a page of its own: it is not taken for done.
        assert_ne!(
            claim_name(&at(Some("p/b"), 2)),
            claim_name(&at(Some("p/a"), 2))
        );
        assert!(claim_name(&at(Some("p/b"), 2))
            .starts_with(&format!("sync/{}/0000000002-", "0".repeat(32))));
    }

    #[test]
    fn what_a_page_does_with_each_object() {
        const MIB: u64 = 1024 * 1024;
        let at = "2026-12-01T10:00:00.250Z";
        let inline = 8 * MIB;
        let small = listed(3, at);
        // Missing: copied inline on the condition that nothing is there.
        assert_eq!(action(&small, None, inline), Action::Inline(None));
        // In sync: same size, written in the same second or later. No
        // request at all.
        for modified in ["2026-12-01T10:00:00Z", "2026-12-02T00:00:00Z"] {
            let r = replica(3, modified, Some("\"e\""));
            assert_eq!(
                action(&small, Some(&r), inline),
                Action::InSync,
                "{modified}"
            );
        }
        // Older than `updated` (whatever its size): replaced inline, on the
        // condition of the ETag the listing showed.
        for r in [
            replica(4, "2026-12-01T09:59:59Z", Some("\"e\"")),
            replica(3, "2026-12-01T09:59:59Z", Some("\"e\"")),
        ] {
            assert_eq!(
                action(&small, Some(&r), inline),
                Action::Inline(Some("\"e\"".into())),
                "{r:?}"
            );
        }
        // Another size but not older: the key may hold a newer generation
        // written since the Cloud Storage listing (its event was faster):
        // a task decides from the replica's own metadata, never a blind
        // overwrite with the listed (older) generation.
        let newer = replica(4, "2026-12-02T00:00:00Z", Some("\"e\""));
        assert_eq!(action(&small, Some(&newer), inline), Action::Task);
        // Without an ETag to make the write conditional on: a task.
        let no_etag = replica(4, "2026-12-02T00:00:00Z", None);
        assert_eq!(action(&small, Some(&no_etag), inline), Action::Task);
        // At or over SYNC_INLINE_BYTES: a task; 0 turns inline copies off.
        assert_eq!(
            action(&listed(inline - 1, at), None, inline),
            Action::Inline(None)
        );
        assert_eq!(action(&listed(inline, at), None, inline), Action::Task);
        assert_eq!(action(&listed(0, at), None, 0), Action::Task);
        // Empty objects are copied inline too.
        assert_eq!(action(&listed(0, at), None, inline), Action::Inline(None));
        // A listing that does not say all a copy writes: a task.
        for o in [
            ListedSource {
                generation: None,
                ..small.clone()
            },
            ListedSource {
                metageneration: None,
                ..small.clone()
            },
            ListedSource {
                crc32c: None,
                ..small.clone()
            },
            ListedSource {
                size: None,
                ..small.clone()
            },
        ] {
            assert_eq!(action(&o, None, inline), Action::Task, "{o:?}");
        }
        // A replica of unknown age is judged by its size alone.
        let undated = ListedSource {
            updated: None,
            ..small.clone()
        };
        let r = replica(3, "2020-01-01T00:00:00Z", Some("\"e\""));
        assert_eq!(action(&undated, Some(&r), inline), Action::InSync);
    }

    #[test]
    fn a_listed_resource_carries_what_a_replica_is_written_with() {
        let body = r#"{"items":[{"name":"p/a","size":"5","generation":"9","metageneration":"2",
            "crc32c":"AAAAAA==","updated":"2026-12-01T10:00:00Z","contentType":"text/plain",
            "contentEncoding":"gzip","contentDisposition":"inline","cacheControl":"no-cache",
            "contentLanguage":"en","metadata":{"team":"blue"}}]}"#;
        let answer: ListAnswer = serde_json::from_str(body).unwrap();
        let o = resource(&answer.items[0], "src");
        assert_eq!((o.bucket.as_str(), o.name.as_str()), ("src", "p/a"));
        assert_eq!(
            (o.generation, o.metageneration, o.size),
            (Some(9), Some(2), Some(5))
        );
        assert_eq!(o.content_type.as_deref(), Some("text/plain"));
        assert_eq!(o.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(o.content_disposition.as_deref(), Some("inline"));
        assert_eq!(o.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(o.content_language.as_deref(), Some("en"));
        assert!(crate::replication::replicate::direct::is_resource(&o));
        let m = crate::replication::replicate::replica_metadata(&o, &o, 9).unwrap();
        assert_eq!(m["team"], "blue");
        assert_eq!(m["goog-generation"], "9");
        assert_eq!(m["goog-metageneration"], "2");
        assert_eq!(m["goog-bucket"], "src");
    }

    #[test]
    fn tasks_of_a_page() {
        let scope = SyncScope::of("src", Some("p/"), true);
        let plan = PagePlan {
            page: 1,
            replicate: vec![ListedSource {
                name: "p/a".into(),
                size: Some(3),
                generation: Some(7),
                crc32c: Some("AAAAAA==".into()),
                ..ListedSource::default()
            }],
            delete: vec!["p/gone".into()],
            next: Some(pos(2, "p/z")),
            ..PagePlan::default()
        };
        let tasks = page_tasks(&scope, &plan);
        let json: Vec<serde_json::Value> = tasks
            .iter()
            .map(|t| serde_json::from_slice(&t.to_json()).unwrap())
            .collect();
        assert_eq!(json.len(), 3);
        assert_eq!(json[0]["op"], "replicate");
        assert_eq!(json[0]["generation"], "7");
        assert_eq!(
            json[1],
            serde_json::json!({"op":"delete_replica","bucket":"src","name":"p/gone"})
        );
        assert_eq!(json[2]["op"], "sync");
        assert_eq!(json[2]["delete"], true);
        assert_eq!(json[2]["prefix"], "p/");
        let rules = crate::wire::DoorRules {
            ops: Default::default(),
            sync_delete: true,
        };
        for t in &tasks {
            assert_eq!(&Task::decode(&t.to_json(), &rules).unwrap(), t);
        }
    }
}
