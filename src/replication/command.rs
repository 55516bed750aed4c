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

/// What a command or task did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An object was written.
    Written(PutResult),
    /// An object was deleted (or was already gone).
    Deleted {
        /// Relative key.
        key: String,
    },
    /// Replication result.
    Replica(ReplicaOutcome),
    /// A sync page published its tasks.
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
        match self {
            Outcome::Written(r) => serde_json::json!({
                "status": "written", "key": r.key, "etag": r.etag, "version_id": r.version_id
            }),
            Outcome::Deleted { key } => serde_json::json!({ "status": "deleted", "key": key }),
            Outcome::Replica(r) => r.to_json(),
            Outcome::Sync(s) => s.to_json(),
        }
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
