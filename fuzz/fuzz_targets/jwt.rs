//! JWT header and claims decoding: the header check of `AUTH_MODE=verify`
//! (algorithm, key id, a signature Cloud Run removed), the unverified claims
//! decoding, and the header and claim checks of `AUTH_MODE=cloud-run-iam`. The input is
//! the token text (the bearer value). Nothing may panic; what is accepted
//! must hold up.
#![no_main]

use std::sync::OnceLock;

use gcp_aws_bridge::google::caller_auth::{signing_key_id, CallerAuth};
use gcp_aws_bridge::config::Config;
use gcp_aws_bridge::jwt::decode_unverified;
use libfuzzer_sys::fuzz_target;

const AUDIENCE: &str = "https://bridge.test";
const EMAIL: &str = "push@p.iam.gserviceaccount.com";

fn auth() -> &'static CallerAuth {
    static AUTH: OnceLock<CallerAuth> = OnceLock::new();
    AUTH.get_or_init(|| {
        let env = [
            ("TARGET_AUDIENCE", "sts.amazonaws.com"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
            ("AWS_REGION", "us-east-1"),
            ("S3_BUCKET", "b"),
            ("AUTH_MODE", "cloud-run-iam"),
            ("AUTH_AUDIENCES", AUDIENCE),
            ("AUTH_ALLOWED_EMAILS", EMAIL),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        CallerAuth::from_config(&Config::from_iter(env).expect("fuzz configuration").caller_auth)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    match signing_key_id(token) {
        Ok(_) => {
            assert_eq!(token.split('.').count(), 3, "{token:?}");
            assert!(!token.ends_with(".SIGNATURE_REMOVED_BY_GOOGLE"));
        }
        Err(e) => assert_eq!(gcp_aws_bridge::http::error::AppError::from(e).status(), 401),
    }
    let claims = decode_unverified(token);
    if let Ok(c) = &claims {
        assert_eq!(token.split('.').count(), 3);
        let _ = serde_json::to_string(c).expect("claims serialise");
    }
    match auth().check_forwarded(token) {
        Ok(caller) => {
            // Only a token whose signature Cloud Run replaced, RS256 in its
            // header, with iat and a verified email.
            assert!(token.ends_with(".SIGNATURE_REMOVED_BY_GOOGLE"), "{token:?}");
            let c = claims.expect("accepted claims decode");
            let v = serde_json::to_value(&c).expect("claims serialise");
            assert!(v["iat"].is_i64() && v["email_verified"] == true, "{v}");
            assert!(c.aud.any_in(&[AUDIENCE.to_owned()]));
            assert!(c.exp.is_some());
            assert!(caller
                .email
                .is_some_and(|e| e.eq_ignore_ascii_case(EMAIL)));
        }
        Err(e) => {
            let e = gcp_aws_bridge::http::error::AppError::from(e);
            assert!(matches!(e.status().as_u16(), 401 | 403), "{e}");
            // An answer never carries the token.
            if token.len() >= 16 {
                assert!(!e.to_string().contains(token), "{e}");
            }
        }
    }
});
