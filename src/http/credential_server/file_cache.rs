//! The cache of `gcp-aws-bridge credentials`, shared by every process of a
//! user: `$XDG_CACHE_HOME/gcp-aws-bridge/` (else `~/.cache/gcp-aws-bridge/`),
//! one file per role and configuration, mode 0600, written whole to a
//! temporary file and renamed over the old one, and fetched under an
//! exclusive lock (`flock`) on a lock file beside it, so that ten `aws`
//! commands started at once make one STS call. Credentials are reused while
//! they have at least [`min_left`] of life.
//!
//! Nobody else may steer what the command prints: the directory must be
//! owned by the caller (the effective uid) with no access for group or
//! others (it is created 0700), a file not owned by the caller or open to
//! others is ignored, and no link is followed (`O_NOFOLLOW` on every open).
//! A lock that stays taken for [`LOCK_WAIT`] (a stopped `aws` process holds
//! it) is given up. In every one of these cases the command warns on stderr
//! and goes on without the cache.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::cache::min_left;
use crate::config::Config;
use crate::util::rfc3339;

/// How long the lock is tried before the command goes on without the
/// cache.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(3);
/// How often the lock is tried meanwhile.
const LOCK_POLL: Duration = Duration::from_millis(50);
/// A cache file larger than this is not read (an entry is a few KiB).
const MAX_ENTRY_BYTES: u64 = 64 * 1024;

/// The effective uid of this process: the owner of `/proc/self` on Linux
/// (which the kernel gives the process's effective uid, or root for a
/// process that may not be inspected: the cache is then refused, never
/// wrongly trusted), else what `id -u` says. `None` when neither answers.
fn euid() -> Option<u32> {
    static EUID: OnceLock<Option<u32>> = OnceLock::new();
    *EUID.get_or_init(|| {
        let proc_self = if cfg!(target_os = "linux") {
            std::fs::metadata("/proc/self").ok().map(|m| m.uid())
        } else {
            None
        };
        proc_self.or_else(|| {
            let out = std::process::Command::new("id")
                .arg("-u")
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())?;
            String::from_utf8(out.stdout).ok()?.trim().parse().ok()
        })
    })
}

/// Open options that never follow a link at the last component.
fn no_follow() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.custom_flags(libc::O_NOFOLLOW);
    o
}

/// Whether `meta` is a regular file of the caller's, closed to others.
fn private_file(meta: &std::fs::Metadata) -> bool {
    meta.is_file() && meta.permissions().mode() & 0o077 == 0 && Some(meta.uid()) == euid()
}

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
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Process<'a> {
            version: u8,
            access_key_id: &'a str,
            secret_access_key: &'a str,
            session_token: &'a str,
            expiration: &'a str,
        }
        serde_json::to_value(Process {
            version: 1,
            access_key_id: &self.access_key_id,
            secret_access_key: &self.secret_access_key,
            session_token: &self.session_token,
            expiration: &self.expiration,
        })
        .expect("credentials serialize")
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

/// A refusal of the cache that is no I/O error.
fn refused(path: &Path, why: String) -> CacheError {
    io_err(path)(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        why,
    ))
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

    /// Creates the directory (0700) when missing, and checks that it is a
    /// directory, not a link, owned by the caller, with no access for group
    /// or others.
    fn ensure_dir(&self) -> Result<(), CacheError> {
        let dir = &self.dir;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let meta = std::fs::symlink_metadata(dir).map_err(io_err(dir))?;
        if !meta.is_dir() {
            return Err(refused(
                dir,
                "not a directory (a link is not followed)".into(),
            ));
        }
        let Some(me) = euid() else {
            return Err(refused(dir, "this process's user id cannot be told".into()));
        };
        if meta.uid() != me {
            return Err(refused(
                dir,
                format!("owned by uid {}, not by this user (uid {me})", meta.uid()),
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(refused(
                dir,
                format!("mode {mode:04o} lets others in; it must be 0700 (chmod 700)"),
            ));
        }
        Ok(())
    }

    /// The cached credentials when the file is there, is a regular file of
    /// the caller's alone (mode 0600, not a link), parses, and may be reused
    /// at `now`.
    pub(crate) fn read(&self, now: SystemTime) -> Option<CachedCredentials> {
        let f = no_follow().read(true).open(self.path()).ok()?;
        let meta = f.metadata().ok()?;
        if !private_file(&meta) || meta.len() > MAX_ENTRY_BYTES {
            return None;
        }
        let mut bytes = Vec::new();
        f.take(MAX_ENTRY_BYTES).read_to_end(&mut bytes).ok()?;
        let c: CachedCredentials = serde_json::from_slice(&bytes).ok()?;
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
            let mut f = no_follow()
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

    /// Takes the entry's exclusive lock, trying for up to `wait`, creating
    /// the lock file when missing (the directory must have passed
    /// [`FileCache::ensure_dir`]). Released when the file is dropped.
    async fn lock(&self, wait: Duration) -> Result<File, CacheError> {
        let path = self.lock_path();
        let f = no_follow()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        let meta = f.metadata().map_err(io_err(&path))?;
        if !private_file(&meta) {
            return Err(refused(
                &path,
                "not a private regular file of this user's".into(),
            ));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match f.try_lock() {
                Ok(()) => return Ok(f),
                Err(TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(LOCK_POLL).await
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(io_err(&path)(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "still locked by another process after {} ms (a stopped one?)",
                            wait.as_millis()
                        ),
                    )))
                }
                Err(TryLockError::Error(e)) => return Err(io_err(&path)(e)),
            }
        }
    }

    /// The cached credentials if reusable, else the ones `fetch` gets, which
    /// are then cached. The lock is held across the fetch, so that concurrent
    /// processes wait for the first one's answer instead of asking STS too.
    /// A cache that cannot be used (no directory, a read-only disk, a
    /// directory others may write, a lock held past [`LOCK_WAIT`]) is
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
        self.get_or_fetch_waiting(LOCK_WAIT, now, fetch).await
    }

    async fn get_or_fetch_waiting<F, Fut, E>(
        &self,
        wait: Duration,
        now: impl Fn() -> SystemTime,
        fetch: F,
    ) -> Result<CachedCredentials, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<CachedCredentials, E>>,
    {
        if let Err(e) = self.ensure_dir() {
            tracing::warn!("{e}; fetching without the cache");
            return fetch().await;
        }
        if let Some(c) = self.read(now()) {
            return Ok(c);
        }
        let lock = match self.lock(wait).await {
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

    /// Fetches `key`, counting the calls.
    async fn fetch_counted(
        cache: &FileCache,
        wait: Duration,
        calls: &AtomicUsize,
        key: &str,
    ) -> CachedCredentials {
        cache
            .get_or_fetch_waiting(wait, SystemTime::now, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(creds(SystemTime::now(), 3600, key))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_lock_held_too_long_is_given_up() {
        let dir = temp_dir("held");
        let cache = FileCache::new(dir.clone(), "default-0123".into());
        let calls = AtomicUsize::new(0);
        fetch_counted(&cache, LOCK_WAIT, &calls, "ASIAONE").await;
        // Another process's lock (its own open file), never released; the
        // cached entry expires.
        let held = cache.lock(Duration::ZERO).await.unwrap();
        let later = || SystemTime::now() + Duration::from_secs(46 * 60);
        let t = std::time::Instant::now();
        let c = cache
            .get_or_fetch_waiting(Duration::from_millis(300), later, || async {
                Ok::<_, std::io::Error>(creds(later(), 3600, "ASIATWO"))
            })
            .await
            .unwrap();
        assert_eq!(c.access_key_id, "ASIATWO");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
        // Not written without the lock.
        assert_eq!(
            cache.read(SystemTime::now()).unwrap().access_key_id,
            "ASIAONE"
        );
        drop(held);
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn links_are_not_followed() {
        let dir = temp_dir("links");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let cache = FileCache::new(dir.clone(), "default-0123".into());
        let outside = dir.parent().unwrap().join("outside");
        std::fs::write(&outside, "untouched").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
        // The lock file is a link: not followed, no cache.
        std::os::unix::fs::symlink(&outside, cache.lock_path()).unwrap();
        let calls = AtomicUsize::new(0);
        fetch_counted(&cache, LOCK_WAIT, &calls, "ASIAONE").await;
        fetch_counted(&cache, LOCK_WAIT, &calls, "ASIAONE").await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "no cache without the lock");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "untouched");
        assert!(
            std::fs::symlink_metadata(cache.path()).is_err(),
            "nothing written"
        );
        // A link where the entry should be is not read.
        std::fs::remove_file(cache.lock_path()).unwrap();
        let elsewhere = dir.parent().unwrap().join("planted.json");
        let planted = creds(SystemTime::now(), 3600, "ASIAPLANTED");
        std::fs::write(&elsewhere, serde_json::to_vec(&planted).unwrap()).unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, cache.path()).unwrap();
        assert!(cache.read(SystemTime::now()).is_none());
        let c = fetch_counted(&cache, LOCK_WAIT, &calls, "ASIATWO").await;
        assert_eq!(c.access_key_id, "ASIATWO");
        // The link was replaced by the entry, its target left alone.
        assert!(std::fs::symlink_metadata(cache.path()).unwrap().is_file());
        assert!(std::fs::read_to_string(&elsewhere)
            .unwrap()
            .contains("ASIAPLANTED"));
        // A linked directory is refused.
        let linked = dir.parent().unwrap().join("linked");
        std::os::unix::fs::symlink(&dir, &linked).unwrap();
        let via_link = FileCache::new(linked, "default-0123".into());
        assert!(via_link.ensure_dir().is_err());
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn a_directory_open_to_others_or_of_another_owner_is_not_used() {
        let dir = temp_dir("open");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let cache = FileCache::new(dir.clone(), "default-0123".into());
        let e = cache.ensure_dir().unwrap_err().to_string();
        assert!(e.contains("0777"), "{e}");
        let calls = AtomicUsize::new(0);
        fetch_counted(&cache, LOCK_WAIT, &calls, "ASIAONE").await;
        fetch_counted(&cache, LOCK_WAIT, &calls, "ASIAONE").await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "nothing written"
        );
        // 0750 is refused too; 0700 is used.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(cache.ensure_dir().is_err());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        fetch_counted(&cache, LOCK_WAIT, &calls, "ASIAONE").await;
        fetch_counted(&cache, LOCK_WAIT, &calls, "ASIAONE").await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Another owner (only root can give a file away): the entry is
        // ignored, then the directory refused.
        if std::os::unix::fs::chown(cache.path(), Some(65534), None).is_ok() {
            assert!(cache.read(SystemTime::now()).is_none());
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            let e = cache.ensure_dir().unwrap_err().to_string();
            assert!(e.contains("owned by uid 65534"), "{e}");
        }
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
