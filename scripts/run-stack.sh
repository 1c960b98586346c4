#!/usr/bin/env bash
# Runs the laptop stack from the binaries in $BIN until Ctrl-C.
set -euo pipefail
BIN=${BIN:-./bin}
pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap cleanup INT TERM EXIT

"$BIN/graphsim" &
pids+=($!)
echo "graphsim: http://127.0.0.1:8090 (token: ${GRAPHSIM_ACCESS_TOKEN:-dev-token})"
wait -n
