#!/usr/bin/env python3
"""Measure security-monitor's detection and false-positive rates on a labelled corpus.

What it measures
----------------
The corpus directory holds two nginx "combined" logs and their per-line labels:

  attack.log + attack_labels.jsonl   one JSON object per line: ip, category, weak, ...
  benign.log + benign_labels.jsonl   one JSON object per line: ip, tags, ...

The real binary is run once on each log, exactly as an operator would replay a log:

  security-monitor check --json --format combined [--config C] FILE

and its JSON report (``bans``: one entry per banned IP with the deciding rule) is
compared with the labels:

* Detection rate: among attack IPs that sent at least one line NOT marked ``weak``
  (a weak line, e.g. a single 401 or a generic probe path, is not evidence on its
  own), the share that were banned -- overall and per category.  An IP's category
  is the category of its first non-weak line.
* False-positive rate: among all benign IPs, the share that were banned, and for
  each such IP the rule that banned it (with --verbose, the IP's lines).
* With --verbose, the missed attack IPs and their lines are listed too.

Bans decided by the engine's own counters (request flood, bursts of 404s) count like
any other ban: the question is whether the IP ends up blocked.

Usage
-----
  scripts/measure_corpus.py CORPUS_DIR [--bin PATH] [--config PATH] [--verbose] [--json]
                            [--min-detection PCT] [--max-false-positive PCT]

The exit status is 2 when the binary fails (cannot be run, exits non-zero, or prints
something that is not JSON) or the corpus cannot be read; 1 when a --min-detection or
--max-false-positive bar is missed (tests/run.sh uses them as the quality gate); else 0.
Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
from typing import Any


def read_labels(path: str) -> list[dict[str, Any]]:
    labels = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                labels.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{n}: not JSON: {e}")
    return labels


def read_log_lines(path: str) -> list[str]:
    """The log's lines as text (bytes that are not UTF-8 shown with escapes)."""
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [l.decode("utf-8", "backslashreplace") for l in lines]


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
        sys.exit(proc.returncode if proc.returncode > 0 else 2)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        sys.stderr.write(f"{' '.join(cmd)} did not print JSON: {e}\n")
        sys.stderr.write(proc.stdout[:2000].decode("utf-8", "replace") + "\n")
        sys.exit(2)
    if not isinstance(report, dict) or not isinstance(report.get("bans"), list):
        sys.stderr.write(f"{' '.join(cmd)}: JSON report has no \"bans\" list\n")
        sys.exit(2)
    return report


def bans_by_ip(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for b in report["bans"]:
        ip = b.get("ip")
        if ip is not None and ip not in out:
            out[ip] = b
    return out


def pct(n: int, d: int) -> float:
    return round(100.0 * n / d, 2) if d else 0.0


def measure(corpus: str, binary: str, config: str | None) -> dict[str, Any]:
    attack_log = os.path.join(corpus, "attack.log")
    benign_log = os.path.join(corpus, "benign.log")
    attack_labels = read_labels(os.path.join(corpus, "attack_labels.jsonl"))
    benign_labels = read_labels(os.path.join(corpus, "benign_labels.jsonl"))
    attack_lines = read_log_lines(attack_log)
    benign_lines = read_log_lines(benign_log)

    attack_report = run_check(binary, config, attack_log)
    benign_report = run_check(binary, config, benign_log)
    attack_bans = bans_by_ip(attack_report)
    benign_bans = bans_by_ip(benign_report)

    # Attack side: IPs with at least one non-weak line, categorised by the first one.
    ip_category: dict[str, str] = {}
    ip_lines: dict[str, list[int]] = collections.defaultdict(list)
    for i, lab in enumerate(attack_labels):
        ip = lab["ip"]
        ip_lines[ip].append(int(lab.get("line", i + 1)))
        if not lab.get("weak") and ip not in ip_category:
            ip_category[ip] = lab.get("category", "unknown")
    label_by_line = {int(l.get("line", i + 1)): l for i, l in enumerate(attack_labels)}

    per_cat_total: collections.Counter[str] = collections.Counter(ip_category.values())
    per_cat_banned: collections.Counter[str] = collections.Counter(
        c for ip, c in ip_category.items() if ip in attack_bans
    )
    banned = sum(per_cat_banned.values())
    missed = []
    for ip, cat in ip_category.items():
        if ip in attack_bans:
            continue
        lines = []
        for n in ip_lines[ip]:
            lab = label_by_line.get(n, {})
            lines.append({
                "line": n,
                "category": lab.get("category"),
                "weak": bool(lab.get("weak")),
                "text": attack_lines[n - 1] if 0 < n <= len(attack_lines) else "",
            })
        missed.append({"ip": ip, "category": cat, "lines": lines})

    # Benign side.
    benign_ips: dict[str, list[int]] = collections.defaultdict(list)
    for i, lab in enumerate(benign_labels):
        benign_ips[lab["ip"]].append(int(lab.get("line", i + 1)))
    fps = []
    for ip, ban in sorted(benign_bans.items()):
        lines = [
            {"line": n, "text": benign_lines[n - 1] if 0 < n <= len(benign_lines) else ""}
            for n in benign_ips.get(ip, [])
        ]
        fps.append({
            "ip": ip,
            "rule": ban.get("rule"),
            "category": ban.get("category"),
            "severity": ban.get("severity"),
            "lines": lines,
        })

    categories = {
        c: {
            "banned": per_cat_banned[c],
            "total": per_cat_total[c],
            "percent": pct(per_cat_banned[c], per_cat_total[c]),
        }
        for c in sorted(per_cat_total, key=lambda c: (-per_cat_total[c], c))
    }
    attack_rule_hits = attack_report.get("rule_hits", {})
    benign_rule_hits = benign_report.get("rule_hits", {})
    return {
        "binary": binary,
        "config": config,
        "attack": {
            "lines": attack_report.get("lines"),
            "ips": len(ip_lines),
            "ips_with_non_weak_line": len(ip_category),
            "banned": banned,
            "percent": pct(banned, len(ip_category)),
            "banned_any": len(attack_bans),
            "categories": categories,
            "missed": missed,
            "rule_hits": attack_rule_hits,
            "elapsed_s": attack_report.get("elapsed_s"),
        },
        "benign": {
            "lines": benign_report.get("lines"),
            "ips": len(benign_ips),
            "banned": len(benign_bans),
            "percent": pct(len(benign_bans), len(benign_ips)),
            "false_positives": fps,
            "rule_hits": benign_rule_hits,
            "elapsed_s": benign_report.get("elapsed_s"),
        },
    }


def print_report(r: dict[str, Any], verbose: bool) -> None:
    a, b = r["attack"], r["benign"]
    print(f"binary: {r['binary']}" + (f"   config: {r['config']}" if r["config"] else ""))
    print()
    print(f"Attack IPs with a non-weak line banned: {a['banned']}/{a['ips_with_non_weak_line']}"
          f" = {a['percent']:.2f}%   ({a['ips']} attack IPs in all, {a['banned_any']} banned)")
    for c, v in a["categories"].items():
        print(f"  {c:20} {v['banned']:5}/{v['total']:<5} {v['percent']:6.2f}%")
    print()
    print(f"Benign IPs banned: {b['banned']}/{b['ips']} = {b['percent']:.2f}%")
    for fp in b["false_positives"]:
        print(f"  {fp['ip']:16} rule={fp['rule']} ({fp['category']}, {fp['severity']})")
        if verbose:
            for l in fp["lines"]:
                print(f"      {l['line']:6}  {l['text']}")
    if verbose and a["missed"]:
        print()
        print(f"Missed attack IPs: {len(a['missed'])}")
        for m in a["missed"]:
            print(f"  {m['ip']}  ({m['category']})")
            for l in m["lines"]:
                flag = "weak" if l["weak"] else "    "
                print(f"      {l['line']:6} {flag} {l['category'] or '':16} {l['text']}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description="Measure security-monitor detection / false-positive rates on a labelled corpus.")
    ap.add_argument("corpus", metavar="CORPUS_DIR",
                    help="directory with attack.log, attack_labels.jsonl, benign.log, benign_labels.jsonl")
    ap.add_argument("--bin", default="target/release/security-monitor",
                    help="security-monitor binary (default: %(default)s)")
    ap.add_argument("--config", help="config file passed to `check --config`")
    ap.add_argument("--verbose", action="store_true",
                    help="list the lines of banned benign IPs and of missed attack IPs")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--min-detection", type=float, metavar="PCT",
                    help="exit 1 if fewer than PCT%% of attack IPs with a non-weak line are banned")
    ap.add_argument("--max-false-positive", type=float, metavar="PCT",
                    help="exit 1 if more than PCT%% of benign IPs are banned")
    args = ap.parse_args()

    try:
        result = measure(args.corpus, args.bin, args.config)
    except OSError as e:
        sys.stderr.write(f"cannot read corpus: {e}\n")
        sys.exit(2)
    if args.json:
        if not args.verbose:
            for m in result["attack"]["missed"]:
                m.pop("lines", None)
            for fp in result["benign"]["false_positives"]:
                fp.pop("lines", None)
        json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print_report(result, args.verbose)
    failed = []
    if args.min_detection is not None and result["attack"]["percent"] < args.min_detection:
        failed.append(f"detection {result['attack']['percent']:.2f}% is below {args.min_detection}%")
    if args.max_false_positive is not None and result["benign"]["percent"] > args.max_false_positive:
        failed.append(f"false positives {result['benign']['percent']:.2f}% are above {args.max_false_positive}%")
    for f in failed:
        sys.stderr.write(f"FAIL: {f}\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
