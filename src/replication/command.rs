//! Running what the doors decoded ([`crate::wire`]): [`execute`] for the
//! commands of the outside doors, [`execute_task`] for the service's own
//! tasks, each handed to storage, replication or sync.

use crate::aws::s3::StorageError;
use crate::aws::s3::{
    validate_content_type, validate_metadata, ObjectHeaders, PutOptions, PutResult, Storage,
};
use crate::google::gcs::GcsObject;
use crate::replication::replicate::parts;
use crate::replication::replicate::{ReplicaOutcome, ReplicateError, Replicator};
use crate::source_buckets::BucketRefusal;
use crate::wire::{Delivery, GcsChange, OutsideCommand, Task, WireError};

/// What a command or task did; its answer is `{"status":…}` with the
/// outcome's fields.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// An object was written.
    Written(PutResult),
    /// An object was deleted (or was already gone).
    Deleted {
        /// Relative key.
        key: String,
    },
    /// Replication result.
    #[serde(untagged)]
    Replica(ReplicaOutcome),
    /// A sync page published its tasks.
    #[serde(untagged)]
    Sync(crate::replication::sync::SyncOutcome),
}

impl Outcome {
    /// The `result` of `bridge.replication.objects` for a replication's
    /// outcome, when it has one: a part task's counts when the upload
    /// completes, and an outcome that changed nothing of the replica for
    /// reasons of its own (the source generation gone) is not counted.
    pub(crate) fn replication_result(&self) -> Option<&'static str> {
        let Outcome::Replica(r) = self else {
            return None;
        };
        match r {
            ReplicaOutcome::Replicated { .. } | ReplicaOutcome::MetadataUpdated { .. } => {
                Some("replicated")
            }
            ReplicaOutcome::UpToDate { .. } | ReplicaOutcome::ReplicaKept { .. } => {
                Some("up_to_date")
            }
            ReplicaOutcome::ReplicaDeleted { .. } | ReplicaOutcome::NoReplica { .. } => {
                Some("deleted")
            }
            ReplicaOutcome::NotAReplica { .. } => Some("not_a_replica"),
            ReplicaOutcome::SourceGone { .. } | ReplicaOutcome::Parts(_) => None,
        }
    }

    /// A JSON summary for the trigger's answer.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an outcome serializes")
    }
}

/// Why a command or task did not decode, may not run here, or failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It did not decode, or this door does not take it.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// S3 failed, or the key, metadata or content type is refused.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Replication, sync or a part task failed.
    #[error(transparent)]
    Replicate(#[from] ReplicateError),
    /// The bucket may not be read (`GCS_SOURCE_BUCKETS`).
    #[error(transparent)]
    SourceBucket(#[from] BucketRefusal),
}

/// Runs a command of an outside door.
pub(crate) async fn execute(
    storage: &Storage,
    replicator: &Replicator,
    cmd: OutsideCommand,
    delivery: &Delivery,
) -> Result<Outcome, CommandError> {
    match cmd {
        OutsideCommand::Put {
            key,
            body,
            content_type,
            metadata,
        } => {
            let key = storage.key(&key)?;
            let opts = PutOptions {
                headers: ObjectHeaders {
                    content_type: validate_content_type(content_type)?,
                    metadata: validate_metadata(&metadata)?,
                    ..ObjectHeaders::default()
                },
                ..PutOptions::default()
            };
            Ok(Outcome::Written(storage.put_bytes(&key, body, opts).await?))
        }
        OutsideCommand::Delete { key } => {
            let key = storage.key(&key)?;
            storage.delete(&key).await?;
            Ok(Outcome::Deleted {
                key: key.relative().to_owned(),
            })
        }
        OutsideCommand::Copy { source_key, key } => {
            let source = storage.key(&source_key)?;
            let dest = storage.key(&key)?;
            Ok(Outcome::Written(storage.copy(&source, &dest).await?))
        }
        OutsideCommand::Replicate(obj) => {
            object_operation(&obj);
            Ok(Outcome::Replica(opens(
                replicator.replicate(&obj, 0).await?,
            )))
        }
        OutsideCommand::Sync(cmd) => Ok(Outcome::Sync(
            crate::replication::sync::start(replicator, &cmd, delivery).await?,
        )),
        OutsideCommand::Change(change, obj) => Ok(match change {
            GcsChange::Finalized => {
                object_operation(&obj);
                Outcome::Replica(opens(replicator.replicate(&obj, 0).await?))
            }
            GcsChange::Deleted | GcsChange::Archived => {
                object_operation(&obj);
                Outcome::Replica(replicator.delete_replica(&obj).await?)
            }
            GcsChange::MetadataUpdated => {
                object_operation(&obj);
                Outcome::Replica(replicator.update_metadata(&obj).await?)
            }
        }),
    }
}

/// Runs a task of `POST /tasks`.
pub(crate) async fn execute_task(
    replicator: &Replicator,
    task: Task,
    delivery: &Delivery,
) -> Result<Outcome, CommandError> {
    match task {
        Task::Sync(page) => Ok(Outcome::Sync(
            crate::replication::sync::run_page(replicator, &page, delivery).await?,
        )),
        Task::Replicate(t) => {
            let obj = GcsObject {
                bucket: t.bucket,
                name: t.name,
                generation: t.generation,
                crc32c: t.crc32c,
                ..GcsObject::default()
            };
            object_operation(&obj);
            Ok(Outcome::Replica(opens(
                replicator.replicate(&obj, t.restarts).await?,
            )))
        }
        Task::ReplicatePart(task) => {
            crate::telemetry::operation(
                &format!(
                    "replicate/{}/{}#{}",
                    task.bucket, task.name, task.generation
                ),
                false,
            );
            replicator.sources().check(&task.bucket)?;
            Ok(Outcome::Replica(opens(
                parts::run_part(replicator, &task).await?,
            )))
        }
        Task::DeleteReplica(t) => {
            let obj = GcsObject {
                bucket: t.bucket,
                name: t.name,
                ..GcsObject::default()
            };
            object_operation(&obj);
            Ok(Outcome::Replica(
                crate::replication::sync::delete_orphan(replicator, &obj).await?,
            ))
        }
    }
}

/// Names the operation of one object's replication for the lines of the
/// request: `replicate/{bucket}/{name}#{generation}` (without `#…` when the
/// generation is the live one).
fn object_operation(obj: &GcsObject) {
    let id = match obj.generation {
        Some(g) => format!("replicate/{}/{}#{g}", obj.bucket, obj.name),
        None => format!("replicate/{}/{}", obj.bucket, obj.name),
    };
    crate::telemetry::operation(&id, true);
}

/// `outcome`, after saying whether the object's operation goes on in other
/// requests (the part tasks of a large object).
fn opens(outcome: ReplicaOutcome) -> ReplicaOutcome {
    if matches!(
        outcome,
        ReplicaOutcome::Parts(
            parts::PartsOutcome::Published { .. }
                | parts::PartsOutcome::PartUploaded { .. }
                | parts::PartsOutcome::Restarted { .. }
        )
    ) {
        crate::telemetry::operation_continues();
    }
    outcome
}

#[cfg(test)]
mod answer_tests {
    use super::*;
    use crate::aws::s3::PutResult;
    use crate::replication::replicate::parts::PartsOutcome;
    use serde_json::json;

    /// Every outcome answers as it did when the answers were built by hand.
    #[test]
    fn outcomes_answer_status_and_fields() {
        let cases: Vec<(Outcome, serde_json::Value)> = vec![
            (
                Outcome::Written(PutResult {
                    key: "k".into(),
                    etag: Some("\"e\"".into()),
                    version_id: None,
                }),
                json!({"status": "written", "key": "k", "etag": "\"e\"", "version_id": null}),
            ),
            (
                Outcome::Deleted { key: "k".into() },
                json!({"status": "deleted", "key": "k"}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::Replicated {
                    key: "k".into(),
                    generation: 1700000000000001,
                    size: 3,
                }),
                json!({"status": "replicated", "key": "k", "generation": "1700000000000001", "size": 3}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::UpToDate {
                    key: "k".into(),
                    replica_generation: 2,
                    generation: 1,
                }),
                json!({"status": "up_to_date", "key": "k", "replica_generation": "2", "generation": "1"}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::SourceGone {
                    bucket: "b".into(),
                    name: "n".into(),
                    generation: None,
                }),
                json!({"status": "source_gone", "bucket": "b", "name": "n", "generation": null}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::SourceGone {
                    bucket: "b".into(),
                    name: "n".into(),
                    generation: Some(5),
                }),
                json!({"status": "source_gone", "bucket": "b", "name": "n", "generation": "5"}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::ReplicaDeleted { key: "k".into() }),
                json!({"status": "replica_deleted", "key": "k"}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::NoReplica {
                    key: "k".into(),
                    reason: "no replica",
                }),
                json!({"status": "replica_kept", "key": "k", "reason": "no replica"}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::NotAReplica { key: "k".into() }),
                json!({"status": "not_a_replica", "key": "k"}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::MetadataUpdated {
                    key: "k".into(),
                    generation: 7,
                    metageneration: 3,
                }),
                json!({"status": "metadata_updated", "key": "k", "generation": "7", "metageneration": "3"}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::ReplicaKept {
                    key: "k".into(),
                    reason: "newer".into(),
                }),
                json!({"status": "replica_kept", "key": "k", "reason": "newer"}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::Parts(PartsOutcome::Published {
                    key: "k".into(),
                    upload_id: "u".into(),
                    parts: 4,
                })),
                json!({"status": "parts_published", "key": "k", "upload_id": "u", "parts": 4}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::Parts(PartsOutcome::PartUploaded {
                    key: "k".into(),
                    part_number: 2,
                    present: 3,
                    parts: 4,
                })),
                json!({"status": "part_uploaded", "key": "k", "part_number": 2, "present": 3, "parts": 4}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::Parts(PartsOutcome::InProgress {
                    key: "k".into(),
                    upload_id: "u".into(),
                })),
                json!({"status": "upload_in_progress", "key": "k", "upload_id": "u"}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::Parts(PartsOutcome::UploadGone {
                    key: "k".into(),
                    part_number: 2,
                })),
                json!({"status": "upload_gone", "key": "k", "part_number": 2}),
            ),
            (
                Outcome::Replica(ReplicaOutcome::Parts(PartsOutcome::Restarted {
                    key: "k".into(),
                    reason: "r".into(),
                })),
                json!({"status": "restarted", "key": "k", "reason": "r"}),
            ),
        ];
        for (outcome, want) in cases {
            assert_eq!(outcome.to_json(), want, "{outcome:?}");
        }
    }
}
