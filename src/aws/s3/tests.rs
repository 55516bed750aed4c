//! [`Storage`] against an in-memory S3 on 127.0.0.1 (the test kit's
//! [`S3Fake`]): key confinement, the answers of each operation, the
//! classification of S3's errors, and conditional writes and deletes.

use super::*;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bridge_testkit::S3Fake;

pub(crate) const BUCKET: &str = "b";
pub(crate) const PREFIX: &str = "p/";

/// A storage confined to `b` and `p/` at a new fake.
async fn storage() -> (Storage, S3Fake) {
    let fake = S3Fake::start().await;
    (storage_at(&fake), fake)
}

/// A storage confined to `b` and `p/` at `fake`, retries off so that one
/// scripted fault is the answer.
pub(crate) fn storage_at(fake: &S3Fake) -> Storage {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDFAKE", "fake-secret", None, None, "t"))
        .http_client(crate::aws::http_client())
        .endpoint_url(fake.url())
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    Storage::new(
        aws_sdk_s3::Client::from_conf(conf),
        BUCKET.into(),
        PREFIX.into(),
        CredentialsExpiry::default(),
    )
}

async fn put(st: &Storage, key: &str, body: &str) -> PutResult {
    let k = st.key(key).unwrap();
    st.put_bytes(&k, Bytes::from(body.to_owned()), PutOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn keys_are_confined_under_the_prefix() {
    let (st, fake) = storage().await;
    for bad in [
        "",
        "/abs",
        "a/../b",
        "./a",
        ".gcp-aws-bridge/run",
        "a\u{7}b",
    ] {
        let e = st.key(bad).unwrap_err();
        assert!(matches!(e, StorageError::InvalidKey(_)), "{bad:?}: {e:?}");
    }
    let long = "k".repeat(MAX_KEY_BYTES - PREFIX.len() + 1);
    assert!(matches!(
        st.key(&long),
        Err(StorageError::InvalidKey(KeyError::TooLong(_)))
    ));
    let written = put(&st, "dir/a.txt", "hello").await;
    assert_eq!(written.key, "dir/a.txt", "answers name the relative key");
    assert_eq!(fake.keys(BUCKET), ["p/dir/a.txt"]);
    assert!(fake.requests().iter().all(|r| r.contains("/b/p/")));
}

#[tokio::test]
async fn put_then_get_head_and_range() {
    let (st, fake) = storage().await;
    let k = st.key("obj").unwrap();
    let mut metadata = HashMap::new();
    metadata.insert("team".to_owned(), "x".to_owned());
    let opts = PutOptions {
        headers: ObjectHeaders {
            content_type: Some("text/plain".into()),
            metadata,
            ..ObjectHeaders::default()
        },
        ..PutOptions::default()
    };
    let written = st
        .put_bytes(&k, Bytes::from_static(b"0123456789"), opts)
        .await
        .unwrap();
    let stored = fake.object(BUCKET, "p/obj").unwrap();
    assert_eq!(written.etag.as_deref(), Some(stored.etag.as_str()));
    assert_eq!(stored.metadata["team"], "x");

    let got = st.get(&k, None).await.unwrap();
    assert_eq!(got.info.size, 10);
    assert_eq!(got.info.headers.content_type.as_deref(), Some("text/plain"));
    assert_eq!(got.info.headers.metadata["team"], "x");
    assert_eq!(got.body.collect().await.unwrap().into_bytes(), "0123456789");

    let part = st.get(&k, Some("bytes=2-4")).await.unwrap();
    assert_eq!(part.content_range.as_deref(), Some("bytes 2-4/10"));
    assert_eq!(part.info.size, 10, "the size is the whole object's");
    assert_eq!(part.content_length, Some(3));
    assert_eq!(part.body.collect().await.unwrap().into_bytes(), "234");

    let info = st.head(&k).await.unwrap();
    assert_eq!((info.key.as_str(), info.size), ("obj", 10));
    assert_eq!(info.etag, written.etag);
}

#[tokio::test]
async fn a_bad_range_is_refused_before_s3_and_an_unsatisfiable_one_by_s3() {
    let (st, fake) = storage().await;
    put(&st, "obj", "0123").await;
    let k = st.key("obj").unwrap();
    let before = fake.requests().len();
    let e = st.get(&k, Some("lines=1-2")).await.unwrap_err();
    assert!(matches!(e, StorageError::InvalidArgument(_)), "{e:?}");
    assert_eq!(fake.requests().len(), before, "no request for a bad range");
    let e = st.get(&k, Some("bytes=10-20")).await.unwrap_err();
    assert!(matches!(e, StorageError::InvalidRange(_)), "{e:?}");
}

#[tokio::test]
async fn missing_objects_answer_not_found_and_delete_succeeds() {
    let (st, _fake) = storage().await;
    let k = st.key("absent").unwrap();
    assert!(matches!(
        st.get(&k, None).await.unwrap_err(),
        StorageError::NotFound(_)
    ));
    assert!(matches!(
        st.head(&k).await.unwrap_err(),
        StorageError::NotFound(_)
    ));
    assert_eq!(st.head_opt(&k).await.unwrap(), None);
    st.delete(&k).await.unwrap();
    assert_eq!(st.read_record(&k, 100).await.unwrap(), None);
}

#[tokio::test]
async fn a_head_refused_with_403_is_settled_by_a_listing() {
    let (st, fake) = storage().await;
    let k = st.key("maybe").unwrap();
    // Not listed: missing.
    fake.fail_next(403, "AccessDenied");
    assert_eq!(st.head_opt(&k).await.unwrap(), None);
    // Listed: the refusal stands.
    put(&st, "maybe", "x").await;
    fake.fail_next(403, "AccessDenied");
    let e = st.head_opt(&k).await.unwrap_err();
    assert!(matches!(e, StorageError::AccessDenied(_)), "{e:?}");
    // The listing refused too: the refusal stands.
    fake.fail_next(403, "AccessDenied");
    fake.fail_next(403, "AccessDenied");
    let e = st.head_opt(&k).await.unwrap_err();
    assert!(matches!(e, StorageError::AccessDenied(_)), "{e:?}");
}

#[tokio::test]
async fn s3_errors_are_classified() {
    let (st, fake) = storage().await;
    let k = st.key("obj").unwrap();
    let unavailable = || StorageError::Unavailable(String::new());
    let table = [
        (503, "SlowDown", unavailable()),
        (500, "InternalError", unavailable()),
        (
            429,
            "TooManyRequests",
            StorageError::Throttled(String::new()),
        ),
        (
            403,
            "AccessDenied",
            StorageError::AccessDenied(String::new()),
        ),
        (
            409,
            "OperationAborted",
            StorageError::Conflict(String::new()),
        ),
        (
            400,
            "BadDigest",
            StorageError::IntegrityMismatch(String::new()),
        ),
        (
            400,
            "MetadataTooLarge",
            StorageError::InvalidArgument(String::new()),
        ),
        (400, "EntityTooLarge", StorageError::TooLarge(String::new())),
        (404, "NoSuchBucket", unavailable()),
    ];
    for (status, code, expected) in table {
        fake.fail_next(status, code);
        let e = st
            .put_bytes(&k, Bytes::from_static(b"x"), PutOptions::default())
            .await
            .unwrap_err();
        assert_eq!(
            std::mem::discriminant(&e),
            std::mem::discriminant(&expected),
            "{status} {code}: {e:?}"
        );
    }
    assert!(
        fake.object(BUCKET, "p/obj").is_none(),
        "nothing was written"
    );
}

#[tokio::test]
async fn a_closed_port_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDFAKE", "fake-secret", None, None, "t"))
        .http_client(crate::aws::http_client())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .build();
    let st = Storage::new(
        aws_sdk_s3::Client::from_conf(conf),
        BUCKET.into(),
        PREFIX.into(),
        CredentialsExpiry::default(),
    );
    let e = st.head(&st.key("k").unwrap()).await.unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
    assert!(!format!("{e:?}").contains("fake-secret"));
}

#[tokio::test]
async fn a_crc32c_mismatch_writes_nothing() {
    let (st, fake) = storage().await;
    let k = st.key("obj").unwrap();
    let opts = PutOptions {
        expected_crc32c: Some(crc32c::crc32c(b"other bytes")),
        ..PutOptions::default()
    };
    let e = st
        .put_bytes(&k, Bytes::from_static(b"the bytes"), opts)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::IntegrityMismatch(_)), "{e:?}");
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test]
async fn records_are_written_on_conditions() {
    let (st, fake) = storage().await;
    let k = st.key("rec.json").unwrap();
    let first = st
        .write_record(&k, b"{\"n\":1}".to_vec(), None)
        .await
        .unwrap();
    // A second new record loses: If-None-Match: *.
    let e = st
        .write_record(&k, b"{\"n\":9}".to_vec(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::PreconditionFailed(_)), "{e:?}");
    // Over exactly the one seen.
    let second = st
        .write_record(&k, b"{\"n\":2}".to_vec(), Some(first.clone()))
        .await
        .unwrap();
    let e = st
        .write_record(&k, b"{\"n\":3}".to_vec(), Some(first))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::PreconditionFailed(_)), "{e:?}");
    let (bytes, etag) = st.read_record(&k, 100).await.unwrap().unwrap();
    assert_eq!((&bytes[..], etag), (&b"{\"n\":2}"[..], second));
    assert_eq!(
        fake.object(BUCKET, "p/rec.json")
            .unwrap()
            .content_type
            .as_deref(),
        Some("application/json")
    );
    let e = st.read_record(&k, 3).await.unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
}

#[tokio::test]
async fn a_checked_delete_removes_only_what_was_seen() {
    let (st, fake) = storage().await;
    let k = st.key("obj").unwrap();
    let old = put(&st, "obj", "one").await;
    put(&st, "obj", "two").await;
    let e = st
        .delete_checked(&k, None, old.etag.as_deref())
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::PreconditionFailed(_)), "{e:?}");
    assert_eq!(fake.object(BUCKET, "p/obj").unwrap().body, b"two");
    let seen = st.head(&k).await.unwrap();
    st.delete_checked(&k, Some("null"), seen.etag.as_deref())
        .await
        .unwrap();
    assert!(fake.object(BUCKET, "p/obj").is_none());
    // Already gone: fine.
    st.delete_checked(&k, None, seen.etag.as_deref())
        .await
        .unwrap();
}

#[tokio::test]
async fn listings_are_relative_skip_bookkeeping_and_page() {
    let (st, fake) = storage().await;
    for k in ["a", "b", "c"] {
        put(&st, k, k).await;
    }
    fake.insert(BUCKET, "p/.gcp-aws-bridge/run", b"{}", &[]);
    fake.insert(BUCKET, "outside", b"x", &[]);
    let all = st.list("", None, None).await.unwrap();
    let keys: Vec<&str> = all.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(all.next_cursor, None);
    assert_eq!(all.objects[0].size, 1);

    // Pages of two: the bookkeeping key takes a place in S3's page and is
    // left out of the answer; the cursors lead through all.
    let (mut keys, mut cursor, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = st.list("", Some(2), cursor).await.unwrap();
        assert!(page.objects.len() <= 2);
        keys.extend(page.objects.into_iter().map(|o| o.key));
        pages += 1;
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(pages, 2);

    for limit in [0, 1001] {
        let e = st.list("", Some(limit), None).await.unwrap_err();
        assert!(matches!(e, StorageError::InvalidArgument(_)), "{e:?}");
    }
    for cursor in ["has space", "not-ours"] {
        let e = st.list("", None, Some(cursor.into())).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("cursor is not one this service gave out"),
            "{cursor}: {e}"
        );
    }
    for prefix in ["../", "/x", ".gcp-aws-bridge/"] {
        let e = st.list(prefix, None, None).await.unwrap_err();
        assert!(matches!(e, StorageError::InvalidKey(_)), "{prefix}: {e:?}");
    }
}

#[tokio::test]
async fn a_copy_keeps_headers_but_not_the_replica_marks() {
    let (st, fake) = storage().await;
    fake.insert(
        BUCKET,
        "p/src",
        b"bytes",
        &[
            ("team", "x"),
            ("goog-generation", "7"),
            ("goog-bucket", "g"),
        ],
    );
    let (src, dst) = (st.key("src").unwrap(), st.key("dst").unwrap());
    let copied = st.copy(&src, &dst).await.unwrap();
    assert_eq!(copied.key, "dst");
    let o = fake.object(BUCKET, "p/dst").unwrap();
    assert_eq!(o.body, b"bytes");
    assert_eq!(
        o.metadata.keys().collect::<Vec<_>>(),
        ["team"],
        "a copy is no replica"
    );
    let e = st.copy(&st.key("absent").unwrap(), &dst).await.unwrap_err();
    assert!(
        matches!(&e, StorageError::NotFound(m) if m.contains("source")),
        "{e:?}"
    );
}

#[tokio::test]
async fn headers_are_replaced_only_on_the_object_seen() {
    let (st, fake) = storage().await;
    put(&st, "obj", "v1").await;
    let k = st.key("obj").unwrap();
    let seen = st.head(&k).await.unwrap();
    let mut headers = seen.headers.clone();
    headers.metadata.insert("team".into(), "y".into());
    st.replace_headers(&k, &seen, headers.clone())
        .await
        .unwrap();
    assert_eq!(fake.object(BUCKET, "p/obj").unwrap().metadata["team"], "y");
    // `seen` is stale now.
    let e = st.replace_headers(&k, &seen, headers).await.unwrap_err();
    assert!(matches!(e, StorageError::PreconditionFailed(_)), "{e:?}");
}
