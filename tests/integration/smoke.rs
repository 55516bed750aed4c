use crate::common;

use crate::common::require_rig;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_through_the_service() {
    require_rig!();
    let w = World::new("smoke").await;
    let server = Server::start(&w.env).await;
    let client = reqwest::Client::new();
    let r = client
        .put(format!("{}/v1/objects/hello.txt", server.url))
        .bearer_auth(w.caller_token())
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 201, "{text}\n{}", server.stdout.text());
    assert_eq!(
        admin_get(&w.bucket, &w.full("hello.txt")).await.unwrap(),
        b"hello"
    );
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1);
}

/// SIGTERM sent the moment `/healthz` first answers stops the process every
/// time: the handlers are in place before the listener opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_start_always_stops() {
    require_rig!();
    let w = World::new("sigterm-start").await;
    for _ in 0..20 {
        let mut server = Server::start(&w.env).await;
        server.terminate();
        let status = server.wait(std::time::Duration::from_secs(10)).await;
        assert!(status.success(), "{status}");
    }
}
