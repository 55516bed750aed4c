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
//! JSON, and publishes nothing; when stdout is a terminal, a summary of
//! counts and bytes with the first lines instead (see [`crate::cli::summary`]).

use std::io::Write;

use crate::aws::AwsClients;
use crate::cli::summary::{self, Examples, Row};
use crate::config::Config;
use crate::replication::sync::{plan_page, Position, SyncScope};
use crate::services;
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

/// Runs `sync`; the answer goes to `out` (a dry run's as a summary when
/// `tty`), and the error text is returned.
pub async fn run(
    args: &SyncArgs,
    config: &Config,
    aws: &AwsClients,
    out: &mut dyn Write,
    tty: bool,
) -> Result<(), String> {
    if config.s3.bucket.is_empty() {
        return Err("S3_BUCKET: required for sync".into());
    }
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
    let storage = services::storage(config, aws, &services::budget(config));
    let replicator = services::replicator(config, &storage);
    let req = &args.request;
    let scope = SyncScope::of(&req.bucket, req.prefix.as_deref(), req.delete);
    // The dry run writes no claims: any run id does.
    let mut pos = Position::first("0".repeat(32));
    let mut plan_out = DryRun::new(out, tty);
    loop {
        let plan = plan_page(&replicator, &scope, &pos)
            .await
            .map_err(|e| crate::http::error::AppError::from(e).message_with_detail())?;
        plan_out.totals.pages += 1;
        plan_out.totals.listed += plan.listed;
        plan_out.totals.in_sync += plan.in_sync;
        plan_out.totals.copy_inline += plan.inline.len() as u64;
        for o in plan.copies() {
            let line = format!(
                "copy gs://{}/{} {}",
                req.bucket,
                o.name,
                o.size.unwrap_or(0)
            );
            plan_out.copy(o.size.unwrap_or(0), line)?;
        }
        for k in &plan.delete {
            let line = format!("delete s3://{}/{}{}", config.s3.bucket, config.s3.prefix, k);
            plan_out.delete(line)?;
        }
        match plan.next {
            Some(next) => pos = next,
            None => break,
        }
    }
    let target = format!(
        "s3://{}/{}{}",
        config.s3.bucket,
        config.s3.prefix,
        req.prefix.as_deref().unwrap_or_default()
    );
    plan_out.finish(req, &target)
}

/// What a dry run would do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DryRunTotals {
    pages: u64,
    listed: u64,
    in_sync: u64,
    copy: u64,
    copy_bytes: u64,
    /// The copies the pages would make themselves (`SYNC_INLINE_BYTES`).
    copy_inline: u64,
    delete: u64,
}

/// The dry run's output: a line per object as it comes and the totals as
/// JSON, or at a terminal a summary with the first lines.
struct DryRun<'a> {
    out: &'a mut dyn Write,
    tty: bool,
    totals: DryRunTotals,
    copies: Examples,
    deletes: Examples,
}

impl<'a> DryRun<'a> {
    fn new(out: &'a mut dyn Write, tty: bool) -> DryRun<'a> {
        DryRun {
            out,
            tty,
            totals: DryRunTotals::default(),
            copies: Examples::default(),
            deletes: Examples::default(),
        }
    }

    fn line(&mut self, line: String) -> Result<(), String> {
        writeln!(self.out, "{line}").map_err(|e| e.to_string())
    }

    fn copy(&mut self, bytes: u64, line: String) -> Result<(), String> {
        self.totals.copy += 1;
        self.totals.copy_bytes += bytes;
        if self.tty {
            self.copies.push(|| line);
            return Ok(());
        }
        self.line(line)
    }

    fn delete(&mut self, line: String) -> Result<(), String> {
        self.totals.delete += 1;
        if self.tty {
            self.deletes.push(|| line);
            return Ok(());
        }
        self.line(line)
    }

    fn finish(self, req: &SyncCommand, target: &str) -> Result<(), String> {
        let t = self.totals;
        if !self.tty {
            let totals = serde_json::json!({
                "dry_run": true, "bucket": req.bucket, "prefix": req.prefix,
                "pages": t.pages, "listed": t.listed, "in_sync": t.in_sync,
                "copy": t.copy, "copy_bytes": t.copy_bytes, "copy_inline": t.copy_inline,
                "delete": t.delete, "published": 0,
            });
            return writeln!(self.out, "{totals}").map_err(|e| e.to_string());
        }
        let out = self.out;
        let text = (|| -> std::io::Result<()> {
            writeln!(
                out,
                "sync --dry-run gs://{}/{} to {target}{}",
                req.bucket,
                req.prefix.as_deref().unwrap_or_default(),
                if req.delete { " --delete" } else { "" }
            )?;
            writeln!(
                out,
                "{} objects listed in {} pages\n",
                summary::grouped(t.listed),
                summary::grouped(t.pages)
            )?;
            summary::table(
                out,
                "objects",
                &[
                    Row {
                        label: "would copy",
                        count: t.copy,
                        bytes: Some(t.copy_bytes),
                    },
                    Row {
                        label: "would delete",
                        count: t.delete,
                        bytes: None,
                    },
                    Row {
                        label: "in sync",
                        count: t.in_sync,
                        bytes: None,
                    },
                ],
            )?;
            self.copies.write(out, "Would copy")?;
            self.deletes.write(out, "Would delete")?;
            writeln!(out, "\nDry run: nothing was copied, deleted or published.")
        })();
        text.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<SyncArgs, String> {
        parse_sync_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn dry_run_output(tty: bool) -> String {
        let mut out = Vec::new();
        let mut d = DryRun::new(&mut out, tty);
        d.totals.pages = 2;
        d.totals.listed = 14;
        d.totals.in_sync = 1;
        for i in 0..12 {
            d.copy(2048, format!("copy gs://src/p/{i:02} 2048"))
                .unwrap();
        }
        d.delete("delete s3://replicas/data/p/gone".into()).unwrap();
        let req = args(&["gs://src/p/", "--delete", "--dry-run"])
            .unwrap()
            .request;
        d.finish(&req, "s3://replicas/data/p/").unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_dry_run_prints_lines_for_programs_and_a_summary_for_people() {
        let lines = dry_run_output(false);
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines.len(), 14);
        assert_eq!(lines[0], "copy gs://src/p/00 2048");
        assert_eq!(lines[12], "delete s3://replicas/data/p/gone");
        let totals: serde_json::Value = serde_json::from_str(lines[13]).unwrap();
        assert_eq!(totals["copy"], 12);
        assert_eq!(totals["copy_bytes"], 12 * 2048);
        assert_eq!(totals["delete"], 1);
        assert_eq!(totals["published"], 0);

        let screen = dry_run_output(true);
        assert!(
            screen.starts_with("sync --dry-run gs://src/p/ to s3://replicas/data/p/ --delete\n"),
            "{screen}"
        );
        assert!(screen.contains("14 objects listed in 2 pages"), "{screen}");
        let rows: Vec<String> = screen
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        for row in ["would copy 12 24.0 KiB", "would delete 1 -", "in sync 1 -"] {
            assert!(rows.iter().any(|r| r == row), "{row:?} in\n{screen}");
        }
        assert!(
            screen.contains("Would copy (the first 10 of 12):"),
            "{screen}"
        );
        assert!(screen.contains("  copy gs://src/p/09 2048\n"), "{screen}");
        assert!(!screen.contains("p/10"), "{screen}");
        assert!(screen.contains("Would delete:\n  delete s3://replicas/data/p/gone"));
        assert!(screen.ends_with("Dry run: nothing was copied, deleted or published.\n"));
        assert!(!screen.contains('{'), "{screen}");
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
