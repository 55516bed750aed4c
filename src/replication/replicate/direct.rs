//! Copies from what Cloud Storage already said: a sync listing or an
//! event's object resource names the generation, its size, CRC32C, content
//! headers and custom metadata, so a small object costs one read and one
//! write. The read is pinned to the generation (`generation=`,
//! `ifGenerationMatch`) and held whole, its size reserved from the buffer
//! budget before it starts; its length and CRC32C are checked against what
//! was said (and `x-goog-hash`) before the write; the write is one
//! PutObject carrying the CRC32C for S3 to verify, conditional on what the
//! caller knows of the key (`If-None-Match: *`, or `If-Match` on the ETag a
//! listing showed). Holding the bytes lets a refused write be sent again
//! over what a check finds, without reading Cloud Storage twice.

use bytes::Bytes;

use super::{
    expected_crc, gone, replica_headers, replica_metadata, ReplicaOutcome, ReplicateError,
    Replicator,
};
use crate::aws::s3::{ObjectHeaders, ObjectKey, PutOptions, PutResult, StorageError};
use crate::budget::{BudgetError, Reservation};
use crate::google::gcs::{GcsError, GcsObject};

/// A generation read whole, with the budget it holds.
pub(crate) struct Fetched {
    bytes: Bytes,
    crc: u32,
    _held: Reservation,
}

/// What a pinned read found.
pub(crate) enum Fetch {
    /// The generation's bytes, checked.
    Got(Fetched),
    /// The generation is not the live one any more (HTTP status).
    Gone(u16),
}

/// What the condition of a write is: the key holds nothing, or exactly the
/// object with this ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    /// `If-None-Match: *`.
    Absent,
    /// `If-Match: <ETag>`.
    Etag(String),
}

/// What a copy from a listing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListedCopy {
    /// The generation was written; its size.
    Copied(u64),
    /// The key changed since the listing (S3 refused the condition) or the
    /// generation is gone: a replicate task decides again.
    Redo(&'static str),
}

/// Whether `obj` is a whole object resource (an event's, a notification's
/// or a listing's): generation, metageneration, size and CRC32C known, so
/// nothing needs reading from Cloud Storage but the bytes.
pub(crate) fn is_resource(obj: &GcsObject) -> bool {
    obj.generation.is_some()
        && obj.metageneration.is_some()
        && obj.size.is_some()
        && obj.crc32c.is_some()
}

impl Replicator {
    /// Reads generation `generation` of `obj` whole: `size` bytes reserved
    /// first, then one pinned read, whose length must be `size` and whose
    /// CRC32C must match `x-goog-hash` and `obj.crc32c`.
    pub(crate) async fn fetch_whole(
        &self,
        obj: &GcsObject,
        generation: i64,
        size: u64,
    ) -> Result<Fetch, ReplicateError> {
        let held = self.storage.budget().reserve(size).await?;
        let resp = match self.gcs.download(&obj.bucket, &obj.name, generation).await {
            Err(GcsError::Gone(status)) => return Ok(Fetch::Gone(status)),
            other => other?,
        };
        let expected = expected_crc(obj, obj, &resp, generation)?;
        let limit = usize::try_from(size).unwrap_or(usize::MAX);
        let source = format!("gs://{}/{}#{generation}", obj.bucket, obj.name);
        let bytes = crate::util::read_limited(resp, limit)
            .await
            .map_err(|e| ReplicateError::SourceRead(format!("{source}: {e}")))?;
        if bytes.len() as u64 != size {
            return Err(ReplicateError::SourceRead(format!(
                "{source}: expected {size} bytes, received {}",
                bytes.len()
            )));
        }
        let crc = crc32c::crc32c(&bytes);
        if let Some(expected) = expected {
            if expected != crc {
                return Err(StorageError::IntegrityMismatch(format!(
                    "{source}: CRC32C of the {size} bytes received is {crc:08x}, expected {expected:08x}"
                ))
                .into());
            }
        }
        Ok(Fetch::Got(Fetched {
            bytes,
            crc,
            _held: held,
        }))
    }

    /// Writes fetched bytes at `key` in one PutObject with their CRC32C,
    /// conditional on `expect`.
    pub(crate) async fn write_whole(
        &self,
        key: &ObjectKey,
        fetched: &Fetched,
        headers: ObjectHeaders,
        expect: &Expect,
    ) -> Result<PutResult, StorageError> {
        let opts = PutOptions {
            headers,
            if_none_match: *expect == Expect::Absent,
            if_match: match expect {
                Expect::Etag(e) => Some(e.clone()),
                Expect::Absent => None,
            },
            expected_crc32c: Some(fetched.crc),
            content_length: Some(fetched.bytes.len() as u64),
        };
        self.storage
            .put_bytes(key, fetched.bytes.clone(), opts)
            .await
    }

    /// A sync page's copy of a listed object: one pinned read, one write
    /// conditional on what the S3 listing showed at the key (`replica`: its
    /// ETag; `None`: nothing). `listed` is the listing's object resource.
    pub(crate) async fn copy_listed(
        &self,
        listed: &GcsObject,
        replica: Option<&str>,
    ) -> Result<ListedCopy, ReplicateError> {
        let (Some(generation), Some(size)) = (listed.generation, listed.size) else {
            return Err(ReplicateError::NoGeneration(format!(
                "gs://{}/{} (listing)",
                listed.bucket, listed.name
            )));
        };
        let key = self.storage.key(&listed.name)?;
        let metadata = replica_metadata(listed, listed, generation)?;
        let fetched = match self.fetch_whole(listed, generation, size).await? {
            Fetch::Got(f) => f,
            Fetch::Gone(_) => return Ok(ListedCopy::Redo("generation_gone")),
        };
        let expect = match replica {
            Some(etag) => Expect::Etag(etag.to_owned()),
            None => Expect::Absent,
        };
        match self
            .write_whole(&key, &fetched, replica_headers(listed, metadata), &expect)
            .await
        {
            Ok(written) => {
                tracing::info!(
                    source = %format!("gs://{}/{}", listed.bucket, listed.name),
                    generation,
                    key = %written.key,
                    size,
                    inline = true,
                    "replicated"
                );
                crate::metrics::replica_committed(size_u64(size), listed.updated.as_deref());
                crate::metrics::replication("replicated");
                Ok(ListedCopy::Copied(size))
            }
            Err(StorageError::PreconditionFailed(_) | StorageError::Conflict(_)) => {
                Ok(ListedCopy::Redo("replica_changed"))
            }
            // `If-Match` on a key removed since the listing.
            Err(StorageError::NotFound(_)) if replica.is_some() => {
                Ok(ListedCopy::Redo("replica_changed"))
            }
            Err(StorageError::Body(m)) => Err(ReplicateError::SourceRead(m)),
            Err(e) => Err(e.into()),
        }
    }

    /// An event's small object, whose resource the event carries: read
    /// whole, then written with `If-None-Match: *`, no check first. When
    /// the key holds an object (the write refused), the check decides as
    /// for any replication (a newer or equal replica of the bucket stays;
    /// anything else is replaced, conditional on the ETag the check saw)
    /// and the bytes already read are written again. `None` when the object
    /// is not for this path (no whole resource, too large, or more than the
    /// whole budget).
    pub(crate) async fn replicate_small(
        &self,
        obj: &GcsObject,
    ) -> Result<Option<ReplicaOutcome>, ReplicateError> {
        let limit = self.inline_limit().min(self.fanout.part_task_bytes);
        let (Some(generation), Some(size)) = (obj.generation, obj.size) else {
            return Ok(None);
        };
        if !is_resource(obj) || size >= limit || obj.bucket.is_empty() || obj.name.is_empty() {
            return Ok(None);
        }
        self.sources.check(&obj.bucket)?;
        let key = self.storage.key(&obj.name)?;
        let metadata = replica_metadata(obj, obj, generation)?;
        let fetched = match self.fetch_whole(obj, generation, size).await {
            Ok(Fetch::Got(f)) => f,
            Ok(Fetch::Gone(status)) => return self.gone_or_live(obj, status).await.map(Some),
            Err(ReplicateError::Budget(BudgetError::OverBudget { .. })) => return Ok(None),
            Err(e) => return Err(e),
        };
        let headers = replica_headers(obj, metadata);
        let written = match self
            .write_whole(&key, &fetched, headers.clone(), &Expect::Absent)
            .await
        {
            Ok(w) => w,
            Err(StorageError::PreconditionFailed(_) | StorageError::Conflict(_)) => {
                let seen = match self.check_replica(&key, &obj.bucket, generation).await? {
                    Ok(seen) => seen,
                    Err(up_to_date) => return Ok(Some(up_to_date)),
                };
                let expect = match seen.as_ref().and_then(|r| r.etag()) {
                    Some(etag) => Expect::Etag(etag.to_owned()),
                    None if seen.is_none() => Expect::Absent,
                    None => {
                        return Err(ReplicateError::Unexpected(
                            "S3 described the object at the key without an ETag",
                        ))
                    }
                };
                self.write_whole(&key, &fetched, headers, &expect)
                    .await
                    .map_err(|e| super::replica_write_error(&key, e))?
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(
            source = %format!("gs://{}/{}", obj.bucket, obj.name),
            generation,
            key = %written.key,
            size,
            "replicated"
        );
        crate::metrics::replica_committed(size_u64(size), obj.updated.as_deref());
        Ok(Some(ReplicaOutcome::Replicated {
            key: written.key,
            generation,
            size,
        }))
    }

    /// A pinned read of an event's generation was refused: gone when Cloud
    /// Storage holds another generation or none; a failure to be retried
    /// when it still shows that generation live. One metadata read, on
    /// this path only.
    pub(crate) async fn gone_or_live(
        &self,
        obj: &GcsObject,
        status: u16,
    ) -> Result<ReplicaOutcome, ReplicateError> {
        let live = match self.gcs.metadata(&obj.bucket, &obj.name).await {
            Err(GcsError::Gone(_)) => return Ok(gone(obj, status)),
            other => other?,
        };
        match super::live_generation(obj, &live)? {
            None => Ok(gone(obj, status)),
            Some(g) => Err(ReplicateError::SourceRead(format!(
                "gs://{}/{}: generation {g} is live, but its read was refused (HTTP {status})",
                obj.bucket, obj.name
            ))),
        }
    }
}

/// A listed or announced size as bytes (negative sizes are none).
fn size_u64<T: TryInto<u64>>(size: T) -> u64 {
    size.try_into().unwrap_or(0)
}
