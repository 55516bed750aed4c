//! The AWS wing: everything that talks to AWS. The STS-backed credentials
//! provider, its roles and `whoami`, and the one [`SdkConfig`] every AWS
//! client shares, so that the SDK's lazy identity cache refreshes
//! credentials before they expire and loads them once for all concurrent
//! callers; S3 in [`s3`].
//!
//! The one rule between the wings: the provider presents the Google ID
//! token of [`crate::google::identity`] to STS. Nothing else here uses the
//! Google wing, and nothing in the Google wing uses this one.
//!
//! Environment: `AWS_REGION`, `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME`,
//! `AWS_ROLE_DURATION_SECONDS`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_STS`,
//! `AWS_ENDPOINT_URL_S3`, `S3_FORCE_PATH_STYLE`.

mod provider;
mod roles;
pub mod s3;
mod whoami;

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_async::rt::sleep::default_async_sleep;
use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::identity::SharedIdentityCache;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use crate::google::identity::IdTokenSource;
use crate::settings::{flag, host_name, is_role_arn, roles, sanitize_session_name, seconds, url};
use serde::Deserialize;

pub(crate) use provider::find_sts_error;
pub use provider::{
    trust_policy_diagnostic, CredentialsExpiry, StsError, WebIdentityProvider, PROVIDER_NAME,
};
pub use roles::RoleProviders;
pub use whoami::{whoami, AwsIdentity, GoogleIdentity, Whoami, WhoamiError};

/// Credentials are replaced this long before they expire.
pub(crate) const CREDENTIALS_REFRESH_BUFFER: Duration = Duration::from_secs(300);

/// The AWS clients of one process, all sharing one identity cache.
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// The shared configuration (region, credentials, cache, HTTP client).
    pub sdk: SdkConfig,
    /// S3, credentialed.
    pub s3: aws_sdk_s3::Client,
    /// STS with the role's credentials (GetCallerIdentity).
    pub(crate) sts: aws_sdk_sts::Client,
    /// The provider behind the cache, for its diagnostics and expiry.
    pub provider: Arc<WebIdentityProvider>,
}

/// Knobs tests turn; production uses the defaults.
#[derive(Clone, Debug)]
pub struct AwsOptions {
    /// The clock of the identity cache and signing.
    pub time_source: SharedTimeSource,
}

impl Default for AwsOptions {
    fn default() -> Self {
        AwsOptions {
            time_source: SharedTimeSource::new(SystemTimeSource::new()),
        }
    }
}

/// Whether S3 is reached over TLS: the AWS endpoint (no override) or an
/// `https://` one (`AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`).
pub(crate) fn s3_over_tls(config: &AwsSettings) -> bool {
    config
        .endpoint_url_s3
        .as_deref()
        .or(config.endpoint_url.as_deref())
        .is_none_or(|url| url.starts_with("https://"))
}

/// Where S3 is: `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else AWS's
/// own endpoint for the region; `S3_FORCE_PATH_STYLE`.
pub(crate) fn s3_endpoint(config: &AwsSettings) -> s3::S3Endpoint {
    s3::S3Endpoint {
        url: config
            .endpoint_url_s3
            .clone()
            .or_else(|| config.endpoint_url.clone()),
        force_path_style: config.s3_force_path_style,
    }
}

/// One HTTP client (hyper + rustls with ring) for every AWS call.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn base_config(
    config: &AwsSettings,
    http: SharedHttpClient,
    opts: &AwsOptions,
) -> aws_types::sdk_config::Builder {
    let mut b = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .http_client(http)
        .sleep_impl(default_async_sleep().expect("the tokio sleep implementation"))
        .time_source(opts.time_source.clone())
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .read_timeout(Duration::from_secs(60))
                .build(),
        );
    if let Some(url) = &config.endpoint_url {
        b = b.endpoint_url(url);
    }
    b
}

/// The STS client that assumes roles. It carries no credentials:
/// AssumeRoleWithWebIdentity is an unsigned call.
pub(crate) fn anonymous_sts(
    config: &AwsSettings,
    http: SharedHttpClient,
    opts: &AwsOptions,
) -> aws_sdk_sts::Client {
    let anonymous = base_config(config, http, opts).build();
    let mut sts_conf = aws_sdk_sts::config::Builder::from(&anonymous)
        // The provider retries on its own, knowing which STS errors are transient.
        .retry_config(RetryConfig::disabled());
    if let Some(url) = &config.endpoint_url_sts {
        sts_conf = sts_conf.endpoint_url(url);
    }
    aws_sdk_sts::Client::from_conf(sts_conf.build())
}

impl AwsClients {
    /// Builds the clients. Makes no network call: credentials load on first use.
    pub fn new(config: &AwsSettings, ids: Arc<IdTokenSource>, opts: AwsOptions) -> AwsClients {
        let http = http_client();
        let anonymous_sts = anonymous_sts(config, http.clone(), &opts);
        let provider = Arc::new(WebIdentityProvider::new(
            anonymous_sts,
            ids,
            config.role_arn.clone(),
            config.role_session_name.clone(),
            config.role_duration,
        ));

        let cache = SharedIdentityCache::new(
            aws_config::identity::IdentityCache::lazy()
                .buffer_time(CREDENTIALS_REFRESH_BUFFER)
                .load_timeout(Duration::from_secs(30))
                .build(),
        );
        let sdk = base_config(config, http, &opts)
            .credentials_provider(SharedCredentialsProvider::new(
                provider::SdkCredentialsProvider(provider.clone()),
            ))
            .identity_cache(cache)
            .build();

        let mut s3_conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(config.s3_force_path_style)
            // Checksums are computed by this service where it knows them
            // (CRC32C), not as aws-chunked trailers on streamed bodies.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
        if let Some(url) = &config.endpoint_url_s3 {
            s3_conf = s3_conf.endpoint_url(url);
        }
        let s3 = aws_sdk_s3::Client::from_conf(s3_conf.build());

        let mut sts_conf = aws_sdk_sts::config::Builder::from(&sdk);
        if let Some(url) = &config.endpoint_url_sts {
            sts_conf = sts_conf.endpoint_url(url);
        }
        let sts = aws_sdk_sts::Client::from_conf(sts_conf.build());
        AwsClients {
            sdk,
            s3,
            sts,
            provider,
        }
    }
}

/// The roles assumed and the AWS endpoints (`aws`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AwsSettings {
    /// `AWS_ROLE_ARN`: the role to assume.
    #[serde(rename = "aws_role_arn", default)]
    pub(crate) role_arn: String,
    /// `AWS_ROLE_SESSION_NAME`, else `K_SERVICE-K_REVISION`, else the host
    /// name; cut to STS rules.
    #[serde(rename = "aws_role_session_name", default)]
    pub(crate) role_session_name: String,
    /// `AWS_ROLE_DURATION_SECONDS`: 900–43200 (default 3600).
    #[serde(
        rename = "aws_role_duration_seconds",
        default = "default_role_duration",
        deserialize_with = "seconds::<_, 900, 43200>"
    )]
    pub(crate) role_duration: Duration,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`): region of STS and S3.
    #[serde(rename = "aws_region", default)]
    pub(crate) region: String,
    /// `AWS_ENDPOINT_URL`: endpoint for every AWS service.
    #[serde(rename = "aws_endpoint_url", default, deserialize_with = "url")]
    pub(crate) endpoint_url: Option<String>,
    /// `AWS_ENDPOINT_URL_STS`.
    #[serde(rename = "aws_endpoint_url_sts", default, deserialize_with = "url")]
    pub(crate) endpoint_url_sts: Option<String>,
    /// `AWS_ENDPOINT_URL_S3`.
    #[serde(rename = "aws_endpoint_url_s3", default, deserialize_with = "url")]
    pub(crate) endpoint_url_s3: Option<String>,
    /// `S3_FORCE_PATH_STYLE`: path-style S3 addressing, for emulators (default false).
    #[serde(default, deserialize_with = "flag")]
    pub(crate) s3_force_path_style: bool,
    /// `AWS_ROLES`: further roles by name, `name=arn,name2=arn2` (credential
    /// server routes `/v1/credentials/{name}`, `credentials --role NAME`).
    #[serde(rename = "aws_roles", default, deserialize_with = "roles")]
    pub(crate) roles: Vec<(String, String)>,
    #[serde(default)]
    aws_default_region: String,
    #[serde(default)]
    k_service: String,
    #[serde(default)]
    k_revision: String,
    #[serde(default)]
    hostname: String,
}

fn default_role_duration() -> Duration {
    Duration::from_secs(3600)
}

impl AwsSettings {
    /// Checks the role and the region, falls back to `AWS_DEFAULT_REGION`,
    /// and settles the session name.
    pub(crate) fn validate(&mut self, errors: &mut Vec<String>) {
        if self.role_arn.is_empty() {
            errors.push("AWS_ROLE_ARN: required".into());
        } else if !is_role_arn(&self.role_arn) {
            errors.push(format!(
                "AWS_ROLE_ARN: {:?} is not a role ARN (arn:aws:iam::123456789012:role/NAME)",
                self.role_arn
            ));
        }
        if self.region.is_empty() {
            self.region = std::mem::take(&mut self.aws_default_region);
        }
        if self.region.is_empty() {
            errors.push("AWS_REGION: required (the region of STS and the bucket)".into());
        }
        self.role_session_name = sanitize_session_name(&self.session_name());
    }

    /// `AWS_ROLE_SESSION_NAME`, else `K_SERVICE-K_REVISION` (both set, as
    /// Cloud Run and Cloud Functions set them), else the host name.
    fn session_name(&self) -> String {
        let (service, revision) = (&self.k_service, &self.k_revision);
        if !self.role_session_name.is_empty() {
            self.role_session_name.clone()
        } else if !service.is_empty() && !revision.is_empty() {
            // STS takes 64 characters: the service is cut first, so that
            // the revision (which repeats it on Cloud Run) stays whole.
            let name = format!("{service}-{revision}");
            let n = name.chars().count();
            name.chars().skip(n.saturating_sub(64)).collect()
        } else if !self.hostname.is_empty() {
            self.hostname.clone()
        } else {
            host_name().unwrap_or_else(|| "gcp-aws-bridge".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(extra: &[(&str, &str)]) -> AwsSettings {
        let base = [
            ("TARGET_AUDIENCE", "https://sts.amazonaws.com"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bridge"),
            ("AWS_REGION", "eu-west-1"),
            ("S3_BUCKET", "b"),
            ("AUTH_MODE", "none"),
        ];
        Config::from_iter(
            base.iter()
                .chain(extra)
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap()
        .aws
    }

    #[test]
    fn payloads_go_unsigned_only_over_tls() {
        assert!(s3_over_tls(&config(&[])));
        assert!(s3_over_tls(&config(&[(
            "AWS_ENDPOINT_URL_S3",
            "https://s3.example.com"
        )])));
        assert!(!s3_over_tls(&config(&[(
            "AWS_ENDPOINT_URL_S3",
            "http://127.0.0.1:9000"
        )])));
        assert!(!s3_over_tls(&config(&[(
            "AWS_ENDPOINT_URL",
            "http://127.0.0.1:9000"
        )])));
        // The S3 endpoint wins over the general one.
        assert!(s3_over_tls(&config(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_ENDPOINT_URL_S3", "https://s3.example.com"),
        ])));
    }
}
