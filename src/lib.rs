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
//! - helpers: [`util`] (error chains, timestamps), [`s3_limits`], [`retry`], [`jwt`],
//!   [`budget`] (buffer memory), [`source_buckets`], [`config`],
//!   [`telemetry`];
//! - credentials: [`identity`] (our outgoing Google ID token), [`aws`] (STS
//!   credentials, the shared SDK configuration, whoami);
//! - services: [`storage`] (S3 confined to a bucket and prefix, with its key,
//!   metadata and header rules), [`gcs`] (Cloud Storage reads),
//!   [`publisher`] (Pub/Sub);
//! - rules: [`replicate`] (one object; part tasks in [`replicate::parts`]),
//!   [`sync`] (a bucket, page by page), [`command`] (what triggers decode
//!   requests into), [`caller_auth`] (who may call);
//! - HTTP: [`error`] (the one map from domain errors to statuses and codes),
//!   [`state`] ([`state::AppState`]), [`triggers`], [`app`] (the router),
//!   [`server`], [`credential_server`];
//! - command line: [`cli`], [`sync_cli`].
//!
//! Storage, Cloud Storage, replication, command decoding and whoami return
//! their own errors; [`error`] turns them into HTTP answers.

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
pub mod jwt;
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
