#!/usr/bin/env bash
# Real attack tools against real web servers, with the daemon banning them.
#
#   tests/attack_tools.sh [BINARY]
#
# BINARY (or $SECMON_BIN; default target/release/security-monitor) is the daemon to test.
# Two servers run on the private dockerd (tests/dockerd.sh; SECMON_DOCKER_SOCK and
# SECMON_DOCKER_NETNS as tests/run.sh exports them, else the one at
# /run/secmon-test/docker.sock, else one started here): Caddy (Debian's binary in an image
# made from a tarball, JSON access log on stdout) and nginx (a debootstrap root
# filesystem, combined log on stdout), both serving tests/attack_tools/site with the
# answers of tests/attack_tools/Caddyfile and nginx.conf. The daemon runs with the
# default config/monitor_config.json (the changes are printed) in the dockerd's network
# namespace, so its nftables bans cover the published ports.
#
# Each tool (sqlmap, nmap -sV with http scripts, ffuf, gobuster, dirb, hydra, wapiti,
# whatweb), once with its own User-Agent and once with a browser's, runs against each
# server from a network namespace of its own (a veth pair into the dockerd's namespace,
# 10.198.N.2), so the server sees its own address. A case passes when the address is in
# the nft set and a curl from that namespace then times out. A benign visitor (headless
# chromium, wget --mirror, two mistyped logins, searches with quotes and dashes) from
# another namespace must never be banned. Prints a table: requests each server logged
# from the tool (all of them came before the ban: after it nothing reaches the server),
# seconds to the ban, PASS/FAIL; then sample log lines of each failing case.
#
# SECMON_ATTACK_KEEP=DIR keeps both servers' logs and each tool's output in DIR.
# Exits non-zero on any FAIL. Needs root, nft, ip, docker and the tools (tests/run.sh
# installs them); without them it skips loudly, or fails with CI=true. Every tool run is
# bounded by `timeout`; the whole script takes a few minutes (plus about a minute the
# first time, for the nginx root filesystem). Cleans up what it made on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here=$repo/tests/attack_tools
bin=${1:-${SECMON_BIN:-$repo/target/release/security-monitor}}
ci=${CI:-false}

skip() {
    if [ "$ci" = true ]; then
        echo "FATAL: attack tools test: $* (CI=true: a missing prerequisite is a failure)" >&2
        exit 1
    fi
    printf '\n!!!!!!!!\n!!! SKIPPING the attack tools test: %s\n!!!!!!!!\n\n' "$*" >&2
    exit 0
}

[ "$(id -u)" = 0 ] || skip "it needs root (network namespaces, nftables, docker)"
[ -x "$bin" ] || skip "no daemon binary at $bin (build it, or pass its path)"
for t in ip nft docker curl wget debootstrap sqlmap nmap ffuf gobuster dirb hydra wapiti whatweb chromium caddy; do
    command -v "$t" >/dev/null || skip "$t is not installed (tests/run.sh installs it)"
done

id=$$
work=$(mktemp -d /tmp/smt-attack.XXXXXX)
chmod 755 "$work"
caddy_box=smt-attack-caddy-$id
nginx_box=smt-attack-nginx-$id
caddy_image=secmon-caddy:test
nginx_image=secmon-nginx:test
label=secmon-attack-tools=$id
table=smt_attack_$id
daemon_pid=
namespaces=()
tool_pids=()
own_dockerd=false
browser_ua="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"

# The dockerd: tests/run.sh's, else one already answering, else our own.
# shellcheck source=tests/dockerd.sh
. "$repo/tests/dockerd.sh"
if [ -n "${SECMON_DOCKER_SOCK:-}" ]; then
    netns=${SECMON_DOCKER_NETNS:?SECMON_DOCKER_SOCK is set but SECMON_DOCKER_NETNS is not}
elif DOCKER_HOST="unix://$test_run/docker.sock" docker version >/dev/null 2>&1; then
    export SECMON_DOCKER_SOCK="unix://$test_run/docker.sock"
    netns=$test_netns
else
    start_dockerd || skip "the private dockerd did not start (see above)"
    own_dockerd=true
    netns=$SECMON_DOCKER_NETNS
fi
export DOCKER_HOST=$SECMON_DOCKER_SOCK
[ -e "/run/netns/$netns" ] || skip "the dockerd's network namespace /run/netns/$netns is missing"
in_docker_ns() { nsenter --net="/run/netns/$netns" "$@"; }

cleanup() {
    set +e
    local p
    for p in "${tool_pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "$work"/pid-*; do [ -f "$p" ] && kill -- "-$(cat "$p")" 2>/dev/null; done
    if [ -n "$daemon_pid" ]; then
        kill "$daemon_pid" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    docker rm -f "$caddy_box" "$nginx_box" >/dev/null 2>&1
    in_docker_ns nft delete table inet "$table" 2>/dev/null
    for p in "${namespaces[@]}"; do ip netns del "$p" 2>/dev/null; done
    [ "$own_dockerd" = true ] && stop_private_dockerd
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
step() { printf '\n--- %s\n' "$*"; }
fail_setup() { echo "FAIL (setup): $*" >&2; exit 1; }
now() { date +%s.%N; }

# --- images (cached by tag: the site and configs are bind-mounted, not baked in) -------
if ! docker image inspect "$caddy_image" >/dev/null 2>&1; then
    step "building $caddy_image: Debian's caddy and its libraries, nothing else"
    root=$work/caddy-root
    mkdir -p "$root/usr/bin" "$root/tmp" "$root/etc/caddy" "$root/srv"
    chmod 1777 "$root/tmp"
    cp /usr/bin/caddy "$root/usr/bin/caddy"
    for lib in $(ldd /usr/bin/caddy | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    tar -C "$root" -c . | docker import - "$caddy_image" >/dev/null
    rm -rf "$root"
fi
if ! docker image inspect "$nginx_image" >/dev/null 2>&1; then
    step "building $nginx_image: a Debian 12 root filesystem with nginx (debootstrap, once)"
    root=$work/nginx-root
    debootstrap --variant=minbase --include=nginx-light bookworm "$root" http://deb.debian.org/debian \
        >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; fail_setup "debootstrap failed"; }
    rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale" "$root/var/cache/apt" "$root/var/lib/apt/lists"
    tar -C "$root" -c . | docker import - "$nginx_image" >/dev/null
    rm -rf "$root"
fi

# --- the two servers ------------------------------------------------------------------
step "starting Caddy and nginx on the private dockerd"
docker run -d --name "$caddy_box" --label secmon-test=1 --label "$label" -p 8080 \
    -e HOME=/tmp -e XDG_DATA_HOME=/tmp -e XDG_CONFIG_HOME=/tmp \
    -v "$here/Caddyfile:/etc/caddy/Caddyfile:ro" -v "$here/site:/srv:ro" \
    "$caddy_image" /usr/bin/caddy run --config /etc/caddy/Caddyfile --adapter caddyfile >/dev/null
docker run -d --name "$nginx_box" --label secmon-test=1 --label "$label" -p 8080 \
    -v "$here/nginx.conf:/etc/nginx/attack.conf:ro" -v "$here/site:/srv:ro" \
    "$nginx_image" /usr/sbin/nginx -c /etc/nginx/attack.conf -g 'daemon off;' >/dev/null
declare -A port
for b in "$caddy_box" "$nginx_box"; do
    sleep 0.5
    [ "$(docker inspect -f '{{.State.Running}}' "$b")" = true ] || { docker logs "$b" 2>&1 | tail -20 >&2; fail_setup "$b is not running (its log above)"; }
done
port[caddy]=$(docker port "$caddy_box" 8080/tcp | grep -m1 -o '0\.0\.0\.0:[0-9]*' | cut -d: -f2)
port[nginx]=$(docker port "$nginx_box" 8080/tcp | grep -m1 -o '0\.0\.0\.0:[0-9]*' | cut -d: -f2)
echo "caddy: port ${port[caddy]}, nginx: port ${port[nginx]} (in netns $netns)"

# --- the daemon -----------------------------------------------------------------------
# The default config with only what a test must change (printed below as a diff).
step "the daemon: config/monitor_config.json, changed only where a test must"
cfg=$work/monitor_config.json
sed -e "s|\"label\": \"security-monitor.enable=true\"|\"label\": \"$label\"|" \
    -e "s|\"table\": \"security_monitor\"|\"table\": \"$table\"|" \
    -e "s|\"dir\": \"/var/lib/security-monitor\"|\"dir\": \"$work/state\"|" \
    -e "s|\"socket\": \"/run/security-monitor/control.sock\"|\"socket\": \"$work/control.sock\"|" \
    "$repo/config/monitor_config.json" >"$cfg"
diff "$repo/config/monitor_config.json" "$cfg" || true
[ "$(diff "$repo/config/monitor_config.json" "$cfg" | grep -c '^>')" = 4 ] ||
    fail_setup "config/monitor_config.json changed shape: the four edits above did not all apply"
"$bin" check-config "$cfg" >/dev/null || fail_setup "the test config does not validate"
# The Docker socket comes from DOCKER_HOST (the config's default).
setsid nsenter --net="/run/netns/$netns" env DOCKER_HOST="$SECMON_DOCKER_SOCK" RUST_LOG=info \
    "$bin" run -c "$cfg" >"$work/daemon.log" 2>&1 </dev/null &
daemon_pid=$!
watching() {
    "$bin" status -c "$cfg" >"$work/status" 2>/dev/null &&
        grep -F "$caddy_box" "$work/status" >/dev/null && grep -F "$nginx_box" "$work/status" >/dev/null
}
for _ in $(seq 1 100); do
    watching && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log" >&2; fail_setup "the daemon exited"; }
    sleep 0.2
done
watching || { cat "$work/status" "$work/daemon.log" >&2; fail_setup "the daemon does not watch both servers after 20 s"; }
in_docker_ns nft list set inet "$table" banned_v4 >/dev/null || fail_setup "no nft set inet $table banned_v4"
echo "daemon pid $daemon_pid watches $caddy_box and $nginx_box; firewall table inet $table"

# --- network namespaces for the visitors ----------------------------------------------
in_docker_ns ip -4 addr show | grep -F ' 10.198.' >/dev/null &&
    fail_setup "10.198.0.0/16 is already used in netns $netns"
# make_ns N: a namespace smt-at-ID-N whose only way out is 10.198.N.2 -> 10.198.N.1 (in
# the dockerd's namespace, which DNATs the published ports to the containers).
make_ns() {
    local n=$1 ns=smt-at-$id-$1 a=sma$id-$1 b=smb$id-$1
    ip netns add "$ns"
    namespaces+=("$ns")
    ip link add "$a" type veth peer name "$b"
    ip link set "$a" netns "$netns"
    ip link set "$b" netns "$ns"
    in_docker_ns ip addr add "10.198.$n.1/30" dev "$a"
    in_docker_ns ip link set "$a" up
    ip -n "$ns" addr add "10.198.$n.2/30" dev "$b"
    ip -n "$ns" link set "$b" up
    ip -n "$ns" link set lo up
    ip -n "$ns" route add default via "10.198.$n.1"
}
banned() { in_docker_ns nft list set inet "$table" banned_v4 2>/dev/null | grep -E "(^|[ {,])$1([ ,}]|$)" >/dev/null; }
# Whether a TCP connection to the server opens (sends no request, so nothing is logged).
reachable() { ip netns exec "$1" timeout 3 bash -c ": >/dev/tcp/$2/$3" 2>/dev/null; }

# --- the benign visitor ---------------------------------------------------------------
step "a benign visitor (10.198.200.2): headless chromium, wget --mirror, two mistyped logins, searches"
make_ns 200
benign=smt-at-$id-200
for s in caddy nginx; do
    u=http://10.198.200.1:${port[$s]}
    reachable "$benign" 10.198.200.1 "${port[$s]}" || fail_setup "the benign namespace cannot reach $s"
    for page in / /about.html /products.html "/item?id=2" "/search?q=pinot"; do
        ip netns exec "$benign" timeout 30 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$work/chromium" \
            --dump-dom "$u$page" >/dev/null 2>>"$work/chromium.log" || echo "(chromium on $s$page: exit $?)"
    done
    (cd "$work" && ip netns exec "$benign" timeout 60 wget -q --mirror -np -P "mirror-$s" -U "$browser_ua" "$u/") || true
    for pw in hunter3 Hunter2; do
        ip netns exec "$benign" curl -s --max-time 10 -o /dev/null -w "login on $s: %{http_code}\n" -A "$browser_ua" -e "$u/login" \
            --data-urlencode username=alice --data-urlencode "password=$pw" "$u/login" || true
    done
    for q in "select a wine" "O'Brien" "Tom's diner -- menu" "red & white"; do
        ip netns exec "$benign" curl -s --max-time 10 -o /dev/null -A "$browser_ua" -e "$u/" --get --data-urlencode "q=$q" "$u/search" || true
    done
done
sleep 3
if banned 10.198.200.2; then benign_verdict=FAIL; else benign_verdict=PASS; fi
echo "benign visitor: $benign_verdict after the visit"

# --- the attack cases -----------------------------------------------------------------
# tool_cmd TOOL UA TARGET PORT DIR: the command line, one word a line.
tool_cmd() {
    local tool=$1 ua=$2 t=$3 p=$4 dir=$5 u="http://$3:$4"
    case $tool in
    sqlmap)
        printf '%s\n' sqlmap -u "$u/item?id=1" --batch --level 1 --risk 1 --timeout 5 --retries 0 \
            --flush-session --disable-coloring --output-dir "$dir/sqlmap"
        [ "$ua" = browser ] && printf '%s\n' --user-agent "$browser_ua" ;;
    nmap)
        printf '%s\n' nmap -Pn -n -sV -p "$p" --host-timeout 50s --script-timeout 40s \
            --script http-enum,http-title,http-headers,http-methods
        if [ "$ua" = browser ]; then
            printf '%s\n' --script-args "http.useragent=\"$browser_ua\""
        fi
        printf '%s\n' "$t" ;;
    ffuf)
        printf '%s\n' ffuf -u "$u/FUZZ" -w "$here/words.txt" -t 10 -s -mc all -maxtime 40
        [ "$ua" = browser ] && printf '%s\n' -H "User-Agent: $browser_ua" ;;
    gobuster)
        printf '%s\n' gobuster dir -u "$u" -w "$here/words.txt" -t 10 -q -z --timeout 5s
        [ "$ua" = browser ] && printf '%s\n' -a "$browser_ua" ;;
    dirb)
        printf '%s\n' dirb "$u/" "$here/words.txt" -S -r
        [ "$ua" = browser ] && printf '%s\n' -a "$browser_ua" ;;
    hydra)
        # hydra reads H= (a header, its colon escaped) only before the F= condition.
        local form="/login:username=^USER^&password=^PASS^:F=Invalid"
        [ "$ua" = browser ] && form="/login:username=^USER^&password=^PASS^:H=User-Agent\: $browser_ua:F=Invalid"
        printf '%s\n' hydra -I -l admin -P "$here/passwords.txt" -t 4 -s "$p" "$t" http-post-form "$form" ;;
    wapiti)
        printf '%s\n' wapiti -u "$u/" --scope folder -m sql,xss,exec,file -d 2 --max-scan-time 40 \
            --max-attack-time 15 -t 5 --flush-session -f txt -o "$dir/wapiti"
        [ "$ua" = browser ] && printf '%s\n' -A "$browser_ua" ;;
    whatweb)
        printf '%s\n' whatweb -a 4 --no-errors --color=never "$u/"
        [ "$ua" = browser ] && printf '%s\n' -U "$browser_ua" ;;
    esac
    return 0
}

tools=(sqlmap nmap ffuf gobuster dirb hydra wapiti whatweb)
limit=45 # seconds each tool may run
# run_case N TOOL UA SERVER: one tool from 10.198.N.2; writes $work/case-N.
run_case() {
    local n=$1 tool=$2 ua=$3 server=$4 ns=smt-at-$id-$1 ip=10.198.$1.2 t=10.198.$1.1
    local p=${port[$4]} dir=$work/run-$1 t0 tban="" pid end verdict="" note="" secs="-"
    mkdir -p "$dir/home"
    if ! reachable "$ns" "$t" "$p"; then
        echo "$n $tool $ua $server - FAIL harness:no-route" >"$work/case-$n"
        return
    fi
    if banned "$ip"; then
        echo "$n $tool $ua $server - FAIL harness:banned-before-start" >"$work/case-$n"
        return
    fi
    local cmd=()
    mapfile -t cmd < <(tool_cmd "$tool" "$ua" "$t" "$p" "$dir")
    t0=$(now)
    (cd "$dir" && exec setsid env HOME="$dir/home" ip netns exec "$ns" timeout -k 3 "$limit" "${cmd[@]}") \
        >"$dir/out" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$work/pid-$n"
    end=$((SECONDS + limit + 10))
    while [ "$SECONDS" -lt "$end" ]; do
        if banned "$ip"; then tban=$(now); break; fi
        # The tool ended: give the daemon a few seconds for its last lines.
        if ! kill -0 "$pid" 2>/dev/null && [ "$end" -gt $((SECONDS + 5)) ]; then end=$((SECONDS + 5)); fi
        sleep 0.3
    done
    kill -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ -n "$tban" ]; then
        secs=$(awk -v a="$t0" -v b="$tban" 'BEGIN { printf "%.1fs", b - a }')
        local rc=0
        ip netns exec "$ns" curl -s -o /dev/null --max-time 3 "http://$t:$p/" || rc=$?
        if [ "$rc" = 28 ]; then verdict=PASS; else verdict=FAIL; note="banned-but-curl-rc=$rc"; fi
    else
        verdict=FAIL
        note=not-banned
    fi
    echo "$n $tool $ua $server $secs $verdict $note" >"$work/case-$n"
}

step "attack cases: each tool x {its own User-Agent, a browser's} x {caddy, nginx}, $limit s at most each"
n=0
for tool in "${tools[@]}"; do
    first=$((n + 1))
    for ua in tool browser; do
        for server in caddy nginx; do
            n=$((n + 1))
            make_ns "$n"
            run_case "$n" "$tool" "$ua" "$server" &
            tool_pids+=($!)
        done
    done
    wait "${tool_pids[@]}" # not a bare wait: the daemon is a child too
    tool_pids=()
    for c in $(seq "$first" "$n"); do cut -d' ' -f2- "$work/case-$c"; done
done
cases=$n

# --- results --------------------------------------------------------------------------
# Requests each server logged from an address (all before the ban: after it, none arrive).
docker logs "$caddy_box" >"$work/log-caddy" 2>/dev/null
docker logs "$nginx_box" >"$work/log-nginx" 2>/dev/null
if [ -n "${SECMON_ATTACK_KEEP:-}" ]; then
    # Everything to look at afterwards: both servers' logs, each case, each tool's output.
    mkdir -p "$SECMON_ATTACK_KEEP"
    cp "$work"/log-* "$work"/case-* "$SECMON_ATTACK_KEEP/"
    for d in "$work"/run-*; do cp "$d/out" "$SECMON_ATTACK_KEEP/tool-${d##*-}.out"; done
fi
server_lines() { # SERVER IP
    if [ "$1" = caddy ]; then grep -F "\"remote_ip\":\"$2\"" "$work/log-caddy" || true
    else grep -E "^${2//./\\.} " "$work/log-nginx" || true; fi
}
if banned 10.198.200.2; then benign_verdict=FAIL; fi
# The rule that decided each ban, from the daemon's own list.
"$bin" list -c "$cfg" --json >"$work/list.json" 2>/dev/null || echo '[]' >"$work/list.json"
python3 -c 'import json, sys
for b in json.load(open(sys.argv[1])): print(b.get("ip"), b.get("rule") or "-")' "$work/list.json" >"$work/rules" 2>/dev/null || true
rule_of() { awk -v ip="$1" '$1 == ip { print $2; f = 1 } END { if (!f) print "-" }' "$work/rules"; }

step "summary"
printf '%-9s %-8s %-6s %9s %8s  %-7s %s\n' tool agent server requests to-ban verdict "rule (or why not)"
fails=0
for c in $(seq 1 "$cases"); do
    read -r _ tool ua server secs verdict note <"$work/case-$c"
    reqs=$(server_lines "$server" "10.198.$c.2" | wc -l)
    [ "$verdict" = PASS ] || fails=$((fails + 1))
    [ "$verdict" = PASS ] && note=$(rule_of "10.198.$c.2")
    printf '%-9s %-8s %-6s %9s %8s  %-7s %s\n' "$tool" "$ua" "$server" "$reqs" "$secs" "$verdict" "$note"
done
for s in caddy nginx; do
    printf '%-9s %-8s %-6s %9s %8s  %s\n' benign browser "$s" "$(server_lines "$s" 10.198.200.2 | wc -l)" "-" \
        "$([ "$benign_verdict" = PASS ] && echo "PASS (never banned)" || echo "FAIL (banned)")"
done
[ "$benign_verdict" = PASS ] || fails=$((fails + 1))

if [ "$fails" -gt 0 ]; then
    step "what the servers logged for the failing cases (first 4 lines each)"
    for c in $(seq 1 "$cases"); do
        read -r _ tool ua server _ verdict _ <"$work/case-$c"
        [ "$verdict" = PASS ] && continue
        echo "[$tool / $ua agent / $server, 10.198.$c.2]"
        server_lines "$server" "10.198.$c.2" | head -4 | cut -c1-400
    done
    if [ "$benign_verdict" != PASS ]; then
        echo "[benign visitor, 10.198.200.2]: the daemon's alerts:"
        "$bin" alerts -c "$cfg" 2>/dev/null | grep -F 10.198.200.2 | head -10 || true
    fi
    echo
    echo "attack_tools: $((cases + 1 - fails)) passed, $fails failed"
    exit 1
fi
echo
echo "attack_tools: $((cases + 1)) passed, 0 failed"
