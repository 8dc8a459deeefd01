#!/usr/bin/env bash
# Fuzz check: builds the libFuzzer targets of Fuzz/ (release, --sanitize fuzzer), replays the
# committed seed corpus once (-runs=0: a regression check, since fixed crashes are committed
# there as seeds), then fuzzes each target for a bounded time. Exits non-zero if a build fails,
# a seed crashes, or fuzzing finds a crash, timeout, leak or out-of-memory input; each finding
# is printed as hex with the command that replays it.
#
# Environment:
#   FUZZ_SECONDS   fuzzing time per target (default 20; 0 = replay only)
#   FUZZ_TARGETS   space-separated targets (default: all four)
#   FUZZ_JOBS      targets fuzzed at the same time (default: number of cores, at most 2)
#   FUZZ_ASAN=1    also instrument with AddressSanitizer (3-9x slower; own scratch directory)
#   FUZZ_SCRATCH   SwiftPM scratch path (default Fuzz/.build-fuzz, Fuzz/.build-fuzz-asan with ASan);
#                  keep it between runs and the build is incremental (seconds instead of minutes)
#   FUZZ_ARTIFACTS directory for findings and logs (default: a new temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - start ))s)"; }

all_targets="FuzzMessage FuzzRequest FuzzFrame FuzzKVCommand"
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
FUZZ_TARGETS=${FUZZ_TARGETS:-$all_targets}
FUZZ_JOBS=${FUZZ_JOBS:-$(( $(nproc) < 2 ? $(nproc) : 2 ))}
FUZZ_ASAN=${FUZZ_ASAN:-0}
if [ "$FUZZ_ASAN" = 1 ]; then
  scratch=${FUZZ_SCRATCH:-$root/Fuzz/.build-fuzz-asan}
  # One --sanitize flag only: a second --sanitize replaces the first and silently drops the
  # coverage instrumentation. ASan goes in through the compilers directly.
  sanitize=(--sanitize fuzzer -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=address)
else
  scratch=${FUZZ_SCRATCH:-$root/Fuzz/.build-fuzz}
  sanitize=(--sanitize fuzzer)
fi
artifacts=${FUZZ_ARTIFACTS:-$(mktemp -d "${TMPDIR:-/tmp}/pbft-fuzz.XXXXXX")}
mkdir -p "$artifacts"
build=(swift build --package-path "$root/Fuzz" -c release --scratch-path "$scratch" "${sanitize[@]}")
# Without this Swift's own crash handler takes the trap and libFuzzer never writes crash-*.
export SWIFT_BACKTRACE=enable=no

step "prerequisites"
if ! pkg-config --exists libcrypto 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq libssl-dev pkg-config >/dev/null
fi
swift --version 2>&1 | head -n 1

# Drops SwiftPM's per-file progress lines; keeps errors, warnings and the result.
filter_build_log() {
  { grep -vE '^\[[0-9]+/[0-9]+\] (Compiling|Emitting|Write|Wrapping|Planning|Linking)' || true; } | tail -n 20
}

step "build (release, ${sanitize[*]})"
build_start=$(date +%s)
if [ "$FUZZ_TARGETS" = "$all_targets" ]; then
  # One invocation builds everything: SwiftPM then compiles BFTCore and swift-nio in parallel.
  "${build[@]}" 2>&1 | filter_build_log
else
  for t in $FUZZ_TARGETS; do
    echo "--- $t"
    "${build[@]}" --product "$t" 2>&1 | filter_build_log
  done
fi
bin=$("${build[@]}" --show-bin-path)
build_seconds=$(( $(date +%s) - build_start ))
echo "build: ${build_seconds}s, binaries in $bin"

declare -A replay_result fuzz_result fuzz_stats
failures=0

# Prints every finding libFuzzer left in $1 (hex, and how to replay it).
report_findings() {
  local t=$1 dir=$2 found=0
  for f in "$dir"/crash-* "$dir"/timeout-* "$dir"/oom-* "$dir"/leak-* "$dir"/slow-unit-*; do
    [ -e "$f" ] || continue
    case $(basename "$f") in slow-unit-*) continue ;; esac
    found=1
    echo
    echo "!!! $t finding: $f ($(stat -c %s "$f") bytes)"
    echo "hex:"
    head -c 1024 "$f" | od -An -v -tx1
    if [ "$(stat -c %s "$f")" -gt 1024 ]; then echo "  … (first 1024 bytes shown)"; fi
    echo "replay:"
    echo "  SWIFT_BACKTRACE=enable=no $bin/$t $f"
    echo "minimize:"
    echo "  SWIFT_BACKTRACE=enable=no $bin/$t -minimize_crash=1 -runs=10000 -exact_artifact_path=$f.min $f"
  done
  return $(( 1 - found ))
}

# Last "cov: ... ft: ... corp: ..." numbers of a libFuzzer log.
coverage_of() { { grep -aoE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$1" || true; } | tail -n 1; }

step "replay committed corpus (-runs=0)"
for t in $FUZZ_TARGETS; do
  dir="$artifacts/$t/replay"
  mkdir -p "$dir"
  log="$dir/log"
  rc=0
  "$bin/$t" -runs=0 -timeout=5 -rss_limit_mb=2048 -artifact_prefix="$dir/" "$root/Fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  seeds=$(find "$root/Fuzz/corpus/$t" -type f | wc -l)
  if [ "$rc" -ne 0 ] || ! grep -aq 'INITED' "$log"; then
    replay_result[$t]="FAIL (exit $rc)"
    failures=$(( failures + 1 ))
    echo "--- $t: replay FAILED (exit $rc); log tail:"
    tail -n 30 "$log"
    report_findings "$t" "$dir" || true
  else
    replay_result[$t]="ok ($seeds seeds)"
    echo "--- $t: $seeds seeds ok, $(coverage_of "$log")"
  fi
done

# Runs one target for FUZZ_SECONDS; leaves log, exit code and findings in $artifacts/$t/fuzz.
fuzz_one() {
  local t=$1 dir="$artifacts/$1/fuzz" rc=0
  local dict=()
  [ -f "$root/Fuzz/dict/$t.dict" ] && dict=(-dict="$root/Fuzz/dict/$t.dict")
  mkdir -p "$dir/corpus"
  # New inputs go to the temporary corpus (first directory); the committed one is only read.
  "$bin/$t" -max_total_time="$FUZZ_SECONDS" -timeout=5 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$dir/" "${dict[@]}" \
    "$dir/corpus" "$root/Fuzz/corpus/$t" >"$dir/log" 2>&1 || rc=$?
  echo "$rc" >"$dir/rc"
}

if [ "$FUZZ_SECONDS" -gt 0 ]; then
  step "fuzz each target for ${FUZZ_SECONDS}s, $FUZZ_JOBS at a time"
  running=0
  for t in $FUZZ_TARGETS; do
    if [ "$running" -ge "$FUZZ_JOBS" ]; then wait -n || true; running=$(( running - 1 )); fi
    fuzz_one "$t" &
    running=$(( running + 1 ))
  done
  wait || true
  for t in $FUZZ_TARGETS; do
    dir="$artifacts/$t/fuzz"
    log="$dir/log"
    rc=$(cat "$dir/rc" 2>/dev/null || echo "missing")
    runs=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
    rate=$(grep -aoE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
    added=$(grep -aoE 'stat::new_units_added: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
    initial=$(grep -aoE 'INITED cov: [0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    fuzz_stats[$t]="runs=$runs exec/s=$rate cov ${initial}->$(coverage_of "$log" | sed 's/^cov: //') new=$added"
    if report_findings "$t" "$dir"; then
      fuzz_result[$t]="FINDING (exit $rc)"
      failures=$(( failures + 1 ))
      echo "--- $t: log tail:"
      { grep -av '^#[0-9]' "$log" || true; } | tail -n 25
    elif [ "$rc" != 0 ]; then
      fuzz_result[$t]="FAIL (exit $rc)"
      failures=$(( failures + 1 ))
      echo "--- $t: libFuzzer exited $rc; log tail:"
      tail -n 25 "$log"
    elif [ "$runs" -le "$(find "$root/Fuzz/corpus/$t" -type f | wc -l)" ]; then
      # A binary built without libFuzzer's driver runs nothing and exits 0: never call that green.
      fuzz_result[$t]="FAIL (did not fuzz)"
      failures=$(( failures + 1 ))
      echo "--- $t: only $runs executions; log tail:"
      tail -n 25 "$log"
    else
      fuzz_result[$t]="ok"
      echo "--- $t: ok, ${fuzz_stats[$t]}"
    fi
  done
fi

step "summary"
printf '%-14s %-22s %-20s %s\n' target replay fuzz "stats (runs, exec/s, coverage initial->final ft corpus, new inputs)"
for t in $FUZZ_TARGETS; do
  printf '%-14s %-22s %-20s %s\n' "$t" "${replay_result[$t]:-?}" "${fuzz_result[$t]:-skipped}" "${fuzz_stats[$t]:-}"
done
echo "build ${build_seconds}s, total $(( $(date +%s) - start ))s"
if [ "$failures" -gt 0 ]; then
  echo "FAILED: $failures problem(s); findings kept in $artifacts"
  exit 1
fi
if [ -z "${FUZZ_ARTIFACTS:-}" ]; then rm -rf "$artifacts"; else echo "logs in $artifacts"; fi
echo "OK"
