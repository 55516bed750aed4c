//! One S3 multipart upload: create it, upload a part (bytes, or a range
//! copied from another object), list the parts S3 holds, complete it (on the
//! write's conditions, with the whole object's CRC32C) or abort it. Streamed
//! uploads, copies in parts and part tasks all go through [`Multipart`]; the
//! SDK's retry policy is the only one (no loop of its own here), and an
//! upload that is gone answers [`StorageError::UploadGone`].
//!
//! [`AbortOnDrop`] aborts an upload whose request was dropped before it
//! completed; [`settle_aborts`] waits for those aborts at shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumType, CompletedMultipartUpload, CompletedPart};

use super::error::classify;
use super::upload::crc32c_base64;
use super::{checksum_algorithm, ObjectHeaders, ObjectKey, PutResult, Storage, StorageError};

/// A part S3 holds: its number, ETag and CRC32C (base64), as completion
/// names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UploadedPart {
    /// 1 to 10,000.
    pub(crate) number: i32,
    pub(crate) etag: Option<String>,
    pub(crate) crc32c: Option<String>,
}

impl UploadedPart {
    fn completed(&self) -> CompletedPart {
        CompletedPart::builder()
            .part_number(self.number)
            .set_e_tag(self.etag.clone())
            .set_checksum_crc32_c(self.crc32c.clone())
            .build()
    }
}

/// The conditions a completion writes on: `If-None-Match: *` (only where
/// no object is) and `If-Match` (only over that ETag).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WriteCondition {
    pub(crate) if_none_match: bool,
    pub(crate) if_match: Option<String>,
}

/// One multipart upload of a key of the bucket.
#[derive(Debug, Clone)]
pub(crate) struct Multipart {
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: ObjectKey,
    upload_id: String,
}

impl Storage {
    /// Creates a multipart upload of `key` with the object's headers and
    /// metadata. With `full_object_crc32c`, parts carry their CRC32C and
    /// S3 checks the assembled object against the CRC32C given at
    /// completion.
    pub(crate) async fn create_multipart(
        &self,
        key: &ObjectKey,
        h: &ObjectHeaders,
        full_object_crc32c: bool,
    ) -> Result<Multipart, StorageError> {
        let mut req = self
            .s3
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.full())
            .set_content_type(h.content_type.clone())
            .set_content_encoding(h.content_encoding.clone())
            .set_content_disposition(h.content_disposition.clone())
            .set_cache_control(h.cache_control.clone())
            .set_content_language(h.content_language.clone())
            .set_metadata((!h.metadata.is_empty()).then(|| h.metadata.clone()));
        if full_object_crc32c {
            req = req
                .checksum_algorithm(checksum_algorithm())
                .checksum_type(ChecksumType::FullObject);
        }
        let created = req
            .send()
            .await
            .map_err(|e| classify("CreateMultipartUpload", key.relative(), e))?;
        let upload_id = created.upload_id.ok_or_else(|| {
            StorageError::Internal("CreateMultipartUpload answered without an upload id".into())
        })?;
        Ok(self.multipart(key, &upload_id))
    }

    /// The upload `upload_id` of `key`, created earlier (a part task's).
    pub(crate) fn multipart(&self, key: &ObjectKey, upload_id: &str) -> Multipart {
        Multipart {
            s3: self.s3.clone(),
            bucket: self.bucket.clone(),
            key: key.clone(),
            upload_id: upload_id.to_owned(),
        }
    }
}

impl Multipart {
    /// The upload id S3 gave.
    pub(crate) fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// The key the upload writes.
    pub(crate) fn key(&self) -> &ObjectKey {
        &self.key
    }

    /// Uploads part `number` (`len` bytes whose CRC32C is `crc`, which S3
    /// checks). The request is built now and sent when the future runs, so
    /// it may run as a task of its own.
    pub(crate) fn upload_part(
        &self,
        number: i32,
        body: ByteStream,
        len: u64,
        crc: u32,
    ) -> impl Future<Output = Result<UploadedPart, StorageError>> + Send + 'static {
        let req = self
            .s3
            .upload_part()
            .bucket(&self.bucket)
            .key(self.key.full())
            .upload_id(&self.upload_id)
            .part_number(number)
            .content_length(i64::try_from(len).unwrap_or(i64::MAX))
            .checksum_algorithm(checksum_algorithm())
            .checksum_crc32_c(crc32c_base64(crc))
            .body(body);
        let rel = self.key.relative().to_owned();
        async move {
            let out = req
                .send()
                .await
                .map_err(|e| classify("UploadPart", &rel, e))?;
            Ok(UploadedPart {
                number,
                etag: out.e_tag,
                crc32c: out.checksum_crc32_c.or(Some(crc32c_base64(crc))),
            })
        }
    }

    /// Uploads part `number` as bytes `start..=end` of `copy_source`
    /// (`bucket/key`, encoded), of the version whose ETag is `if_match`.
    /// Errors are classified against `source` (the copied key).
    pub(crate) fn copy_part(
        &self,
        number: i32,
        copy_source: &str,
        (start, end): (u64, u64),
        if_match: Option<String>,
        source: &ObjectKey,
    ) -> impl Future<Output = Result<UploadedPart, StorageError>> + Send + 'static {
        let req = self
            .s3
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(self.key.full())
            .upload_id(&self.upload_id)
            .part_number(number)
            .copy_source(copy_source)
            .copy_source_range(format!("bytes={start}-{end}"))
            .set_copy_source_if_match(if_match);
        let rel = source.relative().to_owned();
        async move {
            let out = req
                .send()
                .await
                .map_err(|e| classify("UploadPartCopy", &rel, e))?;
            Ok(UploadedPart {
                number,
                etag: out.copy_part_result.and_then(|r| r.e_tag),
                crc32c: None,
            })
        }
    }

    /// The parts S3 holds, in order, each once.
    pub(crate) async fn list_parts(&self) -> Result<Vec<UploadedPart>, StorageError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .s3
                .list_parts()
                .bucket(&self.bucket)
                .key(self.key.full())
                .upload_id(&self.upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| classify("ListParts", self.key.relative(), e))?;
            for p in out.parts() {
                if let Some(number) = p.part_number() {
                    parts.push(UploadedPart {
                        number,
                        etag: p.e_tag().map(str::to_owned),
                        crc32c: p.checksum_crc32_c().map(str::to_owned),
                    });
                }
            }
            let next = out.next_part_number_marker().map(str::to_owned);
            if out.is_truncated() == Some(true) && next.is_some() && next != marker {
                marker = next;
            } else {
                break;
            }
        }
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(parts)
    }

    /// Completes the upload from `parts` on `condition`; with `crc32c`
    /// (base64), S3 checks the assembled object against it.
    pub(crate) async fn complete(
        &self,
        mut parts: Vec<UploadedPart>,
        crc32c: Option<String>,
        condition: &WriteCondition,
    ) -> Result<PutResult, StorageError> {
        parts.sort_by_key(|p| p.number);
        let mut req = self
            .s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key.full())
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts.iter().map(UploadedPart::completed).collect()))
                    .build(),
            )
            .set_if_none_match(condition.if_none_match.then(|| "*".to_owned()))
            .set_if_match(condition.if_match.clone());
        if let Some(crc) = crc32c {
            req = req
                .checksum_type(ChecksumType::FullObject)
                .checksum_crc32_c(crc);
        }
        let out = req
            .send()
            .await
            .map_err(|e| classify("CompleteMultipartUpload", self.key.relative(), e))?;
        Ok(PutResult {
            key: self.key.relative().to_owned(),
            etag: out.e_tag,
            version_id: out.version_id,
        })
    }

    /// Aborts the upload so no parts linger. One call (the SDK retries
    /// what is transient); an upload already gone is aborted, and a failure
    /// is logged: S3's lifecycle rule for incomplete uploads is the last
    /// resort.
    pub(crate) async fn abort(&self) {
        let out = self
            .s3
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key.full())
            .upload_id(&self.upload_id)
            .send()
            .await;
        match out.map_err(|e| classify("AbortMultipartUpload", self.key.relative(), e)) {
            Ok(_) | Err(StorageError::UploadGone(_) | StorageError::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(key = %self.key, upload_id = %self.upload_id, "abort of a multipart upload failed: {e}")
            }
        }
    }
}

/// Multipart uploads guarded by an [`AbortOnDrop`] and not yet completed
/// or aborted.
static UPLOADS_OPEN: AtomicUsize = AtomicUsize::new(0);
static UPLOAD_CLOSED: tokio::sync::Notify = tokio::sync::Notify::const_new();

fn upload_closed() {
    UPLOADS_OPEN.fetch_sub(1, Ordering::SeqCst);
    UPLOAD_CLOSED.notify_waiters();
}

/// Aborts a multipart upload when dropped armed: the request that owns it
/// was dropped (deadline, client gone, shutdown) before it completed or
/// aborted. The abort runs as a task of its own on the current runtime;
/// [`settle_aborts`] waits for such tasks.
pub(crate) struct AbortOnDrop {
    armed: Option<Multipart>,
}

impl AbortOnDrop {
    pub(crate) fn new(upload: &Multipart) -> Self {
        UPLOADS_OPEN.fetch_add(1, Ordering::SeqCst);
        AbortOnDrop {
            armed: Some(upload.clone()),
        }
    }

    /// The upload completed or was aborted: nothing to do on drop.
    pub(crate) fn disarm(mut self) {
        if self.armed.take().is_some() {
            upload_closed();
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(upload) = self.armed.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(key = %upload.key, upload_id = %upload.upload_id, "multipart upload left behind: no runtime to abort it");
            upload_closed();
            return;
        };
        tracing::info!(key = %upload.key, upload_id = %upload.upload_id, "request ended before its upload completed; aborting the upload");
        runtime.spawn(async move {
            upload.abort().await;
            upload_closed();
        });
    }
}

/// Waits, at most `limit`, until every multipart upload this process
/// created has completed or been aborted (the requests that own them having
/// been cancelled); true when none is left open. For shutdown.
pub async fn settle_aborts(limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let closed = UPLOAD_CLOSED.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if UPLOADS_OPEN.load(Ordering::SeqCst) == 0 {
            return true;
        }
        if tokio::time::timeout_at(deadline, closed).await.is_err() {
            return UPLOADS_OPEN.load(Ordering::SeqCst) == 0;
        }
    }
}
