//! Tests of the metadata emulator, its OAuth token endpoint and IAM Credentials.

use std::time::{Duration, Instant};

use bridge_testkit::keys::{decode_claims_unverified, now_secs, verify_with_jwks, VerifyError};
use bridge_testkit::{Endpoint, Fault, MetadataConfig, MetadataEmulator, SigningKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const AUD: &str = "https://bridge.example.com";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn identity(
    emu: &MetadataEmulator,
    http: &reqwest::Client,
) -> reqwest::Result<reqwest::Response> {
    http.get(format!(
        "{}/computeMetadata/v1/instance/service-accounts/default/identity?audience={}&format=full",
        emu.base_url(),
        AUD
    ))
    .header("Metadata-Flavor", "Google")
    .send()
    .await
}

#[test]
fn key_generation_time() {
    let t = Instant::now();
    let k = SigningKey::generate();
    let took = t.elapsed();
    eprintln!("RSA 2048 key generation took {took:?}");
    assert_eq!(k.kid().len(), 40);
    assert!(k
        .private_key_pem()
        .starts_with(concat!("-----BEGIN ", "PRIVATE KEY-----")));
    assert!(!format!("{k:?}").contains("PRIVATE"));
}

#[tokio::test]
async fn identity_token_verifies_and_carries_the_claims() {
    let emu = MetadataEmulator::start(MetadataConfig::default()).await;
    let cfg = emu.config();
    let http = client();
    let res = identity(&emu, &http).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["metadata-flavor"], "Google");
    let token = res.text().await.unwrap();

    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(header.kid.as_deref(), Some(emu.signing_key().kid()));

    let certs = http.get(emu.jwks_url()).send().await.unwrap();
    assert_eq!(certs.status(), 200);
    let cc = certs.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cc.contains("public") && cc.contains("max-age=3600"), "{cc}");
    let jwks: Value = certs.json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert!(!key["n"].as_str().unwrap().contains('='));

    let claims = verify_with_jwks(&token, &jwks).unwrap();
    assert_eq!(claims["iss"], "https://accounts.google.com");
    assert_eq!(claims["aud"], AUD);
    assert_eq!(claims["azp"], cfg.unique_id);
    assert_eq!(claims["sub"], cfg.unique_id);
    assert_eq!(claims["email"], cfg.email);
    assert_eq!(claims["email_verified"], true);
    let iat = claims["iat"].as_i64().unwrap();
    assert!((iat - now_secs()).abs() <= 5);
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 3600);

    assert_eq!(emu.calls(Endpoint::Identity), 1);
    assert_eq!(emu.calls(Endpoint::Jwks), 1);
    emu.reset_calls();
    assert_eq!(emu.calls(Endpoint::Identity), 0);

    // The lifetime can change at run time.
    emu.set_token_lifetime(Duration::from_secs(120));
    let token = identity(&emu, &http).await.unwrap().text().await.unwrap();
    let c = decode_claims_unverified(&token).unwrap();
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 120);

    // A token signed by another key does not verify; neither does one naming
    // the emulator's kid.
    let other = SigningKey::generate();
    let forged = emu.mint_with_key(&other, emu.identity_claims(AUD));
    assert!(matches!(
        verify_with_jwks(&forged, &jwks),
        Err(VerifyError::UnknownKey(_))
    ));
    let forged = emu.mint_with_key(
        &other.with_kid(emu.signing_key().kid()),
        emu.identity_claims(AUD),
    );
    assert!(matches!(
        verify_with_jwks(&forged, &jwks),
        Err(VerifyError::Invalid(_))
    ));
    let mut expired = emu.identity_claims(AUD);
    expired["exp"] = json!(now_secs() - 10);
    assert_eq!(
        verify_with_jwks(&emu.mint(expired), &jwks),
        Err(VerifyError::Expired)
    );
}

#[tokio::test]
async fn metadata_flavor_is_enforced_and_simple_endpoints_answer() {
    let emu = MetadataEmulator::start(MetadataConfig::default()).await;
    let cfg = emu.config();
    let http = client();
    let base = emu.base_url();
    let ident =
        format!("{base}/computeMetadata/v1/instance/service-accounts/default/identity?audience=x");

    let res = http.get(&ident).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["metadata-flavor"], "Google");
    let res = http
        .get(&ident)
        .header("Metadata-Flavor", "Other")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = http
        .get(&ident)
        .header("Metadata-Flavor", "Google")
        .header("X-Forwarded-For", "10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    let res = http
        .get(format!(
            "{base}/computeMetadata/v1/instance/service-accounts/default/identity"
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    for (path, want) in [
        ("instance/service-accounts/default/email", cfg.email.clone()),
        ("project/project-id", cfg.project_id.clone()),
        ("project/numeric-project-id", cfg.numeric_project_id.clone()),
    ] {
        let res = http
            .get(format!("{base}/computeMetadata/v1/{path}"))
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.text().await.unwrap(), want);
    }

    let res = http
        .get(format!(
            "{base}/computeMetadata/v1/instance/service-accounts/default/token"
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let tok: Value = res.json().await.unwrap();
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 3600);
    assert!(emu.is_issued_access_token(tok["access_token"].as_str().unwrap()));

    let res = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["metadata-flavor"], "Google");
    let res = http
        .get(format!("{base}/computeMetadata/v1/"))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    assert_eq!(emu.calls(Endpoint::Identity), 4);
    assert_eq!(emu.calls(Endpoint::Email), 1);
    assert_eq!(emu.calls(Endpoint::ProjectId), 1);
    assert_eq!(emu.calls(Endpoint::NumericProjectId), 1);
    assert_eq!(emu.calls(Endpoint::Token), 1);
    assert_eq!(emu.calls(Endpoint::Ping), 2);
}

#[tokio::test]
async fn faults_are_consumed_in_order() {
    let emu = MetadataEmulator::start(MetadataConfig::default()).await;
    let http = client();
    emu.push_fault(Endpoint::Identity, Fault::Status(503));
    emu.push_fault(Endpoint::Identity, Fault::Delay(Duration::from_millis(300)));
    emu.push_fault(Endpoint::Identity, Fault::Drop);
    emu.push_fault(Endpoint::Identity, Fault::Hang);
    emu.push_fault(Endpoint::Email, Fault::Status(500));

    assert_eq!(identity(&emu, &http).await.unwrap().status(), 503);
    let t = Instant::now();
    assert_eq!(identity(&emu, &http).await.unwrap().status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let err = identity(&emu, &http).await.unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = identity(&emu, &short).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(identity(&emu, &http).await.unwrap().status(), 200);
    assert_eq!(emu.calls(Endpoint::Identity), 5);

    // Faults of other endpoints stay queued for them.
    let res = http
        .get(format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/email",
            emu.base_url()
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
}

fn sign_assertion(key: &Value, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key["private_key_id"].as_str().unwrap().to_string());
    let ek = EncodingKey::from_rsa_pem(key["private_key"].as_str().unwrap().as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &ek).unwrap()
}

async fn post_token(
    http: &reqwest::Client,
    uri: &str,
    grant: &str,
    assertion: &str,
) -> (u16, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", grant)
        .append_pair("assertion", assertion)
        .finish();
    let res = http
        .post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[tokio::test]
async fn oauth_token_endpoint_checks_the_assertion() {
    let emu = MetadataEmulator::start(MetadataConfig::default()).await;
    let cfg = emu.config();
    let http = client();
    let key: Value = serde_json::from_str(&emu.service_account_key_json()).unwrap();
    assert_eq!(key["type"], "service_account");
    assert_eq!(key["client_email"], cfg.email);
    assert_eq!(key["client_id"], cfg.unique_id);
    assert_eq!(key["project_id"], cfg.project_id);
    assert_eq!(key["token_uri"], emu.token_uri());
    assert!(key["private_key"]
        .as_str()
        .unwrap()
        .starts_with(concat!("-----BEGIN ", "PRIVATE KEY-----")));
    let uri = emu.token_uri();
    let now = now_secs();
    let good = json!({
        "iss": cfg.email, "aud": uri, "target_audience": AUD, "iat": now, "exp": now + 3600,
    });

    let (status, body) = post_token(&http, &uri, GRANT, &sign_assertion(&key, &good)).await;
    assert_eq!(status, 200, "{body}");
    let id = body["id_token"].as_str().unwrap();
    let claims = verify_with_jwks(id, &emu.jwks()).unwrap();
    assert_eq!(claims["aud"], AUD);
    assert_eq!(claims["azp"], cfg.email);
    assert_eq!(claims["sub"], cfg.unique_id);
    assert_eq!(claims["email"], cfg.email);
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["iss"], "https://accounts.google.com");

    let (status, body) = post_token(
        &http,
        &uri,
        "client_credentials",
        &sign_assertion(&key, &good),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unsupported_grant_type");

    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("https://oauth2.googleapis.com/token");
    let (status, body) = post_token(&http, &uri, GRANT, &sign_assertion(&key, &wrong_aud)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("someone@else.iam.gserviceaccount.com");
    let (status, body) = post_token(&http, &uri, GRANT, &sign_assertion(&key, &wrong_iss)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let mut too_long = good.clone();
    too_long["exp"] = json!(now + 7200);
    let (status, body) = post_token(&http, &uri, GRANT, &sign_assertion(&key, &too_long)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let mut expired = good.clone();
    expired["iat"] = json!(now - 4000);
    expired["exp"] = json!(now - 400);
    let (status, body) = post_token(&http, &uri, GRANT, &sign_assertion(&key, &expired)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Signed by another key under the right kid, and under an unknown kid.
    let other = SigningKey::generate();
    let forged = other
        .with_kid(key["private_key_id"].as_str().unwrap())
        .sign(&good);
    let (status, body) = post_token(&http, &uri, GRANT, &forged).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = post_token(&http, &uri, GRANT, &other.sign(&good)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Neither target_audience nor scope.
    let mut neither = good.clone();
    neither.as_object_mut().unwrap().remove("target_audience");
    let (status, _) = post_token(&http, &uri, GRANT, &sign_assertion(&key, &neither)).await;
    assert_eq!(status, 400);

    // A scope yields an access token, accepted by generateIdToken.
    let mut scoped = neither.clone();
    scoped["scope"] = json!("https://www.googleapis.com/auth/cloud-platform");
    let (status, body) = post_token(&http, &uri, GRANT, &sign_assertion(&key, &scoped)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let access = body["access_token"].as_str().unwrap().to_string();
    assert!(emu.is_issued_access_token(&access));

    assert_eq!(emu.calls(Endpoint::OAuthToken), 10);
    emu.push_fault(Endpoint::OAuthToken, Fault::Status(503));
    let (status, _) = {
        let res = http.post(&uri).body("").send().await.unwrap();
        (res.status().as_u16(), ())
    };
    assert_eq!(status, 503);
}

#[tokio::test]
async fn generate_id_token_needs_an_issued_access_token() {
    let emu = MetadataEmulator::start(MetadataConfig::default()).await;
    let cfg = emu.config();
    let http = client();
    let tok: Value = http
        .get(format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            emu.base_url()
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tok["access_token"].as_str().unwrap();
    let sa = "runner@other-project.iam.gserviceaccount.com";
    let url = format!(
        "{}/v1/projects/-/serviceAccounts/{}:generateIdToken",
        emu.iam_credentials_url(),
        sa
    );

    let res = http
        .post(&url)
        .bearer_auth(access)
        .json(&json!({"audience": AUD, "includeEmail": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let claims = verify_with_jwks(body["token"].as_str().unwrap(), &emu.jwks()).unwrap();
    assert_eq!(claims["aud"], AUD);
    assert_eq!(claims["email"], sa);
    // Another account than the emulator's own has a unique id of its own.
    let id = if sa == cfg.email {
        cfg.unique_id.clone()
    } else {
        bridge_testkit::metadata::unique_id_for(sa)
    };
    assert_eq!(claims["azp"], id);
    assert_eq!(claims["sub"], id);
    assert_eq!(id.len(), 21);

    let res = http
        .post(&url)
        .bearer_auth("ya29.not-issued")
        .json(&json!({"audience": AUD, "includeEmail": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = http
        .post(&url)
        .json(&json!({"audience": AUD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(emu.calls(Endpoint::GenerateIdToken), 3);
}

#[tokio::test]
async fn key_rotation_publishes_both_keys() {
    let emu = MetadataEmulator::start(MetadataConfig::default()).await;
    let old = emu.identity_token(AUD);
    let new_key = tokio::task::spawn_blocking({
        let emu = emu.clone();
        move || emu.rotate_signing_key()
    })
    .await
    .unwrap();
    let jwks = emu.jwks();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert_eq!(jwks["keys"][0]["kid"], new_key.kid());
    verify_with_jwks(&old, &jwks).unwrap();
    let new = emu.identity_token(AUD);
    assert_eq!(
        jsonwebtoken::decode_header(&new).unwrap().kid.as_deref(),
        Some(new_key.kid())
    );
    verify_with_jwks(&new, &jwks).unwrap();
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let emu = MetadataEmulator::start(MetadataConfig::default()).await;
    let url = emu.base_url();
    let http = client();
    assert_eq!(
        http.get(format!("{url}/")).send().await.unwrap().status(),
        200
    );
    drop(emu);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(format!("{url}/")).send().await.is_err());
}
