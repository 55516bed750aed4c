//! Configuration, read from the environment with envy and validated at
//! start. Every problem is reported on its own line naming the variable.
//!
//! ```text
//! TARGET_AUDIENCE=https://sts.amazonaws.com   # aud of the Google ID token
//! AWS_ROLE_ARN=arn:aws:iam::123456789012:role/gcp-bridge
//! AWS_REGION=eu-west-1
//! S3_BUCKET=my-bucket  S3_PREFIX=from-gcp/
//! AUTH_MODE=verify  AUTH_AUDIENCES=https://bridge-xyz.a.run.app
//! AUTH_ALLOWED_EMAILS=pubsub-push@my-project.iam.gserviceaccount.com
//! ```
//!
//! This module reads the environment only; it makes no outbound call.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Where the Google ID token comes from (`ID_TOKEN_SOURCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenSourceKind {
    /// Pick from the environment: file, impersonate, key file, metadata.
    Auto,
    /// The GCE / Cloud Run metadata server.
    Metadata,
    /// A service-account key file in `GOOGLE_APPLICATION_CREDENTIALS`.
    ServiceAccountKey,
    /// IAM Credentials `generateIdToken` for `IMPERSONATE_SERVICE_ACCOUNT`.
    Impersonate,
    /// A JWT in `GOOGLE_ID_TOKEN_FILE`, read again at every refresh.
    File,
}

/// How callers of the HTTP surface are checked (`AUTH_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Verify the RS256 signature against Google's certificates, and the claims.
    Verify,
    /// Cloud Run checked the signature; check `aud`, `exp` and the email.
    CloudRunIam,
    /// No check: local use only.
    None,
}

/// Log line format (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Cloud Logging structured JSON, one object a line.
    Json,
    /// Human-readable lines.
    Text,
}

/// The environment as read, before validation: every value a string so that
/// each bad one can be named.
#[derive(Debug, Default, Deserialize)]
struct RawEnv {
    port: Option<String>,
    target_audience: Option<String>,
    id_token_source: Option<String>,
    gce_metadata_host: Option<String>,
    google_application_credentials: Option<String>,
    impersonate_service_account: Option<String>,
    iam_credentials_endpoint: Option<String>,
    google_id_token_file: Option<String>,
    aws_role_arn: Option<String>,
    aws_role_session_name: Option<String>,
    aws_role_duration_seconds: Option<String>,
    aws_region: Option<String>,
    aws_default_region: Option<String>,
    aws_endpoint_url: Option<String>,
    aws_endpoint_url_sts: Option<String>,
    aws_endpoint_url_s3: Option<String>,
    s3_force_path_style: Option<String>,
    s3_bucket: Option<String>,
    s3_prefix: Option<String>,
    auth_mode: Option<String>,
    auth_audiences: Option<String>,
    auth_allowed_emails: Option<String>,
    google_certs_url: Option<String>,
    max_body_bytes: Option<String>,
    max_object_bytes: Option<String>,
    buffer_budget_bytes: Option<String>,
    request_timeout_seconds: Option<String>,
    log_format: Option<String>,
    google_cloud_project: Option<String>,
    storage_emulator_host: Option<String>,
    gcs_source_buckets: Option<String>,
    test_copy_multipart_threshold_bytes: Option<String>,
    aws_roles: Option<String>,
    pubsub_topic: Option<String>,
    pubsub_emulator_host: Option<String>,
    part_task_bytes: Option<String>,
    k_service: Option<String>,
    k_revision: Option<String>,
    hostname: Option<String>,
}

/// The validated configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// `PORT`: listen port on 0.0.0.0 (default 8080).
    pub port: u16,
    /// `TARGET_AUDIENCE`: the `aud` of the Google ID token presented to STS.
    pub target_audience: String,
    /// `ID_TOKEN_SOURCE`: auto | metadata | service-account-key | impersonate | file.
    pub id_token_source: IdTokenSourceKind,
    /// `GCE_METADATA_HOST`: metadata server `host:port` (default metadata.google.internal).
    pub metadata_host: String,
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a key file path.
    pub google_application_credentials: Option<String>,
    /// `IMPERSONATE_SERVICE_ACCOUNT`: service account email to mint ID tokens for.
    pub impersonate_service_account: Option<String>,
    /// `IAM_CREDENTIALS_ENDPOINT`: IAM Credentials API base URL (default https://iamcredentials.googleapis.com).
    pub iam_credentials_endpoint: String,
    /// `GOOGLE_ID_TOKEN_FILE`: a file holding a JWT.
    pub google_id_token_file: Option<String>,
    /// `AWS_ROLE_ARN`: the role to assume.
    pub role_arn: String,
    /// `AWS_ROLE_SESSION_NAME`, else `K_SERVICE-K_REVISION`, else the host name; cut to STS rules.
    pub role_session_name: String,
    /// `AWS_ROLE_DURATION_SECONDS`: 900–43200 (default 3600).
    pub role_duration: Duration,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`): region of STS and S3.
    pub region: String,
    /// `AWS_ENDPOINT_URL`: endpoint for every AWS service.
    pub endpoint_url: Option<String>,
    /// `AWS_ENDPOINT_URL_STS`: STS endpoint.
    pub endpoint_url_sts: Option<String>,
    /// `AWS_ENDPOINT_URL_S3`: S3 endpoint.
    pub endpoint_url_s3: Option<String>,
    /// `S3_FORCE_PATH_STYLE`: path-style S3 addressing, for emulators (default false).
    pub s3_force_path_style: bool,
    /// `S3_BUCKET`: the one bucket every operation is confined to.
    pub s3_bucket: String,
    /// `S3_PREFIX`: keys are confined under this prefix (default empty); empty
    /// or ending with `/`.
    pub s3_prefix: String,
    /// `AUTH_MODE`: verify (default) | cloud-run-iam | none.
    pub auth_mode: AuthMode,
    /// `AUTH_AUDIENCES`: comma-separated accepted `aud` values of callers' tokens.
    pub auth_audiences: Vec<String>,
    /// `AUTH_ALLOWED_EMAILS`: comma-separated caller emails allowed.
    pub auth_allowed_emails: Vec<String>,
    /// `GOOGLE_CERTS_URL`: Google's JWKS (default https://www.googleapis.com/oauth2/v3/certs).
    pub google_certs_url: String,
    /// `MAX_BODY_BYTES`: request body limit except for streamed object PUTs (default 32 MiB).
    pub max_body_bytes: usize,
    /// `REQUEST_TIMEOUT_SECONDS`: per-request deadline (default 300, Cloud Run's default).
    pub request_timeout: Duration,
    /// `MAX_OBJECT_BYTES`: largest object a PUT may write (default and most 5 TiB, S3's limit).
    pub max_object_bytes: u64,
    /// `BUFFER_BUDGET_BYTES`: bytes all requests together may hold in buffers
    /// (default half the cgroup `memory.max`, else 256 MiB).
    pub buffer_budget_bytes: u64,
    /// How long a request waits for buffers before answering 503 (10 s; not
    /// read from the environment, tests shorten it).
    pub buffer_wait: Duration,
    /// `LOG_FORMAT`: json (default) | text.
    pub log_format: LogFormat,
    /// `GOOGLE_CLOUD_PROJECT`: project id for trace correlation.
    pub google_cloud_project: Option<String>,
    /// `STORAGE_EMULATOR_HOST`: Cloud Storage endpoint override; no token is sent then.
    pub storage_emulator_host: Option<String>,
    /// `GCS_SOURCE_BUCKETS`: comma-separated buckets replication may read, `*` for any; unset: off.
    pub gcs_source_buckets: crate::source_buckets::SourceBuckets,
    /// `TEST_COPY_MULTIPART_THRESHOLD_BYTES` (tests only): copies larger than this
    /// go part by part (default 5 GiB, S3's CopyObject limit; at least 5 MiB).
    pub copy_multipart_threshold: u64,
    /// `AWS_ROLES`: further roles by name, `name=arn,name2=arn2` (credential
    /// server routes `/v1/credentials/{name}`, `credentials --role NAME`).
    pub roles: Vec<(String, String)>,
    /// `PUBSUB_TOPIC`: the commands topic (`projects/P/topics/T`) that sync
    /// pages and part tasks publish further commands to.
    pub pubsub_topic: Option<String>,
    /// `PUBSUB_EMULATOR_HOST`: Pub/Sub endpoint override (`host:port`, plain
    /// http); no token is sent then.
    pub pubsub_emulator_host: Option<String>,
    /// `PART_TASK_BYTES`: objects of at least this size are replicated in
    /// parts, one Pub/Sub command per part (default 1 GiB, at least 5 MiB).
    pub part_task_bytes: u64,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Nothing here is secret, but the struct may grow; list fields explicitly.
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("target_audience", &self.target_audience)
            .field("id_token_source", &self.id_token_source)
            .field("role_arn", &self.role_arn)
            .field("role_session_name", &self.role_session_name)
            .field("region", &self.region)
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_prefix", &self.s3_prefix)
            .field("auth_mode", &self.auth_mode)
            .field("gcs_source_buckets", &self.gcs_source_buckets)
            .field("roles", &self.roles)
            .field("pubsub_topic", &self.pubsub_topic)
            .field("part_task_bytes", &self.part_task_bytes)
            .finish_non_exhaustive()
    }
}

/// Every problem found in the environment, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(line)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Default Google certificate (JWKS) URL.
pub const GOOGLE_CERTS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
const DEFAULT_MAX_BODY: usize = 32 * 1024 * 1024;
/// Default `PART_TASK_BYTES`: 1 GiB.
pub const DEFAULT_PART_TASK_BYTES: u64 = 1024 * 1024 * 1024;
/// S3's smallest part but the last: the smallest `PART_TASK_BYTES`.
pub const MIN_PART_TASK_BYTES: u64 = 5 * 1024 * 1024;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_iter(std::env::vars())
    }

    /// Reads the given variables (tests inject their environment this way).
    /// Named after `envy::from_iter`, which it wraps.
    #[allow(clippy::should_implement_trait)]
    pub fn from_iter<I>(vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        Config::read(vars, true)
    }

    /// Reads the process environment for the `credentials` and `whoami`
    /// commands, which need no bucket and no caller checks.
    pub fn from_env_for_cli() -> Result<Config, ConfigError> {
        Config::read(std::env::vars(), false)
    }

    /// As [`Config::from_iter`], for the command line.
    pub fn from_iter_for_cli<I>(vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        Config::read(vars, false)
    }

    fn read<I>(vars: I, service: bool) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        // Empty values count as unset, as in most cloud consoles.
        let vars = vars.into_iter().filter(|(_, v)| !v.trim().is_empty());
        let raw: RawEnv = envy::from_iter(vars).map_err(|e| ConfigError(vec![e.to_string()]))?;
        raw.validate(service)
    }
}

fn trimmed(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn list(v: &Option<String>) -> Vec<String> {
    v.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn is_url(v: &str) -> bool {
    (v.starts_with("http://") || v.starts_with("https://")) && v.len() > "https://".len()
}

/// A role ARN: `arn:PARTITION:iam::ACCOUNT:role/NAME`.
fn is_role_arn(v: &str) -> bool {
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty())
}

/// Cuts a session name to the STS rules: 2–64 characters of `[\w+=,.@-]`.
pub fn sanitize_session_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if s.len() < 2 {
        s = format!("gcp-aws-bridge{s}").chars().take(64).collect();
    }
    s
}

impl RawEnv {
    fn validate(self, service: bool) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();
        let mut required = |name: &str, v: &Option<String>| -> String {
            trimmed(v).unwrap_or_else(|| {
                errors.push(format!("{name}: required"));
                String::new()
            })
        };
        let target_audience = required("TARGET_AUDIENCE", &self.target_audience);
        let role_arn = required("AWS_ROLE_ARN", &self.aws_role_arn);
        let s3_bucket = if service {
            required("S3_BUCKET", &self.s3_bucket)
        } else {
            trimmed(&self.s3_bucket).unwrap_or_default()
        };
        let region = trimmed(&self.aws_region).or_else(|| trimmed(&self.aws_default_region));
        let region = match region {
            Some(r) => r,
            None => {
                errors.push("AWS_REGION: required (the region of STS and the bucket)".into());
                String::new()
            }
        };

        let port = match trimmed(&self.port) {
            None => 8080,
            Some(p) => p.parse::<u16>().unwrap_or_else(|_| {
                errors.push(format!("PORT: {p:?} is not a port number (1-65535)"));
                8080
            }),
        };
        if !role_arn.is_empty() && !is_role_arn(&role_arn) {
            errors.push(format!(
                "AWS_ROLE_ARN: {role_arn:?} is not a role ARN (arn:aws:iam::123456789012:role/NAME)"
            ));
        }
        let role_duration = match trimmed(&self.aws_role_duration_seconds) {
            None => 3600,
            Some(d) => match d.parse::<u64>() {
                Ok(n) if (900..=43200).contains(&n) => n,
                _ => {
                    errors.push(format!(
                        "AWS_ROLE_DURATION_SECONDS: {d:?} must be a whole number of seconds from 900 to 43200"
                    ));
                    3600
                }
            },
        };
        let id_token_source = match trimmed(&self.id_token_source).as_deref() {
            None | Some("auto") => IdTokenSourceKind::Auto,
            Some("metadata") => IdTokenSourceKind::Metadata,
            Some("service-account-key") => IdTokenSourceKind::ServiceAccountKey,
            Some("impersonate") => IdTokenSourceKind::Impersonate,
            Some("file") => IdTokenSourceKind::File,
            Some(other) => {
                errors.push(format!(
                    "ID_TOKEN_SOURCE: {other:?} is not one of auto, metadata, service-account-key, impersonate, file"
                ));
                IdTokenSourceKind::Auto
            }
        };
        let gac = trimmed(&self.google_application_credentials);
        let impersonate = trimmed(&self.impersonate_service_account);
        let id_file = trimmed(&self.google_id_token_file);
        match id_token_source {
            IdTokenSourceKind::ServiceAccountKey if gac.is_none() => errors.push(
                "GOOGLE_APPLICATION_CREDENTIALS: required when ID_TOKEN_SOURCE=service-account-key"
                    .into(),
            ),
            IdTokenSourceKind::Impersonate if impersonate.is_none() => errors.push(
                "IMPERSONATE_SERVICE_ACCOUNT: required when ID_TOKEN_SOURCE=impersonate".into(),
            ),
            IdTokenSourceKind::File if id_file.is_none() => {
                errors.push("GOOGLE_ID_TOKEN_FILE: required when ID_TOKEN_SOURCE=file".into())
            }
            _ => {}
        }
        if let Some(sa) = &impersonate {
            if !sa.contains('@') {
                errors.push(format!(
                    "IMPERSONATE_SERVICE_ACCOUNT: {sa:?} is not a service account email"
                ));
            }
        }

        let mut endpoint = |name: &str, v: &Option<String>| -> Option<String> {
            let v = trimmed(v)?;
            if is_url(&v) {
                Some(v.trim_end_matches('/').to_owned())
            } else {
                errors.push(format!("{name}: {v:?} is not an http(s) URL"));
                None
            }
        };
        let endpoint_url = endpoint("AWS_ENDPOINT_URL", &self.aws_endpoint_url);
        let endpoint_url_sts = endpoint("AWS_ENDPOINT_URL_STS", &self.aws_endpoint_url_sts);
        let endpoint_url_s3 = endpoint("AWS_ENDPOINT_URL_S3", &self.aws_endpoint_url_s3);
        let google_certs_url = endpoint("GOOGLE_CERTS_URL", &self.google_certs_url)
            .unwrap_or_else(|| GOOGLE_CERTS_URL.to_owned());
        let iam_credentials_endpoint =
            endpoint("IAM_CREDENTIALS_ENDPOINT", &self.iam_credentials_endpoint)
                .unwrap_or_else(|| "https://iamcredentials.googleapis.com".to_owned());

        let s3_force_path_style = match trimmed(&self.s3_force_path_style).as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                errors.push(format!(
                    "S3_FORCE_PATH_STYLE: {other:?} is not true or false"
                ));
                false
            }
        };
        let s3_prefix = trimmed(&self.s3_prefix).unwrap_or_default();
        if s3_prefix.starts_with('/') {
            errors.push(format!("S3_PREFIX: {s3_prefix:?} must not start with '/'"));
        } else if !s3_prefix.is_empty() && !s3_prefix.ends_with('/') {
            // "data" would also reach "data-x/" and "database/".
            errors.push(format!(
                "S3_PREFIX: {s3_prefix:?} must end with '/' (e.g. {:?}); a prefix without it also reaches keys beside it",
                format!("{s3_prefix}/")
            ));
        } else if s3_prefix.len() >= 1024 || s3_prefix.chars().any(char::is_control) {
            errors.push("S3_PREFIX: too long or has a control character".into());
        }

        let auth_mode = match trimmed(&self.auth_mode).as_deref() {
            None | Some("verify") => AuthMode::Verify,
            Some("cloud-run-iam") => AuthMode::CloudRunIam,
            Some("none") => AuthMode::None,
            Some(other) => {
                errors.push(format!(
                    "AUTH_MODE: {other:?} is not one of verify, cloud-run-iam, none"
                ));
                AuthMode::Verify
            }
        };
        let auth_audiences = list(&self.auth_audiences);
        let auth_allowed_emails: Vec<String> = list(&self.auth_allowed_emails)
            .into_iter()
            .map(|e| e.to_ascii_lowercase())
            .collect();
        if service && auth_mode != AuthMode::None {
            if auth_audiences.is_empty() {
                errors.push(
                    "AUTH_AUDIENCES: required unless AUTH_MODE=none (comma-separated audiences of callers' tokens, e.g. the service URL)".into(),
                );
            }
            if auth_allowed_emails.is_empty() {
                errors.push(
                    "AUTH_ALLOWED_EMAILS: required unless AUTH_MODE=none (comma-separated caller emails)".into(),
                );
            }
        }

        let max_body_bytes = match trimmed(&self.max_body_bytes) {
            None => DEFAULT_MAX_BODY,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    errors.push(format!(
                        "MAX_BODY_BYTES: {v:?} is not a positive number of bytes"
                    ));
                    DEFAULT_MAX_BODY
                }
            },
        };
        let request_timeout = match trimmed(&self.request_timeout_seconds) {
            None => 300,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=3600).contains(&n) => n,
                _ => {
                    errors.push(format!(
                        "REQUEST_TIMEOUT_SECONDS: {v:?} must be a whole number from 1 to 3600"
                    ));
                    300
                }
            },
        };
        let mut bytes = |name: &str, v: &Option<String>, default: u64, max: u64| -> u64 {
            match trimmed(v) {
                None => default,
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (1..=max).contains(&n) => n,
                    _ => {
                        errors.push(format!(
                            "{name}: {v:?} must be a whole number of bytes from 1 to {max}"
                        ));
                        default
                    }
                },
            }
        };
        let max_object_bytes = bytes(
            "MAX_OBJECT_BYTES",
            &self.max_object_bytes,
            crate::storage::MAX_OBJECT,
            crate::storage::MAX_OBJECT,
        );
        let buffer_budget_bytes = bytes(
            "BUFFER_BUDGET_BYTES",
            &self.buffer_budget_bytes,
            crate::budget::default_budget(),
            u64::MAX / 2,
        );
        let log_format = match trimmed(&self.log_format).as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                errors.push(format!("LOG_FORMAT: {other:?} is not json or text"));
                LogFormat::Json
            }
        };

        let gcs_source_buckets =
            crate::source_buckets::SourceBuckets::parse(self.gcs_source_buckets.as_deref())
                .unwrap_or_else(|lines| {
                    errors.extend(lines);
                    crate::source_buckets::SourceBuckets::Off
                });
        let copy_multipart_threshold = match trimmed(&self.test_copy_multipart_threshold_bytes) {
            None => crate::storage::COPY_MULTIPART_THRESHOLD,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (5 << 20..=crate::storage::COPY_MULTIPART_THRESHOLD).contains(&n) => n,
                _ => {
                    errors.push(format!(
                        "TEST_COPY_MULTIPART_THRESHOLD_BYTES: {v:?} must be from 5 MiB to 5 GiB in bytes"
                    ));
                    crate::storage::COPY_MULTIPART_THRESHOLD
                }
            },
        };
        let pubsub_topic = trimmed(&self.pubsub_topic);
        if let Some(t) = &pubsub_topic {
            if !crate::publisher::is_topic_name(t) {
                errors.push(format!(
                    "PUBSUB_TOPIC: {t:?} is not a topic name (projects/PROJECT/topics/TOPIC)"
                ));
            }
        }
        let part_task_bytes = match trimmed(&self.part_task_bytes) {
            None => DEFAULT_PART_TASK_BYTES,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= MIN_PART_TASK_BYTES => n,
                _ => {
                    errors.push(format!(
                        "PART_TASK_BYTES: {v:?} must be a whole number of bytes, at least {MIN_PART_TASK_BYTES} (5 MiB)"
                    ));
                    DEFAULT_PART_TASK_BYTES
                }
            },
        };

        let role_session_name = sanitize_session_name(
            &trimmed(&self.aws_role_session_name)
                .or_else(
                    || match (trimmed(&self.k_service), trimmed(&self.k_revision)) {
                        (Some(s), Some(r)) => Some(if r.starts_with(&s) {
                            r
                        } else {
                            format!("{s}-{r}")
                        }),
                        (Some(s), None) => Some(s),
                        _ => None,
                    },
                )
                .or_else(|| trimmed(&self.hostname))
                .or_else(host_name)
                .unwrap_or_else(|| "gcp-aws-bridge".to_owned()),
        );

        let roles = parse_roles(
            trimmed(&self.aws_roles).as_deref().unwrap_or(""),
            &mut errors,
        );

        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        Ok(Config {
            port,
            target_audience,
            id_token_source,
            metadata_host: trimmed(&self.gce_metadata_host)
                .unwrap_or_else(|| "metadata.google.internal".to_owned()),
            google_application_credentials: gac,
            impersonate_service_account: impersonate,
            iam_credentials_endpoint,
            google_id_token_file: id_file,
            role_arn,
            role_session_name,
            role_duration: Duration::from_secs(role_duration),
            region,
            endpoint_url,
            endpoint_url_sts,
            endpoint_url_s3,
            s3_force_path_style,
            s3_bucket,
            s3_prefix,
            auth_mode,
            auth_audiences,
            auth_allowed_emails,
            google_certs_url,
            max_body_bytes,
            request_timeout: Duration::from_secs(request_timeout),
            max_object_bytes,
            buffer_budget_bytes,
            buffer_wait: crate::budget::DEFAULT_WAIT,
            log_format,
            google_cloud_project: trimmed(&self.google_cloud_project),
            storage_emulator_host: trimmed(&self.storage_emulator_host),
            gcs_source_buckets,
            copy_multipart_threshold,
            roles,
            pubsub_topic,
            pubsub_emulator_host: trimmed(&self.pubsub_emulator_host),
            part_task_bytes,
        })
    }
}

/// A role name of `AWS_ROLES`: 1–64 characters of `[A-Za-z0-9_.-]`.
fn is_role_name(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// `AWS_ROLES`: `name=arn,name2=arn2`; each problem is pushed to `errors`.
fn parse_roles(v: &str, errors: &mut Vec<String>) -> Vec<(String, String)> {
    let mut roles: Vec<(String, String)> = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, arn)) = entry.split_once('=') else {
            errors.push(format!("AWS_ROLES: {entry:?} is not name=arn"));
            continue;
        };
        let (name, arn) = (name.trim(), arn.trim());
        if !is_role_name(name) {
            errors.push(format!(
                "AWS_ROLES: role name {name:?} must be 1-64 characters of A-Z a-z 0-9 _ . -"
            ));
        } else if !is_role_arn(arn) {
            errors.push(format!(
                "AWS_ROLES: {arn:?} (role {name}) is not a role ARN (arn:aws:iam::123456789012:role/NAME)"
            ));
        } else if roles.iter().any(|(n, _)| n == name) {
            errors.push(format!("AWS_ROLES: role name {name:?} is given twice"));
        } else {
            roles.push((name.to_owned(), arn.to_owned()));
        }
    }
    roles
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
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

    fn minimal() -> Vec<(String, String)> {
        env(&[
            ("TARGET_AUDIENCE", "https://sts.amazonaws.com"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bridge"),
            ("AWS_REGION", "eu-west-1"),
            ("S3_BUCKET", "b"),
            ("AUTH_AUDIENCES", "https://svc"),
            ("AUTH_ALLOWED_EMAILS", "Push@p.iam.gserviceaccount.com"),
            ("K_SERVICE", "bridge"),
            ("K_REVISION", "bridge-00001-abc"),
        ])
    }

    #[test]
    fn minimal_config_has_defaults() {
        let c = Config::from_iter(minimal()).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.role_duration, Duration::from_secs(3600));
        assert_eq!(c.auth_mode, AuthMode::Verify);
        assert_eq!(c.max_body_bytes, 32 * 1024 * 1024);
        assert_eq!(c.metadata_host, "metadata.google.internal");
        assert_eq!(c.role_session_name, "bridge-00001-abc");
        assert_eq!(
            c.auth_allowed_emails,
            vec!["push@p.iam.gserviceaccount.com"]
        );
        assert_eq!(c.google_certs_url, GOOGLE_CERTS_URL);
        assert_eq!(c.max_object_bytes, 5 * 1024 * 1024 * 1024 * 1024);
        assert!(c.buffer_budget_bytes > 0);
        assert_eq!(c.buffer_wait, Duration::from_secs(10));
    }

    #[test]
    fn object_and_budget_limits() {
        let mut v = minimal();
        v.push(("MAX_OBJECT_BYTES".into(), "1048576".into()));
        v.push(("BUFFER_BUDGET_BYTES".into(), "67108864".into()));
        let c = Config::from_iter(v).unwrap();
        assert_eq!(c.max_object_bytes, 1 << 20);
        assert_eq!(c.buffer_budget_bytes, 64 << 20);
        for (k, bad) in [
            ("MAX_OBJECT_BYTES", "0"),
            ("MAX_OBJECT_BYTES", "5497558138881"),
            ("BUFFER_BUDGET_BYTES", "-1"),
            ("BUFFER_BUDGET_BYTES", "lots"),
        ] {
            let mut v = minimal();
            v.push((k.into(), bad.into()));
            let e = Config::from_iter(v).unwrap_err();
            assert_eq!(e.0.len(), 1, "{e}");
            assert!(e.0[0].starts_with(&format!("{k}: ")), "{e}");
        }
    }

    #[test]
    fn every_bad_variable_is_named_on_its_own_line() {
        let e = Config::from_iter(env(&[
            ("PORT", "eighty"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:user/x"),
            ("AWS_ROLE_DURATION_SECONDS", "60"),
            ("AUTH_MODE", "maybe"),
            ("ID_TOKEN_SOURCE", "magic"),
            ("AWS_ENDPOINT_URL_S3", "localhost:9000"),
            ("MAX_BODY_BYTES", "-1"),
            ("LOG_FORMAT", "xml"),
        ]))
        .unwrap_err();
        let text = e.to_string();
        for var in [
            "TARGET_AUDIENCE: required",
            "S3_BUCKET: required",
            "AWS_REGION: required",
            "PORT:",
            "AWS_ROLE_ARN:",
            "AWS_ROLE_DURATION_SECONDS:",
            "AUTH_MODE:",
            "ID_TOKEN_SOURCE:",
            "AWS_ENDPOINT_URL_S3:",
            "MAX_BODY_BYTES:",
            "LOG_FORMAT:",
            "AUTH_AUDIENCES:",
            "AUTH_ALLOWED_EMAILS:",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(var)),
                "{var} missing from:\n{text}"
            );
        }
        assert_eq!(text.lines().count(), e.0.len());
    }

    #[test]
    fn auth_none_needs_no_allow_list() {
        let mut v: Vec<_> = minimal()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("AUTH_"))
            .collect();
        v.push(("AUTH_MODE".into(), "none".into()));
        assert_eq!(Config::from_iter(v).unwrap().auth_mode, AuthMode::None);
    }

    #[test]
    fn cli_needs_no_bucket_or_callers() {
        let v: Vec<_> = minimal()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("AUTH_") && k != "S3_BUCKET")
            .collect();
        assert!(Config::from_iter(v.clone()).is_err());
        assert!(Config::from_iter_for_cli(v).is_ok());
    }

    #[test]
    fn source_buckets_are_checked_at_start() {
        use crate::source_buckets::SourceBuckets;
        assert_eq!(
            Config::from_iter(minimal()).unwrap().gcs_source_buckets,
            SourceBuckets::Off
        );
        let mut v = minimal();
        v.push(("GCS_SOURCE_BUCKETS".into(), "uploads-a,uploads-b".into()));
        assert_eq!(
            Config::from_iter(v).unwrap().gcs_source_buckets,
            SourceBuckets::Only(vec!["uploads-a".into(), "uploads-b".into()])
        );
        let mut v = minimal();
        v.push(("GCS_SOURCE_BUCKETS".into(), "Not A Bucket".into()));
        let e = Config::from_iter(v).unwrap_err().to_string();
        assert!(e.starts_with("GCS_SOURCE_BUCKETS:"), "{e}");
    }

    #[test]
    fn publishing_and_part_tasks() {
        let c = Config::from_iter(minimal()).unwrap();
        assert_eq!(c.pubsub_topic, None);
        assert_eq!(c.part_task_bytes, DEFAULT_PART_TASK_BYTES);
        let mut v = minimal();
        v.push(("PUBSUB_TOPIC".into(), "projects/p/topics/cmds".into()));
        v.push(("PART_TASK_BYTES".into(), "67108864".into()));
        let c = Config::from_iter(v).unwrap();
        assert_eq!(c.pubsub_topic.as_deref(), Some("projects/p/topics/cmds"));
        assert_eq!(c.part_task_bytes, 64 * 1024 * 1024);
        let mut v = minimal();
        v.push(("PUBSUB_TOPIC".into(), "cmds".into()));
        v.push(("PART_TASK_BYTES".into(), "1000".into()));
        let text = Config::from_iter(v).unwrap_err().to_string();
        assert!(
            text.lines().any(|l| l.starts_with("PUBSUB_TOPIC:")),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.starts_with("PART_TASK_BYTES:")),
            "{text}"
        );
    }

    #[test]
    fn duration_bounds() {
        for (d, ok) in [
            ("899", false),
            ("900", true),
            ("43200", true),
            ("43201", false),
        ] {
            let mut v = minimal();
            v.push(("AWS_ROLE_DURATION_SECONDS".into(), d.into()));
            assert_eq!(Config::from_iter(v).is_ok(), ok, "{d}");
        }
    }

    #[test]
    fn s3_prefix_is_empty_or_ends_with_a_slash() {
        for (prefix, ok) in [
            ("", true),
            ("data/", true),
            ("a/b/", true),
            ("data", false),
            ("a/b", false),
            ("/data/", false),
        ] {
            let mut v = minimal();
            v.push(("S3_PREFIX".into(), prefix.into()));
            match Config::from_iter(v) {
                Ok(c) => {
                    assert!(ok, "{prefix:?} accepted");
                    assert_eq!(c.s3_prefix, prefix);
                }
                Err(e) => {
                    assert!(!ok, "{prefix:?} refused: {e}");
                    assert_eq!(e.0.len(), 1, "{e}");
                    assert!(e.0[0].starts_with("S3_PREFIX: "), "{e}");
                }
            }
        }
    }

    #[test]
    fn aws_roles_are_parsed_and_checked() {
        let mut v = minimal();
        v.push((
            "AWS_ROLES".into(),
            " reader=arn:aws:iam::123456789012:role/r , writer=arn:aws:iam::123456789012:role/w"
                .into(),
        ));
        let c = Config::from_iter(v).unwrap();
        assert_eq!(
            c.roles,
            vec![
                (
                    "reader".to_owned(),
                    "arn:aws:iam::123456789012:role/r".to_owned()
                ),
                (
                    "writer".to_owned(),
                    "arn:aws:iam::123456789012:role/w".to_owned()
                ),
            ]
        );
        assert!(Config::from_iter(minimal()).unwrap().roles.is_empty());
        let mut v = minimal();
        v.push((
            "AWS_ROLES".into(),
            "a=arn:aws:iam::123456789012:role/r,a=arn:aws:iam::123456789012:role/w,b,c d=arn:aws:iam::123456789012:role/x,e=arn:aws:iam::1:user/u".into(),
        ));
        let e = Config::from_iter(v).unwrap_err();
        assert_eq!(e.0.len(), 4, "{e}");
        assert!(e.0.iter().all(|l| l.starts_with("AWS_ROLES: ")), "{e}");
    }

    #[test]
    fn session_name_rules() {
        assert_eq!(sanitize_session_name("svc rev/1"), "svc-rev-1");
        assert_eq!(sanitize_session_name(&"x".repeat(100)).len(), 64);
        assert_eq!(sanitize_session_name("a"), "gcp-aws-bridgea");
        assert_eq!(
            sanitize_session_name("user@x.com+1=2,3"),
            "user@x.com+1=2,3"
        );
    }
}
