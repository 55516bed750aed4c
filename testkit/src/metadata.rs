//! A GCE metadata server emulator, with Google's OAuth token endpoint, the IAM
//! Credentials `generateIdToken` API and a JWKS certificate endpoint.
//!
//! Routes (the metadata ones require `Metadata-Flavor: Google`, else 403, and
//! answer with that header; requests carrying `X-Forwarded-For` are refused with
//! 403 as the real server does):
//!
//! | route | [`Endpoint`] |
//! |---|---|
//! | `GET /`, `GET /computeMetadata/v1/` | [`Endpoint::Ping`] |
//! | `GET /computeMetadata/v1/instance/service-accounts/{default,EMAIL}/identity?audience=A&format=full` | [`Endpoint::Identity`] |
//! | `GET /computeMetadata/v1/instance/service-accounts/{default,EMAIL}/token` | [`Endpoint::Token`] |
//! | `GET /computeMetadata/v1/instance/service-accounts/{default,EMAIL}/email` | [`Endpoint::Email`] |
//! | `GET /computeMetadata/v1/project/project-id` | [`Endpoint::ProjectId`] |
//! | `GET /computeMetadata/v1/project/numeric-project-id` | [`Endpoint::NumericProjectId`] |
//! | `POST /token` (jwt-bearer grant, a key file's `token_uri`) | [`Endpoint::OAuthToken`] |
//! | `POST /v1/projects/-/serviceAccounts/{SA}:generateIdToken` | [`Endpoint::GenerateIdToken`] |
//! | `GET /oauth2/v3/certs` | [`Endpoint::Jwks`] |

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::keys::{now_secs, random_hex, SigningKey};
use crate::server::{self, DropConnection, ServerGuard};

const FLAVOR: &str = "metadata-flavor";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const GOOGLE_ISS: &str = "https://accounts.google.com";

/// The identity the emulator impersonates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataConfig {
    /// Service account email (`email` claim, `.../email`, the key file's `client_email`).
    pub email: String,
    /// Numeric unique id of the service account (`sub`, and `azp` of metadata tokens).
    pub unique_id: String,
    /// `project/project-id`.
    pub project_id: String,
    /// `project/numeric-project-id`.
    pub numeric_project_id: String,
    /// Life of the ID and access tokens issued (`exp - iat`, `expires_in`).
    pub token_lifetime: Duration,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            email: "bridge@test-project.iam.gserviceaccount.com".into(),
            unique_id: "104857600000000000001".into(),
            project_id: "test-project".into(),
            numeric_project_id: "123456789012".into(),
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// The emulator's endpoints, for [`MetadataEmulator::calls`] and
/// [`MetadataEmulator::push_fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `.../service-accounts/default/identity`
    Identity,
    /// `.../service-accounts/default/token`
    Token,
    /// `.../service-accounts/default/email`
    Email,
    /// `project/project-id`
    ProjectId,
    /// `project/numeric-project-id`
    NumericProjectId,
    /// `POST /token`, the OAuth endpoint a key file's `token_uri` names.
    OAuthToken,
    /// `POST /v1/projects/-/serviceAccounts/{SA}:generateIdToken`
    GenerateIdToken,
    /// `GET /oauth2/v3/certs`
    Jwks,
    /// `GET /` and `GET /computeMetadata/v1/`
    Ping,
}

/// A fault injected into the next request to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with a short text body instead of serving the request.
    Status(u16),
    /// Wait, then serve the request normally.
    Delay(Duration),
    /// Close the connection without answering.
    Drop,
    /// Never answer (until the emulator shuts down).
    Hang,
}

struct Shared {
    cfg: RwLock<MetadataConfig>,
    addr: SocketAddr,
    /// Current signing key first, then the previous ones still published.
    signing: RwLock<Vec<SigningKey>>,
    sa_key: SigningKey,
    calls: Mutex<HashMap<Endpoint, usize>>,
    faults: Mutex<HashMap<Endpoint, VecDeque<Fault>>>,
    access_tokens: Mutex<HashSet<String>>,
    jwks_max_age: RwLock<Duration>,
}

/// Handle to a running emulator. Clones share the same server; it stops when the
/// last clone is dropped or on [`MetadataEmulator::shutdown`].
#[derive(Clone)]
pub struct MetadataEmulator {
    shared: Arc<Shared>,
    guard: Arc<ServerGuard>,
}

impl std::fmt::Debug for MetadataEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataEmulator")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl MetadataEmulator {
    /// Starts an emulator on `127.0.0.1:0`. Generates two RSA keys (the metadata
    /// signing key and a service-account key) in parallel on blocking threads.
    pub async fn start(cfg: MetadataConfig) -> MetadataEmulator {
        MetadataEmulator::start_on(cfg, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind 127.0.0.1:0")
    }

    /// Starts an emulator on a given address (the `metadata-emulator` binary's
    /// `--port`).
    pub async fn start_on(
        cfg: MetadataConfig,
        addr: SocketAddr,
    ) -> std::io::Result<MetadataEmulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let k1 = tokio::task::spawn_blocking(SigningKey::generate);
        let k2 = tokio::task::spawn_blocking(SigningKey::generate);
        let signing = k1.await.expect("key generation task");
        let sa_key = k2.await.expect("key generation task");
        let shared = Arc::new(Shared {
            cfg: RwLock::new(cfg),
            addr,
            signing: RwLock::new(vec![signing]),
            sa_key,
            calls: Mutex::new(HashMap::new()),
            faults: Mutex::new(HashMap::new()),
            access_tokens: Mutex::new(HashSet::new()),
            jwks_max_age: RwLock::new(Duration::from_secs(3600)),
        });
        let router = router(shared.clone());
        let s = shared.clone();
        let handler: server::Handler = Arc::new(move |req| {
            let s = s.clone();
            let router = router.clone();
            Box::pin(handle(s, router, req))
        });
        let guard = Arc::new(server::spawn(listener, handler));
        Ok(MetadataEmulator { shared, guard })
    }

    /// Stops accepting and closes open connections (also done when the last
    /// handle is dropped).
    pub fn shutdown(&self) {
        self.guard.shutdown();
    }

    /// `127.0.0.1:PORT`, the value for `GCE_METADATA_HOST`.
    pub fn host(&self) -> String {
        self.shared.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The JWKS of the signing key(s): `http://127.0.0.1:PORT/oauth2/v3/certs`
    /// (for `GOOGLE_CERTS_URL`).
    pub fn jwks_url(&self) -> String {
        format!("{}/oauth2/v3/certs", self.base_url())
    }

    /// The OAuth token endpoint: `http://127.0.0.1:PORT/token`.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// The IAM Credentials API root to use instead of
    /// `https://iamcredentials.googleapis.com`: `http://127.0.0.1:PORT`.
    pub fn iam_credentials_url(&self) -> String {
        self.base_url()
    }

    /// Requests received by `endpoint` since start or the last [`reset_calls`]
    /// (every request counts: faulted, refused and served).
    ///
    /// [`reset_calls`]: MetadataEmulator::reset_calls
    pub fn calls(&self, endpoint: Endpoint) -> usize {
        *self
            .shared
            .calls
            .lock()
            .unwrap()
            .get(&endpoint)
            .unwrap_or(&0)
    }

    /// Sets every call counter to zero.
    pub fn reset_calls(&self) {
        self.shared.calls.lock().unwrap().clear();
    }

    /// Queues a fault for `endpoint`; queued faults are consumed in order, one per
    /// request, before any other check (`Metadata-Flavor`, authentication). The
    /// faulted request is counted by [`calls`](MetadataEmulator::calls).
    pub fn push_fault(&self, endpoint: Endpoint, fault: Fault) {
        self.shared
            .faults
            .lock()
            .unwrap()
            .entry(endpoint)
            .or_default()
            .push_back(fault);
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Changes the life of tokens issued from now on.
    pub fn set_token_lifetime(&self, d: Duration) {
        self.shared.cfg.write().unwrap().token_lifetime = d;
    }

    /// Changes the `max-age` of the JWKS answer's `Cache-Control` (default 3600 s).
    pub fn set_jwks_max_age(&self, d: Duration) {
        *self.shared.jwks_max_age.write().unwrap() = d;
    }

    /// The configuration in force.
    pub fn config(&self) -> MetadataConfig {
        self.shared.cfg.read().unwrap().clone()
    }

    /// The key that signs identity tokens (published at [`jwks_url`]).
    ///
    /// [`jwks_url`]: MetadataEmulator::jwks_url
    pub fn signing_key(&self) -> SigningKey {
        self.shared.signing.read().unwrap()[0].clone()
    }

    /// Replaces the signing key with a new one (generated on the calling thread).
    /// The JWKS keeps publishing the previous key as well, as Google's does during
    /// a rotation. Returns the new key.
    pub fn rotate_signing_key(&self) -> SigningKey {
        let key = SigningKey::generate();
        let mut keys = self.shared.signing.write().unwrap();
        keys.insert(0, key.clone());
        keys.truncate(2);
        key
    }

    /// The JWKS document served at [`jwks_url`](MetadataEmulator::jwks_url).
    pub fn jwks(&self) -> Value {
        self.shared.jwks()
    }

    /// Signs `claims` with the emulator's signing key (RS256, `kid` set).
    pub fn mint(&self, claims: Value) -> String {
        self.signing_key().sign(&claims)
    }

    /// Signs `claims` with another key, e.g. one from [`SigningKey::generate`] to
    /// forge a token the JWKS does not vouch for.
    pub fn mint_with_key(&self, key: &SigningKey, claims: Value) -> String {
        key.sign(&claims)
    }

    /// The claims of a metadata-server identity token for `audience`:
    /// `iss` `https://accounts.google.com`, `aud`, `azp` = `sub` = the unique id,
    /// `email`, `email_verified`, `iat` now, `exp` now + token lifetime.
    pub fn identity_claims(&self, audience: &str) -> Value {
        self.shared.identity_claims(audience)
    }

    /// An identity token as `.../identity?audience=` would answer it (not counted).
    pub fn identity_token(&self, audience: &str) -> String {
        self.mint(self.identity_claims(audience))
    }

    /// The service-account key generated at start.
    pub fn service_account_key(&self) -> SigningKey {
        self.shared.sa_key.clone()
    }

    /// A Google service-account key file for the key generated at start:
    /// `type` `service_account`, `project_id`, `private_key_id`, `private_key`
    /// (PKCS#8 PEM), `client_email`, `client_id` (the unique id), `token_uri` (this
    /// emulator's `/token`), and the usual `auth_uri` and cert URLs.
    pub fn service_account_key_json(&self) -> String {
        let cfg = self.config();
        let key = &self.shared.sa_key;
        let v = json!({
            "type": "service_account",
            "project_id": cfg.project_id,
            "private_key_id": key.kid(),
            "private_key": key.private_key_pem(),
            "client_email": cfg.email,
            "client_id": cfg.unique_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri(),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                cfg.email.replace('@', "%40")
            ),
            "universe_domain": "googleapis.com",
        });
        serde_json::to_string_pretty(&v).expect("JSON")
    }

    /// Whether `token` is an access token this emulator issued.
    pub fn is_issued_access_token(&self, token: &str) -> bool {
        self.shared.access_tokens.lock().unwrap().contains(token)
    }
}

impl Shared {
    /// Every published signing key, current first.
    fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .signing
            .read()
            .unwrap()
            .iter()
            .map(SigningKey::jwk)
            .collect();
        json!({ "keys": keys })
    }

    fn identity_claims(&self, audience: &str) -> Value {
        let cfg = self.cfg.read().unwrap();
        let now = now_secs();
        json!({
            "iss": GOOGLE_ISS,
            "aud": audience,
            "azp": cfg.unique_id,
            "sub": cfg.unique_id,
            "email": cfg.email,
            "email_verified": true,
            "iat": now,
            "exp": now + cfg.token_lifetime.as_secs() as i64,
        })
    }

    fn mint(&self, claims: &Value) -> String {
        let key = self.signing.read().unwrap()[0].clone();
        key.sign(claims)
    }

    fn issue_access_token(&self) -> (String, u64) {
        let token = format!("ya29.emulator-{}", random_hex(24));
        self.access_tokens.lock().unwrap().insert(token.clone());
        let life = self.cfg.read().unwrap().token_lifetime.as_secs();
        (token, life)
    }

    fn is_default_or_self(&self, account: &str) -> bool {
        account == "default" || account == self.cfg.read().unwrap().email
    }
}

/// Maps a request path to the endpoint it addresses.
fn classify(path: &str) -> Option<Endpoint> {
    match path {
        "/" | "/computeMetadata/v1/" | "/computeMetadata/v1" => return Some(Endpoint::Ping),
        "/computeMetadata/v1/project/project-id" => return Some(Endpoint::ProjectId),
        "/computeMetadata/v1/project/numeric-project-id" => {
            return Some(Endpoint::NumericProjectId)
        }
        "/token" => return Some(Endpoint::OAuthToken),
        "/oauth2/v3/certs" => return Some(Endpoint::Jwks),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/computeMetadata/v1/instance/service-accounts/") {
        let leaf = rest.split('/').nth(1)?;
        return match leaf {
            "identity" => Some(Endpoint::Identity),
            "token" => Some(Endpoint::Token),
            "email" => Some(Endpoint::Email),
            _ => None,
        };
    }
    if path.starts_with("/v1/projects/") && path.ends_with(":generateIdToken") {
        return Some(Endpoint::GenerateIdToken);
    }
    None
}

fn is_metadata_path(path: &str) -> bool {
    path == "/" || path.starts_with("/computeMetadata/")
}

fn flavored(mut res: Response) -> Response {
    res.headers_mut()
        .insert(FLAVOR, HeaderValue::from_static("Google"));
    res
}

async fn handle(
    shared: Arc<Shared>,
    router: Router,
    req: Request<Incoming>,
) -> Result<http::Response<Body>, DropConnection> {
    let path = req.uri().path().to_string();
    let endpoint = classify(&path);
    if let Some(ep) = endpoint {
        *shared.calls.lock().unwrap().entry(ep).or_default() += 1;
        let fault = shared
            .faults
            .lock()
            .unwrap()
            .get_mut(&ep)
            .and_then(VecDeque::pop_front);
        match fault {
            None => {}
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::Drop) => return Err(DropConnection),
            Some(Fault::Hang) => std::future::pending::<()>().await,
            Some(Fault::Status(code)) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let res = (
                    status,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    format!("injected fault: {status}\n"),
                )
                    .into_response();
                return Ok(if is_metadata_path(&path) {
                    flavored(res)
                } else {
                    res
                });
            }
        }
    }
    if is_metadata_path(&path) {
        if req.headers().contains_key("x-forwarded-for") {
            return Ok(flavored(
                (
                    StatusCode::FORBIDDEN,
                    "Request had an X-Forwarded-For header and was refused\n",
                )
                    .into_response(),
            ));
        }
        // The root answers without the header, as the real server does; everything
        // under /computeMetadata/ requires it.
        let ok = req
            .headers()
            .get(FLAVOR)
            .map(|v| v.as_bytes().eq_ignore_ascii_case(b"Google"))
            .unwrap_or(false);
        if path != "/" && !ok {
            return Ok(flavored(
                (
                    StatusCode::FORBIDDEN,
                    [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
                    "Missing required header \"Metadata-Flavor\": \"Google\"\n",
                )
                    .into_response(),
            ));
        }
        return Ok(flavored(server::call_router(router, req).await));
    }
    Ok(server::call_router(router, req).await)
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(ping))
        .route("/computeMetadata/v1", get(ping))
        .route("/computeMetadata/v1/", get(ping))
        .route(
            "/computeMetadata/v1/instance/service-accounts/{account}/identity",
            get(identity),
        )
        .route(
            "/computeMetadata/v1/instance/service-accounts/{account}/token",
            get(access_token),
        )
        .route(
            "/computeMetadata/v1/instance/service-accounts/{account}/email",
            get(email),
        )
        .route("/computeMetadata/v1/project/project-id", get(project_id))
        .route(
            "/computeMetadata/v1/project/numeric-project-id",
            get(numeric_project_id),
        )
        .route("/oauth2/v3/certs", get(jwks))
        .route("/token", post(oauth_token))
        .route(
            "/v1/projects/{project}/serviceAccounts/{name}",
            post(generate_id_token),
        )
        .with_state(shared)
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/text")], body).into_response()
}

async fn ping() -> Response {
    text("computeMetadata/\n".into())
}

fn unknown_account() -> Response {
    (StatusCode::NOT_FOUND, "Not Found\n").into_response()
}

async fn identity(
    State(s): State<Arc<Shared>>,
    Path(account): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !s.is_default_or_self(&account) {
        return unknown_account();
    }
    match q.get("audience").filter(|a| !a.is_empty()) {
        None => (
            StatusCode::BAD_REQUEST,
            "non-empty audience parameter required\n",
        )
            .into_response(),
        Some(aud) => text(s.mint(&s.identity_claims(aud))),
    }
}

async fn access_token(State(s): State<Arc<Shared>>, Path(account): Path<String>) -> Response {
    if !s.is_default_or_self(&account) {
        return unknown_account();
    }
    let (token, life) = s.issue_access_token();
    Json(json!({ "access_token": token, "expires_in": life, "token_type": "Bearer" }))
        .into_response()
}

async fn email(State(s): State<Arc<Shared>>, Path(account): Path<String>) -> Response {
    if !s.is_default_or_self(&account) {
        return unknown_account();
    }
    text(s.cfg.read().unwrap().email.clone())
}

async fn project_id(State(s): State<Arc<Shared>>) -> Response {
    text(s.cfg.read().unwrap().project_id.clone())
}

async fn numeric_project_id(State(s): State<Arc<Shared>>) -> Response {
    text(s.cfg.read().unwrap().numeric_project_id.clone())
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    let max_age = s.jwks_max_age.read().unwrap().as_secs();
    (
        [
            (
                header::CONTENT_TYPE,
                "application/json; charset=UTF-8".to_string(),
            ),
            (
                header::CACHE_CONTROL,
                format!("public, max-age={max_age}, must-revalidate, no-transform"),
            ),
        ],
        Json(s.jwks()),
    )
        .into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// The jwt-bearer grant of Google's OAuth token endpoint.
async fn oauth_token(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    match form.get("grant_type").map(String::as_str) {
        Some(JWT_BEARER) => {}
        Some(other) => {
            return oauth_error(
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            )
        }
        None => return oauth_error("unsupported_grant_type", "Invalid grant_type: "),
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let cfg = s.cfg.read().unwrap().clone();
    let token_uri = format!("http://{}/token", s.addr);
    let header = match jsonwebtoken::decode_header(assertion) {
        Ok(h) => h,
        Err(_) => return oauth_error("invalid_grant", "Invalid JWT: malformed assertion."),
    };
    if header.kid.as_deref().is_some_and(|k| k != s.sa_key.kid()) {
        return oauth_error("invalid_grant", "Invalid JWT Signature.");
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.leeway = 30;
    validation.required_spec_claims = ["exp", "iat", "iss", "aud"]
        .iter()
        .map(|c| c.to_string())
        .collect();
    let claims = match jsonwebtoken::decode::<Value>(
        assertion,
        &s.sa_key.decoding_key(),
        &validation,
    ) {
        Ok(d) => d.claims,
        Err(e) => {
            use jsonwebtoken::errors::ErrorKind;
            let msg = match e.kind() {
                ErrorKind::ExpiredSignature => "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
                ErrorKind::MissingRequiredClaim(_) => "Invalid JWT: a required claim (exp, iat, iss, aud) is missing.",
                _ => "Invalid JWT Signature.",
            };
            return oauth_error("invalid_grant", msg);
        }
    };
    if claims.get("aud").and_then(Value::as_str) != Some(token_uri.as_str()) {
        return oauth_error(
            "invalid_grant",
            &format!("Invalid JWT: aud must be the token endpoint {token_uri}"),
        );
    }
    if claims.get("iss").and_then(Value::as_str) != Some(cfg.email.as_str()) {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: iss is not the key's client_email.",
        );
    }
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let now = now_secs();
    if exp - iat > 3600 || iat > now + 60 {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    if let Some(aud) = claims.get("target_audience").and_then(Value::as_str) {
        let life = cfg.token_lifetime.as_secs() as i64;
        let id = json!({
            "iss": GOOGLE_ISS,
            "aud": aud,
            "azp": cfg.email,
            "sub": cfg.unique_id,
            "email": cfg.email,
            "email_verified": true,
            "iat": now,
            "exp": now + life,
        });
        return Json(json!({ "id_token": s.mint(&id) })).into_response();
    }
    if claims.get("scope").and_then(Value::as_str).is_some() {
        let (token, _) = s.issue_access_token();
        return Json(json!({ "access_token": token, "expires_in": 3600, "token_type": "Bearer" }))
            .into_response();
    }
    oauth_error(
        "invalid_scope",
        "Invalid OAuth scope or ID token audience provided.",
    )
}

/// A stable 21-digit unique id for a service account email (FNV-1a).
pub fn unique_id_for(email: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in email.to_ascii_lowercase().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("1{:020}", h)
}

fn iam_error(status: StatusCode, message: &str) -> Response {
    let status_name = match status {
        StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
        StatusCode::FORBIDDEN => "PERMISSION_DENIED",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        _ => "INVALID_ARGUMENT",
    };
    (
        status,
        Json(json!({ "error": { "code": status.as_u16(), "message": message, "status": status_name } })),
    )
        .into_response()
}

/// IAM Credentials `generateIdToken`.
async fn generate_id_token(
    State(s): State<Arc<Shared>>,
    Path((_project, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(sa) = name.strip_suffix(":generateIdToken") else {
        return iam_error(StatusCode::NOT_FOUND, "Not found");
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let authorized = bearer.is_some_and(|t| s.access_tokens.lock().unwrap().contains(t));
    if !authorized {
        return iam_error(
            StatusCode::UNAUTHORIZED,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return iam_error(StatusCode::BAD_REQUEST, "Invalid JSON payload received."),
    };
    let Some(audience) = req
        .get("audience")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    else {
        return iam_error(StatusCode::BAD_REQUEST, "Audience is required.");
    };
    let include_email = req
        .get("includeEmail")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let cfg = s.cfg.read().unwrap().clone();
    let now = now_secs();
    // Another service account (e.g. a Pub/Sub push account, as the Pub/Sub
    // service agent mints its tokens): a unique id of its own.
    let id = if sa == cfg.email || sa == "-" {
        cfg.unique_id.clone()
    } else {
        unique_id_for(sa)
    };
    let mut claims = json!({
        "iss": GOOGLE_ISS,
        "aud": audience,
        "azp": id,
        "sub": id,
        "iat": now,
        "exp": now + 3600,
    });
    if include_email {
        claims["email"] = json!(sa);
        claims["email_verified"] = json!(true);
    }
    Json(json!({ "token": s.mint(&claims) })).into_response()
}
