#![no_main]
//! The JSONC reader and the config validator.
use libfuzzer_sys::fuzz_target;
use security_monitor::harness;

fuzz_target!(|data: &[u8]| harness::config_text(data));
