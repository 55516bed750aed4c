//! `Range` header values: the parser never panics, an accepted range is one
//! range whose canonical form parses back to itself, and `START <= END`.
#![no_main]

use gcp_aws_bridge::aws::s3::ByteRange;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = ByteRange::parse(s) {
        let canonical = r.to_string();
        assert_eq!(ByteRange::parse(&canonical), Ok(r), "{s:?} -> {canonical}");
        assert!(canonical.starts_with("bytes="));
        match r {
            ByteRange::FromTo(start, end) => assert!(start <= end, "{s:?}"),
            ByteRange::Suffix(n) => assert!(n > 0, "{s:?}"),
            ByteRange::From(_) => {}
        }
        assert!(!s.contains(','), "{s:?} names several ranges");
    }
});
