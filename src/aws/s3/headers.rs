//! The rules for what callers may store beside an object: user-metadata
//! names and values, and Content-Type.

use std::collections::HashMap;

use super::StorageError;

/// Metadata names beginning with this (any letter case) are reserved for
/// replication (`goog-generation`, `goog-bucket`).
pub(crate) const RESERVED_METADATA_PREFIX: &str = "goog-";

/// The most user metadata (names and values) a caller may set.
const USER_METADATA_LIMIT: usize = 2048;

/// Checks user metadata: token names, printable ASCII values, 2 KiB in all.
/// Returns the metadata with its names lower-case.
pub(crate) fn validate_metadata(
    metadata: &HashMap<String, String>,
) -> Result<HashMap<String, String>, StorageError> {
    let mut out = HashMap::new();
    let mut size = 0;
    for (k, v) in metadata {
        let name = metadata_name(k, v)?;
        size += name.len() + v.len();
        out.insert(name, v.clone());
    }
    if size > USER_METADATA_LIMIT {
        return Err(StorageError::InvalidMetadata(
            "user metadata is over 2 KiB".into(),
        ));
    }
    Ok(out)
}

/// Checks one user-metadata entry: a token name (returned lower-case), not
/// reserved (`goog-*`), and a printable ASCII value.
pub(crate) fn metadata_name(k: &str, v: &str) -> Result<String, StorageError> {
    let name = k.to_ascii_lowercase();
    if name.starts_with(RESERVED_METADATA_PREFIX) {
        return Err(StorageError::InvalidMetadata(format!(
            "metadata name {k:?} is reserved: goog-* names are set by replication only"
        )));
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b))
    {
        return Err(StorageError::InvalidMetadata(format!(
            "metadata name {k:?} must be letters, digits and - _ . only"
        )));
    }
    if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(StorageError::InvalidMetadata(format!(
            "metadata value of {k:?} must be printable ASCII"
        )));
    }
    Ok(name)
}

/// Checks a Content-Type value: printable ASCII, 1 to 256 bytes.
pub(crate) fn validate_content_type(ct: Option<String>) -> Result<Option<String>, StorageError> {
    match ct {
        Some(c)
            if c.is_empty() || c.len() > 256 || !c.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
        {
            Err(StorageError::InvalidContentType(
                "content_type must be printable ASCII, at most 256 bytes".into(),
            ))
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_rules() {
        let mut m = HashMap::new();
        m.insert("Owner".to_string(), "team-a".to_string());
        assert_eq!(validate_metadata(&m).unwrap()["owner"], "team-a");
        m.insert("bad name".to_string(), "x".to_string());
        assert!(matches!(
            validate_metadata(&m),
            Err(StorageError::InvalidMetadata(_))
        ));
    }

    #[test]
    fn goog_metadata_is_reserved_in_any_case() {
        for name in [
            "goog-generation",
            "Goog-Generation",
            "GOOG-BUCKET",
            "goog-x",
        ] {
            let m = HashMap::from([(name.to_string(), "1".to_string())]);
            let e = validate_metadata(&m).unwrap_err();
            assert!(matches!(e, StorageError::InvalidMetadata(_)), "{name}");
        }
        let m = HashMap::from([("googly".to_string(), "1".to_string())]);
        assert!(validate_metadata(&m).is_ok());
    }

    #[test]
    fn content_types() {
        assert_eq!(
            validate_content_type(Some("text/plain".into())).unwrap(),
            Some("text/plain".into())
        );
        assert_eq!(validate_content_type(None).unwrap(), None);
        assert!(validate_content_type(Some(String::new())).is_err());
        assert!(validate_content_type(Some("a\u{7f}".into())).is_err());
    }
}
