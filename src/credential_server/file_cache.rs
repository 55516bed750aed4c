//! The cache of `gcp-aws-bridge credentials`, shared by every process of a
//! user: `$XDG_CACHE_HOME/gcp-aws-bridge/` (else `~/.cache/gcp-aws-bridge/`),
//! one file per role and configuration, mode 0600, written whole to a
//! temporary file and renamed over the old one, and fetched under an
//! exclusive lock (`flock`) on a lock file beside it, so that ten `aws`
//! commands started at once make one STS call. Credentials are reused while
//! they have at least [`min_left`] of life.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::cache::min_left;
use crate::config::Config;
use crate::util::rfc3339;

/// The credential_process document, as cached (with when it was issued).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CachedCredentials {
    /// Always 1.
    pub(crate) version: u8,
    /// The access key id.
    pub(crate) access_key_id: String,
    /// The secret key.
    pub(crate) secret_access_key: String,
    /// The session token.
    pub(crate) session_token: String,
    /// RFC 3339 UTC.
    pub(crate) expiration: String,
    /// RFC 3339 UTC: when STS issued them (gives their lifetime).
    pub(crate) issued_at: String,
}

impl std::fmt::Debug for CachedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .field("issued_at", &self.issued_at)
            .finish_non_exhaustive()
    }
}

fn parse_time(v: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

impl CachedCredentials {
    /// From what STS issued at `issued_at`.
    pub(crate) fn new(
        c: &aws_credential_types::Credentials,
        issued_at: SystemTime,
    ) -> CachedCredentials {
        CachedCredentials {
            version: 1,
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: c.secret_access_key().to_owned(),
            session_token: c.session_token().unwrap_or_default().to_owned(),
            expiration: c.expiry().map(rfc3339).unwrap_or_default(),
            issued_at: rfc3339(issued_at),
        }
    }

    /// The credential_process output: `{"Version":1,"AccessKeyId",
    /// "SecretAccessKey","SessionToken","Expiration"}`.
    pub(crate) fn process_json(&self) -> serde_json::Value {
        serde_json::json!({
            "Version": 1,
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "SessionToken": self.session_token,
            "Expiration": self.expiration,
        })
    }

    /// Life left at `now`.
    pub(crate) fn left(&self, now: SystemTime) -> Duration {
        parse_time(&self.expiration)
            .and_then(|e| e.duration_since(now).ok())
            .unwrap_or_default()
    }

    /// Good to reuse at `now`: at least [`min_left`] of life.
    pub(crate) fn reusable(&self, now: SystemTime) -> bool {
        let (Some(exp), Some(issued)) = (parse_time(&self.expiration), parse_time(&self.issued_at))
        else {
            return false;
        };
        let lifetime = exp.duration_since(issued).unwrap_or_default();
        self.left(now) >= min_left(lifetime) && !lifetime.is_zero()
    }
}

/// Why the cache could not be used (the command then fetches without it).
#[derive(Debug, thiserror::Error)]
#[error("credential cache {path}: {source}")]
pub(crate) struct CacheError {
    path: String,
    source: std::io::Error,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError {
        path: path.display().to_string(),
        source,
    }
}

/// The cache directory: `$XDG_CACHE_HOME/gcp-aws-bridge`, else
/// `$HOME/.cache/gcp-aws-bridge`; `None` without either.
pub(crate) fn cache_dir(xdg_cache_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    // The XDG spec: a relative XDG_CACHE_HOME is invalid and ignored.
    let base = match xdg_cache_home.filter(|v| v.starts_with('/')) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(home.filter(|h| !h.is_empty())?).join(".cache"),
    };
    Some(base.join("gcp-aws-bridge"))
}

/// FNV-1a, 64 bits: a stable name for a configuration.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The file name stem for a role: its name (or `default`) and a hash of
/// everything that decides which credentials STS issues for it.
pub(crate) fn entry_name(config: &Config, role: Option<&str>, role_arn: &str) -> String {
    let duration = config.aws.role_duration.as_secs().to_string();
    let sts = config
        .aws
        .endpoint_url_sts
        .as_deref()
        .or(config.aws.endpoint_url.as_deref())
        .unwrap_or("");
    let source = format!("{:?}", config.identity.source);
    let hash = fnv1a(&[
        role_arn,
        &config.identity.target_audience,
        &config.aws.role_session_name,
        &duration,
        &config.aws.region,
        sts,
        &source,
        &config.identity.metadata_host,
        config
            .identity
            .google_application_credentials
            .as_deref()
            .unwrap_or(""),
        config
            .identity
            .impersonate_service_account
            .as_deref()
            .unwrap_or(""),
        config
            .identity
            .google_id_token_file
            .as_deref()
            .unwrap_or(""),
    ]);
    format!("{}-{hash:016x}", role.unwrap_or("default"))
}

/// One cache entry: a credentials file and its lock file.
#[derive(Debug, Clone)]
pub(crate) struct FileCache {
    dir: PathBuf,
    name: String,
}

impl FileCache {
    /// The entry `name` (see [`entry_name`]) in `dir`.
    pub(crate) fn new(dir: PathBuf, name: String) -> FileCache {
        FileCache { dir, name }
    }

    /// The credentials file.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.name))
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join(format!("{}.lock", self.name))
    }

    fn ensure_dir(&self) -> Result<(), CacheError> {
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
        {
            Ok(()) => Ok(()),
            Err(e) => Err(io_err(&self.dir)(e)),
        }
    }

    /// The cached credentials when the file is there, is ours alone (mode
    /// 0600), parses, and may be reused at `now`.
    pub(crate) fn read(&self, now: SystemTime) -> Option<CachedCredentials> {
        let path = self.path();
        let meta = std::fs::metadata(&path).ok()?;
        if meta.permissions().mode() & 0o077 != 0
            || meta.uid() != std::fs::metadata(&self.dir).ok()?.uid()
        {
            return None;
        }
        let c: CachedCredentials = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        c.reusable(now).then_some(c)
    }

    /// Writes the entry atomically: a temporary file (0600) in the same
    /// directory, synced, then renamed over the old one.
    pub(crate) fn write(&self, c: &CachedCredentials) -> Result<(), CacheError> {
        let path = self.path();
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            self.name,
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec(c).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io_err(&path))
    }

    /// Takes the entry's exclusive lock (blocking), creating the directory
    /// and the lock file when missing. Released when the file is dropped.
    pub(crate) fn lock(&self) -> Result<File, CacheError> {
        self.ensure_dir()?;
        let path = self.lock_path();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        f.lock().map_err(io_err(&path))?;
        Ok(f)
    }

    /// The cached credentials if reusable, else the ones `fetch` gets, which
    /// are then cached. The lock is held across the fetch, so that concurrent
    /// processes wait for the first one's answer instead of asking STS too.
    /// A cache that cannot be used (no directory, a read-only disk) is
    /// reported on stderr and skipped.
    pub(crate) async fn get_or_fetch<F, Fut, E>(
        &self,
        now: impl Fn() -> SystemTime,
        fetch: F,
    ) -> Result<CachedCredentials, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<CachedCredentials, E>>,
    {
        if let Some(c) = self.read(now()) {
            return Ok(c);
        }
        let this = self.clone();
        let lock = tokio::task::spawn_blocking(move || this.lock())
            .await
            .unwrap_or_else(|e| {
                Err(CacheError {
                    path: self.lock_path().display().to_string(),
                    source: std::io::Error::other(e),
                })
            });
        let lock = match lock {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!("{e}; fetching without the cache");
                None
            }
        };
        if lock.is_some() {
            if let Some(c) = self.read(now()) {
                return Ok(c);
            }
        }
        let c = fetch().await?;
        if lock.is_some() {
            if let Err(e) = self.write(&c) {
                tracing::warn!("{e}; the credentials were not cached");
            }
        }
        drop(lock);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn temp_dir(name: &str) -> PathBuf {
        let n = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        std::env::temp_dir()
            .join(format!("bridge-cache-{name}-{}-{n}", std::process::id()))
            .join("gcp-aws-bridge")
    }

    fn creds(now: SystemTime, lifetime: u64, key: &str) -> CachedCredentials {
        CachedCredentials {
            version: 1,
            access_key_id: key.into(),
            secret_access_key: "s3cr3t".into(),
            session_token: "t0k3n".into(),
            expiration: rfc3339(now + Duration::from_secs(lifetime)),
            issued_at: rfc3339(now),
        }
    }

    #[test]
    fn cache_dir_follows_xdg() {
        assert_eq!(
            cache_dir(Some("/x/cache"), Some("/home/u")),
            Some(PathBuf::from("/x/cache/gcp-aws-bridge"))
        );
        assert_eq!(
            cache_dir(None, Some("/home/u")),
            Some(PathBuf::from("/home/u/.cache/gcp-aws-bridge"))
        );
        assert_eq!(
            cache_dir(Some("relative"), Some("/home/u")),
            Some(PathBuf::from("/home/u/.cache/gcp-aws-bridge"))
        );
        assert_eq!(cache_dir(None, None), None);
    }

    #[test]
    fn reuse_needs_15_minutes_or_half_a_short_life() {
        // Whole seconds: the file keeps milliseconds.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let c = creds(now, 3600, "A");
        assert!(c.reusable(now + Duration::from_secs(45 * 60)));
        assert!(!c.reusable(now + Duration::from_secs(45 * 60 + 1)));
        let short = creds(now, 900, "B");
        assert!(short.reusable(now + Duration::from_secs(450)));
        assert!(!short.reusable(now + Duration::from_secs(451)));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("t0k3n"),
            "{shown}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_fetchers_make_one_call_and_files_are_private() {
        let dir = temp_dir("concurrent");
        let calls = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..10 {
            // A FileCache per task, as each process would have.
            let cache = FileCache::new(dir.clone(), "default-0123".into());
            let calls = calls.clone();
            set.spawn(async move {
                cache
                    .get_or_fetch(SystemTime::now, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, std::io::Error>(creds(SystemTime::now(), 3600, "ASIAONE"))
                    })
                    .await
                    .unwrap()
            });
        }
        while let Some(c) = set.join_next().await {
            assert_eq!(c.unwrap().access_key_id, "ASIAONE");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let cache = FileCache::new(dir.clone(), "default-0123".into());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache.path()), 0o600);
        assert_eq!(mode(&cache.lock_path()), 0o600);
        assert_eq!(mode(&dir), 0o700);
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        // Expiring: fetched again. A file others may read: ignored.
        let later = || SystemTime::now() + Duration::from_secs(46 * 60);
        let c = cache
            .get_or_fetch(later, || async {
                Ok::<_, std::io::Error>(creds(later(), 3600, "ASIATWO"))
            })
            .await
            .unwrap();
        assert_eq!(c.access_key_id, "ASIATWO");
        std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(cache.read(later()).is_none());
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn entry_names_differ_by_role_and_configuration() {
        let base = [
            ("TARGET_AUDIENCE", "sts.amazonaws.com"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/main"),
            ("AWS_REGION", "us-east-1"),
        ];
        let config = |extra: &[(&str, &str)]| {
            Config::from_iter_for_cli(
                base.iter()
                    .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
                    .chain(extra)
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            )
            .unwrap()
        };
        let c = config(&[]);
        let a = entry_name(&c, None, &c.aws.role_arn);
        assert!(a.starts_with("default-"), "{a}");
        assert_eq!(a, entry_name(&config(&[]), None, &c.aws.role_arn));
        let r = entry_name(&c, Some("reader"), "arn:aws:iam::123456789012:role/r");
        assert!(r.starts_with("reader-"));
        assert_ne!(
            a,
            entry_name(
                &config(&[("AWS_ROLE_DURATION_SECONDS", "900")]),
                None,
                &c.aws.role_arn
            )
        );
        assert_ne!(
            a,
            entry_name(
                &config(&[("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:1")]),
                None,
                &c.aws.role_arn
            )
        );
        assert_ne!(
            a,
            entry_name(
                &config(&[("TARGET_AUDIENCE", "other")]),
                None,
                &c.aws.role_arn
            )
        );
    }
}
