#!/usr/bin/env python3
"""Endpoint baselines on CSIC 2010: the share of anomalous and of normal GET requests
flagged as unusual (or banned by the rules), after a warm-up of N training requests.

usage: scripts/measure_anomaly.py [--bin BIN] [--csic DIR] [--warmup 1000,4000,36000]
                                  [--seed] [--json]

For each warm-up size it runs `security-monitor check --json --learn FIRST_N_TRAINING
TEST` once on the normal test half and once on the anomalous one (the model goes on
learning from each test file's ordinary requests, as the daemon would), and counts per
request (CSIC gives every request its own client address): flagged at any score, at a
score of 0.5 or more, banned by the rules, and banned or flagged. Only GET requests
count: a POST's parameters are in its body, which no access log shows.

--seed runs the seeds' approach beside it on the same split (seed 003: scikit-learn's
CountVectorizer over each log line, an IsolationForest fitted on the training lines;
`pip install scikit-learn`): its ROC AUC, and the share of anomalous GETs it flags at
its own threshold and at the thresholds that flag 0.5% and 1% of normal GETs.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gets(path):
    ips = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split('"')
            if len(parts) > 1 and parts[1].startswith("GET "):
                ips.add(line.split(" ", 1)[0])
    return ips


def run(binary, learn, test):
    out = subprocess.run(
        [binary, "check", "--json", "--format", "combined", "--learn", learn, test],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def shares(report, wanted):
    flagged = {a["ip"] for a in report.get("anomalies", []) if a["ip"] in wanted}
    strong = {a["ip"] for a in report.get("anomalies", []) if a["ip"] in wanted and a["score"] >= 0.5}
    banned = {b["ip"] for b in report["bans"] if b["ip"] in wanted}
    n = max(len(wanted), 1)
    pct = lambda s: round(100.0 * len(s) / n, 2)
    return {"requests": len(wanted), "flagged": pct(flagged), "flagged_0.5": pct(strong),
            "banned": pct(banned), "banned_or_flagged": pct(flagged | banned),
            "banned_or_flagged_0.5": pct(strong | banned)}


def request_text(line):
    parts = line.split('"')
    return parts[1] if len(parts) > 1 else line


def seed_approach(train, tests, wanted, warmups):
    try:
        from sklearn.ensemble import IsolationForest
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.metrics import roc_auc_score
    except ImportError:
        sys.exit("measure_anomaly.py: --seed needs scikit-learn (pip install scikit-learn)")
    import numpy as np

    def get_lines(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            return [request_text(l) for l in f if request_text(l).startswith("GET ")]

    normal, anomalous = get_lines(tests["normal"]), get_lines(tests["anomalous"])
    rows = []
    for n in warmups:
        vec = CountVectorizer()
        x = vec.fit_transform([request_text(l) for l in train[:n]])
        forest = IsolationForest(n_estimators=100, random_state=0).fit(x)
        # Higher: more anomalous.
        sn = -forest.score_samples(vec.transform(normal))
        sa = -forest.score_samples(vec.transform(anomalous))
        auc = roc_auc_score([0] * len(sn) + [1] * len(sa), np.concatenate([sn, sa]))
        own = forest.predict(vec.transform(anomalous))
        own_n = forest.predict(vec.transform(normal))
        row = {"warmup": min(n, len(train)), "auc": round(float(auc), 3),
               "own_threshold": {"anomalous": round(100.0 * float((own == -1).mean()), 2),
                                 "normal": round(100.0 * float((own_n == -1).mean()), 2)}}
        for fp in (0.5, 1.0):
            t = float(np.percentile(sn, 100 - fp))
            row[f"at_{fp}%_normal"] = round(100.0 * float((sa > t).mean()), 2)
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(REPO, "target/release/security-monitor"))
    ap.add_argument("--csic", default=os.path.join(REPO, "../shared/datasets/csic2010"))
    ap.add_argument("--warmup", default="1000,4000,36000")
    ap.add_argument("--seed", action="store_true",
                    help="also run the seeds' CountVectorizer + IsolationForest on the same split")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    train = os.path.join(a.csic, "normal_training.log")
    tests = {"anomalous": os.path.join(a.csic, "anomalous_test.log"),
             "normal": os.path.join(a.csic, "normal_test.log")}
    for p in [a.bin, train, *tests.values()]:
        if not os.path.exists(p):
            sys.exit(f"measure_anomaly.py: not found: {p}")
    with open(train, encoding="utf-8", errors="replace") as f:
        training = f.readlines()
    wanted = {k: gets(v) for k, v in tests.items()}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in a.warmup.split(",")]:
            learn = os.path.join(tmp, f"train-{n}.log")
            with open(learn, "w", encoding="utf-8") as f:
                f.writelines(training[:n])
            row = {"warmup": min(n, len(training))}
            for k, path in tests.items():
                rep = run(a.bin, learn, path)
                row[k] = shares(rep, wanted[k])
                row[k]["model"] = rep.get("anomaly_model")
            results.append(row)
            if not a.json:
                an, no = row["anomalous"], row["normal"]
                print(f"warm-up {row['warmup']:>6}: anomalous GETs flagged {an['flagged']:6.2f}% "
                      f"(score>=0.5 {an['flagged_0.5']:6.2f}%, rules ban {an['banned']:6.2f}%, "
                      f"either {an['banned_or_flagged']:6.2f}%) | normal flagged {no['flagged']:5.2f}% "
                      f"(>=0.5 {no['flagged_0.5']:5.2f}%, banned {no['banned']:4.2f}%)", flush=True)
    seed = None
    if a.seed:
        seed = seed_approach(training, tests, wanted, [int(x) for x in a.warmup.split(",")])
        if not a.json:
            for r in seed:
                print(f"seed's IsolationForest, warm-up {r['warmup']:>6}: AUC {r['auc']:.3f}; "
                      f"anomalous GETs flagged {r['at_0.5%_normal']:6.2f}% at 0.5% of normal, "
                      f"{r['at_1.0%_normal']:6.2f}% at 1%; at its own threshold "
                      f"{r['own_threshold']['anomalous']:6.2f}% at {r['own_threshold']['normal']:5.2f}% of normal")
    if a.json:
        print(json.dumps({"baselines": results, "seed_isolation_forest": seed}, indent=2))


if __name__ == "__main__":
    main()
