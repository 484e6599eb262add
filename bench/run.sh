#!/usr/bin/env bash
# Runs the benchmark suite S1–S6 (see BENCHMARKS.md) on this machine and
# rewrites the results table in BENCHMARKS.md.
#
# Each scenario gets a freshly started server, so that one scenario's
# garbage, rooms or RSS high-water mark cannot leak into the next. The server
# is pinned to one CPU and the generator to another, so that they do not
# steal each other's cycles and the server's CPU seconds mean one core's work.
#
# Environment knobs (all optional):
#   ADDR=127.0.0.1:3000    where the server listens (loopback only)
#   SERVER_CPU=0 CLIENT_CPU=1   CPUs for taskset
#   WARMUP=5s DURATION=20s  measurement timing of fanout and chat
#   ONLY="S1 S4"           run only these scenarios (label prefixes)
#   OUT=/tmp/olsbench-results.jsonl   where the JSON result lines go
#   NO_TABLE=1             do not touch BENCHMARKS.md
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
SERVER_BIN=/tmp/ols
BENCH_BIN=/tmp/olsbench
SERVER_LOG=/tmp/olsbench-server.log

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
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	PIN_SERVER=(taskset -c "$SERVER_CPU")
	PIN_CLIENT=(taskset -c "$CLIENT_CPU")
else
	echo "run.sh: warning: fewer than 2 CPUs or no taskset; server and generator are not pinned" >&2
fi

# Both the server and the generator need one descriptor per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SERVER_PID=
start_server() {
	"${PIN_SERVER[@]}" "$SERVER_BIN" -addr "$ADDR" -log-level warn >>"$SERVER_LOG" 2>&1 &
	SERVER_PID=$!
	local host=${ADDR%:*} port=${ADDR##*:}
	for _ in $(seq 1 100); do # at most 10 s
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			echo "run.sh: server exited at start-up; see $SERVER_LOG" >&2
			exit 1
		fi
		if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "run.sh: server not listening on $ADDR after 10 s" >&2
	exit 1
}

stop_server() {
	[ -n "$SERVER_PID" ] || return 0
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 1 100); do # at most 10 s for a graceful stop
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
}
trap stop_server EXIT

wanted() {
	[ -z "$ONLY" ] && return 0
	local l
	for l in $ONLY; do
		case "$1" in "$l"*) return 0 ;; esac
	done
	return 1
}

# run LABEL EXPECT OLSBENCH-ARGS...: one scenario against a fresh server.
run() {
	local label=$1 expect=$2
	shift 2
	wanted "$label" || return 0
	echo "run.sh: === $label: $*" >&2
	start_server
	local args=(-url "$URL" -server-pid "$SERVER_PID" -label "$label")
	[ -n "$expect" ] && args+=(-expect "$expect")
	local code=0
	"${PIN_CLIENT[@]}" "$BENCH_BIN" "${args[@]}" "$@" >>"$OUT" || code=$?
	case $code in
	0) ;;
	3) echo "run.sh: $label missed a target" >&2 ;;
	*) echo "run.sh: $label failed (exit $code)" >&2 ;;
	esac
	stop_server
}

: >"$OUT"
T=(-warmup "$WARMUP" -duration "$DURATION")

run S1 "loss<=0,deliveries_per_server_cpu_s>=120000" \
	-scenario fanout -rooms 200 -clients 5 -interval 100ms "${T[@]}"
run S2 "loss<=0,latency_p99_ms<=50,deliveries_per_server_cpu_s>=1000000" \
	-scenario fanout -rooms 1 -clients 500 -interval 1s "${T[@]}"
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

echo "run.sh: results in $OUT" >&2
[ -n "${NO_TABLE:-}" ] && exit 0

# Rewrite the table between the markers of BENCHMARKS.md.
DOC=$ROOT/BENCHMARKS.md
if ! grep -q '<!-- results:start -->' "$DOC" || ! grep -q '<!-- results:end -->' "$DOC"; then
	echo "run.sh: $DOC lacks the results markers; table not written" >&2
	exit 1
fi
TABLE=$(mktemp)
trap 'rm -f "$TABLE"; stop_server' EXIT
{
	model=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
	mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo 2>/dev/null)
	echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on ${model:-unknown CPU}, $(nproc) CPUs, ${mem:-? GiB} RAM," \
		"$(go env GOVERSION); server on CPU $SERVER_CPU, generator on CPU $CLIENT_CPU; warm-up $WARMUP, window $DURATION."
	echo
	"$BENCH_BIN" -report "$OUT"
} >"$TABLE"
awk -v table="$TABLE" '
	/<!-- results:start -->/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
	/<!-- results:end -->/ { skip = 0 }
	!skip { print }
' "$DOC" >"$DOC.tmp"
mv "$DOC.tmp" "$DOC"
echo "run.sh: table written to $DOC" >&2
