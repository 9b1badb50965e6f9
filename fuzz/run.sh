#!/usr/bin/env bash
# fuzz/run.sh [SECONDS] — run every cargo-fuzz target for SECONDS (default 60).
#
# Installs cargo-fuzz when it is missing. cargo-fuzz passes -Z flags to
# rustc (sanitizers, coverage) that only a nightly compiler accepts; the
# machine has the stable one, so RUSTC_BOOTSTRAP=1 lets it accept them
# (harmless on a nightly). Each target starts from
# the committed seeds in fuzz/corpus/<target>/ and adds what it finds there
# (only the seed-* files are committed). Any crash, leak, time-out or
# out-of-memory fails the run; the reproducer is in fuzz/artifacts/<target>/
# and `cargo fuzz run <target> <file>` replays it.
#
# Environment: FUZZ_TARGETS="request" runs only the targets named.
set -u -o pipefail

SECONDS_EACH=${1:-60}
case $SECONDS_EACH in
    '' | *[!0-9]*)
        echo "usage: fuzz/run.sh [SECONDS]" >&2
        exit 2
        ;;
esac
cd "$(dirname "$0")" || exit 1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked || {
        echo "fuzz: cannot install cargo-fuzz" >&2
        exit 1
    }
fi

export RUSTC_BOOTSTRAP=1
CARGO=(cargo)

TARGETS=${FUZZ_TARGETS:-$("${CARGO[@]}" fuzz list)}
FAILED=()
for target in $TARGETS; do
    mkdir -p "corpus/$target" "artifacts/$target"
    echo "== fuzzing $target for ${SECONDS_EACH}s" >&2
    log=artifacts/$target/last-run.log
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: 2 GiB.
    if "${CARGO[@]}" fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$log" | tail -2 >&2
    else
        FAILED+=("$target")
        tail -40 "$log" >&2
        echo "fuzz: $target FAILED; reproducers:" >&2
        ls -1 "artifacts/$target" | grep -v last-run.log | sed "s|^|  fuzz/artifacts/$target/|" >&2
    fi
done

if [ ${#FAILED[@]} -gt 0 ]; then
    echo "fuzz: failing targets: ${FAILED[*]}" >&2
    exit 1
fi
echo "fuzz: every target ran ${SECONDS_EACH}s without a crash" >&2
