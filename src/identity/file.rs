//! A JWT kept in a file (`GOOGLE_ID_TOKEN_FILE`), e.g. written by a sidecar
//! or `gcloud auth print-identity-token`; read again at every refresh.

use crate::jwt::SecretToken;

use super::IdentityError;

pub(super) const NAME: &str = "file";

pub(super) struct FileSource {
    path: String,
}

impl FileSource {
    pub(super) fn new(path: String) -> Self {
        FileSource { path }
    }

    pub(super) async fn fetch(&self) -> Result<SecretToken, IdentityError> {
        let text = tokio::fs::read_to_string(&self.path).await.map_err(|e| {
            IdentityError::permanent(NAME, format!("cannot read {}: {e}", self.path))
        })?;
        let text = text.trim();
        if text.is_empty() {
            return Err(IdentityError::permanent(
                NAME,
                format!("{} is empty", self.path),
            ));
        }
        Ok(SecretToken::new(text))
    }
}
