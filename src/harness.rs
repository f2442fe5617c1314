//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their
//! corpora (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes from outside the process,
//! must never panic or hang, and checks what must hold for any input. They are plain
//! functions so that the corpora run under `cargo test` on stable Rust, while
//! `scripts/fuzz.sh` runs the same code under libFuzzer.

use std::cell::RefCell;
use std::net::IpAddr;

use crate::api::Request;
use crate::ban::state_file::StateFile;
use crate::ban::Policy;
use crate::ban::{BanBook, NeverBan};
use crate::config;
use crate::detect::parse::LineParser;
use crate::detect::parse::LogFormat;
use crate::detect::Detector;
use crate::time::{format_time, parse_time};

/// The log formats a fuzz target can drive, by the name of its target.
pub fn log_format(name: &str) -> Option<LogFormat> {
    Some(match name {
        "auto" => LogFormat::Auto,
        "combined" => LogFormat::Combined,
        "vhost_combined" => LogFormat::VhostCombined,
        "json" => LogFormat::Json(Box::default()),
        // A typical application-log regex of the kind the README shows.
        "custom" => LogFormat::Custom {
            name: "fuzz".into(),
            regex: r"^(?P<time>\S+) (?P<method>[A-Z]+) (?P<path>\S*) from (?P<ip>\S+)(?: ua=(?P<ua>.*))?".into(),
        },
        _ => return None,
    })
}

thread_local! {
    /// Compiling the rules takes far longer than one input: one detector per thread. Its
    /// per-IP state carries over between inputs, which is what a long-running daemon
    /// does too.
    static DETECTOR: RefCell<Option<Detector>> = const { RefCell::new(None) };
}

/// Feeds `data`, split into lines, through the `format` parser and the detector with the
/// default config. Checks that what a parse returns is sane: a status is an HTTP status,
/// a time formats and parses back to itself.
pub fn log_lines(format: &LogFormat, data: &[u8]) {
    let Ok(mut parser) = LineParser::new(format) else {
        return;
    };
    DETECTOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let detector = slot.get_or_insert_with(|| {
            Detector::new(&crate::detect::Settings::default()).expect("the built-in rules compile")
        });
        let mut now = 1_800_000_000;
        for line in data.split(|&b| b == b'\n') {
            let Some(req) = parser.parse(line) else {
                continue;
            };
            if let Some(s) = req.status {
                assert!(
                    (100..1000).contains(&s),
                    "status {s} from {:?}",
                    String::from_utf8_lossy(line)
                );
            }
            if let Some(t) = req.time {
                let text = format_time(t);
                assert_eq!(
                    parse_time(text.as_bytes()),
                    Some(t),
                    "time {t} from {:?}",
                    String::from_utf8_lossy(line)
                );
                now = t;
            }
            let obs = detector.observe(&req, line, now);
            if let Some(v) = obs.verdict {
                assert_eq!(v.ip, req_client(&req), "a verdict names the parsed client");
            }
        }
    });
}

/// The client a verdict may name: the parsed address, or one from its forwarded field
/// (only trusted proxies make that happen, and the default config trusts none).
fn req_client(req: &crate::detect::parse::Request<'_>) -> IpAddr {
    req.ip
}

/// The JSONC reader and the validator: any text gives a config or errors with positions
/// inside the text, never a panic.
pub fn config_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count() as u32;
    if let Err(e) = config::jsonc::parse(text) {
        assert!(
            e.pos.line >= 1 && e.pos.line <= lines,
            "{e:?} outside the text"
        );
    }
    match config::parse_str(text) {
        Ok(cfg) => {
            assert!(cfg.ban.duration <= cfg.ban.max_duration || cfg.ban.max_duration == 0);
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(e.pos.line <= lines, "{e} outside the text");
            }
        }
    }
}

/// `blocked_ips.json` as the daemon reads it at start: a file that loads round-trips, and
/// restoring it into the ban book, expiring and writing it back never panics or overflows.
pub fn state_file(data: &[u8]) {
    let Ok(file) = serde_json::from_slice::<StateFile>(data) else {
        return;
    };
    let text = serde_json::to_vec(&file).expect("a loaded state file serialises");
    let again: StateFile = serde_json::from_slice(&text).expect("what was written reads back");
    assert_eq!(again, file, "the state file round-trips");
    let now = 1_800_000_000;
    let mut book = BanBook::new(Policy::default(), 30, NeverBan::default());
    let restored = book.restore(Some(file), &[], now);
    for (_, seconds) in &restored.apply {
        assert!(*seconds > 0);
    }
    let _ = book.next_expiry();
    let _ = book.expire(now.saturating_add(100 * 365 * 86400));
    let _ = book.snapshot(now);
}

/// One line of the control protocol as the daemon's socket reads it: a request that
/// parses serialises back to the same request, and its filters are checked without a
/// panic.
pub fn control_request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(req) = serde_json::from_str::<Request>(text) else {
        return;
    };
    let again = serde_json::to_string(&req).expect("a request serialises");
    assert_eq!(
        serde_json::from_str::<Request>(&again).ok().as_ref(),
        Some(&req),
        "the request round-trips"
    );
    if let Request::Alerts {
        since,
        severity,
        ip,
        container,
        limit,
        kind,
    } = req
    {
        let _ = crate::alerts::Filter::parse(since, severity, ip, container, limit, 1_800_000_000)
            .and_then(|f| f.with_kind(kind));
    }
}
