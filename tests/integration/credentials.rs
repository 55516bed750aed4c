//! Google identity → STS → AWS credentials, end to end against the rig's
//! stand-ins: moto with IAM authorization on, the metadata emulator (also the
//! OAuth token endpoint of a key file) and the STS gate of the fault proxy,
//! which checks tokens and the trust policy as real STS does.

use crate::common;
use crate::common::require_rig;

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::ProvideCredentials as _;
use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_smithy_async::time::{SharedTimeSource, TimeSource};
use bridge_testkit::{
    Endpoint, Fault, LogCapture, MetadataConfig, MetadataEmulator, SigningKey, StsGate,
};
use common::*;
use gcp_aws_bridge::aws::{AwsClients, AwsOptions, StsError};
use gcp_aws_bridge::config::Config;
use gcp_aws_bridge::google::identity::{IdTokenSource, ServiceAccountKey};
use gcp_aws_bridge::retry::Backoff;
use serde_json::Value;
use tracing::instrument::WithSubscriber as _;

/// A clock that runs with the system clock plus an offset the test moves.
#[derive(Clone, Debug, Default)]
struct TestClock(Arc<AtomicU64>);

impl TestClock {
    fn set_offset(&self, secs: u64) {
        self.0.store(secs, Ordering::SeqCst);
    }
    fn offset(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn shared(&self) -> SharedTimeSource {
        SharedTimeSource::new(self.clone())
    }
}

impl TimeSource for TestClock {
    fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_secs(self.offset())
    }
}

fn fast_backoff() -> Backoff {
    Backoff {
        max_attempts: 4,
        initial: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    }
}

fn ids_for(config: &Config) -> IdTokenSource {
    IdTokenSource::from_settings(&config.identity)
        .expect("identity source")
        .with_backoff(fast_backoff())
}

/// A path outside the role's allowed prefix.
fn denied_key(name: &str) -> String {
    let n = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("denied/{name}-{n}/object.txt")
}

fn s3_with(rig: &std::collections::HashMap<String, String>, v: &Value) -> aws_sdk_s3::Client {
    moto_s3(
        rig,
        v["AccessKeyId"].as_str().unwrap(),
        v["SecretAccessKey"].as_str().unwrap(),
        Some(v["SessionToken"].as_str().unwrap()),
    )
}

/// The JWT's signature segment: present wherever the token text is.
fn signature_of(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_process_output_is_honoured_by_iam() {
    require_rig!();
    let w = World::new("cred-process").await;
    let out = run_bin(&["credentials"], &w.env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(v["Version"], 1);
    for k in ["AccessKeyId", "SecretAccessKey", "SessionToken"] {
        assert!(!v[k].as_str().unwrap_or("").is_empty(), "{k} missing: {v}");
    }
    let exp = time::OffsetDateTime::parse(
        v["Expiration"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("Expiration is RFC 3339");
    let left = exp - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(50) && left <= time::Duration::minutes(61),
        "default duration is one hour, {left} left"
    );
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1);
    assert_eq!(w.metadata.calls(Endpoint::Identity), 1);

    let s3 = s3_with(&w.rig, &v);
    let allowed = w.full("from-credential-process.txt");
    s3.put_object()
        .bucket(&w.bucket)
        .key(&allowed)
        .body(b"federated".to_vec().into())
        .send()
        .await
        .expect("PutObject under allowed/ succeeds with the role's credentials");
    assert_eq!(admin_get(&w.bucket, &allowed).await.unwrap(), b"federated");

    let denied = denied_key("cred-process");
    let err = s3
        .put_object()
        .bucket(&w.bucket)
        .key(&denied)
        .body(b"nope".to_vec().into())
        .send()
        .await
        .expect_err("PutObject outside allowed/ is refused by the role's policy");
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
    assert!(admin_get(&w.bucket, &denied).await.is_none());

    // whoami: the claims, the role, and no token text.
    let out = run_bin(&["whoami"], &w.env).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let who: Value = serde_json::from_str(&text).expect("whoami prints JSON");
    let uid = w.metadata.config().unique_id;
    assert_eq!(who["google"]["aud"], STS_AUDIENCE);
    assert_eq!(who["google"]["azp"], uid.as_str());
    assert_eq!(who["google"]["sub"], uid.as_str());
    assert_eq!(who["google"]["email"], w.metadata.config().email.as_str());
    let arn = who["aws"]["arn"].as_str().unwrap();
    assert!(arn.contains("bridge-test-role"), "{arn}");
    assert!(who["credentials_expire_at"].is_string(), "{who}");
    // Every JWT starts with the base64 of `{"`.
    assert!(!text.contains("eyJ"), "whoami printed a token: {text}");
    assert!(!text.contains(v["SecretAccessKey"].as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_client_fetches_once_for_64_concurrent_calls() {
    require_rig!();
    let w = World::new("single-flight").await;
    let config = w.config();
    let aws = AwsClients::new(
        &config.aws,
        Arc::new(ids_for(&config)),
        AwsOptions::default(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let s3 = aws.s3.clone();
        let (bucket, key) = (w.bucket.clone(), w.full(&format!("c/{i:02}")));
        tasks.spawn(async move {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(vec![b'x'; 16].into())
                .send()
                .await
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        r.unwrap().expect("PutObject");
        ok += 1;
    }
    assert_eq!(ok, 64);
    assert_eq!(w.metadata.calls(Endpoint::Identity), 1);
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1);
    assert_eq!(w.proxy.count("PutObject"), 64);
    assert_eq!(admin_list(&w.bucket, &w.full("c/")).await.len(), 64);
}

/// A pass-through in front of STS that moves the `Expiration` it answers by
/// the test clock's offset: moto issues credentials on the real clock, and a
/// client whose clock jumped ahead would otherwise see every new credential
/// as already expiring.
async fn sts_on_clock(upstream: String, clock: TestClock) -> String {
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (http, upstream, clock) = (http.clone(), upstream.clone(), clock.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut rb = http.request(parts.method.clone(), format!("{upstream}{path}"));
            for (k, v) in &parts.headers {
                if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
                    rb = rb.header(k, v);
                }
            }
            let resp = rb.body(body).send().await.unwrap();
            let status = resp.status();
            let ct = resp.headers().get(http::header::CONTENT_TYPE).cloned();
            let text = shift_expiration(&resp.text().await.unwrap(), clock.offset());
            let mut res = (status, text).into_response();
            if let Some(ct) = ct {
                res.headers_mut().insert(http::header::CONTENT_TYPE, ct);
            }
            res
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn shift_expiration(xml: &str, secs: u64) -> String {
    let (open, close) = ("<Expiration>", "</Expiration>");
    let (Some(a), Some(b)) = (xml.find(open), xml.find(close)) else {
        return xml.to_owned();
    };
    let rfc = &time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(&xml[a + open.len()..b], rfc).unwrap();
    let moved = (t + time::Duration::seconds(secs as i64))
        .format(rfc)
        .unwrap();
    format!("{}{moved}{}", &xml[..a + open.len()], &xml[b..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_replaced_before_expiry_without_a_failed_call() {
    require_rig!();
    let mut w = World::new("refresh").await;
    let clock = TestClock::default();
    let sts = sts_on_clock(w.proxy.url(), clock.clone()).await;
    w.set("AWS_ENDPOINT_URL_STS", &sts);
    w.set("AWS_ROLE_DURATION_SECONDS", "900");
    // ID tokens live 15 minutes: cached until 10 minutes on the clock.
    w.metadata.set_token_lifetime(Duration::from_secs(900));
    let config = w.config();
    let ids = Arc::new(ids_for(&config).with_time_source(clock.shared()));
    let aws = AwsClients::new(
        &config.aws,
        ids.clone(),
        AwsOptions {
            time_source: clock.shared(),
        },
    );
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let burst = |n: usize| {
        let (aws, w, calls) = (&aws, &w, &calls);
        async move {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..n {
                let i = calls.fetch_add(1, Ordering::SeqCst);
                let s3 = aws.s3.clone();
                let (bucket, key) = (w.bucket.clone(), w.full(&format!("r/{i:03}")));
                set.spawn(async move {
                    s3.put_object()
                        .bucket(bucket)
                        .key(key)
                        .body(b"x".to_vec().into())
                        .send()
                        .await
                });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap().expect("no call fails across the refresh");
            }
        }
    };
    let assumes = || w.proxy.count("AssumeRoleWithWebIdentity");

    burst(8).await;
    assert_eq!((assumes(), w.metadata.calls(Endpoint::Identity)), (1, 1));
    let first_expiry = aws.provider.expiry().get().unwrap();
    let life = first_expiry.duration_since(SystemTime::now()).unwrap();
    assert!(
        life <= Duration::from_secs(900) && life > Duration::from_secs(850),
        "{life:?}"
    );

    // Ten minutes minus a margin: neither the credentials nor the token are due.
    clock.set_offset(500);
    burst(8).await;
    assert_eq!((assumes(), w.metadata.calls(Endpoint::Identity)), (1, 1));

    // 12 min 40 s: inside the refresh window of the credentials (5 min before
    // expiry, less up to 2.5 min of the SDK's jitter) and past the token's
    // (5 min before its exp), but the credentials have not yet expired.
    clock.set_offset(760);
    assert!(
        clock.now() < first_expiry,
        "the refresh comes before expiry"
    );
    burst(16).await;
    assert_eq!(assumes(), 2, "one AssumeRoleWithWebIdentity replaces them");
    assert_eq!(
        w.metadata.calls(Endpoint::Identity),
        2,
        "with a fresh ID token"
    );
    let second_expiry = aws.provider.expiry().get().unwrap();
    assert!(second_expiry > first_expiry + Duration::from_secs(700));
    assert!(second_expiry > clock.now() + Duration::from_secs(850));

    for offset in [800, 1000, 1200] {
        clock.set_offset(offset);
        burst(8).await;
    }
    assert_eq!(
        assumes(),
        2,
        "the new credentials serve until their own refresh"
    );
    assert_eq!(w.proxy.count("PutObject"), calls.load(Ordering::SeqCst));
    assert_eq!(
        admin_list(&w.bucket, &w.full("r/")).await.len(),
        calls.load(Ordering::SeqCst)
    );
}

fn assert_rejection_names_claims(e: &StsError, code: &str, uid: &str, email: &str, token: &str) {
    let StsError::Rejected { code: c, .. } = e else {
        panic!("expected a rejection, got {e:?}");
    };
    assert_eq!(c, code);
    assert!(e.is_permanent());
    let shown = e.to_string();
    for needle in [
        "accounts.google.com:oaud",
        "accounts.google.com:aud",
        "accounts.google.com:sub",
        &format!("aud={STS_AUDIENCE:?}"),
        &format!("azp={uid:?}"),
        &format!("sub={uid:?}"),
        &format!("email={email:?}"),
    ] {
        assert!(shown.contains(needle), "{needle} missing from: {shown}");
    }
    let debug = format!("{e:?}");
    for text in [&shown, &debug] {
        assert!(!text.contains(token), "token text in: {text}");
        assert!(
            !text.contains(signature_of(token)),
            "token signature in: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_rejections_explain_the_trust_policy_and_never_show_the_token() {
    require_rig!();
    let w = World::new("rejected").await;
    let mc = w.metadata.config();
    // A trust policy that names someone else.
    w.trust_someone_else();
    let config = w.config();
    let aws = AwsClients::new(
        &config.aws,
        Arc::new(ids_for(&config)),
        AwsOptions::default(),
    );
    let e = aws.provider.credentials().await.expect_err("STS refuses");
    let token = aws.provider.identity().token().await.unwrap();
    let token = token.secret().expose().to_owned();
    assert_rejection_names_claims(&e, "AccessDenied", &mc.unique_id, &mc.email, &token);
    assert_eq!(
        w.proxy.count("AssumeRoleWithWebIdentity"),
        1,
        "a rejection is not retried"
    );

    // A token the trust policy's JWKS does not vouch for.
    let stranger = MetadataEmulator::start(MetadataConfig::default()).await;
    w.proxy.set_sts_gate(Some(StsGate {
        jwks_url: stranger.jwks_url(),
        oaud: STS_AUDIENCE.to_owned(),
        aud: mc.unique_id.clone(),
        sub: mc.unique_id.clone(),
    }));
    let e = aws.provider.credentials().await.expect_err("STS refuses");
    assert_rejection_names_claims(&e, "InvalidIdentityToken", &mc.unique_id, &mc.email, &token);

    // The service: 503 credentials_unavailable, the diagnostic in its log, no token.
    let server = Server::start(&w.env).await;
    let r = reqwest::Client::new()
        .put(format!("{}/v1/objects/rejected.txt", server.url))
        .bearer_auth(w.caller_token())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        retry_after.is_some_and(|v| v.parse::<u64>().is_ok()),
        "Retry-After"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "credentials_unavailable", "{body}");
    assert!(!body.to_string().contains("eyJ"));
    server.stdout.wait_for("accounts.google.com:oaud").await;
    let lines = server.stdout.all();
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(v["severity"].is_string(), "{line}");
        assert!(!line.contains("eyJ"), "a token in the log: {line}");
    }
    let diag = lines
        .iter()
        .find(|l| l.contains("accounts.google.com:oaud"))
        .unwrap();
    assert!(
        diag.contains(&mc.unique_id) && diag.contains("InvalidIdentityToken"),
        "{diag}"
    );
    assert!(!server.stderr.text().contains("eyJ"));
    drop(stranger);
}

#[tokio::test]
async fn debug_output_and_logs_never_show_token_or_secret() {
    require_rig!();
    let w = World::new("redaction").await;
    let config = w.config();
    let logs = LogCapture::default();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(logs.clone())
            .finish(),
    );
    let aws = AwsClients::new(
        &config.aws,
        Arc::new(ids_for(&config)),
        AwsOptions::default(),
    );
    let (creds, token) = async {
        let creds = aws.provider.credentials().await.expect("credentials");
        let through_sdk = aws
            .sdk
            .credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .expect("credentials through the SdkConfig");
        aws.s3
            .put_object()
            .bucket(&w.bucket)
            .key(w.full("redaction.txt"))
            .body(b"x".to_vec().into())
            .send()
            .await
            .expect("PutObject");
        let token = aws.provider.identity().token().await.unwrap();
        ((creds, through_sdk), token)
    }
    .with_subscriber(dispatch)
    .await;
    let jwt = token.secret().expose().to_owned();
    let (creds, through_sdk) = creds;
    let mut secrets = vec![jwt.clone(), signature_of(&jwt).to_owned()];
    for c in [&creds, &through_sdk] {
        secrets.push(c.secret_access_key().to_owned());
        secrets.push(c.session_token().unwrap().to_owned());
    }
    let key_json = w.metadata.service_account_key_json();
    let key: ServiceAccountKey = serde_json::from_str(&key_json).unwrap();
    let shown = [
        ("IdToken", format!("{token:?}")),
        ("IdTokenSource", format!("{:?}", aws.provider.identity())),
        ("WebIdentityProvider", format!("{:?}", aws.provider)),
        ("AwsClients", format!("{aws:?}")),
        ("Config", format!("{config:?}")),
        ("Credentials", format!("{creds:?}")),
        ("Credentials via SdkConfig", format!("{through_sdk:?}")),
        ("ServiceAccountKey", format!("{key:?}")),
        ("logs", logs.text()),
    ];
    assert!(logs.text().contains("assumed AWS role"), "{}", logs.text());
    assert!(format!("{token:?}").contains(&w.metadata.config().unique_id));
    for (what, text) in &shown {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{what} shows a secret: {text}");
        }
        assert!(!text.contains("PRIVATE KEY"), "{what} shows a private key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_failures_are_retried_within_bounds() {
    require_rig!();
    let w = World::new("md-faults").await;
    let config = w.config();
    let md = &w.metadata;

    md.push_fault(Endpoint::Identity, Fault::Status(503));
    md.push_fault(Endpoint::Identity, Fault::Status(500));
    let ids = ids_for(&config);
    let t = ids.token().await.expect("third attempt succeeds");
    assert_eq!(t.claims().aud.values(), [STS_AUDIENCE]);
    assert_eq!(md.calls(Endpoint::Identity), 3);

    md.reset_calls();
    for _ in 0..6 {
        md.push_fault(Endpoint::Identity, Fault::Status(503));
    }
    let e = ids_for(&config)
        .token()
        .await
        .expect_err("attempts run out");
    assert!(e.transient, "{e}");
    assert!(e.message.contains("503"), "{e}");
    assert_eq!(md.calls(Endpoint::Identity), 4, "max_attempts");
    md.clear_faults();

    md.reset_calls();
    md.push_fault(Endpoint::Identity, Fault::Hang);
    md.push_fault(Endpoint::Identity, Fault::Delay(Duration::from_secs(30)));
    let started = Instant::now();
    let ids = ids_for(&config).with_attempt_timeout(Duration::from_millis(300));
    ids.token()
        .await
        .expect("the third attempt answers in time");
    assert_eq!(md.calls(Endpoint::Identity), 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    md.reset_calls();
    md.push_fault(Endpoint::Identity, Fault::Status(403));
    let e = ids_for(&config).token().await.expect_err("403 is final");
    assert!(!e.transient, "{e}");
    assert_eq!(md.calls(Endpoint::Identity), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_file_mints_tokens_through_the_token_endpoint() {
    require_rig!();
    let mut w = World::new("key-file").await;
    let mc = w.metadata.config();
    let path = temp_path("key.json");
    std::fs::write(&path, w.metadata.service_account_key_json()).unwrap();
    w.env.retain(|(k, _)| k != "GCE_METADATA_HOST");
    w.set("ID_TOKEN_SOURCE", "auto");
    w.set("GOOGLE_APPLICATION_CREDENTIALS", path.to_str().unwrap());
    let config = w.config();
    let ids = Arc::new(ids_for(&config));
    assert_eq!(ids.source_name(), "service-account-key");
    let t = ids.token().await.expect("token from the key file");
    let c = t.claims();
    assert_eq!(c.aud.values(), [STS_AUDIENCE]);
    assert_eq!(
        c.azp.as_deref(),
        Some(mc.email.as_str()),
        "key-file tokens carry the email in azp"
    );
    assert_eq!(c.sub.as_deref(), Some(mc.unique_id.as_str()));
    assert_eq!(c.email.as_deref(), Some(mc.email.as_str()));
    assert_eq!(w.metadata.calls(Endpoint::OAuthToken), 1);
    assert_eq!(w.metadata.calls(Endpoint::Identity), 0);

    // The default trust policy (azp = unique id) refuses it, and says why.
    let aws = AwsClients::new(&config.aws, ids.clone(), AwsOptions::default());
    let e = aws
        .provider
        .credentials()
        .await
        .expect_err("azp is the email");
    assert!(
        e.to_string().contains(&format!("azp={:?}", mc.email)),
        "{e}"
    );
    // A trust policy written for key-file tokens accepts it.
    w.trust(&mc.email, &mc.unique_id);
    aws.provider.credentials().await.expect("credentials");
    assert_eq!(
        w.metadata.calls(Endpoint::OAuthToken),
        1,
        "the token is cached"
    );

    // A key that is not the service account's is refused, once.
    let mut forged: Value = serde_json::from_str(&w.metadata.service_account_key_json()).unwrap();
    let other = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .unwrap();
    forged["private_key"] = Value::String(other.private_key_pem().to_owned());
    let bad = temp_path("forged.json");
    std::fs::write(&bad, forged.to_string()).unwrap();
    w.set("GOOGLE_APPLICATION_CREDENTIALS", bad.to_str().unwrap());
    w.metadata.reset_calls();
    let e = ids_for(&w.config())
        .token()
        .await
        .expect_err("signature refused");
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("invalid_grant"), "{e}");
    assert_eq!(w.metadata.calls(Endpoint::OAuthToken), 1);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&bad);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_names_every_variable() {
    require_rig!();
    let mut w = World::new("bad-config").await;
    w.env.retain(|(k, _)| k != "TARGET_AUDIENCE");
    w.set("AWS_ROLE_DURATION_SECONDS", "60");
    w.set("AUTH_MODE", "x");
    let out = run_bin(&[], &w.env).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    for var in ["TARGET_AUDIENCE", "AWS_ROLE_DURATION_SECONDS", "AUTH_MODE"] {
        let hits = lines
            .iter()
            .filter(|l| l.contains(&format!("{var}:")))
            .count();
        assert_eq!(hits, 1, "{var} on one line of:\n{stderr}");
    }
    assert_eq!(lines.len(), 3, "one line per problem:\n{stderr}");
    assert_eq!(w.metadata.calls(Endpoint::Identity), 0, "no outbound call");

    // The command line reports the same way.
    let out = run_bin(&["credentials"], &w.env).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("TARGET_AUDIENCE") && stderr.contains("AWS_ROLE_DURATION_SECONDS"));
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_is_read_again_at_every_refresh() {
    require_rig!();
    let mut w = World::new("token-file").await;
    let path = temp_path("id-token");
    let md = w.metadata.clone();
    let mint = |email: &str| {
        let mut claims = md.identity_claims(STS_AUDIENCE);
        claims["email"] = Value::String(email.to_owned());
        claims["exp"] = Value::from(bridge_testkit::keys::now_secs() + 900);
        md.mint(claims)
    };
    std::fs::write(&path, format!("{}\n", mint("first@example.com"))).unwrap();
    w.set("ID_TOKEN_SOURCE", "auto");
    w.set("GOOGLE_ID_TOKEN_FILE", path.to_str().unwrap());
    let clock = TestClock::default();
    let ids = ids_for(&w.config()).with_time_source(clock.shared());
    assert_eq!(ids.source_name(), "file");
    let first = ids.token().await.unwrap();
    assert_eq!(first.claims().email.as_deref(), Some("first@example.com"));

    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "{}", mint("second@example.com")).unwrap();
    drop(f);
    assert_eq!(
        ids.token().await.unwrap().claims().email.as_deref(),
        Some("first@example.com"),
        "cached while fresh"
    );
    clock.set_offset(601);
    let second = ids.token().await.unwrap();
    assert_eq!(second.claims().email.as_deref(), Some("second@example.com"));
    assert_ne!(second.secret().expose(), first.secret().expose());

    std::fs::write(&path, "").unwrap();
    clock.set_offset(1200);
    let e = ids.token().await.expect_err("an empty file is an error");
    assert!(!e.transient && e.message.contains("empty"), "{e}");
    let _ = std::fs::remove_file(&path);
}
