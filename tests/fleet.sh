#!/usr/bin/env bash
# Fleet bans end to end (issue 16): a real nats-server with JetStream in a hub network
# namespace, three daemons in namespaces h1-h3 (a veth each to the hub's bridge), each
# banning in its own nftables. No Docker: the daemons watch no containers.
#
#   tests/fleet.sh [BINARY]        (root; BINARY default target/release/security-monitor)
#
# FLEET_BANS (default 100) bans on h1 are checked in h2's and h3's kernel sets, and their
# propagation latency (h1's firewall to h2's and h3's) is printed as p50/p99. They are
# made with the CLI (FLEET_PARALLEL calls at once, default 1), or with FLEET_VIA=socket
# straight on h1's control socket, one every FLEET_GAP_MS (default 20): the CLI's own start
# (reading and checking the config, some 0.3 s of CPU) then does not compete with the
# daemons for the CPU while bans propagate. FLEET_FLOOD (default 10000) records are then
# flooded with h1's credentials: h2 holds them beyond its fleet.remote_burst, h3 (whose
# valve is wide open) takes them, and h3's restart measures its convergence with them all.
# With CI=true a missing prerequisite is a failure; otherwise a loud skip.
# Traffic goes only to loopback and the namespaces made here; everything started is
# stopped by its pid and the namespaces are deleted.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${1:-${SECMON_BIN:-$repo/target/release/security-monitor}}
bans=${FLEET_BANS:-100}
parallel=${FLEET_PARALLEL:-1}
via=${FLEET_VIA:-cli}
gap_ms=${FLEET_GAP_MS:-20}
flood=${FLEET_FLOOD:-10000}
ci=${CI:-false}

skip() {
    if [ "$ci" = true ]; then
        echo "FATAL: fleet test: $* (CI=true: a missing prerequisite is a failure)" >&2
        exit 1
    fi
    printf '\n!!!!!!!!\n!!! SKIPPING the fleet test: %s\n!!!!!!!!\n\n' "$*" >&2
    exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, nftables)"
for t in nats-server nft ip python3; do
    command -v "$t" >/dev/null || skip "$t is not installed (apt-get install nats-server nftables iproute2 python3)"
done
[ -x "$bin" ] || skip "no daemon binary at $bin (cargo build --release)"

passed=0
failed=0
ok() { echo "PASS: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }

work=$(mktemp -d /tmp/secmon-fleet.XXXXXX)
hub=sfhub
hosts=(h1 h2 h3)
bucket=secmon-fleet-test
declare -A pid addr
nats_pid=
cleanup() {
    set +e
    for h in "${hosts[@]}"; do
        if [ -n "${pid[$h]:-}" ]; then kill "${pid[$h]}" 2>/dev/null; fi
    done
    if [ -n "$nats_pid" ]; then kill "$nats_pid" 2>/dev/null; fi
    sleep 0.5
    for h in "${hosts[@]}"; do
        if [ -n "${pid[$h]:-}" ]; then kill -9 "${pid[$h]}" 2>/dev/null; fi
    done
    if [ -n "$nats_pid" ]; then kill -9 "$nats_pid" 2>/dev/null; fi
    for ns in "$hub" sfh1 sfh2 sfh3; do ip netns del "$ns" 2>/dev/null; done
    if [ "$failed" -gt 0 ] || [ -n "${KEEP_FLEET_WORK:-}" ]; then
        echo "logs kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# --- the network: a hub with a bridge, a veth from each host's namespace to it ---------
for ns in "$hub" sfh1 sfh2 sfh3; do ip netns del "$ns" 2>/dev/null || true; done
ip netns add "$hub"
ip -n "$hub" link set lo up
ip -n "$hub" link add br0 type bridge
ip -n "$hub" addr add 10.231.0.1/24 dev br0
ip -n "$hub" link set br0 up
n=11
for h in "${hosts[@]}"; do
    ns=sf$h
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "sf${h}a" netns "$hub" type veth peer name "sf${h}b" netns "$ns"
    ip -n "$hub" link set "sf${h}a" master br0 up
    addr[$h]=10.231.0.$n
    ip -n "$ns" addr add "${addr[$h]}/24" dev "sf${h}b"
    ip -n "$ns" link set "sf${h}b" up
    n=$((n + 1))
done

# --- nats-server with JetStream: one user per host, who may write only its own keys ----
mkdir -p "$work/js"
perms() {
    # What a host needs on a 2.9 server: its own keys; the bucket's stream info, creation,
    # consumers and direct gets; flow-control replies; answers in its inbox.
    cat <<EOF
{ publish: { allow: ["\$KV.$bucket.$1.>", "\$JS.API.INFO", "\$JS.API.STREAM.INFO.KV_$bucket", "\$JS.API.STREAM.CREATE.KV_$bucket",
                     "\$JS.API.CONSUMER.CREATE.KV_$bucket", "\$JS.API.CONSUMER.CREATE.KV_$bucket.>", "\$JS.API.CONSUMER.DELETE.KV_$bucket.>",
                     "\$JS.API.CONSUMER.INFO.KV_$bucket.>", "\$JS.API.DIRECT.GET.KV_$bucket.>", "\$JS.FC.KV_$bucket.>"] },
  subscribe: { allow: ["_INBOX.>"] } }
EOF
}
cat >"$work/nats.conf" <<EOF
listen: 10.231.0.1:4222
server_name: secmon_fleet_test
jetstream { store_dir: "$work/js", max_memory_store: 64MB, max_file_store: 512MB }
authorization {
  users: [
    { user: h1, password: pass-h1, permissions: $(perms h1) }
    { user: h2, password: pass-h2, permissions: $(perms h2) }
    { user: h3, password: pass-h3, permissions: $(perms h3) }
  ]
}
EOF
start_nats() {
    ip netns exec "$hub" nats-server -c "$work/nats.conf" >>"$work/nats.log" 2>&1 &
    nats_pid=$!
    for _ in $(seq 100); do
        ip netns exec "$hub" bash -c ': >/dev/tcp/10.231.0.1/4222' 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nats-server did not start:"; tail -20 "$work/nats.log"; exit 1
}
start_nats
echo "nats-server $(nats-server --version) with JetStream in netns $hub (pid $nats_pid)"

# --- the daemons ---------------------------------------------------------------------------
burst=$((bans + 300))
for h in "${hosts[@]}"; do
    d=$work/$h
    mkdir -p "$d/state"
    allow='[]'
    hb=$burst
    # h2 never bans this address (its allowlist), whoever asks.
    [ "$h" = h2 ] && allow='["198.51.100.77"]'
    # h3 takes any flood: its convergence after a restart is measured with it.
    [ "$h" = h3 ] && hb=1000000
    cat >"$d/config.json" <<EOF
{
  "docker": {"socket": "$d/no-docker.sock"},
  "state": {"dir": "$d/state"},
  "control": {"socket": "$d/control.sock"},
  "firewall": {"backend": "nftables", "table": "secmon_fleet"},
  "allowlist": $allow,
  "fleet": {"enabled": true, "url": "nats://10.231.0.1:4222", "user": "$h", "password": "pass-$h",
            "bucket": "$bucket", "host_id": "$h", "remote_burst": $hb, "remote_burst_window": "10m"}
}
EOF
done
start_daemon() {
    local h=$1
    ip netns exec "sf$h" env RUST_LOG=info "$bin" run -c "$work/$h/config.json" >>"$work/$h/daemon.log" 2>&1 &
    pid[$h]=$!
}
cli() {
    local h=$1
    shift
    ip netns exec "sf$h" "$bin" "$@" -c "$work/$h/config.json"
}
status() { cli "$1" status --json 2>/dev/null; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); f=d.get('fleet') or {}; print(f.get('$1'))" 2>/dev/null || echo None; }
# The IPv4 addresses in host $1's kernel set, one a line, sorted.
kernel() {
    ip netns exec "sf$1" nft -j list set inet secmon_fleet banned_v4 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
for o in d.get("nftables", []):
    s = o.get("set")
    if not s:
        continue
    for e in s.get("elem", []):
        v = e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e
        print(v)
' 2>/dev/null | sort
}
# The kernel timeout left of $2 in host $1's set, in seconds.
expires_in() {
    ip netns exec "sf$1" nft -j list set inet secmon_fleet banned_v4 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
for o in d.get("nftables", []):
    for e in (o.get("set") or {}).get("elem", []):
        if isinstance(e, dict) and "elem" in e and e["elem"]["val"] == sys.argv[1]:
            print(e["elem"].get("expires", 0))
' "$2"
}
# Matched on the whole output, not through a pipe into `grep -q`: with pipefail, grep
# quitting at the first match makes the writer's SIGPIPE the pipeline's status.
has() { local k; k=$(kernel "$1"); grep -qx "$2" <<<"$k"; }
# wait_for SECONDS DESCRIPTION COMMAND...: polls every 20 ms.
wait_for() {
    local limit=$1
    shift
    local end=$((SECONDS + limit))
    while [ $SECONDS -le $end ]; do
        if "$@"; then return 0; fi
        sleep 0.02
    done
    return 1
}
connected() { [ "$(status "$1" | field caught_up)" = True ]; }
nth_ip() { echo "100.70.$(($1 / 250)).$(($1 % 250 + 1))"; }

for h in "${hosts[@]}"; do start_daemon "$h"; done
for h in "${hosts[@]}"; do
    if ! wait_for 30 connected "$h"; then
        echo "$h did not connect to the fleet:"; tail -30 "$work/$h/daemon.log"; status "$h" || true
        exit 1
    fi
done
echo "three daemons connected (h1 ${pid[h1]}, h2 ${pid[h2]}, h3 ${pid[h3]})"

# --- 1. bans on h1 appear in h2's and h3's kernel sets -------------------------------------
t0=$(date +%s%N)
if [ "$via" = socket ]; then
    for i in $(seq 0 $((bans - 1))); do nth_ip "$i"; done | python3 -c '
import json, socket, sys, time
path, gap = sys.argv[1], int(sys.argv[2]) / 1000
for ip in sys.stdin.read().split():
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(json.dumps({"command": "ban", "ip": ip, "seconds": 3600, "reason": "fleet test"}).encode() + b"\n")
    r = json.loads(s.makefile().readline())
    s.close()
    if not r.get("ok"):
        sys.exit("ban %s: %s" % (ip, r))
    time.sleep(gap)
' "$work/h1/control.sock" "$gap_ms"
else
    for i in $(seq 0 $((bans - 1))); do nth_ip "$i"; done \
        | xargs -P "$parallel" -I{} ip netns exec sfh1 "$bin" ban {} --for 1h --reason "fleet test" -c "$work/h1/config.json" >/dev/null
fi
t1=$(date +%s%N)
want=$(for i in $(seq 0 $((bans - 1))); do nth_ip "$i"; done | sort)
all_in() { [ "$(kernel "$1" | grep -c '^100\.70\.')" -ge "$bans" ]; }
if wait_for 20 all_in h2 && wait_for 20 all_in h3 \
    && [ "$(kernel h2 | grep '^100\.70\.')" = "$want" ] && [ "$(kernel h3 | grep '^100\.70\.')" = "$want" ]; then
    ok "$bans bans on h1 are in h2's and h3's kernel sets (made with $via in $(((t1 - t0) / 1000000)) ms)"
else
    bad "$bans bans on h1: h2 holds $(kernel h2 | grep -c '^100\.70\.'), h3 holds $(kernel h3 | grep -c '^100\.70\.')"
fi
for h in h2 h3; do
    s=$(status "$h")
    echo "propagation h1 -> $h over $(echo "$s" | field latency_samples) bans: p50 $(echo "$s" | field latency_ms_p50) ms, p99 $(echo "$s" | field latency_ms_p99) ms"
done
last=$(nth_ip $((bans - 1)))
t=$(expires_in h3 "$last")
t1=$(expires_in h1 "$last")
if [ -n "$t" ] && [ -n "$t1" ] && [ $((t1 - t)) -le 2 ] && [ $((t - t1)) -le 2 ]; then
    ok "a remote ban's kernel timeout is the origin's remaining time (h3 ${t}s, h1 ${t1}s of 1h)"
else
    bad "a remote ban's kernel timeout on h3 is ${t:-missing}s, on h1 ${t1:-missing}s"
fi

# --- 2. a fleet-wide unban clears every host -------------------------------------------
# 203.0.113.50: banned by h2 itself (its own record) and by h1; h1 asks the fleet to lift it.
cli h2 ban 203.0.113.50 --for 1h >/dev/null
cli h1 ban 203.0.113.50 --for 1h >/dev/null
wait_for 10 has h3 203.0.113.50 || true
out=$(cli h1 unban 203.0.113.50 --fleet)
echo "  h1: $out"
gone_everywhere() { ! has h1 203.0.113.50 && ! has h2 203.0.113.50 && ! has h3 203.0.113.50; }
if wait_for 10 gone_everywhere; then
    keys=$(cli h3 list --fleet --json | python3 -c 'import json,sys; print(sorted(r["key"]+":"+r["state"] for r in json.load(sys.stdin) if r["record"]["ip"]=="203.0.113.50"))')
    if grep -q "h2.203.0.113.50" <<<"$keys"; then
        bad "after the fleet-wide unban h2's own record of it is still in the bucket: $keys"
    else
        ok "a fleet-wide unban from h1 lifted 203.0.113.50 on h1, h2 (its own ban too) and h3 ($keys)"
    fi
else
    bad "fleet-wide unban: h1 $(has h1 203.0.113.50 && echo holds || echo clear), h2 $(has h2 203.0.113.50 && echo holds || echo clear), h3 $(has h3 203.0.113.50 && echo holds || echo clear)"
fi

# --- 3. h2 refuses a ban on one of its never-ban addresses --------------------------------
cli h1 ban 198.51.100.77 --for 1h >/dev/null
cli h1 ban "${addr[h2]}" --for 1h >/dev/null
if wait_for 10 has h3 198.51.100.77 && wait_for 10 has h3 "${addr[h2]}"; then
    sleep 0.3
    refused=$(cli h2 list --fleet --json | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if r["state"] == "refused":
        print(r["record"]["ip"], "|", r["reason"])')
    if ! has h2 198.51.100.77 && ! has h2 "${addr[h2]}" && grep -q "198.51.100.77 .*allowlist.*from fleet host h1" <<<"$refused" \
        && grep -q "${addr[h2]} .*address of this host" <<<"$refused"; then
        ok "h2 refused h1's bans of its allowlisted address and of its own address, naming h1; h3 applied them"
        echo "$refused" | sed 's/^/  h2 refused: /'
    else
        bad "never-ban on h2: kernel $(kernel h2 | grep -c -e 198.51.100.77 -e "${addr[h2]}") of 2, refusals: $refused"
    fi
else
    bad "h3 did not get h1's bans of 198.51.100.77 and ${addr[h2]}"
fi

# --- 4. the server's per-host permissions: h1 cannot write h2's keys -----------------------
perm=$(ip netns exec sfh1 python3 - "$bucket" <<'EOF'
import json, socket, sys
bucket = sys.argv[1]
s = socket.create_connection(("10.231.0.1", 4222), timeout=5)
f = s.makefile("rb")
f.readline()  # INFO
s.sendall(b'CONNECT {"user":"h1","pass":"pass-h1","verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n')
rec = {"kind": "ban", "ip": "192.0.2.99", "rule": "forged", "category": "forged", "severity": "high",
       "banned_at": 0, "expires_at": 4102444800, "duration": 3600, "times_banned": 1, "origin": "h2"}
body = json.dumps(rec).encode()
s.sendall(b"PUB $KV.%s.h2.192.0.2.99 %d\r\n%s\r\nPING\r\n" % (bucket.encode(), len(body), body))
while True:
    line = f.readline().decode().strip()
    if line.startswith("-ERR") or line == "PONG":
        print(line)
        if line == "PONG":
            break
EOF
)
sleep 0.5
if grep -q "Permissions Violation for Publish" <<<"$perm" && ! has h3 192.0.2.99 && ! has h1 192.0.2.99; then
    ok "the server refused h1's write to h2's key: $(echo "$perm" | head -1)"
else
    bad "h1 writing h2's key: server said '$perm'; h3 $(has h3 192.0.2.99 && echo applied || echo "did not apply") it"
fi

# --- 5. nats-server killed: h1 still bans at once, and reconciles when it returns ---------
kill "$nats_pid"
wait "$nats_pid" 2>/dev/null || true
nats_pid=
wait_for 30 bash -c "[ \"\$(ip netns exec sfh1 '$bin' status --json -c '$work/h1/config.json' | python3 -c 'import json,sys; print((json.load(sys.stdin).get(\"fleet\") or {}).get(\"connected\"))')\" = False ]" || true
slowest=0
for i in 1 2 3 4 5; do
    a=$(date +%s%N)
    cli h1 ban "192.0.2.$i" --for 1h >/dev/null
    b=$(date +%s%N)
    ms=$(((b - a) / 1000000))
    [ "$ms" -gt "$slowest" ] && slowest=$ms
done
health=$(cli h1 health --json 2>/dev/null || true)
if has h1 192.0.2.5 && [ "$slowest" -lt 1000 ]; then
    ok "with nats-server down h1 banned 5 addresses, the slowest CLI call in ${slowest} ms; health: $(echo "$health" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], "-", "; ".join(p for p in d["problems"] if "NATS" in p)[:160])' 2>/dev/null)"
else
    bad "with nats-server down: h1 holds 192.0.2.5: $(has h1 192.0.2.5 && echo yes || echo no); slowest ban ${slowest} ms"
fi
start_nats
back() { has h2 192.0.2.5 && has h3 192.0.2.5 && has h2 192.0.2.1 && has h3 192.0.2.1; }
a=$(date +%s%N)
if wait_for 60 back; then
    b=$(date +%s%N)
    ok "nats-server back: h1 rewrote its bans and h2, h3 hold the 5 made while it was down ($(((b - a) / 1000000)) ms after the restart)"
else
    bad "nats-server back: h2 holds $(kernel h2 | grep -c '^192\.0\.2\.'), h3 holds $(kernel h3 | grep -c '^192\.0\.2\.') of the 5"
fi

# --- 6. h3's link down while h1 bans 50 and unbans 10 -> back up, h3 holds exactly 40 -------
ip -n "$hub" link set sfh3a down
for i in $(seq 1 50); do cli h1 ban "198.18.0.$i" --for 30m >/dev/null; done
for i in $(seq 1 10); do cli h1 unban "198.18.0.$i" >/dev/null; done
sleep 2
ip -n "$hub" link set sfh3a up
forty() {
    local k
    k=$(kernel h3)
    [ "$(grep -c '^198\.18\.0\.' <<<"$k")" -eq 40 ] && ! grep -qx '198\.18\.0\.\([1-9]\|10\)' <<<"$k"
}
a=$(date +%s%N)
if wait_for 60 forty; then
    b=$(date +%s%N)
    t=$(expires_in h3 198.18.0.50)
    h1t=$(expires_in h1 198.18.0.50)
    d=$((h1t - t))
    if [ "${d#-}" -le 2 ]; then
        ok "h3 back up holds exactly 40 of h1's 50-10 bans ($(((b - a) / 1000000)) ms after the link came up), timeout ${t}s vs h1's ${h1t}s"
    else
        bad "h3 holds the 40, but its timeout ${t}s is off h1's ${h1t}s by more than 2s"
    fi
else
    bad "h3 after its link came back holds $(kernel h3 | grep -c '^198\.18\.0\.') of 198.18.0.x (want exactly 40: .11-.50)"
fi

# --- 7. a flood of bans from one origin (h1's credentials) is held --------------------------
in_before=$(kernel h2 | wc -l)
ip netns exec sfh1 python3 - "$bucket" "$flood" <<'EOF'
import json, socket, sys, time
bucket, n = sys.argv[1], int(sys.argv[2])
s = socket.create_connection(("10.231.0.1", 4222), timeout=5)
f = s.makefile("rb")
f.readline()
s.sendall(b'CONNECT {"user":"h1","pass":"pass-h1","verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n')
now = int(time.time())
out = []
for i in range(n):
    ip = "10.%d.%d.%d" % (100 + i // 65536, (i // 256) % 256, i % 256)
    rec = {"kind": "ban", "ip": ip, "rule": "flood", "category": "flood", "severity": "high", "banned_at": now,
           "expires_at": now + 3600, "duration": 3600, "times_banned": 1, "origin": "h1"}
    body = json.dumps(rec).encode()
    out.append(b"PUB $KV.%s.h1.%s %d\r\n%s\r\n" % (bucket.encode(), ip.encode(), len(body), body))
s.sendall(b"".join(out) + b"PING\r\n")
while f.readline().strip() != b"PONG":
    pass
EOF
held_enough() { [ "$(status h2 | field remote_held)" -ge "$((flood - burst))" ]; }
if wait_for 30 held_enough; then
    sleep 0.5
    in_after=$(kernel h2 | wc -l)
    if [ $((in_after - in_before)) -le "$burst" ]; then
        ok "a flood of $flood bans from h1's credentials: h2 applied $((in_after - in_before)) and held $(status h2 | field remote_held) (fleet.remote_burst $burst per 10m)"
    else
        bad "flood: h2 took $((in_after - in_before)) new bans, more than remote_burst $burst"
    fi
else
    bad "flood: h2 held only $(status h2 | field remote_held) of $flood"
fi
grep -q "fleet: held back the ban" "$work/h2/daemon.log" && ok "h2's log says the flood was held" || bad "h2's log does not say the flood was held"
alerted=$(cli h2 alerts --json -n 100000 2>/dev/null | python3 -c 'import json,sys; print(sum(1 for a in json.load(sys.stdin) if a.get("kind") == "held" and "fleet:h1" in json.dumps(a)))' 2>/dev/null || echo 0)
[ "$alerted" -gt 0 ] && ok "h2 alerted the held flood ($alerted held alert(s) naming fleet:h1: one a minute at most)" || bad "h2 has no held alert naming fleet:h1"
echo "  h2's list --fleet ends: $(cli h2 list --fleet | tail -1)"
flooded() { [ "$(kernel h3 | grep -c '^10\.1')" -ge "$flood" ]; }
a=$(date +%s%N)
if wait_for 120 flooded; then
    ok "h3, whose fleet.remote_burst lets it, applied all $flood ($(( ($(date +%s%N) - a) / 1000000 )) ms after the flood was sent)"
else
    bad "h3 applied $(kernel h3 | grep -c '^10\.1') of the $flood flooded bans"
fi

# --- 8. a daemon restart loses and duplicates nothing; convergence time ---------------------
before=$(kernel h3)
kill "${pid[h3]}"
wait "${pid[h3]}" 2>/dev/null || true
start_daemon h3
if wait_for 30 connected h3 && sleep 1 && [ "$(kernel h3)" = "$before" ]; then
    ok "h3 restarted holds the same $(echo "$before" | wc -l) bans; converged in $(status h3 | field last_converge_ms) ms"
else
    bad "h3 after a restart: $(kernel h3 | wc -l) bans, before $(echo "$before" | wc -l)"
fi

# --- 9. a new host joins: every active ban of the bucket, from nothing ----------------------
kill "${pid[h3]}"
wait "${pid[h3]}" 2>/dev/null || true
ip netns exec sfh3 nft delete table inet secmon_fleet
rm -rf "$work/h3/state"
mkdir -p "$work/h3/state"
start_daemon h3
joined() { [ "$(kernel h3 | wc -l)" -ge "$(echo "$before" | wc -l)" ]; }
if wait_for 60 joined && [ "$(kernel h3)" = "$before" ]; then
    ok "h3 joined afresh and holds all $(echo "$before" | wc -l) bans; converged in $(status h3 | field last_converge_ms) ms (connect to every ban in its kernel)"
else
    bad "h3 joined afresh holds $(kernel h3 | wc -l) of $(echo "$before" | wc -l)"
fi

# --- 10. h1 restarts: it deletes its own stale keys (the flood under its name) ----------------
kill "${pid[h1]}"
wait "${pid[h1]}" 2>/dev/null || true
start_daemon h1
a=$(date +%s%N)
# (An empty answer from nft is not "none left": h3 must still list h1's real bans.)
no_flood() { local k; k=$(kernel h3); [ "$(grep -c '^100\.70\.' <<<"$k")" -eq "$bans" ] && ! grep -q '^10\.1' <<<"$k"; }
if wait_for 120 no_flood; then
    ok "h1 restarted deleted the $flood stale keys under its name (it never banned them) and h3 lifted them all, $(( ($(date +%s%N) - a) / 1000000 )) ms after the restart; h3 still holds $(kernel h3 | grep -c '^100\.70\.') of h1's $bans"
    sleep 0.5
    grep -o "rewrote this host's.*failed" "$work/h1/daemon.log" | tail -1 | sed 's/^/  h1: /' || true
    grep -o "lifted [0-9]* ban(s) their fleet hosts ended" "$work/h3/daemon.log" | awk '{n += $2} END {print "  h3: lifted " n " ban(s) their fleet hosts ended, in all"}' || true
else
    bad "after h1's restart h3 still holds $(kernel h3 | grep -c '^10\.1') flooded bans"
fi
[ "$(kernel h3 | grep -c '^100\.70\.')" -eq "$bans" ] || bad "h3 lost some of h1's real bans: $(kernel h3 | grep -c '^100\.70\.') of $bans"
echo
for h in "${hosts[@]}"; do
    s=$(status "$h")
    echo "$h: published $(echo "$s" | field published), applied $(echo "$s" | field remote_applied), refused $(echo "$s" | field remote_refused), held $(echo "$s" | field remote_held), p50 $(echo "$s" | field latency_ms_p50) ms, p99 $(echo "$s" | field latency_ms_p99) ms, converged $(echo "$s" | field last_converge_ms) ms"
done
echo "fleet: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
