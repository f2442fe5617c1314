#![no_main]
//! `blocked_ips.json` as the daemon loads and restores it.
use libfuzzer_sys::fuzz_target;
use security_monitor::harness;

fuzz_target!(|data: &[u8]| harness::state_file(data));
