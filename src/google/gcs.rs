//! Cloud Storage, read side: the JSON API client ([`GcsClient`]), the object
//! resource ([`GcsObject`]), its errors ([`GcsError`]) and CRC32C helpers.
//!
//! Environment: `STORAGE_EMULATOR_HOST` (`host:port` or a URL) replaces the
//! Cloud Storage endpoint; no token is sent then, as in Google's libraries.
//! Otherwise an access token comes from gcp_auth (the metadata server on
//! Cloud Run).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer};

use crate::json_bounds::CustomMetadata;
use crate::retry::{is_transient_status, Backoff, Transient};
use crate::util::{de_i64_opt, error_chain, error_text, read_limited, AccessTokens};

const READ_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_only";
/// The largest object resource read: custom metadata is at most 8 KiB, the
/// rest a few hundred bytes.
pub(crate) const MAX_RESOURCE_BYTES: usize = 1024 * 1024;
const GCS_ENDPOINT: &str = "https://storage.googleapis.com";

fn u64_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(de_i64_opt(d)?.and_then(|v| u64::try_from(v).ok()))
}

/// A Cloud Storage object (generation) named by an event or a command; the
/// fields of the JSON API object resource that replication uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcsObject {
    #[serde(default)]
    pub(crate) bucket: String,
    #[serde(default)]
    pub(crate) name: String,
    /// Generation; strings and numbers both accepted.
    #[serde(default, deserialize_with = "de_i64_opt")]
    pub(crate) generation: Option<i64>,
    /// Metageneration (of the generation's metadata); strings and numbers
    /// both accepted.
    #[serde(default, deserialize_with = "de_i64_opt")]
    pub(crate) metageneration: Option<i64>,
    /// CRC32C, base64 of the big-endian bytes.
    #[serde(default)]
    pub(crate) crc32c: Option<String>,
    #[serde(default, deserialize_with = "u64_or_string")]
    pub(crate) size: Option<u64>,
    #[serde(default)]
    pub(crate) content_type: Option<String>,
    #[serde(default)]
    pub(crate) content_encoding: Option<String>,
    #[serde(default)]
    pub(crate) content_disposition: Option<String>,
    #[serde(default)]
    pub(crate) cache_control: Option<String>,
    #[serde(default)]
    pub(crate) content_language: Option<String>,
    /// Custom metadata, bounded while it is read (see [`CustomMetadata`]).
    #[serde(default)]
    pub(crate) metadata: CustomMetadata,
    /// When the object's metadata last changed (RFC 3339): the start of
    /// its replication lag.
    #[serde(default)]
    pub(crate) updated: Option<String>,
}

/// Why a Cloud Storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum GcsError {
    /// The generation asked for no longer exists (404 or 412).
    #[error("the object generation is gone (HTTP {0})")]
    Gone(u16),
    /// Any other failure; `transient` when trying again may succeed.
    #[error("Cloud Storage: {message}")]
    Failed { message: String, transient: bool },
}

impl Transient for GcsError {
    fn is_transient(&self) -> bool {
        matches!(
            self,
            GcsError::Failed {
                transient: true,
                ..
            }
        )
    }
}

/// Reads objects from the Cloud Storage JSON API.
pub(crate) struct GcsClient {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    emulator: bool,
    access_tokens: AccessTokens,
    backoff: Backoff,
}

impl std::fmt::Debug for GcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsClient")
            .field("base", &self.base)
            .field("emulator", &self.emulator)
            .finish_non_exhaustive()
    }
}

const NAME_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl GcsClient {
    /// The JSON API at `storage.googleapis.com`, or `STORAGE_EMULATOR_HOST`.
    pub(crate) fn new(emulator_host: Option<&str>) -> GcsClient {
        let (base, emulator) = match emulator_host {
            Some(h) if h.starts_with("http://") || h.starts_with("https://") => {
                (h.trim_end_matches('/').to_owned(), true)
            }
            Some(h) => (format!("http://{}", h.trim_end_matches('/')), true),
            None => (GCS_ENDPOINT.to_owned(), false),
        };
        GcsClient {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .read_timeout(Duration::from_secs(60))
                .user_agent(concat!("gcp-aws-bridge/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("a TLS client with the built-in roots"),
            base,
            emulator,
            access_tokens: AccessTokens::new(READ_SCOPE),
            backoff: Backoff::default(),
        }
    }

    async fn authorize(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, GcsError> {
        if self.emulator {
            return Ok(req);
        }
        self.access_tokens
            .authorize(req)
            .await
            .map_err(|message| GcsError::Failed {
                message,
                transient: true,
            })
    }

    pub(crate) fn object_url(&self, bucket: &str, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            percent_encoding::utf8_percent_encode(bucket, NAME_ENCODE),
            percent_encoding::utf8_percent_encode(name, NAME_ENCODE)
        )
    }

    pub(crate) async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, GcsError> {
        let resp = self
            .authorize(req)
            .await?
            .send()
            .await
            .map_err(|e| GcsError::Failed {
                message: format!("request failed: {}", error_chain(&e)),
                transient: true,
            })?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(resp);
        }
        if status == 404 || status == 412 {
            return Err(GcsError::Gone(status));
        }
        let text = error_text(resp).await;
        Err(GcsError::Failed {
            message: format!("HTTP {status}: {text}"),
            // 401/403 are fixable by granting access: keep the event.
            transient: is_transient_status(status) || status == 401 || status == 403,
        })
    }

    /// The object resource of the live generation.
    pub(crate) async fn metadata(&self, bucket: &str, name: &str) -> Result<GcsObject, GcsError> {
        self.backoff
            .retry(|| async {
                let resp = self
                    .send(self.http.get(self.object_url(bucket, name)))
                    .await?;
                let body =
                    read_limited(resp, MAX_RESOURCE_BYTES)
                        .await
                        .map_err(|e| GcsError::Failed {
                            message: format!("object resource: {e}"),
                            transient: true,
                        })?;
                serde_json::from_slice::<GcsObject>(&body).map_err(|e| GcsError::Failed {
                    message: format!("unreadable object resource: {e}"),
                    transient: true,
                })
            })
            .await
    }

    /// Starts the download of generation `generation`, bytes as stored (see
    /// [`GcsClient::media`]).
    pub(crate) async fn download(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
    ) -> Result<reqwest::Response, GcsError> {
        self.media(bucket, name, generation, None).await
    }

    /// Bytes `start..=end` of generation `generation`, as stored (a part
    /// task's range).
    pub(crate) async fn download_range(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        start: u64,
        end: u64,
    ) -> Result<reqwest::Response, GcsError> {
        self.media(bucket, name, generation, Some((start, end)))
            .await
    }

    /// A media read pinned to `generation` (`generation=`, and
    /// `ifGenerationMatch`: only while it is the live one), whole or one
    /// range. An answer whose `x-goog-generation` names another generation
    /// counts as gone (412), as Cloud Storage's own answer to the condition
    /// would.
    async fn media(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        range: Option<(u64, u64)>,
    ) -> Result<reqwest::Response, GcsError> {
        let wanted = generation.to_string();
        let range = range.map(|(start, end)| format!("bytes={start}-{end}"));
        self.backoff
            .retry(|| async {
                let mut req = self
                    .http
                    .get(self.object_url(bucket, name))
                    .query(&[
                        ("alt", "media"),
                        ("generation", wanted.as_str()),
                        ("ifGenerationMatch", wanted.as_str()),
                    ])
                    // Serve gzip-encoded objects as stored, so bytes and CRC32C match.
                    .header(reqwest::header::ACCEPT_ENCODING, "gzip");
                if let Some(range) = &range {
                    req = req.header(reqwest::header::RANGE, range.as_str());
                }
                let resp = self.send(req).await?;
                let served = resp
                    .headers()
                    .get("x-goog-generation")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<i64>().ok());
                match served {
                    Some(g) if g != generation => Err(GcsError::Gone(412)),
                    _ => Ok(resp),
                }
            })
            .await
    }
}

/// CRC32C from a base64 value.
pub(crate) fn decode_crc(b64: &str) -> Option<u32> {
    let bytes = STANDARD.decode(b64.trim()).ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// The `crc32c=` part of `x-goog-hash` headers.
pub(crate) fn goog_hash_crc(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("x-goog-hash")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("crc32c=").map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_resource_accepts_strings_and_numbers() {
        let o: GcsObject = serde_json::from_str(include_str!(
            "../../tests/fixtures/cloudevents/StorageObjectData-complex.json"
        ))
        .unwrap();
        assert_eq!(o.generation, Some(96883251));
        assert_eq!(o.metageneration, Some(1));
        assert_eq!(o.size, Some(0));
        assert_eq!(o.content_encoding.as_deref(), Some("gzip"));
        let o: GcsObject = serde_json::from_str(
            r#"{"bucket":"b","name":"n","generation":"1588778055917163","metageneration":"3","size":"12"}"#,
        )
        .unwrap();
        assert_eq!(o.generation, Some(1588778055917163));
        assert_eq!(o.metageneration, Some(3));
        assert_eq!(o.size, Some(12));
    }

    #[test]
    fn crc_decoding() {
        assert_eq!(decode_crc("4waSgw=="), Some(0xE306_9283));
        assert_eq!(decode_crc("AAAAAA=="), Some(0));
        assert_eq!(decode_crc("nope"), None);
    }
}
