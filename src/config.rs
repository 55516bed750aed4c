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
//! The settings are grouped by the module that uses them, and each group is
//! defined beside its module ([`ServerSettings`] in `http::server`,
//! [`IdentitySettings`] in `google::identity`, …): a typed struct that envy
//! fills directly; every field has a default, so a group can always be read,
//! and a bad value counts as unset for the rules that look at several
//! values. Rules that span fields live in the group's `validate`. This
//! module composes the groups into [`Config`]; each service's constructor
//! takes its own group.
//!
//! This module reads the environment only; it makes no outbound call.

use std::fmt;

use crate::aws::s3::S3Settings;
use crate::aws::AwsSettings;
use crate::budget::LimitSettings;
use crate::google::caller_auth::CallerAuthSettings;
use crate::google::identity::IdentitySettings;
use crate::google::publisher::PublisherSettings;
use crate::http::server::ServerSettings;
use crate::replication::replicate::ReplicationSettings;
use crate::settings::{present, read_group};
use crate::telemetry::TelemetrySettings;
use crate::wire::DoorSettings;

/// The validated configuration: one group of settings per module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub server: ServerSettings,
    pub telemetry: TelemetrySettings,
    pub caller_auth: CallerAuthSettings,
    pub identity: IdentitySettings,
    pub aws: AwsSettings,
    pub s3: S3Settings,
    pub limits: LimitSettings,
    pub replication: ReplicationSettings,
    pub publisher: PublisherSettings,
    pub doors: DoorSettings,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::google::caller_auth::{AuthMode, GOOGLE_CERTS_URL};
    use crate::google::identity::IdTokenSourceKind;
    use crate::google::publisher::{is_topic_name, DEFAULT_PART_TASK_BYTES};
    use crate::settings::{problem_lines, sanitize_session_name};
    use crate::source_buckets::SourceBuckets;
    use crate::telemetry::LogFormat;

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
        assert_eq!(c.aws.role_session_name, "bridge-bridge-00001-abc");
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
    fn session_name_is_service_and_revision_else_the_host_name() {
        let with = |pairs: &[(&str, &str)]| {
            let mut v: Vec<(String, String)> = minimal()
                .into_iter()
                .filter(|(k, _)| !k.starts_with("K_"))
                .collect();
            v.extend(pairs.iter().map(|(k, x)| (k.to_string(), x.to_string())));
            Config::from_iter(v).unwrap().aws.role_session_name
        };
        assert_eq!(
            with(&[("K_SERVICE", "svc"), ("K_REVISION", "rev-1")]),
            "svc-rev-1"
        );
        assert_eq!(
            with(&[("K_SERVICE", "svc"), ("HOSTNAME", "host-1")]),
            "host-1"
        );
        assert_eq!(
            with(&[("K_REVISION", "rev-1"), ("HOSTNAME", "host-1")]),
            "host-1"
        );
        // Over STS's 64 characters: the service is cut, the revision kept.
        let service = "gcp-aws-bridge-replicator-production";
        let revision = format!("{service}-00042-xk7");
        let name = with(&[("K_SERVICE", service), ("K_REVISION", &revision)]);
        assert_eq!(name.len(), 64, "{name}");
        assert!(name.ends_with(&format!("-{revision}")), "{name}");
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
        v.push(("PART_TASK_BYTES".into(), "0".into()));
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
        ("PART_TASK_BYTES", "0"),
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
            ("PART_TASK_BYTES", "1", "0"),
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
