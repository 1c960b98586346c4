#!/usr/bin/env bash
# Runs the laptop stack from the binaries in $BIN until Ctrl-C:
#   worker --embedded-nats  (JetStream on 127.0.0.1:4222, data in ./data)
#   graphsim                (the Groups API simulator, unless WHATSAPP_ACCESS_TOKEN is set)
#   ingest                  (webhooks and the command API on 127.0.0.1:8080)
set -euo pipefail
BIN=${BIN:-./bin}
DATA=${DATA:-./data}
NATS_PORT=${NATS_PORT:-4222}
SIM_ADDR=${SIM_ADDR:-127.0.0.1:8090}
INGEST_ADDR=${INGEST_ADDR:-127.0.0.1:8080}
export WHATSAPP_APP_SECRET=${WHATSAPP_APP_SECRET:-dev-app-secret}
export WHATSAPP_VERIFY_TOKEN=${WHATSAPP_VERIFY_TOKEN:-dev-verify-token}
export INGEST_API_TOKENS=${INGEST_API_TOKENS:-dev-api-token}
export NATS_URL=${NATS_URL:-nats://127.0.0.1:$NATS_PORT}
mkdir -p "$DATA"

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
# Ctrl-C reaches the components too; the flag tells the end of the script
# that the stop was asked for, not a crash.
stopping=
trap 'stopping=1' INT TERM
trap 'stop' EXIT

wait_port() { # host:port name
  local host=${1%:*} port=${1##*:}
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$2 did not start listening on $1" >&2
  exit 1
}

if [ -z "${WHATSAPP_ACCESS_TOKEN:-}" ]; then
  export WHATSAPP_ACCESS_TOKEN=dev-access-token
  export GRAPH_API_BASE_URL=http://$SIM_ADDR
  # Secrets go through the environment, not argv, so ps does not show them.
  GRAPHSIM_ACCESS_TOKEN=$WHATSAPP_ACCESS_TOKEN GRAPHSIM_APP_SECRET=$WHATSAPP_APP_SECRET \
    "$BIN/graphsim" --addr "$SIM_ADDR" --webhook-url "http://$INGEST_ADDR/webhook" \
    >"$DATA/graphsim.log" 2>&1 &
  pids+=($!)
  wait_port "$SIM_ADDR" graphsim
  graph="simulator at http://$SIM_ADDR (log: $DATA/graphsim.log)"
else
  graph="the real Graph API (${GRAPH_API_BASE_URL:-https://graph.facebook.com})"
fi

if [ -x "$BIN/worker" ]; then
  WORKER_EMBEDDED_NATS_ADDR=127.0.0.1:$NATS_PORT WORKER_EMBEDDED_NATS_DIR="$DATA/nats" \
    "$BIN/worker" --embedded-nats >"$DATA/worker.log" 2>&1 &
  pids+=($!)
  wait_port "127.0.0.1:$NATS_PORT" "worker's embedded NATS"
fi
if [ -x "$BIN/ingest" ]; then
  INGEST_ADDR=$INGEST_ADDR "$BIN/ingest" >"$DATA/ingest.log" 2>&1 &
  pids+=($!)
  wait_port "$INGEST_ADDR" ingest
fi

cat <<TEXT

groupflow is running (Ctrl-C stops everything)
  Graph API : $graph
  NATS      : $NATS_URL (embedded in the worker, data in $DATA/nats; log: $DATA/worker.log)
  ingest    : http://$INGEST_ADDR  (webhook: /webhook, commands: /v1/commands; log: $DATA/ingest.log)

Try it — create a group:
  curl -s -X POST http://$INGEST_ADDR/v1/commands -H 'Authorization: Bearer $INGEST_API_TOKENS' \\
    -d '{"id":"hello-1","type":"create_group","phone_number_id":"106540352242922","params":{"subject":"Hello groupflow"}}'
  curl -s http://$INGEST_ADDR/v1/commands/hello-1 -H 'Authorization: Bearer $INGEST_API_TOKENS'

TEXT
wait -n || true
if [ -n "$stopping" ]; then
  stop
  echo "stack stopped"
  exit 0
fi
echo "a component exited; see the logs in $DATA" >&2
exit 1
