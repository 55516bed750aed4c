//! Objects of any size: an object of at least `PART_TASK_BYTES` is
//! replicated in parts, each part a Pub/Sub command of its own, so that no
//! request needs to outlast the request deadline and the parts spread over
//! instances.
//!
//! 1. The replicate command creates the S3 multipart upload (CRC32C,
//!    full-object checksum type, the replica's metadata), publishes one
//!    `{"op":"replicate_part",…}` command per part and answers 2xx.
//! 2. Each part command reads its byte range from Cloud Storage (`Range`,
//!    `ifGenerationMatch`), uploads it with its part CRC32C, then lists the
//!    upload's parts (`ListParts`). S3's own multipart state is the only
//!    coordination: the command that finds every part present completes the
//!    upload with the object's CRC32C (from Cloud Storage), which S3 checks
//!    against the parts it holds.
//! 3. The completion is conditional on what the replicate command's check
//!    of the replica saw, as every replica write is (`If-None-Match: *` when
//!    there was none, `If-Match: <ETag>` when replacing one); the part
//!    commands carry that condition. A completion that loses that race
//!    publishes the replicate command again (which decides again), aborts
//!    the upload and answers 503, whose redelivery finds the upload gone.
//! 4. A part of an upload that is gone (completed, or aborted) answers 2xx
//!    and does nothing. A source generation that is gone aborts the upload
//!    (a newer generation has its own event). A completion S3 refuses
//!    otherwise publishes the replicate command again and aborts the upload.
//!
//! 5. What cannot finish is refused before anything starts (400, so it
//!    goes to the dead-letter topic): an object over `MAX_OBJECT_BYTES`, or
//!    one whose part (chosen so that at most 10,000 parts cover it) cannot
//!    fit the buffer budget. Without `TASKS_TOPIC` such an object answers
//!    503 `tasks_not_configured`.
//! 6. One upload per object generation: the replicate command records its
//!    upload under `{S3_PREFIX}.gcp-aws-bridge/uploads/` with a conditional
//!    write; a replicate delivered while that upload exists starts none.
//! 7. The tasks name the Cloud Storage object, never the S3 key: a part
//!    task's key is derived from the object's name. Restarts after failed
//!    completions are counted in the replicate task; past
//!    [`MAX_RESTARTS`] it is refused (dead letter).
//!
//! Each part is read whole into memory (its CRC32C must be known before its
//! upload starts), so a part command holds one part: 64 MiB, or more for
//! objects over 640 GiB (S3's 10,000-part limit).

use aws_sdk_s3::primitives::ByteStream;
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::aws::s3::{
    part_size_for, AbortOnDrop, ObjectHeaders, ObjectKey, Storage, StorageError, UploadedPart,
    WriteCondition, MAX_PART,
};
use crate::google::gcs::{decode_crc, GcsError, GcsObject};
use crate::replication::replicate::{
    changed_since_check, gone, up_to_date, within_max_object, PartsRefusal, ReplicaOutcome,
    ReplicateError, Replicator,
};
use crate::util::now_secs;
use crate::wire::{OpTag, PartTask, Task};

/// Part size of part tasks unless S3's 10,000-part limit asks for more.
pub(crate) const PART_TASK_PART_SIZE: u64 = 64 * 1024 * 1024;
/// Failed completions after which a replicate is refused (dead letter).
pub(crate) const MAX_RESTARTS: u32 = 5;
/// S3's most parts of one upload.
const MAX_PARTS: u64 = 10_000;

/// Refuses a replicate whose part uploads failed to complete more than
/// [`MAX_RESTARTS`] times.
pub(crate) fn check_restarts(obj: &GcsObject, restarts: u32) -> Result<(), ReplicateError> {
    if restarts > MAX_RESTARTS {
        return Err(ReplicateError::PartsRefused {
            refusal: PartsRefusal::TooManyRestarts,
            message: format!(
                "gs://{}/{}: its part uploads failed to complete {restarts} times; given up",
                obj.bucket, obj.name
            ),
        });
    }
    Ok(())
}

/// How a large object is cut into part tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartPlan {
    /// Object size.
    pub(crate) size: u64,
    /// Bytes per part (the last may be shorter).
    pub(crate) part_size: u64,
    /// Number of parts.
    pub(crate) parts: u64,
}

impl PartPlan {
    /// The plan for an object of `size` bytes when part tasks apply
    /// (`part_task_bytes` or more): parts of 64 MiB (or `part_task_bytes`,
    /// when smaller), smaller ones when a part would not fit a buffer budget
    /// of `budget` bytes, larger ones when 10,000 parts would not cover the
    /// object. A part may still be larger than the budget: [`PartPlan::check`]
    /// refuses that.
    pub(crate) fn new(size: u64, part_task_bytes: u64, budget: u64) -> Option<PartPlan> {
        if size < part_task_bytes || size == 0 {
            return None;
        }
        let mib = 1024 * 1024;
        let preferred = PART_TASK_PART_SIZE
            .min(part_task_bytes)
            .min(budget / mib * mib);
        let part_size = part_size_for(Some(size)).max(preferred);
        Some(PartPlan {
            size,
            part_size,
            parts: size.div_ceil(part_size),
        })
    }

    /// The plan for `live` when it goes by part tasks: it has a size of at
    /// least `PART_TASK_BYTES` and a CRC32C for S3 to verify. Refused (400)
    /// when it cannot finish: over `MAX_OBJECT_BYTES`, or a part larger than
    /// the whole buffer budget; 503 without `TASKS_TOPIC`.
    pub(crate) fn for_object(
        r: &Replicator,
        live: &GcsObject,
    ) -> Result<Option<PartPlan>, ReplicateError> {
        let fanout = r.fanout();
        if live.crc32c.as_deref().and_then(decode_crc).is_none() {
            return Ok(None);
        }
        let Some(plan) = live.size.and_then(|size| {
            PartPlan::new(size, fanout.part_task_bytes, r.storage().budget().total())
        }) else {
            return Ok(None);
        };
        let source = format!("gs://{}/{}", live.bucket, live.name);
        plan.check(r.storage(), &source)?;
        fanout.publisher()?;
        Ok(Some(plan))
    }

    /// Refuses a plan that cannot finish here.
    fn check(&self, st: &Storage, source: &str) -> Result<(), ReplicateError> {
        within_max_object(st, source, self.size)?;
        let budget = st.budget().total();
        // A part task reserves the range it reads: at most a part, and no
        // more than the object.
        if self.part_size.min(self.size) > budget {
            return Err(ReplicateError::PartsRefused {
                refusal: PartsRefusal::PartTooLarge,
                message: format!(
                    "{source}: its parts of {} bytes (at most 10,000 parts) cannot fit the buffer budget of {budget} bytes (BUFFER_BUDGET_BYTES)",
                    self.part_size
                ),
            });
        }
        Ok(())
    }

    /// Inclusive byte range of part `number` (1-based).
    pub(crate) fn range(&self, number: u64) -> (u64, u64) {
        let start = (number - 1) * self.part_size;
        let end = (start + self.part_size).min(self.size) - 1;
        (start, end)
    }
}

impl PartTask {
    /// The plan the task belongs to, when its fields make one: the part
    /// number within the parts, the range the plan gives that part, parts
    /// of S3's sizes.
    fn plan(&self) -> Option<PartPlan> {
        let plan = PartPlan {
            size: self.size,
            part_size: self.part_size,
            parts: self.parts,
        };
        let sizes_ok = self.size > 0
            && self.part_size > 0
            && self.part_size <= MAX_PART
            && self.parts <= MAX_PARTS
            && self.size.div_ceil(self.part_size) == self.parts
            && (self.parts == 1 || self.part_size >= crate::s3_limits::MIN_PART);
        let range_ok = sizes_ok
            && (1..=self.parts).contains(&self.part_number)
            && (self.start, self.end) == plan.range(self.part_number);
        (sizes_ok && range_ok && !self.upload_id.is_empty()).then_some(plan)
    }

    fn source(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.name)
    }

    /// The completion's write condition.
    fn condition(&self) -> WriteCondition {
        WriteCondition {
            if_none_match: self.if_none_match,
            if_match: self.if_match.clone(),
        }
    }
}

/// What a part task (or the start of one) did; its answer is
/// `{"status":…}` with the variant's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status")]
pub(crate) enum PartsOutcome {
    /// The upload was created and its part commands published.
    #[serde(rename = "parts_published")]
    Published {
        /// Relative key.
        key: String,
        /// Upload id.
        upload_id: String,
        /// Part commands published.
        parts: u64,
    },
    /// A part was uploaded; other parts are still missing.
    #[serde(rename = "part_uploaded")]
    PartUploaded {
        /// Relative key.
        key: String,
        /// Part number.
        part_number: u64,
        /// Parts present in S3 after this one.
        present: u64,
        /// Parts of the upload.
        parts: u64,
    },
    /// An upload of this object generation is in progress: none started.
    #[serde(rename = "upload_in_progress")]
    InProgress {
        /// Relative key.
        key: String,
        /// Its upload id.
        upload_id: String,
    },
    /// The upload is gone (completed or aborted by another command).
    #[serde(rename = "upload_gone")]
    UploadGone {
        /// Relative key.
        key: String,
        /// Part number.
        part_number: u64,
    },
    /// Completion was refused; the upload was aborted and the replicate
    /// command published again.
    #[serde(rename = "restarted")]
    Restarted {
        /// Relative key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Creates the multipart upload of `live` and publishes its part tasks,
/// which complete it on `condition` (`(If-None-Match: *, If-Match)`, what
/// the check of the replica saw). A replicate of an object generation whose
/// upload is in progress starts none.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start(
    r: &Replicator,
    obj: &GcsObject,
    live: &GcsObject,
    generation: i64,
    key: &ObjectKey,
    h: ObjectHeaders,
    condition: (bool, Option<String>),
    plan: PartPlan,
    restarts: u32,
) -> Result<ReplicaOutcome, ReplicateError> {
    let publisher = r.fanout().publisher()?;
    let crc = live.crc32c.clone().unwrap_or_default();
    // The event's CRC32C, when it names one, is the object's.
    if let Some(named) = obj.crc32c.as_deref() {
        if decode_crc(named) != decode_crc(&crc) {
            return Err(ReplicateError::CrcMismatch(format!(
                "gs://{}/{}#{generation}: crc32c {named} from the event differs from {crc}",
                obj.bucket, obj.name
            )));
        }
    }
    let st = r.storage();
    let record = UploadRecord::key(st, &obj.bucket, &obj.name, generation);
    let seen = UploadRecord::read(st, &record).await?;
    if let Some((rec, etag)) = &seen {
        let same = rec.bucket == obj.bucket && rec.name == obj.name && rec.generation == generation;
        if let Some(id) = rec.upload_id.as_ref().filter(|_| same) {
            if let Some(parts) = list_parts(r, key, id).await? {
                let present = parts.len() as u64;
                let now = now_secs();
                let age = now.saturating_sub(rec.checked_at);
                if !rec.published && present == 0 {
                    // Its tasks may not all be published: the delivery that
                    // started it is still at work (503: this one comes back),
                    // or it ended half-way (past any request's life: start
                    // again).
                    if age <= r.fanout().lease.as_secs() {
                        return Err(ReplicateError::UploadStarting(format!(
                            "{key}: upload {id} is being started by another delivery"
                        )));
                    }
                    tracing::warn!(key = %key, upload_id = %id, "an upload whose tasks were never all published; aborted and started again");
                    abort(r, key, id).await;
                } else if present > rec.parts_seen {
                    // Progress since the last look: note it.
                    let noted = UploadRecord {
                        parts_seen: present,
                        checked_at: now,
                        ..rec.clone()
                    };
                    match noted.write(st, &record, Some(etag.clone())).await {
                        Ok(_)
                        | Err(StorageError::PreconditionFailed(_) | StorageError::Conflict(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                    return Ok(in_progress(obj, generation, key, id));
                } else if age < UPLOAD_STALL.as_secs() {
                    return Ok(in_progress(obj, generation, key, id));
                } else {
                    // No part for that long: its tasks are lost (a part
                    // dead-lettered). Start again.
                    tracing::warn!(
                        source = %format!("gs://{}/{}", obj.bucket, obj.name),
                        generation,
                        key = %key,
                        upload_id = %id,
                        parts = present,
                        "an upload in progress made no progress for {UPLOAD_STALL:?}; aborted and started again"
                    );
                    abort(r, key, id).await;
                }
            }
        }
    }
    let upload = st.create_multipart(key, &h, true).await?;
    let upload_id = upload.upload_id().to_owned();
    // Until its tasks are published, a request cut short (deadline,
    // shutdown) aborts the upload.
    let guard = AbortOnDrop::new(&upload);
    // Record the upload, on the condition that nobody recorded another
    // since the read: a concurrent delivery of the same replicate loses here.
    let mut rec = UploadRecord {
        bucket: obj.bucket.clone(),
        name: obj.name.clone(),
        generation,
        upload_id: Some(upload_id.clone()),
        parts_seen: 0,
        checked_at: now_secs(),
        published: false,
    };
    let record_etag = match rec.write(st, &record, seen.map(|(_, etag)| etag)).await {
        Ok(etag) => etag,
        Err(StorageError::PreconditionFailed(_) | StorageError::Conflict(_)) => {
            guard.disarm();
            abort(r, key, &upload_id).await;
            return Ok(in_progress(obj, generation, key, "(another)"));
        }
        Err(e) => {
            guard.disarm();
            abort(r, key, &upload_id).await;
            return Err(e.into());
        }
    };
    // Built a batch at a time as they are published: up to 10,000 tasks
    // are never held at once.
    let tasks = (1..=plan.parts).map(|n| {
        let (start, end) = plan.range(n);
        Task::ReplicatePart(PartTask {
            op: OpTag,
            bucket: obj.bucket.clone(),
            name: obj.name.clone(),
            generation,
            upload_id: upload_id.clone(),
            part_number: n,
            start,
            end,
            parts: plan.parts,
            part_size: plan.part_size,
            size: plan.size,
            crc32c: crc.clone(),
            if_none_match: condition.0,
            if_match: condition.1.clone(),
            restarts,
        })
    });
    if let Err(e) = publisher.publish_tasks(tasks).await {
        // Nothing will drive this upload: leave none behind (the record
        // then names an upload that is gone, and the redelivery starts
        // again).
        guard.disarm();
        abort(r, key, &upload_id).await;
        return Err(e.into());
    }
    guard.disarm();
    // Every task is out. Should this write fail, the upload still goes on:
    // its parts arriving mark it as started for the next replicate.
    rec.published = true;
    if let Err(e) = rec.write(st, &record, Some(record_etag)).await {
        tracing::warn!(key = %key, upload_id = %upload_id, "the upload record could not be marked published: {e}");
    }
    tracing::info!(
        source = %format!("gs://{}/{}", obj.bucket, obj.name),
        generation,
        key = %key,
        size = plan.size,
        parts = plan.parts,
        part_size = plan.part_size,
        upload_id = %upload_id,
        restarts,
        "part tasks published"
    );
    Ok(ReplicaOutcome::Parts(PartsOutcome::Published {
        key: key.relative().to_owned(),
        upload_id,
        parts: plan.parts,
    }))
}

fn in_progress(
    obj: &GcsObject,
    generation: i64,
    key: &ObjectKey,
    upload_id: &str,
) -> ReplicaOutcome {
    tracing::info!(
        source = %format!("gs://{}/{}", obj.bucket, obj.name),
        generation,
        key = %key,
        upload_id,
        "an upload of this generation is in progress; none started"
    );
    ReplicaOutcome::Parts(PartsOutcome::InProgress {
        key: key.relative().to_owned(),
        upload_id: upload_id.to_owned(),
    })
}

/// The upload of an object generation in progress, recorded at
/// `{S3_PREFIX}.gcp-aws-bridge/uploads/{hash of bucket, name, generation}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadRecord {
    bucket: String,
    name: String,
    generation: i64,
    /// `None` once a failed completion gave the upload up.
    upload_id: Option<String>,
    /// Parts S3 held when the record was last written.
    #[serde(default)]
    parts_seen: u64,
    /// When, in seconds since the epoch.
    #[serde(default)]
    checked_at: u64,
    /// Whether every part task of the upload was published.
    #[serde(default)]
    published: bool,
}

/// How long an upload in progress may go without a new part before a
/// replicate of its generation takes it for lost and starts again.
pub(crate) const UPLOAD_STALL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The most an upload record may hold (a name is at most 1 KiB).
const MAX_RECORD_BYTES: usize = 8192;

impl UploadRecord {
    fn key(st: &Storage, bucket: &str, name: &str, generation: i64) -> ObjectKey {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for part in [bucket.as_bytes(), b"\0", name.as_bytes(), b"\0"] {
            h.update(part);
        }
        h.update(generation.to_string().as_bytes());
        let hex: String = h.finalize()[..20]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ObjectKey::reserved(st.prefix(), &format!("uploads/{hex}"))
    }

    /// The record and its ETag.
    async fn read(
        st: &Storage,
        key: &ObjectKey,
    ) -> Result<Option<(UploadRecord, String)>, StorageError> {
        let Some((bytes, etag)) = st.read_record(key, MAX_RECORD_BYTES).await? else {
            return Ok(None);
        };
        Ok(match serde_json::from_slice::<UploadRecord>(&bytes) {
            Ok(rec) => Some((rec, etag)),
            // Unreadable: overwritten on the condition of its ETag.
            Err(_) => Some((
                UploadRecord {
                    bucket: String::new(),
                    name: String::new(),
                    generation: 0,
                    upload_id: None,
                    parts_seen: 0,
                    checked_at: 0,
                    published: false,
                },
                etag,
            )),
        })
    }

    /// Writes the record: new (`If-None-Match: *`) without `etag`, else
    /// over exactly that one. Returns its new ETag.
    async fn write(
        &self,
        st: &Storage,
        key: &ObjectKey,
        etag: Option<String>,
    ) -> Result<String, StorageError> {
        let body = serde_json::to_vec(self).expect("a record serializes");
        st.write_record(key, body, etag).await
    }
}

async fn abort(r: &Replicator, key: &ObjectKey, upload_id: &str) {
    r.storage().multipart(key, upload_id).abort().await;
}

/// Reads the whole range; a short or long read is transient.
async fn read_part(
    resp: reqwest::Response,
    task: &PartTask,
) -> Result<bytes::Bytes, ReplicateError> {
    let want = task.end - task.start + 1;
    let unavailable = ReplicateError::SourceRead;
    if resp.status().as_u16() != 206 && !(task.start == 0 && task.end + 1 == task.size) {
        return Err(unavailable(format!(
            "{}: HTTP {} to a ranged read",
            task.source(),
            resp.status()
        )));
    }
    let mut buf = BytesMut::with_capacity(usize::try_from(want).unwrap_or(0));
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unavailable(format!("{}: {e}", task.source())))?;
        if (buf.len() + chunk.len()) as u64 > want {
            return Err(unavailable(format!(
                "{}: more than {want} bytes for part {}",
                task.source(),
                task.part_number
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.len() as u64 != want {
        return Err(unavailable(format!(
            "{}: {} of {want} bytes for part {}",
            task.source(),
            buf.len(),
            task.part_number
        )));
    }
    Ok(buf.freeze())
}

/// Runs one `replicate_part` command.
pub(crate) async fn run_part(
    r: &Replicator,
    task: &PartTask,
) -> Result<ReplicaOutcome, ReplicateError> {
    let plan = task.plan().ok_or(ReplicateError::InvalidPartTask)?;
    let source = task.source();
    plan.check(r.storage(), &source)?;
    // The key is the object's, never the task's to name.
    let key = r.storage().key(&task.name)?;
    let obj = GcsObject {
        bucket: task.bucket.clone(),
        name: task.name.clone(),
        generation: Some(task.generation),
        ..GcsObject::default()
    };
    // The part is held whole: reserve it from the buffer budget before
    // reading (a range larger than the whole budget is refused, 413, and a
    // busy instance answers 503 so Pub/Sub redelivers the part elsewhere).
    let _part_buffer = r
        .storage()
        .budget()
        .reserve(task.end - task.start + 1)
        .await?;
    let resp = match r
        .gcs()
        .download_range(
            &task.bucket,
            &task.name,
            task.generation,
            task.start,
            task.end,
        )
        .await
    {
        Err(GcsError::Gone(status)) => {
            abort(r, &key, &task.upload_id).await;
            return Ok(gone(&obj, status));
        }
        other => other?,
    };
    let body = read_part(resp, task).await?;
    let crc = crc32c::crc32c(&body);
    let len = body.len() as u64;
    let st = r.storage();
    let uploaded = st
        .multipart(&key, &task.upload_id)
        .upload_part(
            i32::try_from(task.part_number).unwrap_or(i32::MAX),
            ByteStream::from(body),
            len,
            crc,
        )
        .await;
    match uploaded {
        Ok(_) => crate::metrics::replication_bytes(len),
        Err(StorageError::UploadGone(_)) => return Ok(upload_gone(&key, task)),
        Err(e) => return Err(e.into()),
    }
    let present = match list_parts(r, &key, &task.upload_id).await? {
        Some(p) => p,
        None => return Ok(upload_gone(&key, task)),
    };
    let count = present.len() as u64;
    if count < task.parts {
        tracing::debug!(key = %key, part = task.part_number, present = count, parts = task.parts, "part uploaded");
        return Ok(ReplicaOutcome::Parts(PartsOutcome::PartUploaded {
            key: key.relative().to_owned(),
            part_number: task.part_number,
            present: count,
            parts: task.parts,
        }));
    }
    complete(r, &key, task, present).await
}

fn upload_gone(key: &ObjectKey, task: &PartTask) -> ReplicaOutcome {
    tracing::info!(key = %key, part = task.part_number, upload_id = %task.upload_id, "the upload is gone; the part does nothing");
    ReplicaOutcome::Parts(PartsOutcome::UploadGone {
        key: key.relative().to_owned(),
        part_number: task.part_number,
    })
}

/// The parts S3 holds, `None` when the upload is gone.
async fn list_parts(
    r: &Replicator,
    key: &ObjectKey,
    upload_id: &str,
) -> Result<Option<Vec<UploadedPart>>, ReplicateError> {
    match r.storage().multipart(key, upload_id).list_parts().await {
        Ok(parts) => Ok(Some(parts)),
        Err(StorageError::UploadGone(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn complete(
    r: &Replicator,
    key: &ObjectKey,
    task: &PartTask,
    parts: Vec<UploadedPart>,
) -> Result<ReplicaOutcome, ReplicateError> {
    // Idempotent: a replica of this generation (an earlier upload of the
    // same replicate, delivered twice) or a newer one wins.
    if let Some(replica) = r.replica_generation(key, &task.bucket).await? {
        if replica >= task.generation {
            abort(r, key, &task.upload_id).await;
            return Ok(up_to_date(key, replica, task.generation));
        }
    }
    let out = r
        .storage()
        .multipart(key, &task.upload_id)
        .complete(parts, Some(task.crc32c.clone()), &task.condition())
        .await;
    let err = match out {
        Ok(_) => {
            tracing::info!(
                source = %task.source(),
                generation = task.generation,
                key = %key,
                size = task.size,
                parts = task.parts,
                "replicated"
            );
            return Ok(ReplicaOutcome::Replicated {
                key: key.relative().to_owned(),
                generation: task.generation,
                size: task.size,
            });
        }
        Err(StorageError::UploadGone(_)) => return Ok(upload_gone(key, task)),
        Err(e) => e,
    };
    // The replica was written or removed since the replicate command's
    // check: that command decides again.
    let lost = changed_since_check(key, &err);
    let refused = lost.is_some()
        || matches!(
            err,
            StorageError::IntegrityMismatch(_)
                | StorageError::Internal(_)
                | StorageError::InvalidArgument(_)
        );
    if !refused {
        // Transient: the redelivered part command completes again.
        return Err(err.into());
    }
    if lost.is_some() {
        // Another completion of this upload (the last two parts at once),
        // or a replicate of this generation or a newer one, got there
        // first: nothing to start again.
        if let Some(replica) = r.replica_generation(key, &task.bucket).await? {
            if replica >= task.generation {
                abort(r, key, &task.upload_id).await;
                return Ok(up_to_date(key, replica, task.generation));
            }
        }
    }
    // Start over: give the upload up in its record (so that the replicate
    // starts a new one), publish the replicate with one more restart (a
    // failed publish leaves the upload for the redelivery of this part,
    // which completes again), then abort.
    let publisher = r.fanout().publisher()?;
    let st = r.storage();
    let record = UploadRecord::key(st, &task.bucket, &task.name, task.generation);
    if let Some((mut rec, etag)) = UploadRecord::read(st, &record).await? {
        if rec.upload_id.as_deref() == Some(task.upload_id.as_str()) {
            rec.upload_id = None;
            match rec.write(st, &record, Some(etag)).await {
                Ok(_) | Err(StorageError::PreconditionFailed(_) | StorageError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let replicate = Task::replicate(
        &task.bucket,
        &task.name,
        Some(task.generation),
        None,
        task.restarts.saturating_add(1),
    );
    publisher.publish_tasks(&[replicate]).await?;
    abort(r, key, &task.upload_id).await;
    if let Some(lost) = lost {
        tracing::warn!(source = %task.source(), key = %key, upload_id = %task.upload_id, error = %err, "completion lost a race with another write of the replica; upload aborted and the replicate command published again");
        return Err(lost);
    }
    tracing::warn!(source = %task.source(), key = %key, upload_id = %task.upload_id, "completion refused ({err}); upload aborted and the replicate command published again");
    Ok(ReplicaOutcome::Parts(PartsOutcome::Restarted {
        key: key.relative().to_owned(),
        reason: err.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::AppError;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn plans_cut_whole_ranges() {
        let all = u64::MAX;
        assert_eq!(PartPlan::new(63 * MIB, 64 * MIB, all), None);
        let p = PartPlan::new(640 * MIB, 64 * MIB, all).unwrap();
        assert_eq!((p.part_size, p.parts), (64 * MIB, 10));
        assert_eq!(p.range(1), (0, 64 * MIB - 1));
        assert_eq!(p.range(10), (576 * MIB, 640 * MIB - 1));
        let p = PartPlan::new(100 * MIB + 1, 64 * MIB, all).unwrap();
        assert_eq!(p.parts, 2);
        assert_eq!(p.range(2), (64 * MIB, 100 * MIB));
        // A small threshold gives parts of that size (at least 8 MiB).
        let p = PartPlan::new(20 * MIB, 5 * MIB, all).unwrap();
        assert_eq!((p.part_size, p.parts), (8 * MIB, 3));
        // A threshold below S3's smallest part: an object under a part is
        // one part, the last, which may be smaller.
        let p = PartPlan::new(2 * MIB, 1, all).unwrap();
        assert_eq!((p.part_size, p.parts), (8 * MIB, 1));
        assert_eq!(p.range(1), (0, 2 * MIB - 1));
        assert_eq!(PartPlan::new(0, 1, all), None);
        // 5 TiB stays within 10,000 parts.
        let p = PartPlan::new(5 * 1024 * 1024 * MIB, 1024 * MIB, all).unwrap();
        assert!(p.parts <= 10_000);
        let (_, end) = p.range(p.parts);
        assert_eq!(end, p.size - 1);
        // A budget smaller than a part: smaller parts, as long as 10,000
        // of them cover the object.
        let p = PartPlan::new(1024 * MIB, 64 * MIB, 40 * MIB + 5).unwrap();
        assert_eq!((p.part_size, p.parts), (40 * MIB, 26));
        let p = PartPlan::new(5 * 1024 * 1024 * MIB, 1024 * MIB, 128 * MIB).unwrap();
        assert_eq!(p.part_size, 525 * MIB);
    }

    #[test]
    fn part_tasks_round_trip_and_forged_ones_are_refused() {
        let t = PartTask {
            op: OpTag,
            bucket: "b".into(),
            name: "big.bin".into(),
            generation: 1_700_000_000_000_001,
            upload_id: "u-1".into(),
            part_number: 2,
            start: 8 * MIB,
            end: 16 * MIB - 1,
            parts: 3,
            part_size: 8 * MIB,
            size: 20 * MIB,
            crc32c: "4waSgw==".into(),
            if_none_match: false,
            if_match: Some("\"e-1\"".into()),
            restarts: 1,
        };
        let task = Task::ReplicatePart(t.clone());
        let v: serde_json::Value = serde_json::from_slice(&task.to_json()).unwrap();
        assert_eq!(v["op"], "replicate_part");
        assert_eq!(v["generation"], "1700000000000001");
        let rules = crate::wire::DoorRules::default();
        assert_eq!(Task::decode(&task.to_json(), &rules).unwrap(), task);
        assert!(t.plan().is_some());
        // A key of its own is no field of a part task.
        let mut forged = v.clone();
        forged["key"] = serde_json::json!("elsewhere");
        let e = Task::decode(forged.to_string().as_bytes(), &rules).unwrap_err();
        assert_eq!(AppError::from(e).code().as_str(), "invalid_command");
        // Ranges and sizes that no plan makes.
        for bad in [
            PartTask {
                part_number: 0,
                ..t.clone()
            },
            PartTask {
                part_number: 4,
                ..t.clone()
            },
            PartTask {
                start: 1,
                ..t.clone()
            },
            PartTask {
                end: 20 * MIB,
                ..t.clone()
            },
            PartTask {
                parts: 2,
                ..t.clone()
            },
            PartTask {
                part_size: MIB,
                parts: 20,
                start: MIB,
                end: 2 * MIB - 1,
                ..t.clone()
            },
            PartTask {
                part_size: 0,
                ..t.clone()
            },
            PartTask {
                upload_id: String::new(),
                ..t.clone()
            },
            PartTask {
                size: 0,
                ..t.clone()
            },
        ] {
            assert!(bad.plan().is_none(), "{bad:?}");
        }
    }

    #[test]
    fn restarts_are_bounded() {
        let obj = GcsObject {
            bucket: "b".into(),
            name: "n".into(),
            ..GcsObject::default()
        };
        assert!(check_restarts(&obj, MAX_RESTARTS).is_ok());
        let e = AppError::from(check_restarts(&obj, MAX_RESTARTS + 1).unwrap_err());
        assert_eq!(
            (e.status().as_u16(), e.code().as_str()),
            (400, "too_many_restarts")
        );
    }

    /// A replicator whose S3 and Cloud Storage are never reached: a part
    /// refused by the budget must fail before any request.
    fn offline_replicator(budget: crate::budget::BufferBudget) -> Replicator {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .build(),
        );
        let storage = crate::aws::s3::Storage::new(
            s3,
            "bucket".into(),
            String::new(),
            crate::aws::CredentialsExpiry::default(),
        )
        .with_limits(budget, crate::aws::s3::MAX_OBJECT);
        Replicator::new(
            storage,
            crate::google::gcs::GcsClient::new(Some("127.0.0.1:9")),
        )
        .with_source_buckets(crate::source_buckets::SourceBuckets::Any)
    }

    fn task(bytes: u64) -> PartTask {
        PartTask {
            op: OpTag,
            bucket: "src".into(),
            name: "big.bin".into(),
            generation: 7,
            upload_id: "u-1".into(),
            part_number: 1,
            start: 0,
            end: bytes - 1,
            parts: 2,
            part_size: bytes,
            size: 2 * bytes,
            crc32c: "AAAAAA==".into(),
            if_none_match: true,
            if_match: None,
            restarts: 0,
        }
    }

    #[tokio::test]
    async fn a_part_is_reserved_from_the_buffer_budget_before_it_is_read() {
        let budget =
            crate::budget::BufferBudget::new(16 * MIB, std::time::Duration::from_millis(20));
        let r = offline_replicator(budget.clone());

        // Larger than the whole budget: 400 (dead letter), nothing read.
        let e = AppError::from(run_part(&r, &task(32 * MIB)).await.unwrap_err());
        assert_eq!(
            (e.status().as_u16(), e.code().as_str()),
            (400, "part_too_large")
        );

        // The budget is held by others: 503 after the wait, nothing read
        // (a read would fail with gcs_unavailable instead).
        let held = budget.reserve(16 * MIB).await.unwrap();
        let e = AppError::from(run_part(&r, &task(8 * MIB)).await.unwrap_err());
        assert_eq!(
            (e.status().as_u16(), e.code().as_str()),
            (503, "buffer_budget_exhausted"),
            "{e:?}"
        );
        drop(held);
    }
}
