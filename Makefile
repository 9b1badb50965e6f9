# ssehub — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/release/ssehub
FUZZ_SECS ?= 60

.PHONY: run build release test lint deps unit examples browser proxy size fuzz bench soak cluster clean

## Build and start ssehub with the bundled page on http://127.0.0.1:8080
run:
	$(CARGO) run --release -- $(ARGS)

build:
	$(CARGO) build

release:
	$(CARGO) build --release

## Every test: formatting, lints, docs, unit + integration tests, examples,
## browser tests, and ssehub behind real nginx and Caddy
test: lint unit examples browser proxy size

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps
	$(CARGO) check --manifest-path fuzz/Cargo.toml --bins

## Test tools outside cargo: PyJWT, the independent JWT implementation
## tests/token.rs checks ssehub's tokens against; redis-server, which
## tests/resp_redis.rs starts on a free port of its own (a system service
## on 6379 is never used)
deps:
	@python3 -c 'import jwt' 2>/dev/null || python3 -m pip install --quiet 'PyJWT>=2'
	@command -v redis-server >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server)

unit: deps
	$(CARGO) test

examples:
	$(CARGO) build --examples

browser: release
	bash tests/browser/run.sh $(BIN)

## ssehub behind contrib/'s nginx and Caddy configs over HTTP/2, and its systemd unit
proxy: release
	bash tests/proxy/run.sh $(BIN)

## The stripped release binary stays under 1 MiB, for small devices
size: release
	@strip -o target/ssehub.stripped $(BIN) && bytes=$$(stat -c %s target/ssehub.stripped) && \
	  echo "stripped binary: $$bytes bytes (limit 1048576)" && test $$bytes -le 1048576

## Fuzz each target for FUZZ_SECS seconds (installs cargo-fuzz when missing)
fuzz:
	bash fuzz/run.sh $(FUZZ_SECS)

## Load scenarios S1-S4 against the release binary (see BENCHMARKS.md)
bench:
	bash benches/run.sh

## 10,000 streams at 100 messages/s for SOAK_SECS (default 600) seconds
soak:
	bash benches/soak.sh

## One node per core on one port (--reuse-port) as one server through a
## redis-server of its own (or REDIS_URL); BIND=127.0.0.1:8080 NODES=$(nproc)
## ARGS="--history 500"; Ctrl-C stops them all
cluster: release
	bash contrib/cluster.sh $(ARGS)

clean:
	$(CARGO) clean
