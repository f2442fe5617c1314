//! Bans with real packets: a client and a server in network namespaces of their own
//! (never the host's ruleset), for each firewall backend.

mod common;

use std::time::Duration;

use std::process::Command;

use common::{have, is_root, require, wait_until, Setup, TestNet};

fn ready(backend: &str) -> bool {
    require(
        "root (network namespaces and the firewall need it)",
        is_root(),
    ) && require(
        "nft (apt-get install nftables)",
        have("nft", &["--version"]),
    ) && (backend != "iptables"
        || require(
            "iptables and ipset (apt-get install iptables ipset)",
            have("iptables", &["--version"]) && have("ipset", &["version"]),
        ))
        && require(
            "python3 (the test listener)",
            have("python3", &["--version"]),
        )
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "security-monitor failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Ban → blocked; kernel expiry → reachable again; re-ban → blocked; unban → reachable at
/// once; unban again → not an error. For IPv4 and IPv6.
fn ban_expire_unban(backend: &str, tag: &str, n: u8) {
    if !ready(backend) {
        return;
    }
    let net = TestNet::new(tag, n);
    let setup = Setup::new(&format!("\"firewall\": {{\"backend\": \"{backend}\"}}"));
    let cfg = setup.config();
    for v6 in [false, true] {
        let client = net.client_ip(v6);
        assert!(net.reachable(v6), "{client} cannot connect before any ban");
        ok(net.monitor(&["ban", &client, "--for", "2s", "--reason", "test", "-c", cfg]));
        assert!(!net.reachable(v6), "{client} still connects after the ban");
        assert!(
            wait_until(Duration::from_secs(6), || net.reachable(v6)),
            "{client} still blocked after its 2 s ban expired"
        );
        ok(net.monitor(&["ban", &client, "--for", "1h", "-c", cfg]));
        assert!(!net.reachable(v6), "{client} connects after the re-ban");
        let list = ok(net.monitor(&["list", "--json", "-c", cfg]));
        assert!(list.contains(&client), "{list}");
        let out = ok(net.monitor(&["unban", &client, "-c", cfg]));
        assert!(out.contains("unbanned"), "{out}");
        assert!(
            net.reachable(v6),
            "{client} still blocked right after unban"
        );
        let out = ok(net.monitor(&["unban", &client, "-c", cfg]));
        assert!(out.contains("was not banned"), "{out}");
    }
}

#[test]
fn nftables_ban_expiry_and_unban() {
    ban_expire_unban("nftables", "nft", 11);
}

#[test]
fn iptables_ban_expiry_and_unban() {
    ban_expire_unban("iptables", "ipt", 12);
}

/// The kernel holds the truth: bans survive the process (no daemon needed to keep them),
/// a restart restores the book without duplicates, and a corrupt state file is moved
/// aside while the firewall's bans are adopted back.
fn restart_and_corrupt_state(backend: &str, tag: &str, n: u8) {
    if !ready(backend) {
        return;
    }
    let net = TestNet::new(tag, n);
    let setup = Setup::new(&format!("\"firewall\": {{\"backend\": \"{backend}\"}}"));
    let cfg = setup.config();
    let client = net.client_ip(false);
    ok(net.monitor(&["ban", &client, "--for", "1h", "-c", cfg]));
    ok(net.monitor(&["ban", "203.0.113.5", "--for", "1h", "-c", cfg]));
    for _ in 0..3 {
        ok(net.monitor(&["restore", "-c", cfg]));
    }
    assert!(!net.reachable(false));
    let listing = if backend == "nftables" {
        net.in_srv("nft list set inet security_monitor banned_v4")
    } else {
        net.in_srv("ipset list security_monitor_v4")
    };
    assert_eq!(listing.matches(&client).count(), 1, "{listing}");
    let state = std::fs::read_to_string(setup.state_file()).unwrap();
    assert_eq!(
        state.matches(&format!("\"ip\": \"{client}\"")).count(),
        2,
        "one ban and one history entry: {state}"
    );

    std::fs::write(setup.state_file(), b"{ this is not json").unwrap();
    let out = net.monitor(&["restore", "--json", "-c", cfg]);
    let text = ok(out);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["adopted"], 2, "{v}");
    assert!(
        v["state_error"].as_str().unwrap().contains("moved it to"),
        "{v}"
    );
    assert!(!net.reachable(false), "the bans must stay in force");
    let moved: Vec<_> = std::fs::read_dir(setup.path().join("state"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
        .collect();
    assert_eq!(moved.len(), 1);
    let list = ok(net.monitor(&["list", "--json", "-c", cfg]));
    assert!(
        list.contains(&client) && list.contains("\"source\": \"kernel\""),
        "{list}"
    );
}

#[test]
fn nftables_restart_and_corrupt_state() {
    restart_and_corrupt_state("nftables", "nftr", 13);
}

#[test]
fn iptables_restart_and_corrupt_state() {
    restart_and_corrupt_state("iptables", "iptr", 14);
}

#[test]
fn never_ban_addresses_are_refused() {
    if !ready("nftables") {
        return;
    }
    let net = TestNet::new("nb", 15);
    let setup = Setup::new(
        "\"firewall\": {\"backend\": \"nftables\"}, \"allowlist\": [\"10.231.15.0/24\"]",
    );
    for ip in ["127.0.0.1", "10.231.15.1", "10.231.15.2", "::1"] {
        let out = net.monitor(&["ban", ip, "-c", setup.config()]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{ip}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("not banning"));
    }
    assert!(net.reachable(false));
}

/// The case fail2ban's INPUT-chain bans get wrong: a container's published port. A client
/// in its own namespace reaches a busybox httpd published with `-p 18090:8080` by the test
/// dockerd (which runs in SECMON_DOCKER_NETNS); once banned it cannot, for each backend.
#[test]
fn a_published_docker_port_is_closed_to_a_banned_client() {
    let Some(env) = common::env("a_published_docker_port_is_closed_to_a_banned_client") else {
        return;
    };
    if !ready("iptables") {
        return;
    }
    let Ok(dockerns) = std::env::var("SECMON_DOCKER_NETNS") else {
        require(
            "SECMON_DOCKER_NETNS (tests/run.sh runs dockerd in a network namespace of its own)",
            false,
        );
        return;
    };
    let cli = "smt-pub-c";
    let _ = common::sh(&format!(
        "ip netns del {cli} 2>/dev/null; ip -n {dockerns} link del smtpub0 2>/dev/null"
    ));
    common::must(&format!(
        "set -e; ip netns add {cli}; ip link add smtpub0 type veth peer name smtpub1; \
         ip link set smtpub0 netns {dockerns}; ip link set smtpub1 netns {cli}; \
         ip -n {dockerns} addr add 10.233.0.1/24 dev smtpub0; ip -n {cli} addr add 10.233.0.2/24 dev smtpub1; \
         ip -n {dockerns} link set smtpub0 up; ip -n {cli} link set smtpub1 up; ip -n {cli} link set lo up"
    ));
    struct Cleanup(String, String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = common::sh(&format!(
                "ip netns del {}; docker -H {} rm -f {} >/dev/null 2>&1",
                self.0, self.1, self.2
            ));
        }
    }
    let name = format!("{}web", common::prefix("pub"));
    let _cleanup = Cleanup(cli.to_string(), env.host.clone(), name.clone());
    env.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "secmon-test=1",
        "-p",
        "18090:8080",
        &env.image,
        "sh",
        "-c",
        "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 8080 -h /www",
    ]);
    let reachable = || {
        Command::new("ip")
            .args(["netns", "exec", cli, "python3", "-c"])
            .arg("import socket,sys\ns=socket.socket()\ns.settimeout(0.7)\nsys.exit(0 if s.connect_ex(('10.233.0.1',18090))==0 else 1)")
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        wait_until(Duration::from_secs(10), reachable),
        "the published port is not reachable before any ban"
    );
    for backend in ["nftables", "iptables"] {
        let table = format!("smt_pub_{}", &backend[..3]);
        let setup = Setup::new(&format!(
            "\"firewall\": {{\"backend\": \"{backend}\", \"table\": \"{table}\"}}"
        ));
        let monitor = |args: &[&str]| {
            let out = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{dockerns}"))
                .arg(env!("CARGO_BIN_EXE_security-monitor"))
                .args(args)
                .args(["-c", setup.config()])
                .output()
                .unwrap();
            ok(out)
        };
        monitor(&["ban", "10.233.0.2", "--for", "1h"]);
        assert!(
            !reachable(),
            "{backend}: a banned client still reaches the published port"
        );
        monitor(&["unban", "10.233.0.2"]);
        assert!(reachable(), "{backend}: still blocked after unban");
        // Leave nothing behind in the shared namespace.
        let _ = common::sh(&format!(
            "nsenter --net=/run/netns/{dockerns} sh -c 'nft delete table inet {table} 2>/dev/null; \
             for c in INPUT DOCKER-USER FORWARD; do iptables -D $c -j {table} 2>/dev/null; ip6tables -D $c -j {table} 2>/dev/null; done; \
             iptables -F {table} 2>/dev/null; iptables -X {table} 2>/dev/null; ip6tables -F {table} 2>/dev/null; ip6tables -X {table} 2>/dev/null; \
             ipset destroy {table}_v4 2>/dev/null; ipset destroy {table}_v6 2>/dev/null; true'"
        ));
    }
}

/// Whether the client connects to the server from source address `src`.
fn reachable_from(net: &TestNet, src: &str) -> bool {
    let dst = format!("fd31:{}::1", net.n);
    Command::new("ip")
        .args(["netns", "exec", &net.cli, "python3", "-c"])
        .arg(format!("import socket,sys\ns=socket.socket(socket.AF_INET6)\ns.settimeout(0.7)\ns.bind(('{src}',0))\nsys.exit(0 if s.connect_ex(('{dst}',8080))==0 else 1)"))
        .status()
        .is_ok_and(|s| s.success())
}

/// `ban.ipv6_prefix: 64`: banning one address of a /64 drops every other address of it,
/// the ban survives a lost state file (adopted back from the kernel as the /64), unbanning
/// any address inside lifts it, and a /64 holding the host's own address is never banned
/// whole (the offender's address alone is).
fn a_64_ban_drops_the_whole_64(backend: &str, tag: &str, n: u8) {
    if !ready(backend) {
        return;
    }
    let net = TestNet::new(tag, n);
    // A second /64 on the client, routed from the server over the same link.
    common::must(&format!(
        "set -e; ip -n {c} addr add fd33:{n}:0:1::2/64 dev smt{n}c nodad; \
         ip -n {c} addr add fd33:{n}:0:1::3/64 dev smt{n}c nodad; \
         ip -n {s} route add fd33:{n}:0:1::/64 dev smt{n}s",
        c = net.cli,
        s = net.srv
    ));
    let (a, b) = (format!("fd33:{n}:0:1::2"), format!("fd33:{n}:0:1::3"));
    assert!(
        wait_until(Duration::from_secs(5), || reachable_from(&net, &a)) && reachable_from(&net, &b),
        "the second /64 is not reachable before any ban"
    );
    let setup = Setup::new(&format!(
        "\"firewall\": {{\"backend\": \"{backend}\"}}, \"ban\": {{\"ipv6_prefix\": 64}}"
    ));
    let cfg = setup.config();
    let out = ok(net.monitor(&[
        "ban",
        &format!("fd33:{n}:0:1::99"),
        "--for",
        "1h",
        "-c",
        cfg,
    ]));
    assert!(out.contains(&format!("fd33:{n}:0:1::/64")), "{out}");
    assert!(
        !reachable_from(&net, &a),
        "{backend}: {a} still connects after its /64 was banned"
    );
    assert!(
        !reachable_from(&net, &b),
        "{backend}: {b} still connects after its /64 was banned"
    );
    assert!(
        net.reachable(true) && net.reachable(false),
        "only that /64 is banned"
    );

    std::fs::remove_file(setup.state_file()).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(ok(net.monitor(&["restore", "--json", "-c", cfg])).trim()).unwrap();
    assert_eq!(v["adopted"], 1, "{v}");
    let list = ok(net.monitor(&["list", "-c", cfg]));
    assert!(list.contains(&format!("fd33:{n}:0:1::/64")), "{list}");
    assert!(
        !reachable_from(&net, &a),
        "{backend}: the adopted /64 ban is not in force"
    );

    let out = ok(net.monitor(&["unban", &b, "-c", cfg]));
    assert!(out.contains("the banned network that holds"), "{out}");
    assert!(
        reachable_from(&net, &a) && reachable_from(&net, &b),
        "{backend}: still blocked after unban"
    );

    // The server's own /64: only the offender's address is banned.
    let own = format!("fd31:{n}::2");
    let out = ok(net.monitor(&["ban", &own, "--for", "1h", "-c", cfg]));
    assert!(out.contains(&format!("banned {own} for")), "{out}");
    assert!(!net.reachable(true), "the address itself is banned");
    assert!(reachable_from(&net, &a), "nothing else is");
}

#[test]
fn nftables_a_64_ban_drops_the_whole_64() {
    a_64_ban_drops_the_whole_64("nftables", "n64", 16);
}

#[test]
fn iptables_a_64_ban_drops_the_whole_64() {
    a_64_ban_drops_the_whole_64("iptables", "i64", 17);
}
