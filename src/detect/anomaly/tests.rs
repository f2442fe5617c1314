use std::borrow::Cow;
use std::net::IpAddr;

use super::*;

fn req<'a>(ip: &str, target: &'a str) -> Request<'a> {
    let ip: IpAddr = ip.parse().unwrap();
    Request {
        ip,
        time: None,
        method: Cow::Borrowed(b"GET"),
        target: Cow::Borrowed(target.as_bytes()),
        request: Cow::Borrowed(b""),
        status: Some(200),
        referer: Cow::Borrowed(b""),
        user_agent: Cow::Borrowed(b""),
        forwarded_for: Cow::Borrowed(b""),
        message: Cow::Borrowed(b""),
    }
}

/// The i-th of many clients.
fn client(i: u32) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// `n` ordinary requests to the shop's cart, each from its own client.
fn warm(m: &mut Model, n: u32) {
    let names = ["Vino Rioja", "Queso Manchego", "Jamon Iberico"];
    for i in 0..n {
        let t = format!(
            "/shop/add.jsp?id={}&name={}&qty={}&B1=Add",
            i % 3 + 1,
            names[(i % 3) as usize].replace(' ', "+"),
            i % 90 + 1
        );
        let found = m.observe("shop", &req(&client(i), &t), true);
        assert!(
            found.is_none() || i < 60,
            "ordinary request {i} flagged: {found:?}"
        );
    }
}

#[test]
fn nothing_is_judged_before_an_endpoint_has_its_samples() {
    let mut m = Model::new(Settings::default());
    warm(&mut m, 10);
    let odd = req("192.0.2.1", "/shop/add.jsp?id=1'--&name=x&qty=1&B1=Add");
    assert_eq!(m.observe("shop", &odd, false), None);
    warm(&mut m, 100);
    let a = m.observe("shop", &odd, false).expect("flagged once warm");
    assert!(a.score >= 0.5, "{a:?}");
    assert_eq!(a.endpoint, "GET /shop/add.jsp");
}

#[test]
fn each_kind_of_stray_is_said_in_words() {
    let mut m = Model::new(Settings::default());
    warm(&mut m, 400);
    let cases = [
        (
            "/shop/add.jsp?id=1%27%3B&name=Vino+Rioja&qty=1&B1=Add",
            "`'`, `;` never seen",
        ),
        (
            "/shop/add.jsp?id=abc&name=Vino+Rioja&qty=1&B1=Add",
            "lower-case letters never seen",
        ),
        (
            "/shop/add.jsp?id=1&name=Vino+Rioja&qty=1&B1=Add&admin=1",
            "parameter `admin`",
        ),
        (
            "/shop/add.jsp?id=1&name=Vino+Rioja&qty=1",
            "`B1` on GET /shop/add.jsp: missing",
        ),
        (
            "/shop/add.jsp?id=1&name=Vino+Rioja&qty=1&B1=Adx",
            "a value never seen",
        ),
        (
            "/shop/add.jsp?id=1&name=Vinooooooooooooooooooooooooooooooooooooo&qty=1&B1=Add",
            "bytes, the longest",
        ),
    ];
    for (t, want) in cases {
        let a = m
            .observe("shop", &req("192.0.2.9", t), false)
            .unwrap_or_else(|| panic!("{t} not flagged"));
        assert!(a.reason.contains(want), "{t}: {}", a.reason);
    }
    // Ordinary requests of the same shape stay unflagged, and another source knows
    // nothing yet.
    let ok = req(
        "192.0.2.9",
        "/shop/add.jsp?id=2&name=Queso+Manchego&qty=7&B1=Add",
    );
    assert_eq!(m.observe("shop", &ok, false), None);
    assert_eq!(m.observe("other", &ok, false), None);
}

#[test]
fn an_unknown_endpoint_is_only_a_low_score() {
    let mut m = Model::new(Settings::default());
    warm(&mut m, 6000);
    let a = m
        .observe("shop", &req("192.0.2.2", "/shop/add.jsp.BAK"), false)
        .expect("unknown endpoint reported");
    assert_eq!(a.score, SCORE_UNKNOWN_ENDPOINT);
    assert!(a.reason.contains("never seen"), "{}", a.reason);
    // Answered "not found", it is no endpoint at all: the 404 says it.
    let mut gone = req("192.0.2.2", "/shop/add.jsp.BAK");
    gone.status = Some(404);
    assert_eq!(m.observe("shop", &gone, false), None);
    // A parameter of a known endpoint still is judged whatever the answer.
    let mut odd = req(
        "192.0.2.2",
        "/shop/add.jsp?id=1%27&name=Vino+Rioja&qty=1&B1=Add",
    );
    odd.status = Some(404);
    assert!(m
        .observe("shop", &odd, false)
        .is_some_and(|a| a.score > SCORE_UNKNOWN_ENDPOINT));
}

#[test]
fn one_client_cannot_teach_the_model() {
    let mut m = Model::new(Settings::default());
    warm(&mut m, 200);
    let bad = "/shop/add.jsp?id=1%27&name=Vino+Rioja&qty=1&B1=Add";
    // The attacker's requests are "clean" (no rule hit, answered 200) but flagged, and
    // flagged requests are not learned; even an unflagged odd value from one client
    // stops counting after its share.
    for _ in 0..5000 {
        m.observe("shop", &req("198.51.100.66", bad), true);
    }
    assert!(m.observe("shop", &req("192.0.2.3", bad), false).is_some());
    let mut m = Model::new(Settings::default());
    for _ in 0..5000 {
        m.observe("shop", &req("198.51.100.66", "/x?id=1%27"), true);
    }
    // One client alone never brings an endpoint to its samples.
    let st = m.stats();
    assert_eq!(st.learned, u64::from(FREE_SAMPLES), "{st:?}");
}

#[test]
fn counts_decay_so_the_model_follows_the_application() {
    let mut m = Model::new(Settings {
        decay_every: 1000,
        ..Settings::default()
    });
    let add = |m: &mut Model, c: u32, qty: &str| {
        let t = format!("/shop/add.jsp?id=1&name=Vino&qty={qty}&B1=Add");
        m.observe("shop", &req(&client(c), &t), true)
    };
    // An old habit: a `;` in qty, from many clients.
    for i in 0..400 {
        add(&mut m, 1_000_000 + i, &format!("{};1", i % 9));
    }
    let semi = req("192.0.2.4", "/shop/add.jsp?id=1&name=Vino&qty=3;1&B1=Add");
    assert_eq!(m.observe("shop", &semi, false), None);
    // Then many halvings of ordinary traffic without it.
    for i in 0..12_000 {
        assert_eq!(add(&mut m, i, &(i % 90).to_string()), None);
    }
    let a = m
        .observe("shop", &semi, false)
        .expect("the old habit is forgotten");
    assert!(a.reason.contains("`;`"), "{}", a.reason);
    // A new habit of returning users (a `-` in qty) is learned; strangers' is not.
    for i in 0..200 {
        let first = add(&mut m, 2_000_000 + i, "-1");
        assert!(first.is_some(), "a stranger's odd request is flagged");
    }
    assert!(
        add(&mut m, 3_000_000, "-1").is_some(),
        "strangers taught nothing"
    );
    for i in 0..100 {
        for k in 0..TRUST_AFTER {
            add(&mut m, 4_000_000 + i, &k.to_string());
        }
        add(&mut m, 4_000_000 + i, "-1");
    }
    assert_eq!(add(&mut m, 3_000_001, "-1"), None, "users taught it");
}

#[test]
fn endpoints_are_bounded_and_the_coldest_go() {
    let mut m = Model::new(Settings {
        max_endpoints: 100,
        ..Settings::default()
    });
    warm(&mut m, 300);
    for i in 0..5000u32 {
        let t = format!("/post/Page{i}x");
        m.observe("shop", &req(&client(i), &t), true);
    }
    let st = m.stats();
    assert_eq!(st.endpoints, 100);
    assert_eq!(st.evicted_endpoints, 4901);
    // The busy endpoint survived the flood of one-off ones.
    let bad = req(
        "192.0.2.5",
        "/shop/add.jsp?id=1%27&name=Vino+Rioja&qty=1&B1=Add",
    );
    assert!(m.observe("shop", &bad, false).is_some());
}

#[test]
fn routes_fold_ids() {
    for (path, want) in [
        ("/item/123/edit", "/item/{n}/edit"),
        ("/u/0f8fad5b-d9cb-469f-a165-70867728950e", "/u/{uuid}"),
        ("/blob/4f2a9c1e77", "/blob/{hex}"),
        ("/blob/deadbeef", "/blob/deadbeef"),
        ("/", "/"),
        ("", "/"),
        ("/a//b/", "/a//b/"),
        // Fingerprinted and numbered files, and slugs below the first level.
        ("/static/js/app.8ed189c4.js", "/static/js/app.{hex}.js"),
        ("/img/products/113.webp", "/img/products/{n}.webp"),
        ("/jquery-3.6.0.min.js", "/jquery-3.{n}.{n}.min.js"),
        ("/shop/add.jsp", "/shop/add.jsp"),
        ("/blog/2024/kubernetes-garden-nginx", "/blog/{n}/{slug}"),
        ("/blog/tutorial-price", "/blog/tutorial-price"),
        ("/wp-admin-area-x/x", "/wp-admin-area-x/x"),
        ("/docs/Read-Me-First", "/docs/Read-Me-First"),
    ] {
        assert_eq!(route_template(path.as_bytes()), want, "{path}");
    }
    assert_eq!(route_template(&[b'/'; 1]), "/");
    let long = format!("/p/{}", "x".repeat(41));
    assert_eq!(route_template(long.as_bytes()), "/p/{s}");
}

/// Requests that stray in each way, and ordinary ones, against the warm shop.
const PROBES: [&str; 7] = [
    "/shop/add.jsp?id=1%27%3B&name=Vino+Rioja&qty=1&B1=Add",
    "/shop/add.jsp?id=abc&name=Vino+Rioja&qty=1&B1=Add",
    "/shop/add.jsp?id=1&name=Vino+Rioja&qty=1&B1=Add&admin=1",
    "/shop/add.jsp?id=1&name=Vino+Rioja&qty=1",
    "/shop/add.jsp?id=2&name=Queso+Manchego&qty=7&B1=Add",
    "/shop/add.jsp?id=3&name=Jamon+Iberico&qty=12&B1=Add",
    "/shop/other.jsp",
];

#[test]
fn a_saved_model_gives_the_same_findings_after_it_is_loaded() {
    let mut m = Model::new(Settings::default());
    warm(&mut m, 3000);
    // A second source, and a parameter name that is not UTF-8.
    for i in 0..60 {
        m.observe("api", &req(&client(i), "/v1/items?%FFname=1&page=2"), true);
    }
    let bytes = m.snapshot().to_json().unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.starts_with(r#"{"version":1,"#), "{}", &text[..40]);
    let mut back = Model::from_json(Settings::default(), &bytes).expect("loads");
    assert_eq!(back.stats(), m.stats());
    assert_eq!(back.source_stats(), m.source_stats());
    for p in PROBES {
        let r = req("192.0.2.9", p);
        assert_eq!(
            back.observe("shop", &r, false),
            m.observe("shop", &r, false),
            "{p}"
        );
    }
    let odd = req("192.0.2.9", "/v1/items?%FFname=1&page=2%27");
    let found = back.observe("api", &odd, false);
    assert!(found.is_some());
    assert_eq!(found, m.observe("api", &odd, false));
    // And they go on learning alike.
    warm(&mut m, 500);
    warm(&mut back, 500);
    let text = |m: &Model| String::from_utf8(m.snapshot().to_json().unwrap()).unwrap();
    assert!(
        text(&back) == text(&m),
        "the models differ after learning alike"
    );
    // A loaded model takes the config's settings, not the file's.
    let fewer = Settings {
        max_endpoints: 1,
        ..Settings::default()
    };
    let small = Model::from_json(fewer, &bytes).unwrap();
    assert_eq!(small.settings(), fewer);
    assert_eq!(small.stats().endpoints, 2, "one per source");
}

#[test]
fn a_bad_file_is_refused_with_a_reason_never_a_panic() {
    let mut m = Model::new(Settings::default());
    warm(&mut m, 200);
    let good = String::from_utf8(m.snapshot().to_json().unwrap()).unwrap();
    let s = Settings::default();
    let err = |bytes: &[u8]| Model::from_json(s, bytes).unwrap_err().to_string();
    assert!(err(b"").contains("not a model file"), "{}", err(b""));
    assert!(err(&good.as_bytes()[..good.len() / 2]).contains("not a model file"));
    let v2 = good.replacen(r#""version":1"#, r#""version":2"#, 1);
    assert!(
        err(v2.as_bytes()).contains("version 2"),
        "{}",
        err(v2.as_bytes())
    );
    let mut hashed: serde_json::Value = serde_json::from_str(&good).unwrap();
    hashed["hash_check"] = 1.into();
    let hashed = hashed.to_string();
    assert!(err(hashed.as_bytes()).contains("hashes values differently"));
    let classes = good.replacen(r#""classes":["#, r#""classes":[1,"#, 1);
    assert!(err(classes.as_bytes()).contains("character classes"));
    // Counts out of line (a hand edit) are made consistent, so learning goes on
    // without an overflow.
    let mut wild: serde_json::Value = serde_json::from_str(&good).unwrap();
    for e in wild["sources"][0]["endpoints"].as_array_mut().unwrap() {
        e["samples"] = u32::MAX.into();
        e["contributors"] = serde_json::json!([[1, 1, 4_000_000_000u32], [2, u32::MAX, 0]]);
        for p in e["params"].as_array_mut().unwrap() {
            p["count"] = u32::MAX.into();
            p["max_len"] = u32::MAX.into();
        }
    }
    let mut loaded = Model::from_json(s, wild.to_string().as_bytes()).expect("usable");
    warm(&mut loaded, 100);
    let odd = req(
        "192.0.2.9",
        "/shop/add.jsp?id=1%27&name=Vino+Rioja&qty=1&B1=Add",
    );
    assert!(loaded.observe("shop", &odd, false).is_some());
}

#[test]
fn an_endpoint_keeps_its_status_mix_and_a_rare_5xx_stands_out() {
    let mut m = Model::new(Settings::default());
    warm(&mut m, 400);
    let ordinary = "/shop/add.jsp?id=2&name=Queso+Manchego&qty=7&B1=Add";
    let mut broke = req("192.0.2.7", ordinary);
    broke.status = Some(500);
    let a = m
        .observe("shop", &broke, true)
        .expect("a 5xx the endpoint never gave is reported");
    assert_eq!(a.score, SCORE_RARE_ERROR);
    assert!(
        a.reason.contains("answered 500") && a.reason.contains("a 5xx it gave 0 times"),
        "{}",
        a.reason
    );
    // With an odd parameter, the error adds to that finding.
    let mut odd = req(
        "192.0.2.7",
        "/shop/add.jsp?id=1%27&name=Vino+Rioja&qty=1&B1=Add",
    );
    let alone = m.observe("shop", &odd, false).expect("odd");
    odd.status = Some(502);
    let worse = m.observe("shop", &odd, false).expect("odd");
    assert!((worse.score - (alone.score + RARE_ERROR_BONUS).min(0.9)).abs() < 1e-9);
    assert!(worse.reason.contains("it answered 502"), "{}", worse.reason);
    // A stranger's errors do not make errors ordinary...
    for _ in 0..100 {
        m.observe("shop", &broke, true);
    }
    assert!(m.observe("shop", &broke, true).is_some());
    // ...the application's own users meeting them do.
    for c in 0..30 {
        let ip = client(50_000 + c);
        for _ in 0..TRUST_AFTER {
            m.observe("shop", &req(&ip, ordinary), true);
        }
        let mut e = req(&ip, ordinary);
        e.status = Some(503);
        assert!(m.observe("shop", &e, true).is_some() || c > 0);
    }
    assert_eq!(m.observe("shop", &broke, true), None);
}

#[test]
fn a_source_holds_a_bounded_number_of_parameters_whatever_its_endpoints_take() {
    let mut m = Model::new(Settings::default());
    warm(&mut m, 300);
    // 1,000 endpoints of 32 parameters each, with long names.
    let query: Vec<String> = (0..32)
        .map(|k| format!("{}{k}={k}", "p".repeat(100)))
        .collect();
    let query = query.join("&");
    for e in 0..1000u32 {
        let t = format!("/form{e}x?{query}");
        for c in 0..2 {
            m.observe("shop", &req(&client(10_000 + e * 2 + c), &t), true);
        }
    }
    let s = &m.sources["shop"];
    let held: usize = s.endpoints.iter().map(|e| e.params.len()).sum();
    assert_eq!(s.params, held, "the count is kept true");
    assert!(held <= MAX_SOURCE_PARAMS, "{held} parameters held");
    assert!(s.evicted > 0);
    let bytes = m.stats().bytes;
    eprintln!("a flooded source holds {held} parameters, {bytes} bytes");
    assert!(bytes < 4 << 20, "{bytes} bytes");
    // The busy endpoint survived the flood.
    let bad = req(
        "192.0.2.5",
        "/shop/add.jsp?id=1%27&name=Vino+Rioja&qty=1&B1=Add",
    );
    assert!(m.observe("shop", &bad, false).is_some());
    // A name past MAX_NAME is not kept (it is judged as never seen).
    let long = format!("/page?{}=1", "n".repeat(MAX_NAME + 1));
    for c in 0..10 {
        m.observe("shop", &req(&client(90_000 + c), &long), true);
    }
    let key = hash_parts(&m.hasher, &[b"GET", b"/page"]);
    let s = &m.sources["shop"];
    let e = &s.endpoints[s.index[&key]];
    assert_eq!(e.samples, 10);
    assert!(e.params.is_empty());
    // A label is cut, the route is not.
    let deep = format!("/{}", ["segment-of-words-x"; 40].join("/"));
    let label = endpoint_label(b"GET", deep.as_bytes());
    assert!(
        label.len() <= MAX_LABEL + 3 && label.ends_with('…'),
        "{label}"
    );
}
