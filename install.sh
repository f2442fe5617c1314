#!/usr/bin/env bash
# Installs security-monitor on Debian or Ubuntu:   sudo ./install.sh
#
#   sudo ./install.sh                 build (cargo, as the user who ran sudo) or take target/release/security-monitor, install, enable, start
#   sudo ./install.sh --binary PATH   install a prebuilt binary instead of building
#   sudo ./install.sh --uninstall     stop and remove it; keep /etc/security-monitor and /var/lib/security-monitor
#   sudo ./install.sh --uninstall --purge   also remove the config and the state (blocked_ips.json)
#
# Running it again is safe: an existing config is never overwritten (the new default is
# put beside it as monitor_config.json.dist), and a running service is restarted on the
# new binary with its bans kept.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prefix=${PREFIX:-/usr/local}
bin_dest="$prefix/bin/security-monitor"
conf_dir=/etc/security-monitor
conf="$conf_dir/monitor_config.json"
state_dir=/var/lib/security-monitor
unit_dest=/etc/systemd/system/security-monitor.service
completion_dest=/usr/share/bash-completion/completions/security-monitor

binary=""
uninstall=false
purge=false
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=${2:?--binary needs a path}; shift 2 ;;
        --uninstall) uninstall=true; shift ;;
        --purge) purge=true; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'security-monitor: %s\n' "$*"; }
die() { printf 'security-monitor: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
systemd_running() { [ -d /run/systemd/system ] && have systemctl; }

[ "$(id -u)" = 0 ] || die "run me as root: sudo $0 $*"

if $uninstall; then
    if systemd_running && systemctl list-unit-files security-monitor.service >/dev/null 2>&1; then
        systemctl disable --now security-monitor.service 2>/dev/null || true
    fi
    if [ -x "$bin_dest" ]; then
        # Lift the bans: with the service gone nothing would keep them current.
        "$bin_dest" remove-firewall --config "$conf" 2>/dev/null || "$bin_dest" remove-firewall 2>/dev/null || true
    fi
    rm -f "$unit_dest" "$bin_dest" "$completion_dest"
    systemd_running && systemctl daemon-reload || true
    if $purge; then
        rm -rf "$conf_dir" "$state_dir"
        say "removed, with its config and state"
    else
        say "removed; kept $conf_dir and $state_dir (use --uninstall --purge to remove them too)"
    fi
    exit 0
fi

# Who builds. Under sudo, the user who ran it, in their own source tree with their own
# cargo: root building there would leave root-owned files in target/ and ~/.cargo that
# break the user's next `cargo build`. Root builds only when that cannot be done.
build_as=""          # a user name, or empty for root
build_path=$PATH     # PATH for the build, with the user's ~/.cargo/bin
build_note=""
# as_user USER HOME PATH COMMAND...: runs COMMAND as USER with that home and PATH
# (runuser is util-linux's, always there on Debian and Ubuntu; sudo may not be).
as_user() {
    local user=$1 home=$2 path=$3
    shift 3
    runuser -u "$user" -- env HOME="$home" USER="$user" LOGNAME="$user" PATH="$path" "$@"
}
if [ -z "$binary" ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    owner=$(stat -c %U "$src")
    if [ "$owner" != "$SUDO_USER" ]; then
        build_note="$src belongs to $owner, not $SUDO_USER"
    elif ! as_user "$SUDO_USER" "$user_home" "$user_home/.cargo/bin:$PATH" sh -c 'command -v cargo' >/dev/null 2>&1; then
        build_note="$SUDO_USER has no cargo (looked in PATH and $user_home/.cargo/bin)"
    elif [ -n "$(find "$src/target" -maxdepth 2 ! -user "$SUDO_USER" -print -quit 2>/dev/null)" ]; then
        build_note="$src/target holds files that are not $SUDO_USER's (an earlier build as root?); to build as $SUDO_USER: sudo chown -R $SUDO_USER $src/target"
    else
        build_as=$SUDO_USER
        build_home=$user_home
        build_path="$user_home/.cargo/bin:$PATH"
    fi
fi
can_build() { [ -n "$build_as" ] || have cargo; }

# Prerequisites: say everything that is missing at once.
missing=()
if ! have nft && ! have iptables; then
    missing+=("a firewall tool: apt-get install nftables (or iptables ipset)")
fi
if [ -z "$binary" ] && [ ! -x "$src/target/release/security-monitor" ] && ! can_build; then
    missing+=("cargo to build the binary (https://rustup.rs)${build_note:+ ($build_note)}, or a prebuilt one: --binary PATH")
fi
for f in config/monitor_config.json systemd/security-monitor.service; do
    [ -f "$src/$f" ] || missing+=("$src/$f (run install.sh from the source tree)")
done
if [ ${#missing[@]} -gt 0 ]; then
    printf 'security-monitor: cannot install, missing:\n' >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
fi
have docker || [ -S /run/docker.sock ] || say "note: Docker does not seem to be installed; the daemon will wait for it"

# The binary: the one given, else build, else a build already there.
if [ -z "$binary" ]; then
    if [ -n "$build_as" ]; then
        say "building the release binary as $build_as (cargo build --release)"
        (cd "$src" && as_user "$build_as" "$build_home" "$build_path" \
            cargo build --release --locked --target-dir "$src/target" 2>&1 | tail -3) ||
            die "the build as $build_as failed (see above)"
    elif have cargo; then
        [ -z "$build_note" ] || say "building as root: $build_note"
        say "building the release binary (cargo build --release)"
        (cd "$src" && cargo build --release --locked --target-dir "$src/target" 2>&1 | tail -3) ||
            die "the build failed (see above)"
    else
        say "cargo is not available${build_note:+ ($build_note)}: using the binary already built in target/release"
    fi
    binary="$src/target/release/security-monitor"
fi
[ -x "$binary" ] || die "$binary is not an executable file"
"$binary" --version >/dev/null || die "$binary does not run on this machine"

say "installing $bin_dest"
install -D -m 0755 "$binary" "$bin_dest.new"
mv -f "$bin_dest.new" "$bin_dest"

install -d -m 0750 "$conf_dir" "$state_dir"
if [ -e "$conf" ]; then
    install -m 0600 "$src/config/monitor_config.json" "$conf.dist"
    say "kept your $conf; the new default is beside it as $conf.dist"
    "$bin_dest" check-config "$conf" || say "WARNING: your config has errors (above); the service will not start until they are fixed"
else
    # It may hold an SMTP password: root only.
    install -m 0600 "$src/config/monitor_config.json" "$conf"
    say "installed the default config $conf"
fi

if [ -d "$(dirname "$completion_dest")" ] || mkdir -p "$(dirname "$completion_dest")"; then
    "$bin_dest" completions bash >"$completion_dest" 2>/dev/null || true
fi

install -D -m 0644 "$src/systemd/security-monitor.service" "$unit_dest"
case "$prefix" in
    /usr/local|/usr) ;; # systemd finds the command there by itself
    *) sed -i -E "s#^(ExecStartPre|ExecStart|ExecReload)=security-monitor #\1=$bin_dest #" "$unit_dest" ;;
esac

if systemd_running; then
    systemctl daemon-reload
    systemctl enable security-monitor.service >/dev/null 2>&1
    if systemctl is-active --quiet security-monitor.service; then
        say "restarting the running service on the new binary (bans are kept)"
        systemctl restart security-monitor.service
    else
        systemctl start security-monitor.service || true
    fi
    if systemctl is-active --quiet security-monitor.service; then
        say "installed and running:  systemctl status security-monitor   journalctl -u security-monitor   security-monitor status"
    else
        systemctl status --no-pager security-monitor.service || true
        die "installed, but the service did not start (see above and journalctl -u security-monitor)"
    fi
else
    say "installed. systemd is not running here, so nothing was started. Run it in the foreground with:"
    say "  $bin_dest run --config $conf"
fi
