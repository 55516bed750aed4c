//! The service as deployed: real binaries behind the test kit's Cloud Run
//! front end, called through push shims that add the OIDC tokens Pub/Sub
//! and Eventarc send.

use bridge_testkit::{CloudRunConfig, CloudRunEmulator, Container, PushConfig, PushShim};

use super::{World, CALLER_EMAIL, SERVICE_AUDIENCE};

/// The push subscription's service account.
pub const PUSH_SA: &str = "bridge-push@bridge-test.iam.gserviceaccount.com";
/// The Eventarc trigger's service account.
pub const EVENTS_SA: &str = "bridge-events@bridge-test.iam.gserviceaccount.com";
/// The push identity of the tasks subscription (`TASKS_PUSH_EMAIL`): an
/// invoker, but no caller of the outside doors.
pub const TASKS_SA: &str = super::TASKS_EMAIL;

/// A front end for `w`'s service: service URL [`SERVICE_AUDIENCE`], the
/// push, Eventarc and default caller accounts as invokers.
pub fn front_end_config(w: &World) -> CloudRunConfig {
    CloudRunConfig {
        service: "gcp-aws-bridge".into(),
        revision: "gcp-aws-bridge-00001-test".into(),
        url: Some(SERVICE_AUDIENCE.to_owned()),
        invokers: vec![
            format!("serviceAccount:{PUSH_SA}"),
            format!("serviceAccount:{EVENTS_SA}"),
            format!("serviceAccount:{TASKS_SA}"),
            format!("serviceAccount:{CALLER_EMAIL}"),
        ],
        jwks_url: w.metadata.jwks_url(),
        startup_probe: Some("/healthz".into()),
        ..CloudRunConfig::default()
    }
}

/// `w`'s environment as the Terraform deploys it: `cloud-run-iam`, the three
/// callers of the outside doors allowed, the tasks subscription's account at
/// `/tasks`.
pub fn deployed_env(w: &mut World) {
    w.set("AUTH_MODE", "cloud-run-iam");
    w.set("TASKS_PUSH_EMAIL", TASKS_SA);
    w.set(
        "AUTH_ALLOWED_EMAILS",
        &format!("{PUSH_SA},{EVENTS_SA},{CALLER_EMAIL}"),
    );
}

/// Starts `instances` instances of the real binary with `env` behind a front
/// end configured by `cfg`.
pub async fn start_front_end(
    cfg: CloudRunConfig,
    env: &[(String, String)],
    instances: usize,
) -> CloudRunEmulator {
    let mut env = env.to_vec();
    env.push(("RUST_LOG".into(), "info".into()));
    let container = Container::new(env!("CARGO_BIN_EXE_gcp-aws-bridge"), env);
    CloudRunEmulator::start(cfg, container, instances)
        .await
        .expect("the front end and its instances start")
}

/// A push shim for `service_account` in front of `front`, minting tokens for
/// the front end's service URL.
pub async fn push_shim(w: &World, front: &CloudRunEmulator, service_account: &str) -> PushShim {
    PushShim::start(PushConfig {
        target: front.url(),
        service_account: service_account.to_owned(),
        audience: Some(front.service_url()),
        metadata_url: w.metadata.base_url(),
    })
    .await
}
