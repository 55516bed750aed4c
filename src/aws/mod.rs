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

use crate::config::Config;
use crate::google::identity::IdTokenSource;

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

/// One HTTP client (hyper + rustls with ring) for every AWS call.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn base_config(
    config: &Config,
    http: SharedHttpClient,
    opts: &AwsOptions,
) -> aws_types::sdk_config::Builder {
    let mut b = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config.aws.region.clone()))
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
    if let Some(url) = &config.aws.endpoint_url {
        b = b.endpoint_url(url);
    }
    b
}

/// The STS client that assumes roles. It carries no credentials:
/// AssumeRoleWithWebIdentity is an unsigned call.
pub(crate) fn anonymous_sts(
    config: &Config,
    http: SharedHttpClient,
    opts: &AwsOptions,
) -> aws_sdk_sts::Client {
    let anonymous = base_config(config, http, opts).build();
    let mut sts_conf = aws_sdk_sts::config::Builder::from(&anonymous)
        // The provider retries on its own, knowing which STS errors are transient.
        .retry_config(RetryConfig::disabled());
    if let Some(url) = &config.aws.endpoint_url_sts {
        sts_conf = sts_conf.endpoint_url(url);
    }
    aws_sdk_sts::Client::from_conf(sts_conf.build())
}

impl AwsClients {
    /// Builds the clients. Makes no network call: credentials load on first use.
    pub fn new(config: &Config, ids: Arc<IdTokenSource>, opts: AwsOptions) -> AwsClients {
        let http = http_client();
        let anonymous_sts = anonymous_sts(config, http.clone(), &opts);
        let provider = Arc::new(WebIdentityProvider::new(
            anonymous_sts,
            ids,
            config.aws.role_arn.clone(),
            config.aws.role_session_name.clone(),
            config.aws.role_duration,
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
            .force_path_style(config.aws.s3_force_path_style)
            // Checksums are computed by this service where it knows them
            // (CRC32C), not as aws-chunked trailers on streamed bodies.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
        if let Some(url) = &config.aws.endpoint_url_s3 {
            s3_conf = s3_conf.endpoint_url(url);
        }
        let s3 = aws_sdk_s3::Client::from_conf(s3_conf.build());

        let mut sts_conf = aws_sdk_sts::config::Builder::from(&sdk);
        if let Some(url) = &config.aws.endpoint_url_sts {
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
