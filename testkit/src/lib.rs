//! Local stand-ins for the gcp-aws-bridge integration tests.
//!
//! - [`metadata`]: a GCE metadata server emulator that also plays Google's OAuth
//!   token endpoint, the IAM Credentials `generateIdToken` API and the JWKS
//!   certificate endpoint, all signed with keys generated at run time.
//! - [`proxy`]: a streaming HTTP proxy that counts requests per AWS operation,
//!   injects faults, and can check `AssumeRoleWithWebIdentity` tokens the way real
//!   STS does (moto does not).
//! - [`cloudrun`]: Cloud Run's front end (IAM check, stripped signature, added
//!   headers, request limits, timeout, instances started and stopped as Cloud
//!   Run does) in front of instances of a container it starts.
//! - [`push`]: the OIDC token Pub/Sub push and Eventarc add to deliveries.
//! - [`keys`]: RSA signing keys and JWT helpers shared by both.
//! - [`logs`]: log output captured in memory.
//! - [`latency`]: in-memory S3 and Cloud Storage stand-ins answering after a
//!   fixed delay, for scaling benchmarks.
//! - [`otlp`]: an OTLP/HTTP metrics receiver that keeps the data points.
//! - [`s3_fake`]: an in-memory path-style S3 for unit tests, with scripted faults.
//!
//! Every server binds `127.0.0.1:0` and runs on the caller's tokio runtime until its
//! handle (and every clone of it) is dropped or shut down.
//!
//! For local runs of the service, two binaries wrap the same code and print
//! `READY 127.0.0.1:PORT` once listening, then serve until SIGTERM or SIGINT:
//! `metadata-emulator` (`--port`, `--email`, `--unique-id`, `--project-id`,
//! `--numeric-project-id`, `--token-lifetime`, `--write-key-file`) and
//! `fault-proxy` (`--upstream`, `--port`, and `--jwks-url`/`--oaud`/`--aud`/`--sub`
//! for the STS gate; `GET /__counts` answers its request counts as JSON). A third,
//! `s3-sink`, is a fast S3 stand-in for throughput measurements: it reads and
//! discards what is PUT, stores nothing and checks no signature.
//! `cloud-run-emulator` (`--jwks-url`, `--url`, `--invoker`, `--use-http2`,
//! ... `-- PROGRAM ARGS`) and `push-shim` (`--target`, `--service-account`,
//! `--audience`, `--metadata`) wrap [`cloudrun`] and [`push`].

pub mod cloudrun;
pub mod flags;
pub mod keys;
pub mod latency;
pub mod logs;
pub mod metadata;
pub mod otlp;
pub mod proxy;
pub mod push;
pub mod ready;
pub mod s3_fake;
mod server;

pub use cloudrun::{CloudRunConfig, CloudRunEmulator, Container, Output, Stopped};
pub use keys::SigningKey;
pub use latency::{LatencyGcs, LatencyS3};
pub use logs::LogCapture;
pub use metadata::{Endpoint, Fault, MetadataConfig, MetadataEmulator};
pub use proxy::{FaultPlan, FaultProxy, Hold, ProxyFault, StsGate};
pub use push::{PushConfig, PushShim};
pub use s3_fake::{FakeObject, S3Fake};
