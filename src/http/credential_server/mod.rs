//! `gcp-aws-bridge credential-server`: the federated credentials in the AWS
//! container-credentials format, for an application next to it (a Cloud Run
//! sidecar, a GKE native sidecar, a systemd service on a VM) that uses its
//! stock AWS SDK with
//!
//! ```text
//! AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:9911/v1/credentials
//! AWS_CONTAINER_AUTHORIZATION_TOKEN=<the same token as the server's>
//! ```
//!
//! Environment (besides the service's identity and STS variables):
//! `CREDENTIALS_ADDR` (default `127.0.0.1:9911`, loopback only),
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN` or `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`
//! (the file wins when both are set, as in the SDKs), `AWS_ROLES`
//! (`name=arn,...`, served at `/v1/credentials/{name}`) and
//! `CREDENTIALS_HEALTH_ADDR` (optional, e.g. `0.0.0.0:9912`: a listener that
//! answers `GET /healthz` only, for probes that cannot reach loopback).
//!
//! Routes: `GET /v1/credentials` (the role `AWS_ROLE_ARN`),
//! `GET /v1/credentials/{name}`, both guarded by the token; `GET /healthz`
//! (no outbound call) and `GET /readyz` (200 once the default role's
//! credentials can be had), both open and saying nothing secret.
//!
//! The module also holds the file cache of the `credentials` command
//! ([`file_cache`]).

pub(crate) mod cache;
pub(crate) mod file_cache;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use aws_smithy_async::time::SharedTimeSource;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::aws::{RoleProviders, WebIdentityProvider};
use crate::config::ConfigError;
use crate::http::edge::RouteError;
use crate::http::error::{AppError, StatusBody};
use crate::settings::{present, read_group};
use crate::util::rfc3339;

pub(crate) use crate::http::auth_token::AuthToken;
pub(crate) use cache::RoleCache;

/// Default `CREDENTIALS_ADDR`.
pub(crate) const DEFAULT_ADDR: &str = "127.0.0.1:9911";

/// The credential server's own settings, read with envy.
#[derive(Debug)]
pub struct ServerConfig {
    /// `CREDENTIALS_ADDR`: where the credentials are served (loopback only).
    pub addr: SocketAddr,
    /// `CREDENTIALS_HEALTH_ADDR`: a listener answering `GET /healthz` only.
    pub health_addr: Option<SocketAddr>,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN` or `_FILE`.
    pub token: AuthToken,
}

/// The variables of [`ServerConfig`], typed. No `Debug`: it holds the
/// token.
#[derive(Deserialize)]
#[serde(default)]
struct CredentialServerSettings {
    #[serde(deserialize_with = "loopback_addr")]
    credentials_addr: SocketAddr,
    #[serde(deserialize_with = "health_addr")]
    credentials_health_addr: Option<SocketAddr>,
    aws_container_authorization_token: Option<String>,
    aws_container_authorization_token_file: Option<std::path::PathBuf>,
}

impl Default for CredentialServerSettings {
    fn default() -> CredentialServerSettings {
        CredentialServerSettings {
            credentials_addr: DEFAULT_ADDR.parse().expect("the default address parses"),
            credentials_health_addr: None,
            aws_container_authorization_token: None,
            aws_container_authorization_token_file: None,
        }
    }
}

/// `CREDENTIALS_ADDR`: IP:PORT on a loopback address, or `localhost:PORT`
/// (127.0.0.1).
fn loopback_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let v = String::deserialize(d)?;
    let parsed = match v.strip_prefix("localhost:") {
        Some(port) => port
            .parse::<u16>()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .map_err(|_| ()),
        None => v.parse::<SocketAddr>().map_err(|_| ()),
    };
    match parsed {
        Ok(a) if a.ip().is_loopback() => Ok(a),
        Ok(_) => Err(serde::de::Error::custom(format!(
            "{v:?} is not a loopback address (127.0.0.1:PORT or [::1]:PORT): credentials never leave the host"
        ))),
        Err(_) => Err(serde::de::Error::custom(format!(
            "{v:?} is not IP:PORT (e.g. {DEFAULT_ADDR})"
        ))),
    }
}

/// `CREDENTIALS_HEALTH_ADDR`: IP:PORT.
fn health_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let v = String::deserialize(d)?;
    v.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{v:?} is not IP:PORT (e.g. 0.0.0.0:9912)")))
}

impl ServerConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_iter(std::env::vars())
    }

    /// Reads the given variables; every problem on its own line.
    #[allow(clippy::should_implement_trait)]
    pub(crate) fn from_iter<I>(vars: I) -> Result<ServerConfig, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut errors = Vec::new();
        let vars: Vec<(String, String)> = present(vars)
            .into_iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "CREDENTIALS_ADDR"
                        | "CREDENTIALS_HEALTH_ADDR"
                        | "AWS_CONTAINER_AUTHORIZATION_TOKEN"
                        | "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
                )
            })
            .collect();
        let settings: CredentialServerSettings = read_group(&vars, &mut errors);
        let addr_ok = !errors.iter().any(|e| e.starts_with("CREDENTIALS_ADDR:"));
        let (a, health_addr) = (settings.credentials_addr, settings.credentials_health_addr);
        if let Some(h) = health_addr {
            if addr_ok && a.port() == h.port() && (h.ip().is_unspecified() || h.ip() == a.ip()) {
                errors.push(format!(
                    "CREDENTIALS_HEALTH_ADDR: {h} would take the port of CREDENTIALS_ADDR {a}"
                ));
            }
        }
        let token = match (
            settings.aws_container_authorization_token_file,
            settings.aws_container_authorization_token,
        ) {
            (Some(path), _) => match AuthToken::file(path) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors.push(format!("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: {e}"));
                    None
                }
            },
            (None, Some(v)) => Some(AuthToken::value(&v)),
            (None, None) => {
                errors.push(
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN: required (or AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE): the token the application's SDK sends in Authorization".into(),
                );
                None
            }
        };
        match token {
            Some(token) if errors.is_empty() => Ok(ServerConfig {
                addr: a,
                health_addr,
                token,
            }),
            _ => Err(ConfigError(errors)),
        }
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ServerState {
    token: Arc<AuthToken>,
    default_role: Arc<RoleCache>,
    named: Arc<HashMap<String, Arc<RoleCache>>>,
}

fn cache_for(provider: &Arc<WebIdentityProvider>, time: &SharedTimeSource) -> Arc<RoleCache> {
    let p = provider.clone();
    Arc::new(RoleCache::new(
        provider.role_arn().to_owned(),
        Box::new(move || {
            let p = p.clone();
            Box::pin(async move { p.credentials().await })
        }),
        time.clone(),
    ))
}

impl ServerState {
    /// One cache per role, over the roles' providers.
    pub fn new(token: AuthToken, roles: &RoleProviders, time: SharedTimeSource) -> ServerState {
        ServerState {
            token: Arc::new(token),
            default_role: cache_for(roles.default_role(), &time),
            named: Arc::new(
                roles
                    .iter_named()
                    .map(|(n, p)| (n.to_owned(), cache_for(p, &time)))
                    .collect(),
            ),
        }
    }
}

/// The routes of the credential server.
pub(crate) fn router(state: ServerState) -> Router {
    Router::new()
        .route("/v1/credentials", get(default_credentials))
        .route("/v1/credentials/{name}", get(named_credentials))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
}

/// The router of `CREDENTIALS_HEALTH_ADDR`: `GET /healthz` only.
pub(crate) fn health_router() -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .fallback(not_found)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn not_found() -> AppError {
    RouteError::NoSuchRoute.into()
}

async fn readyz(State(s): State<ServerState>) -> Response {
    match s.default_role.credentials().await {
        Ok(_) => Json(StatusBody { status: "ready" }).into_response(),
        // The reason is in the log (the provider logged it); the answer says
        // nothing more than not_ready.
        Err(_) => crate::http::error::not_ready(),
    }
}

fn authorize(s: &ServerState, headers: &HeaderMap) -> Result<(), AppError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    Ok(s.token.check(presented)?)
}

/// The container-credentials answer the AWS SDKs read.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerCredentials<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: Option<&'a str>,
    expiration: Option<String>,
    role_arn: &'a str,
}

async fn answer(cache: &RoleCache) -> Result<Response, AppError> {
    let c = cache.credentials().await?;
    let body = ContainerCredentials {
        access_key_id: c.access_key_id(),
        secret_access_key: c.secret_access_key(),
        token: c.session_token(),
        expiration: c.expiry().map(rfc3339),
        role_arn: cache.role_arn(),
    };
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn default_credentials(
    State(s): State<ServerState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    authorize(&s, &headers)?;
    answer(&s.default_role).await
}

async fn named_credentials(
    State(s): State<ServerState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    authorize(&s, &headers)?;
    let cache = s
        .named
        .get(&name)
        .ok_or_else(|| RouteError::NoSuchRole(name.clone()))?;
    answer(cache).await
}

/// Serves until `shutdown` resolves, then finishes requests in flight.
pub async fn serve(
    addr: SocketAddr,
    health_addr: Option<SocketAddr>,
    state: ServerState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let health = match health_addr {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await?),
        None => None,
    };
    tracing::info!(
        addr = %listener.local_addr()?,
        health_addr = %health.as_ref().and_then(|h| h.local_addr().ok()).map(|a| a.to_string()).unwrap_or_default(),
        default_role = %state.default_role.role_arn(),
        roles = %{
            let mut n: Vec<String> = state.named.iter().map(|(k, v)| format!("{k}={}", v.role_arn())).collect();
            n.sort();
            n.join(",")
        },
        token = %state.token.source_name(),
        version = env!("CARGO_PKG_VERSION"),
        "credential server listening"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(h) = health {
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let _ = axum::serve(h, health_router())
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        });
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn addresses_must_be_loopback_and_the_token_is_never_shown() {
        let c = ServerConfig::from_iter(env(&[(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "s3cr3t-t0ken",
        )]))
        .unwrap();
        assert_eq!(c.addr, DEFAULT_ADDR.parse().unwrap());
        assert_eq!(c.health_addr, None);
        assert!(!format!("{c:?}").contains("s3cr3t"), "{c:?}");
        for ok in ["127.0.0.1:1", "127.1.2.3:9911", "[::1]:9911"] {
            ServerConfig::from_iter(env(&[
                ("CREDENTIALS_ADDR", ok),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "t"),
            ]))
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let c = ServerConfig::from_iter(env(&[
            ("CREDENTIALS_ADDR", "localhost:9913"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "t"),
        ]))
        .unwrap();
        assert_eq!(c.addr, "127.0.0.1:9913".parse().unwrap());
        for bad in [
            "0.0.0.0:9911",
            "10.0.0.1:9911",
            "[::]:9911",
            "localhost",
            "localhost:x",
            "9911",
        ] {
            let e = ServerConfig::from_iter(env(&[
                ("CREDENTIALS_ADDR", bad),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "s3cr3t"),
            ]))
            .unwrap_err();
            assert_eq!(e.0.len(), 1, "{e}");
            assert!(e.0[0].starts_with("CREDENTIALS_ADDR: "), "{e}");
            assert!(!e.to_string().contains("s3cr3t"));
        }
        let e = ServerConfig::from_iter(env(&[
            ("CREDENTIALS_ADDR", "127.0.0.1:9911"),
            ("CREDENTIALS_HEALTH_ADDR", "0.0.0.0:9911"),
        ]))
        .unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        assert!(e.0[0].starts_with("CREDENTIALS_HEALTH_ADDR: "), "{e}");
        assert!(
            e.0[1].starts_with("AWS_CONTAINER_AUTHORIZATION_TOKEN: "),
            "{e}"
        );
    }

    #[tokio::test]
    async fn routes_without_a_socket() {
        use tower::ServiceExt as _;
        let config = crate::config::Config::from_iter_for_cli(env(&[
            ("TARGET_AUDIENCE", "sts.amazonaws.com"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/main"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ROLES", "reader=arn:aws:iam::123456789012:role/r"),
            ("GCE_METADATA_HOST", "127.0.0.1:9"),
        ]))
        .unwrap();
        let ids = Arc::new(
            crate::google::identity::IdTokenSource::from_settings(&config.identity).unwrap(),
        );
        let roles = RoleProviders::new(&config.aws, ids, &crate::aws::AwsOptions::default());
        let state = ServerState::new(
            AuthToken::value("s3cr3t-t0ken"),
            &roles,
            crate::aws::AwsOptions::default().time_source,
        );
        assert!(!format!("{state:?}").contains("s3cr3t"));
        let app = router(state);
        let call = |path: &str, auth: Option<&str>| {
            let mut req = axum::http::Request::get(path);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            app.clone()
                .oneshot(req.body(axum::body::Body::empty()).unwrap())
        };
        assert_eq!(call("/healthz", None).await.unwrap().status(), 200);
        assert_eq!(call("/v1/credentials", None).await.unwrap().status(), 401);
        assert_eq!(
            call("/v1/credentials", Some("nope"))
                .await
                .unwrap()
                .status(),
            403
        );
        assert_eq!(
            call("/v1/credentials/reader", Some("nope"))
                .await
                .unwrap()
                .status(),
            403
        );
        // The role name is looked up only for the token holder.
        assert_eq!(call("/v1/credentials/x", None).await.unwrap().status(), 401);
        assert_eq!(
            call("/v1/credentials/x", Some("s3cr3t-t0ken"))
                .await
                .unwrap()
                .status(),
            404
        );
        assert_eq!(
            call("/other", Some("s3cr3t-t0ken")).await.unwrap().status(),
            404
        );
    }
}
