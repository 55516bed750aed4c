//! The Cloud Run front end in front of a small Python echo server: what the
//! container is started with, what a request looks like when it arrives,
//! IAM refusals, and SIGTERM then SIGKILL on scale-down.

use std::time::Duration;

use bridge_testkit::keys::now_secs;
use bridge_testkit::{
    CloudRunConfig, CloudRunEmulator, Container, MetadataConfig, MetadataEmulator,
};
use serde_json::{json, Value};

/// Answers every GET with the request's headers and some of its environment.
const ECHO: &str = r#"
import http.server, json, os, signal
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        env = {k: os.environ.get(k) for k in ["PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION", "EXTRA", "HOME"]}
        b = json.dumps({"headers": {k.lower(): v for k, v in self.headers.items()}, "env": env}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

const INVOKER: &str = "caller@p.iam.gserviceaccount.com";
const SERVICE_URL: &str = "https://echo-123.europe-west1.run.app";

async fn echo_front(
    emu: &MetadataEmulator,
    extra_env: &[(&str, &str)],
    grace: Duration,
) -> CloudRunEmulator {
    let mut env = vec![("EXTRA".to_owned(), "given".to_owned())];
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let mut container = Container::new("python3", env);
    container.args = vec!["-c".into(), ECHO.into()];
    let cfg = CloudRunConfig {
        service: "echo".into(),
        revision: "echo-00007-abc".into(),
        url: Some(SERVICE_URL.into()),
        audiences: vec!["custom-aud".into()],
        invokers: vec![format!("serviceAccount:{INVOKER}")],
        jwks_url: emu.jwks_url(),
        shutdown_grace: grace,
        ..CloudRunConfig::default()
    };
    CloudRunEmulator::start(cfg, container, 2)
        .await
        .expect("echo instances start")
}

fn token(emu: &MetadataEmulator, aud: &str, email: &str) -> String {
    emu.mint(json!({
        "iss": "https://accounts.google.com",
        "aud": aud, "azp": "1", "sub": "1",
        "email": email, "email_verified": true,
        "iat": now_secs(), "exp": now_secs() + 600,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_container_sees() {
    let emu = MetadataEmulator::start(MetadataConfig::default()).await;
    let front = echo_front(&emu, &[], Duration::from_secs(10)).await;
    let c = reqwest::Client::new();
    let t = token(&emu, SERVICE_URL, INVOKER);
    let v: Value = c
        .get(format!("{}/x?y=1", front.url()))
        .bearer_auth(&t)
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h = &v["headers"];
    let (head, _) = t.rsplit_once('.').unwrap();
    assert_eq!(
        h["authorization"],
        format!("Bearer {head}.SIGNATURE_REMOVED_BY_GOOGLE")
    );
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(
        h["x-cloud-trace-context"],
        format!(
            "0af7651916cd43dd8448eb211c80319c/{};o=1",
            0xb7ad6b7169203331u64
        )
    );
    assert_eq!(
        h["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    let e = &v["env"];
    assert_eq!(e["K_SERVICE"], "echo");
    assert_eq!(e["K_CONFIGURATION"], "echo");
    assert_eq!(e["K_REVISION"], "echo-00007-abc");
    assert_eq!(e["EXTRA"], "given");
    assert!(
        e["HOME"].is_null(),
        "nothing of the caller's environment: {e}"
    );
    assert!(e["PORT"].as_str().unwrap().parse::<u16>().is_ok());

    // A new trace when the caller sends none; X-Serverless-Authorization
    // checked and stripped, Authorization left alone.
    let v: Value = c
        .get(format!("{}/", front.url()))
        .header(
            "x-serverless-authorization",
            format!("Bearer {}", token(&emu, "custom-aud", INVOKER)),
        )
        .header("authorization", "Bearer app-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h = &v["headers"];
    assert!(h["x-serverless-authorization"]
        .as_str()
        .unwrap()
        .ends_with(".SIGNATURE_REMOVED_BY_GOOGLE"));
    assert_eq!(h["authorization"], "Bearer app-token");
    let tp = h["traceparent"].as_str().unwrap();
    assert_eq!(tp.len(), 55, "{tp}");
    assert!(h["x-cloud-trace-context"]
        .as_str()
        .unwrap()
        .starts_with(&tp[3..35]));

    // Refusals never reach an instance.
    let before: usize = front.requests_per_instance().iter().sum();
    let stranger = token(&emu, SERVICE_URL, "other@p.iam.gserviceaccount.com");
    let forged = tokio::task::spawn_blocking(bridge_testkit::SigningKey::generate)
        .await
        .unwrap()
        .with_kid(emu.signing_key().kid())
        .sign(&json!({"iss": "https://accounts.google.com", "aud": SERVICE_URL, "email": INVOKER, "exp": now_secs() + 600}));
    for (what, tok, want) in [
        ("none", None, 403),
        ("stranger", Some(stranger), 403),
        ("forged", Some(forged), 401),
        (
            "wrong aud",
            Some(token(&emu, "https://other.run.app", INVOKER)),
            401,
        ),
        ("access token", Some("ya29.not-a-jwt".to_owned()), 401),
    ] {
        let mut rb = c.get(format!("{}/", front.url()));
        if let Some(t) = tok {
            rb = rb.bearer_auth(t);
        }
        assert_eq!(rb.send().await.unwrap().status(), want, "{what}");
    }
    // Paths Google's front end keeps for itself.
    for path in ["/healthz", "/eventlog", "/_ah/health"] {
        let r = c
            .get(format!("{}{path}", front.url()))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    assert_eq!(front.requests_per_instance().iter().sum::<usize>(), before);
    assert_eq!(front.refused(), 8);
    // Both instances served.
    for _ in 0..4 {
        c.get(format!("{}/", front.url()))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
    }
    assert!(front.requests_per_instance().iter().all(|&n| n > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_is_sigterm_then_sigkill() {
    let emu = MetadataEmulator::start(MetadataConfig::default()).await;
    // Python dies of SIGTERM at once.
    let front = echo_front(&emu, &[], Duration::from_secs(10)).await;
    let stopped = front.scale_to(1).await.unwrap();
    assert_eq!(stopped.len(), 1);
    assert!(!stopped[0].killed);
    assert!(stopped[0].took < Duration::from_secs(5));
    drop(front);
    // An instance that ignores SIGTERM is killed after the grace period.
    let front = echo_front(&emu, &[("IGNORE_TERM", "1")], Duration::from_secs(1)).await;
    let stopped = front.scale_to(0).await.unwrap();
    assert_eq!(stopped.len(), 2);
    for s in stopped {
        assert!(s.killed, "{s:?}");
        assert!(s.took >= Duration::from_secs(1), "{s:?}");
        assert_eq!(s.code, None, "ended by a signal");
    }
}
