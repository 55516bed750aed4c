//! Small helpers shared by every layer: error chains for logs and
//! messages, RFC 3339 timestamps, whole numbers given as JSON strings.

use std::time::SystemTime;

use serde::{Deserialize, Deserializer};

/// The error and its sources, joined with ": ".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Seconds since the Unix epoch, now (0 for a clock before it).
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 UTC timestamp with millisecond precision.
pub fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A whole number given as a JSON number or a string (as Cloud Storage
/// gives generations and sizes); an empty string or null is `None`.
pub(crate) fn de_i64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(i64),
        S(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::N(n)) => Ok(Some(n)),
        Some(Raw::S(s)) if s.is_empty() => Ok(None),
        Some(Raw::S(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a whole number"))),
    }
}

/// OAuth access tokens of the service's Google credentials for one scope,
/// through gcp_auth (the metadata server on Cloud Run, ADC elsewhere); the
/// provider is found on first use and shared.
pub(crate) struct AccessTokens {
    scope: &'static str,
    provider: tokio::sync::OnceCell<std::sync::Arc<dyn gcp_auth::TokenProvider>>,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl AccessTokens {
    pub(crate) fn new(scope: &'static str) -> AccessTokens {
        AccessTokens {
            scope,
            provider: tokio::sync::OnceCell::new(),
        }
    }

    /// `req` with `Authorization: Bearer <access token>`; `Err` says why no
    /// token could be had (transient: the credentials or the metadata
    /// server may come back).
    pub(crate) async fn authorize(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        let provider = self
            .provider
            .get_or_try_init(|| async { gcp_auth::provider().await })
            .await
            .map_err(|e| format!("no Google credentials: {}", error_chain(&e)))?;
        let token = provider
            .token(&[self.scope])
            .await
            .map_err(|e| format!("access token: {}", error_chain(&e)))?;
        Ok(req.bearer_auth(token.as_str()))
    }
}

/// At most this much of an error answer is read, for its message.
pub(crate) const MAX_ERROR_BODY_BYTES: usize = 4 * 1024;

/// Why a bounded read of an answer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LimitedReadError {
    /// The answer is larger than its bound; the rest was not read.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The transport failed while the answer was read.
    #[error("reading the answer: {}", error_chain(.0))]
    Transport(#[from] reqwest::Error),
}

/// The body of `resp`, refused as soon as it is known to be larger than
/// `max` bytes (by its `Content-Length`, else while it streams in): no more
/// than `max` bytes (and one chunk) are ever held.
pub(crate) async fn read_limited(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<bytes::Bytes, LimitedReadError> {
    let declared = resp.content_length().unwrap_or(0);
    if declared > max as u64 {
        return Err(LimitedReadError::TooLarge(max));
    }
    let mut body = bytes::BytesMut::with_capacity(declared as usize);
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(LimitedReadError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// What an error answer says, for a message: at most
/// [`MAX_ERROR_BODY_BYTES`] of it are read, control characters dropped,
/// cut to 300 characters. A body that cannot be read says nothing.
pub(crate) async fn error_text(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ERROR_BODY_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&body)
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect()
}

/// The content of the file at `path`, refused (`InvalidData`) when it is
/// larger than `max` bytes: at most `max + 1` bytes are read.
pub(crate) fn read_file_limited(path: &std::path::Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut body = Vec::new();
    std::fs::File::open(path)?
        .take(max as u64 + 1)
        .read_to_end(&mut body)?;
    if body.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(body)
}

/// Serializes a number as its decimal text (Cloud Storage's generations
/// travel as strings in JSON).
pub(crate) fn as_text<S: serde::Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

/// As [`as_text`], for a number that may be absent (`null`).
pub(crate) fn opt_as_text<S: serde::Serializer>(n: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match n {
        Some(n) => s.collect_str(n),
        None => s.serialize_none(),
    }
}
