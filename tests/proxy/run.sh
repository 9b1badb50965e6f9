#!/usr/bin/env bash
# ssehub behind the shipped contrib/nginx.conf and contrib/Caddyfile, over
# HTTP/2 with TLS, and the shipped contrib/ssehub.service and ssehub.env.
#
# Installs what is missing (nginx, caddy, openssl, curl, strace and chromium
# with apt; playwright-core with `npm ci` from the committed lockfile), makes a
# self-signed certificate, starts ssehub, echo.py and each proxy twice (once in
# front of ssehub, once in front of echo.py) on free loopback ports, each with
# a temporary copy of the shipped file in which only ports, addresses and
# certificate paths are substituted (and, for Caddy, two test-only global
# options added: loopback only, no admin endpoint). Then it runs checks.mjs
# and the checks of the systemd unit (variable names, systemd-analyze verify
# and security, strace). The system's own nginx or Caddy service, if any, is
# left alone: nothing here uses ports 80/443 or /etc/nginx, /etc/caddy.
#
# Usage: bash tests/proxy/run.sh [SSEHUB_BIN]   (default target/release/ssehub)
# Prints one line per check and "N passed, M failed[, K skipped]"; exits 1 if
# anything failed.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
contrib="$repo/contrib"
started=$SECONDS

bin="${1:-${SSEHUB_BIN:-$repo/target/release/ssehub}}"
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
if [[ ! -x "$bin" ]]; then
  echo "run.sh: no ssehub binary at $bin (build it first: cargo build --release)" >&2
  exit 2
fi

as_root() { if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi; }

# --- what the checks need -----------------------------------------------------
chromium="${CHROMIUM:-/usr/bin/chromium}"
missing=()
[[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v caddy >/dev/null || missing+=(caddy)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v strace >/dev/null || missing+=(strace)
[[ -x "$chromium" ]] || missing+=(chromium)
if (( ${#missing[@]} )); then
  echo "run.sh: installing ${missing[*]}" >&2
  # Debian's nginx and caddy packages may start a service on ports 80/443
  # with their own configuration; the checks below do not use it.
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
nginx=/usr/sbin/nginx
if ! command -v node >/dev/null || (( $(node -p 'process.versions.node.split(".")[0]') < 20 )); then
  echo "run.sh: node >= 20 is required" >&2
  exit 2
fi
if [[ ! -f "$here/node_modules/.package-lock.json" || "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]]; then
  echo "run.sh: npm ci" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || exit 2
fi

# --- bookkeeping ----------------------------------------------------------------
passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $*"; }

tmp="$(mktemp -d /tmp/ssehub-proxy.XXXXXX)"
pids=()
cleanup() {
  local pid end
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  end=$((SECONDS + 5))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < end )); do sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "run.sh: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free loopback TCP ports, all held open at once while they are picked so no
# two are the same.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# wait_for SECONDS PID WHAT CMD…: polls CMD every 50 ms until it succeeds;
# fails when the deadline passes or the process PID has exited.
wait_for() {
  local secs=$1 pid=$2 what=$3
  shift 3
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "run.sh: $what exited" >&2; return 1; fi
    if (( SECONDS >= end )); then echo "run.sh: $what not up after ${secs} s" >&2; return 1; fi
    sleep 0.05
  done
}

http_ok() { [[ "$(curl -sk --max-time 1 -o /dev/null -w '%{http_code}' "$@")" == 200 ]]; }

# IPv6 loopback for the configs' [::] listen lines, if this machine has it.
have_v6=0
grep -q ' lo$' /proc/net/if_inet6 2>/dev/null && have_v6=1

# sed on a copy of a shipped file; fails if a pattern the substitutions rely
# on is gone from the shipped file (then run.sh needs updating with it).
render() {
  local src=$1 dst=$2
  shift 2
  local expect
  for expect in "${expects[@]}"; do
    if ! grep -qF -- "$expect" "$src"; then
      echo "run.sh: $(basename "$src") has no line with '$expect' any more; update tests/proxy/run.sh" >&2
      return 1
    fi
  done
  sed "$@" "$src" >"$dst"
}

# --- certificate, ssehub, echo.py ---------------------------------------------------
if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost' \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>"$tmp/openssl.log"; then
  cat "$tmp/openssl.log" >&2
  exit 2
fi
cert="$tmp/cert.pem" key="$tmp/key.pem"

read -r p_ssehub p_echo p_n1 p_n2 p_n3 p_n4 p_c1 p_c2 p_c3 p_c4 <<<"$(free_ports 10)"

"$bin" --bind "127.0.0.1:$p_ssehub" --log-level warn >"$tmp/ssehub.log" 2>&1 &
pid_ssehub=$!
pids+=("$pid_ssehub")
python3 "$here/echo.py" "$p_echo" >"$tmp/echo.log" 2>&1 &
pid_echo=$!
pids+=("$pid_echo")
if ! wait_for 5 "$pid_ssehub" ssehub http_ok "http://127.0.0.1:$p_ssehub/healthz" ||
  ! wait_for 5 "$pid_echo" echo.py http_ok "http://127.0.0.1:$p_echo/healthz"; then
  cat "$tmp/ssehub.log" "$tmp/echo.log" >&2
  exit 1
fi

# --- the proxies -------------------------------------------------------------------
proxies=()

# start_nginx NAME UPSTREAM_PORT HTTP_PORT HTTPS_PORT
start_nginx() {
  local name=$1 up=$2 http=$3 https=$4 v6=()
  if ((have_v6)); then
    v6=(-e "s|listen \[::\]:80;|listen [::1]:$http;|" -e "s|listen \[::\]:443 ssl http2;|listen [::1]:$https ssl http2;|")
  else
    v6=(-e '/listen \[::\]:/d')
  fi
  expects=('server 127.0.0.1:8080;' 'listen 80;' 'listen 443 ssl http2;' 'ssl_certificate ' 'ssl_certificate_key ')
  render "$contrib/nginx.conf" "$tmp/$name.site.conf" \
    -e "s|server 127.0.0.1:8080;|server 127.0.0.1:$up;|" \
    -e "s|listen 80;|listen 127.0.0.1:$http;|" \
    -e "s|listen 443 ssl http2;|listen 127.0.0.1:$https ssl http2;|" \
    "${v6[@]}" \
    -e "s|^\( *ssl_certificate\) \+[^;]*;|\1 $cert;|" \
    -e "s|^\( *ssl_certificate_key\) \+[^;]*;|\1 $key;|" || return 1
  mkdir -p "$tmp/$name"
  # The main configuration Debian's /etc/nginx/nginx.conf would be, reduced
  # to what runs without /etc and /var: the shipped file is its server part.
  cat >"$tmp/$name.conf" <<EOF
daemon off;
$([[ "$(id -u)" == 0 ]] && echo "user root root;")
worker_processes 1;
pid $tmp/$name/nginx.pid;
error_log $tmp/$name/error.log warn;
events { worker_connections 512; }
http {
    access_log off;
    client_body_temp_path $tmp/$name/client_body;
    proxy_temp_path $tmp/$name/proxy;
    fastcgi_temp_path $tmp/$name/fastcgi;
    uwsgi_temp_path $tmp/$name/uwsgi;
    scgi_temp_path $tmp/$name/scgi;
    # As a site-wide setting might: compress everything, streams included.
    # The shipped server block must switch it off for the stream.
    gzip on;
    gzip_proxied any;
    gzip_min_length 1;
    gzip_types text/event-stream text/plain application/json;
    include $tmp/$name.site.conf;
}
EOF
  "$nginx" -p "$tmp/$name" -e "$tmp/$name/error.log" -c "$tmp/$name.conf" >"$tmp/$name/stdout.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  if ! wait_for 5 "$pid" "nginx ($name)" http_ok --http2 "https://127.0.0.1:$https/healthz"; then
    cat "$tmp/$name/stdout.log" "$tmp/$name/error.log" >&2
    return 1
  fi
}

# start_caddy NAME UPSTREAM_PORT HTTP_PORT HTTPS_PORT
start_caddy() {
  local name=$1 up=$2 http=$3 https=$4
  expects=($'\thttp_port 80' $'\thttps_port 443' 'chat.example.com {' '# tls /etc/caddy/ssehub.crt /etc/caddy/ssehub.key'
    'reverse_proxy 127.0.0.1:8080 {')
  # Besides ports, addresses and the certificate, two test-only global
  # options: loopback only (IPv4 only: Caddy 2.6 binds its HTTP redirect
  # server to only the last of several default_bind addresses), and no admin
  # endpoint (its port 2019 may be the system Caddy's).
  render "$contrib/Caddyfile" "$tmp/$name.Caddyfile" \
    -e "s|^\thttp_port 80\$|\thttp_port $http\n\tdefault_bind 127.0.0.1\n\tadmin off|" \
    -e "s|^\thttps_port 443\$|\thttps_port $https|" \
    -e "s|^chat.example.com {|127.0.0.1 {|" \
    -e "s|^\t# tls /etc/caddy/ssehub.crt /etc/caddy/ssehub.key\$|\ttls $cert $key|" \
    -e "s|reverse_proxy 127.0.0.1:8080 {|reverse_proxy 127.0.0.1:$up {|" || return 1
  mkdir -p "$tmp/$name"
  HOME="$tmp/$name" XDG_DATA_HOME="$tmp/$name/data" XDG_CONFIG_HOME="$tmp/$name/config" \
    caddy run --adapter caddyfile --config "$tmp/$name.Caddyfile" >"$tmp/$name/caddy.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  if ! wait_for 5 "$pid" "caddy ($name)" http_ok --http2 "https://127.0.0.1:$https/healthz"; then
    cat "$tmp/$name/caddy.log" >&2
    return 1
  fi
}

# check_redirect NAME HTTP_PORT: plain HTTP only sends the browser to HTTPS.
check_redirect() {
  local out code loc
  out="$(curl -s --max-time 2 -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$2/events?room=lobby")"
  code="${out%% *}" loc="${out#* }"
  if [[ "$code" =~ ^30[178]$ && "$loc" == https://127.0.0.1*/events?room=lobby ]]; then
    pass "$1: plain HTTP redirects to HTTPS ($code to $loc)"
  else
    fail "$1: plain HTTP redirects to HTTPS (got '$out')"
  fi
}

json_proxies=()
if start_nginx nginx "$p_ssehub" "$p_n1" "$p_n2" && start_nginx nginx-echo "$p_echo" "$p_n3" "$p_n4"; then
  json_proxies+=("{\"name\":\"nginx\",\"url\":\"https://127.0.0.1:$p_n2\",\"echo\":\"https://127.0.0.1:$p_n4\"}")
  check_redirect nginx "$p_n1"
else
  fail "nginx: starts with the shipped contrib/nginx.conf"
fi
if start_caddy caddy "$p_ssehub" "$p_c1" "$p_c2" && start_caddy caddy-echo "$p_echo" "$p_c3" "$p_c4"; then
  json_proxies+=("{\"name\":\"caddy\",\"url\":\"https://127.0.0.1:$p_c2\",\"echo\":\"https://127.0.0.1:$p_c4\"}")
  check_redirect caddy "$p_c1"
else
  fail "caddy: starts with the shipped contrib/Caddyfile"
fi

if (( ${#json_proxies[@]} )); then
  list="$(IFS=,; echo "[${json_proxies[*]}]")"
  # checks.mjs has its own deadlines; this one only guards against a hang.
  # In the background with `wait`, so that a TERM or INT to run.sh is acted
  # on at once (a trap waits for a foreground command to end).
  PROXIES="$list" CHROMIUM="$chromium" \
    timeout 90 node "$here/checks.mjs" >"$tmp/checks.out" 2>"$tmp/checks.err" &
  pid_node=$!
  pids+=("$pid_node")
  wait "$pid_node"
  status=$?
  cat "$tmp/checks.out"
  n_pass=$(grep -c '^PASS ' "$tmp/checks.out")
  n_fail=$(grep -c '^FAIL ' "$tmp/checks.out")
  passed=$((passed + n_pass)) failed=$((failed + n_fail))
  if (( status != 0 && n_fail == 0 )); then
    fail "checks.mjs exited with status $status: $(tail -n 5 "$tmp/checks.err")"
  fi
fi

# --- systemd unit and environment file -------------------------------------------
unit="$contrib/ssehub.service"
envfile="$contrib/ssehub.env"

# Every SSEHUB_ variable the unit and the example set names a flag of ssehub
# (ssehub ignores unknown variables, so a misspelt one would go unnoticed).
flags="$("$bin" --help 2>&1 | grep -o -- '--[a-z][a-z-]*' | sort -u)"
bad=()
for var in $(grep -ho 'SSEHUB_[A-Z_]*=' "$unit" "$envfile" | sort -u); do
  flag="--$(tr 'A-Z_' 'a-z-' <<<"${var#SSEHUB_}")"
  flag="${flag%=}"
  grep -qx -- "$flag" <<<"$flags" || bad+=("${var%=}")
done
if (( ${#bad[@]} )); then
  fail "systemd: SSEHUB_ variables name flags of ssehub (unknown: ${bad[*]})"
else
  pass "systemd: every SSEHUB_ variable in ssehub.service and ssehub.env names a flag of ssehub --help"
fi

# ssehub starts with every example setting of ssehub.env uncommented (the
# last of a repeated variable wins, as in systemd), the unit's defaults
# first; only the address, the journal and the page folder are swapped for
# ones that work here.
envtest="$tmp/env-test"
mkdir -p "$envtest"
read -r p_env <<<"$(free_ports 1)"
{
  sed -n 's/^Environment=\(SSEHUB_[A-Z_]*=.*\)$/\1/p' "$unit"
  sed -n 's/^#\(SSEHUB_[A-Z_]*=.*\)$/\1/p' "$envfile"
} | sed -e "s|^SSEHUB_BIND=.*|SSEHUB_BIND=127.0.0.1:$p_env|" \
  -e "s|^SSEHUB_JOURNAL=.*|SSEHUB_JOURNAL=$envtest/journal.jsonl|" \
  -e "s|^SSEHUB_WWW=.*|SSEHUB_WWW=$repo/www|" >"$envtest/env"
mapfile -t envs <"$envtest/env"
env -i PATH="$PATH" "${envs[@]}" "$bin" >"$envtest/log" 2>&1 &
pid_env=$!
pids+=("$pid_env")
if wait_for 5 "$pid_env" "ssehub with ssehub.env" http_ok "http://127.0.0.1:$p_env/healthz" && [[ -e "$envtest/journal.jsonl" ]]; then
  pass "systemd: ssehub starts with all of ssehub.env's examples set (${#envs[@]} variables)"
else
  fail "systemd: ssehub starts with all of ssehub.env's examples set: $(head -n 1 "$envtest/log")"
fi
kill -TERM "$pid_env" 2>/dev/null

# What the unit assumes of the binary, watched with strace: SIGTERM with a
# stream open ends it cleanly well within TimeoutStopSec=5, and every
# system call it makes (start, a journaled publish, a stream, the page, the
# graceful stop) is in SystemCallFilter=@system-service.
if ! command -v strace >/dev/null || ! command -v systemd-analyze >/dev/null; then
  skip "systemd: ssehub's system calls and its stop, under strace (needs strace and systemd-analyze)"
else
  st="$tmp/strace"
  mkdir -p "$st"
  read -r p_st <<<"$(free_ports 1)"
  strace -f -qq -o "$st/trace" "$bin" --bind "127.0.0.1:$p_st" --journal "$st/journal.jsonl" --log-level warn >"$st/log" 2>&1 &
  pid_strace=$!
  pids+=("$pid_strace")
  if wait_for 10 "$pid_strace" "ssehub under strace" http_ok "http://127.0.0.1:$p_st/healthz"; then
    pid_traced="$(ps -o pid= --ppid "$pid_strace" | tr -d ' ')"
    pids+=($pid_traced)
    curl -s --max-time 2 -o /dev/null -d on "http://127.0.0.1:$p_st/publish?room=lamp&event=state"
    curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$p_st/"
    curl -sN --max-time 10 "http://127.0.0.1:$p_st/events?room=lamp" >"$st/stream" 2>/dev/null &
    pid_curl=$!
    pids+=("$pid_curl")
    wait_for 3 "$pid_curl" "a stream's first heartbeat" grep -q '^event: heartbeat' "$st/stream"
    t0=$(date +%s%N)
    kill -TERM $pid_traced
    end=$((SECONDS + 6))
    while kill -0 "$pid_strace" 2>/dev/null && (( SECONDS < end )); do sleep 0.02; done
    stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    if kill -0 "$pid_strace" 2>/dev/null; then
      fail "systemd: SIGTERM with a stream open stops ssehub within 5 s (still running after 6 s)"
    else
      wait "$pid_strace"
      code=$?
      # systemd counts both as a clean stop (SuccessExitStatus= includes
      # SIGTERM); only the first is ssehub's own graceful stop.
      if (( code == 0 && stop_ms < 5000 )); then
        pass "systemd: SIGTERM with a stream open stops ssehub cleanly in $stop_ms ms (status 0; TimeoutStopSec=5)"
      elif (( code == 128 + 15 && stop_ms < 5000 )); then
        pass "systemd: SIGTERM with a stream open stops ssehub cleanly in $stop_ms ms (killed by the signal itself: no graceful stop in this binary; TimeoutStopSec=5)"
      else
        fail "systemd: SIGTERM with a stream open stops ssehub cleanly within 5 s (status $code after $stop_ms ms)"
      fi
      systemd-analyze syscall-filter </dev/null >"$st/groups" 2>/dev/null
      outside="$(python3 "$here/syscalls.py" "$st/groups" "$st/trace")"
      case "$outside" in
        PARSE*) skip "systemd: ssehub's system calls in @system-service (could not read the lists: ${outside#PARSE: })" ;;
        "- "*) pass "systemd: all ${outside#- } system calls ssehub made are in SystemCallFilter=@system-service" ;;
        *) fail "systemd: system calls outside SystemCallFilter=@system-service: ${outside% *}" ;;
      esac
    fi
  else
    fail "systemd: ssehub starts under strace: $(head -n 1 "$st/log")"
  fi
fi

if ! command -v systemd-analyze >/dev/null; then
  skip "systemd: systemd-analyze verify ssehub.service (no systemd-analyze here)"
  skip "systemd: systemd-analyze security ssehub.service (no systemd-analyze here)"
else
  # A root of its own: the system's units (for the targets it refers to), the
  # unit, and the binary where ExecStart expects it.
  root="$tmp/sdroot"
  mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/local/bin"
  cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/" 2>/dev/null
  cp "$bin" "$root/usr/local/bin/ssehub"
  # Does verify work at all here? A trivial unit must pass cleanly.
  printf '[Service]\nExecStart=/usr/local/bin/ssehub\n' >"$root/etc/systemd/system/probe.service"
  if ! out="$(systemd-analyze verify --root="$root" probe.service 2>&1)" || [[ -n "$out" ]]; then
    skip "systemd: systemd-analyze verify does not work here: $(head -n 1 <<<"$out")"
  else
    cp "$unit" "$root/etc/systemd/system/ssehub.service"
    if out="$(systemd-analyze verify --root="$root" ssehub.service 2>&1)" && [[ -z "$out" ]]; then
      pass "systemd: systemd-analyze verify contrib/ssehub.service: no warning"
    else
      fail "systemd: systemd-analyze verify contrib/ssehub.service: $(tr '\n' ' ' <<<"$out")"
    fi
    # The exposure score (0 = locked down, 10 = none of systemd's sandboxing).
    out="$(systemd-analyze security --offline=true --root="$root" ssehub.service 2>&1)"
    score="$(sed -n 's/.*Overall exposure level for ssehub.service: \([0-9.]*\).*/\1/p' <<<"$out")"
    if [[ -z "$score" ]]; then
      skip "systemd: systemd-analyze security --offline does not work here: $(tail -n 1 <<<"$out")"
    elif awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
      pass "systemd: systemd-analyze security: exposure $score (at most 2.0)"
    else
      fail "systemd: systemd-analyze security: exposure $score, more than 2.0"
    fi
  fi
fi

echo "run.sh: took $((SECONDS - started)) s"
summary="$passed passed, $failed failed"
((skipped)) && summary+=", $skipped skipped"
echo "$summary"
((failed == 0))
