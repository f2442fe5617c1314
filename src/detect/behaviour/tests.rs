use std::borrow::Cow;
use std::net::IpAddr;

use super::*;

fn req<'a>(ip: IpAddr, method: &'a str, target: &'a str, status: u16) -> Request<'a> {
    Request {
        ip,
        time: None,
        method: Cow::Borrowed(method.as_bytes()),
        target: Cow::Borrowed(target.as_bytes()),
        request: Cow::Borrowed(b""),
        status: Some(status),
        referer: Cow::Borrowed(b""),
        user_agent: Cow::Borrowed(b"Mozilla/5.0"),
        forwarded_for: Cow::Borrowed(b""),
        message: Cow::Borrowed(b""),
    }
}

fn ip(i: u32) -> IpAddr {
    IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8])
}

/// A visitor of `source`: 40 requests over a few pages, one in twenty a 404 (a broken
/// link now and then). Returns what was reported of it.
fn visitor(b: &mut Behaviour, source: &str, i: u32, t: &mut i64) -> Vec<Anomaly> {
    let pages = ["/", "/shop", "/cart", "/about"];
    let mut out = Vec::new();
    for k in 0..40u32 {
        *t += 3;
        let path = pages[(k % 4) as usize];
        let status = if (k + i) % 20 == 0 { 404 } else { 200 };
        out.extend(b.observe(
            source,
            ip(i),
            &req(ip(i), "GET", path, status),
            *t,
            Seen::default(),
        ));
    }
    out
}

/// A prober: 40 requests, each for a path that is not there.
fn prober(b: &mut Behaviour, source: &str, i: u32, t: &mut i64, seen: Seen) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for k in 0..40u32 {
        *t += 1;
        let path = format!("/probe{k}.php");
        out.extend(b.observe(source, ip(i), &req(ip(i), "GET", &path, 404), *t, seen));
    }
    out
}

#[test]
fn nothing_is_judged_before_the_source_has_a_population() {
    let mut b = Behaviour::new(Settings::default());
    let mut t = 0;
    for i in 0..10 {
        assert!(visitor(&mut b, "shop", i, &mut t).is_empty());
    }
    // Ten visitors gave 20 measures (two checkpoints each): fewer than 30.
    assert!(prober(&mut b, "shop", 1000, &mut t, Seen::default()).is_empty());
}

#[test]
fn a_prober_stands_out_against_its_sources_visitors_once_per_measure() {
    let mut b = Behaviour::new(Settings::default());
    let mut t = 0;
    for i in 0..40 {
        assert!(
            visitor(&mut b, "shop", i, &mut t).is_empty(),
            "visitor {i} reported"
        );
    }
    let found = prober(&mut b, "shop", 1000, &mut t, Seen::default());
    assert_eq!(found.len(), 1, "{found:?}");
    let a = &found[0];
    assert!(
        a.reason.starts_with("404 ratio 1.00 after 20 requests"),
        "{}",
        a.reason
    );
    assert!(a.reason.contains("p99 of 0.05"), "{}", a.reason);
    assert_eq!(a.score, 0.6);
    // More of the same from it is not said again.
    assert!(prober(&mut b, "shop", 1000, &mut t, Seen::default()).is_empty());
}

#[test]
fn each_source_is_its_own_standard() {
    // A source whose every client gets many 404s (an API answering "no such item"): a
    // client with mostly 404s is ordinary there.
    let mut b = Behaviour::new(Settings::default());
    let mut t = 0;
    for i in 0..40 {
        prober(&mut b, "lookup", i, &mut t, Seen::default());
    }
    assert!(prober(&mut b, "lookup", 1000, &mut t, Seen::default()).is_empty());
    for i in 0..40 {
        visitor(&mut b, "shop", i, &mut t);
    }
    assert_eq!(
        prober(&mut b, "shop", 1000, &mut t, Seen::default()).len(),
        1
    );
}

#[test]
fn probers_do_not_teach_the_population_that_probing_is_normal() {
    let mut b = Behaviour::new(Settings::default());
    let mut t = 0;
    for i in 0..40 {
        visitor(&mut b, "shop", i, &mut t);
    }
    // Many probers, more than the visitors: those a rule caught, and those reported
    // for their 404s, never enter the population.
    for i in 0..100 {
        let seen = Seen {
            rule_hit: i % 2 == 0,
            unusual: false,
        };
        prober(&mut b, "shop", 2000 + i, &mut t, seen);
    }
    let found = prober(&mut b, "shop", 5000, &mut t, Seen::default());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].reason.contains("median 0.0"),
        "{}",
        found[0].reason
    );
}

#[test]
fn requests_the_baselines_found_unusual_are_counted_against_the_client() {
    let mut b = Behaviour::new(Settings::default());
    let mut t = 0;
    for i in 0..40 {
        visitor(&mut b, "shop", i, &mut t);
    }
    let mut found = Vec::new();
    for k in 0..20 {
        t += 1;
        let seen = Seen {
            rule_hit: false,
            unusual: k % 2 == 0,
        };
        found.extend(b.observe("shop", ip(900), &req(ip(900), "GET", "/cart", 200), t, seen));
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .reason
            .starts_with("share of requests the endpoint baselines found unusual 0.50"),
        "{}",
        found[0].reason
    );
    assert_eq!(found[0].score, 0.7);
}

#[test]
fn the_clients_followed_stay_bounded() {
    let mut b = Behaviour::new(Settings {
        max_clients: 100,
        ..Settings::default()
    });
    let mut t = 0;
    for i in 0..1000 {
        t += 1;
        b.observe(
            "shop",
            ip(i),
            &req(ip(i), "GET", "/", 200),
            t,
            Seen::default(),
        );
        assert!(b.clients() <= 100);
    }
    // The last client seen is still followed: its second request counts on.
    assert!(b.clients() >= 50);
}

#[test]
fn linear_counting_is_close_for_small_counts() {
    let mut bits = 0u64;
    for i in 0..10u64 {
        bits |= 1 << (i * 7 % 64);
    }
    let n = linear_count(bits, 64);
    assert!((n - 10.8).abs() < 0.5, "{n}");
    assert_eq!(linear_count(0, 64), 0.0);
}

#[test]
fn a_client_on_a_clock_is_worth_a_look_and_never_more() {
    let mut b = Behaviour::new(Settings::default());
    let mut t = 0;
    // Visitors come in bursts (a page and its assets) and pauses.
    for i in 0..40 {
        let mut out = Vec::new();
        for k in 0..40u32 {
            t += if k % 4 == 0 {
                30 + i64::from(k % 7) * 11
            } else {
                0
            };
            out.extend(b.observe(
                "shop",
                ip(i),
                &req(ip(i), "GET", "/", 200),
                t,
                Seen::default(),
            ));
        }
        assert!(out.is_empty(), "{out:?}");
    }
    // A poller every 60 seconds.
    let mut found = Vec::new();
    for _ in 0..20 {
        t += 60;
        found.extend(b.observe(
            "shop",
            ip(700),
            &req(ip(700), "GET", "/", 200),
            t,
            Seen::default(),
        ));
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].reason.starts_with(
            "timing regularity (1 / (1 + the spread of its gaps over their mean)) 1.00"
        ),
        "{}",
        found[0].reason
    );
    assert!(found[0].score < 0.5, "below every alert and ban");
    // Fast clients are not measured at all (whole-second log times).
    let mut found = Vec::new();
    for _ in 0..40 {
        found.extend(b.observe(
            "shop",
            ip(701),
            &req(ip(701), "GET", "/", 200),
            t,
            Seen::default(),
        ));
    }
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_population_written_and_taken_back_judges_as_before_a_restart() {
    let mut b = Behaviour::new(Settings::default());
    let mut t = 0;
    for i in 0..40 {
        visitor(&mut b, "shop", i, &mut t);
    }
    let before = b.generation();
    let files = b.populations();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].source, "shop");
    assert_eq!(files[0].clients.len(), 80, "two checkpoints of 40 visitors");
    // Visitors come a few seconds apart: regularity is measured; none is missing.
    assert!(files[0].clients.iter().all(|c| c.len() == NMEASURES));

    // Through the file's JSON, as the daemon writes it.
    let json = serde_json::to_vec(&files).unwrap();
    let back: Vec<PopulationFile> = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, files);

    // A new process knows nothing of the clients, but judges a prober at once.
    let mut fresh = Behaviour::new(Settings::default());
    assert!(prober(&mut fresh, "shop", 1000, &mut t, Seen::default()).is_empty());
    let mut restarted = Behaviour::new(Settings::default());
    assert_eq!(restarted.restore(back), 80);
    assert_ne!(restarted.generation(), 0);
    let found = prober(&mut restarted, "shop", 1001, &mut t, Seen::default());
    let again = prober(&mut b, "shop", 1001, &mut t, Seen::default());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(again.len(), 1, "{again:?}");
    // The same measure, p99 and median; the process that never stopped may judge with
    // spreads a few clients old (they are recomputed once a tenth has changed).
    let upto = |r: &str| r.split(" over ").next().unwrap_or_default().to_string();
    assert_eq!(upto(&found[0].reason), upto(&again[0].reason));
    assert!(
        found[0].reason.contains("over 80 of"),
        "{}",
        found[0].reason
    );
    assert!(before > 0);
}

#[test]
fn a_population_file_edited_by_hand_is_bounded_and_never_misread() {
    let mut b = Behaviour::new(Settings {
        population: 10,
        ..Settings::default()
    });
    let file = PopulationFile {
        source: "shop".into(),
        // Reordered, one unknown, two missing: matched by name.
        measures: vec!["paths".into(), "bogus".into(), "not_found".into()],
        clients: (0..25)
            .map(|k| vec![Some(0.5), Some(9.0), Some(f64::from(k) / 100.0)])
            .chain([vec![Some(-1.0), None, Some(f64::INFINITY)], vec![]])
            .collect(),
    };
    assert_eq!(b.restore(vec![file]), 10, "only the newest ten are kept");
    let out = b.populations();
    assert_eq!(out[0].clients.len(), 10);
    let paths = MEASURES.iter().position(|m| m.key() == "paths").unwrap();
    let nf = MEASURES
        .iter()
        .position(|m| m.key() == "not_found")
        .unwrap();
    let writes = MEASURES.iter().position(|m| m.key() == "writes").unwrap();
    // The last two: negative and infinite values are not taken, nor are absent ones.
    let last = &out[0].clients[9];
    assert!(last.iter().all(Option::is_none), "{last:?}");
    let first = &out[0].clients[0];
    assert_eq!(first[paths], Some(0.5));
    assert_eq!(first[nf], Some(0.17));
    assert_eq!(first[writes], None);
}
