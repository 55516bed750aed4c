//! Configuration, read from the environment with envy and validated at
//! start. Every problem is reported on its own line naming the variable, all
//! of them at once.
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
//! The settings are grouped by the module that uses them ([`Config::server`],
//! [`Config::identity`], …). Each group is a typed struct that envy fills
//! directly; every field has a default, so a group can always be read, and a
//! bad value counts as unset for the rules that look at several values. Rules
//! that span fields live in the group's `validate`.
//!
//! This module reads the environment only; it makes no outbound call.

use std::fmt;
use std::time::Duration;

use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;

use crate::source_buckets::SourceBuckets;

/// Where the Google ID token comes from (`ID_TOKEN_SOURCE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum IdTokenSourceKind {
    /// Pick from the environment: file, impersonate, key file, metadata.
    #[default]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AuthMode {
    /// Verify the RS256 signature against Google's certificates, and the claims.
    #[default]
    Verify,
    /// Cloud Run checked the signature it replaced by `SIGNATURE_REMOVED_BY_GOOGLE`;
    /// check the header and the claims (any other signature is verified).
    CloudRunIam,
    /// No check: local use only.
    None,
}

/// Log line format (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Cloud Logging structured JSON, one object a line.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// The validated configuration: one group of settings per module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub server: ServerSettings,
    pub telemetry: TelemetrySettings,
    pub caller_auth: CallerAuthSettings,
    pub(crate) identity: IdentitySettings,
    pub(crate) aws: AwsSettings,
    pub(crate) s3: S3Settings,
    pub limits: LimitSettings,
    pub(crate) replication: ReplicationSettings,
    pub(crate) publisher: PublisherSettings,
    pub(crate) doors: DoorSettings,
}

/// The HTTP listener (`server`, `app`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerSettings {
    /// `PORT`: listen port on 0.0.0.0 (default 8080).
    #[serde(
        default = "default_port",
        deserialize_with = "number::<_, _, 0, 65535>"
    )]
    pub port: u16,
    /// `REQUEST_TIMEOUT_SECONDS`: per-request deadline, 1–3600 (default 300,
    /// Cloud Run's default).
    #[serde(
        rename = "request_timeout_seconds",
        default = "default_request_timeout",
        deserialize_with = "seconds::<_, 1, 3600>"
    )]
    pub(crate) request_timeout: Duration,
}

/// Log lines (`telemetry`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TelemetrySettings {
    /// `LOG_FORMAT`: json (default) | text.
    #[serde(default)]
    pub log_format: LogFormat,
    /// `GOOGLE_CLOUD_PROJECT`: project id for trace correlation.
    pub google_cloud_project: Option<String>,
}

/// How callers of the HTTP surface are checked (`auth`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallerAuthSettings {
    /// `AUTH_MODE`: verify (default) | cloud-run-iam | none.
    #[serde(rename = "auth_mode", default)]
    pub(crate) mode: AuthMode,
    /// `AUTH_AUDIENCES`: comma-separated accepted `aud` values of callers' tokens.
    #[serde(rename = "auth_audiences", default, deserialize_with = "comma_list")]
    pub(crate) audiences: Vec<String>,
    /// `AUTH_ALLOWED_EMAILS`: comma-separated caller emails allowed, kept in
    /// lower case.
    #[serde(rename = "auth_allowed_emails", default, deserialize_with = "emails")]
    pub(crate) allowed_emails: Vec<String>,
    /// `GOOGLE_CERTS_URL`: Google's JWKS (default [`GOOGLE_CERTS_URL`]).
    #[serde(default = "default_certs_url", deserialize_with = "url")]
    pub(crate) google_certs_url: String,
    /// `TASKS_PUSH_EMAIL`: the push identity of the tasks subscription, the
    /// only caller `POST /tasks` accepts (in lower case).
    #[serde(rename = "tasks_push_email", default, deserialize_with = "email")]
    pub(crate) tasks_push_email: Option<String>,
}

/// Our own Google ID token (`identity`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct IdentitySettings {
    /// `TARGET_AUDIENCE`: the `aud` of the Google ID token presented to STS.
    #[serde(default)]
    pub(crate) target_audience: String,
    /// `ID_TOKEN_SOURCE`: auto | metadata | service-account-key | impersonate | file.
    #[serde(rename = "id_token_source", default)]
    pub(crate) source: IdTokenSourceKind,
    /// `GCE_METADATA_HOST`: metadata server `host:port` (default metadata.google.internal).
    #[serde(rename = "gce_metadata_host", default = "default_metadata_host")]
    pub(crate) metadata_host: String,
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a key file path.
    pub(crate) google_application_credentials: Option<String>,
    /// `IMPERSONATE_SERVICE_ACCOUNT`: service account email to mint ID tokens for.
    pub(crate) impersonate_service_account: Option<String>,
    /// `IAM_CREDENTIALS_ENDPOINT`: IAM Credentials API base URL (default
    /// https://iamcredentials.googleapis.com).
    #[serde(default = "default_iam_credentials_endpoint", deserialize_with = "url")]
    pub(crate) iam_credentials_endpoint: String,
    /// `GOOGLE_ID_TOKEN_FILE`: a file holding a JWT.
    pub(crate) google_id_token_file: Option<String>,
}

/// The roles assumed and the AWS endpoints (`aws`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct AwsSettings {
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

/// The one bucket and prefix every S3 operation is confined to (`storage`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct S3Settings {
    /// `S3_BUCKET`: required by the service, not by the commands.
    #[serde(rename = "s3_bucket", default)]
    pub(crate) bucket: String,
    /// `S3_PREFIX`: keys are confined under this prefix (default empty); empty
    /// or ending with `/`.
    #[serde(rename = "s3_prefix", default)]
    pub(crate) prefix: String,
    /// `TEST_COPY_MULTIPART_THRESHOLD_BYTES` (tests only): copies larger than
    /// this go part by part (default 5 GiB, S3's CopyObject limit; at least 5 MiB).
    #[serde(
        rename = "test_copy_multipart_threshold_bytes",
        default = "default_copy_threshold",
        deserialize_with = "number::<_, _, { crate::s3_limits::MIN_PART }, { crate::s3_limits::COPY_MULTIPART_THRESHOLD }>"
    )]
    pub(crate) copy_multipart_threshold: u64,
}

/// Bounded resources (`budget`, the triggers' body limits).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LimitSettings {
    /// `MAX_BODY_BYTES`: request body limit except for streamed object PUTs
    /// (default 32 MiB).
    #[serde(
        default = "default_max_body",
        deserialize_with = "number::<_, _, 1, { u64::MAX }>"
    )]
    pub(crate) max_body_bytes: usize,
    /// `MAX_OBJECT_BYTES`: largest object a PUT may write (default and most
    /// 5 TiB, S3's limit).
    #[serde(
        default = "default_max_object",
        deserialize_with = "number::<_, _, 1, { crate::s3_limits::MAX_OBJECT }>"
    )]
    pub(crate) max_object_bytes: u64,
    /// `BUFFER_BUDGET_BYTES`: bytes all requests together may hold in buffers
    /// (default half the cgroup `memory.max`, else 256 MiB).
    #[serde(
        default = "crate::budget::default_budget",
        deserialize_with = "number::<_, _, 1, { u64::MAX / 2 }>"
    )]
    pub buffer_budget_bytes: u64,
    /// How long a request waits for buffers before answering 503 (10 s; not
    /// read from the environment, tests shorten it).
    #[serde(skip_deserializing, default = "default_buffer_wait")]
    pub buffer_wait: Duration,
}

/// Replication from Cloud Storage (`replicate`, `sync`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ReplicationSettings {
    /// `GCS_SOURCE_BUCKETS`: comma-separated buckets replication may read,
    /// `*` for any; unset: off.
    #[serde(
        rename = "gcs_source_buckets",
        default,
        deserialize_with = "source_buckets"
    )]
    pub(crate) source_buckets: SourceBuckets,
    /// `STORAGE_EMULATOR_HOST`: Cloud Storage endpoint override; no token is sent then.
    pub(crate) storage_emulator_host: Option<String>,
}

/// Pub/Sub topics: the service's own tasks and the commands topic the
/// command line publishes to (`publisher`, `parts`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct PublisherSettings {
    /// `TASKS_TOPIC`: the topic of the service's own tasks
    /// (`projects/P/topics/T`): sync pages, replicate tasks, part tasks and
    /// orphan removals. Its push subscription delivers to `POST /tasks`.
    #[serde(rename = "tasks_topic")]
    pub(crate) tasks_topic: Option<String>,
    /// `PUBSUB_TOPIC`: the commands topic (the outside door) that
    /// `gcp-aws-bridge sync` publishes its sync command to. The service
    /// itself publishes only to `TASKS_TOPIC`.
    #[serde(rename = "pubsub_topic")]
    pub(crate) commands_topic: Option<String>,
    /// `PUBSUB_EMULATOR_HOST`: Pub/Sub endpoint override (`host:port`, plain
    /// http); no token is sent then.
    #[serde(rename = "pubsub_emulator_host")]
    pub(crate) emulator_host: Option<String>,
    /// `PART_TASK_BYTES`: objects of at least this size are replicated in
    /// parts, one task per part (default 1 GiB, at least 5 MiB).
    #[serde(
        default = "default_part_task_bytes",
        deserialize_with = "number::<_, _, MIN_PART_TASK_BYTES, { u64::MAX }>"
    )]
    pub(crate) part_task_bytes: u64,
    /// `TEST_SYNC_PAGE_SIZE` (tests only): objects per sync page (default and
    /// most 1,000, Cloud Storage's and S3's page size).
    #[serde(
        rename = "test_sync_page_size",
        default = "default_sync_page_size",
        deserialize_with = "number::<_, _, 1, 1000>"
    )]
    pub(crate) sync_page_size: usize,
    /// `SYNC_INLINE_BYTES`: objects smaller than this are copied by the sync
    /// page itself (one Cloud Storage read, one S3 write, several at once
    /// within the buffer budget), and an event's object smaller than this is
    /// written without a check first (default 8 MiB; 0 to 64 MiB, 0 turns
    /// inline copies off).
    #[serde(
        default = "default_sync_inline_bytes",
        deserialize_with = "number::<_, _, 0, { MAX_SYNC_INLINE_BYTES }>"
    )]
    pub(crate) sync_inline_bytes: u64,
}

/// What the outside doors (`/pubsub`, `/events`, `/v1/*`) accept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct DoorSettings {
    /// `COMMAND_OPS`: the ops the outside doors accept, comma-separated
    /// (default `put,copy,delete,replicate,sync`; these five are the only
    /// ones allowed). `replicate` also covers Cloud Storage events and
    /// notifications.
    #[serde(
        rename = "command_ops",
        default = "default_command_ops",
        deserialize_with = "command_ops"
    )]
    pub(crate) command_ops: crate::wire::OpSet,
    /// `SYNC_DELETE`: whether a sync may delete replicas whose object is
    /// gone (`"delete":true`; default false).
    #[serde(rename = "sync_delete", default, deserialize_with = "flag")]
    pub(crate) sync_delete: bool,
}

/// Every problem found in the environment, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

/// Default Google certificate (JWKS) URL.
pub(crate) const GOOGLE_CERTS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// Default `PART_TASK_BYTES`: 1 GiB.
pub(crate) const DEFAULT_PART_TASK_BYTES: u64 = 1024 * 1024 * 1024;
/// Default `SYNC_INLINE_BYTES`: 8 MiB.
pub(crate) const DEFAULT_SYNC_INLINE_BYTES: u64 = 8 * 1024 * 1024;
/// The largest `SYNC_INLINE_BYTES`: one PutObject of bytes held whole.
pub(crate) const MAX_SYNC_INLINE_BYTES: u64 = 64 * 1024 * 1024;
/// S3's smallest part but the last: the smallest `PART_TASK_BYTES`.
pub(crate) const MIN_PART_TASK_BYTES: u64 = crate::s3_limits::MIN_PART;

fn default_port() -> u16 {
    8080
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_certs_url() -> String {
    GOOGLE_CERTS_URL.to_owned()
}
fn default_metadata_host() -> String {
    "metadata.google.internal".to_owned()
}
fn default_iam_credentials_endpoint() -> String {
    "https://iamcredentials.googleapis.com".to_owned()
}
fn default_role_duration() -> Duration {
    Duration::from_secs(3600)
}
fn default_copy_threshold() -> u64 {
    crate::s3_limits::COPY_MULTIPART_THRESHOLD
}
fn default_max_body() -> usize {
    32 * 1024 * 1024
}
fn default_max_object() -> u64 {
    crate::s3_limits::MAX_OBJECT
}
fn default_buffer_wait() -> Duration {
    crate::budget::DEFAULT_WAIT
}
fn default_sync_page_size() -> usize {
    1000
}
fn default_sync_inline_bytes() -> u64 {
    DEFAULT_SYNC_INLINE_BYTES
}
fn default_command_ops() -> crate::wire::OpSet {
    crate::wire::OpSet::default()
}
fn default_part_task_bytes() -> u64 {
    DEFAULT_PART_TASK_BYTES
}

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
    #[cfg(test)]
    pub(crate) fn from_iter_for_cli<I>(vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        Config::read(vars, false)
    }

    fn read<I>(vars: I, service: bool) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let vars = present(vars);
        let mut errors = Vec::new();
        let mut config = Config {
            server: read_group(&vars, &mut errors),
            telemetry: read_group(&vars, &mut errors),
            caller_auth: read_group(&vars, &mut errors),
            identity: read_group(&vars, &mut errors),
            aws: read_group(&vars, &mut errors),
            s3: read_group(&vars, &mut errors),
            limits: read_group(&vars, &mut errors),
            replication: read_group(&vars, &mut errors),
            publisher: read_group(&vars, &mut errors),
            doors: read_group(&vars, &mut errors),
        };
        config.identity.validate(&mut errors);
        config.aws.validate(&mut errors);
        config.s3.validate(service, &mut errors);
        config.caller_auth.validate(service, &mut errors);
        config.publisher.validate(&mut errors);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(errors))
        }
    }
}

/// The variables that are set, values trimmed: an empty value counts as
/// unset, as in most cloud consoles.
pub(crate) fn present<I>(vars: I) -> Vec<(String, String)>
where
    I: IntoIterator<Item = (String, String)>,
{
    vars.into_iter()
        .filter_map(|(k, v)| {
            let v = v.trim();
            (!v.is_empty()).then(|| (k, v.to_owned()))
        })
        .collect()
}

/// Reads one group of settings. When a value is bad, each variable is read
/// alone to find every bad one; each gets a line `NAME: why` in `errors`, and
/// the group is read again without them, so that they take their defaults.
pub(crate) fn read_group<T: DeserializeOwned>(
    vars: &[(String, String)],
    errors: &mut Vec<String>,
) -> T {
    if let Ok(group) = envy::from_iter(vars.iter().cloned()) {
        return group;
    }
    let mut good = Vec::new();
    for (name, value) in vars {
        match envy::from_iter::<_, T>([(name.clone(), value.clone())]) {
            Ok(_) => good.push((name.clone(), value.clone())),
            Err(e) => errors.extend(problem_lines(name, value, &e)),
        }
    }
    envy::from_iter(good)
        .or_else(|_| envy::from_iter(std::iter::empty()))
        .expect("every setting has a default")
}

/// The lines of one variable's problem, each `NAME: why`. A helper below may
/// report several problems of one variable, one a line; envy's own number
/// errors (`… while parsing value 'v' provided by NAME`) are reworded.
fn problem_lines(name: &str, value: &str, e: &envy::Error) -> Vec<String> {
    let text = e.to_string();
    let suffix = format!(" while parsing value '{value}' provided by {name}");
    let text = match text.strip_suffix(&suffix) {
        Some(cause) => format!("{value:?}: {cause}"),
        None => text,
    };
    let prefix = format!("{name}: ");
    text.lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                l.to_owned()
            } else {
                format!("{prefix}{l}")
            }
        })
        .collect()
}

/// A whole number from `MIN` to `MAX`.
fn number<'de, D, T, const MIN: u64, const MAX: u64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let s = String::deserialize(d)?;
    s.parse::<u64>()
        .ok()
        .filter(|n| (MIN..=MAX).contains(n))
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| {
            D::Error::custom(if MAX == u64::MAX {
                format!("{s:?} must be a whole number, at least {MIN}")
            } else {
                format!("{s:?} must be a whole number from {MIN} to {MAX}")
            })
        })
}

/// A whole number of seconds from `MIN` to `MAX`.
fn seconds<'de, D, const MIN: u64, const MAX: u64>(d: D) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    number::<D, u64, MIN, MAX>(d).map(Duration::from_secs)
}

/// `true`/`1` or `false`/`0`.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    match s.as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(D::Error::custom(format!("{s:?} is not true or false"))),
    }
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A comma-separated list; blanks around entries and empty entries are dropped.
fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(split_list(&String::deserialize(d)?)
        .map(str::to_owned)
        .collect())
}

/// `COMMAND_OPS`: outside ops, comma-separated; one line per unknown op.
fn command_ops<'de, D: Deserializer<'de>>(d: D) -> Result<crate::wire::OpSet, D::Error> {
    crate::wire::OpSet::parse(&String::deserialize(d)?)
        .map_err(|lines| D::Error::custom(lines.join("\n")))
}

/// One email, in lower case.
fn email<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if s.contains('@') && !s.contains(',') && !s.chars().any(char::is_whitespace) {
        Ok(Some(s.to_ascii_lowercase()))
    } else {
        Err(D::Error::custom(format!("{s:?} is not one email address")))
    }
}

/// A comma-separated list of emails, in lower case.
fn emails<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(split_list(&String::deserialize(d)?)
        .map(str::to_ascii_lowercase)
        .collect())
}

/// An http(s) URL, without a trailing `/`.
fn url<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    let s = String::deserialize(d)?;
    if is_url(&s) {
        Ok(T::from(s.trim_end_matches('/').to_owned()))
    } else {
        Err(D::Error::custom(format!("{s:?} is not an http(s) URL")))
    }
}

/// `AWS_ROLES`: `name=arn,name2=arn2`; one line per bad entry.
fn roles<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    let mut errors = Vec::new();
    let roles = parse_roles(&String::deserialize(d)?, &mut errors);
    if errors.is_empty() {
        Ok(roles)
    } else {
        Err(D::Error::custom(errors.join("\n")))
    }
}

/// `GCS_SOURCE_BUCKETS`; one line per bad entry.
fn source_buckets<'de, D: Deserializer<'de>>(d: D) -> Result<SourceBuckets, D::Error> {
    SourceBuckets::parse(Some(&String::deserialize(d)?))
        .map_err(|lines| D::Error::custom(lines.join("\n")))
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
pub(crate) fn sanitize_session_name(name: &str) -> String {
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

impl IdentitySettings {
    fn validate(&self, errors: &mut Vec<String>) {
        if self.target_audience.is_empty() {
            errors.push("TARGET_AUDIENCE: required".into());
        }
        match self.source {
            IdTokenSourceKind::ServiceAccountKey if self.google_application_credentials.is_none() => {
                errors.push(
                    "GOOGLE_APPLICATION_CREDENTIALS: required when ID_TOKEN_SOURCE=service-account-key"
                        .into(),
                )
            }
            IdTokenSourceKind::Impersonate if self.impersonate_service_account.is_none() => errors
                .push(
                    "IMPERSONATE_SERVICE_ACCOUNT: required when ID_TOKEN_SOURCE=impersonate".into(),
                ),
            IdTokenSourceKind::File if self.google_id_token_file.is_none() => {
                errors.push("GOOGLE_ID_TOKEN_FILE: required when ID_TOKEN_SOURCE=file".into())
            }
            _ => {}
        }
        if let Some(sa) = &self.impersonate_service_account {
            if !sa.contains('@') {
                errors.push(format!(
                    "IMPERSONATE_SERVICE_ACCOUNT: {sa:?} is not a service account email"
                ));
            }
        }
    }
}

impl AwsSettings {
    /// Checks the role and the region, falls back to `AWS_DEFAULT_REGION`,
    /// and settles the session name.
    fn validate(&mut self, errors: &mut Vec<String>) {
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

    /// `AWS_ROLE_SESSION_NAME`, else `K_SERVICE-K_REVISION` (the revision
    /// alone when it starts with the service), else the host name.
    fn session_name(&self) -> String {
        let (service, revision) = (&self.k_service, &self.k_revision);
        if !self.role_session_name.is_empty() {
            self.role_session_name.clone()
        } else if !service.is_empty() && !revision.is_empty() {
            if revision.starts_with(service.as_str()) {
                revision.clone()
            } else {
                format!("{service}-{revision}")
            }
        } else if !service.is_empty() {
            service.clone()
        } else if !self.hostname.is_empty() {
            self.hostname.clone()
        } else {
            host_name().unwrap_or_else(|| "gcp-aws-bridge".to_owned())
        }
    }
}

impl S3Settings {
    fn validate(&self, service: bool, errors: &mut Vec<String>) {
        if service && self.bucket.is_empty() {
            errors.push("S3_BUCKET: required".into());
        }
        let prefix = &self.prefix;
        if prefix.starts_with('/') {
            errors.push(format!("S3_PREFIX: {prefix:?} must not start with '/'"));
        } else if !prefix.is_empty() && !prefix.ends_with('/') {
            // "data" would also reach "data-x/" and "database/".
            errors.push(format!(
                "S3_PREFIX: {prefix:?} must end with '/' (e.g. {:?}); a prefix without it also reaches keys beside it",
                format!("{prefix}/")
            ));
        } else if prefix.len() >= 1024 || prefix.chars().any(char::is_control) {
            errors.push("S3_PREFIX: too long or has a control character".into());
        }
    }
}

impl CallerAuthSettings {
    fn validate(&self, service: bool, errors: &mut Vec<String>) {
        if !service || self.mode == AuthMode::None {
            return;
        }
        if self.audiences.is_empty() {
            errors.push(
                "AUTH_AUDIENCES: required unless AUTH_MODE=none (comma-separated audiences of callers' tokens, e.g. the service URL)".into(),
            );
        }
        if self.allowed_emails.is_empty() {
            errors.push(
                "AUTH_ALLOWED_EMAILS: required unless AUTH_MODE=none (comma-separated caller emails)"
                    .into(),
            );
        }
    }
}

impl PublisherSettings {
    fn validate(&self, errors: &mut Vec<String>) {
        for (name, topic) in [
            ("TASKS_TOPIC", &self.tasks_topic),
            ("PUBSUB_TOPIC", &self.commands_topic),
        ] {
            if let Some(t) = topic {
                if !is_topic_name(t) {
                    errors.push(format!(
                        "{name}: {t:?} is not a topic name (projects/PROJECT/topics/TOPIC)"
                    ));
                }
            }
        }
        if let (Some(tasks), Some(commands)) = (&self.tasks_topic, &self.commands_topic) {
            if tasks == commands {
                errors.push(format!(
                    "TASKS_TOPIC: {tasks:?} is also PUBSUB_TOPIC; the service's own tasks need a topic of their own, pushed to /tasks"
                ));
            }
        }
    }
}

/// Whether `topic` has the form `projects/P/topics/T`.
pub(crate) fn is_topic_name(topic: &str) -> bool {
    let parts: Vec<&str> = topic.split('/').collect();
    parts.len() == 4
        && parts[0] == "projects"
        && parts[2] == "topics"
        && !parts[1].is_empty()
        && !parts[3].is_empty()
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~+%".contains(&b))
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
    for entry in split_list(v) {
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
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.aws.role_duration, Duration::from_secs(3600));
        assert_eq!(c.caller_auth.mode, AuthMode::Verify);
        assert_eq!(c.limits.max_body_bytes, 32 * 1024 * 1024);
        assert_eq!(c.identity.metadata_host, "metadata.google.internal");
        assert_eq!(c.aws.role_session_name, "bridge-00001-abc");
        assert_eq!(
            c.caller_auth.allowed_emails,
            vec!["push@p.iam.gserviceaccount.com"]
        );
        assert_eq!(c.caller_auth.google_certs_url, GOOGLE_CERTS_URL);
        assert_eq!(c.limits.max_object_bytes, 5 * 1024 * 1024 * 1024 * 1024);
        assert!(c.limits.buffer_budget_bytes > 0);
        assert_eq!(c.limits.buffer_wait, Duration::from_secs(10));
    }

    #[test]
    fn object_and_budget_limits() {
        let mut v = minimal();
        v.push(("MAX_OBJECT_BYTES".into(), "1048576".into()));
        v.push(("BUFFER_BUDGET_BYTES".into(), "67108864".into()));
        let c = Config::from_iter(v).unwrap();
        assert_eq!(c.limits.max_object_bytes, 1 << 20);
        assert_eq!(c.limits.buffer_budget_bytes, 64 << 20);
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
        assert_eq!(
            Config::from_iter(v).unwrap().caller_auth.mode,
            AuthMode::None
        );
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
            Config::from_iter(minimal())
                .unwrap()
                .replication
                .source_buckets,
            SourceBuckets::Off
        );
        let mut v = minimal();
        v.push(("GCS_SOURCE_BUCKETS".into(), "uploads-a,uploads-b".into()));
        assert_eq!(
            Config::from_iter(v).unwrap().replication.source_buckets,
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
        assert_eq!(c.publisher.tasks_topic, None);
        assert_eq!(c.publisher.part_task_bytes, DEFAULT_PART_TASK_BYTES);
        let mut v = minimal();
        v.push(("TASKS_TOPIC".into(), "projects/p/topics/tasks".into()));
        v.push(("PUBSUB_TOPIC".into(), "projects/p/topics/cmds".into()));
        v.push(("PART_TASK_BYTES".into(), "67108864".into()));
        let c = Config::from_iter(v).unwrap();
        assert_eq!(
            c.publisher.tasks_topic.as_deref(),
            Some("projects/p/topics/tasks")
        );
        assert_eq!(
            c.publisher.commands_topic.as_deref(),
            Some("projects/p/topics/cmds")
        );
        assert_eq!(c.publisher.part_task_bytes, 64 * 1024 * 1024);
        let mut v = minimal();
        v.push(("TASKS_TOPIC".into(), "tasks".into()));
        v.push(("PUBSUB_TOPIC".into(), "cmds".into()));
        v.push(("PART_TASK_BYTES".into(), "1000".into()));
        let text = Config::from_iter(v).unwrap_err().to_string();
        for name in ["TASKS_TOPIC:", "PUBSUB_TOPIC:", "PART_TASK_BYTES:"] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{text}");
        }
        // One topic for both doors would push the tasks to the outside door.
        let mut v = minimal();
        v.push(("TASKS_TOPIC".into(), "projects/p/topics/t".into()));
        v.push(("PUBSUB_TOPIC".into(), "projects/p/topics/t".into()));
        let text = Config::from_iter(v).unwrap_err().to_string();
        assert!(text.starts_with("TASKS_TOPIC:"), "{text}");
    }

    #[test]
    fn topic_names() {
        assert!(is_topic_name("projects/p-1/topics/bridge-commands"));
        for bad in [
            "bridge-commands",
            "projects/p/subscriptions/s",
            "projects//topics/t",
            "projects/p/topics/",
            "projects/p/topics/t/x",
            "projects/p/topics/t?x",
        ] {
            assert!(!is_topic_name(bad), "{bad}");
        }
    }

    #[test]
    fn doors_and_the_tasks_push_identity() {
        let c = Config::from_iter(minimal()).unwrap();
        assert_eq!(c.doors.command_ops, crate::wire::OpSet::default());
        assert!(!c.doors.sync_delete);
        assert_eq!(c.caller_auth.tasks_push_email, None);
        let mut v = minimal();
        v.push(("COMMAND_OPS".into(), "put, replicate".into()));
        v.push(("SYNC_DELETE".into(), "true".into()));
        v.push((
            "TASKS_PUSH_EMAIL".into(),
            "Tasks@P.iam.gserviceaccount.com".into(),
        ));
        let c = Config::from_iter(v).unwrap();
        assert!(c.doors.command_ops.contains(crate::wire::Op::Replicate));
        assert!(!c.doors.command_ops.contains(crate::wire::Op::Sync));
        assert!(c.doors.sync_delete);
        assert_eq!(
            c.caller_auth.tasks_push_email.as_deref(),
            Some("tasks@p.iam.gserviceaccount.com")
        );
        let mut v = minimal();
        v.push(("COMMAND_OPS".into(), "put,replicate_part".into()));
        v.push(("SYNC_DELETE".into(), "yes".into()));
        v.push(("TASKS_PUSH_EMAIL".into(), "a@b,c@d".into()));
        let text = Config::from_iter(v).unwrap_err().to_string();
        for name in ["COMMAND_OPS:", "SYNC_DELETE:", "TASKS_PUSH_EMAIL:"] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{text}");
        }
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
                    assert_eq!(c.s3.prefix, prefix);
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
            c.aws.roles,
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
        assert!(Config::from_iter(minimal()).unwrap().aws.roles.is_empty());
        let mut v = minimal();
        v.push((
            "AWS_ROLES".into(),
            "a=arn:aws:iam::123456789012:role/r,a=arn:aws:iam::123456789012:role/w,b,c d=arn:aws:iam::123456789012:role/x,e=arn:aws:iam::1:user/u".into(),
        ));
        let e = Config::from_iter(v).unwrap_err();
        assert_eq!(e.0.len(), 4, "{e}");
        assert!(e.0.iter().all(|l| l.starts_with("AWS_ROLES: ")), "{e}");
    }

    /// One bad value for every variable that has a format or a rule.
    const BAD: &[(&str, &str)] = &[
        ("PORT", "eighty"),
        ("REQUEST_TIMEOUT_SECONDS", "0"),
        ("LOG_FORMAT", "xml"),
        ("AUTH_MODE", "maybe"),
        ("GOOGLE_CERTS_URL", "certs.example"),
        ("ID_TOKEN_SOURCE", "magic"),
        ("IAM_CREDENTIALS_ENDPOINT", "ftp://iam"),
        ("IMPERSONATE_SERVICE_ACCOUNT", "nobody"),
        ("AWS_ROLE_ARN", "arn:aws:iam::1:user/x"),
        ("AWS_ROLE_DURATION_SECONDS", "60"),
        ("AWS_ENDPOINT_URL", "localhost:4566"),
        ("AWS_ENDPOINT_URL_STS", "sts"),
        ("AWS_ENDPOINT_URL_S3", "localhost:9000"),
        ("S3_FORCE_PATH_STYLE", "yes"),
        ("AWS_ROLES", "reader"),
        ("S3_PREFIX", "data"),
        ("TEST_COPY_MULTIPART_THRESHOLD_BYTES", "1024"),
        ("MAX_BODY_BYTES", "-1"),
        ("MAX_OBJECT_BYTES", "0"),
        ("BUFFER_BUDGET_BYTES", "lots"),
        ("GCS_SOURCE_BUCKETS", "Not A Bucket"),
        ("PUBSUB_TOPIC", "cmds"),
        ("PART_TASK_BYTES", "1000"),
    ];

    fn with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = minimal()
            .into_iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .collect();
        v.extend(env(extra));
        v
    }

    #[test]
    fn each_bad_variable_is_one_line_naming_it() {
        for &(var, value) in BAD {
            let e = Config::from_iter(with(&[(var, value)])).unwrap_err();
            assert_eq!(e.0.len(), 1, "{var}={value}: {e}");
            let line = &e.0[0];
            assert!(line.starts_with(&format!("{var}: ")), "{line}");
            assert!(!line.contains('\n'), "{line}");
            assert!(!line.contains("provided by"), "{line}");
            assert_eq!(e.to_string(), *line);
        }
    }

    #[test]
    fn envy_number_errors_are_reworded() {
        let e = envy::Error::Custom(
            "invalid digit found in string while parsing value 'x' provided by PORT".into(),
        );
        assert_eq!(
            problem_lines("PORT", "x", &e),
            ["PORT: \"x\": invalid digit found in string"]
        );
        let e = envy::Error::Custom("AWS_ROLES: a\nb".into());
        assert_eq!(
            problem_lines("AWS_ROLES", "v", &e),
            ["AWS_ROLES: a", "AWS_ROLES: b"]
        );
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let mut v: Vec<_> = with(BAD)
            .into_iter()
            .filter(|(k, _)| {
                !["TARGET_AUDIENCE", "AUTH_AUDIENCES", "AWS_ROLES"].contains(&k.as_str())
            })
            .collect();
        v.push(("AWS_ROLES".into(), "a,b=arn:aws:iam::1:role/x".into()));
        let e = Config::from_iter(v).unwrap_err();
        let text = e.to_string();
        assert_eq!(text.lines().count(), e.0.len());
        for &(var, _) in BAD {
            let n =
                e.0.iter()
                    .filter(|l| l.starts_with(&format!("{var}: ")))
                    .count();
            let want = if var == "AWS_ROLES" { 2 } else { 1 };
            assert_eq!(n, want, "{var} in:\n{text}");
        }
        // Rules over several values still run: AUTH_MODE is bad, so the
        // default (verify) needs audiences.
        assert!(text
            .lines()
            .any(|l| l.starts_with("TARGET_AUDIENCE: required")));
        assert!(text
            .lines()
            .any(|l| l.starts_with("AUTH_AUDIENCES: required")));
        assert_eq!(e.0.len(), BAD.len() + 3, "{text}");
    }

    #[test]
    fn every_group_reads_from_an_empty_environment() {
        let mut errors = Vec::new();
        let none: &[(String, String)] = &[];
        let server: ServerSettings = read_group(none, &mut errors);
        let telemetry: TelemetrySettings = read_group(none, &mut errors);
        let caller_auth: CallerAuthSettings = read_group(none, &mut errors);
        let identity: IdentitySettings = read_group(none, &mut errors);
        let aws: AwsSettings = read_group(none, &mut errors);
        let s3: S3Settings = read_group(none, &mut errors);
        let limits: LimitSettings = read_group(none, &mut errors);
        let replication: ReplicationSettings = read_group(none, &mut errors);
        let publisher: PublisherSettings = read_group(none, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(server.port, 8080);
        assert_eq!(server.request_timeout, Duration::from_secs(300));
        assert_eq!(telemetry.log_format, LogFormat::Json);
        assert_eq!(telemetry.google_cloud_project, None);
        assert_eq!(caller_auth.mode, AuthMode::Verify);
        assert!(caller_auth.audiences.is_empty() && caller_auth.allowed_emails.is_empty());
        assert_eq!(caller_auth.google_certs_url, GOOGLE_CERTS_URL);
        assert_eq!(identity.source, IdTokenSourceKind::Auto);
        assert_eq!(identity.metadata_host, "metadata.google.internal");
        assert_eq!(
            identity.iam_credentials_endpoint,
            "https://iamcredentials.googleapis.com"
        );
        assert_eq!(aws.role_duration, Duration::from_secs(3600));
        assert_eq!(aws.endpoint_url, None);
        assert!(!aws.s3_force_path_style);
        assert!(aws.roles.is_empty());
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("", ""));
        assert_eq!(s3.copy_multipart_threshold, 5 << 30);
        assert_eq!(limits.max_body_bytes, 32 << 20);
        assert_eq!(limits.max_object_bytes, 5 << 40);
        assert_eq!(limits.buffer_budget_bytes, crate::budget::default_budget());
        assert_eq!(limits.buffer_wait, Duration::from_secs(10));
        assert_eq!(replication.source_buckets, SourceBuckets::Off);
        assert_eq!(replication.storage_emulator_host, None);
        assert_eq!(publisher.tasks_topic, None);
        assert_eq!(publisher.commands_topic, None);
        assert_eq!(publisher.part_task_bytes, DEFAULT_PART_TASK_BYTES);
        assert_eq!(publisher.sync_page_size, 1000);
        assert_eq!(publisher.sync_inline_bytes, 8 << 20);
        let doors: DoorSettings = read_group(none, &mut errors);
        assert_eq!(doors.command_ops, crate::wire::OpSet::default());
        assert!(!doors.sync_delete);
    }

    #[test]
    fn values_are_trimmed_and_empty_ones_are_unset() {
        let c = Config::from_iter(with(&[
            ("PORT", " 9000 "),
            ("LOG_FORMAT", "  "),
            ("AWS_REGION", ""),
            ("AWS_DEFAULT_REGION", "us-east-2"),
            ("AWS_ENDPOINT_URL", "http://localhost:4566/"),
            ("AWS_ROLE_SESSION_NAME", "my session"),
            ("REQUEST_TIMEOUT_SECONDS", "3600"),
        ]))
        .unwrap();
        assert_eq!(c.server.port, 9000);
        assert_eq!(c.server.request_timeout, Duration::from_secs(3600));
        assert_eq!(c.telemetry.log_format, LogFormat::Json);
        assert_eq!(c.aws.region, "us-east-2");
        assert_eq!(c.aws.endpoint_url.as_deref(), Some("http://localhost:4566"));
        assert_eq!(c.aws.role_session_name, "my-session");
    }

    #[test]
    fn enums_and_lists() {
        for (v, want) in [
            ("auto", IdTokenSourceKind::Auto),
            ("metadata", IdTokenSourceKind::Metadata),
            ("service-account-key", IdTokenSourceKind::ServiceAccountKey),
            ("impersonate", IdTokenSourceKind::Impersonate),
            ("file", IdTokenSourceKind::File),
        ] {
            let extra = [
                ("ID_TOKEN_SOURCE", v),
                ("GOOGLE_APPLICATION_CREDENTIALS", "/k.json"),
                (
                    "IMPERSONATE_SERVICE_ACCOUNT",
                    "sa@p.iam.gserviceaccount.com",
                ),
                ("GOOGLE_ID_TOKEN_FILE", "/t"),
            ];
            let c = Config::from_iter(with(&extra)).unwrap();
            assert_eq!(c.identity.source, want);
        }
        for (v, want) in [
            ("verify", AuthMode::Verify),
            ("cloud-run-iam", AuthMode::CloudRunIam),
            ("none", AuthMode::None),
        ] {
            let c = Config::from_iter(with(&[("AUTH_MODE", v)])).unwrap();
            assert_eq!(c.caller_auth.mode, want);
        }
        for (v, want) in [("json", LogFormat::Json), ("text", LogFormat::Text)] {
            let c = Config::from_iter(with(&[("LOG_FORMAT", v)])).unwrap();
            assert_eq!(c.telemetry.log_format, want);
        }
        for (v, want) in [("true", true), ("1", true), ("false", false), ("0", false)] {
            let c = Config::from_iter(with(&[("S3_FORCE_PATH_STYLE", v)])).unwrap();
            assert_eq!(c.aws.s3_force_path_style, want, "{v}");
        }
        // Case matters, as before: "Verify" is not a mode.
        assert!(Config::from_iter(with(&[("AUTH_MODE", "Verify")])).is_err());
        let e = Config::from_iter(with(&[("ID_TOKEN_SOURCE", "file")])).unwrap_err();
        assert_eq!(
            e.0,
            ["GOOGLE_ID_TOKEN_FILE: required when ID_TOKEN_SOURCE=file"]
        );

        let c = Config::from_iter(with(&[
            ("AUTH_AUDIENCES", " https://a , ,https://b,"),
            ("AUTH_ALLOWED_EMAILS", "A@x.com,b@X.com"),
            ("GCS_SOURCE_BUCKETS", " src-a , src-b "),
        ]))
        .unwrap();
        assert_eq!(c.caller_auth.audiences, ["https://a", "https://b"]);
        assert_eq!(c.caller_auth.allowed_emails, ["a@x.com", "b@x.com"]);
        assert_eq!(
            c.replication.source_buckets,
            SourceBuckets::Only(vec!["src-a".into(), "src-b".into()])
        );
        let c = Config::from_iter(with(&[("GCS_SOURCE_BUCKETS", "*")])).unwrap();
        assert_eq!(c.replication.source_buckets, SourceBuckets::Any);
        // A list of blanks is empty: required in the service.
        let e = Config::from_iter(with(&[("AUTH_AUDIENCES", " , ")])).unwrap_err();
        assert!(e.0[0].starts_with("AUTH_AUDIENCES: required"), "{e}");
    }

    #[test]
    fn number_bounds() {
        for (var, ok, bad) in [
            ("PORT", "65535", "65536"),
            ("REQUEST_TIMEOUT_SECONDS", "1", "3601"),
            ("MAX_OBJECT_BYTES", "5497558138880", "5497558138881"),
            ("TEST_COPY_MULTIPART_THRESHOLD_BYTES", "5242880", "5242879"),
            ("PART_TASK_BYTES", "5242880", "5242879"),
            ("BUFFER_BUDGET_BYTES", "1", "0"),
            ("SYNC_INLINE_BYTES", "67108864", "67108865"),
            ("SYNC_INLINE_BYTES", "0", "-1"),
        ] {
            assert!(Config::from_iter(with(&[(var, ok)])).is_ok(), "{var}={ok}");
            let e = Config::from_iter(with(&[(var, bad)])).unwrap_err();
            assert!(
                e.0.len() == 1 && e.0[0].starts_with(&format!("{var}: \"{bad}\" must be")),
                "{e}"
            );
        }
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
