//! `gcp-aws-bridge sync gs://B[/P] [--delete] [--dry-run]`.
//!
//! Without `--dry-run` it publishes the `sync` command to the commands
//! topic `PUBSUB_TOPIC` (the one the service's `/pubsub` door is pushed
//! from) and prints `{"published":1,…}`: the service works through the
//! pages (each page publishes the next to its tasks topic), spread over its
//! instances, and the command line returns at once. With `--dry-run` it works through every
//! page itself, with the same listing calls the service would make, prints
//! one line per object it would copy (`copy gs://B/NAME SIZE`) and per
//! replica it would delete (`delete s3://BUCKET/KEY`), then the totals as
//! JSON, and publishes nothing.

use std::io::Write;

use crate::aws::s3::Storage;
use crate::aws::AwsClients;
use crate::config::Config;
use crate::google::gcs::GcsClient;
use crate::replication::replicate::Replicator;
use crate::replication::sync::{plan_page, Position, SyncScope};
use crate::wire::SyncCommand;

/// The arguments of `sync`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncArgs {
    /// What to sync.
    pub(crate) request: SyncCommand,
    /// Print the plan only.
    pub(crate) dry_run: bool,
}

/// Usage of `sync`.
pub(crate) const SYNC_USAGE: &str =
    "usage: gcp-aws-bridge sync gs://BUCKET[/PREFIX] [--delete] [--dry-run]";

/// Parses the arguments after `sync`.
pub fn parse_sync_args(args: &[String]) -> Result<SyncArgs, String> {
    let mut url = None;
    let mut delete = false;
    let mut dry_run = false;
    for a in args {
        match a.as_str() {
            "--delete" => delete = true,
            "--dry-run" => dry_run = true,
            s if s.starts_with("gs://") && url.is_none() => url = Some(s.to_owned()),
            other => return Err(format!("unexpected argument {other:?}\n{SYNC_USAGE}")),
        }
    }
    let url = url.ok_or_else(|| format!("a gs:// URL is required\n{SYNC_USAGE}"))?;
    let rest = &url["gs://".len()..];
    let (bucket, prefix) = match rest.split_once('/') {
        Some((b, p)) => (b, (!p.is_empty()).then(|| p.to_owned())),
        None => (rest, None),
    };
    if bucket.is_empty() {
        return Err(format!("no bucket in {url:?}\n{SYNC_USAGE}"));
    }
    Ok(SyncArgs {
        request: SyncCommand {
            bucket: bucket.to_owned(),
            prefix,
            delete,
            ..SyncCommand::default()
        },
        dry_run,
    })
}

/// Runs `sync`; the answer goes to `out`, and the error text is returned.
pub async fn run(
    args: &SyncArgs,
    config: &Config,
    aws: &AwsClients,
    out: &mut dyn Write,
) -> Result<(), String> {
    if config.s3.bucket.is_empty() {
        return Err("S3_BUCKET: required for sync".into());
    }
    let fanout = crate::google::publisher::Fanout::from_config(config);
    config
        .replication
        .source_buckets
        .check(&args.request.bucket)
        .map_err(|e| e.to_string())?;
    if !args.dry_run {
        let publisher = crate::google::publisher::Publisher::commands(&config.publisher).ok_or(
            "PUBSUB_TOPIC is not set: the commands topic the sync command is published to",
        )?;
        let n = publisher
            .publish(&[args.request.to_command()])
            .await
            .map_err(|e| e.to_string())?;
        let line =
            serde_json::json!({ "published": n, "topic": publisher.topic(), "command": "sync" });
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
        return Ok(());
    }
    let storage = Storage::new(
        aws.s3.clone(),
        config.s3.bucket.clone(),
        config.s3.prefix.clone(),
        aws.provider.expiry(),
    );
    let replicator = Replicator::new(
        storage.clone(),
        GcsClient::new(config.replication.storage_emulator_host.as_deref()),
    )
    .with_source_buckets(config.replication.source_buckets.clone())
    .with_fanout(fanout);
    let req = &args.request;
    let scope = SyncScope::of(&req.bucket, req.prefix.as_deref(), req.delete);
    // The dry run writes no claims: any run id does.
    let mut pos = Position::first("0".repeat(32));
    let (mut pages, mut copy, mut bytes, mut delete, mut in_sync, mut listed) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut inline = 0u64;
    loop {
        let plan = plan_page(&replicator, &scope, &pos).await.map_err(|e| {
            match crate::http::error::AppError::from(e) {
                crate::http::error::AppError::Unavailable {
                    message, detail, ..
                } => {
                    format!("{message}: {detail}")
                }
                other => other.to_string(),
            }
        })?;
        pages += 1;
        listed += plan.listed;
        in_sync += plan.in_sync;
        inline += plan.inline.len() as u64;
        for o in plan.copies() {
            copy += 1;
            bytes += o.size.unwrap_or(0);
            writeln!(
                out,
                "copy gs://{}/{} {}",
                req.bucket,
                o.name,
                o.size.unwrap_or(0)
            )
            .map_err(|e| e.to_string())?;
        }
        for k in &plan.delete {
            delete += 1;
            writeln!(
                out,
                "delete s3://{}/{}{}",
                config.s3.bucket, config.s3.prefix, k
            )
            .map_err(|e| e.to_string())?;
        }
        match plan.next {
            Some(next) => pos = next,
            None => break,
        }
    }
    let totals = serde_json::json!({
        "dry_run": true, "bucket": args.request.bucket, "prefix": args.request.prefix,
        "pages": pages, "listed": listed, "in_sync": in_sync,
        "copy": copy, "copy_bytes": bytes, "copy_inline": inline, "delete": delete, "published": 0,
    });
    writeln!(out, "{totals}").map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<SyncArgs, String> {
        parse_sync_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn sync_arguments() {
        let a = args(&["gs://b/p/q/", "--delete", "--dry-run"]).unwrap();
        assert_eq!(a.request.bucket, "b");
        assert_eq!(a.request.prefix.as_deref(), Some("p/q/"));
        assert!(a.request.delete && a.dry_run);
        let a = args(&["gs://b"]).unwrap();
        assert_eq!(a.request.prefix, None);
        assert!(!a.request.delete && !a.dry_run);
        assert!(args(&[]).is_err());
        assert!(args(&["s3://b"]).is_err());
        assert!(args(&["gs://b", "--force"]).is_err());
        assert!(args(&["gs://"]).is_err());
    }
}
