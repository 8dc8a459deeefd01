#!/usr/bin/env bash
# The cluster benchmarks behind BENCHMARKS.md, one after the other, each on a fresh local cluster
# started by bft-loadgen --spawn (release build). Prints every run's output and leaves one JSON
# result per run in OUT (default: a new temporary directory).
#
#   Benchmarks/loadgen-suite.sh [OUT]
#
# Environment: DURATION (seconds per run, default 20), FSYNC (on|off, default on),
# SKIP_ATTACK=1 (no under-attack table), FAILOVER_RUNS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/pbft-bench.XXXXXX")}
mkdir -p "$out"
d=${DURATION:-20}
fsync=${FSYNC:-on}
# Both: bft-loadgen --spawn runs the bft-node beside it and never builds it.
swift build -c release --product bft-node >/dev/null
swift build -c release --product bft-loadgen >/dev/null
lg=(.build/release/bft-loadgen --spawn --fsync "$fsync" --warmup 3s)
run() { # NAME ARGS...
  local name=$1; shift
  echo; echo "### $name: bft-loadgen ${*}"
  "${lg[@]}" "$@" --json "$out/$name.json" | grep -v '^\[run '
}
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
run peak --duration "${d}s" --clients 4 --window 32
peak=$(python3 -c "import json;print(int(json.load(open('$out/peak.json'))['results'][0]['throughput']))")
run sweep --duration "${d}s" --clients 4 --window 32 --sweep
run one-client --duration "${d}s" --clients 1 --window 1
run open-half-peak --duration "${d}s" --clients 4 --window 32 --rate $(( peak / 2 ))
run payload-1k --duration "${d}s" --clients 4 --window 32 --payload 1024
for k in $(seq 1 "${FAILOVER_RUNS:-3}"); do
  run "failover-$k" --duration "${d}s" --clients 4 --window 8 --kill-primary-at $(( d / 3 )) --restart-after 4
done
if [ "${SKIP_ATTACK:-0}" != 1 ]; then
  run attack-table --duration "$(( d * 3 / 4 ))s" --clients 3 --window 8 --attack-table
fi
echo; echo "results in $out"
