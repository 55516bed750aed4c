//! A command's JSON: parsing never panics, whatever the bytes.
#![no_main]

use gcp_aws_bridge::command::parse_command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_command(data);
});
