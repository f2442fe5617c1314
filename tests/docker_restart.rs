//! A dockerd restart under a followed container. In its own test binary because it
//! takes the shared test dockerd down: cargo runs test binaries one after another.
//!
//! `tests/run.sh` starts dockerd with `--live-restore` (containers keep running while it
//! is down) and exports its command line and pidfile; the test stops it by its pid,
//! waits, and starts it again with the same command line.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_each_once, env, numbers, prefix, state_dir, text, Watch, COUNTER};
use security_monitor::docker::StreamState;

fn dockerd_pid(pidfile: &str) -> Option<i32> {
    std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dockerd_restart_loses_and_repeats_nothing() {
    let test = "a_dockerd_restart_loses_and_repeats_nothing";
    let Some(env) = env(test) else { return };
    let (Ok(cmd), Ok(pidfile)) = (
        std::env::var("SECMON_DOCKERD_CMD"),
        std::env::var("SECMON_DOCKERD_PIDFILE"),
    ) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: SECMON_DOCKERD_CMD / SECMON_DOCKERD_PIDFILE are not set (CI=true)");
        }
        common::skip(&format!("{test}: SECMON_DOCKERD_CMD and SECMON_DOCKERD_PIDFILE are not set (tests/run.sh sets them)"));
        return;
    };
    let p = prefix("dockerd");
    let name = format!("{p}counter");
    env.run(&name, &[], COUNTER);
    let dir = state_dir();
    let mut w = Watch::start(env.settings(&p, dir.path(), ""));
    w.until(Duration::from_secs(30), "100 lines", |g| g.len() >= 100)
        .await;

    // The watcher woke its listener when it connected; take that wake-up now, so the
    // next one below can only come from losing dockerd.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        w.watcher.as_ref().expect("a watcher").connection_changed(),
    )
    .await;

    // Stop dockerd and keep it down for a while; the container goes on writing.
    let pid = dockerd_pid(&pidfile).expect("the test dockerd's pid");
    let killed = Command::new("kill")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(killed.success());
    let down = Instant::now();
    while alive(pid) {
        assert!(
            down.elapsed() < Duration::from_secs(20),
            "dockerd {pid} did not stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The daemon's alert and STATUS hang on this wake-up: it comes at once.
    let woke = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(5),
        w.watcher.as_ref().expect("a watcher").connection_changed(),
    )
    .await
    .expect("the watcher did not say that dockerd went away");
    eprintln!(
        "dockerd gone -> watcher woke its listener: {:?}",
        woke.elapsed()
    );
    assert!(!w.status().connected, "{:#?}", w.status());
    w.settle(Duration::from_secs(2)).await;
    let status = w.status();
    let c = &status.containers[0];
    assert!(
        !status.connected || matches!(c.state, StreamState::Reconnecting { .. }),
        "the watcher noticed dockerd going away: {status:#?}"
    );
    let read_before = w.got.len();

    let log = std::env::var("SECMON_DOCKERD_LOG").unwrap_or_else(|_| "/dev/null".into());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("dockerd log");
    let mut parts = cmd.split_whitespace();
    let program = parts.next().expect("a dockerd command");
    // `setsid --fork` returns at once, leaving dockerd in its own session (as
    // tests/run.sh started it), so it outlives this test and run.sh stops it by its pid.
    let started = Command::new("setsid")
        .arg("--fork")
        .arg(program)
        .args(parts)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .status()
        .expect("start dockerd again");
    assert!(started.success(), "setsid {cmd}: {started}");
    let up = Instant::now();
    while Command::new("docker")
        .env("DOCKER_HOST", &env.host)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "dockerd did not come back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The lines written while it was down, and after, arrive: each once.
    let last_before = numbers(
        &w.got[..read_before]
            .iter()
            .map(|r| text(&r.line))
            .collect::<Vec<_>>(),
        "seq",
    )
    .into_iter()
    .max()
    .unwrap_or(0);
    w.until(
        Duration::from_secs(60),
        "lines well past the downtime",
        |g| {
            numbers(&g.iter().map(|r| text(&r.line)).collect::<Vec<_>>(), "seq")
                .iter()
                .any(|&n| n > last_before + 300)
        },
    )
    .await;
    let status = w.status();
    assert!(status.connected, "{status:#?}");
    assert_eq!(status.containers[0].state, StreamState::Following);
    w.stop().await;
    assert_each_once(
        &numbers(&w.texts_of(&name), "seq"),
        "across the dockerd restart",
    );
    env.remove_all(&p);
}
