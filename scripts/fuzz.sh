#!/usr/bin/env bash
# Runs every cargo-fuzz target (libFuzzer) for MINUTES minutes each (default 2), growing
# its corpus in fuzz/corpus/<target>/, then merges the corpus down to the inputs that add
# coverage. Prints executions and what was found per target; a crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script exit 1.
#
#   scripts/fuzz.sh [MINUTES] [TARGET...]
#
# Needs the nightly toolchain (rustup toolchain install nightly) and cargo-fuzz
# (cargo install cargo-fuzz). `tests/run.sh` does not run this: it replays the corpora
# through tests/fuzz_corpus.rs, which takes seconds and needs neither.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo/fuzz"
minutes=${1:-2}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
# Per input: at most 10 s and 2 GiB (libFuzzer reports a timeout or OOM as a finding).
limits=(-timeout=10 -rss_limit_mb=2048 -max_len=65536)
failed=0
printf '%-16s %12s %8s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log=$(mktemp)
    if cargo +nightly fuzz run "$t" "corpus/$t" -- "${limits[@]}" \
        -max_total_time=$((minutes * 60)) -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result="FOUND: $(grep -m1 -oE 'ERROR: libFuzzer: [a-z-]+|panicked at [^ ]+' "$log" || echo 'see log')"
        failed=1
        cp "$log" "artifacts/$t/last-run.log"
    fi
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
    rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
    # Keep only the inputs that add coverage.
    cargo +nightly fuzz cmin "$t" "corpus/$t" -- "${limits[@]}" >/dev/null 2>&1 || true
    size=$(find "corpus/$t" -type f | wc -l)
    printf '%-16s %12s %8s %8s  %s\n' "$t" "$execs" "$rate" "$size" "$result"
    rm -f "$log"
done
exit $failed
