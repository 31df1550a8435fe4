#!/usr/bin/env bash
# The distributed topology on this machine, without Docker: the embedded Kafka
# broker as its own process (`puchi broker`), every service as its own process
# (`puchi serve <svc>`) on PostgreSQL, and the REST gateway (`puchi gateway`).
# Logs go to ./data/dist/logs/<name>.log; Ctrl-C stops everything.
#
#   scripts/run-distributed.sh          (or: make run-distributed)
#
# Environment (all optional):
#   PUCHI_DATABASE_URL  PostgreSQL (default postgres://postgres@127.0.0.1:5432/puchi?sslmode=disable);
#                       the database is created with psql when it is missing and psql is installed
#   PUCHI_DIST_DIR      state and logs (default ./data/dist)
#   PUCHI_BROKER_ADDR   the broker (default 127.0.0.1:9092)
#   PUCHI_GATEWAY_ADDR  the REST gateway (default 127.0.0.1:8000)
#   PUCHI_DEMO_CONTENT  import services/content/demo.yaml at start-up (default true; re-importing updates in place)
#   PUCHI_TLS, PUCHI_TLS_DIR  mutual TLS between the processes (default on, one dev CA in ./data/dist/tls)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

GO="${GO:-go}"
BIN="$ROOT/bin/puchi"
DIST="${PUCHI_DIST_DIR:-$ROOT/data/dist}"
LOGS="$DIST/logs"
DATABASE_URL="${PUCHI_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/puchi?sslmode=disable}"
BROKER_ADDR="${PUCHI_BROKER_ADDR:-127.0.0.1:9092}"
GATEWAY_ADDR="${PUCHI_GATEWAY_ADDR:-127.0.0.1:8000}"
DEMO="${PUCHI_DEMO_CONTENT:-true}"

# Every service, in start order, with its gRPC and admin ports (the defaults that
# `puchi help` lists under "Services"). Bound to 127.0.0.1 here: `puchi serve`
# alone would listen on every interface.
SERVICES=(user lesson quiz vocabulary progress)
declare -A GRPC_PORT=([user]=50051 [lesson]=50052 [progress]=50053 [quiz]=50056 [vocabulary]=50057)
declare -A ADMIN_PORT=([user]=8001 [lesson]=8002 [progress]=8003 [quiz]=8007 [vocabulary]=8006)

log() { printf '[dist] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

command -v curl >/dev/null || die "curl is needed to check health"

# ---- the database ----------------------------------------------------------
# ensure_database: create the database of DATABASE_URL through the server's
# "postgres" database when it is missing (only when psql is available).
ensure_database() {
  if ! command -v psql >/dev/null; then
    log "psql not found: assuming the database of PUCHI_DATABASE_URL exists"
    return
  fi
  local base query name admin
  base="${DATABASE_URL%%\?*}"
  query=""
  [[ "$DATABASE_URL" == *\?* ]] && query="?${DATABASE_URL#*\?}"
  name="${base##*/}"
  [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "cannot create database '$name' from PUCHI_DATABASE_URL (create it yourself)"
  admin="${base%/*}/postgres$query"
  if ! psql "$admin" -XtAc 'SELECT 1' >/dev/null 2>&1; then
    die "PostgreSQL is not reachable at ${admin%%\?*} (set PUCHI_DATABASE_URL)"
  fi
  if [[ "$(psql "$admin" -XtAc "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]]; then
    log "creating database $name"
    psql "$admin" -Xqc "CREATE DATABASE \"$name\"" >/dev/null
  fi
}

# ---- processes -------------------------------------------------------------
PIDS=()
NAMES=()

# Each process gets its own session (setsid), so Ctrl-C reaches only this script,
# which then stops them in order.
SETSID=()
command -v setsid >/dev/null && SETSID=(setsid)

# start NAME ARGS...: run bin/puchi ARGS in the background, logging to LOGS/NAME.log.
start() {
  local name="$1"
  shift
  printf '=== %s: puchi %s\n' "$(date -Is)" "$*" >>"$LOGS/$name.log"
  "${SETSID[@]}" "$BIN" "$@" >>"$LOGS/$name.log" 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
}

# stop_pids PID...: SIGTERM (a clean shutdown), then SIGKILL after 20 s.
stop_pids() {
  local pid
  (($# == 0)) && return
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 200); do
    local alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  log "still running after 20 s: killing $*"
  kill -KILL "$@" 2>/dev/null || true
}

stopping=0
stop_all() {
  ((stopping)) && return
  stopping=1
  trap - INT TERM
  log "stopping: the gateway, then the services, then the broker"
  local i gw=() svc=() br=()
  for i in "${!PIDS[@]}"; do
    case "${NAMES[$i]}" in
    gateway) gw+=("${PIDS[$i]}") ;;
    broker) br+=("${PIDS[$i]}") ;;
    *) svc+=("${PIDS[$i]}") ;;
    esac
  done
  stop_pids "${gw[@]}"
  stop_pids "${svc[@]}"
  stop_pids "${br[@]}"
  wait 2>/dev/null || true
  log "stopped; logs are in $LOGS"
}
trap 'stop_all; exit 130' INT TERM
trap stop_all EXIT

# wait_until WHAT CMD...: poll CMD for up to 60 s; fail if a started process died.
wait_until() {
  local what="$1"
  shift
  for _ in $(seq 600); do
    "$@" && return 0
    local i
    for i in "${!PIDS[@]}"; do
      kill -0 "${PIDS[$i]}" 2>/dev/null || die "${NAMES[$i]} exited while waiting for $what; see $LOGS/${NAMES[$i]}.log:
$(tail -n 20 "$LOGS/${NAMES[$i]}.log")"
    done
    sleep 0.1
  done
  die "timed out waiting for $what; logs: $LOGS"
}
http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }
tcp_open() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
all_serving() {
  local body s
  body="$(curl -fsS --max-time 5 "http://$GATEWAY_ADDR/health" 2>/dev/null)" || return 1
  for s in "${SERVICES[@]}"; do
    [[ "$body" == *"\"$s\":\"SERVING\""* ]] || return 1
  done
}

# ---- go --------------------------------------------------------------------
ensure_database
mkdir -p "$LOGS"
log "building $BIN"
"$GO" build -o "$BIN" ./cmd/puchi

# The environment every process shares.
export KAFKA_BROKERS="$BROKER_ADDR"
export PUCHI_DATABASE_URL="$DATABASE_URL"
export PUCHI_JWT_KEY_FILE="${PUCHI_JWT_KEY_FILE:-$DIST/keys/jwt-ed25519.pem}"
export PUCHI_DEMO_CONTENT=false # imported below through `puchi content import`
# Mutual TLS between the processes (PUCHI_TLS, on unless set to off): one dev CA
# in a folder they all share, unless PUCHI_TLS_CA/CERT/KEY name your own.
export PUCHI_TLS_DIR="${PUCHI_TLS_DIR:-$DIST/tls}"
for s in "${SERVICES[@]}"; do
  u="${s^^}"
  export "PUCHI_${u}_ADDR=127.0.0.1:${GRPC_PORT[$s]}"
  export "PUCHI_${u}_GRPC_ADDR=127.0.0.1:${GRPC_PORT[$s]}"
  export "PUCHI_${u}_ADMIN_ADDR=127.0.0.1:${ADMIN_PORT[$s]}"
done

PUCHI_DATA_DIR="$DIST/broker" PUCHI_BROKER_ADDR="$BROKER_ADDR" start broker broker
wait_until "the broker on $BROKER_ADDR" tcp_open "$BROKER_ADDR"

# user first: it is the first to use the signing key, so no two processes create it.
PUCHI_DATA_DIR="$DIST/user" start user serve user
wait_until "user" http_ok "http://127.0.0.1:${ADMIN_PORT[user]}/ready"
for s in "${SERVICES[@]:1}"; do
  PUCHI_DATA_DIR="$DIST/$s" start "$s" serve "$s"
done
for s in "${SERVICES[@]:1}"; do
  wait_until "$s" http_ok "http://127.0.0.1:${ADMIN_PORT[$s]}/ready"
done

PUCHI_DATA_DIR="$DIST/gateway" PUCHI_GATEWAY_ADDR="$GATEWAY_ADDR" start gateway gateway
wait_until "the gateway to report every service SERVING" all_serving

if [[ "$DEMO" == true ]]; then
  "$BIN" content import services/content/demo.yaml >>"$LOGS/content-import.log" 2>&1 ||
    die "puchi content import failed: $(tail -n 5 "$LOGS/content-import.log")"
  log "demo course: $(tail -n 1 "$LOGS/content-import.log")"
fi

cat <<EOF
puchi is up, distributed: one process per role (database: ${DATABASE_URL%%\?*})
  gateway    REST http://$GATEWAY_ADDR  (docs: /docs, health: /health)   log: $LOGS/gateway.log
EOF
for s in "${SERVICES[@]}"; do
  printf '  %-10s gRPC 127.0.0.1:%s  admin http://127.0.0.1:%s/health   log: %s\n' \
    "$s" "${GRPC_PORT[$s]}" "${ADMIN_PORT[$s]}" "$LOGS/$s.log"
done
printf '  %-10s %s (embedded, own process)   log: %s\n' kafka "$BROKER_ADDR" "$LOGS/broker.log"
echo "Ctrl-C stops everything."

# Run until Ctrl-C, or until one process exits on its own.
set +e
wait -n "${PIDS[@]}"
for i in "${!PIDS[@]}"; do
  if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
    log "${NAMES[$i]} exited; see $LOGS/${NAMES[$i]}.log"
  fi
done
exit 1
