# The private dockerd the tests and benchmarks use: its own socket, data root, exec root
# and pidfile, so it neither needs nor touches a Docker the machine may already run.
# Source this file, then call start_dockerd / stop_private_dockerd.
#
# --live-restore keeps containers running while it is down, which the dockerd-restart
# test relies on ("lines written while dockerd was down are read once").
#
# dockerd runs in a network namespace of its own (entered with nsenter, which unlike
# `ip netns exec` leaves /sys and the cgroup mounts alone): its bridge, its iptables
# rules and every ban the tests make stay out of the host's ruleset.
# SECMON_TEST_INSTANCE names the socket directory, data root and namespace, so two
# suites on one machine (two checkouts, say) do not stop each other's dockerd.
test_instance=${SECMON_TEST_INSTANCE:-secmon-test}
test_run=/run/$test_instance
test_lib=/var/lib/$test_instance
test_image=secmon-busybox:test
test_netns=$test_instance
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

# Removes what the tests made (containers labelled secmon-test; the image stays for the
# next run) and stops dockerd, if this shell started it.
stop_private_dockerd() {
    [ "$dockerd_started" = true ] || return 0
    local ids
    ids=$(DOCKER_HOST="unix://$test_run/docker.sock" docker ps -aq --filter label=secmon-test 2>/dev/null || true)
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086
        DOCKER_HOST="unix://$test_run/docker.sock" docker rm -f $ids >/dev/null 2>&1 || true
    fi
    stop_dockerd
    ip netns del "$test_netns" 2>/dev/null || true
    dockerd_started=false
}

# Starts dockerd and builds the busybox image; exports SECMON_DOCKER_* for the tests.
# Returns 1 (after saying why) when it cannot.
start_dockerd() {
    if ! command -v dockerd >/dev/null || [ ! -x /bin/busybox ] || [ "$(id -u)" != 0 ]; then
        echo "the Docker tests need root, dockerd (docker.io) and /bin/busybox (busybox-static)" >&2
        return 1
    fi
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
        echo "the private dockerd did not answer within 30 s (log above)" >&2
        return 1
    fi
    if ! docker image inspect "$test_image" >/dev/null 2>&1; then
        local ctx
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
