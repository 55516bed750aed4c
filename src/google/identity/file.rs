//! A JWT kept in a file (`GOOGLE_ID_TOKEN_FILE`), e.g. written by a sidecar
//! or `gcloud auth print-identity-token`; read again at every refresh.

use crate::jwt::SecretToken;

use super::{IdentityError, MAX_ANSWER_BYTES};

pub(super) const NAME: &str = "file";

pub(super) struct FileSource {
    path: String,
}

impl FileSource {
    pub(super) fn new(path: String) -> Self {
        FileSource { path }
    }

    pub(super) async fn fetch(&self) -> Result<SecretToken, IdentityError> {
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || {
            crate::util::read_file_limited(std::path::Path::new(&path), MAX_ANSWER_BYTES)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let bytes = read.map_err(|e| {
            IdentityError::permanent(NAME, format!("cannot read {}: {e}", self.path))
        })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            IdentityError::permanent(NAME, format!("{} is not UTF-8 text", self.path))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Transient;

    #[tokio::test]
    async fn a_token_file_larger_than_its_bound_is_refused() {
        let path = std::env::temp_dir().join(format!("bridge-id-token-{}", std::process::id()));
        std::fs::write(&path, "e".repeat(MAX_ANSWER_BYTES + 1)).unwrap();
        let source = FileSource::new(path.display().to_string());
        let e = source.fetch().await.unwrap_err();
        assert!(e.to_string().contains("larger than 65536 bytes"), "{e}");
        assert!(!e.is_transient());
        std::fs::write(&path, "eyJ.a.b\n").unwrap();
        assert_eq!(source.fetch().await.unwrap().expose(), "eyJ.a.b");
        std::fs::remove_file(&path).unwrap();
    }
}
