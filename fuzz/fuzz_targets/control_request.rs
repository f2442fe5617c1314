#![no_main]
//! One control-socket request line.
use libfuzzer_sys::fuzz_target;
use security_monitor::harness;

fuzz_target!(|data: &[u8]| harness::control_request(data));
