#!/usr/bin/env bash
# Throughput benchmark: `security-monitor check` against `fail2ban-regex` on the same
# generated nginx access log, both pinned to one core. A benchmark, not a test: it
# prints figures and PASS/FAIL against the targets, and exits non-zero only when
# something failed to run.
#
# usage: bench/throughput.sh [N_LINES [SHARED_DIR]]
#   N_LINES     lines to generate (default 1000000)
#   SHARED_DIR  the project's shared dir holding tools/gen_access_log.py
#               (default: ../shared beside the repo root)
# environment:
#   SECMON_BIN     use this binary instead of building target/release/security-monitor
#   BENCH_DIR      keep work files (log, outputs) here instead of a temp dir; a log
#                  already there for the same N is reused
#   BENCH_RUNS     security-monitor runs (default 3)
#   BENCH_CPU      core to pin to (default 0)
#   SKIP_FAIL2BAN  set to 1 to skip the fail2ban-regex comparison
#   SKIP_ANOMALIES set to 1 to skip the runs with the baselines on (--anomalies)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
N=${1:-1000000}
SHARED=${2:-$REPO_ROOT/../shared}
RUNS=${BENCH_RUNS:-3}
CPU=${BENCH_CPU:-0}
FILTER=$SCRIPT_DIR/fail2ban-attack-filter.conf
GEN=$SHARED/tools/gen_access_log.py

TARGET_LPS=1000000
TARGET_RATIO=30

die() { echo "throughput.sh: error: $*" >&2; exit 1; }
note() { echo "throughput.sh: $*" >&2; }
loud() {
    echo "################################################################" >&2
    for l in "$@"; do echo "### $l" >&2; done
    echo "################################################################" >&2
}
# 1234567 -> 1,234,567 (integer part only)
commas() { printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
# awk arithmetic on decimal strings
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
now() { date +%s.%N; }

[[ $N =~ ^[0-9]+$ && $N -gt 0 ]] || die "N_LINES must be a positive integer, got '$N'"
[[ $RUNS =~ ^[0-9]+$ && $RUNS -gt 0 ]] || die "BENCH_RUNS must be a positive integer"
[[ -f $GEN ]] || die "generator not found: $GEN (pass the shared dir as the 2nd argument)"
[[ -f $FILTER ]] || die "fail2ban filter not found: $FILTER"
command -v python3 >/dev/null || die "python3 is required"
SHARED=$(cd "$SHARED" && pwd)
GEN=$SHARED/tools/gen_access_log.py

# --- work dir -----------------------------------------------------------------------
if [[ -n ${BENCH_DIR:-} ]]; then
    mkdir -p "$BENCH_DIR"
    WORK=$(cd "$BENCH_DIR" && pwd)
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/secmon-bench.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
fi

# --- pinning and RSS ----------------------------------------------------------------
PIN=()
if command -v taskset >/dev/null && taskset -c "$CPU" true 2>/dev/null; then
    PIN=(taskset -c "$CPU")
    PIN_DESC="taskset -c $CPU"
else
    note "WARNING: taskset missing or unusable; running unpinned (figures not one-core)"
    PIN_DESC="not pinned (no taskset)"
fi
HAVE_TIME=0
if [[ -x /usr/bin/time ]] && /usr/bin/time -f %M -o /dev/null true 2>/dev/null; then
    HAVE_TIME=1
else
    note "note: /usr/bin/time (Debian package 'time') missing; peak RSS not measured"
fi
# run_measured OUT ERR RSSFILE cmd...  -> sets WALL (seconds) and RC
run_measured() {
    local out=$1 err=$2 rss=$3; shift 3
    local t0 t1
    t0=$(now)
    if ((HAVE_TIME)); then
        set +e; /usr/bin/time -f %M -o "$rss" "${PIN[@]}" "$@" >"$out" 2>"$err"; RC=$?; set -e
    else
        set +e; "${PIN[@]}" "$@" >"$out" 2>"$err"; RC=$?; set -e
        : >"$rss"
    fi
    t1=$(now)
    WALL=$(calc "$t1 - $t0")
}
rss_mb() {  # KiB in file -> "12.3 MiB" or n/a
    local k
    k=$(grep -Eo '^[0-9]+$' "$1" 2>/dev/null | tail -1 || true)
    if [[ -n $k ]]; then awk "BEGIN { printf \"%.1f MiB\", $k/1024 }"; else echo "n/a"; fi
}

# --- the binary ---------------------------------------------------------------------
if [[ -n ${SECMON_BIN:-} ]]; then
    BIN=$SECMON_BIN
    [[ -x $BIN ]] || die "SECMON_BIN is not an executable: $BIN"
    BIN_NOTE="given by SECMON_BIN"
else
    BIN=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/security-monitor
    stale=""
    if [[ ! -x $BIN ]]; then
        stale="missing"
    else
        newer=$(cd "$REPO_ROOT" && find src Cargo.toml Cargo.lock build.rs -newer "$BIN" -type f -print -quit 2>/dev/null || true)
        [[ -n $newer ]] && stale="older than $newer"
    fi
    if [[ -n $stale ]]; then
        note "release binary $stale: cargo build --release"
        command -v cargo >/dev/null || die "cargo not found and no usable binary at $BIN"
        (cd "$REPO_ROOT" && cargo build --release --bin security-monitor) >&2 || die "cargo build --release failed"
        BIN_NOTE="built now"
    else
        BIN_NOTE="up to date"
    fi
fi
BIN_VERSION=$("$BIN" --version 2>/dev/null | head -1 || true)

# --- the log ------------------------------------------------------------------------
LOG=$WORK/access-$N.log
TRUTH=$LOG.truth.json
reuse=0
if [[ -f $LOG && -f $TRUTH && ! $GEN -nt $LOG ]] &&
    python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["lines"]==int(sys.argv[2]) else 1)' "$TRUTH" "$N" 2>/dev/null; then
    reuse=1
    note "reusing $LOG"
else
    note "generating $N lines with $GEN"
    python3 "$GEN" "$N" "$LOG" >&2 || die "log generator failed"
fi
read -r T_ATTACK_LINES T_ATTACK_IPS < <(python3 -c '
import json,sys; t=json.load(open(sys.argv[1])); print(t["attack_lines"], len(t["attack_ips"]))' "$TRUTH")
LOG_BYTES=$(stat -c %s "$LOG")
cat "$LOG" >/dev/null   # warm the page cache: measure parsing, not the disk

# --- machine facts ------------------------------------------------------------------
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
CPU_MODEL=${CPU_MODEL:-$(uname -m)}
GOVERNOR=$(cat "/sys/devices/system/cpu/cpu$CPU/cpufreq/scaling_governor" 2>/dev/null || echo "n/a")
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "n/a")

echo "== security-monitor throughput benchmark"
echo "machine : $CPU_MODEL; $(nproc) CPUs; kernel $(uname -r); governor $GOVERNOR; load $LOADAVG"
echo "pinning : $PIN_DESC"
echo "log     : $LOG ($(commas "$N") lines, $(awk "BEGIN { printf \"%.1f\", $LOG_BYTES/1048576 }") MiB$( ((reuse)) && echo ", reused")); truth: $T_ATTACK_LINES attack lines from $T_ATTACK_IPS IPs"
echo "binary  : $BIN ($BIN_NOTE${BIN_VERSION:+; $BIN_VERSION})"
echo

# --- security-monitor runs ----------------------------------------------------------
echo "-- security-monitor check --json --format combined ($RUNS runs)"
SM_WALLS=()
SM_OWN=()
SM_RSS=()
for ((i = 1; i <= RUNS; i++)); do
    out=$WORK/secmon.$i.json err=$WORK/secmon.$i.err rss=$WORK/secmon.$i.rss
    run_measured "$out" "$err" "$rss" "$BIN" check --json --format combined "$LOG"
    if ! summary=$(python3 - "$out" "$TRUTH" 2>&1 <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    sys.exit("no JSON object on stdout: %s" % e)
def num(k):
    v = d.get(k)
    return v if isinstance(v, (int, float)) else "n/a"
hits = d.get("rule_hits") or {}
bans = d.get("bans") or []
ips = {b.get("ip", repr(b)) if isinstance(b, dict) else str(b) for b in bans}
allow = d.get("allowlisted") or []
attackers = set(json.load(open(sys.argv[2])).get("attack_ips") or {})
print(num("lines"), num("parsed"), num("unparsed"), sum(v for v in hits.values() if isinstance(v, (int, float))),
      len(bans), len(ips), len(allow), num("elapsed_s"), len(ips & attackers), len(ips - attackers))
PY
    ); then
        echo "   run $i: exit $RC; stderr:" >&2
        tail -n 20 "$err" >&2 || true
        die "security-monitor check produced no usable JSON (run $i, exit $RC): $summary"
    fi
    read -r S_LINES S_PARSED S_UNPARSED S_HITS S_BANS S_BAN_IPS S_ALLOW S_OWN S_BAN_TRUE S_BAN_FALSE <<<"$summary"
    [[ $RC -eq 0 ]] || note "WARNING: run $i exited $RC (JSON was produced; continuing)"
    lps=$(calc "$N / $WALL")
    own_lps="n/a"
    [[ $S_OWN != n/a ]] && own_lps=$(commas "$(calc "$N / ($S_OWN > 0 ? $S_OWN : 1e-9)")")
    printf '   run %d: wall %.3f s = %s lines/s | own elapsed_s %s = %s lines/s | peak RSS %s\n' \
        "$i" "$WALL" "$(commas "$lps")" "$S_OWN" "$own_lps" "$(rss_mb "$rss")"
    SM_WALLS+=("$WALL")
    SM_OWN+=("$S_OWN")
    SM_RSS+=("$(rss_mb "$rss")")
done
if [[ $S_LINES != "$N" ]]; then
    note "WARNING: security-monitor reports lines=$S_LINES, expected $N"
fi
echo "   work: lines $S_LINES, parsed $S_PARSED, unparsed $S_UNPARSED, rule hits $S_HITS, bans $S_BANS ($S_BAN_IPS distinct IPs: $S_BAN_TRUE of the $T_ATTACK_IPS attacker IPs, $S_BAN_FALSE others), allowlisted $S_ALLOW"
echo "   rule hits by rule: $(python3 -c '
import json,sys; h=json.load(open(sys.argv[1])).get("rule_hits") or {}
print(", ".join("%s=%s" % kv for kv in sorted(h.items(), key=lambda kv: -kv[1])) or "none")' "$WORK/secmon.$RUNS.json")"

# best = shortest wall; median of the sorted walls
read -r SM_BEST SM_MEDIAN < <(printf '%s\n' "${SM_WALLS[@]}" | sort -g | awk '
    { w[NR] = $1 } END { m = (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2; print w[1], m }')
read -r SM_OWN_BEST SM_OWN_MEDIAN < <(printf '%s\n' "${SM_OWN[@]}" | grep -E '^[0-9.eE+-]+$' | sort -g | awk '
    { w[NR] = $1 } END { if (NR == 0) { print "n/a n/a"; exit }
      m = (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2; print w[1], m }')
SM_BEST_LPS=$(calc "$N / $SM_BEST")
SM_MEDIAN_LPS=$(calc "$N / $SM_MEDIAN")
echo

# --- the same with the baselines on ---------------------------------------------------
# Endpoint baselines and client behaviour (`--anomalies`): the target is at most 1.2x the
# time without them. Runs alternate with plain ones, so both see the same machine.
AN_STATUS=skipped
if [[ ${SKIP_ANOMALIES:-0} != 1 ]]; then
    echo "-- with the baselines on: check --json --format combined --anomalies, alternating with plain runs ($RUNS each)"
    AN_WALLS=() PL_WALLS=() AN_RSS=()
    for ((i = 1; i <= RUNS; i++)); do
        run_measured "$WORK/plain.$i.json" "$WORK/plain.$i.err" "$WORK/plain.$i.rss" "$BIN" check --json --format combined "$LOG"
        PL_WALLS+=("$WALL")
        run_measured "$WORK/anom.$i.json" "$WORK/anom.$i.err" "$WORK/anom.$i.rss" "$BIN" check --json --format combined --anomalies "$LOG"
        [[ $RC -eq 0 ]] || die "check --anomalies failed (run $i, exit $RC): $(tail -n 5 "$WORK/anom.$i.err")"
        AN_WALLS+=("$WALL")
        AN_RSS+=("$(rss_mb "$WORK/anom.$i.rss")")
        printf '   run %d: plain %.3f s, --anomalies %.3f s (peak RSS %s)\n' "$i" "${PL_WALLS[-1]}" "$WALL" "${AN_RSS[-1]}"
    done
    med() { printf '%s\n' "$@" | sort -g | awk '{ w[NR] = $1 } END { print (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2 }'; }
    PL_MED=$(med "${PL_WALLS[@]}")
    AN_MED=$(med "${AN_WALLS[@]}")
    AN_RATIO=$(calc "$AN_MED / $PL_MED")
    echo "   $(python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); m=d.get("anomaly_model") or {}
print("unusual requests %s; model: %s endpoints, %s learned, ~%.1f MB" % (d.get("anomalies_total"), m.get("endpoints"), m.get("learned"), (m.get("bytes") or 0) / 1e6))' "$WORK/anom.$RUNS.json")"
    AN_STATUS=ran
    echo
fi

# --- fail2ban-regex -----------------------------------------------------------------
F2B_STATUS=skipped
F2B_WHY=""
if [[ ${SKIP_FAIL2BAN:-0} == 1 ]]; then
    F2B_WHY="SKIP_FAIL2BAN=1"
else
    if ! command -v fail2ban-regex >/dev/null; then
        note "fail2ban-regex not found: apt-get install -y fail2ban"
        SUDO=()
        [[ $(id -u) -eq 0 ]] || SUDO=(sudo -n)
        if "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y fail2ban >"$WORK/apt.log" 2>&1; then
            note "installed fail2ban"
            # Installing starts fail2ban's own service (sshd jail) where systemd runs;
            # we only want the fail2ban-regex tool.
            if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
                "${SUDO[@]}" systemctl disable --now fail2ban.service >/dev/null 2>&1 &&
                    note "stopped and disabled fail2ban.service (installed only for fail2ban-regex)" || true
            fi
        else
            tail -n 5 "$WORK/apt.log" >&2 || true
        fi
    fi
    if ! command -v fail2ban-regex >/dev/null; then
        F2B_WHY="fail2ban-regex missing and 'apt-get install -y fail2ban' failed"
        loud "FAIL2BAN-REGEX IS NOT AVAILABLE: the install of Debian package 'fail2ban' failed." \
            "The comparison with fail2ban-regex is SKIPPED; the ratio target is not judged."
    else
        F2B_VERSION=$(fail2ban-regex --version 2>/dev/null | head -1 || echo "fail2ban-regex")
        echo "-- $F2B_VERSION $(basename "$LOG") bench/$(basename "$FILTER") (1 run, slow: ~30-60 s per 1M lines)"
        out=$WORK/fail2ban.out err=$WORK/fail2ban.err rss=$WORK/fail2ban.rss
        run_measured "$out" "$err" "$rss" fail2ban-regex "$LOG" "$FILTER"
        F2B_WALL=$WALL
        cat "$err" >>"$out"
        # "Lines: 1000000 lines, 0 ignored, 10001 matched, 989999 missed"
        read -r F_LINES F_MATCHED F_MISSED < <(sed -nE \
            's/^Lines: ([0-9]+) lines, [0-9]+ ignored, ([0-9]+) matched, ([0-9]+) missed.*/\1 \2 \3/p' "$out" | tail -1) || true
        F_OWN=$(sed -nE 's/^\[processed in ([0-9.]+) sec\].*/\1/p' "$out" | tail -1)
        if [[ $RC -ne 0 || -z ${F_LINES:-} ]]; then
            tail -n 20 "$out" >&2 || true
            die "fail2ban-regex failed (exit $RC) or printed no 'Lines:' summary"
        fi
        F2B_STATUS=ran
        F2B_LPS=$(calc "$N / $F2B_WALL")
        printf '   wall %.3f s = %s lines/s | own "processed in" %s s | peak RSS %s\n' \
            "$F2B_WALL" "$(commas "$F2B_LPS")" "${F_OWN:-n/a}" "$(rss_mb "$rss")"
        F2B_RSS=$(rss_mb "$rss")
        echo "   work: lines $F_LINES, matched $F_MATCHED, missed $F_MISSED"
        echo "   hits by regex: $(sed -nE 's/^\|\s+([0-9]+)\) \[([0-9]+)\].*/#\1=\2/p' "$out" | paste -sd' ' -)"
        [[ $F_LINES == "$N" ]] || note "WARNING: fail2ban-regex read $F_LINES lines, expected $N"
    fi
fi
echo

# --- summary ------------------------------------------------------------------------
pass() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo FAIL; fi; }
echo "================================ summary ================================"
echo "machine           : $CPU_MODEL, $(nproc) CPUs, $PIN_DESC"
echo "log               : $(commas "$N") lines nginx combined; truth $T_ATTACK_LINES attack lines, $T_ATTACK_IPS attacker IPs"
printf 'security-monitor  : best %s lines/s (%.3f s), median %s lines/s (%.3f s) [wall, %d runs]\n' \
    "$(commas "$SM_BEST_LPS")" "$SM_BEST" "$(commas "$SM_MEDIAN_LPS")" "$SM_MEDIAN" "$RUNS"
if [[ $SM_OWN_BEST != n/a ]]; then
    printf '                    own elapsed_s: best %s s = %s lines/s, median %s s = %s lines/s\n' \
        "$SM_OWN_BEST" "$(commas "$(calc "$N / ($SM_OWN_BEST > 0 ? $SM_OWN_BEST : 1e-9)")")" \
        "$SM_OWN_MEDIAN" "$(commas "$(calc "$N / ($SM_OWN_MEDIAN > 0 ? $SM_OWN_MEDIAN : 1e-9)")")"
fi
echo "                    peak RSS per run: ${SM_RSS[*]}"
echo "                    did: $S_HITS rule hits, $S_BAN_IPS banned IPs ($S_BAN_TRUE attackers + $S_BAN_FALSE others; truth $T_ATTACK_IPS), $S_UNPARSED unparsed lines"
if [[ $F2B_STATUS == ran ]]; then
    RATIO_MED=$(calc "$SM_MEDIAN_LPS / $F2B_LPS")
    RATIO_BEST=$(calc "$SM_BEST_LPS / $F2B_LPS")
    printf 'fail2ban-regex    : %s lines/s (%.3f s wall, 1 run), peak RSS %s\n' "$(commas "$F2B_LPS")" "$F2B_WALL" "$F2B_RSS"
    echo "                    did: $F_MATCHED matched lines (truth: $T_ATTACK_LINES attack lines from $T_ATTACK_IPS IPs)"
    printf 'ratio             : security-monitor / fail2ban-regex = %.1fx (median), %.1fx (best)\n' "$RATIO_MED" "$RATIO_BEST"
else
    echo "fail2ban-regex    : SKIPPED ($F2B_WHY)"
fi
echo
echo "target: >= 1,000,000 lines/s on one core; >= 30x fail2ban-regex"
echo "  >= $(commas $TARGET_LPS) lines/s on one core : $(pass "$SM_MEDIAN_LPS >= $TARGET_LPS") (median $(commas "$SM_MEDIAN_LPS"), best $(commas "$SM_BEST_LPS"))"
if [[ $F2B_STATUS == ran ]]; then
    printf '  >= %dx fail2ban-regex            : %s (median %.1fx, best %.1fx)\n' \
        "$TARGET_RATIO" "$(pass "$RATIO_MED >= $TARGET_RATIO")" "$RATIO_MED" "$RATIO_BEST"
else
    echo "  >= ${TARGET_RATIO}x fail2ban-regex            : NOT JUDGED (fail2ban-regex skipped)"
fi
if [[ $AN_STATUS == ran ]]; then
    printf '  --anomalies <= 1.2x the time     : %s (median %.3f s against %.3f s plain = %.2fx; peak RSS %s)\n' \
        "$(pass "$AN_RATIO <= 1.2")" "$AN_MED" "$PL_MED" "$AN_RATIO" "${AN_RSS[*]}"
else
    echo "  --anomalies <= 1.2x the time     : NOT JUDGED (SKIP_ANOMALIES=1)"
fi
[[ -n ${BENCH_DIR:-} ]] && echo "work files kept in $WORK"
exit 0
