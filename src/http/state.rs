//! [`AppState`]: the services every request handler shares, built once
//! from the configuration.

use std::sync::Arc;

use crate::aws::s3::Storage;
use crate::aws::{AwsClients, AwsOptions};
use crate::budget::BufferBudget;
use crate::config::Config;
use crate::google::caller_auth::CallerAuth;
use crate::google::gcs::GcsClient;
use crate::google::identity::{IdTokenSource, IdentityError};
use crate::replication::replicate::Replicator;
use crate::wire::DoorRules;

/// Everything a request needs, shared.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// The services behind [`AppState`].
pub struct Services {
    pub(crate) config: Config,
    /// AWS clients sharing one identity cache.
    pub(crate) aws: AwsClients,
    /// S3 confined to the bucket and prefix.
    pub(crate) storage: Storage,
    /// Cloud Storage → S3.
    pub(crate) replicator: Replicator,
    /// Caller verification of the outside doors.
    pub(crate) caller_auth: CallerAuth,
    /// Caller verification of `/tasks` (`TASKS_PUSH_EMAIL` only).
    pub(crate) tasks_auth: CallerAuth,
    /// What the outside doors accept (`COMMAND_OPS`, `SYNC_DELETE`).
    pub(crate) doors: DoorRules,
    /// The bytes all requests together may hold in buffers.
    pub budget: BufferBudget,
    /// Set when requests still running must stop (end of the shutdown grace).
    pub(crate) cancel: tokio::sync::watch::Sender<bool>,
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

impl AppState {
    /// Builds the services. No outbound call.
    pub fn new(config: Config, opts: AwsOptions) -> Result<AppState, IdentityError> {
        let ids = Arc::new(
            IdTokenSource::from_config(&config)?.with_time_source(opts.time_source.clone()),
        );
        Ok(AppState::with_identity(config, ids, opts))
    }

    /// Builds the services around a given identity source.
    pub(crate) fn with_identity(
        config: Config,
        ids: Arc<IdTokenSource>,
        opts: AwsOptions,
    ) -> AppState {
        let aws = AwsClients::new(&config, ids, opts);
        let budget =
            BufferBudget::new(config.limits.buffer_budget_bytes, config.limits.buffer_wait);
        let storage = Storage::new(
            aws.s3.clone(),
            config.s3.bucket.clone(),
            config.s3.prefix.clone(),
            aws.provider.expiry(),
        )
        .with_copy_multipart_threshold(config.s3.copy_multipart_threshold)
        .with_limits(budget.clone(), config.limits.max_object_bytes);
        let replicator = Replicator::new(
            storage.clone(),
            GcsClient::new(config.replication.storage_emulator_host.as_deref()),
        )
        .with_source_buckets(config.replication.source_buckets.clone())
        .with_fanout(crate::google::publisher::Fanout::from_config(&config));
        let caller_auth = CallerAuth::from_config(&config.caller_auth);
        let tasks_auth = CallerAuth::for_tasks(&config.caller_auth);
        let doors = DoorRules {
            ops: config.doors.command_ops,
            sync_delete: config.doors.sync_delete,
        };
        AppState(Arc::new(Services {
            config,
            aws,
            storage,
            replicator,
            caller_auth,
            tasks_auth,
            doors,
            budget,
            cancel: tokio::sync::watch::channel(false).0,
        }))
    }

    /// Ends every request still running: each answers 503 and drops its
    /// work, which aborts its multipart upload. For the end of the shutdown
    /// grace, while the runtime can still run the aborts.
    pub fn cancel_requests(&self) {
        self.cancel.send_replace(true);
    }
}
