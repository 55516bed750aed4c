//! The service as Cloud Run runs it: the real binary, two instances, behind
//! the test kit's Cloud Run front end (IAM check, stripped signature, added
//! headers, request limits and timeout, SIGTERM on scale-down), called by the
//! Pub/Sub emulator's push and by Eventarc through shims that add the OIDC
//! tokens those send.

use crate::common;
use crate::common::{eventually, require_rig};

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bridge_testkit::ProxyFault;
use common::cloud_run::*;
use common::pubsub::PushTopic;
use common::*;
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_push_and_eventarc_through_the_front_end() {
    require_rig!();
    let mut w = World::new("crPush").await;
    deployed_env(&mut w);
    let front = start_front_end(front_end_config(&w), &w.env, 2).await;
    let push = push_shim(&w, &front, PUSH_SA).await;
    let topic = PushTopic::create(&w, "cr", &format!("{}/pubsub", push.url())).await;
    let messages: Vec<Value> = (0..6)
        .map(|i| {
            let cmd = json!({"op": "put", "key": format!("push-{i}.txt"), "body": format!("message {i}")});
            json!({"data": STANDARD.encode(cmd.to_string())})
        })
        .collect();
    topic.publish(&messages).await;

    // Eventarc: a messagePublished CloudEvent in binary mode, with the
    // trigger's service account token.
    let events = push_shim(&w, &front, EVENTS_SA).await;
    let cmd = json!({"op": "put", "key": "event.txt", "body": "from eventarc"});
    let r = client()
        .post(format!("{}/events", events.url()))
        .header("ce-specversion", "1.0")
        .header("ce-id", "evt-1")
        .header("ce-type", "google.cloud.pubsub.topic.v1.messagePublished")
        .header(
            "ce-source",
            "//pubsub.googleapis.com/projects/bridge-test/topics/t",
        )
        .json(&json!({"message": {"data": STANDARD.encode(cmd.to_string()), "messageId": "9"}, "subscription": "projects/bridge-test/subscriptions/eventarc"}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert!(status.is_success(), "{status}: {}", r.text().await.unwrap());

    let keys = objects_landed(&w.bucket, &w.prefix, 7, Duration::from_secs(60), || {
        front.all_output()
    })
    .await;
    assert_eq!(keys.len(), 7, "{keys:?}\n{}", front.all_output());
    assert_eq!(
        w.stored("push-3.txt").await.as_deref(),
        Some(&b"message 3"[..])
    );
    assert!(
        push.statuses().iter().all(|s| (200..300).contains(s)),
        "every push acknowledged at the first attempt: {:?}",
        push.statuses()
    );
    assert_eq!(push.tokens_minted(), 1, "the push token is cached");
    // The requests were spread over both instances.
    let per = front.requests_per_instance();
    assert_eq!(per.len(), 2);
    assert!(per.iter().all(|&n| n > 0), "{per:?}");
    assert_eq!(front.refused(), 0);
    // The service saw the trace headers the front end added.
    let out = front.all_output();
    assert!(
        out.contains("\"logging.googleapis.com/trace\":\"projects/bridge-test/traces/"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_mode_behind_the_front_end_refuses_every_delivery() {
    require_rig!();
    // The deployment the Terraform used to make: verify behind Cloud Run's
    // IAM check. Every push answers 401 signature_removed.
    let mut w = World::new("crVerify").await;
    deployed_env(&mut w);
    w.set("AUTH_MODE", "verify");
    let front = start_front_end(front_end_config(&w), &w.env, 1).await;
    let push = push_shim(&w, &front, PUSH_SA).await;
    let cmd = json!({"op": "put", "key": "never.txt", "body": "x"});
    let r = client()
        .post(format!("{}/pubsub", push.url()))
        .json(&json!({"message": {"data": STANDARD.encode(cmd.to_string()), "messageId": "1"}, "subscription": "projects/p/subscriptions/s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "signature_removed", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("AUTH_MODE=cloud-run-iam"));
    assert!(admin_list(&w.bucket, &w.prefix).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_end_refuses_as_cloud_run_does() {
    require_rig!();
    let mut w = World::new("crIam403").await;
    deployed_env(&mut w);
    // An invoker the service does not allow.
    let outsider_invoker = "reports@bridge-test.iam.gserviceaccount.com";
    let mut cfg = front_end_config(&w);
    cfg.invokers
        .push(format!("serviceAccount:{outsider_invoker}"));
    let front = start_front_end(cfg, &w.env, 1).await;
    let put = |token: Option<String>| {
        let rb = client()
            .put(format!("{}/v1/objects/iam.txt", front.url()))
            .body("x");
        match token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    };
    // No token: 403 from the front end; a token for another audience or an
    // expired one: 401; not an invoker: 403. None reach the container.
    let now = bridge_testkit::keys::now_secs();
    let cases = [
        ("no token", None, 403),
        (
            "other audience",
            Some(w.caller_token_with(json!({"aud": "https://elsewhere.test"}))),
            401,
        ),
        (
            "expired",
            Some(w.caller_token_with(json!({"iat": now - 7200, "exp": now - 3600}))),
            401,
        ),
        (
            "not an invoker",
            Some(w.caller_token_with(
                json!({"email": "stranger@bridge-test.iam.gserviceaccount.com"}),
            )),
            403,
        ),
    ];
    for (what, token, want) in cases {
        let r = put(token).send().await.unwrap();
        assert_eq!(r.status(), want, "{what}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("<html>"),
            "{what}: Cloud Run's own page: {body}"
        );
    }
    assert_eq!(front.refused(), 4);
    assert_eq!(front.requests_per_instance(), vec![0]);
    // An invoker that AUTH_ALLOWED_EMAILS does not list: 403 from the service.
    let r = put(Some(
        w.caller_token_with(json!({"email": outsider_invoker})),
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "forbidden");
    assert_eq!(front.requests_per_instance(), vec![1]);
    // The caller's own credential in Authorization stays the app's when
    // X-Serverless-Authorization carries the ID token.
    let r = client()
        .put(format!("{}/v1/objects/xsa.txt", front.url()))
        .header(
            "x-serverless-authorization",
            format!("Bearer {}", w.caller_token()),
        )
        .header("authorization", "Bearer app-credential")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(
        admin_list(&w.bucket, &w.prefix).await,
        vec![w.full("xsa.txt")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_uploads_need_http2_end_to_end() {
    require_rig!();
    let mut w = World::new("crH2c").await;
    deployed_env(&mut w);
    let big = vec![b'z'; 40 * 1024 * 1024];

    // HTTP/1 to the container (the default): Cloud Run's 32 MiB limit.
    let front = start_front_end(front_end_config(&w), &w.env, 1).await;
    let r = client()
        .put(format!("{}/v1/objects/big-h1.bin", front.url()))
        .bearer_auth(w.caller_token())
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Streamed without a length, it is cut when it crosses 32 MiB.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b'y'; 1024 * 1024])).collect();
    let r = client()
        .put(format!("{}/v1/objects/big-h1-chunked.bin", front.url()))
        .bearer_auth(w.caller_token())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    drop(front);

    // --use-http2 (the Terraform's h2c port): the service serves h2c and the
    // limit is gone.
    let mut cfg = front_end_config(&w);
    cfg.http2 = true;
    let front = start_front_end(cfg, &w.env, 1).await;
    let r = client()
        .put(format!("{}/v1/objects/big-h2c.bin", front.url()))
        .bearer_auth(w.caller_token())
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(
        status,
        201,
        "{}\n{}",
        r.text().await.unwrap(),
        front.all_output()
    );
    let got = w.stored("big-h2c.bin").await.unwrap();
    assert_eq!(got.len(), big.len());
    assert_eq!(
        admin_list(&w.bucket, &w.prefix).await,
        vec![w.full("big-h2c.bin")]
    );
    // A GET streams back over h2c too.
    let r = client()
        .get(format!("{}/v1/objects/big-h2c.bin", front.url()))
        .bearer_auth(w.caller_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), big.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_and_scale_down() {
    require_rig!();
    let mut w = World::new("crTimeout").await;
    deployed_env(&mut w);
    let mut cfg = front_end_config(&w);
    cfg.request_timeout = Duration::from_secs(3);
    let front = start_front_end(cfg, &w.env, 1).await;
    // S3 answers after the front end's deadline: 504 from the front end.
    w.proxy
        .push_fault("PutObject", ProxyFault::Delay(Duration::from_secs(6)));
    let t = Instant::now();
    let r = client()
        .put(format!("{}/v1/objects/slow.txt", front.url()))
        .bearer_auth(w.caller_token())
        .body("slow")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());

    // Scale-down with a request in flight: SIGTERM, the request finishes,
    // the instance exits 0 within the grace period. The delay leaves the
    // request 2 s of its 3 s deadline for the rest of its way.
    w.proxy
        .push_fault("PutObject", ProxyFault::Delay(Duration::from_secs(1)));
    let url = format!("{}/v1/objects/inflight.txt", front.url());
    let tok = w.caller_token();
    let inflight = tokio::spawn(async move {
        client()
            .put(url)
            .bearer_auth(tok)
            .body("finished")
            .send()
            .await
    });
    eventually(
        Duration::from_secs(20),
        || "the PUT never reached S3".into(),
        || async { (w.proxy.count("PutObject") >= 2).then_some(()) },
    )
    .await;
    let stopped = front.scale_to(0).await.unwrap();
    let r = inflight.await.unwrap().unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].code, Some(0), "{:?}", stopped[0]);
    assert!(!stopped[0].killed);
    assert!(stopped[0].took < Duration::from_secs(10));
    assert_eq!(
        w.stored("inflight.txt").await.as_deref(),
        Some(&b"finished"[..])
    );
    // No instance left: 503 from the front end.
    let r = client()
        .get(format!("{}/readyz", front.url()))
        .bearer_auth(w.caller_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}
