//! gcp-aws-bridge: keyless AWS access for workloads on Google Cloud.
//!
//! The service proves its Google identity with an OIDC ID token
//! ([`identity`]), trades it at AWS STS for short-lived credentials
//! ([`aws`]), and performs S3 operations ([`storage`]) and replication from
//! Cloud Storage ([`gcs`], [`replicate`], [`sync`]) when Pub/Sub push,
//! Eventarc or an authenticated HTTP caller asks ([`triggers`]).
//!
//! Module map, lower layers first (each uses only those above it in this
//! list; `scripts/check-layers.py` checks it):
//! - helpers: [`util`] (error chains, timestamps), `json_bounds` (JSON
//!   maps bounded while they are read), [`retry`], [`jwt`],
//!   [`budget`] (buffer memory), [`metrics`] (the OTLP metrics and their
//!   handles), [`source_buckets`], `s3_limits`,
//!   [`server`] (the listener), [`gcs`]'s object resource, then [`wire`]
//!   (the commands of the outside doors and the service's own tasks, as
//!   they travel), [`config`] (typed settings, a group per module) and
//!   [`telemetry`];
//! - outgoing identity and clients: [`gcs`] (Cloud Storage reads),
//!   [`identity`] (our own Google ID token), [`publisher`] (Pub/Sub),
//!   [`aws`] (STS credentials, the shared SDK configuration, whoami);
//! - [`caller_auth`] (who may call);
//! - [`storage`] (S3 confined to a bucket and prefix, with its key, range,
//!   metadata and header rules);
//! - rules: [`replicate`] (one object; part tasks in [`replicate::parts`]),
//!   [`sync`] (a bucket, page by page, each run once), [`command`]
//!   (running what the doors decoded);
//! - HTTP: `state` (`AppState`), [`error`] (the one map from
//!   domain errors to statuses and codes), [`triggers`],
//!   [`credential_server`], [`app`] (the router);
//! - command line: [`cli`], [`sync_cli`].
//!
//! Identity, STS, storage, Cloud Storage, replication, sync, commands,
//! caller verification, publishing and whoami return their own errors;
//! [`error`] turns them into HTTP answers.

pub mod app;
pub mod aws;
pub mod budget;
pub mod caller_auth;
pub mod cli;
pub mod command;
pub mod config;
pub mod credential_server;
pub mod error;
pub mod gcs;
pub mod identity;
pub(crate) mod json_bounds;
pub mod jwt;
pub mod metrics;
pub mod publisher;
pub mod replicate;
pub mod retry;
pub(crate) mod s3_limits;
pub mod server;
pub mod source_buckets;
pub(crate) mod state;
pub mod storage;
pub mod sync;
pub mod sync_cli;
pub mod telemetry;
pub mod triggers;
pub mod util;
pub mod wire;
