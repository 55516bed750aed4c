//! Writing objects: bytes in memory, streamed single PUTs, and multipart
//! uploads with a bounded number of parts in memory. CRC32C is computed over
//! the bytes as they pass and sent for S3 to verify.
//!
//! Memory: part buffers grow block by block as bytes arrive (never from a
//! declared length), and each one is reserved from the storage's
//! [`BufferBudget`] before it is filled. A multipart upload that ends
//! without completing (an error, or its request dropped at a deadline, by a
//! client that went away or at shutdown) is aborted.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::body::SdkBody;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http_body::Frame;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use tokio::task::JoinSet;

use super::error::classify;
use super::multipart::{AbortOnDrop, Multipart, UploadedPart, WriteCondition};
use super::{checksum_algorithm, ObjectKey, PutOptions, PutResult, Storage, StorageError};
use crate::budget::{BudgetError, BufferBudget, Reservation};

/// Bodies up to this size are read into memory before the PUT.
const IN_MEMORY_LIMIT: u64 = 1024 * 1024;
/// Objects larger than this go up in parts.
pub const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
const MIN_UPLOAD_PART: u64 = 8 * 1024 * 1024;
pub use crate::s3_limits::{MAX_OBJECT, MAX_PART};
/// S3's largest number of parts.
const MAX_PARTS: u64 = 10_000;
/// Parts uploading at once; one more is being read.
const PARTS_IN_FLIGHT: usize = 2;
/// Part buffers grow by blocks of this size, allocated as bytes arrive.
const BLOCK: usize = 1024 * 1024;

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
/// 8 MiB and large enough to stay within 10,000 parts, in whole MiB, and at
/// most S3's 5 GiB (an object that needs more is refused before upload).
pub fn part_size_for(len: Option<u64>) -> u64 {
    let mib = 1024 * 1024;
    match len {
        None => MIN_UPLOAD_PART,
        Some(len) => {
            let needed = len.div_ceil(MAX_PARTS).div_ceil(mib) * mib;
            needed.clamp(MIN_UPLOAD_PART, MAX_PART)
        }
    }
}

/// Reserves `bytes` of buffers from the storage's budget.
async fn reserve(
    budget: &BufferBudget,
    key: &ObjectKey,
    bytes: u64,
) -> Result<Reservation, StorageError> {
    budget
        .reserve(bytes)
        .await
        .map_err(|e| budget_error(key, e))
}

pub(crate) fn budget_error(key: &ObjectKey, e: BudgetError) -> StorageError {
    match e {
        BudgetError::Exhausted { .. } => StorageError::Busy(format!("{key}: {e}")),
        BudgetError::OverBudget { .. } => StorageError::TooLarge(format!(
            "{key}: its parts need more memory than this service's buffer budget ({e})"
        )),
    }
}

/// A part read into memory: blocks of at most [`BLOCK`] bytes.
#[derive(Clone, Debug, Default)]
struct Part {
    blocks: Arc<[Bytes]>,
    len: usize,
}

impl Part {
    fn crc(&self) -> u32 {
        self.blocks
            .iter()
            .fold(0, |crc, b| crc32c::crc32c_append(crc, b))
    }

    /// The part as a request body the SDK can send again on retry.
    fn body(&self) -> ByteStream {
        match &self.blocks[..] {
            [] => ByteStream::from(Bytes::new()),
            [one] => ByteStream::from(one.clone()),
            _ => {
                let part = self.clone();
                ByteStream::new(SdkBody::retryable(move || {
                    SdkBody::from_body_1_x(PartBody {
                        blocks: part.blocks.clone(),
                        next: 0,
                        remaining: part.len as u64,
                    })
                }))
            }
        }
    }
}

/// `blocks` as one request body, one frame each, in order, without
/// copying them.
pub(super) fn blocks_body(blocks: &[Bytes]) -> SdkBody {
    SdkBody::from_body_1_x(PartBody {
        blocks: blocks.into(),
        next: 0,
        remaining: blocks.iter().map(|b| b.len() as u64).sum(),
    })
}

/// The blocks of a [`Part`], one frame each, with an exact length.
struct PartBody {
    blocks: Arc<[Bytes]>,
    next: usize,
    remaining: u64,
}

impl http_body::Body for PartBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match this.blocks.get(this.next) {
            Some(b) => {
                this.next += 1;
                this.remaining -= b.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(b.clone()))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.blocks.len()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
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
    let sent = if st.unsigned_payload {
        req.customize().disable_payload_signing().send().await
    } else {
        req.send().await
    };
    let out = sent.map_err(|e| classify("PutObject", key.relative(), e))?;
    Ok(PutResult {
        key: key.relative().to_owned(),
        etag: out.e_tag,
        version_id: out.version_id,
    })
}

/// Reads a stream in parts of a fixed size, refusing more than `limit`
/// bytes in all.
struct PartReader {
    source: ByteSource,
    carry: Bytes,
    done: bool,
    crc: u32,
    total: u64,
    limit: u64,
}

impl PartReader {
    fn new(source: ByteSource, limit: u64) -> Self {
        PartReader {
            source,
            carry: Bytes::new(),
            done: false,
            crc: 0,
            total: 0,
            limit,
        }
    }

    /// The next `size` bytes, fewer only at the end; empty at the end. The
    /// part grows by blocks allocated only when bytes are in hand, so a
    /// large declared size costs nothing until the bytes arrive.
    async fn next_part(&mut self, size: usize) -> Result<Part, StorageError> {
        let mut blocks = Vec::new();
        let mut len = 0usize;
        let mut block = BytesMut::new();
        let mut block_size = 0usize;
        loop {
            if !self.carry.is_empty() && len < size {
                if block_size == 0 {
                    block_size = BLOCK.min(size - len);
                    block = BytesMut::with_capacity(block_size);
                }
                let take = (block_size - block.len()).min(self.carry.len());
                let bytes = self.carry.split_to(take);
                self.crc = crc32c::crc32c_append(self.crc, &bytes);
                block.extend_from_slice(&bytes);
                len += take;
                if block.len() == block_size {
                    blocks.push(std::mem::take(&mut block).freeze());
                    block_size = 0;
                }
                continue;
            }
            if len == size || self.done {
                break;
            }
            match self.source.next().await {
                Some(Ok(chunk)) => {
                    self.total += chunk.len() as u64;
                    if self.total > self.limit {
                        return Err(StorageError::TooLarge(format!(
                            "the object is over the limit of {} bytes (MAX_OBJECT_BYTES)",
                            self.limit
                        )));
                    }
                    self.carry = chunk;
                }
                Some(Err(e)) => return Err(StorageError::Body(e.to_string())),
                None => self.done = true,
            }
        }
        if !block.is_empty() {
            blocks.push(block.freeze());
        }
        Ok(Part {
            blocks: blocks.into(),
            len,
        })
    }

    /// Bytes handed out in parts so far.
    fn consumed(&self) -> u64 {
        self.total - self.carry.len() as u64
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
    if let Some(len) = opts.content_length {
        if len > st.max_object_bytes {
            return Err(StorageError::TooLarge(format!(
                "{key}: {len} bytes is over the limit of {} bytes (MAX_OBJECT_BYTES)",
                st.max_object_bytes
            )));
        }
    }
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
    let _held = reserve(&st.budget, key, len).await?;
    let mut reader = PartReader::new(source, len.min(st.max_object_bytes));
    let size = usize::try_from(len).unwrap_or(usize::MAX);
    // The HTTP server holds the body to its Content-Length; fewer bytes fail
    // the length check.
    let body = reader.next_part(size).await?;
    check_end(key, opts, reader.crc, reader.total)?;
    put_in_memory(st, key, &body.blocks, len, reader.crc, opts).await
}

/// PutObject of `len` bytes held in memory (`blocks`, in order) whose
/// CRC32C is `crc`: through the storage's direct path when it has one,
/// else through the SDK.
pub(super) async fn put_in_memory(
    st: &Storage,
    key: &ObjectKey,
    blocks: &[Bytes],
    len: u64,
    crc: u32,
    opts: &PutOptions,
) -> Result<PutResult, StorageError> {
    if let Some(direct) = &st.direct {
        if let Some(done) = direct.put(key, blocks, len, crc, opts).await {
            return done;
        }
    }
    let part = Part {
        blocks: blocks.into(),
        len: usize::try_from(len).unwrap_or(usize::MAX),
    };
    put_object(st, key, part.body(), Some(crc), opts, Some(len)).await
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
    let stream = channel_stream(rx);
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

fn channel_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, StorageError>>,
) -> impl Stream<Item = Result<Frame<Bytes>, StorageError>> + Send + Sync + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A multipart upload; falls back to one PUT when the whole stream fits in
/// the first part. Any failure aborts the upload, and so does dropping the
/// request before it completes.
async fn multipart(
    st: &Storage,
    key: &ObjectKey,
    source: ByteSource,
    opts: PutOptions,
) -> Result<PutResult, StorageError> {
    if let Some(len) = opts.content_length {
        if len > MAX_PARTS * MAX_PART {
            return Err(StorageError::TooLarge(format!(
                "{key}: {len} bytes is more than {MAX_PARTS} parts of {MAX_PART} bytes"
            )));
        }
    }
    let part_size = part_size_for(opts.content_length);
    let part_usize = usize::try_from(part_size).unwrap_or(usize::MAX);
    let mut reader = PartReader::new(source, st.max_object_bytes);
    let first_held = reserve(&st.budget, key, part_size).await?;
    let first = reader.next_part(part_usize).await?;
    if first.len < part_usize {
        check_end(key, &opts, reader.crc, reader.total)?;
        let crc = reader.crc;
        let len = first.len as u64;
        let put = put_in_memory(st, key, &first.blocks, len, crc, &opts).await;
        drop(first_held);
        return put;
    }

    let upload = st.create_multipart(key, &opts.headers, true).await?;
    // From here on, a request dropped at any await aborts the upload.
    let guard = AbortOnDrop::new(&upload);
    let result = upload_parts(st, &upload, reader, (first, first_held), part_size, &opts).await;
    if result.is_err() {
        upload.abort().await;
    }
    guard.disarm();
    result
}

async fn upload_parts(
    st: &Storage,
    upload: &Multipart,
    mut reader: PartReader,
    first: (Part, Reservation),
    part_size: u64,
    opts: &PutOptions,
) -> Result<PutResult, StorageError> {
    let key = upload.key();
    let part_usize = first.0.len;
    let mut inflight: JoinSet<Result<UploadedPart, StorageError>> = JoinSet::new();
    let mut parts = Vec::new();
    let (mut next, mut held) = first;
    let mut number: i32 = 0;
    loop {
        number += 1;
        if u64::try_from(number).unwrap_or(u64::MAX) > MAX_PARTS {
            inflight.abort_all();
            return Err(StorageError::TooLarge(format!(
                "{key}: more than {MAX_PARTS} parts of {part_usize} bytes"
            )));
        }
        let crc = next.crc();
        let send = upload.upload_part(number, next.body(), next.len as u64, crc);
        // The part's buffers and their reservation go with the task and are
        // given back when its upload ends.
        let part_held = (std::mem::take(&mut next), held);
        inflight.spawn(async move {
            let part = send.await?;
            drop(part_held);
            Ok(part)
        });
        while inflight.len() >= PARTS_IN_FLIGHT {
            parts.push(join_one(&mut inflight).await?);
        }
        // The next part's buffers: free budget now, else what a part in
        // flight gives back, else wait (bounded) holding nothing.
        held = loop {
            if let Some(r) = st.budget.try_reserve(part_size) {
                break r;
            }
            if inflight.is_empty() {
                break reserve(&st.budget, key, part_size).await?;
            }
            parts.push(join_one(&mut inflight).await?);
        };
        next = match reader.next_part(part_usize).await {
            Ok(p) => p,
            Err(e) => {
                inflight.abort_all();
                return Err(e);
            }
        };
        if next.len == 0 {
            break;
        }
    }
    drop(held);
    while !inflight.is_empty() {
        parts.push(join_one(&mut inflight).await?);
    }
    debug_assert_eq!(reader.consumed(), reader.total);
    check_end(key, opts, reader.crc, reader.total)?;
    let condition = WriteCondition {
        if_none_match: opts.if_none_match,
        if_match: opts.if_match.clone(),
    };
    upload
        .complete(parts, Some(crc32c_base64(reader.crc)), &condition)
        .await
}

async fn join_one(
    set: &mut JoinSet<Result<UploadedPart, StorageError>>,
) -> Result<UploadedPart, StorageError> {
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
    fn part_sizes_are_capped() {
        assert_eq!(part_size_for(Some(u64::MAX)), MAX_PART);
        assert_eq!(part_size_for(Some(18_446_744_073_709_551_613)), MAX_PART);
        assert_eq!(part_size_for(Some(MAX_OBJECT)) % (1024 * 1024), 0);
        assert!(part_size_for(Some(MAX_OBJECT)) <= MAX_PART);
    }

    #[tokio::test]
    async fn a_part_grows_as_bytes_arrive_not_from_its_size() {
        // A part "of" usize::MAX bytes with 5 bytes in the stream: no
        // allocation in proportion to the size asked for, no panic.
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from_static(b"hello"))];
        let mut r = PartReader::new(Box::pin(futures_util::stream::iter(chunks)), u64::MAX);
        let p = r.next_part(usize::MAX).await.unwrap();
        assert_eq!(p.len, 5);
        assert_eq!(p.blocks.len(), 1);
        assert!(p.blocks[0].len() <= BLOCK);
        // Blocks are at most BLOCK bytes; their sum is the part.
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..5)
            .map(|_| Ok(Bytes::from(vec![7u8; 700 * 1024])))
            .collect();
        let mut r = PartReader::new(Box::pin(futures_util::stream::iter(chunks)), u64::MAX);
        let p = r.next_part(3 * 1024 * 1024).await.unwrap();
        assert_eq!(p.len, 3 * 1024 * 1024);
        assert!(p.blocks.iter().all(|b| b.len() <= BLOCK));
        assert_eq!(p.blocks.iter().map(Bytes::len).sum::<usize>(), p.len);
        let rest = r.next_part(3 * 1024 * 1024).await.unwrap();
        assert_eq!(rest.len, 5 * 700 * 1024 - 3 * 1024 * 1024);
    }

    #[tokio::test]
    async fn more_than_the_limit_is_refused_while_reading() {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            (0..4).map(|_| Ok(Bytes::from(vec![1u8; 1000]))).collect();
        let mut r = PartReader::new(Box::pin(futures_util::stream::iter(chunks)), 2500);
        let e = r.next_part(1 << 20).await.unwrap_err();
        assert!(matches!(e, StorageError::TooLarge(_)), "{e}");
    }

    #[tokio::test]
    async fn a_part_body_replays_its_blocks() {
        use http_body_util::BodyExt;
        let part = Part {
            blocks: vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cde")].into(),
            len: 5,
        };
        let body = part.body();
        assert_eq!(body.size_hint().1, Some(5));
        let once = body.into_inner();
        let again = once.try_clone().expect("retryable");
        assert_eq!(&once.collect().await.unwrap().to_bytes()[..], b"abcde");
        assert_eq!(&again.collect().await.unwrap().to_bytes()[..], b"abcde");
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
        let mut r = PartReader::new(Box::pin(futures_util::stream::iter(chunks)), u64::MAX);
        let mut all = Vec::new();
        loop {
            let p = r.next_part(16).await.unwrap();
            if p.len == 0 {
                break;
            }
            assert!(p.len == 16 || all.len() + p.len == 70);
            let mut crc = 0;
            for b in p.blocks.iter() {
                all.extend_from_slice(b);
                crc = crc32c::crc32c_append(crc, b);
            }
            assert_eq!(crc, p.crc());
        }
        assert_eq!(all.len(), 70);
        assert_eq!(r.total, 70);
        assert_eq!(r.crc, crc32c::crc32c(&all));
    }
}
