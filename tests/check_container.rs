//! `security-monitor check --container`: a container's own history replayed through the
//! detector, against a real dockerd (the private one `tests/run.sh` starts). Without one
//! these tests print a loud SKIP, and fail when CI=true.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{bin, env, prefix, Env};
use serde_json::Value;

const ATTACKER: &str = "198.51.100.66";
/// Ordinary lines the container prints before and after the attack.
const ORDINARY: usize = 60;

/// A shell script that prints `ORDINARY` combined-format lines from 12 clients, one SQL
/// injection from ATTACKER in the middle and a line with no time a server might print,
/// then sleeps (a running server's history). `stamp`: the lines' own time.
fn script(stamp: &str) -> String {
    let half = ORDINARY / 2;
    format!(
        r#"i=0; while [ $i -lt {ORDINARY} ]; do
  if [ $i -eq {half} ]; then
    echo '{ATTACKER} - - [{stamp} +0000] "GET /item?id=1%27%20UNION%20SELECT%20password%20FROM%20users-- HTTP/1.1" 200 512 "-" "Mozilla/5.0"'
  fi
  echo "203.0.113.$((i % 12 + 1)) - - [{stamp} +0000] \"GET /page/$i HTTP/1.1\" 200 512 \"-\" \"Mozilla/5.0\""
  i=$((i+1))
done
echo 'server ready on :80'
sleep 1000"#
    )
}

/// The container's lines as Docker has them, so the test waits until all are logged.
fn wait_for_lines(env: &Env, name: &str, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = env.docker(&["logs", name]);
        let have = out.lines().count();
        if have >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "container {name} logged {have} of {want} lines within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `check ARGS` with the test dockerd as DOCKER_HOST and a config that names no socket.
fn check(env: &Env, config: &Path, args: &[&str]) -> Output {
    bin()
        .env("DOCKER_HOST", &env.host)
        .arg("check")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run check")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "check failed ({}): {}",
        out.status,
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
        .expect("bans")
        .iter()
        .map(|b| b["ip"].as_str().expect("ip").to_string())
        .collect()
}

fn config_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let p = dir.path().join("monitor_config.json");
    std::fs::write(&p, b"{}").expect("write config");
    p
}

#[test]
fn a_containers_history_is_replayed_and_its_attacker_listed() {
    let Some(env) = env("a_containers_history_is_replayed_and_its_attacker_listed") else {
        return;
    };
    let p = prefix("history");
    let name = format!("{p}web");
    let id = env.run(&name, &[], &script("03/Dec/2026:10:00:00"));
    let total = ORDINARY + 2;
    wait_for_lines(&env, &name, total);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_file(&dir);

    let report = json_of(&check(
        &env,
        &config,
        &["--container", &name, "--since", "1h", "--json"],
    ));
    assert_eq!(banned(&report), vec![ATTACKER.to_string()], "{report:#}");
    assert_eq!(report["lines"], total as u64, "{report:#}");
    assert_eq!(report["parsed"], (ORDINARY + 1) as u64, "{report:#}");
    assert_eq!(report["unparsed"], 1, "the 'server ready' line: {report:#}");
    let c = &report["containers"][0];
    assert_eq!(c["name"], name.as_str());
    assert_eq!(c["id"], id.as_str());
    assert_eq!(c["lines"], total as u64);
    assert_eq!(c["cut"], false, "{c:#}");
    assert_eq!(c["max_lines"], 1_000_000);
    // --container implies --anomalies: the model learned the ordinary requests.
    assert!(
        report["anomaly_model"]["learned"].as_u64().unwrap_or(0) >= ORDINARY as u64 - 12,
        "{report:#}"
    );
    // The ban's times are the lines' own.
    assert_eq!(
        report["bans"][0]["first_seen"], "2026-12-03T10:00:00Z",
        "{report:#}"
    );

    // The newest 10 lines only: the attack is older than those, and the cut is said.
    let report = json_of(&check(
        &env,
        &config,
        &["--container", &name, "--max-lines", "10", "--json"],
    ));
    let c = &report["containers"][0];
    assert_eq!(
        (c["lines"].as_u64(), c["cut"].as_bool()),
        (Some(10), Some(true)),
        "{c:#}"
    );
    assert_eq!(report["lines"], 10);
    assert!(banned(&report).is_empty(), "{report:#}");
    // Exactly the whole history is not cut; one line fewer is.
    for (cap, cut) in [(total, false), (total - 1, true)] {
        let report = json_of(&check(
            &env,
            &config,
            &[
                "--container",
                &name,
                "--max-lines",
                &cap.to_string(),
                "--json",
            ],
        ));
        assert_eq!(
            report["containers"][0]["cut"], cut,
            "--max-lines {cap}: {report:#}"
        );
    }
    // The text report says it too.
    let out = check(&env, &config, &["--container", &name, "--max-lines", "10"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cut at --max-lines 10"), "{text}");

    env.remove_all(&p);
}

#[test]
fn lines_without_a_time_are_judged_on_dockers_clock_and_tty_containers_are_read() {
    let Some(env) =
        env("lines_without_a_time_are_judged_on_dockers_clock_and_tty_containers_are_read")
    else {
        return;
    };
    let p = prefix("histclock");
    // A TTY container whose lines carry no time (the `common` format has one, so a JSON
    // format without a time field): bans must be stamped with Docker's time, today.
    let name = format!("{p}tty");
    let line = format!(
        r#"{{"remote_addr":"{ATTACKER}","request":"GET /?q=1%27%20union%20select%20null-- HTTP/1.1","status":200}}"#
    );
    env.run(
        &name,
        &["-t"],
        &format!("echo '{line}'; echo '{{\"remote_addr\":\"203.0.113.5\",\"request\":\"GET / HTTP/1.1\",\"status\":200}}'; sleep 1000"),
    );
    wait_for_lines(&env, &name, 2);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_file(&dir);
    let report = json_of(&check(
        &env,
        &config,
        &["--container", &name, "--format", "json", "--json"],
    ));
    assert_eq!(banned(&report), vec![ATTACKER.to_string()], "{report:#}");
    assert_eq!(report["lines"], 2, "{report:#}");
    let first_seen = report["bans"][0]["first_seen"]
        .as_str()
        .expect("first_seen");
    let newest = report["containers"][0]["newest"].as_str().expect("newest");
    // Docker's timestamp, to the second (`first_seen` has no fraction).
    assert_eq!(&first_seen[..19], &newest[..19], "{report:#}");
    // The cut of a TTY log is found as well (its log is read raw from the socket).
    for (cap, lines, cut) in [("1", 1, true), ("2", 2, false)] {
        let report = json_of(&check(
            &env,
            &config,
            &[
                "--container",
                &name,
                "--format",
                "json",
                "--max-lines",
                cap,
                "--json",
            ],
        ));
        let c = &report["containers"][0];
        assert_eq!(
            (c["lines"].as_u64(), c["cut"].as_bool()),
            (Some(lines), Some(cut)),
            "--max-lines {cap}: {c:#}"
        );
    }
    env.remove_all(&p);
}

#[test]
fn an_unknown_container_is_a_clear_error() {
    let Some(env) = env("an_unknown_container_is_a_clear_error") else {
        return;
    };
    let p = prefix("histmissing");
    let present = format!("{p}present");
    env.run(&present, &[], "echo hello; sleep 1000");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_file(&dir);
    let missing = format!("{p}absent");
    let out = check(&env, &config, &["--container", &missing]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("no container \"{missing}\"")) && err.contains(&env.host),
        "{err}"
    );
    assert!(
        err.contains(&present),
        "the containers there are named: {err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no report: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Log files and containers do not mix.
    let out = check(&env, &config, &["--container", &present, "access.log"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be used with"), "{err}");
    env.remove_all(&p);
}
