//! `POST /pubsub`: a Pub/Sub push envelope
//! `{message:{data,attributes,messageId,publishTime},subscription,deliveryAttempt?}`
//! whose data is a command or a Cloud Storage notification.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use serde::Deserialize;

use crate::app::AppState;
use crate::command::{execute, parse_command, Command, StorageChange};
use crate::error::AppError;
use crate::replicate::GcsObject;

use super::{json_body, read_body};

/// A Pub/Sub message as pushed (camelCase and snake_case twins both accepted).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PubsubMessage {
    /// Base64 data.
    #[serde(default)]
    pub data: Option<String>,
    /// Attributes.
    #[serde(default)]
    pub attributes: Option<HashMap<String, String>>,
    /// Message id.
    #[serde(default, rename = "messageId")]
    pub message_id: Option<String>,
    #[serde(default, rename = "message_id")]
    message_id_snake: Option<String>,
    /// Publish time.
    #[serde(default, rename = "publishTime")]
    pub publish_time: Option<String>,
    #[serde(default, rename = "publish_time")]
    publish_time_snake: Option<String>,
}

impl PubsubMessage {
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

/// The push envelope.
#[derive(Debug, Clone, Deserialize)]
pub struct PushEnvelope {
    /// The message.
    pub message: PubsubMessage,
    /// Subscription name.
    #[serde(default)]
    pub subscription: Option<String>,
    /// Delivery attempt, when a dead-letter policy is set.
    #[serde(default, rename = "deliveryAttempt")]
    pub delivery_attempt: Option<i64>,
}

fn decode_data(data: &str) -> Result<Vec<u8>, AppError> {
    let d = data.trim();
    STANDARD
        .decode(d)
        .or_else(|_| URL_SAFE.decode(d))
        .map_err(|_| AppError::bad_request("invalid_base64", "message.data is not valid base64"))
}

/// Decodes a Pub/Sub message into a command: a Cloud Storage notification
/// when it carries `eventType`, else the JSON command in its data.
pub fn message_to_command(msg: &PubsubMessage) -> Result<Command, AppError> {
    let attrs = msg.attributes.clone().unwrap_or_default();
    if let Some(event_type) = attrs.get("eventType") {
        return notification_to_command(event_type, &attrs, msg.data.as_deref());
    }
    let data = msg
        .data
        .as_deref()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            AppError::bad_request(
                "invalid_message",
                "the message has no data: expected a JSON command or a Cloud Storage notification",
            )
        })?;
    parse_command(&decode_data(data)?)
}

fn notification_to_command(
    event_type: &str,
    attrs: &HashMap<String, String>,
    data: Option<&str>,
) -> Result<Command, AppError> {
    let mut obj = match (attrs.get("payloadFormat").map(String::as_str), data) {
        (Some("JSON_API_V1"), Some(d)) if !d.is_empty() => {
            let bytes = decode_data(d)?;
            json_body::<GcsObject>(&bytes, "the notification's object resource")?
        }
        _ => GcsObject::default(),
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
        return Err(AppError::bad_request(
            "invalid_notification",
            "a Cloud Storage notification names bucketId and objectId",
        ));
    }
    let change = match event_type {
        "OBJECT_FINALIZE" => StorageChange::Finalized,
        "OBJECT_DELETE" => StorageChange::Deleted,
        "OBJECT_ARCHIVE" => StorageChange::Archived,
        "OBJECT_METADATA_UPDATE" => StorageChange::MetadataUpdated,
        other => return Err(AppError::bad_request(
            "unknown_event_type",
            format!("unknown Cloud Storage eventType {other:?}; accepted: OBJECT_FINALIZE, OBJECT_DELETE, OBJECT_ARCHIVE, OBJECT_METADATA_UPDATE"),
        )),
    };
    Ok(Command::for_storage_change(change, obj))
}

/// `POST /pubsub`.
pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, AppError> {
    let bytes = read_body(&headers, body, state.config.max_body_bytes).await?;
    let envelope: PushEnvelope = json_body(&bytes, "not a Pub/Sub push envelope {message:{data,attributes,messageId,publishTime},subscription}")?;
    let cmd = message_to_command(&envelope.message)?;
    tracing::info!(
        message_id = envelope.message.id().unwrap_or(""),
        subscription = envelope.subscription.as_deref().unwrap_or(""),
        delivery_attempt = envelope.delivery_attempt.unwrap_or(0),
        "pubsub message"
    );
    let outcome = execute(&state.storage, &state.replicator, cmd).await?;
    Ok(Json(outcome.to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_body_with_twin_fields() {
        let env: PushEnvelope = serde_json::from_str(include_str!(
            "../../tests/fixtures/pubsub/emulator-push.json"
        ))
        .unwrap();
        assert_eq!(env.message.id(), Some("1"));
        assert_eq!(env.message.published(), Some("2026-11-25T17:33:59.321Z"));
        // data is {"op":"put"}: a put without a key.
        assert_eq!(
            message_to_command(&env.message).unwrap_err().code(),
            "invalid_command"
        );
    }

    #[test]
    fn storage_notification() {
        let data = STANDARD.encode(include_str!(
            "../../tests/fixtures/cloudevents/StorageObjectData-complex.json"
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
            data: Some(data),
            attributes: Some(attrs.clone()),
            ..Default::default()
        };
        match message_to_command(&msg).unwrap() {
            Command::Replicate(o) => {
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
            message_to_command(&msg).unwrap(),
            Command::DeleteReplica(_)
        ));
    }
}
