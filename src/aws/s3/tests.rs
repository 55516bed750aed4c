//! [`Storage`] against an in-memory S3 on 127.0.0.1 (the test kit's
//! [`S3Fake`]): key confinement, the answers of each operation, the
//! classification of S3's errors, and conditional writes and deletes.

use super::*;

use aws_credential_types::provider::SharedCredentialsProvider;
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
/// scripted fault is the answer; in-memory writes take the direct path, as
/// in the service.
pub(crate) fn storage_at(fake: &S3Fake) -> Storage {
    storage_with(fake, RetryConfig::disabled(), fake_credentials(), true)
}

/// The same storage with every write through the SDK.
fn sdk_storage_at(fake: &S3Fake) -> Storage {
    storage_with(fake, RetryConfig::disabled(), fake_credentials(), false)
}

fn fake_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new("AKIDFAKE", "fake-secret", None, None, "t"))
}

/// A storage at `fake` built as the service builds it: one shared
/// configuration (credentials, lazy identity cache) for the S3 client and
/// the direct path (`direct`).
fn storage_with(
    fake: &S3Fake,
    retry: RetryConfig,
    credentials: SharedCredentialsProvider,
    direct: bool,
) -> Storage {
    storage_for(&fake.url(), retry, credentials, direct)
}

/// The same storage at an S3 stand-in at `url` (path style).
fn storage_for(
    url: &str,
    retry: RetryConfig,
    credentials: SharedCredentialsProvider,
    direct: bool,
) -> Storage {
    let sdk = aws_types::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .identity_cache(aws_config::identity::IdentityCache::lazy().build())
        .http_client(crate::aws::http_client())
        .retry_config(retry)
        .build();
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .endpoint_url(url)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    let st = Storage::new(
        aws_sdk_s3::Client::from_conf(conf),
        BUCKET.into(),
        PREFIX.into(),
        CredentialsExpiry::default(),
    );
    if !direct {
        return st;
    }
    let endpoint = S3Endpoint {
        url: Some(url.to_owned()),
        force_path_style: true,
    };
    let st = st.with_direct_put(&endpoint, sdk.credentials_provider());
    assert!(
        st.direct.is_some(),
        "the stand-in's endpoint takes the direct path"
    );
    st
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
    let fake = S3Fake::start().await;
    for st in [storage_at(&fake), sdk_storage_at(&fake)] {
        put_then_get_head_and_range_by(&st, &fake).await;
    }
}

async fn put_then_get_head_and_range_by(st: &Storage, fake: &S3Fake) {
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
async fn a_get_head_or_copy_refused_with_403_is_settled_by_a_listing() {
    let (st, fake) = storage().await;
    let missing = st.key("missing").unwrap();
    let dest = st.key("dest").unwrap();
    // Not listed: missing, as a 404 would say (GET, HEAD, a copy's source).
    fake.fail_next(403, "AccessDenied");
    let e = st.get(&missing, None).await.err().unwrap();
    assert!(matches!(e, StorageError::NotFound(_)), "{e:?}");
    fake.fail_next(403, "AccessDenied");
    let e = st.head(&missing).await.unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)), "{e:?}");
    fake.fail_next(403, "AccessDenied");
    let e = st.copy(&missing, &dest).await.unwrap_err();
    assert!(matches!(e, StorageError::NotFound(_)), "{e:?}");
    assert!(e.to_string().contains("source"), "{e}");
    // Listed: the refusal stands.
    put(&st, "there", "x").await;
    let there = st.key("there").unwrap();
    fake.fail_next(403, "AccessDenied");
    let e = st.get(&there, None).await.err().unwrap();
    assert!(matches!(e, StorageError::AccessDenied(_)), "{e:?}");
    fake.fail_next(403, "AccessDenied");
    let e = st.head(&there).await.unwrap_err();
    assert!(matches!(e, StorageError::AccessDenied(_)), "{e:?}");
    assert!(fake.object(BUCKET, "p/dest").is_none());
}

#[tokio::test]
async fn s3_errors_are_classified() {
    let fake = S3Fake::start().await;
    for st in [storage_at(&fake), sdk_storage_at(&fake)] {
        s3_errors_are_classified_by(&st, &fake).await;
    }
}

async fn s3_errors_are_classified_by(st: &Storage, fake: &S3Fake) {
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

/// A credentials provider that counts its loads.
#[derive(Debug, Default, Clone)]
struct CountingCredentials(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl aws_credential_types::provider::ProvideCredentials for CountingCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let expiry = SystemTime::now() + Duration::from_secs(3600);
        aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
            "AKIDFAKE",
            "fake-secret",
            Some("token".into()),
            Some(expiry),
            "t",
        )))
    }
}

#[tokio::test]
async fn direct_writes_and_sdk_calls_share_one_credential_load() {
    let fake = S3Fake::start().await;
    let counting = CountingCredentials::default();
    let st = storage_with(
        &fake,
        RetryConfig::disabled(),
        SharedCredentialsProvider::new(counting.clone()),
        true,
    );
    let k = st.key("shared").unwrap();
    let writes =
        (0..8).map(|i| st.put_bytes(&k, Bytes::from(format!("body {i}")), PutOptions::default()));
    for w in futures_util::future::join_all(writes).await {
        w.unwrap();
    }
    st.head(&k).await.unwrap();
    st.put_bytes(&k, Bytes::from_static(b"last"), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        counting.0.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one load serves the direct path and the SDK"
    );
    assert_eq!(fake.object(BUCKET, "p/shared").unwrap().body, b"last");
}

#[tokio::test]
async fn direct_writes_carry_headers_conditions_and_odd_keys() {
    let fake = S3Fake::start().await;
    let st = storage_at(&fake);
    let key = "dir/a b+c%d/\u{e9}~(1)&=?#.txt";
    let k = st.key(key).unwrap();
    let mut metadata = HashMap::new();
    metadata.insert("team".to_owned(), "data eng".to_owned());
    metadata.insert("goog-generation".to_owned(), "17".to_owned());
    let opts = PutOptions {
        headers: ObjectHeaders {
            content_type: Some("text/plain; charset=utf-8".into()),
            metadata,
            ..ObjectHeaders::default()
        },
        if_none_match: true,
        ..PutOptions::default()
    };
    let written = st
        .put_bytes(&k, Bytes::from_static(b"first"), opts.clone())
        .await
        .unwrap();
    let stored = fake.object(BUCKET, &format!("p/{key}")).unwrap();
    assert_eq!(stored.body, b"first");
    assert_eq!(written.etag.as_deref(), Some(stored.etag.as_str()));
    assert_eq!(
        stored.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(stored.metadata["team"], "data eng");
    assert_eq!(stored.metadata["goog-generation"], "17");
    assert_eq!(st.head(&k).await.unwrap().size, 5, "the SDK finds the key");

    // If-None-Match: * over an object: refused, nothing changed.
    let e = st
        .put_bytes(&k, Bytes::from_static(b"second"), opts)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::PreconditionFailed(_)), "{e:?}");
    // If-Match on another ETag: refused; on the stored one: written.
    let on = |etag: &str| PutOptions {
        if_match: Some(etag.to_owned()),
        ..PutOptions::default()
    };
    let e = st
        .put_bytes(&k, Bytes::from_static(b"third"), on("\"other\""))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::PreconditionFailed(_)), "{e:?}");
    assert_eq!(
        fake.object(BUCKET, &format!("p/{key}")).unwrap().body,
        b"first"
    );
    st.put_bytes(&k, Bytes::from_static(b"fourth"), on(&stored.etag))
        .await
        .unwrap();
    assert_eq!(
        fake.object(BUCKET, &format!("p/{key}")).unwrap().body,
        b"fourth"
    );
}

/// Writes `x` as the key `k`.
async fn put_x(st: &Storage) -> Result<PutResult, StorageError> {
    st.put_bytes(
        &st.key("k").unwrap(),
        Bytes::from_static(b"x"),
        PutOptions::default(),
    )
    .await
}

/// The standard retry mode's three attempts, with millisecond backoffs.
fn quick_retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1))
}

/// How many PUTs `fake` received for the relative key `key` (and the keys
/// it begins).
fn puts_of(fake: &S3Fake, key: &str) -> usize {
    let line = format!("PUT /{BUCKET}/{PREFIX}{key}");
    fake.requests()
        .iter()
        .filter(|r| r.starts_with(&line))
        .count()
}

#[tokio::test]
async fn direct_writes_retry_transient_answers_as_the_sdk_does() {
    let fake = S3Fake::start().await;
    let st = storage_with(&fake, quick_retries(), fake_credentials(), true);
    let k = st.key("r").unwrap();
    let puts = || puts_of(&fake, "r");
    // Two transient answers, then success on the third attempt.
    fake.fail_next(503, "SlowDown");
    fake.fail_next(500, "InternalError");
    st.put_bytes(&k, Bytes::from_static(b"x"), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(puts(), 3);
    // Three: the last one is the answer.
    for _ in 0..3 {
        fake.fail_next(503, "SlowDown");
    }
    let e = st
        .put_bytes(&k, Bytes::from_static(b"y"), PutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
    assert_eq!(puts(), 6);
    // A refusal is not retried.
    fake.fail_next(403, "AccessDenied");
    let e = st
        .put_bytes(&k, Bytes::from_static(b"z"), PutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::AccessDenied(_)), "{e:?}");
    assert_eq!(puts(), 7);
    assert_eq!(fake.object(BUCKET, "p/r").unwrap().body, b"x");
}

#[tokio::test]
async fn direct_write_errors_hold_no_secret() {
    let fake = S3Fake::start().await;
    let st = storage_at(&fake);
    fake.fail_next(400, "InvalidArgument");
    let e = put_x(&st).await.unwrap_err();
    let shown = format!("{e:?} {e} {st:?}");
    assert!(shown.contains("DirectPut"), "the direct path was taken");
    assert!(!shown.contains("fake-secret"), "{shown}");
}

/// An S3 stand-in on 127.0.0.1 that reads each request whole, then closes
/// the connection without an answer for the first `drops` requests and
/// answers 200 with an ETag after that. Returns its URL and the bodies it
/// read, in order.
async fn s3_closing_before_the_answer(
    drops: usize,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(body) = read_request(&mut conn).await else {
                    return;
                };
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(body);
                    seen.len()
                };
                if n > drops {
                    let answer = "HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                    let _ = conn.write_all(answer.as_bytes()).await;
                }
            });
        }
    });
    (url, bodies)
}

/// The body of one HTTP/1.1 request with a Content-Length, read whole.
async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    read_request_head(conn).await.map(|(_, body)| body)
}

/// The head (lower-case) and body of one HTTP/1.1 request with a
/// Content-Length, read whole.
async fn read_request_head(conn: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                return Some((text[..end].to_owned(), buf[end + 4..end + 4 + len].to_vec()));
            }
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_connection_closed_before_the_answer_is_retried_as_the_sdk_does() {
    let retry = quick_retries();
    for direct in [false, true] {
        let (url, bodies) = s3_closing_before_the_answer(1).await;
        let st = storage_for(&url, retry.clone(), fake_credentials(), direct);
        let k = st.key("closed").unwrap();
        let written = st
            .put_bytes(&k, Bytes::from_static(b"sent twice"), PutOptions::default())
            .await;
        let written = written.unwrap_or_else(|e| panic!("direct {direct}: {e:?}"));
        assert_eq!(written.etag.as_deref(), Some("\"e\""));
        let bodies = bodies.lock().unwrap().clone();
        assert_eq!(
            bodies,
            [b"sent twice".to_vec(), b"sent twice".to_vec()],
            "direct {direct}: the same body sent again"
        );
    }
}

#[tokio::test]
async fn a_429_is_retried_only_when_its_code_names_throttling_as_by_the_sdk() {
    for direct in [false, true] {
        let fake = S3Fake::start().await;
        let st = storage_with(&fake, quick_retries(), fake_credentials(), direct);
        let k = st.key("busy").unwrap();
        let puts = || puts_of(&fake, "busy");
        // A status alone is not a throttling code: one attempt.
        fake.fail_next(429, "TooManyRequests");
        let e = st
            .put_bytes(&k, Bytes::from_static(b"x"), PutOptions::default())
            .await
            .expect_err(&format!("direct {direct}: not retried"));
        assert!(matches!(e, StorageError::Throttled(_)), "{e:?}");
        assert_eq!(puts(), 1, "direct {direct}");
        // A throttling code is retried.
        fake.fail_next(429, "SlowDown");
        st.put_bytes(&k, Bytes::from_static(b"y"), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(puts(), 3, "direct {direct}");
    }
}

/// A credentials provider that fails every load (with an `StsError` or
/// with another error) and counts its loads.
#[derive(Debug, Clone)]
struct FailingCredentials {
    loads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    sts: bool,
}

impl aws_credential_types::provider::ProvideCredentials for FailingCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        use aws_credential_types::provider::error::CredentialsError;
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let e = if self.sts {
            CredentialsError::provider_error(crate::aws::StsError::Transient("STS 503".into()))
        } else {
            CredentialsError::provider_error("the identity could not be had")
        };
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(e))
    }
}

#[tokio::test]
async fn credential_failures_are_classified_and_not_retried_as_by_the_sdk() {
    let retry = quick_retries();
    for sts in [true, false] {
        for direct in [false, true] {
            let fake = S3Fake::start().await;
            let failing = FailingCredentials {
                loads: Default::default(),
                sts,
            };
            let provider = SharedCredentialsProvider::new(failing.clone());
            let st = storage_with(&fake, retry.clone(), provider, direct);
            let e = put_x(&st).await.unwrap_err();
            let case = format!("sts {sts}, direct {direct}: {e:?}");
            if sts {
                assert!(
                    matches!(&e, StorageError::CredentialsUnavailable(s) if s.to_string().contains("STS 503")),
                    "{case}"
                );
            } else {
                assert!(matches!(e, StorageError::Unavailable(_)), "{case}");
            }
            let loads = failing.loads.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(loads, 1, "{case}: one load, no retry");
            assert!(fake.requests().is_empty(), "{case}: nothing sent");
        }
    }
}

#[tokio::test]
async fn a_direct_body_of_many_blocks_is_sent_as_they_are_without_a_copy() {
    use http_body_util::BodyExt;
    let blocks: Vec<Bytes> = (0..4u8)
        .map(|i| Bytes::from(vec![b'a' + i; 256 * 1024 + usize::from(i)]))
        .collect();
    let len: usize = blocks.iter().map(Bytes::len).sum();
    let mut body = direct::request_body(&blocks);
    assert_eq!(body.content_length(), Some(len as u64));
    let mut sent = Vec::new();
    while let Some(frame) = body.frame().await {
        sent.push(frame.unwrap().into_data().unwrap());
    }
    assert_eq!(sent.len(), blocks.len(), "one frame per block");
    for (s, b) in sent.iter().zip(&blocks) {
        assert_eq!(
            (s.as_ptr(), s.len()),
            (b.as_ptr(), b.len()),
            "the block itself, not a copy"
        );
    }
    // Written whole through the direct path.
    let fake = S3Fake::start().await;
    let st = storage_at(&fake);
    let k = st.key("blocks").unwrap();
    let crc = blocks
        .iter()
        .fold(0, |crc, b| crc32c::crc32c_append(crc, b));
    upload::put_in_memory(&st, &k, &blocks, len as u64, crc, &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        fake.object(BUCKET, "p/blocks").unwrap().body,
        blocks.concat()
    );
}

/// An S3 stand-in on 127.0.0.1 whose clock is `ahead` of this one: it
/// refuses a request signed more than 15 minutes away from its own time
/// with 403 `RequestTimeTooSkewed`, as S3 does, and dates every answer.
/// Returns its URL and the number of requests it read.
async fn s3_with_a_clock_ahead(
    ahead: Duration,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use aws_smithy_types::date_time::{DateTime, Format};
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let Some((head, _)) = read_request_head(&mut conn).await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let server_now = SystemTime::now() + ahead;
                // x-amz-date: 20260102T030405Z
                let d = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-amz-date:"))
                    .unwrap()
                    .trim()
                    .to_ascii_uppercase();
                let signed = format!(
                    "{}-{}-{}T{}:{}:{}Z",
                    &d[0..4],
                    &d[4..6],
                    &d[6..8],
                    &d[9..11],
                    &d[11..13],
                    &d[13..15]
                );
                let signed =
                    SystemTime::try_from(DateTime::from_str(&signed, Format::DateTime).unwrap())
                        .unwrap();
                let off = server_now
                    .duration_since(signed)
                    .unwrap_or_else(|e| e.duration());
                let date = DateTime::from(server_now).fmt(Format::HttpDate).unwrap();
                let answer = if off > Duration::from_secs(15 * 60) {
                    let body = "<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message></Error>";
                    format!(
                        "HTTP/1.1 403 Forbidden\r\nDate: {date}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    format!("HTTP/1.1 200 OK\r\nDate: {date}\r\nETag: \"e\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                };
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_clock_skew_refusal_is_retried_at_s3s_time_and_remembered_as_by_the_sdk() {
    let retry = quick_retries();
    for direct in [false, true] {
        let (url, seen) = s3_with_a_clock_ahead(Duration::from_secs(3600)).await;
        let st = storage_for(&url, retry.clone(), fake_credentials(), direct);
        let k = st.key("skewed").unwrap();
        let count = || seen.load(std::sync::atomic::Ordering::SeqCst);
        st.put_bytes(&k, Bytes::from_static(b"x"), PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("direct {direct}: {e:?}"));
        assert_eq!(
            count(),
            2,
            "direct {direct}: refused, then signed at S3's time"
        );
        st.put_bytes(&k, Bytes::from_static(b"y"), PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("direct {direct}: {e:?}"));
        assert_eq!(count(), 3, "direct {direct}: the skew is remembered");
    }
}

#[tokio::test]
async fn direct_writes_encode_every_key_character_as_the_sdk_does() {
    let ascii: String = (0x20u8..0x7f).map(char::from).collect();
    let keys = [
        format!("all {ascii} end"),
        "a//b/c/".to_owned(),
        "%2F%25+plus/\u{e9}\u{20ac}\u{1f600}\u{fffd}".to_owned(),
        format!(
            "{}/",
            "\u{e9}".repeat((MAX_KEY_BYTES - PREFIX.len() - 1) / 2)
        ),
    ];
    let fake = S3Fake::start().await;
    let (direct, sdk) = (storage_at(&fake), sdk_storage_at(&fake));
    let last_put_path = || {
        let r = fake.requests();
        let line = r.iter().rev().find(|r| r.starts_with("PUT ")).unwrap();
        line.split('?').next().unwrap().to_owned()
    };
    for key in keys {
        let k = direct.key(&key).unwrap();
        direct
            .put_bytes(&k, Bytes::from_static(b"d"), PutOptions::default())
            .await
            .unwrap();
        let by_direct = last_put_path();
        assert_eq!(fake.object(BUCKET, k.full()).unwrap().body, b"d");
        sdk.put_bytes(&k, Bytes::from_static(b"s"), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(by_direct, last_put_path(), "{key:?}");
        assert_eq!(fake.object(BUCKET, k.full()).unwrap().body, b"s");
    }
}

/// An S3 stand-in on 127.0.0.1 that keeps connections open, answers the
/// first `fail` requests with `status` and error `code`, then 200. Returns
/// its URL and, per request, the number of the connection it came on.
async fn s3_keeping_connections(
    fail: usize,
    status: u16,
    code: &'static str,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<usize>>>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut conns = 0;
        while let Ok((mut conn, _)) = listener.accept().await {
            conns += 1;
            let (log, n) = (log.clone(), conns);
            tokio::spawn(async move {
                while read_request(&mut conn).await.is_some() {
                    let count = {
                        let mut log = log.lock().unwrap();
                        log.push(n);
                        log.len()
                    };
                    let answer = if count <= fail {
                        let body =
                            format!("<Error><Code>{code}</Code><Message>m</Message></Error>");
                        format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 0\r\n\r\n".to_owned()
                    };
                    if conn.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_transient_answer_is_retried_on_a_new_connection_as_by_the_sdk() {
    let retry = quick_retries();
    // A transient answer closes its connection; a throttling one keeps it.
    for (status, code, connections) in [
        (500, "InternalError", [1, 2]),
        (503, "ServiceUnavailable", [1, 2]),
        (400, "RequestTimeout", [1, 2]),
        (503, "SlowDown", [1, 1]),
    ] {
        for direct in [false, true] {
            let (url, seen) = s3_keeping_connections(1, status, code).await;
            let st = storage_for(&url, retry.clone(), fake_credentials(), direct);
            let k = st.key("again").unwrap();
            st.put_bytes(&k, Bytes::from_static(b"x"), PutOptions::default())
                .await
                .unwrap_or_else(|e| panic!("direct {direct}: {e:?}"));
            assert_eq!(
                *seen.lock().unwrap(),
                connections,
                "{status} {code}, direct {direct}"
            );
        }
    }
}

#[tokio::test]
async fn direct_writes_and_sdk_calls_share_one_connection_pool() {
    let (url, seen) = s3_keeping_connections(0, 500, "InternalError").await;
    let st = storage_for(&url, RetryConfig::disabled(), fake_credentials(), true);
    let k = st.key("reused").unwrap();
    for body in ["a", "b", "c"] {
        st.put_bytes(&k, Bytes::from(body), PutOptions::default())
            .await
            .unwrap();
    }
    st.head(&k).await.unwrap();
    st.put_bytes(&k, Bytes::from("d"), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [1, 1, 1, 1, 1]);
}
