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
