//! gcp-aws-bridge: keyless AWS access for workloads on Google Cloud.
//!
//! The service proves its Google identity with an OIDC ID token
//! ([`google::identity`]), trades it at AWS STS for short-lived credentials
//! ([`aws`]), and performs S3 operations ([`aws::s3`]) and replication from
//! Cloud Storage ([`google::gcs`], [`replication`]) when Pub/Sub push,
//! Eventarc or an authenticated HTTP caller asks ([`http::triggers`]).
//!
//! Two wings and the rules between them (`scripts/check-layers.py` checks
//! the layers and that the wings stay apart):
//! - [`google`]: everything that talks to Google (identity, Cloud Storage,
//!   Pub/Sub publishing, caller verification);
//! - [`aws`]: everything that talks to AWS (STS credentials, roles, whoami,
//!   and S3 in [`aws::s3`]); it uses the Google wing only for the ID token it
//!   presents to STS;
//! - [`replication`]: the rules between them (one object, part tasks, sync,
//!   the running of commands), reaching each cloud only through its wing;
//! - [`http`] (the listener, the doors, the one map from errors to answers,
//!   the credential server, the router) and [`cli`] on top (`sync`, and
//!   `verify`: replicas proven by listings and HEADs);
//! - helpers below everything: [`util`], `json_bounds`, [`retry`], [`jwt`],
//!   [`budget`] (buffer memory), [`source_buckets`], `s3_limits`, [`wire`]
//!   (the commands of the outside doors and the service's own tasks, as they
//!   travel), [`config`] and [`telemetry`].
//!
//! Identity, STS, S3, Cloud Storage, replication, sync, commands, caller
//! verification, publishing and whoami return their own errors;
//! [`http::error`] turns them into HTTP answers.

pub mod aws;
pub mod budget;
pub mod cli;
pub mod config;
pub mod google;
pub mod http;
pub(crate) mod json_bounds;
pub mod jwt;
pub mod replication;
pub mod retry;
pub(crate) mod s3_limits;
pub mod services;
pub(crate) mod settings;
pub mod source_buckets;
pub mod telemetry;
pub mod util;
pub mod wire;
