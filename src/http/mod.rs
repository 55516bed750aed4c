//! HTTP on top of the two wings and the replication rules: the listener
//! ([`server`]), the services the routes share ([`state`]), the one map from
//! errors to statuses and codes ([`error`]), the doors ([`triggers`]: Pub/Sub
//! push, CloudEvents, the HTTP API, the service's own tasks), the credential
//! server for AWS SDKs ([`credential_server`]) and the router ([`app`]).
//! What the doors refuse on their own is typed in [`edge`] and mapped in
//! [`error`] like every other error.

pub mod app;
pub(crate) mod auth_token;
pub mod credential_server;
pub(crate) mod edge;
pub mod error;
pub mod server;
pub(crate) mod state;
pub mod triggers;
