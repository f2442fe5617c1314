//! The Docker log streams against a real dockerd (the private one `tests/run.sh`
//! starts). Without one these tests print a loud SKIP, and fail when CI=true.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{assert_each_once, env, numbers, prefix, state_dir, text, Watch, COUNTER};
use security_monitor::docker::{Stream, StreamState};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_container_is_followed_on_stdout_and_stderr() {
    let Some(env) = env("a_running_container_is_followed_on_stdout_and_stderr") else {
        return;
    };
    let p = prefix("running");
    let name = format!("{p}web");
    let id = env.run(
        &name,
        &[],
        "i=0; while true; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); sleep 0.05; done",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = state_dir();
    let mut w = Watch::start(env.settings(&p, dir.path(), ""));
    // Lines written before the watcher started (within docker.max_backlog) and after.
    w.until(T, "40 lines on each stream", |got| {
        got.iter()
            .filter(|r| r.line.stream == Stream::Stderr)
            .count()
            >= 40
            && got
                .iter()
                .filter(|r| r.line.stream == Stream::Stdout)
                .count()
                >= 40
    })
    .await;
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    for r in &w.got {
        assert_eq!(r.line.container, name);
        assert_eq!(r.line.container_id, id);
        assert!(!r.line.truncated);
        assert!(
            (now_ns - r.line.docker_ts_ns).abs() < 60_000_000_000,
            "{:?}",
            r.line
        );
        let t = text(&r.line);
        match r.line.stream {
            Stream::Stdout => assert!(t.starts_with("out "), "{t}"),
            Stream::Stderr => assert!(t.starts_with("err "), "{t}"),
            Stream::Console | Stream::File => panic!("no TTY or file here: {t}"),
        }
    }
    let texts = w.texts_of(&name);
    let out: Vec<String> = texts
        .iter()
        .filter(|t| t.starts_with("out"))
        .cloned()
        .collect();
    assert_each_once(&numbers(&out, "out"), "stdout");
    // The stream counts a line just after handing it over: the count may trail by a
    // moment what has already arrived.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut status = w.status();
    while std::time::Instant::now() < deadline
        && status
            .containers
            .iter()
            .find(|c| c.id == id)
            .is_none_or(|c| c.lines_read < w.got.len() as u64)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = w.status();
    }
    assert!(status.connected, "{status:#?}");
    let c = status
        .containers
        .iter()
        .find(|c| c.id == id)
        .expect("status of the container");
    assert_eq!(c.state, StreamState::Following);
    assert_eq!(c.lines_read, w.got.len() as u64);
    w.stop().await;
    env.remove_all(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_started_later_is_picked_up_within_a_second() {
    let Some(env) = env("a_container_started_later_is_picked_up_within_a_second") else {
        return;
    };
    let p = prefix("later");
    let dir = state_dir();
    let mut w = Watch::start(env.settings(&p, dir.path(), ""));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let name = format!("{p}late");
    env.run(&name, &[], "echo first; sleep 1; echo second; sleep 1000");
    let started = Instant::now();
    w.until(T, "the first line", |got| {
        got.iter().any(|r| text(&r.line) == "first")
    })
    .await;
    let delay = w.got[0].at.duration_since(started);
    assert!(delay < Duration::from_secs(1), "picked up after {delay:?}");
    w.until(T, "the second line", |got| {
        got.iter().any(|r| text(&r.line) == "second")
    })
    .await;
    // And one that exits at once is read to its end, a last line without newline too.
    let quick = format!("{p}quick");
    env.run(
        &quick,
        &[],
        "echo one; echo two; printf 'no newline at the end'",
    );
    w.until(T, "the quick container's lines", |got| {
        got.iter().filter(|r| r.line.container == quick).count() >= 3
    })
    .await;
    w.settle(Duration::from_millis(500)).await;
    assert_eq!(
        w.texts_of(&quick),
        vec!["one", "two", "no newline at the end"]
    );
    w.stop().await;
    env.remove_all(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recreate_and_rename_read_each_line_once() {
    let Some(env) = env("restart_recreate_and_rename_read_each_line_once") else {
        return;
    };
    let p = prefix("restart");
    let name = format!("{p}app");
    let boot = "echo boot $(cat /proc/sys/kernel/random/uuid); sleep 1000";
    let first_id = env.run(&name, &[], boot);
    let dir = state_dir();
    let mut w = Watch::start(env.settings(&p, dir.path(), ""));
    let boots = |got: &[common::Received]| {
        got.iter()
            .filter(|r| text(&r.line).starts_with("boot "))
            .count()
    };
    w.until(T, "the first boot line", |g| boots(g) >= 1).await;

    env.docker(&["restart", "-t", "0", &name]);
    w.until(T, "the boot line after a restart", |g| boots(g) >= 2)
        .await;

    env.docker(&["rm", "-f", &name]);
    let second_id = env.run(&name, &[], boot);
    w.until(T, "the boot line of the recreated container", |g| {
        boots(g) >= 3
    })
    .await;

    let renamed = format!("{p}renamed");
    env.docker(&["rename", &name, &renamed]);
    env.docker(&["restart", "-t", "0", &renamed]);
    w.until(T, "the boot line after the rename", |g| boots(g) >= 4)
        .await;
    w.settle(Duration::from_secs(1)).await;

    let lines: Vec<(String, String, String)> = w
        .got
        .iter()
        .map(|r| {
            (
                r.line.container_id.clone(),
                r.line.container.clone(),
                text(&r.line),
            )
        })
        .collect();
    assert_eq!(lines.len(), 4, "each boot line once: {lines:#?}");
    let uuids: HashSet<&String> = lines.iter().map(|l| &l.2).collect();
    assert_eq!(uuids.len(), 4, "{lines:#?}");
    assert_eq!(lines[0].0, first_id);
    assert_eq!(lines[1].0, first_id);
    assert_eq!(lines[2].0, second_id);
    assert_eq!(
        (lines[3].0.as_str(), lines[3].1.as_str()),
        (second_id.as_str(), renamed.as_str())
    );
    w.stop().await;
    env.remove_all(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_output_is_read_and_long_tty_lines_are_joined() {
    let Some(env) = env("tty_output_is_read_and_long_tty_lines_are_joined") else {
        return;
    };
    let p = prefix("tty");
    let name = format!("{p}term");
    env.run(
        &name,
        &["-t"],
        "echo hello tty; head -c 40000 /dev/zero | tr '\\0' a; echo; echo after; sleep 1000",
    );
    let dir = state_dir();
    let mut w = Watch::start(env.settings(&p, dir.path(), ""));
    w.until(T, "three TTY lines", |g| g.len() >= 3).await;
    w.settle(Duration::from_millis(300)).await;
    let got: Vec<(Stream, usize, String)> = w
        .got
        .iter()
        .map(|r| {
            (
                r.line.stream,
                r.line.bytes.len(),
                text(&r.line).chars().take(12).collect(),
            )
        })
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], (Stream::Console, 9, "hello tty".to_string()));
    assert_eq!((got[1].0, got[1].1), (Stream::Console, 40_000));
    assert!(
        w.got[1].line.bytes.iter().all(|&b| b == b'a'),
        "the inner timestamps are gone"
    );
    assert_eq!(got[2].2, "after");
    let status = w.status();
    assert!(status.containers[0].tty, "{status:#?}");
    w.stop().await;
    env.remove_all(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tty_line_without_end_is_cut_at_the_cap_and_the_next_line_is_whole() {
    let Some(env) = env("a_tty_line_without_end_is_cut_at_the_cap_and_the_next_line_is_whole")
    else {
        return;
    };
    let p = prefix("ttylong");
    let name = format!("{p}term");
    // 8 MiB without a newline (512 of Docker's 16 KiB pieces), then ordinary lines; the
    // container then exits with a last line that has no newline.
    env.run(
        &name,
        &["-t"],
        "head -c 8388608 /dev/zero | tr '\\0' z; echo; echo after; sleep 2; printf 'last words'",
    );
    let dir = state_dir();
    let mut w =
        Watch::start(env.settings(&p, dir.path(), r#""limits": {"max_line_bytes": 65536}"#));
    w.until(T, "three TTY lines", |g| g.len() >= 3).await;
    w.settle(Duration::from_millis(300)).await;
    let l = &w.got;
    assert_eq!(
        l.len(),
        3,
        "{:?}",
        l.iter().map(|r| r.line.bytes.len()).collect::<Vec<_>>()
    );
    assert_eq!(l[0].line.bytes.len(), 65_536);
    assert!(l[0].line.truncated);
    assert!(
        l[0].line.bytes.iter().all(|&b| b == b'z'),
        "inner timestamps or other bytes in the kept part"
    );
    assert_eq!(text(&l[1].line), "after");
    assert_eq!(text(&l[2].line), "last words");
    assert!(!l[2].line.truncated);
    let status = w.status();
    assert_eq!(status.containers[0].lines_truncated, 1, "{status:#?}");
    w.stop().await;
    env.remove_all(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_over_16k_is_joined_and_one_over_the_cap_is_cut() {
    let Some(env) = env("a_line_over_16k_is_joined_and_one_over_the_cap_is_cut") else {
        return;
    };
    let p = prefix("long");
    let name = format!("{p}big");
    env.run(
        &name,
        &[],
        "head -c 40960 /dev/zero | tr '\\0' x; echo; head -c 102400 /dev/zero | tr '\\0' y; echo; printf '\\377\\376 not utf-8\\n'; echo after; sleep 1000",
    );
    let dir = state_dir();
    let mut w =
        Watch::start(env.settings(&p, dir.path(), r#""limits": {"max_line_bytes": 65536}"#));
    w.until(T, "four lines", |g| g.len() >= 4).await;
    w.settle(Duration::from_millis(300)).await;
    let l = &w.got;
    assert_eq!(l.len(), 4);
    assert_eq!(l[0].line.bytes.len(), 40_960);
    assert!(!l[0].line.truncated);
    assert!(l[0].line.bytes.iter().all(|&b| b == b'x'));
    assert_eq!(l[1].line.bytes.len(), 65_536);
    assert!(l[1].line.truncated);
    // json-file stores lines as JSON strings, so Docker itself replaces invalid UTF-8.
    assert!(
        text(&l[2].line).ends_with(" not utf-8"),
        "{:?}",
        l[2].line.bytes
    );
    assert_eq!(text(&l[3].line), "after");
    let status = w.status();
    assert_eq!(status.containers[0].lines_truncated, 1, "{status:#?}");
    w.stop().await;
    env.remove_all(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_containers_at_once() {
    let Some(env) = env("fifty_containers_at_once") else {
        return;
    };
    let p = prefix("fifty");
    let dir = state_dir();
    let mut w = Watch::start(env.settings(&p, dir.path(), ""));
    // Start them from a few threads at once, as a compose file would.
    std::thread::scope(|s| {
        for t in 0..5 {
            let env = &env;
            let p = &p;
            s.spawn(move || {
                for i in (t..50).step_by(5) {
                    env.run(
                        &format!("{p}{i:02}"),
                        &[],
                        "i=0; while [ $i -lt 20 ]; do echo \"line $i\"; i=$((i+1)); sleep 0.1; done; sleep 1000",
                    );
                }
            });
        }
    });
    w.until(
        Duration::from_secs(90),
        "20 lines from each of 50 containers",
        |g| g.len() >= 1000,
    )
    .await;
    w.settle(Duration::from_millis(500)).await;
    assert_eq!(w.got.len(), 1000);
    for i in 0..50 {
        let name = format!("{p}{i:02}");
        assert_each_once(&numbers(&w.texts_of(&name), "line"), &name);
    }
    let status = w.status();
    assert_eq!(status.containers.len(), 50);
    assert!(
        status
            .containers
            .iter()
            .all(|c| c.state == StreamState::Following && c.lines_read == 20),
        "{status:#?}"
    );
    w.stop().await;
    env.remove_all(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_with_the_none_driver_is_reported_and_the_others_go_on() {
    let Some(env) = env("a_container_with_the_none_driver_is_reported_and_the_others_go_on") else {
        return;
    };
    let p = prefix("nolog");
    let silent = format!("{p}silent");
    let fine = format!("{p}fine");
    env.run(
        &silent,
        &["--log-driver", "none"],
        "echo unseen; sleep 1000",
    );
    let dir = state_dir();
    let mut w = Watch::start(env.settings(&p, dir.path(), ""));
    env.run(
        &fine,
        &[
            "--label",
            "security-monitor.log_format=json",
            "--label",
            "other=x",
        ],
        "echo seen; sleep 1000",
    );
    w.until(T, "the line of the readable container", |g| {
        g.iter().any(|r| text(&r.line) == "seen")
    })
    .await;
    let status = w.status();
    let s = status
        .containers
        .iter()
        .find(|c| c.name == silent)
        .expect("status of the none-driver container");
    assert_eq!(
        s.state,
        StreamState::Unreadable {
            driver: "none".into()
        }
    );
    let f = status
        .containers
        .iter()
        .find(|c| c.name == fine)
        .expect("status of the other");
    assert_eq!(f.state, StreamState::Following);
    assert!(w.got.iter().all(|r| r.line.container == fine));
    // Its own labels are in the status, for its log format and rule categories.
    let labels: Vec<(&str, &str)> = f
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(labels, vec![("security-monitor.log_format", "json")]);
    w.stop().await;
    env.remove_all(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_monitor_restart_resumes_from_the_cursor() {
    let Some(env) = env("a_security_monitor_restart_resumes_from_the_cursor") else {
        return;
    };
    let p = prefix("resume");
    let name = format!("{p}counter");
    env.run(&name, &[], COUNTER);
    let dir = state_dir();
    let mut first = Watch::start(env.settings(&p, dir.path(), ""));
    first.until(T, "100 lines", |g| g.len() >= 100).await;
    first.stop().await;
    let before = numbers(&first.texts_of(&name), "seq");
    let last_before = assert_each_once(&before, "before the restart");
    assert!(dir.path().join("cursors.json").exists());

    // Down for a while: these lines must be read after the restart, once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut second = Watch::start(env.settings(&p, dir.path(), ""));
    second
        .until(T, "lines well past the downtime", |g| {
            numbers(&g.iter().map(|r| text(&r.line)).collect::<Vec<_>>(), "seq")
                .iter()
                .any(|&n| n > last_before + 120)
        })
        .await;
    second.stop().await;
    let after = numbers(&second.texts_of(&name), "seq");
    assert!(
        after.iter().all(|&n| n > last_before),
        "lines read again after the restart"
    );
    let mut all = before.clone();
    all.extend(&after);
    assert_each_once(&all, "across the restart");
    env.remove_all(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_read_but_never_judged_are_read_again_after_a_restart() {
    let Some(env) = env("lines_read_but_never_judged_are_read_again_after_a_restart") else {
        return;
    };
    let p = prefix("judged");
    let name = format!("{p}counter");
    env.run(&name, &[], COUNTER);
    let dir = state_dir();
    let mut first = Watch::start(env.settings(&p, dir.path(), ""));
    first.until(T, "50 lines", |g| g.len() >= 50).await;
    // A crash with lines still queued: from here on lines are read and never judged.
    first.judging = false;
    first.until(T, "30 lines more", |g| g.len() >= 80).await;
    first.stop().await;
    let seen = numbers(&first.texts_of(&name), "seq");
    let last_judged = seen[49];
    let mut second = Watch::start(env.settings(&p, dir.path(), ""));
    second
        .until(T, "the unjudged lines again", |g| {
            numbers(&g.iter().map(|r| text(&r.line)).collect::<Vec<_>>(), "seq")
                .iter()
                .any(|&n| n > seen[seen.len() - 1])
        })
        .await;
    second.stop().await;
    let again = numbers(&second.texts_of(&name), "seq");
    assert_eq!(
        again.first().copied(),
        Some(last_judged + 1),
        "the restart reads on from the last judged line, not the last read one"
    );
    let mut judged: Vec<u64> = seen[..50].to_vec();
    judged.extend(&again);
    assert_each_once(&judged, "judged lines across the restart");
    env.remove_all(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_container_does_not_hold_up_the_others() {
    let Some(env) = env("a_flooding_container_does_not_hold_up_the_others") else {
        return;
    };
    let p = prefix("flood");
    let dir = state_dir();
    let mut settings = env.settings(&p, dir.path(), "");
    settings.max_lines_per_second = 5000;
    let mut w = Watch::start(settings);
    let flood = format!("{p}flood");
    let quiet = format!("{p}quiet");
    env.run(
        &flood,
        &["--log-opt", "max-size=20m", "--log-opt", "max-file=2"],
        "yes 'flood line from a noisy container'",
    );
    env.run(
        &quiet,
        &[],
        "i=0; while [ $i -lt 30 ]; do echo \"quiet $i\"; i=$((i+1)); sleep 0.1; done; sleep 1000",
    );
    w.until(T, "30 quiet lines", |g| {
        g.iter()
            .filter(|r| text(&r.line).starts_with("quiet "))
            .count()
            >= 30
    })
    .await;
    let status = w.status();
    env.docker(&["rm", "-f", &flood]);
    // How late each quiet line came: receipt time against Docker's own stamp.
    let base = Instant::now();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let mut worst = 0i64;
    for r in w.got.iter().filter(|r| r.line.container == quiet) {
        let received_ns = wall - base.duration_since(r.at).as_nanos() as i64;
        worst = worst.max(received_ns - r.line.docker_ts_ns);
    }
    assert!(
        worst < 1_000_000_000,
        "a quiet line came {worst} ns after Docker stamped it"
    );
    assert_each_once(&numbers(&w.texts_of(&quiet), "quiet"), "quiet");
    let f = status
        .containers
        .iter()
        .find(|c| c.name == flood)
        .expect("status of the flood");
    assert!(
        f.lines_dropped > 0,
        "the flood went over 5000 lines/s: {f:#?}"
    );
    assert!(f.lines_read > 0, "{f:#?}");
    w.stop().await;
    env.remove_all(&p);
}

/// The numbers of lines "`tag` N" that came from file `path` of container `name`.
fn file_numbers(w: &Watch, name: &str, path: &str, tag: &str) -> Vec<u64> {
    let texts: Vec<String> = w
        .got
        .iter()
        .filter(|r| r.line.container == name && r.line.file.as_deref() == Some(path))
        .map(|r| text(&r.line))
        .collect();
    numbers(&texts, tag)
}

/// A container script: after a second (so the watcher sees the file appear and reads it
/// from its start), writes "`tag` 0" … "`tag` N-1" into `file` every 20 ms, moving the
/// file to `rotated` after line `rotate_at` (the next line makes a new one).
fn file_writer(file: &str, tag: &str, n: u32, rotate_at: u32, rotated: &str) -> String {
    format!(
        "sleep 1; i=0; while [ $i -lt {n} ]; do echo \"{tag} $i\" >> {file}; \
         if [ $i -eq {rotate_at} ]; then mv {file} {rotated}; fi; i=$((i+1)); sleep 0.02; done; \
         echo done on stdout; sleep 1000"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_files_on_a_bind_mount_and_a_named_volume_are_read_through_rotation() {
    let Some(env) = env("log_files_on_a_bind_mount_and_a_named_volume_are_read_through_rotation")
    else {
        return;
    };
    let p = prefix("files");
    let dir = state_dir();
    let mut w = Watch::start(env.settings(&p, dir.path(), ""));
    // Nginx Proxy Manager's shape: a bind mount, a pattern in the label.
    let host_logs = tempfile::tempdir().expect("temp dir");
    let npm = format!("{p}npm");
    let npm_file = "/data/logs/proxy-host-1_access.log";
    env.run(
        &npm,
        &[
            "-v",
            &format!("{}:/data/logs", host_logs.path().display()),
            "--label",
            "security-monitor.logfile=/data/logs/proxy-host-*_access.log,/var/log/unmounted.log",
        ],
        &file_writer(
            npm_file,
            "npm",
            80,
            39,
            "/data/logs/proxy-host-1_access.log.1",
        ),
    );
    // linuxserver's sshd shape: a named volume, an s6 log directory.
    let volume = format!("{p}config");
    let ssh = format!("{p}ssh");
    let ssh_file = "/config/logs/openssh/current";
    env.run(
        &ssh,
        &[
            "-v",
            &format!("{volume}:/config"),
            "--label",
            &format!("security-monitor.logfile={ssh_file}"),
        ],
        &format!(
            "mkdir -p /config/logs/openssh; {}",
            file_writer(ssh_file, "ssh", 60, 29, "/config/logs/openssh/@400000006.s")
        ),
    );
    w.until(T, "every file line and both stdout lines", |g| {
        g.iter().filter(|r| r.line.file.is_some()).count() >= 140
            && g.iter()
                .filter(|r| text(&r.line) == "done on stdout")
                .count()
                >= 2
    })
    .await;
    w.settle(Duration::from_millis(600)).await;
    assert_each_once(&file_numbers(&w, &npm, npm_file, "npm"), "bind mount");
    assert_eq!(file_numbers(&w, &npm, npm_file, "npm").len(), 80);
    assert_each_once(&file_numbers(&w, &ssh, ssh_file, "ssh"), "named volume");
    assert_eq!(file_numbers(&w, &ssh, ssh_file, "ssh").len(), 60);
    for r in &w.got {
        match &r.line.file {
            Some(_) => assert_eq!(r.line.stream, Stream::File),
            None => assert_eq!(text(&r.line), "done on stdout"),
        }
    }
    let status = w.status();
    let n = status
        .containers
        .iter()
        .find(|c| c.name == npm)
        .expect("status of the npm container");
    assert_eq!(n.image, env.image);
    assert_eq!(n.lines_read, 81, "{n:#?}");
    let unmounted = n
        .files
        .iter()
        .find(|f| f.path == "/var/log/unmounted.log")
        .expect("the unmounted path is reported");
    let problem = unmounted.problem.as_deref().unwrap_or_default();
    assert!(problem.contains("on no mount"), "{problem}");
    w.stop().await;
    env.remove_all(&p);
    let _ = std::process::Command::new("docker")
        .env("DOCKER_HOST", &env.host)
        .args(["volume", "rm", "-f", &volume])
        .output();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_a_log_file_from_its_cursor() {
    let Some(env) = env("a_restart_resumes_a_log_file_from_its_cursor") else {
        return;
    };
    let p = prefix("filecursor");
    let name = format!("{p}app");
    let host_logs = tempfile::tempdir().expect("temp dir");
    let file = "/logs/app.log";
    env.run(
        &name,
        &[
            "-v",
            &format!("{}:/logs", host_logs.path().display()),
            "--label",
            &format!("security-monitor.logfile={file}"),
        ],
        "sleep 1; i=0; while true; do echo \"seq $i\" >> /logs/app.log; i=$((i+1)); sleep 0.02; done",
    );
    let dir = state_dir();
    let mut first = Watch::start(env.settings(&p, dir.path(), ""));
    first
        .until(T, "100 file lines", |g| {
            g.iter().filter(|r| r.line.file.is_some()).count() >= 100
        })
        .await;
    first.stop().await;
    let before = file_numbers(&first, &name, file, "seq");
    let last_before = assert_each_once(&before, "before the restart");
    let cursors = std::fs::read_to_string(dir.path().join("cursors.json")).expect("cursors");
    assert!(cursors.contains(file), "{cursors}");
    // Down for a while: these lines are read after the restart, once.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut second = Watch::start(env.settings(&p, dir.path(), ""));
    second
        .until(T, "lines well past the downtime", |g| {
            g.iter()
                .filter_map(|r| text(&r.line).strip_prefix("seq ")?.parse::<u64>().ok())
                .any(|n| n > last_before + 80)
        })
        .await;
    second.stop().await;
    let after = file_numbers(&second, &name, file, "seq");
    assert_eq!(
        after.first().copied(),
        Some(last_before + 1),
        "read on from the cursor"
    );
    let mut all = before.clone();
    all.extend(&after);
    assert_each_once(&all, "across the restart");
    env.remove_all(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_containers_files_are_read_to_the_end_and_then_no_longer() {
    let Some(env) = env("a_stopped_containers_files_are_read_to_the_end_and_then_no_longer") else {
        return;
    };
    let p = prefix("filestop");
    let name = format!("{p}app");
    let host_logs = tempfile::tempdir().expect("temp dir");
    let dir = state_dir();
    let mut w = Watch::start(env.settings(&p, dir.path(), ""));
    // Its last lines are written just before it exits, between two polls.
    env.run(
        &name,
        &[
            "-v",
            &format!("{}:/logs", host_logs.path().display()),
            "--label",
            "security-monitor.logfile=/logs/app.log",
        ],
        "sleep 1; i=0; while [ $i -lt 30 ]; do echo \"seq $i\" >> /logs/app.log; i=$((i+1)); done",
    );
    w.until(T, "the 30 lines written before it exited", |g| {
        g.len() >= 30
    })
    .await;
    assert_each_once(&file_numbers(&w, &name, "/logs/app.log", "seq"), "file");
    // Stopped: what is written into the file now (by the host) is not read.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(host_logs.path().join("app.log"))
        .expect("the container's log file on the host");
    std::io::Write::write_all(&mut f, b"seq 30\n").expect("append");
    w.settle(Duration::from_millis(1000)).await;
    assert_eq!(w.got.len(), 30, "read after the container stopped");
    w.stop().await;
    env.remove_all(&p);
}
