#!/usr/bin/env bash
# The one test command: prepares what the tests need on a fresh Debian machine and runs
# every test. CI runs it through .ci/run; run it yourself as root with `tests/run.sh`.
#
# With CI=true a missing prerequisite is a failure; otherwise it is reported loudly and
# the tests that need it are skipped.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
shared=${SECMON_SHARED:-$repo/../shared}
ci=${CI:-false}

say() { printf '\n==> %s\n' "$*"; }
missing() {
    if [ "$ci" = true ]; then
        echo "FATAL: $* (CI=true: a missing prerequisite is a failure)" >&2
        exit 1
    fi
    printf '\n!!!!!!!!\n!!! SKIPPING: %s\n!!!!!!!!\n\n' "$*" >&2
}

# Debian packages the tests use. One `apt-get update`, one install, only if something is
# missing.
packages=(python3 ca-certificates iproute2 nftables iptables ipset docker.io busybox-static debootstrap)
need=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q "${need[@]}"
    else
        missing "packages ${need[*]} are not installed and this is not a root Debian shell"
    fi
fi

# A private dockerd for the Docker tests: its own socket, data root, exec root and
# pidfile, so it neither needs nor touches a Docker the machine may already run.
# --live-restore keeps containers running while it is down, which the dockerd-restart
# test relies on ("lines written while dockerd was down are read once").
test_run=/run/secmon-test
test_lib=/var/lib/secmon-test
test_image=secmon-busybox:test
# dockerd runs in a network namespace of its own (entered with nsenter, which unlike
# `ip netns exec` leaves /sys and the cgroup mounts alone): its bridge, its iptables
# rules and every ban the tests make stay out of the host's ruleset.
test_netns=secmon-test
dockerd_cmd="nsenter --net=/run/netns/$test_netns dockerd --host unix://$test_run/docker.sock --data-root $test_lib/docker --exec-root $test_run/exec --pidfile $test_run/dockerd.pid --live-restore"
dockerd_started=false

stop_dockerd() {
    local pid
    pid=$(cat "$test_run/dockerd.pid" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "dockerd $pid did not stop within 10 s" >&2
}

cleanup() {
    if [ "$dockerd_started" = true ]; then
        say "stopping the private dockerd"
        # Containers the tests made carry the label secmon-test (their log files go
        # with them); the image stays for the next run.
        ids=$(DOCKER_HOST="unix://$test_run/docker.sock" docker ps -aq --filter label=secmon-test 2>/dev/null || true)
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086
            DOCKER_HOST="unix://$test_run/docker.sock" docker rm -f $ids >/dev/null 2>&1 || true
        fi
        stop_dockerd
        ip netns del "$test_netns" 2>/dev/null || true
    fi
}
trap cleanup EXIT

start_dockerd() {
    if ! command -v dockerd >/dev/null || [ ! -x /bin/busybox ] || [ "$(id -u)" != 0 ]; then
        missing "the Docker tests need root, dockerd (docker.io) and /bin/busybox (busybox-static)"
        return 0
    fi
    say "starting a private dockerd on $test_run/docker.sock"
    mkdir -p "$test_run" "$test_lib"
    stop_dockerd # one left over from an interrupted run
    ip netns del "$test_netns" 2>/dev/null || true
    ip netns add "$test_netns"
    ip -n "$test_netns" link set lo up
    # shellcheck disable=SC2086
    setsid $dockerd_cmd >"$test_lib/dockerd.log" 2>&1 </dev/null &
    dockerd_started=true
    export DOCKER_HOST="unix://$test_run/docker.sock"
    for _ in $(seq 1 150); do
        docker version >/dev/null 2>&1 && break
        sleep 0.2
    done
    if ! docker version >/dev/null 2>&1; then
        tail -20 "$test_lib/dockerd.log" >&2
        missing "the private dockerd did not answer within 30 s (log above)"
        return 0
    fi
    if ! docker image inspect "$test_image" >/dev/null 2>&1; then
        say "building $test_image FROM scratch with Debian's static busybox"
        ctx=$(mktemp -d)
        cp /bin/busybox "$ctx/busybox"
        printf 'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox"]\n' >"$ctx/Dockerfile"
        DOCKER_BUILDKIT=0 docker build -q -t "$test_image" "$ctx" >/dev/null
        rm -rf "$ctx"
    fi
    export SECMON_DOCKER_SOCK="unix://$test_run/docker.sock"
    export SECMON_DOCKERD_CMD="$dockerd_cmd"
    export SECMON_DOCKERD_PIDFILE="$test_run/dockerd.pid"
    export SECMON_DOCKERD_LOG="$test_lib/dockerd.log"
    export SECMON_TEST_IMAGE="$test_image"
    export SECMON_DOCKER_NETNS="$test_netns"
}

say "format and lints"
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings

say "build"
cargo build --release

start_dockerd

say "unit and integration tests"
cargo test --release -- --color never

say "end to end on a real systemd (install.sh, systemctl, journalctl)"
if [ "$dockerd_started" = true ] && [ -n "${SECMON_DOCKER_SOCK:-}" ]; then
    tests/systemd_e2e.sh
else
    missing "the systemd end-to-end test needs the private dockerd"
fi

say "detection quality on the labelled corpus"
if [ -f "$shared/corpus/attack.log" ]; then
    # The issue's bar: >= 95% of attack IPs with a non-weak line banned, <= 0.5% of
    # benign IPs banned, at the default config.
    python3 scripts/measure_corpus.py "$shared/corpus" --bin target/release/security-monitor \
        --config config/monitor_config.json --min-detection 95 --max-false-positive 0.5
else
    missing "the labelled corpus is not at $shared/corpus (set SECMON_SHARED)"
fi

say "all tests passed"
