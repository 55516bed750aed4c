//! Sync: replicate what a Cloud Storage bucket already holds, and repair
//! what events missed, one page per command.
//!
//! A `{"op":"sync","bucket":B,"prefix":P?,"delete":false,"page_token":T?}`
//! command (or `POST /v1/sync`) handles one page: one Cloud Storage listing
//! call (at most 1,000 objects after the page's start) and one S3
//! `ListObjectsV2` call (at most 1,000 keys after the same start). The page
//! covers the names after its start up to the smaller last name of the two
//! listings that were cut short, or to the end when neither was: every name
//! falls in exactly one page, so an orphan between two pages or after the
//! last one is found exactly once. For the names of the page it publishes
//! - a `replicate` command for each object missing from S3, of another
//!   size, or whose replica is older than the object's `updated` time;
//! - with `delete`, a guarded `delete_replica` command for each replica
//!   whose object is not listed (it checks again that the object is gone
//!   before deleting);
//! - the sync command of the next page (its `page_token` is the last name of
//!   this page and the page count, base64url JSON),
//!
//! and answers once they are published: a redelivered page publishes the
//! same idempotent commands again. A bucket already in sync costs the two
//! listing calls per page and nothing else. One log line per page says what
//! it found.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::gcs::{GcsClient, GcsError, GcsObject};
use crate::replicate::{ReplicaOutcome, ReplicateError, Replicator};
use crate::retry::Backoff;
use crate::storage::{classify, list_prefix, StorageError};

/// Objects (and S3 keys) listed per page.
pub(crate) const PAGE_SIZE: usize = 1000;

/// A sync command (the JSON of `POST /v1/sync`, and of the Pub/Sub command
/// without its `op`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// Source bucket.
    pub(crate) bucket: String,
    /// Only names under this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) prefix: Option<String>,
    /// Also delete replicas whose object is gone.
    #[serde(default)]
    pub(crate) delete: bool,
    /// Where this page starts; absent for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) page_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PageToken {
    /// The last name of the previous page.
    after: String,
    /// Pages done before this one.
    page: u64,
}

fn encode_token(t: &PageToken) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(t).expect("a token serializes"))
}

fn decode_token(s: &str) -> Result<PageToken, ReplicateError> {
    URL_SAFE_NO_PAD
        .decode(s.trim())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(ReplicateError::InvalidPageToken)
}

/// An object of a Cloud Storage listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListedSource {
    /// Name.
    pub(crate) name: String,
    /// Size in bytes.
    #[serde(default, deserialize_with = "de_u64")]
    pub(crate) size: Option<u64>,
    /// Generation.
    #[serde(default, deserialize_with = "crate::util::de_i64_opt")]
    pub(crate) generation: Option<i64>,
    /// CRC32C, base64.
    #[serde(default)]
    pub(crate) crc32c: Option<String>,
    /// Last change of data or metadata, RFC 3339.
    #[serde(default)]
    pub(crate) updated: Option<String>,
}

fn de_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(crate::util::de_i64_opt(d)?.and_then(|v| u64::try_from(v).ok()))
}

#[derive(Debug, Deserialize)]
struct ListAnswer {
    #[serde(default)]
    items: Vec<ListedSource>,
    #[serde(default, rename = "nextPageToken")]
    next_page_token: Option<String>,
}

impl GcsClient {
    /// Up to `max` objects named after `after` (all when `None`) under
    /// `prefix`, in name order, and whether more follow.
    pub(crate) async fn list_after(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<ListedSource>, bool), GcsError> {
        let url = format!(
            "{}/storage/v1/b/{}/o",
            self.base,
            percent_encoding::utf8_percent_encode(bucket, percent_encoding::NON_ALPHANUMERIC)
        );
        let mut query: Vec<(&str, String)> = vec![
            ("maxResults", max.to_string()),
            ("projection", "noAcl".into()),
        ];
        if !prefix.is_empty() {
            query.push(("prefix", prefix.to_owned()));
        }
        // startOffset is inclusive: the smallest name after `after` is
        // `after` followed by NUL.
        if let Some(a) = after {
            query.push(("startOffset", format!("{a}\u{0}")));
        }
        let answer: ListAnswer = Backoff::default()
            .retry(|| async {
                let resp = self.send(self.http.get(&url).query(&query)).await?;
                resp.json::<ListAnswer>()
                    .await
                    .map_err(|e| GcsError::Failed {
                        message: format!("unreadable listing: {e}"),
                        transient: true,
                    })
            })
            .await?;
        let mut items: Vec<ListedSource> = answer
            .items
            .into_iter()
            .filter(|o| after.is_none_or(|a| o.name.as_str() > a))
            .collect();
        items.sort_by(|a, b| a.name.cmp(&b.name));
        let more = answer.next_page_token.is_some_and(|t| !t.is_empty());
        Ok((items, more))
    }
}

/// What one page found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PagePlan {
    /// This page's number, 1-based.
    pub(crate) page: u64,
    /// Objects listed in the page's range.
    pub(crate) listed: u64,
    /// Objects whose replica is up to date.
    pub(crate) in_sync: u64,
    /// Objects to replicate.
    pub(crate) replicate: Vec<ListedSource>,
    /// Relative keys of replicas whose object is gone (with `delete`).
    pub(crate) delete: Vec<String>,
    /// Names that cannot be S3 keys here (logged, skipped).
    pub(crate) skipped: Vec<String>,
    /// The next page's command, if any.
    pub(crate) next: Option<SyncRequest>,
}

impl PagePlan {
    /// Bytes of the objects to replicate.
    pub(crate) fn replicate_bytes(&self) -> u64 {
        self.replicate.iter().filter_map(|o| o.size).sum()
    }
}

fn rfc3339_secs(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Lists one page of the source and of S3 and decides what to publish.
pub(crate) async fn plan_page(
    r: &Replicator,
    req: &SyncRequest,
) -> Result<PagePlan, ReplicateError> {
    let fanout = r.fanout().ok_or(ReplicateError::NotConfigured("sync"))?;
    fanout
        .config
        .replication
        .source_buckets
        .check(&req.bucket)?;
    let prefix = req.prefix.clone().unwrap_or_default();
    let st = r.storage();
    // The S3 side of the prefix, confined to S3_PREFIX (400 for a bad one).
    let s3_prefix = list_prefix(st.prefix(), &prefix).map_err(StorageError::from)?;
    let token = match &req.page_token {
        Some(t) if !t.is_empty() => Some(decode_token(t)?),
        _ => None,
    };
    let after = token.as_ref().map(|t| t.after.as_str());
    let page = token.as_ref().map_or(0, |t| t.page) + 1;

    let gcs = r.gcs().list_after(&req.bucket, &prefix, after, PAGE_SIZE);
    let s3 = st
        .client()
        .list_objects_v2()
        .bucket(st.bucket())
        .prefix(&s3_prefix)
        .set_start_after(after.map(|a| format!("{}{a}", st.prefix())))
        .max_keys(i32::try_from(PAGE_SIZE).unwrap_or(1000))
        .send();
    let (gcs, s3) = tokio::join!(gcs, s3);
    let (objects, gcs_more) = gcs?;
    let s3 = s3.map_err(|e| classify("ListObjectsV2", &prefix, e))?;
    let s3_more = s3.is_truncated() == Some(true);
    // Relative name, size, last modified (whole seconds: S3 listings have
    // no finer precision, so `updated` is compared in whole seconds too).
    let replicas: Vec<(String, i64, Option<i64>)> = s3
        .contents()
        .iter()
        .filter_map(|o| {
            let rel = o.key()?.strip_prefix(st.prefix())?.to_owned();
            let modified = o.last_modified().map(|t| t.secs());
            Some((rel, o.size().unwrap_or(-1), modified))
        })
        .collect();

    // The page ends at the smaller last name of the listings cut short.
    let mut end: Option<String> = None;
    if gcs_more {
        end = objects.last().map(|o| o.name.clone());
    }
    if s3_more {
        if let Some((last, _, _)) = replicas.last() {
            if end.as_ref().is_none_or(|e| last < e) {
                end = Some(last.clone());
            }
        }
    }
    let in_page = |name: &str| end.as_deref().is_none_or(|e| name <= e);

    let by_name: HashMap<&str, (i64, Option<i64>)> = replicas
        .iter()
        .map(|(n, s, m)| (n.as_str(), (*s, *m)))
        .collect();
    let mut plan = PagePlan {
        page,
        ..PagePlan::default()
    };
    let mut names = std::collections::HashSet::new();
    for o in objects.into_iter().filter(|o| in_page(&o.name)) {
        plan.listed += 1;
        names.insert(o.name.clone());
        if st.key(&o.name).is_err() {
            plan.skipped.push(o.name);
            continue;
        }
        let stale = match by_name.get(o.name.as_str()) {
            None => true,
            Some((size, modified)) => {
                let size_differs = o.size.map(|s| s as i64) != Some(*size);
                let older = match (o.updated.as_deref().and_then(rfc3339_secs), modified) {
                    (Some(updated), Some(m)) => *m < updated,
                    _ => false,
                };
                size_differs || older
            }
        };
        if stale {
            plan.replicate.push(o);
        } else {
            plan.in_sync += 1;
        }
    }
    if req.delete {
        plan.delete = replicas
            .iter()
            .filter(|(n, _, _)| in_page(n) && !names.contains(n))
            .map(|(n, _, _)| n.clone())
            .collect();
    }
    plan.next = end.map(|after| SyncRequest {
        page_token: Some(encode_token(&PageToken { after, page })),
        ..req.clone()
    });
    Ok(plan)
}

/// The commands a page publishes: replicates, deletes, then the next page.
pub(crate) fn page_commands(req: &SyncRequest, plan: &PagePlan) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = plan
        .replicate
        .iter()
        .map(|o| {
            let mut c = serde_json::json!({
                "op": "replicate", "bucket": req.bucket, "name": o.name,
            });
            if let Some(g) = o.generation {
                c["generation"] = serde_json::json!(g.to_string());
            }
            if let Some(crc) = &o.crc32c {
                c["crc32c"] = serde_json::json!(crc);
            }
            c
        })
        .collect();
    out.extend(plan.delete.iter().map(
        |name| serde_json::json!({ "op": "delete_replica", "bucket": req.bucket, "name": name }),
    ));
    if let Some(next) = &plan.next {
        let mut c = serde_json::to_value(next).expect("a sync request serializes");
        c["op"] = serde_json::json!("sync");
        out.push(c);
    }
    out
}

/// What a page published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncOutcome {
    /// Commands published.
    pub(crate) published: u64,
    /// Page number.
    pub(crate) page: u64,
    /// Replicate commands.
    pub(crate) replicate: u64,
    /// Their bytes.
    pub(crate) replicate_bytes: u64,
    /// Delete commands.
    pub(crate) delete: u64,
    /// Objects already in sync.
    pub(crate) in_sync: u64,
    /// Whether a next page was published.
    pub(crate) next_page: bool,
}

impl SyncOutcome {
    /// JSON summary for the answer.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "published": self.published, "page": self.page, "replicate": self.replicate,
            "replicate_bytes": self.replicate_bytes, "delete": self.delete,
            "in_sync": self.in_sync, "next_page": self.next_page,
        })
    }
}

/// Runs one page: lists, publishes, then answers.
pub(crate) async fn run_page(
    r: &Replicator,
    req: &SyncRequest,
) -> Result<SyncOutcome, ReplicateError> {
    let plan = plan_page(r, req).await?;
    let commands = page_commands(req, &plan);
    let published = if commands.is_empty() {
        0
    } else {
        let fanout = r.fanout().ok_or(ReplicateError::NotConfigured("sync"))?;
        fanout.publisher()?.publish(&commands).await?
    };
    for name in &plan.skipped {
        tracing::warn!(bucket = %req.bucket, name = %name, "object name cannot be an S3 key here; skipped");
    }
    let out = SyncOutcome {
        published: published as u64,
        page: plan.page,
        replicate: plan.replicate.len() as u64,
        replicate_bytes: plan.replicate_bytes(),
        delete: plan.delete.len() as u64,
        in_sync: plan.in_sync,
        next_page: plan.next.is_some(),
    };
    tracing::info!(
        bucket = %req.bucket,
        prefix = req.prefix.as_deref().unwrap_or(""),
        delete = req.delete,
        page = out.page,
        pages_so_far = out.page,
        // A listing tells nothing of what follows it.
        pages_left = if out.next_page { "unknown" } else { "0" },
        listed = plan.listed,
        in_sync = out.in_sync,
        replicate = out.replicate,
        replicate_bytes = out.replicate_bytes,
        delete_replicas = out.delete,
        skipped = plan.skipped.len(),
        next_page = out.next_page,
        published = out.published,
        "sync page"
    );
    Ok(out)
}

/// A `delete_replica` command: removes the replica of `gs://bucket/name`
/// only when Cloud Storage says the object is gone (see
/// [`Replicator::remove_orphan`]).
pub(crate) async fn delete_orphan(
    r: &Replicator,
    obj: &GcsObject,
) -> Result<ReplicaOutcome, ReplicateError> {
    r.remove_orphan(obj).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AppError;

    #[test]
    fn page_tokens_round_trip_and_bad_ones_are_refused() {
        let t = PageToken {
            after: "a/b c/ü".into(),
            page: 3,
        };
        assert_eq!(decode_token(&encode_token(&t)).unwrap(), t);
        assert_eq!(
            AppError::from(decode_token("***").unwrap_err()).code(),
            "invalid_page_token"
        );
        assert_eq!(
            AppError::from(decode_token(&URL_SAFE_NO_PAD.encode("{}")).unwrap_err()).code(),
            "invalid_page_token"
        );
    }

    #[test]
    fn commands_of_a_page() {
        let req = SyncRequest {
            bucket: "src".into(),
            prefix: Some("p/".into()),
            delete: true,
            page_token: None,
        };
        let plan = PagePlan {
            page: 1,
            replicate: vec![ListedSource {
                name: "p/a".into(),
                size: Some(3),
                generation: Some(7),
                crc32c: Some("AAAAAA==".into()),
                updated: None,
            }],
            delete: vec!["p/gone".into()],
            next: Some(SyncRequest {
                page_token: Some("t".into()),
                ..req.clone()
            }),
            ..PagePlan::default()
        };
        let c = page_commands(&req, &plan);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0]["op"], "replicate");
        assert_eq!(c[0]["generation"], "7");
        assert_eq!(
            c[1],
            serde_json::json!({"op":"delete_replica","bucket":"src","name":"p/gone"})
        );
        assert_eq!(c[2]["op"], "sync");
        assert_eq!(c[2]["page_token"], "t");
        assert_eq!(c[2]["delete"], true);
        for cmd in &c {
            crate::command::parse_command(cmd.to_string().as_bytes()).unwrap();
        }
    }
}
