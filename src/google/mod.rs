//! The Google wing: everything that talks to Google.
//!
//! - [`identity`]: the service's own Google ID token (metadata server, key
//!   file, impersonation, a file), cached and single-flight;
//! - [`gcs`]: Cloud Storage, the object resource, metadata and media reads
//!   (whole or ranged, pinned to a generation) and listings;
//! - [`publisher`]: Pub/Sub publishing (the service's own tasks and the
//!   `sync` command's commands);
//! - [`caller_auth`]: verification of callers' Google-signed tokens and the
//!   certificate cache.
//!
//! Nothing here uses the AWS wing.

pub mod caller_auth;
pub mod gcs;
pub mod identity;
pub mod publisher;
