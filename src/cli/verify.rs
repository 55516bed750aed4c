//! `gcp-aws-bridge verify gs://BUCKET[/PREFIX]`: proof that every object
//! under the prefix has its replica, without reading a byte of either.
//!
//! It walks the Cloud Storage listing page by page (at most
//! `TEST_SYNC_PAGE_SIZE`, default 1,000, objects) together with the S3
//! listing of the same name range, as a sync page does (see [`crate::replication::sync`]):
//! memory stays at one page. Each object listed in both is checked with one
//! `HeadObject` of its replica (`ChecksumMode=ENABLED`), [`HEAD_CONCURRENCY`]
//! at a time; each S3 key whose object is not listed is checked the same
//! way for replication metadata. No `GetObject` and no Cloud Storage read
//! but the listing.
//!
//! An object `gs://B/NAME` is in sync when the key replication maps it to
//! (`{S3_PREFIX}NAME`) holds a replica of B (`goog-bucket` = B) whose
//! `goog-generation` is the listed generation, whose size is the listed
//! size, and whose full-object CRC32C (`x-amz-checksum-crc32c`, checksum
//! type `FULL_OBJECT`, or no type and no `-N` part count) is the listed
//! `crc32c`. Otherwise, in this order, one difference:
//! - `missing`: no object at the key, or one that is no replica of B
//!   (`reason`: `not_a_replica`, `replica_of_another_bucket`);
//! - `generation`: the replica is of another generation (its size and
//!   checksum then say nothing more);
//! - `size`: same generation, another size;
//! - `checksum`: same generation and size, another CRC32C; or no proof
//!   (`reason`: `no_full_object_checksum` for a replica with a composite
//!   multipart checksum or none, `no_source_checksum` when the listing has
//!   no `crc32c`);
//! - `extra`: a replica of B (`goog-bucket` = B and a `goog-generation`)
//!   whose object is not listed. Other objects under the prefix are not the
//!   service's (SPEC §5) and only counted (`not_replicas`).
//!
//! Keys under the reserved `.gcp-aws-bridge/` prefix are never compared;
//! object names that cannot be keys here are counted as `skipped`.
//!
//! Output, when stdout is no terminal: one JSON line per difference, in name
//! order, then one totals line:
//!
//! ```text
//! {"kind":"size","bucket":"B","name":"p/a","key":"data/p/a","gcs":5,"s3":7}
//! {"totals":{"bucket":"B","prefix":"p/","s3_bucket":"S","s3_prefix":"data/p/","pages":1,
//!  "objects":6,"bytes":60,"differences":5,"in_sync":{"count":1,"bytes":10},
//!  "missing":{"count":1,"bytes":10},...,"not_replicas":{"count":0,"bytes":0}}}
//! ```
//!
//! At a terminal, a summary table and the first differences instead (see
//! [`crate::cli::summary`]). Exit status: 0 when nothing differs, 1 when
//! something does, 2 when nothing could be concluded (usage,
//! configuration, or a listing or HEAD that failed), as `diff` does.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use aws_sdk_s3::types::ChecksumType;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::aws::s3::{list_prefix, Storage};
use crate::aws::AwsClients;
use crate::cli::summary::{self, Examples, Row};
use crate::config::Config;
use crate::google::gcs::{decode_crc, GcsClient};
use crate::replication::replicate::{BUCKET_META, GENERATION_META};
use crate::replication::sync::ListedSource;

/// HEAD requests in flight at once.
pub(crate) const HEAD_CONCURRENCY: usize = 32;

/// What to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyArgs {
    /// The Cloud Storage bucket.
    pub(crate) bucket: String,
    /// The name prefix; empty for the whole bucket.
    pub(crate) prefix: String,
}

/// Usage of `verify`.
pub(crate) const VERIFY_USAGE: &str = "usage: gcp-aws-bridge verify gs://BUCKET[/PREFIX]";

/// Parses the arguments after `verify`.
pub fn parse_verify_args(args: &[String]) -> Result<VerifyArgs, String> {
    let mut url = None;
    for a in args {
        match a.as_str() {
            s if s.starts_with("gs://") && url.is_none() => url = Some(s.to_owned()),
            other => return Err(format!("unexpected argument {other:?}\n{VERIFY_USAGE}")),
        }
    }
    let url = url.ok_or_else(|| format!("a gs:// URL is required\n{VERIFY_USAGE}"))?;
    let rest = &url["gs://".len()..];
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    crate::source_buckets::validate_bucket_name(bucket)
        .map_err(|e| format!("{e}\n{VERIFY_USAGE}"))?;
    Ok(VerifyArgs {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
    })
}

/// A kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Missing,
    Extra,
    Size,
    Generation,
    Checksum,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::Size => "size",
            Kind::Generation => "generation",
            Kind::Checksum => "checksum",
        }
    }
}

/// One object (or replica) that is not as it should be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Difference {
    pub(crate) kind: Kind,
    /// The object's name in the bucket.
    pub(crate) name: String,
    /// The full S3 key.
    pub(crate) key: String,
    /// What Cloud Storage lists (size, generation or CRC32C); null when
    /// there is no object.
    pub(crate) gcs: Value,
    /// What S3 holds; null when there is no replica.
    pub(crate) s3: Value,
    /// Why, when the kind alone does not say.
    pub(crate) reason: Option<&'static str>,
    /// The object's bytes (the replica's for `extra`).
    pub(crate) bytes: u64,
}

impl Difference {
    fn to_json(&self, bucket: &str) -> Value {
        let mut v = json!({
            "kind": self.kind.as_str(), "bucket": bucket, "name": self.name,
            "key": self.key, "gcs": self.gcs, "s3": self.s3,
        });
        if let Some(r) = self.reason {
            v["reason"] = json!(r);
        }
        v
    }

    fn to_text(&self) -> String {
        let show = |v: &Value| match v {
            Value::Null => "none".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut line = format!(
            "{:<10}  {}  (gcs {}, s3 {})",
            self.kind.as_str(),
            self.name,
            show(&self.gcs),
            show(&self.s3)
        );
        if let Some(r) = self.reason {
            line.push_str(&format!(" {r}"));
        }
        line
    }
}

/// What checking one name found.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// The replica is the object's: bytes.
    InSync(u64),
    Differs(Difference),
    /// A name that cannot be a key here: bytes.
    Skipped(u64),
    /// An S3 object under the prefix that is no replica of the bucket.
    NotReplica(u64),
    /// A key listed in S3 that was gone when it was checked.
    Gone,
}

/// Objects and bytes of one outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) count: u64,
    pub(crate) bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }

    fn json(&self) -> Value {
        json!({ "count": self.count, "bytes": self.bytes })
    }
}

/// The counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) pages: u64,
    /// Objects listed in Cloud Storage, and their bytes.
    pub(crate) objects: Tally,
    pub(crate) in_sync: Tally,
    pub(crate) missing: Tally,
    pub(crate) extra: Tally,
    pub(crate) size: Tally,
    pub(crate) generation: Tally,
    pub(crate) checksum: Tally,
    pub(crate) skipped: Tally,
    pub(crate) not_replicas: Tally,
}

impl Totals {
    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::InSync(b) => self.in_sync.add(*b),
            Outcome::Differs(d) => self.of(d.kind).add(d.bytes),
            Outcome::Skipped(b) => self.skipped.add(*b),
            Outcome::NotReplica(b) => self.not_replicas.add(*b),
            Outcome::Gone => {}
        }
    }

    fn of(&mut self, kind: Kind) -> &mut Tally {
        match kind {
            Kind::Missing => &mut self.missing,
            Kind::Extra => &mut self.extra,
            Kind::Size => &mut self.size,
            Kind::Generation => &mut self.generation,
            Kind::Checksum => &mut self.checksum,
        }
    }

    /// Differences of every kind.
    pub(crate) fn differences(&self) -> u64 {
        [
            self.missing,
            self.extra,
            self.size,
            self.generation,
            self.checksum,
        ]
        .iter()
        .map(|t| t.count)
        .sum()
    }

    fn rows(&self) -> Vec<Row> {
        [
            ("in sync", self.in_sync),
            ("missing", self.missing),
            ("extra", self.extra),
            ("size", self.size),
            ("generation", self.generation),
            ("checksum", self.checksum),
            ("skipped", self.skipped),
            ("not replicas", self.not_replicas),
        ]
        .into_iter()
        .map(|(label, t)| Row {
            label,
            count: t.count,
            bytes: Some(t.bytes),
        })
        .collect()
    }
}

/// Where a run stands: the two sides' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) bucket: String,
    pub(crate) prefix: String,
    pub(crate) s3_bucket: String,
    /// The S3 listing prefix: `{S3_PREFIX}{prefix}`.
    pub(crate) s3_prefix: String,
}

/// Where the findings go: JSON lines as they come, or a summary for a
/// terminal at the end.
pub(crate) struct Report<'a> {
    out: &'a mut dyn Write,
    tty: bool,
    totals: Totals,
    examples: Examples,
}

impl<'a> Report<'a> {
    pub(crate) fn new(out: &'a mut dyn Write, tty: bool) -> Report<'a> {
        Report {
            out,
            tty,
            totals: Totals::default(),
            examples: Examples::default(),
        }
    }

    /// At a terminal, a progress line on stderr (when it is a terminal
    /// too) after each page: a long walk is seen to move.
    fn progress(&mut self) {
        if self.tty && std::io::stderr().is_terminal() {
            let t = &self.totals;
            eprint!(
                "\r{} objects checked, {} differences so far",
                summary::grouped(t.objects.count),
                summary::grouped(t.differences())
            );
        }
    }

    /// Clears the progress line.
    fn progress_done(&mut self) {
        if self.tty && std::io::stderr().is_terminal() {
            eprint!("\r\x1b[2K");
        }
    }

    fn record(&mut self, scope: &Scope, o: Outcome) -> std::io::Result<()> {
        self.totals.add(&o);
        if let Outcome::Differs(d) = o {
            if self.tty {
                self.examples.push(|| d.to_text());
            } else {
                writeln!(self.out, "{}", d.to_json(&scope.bucket))?;
            }
        }
        Ok(())
    }

    /// Writes the totals (a JSON line, or the summary) and returns them.
    pub(crate) fn finish(self, scope: &Scope) -> std::io::Result<Totals> {
        let t = self.totals;
        if !self.tty {
            let mut totals = json!({
                "bucket": scope.bucket, "prefix": scope.prefix,
                "s3_bucket": scope.s3_bucket, "s3_prefix": scope.s3_prefix,
                "pages": t.pages, "objects": t.objects.count, "bytes": t.objects.bytes,
                "differences": t.differences(),
            });
            for (name, tally) in [
                ("in_sync", t.in_sync),
                ("missing", t.missing),
                ("extra", t.extra),
                ("size", t.size),
                ("generation", t.generation),
                ("checksum", t.checksum),
                ("skipped", t.skipped),
                ("not_replicas", t.not_replicas),
            ] {
                totals[name] = tally.json();
            }
            writeln!(self.out, "{}", json!({ "totals": totals }))?;
            return Ok(t);
        }
        let out = self.out;
        writeln!(
            out,
            "verify gs://{}/{} against s3://{}/{}",
            scope.bucket, scope.prefix, scope.s3_bucket, scope.s3_prefix
        )?;
        writeln!(
            out,
            "{} objects ({}) in {} listing pages\n",
            summary::grouped(t.objects.count),
            summary::human_bytes(t.objects.bytes),
            summary::grouped(t.pages)
        )?;
        summary::table(out, "objects", &t.rows())?;
        self.examples.write(out, "Differences")?;
        writeln!(out)?;
        match t.differences() {
            0 => writeln!(
                out,
                "In sync: every object has its replica, proven by size, generation and CRC32C."
            )?,
            n => writeln!(
                out,
                "{} differences (exit status 1). Pipe the output for every one as JSON lines.",
                summary::grouped(n)
            )?,
        }
        Ok(t)
    }
}

/// Runs `verify`: the findings go to `out` (a summary when `tty`), and the
/// number of differences is returned; an error says why nothing could be
/// concluded.
pub async fn run(
    args: &VerifyArgs,
    config: &Config,
    aws: &AwsClients,
    out: &mut dyn Write,
    tty: bool,
) -> Result<u64, String> {
    if config.s3.bucket.is_empty() {
        return Err("S3_BUCKET: required for verify".into());
    }
    let storage = crate::services::storage(config, aws, &crate::services::budget(config));
    let gcs = GcsClient::new(config.replication.storage_emulator_host.as_deref());
    let mut report = Report::new(out, tty);
    let page_size = config.publisher.sync_page_size;
    let scope = verify(&storage, &gcs, args, page_size, &mut report).await;
    report.progress_done();
    let scope = scope?;
    let totals = report.finish(&scope).map_err(|e| e.to_string())?;
    Ok(totals.differences())
}

/// Walks the two listings page by page and records what each name shows.
pub(crate) async fn verify(
    st: &Storage,
    gcs: &GcsClient,
    args: &VerifyArgs,
    page_size: usize,
    report: &mut Report<'_>,
) -> Result<Scope, String> {
    let s3_prefix = list_prefix(st.prefix(), &args.prefix)
        .map_err(|e| format!("gs://{}/{}: {e}", args.bucket, args.prefix))?;
    let scope = Scope {
        bucket: args.bucket.clone(),
        prefix: args.prefix.clone(),
        s3_bucket: st.bucket().to_owned(),
        s3_prefix,
    };
    let mut after: Option<String> = None;
    loop {
        let page = list_page(st, gcs, &scope, after.as_deref(), page_size).await?;
        report.totals.pages += 1;
        for o in &page.objects {
            report.totals.objects.add(o.size.unwrap_or(0));
        }
        let checks = page.checks(st.prefix());
        let sc = &scope;
        let mut outcomes = futures_util::stream::iter(checks)
            .map(|c| check(st, sc, c))
            .buffered(HEAD_CONCURRENCY);
        while let Some(o) = outcomes.next().await {
            report.record(sc, o?).map_err(|e| e.to_string())?;
        }
        drop(outcomes);
        report.progress();
        match page.end {
            Some(end) => after = Some(end),
            None => return Ok(scope),
        }
    }
}

/// The names of one page on both sides.
#[derive(Debug, Default)]
struct Page {
    /// Cloud Storage objects in the page's range.
    objects: Vec<ListedSource>,
    /// Relative S3 keys in the page's range (reserved ones left out), with
    /// their listed size.
    keys: HashMap<String, i64>,
    /// The page's last name when another page follows.
    end: Option<String>,
}

/// What to check of one name.
#[derive(Debug)]
enum Check {
    /// An object with a key listed at its name.
    Replica(ListedSource),
    /// An object with nothing listed at its name.
    Missing(ListedSource),
    /// An object whose name cannot be a key.
    Skip(ListedSource),
    /// A key whose object is not listed.
    Extra(String),
}

impl Check {
    fn name(&self) -> &str {
        match self {
            Check::Replica(o) | Check::Missing(o) | Check::Skip(o) => &o.name,
            Check::Extra(k) => k,
        }
    }
}

impl Page {
    /// The checks of the page, in name order; `prefix` is `S3_PREFIX`.
    fn checks(&self, prefix: &str) -> Vec<Check> {
        let mut checks: Vec<Check> = Vec::with_capacity(self.objects.len());
        let mut names = std::collections::HashSet::with_capacity(self.objects.len());
        for o in &self.objects {
            names.insert(o.name.as_str());
            let c = if crate::aws::s3::ObjectKey::new(prefix, &o.name).is_err() {
                Check::Skip(o.clone())
            } else if self.keys.contains_key(&o.name) {
                Check::Replica(o.clone())
            } else {
                Check::Missing(o.clone())
            };
            checks.push(c);
        }
        checks.extend(
            self.keys
                .keys()
                .filter(|k| !names.contains(k.as_str()))
                .map(|k| Check::Extra(k.clone())),
        );
        checks.sort_by(|a, b| a.name().cmp(b.name()));
        checks
    }
}

/// Lists one page: at most `page_size` objects after `after` and the S3
/// keys of the same name range (as [`crate::replication::sync`] pages do).
async fn list_page(
    st: &Storage,
    gcs: &GcsClient,
    scope: &Scope,
    after: Option<&str>,
    page_size: usize,
) -> Result<Page, String> {
    let pair = crate::replication::sync::list_pair(
        st,
        gcs,
        (&scope.bucket, &scope.prefix),
        &scope.s3_prefix,
        after,
        page_size,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(Page {
        objects: pair.objects,
        keys: pair.keys.into_iter().map(|k| (k.key, k.size)).collect(),
        end: pair.end,
    })
}

/// A replica's HEAD, as far as verify reads it.
pub(crate) type ReplicaHead = crate::aws::s3::ChecksumHead;

impl ReplicaHead {
    /// The replica's generation when it is a replica of `bucket`, else
    /// why not.
    fn generation_of(&self, bucket: &str) -> Result<i64, &'static str> {
        match self.metadata.get(BUCKET_META) {
            Some(b) if b == bucket => {}
            Some(_) => return Err("replica_of_another_bucket"),
            None => return Err("not_a_replica"),
        }
        self.metadata
            .get(GENERATION_META)
            .and_then(|g| g.trim().parse().ok())
            .ok_or("not_a_replica")
    }

    /// The full-object CRC32C S3 stored: the checksum type says
    /// `FULL_OBJECT`, or says nothing and the value has no `-N` part count
    /// (a single PutObject's checksum is of the whole object).
    fn full_object_crc(&self) -> Option<u32> {
        let v = self.crc32c.as_deref()?;
        match &self.checksum_type {
            Some(ChecksumType::FullObject) => {}
            None if !v.contains('-') => {}
            _ => return None,
        }
        decode_crc(v)
    }
}

/// HEADs a key with its checksum; `None` when it is gone.
async fn head(st: &Storage, rel: &str) -> Result<Option<ReplicaHead>, String> {
    st.head_checksum(rel).await.map_err(|e| e.to_string())
}

async fn check(st: &Storage, scope: &Scope, c: Check) -> Result<Outcome, String> {
    let full = |name: &str| format!("{}{name}", st.prefix());
    Ok(match c {
        Check::Skip(o) => Outcome::Skipped(o.size.unwrap_or(0)),
        Check::Missing(o) => Outcome::Differs(missing(&o, full(&o.name), None)),
        Check::Replica(o) => {
            let key = full(&o.name);
            let h = head(st, &o.name).await?;
            compare(&scope.bucket, &o, key, h.as_ref())
        }
        Check::Extra(rel) => {
            let key = full(&rel);
            match head(st, &rel).await? {
                None => Outcome::Gone,
                Some(h) => match h.generation_of(&scope.bucket) {
                    Ok(g) => Outcome::Differs(Difference {
                        kind: Kind::Extra,
                        name: rel,
                        key,
                        gcs: Value::Null,
                        s3: json!(g.to_string()),
                        reason: None,
                        bytes: h.size,
                    }),
                    Err(_) => Outcome::NotReplica(h.size),
                },
            }
        }
    })
}

fn missing(o: &ListedSource, key: String, reason: Option<&'static str>) -> Difference {
    Difference {
        kind: Kind::Missing,
        name: o.name.clone(),
        key,
        gcs: json!(o.generation.map(|g| g.to_string())),
        s3: Value::Null,
        reason,
        bytes: o.size.unwrap_or(0),
    }
}

/// Compares a listed object with the HEAD of its key (`None`: gone).
fn compare(bucket: &str, o: &ListedSource, key: String, h: Option<&ReplicaHead>) -> Outcome {
    let Some(h) = h else {
        return Outcome::Differs(missing(o, key, None));
    };
    let generation = match h.generation_of(bucket) {
        Ok(g) => g,
        Err(reason) => return Outcome::Differs(missing(o, key, Some(reason))),
    };
    let bytes = o.size.unwrap_or(0);
    let differs = |kind, gcs, s3, reason| {
        Outcome::Differs(Difference {
            kind,
            name: o.name.clone(),
            key: key.clone(),
            gcs,
            s3,
            reason,
            bytes,
        })
    };
    if o.generation != Some(generation) {
        return differs(
            Kind::Generation,
            json!(o.generation.map(|g| g.to_string())),
            json!(generation.to_string()),
            None,
        );
    }
    if o.size != Some(h.size) {
        return differs(Kind::Size, json!(o.size), json!(h.size), None);
    }
    let listed = o.crc32c.as_deref().and_then(decode_crc);
    let (gcs, s3) = (json!(o.crc32c), json!(h.crc32c));
    match (listed, h.full_object_crc()) {
        (Some(a), Some(b)) if a == b => Outcome::InSync(bytes),
        (Some(_), Some(_)) => differs(Kind::Checksum, gcs, s3, None),
        (None, _) => differs(Kind::Checksum, gcs, s3, Some("no_source_checksum")),
        (Some(_), None) => differs(Kind::Checksum, gcs, s3, Some("no_full_object_checksum")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn args(a: &[&str]) -> Result<VerifyArgs, String> {
        parse_verify_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn verify_arguments() {
        assert_eq!(
            args(&["gs://src/p/q/"]).unwrap(),
            VerifyArgs {
                bucket: "src".into(),
                prefix: "p/q/".into()
            }
        );
        assert_eq!(args(&["gs://src"]).unwrap().prefix, "");
        for bad in [
            &[][..],
            &["s3://b"],
            &["gs://"],
            &["gs://Bad_Bucket"],
            &["gs://src", "--delete"],
            &["gs://src", "gs://other"],
        ] {
            assert!(args(bad).unwrap_err().contains(VERIFY_USAGE), "{bad:?}");
        }
    }

    fn crc(data: &[u8]) -> String {
        crate::aws::s3::crc32c_base64(crc32c::crc32c(data))
    }

    /// One object of the stand-ins: its listing entry and its replica's
    /// HEAD headers.
    struct Fixture {
        name: &'static str,
        body: &'static [u8],
        checksum: Option<String>,
        checksum_type: Option<&'static str>,
    }

    /// A Cloud Storage listing and an S3 stand-in (ListObjectsV2, HEAD)
    /// answering as real S3 does with `ChecksumMode=ENABLED`; the S3
    /// stand-in records each HEAD's `x-amz-checksum-mode`.
    async fn stand_ins(fixtures: Vec<Fixture>) -> (String, String, Arc<Mutex<Vec<String>>>) {
        use axum::http::{HeaderMap, Method, StatusCode};
        let fixtures = Arc::new(fixtures);
        let f = fixtures.clone();
        let gcs = axum::Router::new().route(
            "/storage/v1/b/{bucket}/o",
            axum::routing::get(move || {
                let f = f.clone();
                async move {
                    let items: Vec<Value> = f
                        .iter()
                        .map(|o| {
                            json!({"name": o.name, "size": o.body.len().to_string(),
                                   "generation": "7", "crc32c": crc(o.body)})
                        })
                        .collect();
                    axum::Json(json!({ "items": items }))
                }
            }),
        );
        let modes = Arc::new(Mutex::new(Vec::new()));
        let m = modes.clone();
        let listing = axum::routing::get({
            let f = fixtures.clone();
            move || {
                let f = f.clone();
                async move {
                    let contents: String = f
                        .iter()
                        .map(|o| {
                            format!(
                                "<Contents><Key>data/{}</Key><Size>{}</Size></Contents>",
                                o.name,
                                o.body.len()
                            )
                        })
                        .collect();
                    format!(
                                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                                 <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                                 <Name>replicas</Name><Prefix>data/</Prefix><KeyCount>{}</KeyCount>\
                                 <MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{contents}\
                                 </ListBucketResult>",
                                f.len()
                            )
                }
            }
        });
        let s3 = axum::Router::new()
            .route("/replicas", listing.clone())
            .route("/replicas/", listing)
            .route(
                "/replicas/data/{name}",
                axum::routing::any(
                    move |method: Method,
                          headers: HeaderMap,
                          axum::extract::Path(name): axum::extract::Path<String>| {
                        let f = fixtures.clone();
                        let m = m.clone();
                        async move {
                            assert_eq!(method, Method::HEAD, "only HEADs: no object read");
                            m.lock().unwrap().push(
                                headers
                                    .get("x-amz-checksum-mode")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned(),
                            );
                            let Some(o) = f.iter().find(|o| o.name == name) else {
                                return (StatusCode::NOT_FOUND, HeaderMap::new());
                            };
                            let mut h = HeaderMap::new();
                            h.insert("content-length", o.body.len().into());
                            h.insert("x-amz-meta-goog-bucket", "src".parse().unwrap());
                            h.insert("x-amz-meta-goog-generation", "7".parse().unwrap());
                            if let Some(c) = &o.checksum {
                                h.insert("x-amz-checksum-crc32c", c.parse().unwrap());
                            }
                            if let Some(t) = o.checksum_type {
                                h.insert("x-amz-checksum-type", t.parse().unwrap());
                            }
                            (StatusCode::OK, h)
                        }
                    },
                ),
            );
        let mut urls = Vec::new();
        for app in [gcs, s3] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            urls.push(format!("http://{}", listener.local_addr().unwrap()));
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
        }
        let s3 = urls.pop().unwrap();
        (urls.pop().unwrap(), s3, modes)
    }

    #[tokio::test]
    async fn a_full_object_checksum_is_proof_and_a_composite_or_none_is_not() {
        let fx = |name, body: &'static [u8], checksum: Option<String>, t| Fixture {
            name,
            body,
            checksum,
            checksum_type: t,
        };
        let (gcs_url, s3_url, modes) = stand_ins(vec![
            // A multipart upload with a full-object checksum.
            fx("a", b"alpha", Some(crc(b"alpha")), Some("FULL_OBJECT")),
            // A multipart upload with part checksums only.
            fx("b", b"bravo", Some("AAAAAA==-2".into()), Some("COMPOSITE")),
            fx("c", b"charlie", Some("AAAAAA==-3".into()), None),
            // No checksum at all.
            fx("d", b"delta", None, None),
            // A full-object checksum of other bytes.
            fx("e", b"echo", Some(crc(b"ecHo")), Some("FULL_OBJECT")),
            // A PutObject's checksum where the type is not said.
            fx("f", b"foxtrot", Some(crc(b"foxtrot")), None),
        ])
        .await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .credentials_provider(aws_credential_types::Credentials::from_keys(
                    "AKIDTEST", "secret", None,
                ))
                .http_client(crate::aws::http_client())
                .endpoint_url(&s3_url)
                .force_path_style(true)
                .build(),
        );
        let st = Storage::new(
            s3,
            "replicas".into(),
            "data/".into(),
            crate::aws::CredentialsExpiry::default(),
        );
        let gcs = GcsClient::new(Some(&gcs_url));
        let mut out = Vec::new();
        let mut report = Report::new(&mut out, false);
        let a = args(&["gs://src"]).unwrap();
        let scope = verify(&st, &gcs, &a, 1000, &mut report).await.unwrap();
        let totals = report.finish(&scope).unwrap();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // Every HEAD asked for the checksum.
        assert_eq!(*modes.lock().unwrap(), vec!["ENABLED"; 6]);
        let diffs: Vec<(&str, &str, Option<&str>)> = lines[..lines.len() - 1]
            .iter()
            .map(|l| {
                (
                    l["kind"].as_str().unwrap(),
                    l["name"].as_str().unwrap(),
                    l["reason"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            diffs,
            vec![
                ("checksum", "b", Some("no_full_object_checksum")),
                ("checksum", "c", Some("no_full_object_checksum")),
                ("checksum", "d", Some("no_full_object_checksum")),
                ("checksum", "e", None),
            ]
        );
        assert_eq!(lines[1]["s3"], "AAAAAA==-3");
        assert_eq!(lines[1]["key"], "data/c");
        assert_eq!(lines[2]["s3"], Value::Null);
        assert_eq!(lines[3]["gcs"], crc(b"echo"));
        assert_eq!(lines[3]["s3"], crc(b"ecHo"));
        let t = &lines[4]["totals"];
        assert_eq!(t["in_sync"], json!({"count": 2, "bytes": 12}));
        assert_eq!(t["checksum"], json!({"count": 4, "bytes": 21}));
        assert_eq!(t["differences"], 4);
        assert_eq!(t["objects"], 6);
        assert_eq!(t["s3_prefix"], "data/");
        assert_eq!(totals.differences(), 4);
    }

    fn listed(name: &str, size: u64, generation: i64, crc32c: &str) -> ListedSource {
        ListedSource {
            name: name.into(),
            size: Some(size),
            generation: Some(generation),
            crc32c: Some(crc32c.into()),
            ..ListedSource::default()
        }
    }

    fn replica(bucket: &str, generation: &str, size: u64, crc32c: &str) -> ReplicaHead {
        ReplicaHead {
            size,
            metadata: [
                (BUCKET_META.to_owned(), bucket.to_owned()),
                (GENERATION_META.to_owned(), generation.to_owned()),
            ]
            .into(),
            crc32c: Some(crc32c.into()),
            checksum_type: Some(ChecksumType::FullObject),
        }
    }

    #[test]
    fn the_first_difference_is_reported() {
        let c = crc(b"abc");
        let o = listed("n", 3, 9, &c);
        let kind = |h: Option<ReplicaHead>| match compare("src", &o, "k".into(), h.as_ref()) {
            Outcome::Differs(d) => Some((d.kind, d.reason, d.gcs, d.s3)),
            _ => None,
        };
        assert_eq!(kind(Some(replica("src", "9", 3, &c))), None);
        assert_eq!(
            kind(None),
            Some((Kind::Missing, None, json!("9"), Value::Null))
        );
        assert_eq!(
            kind(Some(replica("other", "9", 3, &c))).unwrap().1,
            Some("replica_of_another_bucket")
        );
        let mut user = replica("src", "9", 3, &c);
        user.metadata.clear();
        assert_eq!(kind(Some(user)).unwrap().1, Some("not_a_replica"));
        // An older generation of another size is a generation difference.
        assert_eq!(
            kind(Some(replica("src", "8", 4, "AAAAAA=="))),
            Some((Kind::Generation, None, json!("9"), json!("8")))
        );
        assert_eq!(
            kind(Some(replica("src", "9", 4, "AAAAAA=="))),
            Some((Kind::Size, None, json!(3), json!(4)))
        );
        assert_eq!(
            kind(Some(replica("src", "9", 3, "AAAAAA=="))),
            Some((Kind::Checksum, None, json!(c), json!("AAAAAA==")))
        );
        let no_crc = ListedSource {
            crc32c: None,
            ..o.clone()
        };
        match compare(
            "src",
            &no_crc,
            "k".into(),
            Some(&replica("src", "9", 3, &c)),
        ) {
            Outcome::Differs(d) => assert_eq!(d.reason, Some("no_source_checksum")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_terminal_summary_counts_and_shows_the_first_differences() {
        let mut out = Vec::new();
        let mut report = Report::new(&mut out, true);
        let scope = Scope {
            bucket: "src".into(),
            prefix: "p/".into(),
            s3_bucket: "replicas".into(),
            s3_prefix: "data/p/".into(),
        };
        report.totals.pages = 1;
        report.totals.objects = Tally {
            count: 13,
            bytes: 13 * 2048,
        };
        report.record(&scope, Outcome::InSync(2048)).unwrap();
        for i in 0..12 {
            let o = listed(&format!("p/{i:02}"), 2048, 5, "AAAAAA==");
            report
                .record(
                    &scope,
                    Outcome::Differs(missing(&o, format!("data/p/{i:02}"), None)),
                )
                .unwrap();
        }
        let totals = report.finish(&scope).unwrap();
        assert_eq!(totals.missing.count, 12);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("verify gs://src/p/ against s3://replicas/data/p/\n"));
        assert!(
            text.contains("13 objects (26.0 KiB) in 1 listing pages"),
            "{text}"
        );
        assert!(
            text.contains("  in sync             1   2.0 KiB\n"),
            "{text}"
        );
        assert!(
            text.contains("  missing            12  24.0 KiB\n"),
            "{text}"
        );
        assert!(text.contains("Differences (the first 10 of 12):"), "{text}");
        assert!(
            text.contains("  missing     p/09  (gcs 5, s3 none)"),
            "{text}"
        );
        assert!(!text.contains("p/10"), "{text}");
        assert!(text.contains("12 differences (exit status 1)"), "{text}");
        // No JSON for people.
        assert!(!text.contains('{'), "{text}");
    }
}
