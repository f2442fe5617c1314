#!/usr/bin/env bash
# JSON against text: `security-monitor check` on the same generated requests as nginx
# combined, Caddy JSON, Traefik JSON and nginx escape=json, pinned to one core. Prints
# lines/s (median of BENCH_RUNS runs) and each JSON form's time over combined's. A
# benchmark, not a test: it exits non-zero only when something failed to run.
#
# usage: bench/json_throughput.sh BINARY [N_LINES [SHARED_DIR]]
#   BINARY      the security-monitor binary to measure (a release build for figures
#               worth quoting; a debug build shows little but whether it runs)
#   N_LINES     lines to generate (default 300000)
#   SHARED_DIR  the project's shared dir holding tools/gen_access_log.py (default:
#               ../shared beside the repo root)
# environment: BENCH_DIR (keep and reuse the logs), BENCH_RUNS (default 3),
#   BENCH_CPU (default 0), BENCH_FORMS (default "caddy-json traefik-json nginx-json")
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
die() { echo "json_throughput.sh: error: $*" >&2; exit 1; }
note() { echo "json_throughput.sh: $*" >&2; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
commas() { printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
now() { date +%s.%N; }

[[ $# -ge 1 ]] || die "usage: bench/json_throughput.sh BINARY [N_LINES [SHARED_DIR]]"
BIN=$1
N=${2:-300000}
SHARED=${3:-$REPO_ROOT/../shared}
RUNS=${BENCH_RUNS:-3}
CPU=${BENCH_CPU:-0}
FORMS=${BENCH_FORMS:-caddy-json traefik-json nginx-json}
GEN=$SHARED/tools/gen_access_log.py
[[ -x $BIN ]] || die "not an executable: $BIN"
[[ $N =~ ^[0-9]+$ && $N -gt 0 ]] || die "N_LINES must be a positive integer, got '$N'"
[[ $RUNS =~ ^[0-9]+$ && $RUNS -gt 0 ]] || die "BENCH_RUNS must be a positive integer"
[[ -f $GEN ]] || die "generator not found: $GEN (pass the shared dir as the 3rd argument)"
command -v python3 >/dev/null || die "python3 is required"

if [[ -n ${BENCH_DIR:-} ]]; then
    mkdir -p "$BENCH_DIR"
    WORK=$(cd "$BENCH_DIR" && pwd)
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/secmon-json-bench.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
fi
PIN=()
if command -v taskset >/dev/null && taskset -c "$CPU" true 2>/dev/null; then
    PIN=(taskset -c "$CPU")
else
    note "WARNING: taskset missing or unusable; running unpinned"
fi

# --- the logs: one combined log, the same requests in each JSON form --------------
LOG=$WORK/access-$N.log
if [[ -f $LOG && -f $LOG.truth.json && ! $GEN -nt $LOG ]]; then
    note "reusing $LOG"
else
    note "generating $N lines with $GEN"
    python3 "$GEN" "$N" "$LOG" >&2 || die "log generator failed"
fi
for form in $FORMS; do
    out=$WORK/access-$N.$form
    if [[ ! -f $out || $LOG -nt $out || $SCRIPT_DIR/to_json.py -nt $out ]]; then
        note "converting to $form"
        python3 "$SCRIPT_DIR/to_json.py" "$form" "$LOG" "$out" >/dev/null || die "converting to $form failed"
    fi
    cat "$out" >/dev/null
done
cat "$LOG" >/dev/null

# run_form NAME FORMAT FILE: BENCH_RUNS runs; sets MEDIAN (wall s) and WORK_LINE
run_form() {
    local name=$1 fmt=$2 file=$3 walls=() i t0 t1 out=$WORK/out.$1.json
    for ((i = 1; i <= RUNS; i++)); do
        t0=$(now)
        "${PIN[@]}" "$BIN" check --json --format "$fmt" "$file" >"$out" 2>"$WORK/err.$name" ||
            { tail -n 5 "$WORK/err.$name" >&2; die "$name: check failed"; }
        t1=$(now)
        walls+=("$(calc "$t1 - $t0")")
    done
    MEDIAN=$(printf '%s\n' "${walls[@]}" | sort -g | awk '{ w[NR] = $1 }
        END { print (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2 }')
    WORK_LINE=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("parsed %s, unparsed %s, rule hits %s, banned IPs %s" % (d["parsed"], d["unparsed"],
      sum(d["rule_hits"].values()), len({b["ip"] for b in d["bans"]})))' "$out")
    printf '%-13s median %7.3f s = %10s lines/s  (runs: %s)  %s\n' "$name" "$MEDIAN" \
        "$(commas "$(calc "$N / $MEDIAN")")" "${walls[*]}" "$WORK_LINE"
}

echo "== JSON against combined: $BIN, $(commas "$N") lines, median of $RUNS runs, ${PIN[*]:-unpinned}"
echo "   machine: $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null); load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
# The fixed cost of a run (compiling the rules and the profiles' shapes), from an empty
# log: the per-line cost of each form is its time less this.
: >"$WORK/empty.log"
starts=()
for ((i = 1; i <= RUNS; i++)); do
    t0=$(now)
    "${PIN[@]}" "$BIN" check --json --format combined "$WORK/empty.log" >/dev/null 2>&1 ||
        die "check of an empty log failed"
    t1=$(now)
    starts+=("$(calc "$t1 - $t0")")
done
START=$(printf '%s\n' "${starts[@]}" | sort -g | awk '{ w[NR] = $1 }
    END { print (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2 }')
printf '%-13s median %7.3f s (an empty log: the start-up every run pays)\n' "start-up" "$START"
run_form combined combined "$LOG"
BASE=$MEDIAN
for form in $FORMS; do
    run_form "$form" json "$WORK/access-$N.$form"
    printf '%-13s %.2fx the time of combined (target: within 1.50x); per line, start-up left out: %.2fx\n' "" \
        "$(calc "$MEDIAN / $BASE")" "$(calc "($MEDIAN - $START) / ($BASE - $START)")"
done
[[ -n ${BENCH_DIR:-} ]] && echo "work files kept in $WORK"
exit 0
