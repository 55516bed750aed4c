//! `POST /pubsub`: a Pub/Sub push envelope
//! `{message:{data,attributes,messageId,publishTime},subscription,deliveryAttempt?}`
//! whose data is a command or a Cloud Storage notification.

use std::borrow::Cow;
use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;

use crate::budget::Reservation;
use crate::google::gcs::GcsObject;
use crate::http::edge::MessageError;
use crate::http::error::AppError;
use crate::http::state::AppState;
use crate::replication::command::{execute, execute_task};
use crate::wire::{
    decode_outside_bytes, Delivery, DoorRules, GcsChange, OutsideCommand, Task, WireError,
};

use super::{json_body, read_body_within};

/// A Pub/Sub message as pushed (camelCase and snake_case twins both
/// accepted), its strings borrowed from the body, its attributes bounded by
/// Pub/Sub's limits while they are read (more answers 400).
#[derive(Debug, Default, Deserialize)]
pub struct PubsubMessage<'a> {
    /// Base64 data.
    #[serde(default, borrow, deserialize_with = "crate::json_bounds::opt_cow")]
    pub data: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "crate::json_bounds::attributes")]
    pub attributes: Option<HashMap<String, String>>,
    #[serde(
        default,
        borrow,
        deserialize_with = "crate::json_bounds::opt_cow",
        rename = "messageId"
    )]
    pub message_id: Option<Cow<'a, str>>,
    #[serde(
        default,
        borrow,
        deserialize_with = "crate::json_bounds::opt_cow",
        rename = "message_id"
    )]
    pub message_id_snake: Option<Cow<'a, str>>,
    #[serde(
        default,
        borrow,
        deserialize_with = "crate::json_bounds::opt_cow",
        rename = "publishTime"
    )]
    pub publish_time: Option<Cow<'a, str>>,
    #[serde(
        default,
        borrow,
        deserialize_with = "crate::json_bounds::opt_cow",
        rename = "publish_time"
    )]
    pub publish_time_snake: Option<Cow<'a, str>>,
}

impl PubsubMessage<'_> {
    /// The message id, from either spelling.
    pub fn id(&self) -> Option<&str> {
        self.message_id
            .as_deref()
            .or(self.message_id_snake.as_deref())
    }

    /// The publish time, from either spelling.
    pub fn published(&self) -> Option<&str> {
        self.publish_time
            .as_deref()
            .or(self.publish_time_snake.as_deref())
    }
}

/// The push envelope, borrowed from the body.
#[derive(Debug, Deserialize)]
pub struct PushEnvelope<'a> {
    #[serde(borrow)]
    pub message: PubsubMessage<'a>,
    #[serde(default, borrow, deserialize_with = "crate::json_bounds::opt_cow")]
    pub subscription: Option<Cow<'a, str>>,
    /// Delivery attempt, when a dead-letter policy is set.
    #[serde(default, rename = "deliveryAttempt")]
    pub delivery_attempt: Option<i64>,
}

/// A JSON error of a Pub/Sub message or envelope:
/// [`MessageError::AttributesOverLimits`] when the attributes are over
/// Pub/Sub's limits, else what `otherwise` makes of the parser's words.
pub(crate) fn message_json_error<E: Into<AppError>>(
    e: &serde_json::Error,
    otherwise: impl FnOnce(String) -> E,
) -> AppError {
    let message = e.to_string();
    if message.contains(crate::json_bounds::ATTRIBUTES_OVER) {
        MessageError::AttributesOverLimits(message).into()
    } else {
        otherwise(message).into()
    }
}

fn decode_data(data: &str) -> Result<Vec<u8>, MessageError> {
    let d = data.trim();
    STANDARD
        .decode(d)
        .or_else(|_| URL_SAFE.decode(d))
        .map_err(|_| MessageError::InvalidBase64)
}

/// A message's payload, its base64 decoded once.
#[derive(Debug)]
pub enum Payload {
    /// A Cloud Storage notification: `eventType` and the other attributes,
    /// and the object resource when `payloadFormat` is `JSON_API_V1`.
    Notification {
        event_type: String,
        attrs: HashMap<String, String>,
        resource: Option<Vec<u8>>,
    },
    /// A JSON command or task.
    Command(Bytes),
}

/// Decodes a message's data (base64) and tells a notification from a
/// command.
fn decode_message(
    attrs: Option<HashMap<String, String>>,
    data: Option<&str>,
) -> Result<Payload, AppError> {
    if let Some(attrs) = attrs {
        if let Some(event_type) = attrs.get("eventType").cloned() {
            let resource = match (attrs.get("payloadFormat").map(String::as_str), data) {
                (Some("JSON_API_V1"), Some(d)) if !d.is_empty() => Some(decode_data(d)?),
                _ => None,
            };
            return Ok(Payload::Notification {
                event_type,
                attrs,
                resource,
            });
        }
    }
    let data = data.filter(|d| !d.is_empty()).ok_or(MessageError::NoData)?;
    Ok(Payload::Command(Bytes::from(decode_data(data)?)))
}

/// What an outside door makes of a payload: the command, or the change a
/// notification names, checked against the door's rules.
pub(crate) fn outside_command(
    payload: Payload,
    rules: &DoorRules,
) -> Result<OutsideCommand, AppError> {
    match payload {
        Payload::Notification {
            event_type,
            attrs,
            resource,
        } => {
            let cmd = notification_to_command(&event_type, &attrs, resource.as_deref())?;
            cmd.check(rules)?;
            Ok(cmd)
        }
        Payload::Command(data) => Ok(decode_outside_bytes(&data, rules)?),
    }
}

/// Decodes a Pub/Sub message of an outside door (a CloudEvent's
/// `messagePublished` data) into a command.
pub fn message_to_command(msg: PubsubMessage<'_>) -> Result<OutsideCommand, AppError> {
    message_to_command_with(msg, &DoorRules::default())
}

pub(crate) fn message_to_command_with(
    msg: PubsubMessage<'_>,
    rules: &DoorRules,
) -> Result<OutsideCommand, AppError> {
    outside_command(decode_message(msg.attributes, msg.data.as_deref())?, rules)
}

fn notification_to_command(
    event_type: &str,
    attrs: &HashMap<String, String>,
    resource: Option<&[u8]>,
) -> Result<OutsideCommand, AppError> {
    let mut obj = match resource {
        Some(bytes) => json_body::<GcsObject>(bytes, "the notification's object resource")?,
        None => GcsObject::default(),
    };
    if obj.bucket.is_empty() {
        obj.bucket = attrs.get("bucketId").cloned().unwrap_or_default();
    }
    if obj.name.is_empty() {
        obj.name = attrs.get("objectId").cloned().unwrap_or_default();
    }
    if obj.generation.is_none() {
        obj.generation = attrs.get("objectGeneration").and_then(|g| g.parse().ok());
    }
    if obj.bucket.is_empty() || obj.name.is_empty() {
        return Err(MessageError::UnnamedObject.into());
    }
    let change = match event_type {
        "OBJECT_FINALIZE" => GcsChange::Finalized,
        "OBJECT_DELETE" => GcsChange::Deleted,
        "OBJECT_ARCHIVE" => GcsChange::Archived,
        "OBJECT_METADATA_UPDATE" => GcsChange::MetadataUpdated,
        other => return Err(MessageError::UnknownEventType(other.to_owned()).into()),
    };
    Ok(OutsideCommand::Change(change, obj))
}

/// Reads a push body: the envelope, borrowed from the body, and its data
/// decoded once. The handlers' parser, public for the fuzz target.
pub fn decode_push(body: &[u8]) -> Result<(Payload, Delivery), AppError> {
    let envelope: PushEnvelope = serde_json::from_slice(body)
        .map_err(|e| message_json_error(&e, MessageError::NotEnvelope))?;
    let PushEnvelope {
        mut message,
        subscription,
        delivery_attempt,
    } = envelope;
    let attrs = message.attributes.take();
    // A task published by the service (or a message from a traced
    // publisher) continues its publisher's trace.
    if let Some(tp) = attrs.as_ref().and_then(|a| a.get("traceparent")) {
        crate::telemetry::continue_trace(tp);
    }
    let payload = decode_message(attrs, message.data.as_deref())?;
    let message_id = message.id();
    let subscription = subscription.as_deref().unwrap_or("");
    tracing::info!(
        message_id = message_id.unwrap_or(""),
        subscription,
        delivery_attempt = delivery_attempt.unwrap_or(0),
        "pubsub message"
    );
    let delivery = Delivery {
        id: message_id.map(|id| format!("{subscription}/{id}")),
    };
    Ok((payload, delivery))
}

/// What a push request costs, in bodies: the body (its contiguous copy
/// while it is read), then beside it the decoded data (three quarters of
/// the body at most); once the body is gone, the data and the command built
/// from it (a put's body: the data's size at most). Reserved once, before
/// anything is read.
pub(crate) const PUSH_COST: u64 = 2;

/// Reads a push request within the buffer budget: its whole cost
/// ([`PUSH_COST`]) reserved in one piece; the reservation stays with the
/// request.
async fn read_push(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Payload, Delivery, Reservation), AppError> {
    let (bytes, held) = read_body_within(
        headers,
        body,
        state.config.limits.max_body_bytes,
        PUSH_COST,
        &state.budget,
    )
    .await?;
    let (payload, delivery) = decode_push(&bytes)?;
    Ok((payload, delivery, held))
}

/// `POST /pubsub`: the outside door for Pub/Sub push (commands and Cloud
/// Storage notifications).
pub(crate) async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, AppError> {
    let (payload, delivery, _held) = read_push(&state, &headers, body).await?;
    let cmd = outside_command(payload, &state.doors)?;
    let replication = matches!(
        cmd,
        OutsideCommand::Replicate(_) | OutsideCommand::Change(..)
    );
    let outcome = super::counted(
        replication,
        execute(&state.storage, &state.replicator, cmd, &delivery).await,
    )?;
    Ok(Json(outcome.to_json()))
}

/// `POST /tasks`: the inside door, for the push subscription of
/// `TASKS_TOPIC` (its caller is checked against `TASKS_PUSH_EMAIL`). Only
/// the service's own tasks are accepted.
pub(crate) async fn handle_task(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, AppError> {
    let (payload, delivery, _held) = read_push(&state, &headers, body).await?;
    let task = match payload {
        Payload::Command(data) => Task::decode(&data, &state.doors)?,
        Payload::Notification { .. } => {
            return Err(WireError::NotAllowed(
                "Cloud Storage notifications go to /pubsub, not /tasks".into(),
            )
            .into())
        }
    };
    let replication = matches!(
        task,
        Task::Replicate(_) | Task::ReplicatePart(_) | Task::DeleteReplica(_)
    );
    let outcome = super::counted(
        replication,
        execute_task(&state.replicator, task, &delivery).await,
    )?;
    Ok(Json(outcome.to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_body_with_twin_fields() {
        let body = include_str!("../../../tests/fixtures/pubsub/emulator-push.json");
        let env: PushEnvelope = serde_json::from_str(body).unwrap();
        assert_eq!(env.message.id(), Some("1"));
        assert_eq!(env.message.published(), Some("2026-11-25T17:33:59.321Z"));
        // data is {"op":"put"}: a put without a key.
        assert_eq!(
            message_to_command(env.message).unwrap_err().code().as_str(),
            "invalid_command"
        );
        assert_eq!(
            decode_push(body.as_bytes()).unwrap().1.id.as_deref(),
            Some("projects/proj1/subscriptions/sub1/1")
        );
    }

    #[test]
    fn storage_notification() {
        let data = STANDARD.encode(include_str!(
            "../../../tests/fixtures/cloudevents/StorageObjectData-complex.json"
        ));
        let attrs: HashMap<String, String> = [
            ("eventType", "OBJECT_FINALIZE"),
            ("payloadFormat", "JSON_API_V1"),
            ("bucketId", "sample-bucket"),
            ("objectId", "MyFile"),
            ("objectGeneration", "96883251"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let msg = PubsubMessage {
            data: Some(data.into()),
            attributes: Some(attrs.clone()),
            ..Default::default()
        };
        match message_to_command(msg).unwrap() {
            OutsideCommand::Change(GcsChange::Finalized, o) => {
                assert_eq!(o.name, "MyFile");
                assert_eq!(o.generation, Some(96883251));
            }
            other => panic!("{other:?}"),
        }
        let mut a = attrs;
        a.insert("eventType".into(), "OBJECT_DELETE".into());
        a.insert("payloadFormat".into(), "NONE".into());
        let msg = PubsubMessage {
            attributes: Some(a),
            ..Default::default()
        };
        assert!(matches!(
            message_to_command(msg).unwrap(),
            OutsideCommand::Change(GcsChange::Deleted, _)
        ));
    }

    #[test]
    fn attributes_over_pubsubs_limits_are_refused() {
        let mut attrs = String::new();
        for i in 0..100_000 {
            attrs.push_str(&format!(r#""a{i}":"","#));
        }
        let body = format!(
            r#"{{"message":{{"data":"e30=","attributes":{{{attrs}"z":""}},"messageId":"1"}},"subscription":"s"}}"#
        );
        let e = decode_push(body.as_bytes()).unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.code().as_str()),
            (400, "invalid_attributes")
        );
        let body = format!(
            r#"{{"message":{{"data":"e30=","attributes":{{"a":"{}"}}}}}}"#,
            "v".repeat(1025)
        );
        assert_eq!(
            decode_push(body.as_bytes()).unwrap_err().code().as_str(),
            "invalid_attributes"
        );
    }
}
