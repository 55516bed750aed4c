//! A command's or a task's JSON, as the outside doors and `/tasks` decode
//! it: parsing never panics, whatever the bytes.
#![no_main]

use gcp_aws_bridge::wire::{parse_command, parse_task};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_command(data);
    let _ = parse_task(data);
});
