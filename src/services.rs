//! The composition root: every service built from the [`Config`], in one
//! place, for the server ([`crate::http::state`]), the command line and the
//! tests. Each constructor takes its own settings group; nothing here makes
//! an outbound call.

use std::sync::Arc;

use crate::aws::s3::Storage;
use crate::aws::{AwsClients, AwsOptions, RoleProviders};
use crate::budget::BufferBudget;
use crate::config::Config;
use crate::google::caller_auth::CallerAuth;
use crate::google::gcs::GcsClient;
use crate::google::identity::{IdTokenSource, IdentityError};
use crate::google::publisher::Fanout;
use crate::replication::replicate::Replicator;
use crate::wire::DoorRules;

/// The service's own Google ID token source (`ID_TOKEN_SOURCE` and the
/// settings of `google::identity`), on the clock of `opts`.
pub fn identity(config: &Config, opts: &AwsOptions) -> Result<Arc<IdTokenSource>, IdentityError> {
    Ok(Arc::new(
        IdTokenSource::from_settings(&config.identity)?.with_time_source(opts.time_source.clone()),
    ))
}

/// The AWS clients (STS and S3) sharing one identity cache.
pub fn aws(config: &Config, ids: Arc<IdTokenSource>, opts: AwsOptions) -> AwsClients {
    AwsClients::new(&config.aws, ids, opts)
}

/// A provider per role (`AWS_ROLE_ARN`, `AWS_ROLES`), for the credential
/// server and the `credentials` command.
pub fn roles(config: &Config, ids: Arc<IdTokenSource>, opts: &AwsOptions) -> RoleProviders {
    RoleProviders::new(&config.aws, ids, opts)
}

/// The buffer memory all requests share (`BUFFER_BUDGET_BYTES`).
pub fn budget(config: &Config) -> BufferBudget {
    BufferBudget::new(config.limits.buffer_budget_bytes, config.limits.buffer_wait)
}

/// S3 confined to `S3_BUCKET` and `S3_PREFIX`, within the buffer budget.
pub(crate) fn storage(config: &Config, aws: &AwsClients, budget: &BufferBudget) -> Storage {
    Storage::new(
        aws.s3.clone(),
        config.s3.bucket.clone(),
        config.s3.prefix.clone(),
        aws.provider.expiry(),
    )
    .with_copy_multipart_threshold(config.s3.copy_multipart_threshold)
    .with_limits(budget.clone(), config.limits.max_object_bytes)
    .with_unsigned_payload_over_tls(crate::aws::s3_over_tls(&config.aws))
    .with_direct_put(
        &crate::aws::s3_endpoint(&config.aws),
        aws.sdk.credentials_provider(),
    )
}

/// Cloud Storage → S3, with the source buckets allowed and the service's
/// own tasks topic.
pub(crate) fn replicator(config: &Config, storage: &Storage) -> Replicator {
    Replicator::new(
        storage.clone(),
        GcsClient::new(config.replication.storage_emulator_host.as_deref()),
    )
    .with_source_buckets(config.replication.source_buckets.clone())
    .with_fanout(Fanout::new(
        &config.publisher,
        config.server.request_timeout,
    ))
}

/// Caller verification of the outside doors and of `/tasks`.
pub(crate) fn caller_auth(config: &Config) -> (CallerAuth, CallerAuth) {
    (
        CallerAuth::from_config(&config.caller_auth),
        CallerAuth::for_tasks(&config.caller_auth),
    )
}

/// What the outside doors accept (`COMMAND_OPS`, `SYNC_DELETE`).
pub(crate) fn doors(config: &Config) -> DoorRules {
    DoorRules {
        ops: config.doors.command_ops,
        sync_delete: config.doors.sync_delete,
    }
}
