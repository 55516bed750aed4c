//! A Pub/Sub push body, decoded by the parser the `/pubsub` and `/tasks`
//! handlers use, then its message mapped to a command: never panics,
//! whatever the bytes.
#![no_main]

use gcp_aws_bridge::http::triggers::pubsub::{decode_push, message_to_command, PushEnvelope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_push(data);
    if let Ok(env) = serde_json::from_slice::<PushEnvelope>(data) {
        let _ = message_to_command(env.message);
    }
});
