#!/usr/bin/env python3
"""Measure security-monitor on the CSIC 2010 HTTP dataset (as access-log lines).

What it measures
----------------
DATASET_DIR holds the CSIC 2010 requests as nginx "combined" lines, one client IP per
request (see the README there):

  anomalous_test.log   attacks (SQL injection, XSS, CRLF, traversal, tampering, ...)
  normal_test.log      ordinary requests of the same shop
  normal_training.log  more ordinary requests (what a model would learn from)

The real binary replays each file, as an operator would:

  security-monitor check --json --format combined [--config C] FILE

Because every request has its own IP, an IP banned is a request banned, and no
counter (floods, bursts of 404s) can fire: each ban is one line judged alone.

* Detection: the share of anomalous GET requests banned (--verbose: the rules that
  banned them, and the first unbanned ones).  A POST's payload is in its
  body, which a log line does not show, so POSTs carry no visible evidence; their
  share is printed apart, for information.
* False positives: the share of normal_test requests banned (target 0.00%), with the
  rules that banned them and a sample line each; then the same for normal_training
  as a second benign figure (--skip-training leaves it out: it is the largest file).

Usage
-----
  scripts/measure_csic.py DATASET_DIR [--bin PATH] [--config PATH] [--json] [--verbose]
                          [--skip-training] [--min-detection PCT] [--max-false-positive PCT]

The exit status is 2 when the binary fails or a file cannot be read; 1 when a
--min-detection (anomalous GETs) or --max-false-positive (normal_test, and
normal_training when read) bar is missed; else 0.
Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
from typing import Any

LINE_RE = re.compile(rb'^(\S+) \S+ \S+ \[[^\]]*\] "([^" ]*)')


def run_check(binary: str, config: str | None, log: str) -> dict[str, Any]:
    cmd = [binary, "check", "--json", "--format", "combined"]
    if config:
        cmd += ["--config", config]
    cmd.append(log)
    try:
        proc = subprocess.run(cmd, capture_output=True)
    except OSError as e:
        sys.stderr.write(f"cannot run {binary}: {e}\n")
        sys.exit(2)
    if proc.returncode != 0:
        sys.stderr.write(f"{' '.join(cmd)} exited with status {proc.returncode}\n")
        sys.stderr.write(proc.stderr.decode("utf-8", "replace"))
        sys.exit(2)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        sys.stderr.write(f"{' '.join(cmd)} did not print JSON: {e}\n")
        sys.exit(2)
    if not isinstance(report, dict) or not isinstance(report.get("bans"), list):
        sys.stderr.write(f"{' '.join(cmd)}: JSON report has no \"bans\" list\n")
        sys.exit(2)
    return report


def read_requests(path: str) -> tuple[dict[str, str], dict[str, str]]:
    """Per client IP: its method, and its line (each IP sends one request)."""
    method: dict[str, str] = {}
    text: dict[str, str] = {}
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip(b"\n")
            m = LINE_RE.match(line)
            if not m:
                sys.stderr.write(f"{path}:{n}: not a combined line; skipped\n")
                continue
            ip = m.group(1).decode("ascii", "replace")
            if ip in method:
                sys.stderr.write(f"{path}:{n}: {ip} sends a second request; counted once\n")
                continue
            method[ip] = m.group(2).decode("ascii", "replace").upper()
            text[ip] = line.decode("utf-8", "backslashreplace")
    return method, text


def pct(n: int, d: int) -> float:
    return round(100.0 * n / d, 2) if d else 0.0


def judge(binary: str, config: str | None, path: str) -> dict[str, Any]:
    method, text = read_requests(path)
    report = run_check(binary, config, path)
    bans: dict[str, dict[str, Any]] = {}
    for b in report["bans"]:
        if b.get("ip") is not None:
            bans.setdefault(b["ip"], b)
    by_method: dict[str, dict[str, int]] = collections.defaultdict(lambda: {"banned": 0, "total": 0})
    for ip, m in method.items():
        by_method[m]["total"] += 1
        by_method[m]["banned"] += ip in bans
    rules = collections.Counter(b.get("rule") for ip, b in bans.items() if ip in method)
    samples: dict[str, list[str]] = collections.defaultdict(list)
    for ip, b in bans.items():
        if ip in text:
            samples[b.get("rule")].append(text[ip])
    banned = sum(1 for ip in method if ip in bans)
    missed_get = [text[ip] for ip, m in method.items() if m == "GET" and ip not in bans]
    return {
        "file": path,
        "lines": report.get("lines"),
        "parsed": report.get("parsed"),
        "requests": len(method),
        "banned": banned,
        "percent": pct(banned, len(method)),
        "by_method": {
            m: dict(v, percent=pct(v["banned"], v["total"]))
            for m, v in sorted(by_method.items(), key=lambda kv: -kv[1]["total"])
        },
        "rules": dict(rules.most_common()),
        "samples": {r: s[:5] for r, s in samples.items()},
        "unbanned_get_samples": missed_get[:10],
        "elapsed_s": report.get("elapsed_s"),
    }


def print_file(title: str, r: dict[str, Any], verbose: bool, list_rules: bool) -> None:
    print(f"{title}: {r['banned']}/{r['requests']} requests banned = {r['percent']:.2f}%"
          f"   ({r['parsed']}/{r['lines']} lines parsed, check took {r['elapsed_s']:.1f} s)")
    for m, v in r["by_method"].items():
        print(f"  {m:8} {v['banned']:6}/{v['total']:<6} {v['percent']:6.2f}%")
    if list_rules:
        for rule, n in r["rules"].items():
            print(f"  {n:6} banned by {rule}")
            for s in r["samples"].get(rule, [])[: (5 if verbose else 1)]:
                print(f"           {s[:300]}")


def main() -> None:
    ap = argparse.ArgumentParser(description="Measure security-monitor on the CSIC 2010 dataset.")
    ap.add_argument("dataset", metavar="DATASET_DIR",
                    help="directory with anomalous_test.log, normal_test.log, normal_training.log")
    ap.add_argument("--bin", default="target/release/security-monitor",
                    help="security-monitor binary (default: %(default)s)")
    ap.add_argument("--config", help="config file passed to `check --config`")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--verbose", action="store_true",
                    help="up to five sample lines per rule, and the rules behind the anomalous bans")
    ap.add_argument("--skip-training", action="store_true", help="do not replay normal_training.log")
    ap.add_argument("--min-detection", type=float, metavar="PCT",
                    help="exit 1 if fewer than PCT%% of anomalous GET requests are banned")
    ap.add_argument("--max-false-positive", type=float, metavar="PCT",
                    help="exit 1 if more than PCT%% of normal requests are banned")
    args = ap.parse_args()

    files = [("anomalous", "anomalous_test.log"), ("normal_test", "normal_test.log")]
    if not args.skip_training:
        files.append(("normal_training", "normal_training.log"))
    res: dict[str, Any] = {"binary": args.bin, "config": args.config}
    try:
        for key, name in files:
            res[key] = judge(args.bin, args.config, os.path.join(args.dataset, name))
    except OSError as e:
        sys.stderr.write(f"cannot read dataset: {e}\n")
        sys.exit(2)
    get = res["anomalous"]["by_method"].get("GET", {"banned": 0, "total": 0, "percent": 0.0})
    res["anomalous_get_percent"] = get["percent"]
    res["normal_test_percent"] = res["normal_test"]["percent"]
    if "normal_training" in res:
        res["normal_training_percent"] = res["normal_training"]["percent"]

    if args.json:
        json.dump(res, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(f"binary: {args.bin}" + (f"   config: {args.config}" if args.config else ""))
        print()
        print(f"Anomalous GET requests banned: {get['banned']}/{get['total']} = {get['percent']:.2f}%")
        print_file("anomalous_test", res["anomalous"], args.verbose, args.verbose)
        if args.verbose and res["anomalous"]["unbanned_get_samples"]:
            print("  anomalous GETs not banned (first ten):")
            for s in res["anomalous"]["unbanned_get_samples"]:
                print(f"           {s[:300]}")
        print()
        print(f"Normal requests banned (target 0.00%): {res['normal_test']['banned']}/"
              f"{res['normal_test']['requests']} = {res['normal_test']['percent']:.2f}%")
        print_file("normal_test", res["normal_test"], args.verbose, True)
        if "normal_training" in res:
            print()
            print_file("normal_training", res["normal_training"], args.verbose, True)

    failed = []
    if args.min_detection is not None and get["percent"] < args.min_detection:
        failed.append(f"anomalous GETs banned {get['percent']:.2f}% is below {args.min_detection}%")
    if args.max_false_positive is not None:
        for key in ("normal_test", "normal_training"):
            if key in res and res[key]["percent"] > args.max_false_positive:
                failed.append(f"{key} banned {res[key]['percent']:.2f}% is above {args.max_false_positive}%")
    for f in failed:
        sys.stderr.write(f"FAIL: {f}\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
