//! Copies within the bucket: one CopyObject up to S3's 5 GiB limit, a
//! multipart copy (`UploadPartCopy`, byte ranges of the source, S3 moves
//! the bytes) beyond it, up to S3's 5 TiB object limit.

use aws_sdk_s3::types::MetadataDirective;
use futures_util::{StreamExt, TryStreamExt};

use super::error::classify;
use super::headers::RESERVED_METADATA_PREFIX;
use super::multipart::{AbortOnDrop, Multipart, UploadedPart, WriteCondition};
use super::upload::{part_size_for, KEY_ENCODE};
use super::{ObjectHeaders, ObjectInfo, ObjectKey, PutResult, Storage, StorageError};

pub(crate) use crate::s3_limits::COPY_MULTIPART_THRESHOLD;
use crate::s3_limits::MAX_OBJECT;
/// Preferred part size of a multipart copy (S3 copies it internally).
const COPY_PART: u64 = 512 * 1024 * 1024;
/// Part copies in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

pub(super) async fn copy(
    st: &Storage,
    source: &ObjectKey,
    dest: &ObjectKey,
) -> Result<PutResult, StorageError> {
    let info = st.head(source).await.map_err(|e| match e {
        StorageError::NotFound(_) => {
            StorageError::NotFound(format!("no such source object: {source}"))
        }
        other => other,
    })?;
    // The copy is the caller's object, never a replica: the names
    // replication reserves stay behind.
    let mut headers = info.headers.clone();
    headers
        .metadata
        .retain(|k, _| !k.to_ascii_lowercase().starts_with(RESERVED_METADATA_PREFIX));
    copy_with(st, source, dest, &info, headers, None).await
}

/// Copies `key` onto itself with `headers` in place of its own, only while
/// it is the object `seen`.
pub(super) async fn replace_headers(
    st: &Storage,
    key: &ObjectKey,
    seen: &ObjectInfo,
    headers: ObjectHeaders,
) -> Result<PutResult, StorageError> {
    // The source is the object itself: a changed or missing source is a
    // changed object (PreconditionFailed, NotFound), left as such.
    copy_with(st, key, key, seen, headers, Some(seen.etag.clone())).await
}

/// Copies the object `info` describes from `source` to `dest` with
/// `headers` (MetadataDirective REPLACE), reading only the version `info`
/// saw. `onto` is `Some` for a copy onto the source itself: a multipart
/// copy then completes only over that ETag, and a changed source answers as
/// a changed object.
async fn copy_with(
    st: &Storage,
    source: &ObjectKey,
    dest: &ObjectKey,
    info: &ObjectInfo,
    headers: ObjectHeaders,
    onto: Option<Option<String>>,
) -> Result<PutResult, StorageError> {
    let copy_source = format!(
        "{}/{}",
        st.bucket,
        percent_encoding::utf8_percent_encode(source.full(), KEY_ENCODE)
    );
    if info.size > MAX_OBJECT {
        return Err(StorageError::TooLarge(format!(
            "{source} is over 5 TiB, S3's object limit"
        )));
    }
    if info.size <= st.copy_threshold {
        return copy_whole(
            st,
            source,
            dest,
            &copy_source,
            info,
            headers,
            onto.is_some(),
        )
        .await;
    }
    copy_in_parts(st, source, dest, &copy_source, info, headers, onto).await
}

async fn copy_whole(
    st: &Storage,
    source: &ObjectKey,
    dest: &ObjectKey,
    copy_source: &str,
    info: &ObjectInfo,
    h: ObjectHeaders,
    onto_itself: bool,
) -> Result<PutResult, StorageError> {
    let out = st
        .s3
        .copy_object()
        .bucket(&st.bucket)
        .key(dest.full())
        .copy_source(copy_source)
        .set_copy_source_if_match(info.etag.clone())
        .metadata_directive(MetadataDirective::Replace)
        .set_content_type(h.content_type)
        .set_content_encoding(h.content_encoding)
        .set_content_disposition(h.content_disposition)
        .set_cache_control(h.cache_control)
        .set_content_language(h.content_language)
        .set_metadata((!h.metadata.is_empty()).then_some(h.metadata))
        .send()
        .await
        .map_err(|e| {
            let e = classify("CopyObject", source.relative(), e);
            if onto_itself {
                e
            } else {
                source_error(e, source)
            }
        })?;
    Ok(PutResult {
        key: dest.relative().to_owned(),
        etag: out.copy_object_result.and_then(|r| r.e_tag),
        version_id: out.version_id,
    })
}

/// A failure naming the source: missing, or changed while it was copied.
fn source_error(e: StorageError, source: &ObjectKey) -> StorageError {
    match e {
        StorageError::NotFound(_) => {
            StorageError::NotFound(format!("no such source object: {source}"))
        }
        StorageError::PreconditionFailed(_) => StorageError::Unavailable(format!(
            "the source {source} changed during the copy; try again"
        )),
        other => other,
    }
}

/// Part ranges `[start, end]` (inclusive) for an object of `size` bytes.
fn part_ranges(size: u64, threshold: u64) -> Vec<(u64, u64)> {
    let part = part_size_for(Some(size)).max(COPY_PART.min(threshold));
    (0..size.div_ceil(part))
        .map(|i| (i * part, ((i + 1) * part).min(size) - 1))
        .collect()
}

async fn copy_in_parts(
    st: &Storage,
    source: &ObjectKey,
    dest: &ObjectKey,
    copy_source: &str,
    info: &ObjectInfo,
    h: ObjectHeaders,
    onto: Option<Option<String>>,
) -> Result<PutResult, StorageError> {
    let upload = st.create_multipart(dest, &h, false).await?;
    // From here on, a request dropped at any await aborts the upload.
    let guard = AbortOnDrop::new(&upload);
    let result = copy_parts(st, source, copy_source, info, &upload, onto).await;
    if result.is_err() {
        upload.abort().await;
    }
    guard.disarm();
    result
}

async fn copy_parts(
    st: &Storage,
    source: &ObjectKey,
    copy_source: &str,
    info: &ObjectInfo,
    upload: &Multipart,
    onto: Option<Option<String>>,
) -> Result<PutResult, StorageError> {
    let onto_itself = onto.is_some();
    let ranges = part_ranges(info.size, st.copy_threshold);
    let parts: Vec<UploadedPart> =
        futures_util::stream::iter(ranges.into_iter().enumerate().map(|(i, range)| {
            let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
            // Every part from the version that was looked at.
            let copied = upload.copy_part(number, copy_source, range, info.etag.clone(), source);
            async move {
                copied.await.map_err(|e| {
                    if onto_itself {
                        e
                    } else {
                        source_error(e, source)
                    }
                })
            }
        }))
        .buffer_unordered(PARTS_IN_FLIGHT)
        .try_collect()
        .await?;
    let condition = WriteCondition {
        if_none_match: false,
        if_match: onto.flatten(),
    };
    upload.complete(parts, None, &condition).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_object_within_ten_thousand_parts() {
        let mib = 1024 * 1024;
        for (size, threshold) in [
            (6 * 1024 * mib, COPY_MULTIPART_THRESHOLD),
            (MAX_OBJECT, COPY_MULTIPART_THRESHOLD),
            (12 * mib + 3, 5 * mib),
        ] {
            let r = part_ranges(size, threshold);
            assert!(r.len() <= 10_000, "{size}: {} parts", r.len());
            assert_eq!(r[0].0, 0);
            assert_eq!(r.last().unwrap().1, size - 1);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0);
                // S3: parts of 5 MiB to 5 GiB, the last one smaller.
                let len = w[0].1 - w[0].0 + 1;
                assert!((5 * mib..=5 * 1024 * mib).contains(&len), "{len}");
            }
        }
        assert_eq!(part_ranges(12 * mib + 3, 5 * mib).len(), 2);
    }
}
