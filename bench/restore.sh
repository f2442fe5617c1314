#!/usr/bin/env bash
# Benchmark: restore N bans (default 100,000) from blocked_ips.json into the firewall in
# one batch, as the daemon does at start, for nftables and iptables+ipset. Runs inside a
# network namespace of its own, never on the host's ruleset. Needs root, nft, ipset.
# Target: under 2 seconds for 100,000 (fail2ban users report hours for 20,000).
set -euo pipefail
n=${1:-100000}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${SECMON_BIN:-$repo/target/release/security-monitor}
[ -x "$bin" ] || (cd "$repo" && cargo build --release -q)
work=$(mktemp -d)
ns=smt-bench-restore
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up

python3 - "$n" "$work/state/blocked_ips.json" <<'PY'
import json, sys, time, os
n, path = int(sys.argv[1]), sys.argv[2]
now = int(time.time())
fmt = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
bans = []
for i in range(n):
    # A realistic mix: 90% IPv4 from all over, 10% IPv6.
    ip = f"{11 + (i >> 16) % 200}.{(i >> 8) & 255}.{i & 255}.{(i * 7) % 250 + 1}" if i % 10 else f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::1"
    bans.append({"ip": ip, "rule": "sqli-union-select", "category": "sqli", "severity": "critical",
                 "container": "web", "first_offence": fmt(now - 60), "last_offence": fmt(now - 30),
                 "banned_at": fmt(now - 30), "expires_at": fmt(now + 3600 + i % 86400), "times_banned": 1,
                 "evidence": ["GET /?id=1%27%20union%20select%20password%20from%20users-- HTTP/1.1"], "source": "detector"})
os.makedirs(os.path.dirname(path), exist_ok=True)
json.dump({"version": 1, "written_at": fmt(now), "bans": bans, "history": []}, open(path, "w"))
PY
cp "$work/state/blocked_ips.json" "$work/seed.json"

for backend in nftables iptables; do
    printf '{"firewall": {"backend": "%s"}, "state": {"dir": "%s/state"}, "ban": {"burst_max_bans": 1000000}}\n' "$backend" "$work" > "$work/cfg.json"
    cp "$work/seed.json" "$work/state/blocked_ips.json"
    start=$(date +%s.%N)
    out=$(ip netns exec "$ns" "$bin" restore --json -c "$work/cfg.json")
    end=$(date +%s.%N)
    if [ "$backend" = nftables ]; then
        held=$(ip netns exec "$ns" nft -j list set inet security_monitor banned_v4 | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(len(o["set"].get("elem",[])) for o in d["nftables"] if "set" in o))')
        held6=$(ip netns exec "$ns" nft -j list set inet security_monitor banned_v6 | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(len(o["set"].get("elem",[])) for o in d["nftables"] if "set" in o))')
    else
        held=$(ip netns exec "$ns" ipset list security_monitor_v4 | sed -n 's/^Number of entries: //p')
        held6=$(ip netns exec "$ns" ipset list security_monitor_v6 | sed -n 's/^Number of entries: //p')
    fi
    printf '%-9s restore of %d bans: %.3f s wall (firewall batch %s ms); kernel holds %d IPv4 + %d IPv6\n' \
        "$backend" "$n" "$(python3 -c "print($end - $start)")" "$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["restore_ms"])')" "$held" "$held6"
    ip netns exec "$ns" "$bin" restore -c "$work/cfg.json" >/dev/null
    if [ "$backend" = nftables ]; then ip netns exec "$ns" nft delete table inet security_monitor; fi
done
echo "target: < 2 s for 100,000 bans"
