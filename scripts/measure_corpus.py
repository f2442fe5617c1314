#!/usr/bin/env python3
"""Measure security-monitor's detection and false-positive rates on a labelled corpus.

What it measures
----------------
The corpus directory holds two nginx "combined" logs and their per-line labels:

  attack.log + attack_labels.jsonl   one JSON object per line: ip, category, weak, source, ...
  benign.log + benign_labels.jsonl   one JSON object per line: ip, source, tags, ...

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

--folds: the same figures per source family
-------------------------------------------
Every label names the ``source`` its line came from (CRS regression tests, SecLists,
fail2ban's test logs, ...).  A rule written while looking at one source tends to
fit that source; ``--folds`` shows whether the figures hold across them.  An IP's
family is the source of its first non-weak line (attack) or of its first line
(benign); ``nmap-http-fingerprints`` and ``nmap-service-probes`` form one family,
``nmap``.  Printed per family: detection and benign IPs banned, with the categories
inside the family; the macro average over families (each family weighs the same,
however many IPs it has); and for each family F the figures on all OTHER families
("leave one family out": what a rule written from F must not hurt).

--as FORMAT: the same traffic through another log format
--------------------------------------------------------
``combined`` (the default) replays the logs as they are.  ``caddy-json`` and
``traefik-json`` rewrite every line into that product's JSON access-log line (Caddy
2's ``http.log.access`` object with ``request.headers`` as arrays; Traefik's JSON
access log with ``ClientHost``, ``RequestPath``, ``request_User-Agent`` ...; see
``to_caddy`` and ``to_traefik``); ``nginx-json`` into nginx's ``escape=json`` log with
the usual keys (``remote_addr``, ``request``, ``status`` as a string ...), write them to a temporary file (one line per line,
so the labels still apply) and run ``check --format json``, so the same requests are
judged through the JSON reader.  nginx's ``\\xHH`` escapes are undone first (the
JSON products log the raw bytes; invalid UTF-8 becomes U+FFFD as Go's encoder does).
A request line that is not ``METHOD TARGET HTTP/x`` (binary garbage, other protocols)
is never logged by Caddy or Traefik -- Go's server answers 400 before any handler --
so these lines are written as well as the shape allows and counted as
``not_http_lines``; nginx logs them (its JSON escapes make the bytes ``\u0016``...).  ``--as`` may be given more than once; a comparison follows.

Usage
-----
  scripts/measure_corpus.py CORPUS_DIR [--bin PATH] [--config PATH] [--verbose] [--json]
                            [--folds] [--as {combined,caddy-json,traefik-json,nginx-json}]...
                            [--min-detection PCT] [--max-false-positive PCT]
  scripts/measure_corpus.py --self-test

The exit status is 2 when the binary fails (cannot be run, exits non-zero, or prints
something that is not JSON) or the corpus cannot be read; 1 when a --min-detection or
--max-false-positive bar is missed by any of the --as forms (tests/run.sh uses them as
the quality gate); else 0.  --self-test checks the line converters on built-in lines
(no binary, no corpus) and exits 0 or 1.
Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any, Callable

FORMS = ("combined", "caddy-json", "traefik-json", "nginx-json")

# Sources that make one family together.
FAMILY_OF_SOURCE = {
    "nmap-http-fingerprints": "nmap",
    "nmap-service-probes": "nmap",
}


def family_of(source: str | None) -> str:
    s = source or "unknown"
    return FAMILY_OF_SOURCE.get(s, s)


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


# ---------------------------------------------------------------------------
# Rewriting combined lines as JSON access-log lines
# ---------------------------------------------------------------------------

_Q = r'"((?:[^"\\]|\\.)*)"'
COMBINED_RE = re.compile(
    r"^(\S+) (\S+) (\S+) \[([^\]]+)\] " + _Q + r" (\S+) (\S+)(?: " + _Q + r" " + _Q + r")?"
)
_ESC_RE = re.compile(rb"\\x([0-9A-Fa-f]{2})|\\([\"\\])")


def unescape_nginx(s: bytes) -> str:
    """Undo nginx's (\\xHH) and Apache's (\\", \\\\) log escapes: the bytes as sent,
    decoded as UTF-8 with U+FFFD for what is not (as Go's JSON encoder writes them)."""
    raw = _ESC_RE.sub(lambda m: bytes([int(m.group(1), 16)]) if m.group(1) else m.group(2), s)
    return raw.decode("utf-8", "replace")


def parse_combined(line: bytes) -> dict[str, Any] | None:
    """One nginx/Apache combined line as fields, or None."""
    m = COMBINED_RE.match(line.decode("latin-1"))
    if not m:
        return None
    ip, _ident, user, when, request, status, size, referer, ua = m.groups()
    enc = lambda s: unescape_nginx(s.encode("latin-1")) if s is not None else ""
    try:
        t = datetime.datetime.strptime(when, "%d/%b/%Y:%H:%M:%S %z")
    except ValueError:
        t = None
    req = enc(request)
    parts = req.split(" ")
    if len(parts) >= 3 and parts[-1].startswith("HTTP/"):
        method, uri, proto, is_http = parts[0], " ".join(parts[1:-1]), parts[-1], True
    elif len(parts) >= 2:
        method, uri, proto, is_http = parts[0], " ".join(parts[1:]), "", False
    else:
        method, uri, proto, is_http = ("" if req == "-" else req), "", "", False
    dash = lambda s: "" if s in ("-", "") else s
    return {
        "request": "" if req == "-" else req,
        "ip": ip,
        "user": dash(user),
        "time": t,
        "method": method,
        "uri": uri,
        "proto": proto,
        "is_http": is_http,
        "status": int(status) if status.isdigit() else 0,
        "size": int(size) if size.isdigit() else 0,
        "referer": dash(enc(referer)),
        "ua": dash(enc(ua)),
    }


def _epoch(t: datetime.datetime | None) -> float:
    return t.timestamp() if t else 0.0


def _rfc3339(t: datetime.datetime | None, frac: bool = False) -> str:
    t = (t or datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)).astimezone(
        datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (".000123456" if frac else "") + "Z"


def _port(n: int) -> int:
    return 32768 + (n * 7919) % 28000


def to_caddy(f: dict[str, Any], n: int) -> dict[str, Any]:
    """Caddy 2's access-log entry (logger http.log.access, encoder json)."""
    headers: dict[str, list[str]] = {}
    if f["ua"]:
        headers["User-Agent"] = [f["ua"]]
    if f["referer"]:
        headers["Referer"] = [f["referer"]]
    headers["Accept"] = ["*/*"]
    return {
        "level": "info",
        "ts": _epoch(f["time"]),
        "logger": "http.log.access",
        "msg": "handled request",
        "request": {
            "remote_ip": f["ip"],
            "remote_port": str(_port(n)),
            "client_ip": f["ip"],
            "proto": f["proto"],
            "method": f["method"],
            "host": "www.example.com",
            "uri": f["uri"],
            "headers": headers,
        },
        "bytes_read": 0,
        "user_id": f["user"],
        "duration": 0.001234,
        "size": f["size"],
        "status": f["status"],
        "resp_headers": {"Server": ["Caddy"], "Content-Type": ["text/html; charset=utf-8"]},
    }


def to_traefik(f: dict[str, Any], n: int) -> dict[str, Any]:
    """Traefik's JSON access-log entry (accessLog.format=json, headers kept)."""
    port = str(_port(n))
    addr = f"[{f['ip']}]:{port}" if ":" in f["ip"] else f"{f['ip']}:{port}"
    e: dict[str, Any] = {
        "ClientAddr": addr,
        "ClientHost": f["ip"],
        "ClientPort": port,
        "ClientUsername": f["user"] or "-",
        "DownstreamContentSize": f["size"],
        "DownstreamStatus": f["status"],
        "Duration": 1234567,
        "OriginContentSize": f["size"],
        "OriginDuration": 1000000,
        "OriginStatus": f["status"],
        "Overhead": 234567,
        "RequestAddr": "www.example.com",
        "RequestContentSize": 0,
        "RequestCount": n,
        "RequestHost": "www.example.com",
        "RequestMethod": f["method"],
        "RequestPath": f["uri"],
        "RequestPort": "-",
        "RequestProtocol": f["proto"],
        "RequestScheme": "http",
        "RetryAttempts": 0,
        "RouterName": "web@docker",
        "ServiceAddr": "172.18.0.3:80",
        "ServiceName": "web@docker",
        "ServiceURL": "http://172.18.0.3:80",
        "StartLocal": _rfc3339(f["time"], True),
        "StartUTC": _rfc3339(f["time"], True),
        "entryPointName": "web",
        "level": "info",
        "msg": "",
    }
    if f["referer"]:
        e["request_Referer"] = f["referer"]
    if f["ua"]:
        e["request_User-Agent"] = f["ua"]
    e["time"] = _rfc3339(f["time"])
    return e


def to_nginx_json(f: dict[str, Any], n: int) -> dict[str, Any]:
    """nginx's `log_format ... escape=json` with the usual keys (every variable quoted,
    so numbers are strings; the request line keeps its protocol)."""
    return {
        "time_iso8601": _rfc3339(f["time"]).replace("Z", "+00:00"),
        "remote_addr": f["ip"],
        "remote_user": f["user"],
        "request": f["request"],
        "status": str(f["status"]),
        "body_bytes_sent": str(f["size"]),
        "request_time": "0.001",
        "http_referer": f["referer"],
        "http_user_agent": f["ua"],
        "http_x_forwarded_for": "",
    }


CONVERTERS: dict[str, Callable[[dict[str, Any], int], dict[str, Any]]] = {
    "caddy-json": to_caddy,
    "traefik-json": to_traefik,
    "nginx-json": to_nginx_json,
}


def convert_log(src: str, dst: str, form: str) -> dict[str, int]:
    """Writes src's lines to dst in `form`, one for one. Returns counts."""
    conv = CONVERTERS[form]
    stats = {"lines": 0, "not_combined": 0, "not_http_lines": 0}
    with open(src, "rb") as fin, open(dst, "w", encoding="utf-8") as fout:
        for n, line in enumerate(fin, 1):
            line = line.rstrip(b"\n")
            stats["lines"] += 1
            f = parse_combined(line)
            if f is None:
                # Left as it is: the JSON reader will count it unparsed.
                stats["not_combined"] += 1
                fout.write(line.decode("utf-8", "replace").replace("\n", " ") + "\n")
                continue
            if not f["is_http"]:
                stats["not_http_lines"] += 1
            fout.write(json.dumps(conv(f, n), ensure_ascii=False, separators=(",", ":")) + "\n")
    return stats


# ---------------------------------------------------------------------------
# Running the binary
# ---------------------------------------------------------------------------

def run_check(binary: str, config: str | None, log: str, fmt: str = "combined") -> dict[str, Any]:
    cmd = [binary, "check", "--json", "--format", fmt]
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


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------

def summarise(attack: list[dict[str, Any]], benign: list[dict[str, Any]]) -> dict[str, Any]:
    """Detection and false-positive figures over the given per-IP records."""
    scored = [a for a in attack if a["category"] is not None]
    total = collections.Counter(a["category"] for a in scored)
    banned = collections.Counter(a["category"] for a in scored if a["banned"])
    nb = sum(1 for b in benign if b["banned"])
    return {
        "attack_ips": len(attack),
        "detection": {
            "banned": sum(banned.values()),
            "total": len(scored),
            "percent": pct(sum(banned.values()), len(scored)),
        },
        "categories": {
            c: {"banned": banned[c], "total": total[c], "percent": pct(banned[c], total[c])}
            for c in sorted(total, key=lambda c: (-total[c], c))
        },
        "benign": {"banned": nb, "total": len(benign), "percent": pct(nb, len(benign))},
    }


def folds(attack: list[dict[str, Any]], benign: list[dict[str, Any]]) -> dict[str, Any]:
    fams = sorted({a["family"] for a in attack} | {b["family"] for b in benign})
    per: dict[str, Any] = {}
    for fam in fams:
        inside = summarise([a for a in attack if a["family"] == fam],
                           [b for b in benign if b["family"] == fam])
        others = summarise([a for a in attack if a["family"] != fam],
                           [b for b in benign if b["family"] != fam])
        inside["rules_banning_benign"] = dict(collections.Counter(
            b["rule"] for b in benign if b["family"] == fam and b["banned"]).most_common())
        per[fam] = {"family": inside, "others": {k: others[k] for k in ("detection", "benign")}}
    det = [v["family"]["detection"]["percent"] for v in per.values() if v["family"]["detection"]["total"]]
    fp = [v["family"]["benign"]["percent"] for v in per.values() if v["family"]["benign"]["total"]]
    return {
        "families": per,
        "macro": {
            "detection_percent": round(sum(det) / len(det), 2) if det else 0.0,
            "detection_families": len(det),
            "benign_banned_percent": round(sum(fp) / len(fp), 2) if fp else 0.0,
            "benign_families": len(fp),
            "worst_detection": min(
                ((f, v["family"]["detection"]["percent"]) for f, v in per.items()
                 if v["family"]["detection"]["total"]), key=lambda x: x[1], default=None),
            "worst_benign": max(
                ((f, v["family"]["benign"]["percent"]) for f, v in per.items()
                 if v["family"]["benign"]["total"]), key=lambda x: x[1], default=None),
        },
    }


def measure(corpus: str, binary: str, config: str | None, form: str = "combined",
            want_folds: bool = False) -> dict[str, Any]:
    attack_log = os.path.join(corpus, "attack.log")
    benign_log = os.path.join(corpus, "benign.log")
    attack_labels = read_labels(os.path.join(corpus, "attack_labels.jsonl"))
    benign_labels = read_labels(os.path.join(corpus, "benign_labels.jsonl"))
    attack_lines = read_log_lines(attack_log)
    benign_lines = read_log_lines(benign_log)

    conversion: dict[str, Any] | None = None
    if form == "combined":
        attack_report = run_check(binary, config, attack_log)
        benign_report = run_check(binary, config, benign_log)
    else:
        with tempfile.TemporaryDirectory(prefix="measure-corpus-") as tmp:
            conv_attack = os.path.join(tmp, f"attack.{form}.log")
            conv_benign = os.path.join(tmp, f"benign.{form}.log")
            conversion = {
                "attack": convert_log(attack_log, conv_attack, form),
                "benign": convert_log(benign_log, conv_benign, form),
            }
            attack_report = run_check(binary, config, conv_attack, "json")
            benign_report = run_check(binary, config, conv_benign, "json")
            with open(conv_attack, encoding="utf-8") as fh:
                conversion["sample"] = fh.readline().rstrip("\n")
    attack_bans = bans_by_ip(attack_report)
    benign_bans = bans_by_ip(benign_report)

    # Attack side: IPs with at least one non-weak line, categorised by the first one.
    ip_category: dict[str, str] = {}
    ip_family: dict[str, str] = {}
    ip_first_family: dict[str, str] = {}
    ip_lines: dict[str, list[int]] = collections.defaultdict(list)
    for i, lab in enumerate(attack_labels):
        ip = lab["ip"]
        ip_lines[ip].append(int(lab.get("line", i + 1)))
        ip_first_family.setdefault(ip, family_of(lab.get("source")))
        if not lab.get("weak") and ip not in ip_category:
            ip_category[ip] = lab.get("category", "unknown")
            ip_family[ip] = family_of(lab.get("source"))
    label_by_line = {int(l.get("line", i + 1)): l for i, l in enumerate(attack_labels)}
    attack_recs = [
        {"ip": ip, "category": ip_category.get(ip),
         "family": ip_family.get(ip, ip_first_family[ip]), "banned": ip in attack_bans}
        for ip in ip_lines
    ]

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
        missed.append({"ip": ip, "category": cat, "family": ip_family[ip], "lines": lines})

    # Benign side: an IP's family is the source of its first line.
    benign_ips: dict[str, list[int]] = collections.defaultdict(list)
    benign_family: dict[str, str] = {}
    for i, lab in enumerate(benign_labels):
        benign_ips[lab["ip"]].append(int(lab.get("line", i + 1)))
        benign_family.setdefault(lab["ip"], family_of(lab.get("source")))
    benign_recs = [
        {"ip": ip, "family": benign_family[ip], "banned": ip in benign_bans,
         "rule": benign_bans.get(ip, {}).get("rule")}
        for ip in benign_ips
    ]
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
            "family": benign_family.get(ip),
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
    result: dict[str, Any] = {
        "binary": binary,
        "config": config,
        "as": form,
        "attack": {
            "lines": attack_report.get("lines"),
            "parsed": attack_report.get("parsed"),
            "ips": len(ip_lines),
            "ips_with_non_weak_line": len(ip_category),
            "banned": banned,
            "percent": pct(banned, len(ip_category)),
            "banned_any": len(attack_bans),
            "categories": categories,
            "missed": missed,
            "rule_hits": attack_report.get("rule_hits", {}),
            "elapsed_s": attack_report.get("elapsed_s"),
        },
        "benign": {
            "lines": benign_report.get("lines"),
            "parsed": benign_report.get("parsed"),
            "ips": len(benign_ips),
            "banned": len(benign_bans),
            "percent": pct(len(benign_bans), len(benign_ips)),
            "false_positives": fps,
            "rules_banning": dict(collections.Counter(f["rule"] for f in fps).most_common()),
            "rule_hits": benign_report.get("rule_hits", {}),
            "elapsed_s": benign_report.get("elapsed_s"),
        },
    }
    if conversion is not None:
        result["conversion"] = conversion
    if want_folds:
        result["folds"] = folds(attack_recs, benign_recs)
    return result


# ---------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------

def print_report(r: dict[str, Any], verbose: bool) -> None:
    a, b = r["attack"], r["benign"]
    print(f"binary: {r['binary']}" + (f"   config: {r['config']}" if r["config"] else "")
          + (f"   as: {r['as']}" if r["as"] != "combined" else ""))
    if "conversion" in r:
        c = r["conversion"]
        print(f"rewritten as {r['as']} and read with --format json: "
              f"{a['parsed']}/{a['lines']} attack and {b['parsed']}/{b['lines']} benign lines parsed; "
              f"{c['attack']['not_http_lines']} attack and {c['benign']['not_http_lines']} benign "
              f"lines have no METHOD TARGET HTTP/x request line (the product would not log them)")
        if verbose:
            print(f"  sample: {c['sample']}")
    print()
    print(f"Attack IPs with a non-weak line banned: {a['banned']}/{a['ips_with_non_weak_line']}"
          f" = {a['percent']:.2f}%   ({a['ips']} attack IPs in all, {a['banned_any']} banned)")
    for c, v in a["categories"].items():
        print(f"  {c:20} {v['banned']:5}/{v['total']:<5} {v['percent']:6.2f}%")
    print()
    print(f"Benign IPs banned: {b['banned']}/{b['ips']} = {b['percent']:.2f}%")
    if len(b["false_positives"]) > 20 and not verbose:
        for rule, n in b["rules_banning"].items():
            print(f"  {n:5} banned by {rule}")
    else:
        for fp in b["false_positives"]:
            print(f"  {fp['ip']:16} rule={fp['rule']} ({fp['category']}, {fp['severity']})"
                  f"  [{fp['family']}]")
            if verbose:
                for l in fp["lines"]:
                    print(f"      {l['line']:6}  {l['text']}")
    if verbose and a["missed"]:
        print()
        print(f"Missed attack IPs: {len(a['missed'])}")
        for m in a["missed"]:
            print(f"  {m['ip']}  ({m['category']}, {m['family']})")
            for l in m["lines"]:
                flag = "weak" if l["weak"] else "    "
                print(f"      {l['line']:6} {flag} {l['category'] or '':16} {l['text']}")
    if "folds" in r:
        print_folds(r["folds"])


def _fig(v: dict[str, Any]) -> str:
    return f"{v['banned']:4}/{v['total']:<4} {v['percent']:6.2f}%" if v["total"] else f"{'-':>17}"


def print_folds(f: dict[str, Any]) -> None:
    print()
    print("Per source family (an IP's family: the source of its first non-weak line, or first line)")
    print(f"  {'family':30} {'attack IPs banned':>17}   {'benign IPs banned':>17}"
          f"   | on all other families: {'detection':>17}   {'benign banned':>17}")
    for fam, v in f["families"].items():
        me, ot = v["family"], v["others"]
        print(f"  {fam:30} {_fig(me['detection'])}   {_fig(me['benign'])}"
              f"   | {'':23} {_fig(ot['detection'])}   {_fig(ot['benign'])}")
    m = f["macro"]
    print(f"  macro average over families: detection {m['detection_percent']:.2f}% "
          f"({m['detection_families']} families), benign banned {m['benign_banned_percent']:.2f}% "
          f"({m['benign_families']} families)")
    if m["worst_detection"]:
        print(f"  lowest detection: {m['worst_detection'][0]} {m['worst_detection'][1]:.2f}%;"
              f" most benign banned: {m['worst_benign'][0]} {m['worst_benign'][1]:.2f}%"
              if m["worst_benign"] else "")
    print()
    print("Categories within each family (attack IPs with a non-weak line banned)")
    for fam, v in f["families"].items():
        cats = v["family"]["categories"]
        if cats:
            print(f"  {fam}: " + ", ".join(
                f"{c} {x['banned']}/{x['total']}" for c, x in cats.items()))
        rules = v["family"].get("rules_banning_benign")
        if rules:
            print(f"  {fam}: benign banned by " + ", ".join(f"{r} {n}" for r, n in rules.items()))


def print_comparison(results: list[dict[str, Any]]) -> None:
    print()
    print("=" * 78)
    print(f"{'form':14} {'attack parsed':>15} {'detection':>20} {'benign parsed':>15} {'benign banned':>18}")
    for r in results:
        a, b = r["attack"], r["benign"]
        print(f"{r['as']:14} {a['parsed']:>7}/{a['lines']:<7} "
              f"{a['banned']:>5}/{a['ips_with_non_weak_line']:<4} {a['percent']:6.2f}%   "
              f"{b['parsed']:>6}/{b['lines']:<7} {b['banned']:>5}/{b['ips']:<5} {b['percent']:6.2f}%")
        top = list(b["rules_banning"].items())[:3]
        if top:
            print(f"{'':14} benign banned mostly by: " + ", ".join(f"{k} {v}" for k, v in top))


# ---------------------------------------------------------------------------
# Self-test of the converters
# ---------------------------------------------------------------------------

def self_test() -> int:
    cases = [
        (b'198.18.0.1 - bob [21/Nov/2026:10:00:04 +0000] "GET /?q=1%27%20or\\x22x HTTP/1.1" 200 512 '
         b'"https://ex.com/a" "Mozilla/5.0 (X11) \\xC3\\xA9"',
         {"ip": "198.18.0.1", "user": "bob", "method": "GET", "uri": '/?q=1%27%20or"x',
          "proto": "HTTP/1.1", "is_http": True, "status": 200, "size": 512,
          "referer": "https://ex.com/a", "ua": "Mozilla/5.0 (X11) \u00e9"}),
        (b'2001:db8::5 - - [21/Nov/2026:10:00:04 +0100] "\\x16\\x03\\x01\\x00" 400 0 "-" "-"',
         {"ip": "2001:db8::5", "user": "", "method": "\x16\x03\x01\x00", "uri": "", "proto": "",
          "is_http": False, "status": 400, "size": 0, "referer": "", "ua": ""}),
        (b'198.18.0.2 - - [21/Nov/2026:10:00:04 +0000] "-" 400 - "-" "-"',
         {"method": "", "uri": "", "is_http": False, "size": 0}),
        (b'198.18.0.3 - - [21/Nov/2026:10:00:04 +0000] "GET /a b HTTP/1.0" 404 9 "-" "\\xFF"',
         {"method": "GET", "uri": "/a b", "proto": "HTTP/1.0", "ua": "\ufffd"}),
    ]
    bad = 0
    for line, want in cases:
        f = parse_combined(line)
        if f is None:
            print(f"FAIL: did not parse {line!r}")
            bad += 1
            continue
        for k, v in want.items():
            if f[k] != v:
                print(f"FAIL: {line!r}: {k} = {f[k]!r}, want {v!r}")
                bad += 1
        c = json.loads(json.dumps(to_caddy(f, 1)))
        t = json.loads(json.dumps(to_traefik(f, 1)))
        checks = [
            (c["request"]["remote_ip"], f["ip"]), (c["request"]["uri"], f["uri"]),
            (c["request"]["method"], f["method"]), (c["status"], f["status"]),
            (c["request"]["headers"].get("User-Agent", [""])[0], f["ua"]),
            (c["ts"], f["time"].timestamp()),
            (t["ClientHost"], f["ip"]), (t["RequestPath"], f["uri"]),
            (t["RequestMethod"], f["method"]), (t["DownstreamStatus"], f["status"]),
            (t.get("request_User-Agent", ""), f["ua"]), (t.get("request_Referer", ""), f["referer"]),
            (datetime.datetime.fromisoformat(t["time"]).timestamp(), f["time"].timestamp()),
        ]
        for got, want_v in checks:
            if got != want_v:
                print(f"FAIL: {line!r}: converted {got!r}, want {want_v!r}")
                bad += 1
        g = json.loads(json.dumps(to_nginx_json(f, 1)))
        for got, want_v in [(g["remote_addr"], f["ip"]), (g["http_user_agent"], f["ua"]),
                            (g["status"], str(f["status"]))]:
            if got != want_v:
                print(f"FAIL: {line!r}: nginx-json {got!r}, want {want_v!r}")
                bad += 1
        if f["is_http"] and not g["request"].endswith(" " + f["proto"]):
            print(f"FAIL: nginx-json request line lost its protocol: {g['request']!r}")
            bad += 1
        if ":" in f["ip"] and not t["ClientAddr"].startswith("["):
            print(f"FAIL: IPv6 ClientAddr not bracketed: {t['ClientAddr']}")
            bad += 1
    if parse_combined(b"not a log line") is not None:
        print("FAIL: garbage parsed")
        bad += 1
    print("self-test: " + ("ok" if not bad else f"{bad} failure(s)"))
    return 1 if bad else 0


def main() -> None:
    ap = argparse.ArgumentParser(
        description="Measure security-monitor detection / false-positive rates on a labelled corpus.")
    ap.add_argument("corpus", metavar="CORPUS_DIR", nargs="?",
                    help="directory with attack.log, attack_labels.jsonl, benign.log, benign_labels.jsonl")
    ap.add_argument("--bin", default="target/release/security-monitor",
                    help="security-monitor binary (default: %(default)s)")
    ap.add_argument("--config", help="config file passed to `check --config`")
    ap.add_argument("--verbose", action="store_true",
                    help="list the lines of banned benign IPs and of missed attack IPs")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--folds", action="store_true",
                    help="also report per source family, the macro average, and leave-one-family-out")
    ap.add_argument("--as", dest="forms", action="append", choices=FORMS, metavar="FORMAT",
                    help="log form the traffic is replayed in: " + ", ".join(FORMS)
                    + " (default combined; repeat for several and a comparison)")
    ap.add_argument("--min-detection", type=float, metavar="PCT",
                    help="exit 1 if fewer than PCT%% of attack IPs with a non-weak line are banned")
    ap.add_argument("--max-false-positive", type=float, metavar="PCT",
                    help="exit 1 if more than PCT%% of benign IPs are banned")
    ap.add_argument("--self-test", action="store_true",
                    help="check the log-line converters on built-in lines and exit")
    args = ap.parse_args()
    if args.self_test:
        sys.exit(self_test())
    if not args.corpus:
        ap.error("CORPUS_DIR is required")
    forms = list(dict.fromkeys(args.forms or ["combined"]))

    results = []
    for form in forms:
        try:
            results.append(measure(args.corpus, args.bin, args.config, form, args.folds))
        except OSError as e:
            sys.stderr.write(f"cannot read corpus: {e}\n")
            sys.exit(2)
    if args.json:
        for result in results:
            if not args.verbose:
                for m in result["attack"]["missed"]:
                    m.pop("lines", None)
                for fp in result["benign"]["false_positives"]:
                    fp.pop("lines", None)
        out: Any = results[0] if len(results) == 1 else {"runs": results}
        json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        for i, result in enumerate(results):
            if i:
                print()
                print("=" * 78)
            print_report(result, args.verbose)
        if len(results) > 1:
            print_comparison(results)
    failed = []
    for result in results:
        tag = "" if len(results) == 1 else f" ({result['as']})"
        if args.min_detection is not None and result["attack"]["percent"] < args.min_detection:
            failed.append(f"detection {result['attack']['percent']:.2f}% is below {args.min_detection}%{tag}")
        if args.max_false_positive is not None and result["benign"]["percent"] > args.max_false_positive:
            failed.append(f"false positives {result['benign']['percent']:.2f}% are above "
                          f"{args.max_false_positive}%{tag}")
    for f in failed:
        sys.stderr.write(f"FAIL: {f}\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
