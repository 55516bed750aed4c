//! The command line: `serve` (the default), `credentials` (JSON for an AWS
//! `credential_process`, cached across processes), `credential-server` (the
//! AWS container-credentials endpoint, see [`crate::http::credential_server`]),
//! `whoami`, `sync` (see [`sync`]) and `verify` (see [`verify`]).
//!
//! ```text
//! [profile gcp]
//! credential_process = gcp-aws-bridge credentials
//! ```

pub(crate) mod summary;
pub mod sync;
pub mod verify;

use std::time::SystemTime;

use crate::aws::{RoleProviders, StsError};
use crate::config::Config;
use crate::http::credential_server::file_cache::{
    cache_dir, entry_name, CachedCredentials, FileCache,
};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The HTTP service.
    Serve,
    /// Print credentials for `credential_process`.
    Credentials(CredentialsArgs),
    /// Serve credentials to the AWS SDKs of processes on this host.
    CredentialServer,
    /// Print who this is, on both clouds.
    Whoami,
    /// Sync a Cloud Storage bucket (see [`crate::cli::sync`]).
    Sync,
    /// Compare a Cloud Storage bucket with its replicas (see [`crate::cli::verify`]).
    Verify(crate::cli::verify::VerifyArgs),
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

/// Options of `credentials`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialsArgs {
    /// `--role NAME`: a role of `AWS_ROLES` instead of `AWS_ROLE_ARN`.
    pub(crate) role: Option<String>,
    /// `--no-cache`: neither read nor write the cache.
    pub(crate) no_cache: bool,
}

/// Usage text.
pub const USAGE: &str = "\
usage: gcp-aws-bridge [serve|credentials [--role NAME] [--no-cache]|credential-server|whoami|sync|verify|--help|--version]

  serve              run the HTTP service on 0.0.0.0:$PORT (the default)
  credentials        print AWS credentials for credential_process:
                     {\"Version\":1,\"AccessKeyId\",\"SecretAccessKey\",\"SessionToken\",\"Expiration\"}
                     --role NAME  a role of AWS_ROLES (default: AWS_ROLE_ARN)
                     --no-cache   do not use the cache in $XDG_CACHE_HOME/gcp-aws-bridge
  credential-server  serve the AWS container-credentials endpoint on
                     $CREDENTIALS_ADDR (default 127.0.0.1:9911) for SDKs with
                     AWS_CONTAINER_CREDENTIALS_FULL_URI and the token
  whoami             print the Google token's claims, the AWS caller identity and
                     when the credentials expire
  sync gs://BUCKET[/PREFIX] [--delete] [--dry-run]
                     publish the first page of a sync to PUBSUB_TOPIC (the service
                     works through the pages); --dry-run lists every page here,
                     prints what would be copied and deleted with totals, and
                     publishes nothing
  verify gs://BUCKET[/PREFIX]
                     compare every object with its replica by size, generation
                     and CRC32C (listings and HEADs only, no object read); one
                     JSON line per difference and a totals line (a summary at a
                     terminal); exit 0 in sync, 1 differences, 2 no conclusion

Configuration is read from the environment (TARGET_AUDIENCE, AWS_ROLE_ARN,
AWS_REGION, ...); see the README.";

/// Parses the arguments after the program name.
pub fn parse_args(args: &[String]) -> Result<Mode, String> {
    let rest = args.get(1..).unwrap_or_default();
    let no_more = |mode: Mode| match rest.first() {
        None => Ok(mode),
        Some(a) => Err(format!("unexpected argument {a:?}\n{USAGE}")),
    };
    match args.first().map(String::as_str) {
        None | Some("serve") => no_more(Mode::Serve),
        Some("credentials") => {
            let mut opts = CredentialsArgs::default();
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--no-cache" => opts.no_cache = true,
                    "--role" => match it.next() {
                        Some(r) if !r.starts_with("--") => opts.role = Some(r.clone()),
                        _ => return Err(format!("--role needs a role name\n{USAGE}")),
                    },
                    s if s.starts_with("--role=") => {
                        opts.role = Some(s["--role=".len()..].to_owned())
                    }
                    other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
                }
            }
            Ok(Mode::Credentials(opts))
        }
        Some("credential-server") => no_more(Mode::CredentialServer),
        Some("whoami") => no_more(Mode::Whoami),
        Some("sync") => Ok(Mode::Sync),
        Some("verify") => crate::cli::verify::parse_verify_args(rest).map(Mode::Verify),
        Some("-h" | "--help" | "help") => Ok(Mode::Help),
        Some("-V" | "--version") => Ok(Mode::Version),
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

/// Why `credentials` printed nothing.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// `--role` names no role of `AWS_ROLES`: a usage error.
    #[error("--role {0:?}: no such role in AWS_ROLES (name=arn,...)")]
    UnknownRole(String),
    /// STS or the Google identity failed.
    #[error(transparent)]
    Sts(#[from] StsError),
}

/// The credential_process document for a role, from the cache shared by
/// the user's processes unless `--no-cache` (see
/// [`crate::http::credential_server::file_cache`]). `xdg_cache_home` and `home` are
/// `$XDG_CACHE_HOME` and `$HOME`.
pub async fn cached_credentials_json(
    config: &Config,
    roles: &RoleProviders,
    args: &CredentialsArgs,
    xdg_cache_home: Option<&str>,
    home: Option<&str>,
) -> Result<serde_json::Value, CredentialsError> {
    let provider = match &args.role {
        None => roles.default_role(),
        Some(name) => roles
            .named(name)
            .ok_or_else(|| CredentialsError::UnknownRole(name.clone()))?,
    };
    let fetch = || async {
        let c = provider.credentials().await?;
        Ok::<_, CredentialsError>(CachedCredentials::new(&c, SystemTime::now()))
    };
    let dir = cache_dir(xdg_cache_home, home).filter(|_| !args.no_cache);
    let creds = match dir {
        None => fetch().await?,
        Some(dir) => {
            let name = entry_name(config, args.role.as_deref(), provider.role_arn());
            FileCache::new(dir, name)
                .get_or_fetch(SystemTime::now, fetch)
                .await?
        }
    };
    Ok(creds.process_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Mode, String> {
        parse_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn commands_and_options() {
        assert_eq!(parse(&[]), Ok(Mode::Serve));
        assert_eq!(parse(&["credential-server"]), Ok(Mode::CredentialServer));
        assert_eq!(
            parse(&["credentials"]),
            Ok(Mode::Credentials(CredentialsArgs::default()))
        );
        assert_eq!(
            parse(&["credentials", "--role", "reader", "--no-cache"]),
            Ok(Mode::Credentials(CredentialsArgs {
                role: Some("reader".into()),
                no_cache: true
            }))
        );
        assert_eq!(
            parse(&["credentials", "--role=ops"]),
            Ok(Mode::Credentials(CredentialsArgs {
                role: Some("ops".into()),
                no_cache: false
            }))
        );
        assert!(parse(&["credentials", "--role"]).is_err());
        assert!(parse(&["credentials", "--role", "--no-cache"]).is_err());
        assert!(parse(&["credentials", "--bogus"]).is_err());
        assert!(parse(&["credential-server", "x"]).is_err());
        assert!(parse(&["nope"]).is_err());
        assert!(matches!(
            parse(&["verify", "gs://bkt"]),
            Ok(Mode::Verify(_))
        ));
        assert!(parse(&["verify", "gs://bkt", "--delete"]).is_err());
    }
}
