#!/usr/bin/env bash
# Fleet propagation latency and convergence (issue 16's targets): BANS manual bans on h1
# (straight on its control socket, one every GAP_MS), each timed from h1's firewall taking it to h2's and h3's
# firewall taking it (p50/p99 printed per host); then a 10,000-record flood and a host
# joining afresh, timed from its connect to every ban in its kernel. Runs tests/fleet.sh
# (root; a real nats-server and three daemons in network namespaces).
#
#   bench/fleet_latency.sh [BANS=1000] [GAP_MS=20] [BINARY]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FLEET_BANS=${1:-1000} FLEET_VIA=socket FLEET_GAP_MS=${2:-20} FLEET_FLOOD=${FLEET_FLOOD:-10000} \
    exec "$repo/tests/fleet.sh" ${3:+"$3"}
