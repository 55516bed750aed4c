//! The replication rules, between the Google wing and the AWS wing: one
//! object ([`replicate`], with part tasks in [`replicate::parts`]), a bucket
//! page by page ([`sync`]) and the running of decoded commands and tasks
//! ([`command`]). They reach Cloud Storage and Pub/Sub only through
//! [`crate::google`] and S3 only through [`crate::aws::s3`].

pub mod command;
pub mod replicate;
pub mod sync;
