#!/usr/bin/env bash
# End to end on a real systemd: boot a Debian 12 container with systemd as PID 1 on the
# test dockerd, run ./install.sh inside it, and walk the operator's story:
# systemctl is-active/status/reload (with a broken config), a structured ban event in
# journalctl, `security-monitor list` and blocked_ips.json after an attacking container
# (on the test dockerd, whose socket is bind-mounted in) logs an attack, and
# `install.sh --uninstall`. Also prints `systemd-analyze verify` and `security`.
#
# Needs what tests/run.sh prepares: DOCKER_HOST / SECMON_DOCKER_SOCK for the private
# dockerd, the busybox image, the release binary, debootstrap.
set -euo pipefail
# Note: `cmd | grep -q` is not used here: with pipefail, grep -q exiting at the first
# match can fail the pipeline through SIGPIPE in the writer; grep >/dev/null reads all.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sock=${SECMON_DOCKER_SOCK:?SECMON_DOCKER_SOCK is not set (tests/run.sh sets it)}
export DOCKER_HOST=$sock
image=${SECMON_TEST_IMAGE:-secmon-busybox:test}
rootfs_image=secmon-debian-systemd:test
work=$(mktemp -d)
box=smt-systemd-$$
attacker=smt-systemd-attacker-$$
fail() { echo "FAIL: $*" >&2; docker exec "$box" journalctl -u security-monitor --no-pager -n 60 >&2 2>/dev/null || true; exit 1; }
cleanup() {
    docker rm -f "$box" "$attacker" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n--- %s\n' "$*"; }
# Runs a command until it succeeds, for at most $1 seconds; fails if it never does. The
# daemon writes blocked_ips.json, the kernel set and the journal a moment after `list`
# shows a ban (the state file is written coalesced, every 250 ms): wait for each.
wait_for() {
    local limit=$1 end
    shift
    end=$((SECONDS + limit))
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.2
    done
}
state_holds() { docker exec "$box" cat /var/lib/security-monitor/blocked_ips.json 2>/dev/null | grep "\"ip\": \"$1\"" >/dev/null; }
kernel_holds() { docker exec "$box" nft list set inet security_monitor banned_v4 2>/dev/null | grep "$1" >/dev/null; }
journal_has_ban() {
    docker exec "$box" journalctl -u security-monitor --no-pager -o verbose "IP=$1" >"$work/journal" 2>/dev/null || true
    grep -q "ACTION=ban" "$work/journal"
}

if ! docker image inspect "$rootfs_image" >/dev/null 2>&1; then
    step "building a Debian 12 root filesystem with systemd (debootstrap, once per run)"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,nftables,iproute2,ca-certificates \
        bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap failed"; }
    tar -C "$work/rootfs" -c . | docker import - "$rootfs_image" >/dev/null
    rm -rf "$work/rootfs"
fi

step "booting systemd in a container"
# The test dockerd's socket appears inside as /run/docker.sock (the daemon's default).
docker run -d --name "$box" --label secmon-test=1 --cap-add SYS_ADMIN --cap-add NET_ADMIN --cgroupns=private \
    --tmpfs /run --tmpfs /run/lock -e container=docker --stop-signal SIGRTMIN+3 \
    -v "${sock#unix://}:/run/docker.sock" -v "$repo:/src:ro" "$rootfs_image" /sbin/init >/dev/null
state=""
for _ in $(seq 1 60); do
    state=$(docker exec "$box" timeout 60 systemctl is-system-running --wait 2>/dev/null || true)
    [ -n "$state" ] && [ "$state" != starting ] && break
    sleep 0.5
done
echo "system state: $state"
case "$state" in running|degraded) ;; *) fail "systemd did not come up ($state)" ;; esac

step "sudo ./install.sh (with the binary built by tests/run.sh)"
docker exec "$box" /src/install.sh --binary /src/target/release/security-monitor
docker exec "$box" systemctl is-active security-monitor || fail "the service is not active after install.sh"
docker exec "$box" systemctl status --no-pager security-monitor | head -12
docker exec "$box" sh -c 'stat -c "%a %U %n" /etc/security-monitor/monitor_config.json /etc/security-monitor /var/lib/security-monitor /run/security-monitor/control.sock'
perms=$(docker exec "$box" stat -c %a /etc/security-monitor/monitor_config.json)
[ "$perms" = 600 ] || fail "the config is mode $perms, not 600"

step "install.sh again is safe and keeps an edited config"
docker exec "$box" sh -c 'sed -i "s/\"max_failed_auth\": 5/\"max_failed_auth\": 6/" /etc/security-monitor/monitor_config.json'
docker exec "$box" /src/install.sh --binary /src/target/release/security-monitor >/dev/null
docker exec "$box" grep -q '"max_failed_auth": 6' /etc/security-monitor/monitor_config.json || fail "install.sh overwrote the config"
docker exec "$box" test -f /etc/security-monitor/monitor_config.json.dist || fail "no .dist beside the kept config"
docker exec "$box" systemctl is-active security-monitor >/dev/null || fail "not active after the second install"

step "an attacking container on the watched dockerd"
ip=203.0.113.$((RANDOM % 200 + 20))
docker run -d --name "$attacker" --label secmon-test=1 --label security-monitor.enable=true "$image" \
    sh -c "sleep 2; echo '$ip - - [21/Nov/2026:10:00:00 +0000] \"GET /?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E HTTP/1.1\" 200 5 \"-\" \"x\"'; sleep 300" >/dev/null
for _ in $(seq 1 50); do
    docker exec "$box" security-monitor list 2>/dev/null | grep "$ip" >/dev/null && break
    sleep 0.3
done
docker exec "$box" security-monitor list | tee "$work/list"
grep -q "$ip" "$work/list" || fail "security-monitor list does not show $ip"
wait_for 15 state_holds "$ip" || fail "blocked_ips.json does not hold $ip (waited 15 s)"
wait_for 15 kernel_holds "$ip" || fail "$ip is not in the kernel set (waited 15 s)"
wait_for 15 journal_has_ban "$ip" || fail "no structured ban event for IP=$ip in the journal (waited 15 s)"
grep -E '^ *(IP|ACTION|RULE|CATEGORY|CONTAINER)=' "$work/journal" || true
docker exec "$box" security-monitor status

step "systemctl reload with a broken config: still active, errors in the journal"
docker exec "$box" cp /etc/security-monitor/monitor_config.json /root/good.json
docker exec "$box" sh -c 'sed -i "s/\"max_failed_auth\": 6/\"max_failed_auth\": \"six\"/" /etc/security-monitor/monitor_config.json'
# The reload job fails (ExecReload reports the rejected config) but the service carries on.
if docker exec "$box" systemctl reload security-monitor; then fail "a broken config was reloaded without complaint"; fi
docker exec "$box" systemctl is-active security-monitor || fail "the service died on a bad reload"
reload_error_logged() { docker exec "$box" journalctl -u security-monitor --no-pager -n 50 | grep "thresholds.max_failed_auth"; }
wait_for 15 reload_error_logged || fail "the reload error is not in the journal (waited 15 s)"
docker exec "$box" systemctl status --no-pager security-monitor | grep -i "Status:" || true
docker exec "$box" security-monitor list | grep "$ip" >/dev/null || fail "the ban was lost on the bad reload"
docker exec "$box" cp /root/good.json /etc/security-monitor/monitor_config.json
docker exec "$box" systemctl reload security-monitor || fail "a good config did not reload"
docker exec "$box" systemctl is-active security-monitor >/dev/null || fail "not active after a good reload"

step "stop keeps the bans in the kernel; start restores the book"
docker exec "$box" systemctl stop security-monitor
docker exec "$box" nft list set inet security_monitor banned_v4 | grep "$ip" >/dev/null || fail "stopping lifted the ban"
docker exec "$box" systemctl start security-monitor
docker exec "$box" security-monitor list | grep "$ip" >/dev/null || fail "the restart lost the ban"

step "systemd-analyze"
docker exec "$box" systemd-analyze verify /etc/systemd/system/security-monitor.service && echo "systemd-analyze verify: clean"
docker exec "$box" systemd-analyze security --no-pager security-monitor | tail -3

step "install.sh --uninstall keeps config and state"
docker exec "$box" /src/install.sh --uninstall
docker exec "$box" test ! -e /usr/local/bin/security-monitor || fail "the binary is still there"
docker exec "$box" test -f /etc/security-monitor/monitor_config.json || fail "the config was removed"
docker exec "$box" test -f /var/lib/security-monitor/blocked_ips.json || fail "the state was removed"
if docker exec "$box" nft list table inet security_monitor >/dev/null 2>&1; then fail "the firewall table is still there"; fi

echo
echo "systemd end-to-end: all checks passed"
