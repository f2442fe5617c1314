#!/usr/bin/env bash
# Regex cost on hostile input: `security-monitor check` on lines crafted to be slow to
# match, next to ordinary lines of the same size. A benchmark, not a test: it prints
# time and peak RSS per case and exits non-zero only when something failed to run.
#
# usage: bench/hostile_regex.sh [N_LINES [FIELD_BYTES]]
#   N_LINES      lines per case (default 250)
#   FIELD_BYTES  bytes of each crafted field: query, referer, user agent (default 2000,
#                so a line is about 6 KB before percent-encoding)
# environment:
#   SECMON_BIN   use this binary instead of building target/release/security-monitor
#   BENCH_DIR    keep the generated logs here instead of a temp dir
#   BENIGN_LOG   also run this log (e.g. ../shared/corpus/benign.log)
#
# Cases:
#   crafted   random mixes of the characters and words the built-in rules start with
#             (quotes, brackets, %, ;, =, -, /, \, select, union, script, or, sleep ...),
#             so the lazy DFA meets a new state at nearly every byte
#   benign    the same number of lines, same field sizes, of ordinary query words and a
#             browser user agent
#   padded    the crafted mix at 60 KB in the query (under limits.max_line_bytes), which
#             the engine reads only at both ends and reports as oversized-field
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
N=${1:-250}
FIELD=${2:-2000}

die() { echo "hostile_regex.sh: error: $*" >&2; exit 1; }
note() { echo "hostile_regex.sh: $*" >&2; }
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }
now() { date +%s.%N; }

[[ $N =~ ^[0-9]+$ && $N -gt 0 ]] || die "N_LINES must be a positive integer, got '$N'"
[[ $FIELD =~ ^[0-9]+$ && $FIELD -gt 0 ]] || die "FIELD_BYTES must be a positive integer, got '$FIELD'"
command -v python3 >/dev/null || die "python3 is required"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is required for peak RSS (Debian package 'time')"

if [[ -n ${BENCH_DIR:-} ]]; then
    mkdir -p "$BENCH_DIR"
    WORK=$(cd "$BENCH_DIR" && pwd)
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/secmon-hostile.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
fi

if [[ -n ${SECMON_BIN:-} ]]; then
    BIN=$SECMON_BIN
    [[ -x $BIN ]] || die "SECMON_BIN is not an executable: $BIN"
else
    BIN=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/security-monitor
    newer=""
    [[ -x $BIN ]] && newer=$(cd "$REPO_ROOT" && find src Cargo.toml Cargo.lock -newer "$BIN" -type f -print -quit 2>/dev/null || true)
    if [[ ! -x $BIN || -n $newer ]]; then
        note "release binary missing or stale: cargo build --release"
        (cd "$REPO_ROOT" && cargo build --release --bin security-monitor) >&2 || die "cargo build --release failed"
    fi
fi

# gen KIND N FIELD_BYTES QUERY_BYTES > log   (deterministic: a fixed seed per kind)
gen() {
    python3 - "$@" <<'EOF'
import random, sys
kind, n, size, qsize = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = random.Random(kind)
CRAFTED = ["'", '"', "`", "(", ")", "<", ">", "%27", "%3c", ";", "=", "-", "--", "/",
           "\\\\", "*", "|", "&", "$", "{", "}", "[", "]", " ", "+", "select", "union",
           "script", "or", "and", "sleep", "1", "0x", "on", "a", "..", "%2e", "@", "#",
           ",", ":", "!", "?", "~", "^", "x"]
WORDS = ["shoes", "red", "size", "page", "sort", "price", "asc", "category", "blue",
         "winter", "sale", "id", "lang", "en", "utm_source", "newsletter", "q", "term"]
UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/120.0 Safari/537.36")
def crafted(length):
    out, total = [], 0
    while total < length:
        t = r.choice(CRAFTED); out.append(t); total += len(t)
    return "".join(out).replace(" ", "%20").replace('"', "%22")
def benign(length):
    out, total = [], 0
    while total < length:
        t = f"{r.choice(WORDS)}={r.choice(WORDS)}{r.randrange(1000)}&"
        out.append(t); total += len(t)
    return "".join(out)
for i in range(n):
    ip = f"198.51.{i // 250 % 256}.{i % 250 + 1}"
    t = f"[21/Nov/2026:{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d} +0000]"
    if kind == "benign":
        q = benign(qsize)
        ref = "https://shop.example/list?" + benign(size)
        ua = UA + " " + "x" * max(0, size - len(UA))
    else:
        q, ref, ua = crafted(qsize), crafted(size), crafted(size)
    print(f'{ip} - - {t} "GET /search?q={q} HTTP/1.1" 200 10 "{ref}" "{ua}"')
EOF
}

note "generating $N lines per case in $WORK"
gen crafted "$N" "$FIELD" "$FIELD" >"$WORK/crafted.log"
gen benign "$N" "$FIELD" "$FIELD" >"$WORK/benign.log"
gen padded "$N" 100 60000 >"$WORK/padded.log"
CASES=(crafted benign padded)
if [[ -n ${BENIGN_LOG:-} ]]; then
    [[ -f $BENIGN_LOG ]] || die "BENIGN_LOG not found: $BENIGN_LOG"
    cp "$BENIGN_LOG" "$WORK/corpus.log"
    CASES+=(corpus)
fi
echo '{}' >"$WORK/config.json"   # built-in defaults, whatever /etc holds

printf '%s\n' "binary: $BIN ($("$BIN" --version 2>/dev/null | head -1 || true))"
printf '%s\n' "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %7s %9s %9s %10s %10s %6s %9s\n' case lines "MiB in" "wall s" "lines/s" "peak RSS" bans oversized
for c in "${CASES[@]}"; do
    log=$WORK/$c.log
    lines=$(wc -l <"$log")
    t0=$(now)
    /usr/bin/time -f %M -o "$WORK/$c.rss" "$BIN" check --json --format combined \
        --config "$WORK/config.json" "$log" >"$WORK/$c.json" 2>"$WORK/$c.err" ||
        die "check failed on $c: $(tail -3 "$WORK/$c.err")"
    t1=$(now)
    wall=$(calc "$t1 - $t0")
    read -r bans over < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(len(r["bans"]), r.get("rule_hits", {}).get("oversized-field", 0))' "$WORK/$c.json")
    printf '%-8s %7d %9s %9s %10s %7s MiB %6s %9s\n' "$c" "$lines" \
        "$(calc "$(stat -c %s "$log") / 1048576")" "$wall" "$(calc "$lines / $wall")" \
        "$(calc "$(tail -1 "$WORK/$c.rss") / 1024")" "$bans" "$over"
done
