#!/usr/bin/env bash
# make soak — a long run: 10,000 streams, messages at 100/s, for SOAK_SECS.
#
# Builds the release server and the load generator (benches/loadgen), starts
# the server on a free loopback port, and lets loadgen open the streams over
# several loopback source addresses (127.0.0.2 …) and publish at the given
# rate. Every 30 s it prints the server's RSS, open descriptors, open streams
# and slow consumers cut so far; at the end, lost and duplicated deliveries
# (from loadgen, which numbers every message and checks every stream) and
# the slow consumers cut (from /metrics). Not run in CI.
#
# Traffic stays on loopback; the run is bounded (loadgen's --deadline and a
# `timeout` around it) and stops by itself.
#
# Environment:
#   SOAK_SECS=600        how long to publish
#   SOAK_STREAMS=10000   streams to hold open
#   SOAK_RATE=100        messages per second
#   SOAK_SOURCES=8       loopback source addresses for the streams
#   SOAK_EVERY=30        seconds between progress lines
#   SOAK_NO_BUILD=1      skip the two cargo builds
#
# Exit status: 0 when the server stayed up and no delivery was lost or
# duplicated on a stream the server kept open; 1 otherwise.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
SECS=${SOAK_SECS:-600}
STREAMS=${SOAK_STREAMS:-10000}
RATE=${SOAK_RATE:-100}
SOURCES=${SOAK_SOURCES:-8}
EVERY=${SOAK_EVERY:-30}
for v in SECS STREAMS RATE SOURCES EVERY; do
    case ${!v} in
        '' | *[!0-9]* | 0)
            echo "soak: SOAK_$v must be a positive whole number, not '${!v}'" >&2
            exit 2
            ;;
    esac
done
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SERVER=$TARGET/release/ssehub
LG_TARGET=$ROOT/benches/loadgen/target
LOADGEN=$LG_TARGET/release/loadgen
OUT=$ROOT/target/soak
mkdir -p "$OUT"

if [ -z "${SOAK_NO_BUILD:-}" ]; then
    echo "== building the server (release)" >&2
    cargo build --release --bin ssehub || { echo "soak: the server does not build" >&2; exit 1; }
    echo "== building the load generator (release)" >&2
    cargo build --release --manifest-path benches/loadgen/Cargo.toml --target-dir "$LG_TARGET" \
        || { echo "soak: the load generator does not build" >&2; exit 1; }
fi
[ -x "$SERVER" ] || { echo "soak: no server binary at $SERVER" >&2; exit 1; }
[ -x "$LOADGEN" ] || { echo "soak: no load generator at $LOADGEN" >&2; exit 1; }

# 10,000 streams need 10,000 descriptors on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((STREAMS + 100)) ]; then
    echo "soak: the open-file limit $(ulimit -n) is too low for $STREAMS streams" >&2
    exit 1
fi

port=$("$LOADGEN" free-port) || { echo "soak: no free port" >&2; exit 1; }
"$SERVER" --bind "127.0.0.1:$port" --log-level warn --heartbeat 1 --history 100 \
    --max-clients $((STREAMS + 1000)) 2>"$OUT/server.log" >/dev/null &
spid=$!
echo "== server pid $spid on 127.0.0.1:$port; log in $OUT/server.log" >&2

stop_server() {
    kill -TERM "$spid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$spid" 2>/dev/null || { wait "$spid" 2>/dev/null; return 0; }
        sleep 0.1
    done
    echo "soak: server did not stop on SIGTERM in 5 s; killing it" >&2
    kill -KILL "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
}
LGPID=
cleanup() {
    [ -n "$LGPID" ] && kill "$LGPID" 2>/dev/null
    stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One sample of /metrics (plain bash, no curl needed), or nothing in 5 s.
metrics() {
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n" >&3
        cat <&3' _ "$port" 2>/dev/null | tr -d '\r'
}
# The value of one sample in a /metrics text given on stdin ("-" if absent).
metric() {
    awk -v name="$1" '$1 == name { v = $2 } END { print (v == "" ? "-" : v) }'
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$spid/status" 2>/dev/null || echo "-"; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$spid/status" 2>/dev/null || echo "-"; }
fds() { find "/proc/$spid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

MESSAGES=$((SECS * RATE))
# Opening 10,000 streams takes seconds; allow for it and the drain.
DEADLINE=$((SECS + 240))
echo "== $STREAMS streams from $SOURCES source addresses, $MESSAGES messages at $RATE/s (~${SECS}s)" >&2
timeout -k 10 $((DEADLINE + 30)) "$LOADGEN" --server "127.0.0.1:$port" --pid "$spid" \
    --scenario soak --streams "$STREAMS" --sources "$SOURCES" --connect-timeout 120 \
    --idle 1 --messages "$MESSAGES" --rate "$RATE" --drain 15 --deadline "$DEADLINE" \
    >"$OUT/loadgen.out" 2>"$OUT/loadgen.err" &
LGPID=$!

started=$(date +%s)
printf '%8s %10s %10s %8s %9s %10s %12s\n' elapsed rss_kb hwm_kb fds streams slow_cut delivered
while kill -0 "$LGPID" 2>/dev/null; do
    for _ in $(seq 1 "$EVERY"); do
        kill -0 "$LGPID" 2>/dev/null || break
        sleep 1
    done
    if ! kill -0 "$spid" 2>/dev/null; then
        echo "soak: THE SERVER EXITED after $(($(date +%s) - started)) s (see $OUT/server.log)" >&2
        break
    fi
    m=$(metrics)
    printf '%7ss %10s %10s %8s %9s %10s %12s\n' "$(($(date +%s) - started))" "$(rss_kb)" "$(hwm_kb)" "$(fds)" \
        "$(metric ssehub_streams_open <<<"$m")" \
        "$(metric ssehub_slow_consumers_dropped_total <<<"$m")" \
        "$(metric ssehub_events_delivered_total <<<"$m")"
done
wait "$LGPID"
lg_rc=$?
LGPID=

alive=yes
kill -0 "$spid" 2>/dev/null || alive=no
final=
[ "$alive" = yes ] && final=$(metrics)
slow_cut=$(metric ssehub_slow_consumers_dropped_total <<<"$final")
rss_end=$(rss_kb)
hwm_end=$(hwm_kb)
stop_server
trap - EXIT

echo
sed -n '/^-/,$p' "$OUT/loadgen.out" | grep -v '^{' || true
[ -s "$OUT/loadgen.err" ] && sed 's/^/  loadgen: /' "$OUT/loadgen.err" | head -20 >&2
line=$(grep '^{' "$OUT/loadgen.out" | tail -1)
field() {
    # A number field of loadgen's JSON line ("-" if absent or null).
    local v
    v=$(grep -o "\"$1\":[-0-9.]*" <<<"$line" | head -1 | cut -d: -f2)
    echo "${v:--}"
}
missing=$(field missing)
dup=$(field dup)
streams_open=$(field streams_open)
open_at_end=$(field streams_open_at_end)
closed=$(field closed_after_open)

echo "== soak: ${SECS}s, $STREAMS streams, $RATE msg/s"
echo "server alive at the end:          $alive"
echo "server RSS at the end / peak:     ${rss_end} kB / ${hwm_end} kB"
echo "streams opened / open at the end: $streams_open / $open_at_end"
echo "streams closed by the server:     $closed"
echo "slow consumers cut (/metrics):    $slow_cut"
echo "deliveries lost:                  $missing (a cut stream's later events count here: a browser would replay them)"
echo "deliveries duplicated:            $dup"
echo "loadgen exit status:              $lg_rc (JSON line and table in $OUT/loadgen.out)"

FAILED=0
if [ "$alive" != yes ]; then
    echo "soak: FAILED: the server died" >&2
    FAILED=1
fi
if [ "$lg_rc" -ne 0 ] || [ -z "$line" ]; then
    echo "soak: FAILED: loadgen did not complete (status $lg_rc)" >&2
    FAILED=1
fi
if [ "$dup" != 0 ]; then
    echo "soak: FAILED: $dup duplicated deliveries" >&2
    FAILED=1
fi
if [ "$missing" != 0 ] && [ "$closed" = 0 ]; then
    echo "soak: FAILED: $missing deliveries lost on streams the server kept open" >&2
    FAILED=1
fi
exit $FAILED
