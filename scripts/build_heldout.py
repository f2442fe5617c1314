#!/usr/bin/env python3
"""Build a held-out proxy corpus for security-monitor from the public sources.

What the proxy is for
---------------------
The development corpus (``../shared/corpus``) is what the detection rules are tuned
on, so its figures flatter them.  The corpus's held-out half is built from the same
public sources, but it is not available locally.  This script rebuilds the
complement from those sources: every CRS regression test, PayloadsAllTheThings
payload and apache_logs client the development corpus does NOT use, labelled the way
the development corpus labels its own lines.  A rule change can then be judged on
data it was not written from.  With ``--split`` the result is also cut into two
halves, ``A`` and ``B``: write rules while looking at one half, report the other.

How it is built
---------------
It mirrors the conventions the development corpus demonstrably follows (they were
checked against it: its CRS lines reproduce byte-exact from the same CRS commit).
The development corpus is read only to exclude every ``source_ref`` it uses, to
avoid its IPs, and to borrow its User-Agent pools.

* CRS regression tests (``tests/regression/tests/REQUEST-9xx-*/*.yaml``): the first
  stage of a test with only standard headers, a form-encoded body (if any) and method
  GET/POST becomes one request line (a POST body is appended to the query, the URI
  is WHATWG-percent-encoded, then nginx ``\\xHH``-escaped).  Positives become attack
  lines, category by rule file; runs of unused tests are cut, in file order, into
  IPs of 1-6 or 8 lines.  Negatives whose description marks them as false-positive
  checks become benign lines, one per IP.  Positives of rules the development corpus
  does not map (913100, 920271-273, 921240) go to ``questionable_attack.*``.
* PayloadsAllTheThings: for each payload file the development corpus uses, as many
  unused payloads as it took (payloads equal to one of its payloads are skipped),
  each put in a per-category endpoint template, ~25% fully percent-encoded.
  Payloads of sibling files in the same directories go to ``siblings/`` only.
* elastic/examples apache_logs: only client IPs the development corpus leaves
  untouched.  An IP with a 404 on a CMS admin/login path is an attack (its probe
  lines only); three 404 CMS-spam IPs are questionable; every other IP is benign
  with all its lines, re-timed to November 2026.

All IPs are fresh in 198.18.0.0/15.  Everything is drawn from one fixed-seed random
generator, so the same inputs give byte-identical outputs.  ``--split`` assigns CRS
lines to a half by ``crc32(rule id) % 2`` (the same rule always lands in the same
half) and other lines by IP, each IP wholly in the half of its first line.

Sources
-------
Git clones, bare or not, read in place with ``git show HEAD:path`` / ``git ls-tree``
(nothing is copied into this repository):

  --crs      https://github.com/coreruleset/coreruleset            Apache-2.0 (required)
  --patt     https://github.com/swisskyrepo/PayloadsAllTheThings   MIT
  --elastic  https://github.com/elastic/examples                   Apache-2.0

``--patt`` or ``--elastic`` may be omitted; that source is then skipped.

Output (in OUT_DIR)
-------------------
  attack.log, attack_labels.jsonl              labelled attack lines
  benign.log, benign_labels.jsonl              labelled benign lines
  questionable_attack.log, ..._labels.jsonl    held back: not meant to be measured
  siblings/                                    sibling-file PATT attacks + a copy of benign
  stats.json, README.md                        counts, notes and source commits
  A/, B/  (with --split)                       attack.*, benign.* and README.md per half

Usage
-----
  git clone --depth 1 https://github.com/coreruleset/coreruleset /tmp/crs
  git clone --depth 1 https://github.com/swisskyrepo/PayloadsAllTheThings /tmp/patt
  git clone --depth 1 https://github.com/elastic/examples /tmp/elastic
  scripts/build_heldout.py /tmp/heldout --crs /tmp/crs --patt /tmp/patt --elastic /tmp/elastic --split
  scripts/measure_corpus.py --folds /tmp/heldout/B

  scripts/build_heldout.py OUT_DIR --crs DIR [--patt DIR] [--elastic DIR]
                           [--corpus DIR] [--split] [--json]

--corpus defaults to ``../shared/corpus`` beside the repository root.  A summary
(lines and IPs per source and category, per half with --split) is printed at the
end; --json prints it as one JSON object.  Exit status 2 on a bad argument or a
failing git command.  Python 3.11 standard library plus PyYAML (python3-yaml).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
import urllib.parse
import zlib
from pathlib import Path
from typing import Any

try:
    import yaml
except ImportError:          # reported by main(), after argument parsing
    yaml = None

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "corpus"
ELASTIC_FILE = "Common Data Formats/apache_logs/apache_logs"
CRS_TESTS = "tests/regression/tests"

SEED = "security-monitor-heldout-proxy-v1"
T0 = dt.datetime(2026, 11, 21, 0, 0, 0, tzinfo=dt.timezone.utc)
T_END = dt.datetime(2026, 11, 24, 23, 0, 0, tzinfo=dt.timezone.utc)
GAPS = [0, 0, 1, 1, 2, 3, 5]                 # seconds between lines of one IP (dev: 0/1 >> 2/3/5)
CHUNK_SIZES = [1, 2, 3, 4, 5, 6, 8]           # lines per attack IP (dev histogram)
CHUNK_WEIGHTS = [122, 58, 53, 43, 38, 29, 27]

Entry = tuple[dt.datetime, bytes, dict[str, Any]]     # (time, log line, label without "line")


class SourceError(Exception):
    """A source repository or file cannot be read (reported as a usage error)."""


# ---------------------------------------------------------------------------
# encoding, exactly as the dev corpus does it
# ---------------------------------------------------------------------------
PATHSET = set(b' "#<>`{}')     # WHATWG path percent-encode set (controls/non-ASCII added in penc)
QSET = set(b' "#<>\'')         # WHATWG special-query percent-encode set


def penc(s: str | bytes, qs: set[int]) -> str:
    """Percent-encode controls, non-ASCII bytes and the bytes in ``qs``."""
    b = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s
    return "".join("%%%02X" % c if (c < 0x20 or c >= 0x7F or c in qs) else chr(c) for c in b)


def ngx(s: str | bytes) -> str:
    """nginx access-log escaping of a field: " \\ controls and non-ASCII as \\xHH."""
    b = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s
    return "".join("\\x%02X" % c if (c in (0x22, 0x5C) or c < 0x20 or c >= 0x7F) else chr(c) for c in b)


def build_uri(uri: str | None, data: Any) -> str:
    """Request target of a CRS test: a body (``data``) is appended to the query."""
    uri = uri or "/"
    if isinstance(data, list):
        data = "\n".join(data)
    if isinstance(data, str):
        data = data.rstrip("\n")
    p, q = uri.split("?", 1) if "?" in uri else (uri, None)
    if data:
        q = data if q is None else q + "&" + data
    u = penc(p, PATHSET)
    if q is not None:
        u += "?" + penc(q, QSET)
    return u


def fmt_time(t: dt.datetime) -> str:
    """Access-log timestamp, e.g. ``21/Nov/2026:00:00:00 +0000``."""
    return t.strftime("%d/%b/%Y:%H:%M:%S +0000")


# ---------------------------------------------------------------------------
# git
# ---------------------------------------------------------------------------
def git(repo: str, *args: str) -> bytes:
    """Output of ``git -C repo ARGS``; a failure raises SourceError with git's message."""
    try:
        r = subprocess.run(["git", "-C", repo, *args], capture_output=True)
    except OSError as e:
        raise SourceError(f"cannot run git: {e}") from e
    if r.returncode != 0:
        msg = r.stderr.decode("utf-8", "replace").strip() or f"exit status {r.returncode}"
        raise SourceError(f"git -C {repo} {' '.join(args)}: {msg}")
    return r.stdout


def git_show(repo: str, path: str) -> bytes:
    """Contents of ``path`` at HEAD."""
    return git(repo, "show", "HEAD:" + path)


def git_head(repo: str) -> str:
    """Commit id of HEAD."""
    return git(repo, "rev-parse", "HEAD").decode().strip()


def git_ls(repo: str, *args: str) -> list[str]:
    """``git ls-tree --name-only HEAD ARGS``, one name per entry."""
    return git(repo, "ls-tree", "--name-only", *args).decode().split("\n")


# ---------------------------------------------------------------------------
# dev corpus: what it uses, and its UA pools
# ---------------------------------------------------------------------------
LINE_RE = re.compile(r'^(\S+) - - \[([^\]]+)\] "(.*)" (\d+) (\d+) "(.*)" "(.*)"$')
DEV_FILES = ("attack.log", "attack_labels.jsonl", "benign.log", "benign_labels.jsonl")


class DevCorpus:
    """The development corpus: its labels, used source_refs and IPs, and UA pools.

    ``attack_ua``: one UA per CRS/PATT attack IP (IPs whose payload is in the UA are
    left out); ``neg_ua``: the UAs of its CRS-negative lines.  Both are in logged
    (nginx-escaped) form.
    """

    def __init__(self, path: str):
        def read_log(name: str) -> list[str]:
            with open(os.path.join(path, name), encoding="utf-8", errors="surrogateescape") as fh:
                return fh.read().split("\n")

        def read_labels(name: str) -> list[dict[str, Any]]:
            with open(os.path.join(path, name), encoding="utf-8") as fh:
                return [json.loads(line) for line in fh]

        self.attack = read_labels("attack_labels.jsonl")
        self.benign = read_labels("benign_labels.jsonl")
        attack_log, benign_log = read_log("attack.log"), read_log("benign.log")
        labels = self.attack + self.benign
        self.refs = {lab.get("source_ref") for lab in labels if lab.get("source_ref")}
        self.ips = {lab["ip"] for lab in labels}
        self.attack_ua: list[str] = []
        seen = set()
        for lab in self.attack:
            if lab["source"] not in ("crs-regression", "payloadsallthethings"):
                continue
            if "user_agent" in (lab.get("location") or []) or lab["ip"] in seen:
                continue
            m = LINE_RE.match(attack_log[lab["line"] - 1])
            if m:
                seen.add(lab["ip"])
                self.attack_ua.append(m.group(7))
        self.neg_ua: list[str] = []
        for lab in self.benign:
            if lab["source"] == "crs-regression-negative" and "user_agent" not in (lab.get("location") or []):
                m = LINE_RE.match(benign_log[lab["line"] - 1])
                if m:
                    self.neg_ua.append(m.group(7))

    def patt_numbers(self) -> dict[str, set[int]]:
        """PATT file -> the payload numbers the dev corpus uses from it."""
        used: dict[str, set[int]] = collections.defaultdict(set)
        for lab in self.attack:
            if lab["source"] == "payloadsallthethings":
                f, n = lab["source_ref"][len("patt/"):].rsplit(":", 1)
                used[f].add(int(n))
        return used

    def elastic_lines(self) -> set[int]:
        """apache_logs line numbers the dev corpus uses."""
        return {int(lab["source_ref"].rsplit(":", 1)[1]) for lab in self.attack + self.benign
                if lab["source"] == "elastic-examples-apache_logs"}


# ---------------------------------------------------------------------------
# CRS regression tests
# ---------------------------------------------------------------------------
STD_H = {"user-agent", "host", "accept", "referer", "content-type", "content-length",
         "proxy-connection", "connection", "accept-encoding", "accept-language",
         "accept-charset", "keep-alive", "cache-control"}
STD_UA = {"OWASP CRS test agent", "OWASP ModSecurity Core Rule Set", "ModSecurity CRS 3 Tests"}

# Rules of the protocol files that the dev corpus maps to an attack category (only these
# rule ids of 920/921 appear there); every rule of 930-944 is taken, category by file.
PROTO_RULES = {"920270": "binary", "920440": "sensitive_file", "920500": "sensitive_file",
               "921110": "crlf_injection", "921120": "crlf_injection", "921130": "crlf_injection",
               "921150": "crlf_injection", "921151": "crlf_injection",
               "921160": "crlf_injection", "921190": "crlf_injection", "921200": "ldap_injection"}
# negatives of these protocol rules appear in the dev corpus
PROTO_NEG_RULES = {"913100", "920270", "920440", "920500", "920610", "921110", "921120",
                   "921130", "921160", "921190", "921200", "921210"}
ATTACK_FAMILIES = ("930", "931", "932", "933", "934", "941", "942", "943", "944")
# The dev corpus only takes negative tests whose description says they are false-positive /
# negative / "don't match" checks (181 of 181 eligible dev negatives match this; 0 of the 224
# eligible negatives that do not match are used: those are often real attacks that are
# "negative" only for one rule, e.g. "`/bin/cat /etc/passwd`" in 932230).
FP_DESC_RE = re.compile(r"false[ -]?positive|\bfps?\b|negative|do(n'?t| not) match|should ?(n[o']t|not)|"
                        r"must ?not|not (be )?match|no fp|allow ?list|legitimate|avoid|benign|not trigger|"
                        r"not a reliable|nothing should|not at start|is not|are not|no ldap|not ldap", re.I)
# positives put aside as questionable (not in the dev mapping; reported separately)
QUESTIONABLE_RULES = {"913100": "scanner_ua", "920271": "binary", "920272": "binary",
                      "920273": "binary", "921240": "ssrf"}


def crs_category(rule: str) -> str | None:
    """Attack category of a CRS rule id as the dev corpus maps it (None: not mapped)."""
    if rule in PROTO_RULES:
        return PROTO_RULES[rule]
    fam = rule[:3]
    if fam == "930":
        return "sensitive_file" if rule in ("930130", "930140") else "traversal"
    if fam == "934" and rule in ("934110", "934120"):
        return "ssrf"
    return {"931": "rfi", "932": "cmdi", "933": "php_injection", "934": "code_injection",
            "941": "xss", "942": "sqli", "943": "session_fixation",
            "944": "code_injection"}.get(fam)


def stage_ok(inp: dict[str, Any]) -> bool:
    """Whether a test stage's input can be written as one plain access-log line."""
    if inp.get("encoded_request") or inp.get("raw_request"):
        return False
    h = {k.lower(): v for k, v in (inp.get("headers") or {}).items()}
    if any(k not in STD_H for k in h):
        return False
    ct = h.get("content-type")
    if ct and not str(ct).lower().startswith("application/x-www-form-urlencoded"):
        return False
    return inp.get("method", "GET") in (None, "GET", "POST")


def polarity(stage: dict[str, Any]) -> str | None:
    """"pos" if the stage expects a rule to match, "neg" if it expects none, else None."""
    o = stage.get("output") or {}
    lg = o.get("log") or {}
    if lg.get("expect_ids") or o.get("log_contains"):
        return "pos"
    if lg.get("no_expect_ids") or o.get("no_log_contains"):
        return "neg"
    return None


def crs_items(crs: str) -> list[dict[str, Any]]:
    """Every usable CRS regression test of the REQUEST-9xx files, in tree and file order."""
    out = []
    for f in git_ls(crs, "-r", "HEAD", CRS_TESTS):
        if not f.endswith(".yaml") or "/REQUEST-9" not in f:
            continue
        d = yaml.safe_load(git_show(crs, f))
        if not isinstance(d, dict):
            continue
        rule = os.path.basename(f)[:6]
        for t in d.get("tests") or []:
            stages = [s.get("stage", s) for s in t.get("stages") or []]
            st = next((s for s in stages if stage_ok(s.get("input") or {})), None)
            if st is None:
                continue
            pol = polarity(st)
            if pol is None:
                continue
            inp = st["input"]
            h = {k.lower(): v for k, v in (inp.get("headers") or {}).items()}
            method = inp.get("method") or "GET"
            data = inp.get("data")
            if data and method == "POST":
                method = "GET"
            uri = build_uri(inp.get("uri"), data)
            ua = h.get("user-agent")
            ua = None if ua is None or ua in STD_UA else str(ua)
            ref = h.get("referer")
            ref = None if ref is None else str(ref)
            loc = []
            raw_uri = inp.get("uri") or "/"
            if "?" in raw_uri or data:
                loc.append("query")
            elif raw_uri not in ("/", "/get", "/post"):
                loc.append("path")
            if ua is not None:
                loc.append("user_agent")
            if ref is not None:
                loc.append("referer")
            desc = t.get("desc") or t.get("test_title")
            fp_desc = bool(FP_DESC_RE.search(str(desc or "")))
            desc = str(desc).strip()[:200] if desc else None
            out.append({"ref": f"{f}#test{t.get('test_id')}", "file": f, "rule": rule,
                        "pol": pol, "method": method, "uri": uri, "ua": ua, "referer": ref,
                        "location": loc, "desc": desc, "fp_desc": fp_desc})
    return out


# ---------------------------------------------------------------------------
# PayloadsAllTheThings
# ---------------------------------------------------------------------------
# endpoint templates per category with the dev corpus' frequencies ({P} = payload;
# "PATH:base" = the payload is the path after base)
PATT_TEMPLATES = {
    "cmdi": [("/admin/tools.php?cmd=ping&target={P}", 10), ("/api/v1/diag/nslookup?domain={P}", 10),
             ("/cgi-bin/status.cgi?ip={P}", 9), ("/index.php?ip={P}", 16), ("/ping.php?host={P}", 11)],
    "code_injection": [("/hello?name={P}", 1), ("/preview?content={P}", 2), ("/render?template={P}", 2)],
    "crlf_injection": [("/lang?set={P}", 2), ("/redirect?url={P}", 5), ("PATH:", 3)],
    "sqli": [("/api/v1/users?sort={P}", 12), ("/catalog/item.asp?ItemID={P}", 8),
             ("/index.php?id={P}", 8), ("/login.php?username={P}&password=x", 13),
             ("/news.php?article={P}", 12), ("/product.php?id={P}&cat=3", 8), ("/search?q={P}", 11)],
    "traversal": [("PATH:/cgi-bin/", 8), ("/download.php?file={P}", 11), ("/image?path={P}", 8),
                  ("/index.php?page={P}", 13), ("PATH:/static/", 6), ("/view?template={P}", 9)],
    "xss": [("/?s={P}", 14), ("/comment.php?name={P}", 14), ("/error?msg={P}", 8),
            ("/index.php?page={P}", 11), ("/profile?displayName={P}", 16), ("/search?q={P}", 15)],
}
FULL_ENCODE_SHARE = 0.25   # dev: ~76/301 payloads fully percent-encoded, the rest minimally
PATT_DIR_CATEGORY = {"CRLF Injection": "crlf_injection", "Command Injection": "cmdi",
                     "Directory Traversal": "traversal", "File Inclusion": "traversal",
                     "SQL Injection": "sqli", "Server Side Template Injection": "code_injection",
                     "XSS Injection": "xss"}
WEAK_SHORT = "payload of 3 characters or fewer (fuzzing character)"
SIBLING_LINES = 8          # payloads taken from each sibling file


def patt_payloads(patt: str, path: str) -> list[str]:
    """Payload lines numbered as the dev corpus numbers them: non-empty, '# ' comments dropped."""
    text = git_show(patt, path).decode("utf-8", "surrogateescape")
    return [p for p in text.split("\n") if p.strip() and not p.startswith("# ")]


def patt_request(rng: random.Random, cat: str, p: str) -> tuple[str, list[str]]:
    """Request target and label location of payload ``p`` in a template of ``cat``."""
    tmpls, weights = zip(*PATT_TEMPLATES[cat])
    t = rng.choices(tmpls, weights)[0]
    if t.startswith("PATH:"):
        if cat == "crlf_injection" and not p.startswith("/"):
            t = "/redirect?url={P}"
        else:
            base = t[5:]
            path = (base + (p[1:] if p.startswith("/") else p)) if base else p
            return penc(path, PATHSET), ["path"]
    if rng.random() < FULL_ENCODE_SHARE:
        enc = urllib.parse.quote(p, safe="%") if re.search(r"%[0-9A-Fa-f]{2}", p) else urllib.parse.quote(p, safe="")
    else:
        enc = penc(p, QSET)
    return t.replace("{P}", enc), ["query"]


def is_short(p: str) -> bool:
    """A payload of 3 characters or fewer once unquoted and stripped (a lone fuzzing character)."""
    return len(urllib.parse.unquote(p).strip()) <= 3


# ---------------------------------------------------------------------------
# Elastic apache_logs
# ---------------------------------------------------------------------------
APACHE_RE = re.compile(rb'^(\S+) (\S+) (\S+) \[([^\]]+)\] "(.*?)" (\d{3}) (\S+) "(.*?)" "(.*?)"$')
# probe lines, as the dev corpus labels them (404 on CMS admin/login paths; HEAD fckeditor burst)
PROBE_RE = re.compile(rb"^(GET|HEAD|POST) \S*(wp-login\.php|wp-admin/|/administrator/|/admin\.php|fckeditor)", re.I)
# 404 spam/probe lines that the dev corpus has no analogue of -> questionable, kept out
QUESTION_RE = re.compile(rb"^(GET|POST) (/node/add/|/user/register|\S*Result:\+chosen\+nickname)", re.I)
ELASTIC_SHIFT = dt.datetime(2026, 11, 21) - dt.datetime(2015, 5, 17)
FCK_WEAK = "generic path; suspicious only as part of a burst of probes/404s"


def elastic_raw_line(n: int, m: re.Match[bytes], lab: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An apache_logs line kept verbatim (bar IP, time and '-' bytes) for an attack-side group."""
    lab.update({"source": "elastic-examples-apache_logs", "source_ref": f"elastic/{ELASTIC_FILE}:{n}",
                "location": ["path"]})
    size = m.group(7)
    return ({"request_raw": m.group(5), "status": int(m.group(6)),
             "bytes": 0 if size == b"-" else int(size),
             "referer_raw": m.group(8), "ua_raw": m.group(9)}, lab)


# ---------------------------------------------------------------------------
# the build
# ---------------------------------------------------------------------------
class Builder:
    """Builds the corpus.  The order of the calls fixes the random draws, so main() keeps it.

    An attack-side *group* is the lines of one IP: ``{"ua": pool UA, "lines": [(fields,
    label), ...]}``; IPs and times are drawn when the groups are rendered.
    """

    def __init__(self, dev: DevCorpus):
        self.dev = dev
        self.rng = random.Random(SEED)
        self.taken_ips = set(dev.ips)
        self.notes: collections.Counter[str] = collections.Counter()
        self.attack_groups: list[dict[str, Any]] = []
        self.question_groups: list[dict[str, Any]] = []
        self.sibling_groups: list[dict[str, Any]] = []
        self.benign_entries: list[Entry] = []
        self.crs_negatives: list[dict[str, Any]] = []
        self.elastic_unparsed: list[int] = []

    def new_ip(self) -> str:
        """A fresh IP in 198.18.0.0/15, distinct from the dev corpus' and earlier ones."""
        while True:
            ip = "198.%d.%d.%d" % (self.rng.choice((18, 19)), self.rng.randrange(256), self.rng.randrange(1, 255))
            if ip not in self.taken_ips:
                self.taken_ips.add(ip)
                return ip

    def rand_start(self) -> dt.datetime:
        """A start time uniform over [T0, T_END)."""
        span = int((T_END - T0).total_seconds())
        return T0 + dt.timedelta(seconds=self.rng.randrange(span))

    def add_crs(self, crs: str) -> None:
        """CRS positives -> attack / questionable groups; eligible negatives kept for add_crs_negatives."""
        rng = self.rng
        by_file = collections.defaultdict(list)
        for it in crs_items(crs):
            by_file[it["file"]].append(it)
        for _, items in sorted(by_file.items()):
            # positives in file order; runs of not-yet-used ones are chunked into IPs
            run, runs = [], []
            for it in items:
                if it["pol"] != "pos":
                    continue
                cat = crs_category(it["rule"])
                q = QUESTIONABLE_RULES.get(it["rule"])
                if cat is None and q is None:
                    continue
                if it["ref"] in self.dev.refs:
                    self.notes["crs_pos_in_dev"] += 1
                    if run:
                        runs.append(run)
                        run = []
                    continue
                it["category"] = cat or q
                it["questionable"] = cat is None
                run.append(it)
            if run:
                runs.append(run)
            for run in runs:
                i = 0
                while i < len(run):
                    n = rng.choices(CHUNK_SIZES, CHUNK_WEIGHTS)[0]
                    chunk = run[i:i + n]
                    i += n
                    # questionable items never share an IP with kept ones
                    for qflag in (False, True):
                        part = [c for c in chunk if c["questionable"] == qflag]
                        if not part:
                            continue
                        ip_ua = rng.choice(self.dev.attack_ua)
                        lines = []
                        for c in part:
                            lab = {"category": c["category"], "source": "crs-regression",
                                   "source_ref": c["ref"], "location": c["location"]}
                            if c["desc"]:
                                lab["desc"] = c["desc"]
                            lines.append(({"method": c["method"], "uri": c["uri"], "status": 200,
                                           "bytes": rng.randint(150, 12000),
                                           "referer": c["referer"], "ua": c["ua"]}, lab))
                        (self.question_groups if qflag else self.attack_groups).append(
                            {"ua": ip_ua, "lines": lines})
            for it in items:
                if it["pol"] != "neg":
                    continue
                if it["ref"] in self.dev.refs:
                    self.notes["crs_neg_in_dev"] += 1
                elif not it["fp_desc"]:
                    self.notes["crs_neg_skipped_desc_not_fp"] += 1
                elif it["rule"][:3] in ATTACK_FAMILIES or it["rule"] in PROTO_NEG_RULES:
                    self.crs_negatives.append(it)

    def _patt_groups(self, patt: str, files_counts: list[tuple[str, int]], note: str,
                     dev_patt: dict[str, set[int]], dev_text: set[str]) -> list[dict[str, Any]]:
        """Groups of ``k`` sampled unused payloads of each (file, k), chunked into IPs."""
        rng = self.rng
        groups = []
        for f, k in files_counts:
            cat = PATT_DIR_CATEGORY[f.split("/")[0]]
            P = patt_payloads(patt, f)
            unused = [n for n in range(1, len(P) + 1) if n not in dev_patt.get(f, ())]
            cand = [n for n in unused if P[n - 1] not in dev_text]
            self.notes[note + "_dup_payload_skipped"] += len(unused) - len(cand)
            pick = sorted(rng.sample(cand, min(k, len(cand))))
            i = 0
            while i < len(pick):
                n = rng.choices(CHUNK_SIZES, CHUNK_WEIGHTS)[0]
                chunk = pick[i:i + n]
                i += n
                lines = []
                for num in chunk:
                    p = P[num - 1]
                    uri, loc = patt_request(rng, cat, p)
                    lab = {"category": cat}
                    if is_short(p):
                        lab["weak"] = WEAK_SHORT
                    lab.update({"source": "payloadsallthethings", "source_ref": f"patt/{f}:{num}",
                                "location": loc})
                    lines.append(({"method": "GET", "uri": uri, "status": 200,
                                   "bytes": rng.randint(150, 12000), "referer": None, "ua": None}, lab))
                groups.append({"ua": rng.choice(self.dev.attack_ua), "lines": lines})
        return groups

    def add_patt(self, patt: str) -> None:
        """PATT payloads of the dev corpus' files -> attack groups; of their sibling files -> siblings."""
        dev_patt = self.dev.patt_numbers()
        dev_text = set()
        for f, ns in dev_patt.items():
            P = patt_payloads(patt, f)
            dev_text.update(P[n - 1] for n in ns if n <= len(P))
        dev_counts = sorted((f, len(ns)) for f, ns in dev_patt.items())
        self.attack_groups += self._patt_groups(patt, dev_counts, "patt", dev_patt, dev_text)
        sib = [(f, SIBLING_LINES)
               for d in sorted({os.path.dirname(f) for f in dev_patt})
               for f in git_ls(patt, "HEAD", d + "/")
               if f and f not in dev_patt]
        self.sibling_groups = self._patt_groups(patt, sib, "patt_sibling", dev_patt, dev_text)

    def add_elastic(self, elastic: str) -> None:
        """apache_logs IPs the dev corpus leaves untouched -> attack, questionable or benign."""
        raw = git_show(elastic, ELASTIC_FILE).split(b"\n")
        if raw and raw[-1] == b"":
            raw.pop()
        ip_of = [r.split(b" ", 1)[0] for r in raw]
        dev_ips = {ip_of[n - 1] for n in self.dev.elastic_lines()}
        by_ip = collections.defaultdict(list)
        for n, r in enumerate(raw, 1):
            if ip_of[n - 1] not in dev_ips:
                by_ip[ip_of[n - 1]].append(n)
        for ns in by_ip.values():
            parsed = []
            for n in ns:
                m = APACHE_RE.match(raw[n - 1])
                if m:
                    parsed.append((n, m))
                else:
                    self.elastic_unparsed.append(n)
            probes = [(n, m) for n, m in parsed if m.group(6) == b"404" and PROBE_RE.match(m.group(5))]
            quest = [(n, m) for n, m in parsed if m.group(6) == b"404" and QUESTION_RE.match(m.group(5))]
            if probes:
                # attack: the probe lines only (dev drops such an IP's other lines)
                lines = []
                for n, m in probes:
                    lab = {"category": "sensitive_file"}
                    if m.group(5).startswith(b"HEAD") and b"fckeditor" in m.group(5).lower():
                        lab["weak"] = FCK_WEAK
                    lines.append(elastic_raw_line(n, m, lab))
                self.attack_groups.append({"ua": self.rng.choice(self.dev.attack_ua), "lines": lines})
                self.notes["elastic_attack_ip_other_lines_dropped"] += len(ns) - len(probes)
                continue
            if quest:
                lines = [elastic_raw_line(n, m, {"category": "sensitive_file"}) for n, m in quest]
                for _, lab in lines:
                    lab["desc"] = "questionable: 404 CMS spam/registration probe"
                self.question_groups.append({"ua": self.rng.choice(self.dev.attack_ua), "lines": lines})
                self.notes["elastic_questionable_ip_other_lines_dropped"] += len(ns) - len(quest)
                continue
            nip = self.new_ip()
            for n, m in parsed:
                t = dt.datetime.strptime(m.group(4).decode(), "%d/%b/%Y:%H:%M:%S %z") + ELASTIC_SHIFT
                size = m.group(7)
                line = b"%s %s %s [%s] \"%s\" %s %s \"%s\" \"%s\"" % (
                    nip.encode(), m.group(2), m.group(3), fmt_time(t).encode(), m.group(5), m.group(6),
                    b"0" if size == b"-" else size, m.group(8), m.group(9))
                self.benign_entries.append((t, line, {"ip": nip, "source": "elastic-examples-apache_logs",
                                                      "source_ref": f"elastic/{ELASTIC_FILE}:{n}",
                                                      "tags": ["real_log"]}))
        self.notes["elastic_unparsed_dropped"] = len(self.elastic_unparsed)

    def add_crs_negatives(self) -> None:
        """The negatives kept by add_crs -> benign lines, one IP each."""
        rng = self.rng
        for it in self.crs_negatives:
            ip = self.new_ip()
            t = self.rand_start()
            # pool UAs come from dev log lines and are already in logged (escaped) form
            ua = ngx(it["ua"]) if it["ua"] is not None else rng.choice(self.dev.neg_ua)
            ref = ngx(it["referer"]) if it["referer"] is not None else "-"
            line = '%s - - [%s] "%s %s HTTP/1.1" 200 %d "%s" "%s"' % (
                ip, fmt_time(t), it["method"], ngx(it["uri"]), rng.randint(600, 20000), ref, ua)
            lab = {"ip": ip, "source": "crs-regression-negative", "source_ref": it["ref"],
                   "location": it["location"]}
            if it["desc"]:
                lab["desc"] = it["desc"]
            lab["tags"] = ["crs_fp_regression"]
            self.benign_entries.append((t, line.encode("utf-8", "surrogateescape"), lab))

    def render(self, groups: list[dict[str, Any]]) -> list[Entry]:
        """Log lines of attack-side groups: a fresh IP and start time per group."""
        entries = []
        for g in groups:
            ip = self.new_ip()
            t = self.rand_start()
            for k, (f, lab) in enumerate(g["lines"]):
                if k:
                    t = t + dt.timedelta(seconds=self.rng.choice(GAPS))
                if "request_raw" in f:
                    ua = f["ua_raw"] if f["ua_raw"] != b"-" else g["ua"].encode("utf-8", "surrogateescape")
                    line = b"%s - - [%s] \"%s\" %d %d \"%s\" \"%s\"" % (
                        ip.encode(), fmt_time(t).encode(), f["request_raw"], f["status"], f["bytes"],
                        f["referer_raw"], ua)
                else:
                    ref = ngx(f["referer"]) if f["referer"] is not None else "-"
                    # the pool UA is already in nginx-escaped form (taken from dev log lines)
                    ua_s = ngx(f["ua"]) if f["ua"] is not None else g["ua"]
                    line = ('%s - - [%s] "%s %s HTTP/1.1" %d %d "%s" "%s"' % (
                        ip, fmt_time(t), f["method"], ngx(f["uri"]), f["status"], f["bytes"], ref,
                        ua_s)).encode("utf-8", "surrogateescape")
                entries.append((t, line, dict({"ip": ip}, **lab)))
        return entries


def write_log(dirpath: str, prefix: str, entries: list[Entry]) -> list[Entry]:
    """Write PREFIX.log and PREFIX_labels.jsonl sorted by time (stable); return the sorted entries."""
    os.makedirs(dirpath, exist_ok=True)
    entries = sorted(entries, key=lambda e: e[0])
    with open(os.path.join(dirpath, prefix + ".log"), "wb") as fl, \
            open(os.path.join(dirpath, prefix + "_labels.jsonl"), "w", encoding="utf-8") as fj:
        for i, (_, line, lab) in enumerate(entries, 1):
            assert b"\n" not in line
            fl.write(line + b"\n")
            out = {"line": i}
            out.update(lab)
            fj.write(json.dumps(out, ensure_ascii=False) + "\n")
    return entries


def count_by(labels: list[dict[str, Any]]) -> dict[str, Any]:
    """Lines and IPs in all and per "source / category"."""
    c: collections.Counter[tuple[str, str]] = collections.Counter()
    ips = collections.defaultdict(set)
    for lab in labels:
        key = (lab["source"], lab.get("category", "-"))
        c[key] += 1
        ips[key].add(lab["ip"])
    return {"lines": len(labels), "ips": len({lab["ip"] for lab in labels}),
            "by": {f"{k[0]} / {k[1]}": {"lines": v, "ips": len(ips[k])} for k, v in sorted(c.items())}}


# ---------------------------------------------------------------------------
# split into halves A and B
# ---------------------------------------------------------------------------
def half_key(lab: dict[str, Any]) -> str:
    """What decides a line's half: the CRS rule id for CRS lines, else the IP."""
    if lab.get("source", "").startswith("crs"):
        return lab.get("source_ref", "").split("/")[-1].split(".")[0]
    return lab["ip"]


def split_halves(out_dir: str) -> dict[str, dict[str, Any]]:
    """Write OUT_DIR/A and OUT_DIR/B from the built logs; return their counts.

    An IP goes wholly to the half ``crc32(half_key(first line)) % 2`` (0 = A, 1 = B);
    labels' ``line`` is renumbered within the half.
    """
    counts: dict[str, dict[str, Any]] = {"A": {}, "B": {}}
    for kind in ("attack", "benign"):
        with open(os.path.join(out_dir, f"{kind}.log"), "rb") as fh:
            lines = fh.read().split(b"\n")
        with open(os.path.join(out_dir, f"{kind}_labels.jsonl"), encoding="utf-8") as fh:
            labels = [json.loads(line) for line in fh]
        half: dict[str, int] = {}
        for d in labels:
            half.setdefault(d["ip"], zlib.crc32(half_key(d).encode()) % 2)
        out: dict[int, tuple[list[bytes], list[dict[str, Any]]]] = {0: ([], []), 1: ([], [])}
        for d in labels:
            log, labs = out[half[d["ip"]]]
            log.append(lines[d["line"] - 1])
            labs.append(dict(d, line=len(log)))
        for h, name in ((0, "A"), (1, "B")):
            log, labs = out[h]
            hdir = os.path.join(out_dir, name)
            os.makedirs(hdir, exist_ok=True)
            with open(os.path.join(hdir, f"{kind}.log"), "wb") as fh:
                fh.write(b"\n".join(log) + b"\n")
            with open(os.path.join(hdir, f"{kind}_labels.jsonl"), "w", encoding="utf-8") as fh:
                for e in labs:
                    fh.write(json.dumps(e) + "\n")
            counts[name][kind] = count_by(labs)
    return counts


# ---------------------------------------------------------------------------
# README and summary
# ---------------------------------------------------------------------------
SOURCE_NAMES = {"coreruleset": "coreruleset/coreruleset (Apache-2.0)",
                "PayloadsAllTheThings": "swisskyrepo/PayloadsAllTheThings (MIT)",
                "elastic_examples": "elastic/examples, apache_logs (Apache-2.0)"}


def count_table(title: str, c: dict[str, Any]) -> list[str]:
    """Markdown table lines of a count_by() result."""
    out = [f"**{title}**: {c['lines']:,} lines, {c['ips']:,} IPs", "",
           "| source / category | lines | IPs |", "|---|---:|---:|"]
    out += [f"| {k} | {v['lines']:,} | {v['ips']:,} |" for k, v in c["by"].items()]
    return out + [""]


def write_readmes(out_dir: str, st: dict[str, Any], halves: dict[str, dict[str, Any]] | None) -> None:
    """A short README.md in OUT_DIR (and in A/, B/ with --split): what, from which commits, counts."""
    src = ["Sources (git HEAD, read in place):", ""]
    src += [f"* {SOURCE_NAMES[k]}: `{v}`" for k, v in st["commits"].items()]
    src += [f"* {SOURCE_NAMES[k]}: skipped (not given)" for k in st.get("skipped_sources", [])]
    lines = [
        "# Held-out proxy corpus", "",
        "Built by `scripts/build_heldout.py` from public sources, leaving out every source line the",
        "development corpus uses: measure detection on payloads the rules were never tuned on.",
        "Deterministic: the same sources and development corpus give byte-identical logs.",
        "Local measurement only; not the official held-out half.", "", *src, "",
        "## Files", "",
        "* `attack.log` / `attack_labels.jsonl`, `benign.log` / `benign_labels.jsonl`: the measured logs",
        "* `questionable_attack.*`: held back, not measured (rules or probes the development corpus has no mapping for)",
        "* `siblings/`: payloads of sibling PATT files the development corpus never uses, with a copy of benign",
        "* `stats.json`: these counts, build notes and commits",
    ]
    if halves:
        lines.append("* `A/`, `B/`: halves; CRS lines by `crc32(rule id) % 2`, other lines by IP, each IP whole")
    lines += ["", "## Counts", ""]
    for key, title in (("attack", "attack"), ("benign", "benign"),
                       ("questionable_attack", "questionable_attack"), ("siblings_attack", "siblings/attack")):
        lines += count_table(title, st[key])
    with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    for name, c in (halves or {}).items():
        hl = [f"# Held-out proxy corpus, half {name}", "",
              f"Half {name} of the held-out proxy corpus in the parent directory (see ../README.md):",
              f"each IP whole, in this half when `crc32(key) % 2 == {0 if name == 'A' else 1}` for its first line,",
              "the key being the CRS rule id for CRS lines and the IP otherwise. Labels' `line` is",
              "renumbered. Write rules from one half, report the other.", "", *src, "", "## Counts", ""]
        hl += count_table("attack", c["attack"]) + count_table("benign", c["benign"])
        with open(os.path.join(out_dir, name, "README.md"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(hl))


def print_summary(summary: dict[str, Any]) -> None:
    """Human-readable summary: lines and IPs per source and category (and per half)."""
    print(f"built {summary['out_dir']}")
    for k, v in summary["commits"].items():
        print(f"  {k:22} {v}")
    for k in summary.get("skipped_sources", []):
        print(f"  {k:22} skipped")

    blocks = [(key, summary[key]) for key in ("attack", "benign", "questionable_attack", "siblings_attack")]
    blocks += [(f"{name}/{kind}", c[kind]) for name, c in summary.get("halves", {}).items()
               for kind in ("attack", "benign")]
    w = max(len(k) for _, c in blocks for k in c["by"]) + 2
    for title, c in blocks:
        print(f"{title:{w + 2}} {c['lines']:6} lines {c['ips']:5} IPs")
        for k, v in c["by"].items():
            print(f"  {k:{w}} {v['lines']:6}       {v['ips']:5}")


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------
def check_repo(ap: argparse.ArgumentParser, flag: str, path: str, required: list[str]) -> str:
    """Exit 2 (usage error naming ``flag``) unless ``path`` is a git repo whose HEAD has ``required``."""
    if not os.path.isdir(path):
        ap.error(f"{flag} {path}: no such directory")
    try:
        git(path, "rev-parse", "--verify", "HEAD^{commit}")
    except SourceError as e:
        ap.error(f"{flag} {path}: not a git repository with a HEAD commit ({e})")
    for p in required:
        try:
            git(path, "cat-file", "-e", "HEAD:" + p)
        except SourceError:
            ap.error(f"{flag} {path}: HEAD has no {p!r}: is this the right repository?")
    return path


def main() -> None:
    """Parse the arguments, build, optionally split, write stats/READMEs and print the summary."""
    ap = argparse.ArgumentParser(
        description="Build a held-out proxy access-log corpus from CRS regression tests, "
                    "PayloadsAllTheThings and elastic/examples, excluding what the development corpus uses.")
    ap.add_argument("out_dir", metavar="OUT_DIR", help="output directory (created if missing)")
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), metavar="DIR",
                    help="development corpus directory (default: %(default)s)")
    ap.add_argument("--crs", required=True, metavar="DIR", help="git clone of coreruleset/coreruleset")
    ap.add_argument("--patt", metavar="DIR", help="git clone of swisskyrepo/PayloadsAllTheThings (omit: skipped)")
    ap.add_argument("--elastic", metavar="DIR", help="git clone of elastic/examples (omit: skipped)")
    ap.add_argument("--split", action="store_true", help="also write halves OUT_DIR/A and OUT_DIR/B")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = ap.parse_args()
    if yaml is None:
        sys.stderr.write("build_heldout.py: PyYAML is required: apt-get install python3-yaml\n")
        sys.exit(2)

    missing = [f for f in DEV_FILES if not os.path.isfile(os.path.join(args.corpus, f))]
    if missing:
        ap.error(f"--corpus {args.corpus}: not a corpus directory (missing {', '.join(missing)})")
    if os.path.realpath(args.out_dir) == os.path.realpath(args.corpus):
        ap.error("OUT_DIR must not be the --corpus directory")
    try:
        dev = DevCorpus(args.corpus)
    except (OSError, ValueError, KeyError) as e:
        ap.error(f"--corpus {args.corpus}: cannot read: {e}")
    check_repo(ap, "--crs", args.crs, [CRS_TESTS])
    if args.patt:
        check_repo(ap, "--patt", args.patt, sorted(dev.patt_numbers()))
    if args.elastic:
        check_repo(ap, "--elastic", args.elastic, [ELASTIC_FILE])
    skipped = []
    for flag, key, given in (("--patt", "PayloadsAllTheThings", args.patt),
                             ("--elastic", "elastic_examples", args.elastic)):
        if not given:
            skipped.append(key)
            sys.stderr.write(f"note: {flag} not given: {SOURCE_NAMES[key]} skipped\n")

    out = args.out_dir
    try:
        b = Builder(dev)
        b.add_crs(args.crs)
        if args.patt:
            b.add_patt(args.patt)
        if args.elastic:
            b.add_elastic(args.elastic)
        b.add_crs_negatives()
        att = write_log(out, "attack", b.render(b.attack_groups))
        ben = write_log(out, "benign", b.benign_entries)
        q = write_log(out, "questionable_attack", b.render(b.question_groups))
        sdir = os.path.join(out, "siblings")
        s = write_log(sdir, "attack", b.render(b.sibling_groups))
        for fn in ("benign.log", "benign_labels.jsonl"):
            shutil.copyfile(os.path.join(out, fn), os.path.join(sdir, fn))
        commits = {"coreruleset": git_head(args.crs)}
        if args.patt:
            commits["PayloadsAllTheThings"] = git_head(args.patt)
        if args.elastic:
            commits["elastic_examples"] = git_head(args.elastic)
    except SourceError as e:
        sys.stderr.write(f"build_heldout.py: {e}\n")
        sys.exit(2)

    st: dict[str, Any] = {"commits": commits}
    for key, entries in (("attack", att), ("benign", ben), ("questionable_attack", q), ("siblings_attack", s)):
        st[key] = count_by([e[2] for e in entries])
    st["notes"] = dict(b.notes)
    st["elastic_unparsed_lines"] = b.elastic_unparsed
    if skipped:
        st["skipped_sources"] = skipped
    with open(os.path.join(out, "stats.json"), "w") as fh:
        json.dump(st, fh, indent=2)
    halves = split_halves(out) if args.split else None
    write_readmes(out, st, halves)

    summary = {"out_dir": out, **{k: v for k, v in st.items() if k not in ("notes", "elastic_unparsed_lines")}}
    if halves:
        summary["halves"] = halves
    if args.json:
        json.dump(summary, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print_summary(summary)


if __name__ == "__main__":
    main()
