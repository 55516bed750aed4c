//! [`AppState`]: the services every request handler shares, built once
//! from the configuration.

use std::sync::Arc;

use crate::aws::s3::Storage;
use crate::aws::{AwsClients, AwsOptions};
use crate::budget::BufferBudget;
use crate::config::Config;
use crate::google::caller_auth::CallerAuth;
use crate::google::identity::{IdTokenSource, IdentityError};
use crate::replication::replicate::Replicator;
use crate::services;
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
    /// Builds the services ([`crate::services`]). No outbound call.
    pub fn new(config: Config, opts: AwsOptions) -> Result<AppState, IdentityError> {
        let ids = services::identity(&config, &opts)?;
        Ok(AppState::with_identity(config, ids, opts))
    }

    /// Builds the services around a given identity source.
    pub(crate) fn with_identity(
        config: Config,
        ids: Arc<IdTokenSource>,
        opts: AwsOptions,
    ) -> AppState {
        let aws = services::aws(&config, ids, opts);
        let budget = services::budget(&config);
        let storage = services::storage(&config, &aws, &budget);
        let replicator = services::replicator(&config, &storage);
        let (caller_auth, tasks_auth) = services::caller_auth(&config);
        let doors = services::doors(&config);
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
