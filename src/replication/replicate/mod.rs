//! Replication from Cloud Storage: `gs://B/NAME` (generation G) →
//! `s3://S3_BUCKET/{S3_PREFIX}NAME`, streamed, checked with CRC32C end to
//! end, idempotent by the replica's `x-amz-meta-goog-generation` and
//! `x-amz-meta-goog-bucket` (generations are compared within one bucket).
//! Only the buckets of `GCS_SOURCE_BUCKETS` are read. Each write is
//! conditional on what the check of the replica saw (`If-None-Match: *` or
//! `If-Match: <ETag>`), each delete removes only the version it checked; a
//! lost race fails with [`ReplicateError::LostRace`] (503) and the
//! redelivery decides again. Cloud Storage is read through [`crate::google::gcs`];
//! objects larger than `PART_TASK_BYTES` are copied by part tasks
//! ([`parts`]).
//!
//! Only what is not known is asked: an event or notification carries the
//! object resource, so no metadata is read for it; an object under
//! `SYNC_INLINE_BYTES` whose resource is known is read whole and written
//! at once with `If-None-Match: *`, and checked (HEAD) only when that write
//! is refused ([`direct`], which also makes a sync page's inline copies).
//!
//! The service removes only what it owns: a *replica* is an object that
//! carries both `goog-bucket` and `goog-generation`, and a removal the
//! service decides on (a deleted or archived generation, a sync orphan)
//! removes only a replica of the named bucket. On a versioned bucket it
//! also removes the older versions that are replicas of that bucket, so
//! none comes back.

pub(crate) mod direct;
pub mod parts;

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::TryStreamExt;

use crate::aws::s3::{
    metadata_name, ObjectHeaders, ObjectInfo, ObjectKey, PutOptions, Storage, StorageError,
};
use crate::google::gcs::{decode_crc, goog_hash_crc, GcsClient, GcsError, GcsObject};
use crate::settings::source_buckets;
use crate::source_buckets::{BucketRefusal, SourceBuckets};
use serde::Deserialize;

/// The S3 user-metadata name holding the source generation.
pub(crate) const GENERATION_META: &str = "goog-generation";
pub(crate) const BUCKET_META: &str = "goog-bucket";
/// The S3 user-metadata name holding the source metageneration.
pub(crate) const METAGENERATION_META: &str = "goog-metageneration";
/// S3's limit on user metadata: names and values, in bytes.
const S3_METADATA_LIMIT: usize = 2048;

/// What replication did; every outcome is a success for the trigger. Its
/// answer is `{"status":…}` with the variant's fields (generations as
/// text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum ReplicaOutcome {
    /// The generation was copied.
    Replicated {
        /// Relative key.
        key: String,
        /// Source generation.
        #[serde(serialize_with = "crate::util::as_text")]
        generation: i64,
        size: u64,
    },
    /// The replica already holds this generation, or a newer one.
    UpToDate {
        /// Relative key.
        key: String,
        /// The replica's generation.
        #[serde(serialize_with = "crate::util::as_text")]
        replica_generation: i64,
        /// The event's generation.
        #[serde(serialize_with = "crate::util::as_text")]
        generation: i64,
    },
    /// The generation no longer exists in Cloud Storage; a newer one has its
    /// own event.
    SourceGone {
        bucket: String,
        name: String,
        /// Generation asked for.
        #[serde(serialize_with = "crate::util::opt_as_text")]
        generation: Option<i64>,
    },
    /// The replica was deleted.
    ReplicaDeleted {
        /// Relative key.
        key: String,
    },
    /// A delete found no replica to remove.
    #[serde(rename = "replica_kept")]
    NoReplica {
        /// Relative key.
        key: String,
        /// `no replica`.
        reason: &'static str,
    },
    /// A removal found an object replication did not write (no
    /// `goog-bucket` and `goog-generation`): it is left.
    NotAReplica {
        /// Relative key.
        key: String,
    },
    /// The replica was given the content headers and custom metadata of a
    /// newer metageneration of its generation.
    MetadataUpdated {
        /// Relative key.
        key: String,
        #[serde(serialize_with = "crate::util::as_text")]
        generation: i64,
        #[serde(serialize_with = "crate::util::as_text")]
        metageneration: i64,
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
    #[serde(untagged)]
    Parts(parts::PartsOutcome),
}

/// Why part tasks cannot replicate an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartsRefusal {
    /// Over `MAX_OBJECT_BYTES`.
    ObjectTooLarge,
    /// A part that lets 10,000 parts cover the object is larger than the
    /// buffer budget.
    PartTooLarge,
    /// Past the restarts a replicate may make after failed completions.
    TooManyRestarts,
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
    /// Another delivery is starting the upload of the same object
    /// generation (its part tasks are not all published yet).
    #[error("{0}")]
    UploadStarting(String),
    /// An object that cannot be replicated (over `MAX_OBJECT_BYTES`, parts
    /// larger than the buffer budget, too many restarts): refused before
    /// anything starts, so it goes to the dead-letter topic.
    #[error("{message}")]
    PartsRefused {
        /// Why.
        refusal: PartsRefusal,
        /// For people.
        message: String,
    },
    /// The buffer budget cannot hold a part.
    #[error(transparent)]
    Budget(#[from] crate::budget::BudgetError),
    /// Publishing further commands failed.
    #[error(transparent)]
    Publish(#[from] crate::google::publisher::PublishError),
    /// S3 answered in a way its API rules out.
    #[error("{0}")]
    Unexpected(&'static str),
}

/// A failed write or delete of the replica: a lost race when the replica
/// changed since its check, else the storage error.
fn replica_write_error(key: &ObjectKey, e: StorageError) -> ReplicateError {
    changed_since_check(key, &e).unwrap_or_else(|| e.into())
}

/// [`ReplicateError::LostRace`] when `e` says the replica changed since its
/// check (precondition failed, conflict, or gone).
pub(crate) fn changed_since_check(key: &ObjectKey, e: &StorageError) -> Option<ReplicateError> {
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
    fanout: Arc<crate::google::publisher::Fanout>,
}

/// What the check of the key saw: a replica, or an object replication did
/// not write.
#[derive(Debug, Clone)]
struct Replica {
    info: ObjectInfo,
}

impl Replica {
    /// The source bucket and generation when the object is a replica: it
    /// carries both `goog-bucket` and `goog-generation`.
    fn source(&self) -> Option<(&str, i64)> {
        let m = &self.info.headers.metadata;
        let bucket = m.get(BUCKET_META)?;
        let generation = m.get(GENERATION_META)?.parse().ok()?;
        Some((bucket.as_str(), generation))
    }

    /// The generation when the object is a replica of `bucket`.
    fn generation_of(&self, bucket: &str) -> Option<i64> {
        self.source().filter(|(b, _)| *b == bucket).map(|(_, g)| g)
    }

    /// `goog-metageneration`; 0 on a replica written before it existed.
    fn metageneration(&self) -> i64 {
        self.info
            .headers
            .metadata
            .get(METAGENERATION_META)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }

    fn etag(&self) -> Option<&str> {
        self.info.etag.as_deref()
    }

    /// The version id on a versioned bucket (not `null`, the id of objects
    /// written while versioning was off).
    fn version(&self) -> Option<&str> {
        self.info
            .version_id
            .as_deref()
            .filter(|v| !v.is_empty() && *v != "null")
    }

    /// The write condition that replaces exactly this object.
    fn condition(replica: Option<&Replica>) -> (bool, Option<String>) {
        match replica {
            None => (true, None),
            Some(r) => (false, r.info.etag.clone()),
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
            fanout: Arc::new(crate::google::publisher::Fanout::default()),
        }
    }

    /// Publishing of further commands (sync pages, part tasks).
    pub(crate) fn with_fanout(mut self, fanout: crate::google::publisher::Fanout) -> Replicator {
        self.fanout = Arc::new(fanout);
        self
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    pub(crate) fn gcs(&self) -> &GcsClient {
        &self.gcs
    }

    pub(crate) fn fanout(&self) -> &crate::google::publisher::Fanout {
        &self.fanout
    }

    /// The size under which an object is copied whole from what is already
    /// known of it (a sync page's inline copies, an event's write without a
    /// check first): `SYNC_INLINE_BYTES`, and never an object over
    /// `MAX_OBJECT_BYTES`, which the checked path refuses after the bucket
    /// and replica checks.
    pub(crate) fn inline_limit(&self) -> u64 {
        self.fanout
            .inline_bytes
            .min(self.storage.max_object_bytes().saturating_add(1))
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
            .and_then(|r| r.generation_of(bucket)))
    }

    async fn replica(&self, key: &ObjectKey) -> Result<Option<Replica>, StorageError> {
        Ok(self
            .storage
            .head_opt(key)
            .await?
            .map(|info| Replica { info }))
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
        if let Some(outcome) = self.replicate_small(obj).await? {
            return Ok(outcome);
        }
        let plan = match self.decide(obj).await? {
            Decision::Done(outcome) => return Ok(outcome),
            Decision::Copy(plan) => plan,
        };
        self.check_size(&plan.live)?;
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

    /// Refuses an object over `MAX_OBJECT_BYTES` (400, to the dead-letter
    /// topic: it can never be written), whichever way it would be copied;
    /// after the bucket and replica checks, so that a bucket not allowed
    /// and a replica already written answer as such.
    fn check_size(&self, obj: &GcsObject) -> Result<(), ReplicateError> {
        match obj.size {
            Some(size) => within_max_object(
                &self.storage,
                format_args!("gs://{}/{}", obj.bucket, obj.name),
                size,
            ),
            None => Ok(()),
        }
    }

    /// The checks before a copy: the request, the bucket, the replica (when
    /// the generation is known), the live generation (unless the request
    /// carries the whole object resource, as events do), the replica again
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
        let (live, generation) = match obj.generation {
            // The event said it all; a generation that is gone shows at the read.
            Some(g) if direct::is_resource(obj) => (obj.clone(), g),
            _ => {
                let live = match self.gcs.metadata(&obj.bucket, &obj.name).await {
                    Err(GcsError::Gone(status)) => return Ok(Decision::Done(gone(obj, status))),
                    other => other?,
                };
                match live_generation(obj, &live)? {
                    Some(g) => (live, g),
                    None => return Ok(Decision::Done(gone(obj, 412))),
                }
            }
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
        if let Some(held) = replica.as_ref().and_then(|r| r.generation_of(bucket)) {
            if held >= generation {
                return Ok(Err(up_to_date(key, held, generation)));
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
            Err(GcsError::Gone(status)) if direct::is_resource(obj) => {
                return self.gone_or_live(obj, status).await
            }
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
                other => replica_write_error(&key, other),
            })?;
        tracing::info!(
            source = %format!("gs://{}/{}", obj.bucket, obj.name),
            generation,
            key = %written.key,
            size = content_length.unwrap_or(0),
            "replicated"
        );
        crate::metrics::replica_committed(content_length.unwrap_or(0), live.updated.as_deref());
        Ok(ReplicaOutcome::Replicated {
            key: written.key,
            generation,
            size: content_length.unwrap_or(0),
        })
    }

    /// Removes the replica of a deleted or archived generation, unless the
    /// replica holds a newer generation or comes from another bucket; an
    /// object that is no replica is left. A replica whose generation Cloud
    /// Storage still has live is kept too: no delete of it happened (the
    /// event is forged, or older than what it names). Only the version the
    /// check saw is removed, and on a versioned bucket the older replica
    /// versions of the bucket up to the event's generation.
    pub(crate) async fn delete_replica(
        &self,
        obj: &GcsObject,
    ) -> Result<ReplicaOutcome, ReplicateError> {
        let (key, seen) = match self.removal_check(obj).await? {
            Ok(found) => found,
            Err(outcome) => return Ok(outcome),
        };
        let held = seen.generation_of(&obj.bucket).unwrap_or_default();
        if let Some(generation) = obj.generation {
            if held > generation {
                tracing::info!(key = %key, replica = held, generation, "replica is newer than the deleted generation; kept");
                return Ok(ReplicaOutcome::ReplicaKept {
                    key: key.relative().to_owned(),
                    reason: format!("replica holds newer generation {held}"),
                });
            }
        }
        match self.gcs.metadata(&obj.bucket, &obj.name).await {
            Ok(live) if live.generation == Some(held) => {
                tracing::warn!(key = %key, replica = held, generation = obj.generation, "the replica's generation is still live in Cloud Storage; kept");
                return Ok(ReplicaOutcome::ReplicaKept {
                    key: key.relative().to_owned(),
                    reason: format!("generation {held} is still live in Cloud Storage"),
                });
            }
            Ok(_) | Err(GcsError::Gone(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.remove(&key, &seen, &obj.bucket, obj.generation)
            .await?;
        tracing::info!(key = %key, generation = obj.generation, "replica deleted");
        Ok(ReplicaOutcome::ReplicaDeleted {
            key: key.relative().to_owned(),
        })
    }

    /// A sync's `delete_replica`: removes the replica of `gs://bucket/name`
    /// when Cloud Storage says the object is gone. In this order: the
    /// replica is read, Cloud Storage is checked, then the version read is
    /// removed (and on a versioned bucket every older replica version of the
    /// bucket), conditionally, so a replica written meanwhile stays.
    pub(crate) async fn remove_orphan(
        &self,
        obj: &GcsObject,
    ) -> Result<ReplicaOutcome, ReplicateError> {
        let (key, seen) = match self.removal_check(obj).await? {
            Ok(found) => found,
            Err(outcome) => return Ok(outcome),
        };
        match self.gcs.metadata(&obj.bucket, &obj.name).await {
            Ok(live) => {
                tracing::info!(key = %key, generation = live.generation, "the source object exists; replica kept");
                return Ok(ReplicaOutcome::ReplicaKept {
                    key: key.relative().to_owned(),
                    reason: "the source object exists".into(),
                });
            }
            Err(GcsError::Gone(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.remove(&key, &seen, &obj.bucket, None).await?;
        tracing::info!(key = %key, "replica of a deleted object removed");
        Ok(ReplicaOutcome::ReplicaDeleted {
            key: key.relative().to_owned(),
        })
    }

    /// The checks before a removal: the request, the bucket, and the object
    /// at the key, which must be a replica of the bucket; `Err` holds the
    /// outcome when there is nothing to remove.
    async fn removal_check(
        &self,
        obj: &GcsObject,
    ) -> Result<Result<(ObjectKey, Replica), ReplicaOutcome>, ReplicateError> {
        if obj.bucket.is_empty() || obj.name.is_empty() {
            return Err(ReplicateError::InvalidEvent(
                "a delete names a bucket and an object",
            ));
        }
        self.sources.check(&obj.bucket)?;
        let key = self.storage.key(&obj.name)?;
        let relative = key.relative().to_owned();
        let Some(seen) = self.replica(&key).await? else {
            return Ok(Err(ReplicaOutcome::NoReplica {
                key: relative,
                reason: "no replica",
            }));
        };
        match seen.source() {
            None => {
                tracing::info!(key = %key, bucket = %obj.bucket, "the object is no replica (no goog-bucket and goog-generation); kept");
                Ok(Err(ReplicaOutcome::NotAReplica { key: relative }))
            }
            Some((b, _)) if b != obj.bucket => {
                tracing::info!(key = %key, replica_bucket = b, bucket = %obj.bucket, "replica comes from another bucket; kept");
                Ok(Err(ReplicaOutcome::ReplicaKept {
                    key: relative,
                    reason: format!("replica of another bucket ({b})"),
                }))
            }
            Some(_) => Ok(Ok((key, seen))),
        }
    }

    /// Removes the replica `seen` of `bucket`, only that version of it. On
    /// a versioned bucket the older versions that are replicas of `bucket`
    /// (of a generation up to `up_to`, when given) go too, and an older
    /// object that would read back in its place is hidden under a delete
    /// marker (conditional on its ETag); versions that are no replicas of
    /// the bucket are kept.
    async fn remove(
        &self,
        key: &ObjectKey,
        seen: &Replica,
        bucket: &str,
        up_to: Option<i64>,
    ) -> Result<(), ReplicateError> {
        let Some(seen_version) = seen.version() else {
            return self.delete_seen(key, seen).await;
        };
        // The versions before the removal, newest first: those after the
        // seen one are older than it.
        let listed = self.storage.versions(key).await?;
        self.delete_seen(key, seen).await?;
        // Not listed: removed meanwhile by another delivery, which took
        // care of the older ones; a version listed here may be newer.
        let older: Vec<&String> = match listed.iter().position(|v| v == seen_version) {
            Some(i) => listed[i + 1..].iter().collect(),
            None => Vec::new(),
        };
        for version in &older {
            let info = match self.storage.head_version(key, Some(version)).await {
                Ok(info) => info,
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let held = Replica { info }.generation_of(bucket);
            if held.is_some_and(|g| up_to.is_none_or(|u| g <= u)) {
                self.storage.delete_version(key, version).await?;
                tracing::info!(key = %key, version = %version, generation = held, "older replica version removed");
            }
        }
        if let Some(current) = self.replica(key).await? {
            let resurfaced = current
                .version()
                .is_some_and(|v| older.iter().any(|o| o.as_str() == v));
            if resurfaced {
                match self.storage.delete_checked(key, None, current.etag()).await {
                    Ok(()) => {
                        tracing::info!(key = %key, "an older object under the removed replica is hidden by a delete marker; its version is kept")
                    }
                    // Written meanwhile: the new object stays.
                    Err(StorageError::PreconditionFailed(_) | StorageError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Deletes exactly the replica version `seen`: by version id on a
    /// versioned bucket, else on the condition of its ETag.
    async fn delete_seen(&self, key: &ObjectKey, seen: &Replica) -> Result<(), ReplicateError> {
        if seen.version().is_none() && seen.etag().is_none() {
            // Nothing to make the delete conditional on.
            return Err(ReplicateError::Unexpected(
                "S3 described the replica without an ETag or a version id",
            ));
        }
        self.storage
            .delete_checked(key, seen.version(), seen.etag())
            .await
            .map_err(|e| match e {
                StorageError::PreconditionFailed(_) | StorageError::Conflict(_) => {
                    replica_write_error(key, e)
                }
                other => other.into(),
            })
    }

    /// A metadata update of a generation (`metadataUpdated`,
    /// `OBJECT_METADATA_UPDATE`): a replica of that generation with an older
    /// metageneration is given the new content headers and custom metadata
    /// (a copy onto itself, conditional on its ETag); an equal or newer
    /// metageneration, or a newer generation, changes nothing; an older
    /// generation or no replica is replicated, as a finalize would.
    pub(crate) async fn update_metadata(
        &self,
        obj: &GcsObject,
    ) -> Result<ReplicaOutcome, ReplicateError> {
        if obj.bucket.is_empty() || obj.name.is_empty() {
            return Err(ReplicateError::InvalidEvent(
                "a metadata update names a bucket and an object",
            ));
        }
        self.sources.check(&obj.bucket)?;
        let key = self.storage.key(&obj.name)?;
        // The object resource of the update: the event's, else Cloud
        // Storage's (of the event's generation).
        let resource = match (obj.generation, obj.metageneration) {
            (Some(_), Some(_)) => obj.clone(),
            _ => {
                let live = match self.gcs.metadata(&obj.bucket, &obj.name).await {
                    Err(GcsError::Gone(status)) => return Ok(gone(obj, status)),
                    other => other?,
                };
                match live_generation(obj, &live)? {
                    Some(g) => GcsObject {
                        generation: Some(g),
                        ..live
                    },
                    None => return Ok(gone(obj, 412)),
                }
            }
        };
        let (Some(generation), Some(metageneration)) =
            (resource.generation, resource.metageneration)
        else {
            return Err(ReplicateError::NoGeneration(format!(
                "gs://{}/{} (metageneration)",
                obj.bucket, obj.name
            )));
        };
        let seen = self.replica(&key).await?;
        let held = seen.as_ref().and_then(|r| r.generation_of(&obj.bucket));
        let seen = match (seen, held) {
            (Some(seen), Some(held)) if held == generation => seen,
            (_, Some(held)) if held > generation => {
                return Ok(up_to_date(&key, held, generation));
            }
            _ => {
                // No replica of this generation yet: copy the object.
                let finalize = GcsObject {
                    generation: Some(generation),
                    ..obj.clone()
                };
                return self.replicate(&finalize, 0).await;
            }
        };
        if seen.metageneration() >= metageneration {
            tracing::info!(key = %key, generation, replica_metageneration = seen.metageneration(), metageneration, "replica already holds this metageneration or a newer one");
            return Ok(up_to_date(&key, generation, generation));
        }
        let metadata = replica_metadata(obj, &resource, generation)?;
        let headers = replica_headers(&resource, metadata);
        self.storage
            .replace_headers(&key, &seen.info, headers)
            .await
            .map_err(|e| replica_write_error(&key, e))?;
        tracing::info!(key = %key, generation, metageneration, "replica metadata updated");
        Ok(ReplicaOutcome::MetadataUpdated {
            key: key.relative().to_owned(),
            generation,
            metageneration,
        })
    }
}

/// Refuses `source`, of `size` bytes, when it is over `MAX_OBJECT_BYTES`
/// (`PartsRefused`: 400, to the dead-letter topic, as it can never be
/// written): the one size rule of whole copies, parts and part tasks.
fn within_max_object(
    st: &Storage,
    source: impl std::fmt::Display,
    size: u64,
) -> Result<(), ReplicateError> {
    let max = st.max_object_bytes();
    if size <= max {
        return Ok(());
    }
    Err(ReplicateError::PartsRefused {
        refusal: PartsRefusal::ObjectTooLarge,
        message: format!("{source}: {size} bytes, over MAX_OBJECT_BYTES ({max})"),
    })
}

/// The generation to copy: the event's, else the live one. `None` when the
/// live generation is another (the event's is gone: Cloud Storage reads
/// are strongly consistent, so a generation it does not show, newer or
/// older, is none it will show).
fn live_generation(obj: &GcsObject, live: &GcsObject) -> Result<Option<i64>, ReplicateError> {
    let Some(live_generation) = live.generation else {
        return Err(ReplicateError::NoGeneration(format!(
            "gs://{}/{}",
            obj.bucket, obj.name
        )));
    };
    let generation = obj.generation.unwrap_or(live_generation);
    Ok((live_generation == generation).then_some(generation))
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
    // The resource's reader kept at most Cloud Storage's own 8 KiB of it;
    // more is over S3's limit whatever it holds.
    if live.metadata.over_limit {
        return Err(ReplicateError::MetadataTooLarge(format!(
            "gs://{}/{}: custom metadata over 8 KiB, over S3's 2 KB limit for user metadata",
            obj.bucket, obj.name
        )));
    }
    let mut metadata: HashMap<String, String> = live
        .metadata
        .entries
        .iter()
        .filter_map(|(k, v)| match metadata_name(k, v) {
            Ok(name) => Some((name, v.clone())),
            Err(_) => {
                tracing::warn!(name = %k, "custom metadata not representable in S3 was left out");
                None
            }
        })
        .collect();
    metadata.insert(GENERATION_META.to_owned(), generation.to_string());
    metadata.insert(BUCKET_META.to_owned(), obj.bucket.clone());
    if let Some(metageneration) = live.metageneration {
        metadata.insert(METAGENERATION_META.to_owned(), metageneration.to_string());
    }
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

/// Replication from Cloud Storage (`replicate`, `sync`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReplicationSettings {
    /// `GCS_SOURCE_BUCKETS`: comma-separated buckets replication may read,
    /// `*` for any; unset: off.
    #[serde(
        rename = "gcs_source_buckets",
        default,
        deserialize_with = "source_buckets"
    )]
    pub(crate) source_buckets: SourceBuckets,
    /// `STORAGE_EMULATOR_HOST`: Cloud Storage endpoint override; no token is sent then.
    pub(crate) storage_emulator_host: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_bounds::CustomMetadata;

    fn object(metadata: &[(&str, &str)]) -> Replica {
        Replica {
            info: ObjectInfo {
                key: "k".into(),
                size: 1,
                etag: Some("\"e\"".into()),
                last_modified: None,
                version_id: None,
                headers: ObjectHeaders {
                    metadata: metadata
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..ObjectHeaders::default()
                },
            },
        }
    }

    #[test]
    fn only_an_object_with_bucket_and_generation_is_a_replica() {
        let r = object(&[(BUCKET_META, "b"), (GENERATION_META, "7")]);
        assert_eq!(r.source(), Some(("b", 7)));
        assert_eq!(r.generation_of("b"), Some(7));
        assert_eq!(r.generation_of("other"), None);
        assert_eq!(r.metageneration(), 0);
        for user in [
            object(&[]),
            object(&[(BUCKET_META, "b")]),
            object(&[(GENERATION_META, "7")]),
            object(&[(BUCKET_META, "b"), (GENERATION_META, "seven")]),
            object(&[("owner", "me")]),
        ] {
            assert_eq!(user.source(), None, "{:?}", user.info.headers.metadata);
            assert_eq!(user.generation_of("b"), None);
        }
        let r = object(&[
            (BUCKET_META, "b"),
            (GENERATION_META, "7"),
            (METAGENERATION_META, "3"),
        ]);
        assert_eq!(r.metageneration(), 3);
    }

    #[test]
    fn versions_of_unversioned_objects_are_none() {
        let mut r = object(&[]);
        assert_eq!(r.version(), None);
        r.info.version_id = Some("null".into());
        assert_eq!(r.version(), None);
        r.info.version_id = Some("3HL4kqtJlcpXroDTDmJ".into());
        assert_eq!(r.version(), Some("3HL4kqtJlcpXroDTDmJ"));
    }

    #[test]
    fn replica_metadata_carries_the_metageneration() {
        let live = GcsObject {
            bucket: "b".into(),
            name: "n".into(),
            generation: Some(5),
            metageneration: Some(2),
            metadata: CustomMetadata::of(&[("Team", "blue")]),
            ..GcsObject::default()
        };
        let m = replica_metadata(&live, &live, 5).unwrap();
        assert_eq!(m[GENERATION_META], "5");
        assert_eq!(m[BUCKET_META], "b");
        assert_eq!(m[METAGENERATION_META], "2");
        assert_eq!(m["team"], "blue");
    }

    #[test]
    fn metadata_over_the_limits_is_too_large() {
        let three_kib = r#"{"bucket":"b","name":"n","metadata":{"a":"AAAAAAAAAA"}}"#
            .replace("AAAAAAAAAA", &"a".repeat(3000));
        let big: GcsObject = serde_json::from_str(&three_kib).unwrap();
        assert!(matches!(
            replica_metadata(&big, &big, 1),
            Err(ReplicateError::MetadataTooLarge(_))
        ));
        // Past Cloud Storage's 8 KiB, the reader keeps only the start.
        let mut many = String::from(r#"{"bucket":"b","name":"n","metadata":{"#);
        for i in 0..50_000 {
            many.push_str(&format!(r#""k{i}":"","#));
        }
        many.push_str(r#""last":""}}"#);
        let huge: GcsObject = serde_json::from_str(&many).unwrap();
        assert!(huge.metadata.over_limit);
        assert!(matches!(
            replica_metadata(&huge, &huge, 1),
            Err(ReplicateError::MetadataTooLarge(_))
        ));
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod rules_tests;
