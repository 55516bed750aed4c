//! A Pub/Sub push body: decoding the envelope and mapping its message to a
//! command never panics, whatever the bytes.
#![no_main]

use gcp_aws_bridge::triggers::pubsub::{message_to_command, PushEnvelope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = serde_json::from_slice::<PushEnvelope>(data) {
        let _ = message_to_command(&env.message);
    }
});
