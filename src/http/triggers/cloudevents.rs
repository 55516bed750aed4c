//! `POST /events`: CloudEvents 1.0 over HTTP, binary mode (`ce-*` headers,
//! data in the body) and structured mode (`application/cloudevents+json`).
//!
//! Types: `google.cloud.pubsub.topic.v1.messagePublished` (the message is a
//! command or a Storage notification), `google.cloud.storage.object.v1.finalized`
//! (replicate), `.deleted` and `.archived` (remove the replica unless newer),
//! `.metadataUpdated` (the replica of that generation takes the new metadata).

use std::borrow::Cow;
use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::google::gcs::GcsObject;
use crate::http::edge::CloudEventError;
use crate::http::error::AppError;
use crate::http::state::AppState;
use crate::replication::command::execute;
use crate::wire::{Delivery, DoorRules, GcsChange, OutsideCommand};

use super::pubsub::{message_json_error, message_to_command_with, PubsubMessage};
use super::{json_body, read_body_within};

/// What an event costs, in bodies, reserved once before the body is read:
/// the body, held until the command is built (the event's data is
/// borrowed from it); beside it `data_base64` decoded (three quarters of
/// the body), a message's data decoded from that (three quarters again) and
/// the put command built from it (its size at most), and the attributes
/// copied out of the body (together at most its size).
pub(crate) const EVENT_COST: u64 = 3;

/// A decoded CloudEvent: its attributes and its data, JSON text borrowed
/// from the body (binary mode, structured `data`) or decoded from
/// `data_base64`; never a generic JSON tree. The data is read later straight
/// into the one type the event's type names.
#[derive(Debug, Clone)]
pub struct CloudEvent<'a> {
    pub(crate) id: String,
    pub(crate) event_type: String,
    pub(crate) source: String,
    pub(crate) subject: Option<String>,
    /// The data as JSON text; `None` when the event has none.
    pub(crate) data: Option<Cow<'a, RawValue>>,
}

impl CloudEvent<'_> {
    /// The data's JSON text (`null` when there is none).
    fn data_json(&self) -> &str {
        self.data.as_deref().map_or("null", RawValue::get)
    }
}

#[derive(Deserialize)]
struct Structured<'a> {
    #[serde(default, borrow, deserialize_with = "crate::json_bounds::opt_cow")]
    specversion: Option<Cow<'a, str>>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    event_type: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "crate::json_bounds::opt_cow")]
    data_base64: Option<Cow<'a, str>>,
}

/// The data of a `messagePublished` event, `{message:{...},subscription}`,
/// or a bare message: both read in one pass, nothing but these kept.
#[derive(Deserialize)]
struct Published<'a> {
    #[serde(default, borrow)]
    message: Option<PubsubMessage<'a>>,
    #[serde(default, borrow, deserialize_with = "crate::json_bounds::opt_cow")]
    data: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "crate::json_bounds::attributes")]
    attributes: Option<HashMap<String, String>>,
}

fn check_version(v: Option<&str>) -> Result<(), CloudEventError> {
    match v {
        Some("1.0") => Ok(()),
        Some(other) => Err(CloudEventError::UnsupportedVersion(other.to_owned())),
        None => Err(CloudEventError::Missing("specversion")),
    }
}

fn not_json(e: impl std::fmt::Display) -> CloudEventError {
    CloudEventError::DataNotJson(e.to_string())
}

/// Decodes a CloudEvent from headers and body, either mode; its data stays
/// borrowed from the body.
pub fn decode<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<CloudEvent<'a>, AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/cloudevents+json") {
        let s: Structured = json_body(body, "not a structured CloudEvent")?;
        check_version(s.specversion.as_deref())?;
        let data = match (s.data, s.data_base64) {
            (Some(d), _) => Some(Cow::Borrowed(d)),
            (None, Some(b64)) => {
                let bytes = STANDARD
                    .decode(b64.trim())
                    .map_err(|_| CloudEventError::InvalidBase64)?;
                let text = String::from_utf8(bytes).map_err(not_json)?;
                Some(Cow::Owned(RawValue::from_string(text).map_err(not_json)?))
            }
            (None, None) => None,
        };
        return Ok(CloudEvent {
            id: s
                .id
                .filter(|v| !v.is_empty())
                .ok_or(CloudEventError::Missing("id"))?,
            event_type: s
                .event_type
                .filter(|v| !v.is_empty())
                .ok_or(CloudEventError::Missing("type"))?,
            source: s
                .source
                .filter(|v| !v.is_empty())
                .ok_or(CloudEventError::Missing("source"))?,
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
    // Checked to be JSON (walked, nothing built), kept borrowed.
    let data = if body.is_empty() {
        None
    } else {
        Some(Cow::Borrowed(
            serde_json::from_slice::<&RawValue>(body).map_err(not_json)?,
        ))
    };
    Ok(CloudEvent {
        id: h("ce-id").ok_or(CloudEventError::Missing("ce-id"))?,
        event_type: h("ce-type").ok_or(CloudEventError::Missing("ce-type"))?,
        source: h("ce-source").ok_or(CloudEventError::Missing("ce-source"))?,
        subject: h("ce-subject"),
        data,
    })
}

/// The Cloud Storage object resource an event's data is, read straight
/// from its JSON text (its metadata bounded while it is read).
fn storage_object(ev: &CloudEvent<'_>) -> Result<GcsObject, AppError> {
    let mut obj: GcsObject = serde_json::from_str(ev.data_json())
        .map_err(|e| CloudEventError::NotStorageObject(e.to_string()))?;
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
        return Err(CloudEventError::UnnamedObject.into());
    }
    Ok(obj)
}

fn change_command(change: GcsChange, ev: &CloudEvent<'_>) -> Result<OutsideCommand, AppError> {
    Ok(OutsideCommand::Change(change, storage_object(ev)?))
}

/// Maps an event to a command (every op allowed; the handler applies the
/// door's rules).
pub fn event_to_command(ev: &CloudEvent<'_>) -> Result<OutsideCommand, AppError> {
    event_to_command_with(ev, &DoorRules::default())
}

/// Maps an event to a command allowed by `rules`.
pub(crate) fn event_to_command_with(
    ev: &CloudEvent<'_>,
    rules: &DoorRules,
) -> Result<OutsideCommand, AppError> {
    let cmd = match ev.event_type.as_str() {
        "google.cloud.pubsub.topic.v1.messagePublished" => {
            // data is {message:{...},subscription}; a bare message is accepted too.
            let published: Published = serde_json::from_str(ev.data_json())
                .map_err(|e| message_json_error(&e, CloudEventError::NotMessage))?;
            let msg = published.message.unwrap_or(PubsubMessage {
                data: published.data,
                attributes: published.attributes,
                ..PubsubMessage::default()
            });
            return message_to_command_with(msg, rules);
        }
        "google.cloud.storage.object.v1.finalized" => change_command(GcsChange::Finalized, ev),
        "google.cloud.storage.object.v1.deleted" => change_command(GcsChange::Deleted, ev),
        "google.cloud.storage.object.v1.archived" => change_command(GcsChange::Archived, ev),
        "google.cloud.storage.object.v1.metadataUpdated" => {
            change_command(GcsChange::MetadataUpdated, ev)
        }
        other => Err(CloudEventError::UnknownType(other.to_owned()).into()),
    }?;
    cmd.check(rules)?;
    Ok(cmd)
}

/// What the `/events` handler makes of a request: the event decoded and
/// mapped to a command allowed by `rules`, and the delivery it came in.
pub(crate) fn read_event(
    headers: &HeaderMap,
    body: &[u8],
    rules: &DoorRules,
) -> Result<(OutsideCommand, Delivery), AppError> {
    let ev = decode(headers, body)?;
    let cmd = event_to_command_with(&ev, rules)?;
    tracing::info!(ce_id = %ev.id, ce_type = %ev.event_type, ce_source = %ev.source, "cloudevent");
    // A message delivered again carries the same ce-id.
    let delivery = Delivery {
        id: Some(format!("{}/{}", ev.source, ev.id)),
    };
    Ok((cmd, delivery))
}

/// The `/events` handler's parser with every op allowed (public for the
/// fuzz target): headers and body to a command and its delivery.
pub fn decode_event(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(OutsideCommand, Delivery), AppError> {
    read_event(headers, body, &DoorRules::all())
}

/// `POST /events`: the whole cost of the request ([`EVENT_COST`]) reserved
/// once; the body is dropped once the command is built.
pub(crate) async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, AppError> {
    let (bytes, _held) = read_body_within(
        &headers,
        body,
        state.config.limits.max_body_bytes,
        EVENT_COST,
        &state.budget,
    )
    .await?;
    let (cmd, delivery) = read_event(&headers, &bytes, &state.doors)?;
    drop(bytes);
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
            include_bytes!("../../../tests/fixtures/cloudevents/StorageObjectData-complex.json");
        let ev = decode(
            &binary(
                "google.cloud.storage.object.v1.finalized",
                Some("objects/MyFile"),
            ),
            body,
        )
        .unwrap();
        match event_to_command(&ev).unwrap() {
            OutsideCommand::Change(GcsChange::Finalized, o) => {
                assert_eq!(o.bucket, "sample-bucket");
                assert_eq!(o.name, "MyFile");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn structured_pubsub_event() {
        let data: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/cloudevents/MessagePublishedData-duplicatedFields.json"
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
        let body = body.to_string();
        let ev = decode(&h, body.as_bytes()).unwrap();
        // The sample's data is the bytes 01 02 03 04: not a command.
        assert_eq!(
            event_to_command(&ev).unwrap_err().code().as_str(),
            "invalid_json"
        );
        // The same message bare, and in data_base64.
        let bare = serde_json::json!({
            "specversion": "1.0", "id": "1", "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "s", "data_base64": STANDARD.encode(data["message"].to_string()),
        })
        .to_string();
        let ev = decode(&h, bare.as_bytes()).unwrap();
        assert_eq!(
            event_to_command(&ev).unwrap_err().code().as_str(),
            "invalid_json"
        );
        let put = STANDARD.encode(r#"{"op":"put","key":"k","body":"hi"}"#);
        let bare = serde_json::json!({
            "specversion": "1.0", "id": "1", "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "s", "data": {"data": put, "attributes": {"a": "b"}},
        })
        .to_string();
        let (cmd, delivery) = decode_event(&h, bare.as_bytes()).unwrap();
        assert!(
            matches!(&cmd, OutsideCommand::Put { key, .. } if key == "k"),
            "{cmd:?}"
        );
        assert_eq!(delivery.id.as_deref(), Some("s/1"));
    }

    #[test]
    fn data_that_is_not_the_events_type_is_refused() {
        let h = binary(
            "google.cloud.storage.object.v1.finalized",
            Some("objects/MyFile"),
        );
        let zeros = format!("[{}0]", "0,".repeat(100_000));
        let e = decode_event(&h, zeros.as_bytes()).unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.code().as_str()),
            (400, "invalid_event")
        );
        let mut s = HeaderMap::new();
        s.insert(
            "content-type",
            "application/cloudevents+json".parse().unwrap(),
        );
        let structured = format!(
            r#"{{"specversion":"1.0","id":"1","type":"google.cloud.storage.object.v1.finalized","source":"//storage.googleapis.com/projects/_/buckets/b","subject":"objects/o","data":{zeros}}}"#
        );
        let e = decode_event(&s, structured.as_bytes()).unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.code().as_str()),
            (400, "invalid_event")
        );
        let e = decode_event(&h, b"{not json").unwrap_err();
        assert_eq!(e.code().as_str(), "invalid_json");
        // No data at all: not an object either.
        let e = decode_event(&h, b"").unwrap_err();
        assert_eq!(e.code().as_str(), "invalid_event");
        let mut p = binary("google.cloud.pubsub.topic.v1.messagePublished", None);
        p.insert("ce-id", "2".parse().unwrap());
        let e = decode_event(&p, zeros.as_bytes()).unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.code().as_str()),
            (400, "invalid_event")
        );
    }

    #[test]
    fn missing_headers_and_unknown_types() {
        let mut h = binary("google.cloud.storage.object.v1.finalized", None);
        h.remove("ce-id");
        assert_eq!(
            decode(&h, b"{}").unwrap_err().code().as_str(),
            "invalid_cloudevent"
        );
        let h = binary("com.example.unknown", None);
        let ev = decode(&h, b"{}").unwrap();
        assert_eq!(
            event_to_command(&ev).unwrap_err().code().as_str(),
            "unknown_event_type"
        );
    }
}
