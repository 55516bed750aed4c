//! [`Command`]: what every trigger decodes a request into, and
//! [`execute`], which hands it to storage or replication.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;

use crate::gcs::GcsObject;
use crate::replicate::parts::{self, PartTask};
use crate::replicate::{ReplicaOutcome, ReplicateError, Replicator};
use crate::source_buckets::BucketRefusal;
use crate::storage::StorageError;
use crate::storage::{
    validate_content_type, validate_metadata, ObjectHeaders, PutOptions, PutResult, Storage,
};
use crate::util::de_i64_opt;

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Write `body` at `key`.
    Put {
        /// Relative key.
        key: String,
        body: Bytes,
        content_type: Option<String>,
        metadata: HashMap<String, String>,
    },
    /// Delete `key` (a missing key is fine).
    Delete {
        /// Relative key.
        key: String,
    },
    /// Copy `source_key` to `key`.
    Copy {
        /// Relative source key.
        source_key: String,
        /// Relative destination key.
        key: String,
    },
    /// Replicate a Cloud Storage object generation into S3.
    Replicate(GcsObject),
    /// Remove the replica of a deleted or archived Cloud Storage object,
    /// unless the replica is of a newer generation.
    DeleteReplica(GcsObject),
    /// One page of a sync of a Cloud Storage bucket (see [`crate::sync`]).
    Sync(crate::sync::SyncRequest),
    /// One part of a large object's replication (see [`parts`]).
    ReplicatePart(PartTask),
    /// Remove the replica of an object a sync found missing, once Cloud
    /// Storage confirms it is gone.
    DeleteOrphan(GcsObject),
    /// Give the replica of a generation the object's new metadata.
    UpdateMetadata(GcsObject),
    /// A known event that needs no work (e.g. a metadata update).
    Ignore {
        /// Why.
        reason: String,
    },
}

/// A change to a Cloud Storage object, as notifications and CloudEvents
/// name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StorageChange {
    /// A generation was written (`OBJECT_FINALIZE`, `.finalized`).
    Finalized,
    /// The live generation was deleted (`OBJECT_DELETE`, `.deleted`).
    Deleted,
    /// A generation stopped being live in a versioned bucket
    /// (`OBJECT_ARCHIVE`, `.archived`).
    Archived,
    /// Only metadata changed (`OBJECT_METADATA_UPDATE`, `.metadataUpdated`).
    MetadataUpdated,
}

impl Command {
    /// The work a Cloud Storage change asks for: replicate a new generation,
    /// remove the replica of a generation that is no longer live (unless the
    /// replica is newer), update the replica's metadata.
    pub(crate) fn for_storage_change(change: StorageChange, obj: GcsObject) -> Command {
        match change {
            StorageChange::Finalized => Command::Replicate(obj),
            StorageChange::Deleted | StorageChange::Archived => Command::DeleteReplica(obj),
            StorageChange::MetadataUpdated => Command::UpdateMetadata(obj),
        }
    }
}

/// What a command did.
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
    /// A sync page published its commands.
    Sync(crate::sync::SyncOutcome),
    /// Nothing to do.
    Ignored {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// A JSON summary for the trigger's answer.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            Outcome::Written(r) => serde_json::json!({
                "status": "written", "key": r.key, "etag": r.etag, "version_id": r.version_id
            }),
            Outcome::Deleted { key } => serde_json::json!({ "status": "deleted", "key": key }),
            Outcome::Replica(r) => r.to_json(),
            Outcome::Sync(s) => s.to_json(),
            Outcome::Ignored { reason } => {
                serde_json::json!({ "status": "ignored", "reason": reason })
            }
        }
    }
}

/// Why a command did not decode, or cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The data is not JSON.
    #[error("the message data is not JSON: {0}")]
    NotJson(String),
    /// Not a command, or a command with bad fields.
    #[error("{0}")]
    Invalid(String),
    /// An `op` no command has.
    #[error("{0}")]
    UnknownOp(String),
    /// `body_base64` does not decode.
    #[error("body_base64 is not valid base64")]
    InvalidBase64,
    /// The command needs the configuration of further commands
    /// (`PUBSUB_TOPIC`), which this service lacks.
    #[error("{0} without the configuration of further commands")]
    NotConfigured(&'static str),
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

/// The accepted command shapes, for error messages.
pub(crate) const ACCEPTED_COMMANDS: &str = r#"{"op":"put","key","body"|"body_base64","content_type"?,"metadata"?}, {"op":"delete","key"}, {"op":"copy","source_key","key"}, {"op":"replicate","bucket","name","generation"?}, {"op":"sync","bucket","prefix"?,"delete"?,"page_token"?}, {"op":"replicate_part",...}, {"op":"delete_replica","bucket","name"}"#;

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum Wire<'a> {
    Put {
        key: String,
        body: Option<String>,
        // Borrowed from the data: decoded once, straight into the command.
        #[serde(borrow)]
        body_base64: Option<Cow<'a, str>>,
        content_type: Option<String>,
        #[serde(default)]
        metadata: HashMap<String, String>,
    },
    Delete {
        key: String,
    },
    Copy {
        source_key: String,
        key: String,
    },
    Replicate {
        bucket: String,
        name: String,
        #[serde(default, deserialize_with = "de_i64_opt")]
        generation: Option<i64>,
        #[serde(default)]
        crc32c: Option<String>,
    },
    Sync(crate::sync::SyncRequest),
    #[serde(rename = "replicate_part")]
    ReplicatePart(PartTask),
    #[serde(rename = "delete_replica")]
    DeleteReplica {
        bucket: String,
        name: String,
    },
}

/// The `op` of a command that did not decode, for the error message.
fn op_of(data: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        op: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<Probe>(data)
        .ok()
        .and_then(|p| p.op)
        .map(Cow::into_owned)
}

/// Decodes a command from JSON bytes, without an intermediate JSON value:
/// a large `body_base64` is decoded once, from the data, into the command.
pub fn parse_command(data: &[u8]) -> Result<Command, CommandError> {
    let wire: Wire = serde_json::from_slice(data).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            return CommandError::NotJson(e.to_string());
        }
        let op = op_of(data);
        match op.as_deref() {
            Some(
                "put" | "delete" | "copy" | "replicate" | "sync" | "replicate_part"
                | "delete_replica",
            ) => CommandError::Invalid(format!(
                "bad {} command: {e}; accepted: {ACCEPTED_COMMANDS}",
                op.unwrap_or_default()
            )),
            Some(other) => CommandError::UnknownOp(format!(
                "unknown op {other:?}; accepted: {ACCEPTED_COMMANDS}"
            )),
            None => CommandError::Invalid(format!(
                "the message is not a command (no \"op\"); accepted: {ACCEPTED_COMMANDS}, or a Cloud Storage notification"
            )),
        }
    })?;
    Ok(match wire {
        Wire::Put {
            key,
            body,
            body_base64,
            content_type,
            metadata,
        } => {
            let body = match (body, body_base64) {
                (Some(b), None) => Bytes::from(b),
                (None, Some(b)) => Bytes::from(
                    STANDARD
                        .decode(b.trim())
                        .map_err(|_| CommandError::InvalidBase64)?,
                ),
                _ => {
                    return Err(CommandError::Invalid(
                        "a put command has exactly one of body and body_base64".into(),
                    ))
                }
            };
            Command::Put {
                key,
                body,
                content_type,
                metadata,
            }
        }
        Wire::Delete { key } => Command::Delete { key },
        Wire::Copy { source_key, key } => Command::Copy { source_key, key },
        Wire::Replicate {
            bucket,
            name,
            generation,
            crc32c,
        } => Command::Replicate(GcsObject {
            bucket,
            name,
            generation,
            crc32c,
            ..GcsObject::default()
        }),
        Wire::Sync(req) => Command::Sync(req),
        Wire::ReplicatePart(task) => Command::ReplicatePart(task),
        Wire::DeleteReplica { bucket, name } => Command::DeleteOrphan(GcsObject {
            bucket,
            name,
            ..GcsObject::default()
        }),
    })
}

/// Runs a command.
pub(crate) async fn execute(
    storage: &Storage,
    replicator: &Replicator,
    cmd: Command,
) -> Result<Outcome, CommandError> {
    match cmd {
        Command::Put {
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
        Command::Delete { key } => {
            let key = storage.key(&key)?;
            storage.delete(&key).await?;
            Ok(Outcome::Deleted {
                key: key.relative().to_owned(),
            })
        }
        Command::Copy { source_key, key } => {
            let source = storage.key(&source_key)?;
            let dest = storage.key(&key)?;
            Ok(Outcome::Written(storage.copy(&source, &dest).await?))
        }
        Command::Replicate(obj) => Ok(Outcome::Replica(replicator.replicate(&obj).await?)),
        Command::DeleteReplica(obj) => Ok(Outcome::Replica(replicator.delete_replica(&obj).await?)),
        Command::Sync(req) => Ok(Outcome::Sync(
            crate::sync::run_page(replicator, &req).await?,
        )),
        Command::ReplicatePart(task) => {
            let fanout = replicator
                .fanout()
                .ok_or(CommandError::NotConfigured("replicate_part"))?;
            fanout
                .config
                .replication
                .source_buckets
                .check(&task.bucket)?;
            Ok(Outcome::Replica(parts::run_part(replicator, &task).await?))
        }
        Command::DeleteOrphan(obj) => Ok(Outcome::Replica(
            crate::sync::delete_orphan(replicator, &obj).await?,
        )),
        Command::UpdateMetadata(obj) => {
            Ok(Outcome::Replica(replicator.update_metadata(&obj).await?))
        }
        Command::Ignore { reason } => Ok(Outcome::Ignored { reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<Command, CommandError>) -> &'static str {
        crate::error::AppError::from(r.unwrap_err()).code()
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse_command(br#"{"op":"put","key":"a","body":"hi","content_type":"text/plain"}"#)
                .unwrap(),
            Command::Put {
                key: "a".into(),
                body: Bytes::from_static(b"hi"),
                content_type: Some("text/plain".into()),
                metadata: HashMap::new()
            }
        );
        match parse_command(br#"{"op":"put","key":"a","body_base64":"AQID"}"#).unwrap() {
            Command::Put { body, .. } => assert_eq!(&body[..], &[1, 2, 3]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_command(br#"{"op":"delete","key":"a"}"#).unwrap(),
            Command::Delete { key: "a".into() }
        );
        match parse_command(br#"{"op":"replicate","bucket":"b","name":"n","generation":"17"}"#)
            .unwrap()
        {
            Command::Replicate(o) => assert_eq!(o.generation, Some(17)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_commands_name_the_accepted_shapes() {
        assert_eq!(code(parse_command(b"not json")), "invalid_json");
        assert_eq!(code(parse_command(br#"{"op":"explode"}"#)), "unknown_op");
        assert_eq!(code(parse_command(br#"{"key":"a"}"#)), "invalid_command");
        assert_eq!(
            code(parse_command(br#"{"op":"put","key":"a"}"#)),
            "invalid_command"
        );
        assert_eq!(
            code(parse_command(
                br#"{"op":"put","key":"a","body_base64":"***"}"#
            )),
            "invalid_base64"
        );
        let e = parse_command(br#"{"op":"explode"}"#).unwrap_err();
        assert!(e.to_string().contains(r#"{"op":"delete","key"}"#));
    }
}
