#![no_main]
//! Log lines in the `custom` format through the parser and the detector.
use libfuzzer_sys::fuzz_target;
use security_monitor::harness;

fuzz_target!(
    // Compiling the rules takes seconds under the sanitizer: before the clock starts.
    init: harness::log_lines(&harness::log_format("custom").expect("a known format"), b""),
    |data: &[u8]| {
        let format = harness::log_format("custom").expect("a known format");
        harness::log_lines(&format, data);
    }
);
