#!/usr/bin/env bash
# Runs the laptop stack from the binaries in $BIN until Ctrl-C:
#   graphsim                (the Groups API simulator on 127.0.0.1:8090, unless WHATSAPP_ACCESS_TOKEN is set)
#   worker --embedded-nats  (JetStream on 127.0.0.1:4222, data in ./data; /healthz, /readyz, /metrics on 127.0.0.1:8081)
#   ingest                  (webhooks and the command API on 127.0.0.1:8080)
# Each address can be moved: SIM_ADDR, NATS_PORT, WORKER_ADDR, INGEST_ADDR;
# and the data directory, DATA (one stack per directory).
set -euo pipefail
BIN=${BIN:-./bin}
DATA=${DATA:-./data}
NATS_PORT=${NATS_PORT:-4222}
SIM_ADDR=${SIM_ADDR:-127.0.0.1:8090}
WORKER_ADDR=${WORKER_ADDR:-127.0.0.1:8081}
INGEST_ADDR=${INGEST_ADDR:-127.0.0.1:8080}
export WHATSAPP_APP_SECRET=${WHATSAPP_APP_SECRET:-dev-app-secret}
export WHATSAPP_VERIFY_TOKEN=${WHATSAPP_VERIFY_TOKEN:-dev-verify-token}
export INGEST_API_TOKENS=${INGEST_API_TOKENS:-dev-api-token}
export NATS_URL=${NATS_URL:-nats://127.0.0.1:$NATS_PORT}
mkdir -p "$DATA"

# The components started, with their names and logs, to say which one
# stopped and why.
pids=() names=() logs=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
# Ctrl-C reaches the components too; the flag tells the end of the script
# that the stop was asked for, not a crash.
stopping=
trap 'stopping=1' INT TERM
trap 'stop' EXIT

# in_use host:port: something accepts connections there. ":8081" and
# "0.0.0.0:8081" are tried on the loopback, where another stack would be.
in_use() {
  local host=${1%:*} port=${1##*:}
  case $host in "" | 0.0.0.0 | "[::]") host=127.0.0.1 ;; esac
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# Every port is checked before anything starts: a component that cannot
# listen would otherwise exit while the others run, or leave the wait for
# its port to be answered by the program holding it.
taken=0
need_port() { # host:port component variable
  if in_use "$1"; then
    local is=$1 to="another host:port"
    if [ "$3" = NATS_PORT ]; then is=${1##*:} to="another port"; fi
    echo "port ${1##*:} is in use, and the $2 needs it ($3=$is): stop what listens there or set $3 to $to" >&2
    taken=1
  fi
}
if [ -z "${WHATSAPP_ACCESS_TOKEN:-}" ]; then need_port "$SIM_ADDR" "simulator (graphsim)" SIM_ADDR; fi
if [ -x "$BIN/worker" ]; then
  need_port "127.0.0.1:$NATS_PORT" "worker's embedded NATS" NATS_PORT
  need_port "$WORKER_ADDR" "worker (/healthz, /metrics)" WORKER_ADDR
fi
if [ -x "$BIN/ingest" ]; then need_port "$INGEST_ADDR" "ingest" INGEST_ADDR; fi
if [ "$taken" = 1 ]; then
  echo "another groupflow stack may be running (make run in another terminal); nothing was started" >&2
  exit 1
fi

# One stack per data directory: a second embedded NATS server on the same
# JetStream store would corrupt it, and the logs would be written over.
# $DATA/stack.pid names the script that holds it.
lock=$DATA/stack.pid
if ! (set -C && echo $$ >"$lock") 2>/dev/null; then
  holder=$(cat "$lock" 2>/dev/null || true)
  case $(ps -o args= -p "${holder:-0}" 2>/dev/null || true) in
  *run-stack*)
    echo "another groupflow stack (pid $holder) uses the data directory $DATA: stop it, or set DATA to another directory (and other ports); nothing was started" >&2
    exit 1
    ;;
  esac
  echo $$ >"$lock" # left by a stack that did not stop cleanly
fi
release() { if [ "$(cat "$lock" 2>/dev/null)" = "$$" ]; then rm -f "$lock"; fi; }
trap 'stop; release' EXIT

# exited index: says which component stopped, how, and the end of its log.
exited() {
  local status=0
  wait "${pids[$1]}" 2>/dev/null || status=$?
  echo "${names[$1]} exited (status $status); the last lines of ${logs[$1]}:" >&2
  tail -n 15 "${logs[$1]}" | sed 's/^/  | /' >&2
}

start() { # name log command...
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  pids+=($!) names+=("$name") logs+=("$log")
}

wait_port() { # host:port: the last component started listens there
  local i=$((${#pids[@]} - 1))
  for _ in $(seq 1 300); do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      exited "$i"
      exit 1
    fi
    in_use "$1" && return 0
    sleep 0.1
  done
  echo "${names[$i]} did not start listening on $1 within 30 s; see ${logs[$i]}" >&2
  exit 1
}

if [ -z "${WHATSAPP_ACCESS_TOKEN:-}" ]; then
  export WHATSAPP_ACCESS_TOKEN=dev-access-token
  export GRAPH_API_BASE_URL=http://$SIM_ADDR
  # Secrets go through the environment, not argv, so ps does not show them.
  GRAPHSIM_ACCESS_TOKEN=$WHATSAPP_ACCESS_TOKEN GRAPHSIM_APP_SECRET=$WHATSAPP_APP_SECRET \
    start graphsim "$DATA/graphsim.log" \
    "$BIN/graphsim" --addr "$SIM_ADDR" --webhook-url "http://$INGEST_ADDR/webhook"
  wait_port "$SIM_ADDR"
  graph="simulator at http://$SIM_ADDR (log: $DATA/graphsim.log)"
else
  graph="the real Graph API (${GRAPH_API_BASE_URL:-https://graph.facebook.com})"
fi

if [ -x "$BIN/worker" ]; then
  WORKER_ADDR=$WORKER_ADDR WORKER_EMBEDDED_NATS_ADDR=127.0.0.1:$NATS_PORT WORKER_EMBEDDED_NATS_DIR="$DATA/nats" \
    start worker "$DATA/worker.log" "$BIN/worker" --embedded-nats
  wait_port "127.0.0.1:$NATS_PORT"
  # The worker serves HTTP once its JetStream topology is in place.
  wait_port "$WORKER_ADDR"
fi
if [ -x "$BIN/ingest" ]; then
  INGEST_ADDR=$INGEST_ADDR start ingest "$DATA/ingest.log" "$BIN/ingest"
  wait_port "$INGEST_ADDR"
fi

# The example uses the first token of the list, without its scope.
token=${INGEST_API_TOKENS%%,*}
token=${token%%@*}

cat <<TEXT

groupflow is running (Ctrl-C stops everything)
  Graph API : $graph
  NATS      : $NATS_URL (embedded in the worker, data in $DATA/nats)
  worker    : http://$WORKER_ADDR  (/healthz, /readyz, /metrics; log: $DATA/worker.log)
  ingest    : http://$INGEST_ADDR  (webhook: /webhook, commands: /v1/commands; log: $DATA/ingest.log)

Try it — create a group:
  curl -s -X POST http://$INGEST_ADDR/v1/commands -H 'Authorization: Bearer $token' \\
    -d '{"id":"hello-1","type":"create_group","phone_number_id":"106540352242922","params":{"subject":"Hello groupflow"}}'
  curl -s http://$INGEST_ADDR/v1/commands/hello-1 -H 'Authorization: Bearer $token'

TEXT
wait -n || true
if [ -n "$stopping" ]; then
  stop
  echo "stack stopped"
  exit 0
fi
for i in "${!pids[@]}"; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then exited "$i"; fi
done
echo "stopping the others" >&2
exit 1
