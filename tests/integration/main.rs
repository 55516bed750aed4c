//! The integration tests: one test binary, one module per area.
//! Most need the local rig (scripts/rig-up.sh); see the README.

mod common;

mod auth;
mod cloud_run;
mod credential_server;
mod credentials;
mod deploy;
mod doors;
mod faults;
mod hostile;
mod limits;
mod metrics;
mod pubsub_emulator;
mod replication;
mod retries;
mod routes;
mod sdk_clients;
mod sdk_rust;
mod service;
mod smoke;
mod sync;
mod sync_bench;
mod sync_inline;
mod tasks;
mod terraform_env;
mod terraform_monitoring;
mod verify;
mod verify_bench;
