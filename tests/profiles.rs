//! Every built-in application profile against real lines of its application
//! (`tests/profiles/NAME.log`, each citing where its lines come from): a client past the
//! failure threshold is banned, and only that client; the application's ordinary lines,
//! replayed four times, ban nobody; every shape of the profile reads at least one line.
//!
//! Fixture format: `# ` comments (at least one `# source: ...`), `#! fail IP` starts a
//! block of failure lines of that client (replayed, one second apart, until a ban: at
//! most 50 rounds), `#! benign` a block that must never ban (replayed four times).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use security_monitor::detect::parse::{LineParser, LogFormat};
use security_monitor::detect::profile::{builtin_profiles, profile, profile_for_image, Profile};
use security_monitor::detect::{Detector, Scope, Settings};
use std::sync::Arc;

const ROUNDS: usize = 50;
const BENIGN_REPEATS: usize = 4;
/// Some time in 2026, for lines whose time has no year.
const NOW: i64 = 1_790_000_000;

enum Block {
    Fail(IpAddr, Vec<String>),
    Benign(Vec<String>),
}

struct Fixture {
    sources: usize,
    blocks: Vec<Block>,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/profiles")
}

fn read_fixture(path: &Path) -> Fixture {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut f = Fixture {
        sources: 0,
        blocks: Vec::new(),
    };
    for (n, line) in text.lines().enumerate() {
        if let Some(d) = line.strip_prefix("#! ") {
            let mut words = d.split_whitespace();
            match (words.next(), words.next()) {
                (Some("fail"), Some(ip)) => {
                    let ip: IpAddr = ip.parse().unwrap_or_else(|_| {
                        panic!(
                            "{}:{}: `#! fail` needs an IP, got {ip:?}",
                            path.display(),
                            n + 1
                        )
                    });
                    f.blocks.push(Block::Fail(ip, Vec::new()));
                }
                (Some("benign"), None) => f.blocks.push(Block::Benign(Vec::new())),
                _ => panic!("{}:{}: unknown directive {line:?}", path.display(), n + 1),
            }
            continue;
        }
        if line.starts_with("# source:") {
            f.sources += 1;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        match f.blocks.last_mut() {
            Some(Block::Fail(_, lines)) | Some(Block::Benign(lines)) => {
                lines.push(line.to_string())
            }
            None => panic!("{}:{}: a line before any `#!` block", path.display(), n + 1),
        }
    }
    f
}

fn parser(p: &Arc<Profile>) -> LineParser {
    let mut parser =
        LineParser::new(&LogFormat::Profile(p.clone())).expect("profile shapes compile");
    parser.set_reference(NOW);
    parser
}

fn scope(p: &Arc<Profile>) -> Scope {
    Scope {
        categories: None,
        profile: Some(p.clone()),
    }
}

/// Replays `lines` `rounds` times, one second apart; the first verdict (round, IP).
/// The detector is shared (compiling the rules is the slow part); what it knew of every
/// client of these lines is forgotten afterwards.
fn replay(
    detector: &mut Detector,
    p: &Arc<Profile>,
    lines: &[String],
    rounds: usize,
) -> Option<(usize, IpAddr, String)> {
    let verdict = replay_once(detector, p, lines, rounds);
    let mut parser = parser(p);
    for line in lines {
        if let Some(req) = parser.parse(line.as_bytes()) {
            detector.forget(req.ip);
        }
    }
    verdict
}

fn replay_once(
    detector: &mut Detector,
    p: &Arc<Profile>,
    lines: &[String],
    rounds: usize,
) -> Option<(usize, IpAddr, String)> {
    let mut parser = parser(p);
    let scope = scope(p);
    let mut now = NOW;
    for round in 1..=rounds {
        for line in lines {
            now += 1;
            let Some(req) = parser.parse(line.as_bytes()) else {
                continue;
            };
            if let Some(v) = detector
                .observe_in(&req, line.as_bytes(), now, &scope)
                .verdict
            {
                return Some((round, v.ip, v.rule));
            }
        }
    }
    None
}

#[test]
fn every_profile_bans_its_attackers_and_nobody_else_on_real_lines() {
    let mut problems = Vec::new();
    let (mut expected, mut banned, mut false_bans) = (0, 0, 0);
    let mut detector = Detector::new(&Settings::default()).expect("rules compile");
    for p in builtin_profiles() {
        let path = fixture_dir().join(format!("{}.log", p.name));
        if !path.exists() {
            problems.push(format!("{}: no fixture {}", p.name, path.display()));
            continue;
        }
        let f = read_fixture(&path);
        if f.sources == 0 {
            problems.push(format!("{}: the fixture cites no `# source:`", p.name));
        }
        if !f.blocks.iter().any(|b| matches!(b, Block::Fail(..))) {
            problems.push(format!("{}: the fixture has no `#! fail` block", p.name));
        }
        let mut shapes = parser(p);
        let mut report = Vec::new();
        for b in &f.blocks {
            match b {
                Block::Fail(ip, lines) => {
                    expected += 1;
                    let mut one = parser(p);
                    for l in lines {
                        shapes.parse(l.as_bytes());
                        match one.parse(l.as_bytes()) {
                            None => problems
                                .push(format!("{}: a failure line does not parse: {l}", p.name)),
                            Some(r) if r.ip != *ip => problems.push(format!(
                                "{}: a failure line reads as {} instead of {ip}: {l}",
                                p.name, r.ip
                            )),
                            Some(_) => {}
                        }
                    }
                    match replay(&mut detector, p, lines, ROUNDS) {
                        Some((round, got, rule)) if got == *ip => {
                            banned += 1;
                            report.push(format!("{ip} banned in round {round} by {rule}"));
                        }
                        Some((_, got, rule)) => {
                            false_bans += 1;
                            problems.push(format!(
                                "{}: {got} banned by {rule} instead of {ip}",
                                p.name
                            ));
                        }
                        None => problems.push(format!(
                            "{}: {ip} not banned after {ROUNDS} rounds of its {} failure lines",
                            p.name,
                            lines.len()
                        )),
                    }
                }
                Block::Benign(lines) => {
                    for l in lines {
                        shapes.parse(l.as_bytes());
                    }
                    if let Some((round, ip, rule)) = replay(&mut detector, p, lines, BENIGN_REPEATS)
                    {
                        false_bans += 1;
                        problems.push(format!(
                            "{}: benign lines banned {ip} by {rule} (round {round})",
                            p.name
                        ));
                    }
                }
            }
        }
        let counts = shapes.shape_counts();
        for (shape, n) in &counts {
            if *n == 0 {
                problems.push(format!("{}: no fixture line has shape {shape}", p.name));
            }
        }
        let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!(
            "{:<22} shapes: {}; {}",
            p.name,
            counts.join(", "),
            report.join("; ")
        );
    }
    println!("profiles: {banned} of {expected} expected bans, {false_bans} false bans");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_fixture_belongs_to_a_profile() {
    for e in std::fs::read_dir(fixture_dir()).expect("tests/profiles exists") {
        let name = e
            .expect("readable")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let Some(stem) = name.strip_suffix(".log") else {
            continue;
        };
        assert!(
            profile(stem).is_some(),
            "tests/profiles/{name} names no profile"
        );
    }
}

#[test]
fn each_profile_is_chosen_by_its_own_images() {
    for p in builtin_profiles() {
        for image in &p.images {
            let image = format!("{}:latest", image.trim_end_matches('*'));
            let chosen = profile_for_image(&image).map(|c| c.name.clone());
            assert_eq!(chosen.as_deref(), Some(p.name.as_str()), "image {image}");
        }
    }
}
