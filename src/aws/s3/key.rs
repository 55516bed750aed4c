//! Object keys: relative to `S3_PREFIX` in requests and responses,
//! validated before anything reaches S3.

use std::fmt;

/// The longest S3 key, in bytes (prefix included).
pub const MAX_KEY_BYTES: usize = 1024;

/// The relative key prefix of the service's own bookkeeping (sync runs,
/// part uploads in progress): refused in requests, skipped by sync, expired
/// by the Terraform's lifecycle rule.
pub const RESERVED_PREFIX: &str = ".gcp-aws-bridge/";

/// A validated key: the caller's relative key and the full S3 key.
#[derive(Clone, PartialEq, Eq)]
pub struct ObjectKey {
    relative: String,
    full: String,
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.relative)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.relative)
    }
}

/// Why a key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Empty key.
    #[error("the key is empty")]
    Empty,
    /// Prefix + key over 1024 bytes.
    #[error("the key is too long: prefix and key make {0} bytes, over 1024")]
    TooLong(usize),
    /// A control character.
    #[error("the key has a control character")]
    ControlCharacter,
    /// Starts with '/'.
    #[error("the key starts with '/'")]
    LeadingSlash,
    /// A `.` or `..` segment.
    #[error("the key has a '.' or '..' segment")]
    DotSegment,
    /// Under the service's own `.gcp-aws-bridge/` prefix.
    #[error("keys under .gcp-aws-bridge/ are reserved for the service's own bookkeeping")]
    Reserved,
}

impl ObjectKey {
    /// Validates `relative` under `prefix`: refused when empty, when prefix +
    /// key is over 1024 bytes, with a control character, a leading `/`, or a
    /// `.` or `..` segment.
    pub fn new(prefix: &str, relative: &str) -> Result<ObjectKey, KeyError> {
        if relative.is_empty() {
            return Err(KeyError::Empty);
        }
        check(prefix, relative)?;
        Ok(ObjectKey {
            relative: relative.to_owned(),
            full: [prefix, relative].concat(),
        })
    }

    /// A key of the service's own bookkeeping: `.gcp-aws-bridge/{rest}`
    /// under `prefix`. `rest` is the service's own text, never a caller's.
    pub(crate) fn reserved(prefix: &str, rest: &str) -> ObjectKey {
        let relative = format!("{RESERVED_PREFIX}{rest}");
        ObjectKey {
            full: format!("{prefix}{relative}"),
            relative,
        }
    }

    /// The key as the caller names it.
    pub fn relative(&self) -> &str {
        &self.relative
    }

    /// The S3 key (prefix + relative).
    pub fn full(&self) -> &str {
        &self.full
    }
}

/// The rules keys and listing prefixes share: no control character, no
/// leading `/`, no `.` or `..` segment, prefix + key at most 1024 bytes.
fn check(prefix: &str, relative: &str) -> Result<(), KeyError> {
    if relative.chars().any(char::is_control) {
        return Err(KeyError::ControlCharacter);
    }
    if relative.starts_with('/') {
        return Err(KeyError::LeadingSlash);
    }
    if relative.split('/').any(|s| s == "." || s == "..") {
        return Err(KeyError::DotSegment);
    }
    if is_reserved(relative) {
        return Err(KeyError::Reserved);
    }
    let len = prefix.len() + relative.len();
    if len > MAX_KEY_BYTES {
        return Err(KeyError::TooLong(len));
    }
    Ok(())
}

/// Whether a relative key (or listing prefix) names the reserved
/// `.gcp-aws-bridge/` prefix. Listings under a shorter prefix (`""`, `.`)
/// leave the reserved keys out of their answers instead.
pub fn is_reserved(relative: &str) -> bool {
    relative == RESERVED_PREFIX.trim_end_matches('/') || relative.starts_with(RESERVED_PREFIX)
}

/// Validates a listing prefix (may be empty) and returns the full S3 prefix.
pub fn list_prefix(prefix: &str, relative: &str) -> Result<String, KeyError> {
    check(prefix, relative)?;
    Ok(format!("{prefix}{relative}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_keys() {
        let k = ObjectKey::new("data/", "a/b c/ü.txt").unwrap();
        assert_eq!(k.full(), "data/a/b c/ü.txt");
        assert_eq!(k.relative(), "a/b c/ü.txt");
        assert!(ObjectKey::new("", "..a/b..").is_ok());
        assert!(ObjectKey::new("", &"x".repeat(1024)).is_ok());
    }

    #[test]
    fn refused_keys() {
        let p = "pre/";
        assert_eq!(ObjectKey::new(p, ""), Err(KeyError::Empty));
        assert_eq!(ObjectKey::new(p, "/a"), Err(KeyError::LeadingSlash));
        assert_eq!(ObjectKey::new(p, "a\nb"), Err(KeyError::ControlCharacter));
        assert_eq!(
            ObjectKey::new(p, "a\u{7f}"),
            Err(KeyError::ControlCharacter)
        );
        assert_eq!(
            ObjectKey::new(p, "a\u{85}"),
            Err(KeyError::ControlCharacter)
        );
        for k in [".", "..", "a/./b", "a/../b", "a/..", "./a"] {
            assert_eq!(ObjectKey::new(p, k), Err(KeyError::DotSegment), "{k}");
        }
        assert_eq!(
            ObjectKey::new(p, &"x".repeat(1021)),
            Err(KeyError::TooLong(1025))
        );
        // 1024 bytes counted in UTF-8, not characters.
        assert!(ObjectKey::new("", &"é".repeat(513)).is_err());
    }

    #[test]
    fn the_reserved_prefix_is_refused() {
        for k in [
            ".gcp-aws-bridge",
            ".gcp-aws-bridge/",
            ".gcp-aws-bridge/sync/x",
        ] {
            assert_eq!(ObjectKey::new("p/", k), Err(KeyError::Reserved), "{k}");
        }
        assert!(list_prefix("p/", ".gcp-aws-bridge/").is_err());
        assert!(list_prefix("p/", ".gcp").is_ok());
        for k in [
            ".gcp-aws-bridgeX",
            "a/.gcp-aws-bridge/x",
            ".hidden",
            ".g",
            "x",
        ] {
            assert!(ObjectKey::new("p/", k).is_ok(), "{k}");
        }
        let r = ObjectKey::reserved("p/", "sync/r/1");
        assert_eq!(r.full(), "p/.gcp-aws-bridge/sync/r/1");
    }

    #[test]
    fn listing_prefixes() {
        assert_eq!(list_prefix("pre/", "").unwrap(), "pre/");
        assert_eq!(list_prefix("pre/", "a/").unwrap(), "pre/a/");
        assert!(list_prefix("pre/", "../").is_err());
    }
}
