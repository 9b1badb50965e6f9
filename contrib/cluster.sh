#!/usr/bin/env bash
# make cluster — one ssehub node per core, all on ONE port, as one server
# through Redis.
#
# Starts a redis-server of its own on a free loopback port (its data in a
# temporary folder, removed at the end) unless REDIS_URL names a Redis to
# use, then NODES ssehub nodes (default: one per core, `nproc`) with
# `--bind $BIND --reuse-port --redis URL`: the kernel spreads the
# connections to that port among them. Prints where the cluster listens,
# then runs until Ctrl-C or SIGTERM, which stops every node and the Redis
# it started, each by its PID (nodes first, gracefully, so streams get
# their `retry:`).
#
# Environment:
#   BIND=127.0.0.1:8080      where the cluster listens (0.0.0.0:8080: the LAN)
#   NODES=$(nproc)           how many ssehub processes
#   REDIS_URL=redis://…      use this Redis instead of starting one
#   SSEHUB_BIN=…             the binary [default: target/release/ssehub]
#   SSEHUB_*                 any other setting, for every node
#                            (SSEHUB_REDIS_PREFIX, SSEHUB_HISTORY, …)
# Arguments are passed to every node: bash contrib/cluster.sh --history 500
#
# Exit status: 0 after Ctrl-C or SIGTERM; 1 when Redis or a node cannot
# start, or every node died; 2 for a bad setting.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
BIN=${SSEHUB_BIN:-target/release/ssehub}
BIND=${BIND:-127.0.0.1:8080}
NODES=${NODES:-$(nproc 2>/dev/null || echo 2)}

say() { echo "cluster: $*" >&2; }

case $NODES in
    '' | *[!0-9]* | 0)
        say "NODES must be a positive whole number, not '$NODES'"
        exit 2
        ;;
esac
PORT=${BIND##*:}
HOST=${BIND%:*}
case $PORT in
    '' | *[!0-9]* | 0)
        say "BIND must be ADDR:PORT with a fixed port (every node binds the same one), not '$BIND'"
        exit 2
        ;;
esac
if [[ ! -x $BIN ]]; then
    say "no binary at $BIN: run 'make release' (or use 'make cluster')"
    exit 1
fi

# Nodes and Redis run in sessions of their own (setsid, same PID), so that
# Ctrl-C reaches only this script, which then stops them in order with one
# signal each: a node's second signal would stop it at once, not gracefully.
DETACH=()
command -v setsid >/dev/null && DETACH=(setsid)

REDIS_PID=
REDIS_DIR=
NODE_PIDS=()
STOPPING=

# Stops the nodes (SIGTERM, then SIGKILL after 5 s), then our Redis.
stop() {
    STOPPING=1
    local pid deadline
    for pid in "${NODE_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    deadline=$((SECONDS + 5))
    for pid in "${NODE_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    NODE_PIDS=()
    if [[ -n $REDIS_PID ]]; then
        kill -TERM "$REDIS_PID" 2>/dev/null
        deadline=$((SECONDS + 5))
        while kill -0 "$REDIS_PID" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill -KILL "$REDIS_PID" 2>/dev/null
        wait "$REDIS_PID" 2>/dev/null
        REDIS_PID=
    fi
    if [[ -n $REDIS_DIR ]]; then
        rm -rf "$REDIS_DIR"
        REDIS_DIR=
    fi
}

trap 'say "stopping"; stop; exit 0' INT TERM
trap 'stop' EXIT

# Whether something on 127.0.0.1:$1 answers a RESP PING (in a subshell:
# a refused /dev/tcp connection must not end the script).
redis_answers() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'PING\r\n' >&3
        IFS= read -r -t 1 reply <&3 || exit 1
        [[ $reply == +PONG* || $reply == -NOAUTH* ]]
    ) 2>/dev/null
}

# `GET /healthz` on the cluster's port; prints the body.
healthz() {
    local host=$HOST
    [[ $host == 0.0.0.0 || $host == '[::]' ]] && host=127.0.0.1
    host=${host#[}
    host=${host%]}
    (
        exec 4<>"/dev/tcp/$host/$PORT" || exit 1
        printf 'GET /healthz HTTP/1.1\r\nHost: cluster\r\nConnection: close\r\n\r\n' >&4
        body=
        while IFS= read -r -t 2 line <&4; do
            body=$line
        done
        # The body has no line end: read returns false with it in $line.
        printf '%s' "${line:-$body}"
    ) 2>/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 40000))
}

if [[ -n ${REDIS_URL:-} ]]; then
    URL=$REDIS_URL
    say "using the Redis at $URL"
else
    if ! command -v redis-server >/dev/null; then
        say "redis-server is not installed: run 'make deps', or set REDIS_URL"
        exit 1
    fi
    REDIS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ssehub-cluster-redis.XXXXXX") || exit 1
    for attempt in 1 2 3 4 5; do
        REDIS_PORT=$(free_port)
        "${DETACH[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
            --save '' --appendonly yes --logfile redis.log --daemonize no \
            </dev/null >/dev/null 2>&1 &
        REDIS_PID=$!
        deadline=$((SECONDS + 10))
        while kill -0 "$REDIS_PID" 2>/dev/null && ! redis_answers "$REDIS_PORT"; do
            if ((SECONDS >= deadline)); then
                break
            fi
            sleep 0.05
        done
        if redis_answers "$REDIS_PORT"; then
            break
        fi
        kill -KILL "$REDIS_PID" 2>/dev/null
        wait "$REDIS_PID" 2>/dev/null
        REDIS_PID=
    done
    if [[ -z $REDIS_PID ]]; then
        say "redis-server did not start; its log: $REDIS_DIR/redis.log"
        cat "$REDIS_DIR/redis.log" >&2 2>/dev/null
        exit 1
    fi
    URL=redis://127.0.0.1:$REDIS_PORT
    say "started redis-server (pid $REDIS_PID) at $URL, data in $REDIS_DIR"
fi

for ((i = 1; i <= NODES; i++)); do
    "${DETACH[@]}" "$BIN" --bind "$BIND" --reuse-port --redis "$URL" "$@" \
        2> >(sed -u "s/^/[node $i] /" >&2) </dev/null &
    NODE_PIDS+=($!)
done

# Up when every node is still running and the port answers with Redis up.
deadline=$((SECONDS + 15))
while :; do
    for pid in "${NODE_PIDS[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"
            say "node pid $pid exited ($?) on start; stopping the others"
            exit 1
        fi
    done
    if [[ $(healthz) == *'"redis":"up"'* ]]; then
        break
    fi
    if ((SECONDS >= deadline)); then
        say "the cluster does not answer on $BIND with Redis up: $(healthz)"
        exit 1
    fi
    sleep 0.1
done

shown=$HOST
[[ $HOST == 0.0.0.0 ]] && shown=$(hostname -I 2>/dev/null | cut -d' ' -f1)
say "$NODES nodes (pids ${NODE_PIDS[*]}) listening on http://$BIND/ as one server"
say "page: http://${shown:-$HOST}:$PORT/   stream: http://${shown:-$HOST}:$PORT/events   Redis: $URL"
say "Ctrl-C stops them all"

# Run until a signal; nodes may die (the others carry on) but not all.
while :; do
    sleep 1 &
    wait $!
    [[ -n $STOPPING ]] && break
    alive=0
    for pid in "${NODE_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && alive=$((alive + 1))
    done
    if ((alive == 0)); then
        say "every node has exited"
        exit 1
    fi
done
