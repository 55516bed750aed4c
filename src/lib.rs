//! gcp-aws-bridge: keyless AWS access for workloads on Google Cloud.
//!
//! The service proves its Google identity with an OIDC ID token
//! ([`identity`]), trades it at AWS STS for short-lived credentials
//! ([`aws`]), and performs S3 operations ([`storage`], [`replicate`]) when
//! Pub/Sub push, Eventarc or an authenticated HTTP caller asks
//! ([`triggers`]). Data flows one way: trigger → [`command::Command`] →
//! storage/replicate → S3, with credentials coming from identity → aws
//! underneath.

pub mod app;
pub mod auth;
pub mod aws;
pub mod budget;
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
pub mod server;
pub mod source_buckets;
pub mod state;
pub mod storage;
pub mod sync;
pub mod sync_cli;
pub mod telemetry;
pub mod triggers;
pub mod util;
