//! S3's documented limits, checked by the configuration and by the storage
//! layer.

/// S3's largest object (5 TiB), the default of `MAX_OBJECT_BYTES`.
pub const MAX_OBJECT: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// S3's largest part (5 GiB).
pub const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;
/// S3's smallest part, but for the last one (5 MiB).
pub(crate) const MIN_PART: u64 = 5 * 1024 * 1024;
/// The largest object one CopyObject copies (5 GiB); larger ones go part by
/// part.
pub(crate) const COPY_MULTIPART_THRESHOLD: u64 = 5 * 1024 * 1024 * 1024;
