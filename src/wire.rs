//! What travels through the doors: the commands of the outside doors and
//! the service's own tasks, each decoded (and the tasks encoded) by one
//! type, so that a door cannot take the other's.
//!
//! - [`OutsideCommand`]: what callers ask for at the outside doors
//!   (`/pubsub`, `/events`, `/v1/*`): `put`, `copy`, `delete`, `replicate`
//!   and `sync` (the ops of `COMMAND_OPS`), and Cloud Storage changes
//!   (notifications and CloudEvents, which count as `replicate`). Decoded by
//!   [`decode_outside`], which refuses the service's own ops with
//!   [`WireError::NotAllowed`] (403 `op_not_allowed`).
//! - [`Task`]: what the service publishes to `TASKS_TOPIC` for itself (sync
//!   pages, replicate tasks, part tasks, orphan removals), accepted only at
//!   `POST /tasks`, encoded and decoded by the same type ([`Task::to_json`],
//!   [`Task::decode`]).
//!
//! Decoding reads the `op` first (the rest of the document skipped without
//! building anything), then the one struct of that op, so no generic JSON
//! tree is built. Running them is [`crate::replication::command`]'s.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::google::gcs::GcsObject;
use crate::settings::flag;
use crate::util::de_i64_opt;
use serde::de::Error as _;

/// An op of the outside doors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Put,
    Copy,
    Delete,
    Replicate,
    Sync,
}

impl Op {
    const ALL: [Op; 5] = [Op::Put, Op::Copy, Op::Delete, Op::Replicate, Op::Sync];

    /// The op's name on the wire and in `COMMAND_OPS`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Copy => "copy",
            Op::Delete => "delete",
            Op::Replicate => "replicate",
            Op::Sync => "sync",
        }
    }

    fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The ops the service's own tasks use: never accepted at an outside door.
const TASK_OPS: [&str; 4] = ["sync", "replicate", "replicate_part", "delete_replica"];

/// A set of outside ops (`COMMAND_OPS`); all five by default.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpSet(u8);

impl Default for OpSet {
    fn default() -> OpSet {
        OpSet(Op::ALL.into_iter().fold(0, |bits, op| bits | op.bit()))
    }
}

impl std::fmt::Debug for OpSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(Op::ALL.into_iter().filter(|op| self.contains(*op)))
            .finish()
    }
}

impl OpSet {
    /// Parses `put,copy,…`; one line per unknown op.
    pub(crate) fn parse(s: &str) -> Result<OpSet, Vec<String>> {
        let mut bits = 0;
        let mut errors = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match Op::from_name(name) {
                Some(op) => bits |= op.bit(),
                None if TASK_OPS.contains(&name) => errors.push(format!(
                    "{name:?} is an op of the service's own tasks, accepted only at /tasks; COMMAND_OPS takes put, copy, delete, replicate and sync"
                )),
                None => errors.push(format!(
                    "{name:?} is not an op; COMMAND_OPS takes put, copy, delete, replicate and sync"
                )),
            }
        }
        if errors.is_empty() {
            Ok(OpSet(bits))
        } else {
            Err(errors)
        }
    }

    /// Whether `op` is in the set.
    pub(crate) fn contains(&self, op: Op) -> bool {
        self.0 & op.bit() != 0
    }
}

/// What the outside doors may be asked for (`COMMAND_OPS`, `SYNC_DELETE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct DoorRules {
    pub(crate) ops: OpSet,
    pub(crate) sync_delete: bool,
}

impl DoorRules {
    /// Every op, deleting syncs too (the parsers' public entry points for
    /// the fuzz targets).
    pub(crate) fn all() -> DoorRules {
        DoorRules {
            ops: OpSet::default(),
            sync_delete: true,
        }
    }

    /// Refuses an op outside `COMMAND_OPS`.
    pub(crate) fn allow(&self, op: Op) -> Result<(), WireError> {
        if self.ops.contains(op) {
            Ok(())
        } else {
            Err(WireError::NotAllowed(format!(
                "op {:?} is not accepted here (COMMAND_OPS)",
                op.name()
            )))
        }
    }

    /// Refuses a deleting sync unless `SYNC_DELETE=true`.
    pub(crate) fn allow_sync_delete(&self, delete: bool) -> Result<(), WireError> {
        if delete && !self.sync_delete {
            return Err(WireError::NotAllowed(
                "a sync with \"delete\":true needs SYNC_DELETE=true".into(),
            ));
        }
        Ok(())
    }
}

/// A change to a Cloud Storage object, as notifications and CloudEvents
/// name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcsChange {
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

/// What a caller at an outside door asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutsideCommand {
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
    /// Start a sync of a Cloud Storage bucket (its first page).
    Sync(SyncCommand),
    /// A Cloud Storage notification or CloudEvent.
    Change(GcsChange, GcsObject),
}

impl OutsideCommand {
    /// The `COMMAND_OPS` op this command is.
    pub(crate) fn op(&self) -> Op {
        match self {
            OutsideCommand::Put { .. } => Op::Put,
            OutsideCommand::Delete { .. } => Op::Delete,
            OutsideCommand::Copy { .. } => Op::Copy,
            OutsideCommand::Replicate(_) | OutsideCommand::Change(..) => Op::Replicate,
            OutsideCommand::Sync(_) => Op::Sync,
        }
    }

    /// Checks the command against the door's rules (`COMMAND_OPS`,
    /// `SYNC_DELETE`).
    pub(crate) fn check(&self, rules: &DoorRules) -> Result<(), WireError> {
        rules.allow(self.op())?;
        if let OutsideCommand::Sync(s) = self {
            rules.allow_sync_delete(s.delete)?;
        }
        Ok(())
    }
}

/// A task the service publishes for itself to `TASKS_TOPIC`, accepted only
/// at `POST /tasks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Task {
    /// One page of a sync run (see [`crate::replication::sync`]).
    Sync(SyncPage),
    /// Replicate one object (published by a sync page, or again after a
    /// failed part-task completion).
    Replicate(ReplicateTask),
    /// One part of a large object (see [`parts`]).
    ReplicatePart(PartTask),
    /// Remove the replica of an object a sync found gone, once Cloud
    /// Storage confirms it.
    DeleteReplica(OrphanTask),
}

/// The `op` field of a command, skipped by the struct of that op.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OpTag;

impl<'de> Deserialize<'de> for OpTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OpTag, D::Error> {
        IgnoredAny::deserialize(d).map(|_| OpTag)
    }
}

/// `{"op":"replicate","bucket","name","generation"?,"crc32c"?,"restarts"?}`
/// as a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicateTask {
    #[serde(rename = "op", default, skip_serializing)]
    pub(crate) op: OpTag,
    pub(crate) bucket: String,
    pub(crate) name: String,
    #[serde(
        default,
        deserialize_with = "de_i64_opt",
        serialize_with = "ser_generation",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) crc32c: Option<String>,
    /// Completions of part uploads that failed before this task; past
    /// [`parts::MAX_RESTARTS`] the task is refused (dead letter).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) restarts: u32,
}

/// `{"op":"delete_replica","bucket","name"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrphanTask {
    #[serde(rename = "op", default, skip_serializing)]
    pub(crate) op: OpTag,
    pub(crate) bucket: String,
    pub(crate) name: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Generations travel as decimal strings (JSON numbers lose precision past
/// 2^53 in many readers).
pub(crate) fn ser_generation<S: Serializer>(g: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match g {
        Some(g) => s.serialize_str(&g.to_string()),
        None => s.serialize_none(),
    }
}

/// A sync command of an outside door (the JSON of `POST /v1/sync`, and of
/// the Pub/Sub command without its `op`): starts a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncCommand {
    #[serde(rename = "op", default, skip_serializing)]
    pub(crate) op: OpTag,
    /// Source bucket.
    pub(crate) bucket: String,
    /// Only names under this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) prefix: Option<String>,
    /// Also delete replicas whose object is gone (needs `SYNC_DELETE=true`).
    #[serde(default)]
    pub(crate) delete: bool,
}

impl SyncCommand {
    /// The command as published to the commands topic.
    pub(crate) fn to_command(&self) -> Vec<u8> {
        let mut v = serde_json::to_value(self).expect("a sync command serializes");
        v["op"] = "sync".into();
        v.to_string().into_bytes()
    }
}

/// A page of a run after the first: a task of the service's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncPage {
    #[serde(rename = "op", default, skip_serializing)]
    pub(crate) op: OpTag,
    /// Source bucket.
    pub(crate) bucket: String,
    /// Only names under this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) prefix: Option<String>,
    /// Also delete replicas whose object is gone.
    #[serde(default)]
    pub(crate) delete: bool,
    /// The run, the page and where it starts.
    pub(crate) page_token: String,
}

/// A `replicate_part` task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartTask {
    #[serde(rename = "op", default, skip_serializing)]
    pub(crate) op: OpTag,
    /// Source bucket.
    pub(crate) bucket: String,
    /// Source object name.
    pub(crate) name: String,
    /// Source generation (decimal string or number).
    #[serde(
        deserialize_with = "de_generation",
        serialize_with = "ser_part_generation"
    )]
    pub(crate) generation: i64,
    /// Multipart upload id.
    pub(crate) upload_id: String,
    /// Part number, 1-based.
    pub(crate) part_number: u64,
    /// First byte of the range.
    pub(crate) start: u64,
    /// Last byte of the range (inclusive).
    pub(crate) end: u64,
    /// Number of parts of the upload.
    pub(crate) parts: u64,
    /// Bytes per part (the last may be shorter).
    pub(crate) part_size: u64,
    /// Object size.
    pub(crate) size: u64,
    /// The object's CRC32C (base64), which completion asks S3 to verify.
    pub(crate) crc32c: String,
    /// Complete only if no object exists at the key (`If-None-Match: *`):
    /// the replicate command's check found no replica.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) if_none_match: bool,
    /// Complete only over the object with this ETag (`If-Match`): the
    /// replica the check found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) if_match: Option<String>,
    /// Failed completions of earlier uploads of this object.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) restarts: u32,
}

fn de_generation<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    crate::util::de_i64_opt(d)?.ok_or_else(|| serde::de::Error::custom("generation is required"))
}

fn ser_part_generation<S: serde::Serializer>(g: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&g.to_string())
}

/// Why a command or task did not decode, or may not come through this
/// door.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The data is not JSON.
    #[error("the message data is not JSON: {0}")]
    NotJson(String),
    /// Not a command, or a command with bad fields.
    #[error("{0}")]
    Invalid(String),
    /// An `op` no command has.
    #[error("{0}")]
    UnknownOp(String),
    /// This door does not take this op (`COMMAND_OPS`, `SYNC_DELETE`, or an
    /// op of the other door).
    #[error("{0}")]
    NotAllowed(String),
    /// `body_base64` does not decode.
    #[error("body_base64 is not valid base64")]
    InvalidBase64,
    /// The `metadata` of a `put` is over S3's 2 KiB (found while it was
    /// read).
    #[error("{0}")]
    InvalidMetadata(String),
}

/// The accepted command shapes, for error messages.
pub(crate) const ACCEPTED_COMMANDS: &str = r#"{"op":"put","key","body"|"body_base64","content_type"?,"metadata"?}, {"op":"delete","key"}, {"op":"copy","source_key","key"}, {"op":"replicate","bucket","name","generation"?}, {"op":"sync","bucket","prefix"?,"delete"?}"#;

/// The accepted task shapes, for error messages.
pub(crate) const ACCEPTED_TASKS: &str = r#"{"op":"sync","bucket","prefix"?,"delete","page_token"}, {"op":"replicate","bucket","name","generation"?,"crc32c"?,"restarts"?}, {"op":"replicate_part",…}, {"op":"delete_replica","bucket","name"}"#;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutWire<'a> {
    #[serde(rename = "op")]
    _op: OpTag,
    key: String,
    // Borrowed from the data: without escapes, the command's body is a
    // slice of the data, not a copy.
    #[serde(default, borrow, deserialize_with = "crate::json_bounds::opt_cow")]
    body: Option<Cow<'a, str>>,
    // Borrowed from the data: decoded once, straight into the command.
    #[serde(default, borrow, deserialize_with = "crate::json_bounds::opt_cow")]
    body_base64: Option<Cow<'a, str>>,
    content_type: Option<String>,
    // Bounded while it is read: past 2 KiB the read stops (400
    // invalid_metadata) before the rest of the map is built.
    #[serde(default, deserialize_with = "crate::json_bounds::user_metadata")]
    metadata: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteWire {
    #[serde(rename = "op")]
    _op: OpTag,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyWire {
    #[serde(rename = "op")]
    _op: OpTag,
    source_key: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicateWire {
    #[serde(rename = "op")]
    _op: OpTag,
    bucket: String,
    name: String,
    #[serde(default, deserialize_with = "de_i64_opt")]
    generation: Option<i64>,
    #[serde(default)]
    crc32c: Option<String>,
}

/// The `op` of a command and whether it carries a `page_token` (a sync
/// page of the service's own), read without keeping anything else.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    op: Option<Cow<'a, str>>,
    #[serde(default)]
    page_token: Option<IgnoredAny>,
}

fn probe(data: &[u8]) -> Result<(String, bool), WireError> {
    let p: Probe = serde_json::from_slice(data).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            WireError::NotJson(e.to_string())
        } else {
            WireError::Invalid(format!(
                "the message is not a command ({e}); accepted: {ACCEPTED_COMMANDS}, or a Cloud Storage notification"
            ))
        }
    })?;
    let op = p.op.ok_or_else(|| {
        WireError::Invalid(format!(
            "the message is not a command (no \"op\"); accepted: {ACCEPTED_COMMANDS}, or a Cloud Storage notification"
        ))
    })?;
    Ok((op.into_owned(), p.page_token.is_some()))
}

/// Parses the struct of `op` from `data`; a bad field answers 400 naming
/// the accepted shapes.
fn fields<'a, T: Deserialize<'a>>(data: &'a [u8], op: &str, shapes: &str) -> Result<T, WireError> {
    serde_json::from_slice(data).map_err(|e| {
        let message = e.to_string();
        if message.contains(crate::json_bounds::USER_METADATA_OVER) {
            WireError::InvalidMetadata(message)
        } else {
            WireError::Invalid(format!("bad {op} command: {message}; accepted: {shapes}"))
        }
    })
}

/// Decodes a command of an outside door and checks it against `rules`. The
/// service's own ops (`replicate_part`, `delete_replica`, a `sync` with a
/// `page_token`) and ops outside `COMMAND_OPS` answer
/// [`WireError::NotAllowed`]; an unknown op [`WireError::UnknownOp`].
pub(crate) fn decode_outside(data: &[u8], rules: &DoorRules) -> Result<OutsideCommand, WireError> {
    decode_outside_bytes(&Bytes::copy_from_slice(data), rules)
}

/// [`decode_outside`] of data the command may keep a slice of: a put's
/// `body` without escapes becomes the command's body without a copy.
pub(crate) fn decode_outside_bytes(
    data: &Bytes,
    rules: &DoorRules,
) -> Result<OutsideCommand, WireError> {
    let (op, page_token) = probe(data)?;
    if matches!(op.as_str(), "replicate_part" | "delete_replica") || (op == "sync" && page_token) {
        return Err(WireError::NotAllowed(format!(
            "op {op:?}{} is a task of the service's own, accepted only from its tasks subscription at /tasks",
            if op == "sync" { " with a page_token" } else { "" }
        )));
    }
    let Some(known) = Op::from_name(&op) else {
        return Err(WireError::UnknownOp(format!(
            "unknown op {op:?}; accepted: {ACCEPTED_COMMANDS}"
        )));
    };
    rules.allow(known)?;
    let cmd = match known {
        Op::Put => {
            let w: PutWire = fields(data, &op, ACCEPTED_COMMANDS)?;
            let body = match (w.body, w.body_base64) {
                (Some(Cow::Borrowed(b)), None) => data.slice_ref(b.as_bytes()),
                (Some(Cow::Owned(b)), None) => Bytes::from(b),
                (None, Some(b)) => Bytes::from(
                    STANDARD
                        .decode(b.trim())
                        .map_err(|_| WireError::InvalidBase64)?,
                ),
                _ => {
                    return Err(WireError::Invalid(
                        "a put command has exactly one of body and body_base64".into(),
                    ))
                }
            };
            OutsideCommand::Put {
                key: w.key,
                body,
                content_type: w.content_type,
                metadata: w.metadata,
            }
        }
        Op::Delete => {
            let w: DeleteWire = fields(data, &op, ACCEPTED_COMMANDS)?;
            OutsideCommand::Delete { key: w.key }
        }
        Op::Copy => {
            let w: CopyWire = fields(data, &op, ACCEPTED_COMMANDS)?;
            OutsideCommand::Copy {
                source_key: w.source_key,
                key: w.key,
            }
        }
        Op::Replicate => {
            let w: ReplicateWire = fields(data, &op, ACCEPTED_COMMANDS)?;
            OutsideCommand::Replicate(GcsObject {
                bucket: w.bucket,
                name: w.name,
                generation: w.generation,
                crc32c: w.crc32c,
                ..GcsObject::default()
            })
        }
        Op::Sync => OutsideCommand::Sync(fields(data, &op, ACCEPTED_COMMANDS)?),
    };
    cmd.check(rules)?;
    Ok(cmd)
}

/// Decodes a command of an outside door with every op allowed (what the
/// handlers run before their door's rules; public for the fuzz target).
pub fn parse_command(data: &[u8]) -> Result<OutsideCommand, WireError> {
    let all = DoorRules {
        ops: OpSet::default(),
        sync_delete: true,
    };
    decode_outside(data, &all)
}

/// Decodes a task of `POST /tasks` with deleting tasks allowed (public for
/// the fuzz target).
pub fn parse_task(data: &[u8]) -> Result<Task, WireError> {
    let all = DoorRules {
        ops: OpSet::default(),
        sync_delete: true,
    };
    Task::decode(data, &all)
}

impl Task {
    /// Decodes a task of `POST /tasks`. The outside ops (`put`, `copy`,
    /// `delete`, a `sync` without a `page_token`) answer
    /// [`WireError::NotAllowed`]; so do deleting tasks unless
    /// `SYNC_DELETE=true`.
    pub(crate) fn decode(data: &[u8], rules: &DoorRules) -> Result<Task, WireError> {
        let (op, page_token) = probe(data)?;
        let task = match op.as_str() {
            "sync" if page_token => Task::Sync(fields(data, &op, ACCEPTED_TASKS)?),
            "replicate" => Task::Replicate(fields(data, &op, ACCEPTED_TASKS)?),
            "replicate_part" => Task::ReplicatePart(fields(data, &op, ACCEPTED_TASKS)?),
            "delete_replica" => Task::DeleteReplica(fields(data, &op, ACCEPTED_TASKS)?),
            "put" | "copy" | "delete" | "sync" => {
                return Err(WireError::NotAllowed(format!(
                "op {op:?} is a command of the outside doors (/pubsub, /events, /v1), not a task"
            )))
            }
            other => {
                return Err(WireError::UnknownOp(format!(
                    "unknown op {other:?}; accepted: {ACCEPTED_TASKS}"
                )))
            }
        };
        match &task {
            Task::Sync(page) => rules.allow_sync_delete(page.delete)?,
            Task::DeleteReplica(_) => rules.allow_sync_delete(true)?,
            Task::Replicate(_) | Task::ReplicatePart(_) => {}
        }
        Ok(task)
    }

    /// The task as published: its JSON.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a task serializes")
    }

    /// A replicate task.
    pub(crate) fn replicate(
        bucket: &str,
        name: &str,
        generation: Option<i64>,
        crc32c: Option<String>,
        restarts: u32,
    ) -> Task {
        Task::Replicate(ReplicateTask {
            op: OpTag,
            bucket: bucket.to_owned(),
            name: name.to_owned(),
            generation,
            crc32c,
            restarts,
        })
    }
}

/// Where a command came from: the Pub/Sub message id, when pushed. A sync
/// run started by a message takes its id from it, so that the message
/// delivered again does not start a second run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// `subscription/messageId` of a push, else `None`.
    pub(crate) id: Option<String>,
}

/// What the outside doors (`/pubsub`, `/events`, `/v1/*`) accept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DoorSettings {
    /// `COMMAND_OPS`: the ops the outside doors accept, comma-separated
    /// (default `put,copy,delete,replicate,sync`; these five are the only
    /// ones allowed). `replicate` also covers Cloud Storage events and
    /// notifications.
    #[serde(
        rename = "command_ops",
        default = "default_command_ops",
        deserialize_with = "command_ops"
    )]
    pub(crate) command_ops: crate::wire::OpSet,
    /// `SYNC_DELETE`: whether a sync may delete replicas whose object is
    /// gone (`"delete":true`; default false).
    #[serde(rename = "sync_delete", default, deserialize_with = "flag")]
    pub(crate) sync_delete: bool,
}

fn default_command_ops() -> crate::wire::OpSet {
    crate::wire::OpSet::default()
}

/// `COMMAND_OPS`: outside ops, comma-separated; one line per unknown op.
fn command_ops<'de, D: Deserializer<'de>>(d: D) -> Result<crate::wire::OpSet, D::Error> {
    crate::wire::OpSet::parse(&String::deserialize(d)?)
        .map_err(|lines| D::Error::custom(lines.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<impl std::fmt::Debug, WireError>) -> (u16, &'static str) {
        let e = crate::http::error::AppError::from(r.unwrap_err());
        (e.status().as_u16(), e.code().as_str())
    }

    fn all() -> DoorRules {
        DoorRules {
            ops: OpSet::default(),
            sync_delete: true,
        }
    }

    #[test]
    fn commands_parse() {
        let r = all();
        assert_eq!(
            decode_outside(
                br#"{"op":"put","key":"a","body":"hi","content_type":"text/plain"}"#,
                &r
            )
            .unwrap(),
            OutsideCommand::Put {
                key: "a".into(),
                body: Bytes::from_static(b"hi"),
                content_type: Some("text/plain".into()),
                metadata: HashMap::new()
            }
        );
        // A body without escapes is a slice of the data, not a copy.
        let data = Bytes::from_static(br#"{"op":"put","key":"a","body":"hello"}"#);
        match decode_outside_bytes(&data, &r).unwrap() {
            OutsideCommand::Put { body, .. } => {
                assert_eq!(&body[..], b"hello");
                let range = data.as_ptr_range();
                assert!(range.contains(&body.as_ptr()), "a copy");
            }
            other => panic!("{other:?}"),
        }
        match decode_outside(br#"{"op":"put","key":"a","body":"a\"b"}"#, &r).unwrap() {
            OutsideCommand::Put { body, .. } => assert_eq!(&body[..], b"a\"b"),
            other => panic!("{other:?}"),
        }
        match decode_outside(br#"{"op":"put","key":"a","body_base64":"AQID"}"#, &r).unwrap() {
            OutsideCommand::Put { body, .. } => assert_eq!(&body[..], &[1, 2, 3]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode_outside(br#"{"op":"delete","key":"a"}"#, &r).unwrap(),
            OutsideCommand::Delete { key: "a".into() }
        );
        match decode_outside(
            br#"{"op":"replicate","bucket":"b","name":"n","generation":"17"}"#,
            &r,
        )
        .unwrap()
        {
            OutsideCommand::Replicate(o) => assert_eq!(o.generation, Some(17)),
            other => panic!("{other:?}"),
        }
        match decode_outside(br#"{"op":"sync","bucket":"b","delete":true}"#, &r).unwrap() {
            OutsideCommand::Sync(s) => assert!(s.delete),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_commands_name_the_accepted_shapes() {
        let r = all();
        assert_eq!(code(decode_outside(b"not json", &r)), (400, "invalid_json"));
        assert_eq!(
            code(decode_outside(br#"{"op":"explode"}"#, &r)),
            (400, "unknown_op")
        );
        assert_eq!(
            code(decode_outside(br#"{"key":"a"}"#, &r)),
            (400, "invalid_command")
        );
        assert_eq!(
            code(decode_outside(br#"{"op":"put","key":"a"}"#, &r)),
            (400, "invalid_command")
        );
        assert_eq!(
            code(decode_outside(
                br#"{"op":"put","key":"a","x":1,"body":""}"#,
                &r
            )),
            (400, "invalid_command")
        );
        assert_eq!(
            code(decode_outside(
                br#"{"op":"put","key":"a","body_base64":"***"}"#,
                &r
            )),
            (400, "invalid_base64")
        );
        let mut many = String::from(r#"{"op":"put","key":"a","body":"","metadata":{"#);
        for i in 0..10_000 {
            many.push_str(&format!(r#""k{i}":"","#));
        }
        many.push_str(r#""z":""}}"#);
        assert_eq!(
            code(decode_outside(many.as_bytes(), &r)),
            (400, "invalid_metadata")
        );
        let e = decode_outside(br#"{"op":"explode"}"#, &r).unwrap_err();
        assert!(e.to_string().contains(r#"{"op":"delete","key"}"#));
    }

    #[test]
    fn the_outside_doors_refuse_the_services_own_ops() {
        let r = all();
        for data in [
            r#"{"op":"replicate_part","bucket":"b","name":"n"}"#,
            r#"{"op":"delete_replica","bucket":"b","name":"n"}"#,
            r#"{"op":"sync","bucket":"b","page_token":"x"}"#,
            r#"{"op":"replicate_part"}"#,
        ] {
            assert_eq!(
                code(decode_outside(data.as_bytes(), &r)),
                (403, "op_not_allowed"),
                "{data}"
            );
        }
    }

    #[test]
    fn command_ops_and_sync_delete_are_honoured() {
        let only_put = DoorRules {
            ops: OpSet::parse("put").unwrap(),
            sync_delete: false,
        };
        assert!(decode_outside(br#"{"op":"put","key":"a","body":""}"#, &only_put).is_ok());
        for data in [
            r#"{"op":"delete","key":"a"}"#,
            r#"{"op":"copy","source_key":"a","key":"b"}"#,
            r#"{"op":"replicate","bucket":"b","name":"n"}"#,
            r#"{"op":"sync","bucket":"b"}"#,
        ] {
            assert_eq!(
                code(decode_outside(data.as_bytes(), &only_put)),
                (403, "op_not_allowed"),
                "{data}"
            );
        }
        let no_delete = DoorRules {
            ops: OpSet::default(),
            sync_delete: false,
        };
        assert!(decode_outside(br#"{"op":"sync","bucket":"b"}"#, &no_delete).is_ok());
        assert_eq!(
            code(decode_outside(
                br#"{"op":"sync","bucket":"b","delete":true}"#,
                &no_delete
            )),
            (403, "op_not_allowed")
        );
        assert!(OpSet::parse("put, sync ,").unwrap().contains(Op::Sync));
        let e = OpSet::parse("put,replicate_part,explode").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("/tasks"), "{e:?}");
        assert_eq!(
            format!("{:?}", OpSet::parse("sync,put").unwrap()),
            "{Put, Sync}"
        );
    }

    #[test]
    fn tasks_round_trip_and_refuse_outside_ops() {
        let r = all();
        let t = Task::replicate("b", "n", Some(1_700_000_000_000_001), None, 2);
        let json = t.to_json();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
            serde_json::json!({"op":"replicate","bucket":"b","name":"n","generation":"1700000000000001","restarts":2})
        );
        assert_eq!(Task::decode(&json, &r).unwrap(), t);
        let orphan = Task::DeleteReplica(OrphanTask {
            op: OpTag,
            bucket: "b".into(),
            name: "n".into(),
        });
        assert_eq!(Task::decode(&orphan.to_json(), &r).unwrap(), orphan);
        for data in [
            r#"{"op":"put","key":"a","body":""}"#,
            r#"{"op":"delete","key":"a"}"#,
            r#"{"op":"copy","source_key":"a","key":"b"}"#,
            r#"{"op":"sync","bucket":"b"}"#,
        ] {
            assert_eq!(
                code(Task::decode(data.as_bytes(), &r)),
                (403, "op_not_allowed"),
                "{data}"
            );
        }
        assert_eq!(
            code(Task::decode(
                br#"{"op":"replicate","bucket":"b","name":"n","key":"x"}"#,
                &r
            )),
            (400, "invalid_command")
        );
        let keep = DoorRules {
            ops: OpSet::default(),
            sync_delete: false,
        };
        assert_eq!(
            code(Task::decode(&orphan.to_json(), &keep)),
            (403, "op_not_allowed")
        );
    }
}
