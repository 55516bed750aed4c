//! IAM Credentials `generateIdToken` for a service account, authorized with
//! the caller's own Google credentials (gcp_auth: user credentials from
//! `gcloud auth application-default login`, a key file, or the metadata
//! server). For local use as a given service account.

use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::jwt::SecretToken;

use super::{send_for_body, IdentityError};
use crate::util::error_chain;

pub(super) const NAME: &str = "impersonate";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

pub(super) struct ImpersonateSource {
    client: reqwest::Client,
    url: String,
    token_provider: OnceCell<std::sync::Arc<dyn gcp_auth::TokenProvider>>,
}

#[derive(Deserialize)]
struct GenerateIdTokenResponse {
    token: String,
}

/// What a path segment encodes of a service account's email: all but the
/// unreserved characters and `@`, so `sa@p.iam.gserviceaccount.com` goes
/// out as written, as Google's libraries send it.
const SA_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

impl ImpersonateSource {
    pub(super) fn new(client: reqwest::Client, endpoint: &str, service_account: String) -> Self {
        let sa = percent_encoding::utf8_percent_encode(&service_account, SA_SEGMENT);
        ImpersonateSource {
            client,
            url: format!(
                "{}/v1/projects/-/serviceAccounts/{sa}:generateIdToken",
                endpoint.trim_end_matches('/')
            ),
            token_provider: OnceCell::new(),
        }
    }

    async fn access_token(&self) -> Result<SecretToken, IdentityError> {
        let provider = self
            .token_provider
            .get_or_try_init(|| async {
                gcp_auth::provider().await.map_err(|e| {
                    IdentityError::permanent(
                        NAME,
                        format!(
                            "no Google credentials to impersonate with: {}",
                            error_chain(&e)
                        ),
                    )
                })
            })
            .await?;
        let token = provider.token(&[SCOPE]).await.map_err(|e| {
            IdentityError::transient(NAME, format!("access token: {}", error_chain(&e)))
        })?;
        Ok(SecretToken::new(token.as_str()))
    }

    pub(super) async fn fetch(&self, audience: &str) -> Result<SecretToken, IdentityError> {
        let access = self.access_token().await?;
        let body = send_for_body(
            NAME,
            self.client
                .post(&self.url)
                .bearer_auth(access.expose())
                .json(&serde_json::json!({ "audience": audience, "includeEmail": true })),
        )
        .await?;
        let parsed: GenerateIdTokenResponse = serde_json::from_slice(&body).map_err(|_| {
            IdentityError::permanent(NAME, "generateIdToken answered without a token")
        })?;
        Ok(SecretToken::new(parsed.token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_account_goes_into_the_path_as_written() {
        let s = ImpersonateSource::new(
            reqwest::Client::new(),
            "https://iamcredentials.googleapis.com/",
            "bridge-sa_1@my-proj.iam.gserviceaccount.com".into(),
        );
        assert_eq!(
            s.url,
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/bridge-sa_1@my-proj.iam.gserviceaccount.com:generateIdToken"
        );
        let odd = ImpersonateSource::new(reqwest::Client::new(), "http://h", "a/b c?".into());
        assert_eq!(
            odd.url,
            "http://h/v1/projects/-/serviceAccounts/a%2Fb%20c%3F:generateIdToken"
        );
    }
}
