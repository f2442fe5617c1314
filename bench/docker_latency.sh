#!/usr/bin/env bash
# Figures for the Docker log path (see bench/README.md): latency from a container writing
# a line to the watcher handing it over (median, p99), lines/s through the Docker API for
# one container and for 50, and the memory of `security-monitor watch` and of the
# daemon (`security-monitor run`) following 50 containers. Prints figures; exits
# non-zero only when something failed to run.
#
# Uses the dockerd at $SECMON_DOCKER_SOCK if set; otherwise (as root) starts the same
# private dockerd tests/run.sh starts, and stops it at the end.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
lines=${LATENCY_LINES:-2000}
image=${SECMON_TEST_IMAGE:-secmon-busybox:test}
export SECMON_TEST_IMAGE=$image
started_dockerd=false
watch_pid=

say() { printf '\n==> %s\n' "$*"; }

cleanup() {
    [ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null || true
    ids=$(docker ps -aq --filter name='^/smbench-' 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1 || true
    if [ "$started_dockerd" = true ]; then
        stop_private_dockerd
    fi
}
trap cleanup EXIT

if [ -z "${SECMON_DOCKER_SOCK:-}" ]; then
    # shellcheck source=tests/dockerd.sh
    . "$repo/tests/dockerd.sh"
    say "starting the private dockerd (tests/dockerd.sh)"
    start_dockerd
    started_dockerd=true
fi
export DOCKER_HOST=$SECMON_DOCKER_SOCK
docker version >/dev/null

say "building (release)"
cargo build --release --quiet --example docker_bench
cargo build --release --quiet
bench=target/release/examples/docker_bench

say "machine"
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "dockerd $(docker version --format '{{.Server.Version}}'), API $(docker version --format '{{.Server.APIVersion}}')"

say "latency: $lines lines, one every 5 ms"
$bench latency "$lines"

say "lines/s: one container writing 300,000 lines as fast as it can, followed live"
$bench live 300000

say "lines/s through the Docker API: 1 container x 300,000 lines, already written"
$bench backlog 1 300000

say "lines/s through the Docker API: 50 containers x 20,000 lines, already written"
$bench backlog 50 20000

say "memory: security-monitor watch following 50 containers"
for i in $(seq -w 0 49); do
    docker run -d --name "smbench-rss-$i" --label secmon-test=1 "$image" \
        sh -c 'i=0; while true; do echo "127.0.0.1 - - [21/Nov/2026:10:00:00 +0000] \"GET /item/$i HTTP/1.1\" 200 12 \"-\" \"bench\""; i=$((i+1)); sleep 1; done' >/dev/null
done
cfg=$(mktemp)
printf '{"docker": {"socket": "%s", "name_pattern": "^smbench-rss-", "label": ""}}\n' "$SECMON_DOCKER_SOCK" >"$cfg"
errlog=$(mktemp)
target/release/security-monitor watch --config "$cfg" >/dev/null 2>"$errlog" &
watch_pid=$!
sleep 15
following=$(grep -c 'following container smbench-rss-' "$errlog" || true)
rss=$(awk '/^VmRSS/{print $2}' "/proc/$watch_pid/status")
hwm=$(awk '/^VmHWM/{print $2}' "/proc/$watch_pid/status")
threads=$(awk '/^Threads/{print $2}' "/proc/$watch_pid/status")
echo "following $following containers: RSS $((rss / 1024)) MiB ($rss kB), peak $((hwm / 1024)) MiB, $threads threads"
kill "$watch_pid"
wait "$watch_pid" 2>/dev/null || true
watch_pid=

say "memory: the daemon (security-monitor run, firewall none) following the same 50 containers"
state=$(mktemp -d)
printf '{"docker": {"socket": "%s", "name_pattern": "^smbench-rss-", "label": ""}, "firewall": {"backend": "none"}, "state": {"dir": "%s"}, "control": {"socket": "%s/control.sock"}}\n' \
    "$SECMON_DOCKER_SOCK" "$state" "$state" >"$cfg"
target/release/security-monitor run --config "$cfg" 2>"$errlog" &
watch_pid=$!
sleep 15
watched=$(target/release/security-monitor status --config "$cfg" --json |
    python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(1 for c in s["docker"]["containers"] if c["state"] == "following"))' || echo "?")
rss=$(awk '/^VmRSS/{print $2}' "/proc/$watch_pid/status")
hwm=$(awk '/^VmHWM/{print $2}' "/proc/$watch_pid/status")
threads=$(awk '/^Threads/{print $2}' "/proc/$watch_pid/status")
echo "daemon following $watched containers: RSS $((rss / 1024)) MiB ($rss kB), peak $((hwm / 1024)) MiB, $threads threads"
kill "$watch_pid"
wait "$watch_pid" 2>/dev/null || true
watch_pid=
rm -rf "$cfg" "$errlog" "$state"
