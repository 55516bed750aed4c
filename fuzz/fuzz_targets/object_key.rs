//! Object keys: the input is a prefix, a NUL byte, then the relative key.
//! A key that is accepted is the prefix followed by the key, at most 1024
//! bytes, without control characters, and without `.` or `..` segments.
#![no_main]

use gcp_aws_bridge::aws::s3::ObjectKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (prefix, key) = s.split_once('\0').unwrap_or(("allowed/fuzz/", s));
    if let Ok(k) = ObjectKey::new(prefix, key) {
        assert_eq!(k.full(), format!("{prefix}{key}"));
        assert_eq!(k.relative(), key);
        assert!(k.full().len() <= 1024, "{} bytes", k.full().len());
        assert!(!key.is_empty());
        assert!(!key.starts_with('/'));
        assert!(!key.chars().any(char::is_control), "{key:?}");
        assert!(
            !key.split('/').any(|seg| seg == "." || seg == ".."),
            "{key:?}"
        );
    }
});
