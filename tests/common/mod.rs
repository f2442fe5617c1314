//! Shared helpers for tests that need real parts: root, network namespaces, nft.
#![allow(dead_code)]

mod docker;
#[allow(unused_imports)]
pub use docker::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_security-monitor"))
}

/// Whether a prerequisite is there. When it is not: outside CI, a loud skip (returns
/// false); with CI=true, a failure.
pub fn require(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("missing prerequisite: {what} (CI=true: this is a failure, not a skip)");
    }
    eprintln!("\n!!!!!!!!\n!!! SKIPPING: {what}\n!!!!!!!!\n");
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh")
}

pub fn must(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A server and a client host, each in its own network namespace, joined by a veth pair:
/// server 10.231.N.1 / fd31:N::1, client 10.231.N.2 / fd31:N::2. The server namespace
/// runs a TCP listener on port 8080. Everything is removed on drop.
pub struct TestNet {
    pub srv: String,
    pub cli: String,
    pub n: u8,
    listener: Option<Child>,
}

impl TestNet {
    pub fn new(tag: &str, n: u8) -> TestNet {
        let srv = format!("smt-{tag}-s");
        let cli = format!("smt-{tag}-c");
        let _ = sh(&format!(
            "ip netns del {srv} 2>/dev/null; ip netns del {cli} 2>/dev/null"
        ));
        must(&format!(
            "set -e; ip netns add {srv}; ip netns add {cli}; \
             ip link add smt{n}s type veth peer name smt{n}c; \
             ip link set smt{n}s netns {srv}; ip link set smt{n}c netns {cli}; \
             ip -n {srv} addr add 10.231.{n}.1/24 dev smt{n}s; ip -n {cli} addr add 10.231.{n}.2/24 dev smt{n}c; \
             ip -n {srv} addr add fd31:{n}::1/64 dev smt{n}s nodad; ip -n {cli} addr add fd31:{n}::2/64 dev smt{n}c nodad; \
             for ns in {srv} {cli}; do ip -n $ns link set lo up; done; \
             ip -n {srv} link set smt{n}s up; ip -n {cli} link set smt{n}c up"
        ));
        let listener = Command::new("ip")
            .args(["netns", "exec", &srv, "python3", "-c"])
            .arg("import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('::',8080))\ns.listen(64)\nwhile True:\n  c,_=s.accept(); c.close()")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start listener");
        let net = TestNet {
            srv,
            cli,
            n,
            listener: Some(listener),
        };
        assert!(
            wait_until(Duration::from_secs(5), || net.reachable(false)),
            "the test listener never came up"
        );
        net
    }

    pub fn client_ip(&self, v6: bool) -> String {
        if v6 {
            format!("fd31:{}::2", self.n)
        } else {
            format!("10.231.{}.2", self.n)
        }
    }

    /// Whether the client can open a TCP connection to the server.
    pub fn reachable(&self, v6: bool) -> bool {
        let addr = if v6 {
            format!("fd31:{}::1", self.n)
        } else {
            format!("10.231.{}.1", self.n)
        };
        let fam = if v6 { "AF_INET6" } else { "AF_INET" };
        Command::new("ip")
            .args(["netns", "exec", &self.cli, "python3", "-c"])
            .arg(format!("import socket,sys\ns=socket.socket(socket.{fam})\ns.settimeout(0.7)\nsys.exit(0 if s.connect_ex(('{addr}',8080))==0 else 1)"))
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Runs security-monitor inside the server namespace.
    pub fn monitor(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.srv,
                env!("CARGO_BIN_EXE_security-monitor"),
            ])
            .args(args)
            .output()
            .expect("run security-monitor")
    }

    pub fn in_srv(&self, cmd: &str) -> String {
        must(&format!(
            "ip netns exec {} sh -c '{}'",
            self.srv,
            cmd.replace('\'', "'\\''")
        ))
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if let Some(mut l) = self.listener.take() {
            let _ = l.kill();
            let _ = l.wait();
        }
        let _ = sh(&format!(
            "ip netns pids {0} | xargs -r kill -9; ip netns del {0}; ip netns del {1}",
            self.srv, self.cli
        ));
    }
}

pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// A temp state directory and a config pointing at it.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Setup {
    pub fn new(extra: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("monitor_config.json");
        let state = dir.path().join("state");
        let text = format!(
            "{{\"state\": {{\"dir\": \"{}\"}}{}{extra}}}",
            state.display(),
            if extra.is_empty() { "" } else { ", " }
        );
        std::fs::write(&config, text).expect("write config");
        Setup { dir, config }
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("state/blocked_ips.json")
    }

    pub fn config(&self) -> &str {
        self.config.to_str().expect("utf-8 path")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
