#!/usr/bin/env bash
# Starts a private 3-master Redis Cluster (no replicas) on ports BASE,
# BASE+1, BASE+2 (BASE defaults to 7101), each node in DIR/<port>, and
# waits until the cluster reports ok. Prints the seed list
# ("127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103").
#   .ci/redis-cluster.sh start [BASE] [DIR]
#   .ci/redis-cluster.sh stop  [BASE] [DIR]   (stops only the pids it wrote)
set -euo pipefail
cmd=${1:-start}
base=${2:-7101}
dir=${3:-${TMPDIR:-/tmp}/seckill-redis-cluster-$base}
ports=("$base" "$((base + 1))" "$((base + 2))")

stop() {
  for p in "${ports[@]}"; do
    if [ -f "$dir/$p/pid" ]; then
      kill "$(cat "$dir/$p/pid")" 2>/dev/null || true
      rm -f "$dir/$p/pid"
    fi
  done
}

case "$cmd" in
stop)
  stop
  exit 0
  ;;
start) ;;
*)
  echo "usage: $0 start|stop [BASE] [DIR]" >&2
  exit 2
  ;;
esac

stop
seeds=()
for p in "${ports[@]}"; do
  if redis-cli -p "$p" ping >/dev/null 2>&1; then
    echo "port $p is taken by a Redis this script did not start; pick another BASE" >&2
    exit 1
  fi
done
for p in "${ports[@]}"; do
  rm -rf "${dir:?}/$p"
  mkdir -p "$dir/$p"
  redis-server --port "$p" --bind 127.0.0.1 --daemonize yes --dir "$dir/$p" \
    --pidfile "$dir/$p/pid" --logfile "$dir/$p/log" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    --save "" --appendonly no
  seeds+=("127.0.0.1:$p")
done
for p in "${ports[@]}"; do
  for _ in $(seq 1 100); do
    redis-cli -p "$p" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
done
redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1
for _ in $(seq 1 200); do
  ok=1
  for p in "${ports[@]}"; do
    redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=0
  done
  [ "$ok" = 1 ] && break
  sleep 0.1
done
if [ "$ok" != 1 ]; then
  echo "redis cluster on ${ports[*]} did not become ok; see $dir" >&2
  exit 1
fi
(IFS=,; echo "${seeds[*]}")
