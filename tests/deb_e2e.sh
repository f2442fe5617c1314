#!/usr/bin/env bash
# The Debian package's life cycle in a chroot, in a network namespace of its own (so nft
# starts from an empty ruleset and never touches the host's): install, a ban, reinstall
# (the upgrade path: the ban stays), remove (the firewall table goes, the state stays),
# purge (the state and config go). No systemd runs in a chroot: the service parts of the
# maintainer scripts are skipped there; tests/systemd_e2e.sh covers the unit.
#
#   tests/deb_e2e.sh DEB ROOTFS
#
# DEB: built with `cargo deb`. ROOTFS: a Debian 12 tree with nftables, e.g.
#   debootstrap --variant=minbase --include=nftables bookworm ROOTFS
# It is changed (the package is installed and removed in it). Needs root. tests/run.sh
# runs it on the root filesystem tests/systemd_e2e.sh builds.
set -euo pipefail
deb=${1:?usage: tests/deb_e2e.sh DEB ROOTFS}
root=${2:?usage: tests/deb_e2e.sh DEB ROOTFS}
[ "$(id -u)" = 0 ] || { echo "run me as root" >&2; exit 1; }
cp "$deb" "$root/tmp/security-monitor.deb"

# Everything below runs in new network and mount namespaces; /proc is the chroot's own.
unshare -n -m bash -euo pipefail -s "$root" <<'INNER'
root=$1
mount -t proc proc "$root/proc"
ch() { chroot "$root" "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { printf '\n--- %s\n' "$*"; }
has_table() { ch nft list table inet security_monitor >/dev/null 2>&1; }

step "dpkg -i"
ch dpkg -i /tmp/security-monitor.deb
ch test -d /var/lib/security-monitor || fail "no state directory"
[ "$(ch stat -c %a /etc/security-monitor/monitor_config.json)" = 600 ] || fail "the config is not 0600"

step "a ban (direct: no daemon runs here)"
ch security-monitor ban 203.0.113.77 --for 1h --reason deb-test
ch nft list set inet security_monitor banned_v4 | grep 203.0.113.77 >/dev/null || fail "the ban is not in the kernel"

step "dpkg -i again (the upgrade path): the ban stays"
ch dpkg -i /tmp/security-monitor.deb
ch nft list set inet security_monitor banned_v4 | grep 203.0.113.77 >/dev/null || fail "the upgrade lifted the ban"

step "dpkg -r: the firewall goes, config and state stay"
ch dpkg -r security-monitor
if has_table; then fail "table inet security_monitor is still there after dpkg -r"; fi
ch test ! -e /usr/bin/security-monitor || fail "the binary is still there"
ch test -f /var/lib/security-monitor/blocked_ips.json || fail "remove deleted the state"
ch test -f /etc/security-monitor/monitor_config.json || fail "remove deleted the config"

step "dpkg --purge: config and state go"
ch dpkg --purge security-monitor
ch test ! -e /var/lib/security-monitor || fail "purge left /var/lib/security-monitor"
ch test ! -e /etc/security-monitor || fail "purge left /etc/security-monitor"

echo
echo "deb end-to-end: all checks passed"
INNER
