//! The replication rules through [`Replicator`] with in-process stand-ins:
//! S3 is the test kit's [`S3Fake`], Cloud Storage an axum fake of the JSON
//! API (object resources and `alt=media` downloads of one generation).
//! What a replica is, which generation wins, what a delete removes, and
//! how a metadata update is ordered.

use super::*;

use std::sync::Mutex;

use bridge_testkit::S3Fake;

use crate::aws::s3::crc32c_base64;
use crate::aws::s3::tests::{storage_at, BUCKET, PREFIX};

const SOURCE: &str = "src-bucket";

/// One live object of the Cloud Storage fake.
#[derive(Clone)]
struct Live {
    generation: i64,
    metageneration: i64,
    body: &'static str,
    metadata: serde_json::Value,
}

/// Cloud Storage's JSON API for the objects of [`SOURCE`] in `objects`
/// (by name), counting requests.
struct Gcs {
    host: String,
    objects: Arc<Mutex<HashMap<String, Live>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Gcs {
    async fn start() -> Gcs {
        let objects: Arc<Mutex<HashMap<String, Live>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (o, r) = (objects.clone(), requests.clone());
        let app =
            axum::Router::new().route(
                "/storage/v1/b/{bucket}/o/{name}",
                axum::routing::get(
                    move |axum::extract::Path((bucket, name)): axum::extract::Path<(
                        String,
                        String,
                    )>,
                          axum::extract::Query(q): axum::extract::Query<
                        HashMap<String, String>,
                    >| {
                        let (o, r) = (o.clone(), r.clone());
                        async move {
                            use axum::response::IntoResponse;
                            r.lock().unwrap().push(format!("{bucket}/{name} {q:?}"));
                            let live = o.lock().unwrap().get(&name).cloned();
                            let Some(live) = live.filter(|_| bucket == SOURCE) else {
                                return axum::http::StatusCode::NOT_FOUND.into_response();
                            };
                            let crc = crc32c_base64(crc32c::crc32c(live.body.as_bytes()));
                            if q.get("alt").map(String::as_str) == Some("media") {
                                if q.get("ifGenerationMatch") != Some(&live.generation.to_string())
                                {
                                    return axum::http::StatusCode::PRECONDITION_FAILED
                                        .into_response();
                                }
                                return (
                                    [("x-goog-hash", format!("crc32c={crc}"))],
                                    live.body.to_owned(),
                                )
                                    .into_response();
                            }
                            axum::Json(serde_json::json!({
                                "bucket": bucket,
                                "name": name,
                                "generation": live.generation.to_string(),
                                "metageneration": live.metageneration.to_string(),
                                "size": live.body.len().to_string(),
                                "crc32c": crc,
                                "contentType": "text/plain",
                                "metadata": live.metadata,
                            }))
                            .into_response()
                        }
                    },
                ),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Gcs {
            host,
            objects,
            requests,
        }
    }

    fn put(&self, name: &str, generation: i64, metageneration: i64, body: &'static str) {
        self.objects.lock().unwrap().insert(
            name.to_owned(),
            Live {
                generation,
                metageneration,
                body,
                metadata: serde_json::json!({ "team": "blue" }),
            },
        );
    }

    fn remove(&self, name: &str) {
        self.objects.lock().unwrap().remove(name);
    }

    fn requests(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

struct World {
    s3: S3Fake,
    gcs: Gcs,
    replicator: Replicator,
}

async fn world() -> World {
    let s3 = S3Fake::start().await;
    let gcs = Gcs::start().await;
    let replicator = Replicator::new(storage_at(&s3), GcsClient::new(Some(&gcs.host)))
        .with_source_buckets(SourceBuckets::parse(Some(SOURCE)).unwrap());
    World {
        s3,
        gcs,
        replicator,
    }
}

fn event(name: &str, generation: Option<i64>) -> GcsObject {
    GcsObject {
        bucket: SOURCE.into(),
        name: name.into(),
        generation,
        ..GcsObject::default()
    }
}

impl World {
    /// A replica (or, without `generation`, a user's object) at `name`.
    fn replica(&self, name: &str, bucket: &str, generation: Option<i64>, body: &str) {
        let g = generation.map(|g| g.to_string());
        let mut metadata = vec![(BUCKET_META, bucket), (METAGENERATION_META, "1")];
        if let Some(g) = &g {
            metadata.push((GENERATION_META, g.as_str()));
        }
        self.s3.insert(
            BUCKET,
            &format!("{PREFIX}{name}"),
            body.as_bytes(),
            &metadata,
        );
    }

    /// Replicates generation `generation` of `name` (the live one when `None`).
    async fn replicate(&self, name: &str, generation: Option<i64>) -> ReplicaOutcome {
        self.replicator
            .replicate(&event(name, generation), 0)
            .await
            .unwrap()
    }

    /// The delete (or archive) of generation `generation` of `name`.
    async fn delete(&self, name: &str, generation: i64) -> ReplicaOutcome {
        self.replicator
            .delete_replica(&event(name, Some(generation)))
            .await
            .unwrap()
    }

    fn stored(&self, name: &str) -> Option<bridge_testkit::FakeObject> {
        self.s3.object(BUCKET, &format!("{PREFIX}{name}"))
    }
}

#[tokio::test]
async fn a_finalize_writes_a_replica_marked_with_bucket_and_generation() {
    let w = world().await;
    w.gcs.put("a.txt", 5, 1, "hello");
    let out = w.replicate("a.txt", Some(5)).await;
    assert_eq!(
        out,
        ReplicaOutcome::Replicated {
            key: "a.txt".into(),
            generation: 5,
            size: 5
        }
    );
    let o = w.stored("a.txt").unwrap();
    assert_eq!(o.body, b"hello");
    assert_eq!(o.content_type.as_deref(), Some("text/plain"));
    assert_eq!(o.metadata[GENERATION_META], "5");
    assert_eq!(o.metadata[BUCKET_META], SOURCE);
    assert_eq!(o.metadata[METAGENERATION_META], "1");
    assert_eq!(o.metadata["team"], "blue");
    // A redelivery is recognised from the replica alone.
    let asked = w.gcs.requests();
    let again = w.replicate("a.txt", Some(5)).await;
    assert!(matches!(
        again,
        ReplicaOutcome::UpToDate {
            replica_generation: 5,
            ..
        }
    ));
    assert_eq!(w.gcs.requests(), asked, "Cloud Storage is not asked again");
}

#[tokio::test]
async fn an_older_generation_never_replaces_a_newer_replica() {
    let w = world().await;
    w.replica("a.txt", SOURCE, Some(9), "newer");
    w.gcs.put("a.txt", 9, 1, "newer");
    let out = w.replicate("a.txt", Some(5)).await;
    assert_eq!(
        out,
        ReplicaOutcome::UpToDate {
            key: "a.txt".into(),
            replica_generation: 9,
            generation: 5
        }
    );
    assert_eq!(w.stored("a.txt").unwrap().body, b"newer");
    assert_eq!(w.gcs.requests(), 0);
}

#[tokio::test]
async fn generations_are_compared_within_one_source_bucket() {
    let w = world().await;
    w.replica("a.txt", "other-bucket", Some(9), "from elsewhere");
    w.gcs.put("a.txt", 5, 1, "hello");
    let out = w.replicate("a.txt", Some(5)).await;
    assert!(
        matches!(out, ReplicaOutcome::Replicated { generation: 5, .. }),
        "{out:?}"
    );
    assert_eq!(w.stored("a.txt").unwrap().metadata[BUCKET_META], SOURCE);
}

#[tokio::test]
async fn the_live_generation_decides_what_is_copied() {
    let w = world().await;
    // The event's generation is gone: a newer one has its own event.
    w.gcs.put("a.txt", 7, 1, "seven");
    let out = w.replicate("a.txt", Some(5)).await;
    assert_gone(&out, 5);
    assert!(w.stored("a.txt").is_none());
    // A generation newer than the live one is none Cloud Storage will
    // show (its reads are strongly consistent): gone as well.
    let out = w.replicate("a.txt", Some(8)).await;
    assert_gone(&out, 8);
    assert!(w.stored("a.txt").is_none());
    // No generation named: the live one.
    let out = w.replicate("a.txt", None).await;
    assert!(
        matches!(out, ReplicaOutcome::Replicated { generation: 7, .. }),
        "{out:?}"
    );
    // The object is gone altogether.
    w.gcs.remove("a.txt");
    let out = w.replicate("b.txt", Some(1)).await;
    assert!(matches!(out, ReplicaOutcome::SourceGone { .. }), "{out:?}");
}

#[tokio::test]
async fn buckets_and_keys_outside_the_rules_are_refused() {
    let w = world().await;
    let mut other = event("a.txt", Some(1));
    other.bucket = "not-allowed".into();
    let e = w.replicator.replicate(&other, 0).await.unwrap_err();
    assert!(matches!(e, ReplicateError::SourceBucket(_)), "{e:?}");
    let e = w.replicator.delete_replica(&other).await.unwrap_err();
    assert!(matches!(e, ReplicateError::SourceBucket(_)), "{e:?}");
    let e = w
        .replicator
        .replicate(&event(".gcp-aws-bridge/x", Some(1)), 0)
        .await
        .unwrap_err();
    assert!(!matches!(e, ReplicateError::SourceBucket(_)), "{e:?}");
    assert_eq!(w.gcs.requests(), 0);
    assert!(w.s3.keys(BUCKET).is_empty());
}

#[tokio::test]
async fn a_delete_removes_only_a_replica_of_that_generation_or_older() {
    let w = world().await;
    // Gone from Cloud Storage: removed.
    w.replica("gone.txt", SOURCE, Some(5), "x");
    let out = w.delete("gone.txt", 5).await;
    assert_eq!(
        out,
        ReplicaOutcome::ReplicaDeleted {
            key: "gone.txt".into()
        }
    );
    assert!(w.stored("gone.txt").is_none());
    // A newer replica stays.
    w.replica("newer.txt", SOURCE, Some(9), "x");
    let out = w.delete("newer.txt", 5).await;
    assert!(matches!(out, ReplicaOutcome::ReplicaKept { .. }), "{out:?}");
    assert!(w.stored("newer.txt").is_some());
    // Its generation is still live: no delete happened.
    w.replica("live.txt", SOURCE, Some(5), "x");
    w.gcs.put("live.txt", 5, 1, "x");
    let out = w.delete("live.txt", 5).await;
    assert!(matches!(out, ReplicaOutcome::ReplicaKept { .. }), "{out:?}");
    assert!(w.stored("live.txt").is_some());
}

#[tokio::test]
async fn a_delete_leaves_what_replication_does_not_own() {
    let w = world().await;
    w.replica("user.txt", SOURCE, None, "mine");
    let out = w.delete("user.txt", 5).await;
    assert_eq!(
        out,
        ReplicaOutcome::NotAReplica {
            key: "user.txt".into()
        }
    );
    w.replica("elsewhere.txt", "other-bucket", Some(5), "theirs");
    let out = w.delete("elsewhere.txt", 5).await;
    assert!(matches!(out, ReplicaOutcome::ReplicaKept { .. }), "{out:?}");
    let out = w.delete("absent.txt", 5).await;
    assert_eq!(
        out,
        ReplicaOutcome::NoReplica {
            key: "absent.txt".into(),
            reason: "no replica",
        }
    );
    assert_eq!(w.s3.keys(BUCKET).len(), 2);
}

#[tokio::test]
async fn an_orphan_is_removed_only_when_its_object_is_gone() {
    let w = world().await;
    w.replica("a.txt", SOURCE, Some(5), "x");
    w.gcs.put("a.txt", 6, 1, "y");
    let out = w
        .replicator
        .remove_orphan(&event("a.txt", None))
        .await
        .unwrap();
    assert!(matches!(out, ReplicaOutcome::ReplicaKept { .. }), "{out:?}");
    w.gcs.remove("a.txt");
    let out = w
        .replicator
        .remove_orphan(&event("a.txt", None))
        .await
        .unwrap();
    assert_eq!(
        out,
        ReplicaOutcome::ReplicaDeleted {
            key: "a.txt".into()
        }
    );
    assert!(w.stored("a.txt").is_none());
}

#[tokio::test]
async fn a_metadata_update_applies_only_a_newer_metageneration_of_the_same_generation() {
    let w = world().await;
    w.gcs.put("a.txt", 5, 1, "hello");
    w.replicate("a.txt", Some(5)).await;
    let update = |generation: i64, metageneration: i64, team: &str| GcsObject {
        metageneration: Some(metageneration),
        content_type: Some("text/csv".into()),
        metadata: crate::json_bounds::CustomMetadata::of(&[("team", team)]),
        ..event("a.txt", Some(generation))
    };
    let out = w
        .replicator
        .update_metadata(&update(5, 3, "red"))
        .await
        .unwrap();
    assert_eq!(
        out,
        ReplicaOutcome::MetadataUpdated {
            key: "a.txt".into(),
            generation: 5,
            metageneration: 3
        }
    );
    let o = w.stored("a.txt").unwrap();
    assert_eq!(
        (
            o.metadata["team"].as_str(),
            o.metadata[METAGENERATION_META].as_str()
        ),
        ("red", "3")
    );
    assert_eq!(o.content_type.as_deref(), Some("text/csv"));
    assert_eq!(o.body, b"hello", "the bytes are kept");
    // An older metageneration arriving late changes nothing.
    let out = w
        .replicator
        .update_metadata(&update(5, 2, "green"))
        .await
        .unwrap();
    assert!(matches!(out, ReplicaOutcome::UpToDate { .. }), "{out:?}");
    // Nor does an update of an older generation.
    let out = w
        .replicator
        .update_metadata(&update(4, 9, "green"))
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            ReplicaOutcome::UpToDate {
                replica_generation: 5,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(w.stored("a.txt").unwrap().metadata["team"], "red");
}

#[tokio::test]
async fn a_metadata_update_without_a_replica_replicates() {
    let w = world().await;
    w.gcs.put("a.txt", 5, 2, "hello");
    let update = GcsObject {
        metageneration: Some(2),
        ..event("a.txt", Some(5))
    };
    let out = w.replicator.update_metadata(&update).await.unwrap();
    assert!(
        matches!(out, ReplicaOutcome::Replicated { generation: 5, .. }),
        "{out:?}"
    );
    assert_eq!(w.stored("a.txt").unwrap().body, b"hello");
}

#[tokio::test]
async fn an_object_over_max_object_bytes_is_refused_before_it_is_read() {
    let w = world().await;
    let replicator = limited(&w, 4, 1 << 20, 1 << 30);
    w.gcs.put("big.txt", 7, 1, "five!");
    // A command naming the object (its size read from Cloud Storage), and
    // an event carrying the whole resource (no read at all).
    for obj in [event("big.txt", None), resource("big.txt", b"five!")] {
        let e = replicator.replicate(&obj, 0).await.unwrap_err();
        assert!(
            matches!(
                e,
                ReplicateError::PartsRefused {
                    refusal: PartsRefusal::ObjectTooLarge,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("over MAX_OBJECT_BYTES (4)"), "{e}");
    }
    assert!(w.s3.keys(BUCKET).is_empty());
    assert_eq!(
        w.gcs.requests(),
        1,
        "one metadata read, for the named object"
    );
}

/// A replicator over `w`'s stand-ins with `MAX_OBJECT_BYTES`, the buffer
/// budget and `PART_TASK_BYTES` given.
fn limited(w: &World, max_object: u64, budget: u64, part_task_bytes: u64) -> Replicator {
    let budget = crate::budget::BufferBudget::new(budget, std::time::Duration::from_secs(1));
    Replicator::new(
        storage_at(&w.s3).with_limits(budget, max_object),
        GcsClient::new(Some(&w.gcs.host)),
    )
    .with_source_buckets(SourceBuckets::parse(Some(SOURCE)).unwrap())
    .with_fanout(crate::google::publisher::Fanout {
        part_task_bytes,
        ..Default::default()
    })
}

/// The whole resource of generation 7 of `name` holding `body`, as an
/// event carries it.
fn resource(name: &str, body: &[u8]) -> GcsObject {
    GcsObject {
        size: Some(body.len() as u64),
        metageneration: Some(1),
        crc32c: Some(crc32c_base64(crc32c::crc32c(body))),
        updated: Some("2026-01-01T00:00:00Z".into()),
        ..event(name, Some(7))
    }
}

#[tokio::test]
async fn the_size_check_comes_after_the_bucket_and_replica_checks() {
    let w = world().await;
    let r = limited(&w, 4, 1 << 20, 1 << 30);
    // A bucket not allowed answers as such, whatever the size.
    let mut other = resource("big.txt", b"five!");
    other.bucket = "not-allowed".into();
    let e = r.replicate(&other, 0).await.unwrap_err();
    assert!(matches!(e, ReplicateError::SourceBucket(_)), "{e:?}");
    // A replica already written answers up to date, whatever the size.
    w.replica("big.txt", SOURCE, Some(7), "five!");
    let out = r
        .replicate(&resource("big.txt", b"five!"), 0)
        .await
        .unwrap();
    assert!(matches!(out, ReplicaOutcome::UpToDate { .. }), "{out:?}");
    assert_eq!(w.gcs.requests(), 0);
}

#[tokio::test]
async fn an_object_smaller_than_a_part_fits_a_budget_smaller_than_a_part() {
    let w = world().await;
    // Parts are at least 8 MiB; the object, and so its one part, is 5 bytes.
    let r = limited(&w, 1 << 40, 4 << 20, 1);
    w.gcs.put("tiny.txt", 7, 1, "five!");
    let e = r.replicate(&event("tiny.txt", None), 0).await.unwrap_err();
    // Not refused as too large a part: it goes on to publish its part
    // task, and this replicator has no tasks topic.
    assert!(
        !matches!(e, ReplicateError::PartsRefused { .. }),
        "{e:?}: {e}"
    );
    assert!(e.to_string().contains("TASKS_TOPIC"), "{e}");
}

#[tokio::test]
async fn an_event_of_a_generation_that_is_not_live_is_gone() {
    let w = world().await;
    w.gcs.put("a.txt", 7, 1, "hello");
    // The pinned read of generation 8 is refused; 7 is live: gone.
    let out = w
        .replicator
        .replicate(
            &GcsObject {
                generation: Some(8),
                ..resource("a.txt", b"hello8")
            },
            0,
        )
        .await
        .unwrap();
    assert_gone(&out, 8);
    // A metadata update of generation 6 while 7 is live: gone too.
    let update = GcsObject {
        metageneration: None,
        ..event("a.txt", Some(6))
    };
    let out = w.replicator.update_metadata(&update).await.unwrap();
    assert_gone(&out, 6);
    assert!(w.stored("a.txt").is_none());
}

#[tokio::test]
async fn a_sync_page_copies_inline_nothing_over_max_object_bytes() {
    let w = world().await;
    let inline = crate::google::publisher::Fanout::default().inline_bytes;
    let limit = |max| limited(&w, max, 1 << 20, 1 << 30).inline_limit();
    assert_eq!(limit(4), 5, "a 5-byte object goes to a task");
    assert_eq!(limit(1 << 40), inline);
}

/// `out` says generation `generation` is gone from Cloud Storage.
fn assert_gone(out: &ReplicaOutcome, generation: i64) {
    assert!(
        matches!(out, ReplicaOutcome::SourceGone { generation: Some(g), .. } if *g == generation),
        "{out:?}"
    );
}
