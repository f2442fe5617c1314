//! Replays every fuzz target's corpus (`fuzz/corpus/<target>/`) through the same harness
//! functions libFuzzer drives (`scripts/fuzz.sh`), so what fuzzing found once stays fixed.
//! Each target runs on its own thread with a deadline: an input that hangs fails the test
//! instead of stalling the suite.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use security_monitor::harness;

/// Far more than any target needs for its whole corpus; only a hang reaches it.
const DEADLINE: Duration = Duration::from_secs(120);

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("a readable corpus file");
            (p, bytes)
        })
        .collect()
}

fn replay(target: &'static str, run: fn(&[u8])) {
    let inputs = corpus(target);
    let n = inputs.len();
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(target.into())
        .spawn(move || {
            for (path, bytes) in inputs {
                tx.send(Some(path)).expect("the test is waiting");
                run(&bytes);
            }
            let _ = tx.send(None);
        })
        .expect("a thread");
    let mut last = None;
    let mut done = 0;
    loop {
        match rx.recv_timeout(DEADLINE) {
            Ok(Some(path)) => {
                last = Some(path);
                done += 1;
            }
            Ok(None) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{target}: the harness panicked on {last:?}")
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{target}: no progress in {DEADLINE:?} on {last:?}")
            }
        }
    }
    eprintln!("{target}: {n} inputs replayed ({done} started)");
}

fn log(target: &'static str) {
    fn run_auto(d: &[u8]) {
        harness::log_lines(&harness::log_format("auto").unwrap(), d)
    }
    fn run_combined(d: &[u8]) {
        harness::log_lines(&harness::log_format("combined").unwrap(), d)
    }
    fn run_json(d: &[u8]) {
        harness::log_lines(&harness::log_format("json").unwrap(), d)
    }
    fn run_custom(d: &[u8]) {
        harness::log_lines(&harness::log_format("custom").unwrap(), d)
    }
    let run: fn(&[u8]) = match target {
        "log_auto" => run_auto,
        "log_combined" => run_combined,
        "log_json" => run_json,
        "log_custom" => run_custom,
        other => panic!("no log target {other}"),
    };
    replay(target, run);
}

#[test]
fn log_auto_corpus() {
    log("log_auto");
}

#[test]
fn log_combined_corpus() {
    log("log_combined");
}

#[test]
fn log_json_corpus() {
    log("log_json");
}

#[test]
fn log_custom_corpus() {
    log("log_custom");
}

#[test]
fn config_jsonc_corpus() {
    replay("config_jsonc", harness::config_text);
}

#[test]
fn state_file_corpus() {
    replay("state_file", harness::state_file);
}

#[test]
fn control_request_corpus() {
    replay("control_request", harness::control_request);
}

/// Every target in fuzz/Cargo.toml has a corpus here, and every corpus a test above.
#[test]
fn every_target_has_a_replayed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let targets: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "security-monitor-fuzz")
        .collect();
    let this = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file!()))
        .expect("this file");
    for t in &targets {
        assert!(root.join("corpus").join(t).is_dir(), "no corpus for {t}");
        assert!(this.contains(&format!("\"{t}\"")), "corpus {t} is not replayed");
    }
    assert!(targets.len() >= 7, "targets: {targets:?}");
}
