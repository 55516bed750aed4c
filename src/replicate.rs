//! Replication from Cloud Storage: `gs://B/NAME` (generation G) →
//! `s3://S3_BUCKET/{S3_PREFIX}NAME`, streamed, checked with CRC32C end to
//! end, idempotent by the replica's `x-amz-meta-goog-generation` and
//! `x-amz-meta-goog-bucket` (generations are compared within one bucket).
//! Only the buckets of `GCS_SOURCE_BUCKETS` are read. Each write is
//! conditional on what the check of the replica saw (`If-None-Match: *` or
//! `If-Match: <ETag>`), each delete removes only the version it checked; a
//! lost race answers 503 and the redelivery decides again.
//!
//! Environment: `STORAGE_EMULATOR_HOST` (`host:port` or a URL) replaces the
//! Cloud Storage endpoint; no token is sent then, as in Google's libraries.
//! Otherwise an access token comes from gcp_auth (the metadata server on
//! Cloud Run).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures_util::TryStreamExt;
use serde::{Deserialize, Deserializer};
use tokio::sync::OnceCell;

use crate::error::AppError;
use crate::identity::error_chain;
use crate::retry::{is_transient_status, Backoff, Transient};
use crate::source_buckets::SourceBuckets;
use crate::storage::{ObjectHeaders, ObjectKey, PutOptions, Storage, StorageError};

/// The S3 user-metadata name holding the source generation.
pub const GENERATION_META: &str = "goog-generation";
/// The S3 user-metadata name holding the source bucket.
pub const BUCKET_META: &str = "goog-bucket";
/// S3's limit on user metadata: names and values, in bytes.
const S3_METADATA_LIMIT: usize = 2048;
/// How many older replica versions a delete removes when they would
/// become current on a versioned bucket.
const MAX_STALE_VERSIONS: usize = 16;
const READ_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_only";
const GCS_ENDPOINT: &str = "https://storage.googleapis.com";

fn u64_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(crate::command::de_i64_opt(d)?.and_then(|v| u64::try_from(v).ok()))
}

/// A Cloud Storage object (generation) named by an event or a command; the
/// fields of the JSON API object resource that replication uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcsObject {
    /// Bucket.
    #[serde(default)]
    pub bucket: String,
    /// Object name.
    #[serde(default)]
    pub name: String,
    /// Generation; strings and numbers both accepted.
    #[serde(default, deserialize_with = "crate::command::de_i64_opt")]
    pub generation: Option<i64>,
    /// CRC32C, base64 of the big-endian bytes.
    #[serde(default)]
    pub crc32c: Option<String>,
    /// Size in bytes.
    #[serde(default, deserialize_with = "u64_or_string")]
    pub size: Option<u64>,
    /// Content-Type.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Content-Encoding.
    #[serde(default)]
    pub content_encoding: Option<String>,
    /// Content-Disposition.
    #[serde(default)]
    pub content_disposition: Option<String>,
    /// Cache-Control.
    #[serde(default)]
    pub cache_control: Option<String>,
    /// Content-Language.
    #[serde(default)]
    pub content_language: Option<String>,
    /// Custom metadata.
    #[serde(default)]
    pub metadata: Option<HashMap<String, String>>,
}

/// What replication did; every outcome is a success for the trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaOutcome {
    /// The generation was copied.
    Replicated {
        /// Relative key.
        key: String,
        /// Source generation.
        generation: i64,
        /// Bytes.
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
        /// Bucket.
        bucket: String,
        /// Name.
        name: String,
        /// Generation asked for.
        generation: Option<i64>,
    },
    /// The replica was deleted.
    ReplicaDeleted {
        /// Relative key.
        key: String,
    },
    /// A delete found no replica, or kept a newer one.
    ReplicaKept {
        /// Relative key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A large object's multipart upload was created and one
    /// `replicate_part` command per part published (see [`crate::parts`]),
    /// or a part command did its share.
    Parts(crate::parts::PartsOutcome),
}

impl ReplicaOutcome {
    /// JSON summary for the answer.
    pub fn to_json(&self) -> serde_json::Value {
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
            ReplicaOutcome::ReplicaKept { key, reason } => serde_json::json!({
                "status": "replica_kept", "key": key, "reason": reason
            }),
            ReplicaOutcome::Parts(p) => p.to_json(),
        }
    }
}

/// Why a Cloud Storage call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GcsError {
    #[error("the object generation is gone (HTTP {0})")]
    Gone(u16),
    #[error("Cloud Storage: {message}")]
    Failed { message: String, transient: bool },
}

impl Transient for GcsError {
    fn is_transient(&self) -> bool {
        matches!(
            self,
            GcsError::Failed {
                transient: true,
                ..
            }
        )
    }
}

impl From<GcsError> for AppError {
    fn from(e: GcsError) -> AppError {
        match e {
            GcsError::Failed {
                message,
                transient: false,
            } => AppError::bad_request("gcs_request_refused", message),
            other => AppError::unavailable(
                "gcs_unavailable",
                "Cloud Storage is unavailable; retry later",
                other.to_string(),
            ),
        }
    }
}

/// Reads objects from the Cloud Storage JSON API.
pub struct GcsClient {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    emulator: bool,
    auth: OnceCell<Arc<dyn gcp_auth::TokenProvider>>,
    backoff: Backoff,
}

impl std::fmt::Debug for GcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsClient")
            .field("base", &self.base)
            .field("emulator", &self.emulator)
            .finish_non_exhaustive()
    }
}

const NAME_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl GcsClient {
    /// The JSON API at `storage.googleapis.com`, or `STORAGE_EMULATOR_HOST`.
    pub fn new(emulator_host: Option<&str>) -> GcsClient {
        let (base, emulator) = match emulator_host {
            Some(h) if h.starts_with("http://") || h.starts_with("https://") => {
                (h.trim_end_matches('/').to_owned(), true)
            }
            Some(h) => (format!("http://{}", h.trim_end_matches('/')), true),
            None => (GCS_ENDPOINT.to_owned(), false),
        };
        GcsClient {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .read_timeout(Duration::from_secs(60))
                .user_agent(concat!("gcp-aws-bridge/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("a TLS client with the built-in roots"),
            base,
            emulator,
            auth: OnceCell::new(),
            backoff: Backoff::default(),
        }
    }

    async fn authorize(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, GcsError> {
        if self.emulator {
            return Ok(req);
        }
        let provider = self
            .auth
            .get_or_try_init(|| async { gcp_auth::provider().await })
            .await
            .map_err(|e| GcsError::Failed {
                message: format!("no Google credentials: {}", error_chain(&e)),
                transient: true,
            })?;
        let token = provider
            .token(&[READ_SCOPE])
            .await
            .map_err(|e| GcsError::Failed {
                message: format!("access token: {}", error_chain(&e)),
                transient: true,
            })?;
        Ok(req.bearer_auth(token.as_str()))
    }

    pub(crate) fn object_url(&self, bucket: &str, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            percent_encoding::utf8_percent_encode(bucket, NAME_ENCODE),
            percent_encoding::utf8_percent_encode(name, NAME_ENCODE)
        )
    }

    pub(crate) async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, GcsError> {
        let resp = self
            .authorize(req)
            .await?
            .send()
            .await
            .map_err(|e| GcsError::Failed {
                message: format!("request failed: {}", error_chain(&e)),
                transient: true,
            })?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(resp);
        }
        if status == 404 || status == 412 {
            return Err(GcsError::Gone(status));
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
        Err(GcsError::Failed {
            message: format!("HTTP {status}: {text}"),
            // 401/403 are fixable by granting access: keep the event.
            transient: is_transient_status(status) || status == 401 || status == 403,
        })
    }

    /// The object resource of the live generation.
    pub(crate) async fn metadata(&self, bucket: &str, name: &str) -> Result<GcsObject, GcsError> {
        self.backoff
            .retry(|| async {
                let resp = self
                    .send(self.http.get(self.object_url(bucket, name)))
                    .await?;
                resp.json::<GcsObject>()
                    .await
                    .map_err(|e| GcsError::Failed {
                        message: format!("unreadable object resource: {e}"),
                        transient: true,
                    })
            })
            .await
    }

    /// Starts the download of generation `generation`, bytes as stored.
    async fn download(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
    ) -> Result<reqwest::Response, GcsError> {
        let generation = generation.to_string();
        self.backoff
            .retry(|| async {
                let req = self
                    .http
                    .get(self.object_url(bucket, name))
                    .query(&[("alt", "media"), ("ifGenerationMatch", generation.as_str())])
                    // Serve gzip-encoded objects as stored, so bytes and CRC32C match.
                    .header(reqwest::header::ACCEPT_ENCODING, "gzip");
                self.send(req).await
            })
            .await
    }
}

/// CRC32C from a base64 value.
pub(crate) fn decode_crc(b64: &str) -> Option<u32> {
    let bytes = STANDARD.decode(b64.trim()).ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// The `crc32c=` part of `x-goog-hash` headers.
fn goog_hash_crc(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("x-goog-hash")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("crc32c=").map(str::to_owned))
}

/// Replicates Cloud Storage objects into the confined S3 bucket.
#[derive(Debug)]
pub struct Replicator {
    storage: Storage,
    gcs: GcsClient,
    sources: SourceBuckets,
    fanout: Option<Arc<crate::publisher::Fanout>>,
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

/// A write or delete lost a race with another one: 503, so the redelivery
/// decides again.
pub(crate) fn lost_race(key: &ObjectKey, what: &str) -> AppError {
    AppError::unavailable(
        "replica_changed",
        "the replica changed while this event was handled; retry later",
        format!("{key}: {what}"),
    )
}

impl Replicator {
    /// Replication into `storage` from `gcs`; replication is off until
    /// [`Replicator::with_source_buckets`] allows buckets.
    pub fn new(storage: Storage, gcs: GcsClient) -> Replicator {
        Replicator {
            storage,
            gcs,
            sources: SourceBuckets::Off,
            fanout: None,
        }
    }

    /// Publishing of further commands (sync pages, part tasks).
    pub fn with_fanout(mut self, fanout: crate::publisher::Fanout) -> Replicator {
        self.fanout = Some(Arc::new(fanout));
        self
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    pub(crate) fn gcs(&self) -> &GcsClient {
        &self.gcs
    }

    pub(crate) fn fanout(&self) -> Option<&crate::publisher::Fanout> {
        self.fanout.as_deref()
    }

    /// The buckets replication may read (`GCS_SOURCE_BUCKETS`).
    pub fn with_source_buckets(mut self, sources: SourceBuckets) -> Replicator {
        self.sources = sources;
        self
    }

    /// The generation of the replica at `key` when it is one of `bucket`'s.
    pub(crate) async fn replica_generation(
        &self,
        key: &ObjectKey,
        bucket: &str,
    ) -> Result<Option<i64>, AppError> {
        Ok(self
            .replica(key)
            .await?
            .filter(|r| r.same_bucket(bucket))
            .map(|r| r.generation))
    }

    async fn replica(&self, key: &ObjectKey) -> Result<Option<Replica>, AppError> {
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
    /// `gs://obj.bucket/obj.name` unless the replica has it or a newer one.
    pub async fn replicate(&self, obj: &GcsObject) -> Result<ReplicaOutcome, AppError> {
        if obj.bucket.is_empty() || obj.name.is_empty() {
            return Err(AppError::bad_request(
                "invalid_event",
                "a replication names a bucket and an object name",
            ));
        }
        self.sources.check(&obj.bucket)?;
        let key = self.storage.key(&obj.name)?;
        // What the check saw; the write is conditional on it.
        let mut seen: Option<Option<Replica>> = None;
        if let Some(generation) = obj.generation {
            let replica = self.replica(&key).await?;
            if let Some(r) = replica.as_ref().filter(|r| r.same_bucket(&obj.bucket)) {
                if r.generation >= generation {
                    return Ok(up_to_date(&key, r.generation, generation));
                }
            }
            seen = Some(replica);
        }
        let live = match self.gcs.metadata(&obj.bucket, &obj.name).await {
            Err(GcsError::Gone(status)) => return Ok(gone(obj, status)),
            other => other?,
        };
        let Some(live_generation) = live.generation else {
            return Err(AppError::unavailable(
                "gcs_unavailable",
                "Cloud Storage answered without a generation",
                format!("gs://{}/{}", obj.bucket, obj.name),
            ));
        };
        let generation = obj.generation.unwrap_or(live_generation);
        if live_generation > generation {
            return Ok(gone(obj, 412));
        }
        if live_generation < generation {
            return Err(AppError::unavailable(
                "gcs_not_yet_visible",
                "the object generation is not visible in Cloud Storage yet",
                format!(
                    "gs://{}/{} live {live_generation} < event {generation}",
                    obj.bucket, obj.name
                ),
            ));
        }
        let seen = match seen {
            Some(s) => s,
            None => {
                let replica = self.replica(&key).await?;
                if let Some(r) = replica.as_ref().filter(|r| r.same_bucket(&obj.bucket)) {
                    if r.generation >= generation {
                        return Ok(up_to_date(&key, r.generation, generation));
                    }
                }
                replica
            }
        };
        let metadata = replica_metadata(obj, &live, generation)?;

        if let Some(parts) = crate::parts::PartPlan::for_object(self, &live) {
            let headers = replica_headers(&live, metadata);
            let condition = Replica::condition(seen.as_ref());
            return crate::parts::start(
                self, obj, &live, generation, &key, headers, condition, parts,
            )
            .await;
        }

        let resp = match self.gcs.download(&obj.bucket, &obj.name, generation).await {
            Err(GcsError::Gone(status)) => return Ok(gone(obj, status)),
            other => other?,
        };
        let mut expected: Option<u32> = None;
        for (what, value) in [
            ("x-goog-hash", goog_hash_crc(&resp)),
            ("the object resource", live.crc32c.clone()),
            ("the event", obj.crc32c.clone()),
        ] {
            let Some(value) = value else { continue };
            let crc = decode_crc(&value).ok_or_else(|| {
                AppError::unavailable(
                    "integrity_mismatch",
                    "the object's CRC32C is unreadable",
                    format!(
                        "gs://{}/{}: crc32c {value:?} from {what}",
                        obj.bucket, obj.name
                    ),
                )
            })?;
            match expected {
                Some(e) if e != crc => {
                    return Err(AppError::unavailable(
                        "integrity_mismatch",
                        "the object's CRC32C values disagree; nothing was written",
                        format!(
                            "gs://{}/{}#{generation}: crc32c {crc:08x} from {what} differs from {e:08x}",
                            obj.bucket, obj.name
                        ),
                    ))
                }
                _ => expected = Some(crc),
            }
        }
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
                StorageError::Body(m) => AppError::unavailable(
                    "gcs_unavailable",
                    "reading from Cloud Storage failed; retry later",
                    m,
                ),
                // The replica was written or removed since the check.
                StorageError::PreconditionFailed(m)
                | StorageError::Conflict(m)
                | StorageError::NotFound(m) => lost_race(&key, &m),
                other => other.into(),
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
    pub async fn delete_replica(&self, obj: &GcsObject) -> Result<ReplicaOutcome, AppError> {
        if obj.bucket.is_empty() || obj.name.is_empty() {
            return Err(AppError::bad_request(
                "invalid_event",
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
            return Ok(kept("no replica".into()));
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
        // On a versioned bucket the previous version becomes current: an
        // older replica of the same object goes too, so none resurfaces.
        if let (Some(generation), Some(_)) = (obj.generation, replica.version_id.as_deref()) {
            for _ in 0..MAX_STALE_VERSIONS {
                match self.replica(&key).await? {
                    Some(older)
                        if older.bucket.as_deref() == Some(obj.bucket.as_str())
                            && older.generation <= generation
                            && older.version_id.is_some() =>
                    {
                        self.delete_seen(&key, &older).await?
                    }
                    _ => break,
                }
            }
        }
        tracing::info!(key = %key, generation = obj.generation, "replica deleted");
        Ok(ReplicaOutcome::ReplicaDeleted {
            key: key.relative().to_owned(),
        })
    }

    /// Deletes exactly the replica version `seen`.
    async fn delete_seen(&self, key: &ObjectKey, seen: &Replica) -> Result<(), AppError> {
        self.storage
            .delete_checked(key, seen.version_id.as_deref(), seen.etag.as_deref())
            .await
            .map_err(|e| match e {
                StorageError::PreconditionFailed(m) | StorageError::Conflict(m) => {
                    lost_race(key, &m)
                }
                other => other.into(),
            })
    }
}

/// The replica's user metadata: the object's custom metadata that S3 can
/// carry (reserved `goog-*` names left out), its generation and bucket;
/// over S3's 2 KB limit it is refused before anything is read.
pub(crate) fn replica_metadata(
    obj: &GcsObject,
    live: &GcsObject,
    generation: i64,
) -> Result<HashMap<String, String>, AppError> {
    let mut metadata: HashMap<String, String> = live
        .metadata
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| match crate::command::metadata_name(&k, &v) {
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
        return Err(AppError::bad_request(
            "metadata_too_large",
            format!(
                "gs://{}/{}: custom metadata makes {size} bytes, over S3's 2 KB limit for user metadata",
                obj.bucket, obj.name
            ),
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_resource_accepts_strings_and_numbers() {
        let o: GcsObject = serde_json::from_str(include_str!(
            "../tests/fixtures/cloudevents/StorageObjectData-complex.json"
        ))
        .unwrap();
        assert_eq!(o.generation, Some(96883251));
        assert_eq!(o.size, Some(0));
        assert_eq!(o.content_encoding.as_deref(), Some("gzip"));
        let o: GcsObject = serde_json::from_str(
            r#"{"bucket":"b","name":"n","generation":"1588778055917163","size":"12"}"#,
        )
        .unwrap();
        assert_eq!(o.generation, Some(1588778055917163));
        assert_eq!(o.size, Some(12));
    }

    #[test]
    fn crc_decoding() {
        assert_eq!(decode_crc("4waSgw=="), Some(0xE306_9283));
        assert_eq!(decode_crc("AAAAAA=="), Some(0));
        assert_eq!(decode_crc("nope"), None);
    }
}
