//! Writing objects: bytes in memory, streamed single PUTs, and multipart
//! uploads with a bounded number of parts in memory. CRC32C is computed over
//! the bytes as they pass and sent for S3 to verify.

use std::pin::Pin;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumType, CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::body::SdkBody;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http_body::Frame;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use tokio::task::JoinSet;

use super::error::classify;
use super::{checksum_algorithm, ObjectKey, PutOptions, PutResult, Storage, StorageError};

/// Bodies up to this size are read into memory before the PUT.
const IN_MEMORY_LIMIT: u64 = 1024 * 1024;
/// Objects larger than this go up in parts.
pub const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
const MIN_PART: u64 = 8 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
/// Parts uploading at once; one more is being read.
const PARTS_IN_FLIGHT: usize = 2;

/// Characters of a key escaped in `x-amz-copy-source`.
pub(crate) const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A stream of bytes to upload.
pub type ByteSource = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// CRC32C as S3 and GCS write it: base64 of the big-endian 4 bytes.
pub fn crc32c_base64(crc: u32) -> String {
    STANDARD.encode(crc.to_be_bytes())
}

/// Part size for an object of `len` bytes (unknown: the minimum): at least
/// 8 MiB and large enough to stay within 10,000 parts, in whole MiB.
pub fn part_size_for(len: Option<u64>) -> u64 {
    let mib = 1024 * 1024;
    match len {
        None => MIN_PART,
        Some(len) => {
            let needed = len.div_ceil(MAX_PARTS).div_ceil(mib) * mib;
            needed.max(MIN_PART)
        }
    }
}

/// Sets system and user metadata on a PutObject or CreateMultipartUpload
/// request (two builder types with the same setters).
macro_rules! with_headers {
    ($req:expr, $h:expr) => {{
        let h: &super::ObjectHeaders = $h;
        $req.set_content_type(h.content_type.clone())
            .set_content_encoding(h.content_encoding.clone())
            .set_content_disposition(h.content_disposition.clone())
            .set_cache_control(h.cache_control.clone())
            .set_content_language(h.content_language.clone())
            .set_metadata((!h.metadata.is_empty()).then(|| h.metadata.clone()))
    }};
}

pub(super) async fn put_object(
    st: &Storage,
    key: &ObjectKey,
    body: ByteStream,
    crc: Option<u32>,
    opts: &PutOptions,
    content_length: Option<u64>,
) -> Result<PutResult, StorageError> {
    let req = st
        .s3
        .put_object()
        .bucket(&st.bucket)
        .key(key.full())
        .body(body);
    let mut req = with_headers!(req, &opts.headers)
        .set_content_length(content_length.and_then(|l| i64::try_from(l).ok()));
    if let Some(crc) = crc {
        req = req
            .checksum_algorithm(checksum_algorithm())
            .checksum_crc32_c(crc32c_base64(crc));
    }
    if opts.if_none_match {
        req = req.if_none_match("*");
    }
    if let Some(etag) = &opts.if_match {
        req = req.if_match(etag);
    }
    let out = req
        .send()
        .await
        .map_err(|e| classify("PutObject", key.relative(), e))?;
    Ok(PutResult {
        key: key.relative().to_owned(),
        etag: out.e_tag,
        version_id: out.version_id,
    })
}

/// Reads a stream in parts of a fixed size.
struct PartReader {
    source: ByteSource,
    carry: Bytes,
    done: bool,
    crc: u32,
    total: u64,
}

impl PartReader {
    fn new(source: ByteSource) -> Self {
        PartReader {
            source,
            carry: Bytes::new(),
            done: false,
            crc: 0,
            total: 0,
        }
    }

    /// The next `size` bytes, fewer only at the end; empty at the end.
    /// Filled into `buf`, a part buffer used before when one is free.
    async fn next_part(&mut self, size: usize, mut buf: BytesMut) -> Result<Bytes, StorageError> {
        // The whole part at once: growing by doubling would copy the part
        // and briefly hold twice its size.
        buf.clear();
        buf.reserve(size);
        loop {
            if !self.carry.is_empty() {
                let take = (size - buf.len()).min(self.carry.len());
                buf.extend_from_slice(&self.carry.split_to(take));
            }
            if buf.len() == size || self.done {
                break;
            }
            match self.source.next().await {
                Some(Ok(chunk)) => self.carry = chunk,
                Some(Err(e)) => return Err(StorageError::Body(e.to_string())),
                None => self.done = true,
            }
        }
        let part = buf.freeze();
        self.crc = crc32c::crc32c_append(self.crc, &part);
        self.total += part.len() as u64;
        Ok(part)
    }
}

fn check_end(key: &ObjectKey, opts: &PutOptions, crc: u32, total: u64) -> Result<(), StorageError> {
    if let Some(len) = opts.content_length {
        if len != total {
            return Err(StorageError::Body(format!(
                "{key}: expected {len} bytes, received {total}"
            )));
        }
    }
    if let Some(expected) = opts.expected_crc32c {
        if expected != crc {
            return Err(StorageError::IntegrityMismatch(format!(
                "{key}: CRC32C of the {total} bytes received is {crc:08x}, expected {expected:08x}"
            )));
        }
    }
    Ok(())
}

pub(super) async fn put_stream(
    st: &Storage,
    key: &ObjectKey,
    source: ByteSource,
    opts: PutOptions,
) -> Result<PutResult, StorageError> {
    match opts.content_length {
        Some(len) if len <= IN_MEMORY_LIMIT => in_memory(st, key, source, len, &opts).await,
        Some(len) if len <= MULTIPART_THRESHOLD => {
            single_streamed(st, key, source, len, &opts).await
        }
        _ => multipart(st, key, source, opts).await,
    }
}

/// A small body is read whole: the PUT can then be retried by the SDK and
/// carries its CRC32C for S3 to verify.
async fn in_memory(
    st: &Storage,
    key: &ObjectKey,
    source: ByteSource,
    len: u64,
    opts: &PutOptions,
) -> Result<PutResult, StorageError> {
    let mut reader = PartReader::new(source);
    let size = usize::try_from(len).unwrap_or(usize::MAX);
    // The HTTP server holds the body to its Content-Length; fewer bytes fail
    // the length check.
    let body = reader.next_part(size, BytesMut::new()).await?;
    check_end(key, opts, reader.crc, reader.total)?;
    put_object(
        st,
        key,
        ByteStream::from(body),
        Some(reader.crc),
        opts,
        Some(len),
    )
    .await
}

/// One PUT whose body is the stream itself. The last chunk is held back
/// until the length and CRC32C are checked, so a mismatch fails the
/// request before S3 can complete it.
async fn single_streamed(
    st: &Storage,
    key: &ObjectKey,
    mut source: ByteSource,
    len: u64,
    opts: &PutOptions,
) -> Result<PutResult, StorageError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, StorageError>>(4);
    let key_for_pump = key.clone();
    let opts_for_pump = opts.clone();
    let pump = tokio::spawn(async move {
        let mut crc = 0u32;
        let mut total = 0u64;
        let mut pending: Option<Bytes> = None;
        loop {
            match source.next().await {
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    crc = crc32c::crc32c_append(crc, &chunk);
                    total += chunk.len() as u64;
                    if let Some(p) = pending.replace(chunk) {
                        if tx.send(Ok(Frame::data(p))).await.is_err() {
                            return Err(StorageError::Unavailable(format!(
                                "{key_for_pump}: S3 stopped reading the upload"
                            )));
                        }
                    }
                }
                Some(Err(e)) => {
                    let err = StorageError::Body(e.to_string());
                    let _ = tx.send(Err(StorageError::Body(e.to_string()))).await;
                    return Err(err);
                }
                None => break,
            }
        }
        match check_end(&key_for_pump, &opts_for_pump, crc, total) {
            Ok(()) => {
                if let Some(p) = pending {
                    let _ = tx.send(Ok(Frame::data(p))).await;
                }
                Ok(crc)
            }
            Err(e) => {
                let _ = tx.send(Err(StorageError::Internal(e.to_string()))).await;
                Err(e)
            }
        }
    });
    let stream = tokio_stream_from(rx);
    let body = http_body_util::StreamBody::new(stream);
    let body = ByteStream::new(SdkBody::from_body_1_x(body));
    let put = put_object(st, key, body, opts.expected_crc32c, opts, Some(len)).await;
    let pumped = pump
        .await
        .map_err(|e| StorageError::Internal(format!("upload pump: {e}")))?;
    match (put, pumped) {
        (Ok(r), Ok(_)) => Ok(r),
        // S3 stopped reading because it refused the request: its answer says why.
        (Err(e), Err(StorageError::Unavailable(_))) => Err(e),
        // The body failed (source error, length or CRC32C mismatch): that is the cause.
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e),
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, StorageError>>,
) -> impl Stream<Item = Result<Frame<Bytes>, StorageError>> + Send + Sync + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A multipart upload; falls back to one PUT when the whole stream fits in
/// the first part. Any failure aborts the upload.
async fn multipart(
    st: &Storage,
    key: &ObjectKey,
    source: ByteSource,
    opts: PutOptions,
) -> Result<PutResult, StorageError> {
    let part_size = part_size_for(opts.content_length);
    let part_usize = usize::try_from(part_size).unwrap_or(usize::MAX);
    let mut reader = PartReader::new(source);
    let first = reader.next_part(part_usize, BytesMut::new()).await?;
    if first.len() < part_usize {
        check_end(key, &opts, reader.crc, reader.total)?;
        let crc = reader.crc;
        let len = first.len() as u64;
        return put_object(
            st,
            key,
            ByteStream::from(first),
            Some(crc),
            &opts,
            Some(len),
        )
        .await;
    }

    let created = st
        .s3
        .create_multipart_upload()
        .bucket(&st.bucket)
        .key(key.full())
        .checksum_algorithm(checksum_algorithm())
        // S3 checks the assembled object against the whole-object CRC32C
        // given at completion, not only each part.
        .checksum_type(ChecksumType::FullObject);
    let created = with_headers!(created, &opts.headers)
        .send()
        .await
        .map_err(|e| classify("CreateMultipartUpload", key.relative(), e))?;
    let upload_id = created.upload_id.ok_or_else(|| {
        StorageError::Internal("CreateMultipartUpload without an upload id".into())
    })?;

    let result = upload_parts(st, key, &upload_id, reader, first, &opts).await;
    if result.is_err() {
        abort(st, key, &upload_id).await;
    }
    result
}

async fn upload_parts(
    st: &Storage,
    key: &ObjectKey,
    upload_id: &str,
    mut reader: PartReader,
    first: Bytes,
    opts: &PutOptions,
) -> Result<PutResult, StorageError> {
    let part_usize = first.len();
    let mut inflight: JoinSet<Result<(CompletedPart, Bytes), StorageError>> = JoinSet::new();
    let mut parts = Vec::new();
    // Buffers of parts already uploaded, filled again: the allocator sees
    // the same few part-sized blocks for the whole upload.
    let mut spare: Vec<BytesMut> = Vec::new();
    let mut next = first;
    let mut number: i32 = 0;
    loop {
        number += 1;
        if u64::try_from(number).unwrap_or(u64::MAX) > MAX_PARTS {
            inflight.abort_all();
            return Err(StorageError::TooLarge(format!(
                "{key}: more than {MAX_PARTS} parts of {part_usize} bytes"
            )));
        }
        let crc = crc32c::crc32c(&next);
        let req = st
            .s3
            .upload_part()
            .bucket(&st.bucket)
            .key(key.full())
            .upload_id(upload_id)
            .part_number(number)
            .content_length(next.len() as i64)
            .checksum_algorithm(checksum_algorithm())
            .checksum_crc32_c(crc32c_base64(crc))
            .body(ByteStream::from(next.clone()));
        let rel = key.relative().to_owned();
        inflight.spawn(async move {
            let out = req
                .send()
                .await
                .map_err(|e| classify("UploadPart", &rel, e))?;
            let part = CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .set_checksum_crc32_c(out.checksum_crc32_c.or(Some(crc32c_base64(crc))))
                .build();
            Ok((part, next))
        });
        while inflight.len() >= PARTS_IN_FLIGHT {
            let (part, buf) = join_one(&mut inflight).await?;
            parts.push(part);
            spare.extend(buf.try_into_mut().ok());
        }
        let buf = spare.pop().unwrap_or_default();
        next = match reader.next_part(part_usize, buf).await {
            Ok(p) => p,
            Err(e) => {
                inflight.abort_all();
                return Err(e);
            }
        };
        if next.is_empty() {
            break;
        }
    }
    while !inflight.is_empty() {
        parts.push(join_one(&mut inflight).await?.0);
    }
    check_end(key, opts, reader.crc, reader.total)?;
    parts.sort_by_key(|p| p.part_number);
    let mut req = st
        .s3
        .complete_multipart_upload()
        .bucket(&st.bucket)
        .key(key.full())
        .upload_id(upload_id)
        .checksum_type(ChecksumType::FullObject)
        .checksum_crc32_c(crc32c_base64(reader.crc))
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        );
    if opts.if_none_match {
        req = req.if_none_match("*");
    }
    if let Some(etag) = &opts.if_match {
        req = req.if_match(etag);
    }
    let out = req
        .send()
        .await
        .map_err(|e| classify("CompleteMultipartUpload", key.relative(), e))?;
    Ok(PutResult {
        key: key.relative().to_owned(),
        etag: out.e_tag,
        version_id: out.version_id,
    })
}

async fn join_one(
    set: &mut JoinSet<Result<(CompletedPart, Bytes), StorageError>>,
) -> Result<(CompletedPart, Bytes), StorageError> {
    match set.join_next().await {
        Some(Ok(Ok(p))) => Ok(p),
        Some(Ok(Err(e))) => {
            set.abort_all();
            Err(e)
        }
        Some(Err(e)) => {
            set.abort_all();
            Err(StorageError::Internal(format!("part upload task: {e}")))
        }
        None => Err(StorageError::Internal("no part upload in flight".into())),
    }
}

/// Aborts a multipart upload so no parts linger; a failure is logged.
async fn abort(st: &Storage, key: &ObjectKey, upload_id: &str) {
    for attempt in 1..=3 {
        match st
            .s3
            .abort_multipart_upload()
            .bucket(&st.bucket)
            .key(key.full())
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => return,
            Err(e) => {
                let e = classify("AbortMultipartUpload", key.relative(), e);
                if matches!(e, StorageError::NotFound(_)) {
                    return;
                }
                tracing::warn!(key = %key, upload_id, attempt, "abort of a failed multipart upload failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_stay_within_ten_thousand_parts() {
        let mib = 1024 * 1024;
        assert_eq!(part_size_for(None), 8 * mib);
        assert_eq!(part_size_for(Some(100 * mib)), 8 * mib);
        let five_tib = 5 * 1024 * 1024 * mib;
        let p = part_size_for(Some(five_tib));
        assert!(five_tib.div_ceil(p) <= MAX_PARTS);
        assert_eq!(p % mib, 0);
    }

    #[test]
    fn crc_base64() {
        // CRC32C("123456789") = 0xE3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_base64(0xE306_9283), "4waSgw==");
    }

    #[tokio::test]
    async fn parts_are_exact_and_crc_accumulates() {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            (0..10).map(|i| Ok(Bytes::from(vec![i as u8; 7]))).collect();
        let mut r = PartReader::new(Box::pin(futures_util::stream::iter(chunks)));
        let mut all = Vec::new();
        loop {
            let p = r.next_part(16, BytesMut::new()).await.unwrap();
            if p.is_empty() {
                break;
            }
            assert!(p.len() == 16 || all.len() + p.len() == 70);
            all.extend_from_slice(&p);
        }
        assert_eq!(all.len(), 70);
        assert_eq!(r.total, 70);
        assert_eq!(r.crc, crc32c::crc32c(&all));
    }
}
