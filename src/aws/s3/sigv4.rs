//! SigV4 for one header-signed request, built without formatting machinery
//! and with the signing key kept for its day: the direct PutObject path
//! signs thousands of small writes a second, and `aws-sigv4`'s general
//! signer (which the tests check this one against, byte for byte) spends
//! more on building strings than on hashing.
//!
//! Every header given is signed; names are lower-case, values go as they
//! are (the caller sends only values that SigV4's trimming leaves
//! unchanged). The path is the request's, already percent-encoded once (S3
//! signs it as sent); the query is empty.

use std::sync::Mutex;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The headers a signature adds to the request.
#[derive(Debug)]
pub(crate) struct Signed {
    /// `x-amz-date`.
    pub(crate) amz_date: String,
    /// `authorization`.
    pub(crate) authorization: String,
}

/// A signing key and what it was derived for.
struct Key {
    date: [u8; 8],
    access_key_id: String,
    key: [u8; 32],
}

/// Signs for one region and service, keeping the day's signing key.
pub(crate) struct Signer {
    region: String,
    service: String,
    key: Mutex<Option<Key>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// One request to sign.
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    /// `Host` as sent (no default port).
    pub(crate) host: &'a str,
    /// The path as sent.
    pub(crate) path: &'a str,
    /// Headers besides `host` and the `x-amz-*` ones the signature adds,
    /// names lower-case.
    pub(crate) headers: &'a [(&'a str, &'a str)],
    /// `x-amz-content-sha256`: the body's SHA-256 in hex, or
    /// `UNSIGNED-PAYLOAD`.
    pub(crate) payload_hash: &'a str,
}

impl Signer {
    pub(crate) fn new(region: &str, service: &str) -> Signer {
        Signer {
            region: region.to_owned(),
            service: service.to_owned(),
            key: Mutex::new(None),
        }
    }

    /// The signature of `req` at `time` with `creds`. The request must also
    /// carry `x-amz-content-sha256` (the payload hash) and, when the
    /// credentials have one, `x-amz-security-token`.
    pub(crate) fn sign(&self, req: &Request<'_>, time: SystemTime, creds: &Credentials) -> Signed {
        let amz_date = amz_date(time);
        let date = &amz_date[..8];
        let token = creds.session_token();
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(req.headers.len() + 4);
        headers.extend_from_slice(req.headers);
        headers.push(("host", req.host));
        headers.push(("x-amz-content-sha256", req.payload_hash));
        headers.push(("x-amz-date", &amz_date));
        if let Some(t) = token {
            headers.push(("x-amz-security-token", t));
        }
        headers.sort_unstable_by(|a, b| a.0.cmp(b.0));

        let mut signed_headers = String::with_capacity(headers.len() * 20);
        let mut canonical = String::with_capacity(512);
        canonical.push_str(req.method);
        canonical.push('\n');
        canonical.push_str(req.path);
        canonical.push_str("\n\n");
        for (i, (name, value)) in headers.iter().enumerate() {
            canonical.push_str(name);
            canonical.push(':');
            canonical.push_str(value);
            canonical.push('\n');
            if i > 0 {
                signed_headers.push(';');
            }
            signed_headers.push_str(name);
        }
        canonical.push('\n');
        canonical.push_str(&signed_headers);
        canonical.push('\n');
        canonical.push_str(req.payload_hash);

        let scope_len = date.len() + self.region.len() + self.service.len() + 16;
        let mut scope = String::with_capacity(scope_len);
        scope.push_str(date);
        scope.push('/');
        scope.push_str(&self.region);
        scope.push('/');
        scope.push_str(&self.service);
        scope.push_str("/aws4_request");

        let mut to_sign =
            String::with_capacity(ALGORITHM.len() + amz_date.len() + scope.len() + 68);
        to_sign.push_str(ALGORITHM);
        to_sign.push('\n');
        to_sign.push_str(&amz_date);
        to_sign.push('\n');
        to_sign.push_str(&scope);
        to_sign.push('\n');
        push_hex(&mut to_sign, &Sha256::digest(canonical.as_bytes()));

        let key = self.signing_key(date, creds);
        let mut signature = String::with_capacity(64);
        push_hex(&mut signature, &hmac(&key, to_sign.as_bytes()));

        let access_key_id = creds.access_key_id();
        let mut authorization = String::with_capacity(
            ALGORITHM.len() + access_key_id.len() + scope.len() + signed_headers.len() + 110,
        );
        authorization.push_str(ALGORITHM);
        authorization.push_str(" Credential=");
        authorization.push_str(access_key_id);
        authorization.push('/');
        authorization.push_str(&scope);
        authorization.push_str(", SignedHeaders=");
        authorization.push_str(&signed_headers);
        authorization.push_str(", Signature=");
        authorization.push_str(&signature);
        Signed {
            amz_date,
            authorization,
        }
    }

    /// The signing key of `date` (`YYYYMMDD`) for `creds`, derived once a
    /// day per access key.
    fn signing_key(&self, date: &str, creds: &Credentials) -> [u8; 32] {
        let mut held = self.key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = held.as_ref() {
            if k.date == date.as_bytes() && k.access_key_id == creds.access_key_id() {
                return k.key;
            }
        }
        let mut secret = Vec::with_capacity(4 + creds.secret_access_key().len());
        secret.extend_from_slice(b"AWS4");
        secret.extend_from_slice(creds.secret_access_key().as_bytes());
        let k_date = hmac(&secret, date.as_bytes());
        let k_region = hmac(&k_date, self.region.as_bytes());
        let k_service = hmac(&k_region, self.service.as_bytes());
        let key = hmac(&k_service, b"aws4_request");
        let mut day = [0u8; 8];
        day.copy_from_slice(date.as_bytes());
        *held = Some(Key {
            date: day,
            access_key_id: creds.access_key_id().to_owned(),
            key,
        });
        key
    }
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Appends `bytes` in lower-case hex.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

/// `YYYYMMDDTHHMMSSZ` of `time` (UTC).
fn amz_date(time: SystemTime) -> String {
    let t = time::OffsetDateTime::from(time);
    let mut out = String::with_capacity(16);
    push_digits(&mut out, u64::try_from(t.year()).unwrap_or(0), 4);
    push_digits(&mut out, u64::from(u8::from(t.month())), 2);
    push_digits(&mut out, u64::from(t.day()), 2);
    out.push('T');
    push_digits(&mut out, u64::from(t.hour()), 2);
    push_digits(&mut out, u64::from(t.minute()), 2);
    push_digits(&mut out, u64::from(t.second()), 2);
    out.push('Z');
    out
}

fn push_digits(out: &mut String, mut v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    for i in (0..width).rev() {
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    for &b in &buf[..width] {
        out.push(b as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{
        sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
        SigningSettings, UriPathNormalizationMode,
    };
    use std::time::Duration;
    use std::time::UNIX_EPOCH;

    /// The `authorization` and `x-amz-date` `aws-sigv4` gives the same
    /// request, signed as the SDK signs S3 requests.
    fn reference(
        req: &Request<'_>,
        scheme_authority: &str,
        time: SystemTime,
        creds: &Credentials,
        region: &str,
    ) -> (String, String) {
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let identity = creds.clone().into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("s3")
            .time(time)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let body = if req.payload_hash == "UNSIGNED-PAYLOAD" {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Precomputed(req.payload_hash.to_owned())
        };
        let url = format!("{scheme_authority}{}", req.path);
        let signable =
            SignableRequest::new(req.method, url, req.headers.iter().copied(), body).unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut r = http::Request::builder()
            .uri(format!("{scheme_authority}{}", req.path))
            .body(())
            .unwrap();
        instructions.apply_to_request_http1x(&mut r);
        let h = |n: &str| r.headers()[n].to_str().unwrap().to_owned();
        (h("authorization"), h("x-amz-date"))
    }

    #[test]
    fn signatures_are_those_of_aws_sigv4() {
        let with_token = Credentials::new(
            "ASIAEXAMPLE",
            "secret/key+1",
            Some("tok==".into()),
            None,
            "t",
        );
        let without = Credentials::new("AKIAEXAMPLE", "other", None, None, "t");
        let hash = "a".repeat(64);
        // Endpoint, host, path, headers, payload hash.
        type Case<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str);
        let cases: [Case<'_>; 4] = [
            (
                "http://127.0.0.1:4566",
                "127.0.0.1:4566",
                "/bucket/p/dir/a%20b%2Bc/%C3%A9~.txt",
                vec![
                    ("content-length", "1024"),
                    ("x-amz-checksum-crc32c", "yZRlqg=="),
                    ("x-amz-sdk-checksum-algorithm", "CRC32C"),
                    ("content-type", "text/plain; charset=utf-8"),
                    ("if-none-match", "*"),
                    ("x-amz-meta-goog-generation", "17"),
                    ("x-amz-meta-team", "data eng"),
                ],
                hash.as_str(),
            ),
            (
                "https://b.s3.eu-west-1.amazonaws.com",
                "b.s3.eu-west-1.amazonaws.com",
                "/k",
                vec![
                    ("content-length", "0"),
                    ("if-match", "\"9b2cf535f27731c974343645a3985328\""),
                    ("cache-control", "no-cache"),
                ],
                "UNSIGNED-PAYLOAD",
            ),
            (
                "http://localhost",
                "localhost",
                "/b/",
                vec![("content-length", "3")],
                hash.as_str(),
            ),
            (
                "https://b.s3.us-east-1.amazonaws.com",
                "b.s3.us-east-1.amazonaws.com",
                "/a//b/",
                vec![("content-encoding", "gzip"), ("content-language", "fr")],
                "UNSIGNED-PAYLOAD",
            ),
        ];
        let signer = Signer::new("eu-west-1", "s3");
        let times = [
            UNIX_EPOCH + Duration::from_secs(1_796_622_873),
            // Leap day, and the last second of a year.
            UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399),
            UNIX_EPOCH + Duration::from_secs(4_102_444_799),
        ];
        for (base, host, path, headers, payload_hash) in &cases {
            for creds in [&with_token, &without] {
                for time in times {
                    let req = Request {
                        method: "PUT",
                        host,
                        path,
                        headers,
                        payload_hash,
                    };
                    let mut given: Vec<(&str, &str)> = headers.clone();
                    given.push(("x-amz-content-sha256", payload_hash));
                    if let Some(t) = creds.session_token() {
                        given.push(("x-amz-security-token", t));
                    }
                    let as_sent = Request {
                        headers: &given,
                        ..req
                    };
                    let (authorization, amz_date) =
                        reference(&as_sent, base, time, creds, "eu-west-1");
                    let ours = signer.sign(&req, time, creds);
                    assert_eq!(ours.amz_date, amz_date, "{base}{path} at {time:?}");
                    assert_eq!(
                        ours.authorization, authorization,
                        "{base}{path} at {time:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_signing_key_follows_the_day_and_the_access_key() {
        let signer = Signer::new("us-east-1", "s3");
        let a = Credentials::new("AKIDA", "one", None, None, "t");
        let b = Credentials::new("AKIDB", "two", None, None, "t");
        let day = signer.signing_key("20261207", &a);
        assert_eq!(signer.signing_key("20261207", &a), day);
        assert_ne!(signer.signing_key("20261208", &a), day, "a new day");
        assert_ne!(signer.signing_key("20261207", &b), day, "new credentials");
        assert_eq!(signer.signing_key("20261207", &a), day, "derived again");
        let shown = format!("{signer:?}");
        assert!(!shown.contains("one") && !shown.contains("two"), "{shown}");
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        for (secs, want) in [
            (0, "19700101T000000Z"),
            (951_868_799, "20000229T235959Z"),
            (1_796_622_873, "20261207T055433Z"),
            (4_102_444_800, "21000101T000000Z"),
        ] {
            assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(secs)), want);
        }
    }
}
