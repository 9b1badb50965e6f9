#!/usr/bin/env bash
# Runs the browser and EventSource tests of the bundled page against an ssehub
# binary, installing what is missing first:
#   - Debian's Chromium (/usr/bin/chromium) with apt, if absent;
#   - the npm packages with `npm ci` from the committed lockfile, if
#     node_modules is absent or older than the lockfile.
# Never downloads a browser of its own (no `playwright install`).
#
# Usage: bash tests/browser/run.sh [SSEHUB_BIN]   (default target/release/ssehub)
# Screenshots go to <repo>/target/screenshots/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

bin="${1:-${SSEHUB_BIN:-$repo/target/release/ssehub}}"
case "$bin" in
  /*) ;;
  *) bin="$PWD/$bin" ;;
esac
if [[ ! -x "$bin" ]]; then
  echo "run.sh: no ssehub binary at $bin (build it first: cargo build --release)" >&2
  exit 2
fi

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi
}

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  echo "run.sh: installing Debian's chromium" >&2
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
fi

if ! command -v node >/dev/null; then
  echo "run.sh: node (>= 20) is required" >&2
  exit 2
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  echo "run.sh: node >= 20 is required, found $(node --version)" >&2
  exit 2
fi

cd "$here"
if [[ ! -d node_modules || ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "run.sh: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

mkdir -p "$repo/target/screenshots"
export SSEHUB_BIN="$bin"
export CHROMIUM="$chromium"

# Files one after another (each launches its own Chromium); a hung test fails
# after 90 s instead of holding CI.
status=0
node --test --test-concurrency=1 --test-timeout=90000 --test-reporter=spec \
  eventsource.test.mjs page.test.mjs tabs.test.mjs private.test.mjs a11y.test.mjs || status=$?
echo "run.sh: screenshots in $repo/target/screenshots/" >&2
exit $status
