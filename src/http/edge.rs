//! What the HTTP edge refuses on its own, before any domain module is asked:
//! a body that cannot be read or is over its limit ([`BodyError`]), a Pub/Sub
//! push envelope or message that is not one ([`MessageError`]), a CloudEvent
//! that is not one ([`CloudEventError`]), a `/v1` request whose headers,
//! query or body say something the API does not take ([`ApiRequestError`]),
//! a route that does not exist ([`RouteError`]) and a request the service
//! stopped answering ([`Interrupted`]).
//!
//! The doors (`triggers`, `app`, `credential_server`) detect these; each
//! type has one `From` in [`crate::http::error`], which alone picks its
//! status and code. The messages are what the answer says.

use std::time::Duration;

/// The CloudEvent types `/events` accepts, in the order an unknown type's
/// answer names them.
pub(crate) const ACCEPTED_TYPES: &str = "google.cloud.pubsub.topic.v1.messagePublished, google.cloud.storage.object.v1.finalized, google.cloud.storage.object.v1.deleted, google.cloud.storage.object.v1.archived, google.cloud.storage.object.v1.metadataUpdated";

/// Reading a request body, at every door that reads one whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BodyError {
    /// The body broke off or could not be received.
    #[error("the request body could not be read: {0}")]
    Unreadable(String),
    /// The body is (or declares itself) longer than the route's limit.
    #[error("the request body is over {limit} bytes")]
    OverLimit {
        /// The route's limit, in bytes.
        limit: usize,
    },
    /// The body is not JSON, or not the JSON expected.
    #[error("{what}: {reason}")]
    NotJson {
        /// What the body should have been.
        what: &'static str,
        /// The parser's words.
        reason: String,
    },
}

/// A Pub/Sub push envelope and the message in it (`/pubsub`, `/tasks`,
/// and the data of a `messagePublished` CloudEvent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MessageError {
    /// The push body is not an envelope.
    #[error("not a Pub/Sub push envelope {{message:{{data,attributes,messageId,publishTime}},subscription}}: {0}")]
    NotEnvelope(String),
    /// The attributes are over Pub/Sub's limits (the message says which).
    #[error("{0}")]
    AttributesOverLimits(String),
    /// `message.data` is neither standard nor URL-safe base64.
    #[error("message.data is not valid base64")]
    InvalidBase64,
    /// A message with neither data nor a notification's `eventType`.
    #[error("the message has no data: expected a JSON command or a Cloud Storage notification")]
    NoData,
    /// A Cloud Storage notification that names no bucket or no object.
    #[error("a Cloud Storage notification names bucketId and objectId")]
    UnnamedObject,
    /// A Cloud Storage notification of another `eventType`.
    #[error("unknown Cloud Storage eventType {0:?}; accepted: OBJECT_FINALIZE, OBJECT_DELETE, OBJECT_ARCHIVE, OBJECT_METADATA_UPDATE")]
    UnknownEventType(String),
}

/// A CloudEvent at `/events`, either mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CloudEventError {
    /// A required attribute is missing (named as the mode spells it).
    #[error("not a CloudEvent: {0} is missing (binary mode needs ce-specversion, ce-id, ce-type and ce-source headers; structured mode a application/cloudevents+json body)")]
    Missing(&'static str),
    /// A `specversion` other than 1.0.
    #[error("unsupported CloudEvents specversion {0:?}; 1.0 is supported")]
    UnsupportedVersion(String),
    /// `data_base64` is not base64.
    #[error("data_base64 is not valid base64")]
    InvalidBase64,
    /// The data is not JSON text.
    #[error("the event data is not JSON: {0}")]
    DataNotJson(String),
    /// A Cloud Storage event whose data is not an object resource.
    #[error("the event data is not a Cloud Storage object: {0}")]
    NotStorageObject(String),
    /// A Cloud Storage event that names no bucket or no object (in its data,
    /// `ce-source` or `ce-subject`).
    #[error("a Cloud Storage event names its bucket and object")]
    UnnamedObject,
    /// A `messagePublished` event whose data is not a Pub/Sub message.
    #[error("the event data is not a Pub/Sub message: {0}")]
    NotMessage(String),
    /// A type not in [`ACCEPTED_TYPES`].
    #[error("unknown CloudEvent type {0:?}; accepted: {ACCEPTED_TYPES}")]
    UnknownType(String),
}

/// The `/v1` API's own checks of headers, query and body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiRequestError {
    /// `PUT /v1/objects`: a `Content-Length` over `MAX_OBJECT_BYTES`,
    /// refused before the body is read.
    #[error("{len} bytes is over the largest object of {max} bytes (MAX_OBJECT_BYTES)")]
    OverMaxObject {
        /// The declared length.
        len: u64,
        /// `MAX_OBJECT_BYTES`.
        max: u64,
    },
    /// An `If-None-Match` other than `*`.
    #[error("only If-None-Match: * is supported")]
    UnsupportedIfNoneMatch,
    /// A `Content-Length` that is not a number.
    #[error("Content-Length is not a number")]
    ContentLengthNotANumber,
    /// An `x-amz-meta-*` header value that is not visible ASCII.
    #[error("metadata values must be printable ASCII")]
    MetadataNotAscii,
    /// `GET /v1/objects?limit=` that is not a number.
    #[error("limit must be a number from 1 to 1000")]
    InvalidLimit,
    /// `POST /v1/presign` with a method other than GET or PUT.
    #[error("method {0:?} is not GET or PUT")]
    PresignMethod(String),
    /// `POST /v1/presign` with `expires_in` below one second (a longer one
    /// is capped, not refused).
    #[error("expires_in must be at least 1 second")]
    ExpiresInOutOfRange,
    /// `POST /v1/sync` without `bucket`.
    #[error(r#"missing field `bucket`; expected {{"bucket","prefix"?,"delete"?}}"#)]
    SyncWithoutBucket,
    /// A key in the path whose percent-decoding is not UTF-8.
    #[error("the key in the path is not UTF-8 once percent-decoded")]
    KeyNotUtf8,
    /// A query string the route cannot read (a field twice, bad encoding).
    #[error("query string: {0}")]
    BadQuery(String),
}

/// A request that reached no handler (the service's router and the
/// credential server's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RouteError {
    /// No route has this path.
    #[error("no such route")]
    NoSuchRoute,
    /// The route exists, not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The credential server's `/v1/credentials/{name}` for a name not in
    /// `AWS_ROLES`.
    #[error("no role named {0:?} in AWS_ROLES")]
    NoSuchRole(String),
}

/// A request the service stopped answering; the client should retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Interrupted {
    /// The request deadline (`REQUEST_TIMEOUT_SECONDS`) passed.
    #[error("the request took too long; retry later")]
    Deadline(Duration),
    /// The shutdown grace ended with the request in flight.
    #[error("the service is shutting down; retry later")]
    ShuttingDown,
}
