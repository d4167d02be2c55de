#!/usr/bin/env bash
# bench/run.sh: the one-command benchmark behind `make bench`.
#
# It builds bin/seckill and runs it against this machine's Redis and MariaDB
# (a key prefix and a database of its own, removed at the end) with the
# embedded Kafka broker (kfake) in a process of its own (bench/cmd/kafka),
# then:
#   1. k6 purchase spike, mixed clients and sold-out flood (bench/k6),
#   2. wrk on the purchase flow (users pre-made by bench/cmd/prep): paced
#      (seckill's RSS sampled meanwhile), then unpaced at MAX_CONNS
#      connections, each round next to a bare Gin hello (bench/ceiling) with
#      the same wrk settings; then a backlog behind a locked orders table
#      and its drain; then the sold-out path, alternating with the ceiling
#      in short rounds (median ratios reported), and the product page,
#      alternating with the ceiling the same way,
#   3. waits for every accepted order to reach MySQL and checks the promises
#      there (no oversell, no user twice, items.sold == rows),
# and prints one results table. Knobs are the env variables below.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BIN=$ROOT/bin

# k6 runs JavaScript per request and shares the 2 cores with the server,
# Redis and MariaDB: past ~2.5k req/s it drops iterations and its own CPU
# starvation shows up as latency. The defaults stay below that; wrk gives
# the high-rate numbers.
BENCH_K6_VERSION=${BENCH_K6_VERSION:-v1.8.1}
BENCH_K6_DURATION=${BENCH_K6_DURATION:-15}                 # seconds per k6 scenario
BENCH_K6_PURCHASE_RATE=${BENCH_K6_PURCHASE_RATE:-1000}     # new buyers/s (each: token + purchase)
BENCH_K6_MIXED_RATE=${BENCH_K6_MIXED_RATE:-400}            # buyers/s (each: 6 requests)
BENCH_K6_SOLDOUT_RATE=${BENCH_K6_SOLDOUT_RATE:-2000}       # purchases/s on a sold-out item
BENCH_K6_P99_MS=${BENCH_K6_P99_MS:-20}                     # k6 threshold on purchase p99
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-64}
WRK_DURATION=${WRK_DURATION:-10}               # seconds per wrk run
WRK_PURCHASE_RATE=${WRK_PURCHASE_RATE:-10000}  # offered purchases/s (paced)
MAX_CONNS=${MAX_CONNS:-"64 256"}               # unpaced purchase rounds: wrk connections of each
MAX_ROUNDS=${MAX_ROUNDS:-2}                    # unpaced rounds per connection count, each next to a ceiling round
MAX_ROUND_SECONDS=${MAX_ROUND_SECONDS:-3}      # seconds per unpaced round
MAX_USERS_PER_S=${MAX_USERS_PER_S:-20000}      # users (tokens) made per second of an unpaced round; a round that uses them all reports ">="
BACKLOG_SECONDS=${BACKLOG_SECONDS:-5}          # seconds of paced purchases while MySQL's orders table is locked
BENCH_PPROF=${BENCH_PPROF:-}                   # e.g. 127.0.0.1:6060: run bench/cmd/profserve and keep a CPU profile of the wrk purchase phase in bin/
# The whole sale (bench/cmd/wholesale): units, and 100 buyers per unit
# arriving in a burst, WHOLESALE_ROUNDS times; about a minute and a half here. Its k6 twin
# (bench/k6/wholesale.js) runs small: k6 makes ~2.5k requests/s on 2 cores.
WHOLESALE_UNITS=${WHOLESALE_UNITS:-1000}
WHOLESALE_BUYERS=${WHOLESALE_BUYERS:-$((100 * WHOLESALE_UNITS))}
WHOLESALE_BURST=${WHOLESALE_BURST:-1s}          # arrivals spread evenly over this window
WHOLESALE_CONNS=${WHOLESALE_CONNS:-256}         # requests in flight at most
WHOLESALE_ROUNDS=${WHOLESALE_ROUNDS:-3}         # sales, each after a floor crowd; CPU figures are their medians
WHOLESALE_K6_UNITS=${WHOLESALE_K6_UNITS:-50}    # 0: no k6 whole sale; buyers are 100 per unit
BENCH_ONLY=${BENCH_ONLY:-}                      # "wholesale": only the whole sale, its k6 twin and a hello round for the floor
SERVER_GOMAXPROCS=${SERVER_GOMAXPROCS:-2}      # seckill and the ceiling server
LOADGEN_GOMAXPROCS=${LOADGEN_GOMAXPROCS:-2}    # k6 and prep
PORT=${BENCH_PORT:-18080}
CEILING_PORT=${BENCH_CEILING_PORT:-18081}
KAFKA_PORT=${BENCH_KAFKA_PORT:-18092}
REDIS_HOST=${BENCH_REDIS_HOST:-127.0.0.1}
REDIS_PORT=${BENCH_REDIS_PORT:-6379}
MYSQL_HOST=${BENCH_MYSQL_HOST:-127.0.0.1}
MYSQL_PORT=${BENCH_MYSQL_PORT:-3306}
MYSQL_USER=${BENCH_MYSQL_USER:-root}

RUN_ID=seckill_bench_$(date +%Y%m%d%H%M%S)_$$
BASE=http://127.0.0.1:$PORT
ADMIN_TOKEN=bench-admin-$RANDOM$RANDOM$RANDOM
JWT_SECRET=bench-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
PURCHASE_KEY=bench-purchase-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
WORK=$(mktemp -d "/tmp/$RUN_ID.XXXX")
SERVER_PID=""
KAFKA_PID=""
CEILING_PID=""
STARTED=$(date +%s)

log() { printf '[bench %3ds] %s\n' "$(($(date +%s) - STARTED))" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
FAILS=()
expect() { # expect DESCRIPTION COMMAND...: records DESCRIPTION if COMMAND fails
  local what=$1
  shift
  "$@" || FAILS+=("$what")
}
# median V...: the median of numbers (the lower middle one of an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }

sql() { mysql --protocol=tcp -h"$MYSQL_HOST" -P"$MYSQL_PORT" -u"$MYSQL_USER" -N -B "$@"; }
rcli() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }
# cpu_ticks PID: user + system CPU the process used so far, in clock ticks
# (the OS's own accounting, /proc/PID/stat fields 14 and 15); 0 if unknown.
cpu_ticks() { [[ -n $1 && -r /proc/$1/stat ]] && awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" || echo 0; }
CLK_TCK=$(getconf CLK_TCK)
# cpu_snap NAME: remembers every server process's CPU ticks under NAME.
cpu_snap() {
  local p
  for p in seckill redis mariadb kafka; do
    eval "CPU_${1}_$p=$(cpu_ticks "$(pid_of $p)")"
  done
}
pid_of() {
  case $1 in
    seckill) echo "$SERVER_PID" ;;
    kafka) echo "$KAFKA_PID" ;;
    ceiling) echo "$CEILING_PID" ;;
    redis) rcli info server 2>/dev/null | awk -F: '/^process_id:/ { print $2 + 0 }' ;;
    mariadb) sql -e 'SELECT 1' >/dev/null 2>&1 && pgrep -o -x mariadbd || pgrep -o -x mysqld || true ;;
  esac
}
# cpu_per FROM TO N: "seckill A, redis B, mariadb C, kafka D, total E" in
# microseconds of CPU per unit of work, for N units between two snapshots.
cpu_per() {
  local p d total=0 out=""
  for p in seckill redis mariadb kafka; do
    eval "d=\$(( CPU_${2}_$p - CPU_${1}_$p ))"
    total=$((total + d))
    out+="$p $(awk -v d="$d" -v n="$3" -v t="$CLK_TCK" 'BEGIN { printf "%.1f", (n > 0 ? d / t * 1e6 / n : 0) }'), "
  done
  echo "${out}total $(awk -v d="$total" -v n="$3" -v t="$CLK_TCK" 'BEGIN { printf "%.1f", (n > 0 ? d / t * 1e6 / n : 0) }') us"
}

# calls_snap NAME: remembers what seckill sent Redis (round trips: commands
# and pipelines each once; commands) and the statements MariaDB executed
# (Questions, the whole server: run the bench on a quiet database).
calls_snap() {
  eval "TRIPS_$1=$(metric_sum seckill_redis_round_trips_total)"
  eval "CMDS_$1=$(metric_sum seckill_redis_commands_total)"
  eval "QUESTIONS_$1=$(sql -e "SHOW GLOBAL STATUS LIKE 'Questions'" | awk '{ print $2 }')"
}
# calls_per FROM TO N: the same per unit of work.
calls_per() {
  eval "local t=\$(( TRIPS_$2 - TRIPS_$1 )) c=\$(( CMDS_$2 - CMDS_$1 )) q=\$(( QUESTIONS_$2 - QUESTIONS_$1 ))"
  awk -v t="$t" -v c="$c" -v q="$q" -v n="$3" 'BEGIN { if (n < 1) n = 1;
    printf "Redis round trips %.2f, Redis commands %.2f, MySQL statements %.2f\n", t / n, c / n, q / n }'
}

stop_pid() { # stop_pid PID NAME: SIGTERM, then SIGKILL after 20s
  local pid=$1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$2 did not stop in 20s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$CEILING_PID" ceiling
  stop_pid "$SERVER_PID" seckill
  stop_pid "$KAFKA_PID" kafka
  sql -e "DROP DATABASE IF EXISTS \`$RUN_ID\`" 2>/dev/null || log "could not drop database $RUN_ID"
  # Keys are deleted in batches; SCAN never blocks Redis for long.
  rcli --scan --pattern "$RUN_ID:*" 2>/dev/null | xargs -r -n 500 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" unlink >/dev/null 2>&1 || true
  if [[ $rc -ne 0 && -d $WORK ]]; then
    log "logs kept in $WORK (seckill.log, k6-*.log, wrk-*.txt)"
    rm -f "$WORK"/*users.txt
  else
    rm -rf "$WORK"
  fi
  log "cleaned up (database and Redis prefix $RUN_ID removed)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools
need_apt() { # need_apt CMD PACKAGE
  command -v "$1" >/dev/null && return 0
  [[ $EUID -eq 0 ]] || die "$1 is missing: install the $2 package"
  log "installing $2"
  apt-get install -y -q "$2" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "$2" >/dev/null; } ||
    die "apt-get install $2 failed"
}
need_apt wrk wrk
need_apt jq jq
need_apt mysql mariadb-client
need_apt redis-cli redis-tools
if [[ ! -x $BIN/k6 && ! ($BENCH_ONLY == wholesale && $WHOLESALE_K6_UNITS -eq 0) ]]; then
  log "installing k6 $BENCH_K6_VERSION into bin/ (one-time, a few minutes)"
  GOBIN=$BIN go install "go.k6.io/k6@$BENCH_K6_VERSION"
fi
[[ $(ulimit -n) == unlimited || $(ulimit -n) -ge 65536 ]] || ulimit -n 65536 2>/dev/null || true

log "building bin/seckill, bin/bench-prep, bin/bench-ceiling"
if [[ -n $BENCH_PPROF ]]; then
  go build -tags nodev -o "$BIN/seckill" ./bench/cmd/profserve # the same app, plus pprof on $BENCH_PPROF
else
  go build -tags nodev -o "$BIN/seckill" . # as production builds it
fi
go build -o "$BIN/bench-prep" ./bench/cmd/prep
go build -o "$BIN/bench-ceiling" ./bench/ceiling
go build -o "$BIN/bench-kafka" ./bench/cmd/kafka
go build -o "$BIN/bench-wholesale" ./bench/cmd/wholesale

rcli ping >/dev/null || die "Redis $REDIS_HOST:$REDIS_PORT is not reachable"
sql -e 'SELECT 1' >/dev/null || die "MariaDB $MYSQL_HOST:$MYSQL_PORT is not reachable as $MYSQL_USER"
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$LOAD_BEFORE" 'BEGIN { exit !(l > 1.0) }'; then
  log "WARNING: load average is $LOAD_BEFORE before the run: other work shares these $(nproc) cores"
fi

# ---------------------------------------------------------------- server
# Kafka (kfake, the real wire protocol) runs as a process of its own, as a
# broker does in production: the seckill process carries no broker.
KAFKA_ADDR="127.0.0.1:$KAFKA_PORT"
"$BIN/bench-kafka" -addr "$KAFKA_ADDR" >"$WORK/kafka.log" 2>&1 &
KAFKA_PID=$!
log "starting seckill on $BASE (Redis prefix and database $RUN_ID, Kafka at $KAFKA_ADDR, GOMAXPROCS=$SERVER_GOMAXPROCS)"
# The limiter gets rates far above any load this machine can make: it is
# admission control, not what this bench measures.
env GOMAXPROCS="$SERVER_GOMAXPROCS" PROFSERVE_ADDR="$BENCH_PPROF" \
  SECKILL_HTTP_ADDR="127.0.0.1:$PORT" \
  SECKILL_REDIS_ADDR="$REDIS_HOST:$REDIS_PORT" \
  SECKILL_REDIS_PREFIX="$RUN_ID" \
  SECKILL_MYSQL_DSN="$MYSQL_USER@tcp($MYSQL_HOST:$MYSQL_PORT)/$RUN_ID?parseTime=true" \
  SECKILL_KAFKA_BROKERS="$KAFKA_ADDR" \
  SECKILL_ADMIN_TOKEN="$ADMIN_TOKEN" \
  SECKILL_JWT_SECRET="$JWT_SECRET" \
  SECKILL_PURCHASE_KEY="$PURCHASE_KEY" \
  SECKILL_PAYMENTS_DEMO_PAY=true \
  SECKILL_LIMIT_GLOBAL_RATE=10000000 \
  SECKILL_LIMIT_USER_RATE=1000000 \
  SECKILL_LIMIT_MAX_IN_FLIGHT=16384 \
  SECKILL_LOG_LEVEL=warn \
  "$BIN/seckill" serve >"$WORK/seckill.log" 2>&1 &
SERVER_PID=$!
for i in $(seq 1 150); do
  curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/seckill.log" >&2; die "seckill exited at start"; }
  [[ $i -lt 150 ]] || die "seckill not ready after 30s"
  sleep 0.2
done

create_item() { # create_item NAME STOCK -> id
  curl -fsS -X POST "$BASE/api/v1/admin/items" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"$1\",\"stock\":$2,\"shards\":8,\"per_user_limit\":1,\"price_minor\":1000,\"currency\":\"EUR\"}" | jq -er .id
}
metric_sum() { # metric_sum PREFIX: sum of the /metrics samples whose name{labels} starts with PREFIX
  curl -fsS "$BASE/metrics" >"$WORK/metrics.txt"
  awk -v p="$1" '$0 !~ /^#/ && index($1, p) == 1 { s += $2 } END { printf "%d\n", s }' "$WORK/metrics.txt"
}
# reserved ITEM: units Redis says are taken (stock - remaining): each one is
# an order that must reach MySQL.
reserved() { curl -fsS -H "Authorization: Bearer $ADMIN_TOKEN" "$BASE/api/v1/admin/items/$1/stats" | jq -er .reserved; }
item_rows() { sql "$RUN_ID" -e "SELECT COUNT(*) FROM orders WHERE item_id = $1"; }

# wait_drain NAME ITEM T0 T1: waits until MySQL holds a row for every unit
# Redis reserved for ITEM, and sets DRAIN_<NAME>_RATE (rows/s from T0, the
# start of the load) and DRAIN_<NAME>_LAG (seconds after T1, its end).
DRAIN_OK=yes
wait_drain() {
  local name=$1 item=$2 t0=$3 t1=$4 want rows t
  want=$(reserved "$item")
  for _ in $(seq 1 600); do
    rows=$(item_rows "$item")
    [[ $rows -ge $want ]] && break
    sleep 0.1
  done
  t=$(now)
  if [[ $rows -lt $want ]]; then
    log "$name: only $rows of $want reserved orders of item $item reached MySQL after 60s"
    DRAIN_OK=no
  fi
  printf -v "DRAIN_${name}_RATE" '%s' "$(awk -v n="$rows" -v a="$t0" -v b="$t" 'BEGIN { printf "%.0f", n / (b - a) }')"
  printf -v "DRAIN_${name}_LAG" '%s' "$(awk -v a="$t1" -v b="$t" 'BEGIN { printf "%.2f", b - a }')"
}

# k6 SCRIPT ITEM RATE: runs one k6 scenario; its summary lands in $WORK/k6-SCRIPT.json.
run_k6() {
  local script=$1 item=$2 rate=$3 rc=0
  log "k6 $script: item $item, $rate it/s for ${BENCH_K6_DURATION}s"
  GOMAXPROCS=$LOADGEN_GOMAXPROCS "$BIN/k6" run -q --no-color \
    -e BASE_URL="$BASE" -e ITEM_ID="$item" -e RATE="$rate" -e DURATION="${BENCH_K6_DURATION}s" \
    -e P99_MS="$BENCH_K6_P99_MS" -e SECKILL_JWT_SECRET="$JWT_SECRET" -e SECKILL_ADMIN_TOKEN="$ADMIN_TOKEN" -e SECKILL_PURCHASE_KEY="$PURCHASE_KEY" \
    -e SUMMARY_JSON="$WORK/k6-$script.json" \
    "bench/k6/$script.js" >"$WORK/k6-$script.out" 2>"$WORK/k6-$script.log" || rc=$?
  sed -n '/^== /,$p' "$WORK/k6-$script.out" >&2
  [[ -s $WORK/k6-$script.json ]] || { tail -20 "$WORK/k6-$script.log" >&2; die "k6 $script wrote no summary (exit $rc)"; }
  # 99: thresholds crossed. That is a result to report, not a harness failure.
  [[ $rc -eq 0 || $rc -eq 99 ]] || die "k6 $script exited $rc"
}
k6v() { jq -r "$2" "$WORK/k6-$1.json"; }

# run_wrk NAME URL SCRIPT ARGS...: one wrk run with the shared settings.
run_wrk() {
  local name=$1 url=$2 script=$3
  shift 3
  log "wrk $name: -t$WRK_THREADS -c$WRK_CONNS -d${WRK_DURATION}s $url"
  wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_DURATION}s" --timeout 5s -s "bench/wrk/$script" "$url" -- "$@" \
    >"$WORK/wrk-$name.txt" 2>&1 || { cat "$WORK/wrk-$name.txt" >&2; die "wrk $name failed"; }
  grep -q '^WRK ' "$WORK/wrk-$name.txt" || { cat "$WORK/wrk-$name.txt" >&2; die "wrk $name printed no result"; }
  grep '^WRK ' "$WORK/wrk-$name.txt" >&2
}
wrkv() { grep '^WRK ' "$WORK/wrk-$1.txt" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }
# run_ceiling NAME VAR ARGS...: a hello.lua run against the ceiling server
# (the floor every ratio is taken against), adding the ceiling's CPU ticks
# to VAR_TICKS and its requests to VAR_REQS.
run_ceiling() {
  local name=$1 var=$2 a
  shift 2
  a=$(cpu_ticks "$CEILING_PID")
  run_wrk "$name" "http://127.0.0.1:$CEILING_PORT" hello.lua "$@"
  eval "${var}_TICKS=\$(( ${var}_TICKS + $(cpu_ticks "$CEILING_PID") - a ))"
  eval "${var}_REQS=\$(( ${var}_REQS + $(wrkv "$name" requests) ))"
}

start_ceiling() { # the bare-Gin hello server, beside seckill
  GOMAXPROCS=$SERVER_GOMAXPROCS "$BIN/bench-ceiling" -addr "127.0.0.1:$CEILING_PORT" >"$WORK/ceiling.log" 2>&1 &
  CEILING_PID=$!
  local i
  for i in $(seq 1 50); do
    curl -fsS "http://127.0.0.1:$CEILING_PORT/hello" >/dev/null 2>&1 && break
    [[ $i -lt 50 ]] || die "ceiling server did not start"
    sleep 0.1
  done
}
CEIL_TICKS=0
CEIL_REQS=0
hello_us() { awk -v d="$CEIL_TICKS" -v n="$CEIL_REQS" -v t="$CLK_TCK" 'BEGIN { printf "%.1f", (n > 0 ? d / t * 1e6 / n : 0) }'; }
# cpu_total FROM TO N: microseconds of CPU of all server processes per unit.
cpu_total() {
  local p d total=0
  for p in seckill redis mariadb kafka; do
    eval "d=\$(( CPU_${2}_$p - CPU_${1}_$p ))"
    total=$((total + d))
  done
  awk -v d="$total" -v n="$3" -v t="$CLK_TCK" 'BEGIN { printf "%.1f", (n > 0 ? d / t * 1e6 / n : 0) }'
}

# ---------------------------------------------------------------- whole sale
# wholesale_sale: WHOLESALE_BUYERS buyers arrive in a burst for
# WHOLESALE_UNITS units (bench/cmd/wholesale: page, token, purchase with
# retries after Retry-After; winners poll their order and pay). Around it:
# every server process's CPU, what seckill sent Redis and MariaDB, Redis's
# used_memory and keys, seckill's RSS; after it, the rows in MySQL.
redis_mem() { rcli info memory | awk -F: '/^used_memory:/ { print $2 + 0 }'; }
# prefix_keys: "KEYS BYTES" of this run's keys (MEMORY USAGE summed): what
# the bench itself keeps in Redis, whatever else the server holds.
prefix_keys() {
  rcli --scan --pattern "$RUN_ID:*" | awk '{ print "MEMORY USAGE " $0 }' | rcli | awk '{ n++; s += $1 } END { printf "%d %d\n", n, s }'
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status"; }
wsv() { jq -r "$1" "$WORK/wholesale.json"; }
# wholesale_floor: the same crowd (buyers, burst, connections, the same
# load generator beside the server) sent to the bare hello instead, two
# hellos per buyer (bench-wholesale -floor): the hello's CPU per request
# under the sale's own conditions. wrk's hello (-c$WRK_CONNS, a C client,
# keep-alive) is the other floor; the table holds the sale to both.
FLOOR_TICKS=0
FLOOR_REQS=0
# io_calls PID: "READS WRITES", the read and write system calls the process
# made so far (/proc/PID/io syscr, syscw: sockets included).
io_calls() { awk '/^syscr:/ { r = $2 } /^syscw:/ { w = $2 } END { print r + 0, w + 0 }' "/proc/$1/io" 2>/dev/null || echo 0 0; }
wholesale_floor() {
  local a
  start_ceiling
  log "the floor: $WHOLESALE_BUYERS buyers, two hellos each, burst $WHOLESALE_BURST, $WHOLESALE_CONNS connections"
  read -r FLOOR_R0 FLOOR_W0 < <(io_calls "$CEILING_PID")
  a=$(cpu_ticks "$CEILING_PID")
  GOMAXPROCS=$LOADGEN_GOMAXPROCS SECKILL_JWT_SECRET="$JWT_SECRET" "$BIN/bench-wholesale" -floor -base "http://127.0.0.1:$CEILING_PORT" \
    -buyers "$WHOLESALE_BUYERS" -burst "$WHOLESALE_BURST" -conns "$WHOLESALE_CONNS" -json "$WORK/floor.json" >"$WORK/floor.out" 2>&1 ||
    { cat "$WORK/floor.out" >&2; die "the floor crowd failed"; }
  FLOOR_TICKS=$(($(cpu_ticks "$CEILING_PID") - a))
  read -r FLOOR_R1 FLOOR_W1 < <(io_calls "$CEILING_PID")
  FLOOR_REQS=$(jq -r .requests "$WORK/floor.json")
  [[ $(jq -r .failed "$WORK/floor.json") -eq 0 ]] || die "the floor crowd: $(jq -r .failed "$WORK/floor.json") buyers failed"
  stop_pid "$CEILING_PID" ceiling
  CEILING_PID=""
}
floor_us() { awk -v d="$FLOOR_TICKS" -v n="$FLOOR_REQS" -v t="$CLK_TCK" 'BEGIN { printf "%.1f", (n > 0 ? d / t * 1e6 / n : 0) }'; }
# quiet_servers: waits (60 s at most) until MariaDB and Redis spend under
# 3 ticks of CPU a second over 5 s, the reconciler's interval (a 1 s window
# missed its passes): background work left by the phases before (InnoDB
# flushing and purging their rows) is not the next phase's.
quiet_servers() {
  local i a b t0=$SECONDS m r
  m=$(pid_of mariadb)
  r=$(pid_of redis)
  for i in $(seq 1 12); do
    a=$(($(cpu_ticks "$m") + $(cpu_ticks "$r")))
    sleep 5
    b=$(($(cpu_ticks "$m") + $(cpu_ticks "$r")))
    [[ $((b - a)) -ge 15 ]] || { log "servers quiet after $((SECONDS - t0)) s ($((b - a)) ticks in 5 s)"; return 0; }
  done
  log "servers still busy after 60 s ($((b - a)) ticks in 5 s): measuring anyway"
}
# wholesale_run: WHOLESALE_ROUNDS rounds of a floor crowd, then a sale of
# its own item to as many new buyers; each round's promises are checked,
# its CPU per buyer kept (WS_CPUS, WS_RPBS, WS_FLOORS), and the table shows
# the last round's other figures.
WS_CPUS=() WS_RPBS=() WS_FLOORS=()
wholesale_run() {
  local r
  for r in $(seq 1 "$WHOLESALE_ROUNDS"); do
    quiet_servers
    wholesale_floor
    WS_FLOORS+=("$(floor_us)")
    log "whole sale, round $r of $WHOLESALE_ROUNDS"
    wholesale_sale "$r"
    wholesale_check "round $r: "
    WS_CPUS+=("$(cpu_total ws0 ws1 "$(wsv .buyers)")")
    WS_RPBS+=("$(wsv .requests_per_buyer)")
  done
  wholesale_k6
}
# wholesale_sale ROUND: one sale (see wholesale_run); a CPU profile in the
# first round with BENCH_PPROF.
wholesale_sale() {
  ITEM_WS=$(create_item "whole sale $1" "$WHOLESALE_UNITS")
  WS_MEM0=$(redis_mem)
  # The run's own keys are only this sale's alone: after the other phases
  # they are hundreds of thousands, and summing them takes minutes.
  WS_KEYS0=0 WS_KBYTES0=0
  [[ $BENCH_ONLY != wholesale ]] || read -r WS_KEYS0 WS_KBYTES0 < <(prefix_keys)
  WS_RSS0=$(rss_kb)
  WS_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
  cpu_snap ws0
  calls_snap ws0
  read -r WS_R0 WS_W0 < <(io_calls "$SERVER_PID")
  log "whole sale: $WHOLESALE_BUYERS buyers for $WHOLESALE_UNITS units of item $ITEM_WS, burst $WHOLESALE_BURST, $WHOLESALE_CONNS connections"
  local t0 prof=""
  if [[ -n $BENCH_PPROF && $1 == 1 ]]; then # where a buyer's CPU goes: 10 s of the sale
    curl -fsS "http://$BENCH_PPROF/debug/pprof/profile?seconds=10" -o "$BIN/bench-wholesale.pprof" &
    prof=$!
  fi
  t0=$(now)
  GOMAXPROCS=$LOADGEN_GOMAXPROCS SECKILL_JWT_SECRET="$JWT_SECRET" "$BIN/bench-wholesale" -base "$BASE" -item "$ITEM_WS" \
    -buyers "$WHOLESALE_BUYERS" -burst "$WHOLESALE_BURST" -conns "$WHOLESALE_CONNS" -json "$WORK/wholesale.json" >&2 ||
    die "the whole sale failed"
  if [[ -n $prof ]]; then
    wait "$prof" || log "no CPU profile"
    go tool pprof -top -nodecount=30 "$BIN/seckill" "$BIN/bench-wholesale.pprof" 2>/dev/null | head -38 >&2 || true
    curl -fsS "http://$BENCH_PPROF/debug/pprof/heap" -o "$BIN/bench-wholesale-heap.pprof" || log "no heap profile"
    log "CPU profile of the whole sale: $BIN/bench-wholesale.pprof, heap after it: $BIN/bench-wholesale-heap.pprof"
  fi
  wait_drain WS "$ITEM_WS" "$t0" "$(now)"
  cpu_snap ws1
  calls_snap ws1
  read -r WS_R1 WS_W1 < <(io_calls "$SERVER_PID")
  WS_RSS1=$(rss_kb)
  WS_MEM1=$(redis_mem)
  WS_KEYS1=0 WS_KBYTES1=0
  [[ $BENCH_ONLY != wholesale ]] || read -r WS_KEYS1 WS_KBYTES1 < <(prefix_keys)
  WS_ROWS=$(item_rows "$ITEM_WS")
  WS_PAID_ROWS=$(sql "$RUN_ID" -e "SELECT COUNT(*) FROM orders WHERE item_id = $ITEM_WS AND status = 'paid'")
  WS_OVER_LIMIT=$(sql "$RUN_ID" -e "SELECT COUNT(*) FROM (SELECT user_id FROM orders WHERE item_id = $ITEM_WS
    AND status IN ('pending','paid') GROUP BY user_id HAVING COUNT(*) > 1) x")
}
# wholesale_k6: the same scenario in k6, small, with k6's HTML report.
WS_K6=""
wholesale_k6() {
  if [[ $WHOLESALE_K6_UNITS -gt 0 ]]; then
    ITEM_WSK6=$(create_item "whole sale, k6" "$WHOLESALE_K6_UNITS")
    rm -f "$BIN/bench-wholesale-k6.html"
    log "k6 whole sale: $((100 * WHOLESALE_K6_UNITS)) buyers for $WHOLESALE_K6_UNITS units of item $ITEM_WSK6"
    local rc=0
    K6_WEB_DASHBOARD=true K6_WEB_DASHBOARD_PORT=-1 K6_WEB_DASHBOARD_PERIOD=1s K6_WEB_DASHBOARD_EXPORT="$BIN/bench-wholesale-k6.html" \
      GOMAXPROCS=$LOADGEN_GOMAXPROCS "$BIN/k6" run -q --no-color \
      -e BASE_URL="$BASE" -e ITEM_ID="$ITEM_WSK6" -e UNITS="$WHOLESALE_K6_UNITS" -e BURST_S=1 \
      -e SECKILL_JWT_SECRET="$JWT_SECRET" -e SECKILL_ADMIN_TOKEN="$ADMIN_TOKEN" -e SUMMARY_JSON="$WORK/k6-wholesale.json" \
      bench/k6/wholesale.js >"$WORK/k6-wholesale.out" 2>"$WORK/k6-wholesale.log" || rc=$?
    sed -n '/^== /,$p' "$WORK/k6-wholesale.out" >&2
    [[ -s $WORK/k6-wholesale.json ]] || { tail -20 "$WORK/k6-wholesale.log" >&2; die "k6 wholesale wrote no summary (exit $rc)"; }
    [[ $rc -eq 0 || $rc -eq 99 ]] || die "k6 wholesale exited $rc"
    wait_drain WSK6 "$ITEM_WSK6" "$(now)" "$(now)"
    WS_K6=yes
  fi
}
# wholesale_check PREFIX: the last sale's promises, recorded with expect
# (PREFIX: which round).
wholesale_check() {
  expect "${1}whole sale: MySQL rows == 202s the buyers got <= units ($WS_ROWS, $(wsv .won), $WHOLESALE_UNITS)" \
    test "$WS_ROWS" -eq "$(wsv .won)" -a "$WS_ROWS" -le "$WHOLESALE_UNITS"
  expect "${1}whole sale: every 202 a distinct order ($(wsv .distinct_orders) of $(wsv .won))" test "$(wsv .distinct_orders)" -eq "$(wsv .won)"
  expect "${1}whole sale: nobody over the per-user limit ($WS_OVER_LIMIT users)" test "$WS_OVER_LIMIT" -eq 0
  expect "${1}whole sale: paid rows == payments the winners got ($WS_PAID_ROWS vs $(wsv .paid))" test "$WS_PAID_ROWS" -eq "$(wsv .paid)"
  expect "${1}whole sale: every buyer a final answer, every winner paid ($(wsv .failed) failed, $(wsv .pay_failed) payments failed)" \
    test "$(wsv .failed)" -eq 0 -a "$(wsv .pay_failed)" -eq 0
}
# wholesale_k6_check: the k6 whole sale's promises.
wholesale_k6_check() {
  if [[ -n $WS_K6 ]]; then
    local k6rows
    k6rows=$(item_rows "$ITEM_WSK6")
    expect "k6 whole sale: MySQL rows == 202s k6 got <= units ($k6rows, $(jq -r .won "$WORK/k6-wholesale.json"), $WHOLESALE_K6_UNITS)" \
      test "$k6rows" -eq "$(jq -r .won "$WORK/k6-wholesale.json")" -a "$k6rows" -le "$WHOLESALE_K6_UNITS"
    expect "k6 whole sale: every buyer answered, every winner paid ($(jq -r .failed "$WORK/k6-wholesale.json") failed)" \
      test "$(jq -r .failed "$WORK/k6-wholesale.json")" -eq 0
  fi
}
# wholesale_table: the whole sale's rows of the results table.
wholesale_table() {
  local n won cpu rpb hello target
  n=$(wsv .buyers)
  won=$(wsv .won)
  cpu=$(median "${WS_CPUS[@]}")
  rpb=$(median "${WS_RPBS[@]}")
  hello=$(hello_us)
  target=$(awk -v r="$rpb" -v h="$hello" 'BEGIN { printf "%.1f", 1.5 * r * h }')
  kv "whole sale" "$WHOLESALE_UNITS units, $n buyers in a $(wsv .burst_s)s burst, $(wsv .conns) connections; $WHOLESALE_ROUNDS rounds, the last shown; load avg at its start $WS_LOAD"
  kv "  every buyer had a final answer after" "$(fmt2 "$(wsv .all_answered_s)") s (all done, payments included: $(fmt2 "$(wsv .all_done_s)") s)"
  kv "  a buyer's time to its final answer" "p50 $(fmt2 "$(wsv .answer_ms.p50)") ms, p99 $(fmt2 "$(wsv .answer_ms.p99)") ms, max $(fmt2 "$(wsv .answer_ms.max)") ms"
  kv "  a winner's time to paid" "p50 $(fmt2 "$(wsv .paid_ms.p50)") ms, p99 $(fmt2 "$(wsv .paid_ms.p99)") ms"
  kv "  outcomes" "won $won, sold out $(wsv '.outcomes.sold_out // 0'), paid $(wsv .paid), failed $(wsv .failed); retried: $(wsv .retries) (429: $(wsv .status_429), 5xx: $(wsv .status_5xx), network errors: $(wsv .network_errors))"
  kv "  requests per buyer" "$(fmt2 "$rpb") ($(wsv '.requests_by_step | to_entries | map("\(.key) \(.value)") | join(", ")'))"
  kv "  CPU per buyer (all processes, drain incl.)" "$(cpu_per ws0 ws1 "$n")"
  kv "  ... in each round" "$(printf '%s us ' "${WS_CPUS[@]}")(median $cpu us)"
  kv "  CPU per buyer vs 1.5 x requests x hello" "$cpu us vs 1.5 x $(fmt2 "$rpb") x $hello us = $target us: $(awk -v c="$cpu" -v t="$target" 'BEGIN { print (t > 0 && c <= t ? "met" : "MISSED") }') (medians; hello: wrk -c$WRK_CONNS)"
  # Each sale against the floor crowd just before it: ratio to its target.
  local i ratios=() ratio
  for i in "${!WS_CPUS[@]}"; do
    ratios+=("$(awk -v c="${WS_CPUS[$i]}" -v r="${WS_RPBS[$i]}" -v h="${WS_FLOORS[$i]}" 'BEGIN { printf "%.2f", (h > 0 ? c / (1.5 * r * h) : 99) }')")
  done
  ratio=$(median "${ratios[@]}")
  kv "  ... vs the hello in the same crowd" "CPU / (1.5 x requests x that hello) $(printf '%s ' "${ratios[@]}")(hellos $(printf '%s ' "${WS_FLOORS[@]}")us), median $ratio: $(awk -v r="$ratio" 'BEGIN { print (r <= 1 ? "met" : "MISSED") }') (bench-wholesale -floor before each sale, $FLOOR_REQS hellos)"
  kv "  calls per buyer (seckill -> Redis; MariaDB)" "$(calls_per ws0 ws1 "$n")"
  kv "  read, write syscalls per request" "$(awk -v r="$((WS_R1 - WS_R0))" -v w="$((WS_W1 - WS_W0))" -v n="$(wsv .requests)" \
    -v fr="$((FLOOR_R1 - FLOOR_R0))" -v fw="$((FLOOR_W1 - FLOOR_W0))" -v fn="$FLOOR_REQS" \
    'BEGIN { printf "seckill %.2f, %.2f; the hello in the same crowd %.2f, %.2f", r / n, w / n, fr / fn, fw / fn }')"
  kv "  Redis used_memory per buyer, per order" "$(awk -v a="$WS_MEM0" -v b="$WS_MEM1" -v n="$n" -v w="$won" 'BEGIN { printf "%.1f B, %.0f B (%+.1f MB in all)", (b - a) / n, (w > 0 ? (b - a) / w : 0), (b - a) / 1048576 }')"
  [[ $BENCH_ONLY != wholesale ]] || kv "  the run's keys per buyer, per order" "$(awk -v a="$WS_KEYS0" -v b="$WS_KEYS1" -v n="$n" -v w="$won" 'BEGIN { printf "%.3f, %.2f (%+d keys)", (b - a) / n, (w > 0 ? (b - a) / w : 0), b - a }')"
  [[ $BENCH_ONLY != wholesale ]] || kv "  their MEMORY USAGE per buyer, per order" "$(awk -v a="$WS_KBYTES0" -v b="$WS_KBYTES1" -v n="$n" -v w="$won" 'BEGIN { printf "%.1f B, %.0f B (%+.2f MB; used_memory above is the whole shared server)", (b - a) / n, (w > 0 ? (b - a) / w : 0), (b - a) / 1048576 }')"
  kv "  seckill RSS before, after" "$((WS_RSS0 / 1024)) MB, $((WS_RSS1 / 1024)) MB"
  kv "  success rate by arrival decile" "$(wsv '.success_by_decile | map(. * 1000 | round / 1000 | tostring) | join(" ")')"
  kv "  load generator CPU per buyer" "$(fmt2 "$(wsv .loadgen_cpu_us_per_buyer)") us (not in the figures above)"
  if [[ -n $WS_K6 ]]; then
    local j="$WORK/k6-wholesale.json"
    kv "k6 whole sale (same scenario, small)" "$(jq -r .units "$j") units, $(jq -r .buyers "$j") buyers: all answered after $(fmt2 "$(jq -r .all_answered_s "$j")") s, answer p50 $(fmt2 "$(jq -r .answer_ms.p50 "$j")") ms p99 $(fmt2 "$(jq -r .answer_ms.p99 "$j")") ms, $(fmt2 "$(jq -r .requests_per_buyer "$j")") requests/buyer, won $(jq -r .won "$j"), paid $(jq -r .paid "$j")"
    if [[ -s $BIN/bench-wholesale-k6.html ]]; then
      kv "  k6's HTML report (QPS, latency over time)" "bin/bench-wholesale-k6.html"
    else
      kv "  k6's HTML report" "not written (k6 skips it for a run of a few seconds; see k6-wholesale.log)"
    fi
  fi
}
# soldout_sum KEY: KEY summed over every sold-out round.
soldout_sum() { local t=0 r; for r in $(seq 1 "$ROUNDS"); do t=$((t + $(wrkv "soldout-$r" "$1"))); done; echo "$t"; }

# ---------------------------------------------------------------- k6
if [[ $BENCH_ONLY == wholesale ]]; then
  start_ceiling
  for r in 1 2; do # the floor: a hello's CPU
    WRK_DURATION=${PAGE_ROUND_SECONDS:-6} run_ceiling "ceiling-$r" CEIL
  done
  stop_pid "$CEILING_PID" ceiling
  CEILING_PID=""
  wholesale_run
  fmt2() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }
  kv() { printf '%-47s %s\n' "$@"; }
  wholesale_k6_check
  LINE=$(printf '%.0s-' $(seq 1 120))
  {
    echo
    echo "$LINE"
    printf 'seckill bench (whole sale only) %s | %s cores, load avg before %s | GOMAXPROCS server=%s loadgen=%s\n' \
      "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$LOAD_BEFORE" "$SERVER_GOMAXPROCS" "$LOADGEN_GOMAXPROCS"
    echo "$LINE"
    wholesale_table
    kv "CPU per bare-Gin hello" "$(hello_us) us (2 rounds of wrk -c$WRK_CONNS)"
    for f in "${FAILS[@]}"; do kv "invariant FAILED" "$f"; done
    [[ ${#FAILS[@]} -gt 0 ]] || kv "invariants" "PASS: rows == 202s <= units, distinct orders, nobody over the limit, paid rows == payments, every buyer answered"
    echo "$LINE"
  }
  log "done in $(($(date +%s) - STARTED))s"
  [[ ${#FAILS[@]} -eq 0 ]]
  exit
fi

ITEM_K6=$(create_item "k6 purchase spike" $((BENCH_K6_PURCHASE_RATE * BENCH_K6_DURATION)))
ITEM_MIXED=$(create_item "k6 mixed clients" $((BENCH_K6_MIXED_RATE * BENCH_K6_DURATION * 2)))
ITEM_SOLDOUT=$(create_item "sold out" 0)

T0=$(now)
run_k6 purchase "$ITEM_K6" "$BENCH_K6_PURCHASE_RATE"
T1=$(now)
wait_drain K6 "$ITEM_K6" "$T0" "$T1"

run_k6 mixed "$ITEM_MIXED" "$BENCH_K6_MIXED_RATE"
wait_drain MIXED "$ITEM_MIXED" "$T1" "$(now)"

run_k6 soldout "$ITEM_SOLDOUT" "$BENCH_K6_SOLDOUT_RATE"

# ---------------------------------------------------------------- wrk
# The bare-Gin ceiling runs beside seckill from here on (idle, it costs
# nothing); its rounds alternate with seckill's.
start_ceiling
# rss_watch: samples seckill's resident memory (VmRSS, kB) every 0.2s into
# $WORK/rss.txt until killed.
rss_watch() {
  while kill -0 "$SERVER_PID" 2>/dev/null; do
    awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || true
    sleep 0.2
  done >"$WORK/rss.txt"
}
# Enough users for the paced rate over the whole run; a thread that runs
# out stops rather than replay a token.
WRK_USERS=$((WRK_PURCHASE_RATE * WRK_DURATION * 105 / 100 + WRK_CONNS))
ITEM_WRK=$(create_item "wrk purchase" "$WRK_USERS")
log "prep: $WRK_USERS users with purchase tokens for item $ITEM_WRK"
cpu_snap tok0
GOMAXPROCS=$LOADGEN_GOMAXPROCS SECKILL_JWT_SECRET="$JWT_SECRET" "$BIN/bench-prep" -base "$BASE" -item "$ITEM_WRK" \
  -n "$WRK_USERS" -workers 64 -out "$WORK/users.txt" >&2
cpu_snap tok1

cpu_snap buy0
calls_snap buy0
PPROF_PID=""
if [[ -n $BENCH_PPROF ]]; then
  curl -fsS "http://$BENCH_PPROF/debug/pprof/profile?seconds=$WRK_DURATION" -o "$BIN/bench-purchase.pprof" &
  PPROF_PID=$!
fi
RSS_BEFORE_KB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status")
rss_watch &
RSS_PID=$!
T0=$(now)
run_wrk purchase "$BASE" purchase.lua "$WORK/users.txt" "$ITEM_WRK" "$WRK_PURCHASE_RATE" "$WRK_THREADS"
T1=$(now)
kill "$RSS_PID" 2>/dev/null || true
wait "$RSS_PID" 2>/dev/null || true
RSS_MAX_KB=$(sort -n "$WORK/rss.txt" | tail -1)
wait_drain WRK "$ITEM_WRK" "$T0" "$T1"
cpu_snap buy1
calls_snap buy1
if [[ -n $PPROF_PID ]]; then
  wait "$PPROF_PID" || log "no CPU profile"
  go tool pprof -top -nodecount=25 "$BIN/seckill" "$BIN/bench-purchase.pprof" 2>/dev/null | head -32 >&2 || true
  curl -fsS "http://$BENCH_PPROF/debug/pprof/heap" -o "$BIN/bench-heap.pprof" || log "no heap profile"
  log "CPU profile of the wrk purchase phase: $BIN/bench-purchase.pprof, heap after it: $BIN/bench-heap.pprof"
fi

# Unpaced purchases: as many accepted/s as the server gives with MAX_CONNS
# connections, each round next to a ceiling round with the same settings
# (median ratio). Every round has users of its own: a token is never sent
# twice, so every 202 is a new order.
read -r -a MAX_CONN_LIST <<<"$MAX_CONNS"
MAX_USERS=$((MAX_USERS_PER_S * MAX_ROUND_SECONDS))
ITEM_MAX=$(create_item "wrk unpaced" $((MAX_USERS * MAX_ROUNDS * ${#MAX_CONN_LIST[@]})))
log "prep: $((MAX_USERS * MAX_ROUNDS * ${#MAX_CONN_LIST[@]})) users for the unpaced rounds (item $ITEM_MAX)"
if [[ -n $BENCH_PPROF ]]; then # the token issue's profile: 5s of this prep
  curl -fsS "http://$BENCH_PPROF/debug/pprof/profile?seconds=5" -o "$BIN/bench-token.pprof" &
  PPROF_PID=$!
fi
GOMAXPROCS=$LOADGEN_GOMAXPROCS SECKILL_JWT_SECRET="$JWT_SECRET" "$BIN/bench-prep" -base "$BASE" -item "$ITEM_MAX" \
  -n $((MAX_USERS * MAX_ROUNDS * ${#MAX_CONN_LIST[@]})) -workers 64 -out "$WORK/max-users.txt" >&2
if [[ -n $BENCH_PPROF ]]; then
  wait "$PPROF_PID" || log "no CPU profile"
  log "CPU profile of token issues: $BIN/bench-token.pprof"
fi
split -l "$MAX_USERS" -d -a 3 "$WORK/max-users.txt" "$WORK/max-users-"
rm -f "$WORK/max-users.txt"
SAVED_DURATION=$WRK_DURATION
WRK_DURATION=$MAX_ROUND_SECONDS
T0=$(now)
part=0
CEIL_TICKS=0
CEIL_REQS=0
for r in $(seq 1 "$MAX_ROUNDS"); do
  for c in "${MAX_CONN_LIST[@]}"; do
    WRK_CONNS=$c run_wrk "max-$c-$r" "$BASE" purchase.lua "$WORK/max-users-$(printf %03d "$part")" "$ITEM_MAX" 0 "$WRK_THREADS"
    part=$((part + 1))
    WRK_CONNS=$c run_ceiling "maxceil-$c-$r" CEIL
  done
done
WRK_DURATION=$SAVED_DURATION
wait_drain MAX "$ITEM_MAX" "$T0" "$(now)"
# max_summary C: "accepted/s (median round) / ceiling req/s = ratio (rounds: ...)" for C connections.
max_summary() {
  local c=$1 r acc ratios="" lines=""
  for r in $(seq 1 "$MAX_ROUNDS"); do
    acc=$(awk -v n="$(wrkv "max-$c-$r" s202)" -v d="$(wrkv "max-$c-$r" duration_s)" 'BEGIN { printf "%.0f", n / d }')
    # A round that sold to every user it had was cut short: its rate is a floor.
    if [[ $(wrkv "max-$c-$r" s202) -ge $((MAX_USERS - c)) ]]; then acc=">=$acc"; fi
    lines+="$(awk -v a="${acc#>=}" -v b="$(wrkv "maxceil-$c-$r" rps)" -v s="$acc" 'BEGIN { printf "%.4f %s %.0f", a / b, s, b }')"$'\n'
  done
  printf '%s' "$lines" | sort -n | awk -v c="$c" '{ r[NR] = $1; a[NR] = $2; b[NR] = $3; all = all sprintf("%.2f ", $1) }
    END { m = int((NR + 1) / 2); printf "c=%d: %s/s vs ceiling %s req/s = %.2f (median of %d rounds: %s)", c, a[m], b[m], r[m], NR, all }'
}
MAX_ERRORS=0
for c in "${MAX_CONN_LIST[@]}"; do
  for r in $(seq 1 "$MAX_ROUNDS"); do
    MAX_ERRORS=$((MAX_ERRORS + $(wrkv "max-$c-$r" s5xx) + $(wrkv "max-$c-$r" net_errors)))
  done
done

# A backlog: MySQL's orders table is locked (the writer waits; the relay
# keeps filling Kafka) during BACKLOG_SECONDS of paced purchases, then
# released; the drain rate is the backlog's rows per second from release.
BACKLOG_USERS=$((WRK_PURCHASE_RATE * BACKLOG_SECONDS * 105 / 100 + WRK_CONNS))
ITEM_BACKLOG=$(create_item "backlog" "$BACKLOG_USERS")
GOMAXPROCS=$LOADGEN_GOMAXPROCS SECKILL_JWT_SECRET="$JWT_SECRET" "$BIN/bench-prep" -base "$BASE" -item "$ITEM_BACKLOG" \
  -n "$BACKLOG_USERS" -workers 64 -out "$WORK/backlog-users.txt" >&2
coproc LOCKER { mysql --protocol=tcp -h"$MYSQL_HOST" -P"$MYSQL_PORT" -u"$MYSQL_USER" -N -B --unbuffered "$RUN_ID"; }
echo "LOCK TABLES orders WRITE; SELECT 'locked';" >&"${LOCKER[1]}"
read -r -t 30 locked <&"${LOCKER[0]}" && [[ $locked == locked ]] || die "could not lock the orders table"
log "orders table locked: MySQL takes no orders"
PUBLISHED_BEFORE=$(metric_sum seckill_relay_published_total)
WRK_DURATION=$BACKLOG_SECONDS run_wrk backlog "$BASE" purchase.lua "$WORK/backlog-users.txt" "$ITEM_BACKLOG" "$WRK_PURCHASE_RATE" "$WRK_THREADS"
BACKLOG_ACCEPTED=$(wrkv backlog s202)
# Until the relay has sent everything (the backlog waits in Kafka, not in Redis).
for _ in $(seq 1 300); do
  [[ $(($(metric_sum seckill_relay_published_total) - PUBLISHED_BEFORE)) -ge $BACKLOG_ACCEPTED ]] && break
  sleep 0.1
done
echo "UNLOCK TABLES; SELECT 'unlocked';" >&"${LOCKER[1]}"
read -r -t 30 locked <&"${LOCKER[0]}" || true
T_UNLOCK=$(now)
exec {LOCKER[1]}>&-
log "orders table released with $BACKLOG_ACCEPTED orders waiting"
wait_drain BACKLOG "$ITEM_BACKLOG" "$T_UNLOCK" "$T_UNLOCK"

# The sold-out crowd holds real purchase tokens (see bench/wrk/soldout.lua).
# Signed here (-sign): the crowd of a sold-out item holds tokens from before
# it sold out, and the service issues none for an item it knows sold out.
GOMAXPROCS=$LOADGEN_GOMAXPROCS SECKILL_JWT_SECRET="$JWT_SECRET" SECKILL_PURCHASE_KEY="$PURCHASE_KEY" "$BIN/bench-prep" -base "$BASE" \
  -item "$ITEM_SOLDOUT" -sign -n $((WRK_THREADS * 1000)) -workers 64 -out "$WORK/soldout-users.txt" >&2
# Sold-out path and ceiling alternate in short rounds, so noise from other
# work on the machine hits both alike; the ratio is the median of the
# rounds' ratios, and the table rows show the median round.
ROUNDS=${SOLDOUT_ROUNDS:-3}
SAVED_DURATION=$WRK_DURATION
WRK_DURATION=${SOLDOUT_ROUND_SECONDS:-6}
SOLDOUT_N=0
CEILHDR_TICKS=0
CEILHDR_REQS=0
for r in $(seq 1 "$ROUNDS"); do
  cpu_snap "so${r}a"
  run_wrk "soldout-$r" "$BASE" soldout.lua "$WORK/soldout-users.txt" "$ITEM_SOLDOUT" "$WRK_THREADS"
  cpu_snap "so${r}b"
  run_ceiling "ceiling-$r" CEIL
  # The same hello, with a sold-out purchase's headers.
  run_ceiling "ceilhdr-$r" CEILHDR headers
done
HDR_RATIOS=$(for r in $(seq 1 "$ROUNDS"); do
  awk -v a="$(wrkv "soldout-$r" rps)" -v b="$(wrkv "ceilhdr-$r" rps)" 'BEGIN { printf "%.2f\n", a / b }'
done | sort -n)
HDR_RATIO=$(echo "$HDR_RATIOS" | awk '{ r[NR] = $1 } END { print r[int((NR + 1) / 2)] }')
WRK_DURATION=$SAVED_DURATION

# Token issues of users whose JWTs the service has seen (the sold-out
# crowd's), as the crowd fetches them after loading the page: CPU of every
# process per token against the hello's, in rounds that alternate as above.
ITEM_TOKEN=$(create_item "tokens" 100000)
WRK_DURATION=${TOKEN_ROUND_SECONDS:-5}
TOKEN_TICKS=0
TOKEN_N=0
TOKCEIL_TICKS=0
TOKCEIL_REQS=0
for r in $(seq 1 "$ROUNDS"); do
  cpu_snap "tw${r}a"
  run_wrk "token-$r" "$BASE" token.lua "$WORK/soldout-users.txt" "$ITEM_TOKEN" "$WRK_THREADS"
  cpu_snap "tw${r}b"
  for p in seckill redis mariadb kafka; do
    eval "TOKEN_TICKS=\$(( TOKEN_TICKS + CPU_tw${r}b_$p - CPU_tw${r}a_$p ))"
  done
  TOKEN_N=$((TOKEN_N + $(wrkv "token-$r" s2xx)))
  run_ceiling "tokceil-$r" TOKCEIL
done
TOKEN_KEYS=$(rcli --scan --pattern "$RUN_ID:*:$ITEM_TOKEN:*:tok:*" | wc -l)
WRK_DURATION=$SAVED_DURATION

# The product page: one item viewed by the whole crowd, in rounds that
# alternate with the ceiling as the sold-out rounds do; the ratio is the
# median of the rounds' ratios, CPU and calls per view from the median round.
ITEM_PAGE=$(create_item "product page" 100000)
curl -fsS "$BASE/api/v1/items/$ITEM_PAGE" >/dev/null || die "product page of item $ITEM_PAGE does not answer"
PAGE_ROUNDS=${PAGE_ROUNDS:-3}
for r in $(seq 1 "$PAGE_ROUNDS"); do
  cpu_snap "pg${r}a"
  calls_snap "pg${r}a"
  WRK_DURATION=${PAGE_ROUND_SECONDS:-6} run_wrk "page-$r" "$BASE" page.lua "$ITEM_PAGE"
  cpu_snap "pg${r}b"
  calls_snap "pg${r}b"
  WRK_DURATION=${PAGE_ROUND_SECONDS:-6} run_wrk "pageceil-$r" "http://127.0.0.1:$CEILING_PORT" hello.lua
done
PAGE_BY_RATIO=$(for r in $(seq 1 "$PAGE_ROUNDS"); do
  awk -v r="$r" -v a="$(wrkv "page-$r" rps)" -v b="$(wrkv "pageceil-$r" rps)" 'BEGIN { printf "%.4f %d\n", a / b, r }'
done | sort -n)
PAGE_MEDIAN_ROUND=$(echo "$PAGE_BY_RATIO" | awk '{ rows[NR] = $2 } END { print rows[int((NR + 1) / 2)] }')
PAGE_RATIO=$(echo "$PAGE_BY_RATIO" | awk '{ r[NR] = $1 } END { printf "%.2f", r[int((NR + 1) / 2)] }')
PAGE_ROUND_RATIOS=$(echo "$PAGE_BY_RATIO" | awk '{ printf "%.2f ", $1 }')
cp "$WORK/wrk-page-$PAGE_MEDIAN_ROUND.txt" "$WORK/wrk-page.txt"
cp "$WORK/wrk-pageceil-$PAGE_MEDIAN_ROUND.txt" "$WORK/wrk-pageceil.txt"
PAGE_OK=$(awk -v r="$PAGE_RATIO" 'BEGIN { print (r >= 0.85 ? "met" : "MISSED") }')
PAGE_ERRORS=0
for r in $(seq 1 "$PAGE_ROUNDS"); do
  PAGE_ERRORS=$((PAGE_ERRORS + $(wrkv "page-$r" s4xx) + $(wrkv "page-$r" s5xx) + $(wrkv "page-$r" other) + $(wrkv "page-$r" net_errors)))
done
stop_pid "$CEILING_PID" ceiling
CEILING_PID=""

wholesale_run
MEDIAN_ROUND=$(for r in $(seq 1 "$ROUNDS"); do
  awk -v r="$r" -v a="$(wrkv "soldout-$r" rps)" -v b="$(wrkv "ceiling-$r" rps)" 'BEGIN { printf "%.4f %d\n", a / b, r }'
done | sort -n | awk '{ rows[NR] = $2 } END { print rows[int((NR + 1) / 2)] }')
cp "$WORK/wrk-soldout-$MEDIAN_ROUND.txt" "$WORK/wrk-soldout.txt"
cp "$WORK/wrk-ceiling-$MEDIAN_ROUND.txt" "$WORK/wrk-ceiling.txt"
ROUND_RATIOS=$(for r in $(seq 1 "$ROUNDS"); do
  awk -v a="$(wrkv "soldout-$r" rps)" -v b="$(wrkv "ceiling-$r" rps)" 'BEGIN { printf "%.2f ", a / b }'
done)

# ---------------------------------------------------------------- invariants
log "checking invariants in MySQL and Redis"
ROWS=$(sql "$RUN_ID" -e 'SELECT COUNT(*) FROM orders')
PURCHASES_OK=$(metric_sum 'seckill_purchases_total{outcome="ok"}')
GUARD_REFUSALS=$(metric_sum 'seckill_db_guard_refusals_total')
if grep -q '^seckill_oversold' "$WORK/metrics.txt"; then
  OVERSOLD_METRIC=$(metric_sum 'seckill_oversold')
else
  OVERSOLD_METRIC="n/a (seckill_oversold not exported)"
fi

# One line per item: id, stock, per-user limit, items.sold, active rows, all rows.
sql "$RUN_ID" -e "
  SELECT i.id, i.stock, i.per_user_limit, i.sold,
         COALESCE(SUM(o.status IN ('pending','paid')), 0), COUNT(o.order_id)
  FROM items i LEFT JOIN orders o ON o.item_id = i.id
  GROUP BY i.id, i.stock, i.per_user_limit, i.sold ORDER BY i.id" >"$WORK/items.tsv"
OVERSOLD_DB=$(awk '{ if ($5 > $2) s += $5 - $2; if ($4 > $2) t += $4 - $2 } END { print (s > t ? s : t) + 0 }' "$WORK/items.tsv")
SOLD_MISMATCH=$(awk '$4 != $5 { n++ } END { print n + 0 }' "$WORK/items.tsv")
OVER_LIMIT=$(sql "$RUN_ID" -e "
  SELECT COUNT(*) FROM (
    SELECT o.user_id, o.item_id FROM orders o JOIN items i ON i.id = o.item_id
    WHERE o.status IN ('pending','paid')
    GROUP BY o.user_id, o.item_id, i.per_user_limit HAVING COUNT(*) > i.per_user_limit) x")
rows_of() { awk -v id="$1" '$1 == id { print $6 }' "$WORK/items.tsv"; }

BENCH_K6_ACCEPTED=$(k6v purchase .accepted)
MIXED_ACCEPTED=$(k6v mixed .accepted)
SOLDOUT_ACCEPTED=$(($(k6v soldout .accepted) + $(soldout_sum s202)))
WRK_ACCEPTED=$(wrkv purchase s202)
for item in "$ITEM_K6" "$ITEM_MIXED" "$ITEM_SOLDOUT" "$ITEM_WRK" "$ITEM_MAX" "$ITEM_BACKLOG" "$ITEM_WS"; do
  r=$(reserved "$item")
  expect "item $item: MySQL rows == units Redis reserved ($(rows_of "$item") vs $r)" test "$(rows_of "$item")" -eq "$r"
done
expect "k6 purchase: MySQL rows == 202s k6 got ($(rows_of "$ITEM_K6") vs $BENCH_K6_ACCEPTED)" test "$(rows_of "$ITEM_K6")" -eq "$BENCH_K6_ACCEPTED"
expect "k6 mixed: MySQL rows == first 202s k6 got ($(rows_of "$ITEM_MIXED") vs $MIXED_ACCEPTED)" test "$(rows_of "$ITEM_MIXED")" -eq "$MIXED_ACCEPTED"
# wrk counts only answers that arrived before its clock stopped: up to one
# request per connection was still in flight and may have been accepted.
expect "wrk purchase: 202s wrk got <= MySQL rows <= that + connections ($WRK_ACCEPTED, $(rows_of "$ITEM_WRK"))" \
  awk -v a="$WRK_ACCEPTED" -v r="$(rows_of "$ITEM_WRK")" -v c="$WRK_CONNS" 'BEGIN { exit !(a <= r && r <= a + c) }'
expect "sold-out item: no 202 and no row (clients saw $SOLDOUT_ACCEPTED, MySQL has $(rows_of "$ITEM_SOLDOUT"))" \
  test "$(rows_of "$ITEM_SOLDOUT")" -eq 0 -a "$SOLDOUT_ACCEPTED" -eq 0
expect "orders rows <= stock and items.sold <= stock for every item" test "$OVERSOLD_DB" -eq 0
expect "items.sold == active rows for every item ($SOLD_MISMATCH items differ)" test "$SOLD_MISMATCH" -eq 0
expect "no user over the per-user limit ($OVER_LIMIT users)" test "$OVER_LIMIT" -eq 0
expect "every reserved order drained into MySQL within 60s" test "$DRAIN_OK" = yes
expect "mixed: same order_id for every click of one key" test "$(k6v mixed .idempotency_mismatch)" -eq 0
expect "mixed: another user's key never buys" test "$(k6v mixed .foreign_key_accepted)" -eq 0
expect "wrk backlog: 202s wrk got <= MySQL rows <= that + connections ($BACKLOG_ACCEPTED, $(rows_of "$ITEM_BACKLOG"))" \
  awk -v a="$BACKLOG_ACCEPTED" -v r="$(rows_of "$ITEM_BACKLOG")" -v c="$WRK_CONNS" 'BEGIN { exit !(a <= r && r <= a + c) }'
ERRORS=$((MAX_ERRORS + $(wrkv backlog s5xx) + $(wrkv backlog net_errors) + $(k6v purchase .errors) + $(k6v mixed .errors) + $(k6v soldout .errors) +
  $(wrkv purchase s5xx) + $(wrkv purchase net_errors) + $(soldout_sum s5xx) + $(soldout_sum net_errors)))
expect "no 5xx or network errors ($ERRORS)" test "$ERRORS" -eq 0
expect "product page: every view 200 ($PAGE_ERRORS others)" test "$PAGE_ERRORS" -eq 0
wholesale_k6_check

# ---------------------------------------------------------------- table
fmt0() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }
fmt2() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }
RATIO=$(awk -v a="$(wrkv soldout rps)" -v b="$(wrkv ceiling rps)" 'BEGIN { printf "%.2f", a / b }')
WRK_ACC_RATE=$(awk -v n="$WRK_ACCEPTED" -v d="$(wrkv purchase duration_s)" 'BEGIN { printf "%.0f", n / d }')
RATIO_OK=$(awk -v r="$RATIO" 'BEGIN { print (r >= 0.9 ? "met" : "MISSED") }')
PURCHASE_OK=$(awk -v a="$WRK_ACC_RATE" -v p="$(wrkv purchase p99_ms)" 'BEGIN { print (a >= 10000 && p <= 20 ? "met" : "MISSED") }')
row() { printf '%-31s %10s %8s %8s %7s %7s %7s %6s  %s\n' "$@"; }
k6_row() { # k6_row SCRIPT LABEL
  row "$2" "$(k6v "$1" .offered_rate) it/s" "$(fmt0 "$(k6v "$1" .qps)")" "$(fmt0 "$(k6v "$1" .accepted_per_s)")" \
    "$(fmt2 "$(k6v "$1" .purchase_ms.p50)")" "$(fmt2 "$(k6v "$1" .purchase_ms.p95)")" "$(fmt2 "$(k6v "$1" .purchase_ms.p99)")" \
    "$(k6v "$1" .errors)" \
    "$(k6v "$1" '(if .thresholds_ok then "thresholds ok" else "thresholds FAILED" end) + ", dropped \(.dropped_iterations)"')"
}
wrk_row() { # wrk_row NAME LABEL OFFERED ACCEPTED/S NOTE
  row "$2" "$3" "$(fmt0 "$(wrkv "$1" rps)")" "$4" \
    "$(fmt2 "$(wrkv "$1" p50_ms)")" "$(fmt2 "$(wrkv "$1" p95_ms)")" "$(fmt2 "$(wrkv "$1" p99_ms)")" \
    "$(($(wrkv "$1" s5xx) + $(wrkv "$1" net_errors)))" "$5"
}
kv() { printf '%-47s %s\n' "$@"; }
LINE=$(printf '%.0s-' $(seq 1 120))
{
  echo
  echo "$LINE"
  printf 'seckill bench %s | %s cores, load avg before %s | GOMAXPROCS server=%s k6=%s | wrk -t%s -c%s -d%ss | k6 %ss each\n' \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$LOAD_BEFORE" "$SERVER_GOMAXPROCS" "$LOADGEN_GOMAXPROCS" \
    "$WRK_THREADS" "$WRK_CONNS" "$WRK_DURATION" "$BENCH_K6_DURATION"
  echo "$LINE"
  row scenario offered 'req/s' 'accept/s' 'p50 ms' 'p95 ms' 'p99 ms' errors note
  k6_row purchase "k6 purchase (token + buy)"
  k6_row mixed "k6 mixed (2-click/retry/403)"
  k6_row soldout "k6 sold-out"
  wrk_row purchase "wrk purchase (paced)" "$WRK_PURCHASE_RATE r/s" "$WRK_ACC_RATE" "$WRK_ACCEPTED accepted"
  wrk_row soldout "wrk sold-out" max - "$(wrkv soldout sold_out) sold_out answers"
  wrk_row ceiling "wrk bare-Gin ceiling" max - "same wrk settings"
  wrk_row page "wrk product page" max - "median of $PAGE_ROUNDS rounds"
  wrk_row pageceil "wrk bare-Gin (page rounds)" max - "the rounds between"
  echo "$LINE"
  kv "orders drained/s, k6 purchase phase" "$DRAIN_K6_RATE/s (all in MySQL ${DRAIN_K6_LAG}s after the load ended)"
  kv "orders drained/s, wrk purchase phase" "$DRAIN_WRK_RATE/s (all in MySQL ${DRAIN_WRK_LAG}s after the load ended)"
  kv "sold-out QPS / bare-Gin QPS (wrk)" "$RATIO = $(fmt0 "$(wrkv soldout rps)") / $(fmt0 "$(wrkv ceiling rps)") (median of $ROUNDS alternating rounds: $ROUND_RATIOS)  target >= 0.90: $RATIO_OK"
  kv "purchase: accepted/s, p99 at $WRK_PURCHASE_RATE r/s offered" \
    "$WRK_ACC_RATE/s, p99 $(fmt2 "$(wrkv purchase p99_ms)") ms   target >= 10000/s, p99 <= 20 ms: $PURCHASE_OK"
  for c in "${MAX_CONN_LIST[@]}"; do
    kv "max accepted purchases/s (unpaced)" "$(max_summary "$c")"
  done
  kv "orders drained/s after a MySQL backlog" "$DRAIN_BACKLOG_RATE/s ($BACKLOG_ACCEPTED orders waited ${BACKLOG_SECONDS}s+ behind a locked orders table; all in MySQL ${DRAIN_BACKLOG_LAG}s after its release)"
  kv "seckill RSS at $WRK_PURCHASE_RATE r/s offered" "max $((RSS_MAX_KB / 1024)) MB (before the phase $((RSS_BEFORE_KB / 1024)) MB; peak of the whole run $(awk '/^VmHWM:/ { printf "%d", $2 / 1024 }' "/proc/$SERVER_PID/status") MB)"
  kv "CPU per accepted order (wrk phase + drain)" "$(cpu_per buy0 buy1 "$WRK_ACCEPTED")"
  kv "requests per accepted order (wrk phase + drain)" "$(calls_per buy0 buy1 "$WRK_ACCEPTED")"
  kv "CPU per purchase token issued (prep)" "$(cpu_per tok0 tok1 "$WRK_USERS") (each with a JWT not seen before)"
  kv "CPU per token issued / per hello (wrk)" "$(awk -v a="$TOKEN_TICKS" -v n="$TOKEN_N" -v c="$TOKCEIL_TICKS" -v m="$TOKCEIL_REQS" -v t="$CLK_TCK" -v r="$ROUNDS" 'BEGIN {
    x = (n > 0 ? a / t * 1e6 / n : 0); y = (m > 0 ? c / t * 1e6 / m : 0)
    printf "%.1f us / %.1f us = %.2f (all processes, JWT seen before, %d rounds)  target <= 1.3: %s", x, y, (y > 0 ? x / y : 0), r, (y > 0 && x / y <= 1.3 ? "met" : "MISSED") }')"
  kv "Redis keys of the tokens issued (wrk)" "$TOKEN_KEYS for $TOKEN_N tokens (target 0)"
  kv "product page QPS / bare-Gin QPS (wrk)" "$PAGE_RATIO = $(fmt0 "$(wrkv page rps)") / $(fmt0 "$(wrkv pageceil rps)") (median of $PAGE_ROUNDS alternating rounds: $PAGE_ROUND_RATIOS)  target >= 0.85: $PAGE_OK"
  kv "CPU per product page view (median round)" "$(cpu_per "pg${PAGE_MEDIAN_ROUND}a" "pg${PAGE_MEDIAN_ROUND}b" "$(wrkv page requests)")"
  kv "requests per product page view (median round)" "$(calls_per "pg${PAGE_MEDIAN_ROUND}a" "pg${PAGE_MEDIAN_ROUND}b" "$(wrkv page requests)")"
  kv "CPU per sold-out answer (median round)" "$(cpu_per "so${MEDIAN_ROUND}a" "so${MEDIAN_ROUND}b" "$(wrkv soldout sold_out)")"
  kv "sold-out QPS / hello QPS with its headers" "$HDR_RATIO (median of $ROUNDS rounds: $(echo $HDR_RATIOS); the same hello carrying a sold-out purchase's Authorization and Idempotency-Key: the ceiling for requests of that size)"
  kv "CPU per hello with a purchase's headers" "$(awk -v d="$CEILHDR_TICKS" -v n="$CEILHDR_REQS" -v t="$CLK_TCK" 'BEGIN { printf "%.1f us", (n > 0 ? d / t * 1e6 / n : 0) }')"
  kv "CPU per bare-Gin hello (every ceiling round)" "$(awk -v d="$CEIL_TICKS" -v n="$CEIL_REQS" -v t="$CLK_TCK" 'BEGIN { printf "%.1f us (the floor of any HTTP answer here)", (n > 0 ? d / t * 1e6 / n : 0) }')"
  wholesale_table
  kv "oversold (MySQL rows or items.sold > stock)" "$OVERSOLD_DB"
  kv "oversold (seckill_oversold metric)" "$OVERSOLD_METRIC"
  kv "MySQL stock-guard refusals" "$GUARD_REFUSALS"
  kv "orders in MySQL / purchase 202s incl. replays" "$ROWS / $PURCHASES_OK"
  if [[ ${#FAILS[@]} -eq 0 ]]; then
    kv "invariants" "OK: rows == reserved == accepted <= stock, no user twice, items.sold == rows, no 5xx"
  else
    for f in "${FAILS[@]}"; do kv "invariant FAILED" "$f"; done
  fi
  echo "$LINE"
}
log "done in $(($(date +%s) - STARTED))s"
[[ ${#FAILS[@]} -eq 0 ]]
