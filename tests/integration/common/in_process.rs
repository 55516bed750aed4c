//! The service's router in this process, for route tests that need no rig:
//! a metadata emulator for the service's own ID token and for the JWKS that
//! signs callers' tokens, and AWS either at a closed port or at
//! [`FakeAws`], a stand-in that answers STS and refuses every S3 request.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bridge_testkit::{MetadataConfig, MetadataEmulator};
use gcp_aws_bridge::aws::AwsOptions;
use gcp_aws_bridge::config::Config;

use super::{caller_claims, service_env, ServiceEnv};

/// The bucket the in-process service is confined to.
pub const BUCKET: &str = "in-process-bucket";
/// Its key prefix.
pub const PREFIX: &str = "p/";

/// The router of the service built from `env` the way the binary builds
/// it. The one place that knows how the state is put together.
pub fn service_router(env: &[(String, String)]) -> Router {
    let config = Config::from_iter(env.iter().cloned()).expect("test configuration");
    let state = gcp_aws_bridge::http::app::AppState::new(config, AwsOptions::default())
        .expect("the service's state");
    gcp_aws_bridge::http::app::router(state)
}

/// A URL on 127.0.0.1 where nothing listens: a connection is refused at once.
pub fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("its address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A metadata emulator and the environment of a service that uses it, with
/// callers checked per `auth_mode` and AWS at a closed port.
pub struct InProcess {
    pub metadata: MetadataEmulator,
    pub env: Vec<(String, String)>,
}

impl InProcess {
    pub async fn new(auth_mode: &str) -> InProcess {
        let metadata = MetadataEmulator::start(MetadataConfig::default()).await;
        let env = service_env(&ServiceEnv {
            metadata: &metadata,
            aws_url: &closed_url(),
            role_arn: "arn:aws:iam::123456789012:role/bridge",
            session_name: "in-process",
            bucket: BUCKET,
            prefix: PREFIX,
            auth_mode,
        });
        InProcess { metadata, env }
    }

    /// Sets (or replaces) an environment variable of the service.
    pub fn set(&mut self, k: &str, v: &str) {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.to_owned(), v.to_owned()));
    }

    pub fn router(&self) -> Router {
        service_router(&self.env)
    }

    /// A caller token the service accepts in `verify` mode.
    pub fn caller_token(&self) -> String {
        self.caller_token_with(serde_json::json!({}))
    }

    /// A caller token with claims overridden by `overrides` (a null removes
    /// the claim).
    pub fn caller_token_with(&self, overrides: serde_json::Value) -> String {
        self.metadata.mint(caller_claims(overrides))
    }
}

/// What [`FakeAws`] hands out as credentials, to look for where they must
/// never be.
pub const FAKE_ACCESS_KEY_ID: &str = "ASIAFAKEINPROCESS001";
pub const FAKE_SECRET_ACCESS_KEY: &str = "fAkEsEcReTaCcEsSkEy/InPrOcEsS+0123456789";
pub const FAKE_SESSION_TOKEN: &str = "FakeSessionTokenInProcess0123456789abcdefABCDEF==";

/// STS and S3 at one address: AssumeRoleWithWebIdentity answers the fake
/// credentials, GetCallerIdentity an assumed role, and every other request
/// (S3) `403 AccessDenied`.
pub struct FakeAws {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAws {
    pub async fn start() -> FakeAws {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the AWS stand-in");
        let addr: SocketAddr = listener.local_addr().expect("its address");
        let app = Router::new().fallback(answer);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAws {
            url: format!("http://{addr}"),
            task,
        }
    }
}

impl Drop for FakeAws {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const ARN: &str = "arn:aws:sts::123456789012:assumed-role/bridge/in-process";

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

async fn answer(body: Bytes) -> Response {
    let form = String::from_utf8_lossy(&body);
    if form.contains("Action=AssumeRoleWithWebIdentity") {
        let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let expires = expires
            .replace_nanosecond(0)
            .expect("whole seconds")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("an RFC 3339 time");
        return xml(
            StatusCode::OK,
            format!(
                "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                 <AssumeRoleWithWebIdentityResult>\
                 <SubjectFromWebIdentityToken>104857600000000000001</SubjectFromWebIdentityToken>\
                 <Audience>104857600000000000001</Audience>\
                 <AssumedRoleUser><Arn>{ARN}</Arn><AssumedRoleId>AROAFAKE:in-process</AssumedRoleId></AssumedRoleUser>\
                 <Credentials><AccessKeyId>{FAKE_ACCESS_KEY_ID}</AccessKeyId>\
                 <SecretAccessKey>{FAKE_SECRET_ACCESS_KEY}</SecretAccessKey>\
                 <SessionToken>{FAKE_SESSION_TOKEN}</SessionToken>\
                 <Expiration>{expires}</Expiration></Credentials>\
                 <Provider>accounts.google.com</Provider>\
                 </AssumeRoleWithWebIdentityResult>\
                 <ResponseMetadata><RequestId>in-process</RequestId></ResponseMetadata>\
                 </AssumeRoleWithWebIdentityResponse>"
            ),
        );
    }
    if form.contains("Action=GetCallerIdentity") {
        return xml(
            StatusCode::OK,
            format!(
                "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                 <GetCallerIdentityResult><Arn>{ARN}</Arn><UserId>AROAFAKE:in-process</UserId>\
                 <Account>123456789012</Account></GetCallerIdentityResult>\
                 <ResponseMetadata><RequestId>in-process</RequestId></ResponseMetadata>\
                 </GetCallerIdentityResponse>"
            ),
        );
    }
    xml(
        StatusCode::FORBIDDEN,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <Error><Code>AccessDenied</Code><Message>Access Denied</Message>\
         <RequestId>in-process</RequestId><HostId>in-process</HostId></Error>"
            .to_owned(),
    )
}
