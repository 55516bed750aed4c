//! Reading settings from the environment: the deserializers the settings
//! groups of the modules use (whole numbers in a range, seconds, flags,
//! lists, emails, URLs, role lists, source buckets) and the reading of one
//! group with a line `NAME: why` per bad variable. Each module keeps its own
//! group beside its code; [`crate::config`] composes them.

use std::time::Duration;

use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;

use crate::source_buckets::SourceBuckets;

/// The variables that are set, values trimmed: an empty value counts as
/// unset, as in most cloud consoles.
pub(crate) fn present<I>(vars: I) -> Vec<(String, String)>
where
    I: IntoIterator<Item = (String, String)>,
{
    vars.into_iter()
        .filter_map(|(k, v)| {
            let v = v.trim();
            (!v.is_empty()).then(|| (k, v.to_owned()))
        })
        .collect()
}

/// Reads one group of settings. When a value is bad, each variable is read
/// alone to find every bad one; each gets a line `NAME: why` in `errors`, and
/// the group is read again without them, so that they take their defaults.
pub(crate) fn read_group<T: DeserializeOwned>(
    vars: &[(String, String)],
    errors: &mut Vec<String>,
) -> T {
    if let Ok(group) = envy::from_iter(vars.iter().cloned()) {
        return group;
    }
    let mut good = Vec::new();
    for (name, value) in vars {
        match envy::from_iter::<_, T>([(name.clone(), value.clone())]) {
            Ok(_) => good.push((name.clone(), value.clone())),
            Err(e) => errors.extend(problem_lines(name, value, &e)),
        }
    }
    envy::from_iter(good)
        .or_else(|_| envy::from_iter(std::iter::empty()))
        .expect("every setting has a default")
}

/// The lines of one variable's problem, each `NAME: why`. A helper below may
/// report several problems of one variable, one a line; envy's own number
/// errors (`… while parsing value 'v' provided by NAME`) are reworded.
pub(crate) fn problem_lines(name: &str, value: &str, e: &envy::Error) -> Vec<String> {
    let text = e.to_string();
    let suffix = format!(" while parsing value '{value}' provided by {name}");
    let text = match text.strip_suffix(&suffix) {
        Some(cause) => format!("{value:?}: {cause}"),
        None => text,
    };
    let prefix = format!("{name}: ");
    text.lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                l.to_owned()
            } else {
                format!("{prefix}{l}")
            }
        })
        .collect()
}

/// A whole number from `MIN` to `MAX`.
pub(crate) fn number<'de, D, T, const MIN: u64, const MAX: u64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let s = String::deserialize(d)?;
    s.parse::<u64>()
        .ok()
        .filter(|n| (MIN..=MAX).contains(n))
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| {
            D::Error::custom(if MAX == u64::MAX {
                format!("{s:?} must be a whole number, at least {MIN}")
            } else {
                format!("{s:?} must be a whole number from {MIN} to {MAX}")
            })
        })
}

/// A whole number of seconds from `MIN` to `MAX`.
pub(crate) fn seconds<'de, D, const MIN: u64, const MAX: u64>(d: D) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    number::<D, u64, MIN, MAX>(d).map(Duration::from_secs)
}

/// `true`/`1` or `false`/`0`.
pub(crate) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    match s.as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(D::Error::custom(format!("{s:?} is not true or false"))),
    }
}

pub(crate) fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A comma-separated list; blanks around entries and empty entries are dropped.
pub(crate) fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(split_list(&String::deserialize(d)?)
        .map(str::to_owned)
        .collect())
}

/// One email, in lower case.
pub(crate) fn email<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if s.contains('@') && !s.contains(',') && !s.chars().any(char::is_whitespace) {
        Ok(Some(s.to_ascii_lowercase()))
    } else {
        Err(D::Error::custom(format!("{s:?} is not one email address")))
    }
}

/// A comma-separated list of emails, in lower case.
pub(crate) fn emails<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(split_list(&String::deserialize(d)?)
        .map(str::to_ascii_lowercase)
        .collect())
}

/// An http(s) URL, without a trailing `/`.
pub(crate) fn url<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    let s = String::deserialize(d)?;
    if is_url(&s) {
        Ok(T::from(s.trim_end_matches('/').to_owned()))
    } else {
        Err(D::Error::custom(format!("{s:?} is not an http(s) URL")))
    }
}

/// `AWS_ROLES`: `name=arn,name2=arn2`; one line per bad entry.
pub(crate) fn roles<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    let mut errors = Vec::new();
    let roles = parse_roles(&String::deserialize(d)?, &mut errors);
    if errors.is_empty() {
        Ok(roles)
    } else {
        Err(D::Error::custom(errors.join("\n")))
    }
}

/// `GCS_SOURCE_BUCKETS`; one line per bad entry.
pub(crate) fn source_buckets<'de, D: Deserializer<'de>>(d: D) -> Result<SourceBuckets, D::Error> {
    SourceBuckets::parse(Some(&String::deserialize(d)?))
        .map_err(|lines| D::Error::custom(lines.join("\n")))
}

pub(crate) fn is_url(v: &str) -> bool {
    (v.starts_with("http://") || v.starts_with("https://")) && v.len() > "https://".len()
}

/// A role ARN: `arn:PARTITION:iam::ACCOUNT:role/NAME`.
pub(crate) fn is_role_arn(v: &str) -> bool {
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty())
}

/// A role name of `AWS_ROLES`: 1–64 characters of `[A-Za-z0-9_.-]`.
pub(crate) fn is_role_name(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// `AWS_ROLES`: `name=arn,name2=arn2`; each problem is pushed to `errors`.
pub(crate) fn parse_roles(v: &str, errors: &mut Vec<String>) -> Vec<(String, String)> {
    let mut roles: Vec<(String, String)> = Vec::new();
    for entry in split_list(v) {
        let Some((name, arn)) = entry.split_once('=') else {
            errors.push(format!("AWS_ROLES: {entry:?} is not name=arn"));
            continue;
        };
        let (name, arn) = (name.trim(), arn.trim());
        if !is_role_name(name) {
            errors.push(format!(
                "AWS_ROLES: role name {name:?} must be 1-64 characters of A-Z a-z 0-9 _ . -"
            ));
        } else if !is_role_arn(arn) {
            errors.push(format!(
                "AWS_ROLES: {arn:?} (role {name}) is not a role ARN (arn:aws:iam::123456789012:role/NAME)"
            ));
        } else if roles.iter().any(|(n, _)| n == name) {
            errors.push(format!("AWS_ROLES: role name {name:?} is given twice"));
        } else {
            roles.push((name.to_owned(), arn.to_owned()));
        }
    }
    roles
}

pub(crate) fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Cuts a session name to the STS rules: 2–64 characters of `[\w+=,.@-]`.
pub(crate) fn sanitize_session_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if s.len() < 2 {
        s = format!("gcp-aws-bridge{s}").chars().take(64).collect();
    }
    s
}
