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
    /// The config's `log_format`.
    log_format: &'static str,
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

/// A helper process stopped when the test ends, by its pid.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
                 "firewall": {{"backend": "nftables", "table": "{t}"}}, "log_format": "{f}" {extra} }}"#,
            f = self.log_format,
            t = self.table,
            d = self.dir.path().display(),
            label = self.label(),
        )
    }

    /// The label this test's containers carry to be watched (unique per test run).
    fn label(&self) -> String {
        format!("smt-{}-{}=1", self.table, std::process::id())
    }

    /// A daemon reading combined lines, as most tests write them.
    fn new(netns: &str, table: &str, extra: &str) -> Daemon {
        Daemon::reading(netns, table, "combined", extra)
    }

    /// A daemon whose `log_format` is `log_format` (`auto`: each container's image
    /// chooses its profile).
    fn reading(netns: &str, table: &str, log_format: &'static str, extra: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("monitor_config.json");
        let mut d = Daemon {
            child: None,
            dir,
            cfg,
            netns: netns.to_string(),
            table: table.to_string(),
            log_format,
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
    // The ban is logged just after the kernel took it: wait for the line.
    assert!(
        wait_until(Duration::from_secs(10), || d.log().contains("ACTION")
            || d.log().contains("banned 203.0.113.101")),
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

    // A config whose metrics port cannot be bound is rejected as a whole: nothing of it
    // applies (here: its ban duration), and the daemon says so.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let busy = good.replace(
        "\"log_format\"",
        &format!(
            "\"metrics\": {{\"listen\": \"127.0.0.1:{port}\"}}, \"ban\": {{\"duration\": \"7h\"}}, \"log_format\""
        ),
    );
    // The daemon runs in its own network namespace: take the port there.
    let _holder = in_netns(&netns)
        .args(["python3", "-c"])
        .arg(format!(
            "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); time.sleep(120)"
        ))
        .spawn()
        .map(KillOnDrop)
        .expect("port holder");
    drop(taken);
    assert!(wait_until(Duration::from_secs(10), || in_netns(&netns)
        .args(["ss", "-Hltn", &format!("sport = :{port}")])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty())));
    std::fs::write(&d.cfg, &busy).unwrap();
    let out = d.cli(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
    let out = d.cli(&["ban", "198.51.100.45"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("for 1d"),
        "the rejected config's 7h applied: {said}"
    );
    assert!(d.cli(&["unban", "198.51.100.45"]).status.success());

    // What the running daemon holds open cannot move on reload: said, not half done.
    let moved = good.replace("/state\"", "/elsewhere\"");
    assert_ne!(moved, good);
    std::fs::write(&d.cfg, &moved).unwrap();
    let out = d.cli(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("state.dir changed from"), "{err}");
    assert!(err.contains("systemctl restart security-monitor"), "{err}");

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
fn what_is_kept_per_container_goes_when_the_container_is_destroyed() {
    let Some((env, netns)) =
        setup("what_is_kept_per_container_goes_when_the_container_is_destroyed")
    else {
        return;
    };
    let d = Daemon::new(&netns, "smt_prune", "");
    let name = format!("{}gone", common::prefix("prune"));
    let script = format!(
        "echo \"{}\"; echo 'not a request line'; sleep 600",
        attack_line("203.0.113.170")
    );
    let c = Container::run(&env, &name, &d.label(), &script);
    let metrics = || String::from_utf8_lossy(&d.cli(&["metrics"]).stdout).into_owned();
    let series = format!("security_monitor_lines_read_total{{container=\"{name}\"}} 2");
    assert!(
        wait_until(Duration::from_secs(20), || metrics().contains(&series)),
        "{}\n{}",
        metrics(),
        d.log()
    );
    drop(c);
    assert!(
        wait_until(Duration::from_secs(20), || !metrics().contains(&name)),
        "the destroyed container is still counted:\n{}",
        metrics()
    );
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
    // The watcher reports the new network (with its gateway) to the daemon, which logs
    // it: wait for that rather than for a fixed time.
    assert!(
        wait_until(Duration::from_secs(15), || d
            .log()
            .lines()
            .any(|l| l.contains("Docker networks:") && l.contains(&net))),
        "the daemon never learned of network {net}:\n{}",
        d.log()
    );
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

/// Runs a shell command, panicking with its output when it fails.
fn sh_ok(cmd: &str) -> String {
    common::must(cmd)
}

/// An HTTP GET from inside network namespace `ns`; the body, or None if it could not
/// connect.
fn http_get(ns: &str, host: &str, port: u16, target: &str, extra_header: &str) -> Option<String> {
    let script = format!(
        "import socket,sys\ntry:\n  s=socket.create_connection(('{host}',{port}),timeout=3)\nexcept OSError:\n  sys.exit(3)\ns.settimeout(5)\ns.send(b'GET {target} HTTP/1.0\\r\\nHost: x\\r\\nUser-Agent: test\\r\\n{extra_header}\\r\\n')\nd=b''\nwhile True:\n  c=s.recv(4096)\n  if not c: break\n  d+=c\nsys.stdout.write(d.decode(errors='replace'))"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Clients behind a proxy container. The app logs the proxy's (Docker-internal) address
/// as the client and the real one in a forwarded field. Without trust, the verdict is
/// against the proxy and no ban is made (cutting everyone off), with an explanation.
/// With `trusted_proxies: ["docker"]` the attacker, named by the proxy in
/// X-Forwarded-For, is banned; a victim address the attacker wrote into its own
/// X-Forwarded-For is not; the proxy and other visitors keep working; no Docker-internal
/// address ever lands in the ban set. Trusting the proxy by name
/// (`"container:NAME"`) does the same.
#[test]
fn behind_a_proxy_container_the_real_client_is_banned_and_never_the_proxy() {
    let Some((env, netns)) =
        setup("behind_a_proxy_container_the_real_client_is_banned_and_never_the_proxy")
    else {
        return;
    };
    let pfx = common::prefix("px");
    let (net, app, proxy) = (
        format!("{pfx}net"),
        format!("{pfx}app"),
        format!("{pfx}proxy"),
    );
    let (attacker_ns, visitor_ns) = ("smt-px-a", "smt-px-v");
    struct Cleanup(String, String, Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for c in &self.2 {
                let _ = common::sh(&format!("docker -H {} rm -f {c} >/dev/null 2>&1", self.0));
            }
            let _ = common::sh(&format!(
                "docker -H {} network rm {} >/dev/null 2>&1; ip netns del smt-px-a 2>/dev/null; ip netns del smt-px-v 2>/dev/null; ip -n {} link del smtbr0 2>/dev/null",
                self.0, self.1, std::env::var("SECMON_DOCKER_NETNS").unwrap_or_default()
            ));
        }
    }
    let _cleanup = Cleanup(
        env.host.clone(),
        net.clone(),
        vec![app.clone(), proxy.clone()],
    );

    // Two client hosts on a bridge into the dockerd's namespace.
    let _ = common::sh(&format!("ip netns del {attacker_ns} 2>/dev/null; ip netns del {visitor_ns} 2>/dev/null; ip -n {netns} link del smtbr0 2>/dev/null"));
    sh_ok(&format!("set -e; ip -n {netns} link add smtbr0 type bridge; ip -n {netns} addr add 10.234.0.1/24 dev smtbr0; ip -n {netns} link set smtbr0 up"));
    for (n, ns) in [(2, attacker_ns), (3, visitor_ns)] {
        sh_ok(&format!(
            "set -e; ip netns add {ns}; ip link add smtpx{n} type veth peer name smtpx{n}c; ip link set smtpx{n} netns {netns}; ip link set smtpx{n}c netns {ns}; \
             ip -n {netns} link set smtpx{n} master smtbr0 up; ip -n {ns} addr add 10.234.0.{n}/24 dev smtpx{n}c; ip -n {ns} link set smtpx{n}c up; ip -n {ns} link set lo up"
        ));
    }

    // The app logs: the peer (the proxy), the request, and the forwarded field.
    let app_cgi = r#"#!/bin/sh
echo "$REMOTE_ADDR - - [$(date +%d/%b/%Y:%H:%M:%S) +0000] \"GET $REQUEST_URI HTTP/1.0\" 200 7 \"-\" \"$HTTP_USER_AGENT\" \"$HTTP_X_FORWARDED_FOR\"" > /proc/1/fd/1
printf 'Content-Type: text/plain\n\napp ok\n'
"#;
    // The proxy appends the address it received the request from, as real proxies do.
    let proxy_cgi = format!(
        r#"#!/bin/sh
XFF="${{HTTP_X_FORWARDED_FOR:+$HTTP_X_FORWARDED_FOR, }}$REMOTE_ADDR"
printf 'Content-Type: text/plain\n\n'
printf 'GET %s HTTP/1.0\r\nHost: app\r\nUser-Agent: %s\r\nX-Forwarded-For: %s\r\n\r\n' "$REQUEST_URI" "$HTTP_USER_AGENT" "$XFF" | nc {app} 8080 | sed '1,/^\r*$/d'
"#
    );
    let serve = |cgi: &str| {
        format!("busybox --install -s /bin; mkdir -p /www/cgi-bin; cat > /www/cgi-bin/app <<'EOF'\n{cgi}EOF\nchmod +x /www/cgi-bin/app; exec httpd -f -p 8080 -h /www")
    };
    env.docker(&["network", "create", "--label", "secmon-test=1", &net]);
    // Both daemons below watch the app by this label.
    let watched = format!("smt-px-{}=1", std::process::id());
    env.docker(&[
        "run",
        "-d",
        "--name",
        &app,
        "--network",
        &net,
        "--label",
        "secmon-test=1",
        "--label",
        &watched,
        &env.image,
        "sh",
        "-c",
        &serve(app_cgi),
    ]);
    env.docker(&[
        "run",
        "-d",
        "--name",
        &proxy,
        "--network",
        &net,
        "--label",
        "secmon-test=1",
        "-p",
        "18096:8080",
        &env.image,
        "sh",
        "-c",
        &serve(&proxy_cgi),
    ]);
    let proxy_ip = env
        .docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
            &proxy,
        ])
        .trim()
        .to_string();
    let get = |ns: &str, target: &str, hdr: &str| http_get(ns, "10.234.0.1", 18096, target, hdr);
    assert!(
        wait_until(Duration::from_secs(15), || get(
            visitor_ns,
            "/cgi-bin/app",
            ""
        )
        .is_some_and(|b| b.contains("app ok"))),
        "the proxy never answered"
    );

    // 1. Without trust: the app's log names the proxy as the client.
    let mut untrusted = Daemon::new(&netns, "smt_px1", "");
    std::fs::write(
        &untrusted.cfg,
        untrusted
            .config_text("")
            .replace(&untrusted.label(), &watched),
    )
    .unwrap();
    untrusted.signal("-TERM");
    untrusted.wait_exit(Duration::from_secs(10));
    untrusted.start(&[]);
    let attack = "/cgi-bin/app?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E";
    let spoof = r"X-Forwarded-For: 203.0.113.250\r\n";
    assert!(get(attacker_ns, attack, spoof).is_some());
    assert!(
        wait_until(Duration::from_secs(15), || untrusted
            .log()
            .contains(&format!("not banning {proxy_ip}"))),
        "no never-ban notice for the proxy {proxy_ip}:\n{}",
        untrusted.log()
    );
    assert!(
        untrusted.log().contains("trusted_proxies"),
        "the notice does not say how to fix the setup:\n{}",
        untrusted.log()
    );
    assert!(
        !untrusted.kernel_set().contains("10.234.0.")
            && !untrusted.kernel_set().contains(&proxy_ip)
    );
    untrusted.signal("-TERM");
    assert_eq!(untrusted.wait_exit(Duration::from_secs(10)), Some(0));

    // 2. Trusting Docker's networks: the attacker is banned, from the line already logged.
    let mut trusted = Daemon::new(&netns, "smt_px2", "");
    std::fs::write(
        &trusted.cfg,
        trusted
            .config_text(", \"trusted_proxies\": [\"docker\"]")
            .replace(&trusted.label(), &watched),
    )
    .unwrap();
    trusted.signal("-TERM");
    trusted.wait_exit(Duration::from_secs(10));
    trusted.start(&[]);
    assert!(
        wait_until(Duration::from_secs(15), || trusted
            .kernel_set()
            .contains("10.234.0.2")),
        "the attacker behind the proxy was not banned:\n{}",
        trusted.log()
    );
    // A new attack through the proxy is blocked at the door now; the visitor is fine.
    assert!(
        get(attacker_ns, attack, "").is_none(),
        "the banned attacker still reaches the proxy"
    );
    assert!(
        get(visitor_ns, "/cgi-bin/app", "").is_some_and(|b| b.contains("app ok")),
        "the proxy stopped working for other visitors"
    );
    let set = trusted.kernel_set();
    assert!(
        !set.contains("203.0.113.250"),
        "the victim named in a spoofed X-Forwarded-For was banned: {set}"
    );
    assert!(
        !set.contains("172.") && !set.contains(&proxy_ip),
        "a Docker-internal address is in the ban set: {set}"
    );
    assert!(!set.contains("10.234.0.3"), "the visitor was banned: {set}");
    trusted.signal("-TERM");
    assert_eq!(trusted.wait_exit(Duration::from_secs(10)), Some(0));

    // 3. Trusting the proxy by its name ("container:NAME"): the same line bans the same
    //    attacker, with no other container trusted.
    let mut named = Daemon::new(&netns, "smt_px3", "");
    std::fs::write(
        &named.cfg,
        named
            .config_text(&format!(", \"trusted_proxies\": [\"container:{proxy}\"]"))
            .replace(&named.label(), &watched),
    )
    .unwrap();
    named.signal("-TERM");
    named.wait_exit(Duration::from_secs(10));
    named.start(&[]);
    assert!(
        wait_until(Duration::from_secs(15), || named
            .kernel_set()
            .contains("10.234.0.2")),
        "the attacker behind the proxy trusted by name was not banned:\n{}",
        named.log()
    );
    let set = named.kernel_set();
    assert!(
        !set.contains("203.0.113.250") && !set.contains(&proxy_ip),
        "a spoofed victim or the proxy is in the ban set: {set}"
    );
}

/// A Python that has the `prometheus_client` package (Debian's python3-prometheus-client
/// goes to /usr/bin/python3, which may not be the first python3 on PATH).
fn python_with_prometheus_client() -> Option<String> {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| have(p, &["-c", "import prometheus_client.parser"]))
        .map(str::to_string)
}

/// Parses exposition text with prometheus_client's own parser (a parse error fails the
/// test); returns every sample as (name, labels, value).
fn parse_prometheus(python: &str, text: &str) -> Vec<(String, serde_json::Value, f64)> {
    use std::io::Write as _;
    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the metrics to python");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "prometheus_client could not parse the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<(String, serde_json::Value, f64)> =
        serde_json::from_slice(&out.stdout).expect("the parser's JSON");
    v
}

/// The sum of a metric's samples whose labels include `want`.
fn sample_sum(
    samples: &[(String, serde_json::Value, f64)],
    name: &str,
    want: &[(&str, &str)],
) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name && want.iter().all(|(k, v)| labels[*k].as_str() == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

/// Fetches a path from the metrics listener inside the daemon's network namespace.
fn metrics_get(netns: &str, python: &str, url: &str) -> (u16, String) {
    let out = in_netns(netns)
        .args([python, "-c"])
        .arg(format!(
            "import urllib.request, urllib.error, sys\n\
try:\n    r = urllib.request.urlopen('{url}', timeout=5); code, body = r.status, r.read()\n\
except urllib.error.HTTPError as e:\n    code, body = e.code, e.read()\n\
sys.stdout.write(str(code) + '\\n' + body.decode())\n"
        ))
        .output()
        .expect("run python in the daemon's namespace");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (code, body) = text.split_once('\n').unwrap_or(("0", ""));
    (
        code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "no HTTP answer from {url}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }),
        body.to_string(),
    )
}

#[test]
fn metrics_alerts_and_insights_follow_an_attack_and_survive_a_restart() {
    let test = "metrics_alerts_and_insights_follow_an_attack_and_survive_a_restart";
    let Some((env, netns)) = setup(test) else {
        return;
    };
    let Some(python) = python_with_prometheus_client() else {
        require(
            "the prometheus_client Python package (apt-get install python3-prometheus-client)",
            false,
        );
        return;
    };
    // The daemon runs in the test dockerd's namespace: its loopback is its own.
    let port = 19184;
    let mut d = Daemon::new(
        &netns,
        "smt_metrics",
        &format!(r#", "metrics": {{"listen": "{port}"}}, "alerts": {{"cooldown": "10m"}}"#),
    );
    let url = format!("http://127.0.0.1:{port}");

    let (code, before) = metrics_get(&netns, &python, &format!("{url}/metrics"));
    assert_eq!(code, 200, "{before}");
    let before = parse_prometheus(&python, &before);
    assert_eq!(sample_sum(&before, "security_monitor_bans_total", &[]), 0.0);
    assert_eq!(
        sample_sum(&before, "security_monitor_notification_failures_total", &[]),
        0.0
    );
    let (code, body) = metrics_get(&netns, &python, &format!("{url}/nothing"));
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("/alerts") && body.contains("/insights"),
        "{body}"
    );

    // One benign line, two attack lines from one IP (folded into one rule-hit alert or a
    // ban), and a burst of tracebacks (an error-rate jump).
    let name = format!("{}metrics", common::prefix("metrics"));
    let script = format!(
        "sleep 1; echo \"{}\"; echo \"{}\"; echo \"{}\"; \
         for i in $(seq 1 45); do echo 'Traceback (most recent call last):'; done; sleep 600",
        benign_line("203.0.113.162"),
        attack_line("203.0.113.161"),
        attack_line("203.0.113.161"),
    );
    let _container = Container::run(&env, &name, &d.label(), &script);
    assert!(
        wait_until(Duration::from_secs(15), || d
            .kernel_set()
            .contains("203.0.113.161")),
        "no ban in the kernel:\n{}",
        d.log()
    );

    // The counters moved, and the CLI's text parses the same.
    let mut after = Vec::new();
    let moved = wait_until(Duration::from_secs(10), || {
        let out = d.cli(&["metrics"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        after = parse_prometheus(&python, &String::from_utf8_lossy(&out.stdout));
        // The ban's counters and alerts follow the kernel change through the event
        // bus: they are waited for too, not read at the moment the kernel had it.
        sample_sum(
            &after,
            "security_monitor_error_lines_total",
            &[("container", &name)],
        ) >= 45.0
            && sample_sum(&after, "security_monitor_bans_total", &[]) >= 1.0
            && sample_sum(&after, "security_monitor_alerts_total", &[]) >= 2.0
    });
    assert!(
        moved,
        "the error lines, the ban or its alerts were not counted: {after:?}"
    );
    let c = [("container", name.as_str())];
    assert!(
        sample_sum(&after, "security_monitor_lines_read_total", &c) >= 48.0,
        "{after:?}"
    );
    assert!(sample_sum(&after, "security_monitor_parse_failures_total", &c) >= 45.0);
    assert!(sample_sum(&after, "security_monitor_rule_hits_total", &[]) >= 1.0);
    assert_eq!(
        sample_sum(&after, "security_monitor_bans_total", &[]),
        1.0,
        "{after:?}"
    );
    assert_eq!(sample_sum(&after, "security_monitor_active_bans", &[]), 1.0);
    assert_eq!(
        sample_sum(&after, "security_monitor_time_to_ban_seconds_count", &[]),
        1.0
    );
    assert_eq!(
        sample_sum(
            &after,
            "security_monitor_time_to_ban_seconds_bucket",
            &[("le", "+Inf")]
        ),
        1.0
    );
    assert_eq!(
        sample_sum(&after, "security_monitor_docker_connected", &[]),
        1.0
    );
    assert!(
        sample_sum(
            &after,
            "security_monitor_docker_streams",
            &[("state", "following")]
        ) >= 1.0
    );
    assert!(sample_sum(&after, "security_monitor_alerts_total", &[]) >= 2.0);
    // Over HTTP too.
    let (code, text) = metrics_get(&netns, &python, &format!("{url}/metrics"));
    assert_eq!(code, 200);
    let http = parse_prometheus(&python, &text);
    assert_eq!(sample_sum(&http, "security_monitor_bans_total", &[]), 1.0);
    let (code, health) = metrics_get(&netns, &python, &format!("{url}/health"));
    assert_eq!(code, 200, "{health}");

    // The seeds' HTTP view: /alerts as {count, alerts}, filtered by query parameters.
    let http_json = |path: &str| -> (u16, serde_json::Value) {
        let (code, body) = metrics_get(&netns, &python, &format!("{url}{path}"));
        let v = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
        (code, v)
    };
    let (code, all) = http_json("/alerts");
    assert_eq!(code, 200, "{all:#}");
    let all_list = all["alerts"].as_array().expect("alerts").clone();
    assert_eq!(
        all["count"].as_u64(),
        Some(all_list.len() as u64),
        "{all:#}"
    );
    assert!(
        all_list
            .iter()
            .any(|a| a["kind"] == "ban" && a["ip"] == "203.0.113.161")
            && all_list.iter().any(|a| a["kind"] == "error_rate"),
        "{all:#}"
    );
    let (code, only) = http_json("/alerts?ip=203.0.113.161&severity=high&limit=10");
    assert_eq!(code, 200, "{only:#}");
    let only_list = only["alerts"].as_array().expect("alerts");
    assert_eq!(only["count"].as_u64(), Some(only_list.len() as u64));
    assert!(
        !only_list.is_empty()
            && only_list.len() < all_list.len()
            && only_list.iter().all(|a| a["ip"] == "203.0.113.161"),
        "the filter did not narrow: {only:#}"
    );
    let (code, bans) = http_json("/alerts?kind=ban");
    assert_eq!(code, 200, "{bans:#}");
    assert!(
        bans["alerts"].as_array().is_some_and(|l| !l.is_empty()
            && l.len() < all_list.len()
            && l.iter().all(|a| a["kind"] == "ban")),
        "{bans:#}"
    );
    let (code, body) = http_json("/alerts?severity=urgent");
    assert_eq!(code, 400, "{body}");
    assert!(
        body.as_str().is_some_and(|b| b.starts_with("severity: ")),
        "{body}"
    );
    // /insights: the seed's fields, and the anomaly signal among the signals.
    let (code, ins) = http_json("/insights");
    assert_eq!(code, 200, "{ins:#}");
    assert!(
        ["low", "medium", "high"].contains(&ins["risk_level"].as_str().unwrap_or("")),
        "{ins:#}"
    );
    assert!(ins["risk_score"].as_u64().is_some_and(|s| s > 0), "{ins:#}");
    // The default config runs the baselines (anomaly.mode "alert").
    assert_eq!(ins["mode"], "rules+baselines", "{ins:#}");
    assert!(
        ins["signals"]
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s["name"] == "anomalies")),
        "{ins:#}"
    );

    // The alerts: the ban and the error-rate jump.
    let alerts: serde_json::Value =
        serde_json::from_slice(&d.cli(&["alerts", "--json"]).stdout).expect("alerts --json");
    let list = alerts.as_array().expect("a list").clone();
    let has = |kind: &str, f: &dyn Fn(&serde_json::Value) -> bool| {
        list.iter().any(|a| a["kind"] == kind && f(a))
    };
    assert!(
        has("ban", &|a| a["ip"] == "203.0.113.161"
            && a["container"] == name.as_str()),
        "{alerts:#}"
    );
    assert!(
        has("error_rate", &|a| a["container"] == name.as_str()
            && a["severity"] == "high"),
        "{alerts:#}"
    );
    assert!(
        !list.iter().any(|a| a["ip"] == "203.0.113.162"),
        "{alerts:#}"
    );
    // Filters.
    let only: serde_json::Value = serde_json::from_slice(
        &d.cli(&[
            "alerts",
            "--json",
            "--ip",
            "203.0.113.161",
            "--severity",
            "high",
        ])
        .stdout,
    )
    .expect("filtered alerts");
    assert!(only
        .as_array()
        .is_some_and(|l| !l.is_empty() && l.iter().all(|a| a["ip"] == "203.0.113.161")));
    let table = String::from_utf8_lossy(&d.cli(&["alerts"]).stdout).into_owned();
    assert!(
        table.contains("LAST SEEN") && table.contains("error_rate"),
        "{table}"
    );
    let out = d.cli(&["alerts", "--since", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("since"));

    // Insights: a score with its signals.
    let ins: serde_json::Value =
        serde_json::from_slice(&d.cli(&["insights", "--json"]).stdout).expect("insights");
    assert!(ins["risk_score"].as_u64().is_some_and(|s| s > 0), "{ins:#}");
    assert_eq!(ins["active_bans"], 1);
    assert_eq!(ins["signals"].as_array().map(Vec::len), Some(5), "{ins:#}");
    let text = String::from_utf8_lossy(&d.cli(&["insights"]).stdout).into_owned();
    assert!(
        text.contains("risk ") && text.contains("severity_mix"),
        "{text}"
    );
    assert!(d.cli(&["health"]).status.success());

    // A restart: the alerts come back from the log.
    d.signal("-TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "{}", d.log());
    let log = std::fs::read_to_string(d.dir.path().join("state/alerts.jsonl")).expect("alerts log");
    assert!(log.contains("\"kind\":\"ban\""), "{log}");
    // Without the daemon, `alerts` reads the log.
    let out = d.cli(&["alerts", "--json", "--ip", "203.0.113.161"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"ban\""));
    d.start(&[]);
    let again: serde_json::Value =
        serde_json::from_slice(&d.cli(&["alerts", "--json"]).stdout).expect("alerts --json");
    assert!(
        again.as_array().is_some_and(|l| l
            .iter()
            .any(|a| a["kind"] == "ban" && a["ip"] == "203.0.113.161")),
        "the alerts did not survive the restart: {again:#}"
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
    // The mail is on the server's disk before the daemon has the server's answer: wait
    // for the daemon to count it sent.
    let want = format!(
        "notices      email via 127.0.0.1:{port} (no encryption): 1 sent, 0 failed, 0 pending"
    );
    let mut status = String::new();
    let counted = wait_until(Duration::from_secs(10), || {
        status = String::from_utf8_lossy(&d.cli(&["status"]).stdout).into_owned();
        status.contains(&want)
    });
    assert!(counted, "{status}");

    // A restart restores the ban: that is not a new ban, so no mail.
    d.signal("-TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "{}", d.log());
    d.start(&[]);
    assert!(d.kernel_set().contains("203.0.113.121"));
    // A later ban is a barrier: notices go out in order, so once its mail is here a
    // notice of the restored ban would have come before it.
    let out = d.cli(&["ban", "203.0.113.122", "--reason", "barrier"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_until(Duration::from_secs(20), || mails().len() >= 2),
        "the barrier's mail never came:\n{}",
        d.log()
    );
    let later = mails();
    assert_eq!(later.len(), 2, "a restored ban was mailed: {later:?}");
    let body = later[1]["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("203.0.113.122") && !body.contains("203.0.113.121"),
        "{body}"
    );
    // Counted once the server has answered: only the barrier's notice since the restart.
    let mut st = serde_json::Value::Null;
    let counted = wait_until(Duration::from_secs(10), || {
        st = serde_json::from_slice(&d.cli(&["status", "--json"]).stdout).expect("status --json");
        st["notify"]["channels"][0]["sent"] == 1
    });
    assert!(counted, "{st}");
}

/// A container is read by the profile its image selects, or the one its label names, with
/// nothing in the config: images are tagged here with the names the applications
/// publish (`vaultwarden/server`, `gitea/gitea`), and `status` says which profile each
/// container got and why.
#[test]
fn the_image_chooses_the_profile_and_a_label_overrides_it() {
    let Some((env, netns)) = setup("the_image_chooses_the_profile_and_a_label_overrides_it") else {
        return;
    };
    let d = Daemon::reading(&netns, "smt_prof", "auto", "");
    let tag = std::process::id();
    let vw_image = format!("vaultwarden/server:smt{tag}");
    let gitea_image = format!("gitea/gitea:smt{tag}");
    env.docker(&["tag", &env.image, &vw_image]);
    env.docker(&["tag", &env.image, &gitea_image]);
    let vw_line = |ip: &str| {
        format!("[2024-01-15 10:00:00.123][vaultwarden::api::identity][ERROR] Username or password is incorrect. Try again. IP: {ip}. Username: admin@example.com.")
    };
    let repeat =
        |line: String, n: usize| -> String { (0..n).map(|_| format!("echo '{line}'; ")).collect() };
    let run = |name: &str, image: &str, labels: &[&str], script: &str| {
        let mut args = vec!["run", "-d", "--name", name, "--label", "secmon-test=1"];
        let label = d.label();
        args.extend(["--label", label.as_str()]);
        for l in labels {
            args.extend(["--label", l]);
        }
        args.extend([image, "sh", "-c", script]);
        env.docker(&args);
        Container {
            env: &env,
            name: name.to_string(),
        }
    };
    let p = common::prefix("profile");
    // Six failed logins from .121 (past the threshold of 5) and four from .122 (below).
    let vw = format!("{p}vw");
    let script = format!(
        "sleep 1; {}{}sleep 600",
        repeat(vw_line("203.0.113.121"), 6),
        repeat(vw_line("203.0.113.122"), 4)
    );
    let _vw = run(&vw, &vw_image, &[], &script);
    // A Gitea image told by its label that it runs Vaultwarden.
    let relabelled = format!("{p}relabelled");
    let script = format!("sleep 1; {}sleep 600", repeat(vw_line("203.0.113.123"), 6));
    let _relabelled = run(
        &relabelled,
        &gitea_image,
        &["security-monitor.profile=vaultwarden"],
        &script,
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            let set = d.kernel_set();
            set.contains("203.0.113.121") && set.contains("203.0.113.123")
        }),
        "the profiles did not ban:\n{}\n{}",
        d.kernel_set(),
        d.log()
    );
    assert!(
        !d.kernel_set().contains("203.0.113.122"),
        "four failures are below the threshold"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&d.cli(&["status", "--json"]).stdout).expect("status --json");
    let profiles = status["profiles"].as_array().cloned().unwrap_or_default();
    let of = |name: &str| {
        profiles
            .iter()
            .find(|p| p["container"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(of(&vw)["profile"], "vaultwarden", "{status}");
    assert!(
        of(&vw)["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&vw_image)),
        "{status}"
    );
    assert_eq!(of(&relabelled)["profile"], "vaultwarden", "{status}");
    assert!(
        of(&relabelled)["reason"]
            .as_str()
            .is_some_and(|r| r.contains("label security-monitor.profile=vaultwarden")),
        "{status}"
    );
    let text = String::from_utf8_lossy(&d.cli(&["status"]).stdout).into_owned();
    assert!(
        text.contains(&format!(
            "profile      {vw}: vaultwarden (image {vw_image})"
        )),
        "{text}"
    );
    let _ = Command::new("docker")
        .env("DOCKER_HOST", &env.host)
        .args(["rmi", "-f", &vw_image, &gitea_image])
        .output();
}

/// A profile's own log files are read with nothing configured: an image tagged
/// `jc21/nginx-proxy-manager` chooses that profile, the profile names
/// `/data/logs/*_access.log`, the daemon finds that directory through the container's
/// bind mount, and a probe written there by the container is banned in nftables.
#[test]
fn a_profile_reads_its_applications_log_files_through_the_mounts() {
    let Some((env, netns)) = setup("a_profile_reads_its_applications_log_files_through_the_mounts")
    else {
        return;
    };
    let d = Daemon::reading(&netns, "smt_pfile", "auto", "");
    let image = format!("jc21/nginx-proxy-manager:smt{}", std::process::id());
    env.docker(&["tag", &env.image, &image]);
    let logs = tempfile::tempdir().expect("temp dir");
    let name = format!("{}npm", common::prefix("pfile"));
    // NPM's proxy-host access log line (tests/profiles/nginx-proxy-manager.log): a probe
    // for a dotenv file. The file appears after the daemon first looks, so it is read
    // from its start.
    let line = r#"[24/Jan/2022:13:40:19 +0000] 444 - GET https 203.0.113.10 "/.env" [Client 203.0.113.131] [Length 0] [Gzip -] "Mozilla/5.0 (X11; Linux x86_64)" "-""#;
    let script = format!("sleep 2; echo '{line}' >> /data/logs/proxy-host-1_access.log; sleep 600");
    let mount = format!("{}:/data/logs", logs.path().display());
    let label = d.label();
    env.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "secmon-test=1",
        "--label",
        &label,
        "-v",
        &mount,
        &image,
        "sh",
        "-c",
        &script,
    ]);
    let _container = Container {
        env: &env,
        name: name.clone(),
    };
    assert!(
        wait_until(Duration::from_secs(20), || d
            .kernel_set()
            .contains("203.0.113.131")),
        "the probe in the profile's log file was not banned:\n{}\n{}",
        d.kernel_set(),
        d.log()
    );
    let list = String::from_utf8_lossy(&d.cli(&["list", "--json"]).stdout).into_owned();
    assert!(list.contains("sensitive-dotfile-secrets"), "{list}");
    let status: serde_json::Value =
        serde_json::from_slice(&d.cli(&["status", "--json"]).stdout).expect("status --json");
    let file_read = status["docker"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == name)
        .flat_map(|c| c["files"].as_array().cloned().unwrap_or_default())
        .any(|f| f.to_string().contains("proxy-host-1_access.log"));
    assert!(file_read, "status does not show the file read: {status}");
    let _ = Command::new("docker")
        .env("DOCKER_HOST", &env.host)
        .args(["rmi", "-f", &image])
        .output();
}

/// A combined line for `target` from `ip`, answered 200.
fn request_line(ip: &str, target: &str) -> String {
    answered_line(ip, target, 200)
}

/// A combined line for `target` from `ip`, answered `status`.
fn answered_line(ip: &str, target: &str, status: u16) -> String {
    format!(
        r#"{ip} - - [21/Nov/2026:10:00:00 +0000] "GET {target} HTTP/1.1" {status} 5 "-" "Mozilla/5.0""#
    )
}

/// Appends `lines` to the file a test container prints (`tail -f /tmp/in`), so lines can
/// be added while the daemon runs or while it is stopped.
fn append_lines(env: &Env, name: &str, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let script = format!("cat >> /tmp/in <<'EOF'\n{text}EOF\n");
    env.docker(&["exec", name, "/bin/busybox", "sh", "-c", &script]);
}

/// 60 ordinary searches from 20 clients (no client may give more than its share), every
/// value already in the first round (a value first seen late is itself odd).
fn searches() -> Vec<String> {
    let mut lines = Vec::new();
    for round in 0..3 {
        for i in 0..20 {
            let word = ["shoes", "boots", "socks"][(i + round) % 3];
            lines.push(request_line(
                &format!("198.51.100.{}", 10 + i),
                &format!("/search?q={word}&page={}", i % 2 + 1),
            ));
        }
    }
    lines
}

/// The alerts of kind `anomaly`, as `alerts --json` lists them.
fn anomaly_alerts(d: &Daemon) -> Vec<serde_json::Value> {
    let out = d.cli(&["alerts", "--json"]);
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    all.as_array()
        .map(|a| {
            a.iter()
                .filter(|a| a["kind"] == "anomaly")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Waits up to 15 s for an anomaly alert about `ip`, and returns it; fails with `why`.
fn wait_for_anomaly_of(d: &Daemon, ip: &str, why: &str) -> serde_json::Value {
    let find = || anomaly_alerts(d).into_iter().find(|a| a["ip"] == ip);
    assert!(
        wait_until(Duration::from_secs(15), || find().is_some()),
        "{why}: {:?}\n{}",
        anomaly_alerts(d),
        d.log()
    );
    find().expect("the alert just seen")
}

#[test]
fn an_odd_request_to_a_learned_endpoint_is_an_anomaly_alert_and_the_model_outlives_a_restart() {
    let test =
        "an_odd_request_to_a_learned_endpoint_is_an_anomaly_alert_and_the_model_outlives_a_restart";
    let Some((env, netns)) = setup(test) else {
        return;
    };
    let mut d = Daemon::new(&netns, "smt_anomaly", r#", "anomaly": {"min_samples": 20}"#);
    let name = format!("{}shop", common::prefix("anomaly"));
    // The container prints what is appended to /tmp/in, so lines can be added later
    // (after the daemon's restart) with `docker exec`.
    let _container = Container::run(
        &env,
        &name,
        &d.label(),
        "mkdir -p /tmp; touch /tmp/in; tail -n +1 -f /tmp/in",
    );
    let append = |lines: &[String]| append_lines(&env, &name, lines);
    let training = searches();
    append(&training);
    let learned = format!("security_monitor_anomaly_learned{{container=\"{name}\"}} 60");
    let metrics = |d: &Daemon| String::from_utf8_lossy(&d.cli(&["metrics"]).stdout).into_owned();
    assert!(
        wait_until(Duration::from_secs(20), || metrics(&d).contains(&learned)),
        "the baseline did not learn the 60 searches:\n{}\n{}",
        metrics(&d),
        d.log()
    );
    assert!(anomaly_alerts(&d).is_empty(), "{:?}", anomaly_alerts(&d));

    // A parameter the endpoint never takes: an anomaly alert, medium, about that endpoint.
    append(&[request_line(
        "203.0.113.190",
        "/search?q=shoes&page=1&debug=1",
    )]);
    assert!(
        wait_until(Duration::from_secs(15), || !anomaly_alerts(&d).is_empty()),
        "no anomaly alert:\n{}",
        d.log()
    );
    let alerts = anomaly_alerts(&d);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["ip"], "203.0.113.190", "{a}");
    assert_eq!(a["severity"], "medium", "{a}");
    assert_eq!(a["category"], "anomaly", "{a}");
    assert_eq!(a["rule"], "GET /search", "{a}");
    assert_eq!(a["container"], name.as_str(), "{a}");
    let what = a["line"].as_str().unwrap_or_default();
    assert!(what.contains("parameter `debug`"), "{a}");
    assert!(
        metrics(&d).contains(&format!(
            "security_monitor_anomalies_total{{container=\"{name}\"}} 1"
        )),
        "{}",
        metrics(&d)
    );
    assert!(
        !d.kernel_set().contains("203.0.113.190"),
        "mode alert banned the client"
    );

    // A clean stop saves the model; the next start loads it and flags without
    // retraining (the training lines are behind the log cursor: not read again).
    d.signal("-TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "{}", d.log());
    let file = d.dir.path().join("state/anomaly_model.json");
    let saved = std::fs::read_to_string(&file).unwrap_or_default();
    let model: serde_json::Value = serde_json::from_str(&saved)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", file.display(), d.log()));
    assert_eq!(model["version"], 1, "{saved}");
    assert!(saved.contains("GET /search"), "{saved}");
    d.start(&[]);
    assert!(
        d.log()
            .contains("endpoint baselines: loaded 1 endpoint(s), 60 request(s) learned"),
        "{}",
        d.log()
    );
    append(&[request_line(
        "203.0.113.191",
        "/search?q=shoes&page=1&admin=true",
    )]);
    wait_for_anomaly_of(&d, "203.0.113.191", "no anomaly after the restart");
    let status: serde_json::Value =
        serde_json::from_slice(&d.cli(&["status", "--json"]).stdout).expect("status --json");
    let a = &status["anomaly"];
    assert_eq!(a["mode"], "alert", "{status}");
    assert_eq!(a["containers"][0]["container"], name.as_str(), "{status}");
    assert_eq!(a["containers"][0]["endpoints"], 1, "{status}");
    assert_eq!(a["containers"][0]["learned"], 60, "{status}");
    let text = String::from_utf8_lossy(&d.cli(&["status"]).stdout).into_owned();
    assert!(
        text.contains(&format!(
            "baseline     {name}: 1 endpoints, 60 requests learned"
        )),
        "{text}"
    );
    let lines = format!("security_monitor_lines_read_total{{container=\"{name}\"}} 1\n");
    assert!(
        metrics(&d).contains(&lines),
        "the training lines were read again:\n{}",
        metrics(&d)
    );

    // The endpoint's status mix came back with it: an odd request that the application
    // answered 500, an answer it never gave in the 60 learned, says so.
    append(&[answered_line(
        "203.0.113.192",
        "/search?q=shoes&page=1&trace=1",
        500,
    )]);
    let a = wait_for_anomaly_of(&d, "203.0.113.192", "no anomaly for the 500");
    let what = a["line"].as_str().unwrap_or_default();
    assert!(
        what.contains("parameter `trace`")
            && what.contains("it answered 500")
            && what.contains("a 5xx it gave 0 times in"),
        "{a}"
    );
}

#[test]
fn a_container_first_seen_warms_its_baselines_from_its_own_history() {
    let test = "a_container_first_seen_warms_its_baselines_from_its_own_history";
    let Some((env, netns)) = setup(test) else {
        return;
    };
    let extra = r#", "anomaly": {"min_samples": 20}"#;
    let mut d = Daemon::new(&netns, "smt_warmup", extra);
    d.signal("-TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "{}", d.log());
    // The live stream reads nothing older than its start: what the container wrote
    // before can only reach the baselines through the warm-up.
    let text = d
        .config_text(extra)
        .replacen("\"label\"", "\"max_backlog\": \"0s\", \"label\"", 1);
    std::fs::write(&d.cfg, text).expect("write config");
    let name = format!("{}warm", common::prefix("anomaly"));
    let _container = Container::run(
        &env,
        &name,
        &d.label(),
        "mkdir -p /tmp; touch /tmp/in; tail -n +1 -f /tmp/in",
    );
    let append = |lines: &[String]| append_lines(&env, &name, lines);
    let mut history = searches();
    // An attack in the history teaches nothing (a rule matches it).
    history.push(request_line(
        "203.0.113.50",
        "/search?q=1'%20UNION%20SELECT%20password%20FROM%20users--&page=1",
    ));
    append(&history);
    std::thread::sleep(Duration::from_secs(2));
    d.start(&[]);
    // The first line seen live asks for the history.
    append(&[request_line("198.51.100.10", "/search?q=shoes&page=1")]);
    let metrics = |d: &Daemon| String::from_utf8_lossy(&d.cli(&["metrics"]).stdout).into_owned();
    let learned = |d: &Daemon| -> u64 {
        let key = format!("security_monitor_anomaly_learned{{container=\"{name}\"}} ");
        metrics(d)
            .lines()
            .find_map(|l| l.strip_prefix(&key)?.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(30), || learned(&d) >= 60),
        "the history did not warm the baselines (learned {}):\n{}",
        learned(&d),
        d.log()
    );
    assert!(
        d.log().contains(&format!(
            "container {name}: baselines warmed from its history: 61 lines read (61 parsed, 60 clean)"
        )),
        "{}",
        d.log()
    );
    let lines = format!("security_monitor_lines_read_total{{container=\"{name}\"}} 1\n");
    assert!(
        metrics(&d).contains(&lines),
        "the history was judged live:\n{}",
        metrics(&d)
    );
    assert!(
        !d.kernel_set().contains("203.0.113.50"),
        "the history's attacker was banned"
    );
    // Warmed, the endpoint judges at once: a parameter it never takes is an anomaly.
    append(&[request_line(
        "203.0.113.190",
        "/search?q=shoes&page=1&debug=1",
    )]);
    assert!(
        wait_until(Duration::from_secs(15), || anomaly_alerts(&d)
            .iter()
            .any(|a| a["ip"] == "203.0.113.190")),
        "no anomaly after the warm-up: {:?}\n{}",
        anomaly_alerts(&d),
        d.log()
    );
}

#[test]
fn a_reload_to_mode_ban_keeps_the_baselines_and_three_anomalies_ban() {
    let test = "a_reload_to_mode_ban_keeps_the_baselines_and_three_anomalies_ban";
    let Some((env, netns)) = setup(test) else {
        return;
    };
    let d = Daemon::new(&netns, "smt_anomban", r#", "anomaly": {"min_samples": 20}"#);
    let name = format!("{}shop", common::prefix("anomban"));
    let _container = Container::run(
        &env,
        &name,
        &d.label(),
        "mkdir -p /tmp; touch /tmp/in; tail -n +1 -f /tmp/in",
    );
    let append = |lines: &[String]| append_lines(&env, &name, lines);
    let training: Vec<String> = (0..60)
        .map(|k| {
            request_line(
                &format!("198.51.100.{}", 10 + k % 20),
                &format!("/cart?item={}&qty={}", k % 5 + 1, k % 3 + 1),
            )
        })
        .collect();
    append(&training);
    let learned = format!("security_monitor_anomaly_learned{{container=\"{name}\"}} 60");
    let metrics = |d: &Daemon| String::from_utf8_lossy(&d.cli(&["metrics"]).stdout).into_owned();
    assert!(
        wait_until(Duration::from_secs(20), || metrics(&d).contains(&learned)),
        "{}\n{}",
        metrics(&d),
        d.log()
    );
    // To mode ban by a reload: what was learned stays.
    std::fs::write(
        &d.cfg,
        d.config_text(r#", "anomaly": {"min_samples": 20, "mode": "ban"}"#),
    )
    .unwrap();
    let out = d.cli(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        metrics(&d).contains(&learned),
        "the reload dropped the baselines:\n{}",
        metrics(&d)
    );
    // One odd request from one client, three from another: only the second is banned.
    append(&[
        request_line("203.0.113.196", "/cart?item=1&qty=1&debug=1"),
        request_line("203.0.113.195", "/cart?item=1&qty=1&debug=1"),
        request_line("203.0.113.195", "/cart?item=1&qty=1&admin=1"),
        request_line("203.0.113.195", "/cart?item=1%27&qty=1"),
    ]);
    assert!(
        wait_until(Duration::from_secs(15), || d
            .kernel_set()
            .contains("203.0.113.195")),
        "three anomalies did not ban:\n{}\n{}",
        metrics(&d),
        d.log()
    );
    let list: serde_json::Value =
        serde_json::from_slice(&d.cli(&["list", "--json"]).stdout).expect("list --json");
    let ban = list
        .as_array()
        .and_then(|l| l.iter().find(|b| b["ip"] == "203.0.113.195"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ban["rule"], "anomaly", "{list}");
    assert_eq!(ban["category"], "anomaly", "{list}");
    assert_eq!(ban["severity"], "medium", "{list}");
    assert!(
        !d.kernel_set().contains("203.0.113.196"),
        "one anomaly banned"
    );
}
