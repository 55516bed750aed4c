//! The GCE / Cloud Run metadata server's identity endpoint.

use crate::jwt::SecretToken;

use super::{send_for_body, IdentityError};

pub(super) const NAME: &str = "metadata";

pub(super) struct MetadataSource {
    client: reqwest::Client,
    base: String,
}

/// `GCE_METADATA_HOST` is `host:port` by convention; a URL is accepted too.
pub(crate) fn metadata_base(host: &str) -> String {
    let host = host.trim_end_matches('/');
    if host.starts_with("http://") || host.starts_with("https://") {
        host.to_owned()
    } else {
        format!("http://{host}")
    }
}

impl MetadataSource {
    pub(super) fn new(client: reqwest::Client, host: &str) -> Self {
        MetadataSource {
            client,
            base: metadata_base(host),
        }
    }

    pub(super) async fn fetch(&self, audience: &str) -> Result<SecretToken, IdentityError> {
        let url = format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/identity",
            self.base
        );
        let body = send_for_body(
            NAME,
            self.client
                .get(url)
                .query(&[("audience", audience), ("format", "full")])
                .header("Metadata-Flavor", "Google"),
        )
        .await?;
        let body = String::from_utf8_lossy(&body);
        let body = body.trim();
        if body.is_empty() {
            return Err(IdentityError::transient(NAME, "empty identity token"));
        }
        Ok(SecretToken::new(body))
    }
}
