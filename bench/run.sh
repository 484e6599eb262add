#!/usr/bin/env bash
# Runs the benchmark suite S1–S6, the cluster runs C1–C3 and the document
# runs D1 (against our /yjs and the Node y-websocket server) and D2
# (compaction) (see BENCHMARKS.md) on this machine and rewrites the results
# tables in BENCHMARKS.md.
#
# Each scenario gets a freshly started server, so that one scenario's
# garbage, rooms or RSS high-water mark cannot leak into the next. The server
# is pinned to one CPU and the generator to another, so that they do not
# steal each other's cycles and the server's CPU seconds mean one core's work.
#
# A cluster run starts its own Redis (C1, C2) or three-master Redis Cluster
# (C3) in a temporary directory, without persistence, on free ports of its
# own (never the shared 6379 or 7000–7002), and three nodes sharing it; all
# of it is stopped when the run ends, and whatever is left when the script
# exits. The nodes are pinned to the server's CPU, as the one server is, and
# Redis to REDIS_CPU.
#
# Environment knobs (all optional):
#   ADDR=127.0.0.1:3000    where the server listens (loopback only)
#   SERVER_CPU=0 CLIENT_CPU=1   CPUs for taskset
#   REDIS_CPU=$CLIENT_CPU  CPU for Redis in the cluster runs
#   NODE_PORT=3101 REDIS_PORT=6390 CLUSTER_PORT=7100
#                          where the search for free ports starts: the
#                          nodes, one Redis, the Redis Cluster's masters
#   NODES=3 SHARDS=3       nodes of a cluster run, masters of C3 (at least 3:
#                          redis-cli --cluster create wants 3); other values
#                          are for exploring, the table's runs use 3 and 3
#   WARMUP=5s DURATION=20s  measurement timing of fanout and chat
#   ONLY="S1 S4"           run only these scenarios (label prefixes)
#   OUT=/tmp/olsbench-results.jsonl   where the JSON result lines go
#   NO_TABLE=1             do not touch BENCHMARKS.md
#   BIN_DIR=/tmp           where the server and olsbench binaries are built
#   D1_ROUNDS=1 D2_NODE_TIMEOUT=120   see D1 and D2 below
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ADDR=${ADDR:-127.0.0.1:3000}
URL="ws://$ADDR/live"
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
WARMUP=${WARMUP:-5s}
DURATION=${DURATION:-20s}
ONLY=${ONLY:-}
OUT=${OUT:-/tmp/olsbench-results.jsonl}
# The binaries are built here; BIN_DIR keeps runs from two checkouts at
# once from overwriting each other's.
BIN_DIR=${BIN_DIR:-/tmp}
SERVER_BIN=$BIN_DIR/ols
BENCH_BIN=$BIN_DIR/olsbench
SERVER_LOG=/tmp/olsbench-server.log
NODE_LOG=/tmp/olsbench-nodes.log
REDIS_LOG=/tmp/olsbench-redis.log
REDIS_CPU=${REDIS_CPU:-$CLIENT_CPU}
NODE_PORT=${NODE_PORT:-3101}
REDIS_PORT=${REDIS_PORT:-6390}
CLUSTER_PORT=${CLUSTER_PORT:-7100}
NODES=${NODES:-3}
SHARDS=${SHARDS:-3}

case "${ADDR%:*}" in
127.*) ;;
*)
	echo "run.sh: ADDR must be a 127.x.x.x address, got $ADDR" >&2
	exit 2
	;;
esac

echo "run.sh: building server and generator" >&2
go build -o "$SERVER_BIN" ./cmd/openlivesync
go build -o "$BENCH_BIN" ./cmd/olsbench

# Pin only when there are two CPUs to pin to.
PIN_SERVER=()
PIN_CLIENT=()
PIN_REDIS=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	PIN_SERVER=(taskset -c "$SERVER_CPU")
	PIN_CLIENT=(taskset -c "$CLIENT_CPU")
	PIN_REDIS=(taskset -c "$REDIS_CPU")
else
	echo "run.sh: warning: fewer than 2 CPUs or no taskset; server and generator are not pinned" >&2
fi

# Both the server and the generator need one descriptor per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# await_listen PID ADDR LOG WHAT: wait until PID listens on ADDR.
await_listen() {
	local pid=$1 addr=$2 log=$3 what=$4
	local host=${addr%:*} port=${addr##*:}
	for _ in $(seq 1 100); do # at most 10 s
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "run.sh: $what exited at start-up; see $log" >&2
			exit 1
		fi
		if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "run.sh: $what not listening on $addr after 10 s" >&2
	exit 1
}

# stop_pids PID...: SIGTERM, at most 10 s for a graceful stop, then SIGKILL.
stop_pids() {
	local pid
	[ $# -gt 0 ] || return 0
	kill -TERM "$@" 2>/dev/null || true
	for _ in $(seq 1 100); do
		local alive=0
		for pid in "$@"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ $alive = 1 ] || break
		sleep 0.1
	done
	kill -KILL "$@" 2>/dev/null || true
	for pid in "$@"; do
		wait "$pid" 2>/dev/null || true
	done
}

SERVER_PID=
start_server() {
	"${PIN_SERVER[@]}" "$SERVER_BIN" -addr "$ADDR" -log-level warn >>"$SERVER_LOG" 2>&1 &
	SERVER_PID=$!
	await_listen "$SERVER_PID" "$ADDR" "$SERVER_LOG" server
}

stop_server() {
	[ -n "$SERVER_PID" ] || return 0
	stop_pids "$SERVER_PID"
	SERVER_PID=
}

# Ports the shared services of this machine use (the developers' Redis and
# the Redis Cluster the tests use, with its bus ports), and the single
# server's: never handed out, even when free at the moment. RESERVED_PORTS
# adds the ports of the cluster run under way.
SHARED_PORTS=" 6379 7000 7001 7002 16379 17000 17001 17002 ${ADDR##*:} "
RESERVED_PORTS=$SHARED_PORTS

# port_free PORT: nothing listens on 127.0.0.1:PORT, and it is not reserved.
port_free() {
	case $RESERVED_PORTS in *" $1 "*) return 1 ;; esac
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_ports FROM N [BUS]: N free ports from FROM up, one per line; with BUS,
# port+10000 (a Redis Cluster node's bus) must be free too. It runs in a
# subshell, so the caller checks it got N and reserves them (reserve).
free_ports() {
	local p=$1 n=$2 bus=${3:-} found=0
	while [ $found -lt "$n" ] && [ "$p" -lt 55000 ]; do
		if port_free "$p" && { [ -z "$bus" ] || port_free $((p + 10000)); }; then
			echo "$p"
			found=$((found + 1))
		fi
		p=$((p + 1))
	done
}

# reserve WHAT N PORT...: exit unless N ports were found; else reserve them.
reserve() {
	local what=$1 n=$2
	shift 2
	if [ $# -ne "$n" ]; then
		echo "run.sh: found $# free ports of the $n for $what" >&2
		exit 1
	fi
	RESERVED_PORTS+="$* "
}

# The cluster runs' processes, and the temporary directory of Redis.
NODE_PIDS=()
NODE_URLS=()
REDIS_PIDS=()
REDIS_URL=
REDIS_DIR=

# start_redis_process PORT [ARGS...]: one redis-server, no persistence.
start_redis_process() {
	local port=$1
	shift
	"${PIN_REDIS[@]}" redis-server --port "$port" --bind 127.0.0.1 --dir "$REDIS_DIR" \
		--save "" --appendonly no --daemonize no --logfile "" "$@" >>"$REDIS_LOG" 2>&1 &
	REDIS_PIDS+=($!)
	await_listen $! "127.0.0.1:$port" "$REDIS_LOG" "redis-server on port $port"
}

# start_redis MODE: a fresh Redis (MODE single) or Redis Cluster of $SHARDS
# masters (MODE cluster); sets REDIS_URL and REDIS_PIDS.
start_redis() {
	REDIS_DIR=$(mktemp -d /tmp/olsbench-redis.XXXXXX)
	local ports=() p seeds=()
	if [ "$1" = single ]; then
		mapfile -t ports < <(free_ports "$REDIS_PORT" 1)
		reserve Redis 1 "${ports[@]}"
		start_redis_process "${ports[0]}"
		REDIS_URL="redis://127.0.0.1:${ports[0]}/0"
		return 0
	fi
	mapfile -t ports < <(free_ports "$CLUSTER_PORT" "$SHARDS" bus)
	reserve "the Redis Cluster" "$SHARDS" "${ports[@]}"
	for p in "${ports[@]}"; do
		start_redis_process "$p" --cluster-enabled yes --cluster-config-file "nodes-$p.conf"
		seeds+=("127.0.0.1:$p")
	done
	if ! redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >>"$REDIS_LOG" 2>&1; then
		echo "run.sh: redis-cli --cluster create failed; see $REDIS_LOG" >&2
		exit 1
	fi
	for _ in $(seq 1 200); do # at most 20 s
		local ok=0
		for p in "${ports[@]}"; do
			redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && ok=$((ok + 1))
		done
		if [ $ok -eq "$SHARDS" ]; then
			REDIS_URL="redis://${seeds[0]}?addr=${seeds[1]}"
			for p in "${seeds[@]:2}"; do
				REDIS_URL+="&addr=$p"
			done
			return 0
		fi
		sleep 0.1
	done
	echo "run.sh: Redis Cluster on ${ports[*]} not ok after 20 s; see $REDIS_LOG" >&2
	exit 1
}

# start_nodes: $NODES servers sharing $REDIS_URL; sets NODE_PIDS, NODE_URLS.
start_nodes() {
	local ports=() p
	mapfile -t ports < <(free_ports "$NODE_PORT" "$NODES")
	reserve nodes "$NODES" "${ports[@]}"
	for p in "${ports[@]}"; do
		"${PIN_SERVER[@]}" "$SERVER_BIN" -addr "127.0.0.1:$p" -redis "$REDIS_URL" -log-level warn >>"$NODE_LOG" 2>&1 &
		NODE_PIDS+=($!)
		NODE_URLS+=("ws://127.0.0.1:$p/live")
		await_listen $! "127.0.0.1:$p" "$NODE_LOG" "node on port $p"
	done
	# Listening is not yet ready: wait until every node reaches Redis.
	for p in "${ports[@]}"; do
		for _ in $(seq 1 100); do # at most 10 s
			curl -fs -o /dev/null "http://127.0.0.1:$p/readyz" && continue 2
			sleep 0.1
		done
		echo "run.sh: node on port $p not ready after 10 s; see $NODE_LOG" >&2
		exit 1
	done
}

stop_cluster() {
	stop_pids "${NODE_PIDS[@]}"
	stop_pids "${REDIS_PIDS[@]}"
	NODE_PIDS=() NODE_URLS=() REDIS_PIDS=() REDIS_URL=
	if [ -n "$REDIS_DIR" ]; then
		rm -rf "$REDIS_DIR"
		REDIS_DIR=
	fi
	RESERVED_PORTS=$SHARED_PORTS
}

TMPFILES=()
cleanup() {
	stop_server
	stop_cluster
	[ ${#TMPFILES[@]} -eq 0 ] || rm -f "${TMPFILES[@]}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wanted() {
	[ -z "$ONLY" ] && return 0
	local l
	for l in $ONLY; do
		case "$1" in "$l"*) return 0 ;; esac
	done
	return 1
}

# bench LABEL EXPECT OLSBENCH-ARGS...: runs olsbench, its result line
# appended to $OUT, and says when it missed a target or failed.
bench() {
	local label=$1 expect=$2
	shift 2
	[ -n "$expect" ] && set -- "$@" -expect "$expect"
	local code=0
	"${PIN_CLIENT[@]}" "$BENCH_BIN" "$@" >>"$OUT" || code=$?
	case $code in
	0) ;;
	3) echo "run.sh: $label missed a target" >&2 ;;
	*) echo "run.sh: $label failed (exit $code)" >&2 ;;
	esac
}

# run LABEL EXPECT OLSBENCH-ARGS...: one scenario against a fresh server.
run() {
	local label=$1 expect=$2
	shift 2
	wanted "$label" || return 0
	echo "run.sh: === $label: $*" >&2
	start_server
	local args=(-url "$URL" -server-pid "$SERVER_PID" -label "$label")
	bench "$label" "$expect" "${args[@]}" "$@"
	stop_server
}

# join_by SEP WORD...: the words joined with SEP.
join_by() {
	local IFS=$1
	shift
	echo "$*"
}

# run_cluster LABEL MODE EXPECT OLSBENCH-ARGS...: one scenario over $NODES
# fresh nodes sharing a fresh Redis (MODE single) or Redis Cluster (MODE
# cluster), each room's members spread over the nodes by olsbench.
run_cluster() {
	local label=$1 mode=$2 expect=$3
	shift 3
	wanted "$label" || return 0
	local tool
	for tool in redis-server redis-cli curl; do
		if ! command -v "$tool" >/dev/null; then
			echo "run.sh: $label skipped: needs redis-server, redis-cli and curl; $tool is missing" >&2
			return 0
		fi
	done
	echo "run.sh: === $label ($NODES nodes, Redis $mode): $*" >&2
	start_redis "$mode"
	start_nodes
	local args=(-url "$(join_by , "${NODE_URLS[@]}")" -server-pid "$(join_by , "${NODE_PIDS[@]}")"
		-redis-pid "$(join_by , "${REDIS_PIDS[@]}")" -label "$label")
	bench "$label" "$expect" "${args[@]}" "$@"
	stop_cluster
}

: >"$OUT"
T=(-warmup "$WARMUP" -duration "$DURATION")

S1_LOAD=(-scenario fanout -rooms 200 -clients 5 -interval 100ms "${T[@]}")
S2_LOAD=(-scenario fanout -rooms 1 -clients 500 -interval 1s "${T[@]}")
run S1 "loss<=0,deliveries_per_server_cpu_s>=120000" "${S1_LOAD[@]}"
run S2 "loss<=0,latency_p99_ms<=50,deliveries_per_server_cpu_s>=1000000" "${S2_LOAD[@]}"
run S3-1s "" -scenario fanout -rooms 20 -clients 50 -interval 1s "${T[@]}"
run S3-500ms "" -scenario fanout -rooms 20 -clients 50 -interval 500ms "${T[@]}"
run S3-200ms "" -scenario fanout -rooms 20 -clients 50 -interval 200ms "${T[@]}"
run S3-100ms "loss<0.001,latency_p99_ms<250,sent_fraction_of_nominal>=0.95" \
	-scenario fanout -rooms 20 -clients 50 -interval 100ms "${T[@]}"
run S4 "rss_per_conn_bytes<=6144" \
	-scenario idle -conns 10000 -room-size 10 -settle 10s
run S5-1000 "view_complete_s<=0.5" -scenario joinstorm -conns 1000 -inflight 50
run S5-5000 "view_complete_s<=3" -scenario joinstorm -conns 5000 -inflight 50
run S6 "latency_p99_ms<=5" \
	-scenario chat -clients 500 -rooms 50 -rate 2000 "${T[@]}"
# The targets relative to S1 and S2 (p99, deliveries per CPU-second) are in
# the cluster table, which sets each run beside its single-node twin.
run_cluster C1 single "loss<=0" "${S1_LOAD[@]}"
run_cluster C2 single "loss<=0,redis_cpu_ms_per_1k_deliveries<=0.5" "${S2_LOAD[@]}"
run_cluster C3 cluster "loss<=0,redis_cpu_max_min_ratio<=2" "${S1_LOAD[@]}"

# ---- D1 (documents) -------------------------------------------------------
# 50 editors typing into one Yjs document, against our /yjs endpoint (D1-ols)
# and the official Node server @y/websocket-server (D1-yws, pinned in
# bench/yws, documents in memory as ours are), each freshly started on a free
# loopback port and pinned like the server above. D1_ROUNDS=N repeats the
# pair, alternating which server goes first. The target "at least as many
# updates per server CPU-second as the Node server" compares two lines, so
# it is printed here rather than checked by -expect.
YWS_DIR=$ROOT/bench/yws
YWS_SERVER=$YWS_DIR/node_modules/@y/websocket-server/src/server.js

# d1_port prints a loopback port nothing listens on.
d1_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
	done
	return 1
}

# d1_run LABEL PORT EXPECT SERVER-COMMAND...: one D1 run against a server
# started with SERVER-COMMAND (which must exec into the server, so that
# its pid is the one /proc is read for) listening on PORT.
d1_run() {
	local label=$1 port=$2 expect=$3
	shift 3
	wanted "$label" || return 0
	echo "run.sh: === $label: ${D1_ARGS[*]}" >&2
	"$@" >>"$SERVER_LOG" 2>&1 &
	SERVER_PID=$!
	local up=
	for _ in $(seq 1 100); do # at most 10 s
		kill -0 "$SERVER_PID" 2>/dev/null || break
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			up=1
			break
		fi
		sleep 0.1
	done
	if [ -z "$up" ]; then
		echo "run.sh: $label: server not listening on port $port; see $SERVER_LOG" >&2
		stop_server
		return 0
	fi
	local args=(-url "ws://127.0.0.1:$port/yjs" -server-pid "$SERVER_PID" -label "$label")
	[ -n "$expect" ] && args+=(-expect "$expect")
	local code=0 line
	line=$("${PIN_CLIENT[@]}" "$BENCH_BIN" "${args[@]}" "${D1_ARGS[@]}") || code=$?
	echo "$line" >>"$OUT"
	case $code in
	0) ;;
	3) echo "run.sh: $label missed a target" >&2 ;;
	*) echo "run.sh: $label failed (exit $code)" >&2 ;;
	esac
	D1_PER_CPU[$label]=$(echo "$line" | grep -o '"deliveries_per_server_cpu_s":[0-9.]*' | cut -d: -f2)
	stop_server
}

if wanted D1-ols || wanted D1-yws; then
	if ! command -v node >/dev/null; then
		echo "run.sh: D1 skipped: node is not installed (the Node server runs on it)" >&2
	else
		if [ ! -f "$YWS_SERVER" ] && command -v npm >/dev/null; then
			echo "run.sh: installing bench/yws (npm ci)" >&2
			(cd "$YWS_DIR" && npm ci --no-audit --no-fund --loglevel=error) ||
				echo "run.sh: npm ci in bench/yws failed" >&2
		fi
		if [ ! -f "$YWS_SERVER" ]; then
			echo "run.sh: D1 skipped: bench/yws/node_modules is missing (run npm ci there)" >&2
		else
			D1_ARGS=(-scenario doc -clients 50 -interval 100ms "${T[@]}")
			declare -A D1_PER_CPU=()
			for round in $(seq 1 "${D1_ROUNDS:-1}"); do
				order="ols yws"
				[ $((round % 2)) -eq 0 ] && order="yws ols"
				for side in $order; do
					port=$(d1_port) || { echo "run.sh: D1: no free port" >&2; break; }
					case $side in
					ols) d1_run D1-ols "$port" "loss<=0,latency_p99_ms<=20" \
						"${PIN_SERVER[@]}" "$SERVER_BIN" -addr "127.0.0.1:$port" -log-level warn ;;
					yws) d1_run D1-yws "$port" "loss<=0" \
						env HOST=127.0.0.1 PORT="$port" "${PIN_SERVER[@]}" node "$YWS_SERVER" ;;
					esac
				done
			done
			ols=${D1_PER_CPU[D1-ols]:-} yws=${D1_PER_CPU[D1-yws]:-}
			if [ -n "$ols" ] && [ -n "$yws" ]; then
				verdict="met"
				awk -v a="$ols" -v b="$yws" 'BEGIN { exit !(a < b) }' && verdict="MISSED"
				echo "run.sh: D1 updates per server CPU-s: ours $ols, @y/websocket-server $yws (target ours >= Node: $verdict)" >&2
			fi
		fi
	fi
fi
# ---- end of D1 --------------------------------------------------------------

# ---- D2 (document compaction) -----------------------------------------------
# A document of 100,000 stored single-keystroke updates (typing, every
# fifth keystroke a backspace): the server compacts it in SQLite and a new
# peer opens it (BenchmarkDocD2), and the same history's merge and
# collection in package yupdate beside Yjs's own Y.mergeUpdates in Node
# (bench.mjs), on 20,000 of those updates and on all 100,000, which Node is
# given D2_NODE_TIMEOUT (default 120 s) to finish: a merge still running
# then is reported as slower than that.
if wanted D2; then
	echo "run.sh: === D2" >&2
	(cd "$ROOT" && "${PIN_SERVER[@]}" go test -run '^$' -bench 'BenchmarkDocD2$' -benchtime 3x . | grep '^Benchmark') >&2 || echo "run.sh: D2: BenchmarkDocD2 failed" >&2
	(cd "$ROOT" && "${PIN_SERVER[@]}" go test -run '^$' -bench '^Benchmark(Compact100kKeystrokes|Merge20kKeystrokes)$' -benchtime 5x ./yupdate | grep '^Benchmark') >&2 || echo "run.sh: D2: the yupdate benchmarks failed" >&2
	oracle=$ROOT/yupdate/testdata/oracle
	if ! command -v node >/dev/null || [ ! -d "$oracle/node_modules/yjs" ]; then
		echo "run.sh: D2: Yjs's figure skipped: node or $oracle/node_modules is missing (npm ci there)" >&2
	else
		"${PIN_SERVER[@]}" node "$oracle/bench.mjs" 20000 >&2
		timeout "${D2_NODE_TIMEOUT:-120}" "${PIN_SERVER[@]}" node "$oracle/bench.mjs" 100000 >&2 ||
			echo "run.sh: D2: Y.mergeUpdates of 100,000 updates did not finish within ${D2_NODE_TIMEOUT:-120} s" >&2
	fi
fi
# ---- end of D2 --------------------------------------------------------------

echo "run.sh: results in $OUT" >&2
[ -n "${NO_TABLE:-}" ] && exit 0

# splice NAME TABLE: replace what lies between <!-- NAME:start --> and
# <!-- NAME:end --> in BENCHMARKS.md with the file TABLE.
DOC=$ROOT/BENCHMARKS.md
splice() {
	local name=$1 table=$2
	if ! grep -q "<!-- $name:start -->" "$DOC" || ! grep -q "<!-- $name:end -->" "$DOC"; then
		echo "run.sh: $DOC lacks the $name markers; table not written" >&2
		exit 1
	fi
	awk -v table="$table" -v start="<!-- $name:start -->" -v end="<!-- $name:end -->" '
		index($0, start) { print; while ((getline line < table) > 0) print line; skip = 1; next }
		index($0, end) { skip = 0 }
		!skip { print }
	' "$DOC" >"$DOC.tmp"
	mv "$DOC.tmp" "$DOC"
	echo "run.sh: $name table written to $DOC" >&2
}

model=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo 2>/dev/null)
MACHINE="${model:-unknown CPU}, $(nproc) CPUs, ${mem:-? GiB} RAM, $(go env GOVERSION)"
TABLE=$(mktemp)
TMPFILES+=("$TABLE")
{
	echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $MACHINE;" \
		"server on CPU $SERVER_CPU, generator on CPU $CLIENT_CPU; warm-up $WARMUP, window $DURATION."
	echo
	"$BENCH_BIN" -report "$OUT"
} >"$TABLE"
splice results "$TABLE"

# The cluster table only when this run had a cluster run: a run of S4 alone
# leaves the last cluster comparison in place.
if grep -q '"redis_cpu_s"' "$OUT"; then
	{
		echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $MACHINE; the server and the $NODES nodes on CPU $SERVER_CPU," \
			"Redis on CPU $REDIS_CPU, generator on CPU $CLIENT_CPU; warm-up $WARMUP, window $DURATION."
		echo
		"$BENCH_BIN" -cluster-report "$OUT"
	} >"$TABLE"
	splice cluster "$TABLE"
fi
