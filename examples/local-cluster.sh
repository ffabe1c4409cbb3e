#!/usr/bin/env bash
# Three Tocsin replicas on this machine (API on 127.0.0.1:9093-9095, cluster on 9194-9196),
# sharing the notification log and silences. Ctrl-C stops all three.
#   cargo build --release && examples/local-cluster.sh
# Then post the same alert to all three and watch examples/webhook-sink.py print it once:
#   for p in 9093 9094 9095; do curl -XPOST -H 'Content-Type: application/json' \
#     127.0.0.1:$p/api/v2/alerts -d '[{"labels":{"alertname":"Demo"}}]'; done
# Extra arguments go to every replica, e.g. --cluster.peer-timeout=2s.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${TOCSIN:-target/release/tocsin}
data=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait; rm -rf "$data"' EXIT
trap 'exit 0' INT TERM
for i in 0 1 2; do
  peer=()
  [ "$i" != 0 ] && peer=(--cluster.peer=127.0.0.1:9194)
  "$bin" --config.file=examples/tocsin.yml --storage.path="$data/r$i" \
    --web.listen-address=127.0.0.1:$((9093 + i)) --cluster.listen-address=127.0.0.1:$((9194 + i)) \
    --cluster.peer-name="replica-$i" --cluster.settle-timeout=5s "${peer[@]}" "$@" &
  pids+=($!)
done
wait
