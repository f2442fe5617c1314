//! Mail and webhook notices against real servers: Debian's python3-aiosmtpd (plain,
//! STARTTLS with a certificate from a test CA, AUTH) and a local HTTP receiver, both
//! started by these tests on 127.0.0.1 (tests/smtp_server.py, tests/http_receiver.py).
//! The notifier is driven through its library API with a `Bus` of our own; `test-notify`
//! through the binary.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, have, require, wait_until};
use security_monitor::ban::state_file::BanRecord;
use security_monitor::config;
use security_monitor::events::{Bus, Event};
use security_monitor::notify::{Notifier, NotifyStatus};
use serde_json::Value;

/// Debian's python (where python3-aiosmtpd is), not whatever `python3` is first on PATH.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn have_aiosmtpd() -> bool {
    require(
        "python3-aiosmtpd (apt-get install python3-aiosmtpd; tests/run.sh installs it)",
        have(python(), &["-c", "import aiosmtpd"]),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

/// `--cert CERT --key KEY` for a test server, then `extra`.
fn tls_args<'a>(cert: &'a Path, key: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--cert",
        cert.to_str().expect("a UTF-8 path"),
        "--key",
        key.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    args
}

/// A helper server process, killed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Server {
    fn start(script_name: &str, port: u16, dir: &Path, extra: &[&str]) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        let mut child = Command::new(python())
            .arg(script(script_name))
            .arg(port.to_string())
            .arg(dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the test server");
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        use std::io::Read;
        out.read_exact(&mut buf)
            .expect("the test server did not start (see its error above)");
        assert_eq!(&buf, b"READY\n");
        Server {
            child,
            dir: dir.to_path_buf(),
        }
    }

    fn smtp(port: u16, dir: &Path, extra: &[&str]) -> Server {
        Server::start("smtp_server.py", port, dir, extra)
    }

    fn http(port: u16, dir: &Path, extra: &[&str]) -> Server {
        Server::start("http_receiver.py", port, dir, extra)
    }

    /// What arrived so far: the N.json records, in order.
    fn received(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    fn wait_for(&self, n: usize, limit: Duration) -> Vec<Value> {
        wait_until(limit, || self.received().len() >= n);
        self.received()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'a>(mail: &'a Value, name: &str) -> Vec<&'a str> {
    mail["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap())
        .collect()
}

fn ban_event(ip: &str, evidence: &str, severity: &str) -> Event {
    let now = 1_795_000_000;
    Event::Ban {
        at: now,
        record: BanRecord {
            ip: ip.parse().unwrap(),
            rule: "sqli-union-select".into(),
            category: "sqli".into(),
            severity: severity.parse().expect("a severity"),
            container: "web-shop".into(),
            first_offence: now - 5,
            last_offence: now,
            banned_at: now,
            expires_at: now + 86400,
            times_banned: 1,
            evidence: vec![evidence.into()],
            source: "detector".into(),
            prefix: None,
        },
        seconds: 86400,
        extended: false,
        time_to_ban_ms: Some(12.0),
    }
}

fn cfg(json: &str) -> config::Config {
    config::parse_str(json).unwrap_or_else(|e| panic!("test config: {e:?}"))
}

/// A mail config for the test server on `port`; `extra` (`, "key": value, …`) overrides.
fn email_cfg(port: u16, extra: &str) -> String {
    let mut email = serde_json::json!({"enabled": true, "smtp_host": "127.0.0.1", "smtp_port": port,
        "security": "none", "from": "monitor@example.com", "to": ["ops@example.com"],
        "min_severity": "high", "digest_interval": 0, "max_per_hour": 100});
    let extra: Value =
        serde_json::from_str(&format!("{{{}}}", extra.trim().trim_start_matches(','))).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        email[k] = v.clone();
    }
    serde_json::json!({ "email": email }).to_string()
}

fn wait_status(n: &Notifier, limit: Duration, f: impl Fn(&NotifyStatus) -> bool) -> NotifyStatus {
    wait_until(limit, || f(&n.status()));
    n.status()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_ban_notice_says_what_happened_and_log_text_never_reaches_a_header() {
    if !have_aiosmtpd() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let smtp = Server::smtp(port, &tmp.path().join("mail"), &[]);
    let rt = runtime();
    let _g = rt.enter();
    let bus = Bus::new();
    let n = Notifier::spawn(&cfg(&email_cfg(port, "")), bus.subscribe());
    let evil = "GET /?q=1 union select\r\nBcc: victim@example.net\r\nSubject: pwned\r\n\r\nhello";
    // Below min_severity: nothing is sent for it.
    bus.send(ban_event("198.51.100.9", "x", "medium"));
    let t0 = Instant::now();
    bus.send(ban_event("203.0.113.7", evil, "critical"));
    let mails = smtp.wait_for(1, Duration::from_secs(10));
    let latency = t0.elapsed();
    assert_eq!(mails.len(), 1, "one mail");
    eprintln!("ban event to mail received: {latency:?}");
    let m = &mails[0];
    assert_eq!(m["rcpt_tos"], serde_json::json!(["ops@example.com"]), "{m}");
    assert!(header(m, "Bcc").is_empty(), "a Bcc header: {m}");
    assert_eq!(header(m, "Subject").len(), 1, "{m}");
    let subject = header(m, "Subject")[0];
    assert!(subject.ends_with(": banned 203.0.113.7"), "{subject}");
    assert!(subject.starts_with("[security-monitor] "), "{subject}");
    let body = m["body"].as_str().unwrap();
    for want in [
        "203.0.113.7  banned for 1d, until 2026-11-19T11:06:40Z",
        "rule:      sqli-union-select (category sqli, severity critical)",
        "container: web-shop",
        "evidence:  GET /?q=1 union select\\x0d\\x0aBcc: victim@example.net\\x0d\\x0aSubject: pwned",
        "to lift it: security-monitor unban 203.0.113.7",
    ] {
        assert!(body.contains(want), "{want:?} not in the body:\n{body}");
    }
    assert!(
        !body.contains("198.51.100.9"),
        "a medium ban was sent: {body}"
    );
    let raw = std::fs::read_to_string(tmp.path().join("mail/0001.eml")).unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap();
    assert!(!head.to_ascii_lowercase().contains("victim"), "{head}");
    let s = wait_status(&n, Duration::from_secs(5), |s| s.channels[0].sent == 1);
    assert_eq!(s.channels[0].sent, 1, "{s:?}");
    assert_eq!(s.channels[0].pending, 0, "{s:?}");
    assert_eq!(s.channels[0].bans_notified, 1, "{s:?}");
    assert!(latency < Duration::from_secs(3), "{latency:?}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with openssl.
fn make_certs(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    if !require(
        "openssl (apt-get install openssl)",
        have("openssl", &["version"]),
    ) {
        return None;
    }
    let d = dir.display();
    let out = common::sh(&format!(
        "set -e; cd {d}; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=security-monitor test CA' 2>/dev/null; \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj '/CN=127.0.0.1' 2>/dev/null; \
         printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\nbasicConstraints=CA:FALSE\\n' > ext; \
         openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext 2>/dev/null"
    ));
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key")))
}

#[test]
fn starttls_with_a_trusted_certificate_and_a_login() {
    if !have_aiosmtpd() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = make_certs(tmp.path()) else {
        return;
    };
    let port = free_port();
    let smtp = Server::smtp(
        port,
        &tmp.path().join("mail"),
        &tls_args(
            &cert,
            &key,
            &["--user", "monitor", "--password", "s3cret pass"],
        ),
    );
    let pwfile = tmp.path().join("smtp-password");
    std::fs::write(&pwfile, "s3cret pass\n").unwrap();
    let tls = |extra: &str| {
        cfg(&email_cfg(
            port,
            &format!(r#", "security": "starttls", "username": "monitor" {extra}"#),
        ))
    };
    let rt = runtime();
    let _g = rt.enter();

    // Trusted through email.ca_file, password from a file: delivered over TLS, logged in.
    let bus = Bus::new();
    let ok = Notifier::spawn(
        &tls(&format!(
            r#", "ca_file": "{}", "password_file": "{}""#,
            ca.display(),
            pwfile.display()
        )),
        bus.subscribe(),
    );
    // Not trusted (no ca_file): refused, verification stays on.
    let untrusted = Notifier::spawn(&tls(r#", "password": "s3cret pass""#), bus.subscribe());
    // Trusted, wrong password: refused by the server.
    let wrong = Notifier::spawn(
        &tls(&format!(
            r#", "ca_file": "{}", "password": "nope""#,
            ca.display()
        )),
        bus.subscribe(),
    );
    bus.send(ban_event("203.0.113.8", "GET /etc/passwd", "high"));
    let mails = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["tls"], true, "{}", mails[0]);
    assert_eq!(mails[0]["authenticated"], true, "{}", mails[0]);
    let s = wait_status(&ok, Duration::from_secs(5), |s| s.channels[0].sent == 1);
    assert_eq!(s.channels[0].sent, 1, "{s:?}");

    let s = wait_status(&untrusted, Duration::from_secs(10), |s| {
        s.channels[0].failed > 0
    });
    let c = &s.channels[0];
    assert_eq!((c.sent, c.pending), (0, 1), "{s:?}");
    let err = c.last_error.as_deref().unwrap_or("");
    eprintln!("untrusted certificate: {err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let s = wait_status(&wrong, Duration::from_secs(10), |s| {
        s.channels[0].failed > 0
    });
    let c = &s.channels[0];
    assert_eq!((c.sent, c.pending), (0, 1), "{s:?}");
    let err = c.last_error.as_deref().unwrap_or("");
    eprintln!("wrong password: {err}");
    assert!(
        err.contains("535") || err.to_lowercase().contains("auth"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        smtp.received().len(),
        1,
        "only the trusted, logged-in one arrived"
    );

    // An unreadable password file is a clear setup error, and that channel is off.
    let (_, errors) = security_monitor::notify::channels(&tls(
        r#", "password_file": "/nonexistent/smtp-password""#,
    ));
    assert!(
        errors.len() == 1
            && errors[0]
                .to_string()
                .contains("email.password_file /nonexistent/smtp-password: cannot read it"),
        "{errors:?}"
    );
}

#[test]
fn implicit_tls_is_verified_and_delivers() {
    if !have_aiosmtpd() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = make_certs(tmp.path()) else {
        return;
    };
    let port = free_port();
    let smtp = Server::smtp(
        port,
        &tmp.path().join("mail"),
        &tls_args(&cert, &key, &["--implicit-tls"]),
    );
    let rt = runtime();
    let _g = rt.enter();
    let bus = Bus::new();
    let ok = Notifier::spawn(
        &cfg(&email_cfg(
            port,
            &format!(r#", "security": "tls", "ca_file": "{}""#, ca.display()),
        )),
        bus.subscribe(),
    );
    let untrusted = Notifier::spawn(
        &cfg(&email_cfg(port, r#", "security": "tls""#)),
        bus.subscribe(),
    );
    bus.send(ban_event("203.0.113.9", "GET /.env", "critical"));
    let mails = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["tls"], true, "{}", mails[0]);
    let s = wait_status(&ok, Duration::from_secs(5), |s| s.channels[0].sent == 1);
    assert_eq!(s.channels[0].sent, 1, "{s:?}");
    let s = wait_status(&untrusted, Duration::from_secs(10), |s| {
        s.channels[0].failed > 0
    });
    let err = s.channels[0].last_error.as_deref().unwrap_or("");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(smtp.received().len(), 1, "the untrusted one sent nothing");
}

#[test]
fn a_thousand_bans_make_a_few_mails_that_count_every_ban() {
    if !have_aiosmtpd() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let smtp = Server::smtp(port, &tmp.path().join("mail"), &[]);
    let rt = runtime();
    let _g = rt.enter();
    let bus = Bus::new();
    let c = cfg(&email_cfg(
        port,
        r#", "digest_interval": "1s", "max_per_hour": 3"#,
    ));
    let n = Notifier::spawn(&c, bus.subscribe());
    // 1,000 bans over about 4 seconds.
    for i in 0..1000u32 {
        bus.send(ban_event(
            &format!("198.18.{}.{}", i / 250, i % 250 + 1),
            "GET /x",
            "critical",
        ));
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Wait for the three the cap allows, and for the notifier to have their answers
    // (the server stores a mail before the notifier hears it was taken).
    let mails = smtp.wait_for(3, Duration::from_secs(20));
    assert_eq!(mails.len(), 3, "the hourly cap of 3: {} mails", mails.len());
    wait_status(&n, Duration::from_secs(10), |s| s.channels[0].sent == 3);
    let mut told = 0u64;
    for m in &mails {
        let subject = header(m, "Subject")[0];
        let count: u64 = subject
            .split(": ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no count in {subject:?}"));
        let body = m["body"].as_str().unwrap();
        if count > 25 {
            assert!(
                body.contains(&format!(
                    "... and {} more bans (by category: sqli {})",
                    count - 25,
                    count - 25
                )),
                "{body}"
            );
        }
        told += count;
    }
    let s = n.status();
    let ch = &s.channels[0];
    assert_eq!(ch.sent, 3, "{s:?}");
    assert_eq!(told, ch.bans_notified, "{s:?}");
    assert_eq!(
        told + ch.pending,
        1000,
        "every ban is in a mail or waiting: {s:?}"
    );
    assert!(ch.pending > 0, "the cap held the rest back: {s:?}");
    eprintln!(
        "1,000 bans: {} mails, {told} bans told, {} waiting for the hourly cap",
        mails.len(),
        ch.pending
    );
}

#[test]
fn a_dead_server_delays_nothing_and_gets_the_notice_when_it_returns() {
    if !have_aiosmtpd() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let rt = runtime();
    let _g = rt.enter();
    let bus = Bus::new();
    let n = Notifier::spawn(&cfg(&email_cfg(port, "")), bus.subscribe());
    let t0 = Instant::now();
    for i in 0..100u32 {
        bus.send(ban_event(
            &format!("198.18.9.{}", i + 1),
            "GET /x",
            "critical",
        ));
    }
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "sending events never waits on SMTP"
    );
    // The first failure may come before the notifier has taken all 100 events; once
    // they are in, every one of them waits for the retry.
    let s = wait_status(&n, Duration::from_secs(10), |s| {
        s.channels[0].failed > 0 && s.channels[0].pending == 100
    });
    let c = &s.channels[0];
    assert_eq!((c.sent, c.pending), (0, 100), "{s:?}");
    assert!(
        c.last_error.as_deref().unwrap_or("").contains("127.0.0.1"),
        "{s:?}"
    );
    assert!(c.retry_in_s.is_some(), "{s:?}");
    eprintln!("server down: {:?}", c.last_error);
    // The server comes up; the waiting notice goes out at the next retry.
    let smtp = Server::smtp(port, &tmp.path().join("mail"), &[]);
    let mails = smtp.wait_for(1, Duration::from_secs(15));
    assert_eq!(mails.len(), 1, "delivered after the server returned");
    assert_eq!(
        header(&mails[0], "Subject")[0].split(": ").nth(1),
        Some("100 bans (198.18.9.1 and others)")
    );
    let s = wait_status(&n, Duration::from_secs(5), |s| s.channels[0].sent == 1);
    let c = &s.channels[0];
    assert_eq!((c.sent, c.pending, c.bans_notified), (1, 0, 100), "{s:?}");
    assert!(c.failed >= 1, "{s:?}");
}

#[test]
fn bans_waiting_for_their_digest_are_sent_when_the_daemon_stops() {
    if !have_aiosmtpd() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let smtp = Server::smtp(port, &tmp.path().join("mail"), &[]);
    let rt = runtime();
    let _g = rt.enter();
    let bus = Bus::new();
    let n = Notifier::spawn(
        &cfg(&email_cfg(port, r#", "digest_interval": "1h""#)),
        bus.subscribe(),
    );
    let ips: Vec<String> = (1..=5).map(|i| format!("198.18.7.{i}")).collect();
    for ip in &ips {
        bus.send(ban_event(ip, "GET /x", "critical"));
    }
    // The hour-long digest holds them all (a digest goes out an interval after its
    // first ban).
    let s = wait_status(&n, Duration::from_secs(5), |s| s.channels[0].pending == 5);
    assert_eq!((s.channels[0].pending, s.channels[0].sent), (5, 0), "{s:?}");
    assert!(smtp.received().is_empty());
    let (sent, lost) = rt.block_on(n.shutdown(Duration::from_secs(10)));
    assert_eq!((sent, lost), (5, 0));
    let mails = smtp.wait_for(1, Duration::from_secs(5));
    assert_eq!(mails.len(), 1, "one last digest");
    let bodies: String = mails
        .iter()
        .map(|m| m["body"].as_str().unwrap_or("").to_string())
        .collect();
    for ip in &ips {
        assert!(
            bodies.contains(ip.as_str()),
            "{ip} was never mailed:\n{bodies}"
        );
    }
}

#[test]
fn an_https_webhook_is_verified_against_its_ca_file() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = make_certs(tmp.path()) else {
        return;
    };
    let port = free_port();
    let http = Server::http(port, &tmp.path().join("hooks"), &tls_args(&cert, &key, &[]));
    let hook = |extra: &str| {
        cfg(&format!(
            r#"{{"webhooks": [{{"url": "https://127.0.0.1:{port}/hook", "digest_interval": 0 {extra}}}]}}"#
        ))
    };
    let rt = runtime();
    let _g = rt.enter();
    let bus = Bus::new();
    let trusted = Notifier::spawn(
        &hook(&format!(r#", "ca_file": "{}""#, ca.display())),
        bus.subscribe(),
    );
    let untrusted = Notifier::spawn(&hook(""), bus.subscribe());
    bus.send(ban_event("203.0.113.10", "GET /.git/config", "critical"));
    let posts = http.wait_for(1, Duration::from_secs(10));
    assert_eq!(posts.len(), 1, "{posts:?}");
    let s = wait_status(&trusted, Duration::from_secs(5), |s| {
        s.channels[0].sent == 1
    });
    assert_eq!(s.channels[0].sent, 1, "{s:?}");
    let s = wait_status(&untrusted, Duration::from_secs(10), |s| {
        s.channels[0].failed > 0
    });
    let err = s.channels[0].last_error.as_deref().unwrap_or("");
    eprintln!("untrusted webhook certificate: {err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(http.received().len(), 1, "the untrusted one posted nothing");
    // A CA file that is not PEM is a setup error naming the key; the channel is off.
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let (_, errors) =
        security_monitor::notify::channels(&hook(&format!(r#", "ca_file": "{}""#, junk.display())));
    assert!(
        errors.len() == 1 && errors[0].to_string().starts_with("webhooks[0].ca_file"),
        "{errors:?}"
    );
}

#[test]
fn webhooks_post_generic_slack_and_discord_json_and_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    // The first request is answered 500: it is retried.
    let http = Server::http(port, &tmp.path().join("hooks"), &["--fail-first", "1"]);
    let base = format!("http://127.0.0.1:{port}");
    let c = cfg(&format!(
        r#"{{"webhooks": [
            {{"url": "{base}/generic?token=SECRET", "format": "generic", "min_severity": "high",
              "digest_interval": 0, "headers": {{"Authorization": "Bearer abc"}} }},
            {{"url": "{base}/slack", "format": "slack", "digest_interval": 0}},
            {{"url": "{base}/discord", "format": "discord", "digest_interval": 0}}
        ]}}"#
    ));
    let rt = runtime();
    let _g = rt.enter();
    let bus = Bus::new();
    let n = Notifier::spawn(&c, bus.subscribe());
    bus.send(ban_event(
        "203.0.113.9",
        "GET /<!channel> @everyone ```",
        "critical",
    ));
    let posts = http.wait_for(3, Duration::from_secs(10));
    assert_eq!(posts.len(), 3, "{posts:?}");
    let by_path = |p: &str| -> Value {
        let post = posts
            .iter()
            .find(|x| x["path"].as_str().unwrap().starts_with(p))
            .unwrap_or_else(|| panic!("nothing posted to {p}: {posts:?}"));
        assert_eq!(post["headers"]["content-type"], "application/json");
        serde_json::from_str(post["body"].as_str().unwrap()).unwrap()
    };
    let g = by_path("/generic");
    let post = posts
        .iter()
        .find(|x| x["path"].as_str().unwrap().starts_with("/generic"))
        .unwrap();
    assert_eq!(post["headers"]["authorization"], "Bearer abc");
    assert_eq!(g["source"], "security-monitor");
    let b = &g["bans"][0];
    assert_eq!(b["ip"], "203.0.113.9");
    assert_eq!(b["rule"], "sqli-union-select");
    assert_eq!(b["category"], "sqli");
    assert_eq!(b["severity"], "critical");
    assert_eq!(b["container"], "web-shop");
    assert_eq!(b["seconds"], 86400);
    assert_eq!(b["unban_command"], "security-monitor unban 203.0.113.9");
    assert!(b["expires_at"].as_str().unwrap().ends_with('Z'), "{b}");
    assert_eq!(g["more_bans"], 0);

    let slack = by_path("/slack");
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains("203.0.113.9") && text.contains("&lt;!channel&gt;"),
        "{text}"
    );
    assert!(!text.contains("<!channel>"), "{text}");

    let discord = by_path("/discord");
    let content = discord["content"].as_str().unwrap();
    assert!(
        content.contains("security-monitor unban 203.0.113.9"),
        "{content}"
    );
    assert_eq!(discord["allowed_mentions"]["parse"], serde_json::json!([]));

    let s = wait_status(&n, Duration::from_secs(5), |s| {
        s.channels.iter().all(|c| c.sent == 1)
    });
    let failed: u64 = s.channels.iter().map(|c| c.failed).sum();
    assert_eq!(failed, 1, "one 500, retried: {s:?}");
    for ch in &s.channels {
        assert!(
            !ch.name.contains("SECRET"),
            "the URL's secret is not shown: {}",
            ch.name
        );
        if ch.failed == 1 {
            assert!(
                ch.last_error.as_deref().unwrap_or("").contains("500"),
                "{ch:?}"
            );
        }
    }
}

#[test]
fn test_notify_reports_each_channel() {
    if !have_aiosmtpd() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let smtp_port = free_port();
    let http_port = free_port();
    let smtp = Server::smtp(smtp_port, &tmp.path().join("mail"), &[]);
    let http = Server::http(http_port, &tmp.path().join("hooks"), &[]);
    let dead = free_port();
    let write = |name: &str, hooks: &str| {
        let text = format!(
            r#"{{"email": {{"enabled": true, "smtp_host": "127.0.0.1", "smtp_port": {smtp_port}, "security": "none",
                "from": "monitor@example.com", "to": ["ops@example.com"]}},
                "webhooks": [{hooks}] }}"#
        );
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let good = write(
        "good.json",
        &format!(r#"{{"url": "http://127.0.0.1:{http_port}/hook", "format": "slack"}}"#),
    );
    let out = bin()
        .args(["test-notify", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("email via 127.0.0.1:") && text.contains(": sent"),
        "{text}"
    );
    assert!(text.contains("2 of 2 channel(s) delivered"), "{text}");
    let mails = smtp.wait_for(1, Duration::from_secs(5));
    assert!(
        header(&mails[0], "Subject")[0].ends_with(": test notice"),
        "{:?}",
        mails[0]
    );
    assert_eq!(http.wait_for(1, Duration::from_secs(5)).len(), 1);

    let bad = write(
        "bad.json",
        &format!(r#"{{"url": "http://127.0.0.1:{dead}/hook", "format": "generic"}}"#),
    );
    let out = bin()
        .args(["test-notify", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "webhook generic http://127.0.0.1:{dead}: FAILED: "
        )),
        "{text}"
    );
    assert!(text.contains("1 of 2 channel(s) delivered"), "{text}");
}
