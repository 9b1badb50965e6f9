#!/usr/bin/env bash
# make bench — issue 5's scenarios against the release binary, twice each.
#
# The server is pinned to CPU 0 and the load generator to CPU 1 with taskset
# (unpinned, and said so, when taskset or a second CPU is missing). Traffic
# stays on loopback (127.0.0.1 and the source addresses 127.0.0.2…); every
# run is bounded in time and stops by itself.
#
# Environment:
#   BENCH_RUNS=2          runs per scenario
#   BENCH_ONLY="S1 S3"    only these scenarios (S1 S2-100 S2-1000 S3 S4 S5 S6 S6-rst);
#                         a name before its "-" picks every variant (S6: S6 and S6-rst)
#                         C1 (a cluster of two nodes + Redis against one node) needs a
#                         redis-server on the PATH; without one it is skipped, never installed
#   BENCH_SERVER=path     server binary (default: the release build)
#   BENCH_NO_BUILD=1      skip the two cargo builds
#   BENCH_QUIET_PCT=30    before each run, wait until other processes use less
#   BENCH_QUIET_WAIT=120  than this % of a core (at most this many seconds)
#
# Output: a table of medians on stdout; every run's JSON line in
# target/bench/results.jsonl; logs of every run in target/bench/.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
RUNS=${BENCH_RUNS:-2}
ONLY=${BENCH_ONLY:-}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/target/bench
SERVER=${BENCH_SERVER:-$TARGET/release/ssehub}
LG_TARGET=$ROOT/benches/loadgen/target
LOADGEN=$LG_TARGET/release/loadgen

mkdir -p "$OUT"

if [ -z "${BENCH_NO_BUILD:-}" ]; then
    echo "== building the server (release)" >&2
    cargo build --release --bin ssehub || { echo "bench: the server does not build" >&2; exit 1; }
    echo "== building the load generator (release)" >&2
    cargo build --release --manifest-path benches/loadgen/Cargo.toml --target-dir "$LG_TARGET" \
        || { echo "bench: the load generator does not build" >&2; exit 1; }
fi
[ -x "$SERVER" ] || { echo "bench: no server binary at $SERVER" >&2; exit 1; }
[ -x "$LOADGEN" ] || { echo "bench: no load generator at $LOADGEN" >&2; exit 1; }

# Both processes may raise their open-file limit up to the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PIN_SERVER=()
PIN_LOADGEN=()
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ] && taskset -c 1 true 2>/dev/null; then
    PIN_SERVER=(taskset -c 0)
    PIN_LOADGEN=(taskset -c 1)
    PINNING="server on CPU 0, loadgen on CPU 1 (taskset)"
else
    PINNING="UNPINNED (taskset or a second CPU missing): server and loadgen share the CPUs"
    echo "bench: warning: $PINNING" >&2
fi

# name | server flags | loadgen flags
SCENARIOS=(
    "S1|--heartbeat 1|--streams 10000 --idle 10"
    "S2-100|--heartbeat 1|--streams 1000 --idle 1 --messages 2000 --rate 100"
    "S2-1000|--heartbeat 1|--streams 1000 --idle 1 --messages 2000 --rate 1000"
    "S3|--heartbeat 1|--streams 10000 --idle 1 --messages 200 --rate 100"
    "S4|--heartbeat 1|--streams 1000 --idle 1 --inflight 8 --duration 10"
    # S5, the reconnect storm: 10,000 streams in 10 rooms, 100 messages/s over
    # the rooms; after 3 s the server (with --journal) gets SIGTERM, and once
    # it is gone the load generator starts it again (same flags, port and
    # journal). Every stream reconnects after its retry: with Last-Event-ID.
    # --history 1000 keeps every message of the down time for the replay.
    "S5|--heartbeat 1 --history 1000|--streams 10000 --rooms 10 --idle 1 --messages 100000 --rate 100 --restart-after 3"
    # S6: 10,000 streams of one room close in one burst; the server's CPU until
    # /healthz counts 0 streams. Heartbeats off, so none falls in that window.
    # S6 closes gracefully (FIN), S6-rst abortively (RST: less kernel work per
    # close, so the server's own share shows more).
    "S6|--heartbeat 0|--streams 10000 --idle 1 --close-all"
    "S6-rst|--heartbeat 0|--streams 10000 --idle 1 --close-all --close-reset"
)

RESULTS=$OUT/results.jsonl
: > "$RESULTS"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo none)
if ! git diff --quiet HEAD -- src Cargo.toml 2>/dev/null; then COMMIT="$COMMIT+dirty"; fi
STAMP=$(date -u +%Y-%m-%dT%H:%M:%SZ)
FAILED=0

# Busy % of one core over one second, the whole machine.
machine_busy_pct() {
    local a b
    read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat
    sleep 1
    read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat
    a=$(( (u2+n2+s2+q2+sq2+st2) - (u1+n1+s1+q1+sq1+st1) ))
    b=$(( (u2+n2+s2+i2+w2+q2+sq2+st2) - (u1+n1+s1+i1+w1+q1+sq1+st1) ))
    [ "$b" -gt 0 ] || { echo 0; return; }
    echo $(( a * 100 * $(nproc) / b ))
}

# The machine is shared: wait (boundedly) for the neighbours to calm down.
wait_quiet() {
    local limit=${BENCH_QUIET_PCT:-30} waited=0 max=${BENCH_QUIET_WAIT:-120} busy
    while :; do
        busy=$(machine_busy_pct)
        [ "$busy" -le "$limit" ] && return 0
        if [ "$waited" -ge "$max" ]; then
            echo "bench: machine still busy (${busy}% of a core used by others) after ${max}s; running anyway" >&2
            return 0
        fi
        [ "$waited" -eq 0 ] && echo "bench: machine busy (${busy}% of a core used by others); waiting up to ${max}s" >&2
        sleep 2
        waited=$((waited + 3))
    done
}

# Whether process $1 has exited (no such process, or a zombie).
is_gone() {
    ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

stop_server() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.1
    done
    echo "bench: server $pid did not stop on SIGTERM in 5 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

for run in $(seq 1 "$RUNS"); do
    for spec in "${SCENARIOS[@]}"; do
        IFS='|' read -r name sflags lflags <<<"$spec"
        if [ -n "$ONLY" ] && ! [[ " $ONLY " == *" $name "* || " $ONLY " == *" ${name%%-*} "* ]]; then
            continue
        fi
        wait_quiet
        port=$("$LOADGEN" free-port) || { echo "bench: no free port" >&2; exit 1; }
        log=$OUT/$name-run$run
        storm=
        [[ $name == S5* ]] && storm=1
        # shellcheck disable=SC2206
        srv_cmd=("${PIN_SERVER[@]}" "$SERVER" --bind "127.0.0.1:$port" --log-level warn --history 100
            --max-clients 20000 $sflags)
        restart=()
        if [ -n "$storm" ]; then
            # A fresh journal; the load generator restarts the server with it.
            rm -f "$log.journal"
            srv_cmd+=(--journal "$log.journal")
            restart=(--restart-log "$log.server2.log" -- "${srv_cmd[@]}")
        fi
        "${srv_cmd[@]}" 2>"$log.server.log" >/dev/null &
        spid=$!
        echo "== $name run $run: server pid $spid on 127.0.0.1:$port" >&2
        # shellcheck disable=SC2086
        timeout -k 5 180 "${PIN_LOADGEN[@]}" "$LOADGEN" --server "127.0.0.1:$port" --pid "$spid" \
            --scenario "$name" --deadline 150 $lflags "${restart[@]}" >"$log.out" 2>"$log.err"
        rc=$?
        alive=yes
        extra=
        if [ -n "$storm" ]; then
            # The load generator stopped this server (SIGTERM) and started and
            # stopped the second one itself; each must have exited by now.
            if is_gone "$spid"; then
                wait "$spid"
                first_rc=$?
            else
                echo "bench: $name run $run: the first server is still running after the storm" >&2
                stop_server "$spid"
                first_rc=-1
            fi
            extra=",\"first_server_exit\":$first_rc"
            if [ "$first_rc" -ne 0 ]; then
                echo "bench: $name run $run: the first server's exit status after SIGTERM: $first_rc" >&2
                FAILED=1
            fi
            npid=$(sed -n 's/.*restarted the server: pid \([0-9]*\).*/\1/p' "$log.err" | tail -1)
            if [ -n "$npid" ] && ! is_gone "$npid"; then
                echo "bench: $name run $run: the restarted server $npid is still running; stopping it" >&2
                stop_server "$npid"
            fi
            grep -q '"new_server_alive_at_end":true' "$log.out" || alive=no
        else
            kill -0 "$spid" 2>/dev/null || alive=no
            stop_server "$spid"
        fi
        cat "$log.out" >&2
        [ -s "$log.err" ] && sed 's/^/  loadgen: /' "$log.err" | head -20 >&2
        if [ "$alive" = no ]; then
            echo "bench: $name run $run: THE SERVER EXITED during the run (see $log.server.log)" >&2
            FAILED=1
        fi
        if [ "$rc" -ne 0 ]; then
            echo "bench: $name run $run: loadgen exit status $rc" >&2
            FAILED=1
        fi
        line=$(grep '^{' "$log.out" | tail -1)
        if [ -n "$line" ]; then
            # Add the run's context to its JSON line.
            echo "${line%\}}$extra,\"run\":$run,\"commit\":\"$COMMIT\",\"date\":\"$STAMP\",\"pinned\":$([ ${#PIN_SERVER[@]} -gt 0 ] && echo true || echo false),\"server_alive\":$([ $alive = yes ] && echo true || echo false)}" >>"$RESULTS"
        fi
    done
done

# C1 — a cluster of two nodes against one node, in the same run. A fresh
# redis-server (no persistence, its own temp dir), two nodes on it and one
# node without Redis, all pinned like the server above; each variant runs
# against the two nodes (streams split over them, publishes alternating),
# then against the single node (rows NAME-single). Every process started
# here is stopped by its PID.
# name | loadgen cluster flags (the server flags are those of S2)
C1_SCENARIOS=(
    "C1-100|--streams 1000 --messages 2000 --rate 100"
    "C1-1000|--streams 1000 --messages 2000 --rate 1000"
    # Fewer streams, same rate: what Redis adds per message should not shrink.
    "C1-1000-100st|--streams 100 --messages 2000 --rate 1000"
)
C1_PIDS=()
C1_TMP=
c1_cleanup() {
    local pid
    # The nodes first (each leaves its presence), Redis last.
    for pid in "${C1_PIDS[@]}"; do stop_server "$pid"; done
    C1_PIDS=()
    [ -n "$C1_TMP" ] && rm -rf "$C1_TMP"
    C1_TMP=
}
c1_selected() {
    [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* || " $ONLY " == *" ${1%%-*} "* ]]
}
# Appends a run's JSON line (the last one in $1) to $RESULTS with its context.
c1_record() {
    local line
    line=$(grep '^{' "$1" | tail -1)
    [ -n "$line" ] || return 0
    echo "${line%\}},\"run\":$2,\"commit\":\"$COMMIT\",\"date\":\"$STAMP\",\"pinned\":$([ ${#PIN_SERVER[@]} -gt 0 ] && echo true || echo false),\"server_alive\":$3}" >>"$RESULTS"
}
# Distinct free ports, one per argument name.
c1_ports() {
    local p tries=0
    C1_PORTS=()
    while [ ${#C1_PORTS[@]} -lt "$1" ] && [ $tries -lt 50 ]; do
        tries=$((tries + 1))
        p=$("$LOADGEN" free-port) || continue
        [[ " ${C1_PORTS[*]} " == *" $p "* ]] || C1_PORTS+=("$p")
    done
    [ ${#C1_PORTS[@]} -eq "$1" ]
}
c1_run() {
    local run=$1 rport pa pb ps rpid apid bpid spid spec name lflags v log rc alive i
    C1_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ssehub-c1.XXXXXX") || return 1
    c1_ports 4 || { echo "bench: C1: no free ports" >&2; return 1; }
    rport=${C1_PORTS[0]} pa=${C1_PORTS[1]} pb=${C1_PORTS[2]} ps=${C1_PORTS[3]}
    log=$OUT/C1-run$run
    "${PIN_SERVER[@]}" redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no \
        --dir "$C1_TMP" --daemonize no --logfile "$log.redis.log" >/dev/null 2>&1 &
    rpid=$!
    C1_PIDS=("$rpid")
    for i in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break
        sleep 0.1
    done
    if ! kill -0 "$rpid" 2>/dev/null; then
        echo "bench: C1 run $run: redis-server did not start (see $log.redis.log)" >&2
        C1_PIDS=()
        return 1
    fi
    # shellcheck disable=SC2086
    "${PIN_SERVER[@]}" "$SERVER" --bind "127.0.0.1:$pa" --log-level warn --history 100 --max-clients 20000 \
        --heartbeat 1 --redis "redis://127.0.0.1:$rport" --redis-prefix "bench-$$" 2>"$log.node-a.log" >/dev/null &
    apid=$!
    "${PIN_SERVER[@]}" "$SERVER" --bind "127.0.0.1:$pb" --log-level warn --history 100 --max-clients 20000 \
        --heartbeat 1 --redis "redis://127.0.0.1:$rport" --redis-prefix "bench-$$" 2>"$log.node-b.log" >/dev/null &
    bpid=$!
    "${PIN_SERVER[@]}" "$SERVER" --bind "127.0.0.1:$ps" --log-level warn --history 100 --max-clients 20000 \
        --heartbeat 1 2>"$log.single.log" >/dev/null &
    spid=$!
    C1_PIDS=("$apid" "$bpid" "$spid" "$rpid")
    echo "== C1 run $run: redis pid $rpid on :$rport, node A pid $apid on :$pa, node B pid $bpid on :$pb, single node pid $spid on :$ps" >&2
    for spec in "${C1_SCENARIOS[@]}"; do
        IFS='|' read -r name lflags <<<"$spec"
        c1_selected "$name" || continue
        for v in cluster single; do
            wait_quiet
            if [ "$v" = cluster ]; then
                set -- --node "127.0.0.1:$pa@$apid" --node "127.0.0.1:$pb@$bpid" --redis-pid "$rpid" --scenario "$name"
                log=$OUT/$name-run$run
            else
                set -- --node "127.0.0.1:$ps@$spid" --scenario "$name-single"
                log=$OUT/$name-single-run$run
            fi
            echo "== $name ($v) run $run" >&2
            # shellcheck disable=SC2086
            timeout -k 5 180 "${PIN_LOADGEN[@]}" "$LOADGEN" cluster "$@" --deadline 150 $lflags \
                >"$log.out" 2>"$log.err"
            rc=$?
            alive=true
            for i in "$apid" "$bpid" "$spid" "$rpid"; do kill -0 "$i" 2>/dev/null || alive=false; done
            cat "$log.out" >&2
            [ -s "$log.err" ] && sed 's/^/  loadgen: /' "$log.err" | head -20 >&2
            if [ "$alive" = false ]; then
                echo "bench: $name run $run: A SERVER OR REDIS EXITED during the run (see $OUT/C1-run$run.*.log)" >&2
                FAILED=1
            fi
            if [ "$rc" -ne 0 ]; then
                echo "bench: $name ($v) run $run: loadgen exit status $rc" >&2
                FAILED=1
            fi
            c1_record "$log.out" "$run" "$alive"
        done
    done
    c1_cleanup
}
if [ -z "$ONLY" ] || [[ " $ONLY " == *" C1"* ]]; then
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "bench: C1 skipped: no redis-server on the PATH (install Redis to run it; make bench installs nothing)" >&2
    else
        trap 'c1_cleanup; exit 130' INT TERM
        for run in $(seq 1 "$RUNS"); do
            c1_run "$run" || { echo "bench: C1 run $run could not start" >&2; c1_cleanup; FAILED=1; }
        done
        trap - INT TERM
    fi
fi

echo
echo "ssehub benchmarks — $STAMP, commit $COMMIT, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), kernel $(uname -r)"
echo "$PINNING; $RUNS run(s) per scenario; figures are medians of the runs (missing/dup: worst run)"
echo
"$LOADGEN" summarize "$RESULTS"
echo
echo "every run: $RESULTS"
exit $FAILED
