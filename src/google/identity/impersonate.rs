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

impl ImpersonateSource {
    pub(super) fn new(client: reqwest::Client, endpoint: &str, service_account: String) -> Self {
        let sa = percent_encoding::utf8_percent_encode(
            &service_account,
            percent_encoding::NON_ALPHANUMERIC,
        );
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
