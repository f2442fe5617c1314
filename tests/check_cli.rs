//! `security-monitor check` and `check-config`, run as an operator runs them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_security-monitor"))
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().expect("temp dir"))
    }

    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, content).expect("write fixture");
        p
    }
}

fn line(ip: &str, time: &str, target: &str, status: u16, referer: &str, ua: &str) -> String {
    format!(
        "{ip} - - [{time} +0000] \"GET {target} HTTP/1.1\" {status} 512 \"{referer}\" \"{ua}\"\n"
    )
}

fn check_json(args: &[&str], files: &[&Path]) -> Value {
    let out = bin()
        .arg("check")
        .arg("--json")
        .args(args)
        .args(files)
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn banned(report: &Value) -> Vec<String> {
    report["bans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ip"].as_str().unwrap().to_string())
        .collect()
}

const ATTACKER: &str = "198.51.100.66";

#[test]
fn json_report_has_the_documented_shape() {
    let d = Dir::new();
    let mut log = String::new();
    log += &line(
        ATTACKER,
        "21/Nov/2026:10:00:00",
        "/item?id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
        200,
        "-",
        "Mozilla/5.0",
    );
    log += &line(
        "203.0.113.10",
        "21/Nov/2026:10:00:01",
        "/index.html",
        200,
        "-",
        "Mozilla/5.0",
    );
    log += "this line is not an access log line\n";
    let f = d.file("access.log", log.as_bytes());
    let r = check_json(&[], &[&f]);
    for key in [
        "lines",
        "parsed",
        "unparsed",
        "rule_hits",
        "bans",
        "allowlisted",
        "elapsed_s",
    ] {
        assert!(r.get(key).is_some(), "missing key {key} in {r}");
    }
    assert_eq!(r["lines"], 3);
    assert_eq!(r["parsed"], 2);
    assert_eq!(r["unparsed"], 1);
    assert!(
        r["rule_hits"]
            .as_object()
            .unwrap()
            .values()
            .any(|v| v.as_u64() >= Some(1)),
        "{r}"
    );
    let bans = r["bans"].as_array().unwrap();
    assert_eq!(bans.len(), 1, "{r}");
    let b = &bans[0];
    assert_eq!(b["ip"], ATTACKER);
    assert_eq!(b["category"], "sqli");
    for key in ["rule", "severity", "hits", "first_seen", "last_seen"] {
        assert!(b.get(key).is_some(), "ban entry lacks {key}: {b}");
    }
    assert_eq!(b["first_seen"], "2026-11-21T10:00:00Z");
}

#[test]
fn an_address_written_into_the_request_is_never_the_one_banned() {
    let d = Dir::new();
    let victims = ["203.0.113.7", "203.0.113.8", "203.0.113.9", "2001:db8::77"];
    let mut log = String::new();
    // The attacker writes victim addresses into every free-text field, with payloads that
    // ban on their own.
    log += &line(
        ATTACKER,
        "21/Nov/2026:10:00:00",
        "/203.0.113.7/../../etc/passwd",
        200,
        "-",
        "Mozilla/5.0",
    );
    log += &line(
        ATTACKER,
        "21/Nov/2026:10:00:01",
        "/q?ip=203.0.113.8&x=%27%20or%201=1--",
        200,
        "http://203.0.113.9/",
        "203.0.113.9 sqlmap/1.7",
    );
    log += &line(
        ATTACKER,
        "21/Nov/2026:10:00:02",
        "/?from=2001:db8::77&c=<script>alert(1)</script>",
        200,
        "2001:db8::77",
        "2001:db8::77",
    );
    // A line whose address field is not an address but whose request is full of them.
    log += "host.example - - [21/Nov/2026:10:00:03 +0000] \"GET /203.0.113.7?q=union+select HTTP/1.1\" 200 1 \"203.0.113.8\" \"203.0.113.9\"\n";
    // fail2ban's CVE-2013-2178 shape: a user name that looks like the start of a line.
    log += &format!("{ATTACKER} - 203.0.113.7 [21/Nov/2026:10:00:04 +0000] \"GET /wp-login.php HTTP/1.1\" 401 1 \"-\" \"x\"\n");
    let f = d.file("access.log", log.as_bytes());
    let r = check_json(&["--format", "combined"], &[&f]);
    let ips = banned(&r);
    assert_eq!(ips, vec![ATTACKER.to_string()], "{r}");
    let text = r.to_string();
    for v in victims {
        assert!(!ips.contains(&v.to_string()), "victim {v} banned: {r}");
        assert!(
            !r["allowlisted"].to_string().contains(v),
            "victim {v} listed: {text}"
        );
    }
    assert_eq!(
        r["unparsed"], 1,
        "the hostname line must not be attributed to anyone: {r}"
    );
}

#[test]
fn the_same_holds_for_json_and_custom_formats() {
    let d = Dir::new();
    let json = format!(
        "{{\"remote_addr\":\"{ATTACKER}\",\"request\":\"GET /?x=203.0.113.7%27%20union%20select%201-- HTTP/1.1\",\"status\":200,\"http_user_agent\":\"203.0.113.8\",\"time_iso8601\":\"2026-11-21T10:00:00+00:00\"}}\n"
    );
    let f = d.file("json.log", json.as_bytes());
    assert_eq!(
        banned(&check_json(&["--format", "json"], &[&f])),
        vec![ATTACKER.to_string()]
    );

    let cfg = d.file(
        "c.json",
        br#"{"formats": {"app": {"regex": "^(?P<time>\\S+) login failed for (?P<user>\\S+) from (?P<ip>[0-9a-f.:]+)"}}}"#,
    );
    let mut log = String::new();
    for i in 0..6 {
        log += &format!("2026-11-21T10:00:0{i}Z login failed for 203.0.113.7 from {ATTACKER} (user said 203.0.113.8)\n");
    }
    let f = d.file("app.log", log.as_bytes());
    let r = check_json(
        &["--config", cfg.to_str().unwrap(), "--format", "app"],
        &[&f],
    );
    assert_eq!(banned(&r), vec![ATTACKER.to_string()], "{r}");
    assert_eq!(r["bans"][0]["category"], "failed_auth", "{r}");
}

#[test]
fn huge_lines_invalid_utf8_and_nul_bytes_neither_crash_nor_stall() {
    let d = Dir::new();
    let mut log: Vec<u8> = Vec::new();
    // 1 MiB of request target, then 1 MiB with no structure at all.
    log.extend_from_slice(format!("203.0.113.20 - - [21/Nov/2026:10:00:00 +0000] \"GET /{} HTTP/1.1\" 200 1 \"-\" \"x\"\n", "a".repeat(1 << 20)).as_bytes());
    log.extend(std::iter::repeat_n(b'z', 1 << 20));
    log.push(b'\n');
    log.extend_from_slice(b"203.0.113.21 - - [21/Nov/2026:10:00:01 +0000] \"GET /\xff\xfe\x00\x00caf\xc3 HTTP/1.1\" 200 1 \"-\" \"\x00\x01\x02\"\n");
    log.extend_from_slice(b"\x00\x00\x00\x00\n\xff\xff\xff\n");
    // An attack after all that is still seen.
    log.extend_from_slice(
        line(
            ATTACKER,
            "21/Nov/2026:10:00:02",
            "/?q=<script>alert(1)</script>",
            200,
            "-",
            "x",
        )
        .as_bytes(),
    );
    let f = d.file("weird.log", &log);
    let r = check_json(&[], &[&f]);
    assert_eq!(r["lines"], 6, "{r}");
    assert_eq!(r["truncated"], 2, "{r}");
    let ips = banned(&r);
    assert!(
        ips.contains(&ATTACKER.to_string()),
        "the attack after the odd lines was missed: {r}"
    );
    // Raw NUL and control bytes in a request line are binary injection; the 1 MiB line of
    // plain letters is nothing.
    assert!(!ips.contains(&"203.0.113.20".to_string()), "{r}");
    assert_eq!(r["bans"][0]["category"], "binary", "{r}");
}

#[test]
fn stdin_is_read_with_a_dash() {
    let mut child = bin()
        .args(["check", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let log = line(
        ATTACKER,
        "21/Nov/2026:10:00:00",
        "/../../../../etc/passwd",
        200,
        "-",
        "x",
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(log.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(banned(&r), vec![ATTACKER.to_string()], "{r}");
}

#[test]
fn windows_follow_the_lines_own_clock() {
    let d = Dir::new();
    let cfg = d.file(
        "c.json",
        br#"{"rules": {"builtin": false}, "patterns": {"probe": "/probe-me"}, "thresholds": {"max_pattern_matches": 3, "pattern_window": "10m"}}"#,
    );
    let mut log = String::new();
    // Slow attacker: one hit every 6 minutes never has 3 within 10 minutes.
    for (i, t) in ["10:00:00", "10:06:00", "10:12:00", "10:18:00"]
        .iter()
        .enumerate()
    {
        log += &line(
            "203.0.113.30",
            &format!("21/Nov/2026:{t}"),
            &format!("/probe-me/{i}"),
            404,
            "-",
            "x",
        );
    }
    // Fast attacker: three hits in two minutes.
    for t in ["11:00:00", "11:01:00", "11:02:00"] {
        log += &line(
            "203.0.113.31",
            &format!("21/Nov/2026:{t}"),
            "/probe-me",
            404,
            "-",
            "x",
        );
    }
    let f = d.file("a.log", log.as_bytes());
    let r = check_json(&["--config", cfg.to_str().unwrap()], &[&f]);
    assert_eq!(banned(&r), vec!["203.0.113.31".to_string()], "{r}");
    assert_eq!(r["bans"][0]["rule"], "probe");
    assert_eq!(r["bans"][0]["first_seen"], "2026-11-21T11:00:00Z");
    assert_eq!(r["bans"][0]["last_seen"], "2026-11-21T11:02:00Z");
}

#[test]
fn allowlisted_and_loopback_offenders_are_listed_not_banned() {
    let d = Dir::new();
    let cfg = d.file("c.json", br#"{"allowlist": ["198.51.100.0/24"]}"#);
    let mut log = String::new();
    for ip in [ATTACKER, "127.0.0.1", "::1", "203.0.113.40"] {
        log += &line(
            ip,
            "21/Nov/2026:10:00:00",
            "/?q=1%27%20union%20select%20null--",
            200,
            "-",
            "x",
        );
    }
    let f = d.file("a.log", log.as_bytes());
    let r = check_json(&["--config", cfg.to_str().unwrap()], &[&f]);
    assert_eq!(banned(&r), vec!["203.0.113.40".to_string()], "{r}");
    let listed: Vec<&str> = r["allowlisted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ip"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![ATTACKER, "127.0.0.1", "::1"], "{r}");
}

fn check_config(content: &[u8]) -> Output {
    let d = Dir::new();
    let f = d.file("monitor_config.json", content);
    bin().arg("check-config").arg(&f).output().unwrap()
}

#[test]
fn check_config_accepts_the_shipped_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/monitor_config.json");
    let out = bin().arg("check-config").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn check_config_reports_every_error_with_position_and_fails() {
    let out = check_config(b"{\n  \"thresholds\": {\"max_failed_auth\": \"five\"},\n  \"alowlist\": [],\n  \"patterns\": {\"bad\": \"(a)\\\\1\", \"look\": \"x(?!y)\"}\n}\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 errors"), "{err}");
    assert!(err.contains(":2:37: thresholds.max_failed_auth"), "{err}");
    assert!(
        err.contains(":3:3: alowlist: unknown key") && err.contains("did you mean \"allowlist\""),
        "{err}"
    );
    assert!(
        err.contains("pattern \"bad\"") && err.contains("backreference"),
        "{err}"
    );
    assert!(
        err.contains("pattern \"look\"") && err.contains("look-around"),
        "{err}"
    );
}

#[test]
fn check_config_reports_syntax_errors_and_missing_files() {
    let out = check_config(b"{\n  \"a\": 1\n  \"b\": 2\n}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(":3:3:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bin()
        .args(["check-config", "/nonexistent/monitor_config.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn check_config_warns_of_a_password_sent_in_clear_text() {
    let out = check_config(br#"{"email": {"enabled": true, "smtp_host": "mail.example.net", "smtp_port": 25, "security": "none",
        "username": "u", "password": "p", "from": "m@example.net", "to": ["ops@example.net"]}}"#);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a warning is not an error: {err}");
    assert!(
        err.contains("warning: email: the SMTP password is sent in clear text"),
        "{err}"
    );
}

#[test]
fn reload_with_a_broken_config_says_what_is_wrong_with_it() {
    // A daemon on the default socket would be asked: leave a real one alone.
    if Path::new("/run/security-monitor/control.sock").exists() {
        eprintln!("skipped: a daemon listens on the default control socket");
        return;
    }
    let d = Dir::new();
    let sock = d.0.path().join("x.sock");
    let text = format!(
        "{{\"control\": {{\"socket\": \"{}\"}},\n \"thresholds\": {{\n",
        sock.display()
    );
    let broken = d.file("broken.json", text.as_bytes());
    let out = bin()
        .args(["reload", "--config"])
        .arg(&broken)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("broken.json:3:1: unexpected end of file"),
        "{err}"
    );
    assert!(
        err.contains("nothing was reloaded") && err.contains("check-config"),
        "{err}"
    );
    assert!(!err.contains("is not running"), "{err}");
}

#[test]
fn check_refuses_a_bad_config_and_an_unknown_format() {
    let d = Dir::new();
    let cfg = d.file("c.json", br#"{"patterns": {"p": "a(?<=b)"}}"#);
    let log = d.file("a.log", b"");
    let out = bin()
        .args(["check", "--config"])
        .arg(&cfg)
        .arg(&log)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pattern \"p\""));
    let out = bin()
        .args(["check", "--format", "nginxx"])
        .arg(&log)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown log format"));
}

#[test]
fn the_seed_patterns_are_honoured_as_written() {
    let d = Dir::new();
    // The seed's command_injection pattern matches any `;` or `$`: a poor default, but
    // an operator who writes it gets exactly it.
    let cfg = d.file(
        "c.json",
        br#"{"rules": {"builtin": false}, "patterns": {"command_injection": "(?i)(;|&&|\\|\\||`|\\$)", "binary_injection": "\\x[0-9a-fA-F]{2}"}, "thresholds": {"max_pattern_matches": 2}}"#,
    );
    let mut log = String::new();
    log += &line(
        "203.0.113.50",
        "21/Nov/2026:10:00:00",
        "/a;jsessionid=1",
        200,
        "-",
        "x",
    );
    log += &line(
        "203.0.113.50",
        "21/Nov/2026:10:00:01",
        "/b;jsessionid=1",
        200,
        "-",
        "x",
    );
    log += "203.0.113.51 - - [21/Nov/2026:10:00:00 +0000] \"\\x16\\x03\\x01\" 400 0 \"-\" \"-\"\n";
    log += "203.0.113.51 - - [21/Nov/2026:10:00:01 +0000] \"\\x16\\x03\\x01\" 400 0 \"-\" \"-\"\n";
    let f = d.file("a.log", log.as_bytes());
    let r = check_json(&["--config", cfg.to_str().unwrap()], &[&f]);
    assert_eq!(r["rule_hits"]["command_injection"], 2, "{r}");
    assert_eq!(r["rule_hits"]["binary_injection"], 2, "{r}");
    let mut ips = banned(&r);
    ips.sort();
    assert_eq!(ips, vec!["203.0.113.50", "203.0.113.51"]);
}

#[test]
fn the_text_report_lists_hits_and_bans() {
    let d = Dir::new();
    let f = d.file(
        "a.log",
        line(
            ATTACKER,
            "21/Nov/2026:10:00:00",
            "/?q=%3Cscript%3Ealert(1)%3C/script%3E",
            200,
            "-",
            "x",
        )
        .as_bytes(),
    );
    let out = bin().arg("check").arg(&f).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Lines: 1 read, 1 parsed, 0 unparsed"),
        "{text}"
    );
    assert!(text.contains("Would ban: 1 IP"), "{text}");
    assert!(text.contains(ATTACKER) && text.contains("xss"), "{text}");
}

#[test]
fn the_shipped_completions_match_the_command_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/completions");
    for shell in ["bash", "zsh", "fish"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let shipped = std::fs::read(dir.join(format!("security-monitor.{shell}"))).unwrap();
        assert!(
            shipped == out.stdout,
            "packaging/completions/security-monitor.{shell} is out of date; regenerate it (see packaging/README.md)"
        );
    }
}

/// Every key of the shipped config is documented in the README's configuration reference.
#[test]
fn every_shipped_config_key_is_in_the_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let reference = &readme[readme
        .find("## Configuration reference")
        .expect("a configuration reference section")..];
    let text = std::fs::read_to_string(root.join("config/monitor_config.json")).unwrap();
    // Strip // comments (the shipped config has no /* */ ones and no // inside strings
    // other than the socket path, which starts with a slash, not two).
    let json: String = text
        .lines()
        .map(|l| l.split("  //").next().unwrap_or(l))
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let value: Value =
        serde_json::from_str(&json).expect("the shipped config, without comments, is JSON");
    fn keys(v: &Value, out: &mut Vec<String>) {
        if let Value::Object(m) = v {
            for (k, child) in m {
                out.push(k.clone());
                keys(child, out);
            }
        }
    }
    let mut all = Vec::new();
    keys(&value, &mut all);
    assert!(all.len() > 30, "{all:?}");
    let missing: Vec<&String> = all
        .iter()
        .filter(|k| !reference.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys of config/monitor_config.json not documented in the README: {missing:?}"
    );
}

/// Runs `check --json` on `files`, killing it after a generous 20 s: a hang fails the
/// test instead of stalling the suite. Returns the report and stderr.
fn check_json_bounded(args: &[&str], files: &[&Path]) -> (Value, String) {
    let mut child = bin()
        .arg("check")
        .arg("--json")
        .args(args)
        .args(files)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run check");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("wait for check").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("check was still running after 20 s: a line hangs the detector");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("check output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "check failed: {stderr}");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (report, stderr)
}

const ATTACK_REQUEST: &str = "GET /item?id=1' UNION SELECT 1,2-- HTTP/1.1";

#[test]
fn a_time_of_400_digits_does_not_hang_check() {
    let d = Dir::new();
    let digits = "9".repeat(400);
    let mut log = String::new();
    // nginx logs a Basic-auth user name as sent, brackets included.
    log += &format!("203.0.113.30 - [{digits}] [21/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"-\"\n");
    log += &format!("{{\"remote_addr\":\"203.0.113.31\",\"request\":\"GET / HTTP/1.1\",\"time\":\"{digits}\"}}\n");
    log += &format!(
        "{ATTACKER} - - [21/Nov/2026:10:00:01 +0000] \"{ATTACK_REQUEST}\" 200 5 \"-\" \"-\"\n"
    );
    let f = d.file("huge-times.log", log.as_bytes());
    let (r, _) = check_json_bounded(&[], &[&f]);
    assert_eq!(r["lines"], 3, "{r}");
    assert_eq!(r["parsed"], 3, "{r}");
    assert_eq!(banned(&r), vec![ATTACKER.to_string()], "{r}");
}

#[test]
fn a_bracketed_user_field_does_not_hide_an_attack() {
    let d = Dir::new();
    let mut log = String::new();
    for (i, user) in ["[x]", "[", "a ] [b", "x y"].iter().enumerate() {
        log += &format!("203.0.113.{} - {user} [21/Nov/2026:00:06:0{i} +0000] \"{ATTACK_REQUEST}\" 200 5 \"-\" \"-\"\n", 10 + i);
    }
    let f = d.file("user.log", log.as_bytes());
    for format in ["auto", "combined"] {
        let (r, _) = check_json_bounded(&["--format", format], &[&f]);
        assert_eq!(r["unparsed"], 0, "{format}: {r}");
        let mut ips = banned(&r);
        ips.sort();
        assert_eq!(
            ips,
            [
                "203.0.113.10",
                "203.0.113.11",
                "203.0.113.12",
                "203.0.113.13"
            ],
            "{format}: {r}"
        );
    }
}

#[test]
fn a_virtual_host_in_front_of_the_client_is_never_banned() {
    let d = Dir::new();
    let tail = "- - [21/Nov/2026:00:06:01 +0000] \"GET /?id=1' union select 1,2-- HTTP/1.1\" 200 5 \"-\" \"-\" \"172.17.0.5:80\"\n";
    let mut log = String::new();
    log += &format!("8.8.8.8 {ATTACKER} {tail}");
    log += &format!("example.com 198.51.100.67 {tail}");
    log += &format!("example.com:443 198.51.100.68 {tail}");
    let f = d.file("vhost.log", log.as_bytes());
    for format in ["auto", "vhost_combined"] {
        let (r, _) = check_json_bounded(&["--format", format], &[&f]);
        assert_eq!(r["unparsed"], 0, "{format}: {r}");
        let mut ips = banned(&r);
        ips.sort();
        assert_eq!(
            ips,
            [ATTACKER, "198.51.100.67", "198.51.100.68"],
            "{format}: {r}"
        );
    }
    // Told plain combined, the lines are refused, never blamed on 8.8.8.8.
    let (r, _) = check_json_bounded(&["--format", "combined"], &[&f]);
    assert!(banned(&r).is_empty(), "{r}");
}

#[test]
fn check_says_when_most_lines_do_not_parse() {
    let d = Dir::new();
    let mut log = String::new();
    for i in 0..150 {
        log += &format!("{{\"level\":\"info\",\"msg\":\"tick {i}\"}}\n");
    }
    log += &format!(
        "{ATTACKER} - - [21/Nov/2026:10:00:01 +0000] \"{ATTACK_REQUEST}\" 200 5 \"-\" \"-\"\n"
    );
    let f = d.file("app.log", log.as_bytes());
    let (r, stderr) = check_json_bounded(&[], &[&f]);
    assert!(
        stderr.contains("app.log") && stderr.contains("not in log format \"auto\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("tick 0") && !stderr.contains("tick 99"),
        "the notice names the first line that did not parse: {stderr}"
    );
    assert_eq!(r["notices"].as_array().map(Vec::len), Some(1), "{r}");
    // A log that parses says nothing.
    let g = d.file(
        "ok.log",
        line(ATTACKER, "21/Nov/2026:10:00:00", "/", 200, "-", "-")
            .repeat(150)
            .as_bytes(),
    );
    let (r, stderr) = check_json_bounded(&[], &[&g]);
    assert!(!stderr.contains("not in log format"), "{stderr}");
    assert!(r.get("notices").is_none(), "{r}");
}

/// Lines of `fields` crafted bytes per field: random mixes of the characters and words
/// the built-in rules start with, so the lazy DFA meets a new state at nearly every
/// byte. Deterministic (a fixed xorshift seed); bench/hostile_regex.sh makes the same kind.
fn crafted_lines(n: usize, field: usize) -> String {
    const TOKENS: &[&str] = &[
        "'", "%22", "`", "(", ")", "<", ">", "%27", "%3c", ";", "=", "-", "--", "/", "\\\\", "*",
        "|", "&", "$", "{", "}", "[", "]", "%20", "+", "select", "union", "script", "or", "and",
        "sleep", "1", "0x", "on", "a", "..", "%2e", "@", "#", ",", ":", "!", "?", "~", "^", "x",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut mix = || {
        let mut s = String::new();
        while s.len() < field {
            s.push_str(TOKENS[(next() % TOKENS.len() as u64) as usize]);
        }
        s
    };
    (0..n)
        .map(|i| {
            let (q, referer, ua) = (mix(), mix(), mix());
            let time = format!("21/Nov/2026:00:{:02}:{:02}", i / 60 % 60, i % 60);
            line(
                &format!("198.51.100.{}", i % 250 + 1),
                &time,
                &format!("/search?q={q}"),
                200,
                &referer,
                &ua,
            )
        })
        .collect()
}

/// Runs `check` on `log` and returns its report and the child's own peak RSS in KiB
/// (from wait4, so other tests' children do not count). Killed after `limit`, so a
/// matcher gone quadratic fails the test instead of hanging it.
// The child is reaped by wait4 (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn check_peak_rss(dir: &Dir, log: &Path, limit: std::time::Duration) -> (Value, i64) {
    let config = dir.file("empty.json", b"{}");
    let out_path = dir.0.path().join("report.json");
    let mut child = bin()
        .args(["check", "--json", "--config"])
        .arg(&config)
        .arg(log)
        .stdout(std::fs::File::create(&out_path).expect("report file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("run check");
    let pid = child.id() as libc::pid_t;
    let started = std::time::Instant::now();
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child, not yet reaped; status and usage are valid.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("check did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "check failed: wait status {status}"
    );
    let report = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).expect("JSON report");
    (report, usage.ru_maxrss)
}

/// 200 crafted lines of about 6 KB (the shape of the report that took 36 s and 1 GiB):
/// the matcher's memory stays bounded. Before, each field's automaton cache could grow
/// to 512 MiB and this run peaked at 328 MiB (debug build).
#[test]
fn crafted_lines_are_checked_in_bounded_memory() {
    let dir = Dir::new();
    let log = dir.file("crafted.log", crafted_lines(200, 2000).as_bytes());
    let (report, peak_kib) = check_peak_rss(&dir, &log, std::time::Duration::from_secs(900));
    eprintln!(
        "check on 200 crafted lines: peak RSS {} MiB",
        peak_kib / 1024
    );
    assert_eq!(report["parsed"], 200, "{report}");
    // The mixes hold attack words, so the lines are judged, not skipped.
    assert!(!banned(&report).is_empty(), "{report}");
    assert!(
        peak_kib < 160 * 1024,
        "check peaked at {} MiB on crafted lines; the bound is 160 MiB",
        peak_kib / 1024
    );
}

/// `profiles --json` lists every built-in profile, and the README's table names each.
#[test]
fn profiles_are_listed_and_the_readme_table_names_each() {
    let out = bin().args(["profiles", "--json"]).output().expect("run");
    assert!(out.status.success());
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");
    let list = list.as_array().expect("a list");
    assert!(!list.is_empty());
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let table = readme
        .split("<!-- profiles-table -->")
        .nth(1)
        .expect("the README has a profiles table between markers");
    for p in list {
        let name = p["name"].as_str().expect("a name");
        assert!(
            table.contains(&format!("| `{name}` |")),
            "README's profiles table lacks {name}: run scripts/profiles_table.py"
        );
        assert!(p["shapes"].as_array().is_some_and(|s| !s.is_empty()), "{p}");
    }
    let text = bin().arg("profiles").output().expect("run");
    assert!(String::from_utf8_lossy(&text.stdout).contains("images"));
}

/// `check --profile NAME` reads a file as that application and counts lines per shape;
/// an unknown name is an error naming the known ones.
#[test]
fn check_reads_a_file_as_a_profile() {
    let d = Dir::new();
    let mut log = String::new();
    for _ in 0..6 {
        log += "[2024-01-15 10:00:00.123][vaultwarden::api::identity][ERROR] Username or password is incorrect. Try again. IP: 203.0.113.50. Username: a@example.com.\n";
    }
    log += "[2024-01-15 10:00:05.001][rocket::launch][INFO] Rocket has launched from http://0.0.0.0:80\n";
    let f = d.file("vw.log", log.as_bytes());
    let r = check_json(&["--profile", "vaultwarden"], &[&f]);
    assert_eq!(banned(&r), vec!["203.0.113.50".to_string()], "{r}");
    assert_eq!(r["profile"], "vaultwarden", "{r}");
    let shapes = r["shapes"].as_array().expect("shapes");
    assert!(shapes.iter().any(|s| s["lines"].as_u64() == Some(6)), "{r}");
    // Without the profile, nothing in these lines reads as a request.
    let r = check_json(&[], &[&f]);
    assert!(banned(&r).is_empty(), "{r}");
    let out = bin()
        .args(["check", "--profile", "vaultwardn"])
        .arg(&f)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown profile") && err.contains("vaultwarden"),
        "{err}"
    );
}

/// A PostgreSQL failure without the client's address tells the operator what to set.
#[test]
fn a_profile_hint_says_what_to_set_when_lines_name_no_client() {
    let d = Dir::new();
    let f = d.file(
        "pg.log",
        b"2024-01-15 10:00:00.123 UTC [77] FATAL:  password authentication failed for user \"postgres\"\n",
    );
    let out = bin()
        .args(["check", "--json", "--profile", "postgres"])
        .arg(&f)
        .output()
        .expect("run");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("log_line_prefix") && err.contains("%h"),
        "{err}"
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(r["notices"].to_string().contains("log_line_prefix"), "{r}");
}

#[test]
fn learn_warms_the_endpoint_baselines_and_the_report_lists_what_strays() {
    let d = Dir::new();
    let ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0";
    let mut normal = String::new();
    for i in 0..300u32 {
        let target = format!("/shop/item?id={}&qty={}&B1=Add", i % 40 + 1, i % 9 + 1);
        let ip = format!("10.1.{}.{}", i / 200, i % 200 + 1);
        normal.push_str(&line(&ip, "21/Nov/2026:10:00:00", &target, 200, "-", ua));
    }
    let learn = d.file("normal.log", normal.as_bytes());
    let test = d.file(
        "test.log",
        [
            line(
                "203.0.113.5",
                "21/Nov/2026:11:00:00",
                "/shop/item?id=7&qty=2&B1=Add",
                200,
                "-",
                ua,
            ),
            // Nothing a rule bans: a dash and letters in a numeric id.
            line(
                "203.0.113.6",
                "21/Nov/2026:11:00:01",
                "/shop/item?id=7-x&qty=2&B1=Add",
                200,
                "-",
                ua,
            ),
            line(
                "203.0.113.7",
                "21/Nov/2026:11:00:02",
                "/shop/item?id=7&qty=2&B1=Add&debug=1",
                200,
                "-",
                ua,
            ),
        ]
        .concat()
        .as_bytes(),
    );
    let r = check_json(
        &["--format", "combined", "--learn", learn.to_str().unwrap()],
        &[&test],
    );
    // The report is about the test file alone.
    assert_eq!(r["lines"], 3, "{r}");
    assert!(
        r["anomaly_model"]["learned"].as_u64().unwrap() >= 300,
        "{r}"
    );
    let list = r["anomalies"].as_array().expect("anomalies listed");
    let by_ip = |ip: &str| list.iter().find(|a| a["ip"] == ip).cloned();
    assert!(by_ip("203.0.113.5").is_none(), "{r}");
    let a = by_ip("203.0.113.6").expect("the odd id is flagged");
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("parameter `id` on GET /shop/item"),
        "{a}"
    );
    assert!(a["score"].as_f64().unwrap() >= 0.5, "{a}");
    assert_eq!(a["endpoint"], "GET /shop/item");
    let a = by_ip("203.0.113.7").expect("the unknown parameter is flagged");
    assert!(a["reason"].as_str().unwrap().contains("`debug`"), "{a}");
    assert_eq!(r["anomalies_total"], 2);
    // No ban from an anomaly in check.
    assert!(banned(&r).is_empty(), "{r}");
    // The config's anomaly section applies: with min_samples above what was learned,
    // no endpoint is judged yet.
    let cfg = d.file(
        "monitor_config.json",
        br#"{"anomaly": {"min_samples": 1000}}"#,
    );
    let r = check_json(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--format",
            "combined",
            "--learn",
            learn.to_str().unwrap(),
        ],
        &[&test],
    );
    assert_eq!(r["anomalies_total"], 0, "{r}");
    // Without --learn or --anomalies the report has no such keys.
    let r = check_json(&["--format", "combined"], &[&test]);
    assert!(r.get("anomalies").is_none(), "{r}");
    // A learning file that cannot be read is an error that names it.
    let out = bin()
        .args(["check", "--learn", "/nonexistent/normal.log"])
        .arg(&test)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/normal.log"));
}
