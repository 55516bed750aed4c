//! Which Cloud Storage buckets replication may read (`GCS_SOURCE_BUCKETS`),
//! and Cloud Storage's bucket-name rules.
//!
//! `GCS_SOURCE_BUCKETS=my-uploads,other-bucket` allows those two;
//! `GCS_SOURCE_BUCKETS=*` allows any bucket the service account can read;
//! unset or empty turns replication off. Every replicate command, Storage
//! notification and CloudEvent is checked with [`SourceBuckets::check`]
//! before anything is read: a name that breaks the naming rules is refused
//! (400 `invalid_bucket`), a bucket not allowed likewise (403
//! `source_bucket_not_allowed`).

/// The buckets replication may read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum SourceBuckets {
    /// Replication is off (`GCS_SOURCE_BUCKETS` unset or empty).
    #[default]
    Off,
    /// Any bucket (`*`).
    Any,
    /// These buckets only.
    Only(Vec<String>),
}

/// Why a bucket is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketRefusal {
    /// The name breaks Cloud Storage's naming rules.
    #[error("{0}")]
    Invalid(String),
    /// The bucket is not in `GCS_SOURCE_BUCKETS`.
    #[error("{0}")]
    NotAllowed(String),
}

impl SourceBuckets {
    /// Reads the comma-separated list; an entry that is not a valid bucket
    /// name (nor `*`) is an error, one line per entry.
    pub(crate) fn parse(value: Option<&str>) -> Result<SourceBuckets, Vec<String>> {
        let entries: Vec<&str> = value
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if entries.is_empty() {
            return Ok(SourceBuckets::Off);
        }
        if entries.contains(&"*") {
            return Ok(SourceBuckets::Any);
        }
        let mut errors = Vec::new();
        let mut names = Vec::new();
        for e in entries {
            match validate_bucket_name(e) {
                Ok(()) => names.push(e.to_owned()),
                Err(why) => errors.push(format!("GCS_SOURCE_BUCKETS: {why}")),
            }
        }
        if errors.is_empty() {
            Ok(SourceBuckets::Only(names))
        } else {
            Err(errors)
        }
    }

    /// Whether replication may read `bucket`: its name must follow Cloud
    /// Storage's rules, and the bucket must be allowed.
    pub(crate) fn check(&self, bucket: &str) -> Result<(), BucketRefusal> {
        validate_bucket_name(bucket).map_err(BucketRefusal::Invalid)?;
        match self {
            SourceBuckets::Any => Ok(()),
            SourceBuckets::Only(names) if names.iter().any(|n| n == bucket) => Ok(()),
            SourceBuckets::Only(_) => Err(BucketRefusal::NotAllowed(format!(
                "replication from bucket {bucket:?} is not allowed (GCS_SOURCE_BUCKETS)"
            ))),
            SourceBuckets::Off => Err(BucketRefusal::NotAllowed(format!(
                "replication is off (GCS_SOURCE_BUCKETS is unset); bucket {bucket:?} is not allowed"
            ))),
        }
    }
}

/// Checks a name against Cloud Storage's bucket-naming rules: 3–63
/// characters (up to 222 with dots, each dot-separated part at most 63) of
/// lower-case letters, digits, `-`, `_` and `.`, starting and ending with a
/// letter or digit; not an IP address in dotted-decimal form; not starting
/// with `goog`; not containing `google` or a close misspelling of it.
pub(crate) fn validate_bucket_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{name:?} is not a Cloud Storage bucket name: {why}"
        ))
    };
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    {
        return bad("only lower-case letters, digits, '-', '_' and '.' are allowed");
    }
    let max = if name.contains('.') { 222 } else { 63 };
    if name.len() < 3 || name.len() > max {
        return bad("3 to 63 characters (222 with dots)");
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return bad("it must start and end with a letter or digit");
    }
    if name
        .split('.')
        .any(|part| part.is_empty() || part.len() > 63)
    {
        return bad("each dot-separated part has 1 to 63 characters");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("an IP address is not a bucket name");
    }
    if name.starts_with("goog") {
        return bad("names starting with \"goog\" are reserved");
    }
    // "google" and the look-alikes with zeros for the o's.
    let folded = name.replace('0', "o");
    if folded.contains("google") {
        return bad("names containing \"google\" are reserved");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_name_rules() {
        for ok in [
            "abc",
            "my-bucket_1",
            "a.b.c",
            "0zero9",
            &"a".repeat(63),
            &format!("{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63)),
            "1.2.3.4a",
        ] {
            assert_eq!(validate_bucket_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "ab",
            "Upper",
            "has space",
            "-dash",
            "dash-",
            "_under",
            "dot.",
            "a..b",
            &"a".repeat(64),
            &format!("{}.b", "a".repeat(64)),
            &format!("{}.{}", "a".repeat(150), "b".repeat(73)),
            "192.168.5.4",
            "goog-bucket",
            "googbucket",
            "my-google-bucket",
            "g00gle-files",
            "go0gle",
            "a/b",
            "ü-bucket",
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn refusals_answer_400_for_a_bad_name_and_403_for_one_not_listed() {
        use crate::http::error::AppError;
        let list = |v: &str| SourceBuckets::parse(Some(v)).unwrap();
        let c = list("src-1,other");
        assert!(c.check("src-1").is_ok());
        let e = AppError::from(c.check("src-2").unwrap_err());
        assert_eq!(
            (e.status().as_u16(), e.code().as_str()),
            (403, "source_bucket_not_allowed")
        );
        for bad in ["UPPER", "a", "-x-", "a..b", "goog-x", "has space"] {
            let e = AppError::from(c.check(bad).unwrap_err());
            assert_eq!(
                (e.status().as_u16(), e.code().as_str()),
                (400, "invalid_bucket"),
                "{bad}"
            );
        }
        assert!(list("*").check("any-bucket.example").is_ok());
        let off = SourceBuckets::parse(Some("")).unwrap();
        assert_eq!(
            AppError::from(off.check("src-1").unwrap_err())
                .code()
                .as_str(),
            "source_bucket_not_allowed"
        );
    }

    #[test]
    fn the_list_decides() {
        assert_eq!(SourceBuckets::parse(None), Ok(SourceBuckets::Off));
        assert_eq!(SourceBuckets::parse(Some(" , ")), Ok(SourceBuckets::Off));
        assert_eq!(SourceBuckets::parse(Some("*")), Ok(SourceBuckets::Any));
        let only = SourceBuckets::parse(Some("src-a, src-b")).unwrap();
        assert_eq!(only.check("src-a"), Ok(()));
        assert_eq!(only.check("src-b"), Ok(()));
        assert!(matches!(
            only.check("other"),
            Err(BucketRefusal::NotAllowed(_))
        ));
        assert!(matches!(
            only.check("Bad_Name"),
            Err(BucketRefusal::Invalid(_))
        ));
        assert!(matches!(
            SourceBuckets::Off.check("src-a"),
            Err(BucketRefusal::NotAllowed(_))
        ));
        assert!(matches!(
            SourceBuckets::Any.check("goog"),
            Err(BucketRefusal::Invalid(_))
        ));
        assert_eq!(SourceBuckets::Any.check("anything"), Ok(()));
        let e = SourceBuckets::parse(Some("ok-bucket,UPPER,google-x")).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().all(|l| l.starts_with("GCS_SOURCE_BUCKETS:")));
    }

    #[test]
    fn refusals_map_to_400_and_403() {
        use crate::http::error::AppError;
        let e: AppError = SourceBuckets::Off.check("src-a").unwrap_err().into();
        assert_eq!(e.status(), 403);
        assert_eq!(e.code().as_str(), "source_bucket_not_allowed");
        let e: AppError = SourceBuckets::Any.check("A").unwrap_err().into();
        assert_eq!(e.status(), 400);
        assert_eq!(e.code().as_str(), "invalid_bucket");
    }
}
