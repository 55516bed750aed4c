//! The token that guards the credential server: the value of
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN`, or the content of the file named by
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, read again whenever the file
//! changes. The SDKs send it verbatim in `Authorization`; it is compared in
//! constant time and never shown.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use subtle::ConstantTimeEq;

use crate::jwt::SecretToken;

/// Why a request's `Authorization` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenRefusal {
    /// No `Authorization` header: 401.
    #[error("the Authorization header is missing (AWS_CONTAINER_AUTHORIZATION_TOKEN)")]
    Missing,
    /// A header that is not the token: 403.
    #[error("the Authorization header does not hold the expected token")]
    Wrong,
    /// The token file cannot be read now: 503.
    #[error("the authorization token file cannot be read: {0}")]
    Unavailable(String),
}

/// What identifies a version of the token file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The expected token.
pub struct AuthToken(Inner);

enum Inner {
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    Value(SecretToken),
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, and the version last read.
    File {
        path: PathBuf,
        last: Mutex<Option<(Stamp, SecretToken)>>,
    },
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Inner::Value(_) => f.write_str("AuthToken::Value([redacted])"),
            Inner::File { path, .. } => write!(f, "AuthToken::File({path:?})"),
        }
    }
}

/// The largest token file read: a token is a line of text.
const MAX_TOKEN_FILE_BYTES: usize = 64 * 1024;

/// Reads a token file (at most [`MAX_TOKEN_FILE_BYTES`]): its content less
/// surrounding white space.
fn read_token(path: &Path) -> Result<(Stamp, SecretToken), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = crate::util::read_file_limited(path, MAX_TOKEN_FILE_BYTES)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok((Stamp::of(&meta), SecretToken::new(token)))
}

impl AuthToken {
    /// The token in a variable.
    pub(crate) fn value(token: &str) -> AuthToken {
        AuthToken(Inner::Value(SecretToken::new(token.trim())))
    }

    /// The token in a file, read now (a file that cannot be read is a
    /// configuration error) and again whenever it changes.
    pub(crate) fn file(path: impl Into<PathBuf>) -> Result<AuthToken, String> {
        let path = path.into();
        let first = read_token(&path)?;
        Ok(AuthToken(Inner::File {
            path,
            last: Mutex::new(Some(first)),
        }))
    }

    /// The token now: a file is read again when its stamp changed.
    fn current(&self) -> Result<SecretToken, TokenRefusal> {
        match &self.0 {
            Inner::Value(t) => Ok(t.clone()),
            Inner::File { path, last } => {
                let stamp = std::fs::metadata(path)
                    .map(|m| Stamp::of(&m))
                    .map_err(|e| TokenRefusal::Unavailable(format!("{}: {e}", path.display())))?;
                let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((s, t)) = last.as_ref() {
                    if *s == stamp {
                        return Ok(t.clone());
                    }
                }
                let (stamp, token) = read_token(path).map_err(TokenRefusal::Unavailable)?;
                tracing::info!(path = %path.display(), "authorization token file read again");
                *last = Some((stamp, token.clone()));
                Ok(token)
            }
        }
    }

    /// The variable the token comes from, for the log.
    pub(crate) fn source_name(&self) -> &'static str {
        match self.0 {
            Inner::Value(_) => "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            Inner::File { .. } => "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        }
    }

    /// Checks an `Authorization` header value against the token, in
    /// constant time for a given length.
    pub(crate) fn check(&self, presented: Option<&[u8]>) -> Result<(), TokenRefusal> {
        let presented = presented.ok_or(TokenRefusal::Missing)?;
        let expected = self.current()?;
        if bool::from(presented.ct_eq(expected.expose().as_bytes())) {
            Ok(())
        } else {
            Err(TokenRefusal::Wrong)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        std::env::temp_dir().join(format!("bridge-token-{name}-{}-{n}", std::process::id()))
    }

    #[test]
    fn value_token() {
        let t = AuthToken::value("s3cr3t-value");
        assert_eq!(t.check(None), Err(TokenRefusal::Missing));
        assert_eq!(t.check(Some(b"s3cr3t-valuE")), Err(TokenRefusal::Wrong));
        assert_eq!(t.check(Some(b"s3cr3t-valu")), Err(TokenRefusal::Wrong));
        assert_eq!(
            t.check(Some(b"Bearer s3cr3t-value")),
            Err(TokenRefusal::Wrong)
        );
        assert_eq!(t.check(Some(b"s3cr3t-value")), Ok(()));
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }

    #[test]
    fn file_token_is_read_again_when_it_changes() {
        let path = temp("file");
        std::fs::write(&path, "first-token\n").unwrap();
        let t = AuthToken::file(&path).unwrap();
        assert_eq!(t.check(Some(b"first-token")), Ok(()));
        // Replaced as Kubernetes and Secret Manager mounts do: a new file
        // renamed over the old one.
        let next = temp("next");
        std::fs::write(&next, "second-token").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(t.check(Some(b"first-token")), Err(TokenRefusal::Wrong));
        assert_eq!(t.check(Some(b"second-token")), Ok(()));
        // Rewritten in place, same length.
        std::fs::write(&path, "third--token").unwrap();
        assert_eq!(t.check(Some(b"third--token")), Ok(()));
        let shown = format!("{t:?}");
        assert!(!shown.contains("token\""), "{shown}");
        assert!(!shown.contains("third"), "{shown}");
        // Gone: refused as unavailable, never compared with a stale token.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            t.check(Some(b"third--token")),
            Err(TokenRefusal::Unavailable(_))
        ));
        assert_eq!(t.check(None), Err(TokenRefusal::Missing));
    }

    #[test]
    fn an_empty_or_missing_file_is_refused_at_start() {
        let path = temp("empty");
        std::fs::write(&path, " \n").unwrap();
        assert!(AuthToken::file(&path).unwrap_err().contains("empty"));
        std::fs::remove_file(&path).unwrap();
        assert!(AuthToken::file(&path).is_err());
    }

    #[test]
    fn a_token_file_larger_than_its_bound_is_refused() {
        let path = temp("large");
        std::fs::write(&path, "t".repeat(MAX_TOKEN_FILE_BYTES + 1)).unwrap();
        let e = AuthToken::file(&path).unwrap_err();
        assert!(e.contains("larger than 65536 bytes"), "{e}");
        assert!(!e.contains("ttt"), "{e}");
        // A file that grows past the bound after the start: 503, not read.
        std::fs::write(&path, "small-token").unwrap();
        let t = AuthToken::file(&path).unwrap();
        std::fs::write(&path, "t".repeat(10 * MAX_TOKEN_FILE_BYTES)).unwrap();
        assert!(matches!(
            t.check(Some(b"small-token")),
            Err(TokenRefusal::Unavailable(e)) if e.contains("larger than")
        ));
        std::fs::remove_file(&path).unwrap();
    }
}
