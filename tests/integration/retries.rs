//! One retry layer per dependency: a dependency that keeps failing costs a
//! bounded number of attempts per request, never attempts multiplied across
//! the layers that call it (the identity source inside the STS provider
//! inside the S3 client).

use crate::common;
use crate::common::require_rig;

use std::sync::Arc;

use bridge_testkit::{Endpoint, Fault, ProxyFault};
use common::World;
use gcp_aws_bridge::aws::{AwsClients, AwsOptions};
use gcp_aws_bridge::google::identity::IdTokenSource;

async fn put_once(w: &World) -> bool {
    let config = w.config();
    let ids = IdTokenSource::from_settings(&config.identity).expect("identity source");
    let aws = AwsClients::new(&config.aws, Arc::new(ids), AwsOptions::default());
    aws.s3
        .put_object()
        .bucket(&w.bucket)
        .key(w.full("r"))
        .body(vec![b'x'; 4].into())
        .send()
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_server_that_is_down_costs_at_most_four_requests() {
    require_rig!();
    let w = World::new("retry-metadata").await;
    for _ in 0..64 {
        w.metadata
            .push_fault(Endpoint::Identity, Fault::Status(500));
    }
    assert!(!put_once(&w).await, "the PUT fails without credentials");
    let calls = w.metadata.calls(Endpoint::Identity);
    assert!((1..=4).contains(&calls), "{calls} identity requests");
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 0);
    assert_eq!(w.proxy.count("PutObject"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sts_that_is_down_costs_at_most_four_requests() {
    require_rig!();
    let w = World::new("retry-sts").await;
    for _ in 0..64 {
        w.proxy
            .push_fault("AssumeRoleWithWebIdentity", ProxyFault::Status(503));
    }
    assert!(!put_once(&w).await, "the PUT fails without credentials");
    let calls = w.proxy.count("AssumeRoleWithWebIdentity");
    assert!((1..=4).contains(&calls), "{calls} STS requests");
    assert_eq!(
        w.metadata.calls(Endpoint::Identity),
        1,
        "one token serves every STS attempt"
    );
}
