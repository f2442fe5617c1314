//! `security-monitor run` with real parts: the private dockerd tests/run.sh starts (in its
//! own network namespace, SECMON_DOCKER_NETNS), nftables in that namespace, the control
//! socket, and a real sd_notify datagram socket. Each test uses its own firewall table
//! and container label, so tests can run side by side in the one namespace.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{have, is_root, require, wait_until, Env};

struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    cfg: PathBuf,
    netns: String,
    table: String,
    notify: Option<PathBuf>,
}

/// Everything a daemon test needs, or None after a loud skip (a failure with CI=true).
fn setup(test: &str) -> Option<(Env, String)> {
    let env = common::env(test)?;
    if !require("root", is_root())
        || !require(
            "nft (apt-get install nftables)",
            have("nft", &["--version"]),
        )
    {
        return None;
    }
    let netns = match std::env::var("SECMON_DOCKER_NETNS") {
        Ok(n) if !n.is_empty() => n,
        _ => {
            require(
                "SECMON_DOCKER_NETNS (tests/run.sh runs dockerd in a network namespace of its own)",
                false,
            );
            return None;
        }
    };
    Some((env, netns))
}

fn in_netns(netns: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{netns}"));
    c
}

impl Daemon {
    fn config_text(&self, extra: &str) -> String {
        let host = std::env::var("SECMON_DOCKER_SOCK").unwrap_or_default();
        format!(
            r#"{{ "docker": {{"socket": "{host}", "label": "{label}"}},
                 "state": {{"dir": "{d}/state"}}, "control": {{"socket": "{d}/control.sock"}},
                 "firewall": {{"backend": "nftables", "table": "{t}"}}, "log_format": "combined" {extra} }}"#,
            t = self.table,
            d = self.dir.path().display(),
            label = self.label(),
        )
    }

    /// The label this test's containers carry to be watched (unique per test run).
    fn label(&self) -> String {
        format!("smt-{}-{}=1", self.table, std::process::id())
    }

    fn new(netns: &str, table: &str, extra: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("monitor_config.json");
        let mut d = Daemon {
            child: None,
            dir,
            cfg,
            netns: netns.to_string(),
            table: table.to_string(),
            notify: None,
        };
        std::fs::write(&d.cfg, d.config_text(extra)).expect("write config");
        d.start(&[]);
        d
    }

    fn start(&mut self, envs: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("log file");
        let mut cmd = in_netns(&self.netns);
        cmd.arg(env!("CARGO_BIN_EXE_security-monitor"))
            .args(["run", "--config"])
            .arg(&self.cfg);
        cmd.stdout(Stdio::null()).stderr(log);
        if let Some(n) = &self.notify {
            cmd.env("NOTIFY_SOCKET", n);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start the daemon"));
        let ok = wait_until(Duration::from_secs(15), || {
            self.cli(&["status", "--json"]).status.success()
        });
        assert!(
            ok,
            "the daemon did not answer on its control socket:\n{}",
            self.log()
        );
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_security-monitor"))
            .args(args)
            .arg("--config")
            .arg(&self.cfg)
            .output()
            .expect("run the cli")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn kernel_set(&self) -> String {
        let out = in_netns(&self.netns)
            .args(["nft", "list", "set", "inet", &self.table, "banned_v4"])
            .output()
            .expect("nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn signal(&mut self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// Waits for the daemon to exit; its exit code.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code().or(Some(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    fn state_file(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("state/blocked_ips.json")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = in_netns(&self.netns)
            .args(["nft", "delete", "table", "inet", &self.table])
            .output();
    }
}

/// A test container, removed when the test ends however it ends.
struct Container<'a> {
    env: &'a Env,
    name: String,
}

impl<'a> Container<'a> {
    fn run(env: &'a Env, name: &str, label: &str, script: &str) -> Container<'a> {
        env.docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--label",
            "secmon-test=1",
            "--label",
            label,
            &env.image,
            "sh",
            "-c",
            script,
        ]);
        Container {
            env,
            name: name.to_string(),
        }
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .env("DOCKER_HOST", &self.env.host)
            .args(["rm", "-f", &self.name])
            .output();
    }
}

fn attack_line(ip: &str) -> String {
    format!(
        r#"{ip} - - [21/Nov/2026:10:00:00 +0000] \"GET /item?id=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1\" 200 5 \"-\" \"x\""#
    )
}

fn benign_line(ip: &str) -> String {
    format!(
        r#"{ip} - - [21/Nov/2026:10:00:00 +0000] \"GET /index.html HTTP/1.1\" 200 5 \"-\" \"Mozilla/5.0\""#
    )
}

#[test]
fn an_attack_in_a_container_log_is_banned_and_survives_kill_9() {
    let Some((env, netns)) = setup("an_attack_in_a_container_log_is_banned_and_survives_kill_9")
    else {
        return;
    };
    let mut d = Daemon::new(&netns, "smt_kill", "");
    let name = format!("{}attacker", common::prefix("kill9"));
    let script = format!(
        "sleep 1; echo \"{}\"; echo \"{}\"; sleep 600",
        benign_line("203.0.113.102"),
        attack_line("203.0.113.101")
    );
    let _container = Container::run(&env, &name, &d.label(), &script);

    assert!(
        wait_until(Duration::from_secs(15), || d
            .kernel_set()
            .contains("203.0.113.101")),
        "no ban in the kernel:\n{}",
        d.log()
    );
    assert!(
        !d.kernel_set().contains("203.0.113.102"),
        "a benign visitor was banned"
    );
    let list = String::from_utf8_lossy(&d.cli(&["list", "--json"]).stdout).into_owned();
    assert!(
        list.contains("203.0.113.101") && list.contains(&name),
        "{list}"
    );
    assert!(
        d.log().contains("ACTION") || d.log().contains("banned 203.0.113.101"),
        "{}",
        d.log()
    );

    // kill -9 with the ban active: the kernel keeps it.
    d.signal("-9");
    assert!(d.wait_exit(Duration::from_secs(5)).is_some());
    assert!(
        d.kernel_set().contains("203.0.113.101"),
        "the ban went with the daemon"
    );

    // The restart restores the book without duplicates and does not re-read the line.
    d.start(&[]);
    let list: serde_json::Value =
        serde_json::from_slice(&d.cli(&["list", "--json"]).stdout).expect("list --json");
    let bans = list.as_array().expect("a list");
    assert_eq!(bans.len(), 1, "{list}");
    assert_eq!(
        bans[0]["times_banned"], 1,
        "the line was read twice: {list}"
    );
    assert_eq!(d.kernel_set().matches("203.0.113.101").count(), 1);
    let state: serde_json::Value = serde_json::from_str(&d.state_file()).expect("state file");
    assert_eq!(state["bans"].as_array().map(Vec::len), Some(1), "{state}");

    // SIGTERM: a clean stop within seconds; bans stay.
    d.signal("-TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "{}", d.log());
    assert!(d.kernel_set().contains("203.0.113.101"));
}

#[test]
fn the_control_socket_is_root_only_and_reload_keeps_bans() {
    let Some((_env, netns)) = setup("the_control_socket_is_root_only_and_reload_keeps_bans") else {
        return;
    };
    let d = Daemon::new(&netns, "smt_ctl", "");
    let sock = d.dir.path().join("control.sock");
    let meta = std::fs::metadata(&sock).expect("control socket");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);

    let out = d.cli(&["ban", "198.51.100.44", "--for", "1h", "--reason", "test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.kernel_set().contains("198.51.100.44"));
    let out = d.cli(&["ban", "127.0.0.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));

    // A broken config is rejected; the daemon carries on with the old one and its bans.
    let good = std::fs::read_to_string(&d.cfg).unwrap();
    std::fs::write(
        &d.cfg,
        good.replace(
            "\"log_format\"",
            "\"thresholds\": {\"max_failed_auth\": \"many\"}, \"log_format\"",
        ),
    )
    .unwrap();
    let out = d.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("thresholds.max_failed_auth"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value =
        serde_json::from_slice(&d.cli(&["status", "--json"]).stdout).expect("status");
    assert!(
        status["reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("max_failed_auth")),
        "{status}"
    );
    assert_eq!(status["firewall"]["active_bans"], 1);
    assert!(d.kernel_set().contains("198.51.100.44"));

    // A good one is applied live, still without dropping the ban.
    std::fs::write(&d.cfg, &good).unwrap();
    assert!(d.cli(&["reload"]).status.success());
    let status: serde_json::Value =
        serde_json::from_slice(&d.cli(&["status", "--json"]).stdout).expect("status");
    assert!(status["reload_error"].is_null(), "{status}");
    assert!(d.kernel_set().contains("198.51.100.44"));

    let out = d.cli(&["unban", "198.51.100.44"]);
    assert!(out.status.success());
    assert!(!d.kernel_set().contains("198.51.100.44"));
}

#[test]
fn commands_without_a_daemon_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"control": {{"socket": "{}/none.sock"}}, "state": {{"dir": "{}/state"}}}}"#,
            dir.path().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_security-monitor"))
        .args(["status", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads notify datagrams until one contains `want` or time runs out.
fn expect_notify(sock: &UnixDatagram, want: &str, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = msg.lines().any(|l| l == want);
            seen.push(msg);
            if hit {
                return seen;
            }
        }
    }
    panic!("no {want} within {limit:?}; got {seen:?}");
}

#[test]
fn systemd_hears_ready_status_watchdog_reloading_and_stopping() {
    let Some((_env, netns)) = setup("systemd_hears_ready_status_watchdog_reloading_and_stopping")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut d = Daemon::new(&netns, "smt_notify", "");
    // Restart it under the notify socket, with a watchdog.
    d.signal("-TERM");
    d.wait_exit(Duration::from_secs(10));
    d.notify = Some(path.clone());
    d.start(&[("WATCHDOG_USEC", "2000000")]);
    let seen = expect_notify(&sock, "READY=1", Duration::from_secs(10));
    assert!(
        seen.iter()
            .any(|m| m.contains("STATUS=") && m.contains("active bans")),
        "{seen:?}"
    );
    expect_notify(&sock, "WATCHDOG=1", Duration::from_secs(5));
    d.signal("-HUP");
    expect_notify(&sock, "RELOADING=1", Duration::from_secs(5));
    expect_notify(&sock, "READY=1", Duration::from_secs(5));
    d.signal("-TERM");
    expect_notify(&sock, "STOPPING=1", Duration::from_secs(5));
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    let _ = Path::new(&path);
}

/// A Docker network created while the daemon runs brings a new gateway (connections
/// through docker-proxy appear to come from it): it must join the never-ban list.
#[test]
fn a_new_docker_networks_gateway_is_never_banned() {
    let Some((env, netns)) = setup("a_new_docker_networks_gateway_is_never_banned") else {
        return;
    };
    let d = Daemon::new(&netns, "smt_gw", "");
    let net = format!("{}net", common::prefix("gw"));
    struct Net<'a>(&'a Env, String);
    impl Drop for Net<'_> {
        fn drop(&mut self) {
            let _ = Command::new("docker")
                .env("DOCKER_HOST", &self.0.host)
                .args(["network", "rm", &self.1])
                .output();
        }
    }
    env.docker(&["network", "create", "--label", "secmon-test=1", &net]);
    let _net = Net(&env, net.clone());
    let gateway = env
        .docker(&[
            "network",
            "inspect",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}}",
            &net,
        ])
        .trim()
        .to_string();
    assert!(gateway.parse::<std::net::IpAddr>().is_ok(), "{gateway:?}");
    // Give the daemon time to read the host's addresses again.
    std::thread::sleep(Duration::from_secs(6));
    let name = format!("{}proxy", common::prefix("gw"));
    let script = format!(
        "sleep 1; echo \"{}\"; echo \"{}\"; sleep 600",
        attack_line(&gateway),
        attack_line("203.0.113.150")
    );
    let _c = Container::run(&env, &name, &d.label(), &script);
    assert!(
        wait_until(Duration::from_secs(15), || d
            .kernel_set()
            .contains("203.0.113.150")),
        "{}",
        d.log()
    );
    assert!(
        !d.kernel_set().contains(&gateway),
        "the gateway {gateway} was banned"
    );
    assert!(
        d.log().contains(&format!("not banning {gateway}")),
        "no never-ban notice for the gateway:\n{}",
        d.log()
    );
}

/// The whole path: a container's attack line, the ban, and the notice mailed by the
/// daemon to a real SMTP server (aiosmtpd, in the daemon's network namespace); a restart
/// restores the ban and mails nothing more.
#[test]
fn a_ban_is_mailed_once_and_a_restored_ban_sends_nothing() {
    let Some((env, netns)) = setup("a_ban_is_mailed_once_and_a_restored_ban_sends_nothing") else {
        return;
    };
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    if !require(
        "python3-aiosmtpd (apt-get install python3-aiosmtpd; tests/run.sh installs it)",
        have(python, &["-c", "import aiosmtpd"]),
    ) {
        return;
    }
    let mail = tempfile::tempdir().expect("temp dir");
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    struct Smtp(Child);
    impl Drop for Smtp {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = in_netns(&netns)
        .arg(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py"))
        .arg(port.to_string())
        .arg(mail.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the SMTP server");
    let mut ready = [0u8; 6];
    use std::io::Read;
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut ready)
        .expect("the SMTP server did not start");
    let _smtp = Smtp(child);
    let mails = || -> Vec<serde_json::Value> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(mail.path())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|p| p.extension().is_some_and(|x| x == "json"));
        v.sort();
        v.iter()
            .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
            .collect()
    };

    let mut d = Daemon::new(
        &netns,
        "smt_mail",
        &format!(
            r#", "email": {{"enabled": true, "smtp_host": "127.0.0.1", "smtp_port": {port},
                "security": "none", "from": "monitor@example.com", "to": ["ops@example.com"],
                "digest_interval": 0}}"#
        ),
    );
    let name = format!("{}attacker", common::prefix("mail"));
    let script = format!(
        "sleep 1; echo \"{}\"; sleep 600",
        attack_line("203.0.113.121")
    );
    let _c = Container::run(&env, &name, &d.label(), &script);
    assert!(
        wait_until(Duration::from_secs(20), || !mails().is_empty()),
        "no mail arrived:\n{}",
        d.log()
    );
    let m = &mails()[0];
    let subject = m["headers"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h[0] == "Subject"))
        .and_then(|h| h[1].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(subject.ends_with(": banned 203.0.113.121"), "{subject}");
    let body = m["body"].as_str().unwrap_or_default();
    assert!(body.contains(&format!("container: {name}")), "{body}");
    assert!(
        body.contains("to lift it: security-monitor unban 203.0.113.121"),
        "{body}"
    );
    assert!(body.contains("UNION%20SELECT"), "{body}");
    let status = String::from_utf8_lossy(&d.cli(&["status"]).stdout).into_owned();
    assert!(
        status.contains(&format!(
            "notices      email via 127.0.0.1:{port} (no encryption): 1 sent, 0 failed, 0 pending"
        )),
        "{status}"
    );

    // A restart restores the ban: that is not a new ban, so no mail.
    d.signal("-TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "{}", d.log());
    d.start(&[]);
    assert!(d.kernel_set().contains("203.0.113.121"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(mails().len(), 1, "a restored ban was mailed");
    let st: serde_json::Value =
        serde_json::from_slice(&d.cli(&["status", "--json"]).stdout).expect("status --json");
    assert_eq!(st["notify"]["channels"][0]["sent"], 0, "{st}");
}
