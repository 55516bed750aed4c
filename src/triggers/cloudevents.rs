//! `POST /events`: CloudEvents 1.0 over HTTP, binary mode (`ce-*` headers,
//! data in the body) and structured mode (`application/cloudevents+json`).
//!
//! Types: `google.cloud.pubsub.topic.v1.messagePublished` (the message is a
//! command or a Storage notification), `google.cloud.storage.object.v1.finalized`
//! (replicate), `.deleted` and `.archived` (remove the replica unless newer),
//! `.metadataUpdated` (the replica of that generation takes the new metadata).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use crate::command::execute;
use crate::error::AppError;
use crate::gcs::GcsObject;
use crate::state::AppState;
use crate::wire::{Delivery, DoorRules, OutsideCommand, StorageChange};

use super::pubsub::{message_to_command_with, PubsubMessage};
use super::{json_body, read_body_within};

/// The accepted event types.
pub(crate) const ACCEPTED_TYPES: &str = "google.cloud.pubsub.topic.v1.messagePublished, google.cloud.storage.object.v1.finalized, google.cloud.storage.object.v1.deleted, google.cloud.storage.object.v1.archived, google.cloud.storage.object.v1.metadataUpdated";

/// A decoded CloudEvent.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub(crate) id: String,
    pub(crate) event_type: String,
    pub(crate) source: String,
    pub(crate) subject: Option<String>,
    /// The data, as JSON.
    pub(crate) data: serde_json::Value,
}

#[derive(Deserialize)]
struct Structured {
    specversion: Option<String>,
    id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    source: Option<String>,
    subject: Option<String>,
    data: Option<serde_json::Value>,
    data_base64: Option<String>,
}

fn missing(attr: &str) -> AppError {
    AppError::bad_request(
        "invalid_cloudevent",
        format!("not a CloudEvent: {attr} is missing (binary mode needs ce-specversion, ce-id, ce-type and ce-source headers; structured mode a application/cloudevents+json body)"),
    )
}

fn check_version(v: Option<&str>) -> Result<(), AppError> {
    match v {
        Some("1.0") => Ok(()),
        Some(other) => Err(AppError::bad_request(
            "invalid_cloudevent",
            format!("unsupported CloudEvents specversion {other:?}; 1.0 is supported"),
        )),
        None => Err(missing("specversion")),
    }
}

/// Decodes a CloudEvent from headers and body, either mode.
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<CloudEvent, AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/cloudevents+json") {
        let s: Structured = json_body(body, "not a structured CloudEvent")?;
        check_version(s.specversion.as_deref())?;
        let data = match (s.data, s.data_base64) {
            (Some(d), _) => d,
            (None, Some(b64)) => {
                let bytes = STANDARD.decode(b64.trim()).map_err(|_| {
                    AppError::bad_request("invalid_base64", "data_base64 is not valid base64")
                })?;
                json_body(&bytes, "the event data is not JSON")?
            }
            (None, None) => serde_json::Value::Null,
        };
        return Ok(CloudEvent {
            id: s
                .id
                .filter(|v| !v.is_empty())
                .ok_or_else(|| missing("id"))?,
            event_type: s
                .event_type
                .filter(|v| !v.is_empty())
                .ok_or_else(|| missing("type"))?,
            source: s
                .source
                .filter(|v| !v.is_empty())
                .ok_or_else(|| missing("source"))?,
            subject: s.subject,
            data,
        });
    }
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .filter(|v| !v.is_empty())
    };
    check_version(h("ce-specversion").as_deref())?;
    let data = if body.is_empty() {
        serde_json::Value::Null
    } else {
        json_body(body, "the event data is not JSON")?
    };
    Ok(CloudEvent {
        id: h("ce-id").ok_or_else(|| missing("ce-id"))?,
        event_type: h("ce-type").ok_or_else(|| missing("ce-type"))?,
        source: h("ce-source").ok_or_else(|| missing("ce-source"))?,
        subject: h("ce-subject"),
        data,
    })
}

fn storage_object(ev: &CloudEvent) -> Result<GcsObject, AppError> {
    let mut obj: GcsObject = serde_json::from_value(ev.data.clone()).map_err(|e| {
        AppError::bad_request(
            "invalid_event",
            format!("the event data is not a Cloud Storage object: {e}"),
        )
    })?;
    if obj.bucket.is_empty() {
        // ce-source: //storage.googleapis.com/projects/_/buckets/B
        obj.bucket = ev
            .source
            .rsplit_once("/buckets/")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
    }
    if obj.name.is_empty() {
        obj.name = ev
            .subject
            .as_deref()
            .and_then(|s| s.strip_prefix("objects/"))
            .unwrap_or_default()
            .to_owned();
    }
    if obj.bucket.is_empty() || obj.name.is_empty() {
        return Err(AppError::bad_request(
            "invalid_event",
            "a Cloud Storage event names its bucket and object",
        ));
    }
    Ok(obj)
}

fn change_command(change: StorageChange, ev: &CloudEvent) -> Result<OutsideCommand, AppError> {
    Ok(OutsideCommand::Change(change, storage_object(ev)?))
}

/// Maps an event to a command (every op allowed; the handler applies the
/// door's rules).
pub fn event_to_command(ev: &CloudEvent) -> Result<OutsideCommand, AppError> {
    event_to_command_with(ev, &DoorRules::default())
}

/// Maps an event to a command allowed by `rules`.
pub(crate) fn event_to_command_with(
    ev: &CloudEvent,
    rules: &DoorRules,
) -> Result<OutsideCommand, AppError> {
    let cmd = match ev.event_type.as_str() {
        "google.cloud.pubsub.topic.v1.messagePublished" => {
            // data is {message:{...},subscription}; a bare message is accepted too.
            let msg_value = ev
                .data
                .get("message")
                .cloned()
                .unwrap_or_else(|| ev.data.clone());
            let msg: PubsubMessage = serde_json::from_value(msg_value).map_err(|e| {
                AppError::bad_request(
                    "invalid_event",
                    format!("the event data is not a Pub/Sub message: {e}"),
                )
            })?;
            return message_to_command_with(&msg, rules);
        }
        "google.cloud.storage.object.v1.finalized" => change_command(StorageChange::Finalized, ev),
        "google.cloud.storage.object.v1.deleted" => change_command(StorageChange::Deleted, ev),
        "google.cloud.storage.object.v1.archived" => change_command(StorageChange::Archived, ev),
        "google.cloud.storage.object.v1.metadataUpdated" => {
            change_command(StorageChange::MetadataUpdated, ev)
        }
        other => Err(AppError::bad_request(
            "unknown_event_type",
            format!("unknown CloudEvent type {other:?}; accepted: {ACCEPTED_TYPES}"),
        )),
    }?;
    cmd.check(rules)?;
    Ok(cmd)
}

/// `POST /events`.
pub(crate) async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, AppError> {
    let (bytes, mut held) = read_body_within(
        &headers,
        body,
        state.config.limits.max_body_bytes,
        &state.budget,
    )
    .await?;
    // Decoding holds the event as a JSON value and the message's decoded
    // data beside the body: about twice its size again.
    held.merge(state.budget.reserve(2 * bytes.len() as u64).await?);
    let ev = decode(&headers, &bytes)?;
    drop(bytes);
    let cmd = event_to_command_with(&ev, &state.doors)?;
    tracing::info!(ce_id = %ev.id, ce_type = %ev.event_type, ce_source = %ev.source, "cloudevent");
    // A message delivered again carries the same ce-id.
    let delivery = Delivery {
        id: Some(format!("{}/{}", ev.source, ev.id)),
    };
    let outcome = execute(&state.storage, &state.replicator, cmd, &delivery).await?;
    Ok(Json(outcome.to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(ty: &str, subject: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", "1.0".parse().unwrap());
        h.insert("ce-id", "1234".parse().unwrap());
        h.insert("ce-type", ty.parse().unwrap());
        h.insert(
            "ce-source",
            "//storage.googleapis.com/projects/_/buckets/sample-bucket"
                .parse()
                .unwrap(),
        );
        if let Some(s) = subject {
            h.insert("ce-subject", s.parse().unwrap());
        }
        h.insert("content-type", "application/json".parse().unwrap());
        h
    }

    #[test]
    fn binary_storage_event() {
        let body =
            include_bytes!("../../tests/fixtures/cloudevents/StorageObjectData-complex.json");
        let ev = decode(
            &binary(
                "google.cloud.storage.object.v1.finalized",
                Some("objects/MyFile"),
            ),
            body,
        )
        .unwrap();
        match event_to_command(&ev).unwrap() {
            OutsideCommand::Change(StorageChange::Finalized, o) => {
                assert_eq!(o.bucket, "sample-bucket");
                assert_eq!(o.name, "MyFile");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn structured_pubsub_event() {
        let data: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/cloudevents/MessagePublishedData-duplicatedFields.json"
        ))
        .unwrap();
        let body = serde_json::json!({
            "specversion": "1.0", "id": "1", "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/t", "data": data
        });
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "application/cloudevents+json; charset=utf-8"
                .parse()
                .unwrap(),
        );
        let ev = decode(&h, body.to_string().as_bytes()).unwrap();
        // The sample's data is the bytes 01 02 03 04: not a command.
        assert_eq!(event_to_command(&ev).unwrap_err().code(), "invalid_json");
    }

    #[test]
    fn missing_headers_and_unknown_types() {
        let mut h = binary("google.cloud.storage.object.v1.finalized", None);
        h.remove("ce-id");
        assert_eq!(decode(&h, b"{}").unwrap_err().code(), "invalid_cloudevent");
        let h = binary("com.example.unknown", None);
        let ev = decode(&h, b"{}").unwrap();
        assert_eq!(
            event_to_command(&ev).unwrap_err().code(),
            "unknown_event_type"
        );
    }
}
