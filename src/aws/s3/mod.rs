//! S3 operations over one `aws_sdk_s3::Client`, confined to `S3_BUCKET` and
//! the keys under `S3_PREFIX`. Keys in requests and answers are relative to
//! the prefix. This module knows nothing of HTTP routes or status codes.

mod copy;
mod direct;
mod error;
mod headers;
mod key;
mod multipart;
mod range;
mod sigv4;
mod upload;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use bytes::Bytes;

pub(crate) use copy::COPY_MULTIPART_THRESHOLD;
pub(crate) use direct::S3Endpoint;
pub use error::StorageError;
pub(crate) use headers::{metadata_name, validate_content_type, validate_metadata};
pub use key::{is_reserved, list_prefix, KeyError, ObjectKey, MAX_KEY_BYTES, RESERVED_PREFIX};
pub use multipart::settle_aborts;
pub(crate) use multipart::{AbortOnDrop, UploadedPart, WriteCondition};
pub use range::{ByteRange, RangeError};
pub use upload::{
    crc32c_base64, part_size_for, ByteSource, MAX_OBJECT, MAX_PART, MULTIPART_THRESHOLD,
};

use crate::aws::CredentialsExpiry;
use crate::budget::BufferBudget;
use crate::settings::number;
use serde::Deserialize;

/// The longest a presigned URL may live (SigV4's limit).
pub(crate) const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

/// System metadata carried with an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObjectHeaders {
    pub(crate) content_type: Option<String>,
    pub(crate) content_encoding: Option<String>,
    pub(crate) content_disposition: Option<String>,
    pub(crate) cache_control: Option<String>,
    pub(crate) content_language: Option<String>,
    /// User metadata (`x-amz-meta-*`), names lower-case.
    pub(crate) metadata: HashMap<String, String>,
}

/// How to write an object.
#[derive(Debug, Clone, Default)]
pub(crate) struct PutOptions {
    /// System and user metadata.
    pub(crate) headers: ObjectHeaders,
    /// `If-None-Match: *`: refuse to overwrite.
    pub(crate) if_none_match: bool,
    /// `If-Match: <ETag>`: write only over the object with this ETag (on
    /// PutObject and CompleteMultipartUpload).
    pub(crate) if_match: Option<String>,
    /// The CRC32C the bytes must have; S3 verifies it too.
    pub(crate) expected_crc32c: Option<u32>,
    /// Body length, when known in advance.
    pub(crate) content_length: Option<u64>,
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct PutResult {
    /// Relative key.
    pub(crate) key: String,
    /// ETag as S3 gives it.
    pub(crate) etag: Option<String>,
    /// Version id when the bucket is versioned.
    pub(crate) version_id: Option<String>,
}

/// An object's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectInfo {
    /// Relative key.
    pub(crate) key: String,
    /// Size in bytes.
    pub(crate) size: u64,
    /// ETag.
    pub(crate) etag: Option<String>,
    /// Last modification, RFC 3339.
    pub(crate) last_modified: Option<String>,
    /// Version id.
    pub(crate) version_id: Option<String>,
    /// System and user metadata.
    pub(crate) headers: ObjectHeaders,
}

/// An object being read.
#[derive(Debug)]
pub(crate) struct GetResult {
    /// Description (size is the full object size when known).
    pub(crate) info: ObjectInfo,
    /// Bytes in this answer.
    pub(crate) content_length: Option<u64>,
    /// `Content-Range` when a range was asked.
    pub(crate) content_range: Option<String>,
    /// The bytes, streamed.
    pub(crate) body: ByteStream,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct ListPage {
    /// Objects of this page.
    pub(crate) objects: Vec<ListedObject>,
    /// Cursor of the next page, if any.
    pub(crate) next_cursor: Option<String>,
}

/// An object in a listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct ListedObject {
    /// Relative key.
    pub(crate) key: String,
    /// Size in bytes.
    pub(crate) size: i64,
    /// ETag.
    pub(crate) etag: Option<String>,
    /// RFC 3339.
    pub(crate) last_modified: Option<String>,
}

/// A key of a range listing ([`Storage::list_range`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeKey {
    /// Relative to the storage's prefix.
    pub(crate) key: String,
    /// Size in bytes.
    pub(crate) size: i64,
    /// Last modified, whole seconds since the epoch (S3 listings have no
    /// finer precision).
    pub(crate) modified: Option<i64>,
    /// ETag.
    pub(crate) etag: Option<String>,
}

/// An object's HEAD with its stored checksum ([`Storage::head_checksum`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChecksumHead {
    pub(crate) size: u64,
    pub(crate) metadata: HashMap<String, String>,
    /// `x-amz-checksum-crc32c`.
    pub(crate) crc32c: Option<String>,
    /// `x-amz-checksum-type`.
    pub(crate) checksum_type: Option<aws_sdk_s3::types::ChecksumType>,
}

/// A bucket of the account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct BucketInfo {
    /// Name.
    pub(crate) name: String,
    /// Creation time, RFC 3339.
    pub(crate) created: Option<String>,
}

/// Method of a presigned URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum PresignMethod {
    /// Download.
    #[serde(rename = "GET")]
    Get,
    /// Upload.
    #[serde(rename = "PUT")]
    Put,
}

/// A presigned URL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Presigned {
    /// The URL.
    pub(crate) url: String,
    /// GET or PUT.
    pub(crate) method: PresignMethod,
    /// When it stops working (RFC 3339): the earlier of the asked expiry and
    /// the signing credentials' end.
    pub(crate) expires_at: String,
}

/// Reads a whole body of at most `max` bytes.
async fn read_bounded(body: ByteStream, max: usize) -> Result<Bytes, String> {
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| crate::util::error_chain(&e))?;
        if buf.len() + chunk.len() > max {
            return Err(format!("more than {max} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn smithy_time(t: Option<&aws_smithy_types::DateTime>) -> Option<String> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .map(crate::util::rfc3339)
}

/// S3 confined to one bucket and prefix.
#[derive(Clone, Debug)]
pub(crate) struct Storage {
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    expiry: CredentialsExpiry,
    copy_threshold: u64,
    /// Part buffers of uploads are reserved from it.
    budget: BufferBudget,
    /// Uploads larger than this are refused (`MAX_OBJECT_BYTES`).
    max_object_bytes: u64,
    /// PutObject bodies held in memory are sent with `UNSIGNED-PAYLOAD`
    /// instead of their SHA-256 in the signature: only over TLS, where TLS
    /// guards the bytes in transit, and S3 still verifies the CRC32C sent
    /// with them (a signed header). Over plain HTTP the payload is signed.
    unsigned_payload: bool,
    /// PutObject of bodies in memory without the SDK's orchestration; the
    /// SDK does them when this is `None`.
    direct: Option<std::sync::Arc<direct::DirectPut>>,
}

impl Storage {
    /// Operations on `bucket`, keys under `prefix`.
    pub(crate) fn new(
        s3: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
        expiry: CredentialsExpiry,
    ) -> Storage {
        Storage {
            s3,
            bucket,
            prefix,
            expiry,
            copy_threshold: COPY_MULTIPART_THRESHOLD,
            budget: BufferBudget::unbounded(),
            max_object_bytes: MAX_OBJECT,
            unsigned_payload: false,
            direct: None,
        }
    }

    /// Sends PutObject of bodies in memory through [`direct::DirectPut`]
    /// (same endpoint, credentials, connections, retries and errors as the
    /// SDK, a fraction of its CPU) when the endpoint allows it. Call after
    /// [`Storage::with_unsigned_payload_over_tls`].
    pub(crate) fn with_direct_put(
        mut self,
        endpoint: &S3Endpoint,
        credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    ) -> Storage {
        self.direct = credentials
            .and_then(|c| {
                direct::DirectPut::new(&self.s3, c, &self.bucket, endpoint, self.unsigned_payload)
            })
            .map(std::sync::Arc::new);
        self
    }

    /// Sends in-memory PutObject bodies unsigned (`UNSIGNED-PAYLOAD`, the
    /// CRC32C still sent and verified by S3) when `over_tls`, which saves
    /// hashing every byte for the signature; streamed bodies are unsigned
    /// already. Pass [`crate::aws::s3_over_tls`].
    pub(crate) fn with_unsigned_payload_over_tls(mut self, over_tls: bool) -> Storage {
        self.unsigned_payload = over_tls;
        self
    }

    /// Copies larger than `bytes` go part by part (`UploadPartCopy`); the
    /// default is S3's CopyObject limit, 5 GiB. Lower only to test the
    /// multipart path.
    pub(crate) fn with_copy_multipart_threshold(mut self, bytes: u64) -> Storage {
        self.copy_threshold = bytes;
        self
    }

    /// The budget every buffer of this storage's uploads is reserved from;
    /// part tasks reserve their part from it too.
    pub(crate) fn budget(&self) -> &BufferBudget {
        &self.budget
    }

    /// The same storage with upload buffers reserved from `budget` and
    /// objects over `max_object_bytes` refused.
    pub(crate) fn with_limits(mut self, budget: BufferBudget, max_object_bytes: u64) -> Storage {
        self.budget = budget;
        self.max_object_bytes = max_object_bytes;
        self
    }

    /// The largest object a write may make (`MAX_OBJECT_BYTES`).
    pub(crate) fn max_object_bytes(&self) -> u64 {
        self.max_object_bytes
    }

    /// Validates a relative key.
    pub(crate) fn key(&self, relative: &str) -> Result<ObjectKey, StorageError> {
        Ok(ObjectKey::new(&self.prefix, relative)?)
    }

    /// The bucket.
    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Writes bytes held in memory, with their CRC32C for S3 to verify.
    pub(crate) async fn put_bytes(
        &self,
        key: &ObjectKey,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<PutResult, StorageError> {
        let crc = crc32c::crc32c(&body);
        if let Some(expected) = opts.expected_crc32c {
            if expected != crc {
                return Err(StorageError::IntegrityMismatch(format!(
                    "{key}: CRC32C of the bytes is {crc:08x}, expected {expected:08x}"
                )));
            }
        }
        let len = body.len() as u64;
        upload::put_in_memory(self, key, &[body], len, crc, &opts).await
    }

    /// Writes a stream: one streamed PUT when the length is known and at most
    /// 64 MiB, else a multipart upload with a bounded number of parts in
    /// memory. A CRC32C mismatch with `opts.expected_crc32c` aborts the
    /// upload and leaves nothing behind.
    pub(crate) async fn put_stream(
        &self,
        key: &ObjectKey,
        source: ByteSource,
        opts: PutOptions,
    ) -> Result<PutResult, StorageError> {
        upload::put_stream(self, key, source, opts).await
    }

    /// A small JSON object of the service's own bookkeeping (under
    /// `.gcp-aws-bridge/`) and its ETag, read whole, at most `max` bytes;
    /// `None` when there is none.
    pub(crate) async fn read_record(
        &self,
        key: &ObjectKey,
        max: usize,
    ) -> Result<Option<(Bytes, String)>, StorageError> {
        let got = match self.get(key, None).await {
            Ok(g) => g,
            Err(StorageError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let etag = got.info.etag.clone().unwrap_or_default();
        let bytes = read_bounded(got.body, max)
            .await
            .map_err(|m| StorageError::Unavailable(format!("{key}: {m}")))?;
        Ok(Some((bytes, etag)))
    }

    /// Writes a small JSON object of the service's own bookkeeping: a new
    /// one (`If-None-Match: *`) without `etag`, else over exactly the one
    /// with that ETag (`If-Match`). Returns its ETag; a lost condition is
    /// [`StorageError::PreconditionFailed`] (or `Conflict`).
    pub(crate) async fn write_record(
        &self,
        key: &ObjectKey,
        body: Vec<u8>,
        etag: Option<String>,
    ) -> Result<String, StorageError> {
        let opts = PutOptions {
            if_none_match: etag.is_none(),
            if_match: etag,
            headers: ObjectHeaders {
                content_type: Some("application/json".into()),
                ..ObjectHeaders::default()
            },
            ..PutOptions::default()
        };
        let written = self.put_bytes(key, body.into(), opts).await?;
        Ok(written.etag.unwrap_or_default())
    }

    /// Reads an object, or a `Range` of it.
    pub(crate) async fn get(
        &self,
        key: &ObjectKey,
        range: Option<&str>,
    ) -> Result<GetResult, StorageError> {
        let range = range
            .map(ByteRange::parse)
            .transpose()
            .map_err(|e| StorageError::InvalidArgument(e.to_string()))?;
        let sent = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key.full())
            .set_range(range.map(|r| r.to_string()))
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(e) => {
                let e = error::classify("GetObject", key.relative(), e);
                return Err(self.missing_or_denied(key, e).await);
            }
        };
        let total = out
            .content_range
            .as_deref()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|t| t.parse::<u64>().ok())
            .or(out.content_length.and_then(|l| u64::try_from(l).ok()))
            .unwrap_or(0);
        Ok(GetResult {
            info: ObjectInfo {
                key: key.relative().to_owned(),
                size: total,
                etag: out.e_tag.clone(),
                last_modified: smithy_time(out.last_modified.as_ref()),
                version_id: out.version_id.clone(),
                headers: ObjectHeaders {
                    content_type: out.content_type.clone(),
                    content_encoding: out.content_encoding.clone(),
                    content_disposition: out.content_disposition.clone(),
                    cache_control: out.cache_control.clone(),
                    content_language: out.content_language.clone(),
                    metadata: out.metadata.clone().unwrap_or_default(),
                },
            },
            content_length: out.content_length.and_then(|l| u64::try_from(l).ok()),
            content_range: out.content_range.clone(),
            body: out.body,
        })
    }

    /// Describes an object (a 403 for a missing key resolved as in
    /// [`Storage::head_opt`]).
    pub(crate) async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo, StorageError> {
        match self.head_version(key, None).await {
            Err(e) => Err(self.missing_or_denied(key, e).await),
            ok => ok,
        }
    }

    /// Describes an object, or one version of it (`versionId`).
    pub(crate) async fn head_version(
        &self,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<ObjectInfo, StorageError> {
        let out = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key.full())
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .map_err(|e| error::classify("HeadObject", key.relative(), e))?;
        Ok(ObjectInfo {
            key: key.relative().to_owned(),
            size: out
                .content_length
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(0),
            etag: out.e_tag,
            last_modified: smithy_time(out.last_modified.as_ref()),
            version_id: out.version_id,
            headers: ObjectHeaders {
                content_type: out.content_type,
                content_encoding: out.content_encoding,
                content_disposition: out.content_disposition,
                cache_control: out.cache_control,
                content_language: out.content_language,
                metadata: out.metadata.unwrap_or_default(),
            },
        })
    }

    /// Describes an object, `None` when there is none.
    ///
    /// S3 answers a HEAD of a missing key with 403 instead of 404 when the
    /// caller lacks `s3:ListBucket` for it (a policy that grants it only
    /// under an `s3:prefix` condition does so): a 403 is resolved by a
    /// `ListObjectsV2` of exactly that key. Not listed: missing; listed, or
    /// the listing refused too: the 403 stands.
    pub(crate) async fn head_opt(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<ObjectInfo>, StorageError> {
        match self.head(key).await {
            Ok(i) => Ok(Some(i)),
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// What a failed read of `key` means: a 403 that a listing of exactly
    /// that key shows to be a missing key is `NotFound`; a 403 for a listed
    /// key, or whose listing is refused too, stands (see
    /// [`Storage::head_opt`]).
    async fn missing_or_denied(&self, key: &ObjectKey, e: StorageError) -> StorageError {
        let StorageError::AccessDenied(denied) = e else {
            return e;
        };
        match self.is_listed(key).await {
            Ok(false) => StorageError::NotFound(format!("no such object: {}", key.relative())),
            Ok(true) | Err(StorageError::AccessDenied(_)) => StorageError::AccessDenied(denied),
            Err(other) => other,
        }
    }

    /// Whether a listing of the bucket shows exactly `key`.
    async fn is_listed(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(key.full())
            .max_keys(1)
            .send()
            .await
            .map_err(|e| error::classify("ListObjectsV2", key.relative(), e))?;
        Ok(out.contents().iter().any(|o| o.key() == Some(key.full())))
    }

    /// The versions of exactly `key` (not of keys it is a prefix of),
    /// newest first, delete markers left out. Empty on a bucket that was
    /// never versioned but for the `null` version of a current object.
    pub(crate) async fn versions(&self, key: &ObjectKey) -> Result<Vec<String>, StorageError> {
        let mut ids = Vec::new();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let out = self
                .s3
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(key.full())
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| error::classify("ListObjectVersions", key.relative(), e))?;
            let mut past = false;
            for v in out.versions() {
                // Keys are listed in order: the exact key comes first.
                if v.key() != Some(key.full()) {
                    past = true;
                    break;
                }
                if let Some(id) = v.version_id() {
                    ids.push(id.to_owned());
                }
            }
            if past
                || out.is_truncated() != Some(true)
                || out.next_key_marker().is_none_or(|k| k != key.full())
            {
                return Ok(ids);
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            version_marker = out.next_version_id_marker().map(str::to_owned);
        }
    }

    /// Deletes one version of an object for good; a version already gone
    /// answers `Ok`.
    pub(crate) async fn delete_version(
        &self,
        key: &ObjectKey,
        version_id: &str,
    ) -> Result<(), StorageError> {
        match self
            .s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key.full())
            .version_id(version_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match error::classify("DeleteObject", key.relative(), e) {
                StorageError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Deletes an object; deleting a missing key succeeds, as in S3.
    pub(crate) async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key.full())
            .send()
            .await
            .map_err(|e| error::classify("DeleteObject", key.relative(), e))?;
        Ok(())
    }

    /// Deletes the object version a check saw, and only it: by `version_id`
    /// on a versioned bucket, else on the condition `If-Match: etag`. A
    /// changed object answers [`StorageError::PreconditionFailed`]; an
    /// object already gone answers `Ok`.
    pub(crate) async fn delete_checked(
        &self,
        key: &ObjectKey,
        version_id: Option<&str>,
        etag: Option<&str>,
    ) -> Result<(), StorageError> {
        // "null" is the version id of objects written while versioning was off.
        let version_id = version_id.filter(|v| !v.is_empty() && *v != "null");
        let mut req = self.s3.delete_object().bucket(&self.bucket).key(key.full());
        match (version_id, etag) {
            (Some(v), _) => req = req.version_id(v),
            (None, Some(e)) => req = req.if_match(e),
            (None, None) => {}
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => match error::classify("DeleteObject", key.relative(), e) {
                StorageError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Lists objects under `prefix` (relative), `limit` per page (1–1000).
    pub(crate) async fn list(
        &self,
        prefix: &str,
        limit: Option<i32>,
        cursor: Option<String>,
    ) -> Result<ListPage, StorageError> {
        let full = list_prefix(&self.prefix, prefix)?;
        if let Some(c) = &cursor {
            // S3's continuation tokens are short printable ASCII.
            if c.len() > 1024 || !c.bytes().all(|b| (0x21..0x7f).contains(&b)) {
                return Err(StorageError::InvalidArgument(
                    "cursor is not one this service gave out".into(),
                ));
            }
        }
        let had_cursor = cursor.as_deref().is_some_and(|c| !c.is_empty());
        let limit = limit.unwrap_or(1000);
        if !(1..=1000).contains(&limit) {
            return Err(StorageError::InvalidArgument(
                "limit must be from 1 to 1000".into(),
            ));
        }
        let out = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(full)
            .max_keys(limit)
            .set_continuation_token(cursor.filter(|c| !c.is_empty()))
            .send()
            .await
            .map_err(|e| match error::classify("ListObjectsV2", prefix, e) {
                // S3 answers 400 InvalidArgument to a token it did not give out.
                StorageError::InvalidArgument(_) if had_cursor => {
                    StorageError::InvalidArgument("cursor is not one this service gave out".into())
                }
                other => other,
            })?;
        let objects = out
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| {
                let key = o.key?.strip_prefix(&self.prefix)?.to_owned();
                if key::is_reserved(&key) {
                    return None;
                }
                Some(ListedObject {
                    key,
                    size: o.size.unwrap_or(0),
                    etag: o.e_tag,
                    last_modified: smithy_time(o.last_modified.as_ref()),
                })
            })
            .collect();
        let next_cursor = if out.is_truncated.unwrap_or(false) {
            out.next_continuation_token
        } else {
            None
        };
        Ok(ListPage {
            objects,
            next_cursor,
        })
    }

    /// Copies an object within the bucket and prefix: one CopyObject up to
    /// the multipart threshold (5 GiB), else a multipart copy
    /// (`UploadPartCopy`) of up to 5 TiB. Content headers and user metadata
    /// are kept, but for the names replication reserves (`goog-*`): a copy
    /// of a replica is no replica.
    pub(crate) async fn copy(
        &self,
        source: &ObjectKey,
        dest: &ObjectKey,
    ) -> Result<PutResult, StorageError> {
        copy::copy(self, source, dest).await
    }

    /// Gives the object `seen` (as a HEAD saw it) new content headers and
    /// user metadata, by a copy onto itself conditional on its ETag (a
    /// multipart copy past the CopyObject limit). A changed object answers
    /// [`StorageError::PreconditionFailed`].
    pub(crate) async fn replace_headers(
        &self,
        key: &ObjectKey,
        seen: &ObjectInfo,
        headers: ObjectHeaders,
    ) -> Result<PutResult, StorageError> {
        copy::replace_headers(self, key, seen, headers).await
    }

    /// A presigned URL for `key`. A URL signed with session credentials dies
    /// with them, so the lifetime is capped at their remaining life (and at
    /// seven days); `expires_at` tells the true end.
    pub(crate) async fn presign(
        &self,
        key: &ObjectKey,
        method: PresignMethod,
        expires_in: Duration,
        now: SystemTime,
    ) -> Result<Presigned, StorageError> {
        let wanted = expires_in.min(MAX_PRESIGN);
        let url = self.presign_once(key, method, wanted).await?;
        // The credentials that signed are the ones most recently issued.
        let remaining = self
            .expiry
            .get()
            .and_then(|e| e.duration_since(now).ok())
            .unwrap_or(wanted);
        let (url, lifetime) = if remaining >= wanted {
            (url, wanted)
        } else {
            let capped = remaining.max(Duration::from_secs(1));
            (self.presign_once(key, method, capped).await?, capped)
        };
        Ok(Presigned {
            url,
            method,
            expires_at: crate::util::rfc3339(now + lifetime),
        })
    }

    async fn presign_once(
        &self,
        key: &ObjectKey,
        method: PresignMethod,
        expires_in: Duration,
    ) -> Result<String, StorageError> {
        let conf = PresigningConfig::expires_in(expires_in)
            .map_err(|e| StorageError::InvalidArgument(format!("expires_in: {e}")))?;
        let req = match method {
            PresignMethod::Get => self
                .s3
                .get_object()
                .bucket(&self.bucket)
                .key(key.full())
                .presigned(conf)
                .await
                .map_err(|e| error::classify("presign GetObject", key.relative(), e))?,
            PresignMethod::Put => self
                .s3
                .put_object()
                .bucket(&self.bucket)
                .key(key.full())
                .presigned(conf)
                .await
                .map_err(|e| error::classify("presign PutObject", key.relative(), e))?,
        };
        Ok(req.uri().to_owned())
    }

    /// Buckets of the account (the role needs s3:ListAllMyBuckets).
    /// Up to `max` keys under `full_prefix` (a prefix under this storage's,
    /// as [`list_prefix`] makes it) after the relative name `after`, in
    /// order, relative to the storage's prefix; and whether S3 holds more.
    /// For sync and verify, which walk a name range page by page.
    pub(crate) async fn list_range(
        &self,
        full_prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<RangeKey>, bool), StorageError> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(full_prefix)
            .set_start_after(after.map(|a| format!("{}{a}", self.prefix)))
            .max_keys(i32::try_from(max).unwrap_or(1000))
            .send()
            .await
            .map_err(|e| error::classify("ListObjectsV2", full_prefix, e))?;
        let more = out.is_truncated() == Some(true);
        let keys = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(RangeKey {
                    key: o.key()?.strip_prefix(&self.prefix)?.to_owned(),
                    size: o.size().unwrap_or(-1),
                    modified: o.last_modified().map(|t| t.secs()),
                    etag: o.e_tag().map(str::to_owned),
                })
            })
            .collect();
        Ok((keys, more))
    }

    /// The HEAD of relative key `rel` with its stored checksum
    /// (`ChecksumMode=ENABLED`); `None` when nothing is there. No body is
    /// read.
    pub(crate) async fn head_checksum(
        &self,
        rel: &str,
    ) -> Result<Option<ChecksumHead>, StorageError> {
        let out = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(format!("{}{rel}", self.prefix))
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await;
        match out {
            Ok(out) => Ok(Some(ChecksumHead {
                size: out
                    .content_length()
                    .and_then(|l| u64::try_from(l).ok())
                    .unwrap_or(0),
                crc32c: out.checksum_crc32_c().map(str::to_owned),
                checksum_type: out.checksum_type().cloned(),
                metadata: out.metadata.unwrap_or_default(),
            })),
            Err(e) => match error::classify("HeadObject", rel, e) {
                StorageError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Whether AWS credentials can be had now: presigning a request
    /// resolves them through the identity cache and calls nothing but STS.
    /// The error is the reason, for the log only (it names the metadata
    /// URL, the audience and, after a trust-policy refusal, the service
    /// account).
    pub(crate) async fn credentials_ready(&self) -> Result<(), String> {
        let conf = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(60))
            .map_err(|e| e.to_string())?;
        self.s3
            .get_object()
            .bucket(&self.bucket)
            .key(format!("{}readyz", self.prefix))
            .presigned(conf)
            .await
            .map(drop)
            .map_err(|e| match crate::aws::find_sts_error(&e) {
                Some(sts) => sts.to_string(),
                None => crate::util::error_chain(&e),
            })
    }

    pub(crate) async fn list_buckets(&self) -> Result<Vec<BucketInfo>, StorageError> {
        let out = self
            .s3
            .list_buckets()
            .send()
            .await
            .map_err(|e| error::classify("ListBuckets", "", e))?;
        Ok(out
            .buckets
            .unwrap_or_default()
            .into_iter()
            .map(|b| BucketInfo {
                name: b.name.unwrap_or_default(),
                created: smithy_time(b.creation_date.as_ref()),
            })
            .collect())
    }
}

pub(crate) fn checksum_algorithm() -> ChecksumAlgorithm {
    ChecksumAlgorithm::Crc32C
}

/// The one bucket and prefix every S3 operation is confined to (`storage`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct S3Settings {
    /// `S3_BUCKET`: required by the service, not by the commands.
    #[serde(rename = "s3_bucket", default)]
    pub(crate) bucket: String,
    /// `S3_PREFIX`: keys are confined under this prefix (default empty); empty
    /// or ending with `/`.
    #[serde(rename = "s3_prefix", default)]
    pub(crate) prefix: String,
    /// `TEST_COPY_MULTIPART_THRESHOLD_BYTES` (tests only): copies larger than
    /// this go part by part (default 5 GiB, S3's CopyObject limit; at least 5 MiB).
    #[serde(
        rename = "test_copy_multipart_threshold_bytes",
        default = "default_copy_threshold",
        deserialize_with = "number::<_, _, { crate::s3_limits::MIN_PART }, { crate::s3_limits::COPY_MULTIPART_THRESHOLD }>"
    )]
    pub(crate) copy_multipart_threshold: u64,
}

fn default_copy_threshold() -> u64 {
    crate::s3_limits::COPY_MULTIPART_THRESHOLD
}

impl S3Settings {
    pub(crate) fn validate(&self, service: bool, errors: &mut Vec<String>) {
        if service && self.bucket.is_empty() {
            errors.push("S3_BUCKET: required".into());
        }
        let prefix = &self.prefix;
        if prefix.starts_with('/') {
            errors.push(format!("S3_PREFIX: {prefix:?} must not start with '/'"));
        } else if !prefix.is_empty() && !prefix.ends_with('/') {
            // "data" would also reach "data-x/" and "database/".
            errors.push(format!(
                "S3_PREFIX: {prefix:?} must end with '/' (e.g. {:?}); a prefix without it also reaches keys beside it",
                format!("{prefix}/")
            ));
        } else if prefix.len() >= 1024 || prefix.chars().any(char::is_control) {
            errors.push("S3_PREFIX: too long or has a control character".into());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
