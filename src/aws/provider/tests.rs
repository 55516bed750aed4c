//! [`WebIdentityProvider`] against an STS stand-in on 127.0.0.1 that
//! answers `AssumeRoleWithWebIdentity` from a script: credentials cached
//! by the SDK, transient failures retried, refusals not, and the token in
//! no error.

use super::*;

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_s3::presigning::PresigningConfig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::aws::{anonymous_sts, http_client, AwsClients, AwsOptions};
use crate::config::Config;

/// One answer of the stand-in: success, or an HTTP status and STS error code.
#[derive(Clone)]
enum Reply {
    Ok,
    Err(u16, &'static str),
}

struct Sts {
    url: String,
    calls: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<String>>>,
}

/// An STS stand-in answering `script` in order, its last entry from then
/// on; error messages echo the token presented, as a careless server might.
async fn sts(script: Vec<Reply>) -> Sts {
    let calls = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (c, b) = (calls.clone(), bodies.clone());
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: String| {
            let (c, b) = (c.clone(), b.clone());
            let script = script.clone();
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst);
                let token = body
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("WebIdentityToken="))
                    .unwrap_or("")
                    .to_owned();
                b.lock().unwrap().push(body);
                let reply = script[n.min(script.len() - 1)].clone();
                let (status, xml) = match reply {
                    Reply::Ok => (200, success_xml()),
                    Reply::Err(status, code) => (
                        status,
                        format!(
                            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
                             <Message>refused token {token}</Message></Error>\
                             <RequestId>r</RequestId></ErrorResponse>"
                        ),
                    ),
                };
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [("content-type", "text/xml")],
                    xml,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Sts { url, calls, bodies }
}

const EXPIRATION: &str = "2099-01-01T00:00:00Z";

fn success_xml() -> String {
    format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleWithWebIdentityResult><Credentials>\
         <AccessKeyId>ASIASTANDIN</AccessKeyId><SecretAccessKey>stand-in-secret</SecretAccessKey>\
         <SessionToken>stand-in-session</SessionToken><Expiration>{EXPIRATION}</Expiration>\
         </Credentials><SubjectFromWebIdentityToken>1234</SubjectFromWebIdentityToken>\
         <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/bridge/s</Arn>\
         <AssumedRoleId>AROASTANDIN:s</AssumedRoleId></AssumedRoleUser>\
         </AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r</RequestId>\
         </ResponseMetadata></AssumeRoleWithWebIdentityResponse>"
    )
}

/// A Google ID token (unsigned: STS is the stand-in) in a file, and the
/// configuration of a service that presents it to `sts_url`.
fn config(sts_url: &str, name: &str) -> (Config, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "https://accounts.google.com",
        "aud": "sts.amazonaws.com",
        "azp": "104857600000000000001",
        "sub": "104857600000000000001",
        "email": "bridge@p.iam.gserviceaccount.com",
        "exp": now + 3600,
    });
    let token = format!(
        "{}.{}.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let path = std::env::temp_dir().join(format!(
        "bridge-provider-{name}-{}-{now}",
        std::process::id()
    ));
    std::fs::write(&path, &token).unwrap();
    let env = [
        ("TARGET_AUDIENCE", "sts.amazonaws.com"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bridge"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", sts_url),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("S3_BUCKET", "b"),
        ("AUTH_MODE", "none"),
        ("GOOGLE_ID_TOKEN_FILE", &path.display().to_string()),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    (Config::from_iter(env).expect("test configuration"), token)
}

/// The identity source of `config`: the token file.
fn ids(config: &Config) -> Arc<IdTokenSource> {
    Arc::new(IdTokenSource::from_settings(&config.identity).unwrap())
}

fn provider(config: &Config) -> WebIdentityProvider {
    WebIdentityProvider::new(
        anonymous_sts(&config.aws, http_client(), &AwsOptions::default()),
        ids(config),
        config.aws.role_arn.clone(),
        "session".into(),
        Duration::from_secs(3600),
    )
    .with_backoff(Backoff {
        max_attempts: 3,
        initial: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    })
}

#[tokio::test]
async fn credentials_are_assumed_once_and_then_cached_by_the_sdk() {
    let stand_in = sts(vec![Reply::Ok]).await;
    let (config, token) = config(&stand_in.url, "cached");
    let clients = AwsClients::new(&config.aws, ids(&config), AwsOptions::default());
    for _ in 0..3 {
        let url = clients
            .s3
            .get_object()
            .bucket("b")
            .key("k")
            .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
            .await
            .unwrap();
        assert!(url.uri().contains("ASIASTANDIN"), "{}", url.uri());
    }
    assert_eq!(stand_in.calls.load(Ordering::SeqCst), 1, "one STS call");
    let body = stand_in.bodies.lock().unwrap()[0].clone();
    assert!(body.contains("Action=AssumeRoleWithWebIdentity"), "{body}");
    assert!(body.contains(&token), "the token is presented");
    assert_eq!(
        clients.provider.expiry().get().map(crate::util::rfc3339),
        Some(EXPIRATION.to_owned())
    );
}

#[tokio::test]
async fn issued_credentials_carry_the_expiry_and_provider_name() {
    let stand_in = sts(vec![Reply::Ok]).await;
    let (config, _) = config(&stand_in.url, "issued");
    let p = provider(&config);
    assert_eq!(p.expiry().get(), None);
    let c = p.credentials().await.unwrap();
    assert_eq!(c.access_key_id(), "ASIASTANDIN");
    assert_eq!(c.session_token(), Some("stand-in-session"));
    assert_eq!(c.expiry(), p.expiry().get());
    assert!(format!("{c:?}").contains(PROVIDER_NAME));
    assert!(!format!("{c:?}").contains("stand-in-secret"));
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let stand_in = sts(vec![
        Reply::Err(503, "ServiceUnavailable"),
        Reply::Err(400, "Throttling"),
        Reply::Ok,
    ])
    .await;
    let (config, _) = config(&stand_in.url, "retried");
    provider(&config).credentials().await.unwrap();
    assert_eq!(stand_in.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn transient_failures_end_after_the_last_attempt() {
    let stand_in = sts(vec![Reply::Err(500, "InternalFailure")]).await;
    let (config, token) = config(&stand_in.url, "exhausted");
    let e = provider(&config).credentials().await.unwrap_err();
    assert!(matches!(e, StsError::Transient(_)), "{e:?}");
    assert!(e.is_transient());
    assert_eq!(stand_in.calls.load(Ordering::SeqCst), 3);
    assert!(!e.to_string().contains(&token), "{e}");
    assert!(!format!("{e:?}").contains(&token));
}

#[tokio::test]
async fn refusals_are_permanent_name_the_trust_policy_and_hide_the_token() {
    for code in ["InvalidIdentityToken", "IDPRejectedClaim", "AccessDenied"] {
        let stand_in = sts(vec![Reply::Err(
            if code == "AccessDenied" { 403 } else { 400 },
            code,
        )])
        .await;
        let (config, token) = config(&stand_in.url, code);
        let e = provider(&config).credentials().await.unwrap_err();
        match &e {
            StsError::Rejected {
                code: c,
                diagnostic,
                ..
            } => {
                assert_eq!(c, code);
                assert!(
                    diagnostic.contains("accounts.google.com:oaud"),
                    "{diagnostic}"
                );
                assert!(diagnostic.contains("104857600000000000001"), "{diagnostic}");
            }
            other => panic!("{code}: {other:?}"),
        }
        assert!(e.is_permanent());
        assert_eq!(stand_in.calls.load(Ordering::SeqCst), 1, "{code}: no retry");
        let text = format!("{e} {e:?}");
        assert!(!text.contains(&token), "{code}: the token in {text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
}

#[tokio::test]
async fn other_refusals_fail_without_retry() {
    let stand_in = sts(vec![Reply::Err(400, "ValidationError")]).await;
    let (config, token) = config(&stand_in.url, "failed");
    let p = provider(&config);
    let e = p.credentials().await.unwrap_err();
    assert!(matches!(e, StsError::Failed(_)), "{e:?}");
    assert_eq!(stand_in.calls.load(Ordering::SeqCst), 1);
    assert!(!format!("{e} {e:?} {p:?}").contains(&token));
}

#[tokio::test]
async fn sts_out_of_reach_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let (config, token) = config(&url, "unreachable");
    let e = provider(&config).credentials().await.unwrap_err();
    assert!(matches!(e, StsError::Transient(_)), "{e:?}");
    assert!(!e.to_string().contains(&token));
}
