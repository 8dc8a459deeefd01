#!/usr/bin/env bash
# Both docker checks, for running them by hand:
#
#   .ci/docker-check.sh [BIN_DIR]
#
# .ci/docker-static-check.sh (compose config, hadolint), then, given BIN_DIR and unless
# DOCKER_CHECK_SKIP_PODMAN=1, .ci/docker-podman-check.sh BIN_DIR (the compose file run under
# Podman). CI (.ci/run) calls the two scripts itself; see their headers for what they check.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
rc=0
bash "$here/docker-static-check.sh" || rc=1
if [ "${DOCKER_CHECK_SKIP_PODMAN:-0}" = 1 ]; then
  echo "SKIP Podman run (DOCKER_CHECK_SKIP_PODMAN=1)"
elif [ -z "${1:-}" ]; then
  echo "SKIP Podman run: no binaries directory given (usage: .ci/docker-check.sh BIN_DIR)"
  if [ "${DOCKER_CHECK_REQUIRE_PODMAN:-0}" = 1 ]; then echo "DOCKER_CHECK_REQUIRE_PODMAN=1 but no BIN_DIR"; rc=1; fi
else
  bash "$here/docker-podman-check.sh" "$1" || rc=$?
fi
exit "$rc"
