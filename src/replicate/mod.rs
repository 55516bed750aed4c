//! Replication from Cloud Storage: `gs://B/NAME` (generation G) →
//! `s3://S3_BUCKET/{S3_PREFIX}NAME`, streamed, checked with CRC32C end to
//! end, idempotent by the replica's `x-amz-meta-goog-generation` and
//! `x-amz-meta-goog-bucket` (generations are compared within one bucket).
//! Only the buckets of `GCS_SOURCE_BUCKETS` are read. Each write is
//! conditional on what the check of the replica saw (`If-None-Match: *` or
//! `If-Match: <ETag>`), each delete removes only the version it checked; a
//! lost race fails with [`ReplicateError::LostRace`] (503) and the
//! redelivery decides again. Cloud Storage is read through [`crate::gcs`];
//! objects larger than `PART_TASK_BYTES` are copied by part tasks
//! ([`parts`]).

pub mod parts;

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::TryStreamExt;

use crate::gcs::{decode_crc, goog_hash_crc, GcsClient, GcsError, GcsObject};
use crate::source_buckets::{BucketRefusal, SourceBuckets};
use crate::storage::{metadata_name, ObjectHeaders, ObjectKey, PutOptions, Storage, StorageError};

/// The S3 user-metadata name holding the source generation.
pub(crate) const GENERATION_META: &str = "goog-generation";
pub(crate) const BUCKET_META: &str = "goog-bucket";
/// S3's limit on user metadata: names and values, in bytes.
const S3_METADATA_LIMIT: usize = 2048;
/// How many older replica versions a delete removes when they would
/// become current on a versioned bucket.
const MAX_STALE_VERSIONS: usize = 16;

/// What replication did; every outcome is a success for the trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplicaOutcome {
    /// The generation was copied.
    Replicated {
        /// Relative key.
        key: String,
        /// Source generation.
        generation: i64,
        size: u64,
    },
    /// The replica already holds this generation, or a newer one.
    UpToDate {
        /// Relative key.
        key: String,
        /// The replica's generation.
        replica_generation: i64,
        /// The event's generation.
        generation: i64,
    },
    /// The generation no longer exists in Cloud Storage; a newer one has its
    /// own event.
    SourceGone {
        bucket: String,
        name: String,
        /// Generation asked for.
        generation: Option<i64>,
    },
    /// The replica was deleted.
    ReplicaDeleted {
        /// Relative key.
        key: String,
    },
    /// A delete found no replica to remove.
    NoReplica {
        /// Relative key.
        key: String,
    },
    /// A delete kept the replica: it is newer, of another bucket, or its
    /// source still exists.
    ReplicaKept {
        /// Relative key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A large object's multipart upload was created and one
    /// `replicate_part` command per part published (see [`parts`]),
    /// or a part command did its share.
    Parts(parts::PartsOutcome),
}

impl ReplicaOutcome {
    /// JSON summary for the answer.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            ReplicaOutcome::Replicated {
                key,
                generation,
                size,
            } => serde_json::json!({
                "status": "replicated", "key": key, "generation": generation.to_string(), "size": size
            }),
            ReplicaOutcome::UpToDate {
                key,
                replica_generation,
                generation,
            } => serde_json::json!({
                "status": "up_to_date", "key": key,
                "replica_generation": replica_generation.to_string(), "generation": generation.to_string()
            }),
            ReplicaOutcome::SourceGone {
                bucket,
                name,
                generation,
            } => serde_json::json!({
                "status": "source_gone", "bucket": bucket, "name": name,
                "generation": generation.map(|g| g.to_string())
            }),
            ReplicaOutcome::ReplicaDeleted { key } => {
                serde_json::json!({ "status": "replica_deleted", "key": key })
            }
            ReplicaOutcome::NoReplica { key } => serde_json::json!({
                "status": "replica_kept", "key": key, "reason": "no replica"
            }),
            ReplicaOutcome::ReplicaKept { key, reason } => serde_json::json!({
                "status": "replica_kept", "key": key, "reason": reason
            }),
            ReplicaOutcome::Parts(p) => p.to_json(),
        }
    }
}

/// Why a replication or a replica delete did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    /// The event or command lacks its bucket or object name.
    #[error("{0}")]
    InvalidEvent(&'static str),
    /// The bucket may not be read (`GCS_SOURCE_BUCKETS`).
    #[error(transparent)]
    SourceBucket(#[from] BucketRefusal),
    /// S3 failed, or the key is refused.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Cloud Storage failed.
    #[error(transparent)]
    Gcs(#[from] GcsError),
    /// Cloud Storage answered with an object resource without a generation.
    #[error("{0}: Cloud Storage answered without a generation")]
    NoGeneration(String),
    /// The event names a generation newer than the live one: Cloud Storage
    /// does not show it yet.
    #[error("{0}")]
    NotYetVisible(String),
    /// A CRC32C value of the object cannot be decoded.
    #[error("{0}")]
    UnreadableCrc(String),
    /// The object's CRC32C values disagree.
    #[error("{0}")]
    CrcMismatch(String),
    /// Reading the object from Cloud Storage failed mid-stream.
    #[error("{0}")]
    SourceRead(String),
    /// The replica was written or removed since its check.
    #[error("{0}")]
    LostRace(String),
    /// The object's custom metadata is over S3's limit.
    #[error("{0}")]
    MetadataTooLarge(String),
    /// A `replicate_part` command with an impossible part or range.
    #[error("a replicate_part command names an upload, a part number within its parts and a byte range within the object")]
    InvalidPartTask,
    /// A sync `page_token` that no sync page made.
    #[error("page_token is not a token of a previous sync page")]
    InvalidPageToken,
    /// Another delivery of the same sync page holds its claim.
    #[error("{0}")]
    PageInProgress(String),
    /// An object that part tasks cannot replicate (over `MAX_OBJECT_BYTES`,
    /// a part larger than the buffer budget, too many restarts): refused
    /// before anything starts, so it goes to the dead-letter topic.
    #[error("{message}")]
    PartsRefused {
        /// snake_case code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// The buffer budget cannot hold a part.
    #[error(transparent)]
    Budget(#[from] crate::budget::BudgetError),
    /// Publishing further commands failed.
    #[error(transparent)]
    Publish(#[from] crate::publisher::PublishError),
    /// S3 answered in a way its API rules out.
    #[error("{0}")]
    Unexpected(&'static str),
}

/// A failed write or delete of the replica: a lost race when the replica
/// changed since its check, else the storage error.
fn lost_race(key: &ObjectKey, e: StorageError) -> ReplicateError {
    race_lost(key, &e).unwrap_or_else(|| e.into())
}

/// [`ReplicateError::LostRace`] when `e` says the replica changed since its
/// check (precondition failed, conflict, or gone).
pub(crate) fn race_lost(key: &ObjectKey, e: &StorageError) -> Option<ReplicateError> {
    match e {
        StorageError::PreconditionFailed(m)
        | StorageError::Conflict(m)
        | StorageError::NotFound(m) => Some(ReplicateError::LostRace(format!("{key}: {m}"))),
        _ => None,
    }
}

/// Replicates Cloud Storage objects into the confined S3 bucket.
#[derive(Debug)]
pub(crate) struct Replicator {
    storage: Storage,
    gcs: GcsClient,
    sources: SourceBuckets,
    fanout: Arc<crate::publisher::Fanout>,
}

/// What the check of a replica saw.
#[derive(Debug, Clone)]
struct Replica {
    /// `x-amz-meta-goog-bucket`; `None` on replicas written before it existed.
    bucket: Option<String>,
    /// `x-amz-meta-goog-generation`; 0 on an object that is no replica.
    generation: i64,
    etag: Option<String>,
    version_id: Option<String>,
}

impl Replica {
    /// Whether the replica's generation can be compared with one of `bucket`.
    fn same_bucket(&self, bucket: &str) -> bool {
        self.bucket.as_deref().is_none_or(|b| b == bucket)
    }

    /// The write condition that replaces exactly this replica.
    fn condition(replica: Option<&Replica>) -> (bool, Option<String>) {
        match replica {
            None => (true, None),
            Some(r) => (false, r.etag.clone()),
        }
    }
}

/// What the checks before a copy decided.
enum Decision {
    /// Nothing to copy: the replica is up to date or the source is gone.
    Done(ReplicaOutcome),
    /// Copy generation `generation` of `live` over the replica `seen`.
    Copy(Box<CopyPlan>),
}

/// A copy the checks allowed.
struct CopyPlan {
    key: ObjectKey,
    live: GcsObject,
    generation: i64,
    /// The replica the check saw; the write is conditional on it.
    seen: Option<Replica>,
    metadata: HashMap<String, String>,
}

impl Replicator {
    /// Replication into `storage` from `gcs`; replication is off until
    /// [`Replicator::with_source_buckets`] allows buckets.
    pub(crate) fn new(storage: Storage, gcs: GcsClient) -> Replicator {
        Replicator {
            storage,
            gcs,
            sources: SourceBuckets::Off,
            fanout: Arc::new(crate::publisher::Fanout::default()),
        }
    }

    /// Publishing of further commands (sync pages, part tasks).
    pub(crate) fn with_fanout(mut self, fanout: crate::publisher::Fanout) -> Replicator {
        self.fanout = Arc::new(fanout);
        self
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    pub(crate) fn gcs(&self) -> &GcsClient {
        &self.gcs
    }

    pub(crate) fn fanout(&self) -> &crate::publisher::Fanout {
        &self.fanout
    }

    /// The buckets replication may read.
    pub(crate) fn sources(&self) -> &SourceBuckets {
        &self.sources
    }

    /// The buckets replication may read (`GCS_SOURCE_BUCKETS`).
    pub(crate) fn with_source_buckets(mut self, sources: SourceBuckets) -> Replicator {
        self.sources = sources;
        self
    }

    /// The generation of the replica at `key` when it is one of `bucket`'s.
    pub(crate) async fn replica_generation(
        &self,
        key: &ObjectKey,
        bucket: &str,
    ) -> Result<Option<i64>, StorageError> {
        Ok(self
            .replica(key)
            .await?
            .filter(|r| r.same_bucket(bucket))
            .map(|r| r.generation))
    }

    async fn replica(&self, key: &ObjectKey) -> Result<Option<Replica>, StorageError> {
        Ok(self.storage.head_opt(key).await?.map(|info| Replica {
            bucket: info.headers.metadata.get(BUCKET_META).cloned(),
            generation: info
                .headers
                .metadata
                .get(GENERATION_META)
                .and_then(|g| g.parse().ok())
                .unwrap_or(0),
            etag: info.etag,
            version_id: info.version_id,
        }))
    }

    /// Copies generation `obj.generation` (else the live one) of
    /// `gs://obj.bucket/obj.name` unless the replica has it or a newer one;
    /// a large object is handed to part tasks. `restarts` counts the part
    /// uploads of this object whose completion failed before.
    pub(crate) async fn replicate(
        &self,
        obj: &GcsObject,
        restarts: u32,
    ) -> Result<ReplicaOutcome, ReplicateError> {
        parts::check_restarts(obj, restarts)?;
        let plan = match self.decide(obj).await? {
            Decision::Done(outcome) => return Ok(outcome),
            Decision::Copy(plan) => plan,
        };
        if let Some(part_plan) = parts::PartPlan::for_object(self, &plan.live)? {
            let headers = replica_headers(&plan.live, plan.metadata);
            let condition = Replica::condition(plan.seen.as_ref());
            return parts::start(
                self,
                obj,
                &plan.live,
                plan.generation,
                &plan.key,
                headers,
                condition,
                part_plan,
                restarts,
            )
            .await;
        }
        self.copy(obj, *plan).await
    }

    /// The checks before a copy: the request, the bucket, the replica (when
    /// the generation is known), the live generation, the replica again
    /// (when it was not), the metadata.
    async fn decide(&self, obj: &GcsObject) -> Result<Decision, ReplicateError> {
        if obj.bucket.is_empty() || obj.name.is_empty() {
            return Err(ReplicateError::InvalidEvent(
                "a replication names a bucket and an object name",
            ));
        }
        self.sources.check(&obj.bucket)?;
        let key = self.storage.key(&obj.name)?;
        // What the check saw; the write is conditional on it.
        let mut seen: Option<Option<Replica>> = None;
        if let Some(generation) = obj.generation {
            match self.check_replica(&key, &obj.bucket, generation).await? {
                Ok(replica) => seen = Some(replica),
                Err(up_to_date) => return Ok(Decision::Done(up_to_date)),
            }
        }
        let live = match self.gcs.metadata(&obj.bucket, &obj.name).await {
            Err(GcsError::Gone(status)) => return Ok(Decision::Done(gone(obj, status))),
            other => other?,
        };
        let generation = match live_generation(obj, &live)? {
            Some(g) => g,
            None => return Ok(Decision::Done(gone(obj, 412))),
        };
        let seen = match seen {
            Some(s) => s,
            None => match self.check_replica(&key, &obj.bucket, generation).await? {
                Ok(replica) => replica,
                Err(up_to_date) => return Ok(Decision::Done(up_to_date)),
            },
        };
        let metadata = replica_metadata(obj, &live, generation)?;
        Ok(Decision::Copy(Box::new(CopyPlan {
            key,
            live,
            generation,
            seen,
            metadata,
        })))
    }

    /// The replica at `key`, or (as `Err`) the outcome when it already
    /// holds `generation` of `bucket` or a newer one.
    async fn check_replica(
        &self,
        key: &ObjectKey,
        bucket: &str,
        generation: i64,
    ) -> Result<Result<Option<Replica>, ReplicaOutcome>, StorageError> {
        let replica = self.replica(key).await?;
        if let Some(r) = replica.as_ref().filter(|r| r.same_bucket(bucket)) {
            if r.generation >= generation {
                return Ok(Err(up_to_date(key, r.generation, generation)));
            }
        }
        Ok(Ok(replica))
    }

    /// Streams the generation from Cloud Storage into a conditional write,
    /// its CRC32C checked.
    async fn copy(
        &self,
        obj: &GcsObject,
        plan: CopyPlan,
    ) -> Result<ReplicaOutcome, ReplicateError> {
        let CopyPlan {
            key,
            live,
            generation,
            seen,
            metadata,
        } = plan;
        let resp = match self.gcs.download(&obj.bucket, &obj.name, generation).await {
            Err(GcsError::Gone(status)) => return Ok(gone(obj, status)),
            other => other?,
        };
        let expected = expected_crc(obj, &live, &resp, generation)?;
        let content_length = resp.content_length().or(live.size);
        let (if_none_match, if_match) = Replica::condition(seen.as_ref());
        let opts = PutOptions {
            headers: replica_headers(&live, metadata),
            if_none_match,
            if_match,
            expected_crc32c: expected,
            content_length,
        };
        let source = Box::pin(resp.bytes_stream().map_err(std::io::Error::other));
        let written = self
            .storage
            .put_stream(&key, source, opts)
            .await
            .map_err(|e| match e {
                // A failed read from Cloud Storage is transient.
                StorageError::Body(m) => ReplicateError::SourceRead(m),
                other => lost_race(&key, other),
            })?;
        tracing::info!(
            source = %format!("gs://{}/{}", obj.bucket, obj.name),
            generation,
            key = %written.key,
            size = content_length.unwrap_or(0),
            "replicated"
        );
        Ok(ReplicaOutcome::Replicated {
            key: written.key,
            generation,
            size: content_length.unwrap_or(0),
        })
    }

    /// Removes the replica of a deleted or archived generation, unless the
    /// replica holds a newer generation or comes from another bucket. Only
    /// the version the check saw is removed.
    pub(crate) async fn delete_replica(
        &self,
        obj: &GcsObject,
    ) -> Result<ReplicaOutcome, ReplicateError> {
        if obj.bucket.is_empty() || obj.name.is_empty() {
            return Err(ReplicateError::InvalidEvent(
                "a delete names a bucket and an object",
            ));
        }
        self.sources.check(&obj.bucket)?;
        let key = self.storage.key(&obj.name)?;
        let kept = |reason: String| ReplicaOutcome::ReplicaKept {
            key: key.relative().to_owned(),
            reason,
        };
        let Some(replica) = self.replica(&key).await? else {
            return Ok(ReplicaOutcome::NoReplica {
                key: key.relative().to_owned(),
            });
        };
        if !replica.same_bucket(&obj.bucket) {
            tracing::info!(key = %key, replica_bucket = replica.bucket.as_deref(), bucket = %obj.bucket, "replica comes from another bucket; kept");
            return Ok(kept(format!(
                "replica of another bucket ({})",
                replica.bucket.as_deref().unwrap_or("")
            )));
        }
        if let Some(generation) = obj.generation {
            if replica.generation > generation {
                tracing::info!(key = %key, replica = replica.generation, generation, "replica is newer than the deleted generation; kept");
                return Ok(kept(format!(
                    "replica holds newer generation {}",
                    replica.generation
                )));
            }
        }
        self.delete_seen(&key, &replica).await?;
        if let (Some(generation), Some(_)) = (obj.generation, replica.version_id.as_deref()) {
            self.delete_older_versions(&key, &obj.bucket, generation)
                .await?;
        }
        tracing::info!(key = %key, generation = obj.generation, "replica deleted");
        Ok(ReplicaOutcome::ReplicaDeleted {
            key: key.relative().to_owned(),
        })
    }

    /// On a versioned bucket the previous version becomes current: older
    /// replicas of the same object (up to `generation`) go too, so none
    /// resurfaces.
    async fn delete_older_versions(
        &self,
        key: &ObjectKey,
        bucket: &str,
        generation: i64,
    ) -> Result<(), ReplicateError> {
        for _ in 0..MAX_STALE_VERSIONS {
            match self.replica(key).await? {
                Some(older)
                    if older.bucket.as_deref() == Some(bucket)
                        && older.generation <= generation
                        && older.version_id.is_some() =>
                {
                    self.delete_seen(key, &older).await?
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// Deletes exactly the replica version `seen`.
    async fn delete_seen(&self, key: &ObjectKey, seen: &Replica) -> Result<(), ReplicateError> {
        self.storage
            .delete_checked(key, seen.version_id.as_deref(), seen.etag.as_deref())
            .await
            .map_err(|e| match e {
                StorageError::PreconditionFailed(_) | StorageError::Conflict(_) => {
                    lost_race(key, e)
                }
                other => other.into(),
            })
    }
}

/// The generation to copy: the event's, else the live one. `None` when the
/// live generation is newer (the event's is gone); an error when it is
/// older (the event's is not visible yet).
fn live_generation(obj: &GcsObject, live: &GcsObject) -> Result<Option<i64>, ReplicateError> {
    let Some(live_generation) = live.generation else {
        return Err(ReplicateError::NoGeneration(format!(
            "gs://{}/{}",
            obj.bucket, obj.name
        )));
    };
    let generation = obj.generation.unwrap_or(live_generation);
    if live_generation > generation {
        return Ok(None);
    }
    if live_generation < generation {
        return Err(ReplicateError::NotYetVisible(format!(
            "gs://{}/{} live {live_generation} < event {generation}",
            obj.bucket, obj.name
        )));
    }
    Ok(Some(generation))
}

/// The CRC32C the written bytes must have: the download's `x-goog-hash`,
/// the object resource's and the event's, which must agree.
fn expected_crc(
    obj: &GcsObject,
    live: &GcsObject,
    resp: &reqwest::Response,
    generation: i64,
) -> Result<Option<u32>, ReplicateError> {
    let mut expected: Option<u32> = None;
    for (what, value) in [
        ("x-goog-hash", goog_hash_crc(resp)),
        ("the object resource", live.crc32c.clone()),
        ("the event", obj.crc32c.clone()),
    ] {
        let Some(value) = value else { continue };
        let crc = decode_crc(&value).ok_or_else(|| {
            ReplicateError::UnreadableCrc(format!(
                "gs://{}/{}: crc32c {value:?} from {what}",
                obj.bucket, obj.name
            ))
        })?;
        match expected {
            Some(e) if e != crc => {
                return Err(ReplicateError::CrcMismatch(format!(
                    "gs://{}/{}#{generation}: crc32c {crc:08x} from {what} differs from {e:08x}",
                    obj.bucket, obj.name
                )))
            }
            _ => expected = Some(crc),
        }
    }
    Ok(expected)
}

/// The replica's user metadata: the object's custom metadata that S3 can
/// carry (reserved `goog-*` names left out), its generation and bucket;
/// over S3's 2 KB limit it is refused before anything is read.
pub(crate) fn replica_metadata(
    obj: &GcsObject,
    live: &GcsObject,
    generation: i64,
) -> Result<HashMap<String, String>, ReplicateError> {
    let mut metadata: HashMap<String, String> = live
        .metadata
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| match metadata_name(&k, &v) {
            Ok(name) => Some((name, v)),
            Err(_) => {
                tracing::warn!(name = %k, "custom metadata not representable in S3 was left out");
                None
            }
        })
        .collect();
    metadata.insert(GENERATION_META.to_owned(), generation.to_string());
    metadata.insert(BUCKET_META.to_owned(), obj.bucket.clone());
    let size: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > S3_METADATA_LIMIT {
        return Err(ReplicateError::MetadataTooLarge(format!(
            "gs://{}/{}: custom metadata makes {size} bytes, over S3's 2 KB limit for user metadata",
            obj.bucket, obj.name
        )));
    }
    Ok(metadata)
}

/// The system headers of a replica of `live`, with its user `metadata`
/// (from [`replica_metadata`]).
pub(crate) fn replica_headers(
    live: &GcsObject,
    metadata: HashMap<String, String>,
) -> ObjectHeaders {
    ObjectHeaders {
        content_type: live.content_type.clone(),
        content_encoding: live.content_encoding.clone(),
        content_disposition: live.content_disposition.clone(),
        cache_control: live.cache_control.clone(),
        content_language: live.content_language.clone(),
        metadata,
    }
}

pub(crate) fn up_to_date(key: &ObjectKey, replica: i64, generation: i64) -> ReplicaOutcome {
    tracing::info!(key = %key, replica, generation, "replica already holds this generation or a newer one");
    ReplicaOutcome::UpToDate {
        key: key.relative().to_owned(),
        replica_generation: replica,
        generation,
    }
}

pub(crate) fn gone(obj: &GcsObject, status: u16) -> ReplicaOutcome {
    tracing::info!(
        source = %format!("gs://{}/{}", obj.bucket, obj.name),
        generation = obj.generation,
        status,
        "source generation is gone; a newer generation has its own event"
    );
    ReplicaOutcome::SourceGone {
        bucket: obj.bucket.clone(),
        name: obj.name.clone(),
        generation: obj.generation,
    }
}
